/*
 * jaccl-bench internals: option parsing (opts.c), verifiable data patterns
 * (data.c), output formatting (report.c) and the driver (bench.c).
 */
#ifndef JACCL_BENCH_H
#define JACCL_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "jaccl.h"

typedef enum {
    COLL_ALLREDUCE,
    COLL_ALLGATHER,
    COLL_SENDRECV,
    COLL_REDUCESCATTER,
    COLL_BROADCAST,
    COLL_REDUCE,
    COLL_ALLTOALL,
    COLL_P2P
} bench_coll_t;

typedef struct {
    bench_coll_t coll;
    size_t minbytes;
    size_t maxbytes;
    double stepfactor;
    int iters;
    int warmup;
    int max_ms; /* -T: timed calls per size and mode stop near this many ms (0: -n always) */
    int check;
    jaccl_dtype_t dtype;
    jaccl_op_t op;
    int root;              /* broadcast and reduce; checked against the size later */
    int window;            /* p2p: messages in flight per bandwidth step */
    const char *json_path; /* NULL: no JSON output */
    int offset;            /* -a: buffers start this many bytes past a page boundary */
} bench_opts_t;

enum { OPTS_OK = 0, OPTS_HELP = 1, OPTS_ERROR = 2 };

/* Parses argv into *o; prints help or a diagnostic itself.  Returns OPTS_*. */
int opts_parse(int argc, char **argv, bench_opts_t *o);
const char *opts_coll_name(bench_coll_t coll);
/* 1 for the collectives that take an op (allreduce, reducescatter, reduce). */
int opts_coll_reduces(bench_coll_t coll);
/* 1 for the collectives that take a root (broadcast, reduce). */
int opts_coll_rooted(bench_coll_t coll);
const char *opts_dtype_name(jaccl_dtype_t dtype);
/* The op as printed: "none" for collectives that do not reduce. */
const char *opts_op_name(const bench_opts_t *o);
/* The size after size with -f factor (at least one more; SIZE_MAX past any -e). */
size_t opts_next_size(size_t size, double factor);
/* What bench_time_calls times, over any library. */
typedef struct {
    void *ctx;
    void (*call)(void *ctx);                    /* one call of the measured collective */
    int32_t (*agree_max)(void *ctx, int32_t v); /* every rank gets the largest v */
} bench_timed_t;
/*
 * Times o->iters calls (all ranks started together); under -T in blocks of 1,
 * 2, 4, ... calls, stopping after the first block that took the total past
 * the limit on any rank (agreed between blocks, off the clock: a first call
 * can be far faster than the rest, so no count is guessed from it).  Returns
 * microseconds per call on this rank; *iters: calls timed.
 */
double bench_time_calls(const bench_opts_t *o, const bench_timed_t *t, int *iters);
/* One size step, laid out as nccl-tests does. */
typedef struct {
    size_t count;     /* the call's: per rank for allgather, reducescatter and alltoall */
    size_t sendbytes; /* this rank's input */
    size_t recvbytes; /* this rank's output */
    size_t bytes;     /* the printed size: the larger of the two */
    size_t elems;     /* the printed count */
} bench_layout_t;

/* bytes is the printed size; split collectives round it down to whole blocks. */
bench_layout_t opts_layout(bench_coll_t coll, int nranks, size_t elemsize, size_t bytes);
/* busbw / algbw: 2(n-1)/n all-reduce, (n-1)/n all-gather, reduce-scatter, all-to-all, else 1. */
double opts_busbw_factor(bench_coll_t coll, int nranks);
/* bytes (at least a page), starting offset bytes past a page boundary (-a), touched
 * now so no page fault lands in a timed loop; NULL when out of memory.  Freed by
 * bench_free_touched with the same offset. */
char *bench_alloc_touched(size_t bytes, int offset);
void bench_free_touched(char *p, int offset);
/* The monotonic clock in microseconds, for every timed loop. */
double bench_now_us(void);

/* What the check phase fills in and expects; see data.c for the choice. */
typedef struct {
    bench_coll_t coll;
    jaccl_dtype_t dtype;
    jaccl_op_t op;
    int nranks;
    size_t modulus; /* values are (7 * rank + i) % modulus ... */
    size_t period;  /* ... or, for PROD, 2 where (i + rank) % period == 0, else 1;
                       bool and complex64 vary these: see data.c */
    double tol;     /* relative tolerance; nonzero only for floating-point AVG */
} bench_pattern_t;

void data_pattern_init(bench_pattern_t *p, bench_coll_t coll, jaccl_dtype_t dtype, jaccl_op_t op,
                       int nranks);
/* buf[i] = rank's input value at index i, for i < count. */
void data_fill(const bench_pattern_t *p, void *buf, size_t count, int rank);
/* Mismatches of buf against the reduction over all ranks; label names them on stderr. */
uint64_t data_check_reduce(const bench_pattern_t *p, const void *buf, size_t count,
                           const char *label);
