/* The transfer engine every algorithm runs its steps on. */
#include "algo/algo.h"

#include "util/time.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RUN_MAX_RED 2

/* A reducing stream's part on one link: two scratch slots at xfers[xi], xfers[xi + 1]. */
struct red_part {
    int stream, xi;
    size_t head, post, end; /* offsets in the stream's buffer */
};

void jaccl_algo_part(size_t len, int n, int i, size_t align, size_t *off, size_t *plen)
{
    size_t units = (len + align - 1) / align, per = units / (size_t)n, extra = units % (size_t)n;
    size_t ui = (size_t)i;
    size_t begin = (ui * per + (ui < extra ? ui : extra)) * align;
    size_t end = begin + (per + (ui < extra ? 1 : 0)) * align;
    if (begin > len) begin = len;
    if (end > len) end = len;
    *off = begin;
    *plen = end - begin;
}

size_t jaccl_algo_run_scratch(const struct jaccl_algo_ctx *c, int nred)
{
    return (size_t)nred * 2 * (size_t)c->max_links * c->seg_bytes;
}

static void red_post(struct jaccl_algo_ctx *c, struct red_part *r, struct jaccl_xfer *x)
{
    size_t left = r->end - r->post;
    x->len = left < c->seg_bytes ? left : c->seg_bytes;
    x->done = 0;
    r->post += x->len;
}

/* More transfer slots, for a group or a batch of many sends and receives. */
static int run_grow(struct jaccl_algo_ctx *c, int need)
{
    int cap = c->xfers_cap;
    while (cap < need) cap *= 2;
    struct jaccl_xfer *x = realloc(c->xfers, (size_t)cap * sizeof(*x));
    if (!x) return -1;
    c->xfers = x;
    c->xfers_cap = cap;
    return 0;
}

/* ---- headers: every collective and message says what it is ---- */

#define HDR_LEN      32
#define HDR_MAGIC    0x4a48u /* "JH" */
#define COALESCE_MAX 1024    /* a first part this small travels in the header's own send */

/* One header sent or expected in a run, with the first part of a stream when small. */
struct hslot {
    int rank, peer, dir; /* rank here, transport peer, JACCL_XFER_* */
    int xi;              /* the transfer carrying it */
    char *wire;          /* HDR_LEN bytes of header, then plen bytes of payload */
    char *dst;           /* recv: where the payload goes */
    size_t plen;
    struct jaccl_hdr want; /* recv: what we expect */
    int checked;
};

struct run_hdrs {
    int mode, n, unchecked;
    struct hslot *slot;
    char *stage;
    uint32_t *sseq, *rseq; /* [size]: messages sent to / received from each rank */
    char *seen;            /* [2 * size]: JACCL_HDR_COLL: (rank, dir) has its slot */
};

static void put_le(char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++) p[i] = (char)(v >> (8 * i));
}

static uint64_t get_le(const char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v |= (uint64_t)(unsigned char)p[i] << (8 * i);
    return v;
}

static void hdr_encode(const struct jaccl_hdr *h, char *w)
{
    put_le(w, HDR_MAGIC, 2);
    put_le(w + 2, (uint64_t)h->kind, 1);
    put_le(w + 3, (uint64_t)h->dtype, 1);
    put_le(w + 4, (uint64_t)h->op, 1);
    put_le(w + 5, 0, 3);
    put_le(w + 8, (uint32_t)h->root, 4);
    put_le(w + 12, h->seq, 4);
    put_le(w + 16, h->count, 8);
    put_le(w + 24, h->aux, 8);
}

static int hdr_decode(const char *w, struct jaccl_hdr *h)
{
    *h = (struct jaccl_hdr){.kind = (int)get_le(w + 2, 1),
                            .dtype = (int)get_le(w + 3, 1),
                            .op = (int)get_le(w + 4, 1),
                            .root = (int)(int32_t)(uint32_t)get_le(w + 8, 4),
                            .seq = (uint32_t)get_le(w + 12, 4),
                            .count = get_le(w + 16, 8),
                            .aux = get_le(w + 24, 8)};
    return get_le(w, 2) == HDR_MAGIC && h->kind < JACCL_HDR_KINDS;
}

