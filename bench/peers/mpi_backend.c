/*
 * peer.h over MPI: MPI_Allreduce, MPI_Allgather, MPI_Reduce_scatter_block,
 * MPI_Bcast, MPI_Reduce, MPI_Alltoall, MPI_Send/MPI_Recv on MPI_COMM_WORLD.
 * Built once per MPI found (Open MPI, MPICH); errors abort the job
 * (MPI_ERRORS_ARE_FATAL).
 */
#include "peer.h"

#include <limits.h>
#include <mpi.h>
#include <string.h>

#ifndef MPI_FLOAT16
#ifdef MPIX_C_FLOAT16
#define MPI_FLOAT16 MPIX_C_FLOAT16
#endif
#endif

static int my_rank;

const char *peer_library(void)
{
#if defined(OPEN_MPI)
#define STR_(x) #x
#define STR(x)  STR_(x)
    return "Open MPI " STR(OMPI_MAJOR_VERSION) "." STR(OMPI_MINOR_VERSION) "." STR(
        OMPI_RELEASE_VERSION);
#elif defined(MPICH_VERSION)
    return "MPICH " MPICH_VERSION;
#else
    return "MPI";
#endif
}

void peer_usage(FILE *f, const char *prog)
{
    fprintf(f,
            "COLLECTIVE: allreduce (MPI_Allreduce), allgather (MPI_Allgather), reducescatter\n"
            "            (MPI_Reduce_scatter_block), broadcast (MPI_Bcast), reduce\n"
            "            (MPI_Reduce), alltoall (MPI_Alltoall), sendrecv (MPI_Send/MPI_Recv\n"
            "            to the next rank) or p2p (ranks 0 and 1: MPI_Send/MPI_Recv\n"
            "            ping-pong, MPI_Isend/MPI_Irecv windows); in place with MPI_IN_PLACE\n"
            "Start it with this MPI's launcher, e.g. mpiexec -n 2 %s allreduce.\n",
            prog);
}

void peer_init(int *argc, char ***argv, int *rank, int *nranks)
{
    MPI_Init(argc, argv);
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    MPI_Comm_size(MPI_COMM_WORLD, nranks);
    my_rank = *rank;
}

/* MPI_DATATYPE_NULL for types this MPI lacks. */
static MPI_Datatype mpi_type(jaccl_dtype_t dtype)
{
    switch (dtype) {
    case JACCL_INT8:
        return MPI_INT8_T;
    case JACCL_UINT8:
        return MPI_UINT8_T;
    case JACCL_INT32:
        return MPI_INT32_T;
    case JACCL_UINT32:
        return MPI_UINT32_T;
    case JACCL_INT64:
        return MPI_INT64_T;
    case JACCL_UINT64:
        return MPI_UINT64_T;
#ifdef MPI_FLOAT16
    case JACCL_FLOAT16:
        return MPI_FLOAT16;
#endif
    case JACCL_FLOAT32:
        return MPI_FLOAT;
    case JACCL_FLOAT64:
        return MPI_DOUBLE;
    default:
        return MPI_DATATYPE_NULL;
    }
}

/* MPI_OP_NULL for AVG, which MPI does not have. */
static MPI_Op mpi_op(jaccl_op_t op)
{
    switch (op) {
    case JACCL_SUM:
        return MPI_SUM;
    case JACCL_PROD:
        return MPI_PROD;
    case JACCL_MIN:
        return MPI_MIN;
    case JACCL_MAX:
        return MPI_MAX;
    default:
        return MPI_OP_NULL;
    }
}

size_t peer_elem_size(jaccl_dtype_t dtype)
{
    int size = 0;
    MPI_Datatype t = mpi_type(dtype);
    if (t == MPI_DATATYPE_NULL || MPI_Type_size(t, &size) != MPI_SUCCESS) return 0;
    return (size_t)size;
}

int peer_check_opts(const bench_opts_t *o, int verbose)
{
    char why[96] = "";
    size_t elemsize = peer_elem_size(o->dtype);
    if (elemsize == 0)
        snprintf(why, sizeof why, "no MPI datatype for %s", opts_dtype_name(o->dtype));
    else if (opts_coll_reduces(o->coll) && mpi_op(o->op) == MPI_OP_NULL)
        snprintf(why, sizeof why, "no MPI reduction for %s", opts_op_name(o));
    else if (o->maxbytes / elemsize > (size_t)INT_MAX)
        snprintf(why, sizeof why, "-e %zu is more elements than an MPI count holds", o->maxbytes);
    if (why[0] == '\0') return 0;
    if (verbose) fprintf(stderr, "%s: %s\n", peer_library(), why);
    return 2;
}

/* MPI has MPI_IN_PLACE for every collective measured. */
int peer_in_place(const bench_opts_t *o)
{
    (void)o;
    return 1;
}

const char *peer_note(const bench_opts_t *o)
{
    (void)o;
    return NULL;
}

