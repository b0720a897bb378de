/*
 * Ring: each rank talks to its two neighbours only, over every link they
 * share.  All-reduce is a reduce-scatter then an all-gather around the ring,
 * each step receiving a chunk and reducing it as it arrives.  With bidir the
 * vector is halved and the halves go around in opposite directions, so both
 * directions of every link carry data.  Each chunk is reduced by one rank and
 * then copied, so every rank holds the same bits.
 */
#include "algo/algo.h"
#include "util/copy.h"

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

/* Stream pair of all-gather step t on direction d: send block sq, receive block rq. */
static int ring_ag_pair(const struct jaccl_algo_ctx *c, const struct ring_dir *d, int dn, int t,
                        char *r, size_t bytes, struct jaccl_stream *st)
{
    int n = c->size;
    int sq = ring_rank(n, dn, (d->pos - t + n) % n);
    int rq = ring_rank(n, dn, (d->pos - t - 1 + 2 * n) % n);
    st[0] = (struct jaccl_stream){JACCL_XFER_SEND, d->right, r + (size_t)sq * bytes + d->off,
                                  d->len, NULL};
    st[1] = (struct jaccl_stream){JACCL_XFER_RECV, d->left, r + (size_t)rq * bytes + d->off, d->len,
                                  NULL};
    return 2;
}

/* The piece of direction d's part at offset at: its offset a, and length (0 past the end). */
static size_t ring_ag_piece(const struct ring_dir *d, size_t at, size_t piece, size_t *a)
{
    *a = at < d->len ? at : d->len;
    return d->len - *a < piece ? d->len - *a : piece;
}

/*
 * Step 0 of the all-gather of a large block, which out of place is read
 * from sendbuf once: each piece is sent, then copied into place while it is
 * still in cache (instead of copying the whole block first and sending it
 * from there).  In place, the same pieces, so that every rank's runs match.
 */
static jaccl_result_t ring_ag_first(struct jaccl_algo_ctx *c, const struct ring_dir *dir, int nd,
                                    const char *s, char *r, size_t bytes)
{
    char *own = r + (size_t)c->rank * bytes;
    size_t most = 0, a, l, piece = JACCL_AG_PIECE * (size_t)c->max_links;
    for (int d = 0; d < nd; d++) most = dir[d].len > most ? dir[d].len : most;
    for (size_t at = 0; at < most; at += piece) {
        struct jaccl_stream st[4], pair[2];
        int ns = 0;
        for (int d = 0; d < nd; d++) {
            if ((l = ring_ag_piece(&dir[d], at, piece, &a)) == 0) continue;
            ring_ag_pair(c, &dir[d], d, 0, r, bytes, pair);
            st[ns++] = (struct jaccl_stream){JACCL_XFER_SEND, pair[0].peer,
                                             (char *)s + dir[d].off + a, l, NULL};
            st[ns++] =
                (struct jaccl_stream){JACCL_XFER_RECV, pair[1].peer, pair[1].buf + a, l, NULL};
        }
        jaccl_result_t rc = jaccl_algo_run(c, st, ns, NULL, 0);
        if (rc != JACCL_SUCCESS) return rc;
        for (int d = 0; d < nd && own != s; d++) {
            if ((l = ring_ag_piece(&dir[d], at, piece, &a)) == 0) continue;
            jaccl_algo_ag_copy(own + dir[d].off + a, s + dir[d].off + a, l, bytes);
        }
    }
    return JACCL_SUCCESS;
}

/* Block q travels around direction d's ring carrying its d-th half. */
static jaccl_result_t ring_allgather(struct jaccl_algo_ctx *c, const void *sendbuf, void *recvbuf,
                                     size_t bytes)
{
    struct ring_dir dir[2];
    char *r = recvbuf;
    int n = c->size, nd = ring_dirs(c, bytes, dir), t = 0;
    char *own = r + (size_t)c->rank * bytes;
    if (n > 1 && bytes >= JACCL_AG_FUSE_MIN) {
        jaccl_result_t rc = ring_ag_first(c, dir, nd, sendbuf, r, bytes);
        if (rc != JACCL_SUCCESS) return rc;
        t = 1;
    } else if (own != (const char *)sendbuf) {
        jaccl_copy(own, sendbuf, bytes);
    }
    for (; t < n - 1; t++) {
        struct jaccl_stream st[4];
        int ns = 0;
        for (int d = 0; d < nd; d++) ns += ring_ag_pair(c, &dir[d], d, t, r, bytes, &st[ns]);
        jaccl_result_t rc = jaccl_algo_run(c, st, ns, NULL, 0);
        if (rc != JACCL_SUCCESS) return rc;
    }
    return JACCL_SUCCESS;
}