static int hdr_same(const struct jaccl_hdr *a, const struct jaccl_hdr *b)
{
    return a->kind == b->kind && a->dtype == b->dtype && a->op == b->op && a->root == b->root &&
           a->count == b->count && a->seq == b->seq;
}

/* "allreduce #5 (count 8, float32, sum)" or "a send of 16 bytes (message #2 between us)". */
static const char *hdr_describe(const struct jaccl_hdr *h, int recv, char *buf, size_t len)
{
    static const char *const kinds[] = {"allreduce", "allgather", "reduce_scatter", "broadcast",
                                        "reduce",    "alltoall",  "barrier"};
    static const char *const dtypes[] = {"int8",   "uint8",   "int32",    "uint32",   "int64",
                                         "uint64", "float16", "bfloat16", "float32",  "float64",
                                         "bool",   "int16",   "uint16",   "complex64"};
    static const char *const ops[] = {"sum", "prod", "min", "max", "avg"};
    if (h->kind == JACCL_HDR_SEND) {
        snprintf(buf, len, "a %s of %llu bytes (message #%u between us)", recv ? "recv" : "send",
                 (unsigned long long)h->count, (unsigned)h->seq);
        return buf;
    }
    int n = snprintf(buf, len, "%s #%u (count %llu, %s", kinds[h->kind], (unsigned)h->seq,
                     (unsigned long long)h->count,
                     (unsigned)h->dtype < JACCL_DTYPE_COUNT ? dtypes[h->dtype] : "?");
    int red = h->kind == JACCL_COLL_ALLREDUCE || h->kind == JACCL_COLL_REDUCE_SCATTER ||
              h->kind == JACCL_COLL_REDUCE;
    if (red && n < (int)len)
        n += snprintf(buf + n, len - (size_t)n, ", %s", (unsigned)h->op < 5 ? ops[h->op] : "?");
    if ((h->kind == JACCL_COLL_BROADCAST || h->kind == JACCL_COLL_REDUCE) && n < (int)len)
        n += snprintf(buf + n, len - (size_t)n, ", root %d", h->root);
    if (n < (int)len) snprintf(buf + n, len - (size_t)n, ")");
    return buf;
}

/* Space for the per-peer counters, nslots slots and stage bytes of staging. */
static int hdr_reserve(struct jaccl_algo_ctx *c, int nslots, size_t stage, struct run_hdrs *H)
{
    size_t n = (size_t)c->size, fixed = 2 * n * sizeof(uint32_t) + 2 * n;
    size_t sl = (size_t)nslots * sizeof(struct hslot), need = fixed + sl + stage + 16;
    if (need > c->hdr_buf_len) {
        char *b = realloc(c->hdr_buf, need);
        if (!b) return -1;
        if (c->hdr_buf_len == 0) memset(b, 0, fixed);
        c->hdr_buf = b;
        c->hdr_buf_len = need;
    }
    H->sseq = (uint32_t *)(void *)c->hdr_buf;
    H->rseq = H->sseq + n;
    H->seen = (char *)(H->rseq + n);
    memset(H->seen, 0, 2 * n);
    size_t at = (fixed + 15) & ~(size_t)15;
    H->slot = (struct hslot *)(void *)(c->hdr_buf + at);
    H->stage = c->hdr_buf + at + sl;
    H->n = H->unchecked = 0;
    return 0;
}

/* Whether stream i's first part travels with its header, and how long that part is. */
static size_t hdr_first_part(const struct jaccl_stream *s, int nl, int reduce)
{
    size_t off, len;
    if (reduce) return SIZE_MAX;
    jaccl_algo_part(s->len, nl, 0, 64, &off, &len);
    return len <= COALESCE_MAX ? len : SIZE_MAX;
}

/* Whether stream i carries a header in this run (marks the (rank, dir) as served). */
static int hdr_wanted(struct run_hdrs *H, const struct jaccl_stream *s)
{
    if (H->mode == JACCL_HDR_P2P) return 1;
    if (H->mode != JACCL_HDR_COLL) return 0;
    char *seen = &H->seen[2 * s->peer + s->dir];
    int first = !*seen;
    *seen = 1;
    return first;
}

