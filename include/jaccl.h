/*
 * jaccl: collective communication across processes and machines.
 *
 * Every call returns a jaccl_result_t.  On failure, jaccl_last_error(comm)
 * returns a message naming the rank, the peer, the call and what to do.
 * Collectives must be called by every rank of the communicator, in the same
 * order, with the same count, dtype and op.  A communicator is not thread
 * safe: one thread at a time may call into it.
 */
#ifndef JACCL_H
#define JACCL_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(JACCL_BUILDING) && defined(__GNUC__)
#define JACCL_API __attribute__((visibility("default")))
#else
#define JACCL_API
#endif

/* One list gives both the enum names and their strings, so they never drift. */
#define JACCL_RESULT_LIST(X)                                                                       \
    X(JACCL_SUCCESS, "success")                                                                    \
    X(JACCL_ERR_INVALID_ARGUMENT, "invalid argument")                                              \
    X(JACCL_ERR_INVALID_USAGE, "invalid usage")                                                    \
    X(JACCL_ERR_CONFIG, "configuration error")                                                     \
    X(JACCL_ERR_SYSTEM, "system call failed")                                                      \
    X(JACCL_ERR_REMOTE, "remote rank failed or closed its connection")                             \
    X(JACCL_ERR_TIMEOUT, "timed out")                                                              \
    X(JACCL_ERR_UNSUPPORTED, "unsupported")                                                        \
    X(JACCL_ERR_NOMEM, "out of memory")                                                            \
    X(JACCL_ERR_INTERNAL, "internal error")                                                        \
    X(JACCL_ERR_ABORTED, "communicator was aborted")

#define JACCL_RESULT_ENUM_(name, str) name,
typedef enum { JACCL_RESULT_LIST(JACCL_RESULT_ENUM_) JACCL_RESULT_COUNT } jaccl_result_t;
#undef JACCL_RESULT_ENUM_

typedef enum {
    JACCL_INT8,
    JACCL_UINT8,
    JACCL_INT32,
    JACCL_UINT32,
    JACCL_INT64,
    JACCL_UINT64,
    JACCL_FLOAT16,
    JACCL_BFLOAT16,
    JACCL_FLOAT32,
    JACCL_FLOAT64,
    JACCL_BOOL, /* one byte, 0 or not; SUM/MAX are OR, PROD/MIN are AND; no AVG */
    JACCL_INT16,
    JACCL_UINT16,
    JACCL_COMPLEX64, /* two float32 (real, imaginary); SUM, PROD, AVG only */
    JACCL_DTYPE_COUNT
} jaccl_dtype_t;

typedef enum { JACCL_SUM, JACCL_PROD, JACCL_MIN, JACCL_MAX, JACCL_AVG, JACCL_OP_COUNT } jaccl_op_t;

/* Opaque communicator handle. */
typedef struct jaccl_comm *jaccl_comm_t;

#define JACCL_VERSION_MAJOR 0
#define JACCL_VERSION_MINOR 2
#define JACCL_VERSION_PATCH 0
#define JACCL_VERSION_CODE                                                                         \
    (JACCL_VERSION_MAJOR * 10000 + JACCL_VERSION_MINOR * 100 + JACCL_VERSION_PATCH)

/* The library's version, "MAJOR.MINOR.PATCH"; may differ from the header's macros. */
JACCL_API const char *jaccl_version(void);

/*
 * An all-gather supplied by an embedder that already has a rendezvous (as
 * MLX's all_gather_factory): all[r * len ...] = rank r's mine[len], on every
 * rank.  Called collectively during init only.  Return JACCL_SUCCESS or an error.
 */
typedef jaccl_result_t (*jaccl_allgather_fn)(const void *mine, void *all, size_t len, void *user);

/* Explicit configuration; start from JACCL_CONFIG_INIT so new fields get defaults. */
typedef struct jaccl_config {
    unsigned version;             /* JACCL_CONFIG_VERSION */
    int rank, size;               /* both -1: from the environment */
    const char *coordinator;      /* "host:port"; NULL: JACCL_COORDINATOR */
    const char *transport;        /* NULL: JACCL_TRANSPORT, else "auto" */
    const char *algo;             /* NULL: JACCL_ALGO, else "auto" */
    double timeout_s;             /* <= 0: JACCL_TIMEOUT, else 120 */
    jaccl_allgather_fn allgather; /* set: replaces the coordinator */
    void *allgather_user;         /* passed to allgather */
    const char *listen_host;      /* with allgather: the address peers reach us at;
                                     NULL: this host's name */
} jaccl_config_t;

