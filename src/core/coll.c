/* The collectives and point-to-point calls: argument checks, then the selected algorithm. */
#include "core/comm.h"
#include "util/copy.h"
#include "util/log.h"
#include "util/time.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Common entry of every call: name it, refuse a failed communicator, set the deadline. */
jaccl_result_t jaccl_call_begin(struct jaccl_comm *c, const char *call)
{
    c->err.call = call;
    c->err.msg[0] = '\0';
    if (jaccl_group_active() && strcmp(call, "jaccl_send") != 0 && strcmp(call, "jaccl_recv") != 0)
        return jaccl_err_set(&c->err, JACCL_ERR_INVALID_USAGE,
                             "only jaccl_send and jaccl_recv "
                             "may be called between jaccl_group_start and jaccl_group_end");
    if (jaccl_tp_aborted(c->abort_flag))
        return jaccl_err_set(&c->err, JACCL_ERR_ABORTED,
                             "the communicator was aborted (jaccl_comm_abort); destroy it");
    if (c->failed != JACCL_SUCCESS)
        return jaccl_err_set(&c->err, c->failed,
                             "the communicator failed earlier and cannot be "
                             "used; destroy it (first error: %s)",
                             c->failed_msg);
    c->actx.deadline_ns = jaccl_deadline_ns((int64_t)(c->env.timeout_s * 1e9));
    return JACCL_SUCCESS;
}

/* After a failed transfer the links are out of step: nothing more may run on them. */
jaccl_result_t jaccl_call_end(struct jaccl_comm *c, jaccl_result_t rc)
{
    if (rc == JACCL_SUCCESS && c->actx.hdr_mode == JACCL_HDR_COLL) /* nothing moved: check anyway */
        rc = jaccl_algo_run(&c->actx, NULL, 0, NULL, 0);
    c->actx.hdr_mode = JACCL_HDR_OFF;
    if (rc == JACCL_SUCCESS || rc == JACCL_ERR_INVALID_ARGUMENT || rc == JACCL_ERR_UNSUPPORTED)
        return rc;
    if (c->failed == JACCL_SUCCESS) {
        c->failed = rc;
        snprintf(c->failed_msg, sizeof(c->failed_msg), "%s", c->err.msg);
        /* A mismatch fails above the transport: peers reading our memory in place must stop. */
        if (c->tp && c->tp->ops->failed) c->tp->ops->failed(c->tp);
        jaccl_owed_broken(c->actx.owed, rc);
    }
    return rc;
}

static int overlaps(const void *a, size_t alen, const void *b, size_t blen)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return alen && blen && x < y + blen && y < x + alen;
}

static jaccl_result_t check_buffers(struct jaccl_comm *c, const void *s, const void *r,
                                    size_t count, jaccl_dtype_t dtype, size_t *bytes)
{
    size_t es = jaccl_dtype_size(dtype);
    if (es == 0)
        return jaccl_err_set(&c->err, JACCL_ERR_INVALID_ARGUMENT,
                             "dtype %d is not a "
                             "jaccl_dtype_t",
                             (int)dtype);
    size_t all; /* count elements from every rank must be addressable (a multiply, not a divide) */
    if (__builtin_mul_overflow(count, es * (size_t)c->size, &all))
        return jaccl_err_set(&c->err, JACCL_ERR_INVALID_ARGUMENT, "count %zu is too large", count);
    if (count > 0 && (!s || !r))
        return jaccl_err_set(&c->err, JACCL_ERR_INVALID_ARGUMENT, "%s is NULL with count %zu",
                             !s ? "sendbuf" : "recvbuf", count);
    *bytes = count * es;
    return JACCL_SUCCESS;
}

/*
 * The ops each dtype has, bit op of entry dtype (bit 31: entry filled in):
 * fixed by the kernels, so looked up once rather than on every reduction.
 */
static _Atomic uint32_t dtype_ops[JACCL_DTYPE_COUNT];

/* Entry dtype of dtype_ops, filled in on first use (out of line: once per dtype). */
__attribute__((cold, noinline)) static uint32_t dtype_ops_fill(jaccl_dtype_t dtype)
{
    uint32_t m = 1u << 31;
    for (int o = 0; o < JACCL_OP_COUNT; o++)
        if (jaccl_reduce_get(dtype, (jaccl_op_t)o)) m |= 1u << o;
    atomic_store_explicit(&dtype_ops[dtype], m, memory_order_relaxed);
    return m;
}