/* Add at xi the transfer of stream s's header, with its first plen bytes unless SIZE_MAX. */
static void hdr_add(struct jaccl_algo_ctx *c, struct run_hdrs *H, const struct jaccl_stream *s,
                    size_t plen, int xi)
{
    struct hslot *h = &H->slot[H->n++];
    *h = (struct hslot){.rank = s->peer,
                        .peer = jaccl_algo_peer(c, s->peer),
                        .dir = s->dir,
                        .xi = xi,
                        .wire = H->stage,
                        .plen = plen == SIZE_MAX ? 0 : plen};
    H->stage += HDR_LEN + h->plen;
    struct jaccl_hdr mine = c->hdr;
    if (H->mode == JACCL_HDR_P2P) { /* a message's header: its size and number between us */
        uint32_t *seq = s->dir == JACCL_XFER_SEND ? H->sseq : H->rseq;
        mine = (struct jaccl_hdr){.kind = JACCL_HDR_SEND, .count = s->len, .seq = seq[s->peer]++};
    }
    if (s->dir == JACCL_XFER_SEND) {
        hdr_encode(&mine, h->wire);
        if (h->plen) memcpy(h->wire + HDR_LEN, s->buf, h->plen);
    } else {
        h->want = mine;
        h->dst = s->buf;
        H->unchecked++;
    }
    c->xfers[xi] = (struct jaccl_xfer){h->wire, HDR_LEN + h->plen, 0, h->peer, 0, s->dir};
}

/* Slots and staging a run may need: one header per stream, or two per peer. */
static int hdr_prepare(struct jaccl_algo_ctx *c, const struct jaccl_stream *st, int ns,
                       struct run_hdrs *H)
{
    int n = H->mode == JACCL_HDR_P2P ? ns : ns + 2 * c->size;
    size_t stage = (size_t)n * HDR_LEN;
    for (int i = 0; i < ns; i++) stage += st[i].len < COALESCE_MAX ? st[i].len : COALESCE_MAX;
    return hdr_reserve(c, n, stage, H);
}

/* JACCL_HDR_COLL: a header each way with every rank the run's streams did not reach. */
static int hdr_add_rest(struct jaccl_algo_ctx *c, struct run_hdrs *H, int nx)
{
    if (H->mode != JACCL_HDR_COLL) return nx;
    for (int r = 0; r < c->size; r++)
        for (int d = 0; d < 2 && r != c->rank; d++) {
            if (H->seen[2 * r + d]) continue;
            if (nx + 1 > c->xfers_cap && run_grow(c, nx + 1) != 0) return -1;
            struct jaccl_stream s = {d, r, NULL, 0, NULL};
            hdr_add(c, H, &s, SIZE_MAX, nx++);
        }
    return nx;
}

/* The receive of h refused a message of the wrong size: tell its sender, if we can. */
static void hdr_notice(struct jaccl_algo_ctx *c, const struct hslot *h, const struct jaccl_hdr *got,
                       int nx)
{
    for (int i = 0; i < nx; i++) {
        const struct jaccl_xfer *x = &c->xfers[i];
        if (x->peer == h->peer && x->dir == JACCL_XFER_SEND && x->done > 0 && x->done < x->len)
            return; /* half a message is on its way: a notice would land inside it */
    }
    char w[HDR_LEN];
    struct jaccl_hdr n = {
        .kind = JACCL_HDR_NOTICE, .count = got->count, .aux = h->want.count, .seq = got->seq};
    hdr_encode(&n, w);
    struct jaccl_xfer x = {w, HDR_LEN, 0, h->peer, 0, JACCL_XFER_SEND};
    c->tp->ops->progress(c->tp, &x, 1, 0, jaccl_now_ns() + 200000000);
}

