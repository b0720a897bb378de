/*
 * Mesh: every rank talks to every rank directly.  All-reduce sends the whole
 * vector to everyone for small messages (one step; by recursive doubling
 * where messages cost system calls), and does a direct reduce-scatter then
 * all-gather for larger ones.  Reductions run in an order fixed by rank
 * (rank order; for recursive doubling, the lower half's side first), so
 * every rank computes the same bits.
 */
#include "algo/algo.h"
#include "util/copy.h"

#include <string.h>

/* Largest communicator the mesh serves (stack arrays per peer). */
#define MESH_MAX 64

/* The k-th rank after ours, 0 < k < size (no divide: this runs per peer on every call). */
static inline int mesh_next(const struct jaccl_algo_ctx *c, int k)
{
    int p = c->rank + k;
    return p >= c->size ? p - c->size : p;
}

/* Scratch slot of peer q's data: peers fill slots 0..n-2, our own copy n-1. */
static int mesh_slot(const struct jaccl_algo_ctx *c, int q)
{
    return q == c->rank ? c->size - 1 : (q < c->rank ? q : q - 1);
}

/* dst = src(0) op src(1) op ... op src(n-1), in rank order; len bytes, count elements. */
static void mesh_reduce_ordered(const struct jaccl_algo_ctx *c, char *dst, const char *own,
                                size_t len, jaccl_reduce_fn fn, size_t count)
{
    const char *src[2];
    for (int q = 0; q < 2; q++)
        src[q] = q == c->rank ? own : c->scratch + (size_t)mesh_slot(c, q) * len;
    fn(dst, src[0], src[1], count);
    for (int q = 2; q < c->size; q++) {
        const char *s = q == c->rank ? own : c->scratch + (size_t)mesh_slot(c, q) * len;
        fn(dst, dst, s, count);
    }
}

/*
 * Send our (sub)vector to every peer and receive theirs into scratch.
 * soff/slen pick the part of sbuf each peer gets; without them every peer
 * gets all rlen bytes (the one-shot all-reduce, where per-call setup counts).
 */
static jaccl_result_t mesh_exchange(struct jaccl_algo_ctx *c, const char *sbuf, const size_t *soff,
                                    const size_t *slen, size_t rlen)
{
    struct jaccl_stream st[2 * MESH_MAX];
    int ns = 0;
    for (int k = 1; k < c->size; k++) {
        /* Start with the next rank up so not everyone hits rank 0 first. */
        int p = mesh_next(c, k);
        size_t off = soff ? soff[p] : 0, len = soff ? slen[p] : rlen;
        st[ns++] = (struct jaccl_stream){JACCL_XFER_SEND, p, (char *)sbuf + off, len, NULL};
        st[ns++] = (struct jaccl_stream){JACCL_XFER_RECV, p,
                                         c->scratch + (size_t)mesh_slot(c, p) * rlen, rlen, NULL};
    }
    return jaccl_algo_run(c, st, ns, NULL, 0);
}

static jaccl_result_t mesh_oneshot(struct jaccl_algo_ctx *c, const char *s, char *r, size_t bytes,
                                   jaccl_reduce_fn fn, size_t count)
{
    jaccl_result_t rc = mesh_exchange(c, s, NULL, NULL, bytes);
    if (rc != JACCL_SUCCESS) return rc;
    const char *own = s;
    if (s == r && c->rank >= 2) {
        /* In place, our input would be overwritten before its turn in the order. */
        own = c->scratch + (size_t)(c->size - 1) * bytes;
        jaccl_copy((char *)own, s, bytes);
    }
    mesh_reduce_ordered(c, r, own, bytes, fn, count);
    return JACCL_SUCCESS;
}

/*
 * One step of recursive doubling: swap vectors with peer and combine them,
 * the lower rank's side first (every rank computes the same bits).
 */
static jaccl_result_t mesh_rd_step(struct jaccl_algo_ctx *c, const char *cur, char *r, size_t bytes,
                                   int peer, jaccl_reduce_fn fn, size_t count)
{
    struct jaccl_stream st[2] = {{JACCL_XFER_SEND, peer, (char *)cur, bytes, NULL},
                                 {JACCL_XFER_RECV, peer, c->scratch, bytes, NULL}};
    jaccl_result_t rc = jaccl_algo_run(c, st, 2, NULL, 0);
    if (rc != JACCL_SUCCESS) return rc;
    if (peer < c->rank)
        fn(r, c->scratch, cur, count);
    else
        fn(r, cur, c->scratch, count);
    return JACCL_SUCCESS;
}