static int op_defined(jaccl_dtype_t dtype, jaccl_op_t op)
{
    uint32_t m = atomic_load_explicit(&dtype_ops[dtype], memory_order_relaxed);
    if (!m) m = dtype_ops_fill(dtype);
    return (int)(m >> op & 1);
}

/* After check_buffers: dtype is valid. */
static jaccl_result_t check_op(struct jaccl_comm *c, jaccl_dtype_t dtype, jaccl_op_t op)
{
    static const char *const names[] = {"sum", "prod", "min", "max", "avg"};
    if ((unsigned)op >= JACCL_OP_COUNT)
        return jaccl_err_set(&c->err, JACCL_ERR_INVALID_ARGUMENT, "op %d is not a jaccl_op_t",
                             (int)op);
    if (!op_defined(dtype, op))
        return jaccl_err_set(&c->err, JACCL_ERR_UNSUPPORTED, "op %s is not defined for dtype %d",
                             names[op], (int)dtype);
    return JACCL_SUCCESS;
}

static jaccl_result_t check_root(struct jaccl_comm *c, int root)
{
    if (root >= 0 && root < c->size) return JACCL_SUCCESS;
    return jaccl_err_set(&c->err, JACCL_ERR_INVALID_ARGUMENT,
                         "root %d is out of range (ranks "
                         "are 0..%d)",
                         root, c->size - 1);
}

/* Refuse buffers that overlap other than in the documented in-place way. */
static jaccl_result_t check_inplace(struct jaccl_comm *c, int inplace, const void *s, size_t slen,
                                    const void *r, size_t rlen, const char *rule)
{
    if (inplace || !overlaps(s, slen, r, rlen)) return JACCL_SUCCESS;
    return jaccl_err_set(&c->err, JACCL_ERR_INVALID_ARGUMENT,
                         "sendbuf and recvbuf overlap "
                         "without being in place (in place means %s)",
                         rule);
}

/*
 * Arm the call's header: the algorithm's first step exchanges it with every
 * rank, so ranks in different calls fail instead of mixing their bytes.
 */
static void coll_header(struct jaccl_comm *c, int kind, size_t count, jaccl_dtype_t dtype,
                        jaccl_op_t op, int root)
{
    c->actx.hdr = (struct jaccl_hdr){.kind = kind,
                                     .dtype = (int)dtype,
                                     .op = (int)op,
                                     .root = root,
                                     .count = count,
                                     .seq = ++c->actx.coll_seq};
    c->actx.hdr_mode = JACCL_HDR_COLL;
}

static jaccl_op_t algo_op(jaccl_op_t op)
{
    return op == JACCL_AVG ? JACCL_SUM : op;
}

JACCL_API jaccl_result_t jaccl_allreduce(const void *sendbuf, void *recvbuf, size_t count,
                                         jaccl_dtype_t dtype, jaccl_op_t op, jaccl_comm_t comm)
{
    size_t bytes = 0;
    if (!comm) return JACCL_ERR_INVALID_ARGUMENT;
    if (jaccl_worker_active(comm))
        return jaccl_worker_call(comm, &(struct jaccl_call){JACCL_CALL_ALLREDUCE, sendbuf, recvbuf,
                                                            count, dtype, op, 0});
    jaccl_result_t rc = jaccl_call_begin(comm, "jaccl_allreduce");
    if (rc == JACCL_SUCCESS) rc = check_buffers(comm, sendbuf, recvbuf, count, dtype, &bytes);
    if (rc == JACCL_SUCCESS) rc = check_op(comm, dtype, op);
    if (rc == JACCL_SUCCESS)
        rc = check_inplace(comm, sendbuf == recvbuf, sendbuf, bytes, recvbuf, bytes,
                           "sendbuf == recvbuf");
    if (rc != JACCL_SUCCESS || count == 0) return rc;
    if (comm->size == 1) {
        if (sendbuf != recvbuf) jaccl_copy(recvbuf, sendbuf, bytes);
        return JACCL_SUCCESS;
    }
    coll_header(comm, JACCL_COLL_ALLREDUCE, count, dtype, op, 0);
    const struct jaccl_algo_ops *a = jaccl_select(comm, JACCL_COLL_ALLREDUCE, bytes);
    rc = a->allreduce(&comm->actx, sendbuf, recvbuf, count, dtype, algo_op(op));
    if (rc == JACCL_SUCCESS && op == JACCL_AVG)
        jaccl_reduce_scale(recvbuf, count, dtype, comm->size);
    return jaccl_call_end(comm, rc);
}