static jaccl_result_t hdr_mismatch(struct jaccl_algo_ctx *c, const struct hslot *h,
                                   const struct jaccl_hdr *got, int nx)
{
    char a[160], b[160];
    int p2p = h->want.kind == JACCL_HDR_SEND;
    if (got->kind == JACCL_HDR_NOTICE)
        return jaccl_err_set(c->err, JACCL_ERR_INVALID_USAGE,
                             "rank %d refused message #%u of %llu bytes that this rank sent it: "
                             "its jaccl_recv expected %llu bytes; a send and its recv must have "
                             "the same size",
                             h->rank, (unsigned)got->seq, (unsigned long long)got->count,
                             (unsigned long long)got->aux);
    if (p2p && got->kind == JACCL_HDR_SEND) {
        hdr_notice(c, h, got, nx);
        return jaccl_err_set(c->err, JACCL_ERR_INVALID_USAGE,
                             "rank %d sent message #%u of %llu bytes but this jaccl_recv expects "
                             "%llu bytes; a send and its recv must have the same size",
                             h->rank, (unsigned)got->seq, (unsigned long long)got->count,
                             (unsigned long long)h->want.count);
    }
    return jaccl_err_set(
        c->err, JACCL_ERR_INVALID_USAGE, "rank %d called %s while this rank called %s; %s", h->rank,
        hdr_describe(got, 0, a, sizeof(a)), hdr_describe(&h->want, p2p, b, sizeof(b)),
        p2p ? "a send and its recv must have the same size"
            : "every rank must make the same collective calls, with the same "
              "count, dtype, op and root, in the same order");
}

/* Check every header that has arrived, before any payload behind it is trusted. */
static jaccl_result_t hdr_check(struct jaccl_algo_ctx *c, struct run_hdrs *H, int nx)
{
    for (int i = 0; i < H->n && H->unchecked > 0; i++) {
        struct hslot *h = &H->slot[i];
        if (h->dir != JACCL_XFER_RECV || h->checked || c->xfers[h->xi].done < HDR_LEN) continue;
        struct jaccl_hdr got;
        h->checked = 1;
        H->unchecked--;
        if (!hdr_decode(h->wire, &got))
            return jaccl_err_set(c->err, JACCL_ERR_INVALID_USAGE,
                                 "rank %d sent bytes that are not a jaccl header where this "
                                 "rank's %s begins: the two ranks' calls are out of step",
                                 h->rank, c->err->call ? c->err->call : "call");
        if (!hdr_same(&got, &h->want)) return hdr_mismatch(c, h, &got, nx);
    }
    return JACCL_SUCCESS;
}

/* Move payloads that arrived with their headers to where they belong. */
static void hdr_deliver(const struct run_hdrs *H)
{
    for (int i = 0; i < H->n; i++)
        if (H->slot[i].dir == JACCL_XFER_RECV && H->slot[i].plen)
            memcpy(H->slot[i].dst, H->slot[i].wire + HDR_LEN, H->slot[i].plen);
}

/* ---- the transfer engine ---- */

/* Lay out the transfers; returns how many, or -1 if they don't fit. */
static int run_setup(struct jaccl_algo_ctx *c, struct jaccl_stream *st, int ns, int withred,
                     struct red_part *red, int *nred, struct run_hdrs *H)
{
    int nx = 0;
    *nred = 0;
    for (int i = 0; i < ns; i++) {
        int peer = jaccl_algo_peer(c, st[i].peer), nl = c->tp->ops->links(c->tp, peer);
        int reduce = withred && st[i].dir == JACCL_XFER_RECV;
        if (nx + nl * 2 + 1 > c->xfers_cap && run_grow(c, nx + nl * 2 + 1) != 0) return -1;
        if (reduce && *nred + nl > RUN_MAX_RED * JACCL_MAX_LINKS) return -1;
        int l = 0;
        if (hdr_wanted(H, &st[i])) {
            size_t plen = hdr_first_part(&st[i], nl, reduce);
            hdr_add(c, H, &st[i], plen, nx++);
            l = plen == SIZE_MAX ? 0 : 1; /* the first part went with the header */
        }
        for (; l < nl; l++) {
            size_t off, len;
            jaccl_algo_part(st[i].len, nl, l, 64, &off, &len);
            struct jaccl_xfer x = {st[i].buf + off, len, 0, peer, l, st[i].dir};
            if (!reduce) {
                c->xfers[nx++] = x;
                continue;
            }
            struct red_part *r = &red[(*nred)++];
            *r = (struct red_part){
                .stream = i, .xi = nx, .head = off, .post = off, .end = off + len};
            for (int k = 0; k < 2; k++) {
                size_t slot = ((size_t)(r - red) * 2 + (size_t)k) * c->seg_bytes;
                c->xfers[nx + k] = x;
                c->xfers[nx + k].buf = c->scratch + slot;
                red_post(c, r, &c->xfers[nx + k]);
            }
            nx += 2;
        }
    }
    return hdr_add_rest(c, H, nx);
}