/*
 * Small all-reduces by recursive doubling where messages cost system calls:
 * log2(n) exchanges with one peer each, where the one-shot sends n - 1
 * messages and reads n - 1, and that CPU time is the latency when ranks
 * share cores (TCP, one host, 2 cores, 8 B-4 KiB: 3 ranks 0.8-1.0x the
 * one-shot's time, 4 ranks 0.75-0.9x; 8 ranks 1.0-1.05x).
 */
static int mesh_use_rd(const struct jaccl_algo_ctx *c)
{
    return c->tp->msg_syscall && c->size >= 3;
}

static int mesh_ar_use_rd(const struct jaccl_algo_ctx *c, size_t bytes)
{
    return bytes <= c->oneshot_bytes && mesh_use_rd(c);
}

/* The largest power of two not above n (n >= 1). */
static int mesh_p2(int n)
{
    return 1 << (31 - __builtin_clz((unsigned)n));
}

/* Exchanges recursive doubling makes: beyond a power of two p, rank p + i
 * first hands its vector to rank i and gets the result back at the end. */
static int mesh_rd_steps(int n)
{
    int p2 = mesh_p2(n);
    return __builtin_ctz((unsigned)p2) + (p2 < n ? 2 : 0);
}

/* Recursive doubling; the ranks past the power of two only hand over and take back. */
static jaccl_result_t mesh_rd(struct jaccl_algo_ctx *c, const char *s, char *r, size_t bytes,
                              jaccl_reduce_fn fn, size_t count)
{
    int p2 = mesh_p2(c->size), me = c->rank;
    if (me >= p2) {
        struct jaccl_stream st[2] = {{JACCL_XFER_SEND, me - p2, (char *)s, bytes, NULL},
                                     {JACCL_XFER_RECV, me - p2, r, bytes, NULL}};
        return jaccl_algo_run(c, st, 2, NULL, 0);
    }
    const char *cur = s;
    if (me + p2 < c->size) {
        struct jaccl_stream st = {JACCL_XFER_RECV, me + p2, c->scratch, bytes, NULL};
        jaccl_result_t rc = jaccl_algo_run(c, &st, 1, NULL, 0);
        if (rc != JACCL_SUCCESS) return rc;
        fn(r, s, c->scratch, count);
        cur = r;
    }
    for (int d = 1; d < p2; d *= 2) {
        jaccl_result_t rc = mesh_rd_step(c, cur, r, bytes, me ^ d, fn, count);
        if (rc != JACCL_SUCCESS) return rc;
        cur = r;
    }
    if (me + p2 >= c->size) return JACCL_SUCCESS;
    struct jaccl_stream st = {JACCL_XFER_SEND, me + p2, r, bytes, NULL};
    return jaccl_algo_run(c, &st, 1, NULL, 0);
}

static jaccl_result_t mesh_allgatherv(struct jaccl_algo_ctx *c, char *r, const size_t *off,
                                      const size_t *len)
{
    struct jaccl_stream st[2 * MESH_MAX];
    int ns = 0;
    for (int k = 1; k < c->size; k++) {
        int p = mesh_next(c, k);
        st[ns++] = (struct jaccl_stream){JACCL_XFER_SEND, p, r + off[c->rank], len[c->rank], NULL};
        st[ns++] = (struct jaccl_stream){JACCL_XFER_RECV, p, r + off[p], len[p], NULL};
    }
    return jaccl_algo_run_bulk(c, st, ns);
}

/*
 * Direct reduce-scatter: rank p reduces chunk p (coff/clen) into dst.  It
 * runs in rounds of seg_bytes so the data being reduced stays in cache and
 * scratch stays small; every rank does as many rounds as the largest chunk
 * (chunk 0) needs.
 */