JACCL_API jaccl_result_t jaccl_allgather(const void *sendbuf, void *recvbuf, size_t sendcount,
                                         jaccl_dtype_t dtype, jaccl_comm_t comm)
{
    size_t bytes = 0;
    if (!comm) return JACCL_ERR_INVALID_ARGUMENT;
    if (jaccl_worker_active(comm))
        return jaccl_worker_call(comm, &(struct jaccl_call){JACCL_CALL_ALLGATHER, sendbuf, recvbuf,
                                                            sendcount, dtype, 0, 0});
    jaccl_result_t rc = jaccl_call_begin(comm, "jaccl_allgather");
    if (rc == JACCL_SUCCESS) rc = check_buffers(comm, sendbuf, recvbuf, sendcount, dtype, &bytes);
    const char *own = (const char *)recvbuf + (size_t)comm->rank * bytes;
    if (rc == JACCL_SUCCESS)
        rc =
            check_inplace(comm, sendbuf == own, sendbuf, bytes, recvbuf, bytes * (size_t)comm->size,
                          "sendbuf == recvbuf + rank * sendcount * elemsize");
    if (rc != JACCL_SUCCESS || sendcount == 0) return rc;
    if (comm->size == 1) {
        if (sendbuf != recvbuf) jaccl_copy(recvbuf, sendbuf, bytes);
        return JACCL_SUCCESS;
    }
    coll_header(comm, JACCL_COLL_ALLGATHER, sendcount, dtype, 0, 0);
    const struct jaccl_algo_ops *a = jaccl_select(comm, JACCL_COLL_ALLGATHER, bytes);
    return jaccl_call_end(comm, a->allgather(&comm->actx, sendbuf, recvbuf, bytes));
}

JACCL_API jaccl_result_t jaccl_reduce_scatter(const void *sendbuf, void *recvbuf, size_t recvcount,
                                              jaccl_dtype_t dtype, jaccl_op_t op, jaccl_comm_t comm)
{
    size_t bytes = 0;
    if (!comm) return JACCL_ERR_INVALID_ARGUMENT;
    if (jaccl_worker_active(comm))
        return jaccl_worker_call(comm, &(struct jaccl_call){JACCL_CALL_REDUCE_SCATTER, sendbuf,
                                                            recvbuf, recvcount, dtype, op, 0});
    jaccl_result_t rc = jaccl_call_begin(comm, "jaccl_reduce_scatter");
    if (rc == JACCL_SUCCESS) rc = check_buffers(comm, sendbuf, recvbuf, recvcount, dtype, &bytes);
    if (rc == JACCL_SUCCESS) rc = check_op(comm, dtype, op);
    const char *own = (const char *)sendbuf + (size_t)comm->rank * bytes;
    if (rc == JACCL_SUCCESS)
        rc = check_inplace(comm, recvbuf == own, sendbuf, bytes * (size_t)comm->size, recvbuf,
                           bytes, "recvbuf == sendbuf + rank * recvcount * elemsize");
    if (rc != JACCL_SUCCESS || recvcount == 0) return rc;
    if (comm->size == 1) {
        if (sendbuf != recvbuf) jaccl_copy(recvbuf, sendbuf, bytes);
        return JACCL_SUCCESS;
    }
    coll_header(comm, JACCL_COLL_REDUCE_SCATTER, recvcount, dtype, op, 0);
    const struct jaccl_algo_ops *a =
        jaccl_select(comm, JACCL_COLL_REDUCE_SCATTER, bytes * (size_t)comm->size);
    rc = a->reduce_scatter(&comm->actx, sendbuf, recvbuf, recvcount, dtype, algo_op(op));
    if (rc == JACCL_SUCCESS && op == JACCL_AVG)
        jaccl_reduce_scale(recvbuf, recvcount, dtype, comm->size);
    return jaccl_call_end(comm, rc);
}

