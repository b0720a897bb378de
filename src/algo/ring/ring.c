/*
 * Ring: each rank talks to its two neighbours only, over every link they
 * share.  All-reduce is a reduce-scatter then an all-gather around the ring,
 * each step receiving a chunk and reducing it as it arrives.  With bidir the
 * vector is halved and the halves go around in opposite directions, so both
 * directions of every link carry data.  Each chunk is reduced by one rank and
 * then copied, so every rank holds the same bits.
 */
#include "algo/algo.h"

#include <string.h>

struct ring_dir {
    int pos;         /* our position on this direction's ring */
    int right, left; /* ranks we send to and receive from */
    size_t off, len; /* the part of the buffer this direction carries */
};

/* Position p on direction d's ring is rank p going up, rank (n - p) % n going down. */
static int ring_rank(int n, int d, int p)
{
    return d == 0 ? p : (n - p) % n;
}

static int ring_dirs(const struct jaccl_algo_ctx *c, size_t bytes, struct ring_dir *dir)
{
    int n = c->size, nd = c->ring_bidir && n > 2 ? 2 : 1;
    for (int d = 0; d < nd; d++) {
        dir[d].pos = ring_rank(n, d, c->rank);
        dir[d].right = ring_rank(n, d, (dir[d].pos + 1) % n);
        dir[d].left = ring_rank(n, d, (dir[d].pos + n - 1) % n);
        jaccl_algo_part(bytes, nd, d, 64, &dir[d].off, &dir[d].len);
    }
    return nd;
}

/* Offset and length of chunk k (mod n) of a direction's part. */
static void ring_chunk(const struct jaccl_algo_ctx *c, const struct ring_dir *d, int k, size_t *off,
                       size_t *len)
{
    int n = c->size;
    jaccl_algo_part(d->len, n, ((k % n) + n) % n, 64, off, len);
    *off += d->off;
}

/* Step t of the reduce-scatter: pass chunk pos - t on, reduce chunk pos - t - 1 into r. */
static jaccl_result_t ring_rs_step(struct jaccl_algo_ctx *c, const struct ring_dir *dir, int nd,
                                   int t, const char *s, char *r, jaccl_reduce_fn fn, size_t esize)
{
    struct jaccl_stream st[4];
    int ns = 0;
    for (int d = 0; d < nd; d++) {
        size_t so, sl, ro, rl;
        ring_chunk(c, &dir[d], dir[d].pos - t, &so, &sl);
        ring_chunk(c, &dir[d], dir[d].pos - t - 1, &ro, &rl);
        const char *src = t == 0 ? s : r;
        st[ns++] = (struct jaccl_stream){JACCL_XFER_SEND, dir[d].right, (char *)src + so, sl, NULL};
        st[ns++] = (struct jaccl_stream){JACCL_XFER_RECV, dir[d].left, r + ro, rl, s + ro};
    }
    return jaccl_algo_run(c, st, ns, fn, esize);
}

/* Step t of the all-gather: pass on chunk pos + 1 - t, receive chunk pos - t. */
static jaccl_result_t ring_ag_step(struct jaccl_algo_ctx *c, const struct ring_dir *dir, int nd,
                                   int t, char *r)
{
    struct jaccl_stream st[4];
    int ns = 0;
    for (int d = 0; d < nd; d++) {
        size_t so, sl, ro, rl;
        ring_chunk(c, &dir[d], dir[d].pos + 1 - t, &so, &sl);
        ring_chunk(c, &dir[d], dir[d].pos - t, &ro, &rl);
        st[ns++] = (struct jaccl_stream){JACCL_XFER_SEND, dir[d].right, r + so, sl, NULL};
        st[ns++] = (struct jaccl_stream){JACCL_XFER_RECV, dir[d].left, r + ro, rl, NULL};
    }
    return jaccl_algo_run(c, st, ns, NULL, 0);
}

static jaccl_result_t ring_allreduce(struct jaccl_algo_ctx *c, const void *sendbuf, void *recvbuf,
                                     size_t count, jaccl_dtype_t dtype, jaccl_op_t op)
{
    struct ring_dir dir[2];
    size_t esize = jaccl_dtype_size(dtype);
    int nd = ring_dirs(c, count * esize, dir);
    jaccl_reduce_fn fn = jaccl_reduce_get(dtype, op);
    for (int t = 0; t < c->size - 1; t++) {
        jaccl_result_t rc = ring_rs_step(c, dir, nd, t, sendbuf, recvbuf, fn, esize);
        if (rc != JACCL_SUCCESS) return rc;
    }
    for (int t = 0; t < c->size - 1; t++) {
        jaccl_result_t rc = ring_ag_step(c, dir, nd, t, recvbuf);
        if (rc != JACCL_SUCCESS) return rc;
    }
    return JACCL_SUCCESS;
}

/* Block q travels around direction d's ring carrying its d-th half. */
static jaccl_result_t ring_allgather(struct jaccl_algo_ctx *c, const void *sendbuf, void *recvbuf,
                                     size_t bytes)
{
    struct ring_dir dir[2];
    char *r = recvbuf;
    int n = c->size, nd = ring_dirs(c, bytes, dir);
    if (r + (size_t)c->rank * bytes != (const char *)sendbuf)
        memcpy(r + (size_t)c->rank * bytes, sendbuf, bytes);
    for (int t = 0; t < n - 1; t++) {
        struct jaccl_stream st[4];
        int ns = 0;
        for (int d = 0; d < nd; d++) {
            int sq = ring_rank(n, d, (dir[d].pos - t + n) % n);
            int rq = ring_rank(n, d, (dir[d].pos - t - 1 + 2 * n) % n);
            char *sb = r + (size_t)sq * bytes + dir[d].off,
                 *rb = r + (size_t)rq * bytes + dir[d].off;
            st[ns++] = (struct jaccl_stream){JACCL_XFER_SEND, dir[d].right, sb, dir[d].len, NULL};
            st[ns++] = (struct jaccl_stream){JACCL_XFER_RECV, dir[d].left, rb, dir[d].len, NULL};
        }
        jaccl_result_t rc = jaccl_algo_run(c, st, ns, NULL, 0);
        if (rc != JACCL_SUCCESS) return rc;
    }
    return JACCL_SUCCESS;
}

static double ring_cost(const struct jaccl_algo_ctx *c, enum jaccl_coll coll, size_t bytes)
{
    double n = c->size, a = c->tp->alpha_s, N = (double)bytes;
    double b = c->tp->beta_Bps * c->max_links; /* the ring stripes over every link */
    if (coll == JACCL_COLL_ALLGATHER) return (n - 1) * a + (n - 1) * N / b;
    return 2 * (n - 1) * a + 2 * (n - 1) / n * N / b + (n - 1) / n * N / c->gamma_Bps;
}

const struct jaccl_algo_ops jaccl_ring_ops = {
    .name = "ring",
    .allreduce = ring_allreduce,
    .allgather = ring_allgather,
    .cost = ring_cost,
};