static jaccl_result_t mesh_rs(struct jaccl_algo_ctx *c, const char *s, const size_t *coff,
                              const size_t *clen, char *dst, jaccl_reduce_fn fn, size_t esize)
{
    size_t soff[MESH_MAX], slen[MESH_MAX], seg = c->seg_bytes;
    for (size_t at = 0; at < clen[0]; at += seg) {
        for (int p = 0; p < c->size; p++) {
            size_t a = at < clen[p] ? at : clen[p];
            soff[p] = coff[p] + a;
            slen[p] = clen[p] - a < seg ? clen[p] - a : seg;
        }
        size_t rl = slen[c->rank], done = soff[c->rank] - coff[c->rank];
        jaccl_result_t rc = mesh_exchange(c, s, soff, slen, rl);
        if (rc != JACCL_SUCCESS) return rc;
        const char *own = s + soff[c->rank];
        if (dst == s + coff[c->rank] && c->rank >= 2 && rl) {
            own = c->scratch + (size_t)(c->size - 1) * rl;
            jaccl_copy((char *)own, s + soff[c->rank], rl);
        }
        if (rl) mesh_reduce_ordered(c, dst + done, own, rl, fn, rl / esize);
    }
    return JACCL_SUCCESS;
}

static jaccl_result_t mesh_check(struct jaccl_algo_ctx *c)
{
    if (c->size <= MESH_MAX) return JACCL_SUCCESS;
    return jaccl_err_set(c->err, JACCL_ERR_UNSUPPORTED,
                         "mesh supports at most %d ranks; use JACCL_ALGO=ring", MESH_MAX);
}

/* Equal blocks of bytes, block p at p * bytes. */
static void mesh_blocks(int n, size_t bytes, size_t *off, size_t *len)
{
    for (int p = 0; p < n; p++) {
        off[p] = (size_t)p * bytes;
        len[p] = bytes;
    }
}

static jaccl_result_t mesh_allreduce(struct jaccl_algo_ctx *c, const void *sendbuf, void *recvbuf,
                                     size_t count, jaccl_dtype_t dtype, jaccl_op_t op)
{
    size_t esize = jaccl_dtype_size(dtype), bytes = count * esize, coff[MESH_MAX], clen[MESH_MAX];
    jaccl_reduce_fn fn = jaccl_reduce_get(dtype, op);
    char *r = recvbuf;
    jaccl_result_t rc = mesh_check(c);
    if (rc != JACCL_SUCCESS) return rc;
    if (mesh_ar_use_rd(c, bytes)) return mesh_rd(c, sendbuf, r, bytes, fn, count);
    if (bytes <= c->oneshot_bytes) return mesh_oneshot(c, sendbuf, r, bytes, fn, count);
    for (int p = 0; p < c->size; p++) jaccl_algo_part(bytes, c->size, p, 64, &coff[p], &clen[p]);
    rc = mesh_rs(c, sendbuf, coff, clen, r + coff[c->rank], fn, esize);
    return rc == JACCL_SUCCESS ? mesh_allgatherv(c, r, coff, clen) : rc;
}

/*
 * All-gather of a large block: our block goes to every peer piece by piece
 * straight from sendbuf, each piece copied into place after it is sent.
 */
static jaccl_result_t mesh_ag_pieces(struct jaccl_algo_ctx *c, const char *s, char *r, size_t bytes)
{
    struct jaccl_stream st[2 * MESH_MAX];
    char *own = r + (size_t)c->rank * bytes;
    size_t piece = JACCL_AG_PIECE * (size_t)c->max_links;
    for (size_t at = 0; at < bytes; at += piece) {
        size_t l = bytes - at < piece ? bytes - at : piece;
        int ns = 0;
        for (int k = 1; k < c->size; k++) {
            int p = mesh_next(c, k);
            st[ns++] = (struct jaccl_stream){JACCL_XFER_SEND, p, (char *)s + at, l, NULL};
            st[ns++] =
                (struct jaccl_stream){JACCL_XFER_RECV, p, r + (size_t)p * bytes + at, l, NULL};
        }
        jaccl_result_t rc = jaccl_algo_run_bulk(c, st, ns);
        if (rc != JACCL_SUCCESS) return rc;
        if (own != s) jaccl_algo_ag_copy(own + at, s + at, l, bytes);
    }
    return JACCL_SUCCESS;
}

/*
 * Small all-gathers by recursive doubling too, at a power of two ranks: step
 * d swaps the d blocks each side holds (the same bytes as the one-shot's
 * sends, in log2(n) messages instead of n - 1).
 */
static int mesh_ag_use_rd(const struct jaccl_algo_ctx *c, size_t bytes)
{
    int n = c->size;
    return mesh_use_rd(c) && (n & (n - 1)) == 0 && bytes * (size_t)n <= c->oneshot_bytes;
}