JACCL_API jaccl_result_t jaccl_broadcast(const void *sendbuf, void *recvbuf, size_t count,
                                         jaccl_dtype_t dtype, int root, jaccl_comm_t comm)
{
    size_t bytes = 0;
    if (!comm) return JACCL_ERR_INVALID_ARGUMENT;
    if (jaccl_worker_active(comm))
        return jaccl_worker_call(comm, &(struct jaccl_call){JACCL_CALL_BROADCAST, sendbuf, recvbuf,
                                                            count, dtype, 0, root});
    jaccl_result_t rc = jaccl_call_begin(comm, "jaccl_broadcast");
    if (rc == JACCL_SUCCESS) rc = check_root(comm, root);
    const void *s = comm->rank == root ? sendbuf : recvbuf; /* others' sendbuf is unused */
    if (rc == JACCL_SUCCESS) rc = check_buffers(comm, s, recvbuf, count, dtype, &bytes);
    if (rc == JACCL_SUCCESS)
        rc = check_inplace(comm, s == recvbuf, s, bytes, recvbuf, bytes, "sendbuf == recvbuf");
    if (rc != JACCL_SUCCESS || count == 0) return rc;
    if (comm->size == 1) {
        if (s != recvbuf) jaccl_copy(recvbuf, s, bytes);
        return JACCL_SUCCESS;
    }
    coll_header(comm, JACCL_COLL_BROADCAST, count, dtype, 0, root);
    const struct jaccl_algo_ops *a = jaccl_select(comm, JACCL_COLL_BROADCAST, bytes);
    return jaccl_call_end(comm, a->broadcast(&comm->actx, s, recvbuf, bytes, root));
}

JACCL_API jaccl_result_t jaccl_reduce(const void *sendbuf, void *recvbuf, size_t count,
                                      jaccl_dtype_t dtype, jaccl_op_t op, int root,
                                      jaccl_comm_t comm)
{
    size_t bytes = 0;
    if (!comm) return JACCL_ERR_INVALID_ARGUMENT;
    if (jaccl_worker_active(comm))
        return jaccl_worker_call(comm, &(struct jaccl_call){JACCL_CALL_REDUCE, sendbuf, recvbuf,
                                                            count, dtype, op, root});
    jaccl_result_t rc = jaccl_call_begin(comm, "jaccl_reduce");
    if (rc == JACCL_SUCCESS) rc = check_root(comm, root);
    void *r = comm->rank == root ? recvbuf : (void *)sendbuf; /* others' recvbuf is unused */
    if (rc == JACCL_SUCCESS) rc = check_buffers(comm, sendbuf, r, count, dtype, &bytes);
    if (rc == JACCL_SUCCESS) rc = check_op(comm, dtype, op);
    if (rc == JACCL_SUCCESS)
        rc = check_inplace(comm, sendbuf == r, sendbuf, bytes, r, bytes, "sendbuf == recvbuf");
    if (rc != JACCL_SUCCESS || count == 0) return rc;
    if (comm->size == 1) {
        if (sendbuf != r) jaccl_copy(r, sendbuf, bytes);
        return JACCL_SUCCESS;
    }
    coll_header(comm, JACCL_COLL_REDUCE, count, dtype, op, root);
    const struct jaccl_algo_ops *a = jaccl_select(comm, JACCL_COLL_REDUCE, bytes);
    rc = a->reduce(&comm->actx, sendbuf, r, count, dtype, algo_op(op), root);
    if (rc == JACCL_SUCCESS && op == JACCL_AVG && comm->rank == root)
        jaccl_reduce_scale(r, count, dtype, comm->size);
    return jaccl_call_end(comm, rc);
}

JACCL_API jaccl_result_t jaccl_barrier(jaccl_comm_t comm)
{
    uint8_t token = 0;
    if (!comm) return JACCL_ERR_INVALID_ARGUMENT;
    if (jaccl_worker_active(comm))
        return jaccl_worker_call(comm,
                                 &(struct jaccl_call){JACCL_CALL_BARRIER, NULL, NULL, 0, 0, 0, 0});
    jaccl_result_t rc = jaccl_call_begin(comm, "jaccl_barrier");
    if (rc != JACCL_SUCCESS || comm->size == 1) return rc;
    coll_header(comm, JACCL_HDR_BARRIER, 0, JACCL_UINT8, 0, 0);
    const struct jaccl_algo_ops *a = jaccl_select(comm, JACCL_COLL_ALLREDUCE, 1);
    return jaccl_call_end(comm,
                          a->allreduce(&comm->actx, &token, &token, 1, JACCL_UINT8, JACCL_MAX));
}