#define JACCL_CONFIG_VERSION 1
#define JACCL_CONFIG_INIT                                                                          \
    {                                                                                              \
        JACCL_CONFIG_VERSION, -1, -1, NULL, NULL, NULL, 0.0, NULL, NULL, NULL                      \
    }

/*
 * Create a communicator from config (fields left at their defaults are read
 * from the environment, as jaccl_comm_init_env does).  Collective.  *comm is
 * set only on success.  Errors: as jaccl_comm_init_env; JACCL_ERR_INVALID_ARGUMENT
 * for an unknown config version.
 */
JACCL_API jaccl_result_t jaccl_comm_init(jaccl_comm_t *comm, const jaccl_config_t *config);

/*
 * Create a communicator from the environment: JACCL_RANK (or MLX_RANK,
 * OMPI_COMM_WORLD_RANK, PMI_RANK, SLURM_PROCID), JACCL_SIZE (or the matching
 * *_SIZE/SLURM_NTASKS), JACCL_COORDINATOR=host:port (or MLX_JACCL_COORDINATOR),
 * JACCL_TRANSPORT, JACCL_ALGO, JACCL_TIMEOUT, JACCL_TCP_SOCKETS.
 * Collective over all ranks.  *comm is set only on success.
 * Errors: JACCL_ERR_CONFIG (missing or malformed variable), JACCL_ERR_TIMEOUT
 * (coordinator or a peer unreachable before JACCL_TIMEOUT), JACCL_ERR_SYSTEM,
 * JACCL_ERR_REMOTE, JACCL_ERR_NOMEM.  Details: jaccl_last_error(NULL).
 */
JACCL_API jaccl_result_t jaccl_comm_init_env(jaccl_comm_t *comm);

/*
 * Split comm into groups of the ranks that pass the same color (>= 0), ranked
 * by key then by rank in comm.  Collective over comm.  A rank passing
 * JACCL_SPLIT_NOCOLOR gets *newcomm = NULL.  The new communicator shares
 * comm's links; it stays valid after comm is destroyed.  Because they share
 * links, do not run operations on comm and newcomm from two threads at once
 * (their progress threads included: wait for their requests first).
 */
#define JACCL_SPLIT_NOCOLOR (-1)
JACCL_API jaccl_result_t jaccl_comm_split(jaccl_comm_t comm, int color, int key,
                                          jaccl_comm_t *newcomm);

/*
 * Close every link and free the communicator.  NULL is accepted.  The last
 * communicator on a set of links first reads the collective headers peers
 * still owe it (see JACCL_ERR_INVALID_USAGE below), waiting for a peer at
 * most JACCL_TIMEOUT, and logs a mismatch or a failure there as a warning.
 */
JACCL_API jaccl_result_t jaccl_comm_destroy(jaccl_comm_t comm);

/*
 * Make the call blocked on comm (in any thread, its progress thread
 * included) return JACCL_ERR_ABORTED within a few milliseconds; every later
 * call on comm returns JACCL_ERR_ABORTED at once, and only jaccl_comm_destroy
 * may follow.  Communicators split from comm (or comm's parent) share its
 * links and are aborted with it.  Safe to call from another thread and from
 * a signal handler (it only sets a flag).  Errors: JACCL_ERR_INVALID_ARGUMENT
 * for NULL.
 */
JACCL_API jaccl_result_t jaccl_comm_abort(jaccl_comm_t comm);

/* This process's rank in [0, size), or -1 for a NULL comm. */
JACCL_API int jaccl_comm_rank(jaccl_comm_t comm);

/* Number of ranks, or -1 for a NULL comm. */
JACCL_API int jaccl_comm_size(jaccl_comm_t comm);

/* Static string naming a result code; never NULL. */
JACCL_API const char *jaccl_result_string(jaccl_result_t result);

/*
 * Detail of the last failed call on comm ("" if none).  With a NULL comm: the
 * calling thread's last failed jaccl_comm_init_env.  Valid until the next call.
 */
JACCL_API const char *jaccl_last_error(jaccl_comm_t comm);