/* Block k (mod n) of a buffer of n blocks of B bytes. */
static size_t ring_block(const struct jaccl_algo_ctx *c, int k, size_t B)
{
    return (size_t)(((k % c->size) + c->size) % c->size) * B;
}

/*
 * Reduce-scatter around the ring: block b starts at rank b + 1 and gains one
 * contribution per hop until it reaches rank b.  Partial blocks wait in two
 * workspace slots: one being sent while the other is received.
 */
static jaccl_result_t ring_reduce_scatter(struct jaccl_algo_ctx *c, const void *sendbuf,
                                          void *recvbuf, size_t count, jaccl_dtype_t dtype,
                                          jaccl_op_t op)
{
    size_t esize = jaccl_dtype_size(dtype), B = count * esize;
    int n = c->size, right = (c->rank + 1) % n, left = (c->rank + n - 1) % n;
    const char *s = sendbuf;
    char *w = NULL;
    jaccl_result_t rc = n > 2 ? jaccl_algo_work(c, 2 * B, &w) : JACCL_SUCCESS;
    for (int t = 0; rc == JACCL_SUCCESS && t < n - 1; t++) {
        const char *src =
            t == 0 ? s + ring_block(c, c->rank - 1, B) : w + (size_t)((t - 1) % 2) * B;
        char *dst = t == n - 2 ? recvbuf : w + (size_t)(t % 2) * B;
        struct jaccl_stream st[2] = {
            {JACCL_XFER_SEND, right, (char *)src, B, NULL},
            {JACCL_XFER_RECV, left, dst, B, s + ring_block(c, c->rank - t - 2, B)},
        };
        rc = jaccl_algo_run(c, st, 2, jaccl_reduce_get(dtype, op), esize);
    }
    return rc;
}

/* A pipeline along the ring: segment j leaves the rank at distance e at step j + e. */
struct ring_chain {
    int e, to, from; /* our distance from the chain's start; neighbours, -1 at the ends */
    size_t seg, bytes;
    const char *send;  /* segment j comes from send + j * seg, or a work slot if NULL */
    char *recv;        /* segment j lands at recv + j * seg, or in a work slot if NULL */
    const char *local; /* non-NULL: received data is reduced with local + j * seg */
};

static char *chain_at(const struct ring_chain *ch, const char *base, char *work, size_t j)
{
    return base ? (char *)base + j * ch->seg : work + (j % 2) * ch->seg;
}

static jaccl_result_t ring_chain_run(struct jaccl_algo_ctx *c, const struct ring_chain *ch,
                                     char *work, jaccl_reduce_fn fn, size_t esize)
{
    long nseg = (long)((ch->bytes + ch->seg - 1) / ch->seg);
    for (long k = 0; k < nseg + c->size - 2; k++) {
        struct jaccl_stream st[2];
        int ns = 0;
        long jr = k - (ch->e - 1), js = k - ch->e;
        if (ch->from >= 0 && jr >= 0 && jr < nseg) {
            size_t at = (size_t)jr * ch->seg,
                   l = ch->bytes - at < ch->seg ? ch->bytes - at : ch->seg;
            st[ns++] = (struct jaccl_stream){JACCL_XFER_RECV, ch->from,
                                             chain_at(ch, ch->recv, work, (size_t)jr), l,
                                             ch->local ? ch->local + at : NULL};
        }
        if (ch->to >= 0 && js >= 0 && js < nseg) {
            size_t at = (size_t)js * ch->seg,
                   l = ch->bytes - at < ch->seg ? ch->bytes - at : ch->seg;
            st[ns++] = (struct jaccl_stream){JACCL_XFER_SEND, ch->to,
                                             chain_at(ch, ch->send, work, (size_t)js), l, NULL};
        }
        jaccl_result_t rc = jaccl_algo_run(c, st, ns, ch->local ? fn : NULL, esize);
        if (rc != JACCL_SUCCESS) return rc;
    }
    return JACCL_SUCCESS;
}

/* Pipeline segment: large enough to amortise a step, small enough to fill the chain. */
static size_t ring_chain_seg(const struct jaccl_algo_ctx *c)
{
    return 4 * c->seg_bytes;
}