static jaccl_result_t mesh_ag_rd(struct jaccl_algo_ctx *c, char *r, size_t bytes)
{
    for (int d = 1; d < c->size; d *= 2) {
        int peer = c->rank ^ d;
        size_t len = (size_t)d * bytes, mine = (size_t)(c->rank & ~(d - 1)) * bytes,
               theirs = (size_t)(peer & ~(d - 1)) * bytes;
        struct jaccl_stream st[2] = {{JACCL_XFER_SEND, peer, r + mine, len, NULL},
                                     {JACCL_XFER_RECV, peer, r + theirs, len, NULL}};
        jaccl_result_t rc = jaccl_algo_run(c, st, 2, NULL, 0);
        if (rc != JACCL_SUCCESS) return rc;
    }
    return JACCL_SUCCESS;
}

static jaccl_result_t mesh_allgather(struct jaccl_algo_ctx *c, const void *sendbuf, void *recvbuf,
                                     size_t bytes)
{
    size_t off[MESH_MAX], len[MESH_MAX];
    char *r = recvbuf, *own = r + (size_t)c->rank * bytes;
    jaccl_result_t rc = mesh_check(c);
    if (rc != JACCL_SUCCESS) return rc;
    if (c->size > 1 && bytes >= JACCL_AG_FUSE_MIN) return mesh_ag_pieces(c, sendbuf, r, bytes);
    if (own != (const char *)sendbuf) jaccl_copy(own, sendbuf, bytes);
    if (mesh_ag_use_rd(c, bytes)) return mesh_ag_rd(c, r, bytes);
    mesh_blocks(c->size, bytes, off, len);
    return mesh_allgatherv(c, r, off, len);
}

static jaccl_result_t mesh_reduce_scatter(struct jaccl_algo_ctx *c, const void *sendbuf,
                                          void *recvbuf, size_t count, jaccl_dtype_t dtype,
                                          jaccl_op_t op)
{
    size_t esize = jaccl_dtype_size(dtype), off[MESH_MAX], len[MESH_MAX];
    jaccl_result_t rc = mesh_check(c);
    if (rc != JACCL_SUCCESS) return rc;
    mesh_blocks(c->size, count * esize, off, len);
    return mesh_rs(c, sendbuf, off, len, recvbuf, jaccl_reduce_get(dtype, op), esize);
}

/* Small: the root sends everything to everyone.  Large: scatter, then all-gather. */
static jaccl_result_t mesh_broadcast(struct jaccl_algo_ctx *c, const void *sendbuf, void *recvbuf,
                                     size_t bytes, int root)
{
    struct jaccl_stream st[MESH_MAX];
    size_t off[MESH_MAX], len[MESH_MAX];
    char *r = recvbuf;
    int ns = 0, whole = bytes <= c->oneshot_bytes;
    jaccl_result_t rc = mesh_check(c);
    if (rc != JACCL_SUCCESS) return rc;
    if (c->rank == root && sendbuf != recvbuf) jaccl_copy(r, sendbuf, bytes);
    for (int p = 0; p < c->size; p++) {
        if (whole) {
            off[p] = 0;
            len[p] = bytes;
        } else {
            jaccl_algo_part(bytes, c->size, p, 64, &off[p], &len[p]);
        }
    }
    for (int p = 0; p < c->size; p++)
        if (c->rank == root && p != root)
            st[ns++] = (struct jaccl_stream){JACCL_XFER_SEND, p, r + off[p], len[p], NULL};
    if (c->rank != root)
        st[ns++] =
            (struct jaccl_stream){JACCL_XFER_RECV, root, r + off[c->rank], len[c->rank], NULL};
    rc = jaccl_algo_run(c, st, ns, NULL, 0);
    if (rc != JACCL_SUCCESS || whole) return rc;
    return mesh_allgatherv(c, r, off, len);
}