/* Reduce every segment that has fully arrived and post the next one in its slot. */
static int run_reduce_ready(struct jaccl_algo_ctx *c, struct jaccl_stream *st, struct red_part *red,
                            int nred, jaccl_reduce_fn fn, size_t esize)
{
    int busy = 0;
    for (int i = 0; i < nred; i++) {
        struct red_part *r = &red[i];
        struct jaccl_xfer *x = &c->xfers[r->xi];
        while (x[0].len > 0 && x[0].done == x[0].len) {
            struct jaccl_stream *s = &st[r->stream];
            fn(s->buf + r->head, x[0].buf, s->local + r->head, x[0].len / esize);
            r->head += x[0].len;
            void *freed = x[0].buf;
            x[0] = x[1];
            x[1].buf = freed;
            red_post(c, r, &x[1]);
        }
        busy |= r->head < r->end;
    }
    return busy;
}

/* Whether any transfer is unfinished. */
static int run_pending(const struct jaccl_algo_ctx *c, int nx)
{
    for (int i = 0; i < nx; i++)
        if (c->xfers[i].done < c->xfers[i].len) return 1;
    return 0;
}

jaccl_result_t jaccl_algo_run(struct jaccl_algo_ctx *c, struct jaccl_stream *st, int ns,
                              jaccl_reduce_fn fn, size_t esize)
{
    struct red_part red[RUN_MAX_RED * JACCL_MAX_LINKS];
    struct run_hdrs H = {.mode = c->hdr_mode};
    int nred;
    c->tp->err = c->err; /* communicators split from one another share the transport */
    if (H.mode == JACCL_HDR_COLL) c->hdr_mode = JACCL_HDR_OFF; /* the first run only */
    int nx = H.mode == JACCL_HDR_OFF || hdr_prepare(c, st, ns, &H) == 0
                 ? run_setup(c, st, ns, fn != NULL, red, &nred, &H)
                 : -1;
    if (nx < 0)
        return jaccl_err_set(c->err, JACCL_ERR_NOMEM,
                             "cannot lay out %d transfers (out of memory, "
                             "or more than %d reducing streams)",
                             ns, RUN_MAX_RED);
    for (;;) {
        int busy = nred ? run_reduce_ready(c, st, red, nred, fn, esize) : 0;
        jaccl_result_t rc = H.unchecked ? hdr_check(c, &H, nx) : JACCL_SUCCESS;
        if (rc != JACCL_SUCCESS) return rc;
        if (!busy && !run_pending(c, nx)) break;
        /* Return after each step while headers are due, to check them as they arrive. */
        int any = nred > 0 || H.unchecked > 0;
        rc = c->tp->ops->progress(c->tp, c->xfers, nx, any, c->deadline_ns);
        if (rc != JACCL_SUCCESS) return rc;
    }
    hdr_deliver(&H);
    return JACCL_SUCCESS;
}

/* Bytes moved so far by x[0..n): a pass that changes nothing may pause. */
static size_t run_moved(const struct jaccl_xfer *x, int n)
{
    size_t m = 0;
    for (int i = 0; i < n; i++) m += x[i].done;
    return m;
}

/* One pass over every run: check headers, move what can move now. */
static jaccl_result_t multi_pass(struct jaccl_algo_ctx **cs, struct run_hdrs *H, const int *nx,
                                 int n, int *busy, int *failed)
{
    *busy = 0;
    for (int i = 0; i < n; i++) {
        struct jaccl_algo_ctx *c = cs[i];
        jaccl_result_t rc = H[i].unchecked ? hdr_check(c, &H[i], nx[i]) : JACCL_SUCCESS;
        if (rc == JACCL_SUCCESS && run_pending(c, nx[i])) {
            size_t before = run_moved(c->xfers, nx[i]);
            c->tp->err = c->err;
            rc = c->tp->ops->progress(c->tp, c->xfers, nx[i], 1, JACCL_TP_NOWAIT);
            *busy |= 1 + (run_moved(c->xfers, nx[i]) != before);
        }
        if (rc != JACCL_SUCCESS) {
            *failed = i;
            return rc;
        }
    }
    return JACCL_SUCCESS;
}