JACCL_API jaccl_result_t jaccl_alltoall(const void *sendbuf, void *recvbuf, size_t count,
                                        jaccl_dtype_t dtype, jaccl_comm_t comm)
{
    size_t bytes = 0;
    if (!comm) return JACCL_ERR_INVALID_ARGUMENT;
    if (jaccl_worker_active(comm))
        return jaccl_worker_call(
            comm, &(struct jaccl_call){JACCL_CALL_ALLTOALL, sendbuf, recvbuf, count, dtype, 0, 0});
    jaccl_result_t rc = jaccl_call_begin(comm, "jaccl_alltoall");
    if (rc == JACCL_SUCCESS) rc = check_buffers(comm, sendbuf, recvbuf, count, dtype, &bytes);
    size_t all = bytes * (size_t)comm->size;
    if (rc == JACCL_SUCCESS)
        rc = check_inplace(comm, sendbuf == recvbuf, sendbuf, all, recvbuf, all,
                           "sendbuf == recvbuf");
    if (rc != JACCL_SUCCESS || count == 0) return rc;
    if (sendbuf == recvbuf) { /* every block is overwritten while others still read it */
        char *w;
        rc = jaccl_algo_work(&comm->actx, all, &w);
        if (rc != JACCL_SUCCESS) return rc;
        jaccl_copy(w, sendbuf, all);
        sendbuf = w;
    }
    if (comm->size == 1) {
        if (sendbuf != recvbuf) jaccl_copy(recvbuf, sendbuf, bytes);
        return JACCL_SUCCESS;
    }
    coll_header(comm, JACCL_COLL_ALLTOALL, count, dtype, 0, 0);
    const struct jaccl_algo_ops *a = jaccl_select(comm, JACCL_COLL_ALLTOALL, all);
    return jaccl_call_end(comm, a->alltoall(&comm->actx, sendbuf, recvbuf, bytes));
}

static jaccl_result_t point_to_point(struct jaccl_comm *comm, const char *call, int dir, void *buf,
                                     size_t count, jaccl_dtype_t dtype, int peer)
{
    size_t bytes = 0;
    jaccl_result_t rc = jaccl_call_begin(comm, call);
    if (rc == JACCL_SUCCESS) rc = check_buffers(comm, buf, buf, count, dtype, &bytes);
    if (rc != JACCL_SUCCESS) return rc;
    if (peer < 0 || peer >= comm->size || peer == comm->rank)
        return jaccl_err_set(&comm->err, JACCL_ERR_INVALID_ARGUMENT,
                             "peer %d is %s (ranks are 0..%d)", peer,
                             peer == comm->rank ? "this rank" : "out of range", comm->size - 1);
    if (count == 0) return JACCL_SUCCESS;
    struct jaccl_stream st = {dir, peer, buf, bytes, NULL};
    if (jaccl_group_active()) return jaccl_group_add(comm, &st);
    comm->actx.hdr_mode = JACCL_HDR_P2P;
    return jaccl_call_end(comm, jaccl_algo_run(&comm->actx, &st, 1, NULL, 0));
}

/*
 * Whether a send or recv goes to the progress worker: when it is busy, and
 * no group records the call.  A group records it in comm's own context, which
 * the worker writes while it runs: let the worker finish first.
 */
static int p2p_through_worker(struct jaccl_comm *comm)
{
    if (!jaccl_worker_active(comm)) return 0;
    if (!jaccl_group_active()) return 1;
    jaccl_worker_drain(comm);
    return 0;
}

JACCL_API jaccl_result_t jaccl_send(const void *buf, size_t count, jaccl_dtype_t dtype, int peer,
                                    jaccl_comm_t comm)
{
    if (!comm) return JACCL_ERR_INVALID_ARGUMENT;
    if (p2p_through_worker(comm))
        return jaccl_worker_call(
            comm, &(struct jaccl_call){JACCL_CALL_SEND, buf, NULL, count, dtype, 0, peer});
    return point_to_point(comm, "jaccl_send", JACCL_XFER_SEND, (void *)buf, count, dtype, peer);
}

JACCL_API jaccl_result_t jaccl_recv(void *buf, size_t count, jaccl_dtype_t dtype, int peer,
                                    jaccl_comm_t comm)
{
    if (!comm) return JACCL_ERR_INVALID_ARGUMENT;
    if (p2p_through_worker(comm))
        return jaccl_worker_call(
            comm, &(struct jaccl_call){JACCL_CALL_RECV, NULL, buf, count, dtype, 0, peer});
    return point_to_point(comm, "jaccl_recv", JACCL_XFER_RECV, buf, count, dtype, peer);
}