/* Everyone sends to the root in rounds; the root reduces each round in rank order. */
static jaccl_result_t mesh_reduce(struct jaccl_algo_ctx *c, const void *sendbuf, void *recvbuf,
                                  size_t count, jaccl_dtype_t dtype, jaccl_op_t op, int root)
{
    struct jaccl_stream st[MESH_MAX];
    size_t esize = jaccl_dtype_size(dtype), bytes = count * esize, seg = c->seg_bytes;
    const char *s = sendbuf;
    char *r = recvbuf;
    jaccl_reduce_fn fn = jaccl_reduce_get(dtype, op);
    jaccl_result_t rc = mesh_check(c);
    for (size_t at = 0; rc == JACCL_SUCCESS && at < bytes; at += seg) {
        size_t l = bytes - at < seg ? bytes - at : seg;
        int ns = 0;
        if (c->rank != root) {
            st[ns++] = (struct jaccl_stream){JACCL_XFER_SEND, root, (char *)s + at, l, NULL};
            rc = jaccl_algo_run(c, st, ns, NULL, 0);
            continue;
        }
        for (int p = 0; p < c->size; p++)
            if (p != root)
                st[ns++] = (struct jaccl_stream){JACCL_XFER_RECV, p,
                                                 c->scratch + (size_t)mesh_slot(c, p) * l, l, NULL};
        rc = jaccl_algo_run(c, st, ns, NULL, 0);
        const char *own = s + at;
        if (rc == JACCL_SUCCESS && s == r && c->rank >= 2) {
            own = c->scratch + (size_t)(c->size - 1) * l;
            jaccl_copy((char *)own, s + at, l);
        }
        if (rc == JACCL_SUCCESS) mesh_reduce_ordered(c, r + at, own, l, fn, l / esize);
    }
    return rc;
}

/* Every pair exchanges its block directly, all at once. */
static jaccl_result_t mesh_alltoall(struct jaccl_algo_ctx *c, const void *sendbuf, void *recvbuf,
                                    size_t bytes)
{
    struct jaccl_stream st[2 * MESH_MAX];
    const char *s = sendbuf;
    char *r = recvbuf;
    int ns = 0;
    jaccl_result_t rc = mesh_check(c);
    if (rc != JACCL_SUCCESS) return rc;
    jaccl_copy(r + (size_t)c->rank * bytes, s + (size_t)c->rank * bytes, bytes);
    for (int k = 1; k < c->size; k++) {
        int p = mesh_next(c, k);
        st[ns++] =
            (struct jaccl_stream){JACCL_XFER_SEND, p, (char *)s + (size_t)p * bytes, bytes, NULL};
        st[ns++] = (struct jaccl_stream){JACCL_XFER_RECV, p, r + (size_t)p * bytes, bytes, NULL};
    }
    return jaccl_algo_run(c, st, ns, NULL, 0);
}

static double mesh_cost(const struct jaccl_algo_ctx *c, enum jaccl_coll coll, size_t bytes)
{
    double n = c->size, a = c->tp->alpha_s, b = c->tp->beta_Bps, g = c->gamma_Bps,
           N = (double)bytes;
    /* Each round waits for its slowest peer before reducing: count it as a latency. */
    double rounds = N / n / (double)c->seg_bytes + 1;
    if (c->size > MESH_MAX) return 1e30;
    switch (coll) {
    case JACCL_COLL_ALLGATHER:
        if (mesh_ag_use_rd(c, bytes)) return mesh_rd_steps(c->size) * a + (n - 1) * N / b;
        return a + (n - 1) * N / b;
    case JACCL_COLL_ALLTOALL:
        return a + (n - 1) / n * N / b;
    case JACCL_COLL_REDUCE_SCATTER:
        return 2 * rounds * a + (n - 1) / n * N * (1 / b + 1 / g);
    case JACCL_COLL_BROADCAST:
        if (bytes <= c->oneshot_bytes) return a + (n - 1) * N / b;
        return 2 * a + 2 * (n - 1) / n * N / b;
    case JACCL_COLL_REDUCE:
        return n * rounds * a + (n - 1) * N * (1 / b + 1 / g);
    default:
        break;
    }
    if (mesh_ar_use_rd(c, bytes)) return mesh_rd_steps(c->size) * (a + N / b + N / g);
    if (bytes <= c->oneshot_bytes) return a + (n - 1) * N / b + (n - 1) * N / g;
    return (2 + 2 * rounds) * a + 2 * (n - 1) / n * N / b + (n - 1) / n * N / g;
}

const struct jaccl_algo_ops jaccl_mesh_ops = {
    .name = "mesh",
    .allreduce = mesh_allreduce,
    .allgather = mesh_allgather,
    .reduce_scatter = mesh_reduce_scatter,
    .broadcast = mesh_broadcast,
    .reduce = mesh_reduce,
    .alltoall = mesh_alltoall,
    .cost = mesh_cost,
};