/* Mismatches of buf against rank's input values. */
uint64_t data_check_input(const bench_pattern_t *p, const void *buf, size_t count, int rank,
                          const char *label);
/* As the two above, for the input indices first .. first + count - 1 (buf[0] is index first). */
uint64_t data_check_reduce_at(const bench_pattern_t *p, const void *buf, size_t count, size_t first,
                              const char *label);
uint64_t data_check_input_at(const bench_pattern_t *p, const void *buf, size_t count, int rank,
                             size_t first, const char *label);
/* Mismatches in the output of one call of p->coll: count as in the call (per rank
 * for reducescatter, per block for allgather and alltoall), blocks of count *
 * elemsize bytes; root for broadcast and reduce (unchecked on other ranks). */
uint64_t data_check_output(const bench_pattern_t *p, const void *out, size_t count, size_t elemsize,
                           int rank, int root, const char *label);

/* One table row; mode 0 is out-of-place, mode 1 in-place. */
typedef struct {
    size_t bytes;
    size_t elems;
    int modes; /* 1 when in-place is not measured (sendrecv) */
    double time_us[2];
    int iters[2]; /* timed calls per mode (fewer than -n under -T) */
    double algbw[2];
    double busbw[2];
    uint64_t wrong[2];
} bench_row_t;

typedef struct {
    int pid;
    char host[60];
} bench_host_t;

void report_header(FILE *f, const bench_opts_t *o, int nranks, const bench_host_t *hosts);
void report_row(FILE *f, const bench_opts_t *o, const bench_row_t *row);
/* report_row with root in the root column (report_row prints -1). */
void report_row_root(FILE *f, const bench_opts_t *o, const bench_row_t *row, int root);
void report_footer(FILE *f, const bench_opts_t *o, uint64_t wrong, double avg_busbw);
/* Wrong elements over every row and mode, and the mean busbw (nccl-tests' "Avg bus bandwidth"). */
void report_totals(const bench_row_t *rows, size_t nrows, uint64_t *wrong, double *avg_busbw);
/* Returns 0, or -1 if writing failed (errno set). */
int report_json(FILE *f, const bench_opts_t *o, int nranks, const bench_row_t *rows, size_t nrows,
                uint64_t wrong, double avg_busbw);
/* report_json with root as every row's root (report_json writes -1). */
int report_json_root(FILE *f, const bench_opts_t *o, int nranks, const bench_row_t *rows,
                     size_t nrows, uint64_t wrong, double avg_busbw, int root);

/*
 * p2p (p2p.c): the library's calls that the point-to-point steps use; each
 * ends the job on an error, as peer.h's do.  window posts nsend sends of
 * sbuf and nrecv receives into rbuf, count elements each, with peer, all at
 * once, and returns when every one is done.
 */
typedef struct {
    void *ctx;
    void (*send)(void *ctx, const void *buf, size_t count, int peer);
    void (*recv)(void *ctx, void *buf, size_t count, int peer);
    void (*window)(void *ctx, const void *sbuf, int nsend, void *rbuf, int nrecv, size_t count,
                   int peer);
    void (*barrier)(void *ctx);
    void (*max_f64)(void *ctx, double *v, int n);
    void (*sum_u64)(void *ctx, uint64_t *v, int n);
} p2p_ops_t;

typedef struct {
    const bench_opts_t *o;
    const p2p_ops_t *ops;
    const bench_pattern_t *pattern;
    int rank;
    int nranks;
    size_t elemsize;
    char *sendbuf; /* both hold a whole message */
    char *recvbuf;
} p2p_ctx_t;

typedef struct {
    size_t bytes;
    size_t elems;
    int window;        /* messages in flight in the bandwidth steps */
    double latency_us; /* half a round trip */
    double bw;         /* GB/s, rank 0 to rank 1 */
    double bibw;       /* GB/s, both ways together */
    uint64_t wrong;
} p2p_row_t;

/* The window used at bytes: -W, fewer where -W messages would exceed 128 MiB. */
int p2p_window(const bench_opts_t *o, size_t bytes);
/*
 * Every size from -b to -e on every rank (ranks 0 and 1 exchange, all agree on
 * the rows; rank 0 prints them): warm-up as nccl-tests, then per size an
 * untimed and -n timed repetitions of each step and, with -c 1, one checked
 * message each way.  *rows is malloc'd; returns how many.
 */
size_t p2p_run(const p2p_ctx_t *p, p2p_row_t **rows);
void report_p2p_header(FILE *f, const bench_opts_t *o, int nranks, const bench_host_t *hosts);
void report_p2p_row(FILE *f, const bench_opts_t *o, const p2p_row_t *row);
/* Wrong elements over the rows, and their mean bandwidth (for report_footer). */
void report_p2p_totals(const p2p_row_t *rows, size_t nrows, uint64_t *wrong, double *avg_bw);
int report_p2p_json(FILE *f, const bench_opts_t *o, int nranks, const p2p_row_t *rows, size_t nrows,
                    uint64_t wrong, double avg_bw);

#endif /* JACCL_BENCH_H */