/* Why a multi-run stopped early, on the run that was still waiting. */
static jaccl_result_t multi_stop(struct jaccl_algo_ctx *c, const volatile int *abort_flag)
{
    if (jaccl_tp_aborted(abort_flag))
        return jaccl_err_set(c->err, JACCL_ERR_ABORTED,
                             "the communicator was aborted (jaccl_comm_abort) during a group; "
                             "destroy it");
    return jaccl_err_set(c->err, JACCL_ERR_TIMEOUT,
                         "a group's sends and receives did not finish before JACCL_TIMEOUT: "
                         "a peer did not make the matching jaccl_send/jaccl_recv calls");
}

jaccl_result_t jaccl_algo_run_multi(struct jaccl_algo_ctx **cs, struct jaccl_stream **st,
                                    const int *ns, int n, const volatile int *const *aborted,
                                    int *failed)
{
    struct run_hdrs *H = calloc((size_t)n, sizeof(*H));
    int *nx = calloc((size_t)n, sizeof(*nx)), nred, busy = 1, idle = 0;
    jaccl_result_t rc = H && nx ? JACCL_SUCCESS : JACCL_ERR_NOMEM;
    *failed = 0;
    for (int i = 0; rc == JACCL_SUCCESS && i < n; i++) {
        H[i].mode = cs[i]->hdr_mode;
        cs[i]->hdr_mode = JACCL_HDR_OFF;
        nx[i] = hdr_prepare(cs[i], st[i], ns[i], &H[i]) == 0
                    ? run_setup(cs[i], st[i], ns[i], 0, NULL, &nred, &H[i])
                    : -1;
        if (nx[i] < 0) {
            *failed = i;
            rc = jaccl_err_set(cs[i]->err, JACCL_ERR_NOMEM, "cannot lay out %d transfers", ns[i]);
        }
    }
    if (rc == JACCL_ERR_NOMEM && (!H || !nx))
        rc = jaccl_err_set(cs[0]->err, JACCL_ERR_NOMEM, "cannot lay out a group");
    while (rc == JACCL_SUCCESS && (rc = multi_pass(cs, H, nx, n, &busy, failed)) == JACCL_SUCCESS &&
           busy) {
        if (busy > 1) { /* something moved */
            idle = 0;
            continue;
        }
        int w = 0; /* the first run still waiting: its deadline and its error */
        while (!run_pending(cs[w], nx[w])) w++;
        for (int i = 0; i < n && rc == JACCL_SUCCESS; i++)
            if (jaccl_tp_aborted(aborted[i])) {
                *failed = i;
                rc = multi_stop(cs[i], aborted[i]);
            }
        if (rc == JACCL_SUCCESS && jaccl_now_ns() > cs[w]->deadline_ns) {
            *failed = w;
            rc = multi_stop(cs[w], NULL);
        }
        if (rc != JACCL_SUCCESS) break;
        /* Nothing moved: pause briefly, longer while it stays so (not past 1 ms). */
        struct timespec nap = {0, idle < 10 ? 20000 : 1000000};
        idle++;
        nanosleep(&nap, NULL);
    }
    for (int i = 0; rc == JACCL_SUCCESS && i < n; i++) hdr_deliver(&H[i]);
    free(H);
    free(nx);
    return rc;
}

jaccl_result_t jaccl_algo_work(struct jaccl_algo_ctx *c, size_t len, char **out)
{
    if (len > c->work_len) {
        char *w = realloc(c->work, len);
        if (!w)
            return jaccl_err_set(c->err, JACCL_ERR_NOMEM, "cannot allocate a %zu-byte workspace",
                                 len);
        c->work = w;
        c->work_len = len;
    }
    *out = c->work;
    return JACCL_SUCCESS;
}