static jaccl_result_t ring_broadcast(struct jaccl_algo_ctx *c, const void *sendbuf, void *recvbuf,
                                     size_t bytes, int root)
{
    int n = c->size, e = (c->rank - root + n) % n;
    if (c->rank == root && sendbuf != recvbuf) jaccl_copy(recvbuf, sendbuf, bytes);
    struct ring_chain ch = {.e = e,
                            .to = e < n - 1 ? (c->rank + 1) % n : -1,
                            .from = e > 0 ? (c->rank + n - 1) % n : -1,
                            .seg = ring_chain_seg(c),
                            .bytes = bytes,
                            .send = recvbuf,
                            .recv = recvbuf};
    return ring_chain_run(c, &ch, NULL, NULL, 0);
}

/* The far end (the root's right neighbour) starts; partial sums flow left to the root. */
static jaccl_result_t ring_reduce(struct jaccl_algo_ctx *c, const void *sendbuf, void *recvbuf,
                                  size_t count, jaccl_dtype_t dtype, jaccl_op_t op, int root)
{
    int n = c->size, d = (c->rank - root + n) % n;
    size_t esize = jaccl_dtype_size(dtype);
    struct ring_chain ch = {.e = n - 1 - d,
                            .to = d > 0 ? (c->rank + n - 1) % n : -1,
                            .from = d < n - 1 ? (c->rank + 1) % n : -1,
                            .seg = ring_chain_seg(c),
                            .bytes = count * esize,
                            .send = d == n - 1 ? sendbuf : NULL,
                            .recv = d == 0 ? recvbuf : NULL,
                            .local = sendbuf};
    char *w = NULL;
    jaccl_result_t rc = d > 0 && d < n - 1 ? jaccl_algo_work(c, 2 * ch.seg, &w) : JACCL_SUCCESS;
    if (rc != JACCL_SUCCESS) return rc;
    return ring_chain_run(c, &ch, w, jaccl_reduce_get(dtype, op), esize);
}

/* Pairwise exchanges: at step t, send to rank + t and receive from rank - t. */
static jaccl_result_t ring_alltoall(struct jaccl_algo_ctx *c, const void *sendbuf, void *recvbuf,
                                    size_t bytes)
{
    const char *s = sendbuf;
    char *r = recvbuf;
    int n = c->size;
    jaccl_copy(r + (size_t)c->rank * bytes, s + (size_t)c->rank * bytes, bytes);
    for (int t = 1; t < n; t++) {
        int to = (c->rank + t) % n, from = (c->rank + n - t) % n;
        struct jaccl_stream st[2] = {
            {JACCL_XFER_SEND, to, (char *)s + (size_t)to * bytes, bytes, NULL},
            {JACCL_XFER_RECV, from, r + (size_t)from * bytes, bytes, NULL},
        };
        jaccl_result_t rc = jaccl_algo_run(c, st, 2, NULL, 0);
        if (rc != JACCL_SUCCESS) return rc;
    }
    return JACCL_SUCCESS;
}

static double ring_cost(const struct jaccl_algo_ctx *c, enum jaccl_coll coll, size_t bytes)
{
    double n = c->size, a = c->tp->alpha_s, N = (double)bytes, g = c->gamma_Bps;
    double b = c->tp->beta_Bps * c->max_links; /* the ring stripes over every link */
    double S = (double)ring_chain_seg(c) < N ? (double)ring_chain_seg(c) : N;
    double steps = N / S + n - 2;
    switch (coll) {
    case JACCL_COLL_ALLGATHER:
        return (n - 1) * a + (n - 1) * N / b;
    case JACCL_COLL_ALLTOALL:
        return (n - 1) * a + (n - 1) / n * N / b;
    case JACCL_COLL_REDUCE_SCATTER:
        return (n - 1) * a + (n - 1) / n * N * (1 / b + 1 / g);
    case JACCL_COLL_BROADCAST:
        return steps * (a + S / b);
    case JACCL_COLL_REDUCE:
        return steps * (a + S / b + S / g);
    default:
        break;
    }
    return 2 * (n - 1) * a + 2 * (n - 1) / n * N / b + (n - 1) / n * N / g;
}

const struct jaccl_algo_ops jaccl_ring_ops = {
    .name = "ring",
    .allreduce = ring_allreduce,
    .allgather = ring_allgather,
    .reduce_scatter = ring_reduce_scatter,
    .broadcast = ring_broadcast,
    .reduce = ring_reduce,
    .alltoall = ring_alltoall,
    .cost = ring_cost,
};