static void check_count(size_t count)
{
    if (count <= (size_t)INT_MAX) return;
    fprintf(stderr, "mpi-bench: rank %d: count %zu does not fit an MPI int\n", my_rank, count);
    MPI_Abort(MPI_COMM_WORLD, 1);
}

void peer_allreduce(const void *in, void *out, size_t count, const bench_opts_t *o)
{
    check_count(count);
    MPI_Allreduce(in != NULL ? in : MPI_IN_PLACE, out, (int)count, mpi_type(o->dtype),
                  mpi_op(o->op), MPI_COMM_WORLD);
}

void peer_allgather(const void *in, void *out, size_t count, const bench_opts_t *o)
{
    MPI_Datatype t = mpi_type(o->dtype);
    check_count(count);
    /* With MPI_IN_PLACE the send count and type are ignored. */
    MPI_Allgather(in != NULL ? in : MPI_IN_PLACE, (int)count, t, out, (int)count, t,
                  MPI_COMM_WORLD);
}

/* In place the result lands in out's first block, as MPI_IN_PLACE defines it. */
void peer_reduce_scatter(const void *in, void *out, size_t count, const bench_opts_t *o)
{
    check_count(count);
    MPI_Reduce_scatter_block(in != NULL ? in : MPI_IN_PLACE, out, (int)count, mpi_type(o->dtype),
                             mpi_op(o->op), MPI_COMM_WORLD);
}

/* MPI_Bcast has one buffer: out of place the root sends from in and copies it to its
 * own out, which jaccl's and Gloo's broadcast do too. */
void peer_broadcast(const void *in, void *out, size_t count, const bench_opts_t *o)
{
    MPI_Datatype t = mpi_type(o->dtype);
    int root = my_rank == o->root;
    check_count(count);
    MPI_Bcast(root && in != NULL ? (void *)in : out, (int)count, t, o->root, MPI_COMM_WORLD);
    if (root && in != NULL) memcpy(out, in, count * peer_elem_size(o->dtype));
}

/* MPI_IN_PLACE is the root's only; in place elsewhere the input is out and the receive
 * buffer, not significant there, is NULL (MPI forbids passing out twice). */
void peer_reduce(const void *in, void *out, size_t count, const bench_opts_t *o)
{
    const void *send = in;
    void *recv = out;
    if (in == NULL && my_rank == o->root)
        send = MPI_IN_PLACE;
    else if (in == NULL) {
        send = out;
        recv = NULL;
    }
    check_count(count);
    MPI_Reduce(send, recv, (int)count, mpi_type(o->dtype), mpi_op(o->op), o->root, MPI_COMM_WORLD);
}

void peer_alltoall(const void *in, void *out, size_t count, const bench_opts_t *o)
{
    MPI_Datatype t = mpi_type(o->dtype);
    check_count(count);
    /* With MPI_IN_PLACE the send count and type are ignored. */
    MPI_Alltoall(in != NULL ? in : MPI_IN_PLACE, (int)count, t, out, (int)count, t, MPI_COMM_WORLD);
}

void peer_send(const void *buf, size_t count, const bench_opts_t *o, int peer)
{
    check_count(count);
    MPI_Send(buf, (int)count, mpi_type(o->dtype), peer, 0, MPI_COMM_WORLD);
}

void peer_recv(void *buf, size_t count, const bench_opts_t *o, int peer)
{
    check_count(count);
    MPI_Recv(buf, (int)count, mpi_type(o->dtype), peer, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
}

/* Receives first, as jaccl-bench posts them. */
void peer_window(const void *sbuf, int nsend, void *rbuf, int nrecv, size_t count,
                 const bench_opts_t *o, int peer)
{
    static MPI_Status status[2 * 1024]; /* not MPI_STATUSES_IGNORE: gcc 12 warns on it */
    MPI_Request req[2 * 1024];
    int n = 0;
    check_count(count);
    for (int i = 0; i < nrecv; i++)
        MPI_Irecv(rbuf, (int)count, mpi_type(o->dtype), peer, 1, MPI_COMM_WORLD, &req[n++]);
    for (int i = 0; i < nsend; i++)
        MPI_Isend(sbuf, (int)count, mpi_type(o->dtype), peer, 1, MPI_COMM_WORLD, &req[n++]);
    MPI_Waitall(n, req, status);
}

void peer_barrier(void)
{
    MPI_Barrier(MPI_COMM_WORLD);
}

void peer_max_f64(double *v, int n)
{
    MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
}

void peer_sum_u64(uint64_t *v, int n)
{
    MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
}

int32_t peer_max_i32(int32_t v)
{
    MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT32_T, MPI_MAX, MPI_COMM_WORLD);
    return v;
}

void peer_allgather_bytes(const void *in, void *out, size_t bytes)
{
    check_count(bytes);
    MPI_Allgather(in, (int)bytes, MPI_BYTE, out, (int)bytes, MPI_BYTE, MPI_COMM_WORLD);
}

void peer_finalize(void)
{
    MPI_Finalize();
}
