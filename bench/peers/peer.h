/*
 * Peer benchmarks: jaccl-bench's measurement over another library, so jaccl
 * can be compared with it in one run.  driver.c is the measurement loop (the
 * same steps as bench/bench.c) and prints through bench/report.c, so the table
 * and the JSON are jaccl-bench's.  Each library supplies the functions below
 * (mpi_backend.c, gloo_backend.cc); driver.c is linked with exactly one.
 *
 * Every function ends the whole job with exit status 1 after a message on
 * stderr if the library reports an error: there is nothing to measure then.
 */
#ifndef JACCL_PEER_H
#define JACCL_PEER_H

#ifdef __cplusplus
extern "C" {
#endif

#include "../bench.h" /* by path: bench/ must not be on the include path (bench/compare) */

/* Name and version of the library, e.g. "Open MPI 4.1.4". */
const char *peer_library(void);
/* The part of -h that differs by library: collectives, how to start ranks. */
void peer_usage(FILE *f, const char *prog);
/* Joins the job; argc/argv as given to main. */
void peer_init(int *argc, char ***argv, int *rank, int *nranks);
/* Bytes per element of dtype; 0 if the library has no such type. */
size_t peer_elem_size(jaccl_dtype_t dtype);
/* 0 if the library can run o, else prints why (when verbose) and returns 2. */
int peer_check_opts(const bench_opts_t *o, int verbose);
/* 0 if the library has no in-place form of o->coll: its in-place column is N/A. */
int peer_in_place(const bench_opts_t *o);
/* How the library's measurement of o differs from jaccl-bench's, for the header; or NULL. */
const char *peer_note(const bench_opts_t *o);

/* in == NULL: in place on out.  count is the number of elements of o->dtype. */
void peer_allreduce(const void *in, void *out, size_t count, const bench_opts_t *o);
/* count elements per rank; in == NULL: in place, the input at out + rank * block. */
void peer_allgather(const void *in, void *out, size_t count, const bench_opts_t *o);
/*
 * count elements of result per rank, from nranks blocks of input.  in == NULL: in
 * place, the input is the nranks blocks at out and the result goes to out's first
 * block: where MPI_IN_PLACE and Gloo's algorithm put it (jaccl puts it in block rank).
 */
void peer_reduce_scatter(const void *in, void *out, size_t count, const bench_opts_t *o);
/* o->root's input to out on every rank, the root's own out included; in is read on
 * the root only.  in == NULL: in place, the root's input is in out. */
void peer_broadcast(const void *in, void *out, size_t count, const bench_opts_t *o);
/* The reduction of every rank's input to out on o->root; out is unspecified elsewhere.
 * in == NULL: in place, each rank's input is in its out. */
void peer_reduce(const void *in, void *out, size_t count, const bench_opts_t *o);
/* Blocks of count elements, nranks each side; in == NULL: in place on out. */
void peer_alltoall(const void *in, void *out, size_t count, const bench_opts_t *o);
void peer_send(const void *buf, size_t count, const bench_opts_t *o, int peer);
void peer_recv(void *buf, size_t count, const bench_opts_t *o, int peer);
/* Posts nsend non-blocking sends of sbuf and nrecv receives into rbuf (count elements
 * each) with peer, then waits for all of them (p2p's bandwidth window). */
void peer_window(const void *sbuf, int nsend, void *rbuf, int nrecv, size_t count,
                 const bench_opts_t *o, int peer);

/* Bookkeeping collectives of the driver (never timed). */
void peer_barrier(void);
void peer_max_f64(double *v, int n);
void peer_sum_u64(uint64_t *v, int n);
int32_t peer_max_i32(int32_t v);
void peer_allgather_bytes(const void *in, void *out, size_t bytes);
void peer_finalize(void);

#ifdef __cplusplus
}
#endif

#endif /* JACCL_PEER_H */