/*
 * Every collective and send/recv below may also return JACCL_ERR_INVALID_USAGE
 * (another rank made a different call: other collective, count, dtype, op or
 * root, or a recv of another size than the send; the message names both
 * sides) and JACCL_ERR_ABORTED (jaccl_comm_abort).  After those, REMOTE and
 * TIMEOUT the communicator refuses further calls: destroy it.
 * A rank that receives nothing from the other rank in that call (a
 * broadcast's root, a reduce's other ranks) may return success and get the
 * error from a later call: the first that receives from that rank, or that
 * runs while its header arrives; a rank runs at most 8 collectives ahead of
 * a rank it only sends to.
 */

/*
 * recvbuf[i] = op over all ranks of sendbuf[i], for i < count.  Every rank gets
 * the same bits.  In place when sendbuf == recvbuf; otherwise the buffers must
 * not overlap.  count == 0 is a no-op.  AVG divides the sum by the size
 * (integers truncate toward zero).  Integer sums wrap.
 * Errors: JACCL_ERR_INVALID_ARGUMENT (NULL buffer with count > 0, bad dtype or
 * op, overlapping buffers), JACCL_ERR_REMOTE, JACCL_ERR_TIMEOUT.
 */
JACCL_API jaccl_result_t jaccl_allreduce(const void *sendbuf, void *recvbuf, size_t count,
                                         jaccl_dtype_t dtype, jaccl_op_t op, jaccl_comm_t comm);

/*
 * recvbuf[r * sendcount + i] = sendbuf of rank r [i].  recvbuf holds
 * size * sendcount elements.  In place when
 * sendbuf == recvbuf + rank * sendcount * elemsize.
 * Errors: as jaccl_allreduce.
 */
JACCL_API jaccl_result_t jaccl_allgather(const void *sendbuf, void *recvbuf, size_t sendcount,
                                         jaccl_dtype_t dtype, jaccl_comm_t comm);

/*
 * Send count elements to peer; returns when buf may be reused.  Must match a
 * jaccl_recv of the same count and dtype on peer.  Messages between a pair of
 * ranks arrive in the order they were sent.
 * Errors: JACCL_ERR_INVALID_ARGUMENT (peer out of range or self, NULL buffer),
 * JACCL_ERR_REMOTE, JACCL_ERR_TIMEOUT.
 */
JACCL_API jaccl_result_t jaccl_send(const void *buf, size_t count, jaccl_dtype_t dtype, int peer,
                                    jaccl_comm_t comm);

/* Receive count elements from peer into buf.  Errors: as jaccl_send. */
JACCL_API jaccl_result_t jaccl_recv(void *buf, size_t count, jaccl_dtype_t dtype, int peer,
                                    jaccl_comm_t comm);

/*
 * recvbuf (recvcount elements) = this rank's block of the reduction of every
 * rank's sendbuf (size * recvcount elements, block r for rank r).  In place
 * when recvbuf == sendbuf + rank * recvcount * elemsize.  Every op is allowed.
 * Errors: as jaccl_allreduce.
 */
JACCL_API jaccl_result_t jaccl_reduce_scatter(const void *sendbuf, void *recvbuf, size_t recvcount,
                                              jaccl_dtype_t dtype, jaccl_op_t op,
                                              jaccl_comm_t comm);

/*
 * recvbuf = root's sendbuf on every rank.  sendbuf is read on the root only
 * (it may be NULL elsewhere); in place when sendbuf == recvbuf on the root.
 * Errors: as jaccl_allreduce, and root out of range.
 */
JACCL_API jaccl_result_t jaccl_broadcast(const void *sendbuf, void *recvbuf, size_t count,
                                         jaccl_dtype_t dtype, int root, jaccl_comm_t comm);

/*
 * The root's recvbuf = op over every rank's sendbuf.  recvbuf is written on
 * the root only (it may be NULL elsewhere); in place when sendbuf == recvbuf
 * on the root.  Errors: as jaccl_broadcast.
 */
JACCL_API jaccl_result_t jaccl_reduce(const void *sendbuf, void *recvbuf, size_t count,
                                      jaccl_dtype_t dtype, jaccl_op_t op, int root,
                                      jaccl_comm_t comm);

/* Returns once every rank has called it.  Errors: JACCL_ERR_REMOTE, JACCL_ERR_TIMEOUT. */
JACCL_API jaccl_result_t jaccl_barrier(jaccl_comm_t comm);

/*
 * Block p of recvbuf = block (this rank) of rank p's sendbuf; blocks of count
 * elements, size blocks each side.  In place when sendbuf == recvbuf (costs a
 * copy of the buffer); otherwise they must not overlap.  Errors: as jaccl_allreduce.
 */
JACCL_API jaccl_result_t jaccl_alltoall(const void *sendbuf, void *recvbuf, size_t count,
                                        jaccl_dtype_t dtype, jaccl_comm_t comm);

/*
 * Group point-to-point calls: between jaccl_group_start() and
 * jaccl_group_end(), jaccl_send and jaccl_recv are recorded, not run, and
 * return JACCL_SUCCESS; jaccl_group_end runs them all at once, so a halo
 * exchange or a pipeline boundary cannot deadlock whatever the order and
 * size.  Buffers must stay valid until jaccl_group_end returns.  Groups nest
 * (only the outermost end runs them) and are per thread.  Collectives inside a
 * group return JACCL_ERR_INVALID_USAGE.  A group may span communicators,
 * also ones sharing links (split from one another): where two of them send
 * to the same peer, the messages go in the order their communicators first
 * appear in the group, so both ranks must record them in that order.
 * jaccl_group_end errors: the first failing call's, with its detail in
 * jaccl_last_error of its communicator; JACCL_ERR_INVALID_USAGE without a start.
 */
JACCL_API jaccl_result_t jaccl_group_start(void);
JACCL_API jaccl_result_t jaccl_group_end(void);

/*
 * Non-blocking calls.  Each starts the operation and sets *request; the
 * operation runs on the communicator's progress thread (started by the first
 * such call), so the caller can compute meanwhile.  Collectives on a
 * communicator run in the order they were issued, blocking calls included,
 * each after the sends and receives issued before it.  Sends and receives
 * start when the caller next waits, tests or issues a collective, then
 * progress independently: each completes when its peer's matching call does
 * (messages between two ranks match in issue order, per direction), so
 * isend/irecv pairs cannot deadlock, whatever order they are issued, tested
 * or waited for in.
 * Buffers must stay untouched until the request completes.  Wait for every
 * request before jaccl_comm_destroy.  Errors at issue: as the blocking form
 * (argument errors are reported when the request completes).
 */
typedef struct jaccl_request *jaccl_request_t;

JACCL_API jaccl_result_t jaccl_iallreduce(const void *sendbuf, void *recvbuf, size_t count,
                                          jaccl_dtype_t dtype, jaccl_op_t op, jaccl_comm_t comm,
                                          jaccl_request_t *request);
JACCL_API jaccl_result_t jaccl_iallgather(const void *sendbuf, void *recvbuf, size_t sendcount,
                                          jaccl_dtype_t dtype, jaccl_comm_t comm,
                                          jaccl_request_t *request);
JACCL_API jaccl_result_t jaccl_ireduce_scatter(const void *sendbuf, void *recvbuf, size_t recvcount,
                                               jaccl_dtype_t dtype, jaccl_op_t op,
                                               jaccl_comm_t comm, jaccl_request_t *request);
JACCL_API jaccl_result_t jaccl_ibroadcast(const void *sendbuf, void *recvbuf, size_t count,
                                          jaccl_dtype_t dtype, int root, jaccl_comm_t comm,
                                          jaccl_request_t *request);
JACCL_API jaccl_result_t jaccl_ialltoall(const void *sendbuf, void *recvbuf, size_t count,
                                         jaccl_dtype_t dtype, jaccl_comm_t comm,
                                         jaccl_request_t *request);
JACCL_API jaccl_result_t jaccl_isend(const void *buf, size_t count, jaccl_dtype_t dtype, int peer,
                                     jaccl_comm_t comm, jaccl_request_t *request);
JACCL_API jaccl_result_t jaccl_irecv(void *buf, size_t count, jaccl_dtype_t dtype, int peer,
                                     jaccl_comm_t comm, jaccl_request_t *request);

/*
 * *done = 1 and the operation's result if request completed (the request is
 * then freed), else *done = 0 and JACCL_SUCCESS.
 */
JACCL_API jaccl_result_t jaccl_test(jaccl_request_t request, int *done);
/* Wait for request (no longer than JACCL_TIMEOUT per operation), free it, return its result. */
JACCL_API jaccl_result_t jaccl_wait(jaccl_request_t request);
/* jaccl_wait on each of n requests; returns the first failure. */
JACCL_API jaccl_result_t jaccl_wait_all(int n, jaccl_request_t *requests);

/* Size in bytes of one element of dtype, or 0 for an unknown dtype. */
JACCL_API size_t jaccl_dtype_size(jaccl_dtype_t dtype);

#ifdef __cplusplus
}
#endif

#endif /* JACCL_H */
