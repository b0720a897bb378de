/* The transfer engine every algorithm runs its steps on. */
#include "algo/algo.h"

#include "util/copy.h"
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

void jaccl_algo_ag_copy(char *dst, const char *src, size_t len, size_t bytes)
{
    if (bytes >= JACCL_AG_STREAM_MIN)
        jaccl_copy_stream(dst, src, len);
    else
        jaccl_copy(dst, src, len);
}

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

/*
 * Streams shorter than this stay on a peer's first link: a part per link
 * costs a system call per link (4-5 us each over TCP loopback here), more
 * than the links save below ~128 KiB.
 */
#define STRIPE_MIN ((size_t)128 << 10)

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
    int opt, opt_end; /* xfers[opt, opt_end): owed headers read if they come, not waited for */
    int served;       /* JACCL_HDR_COLL: (rank, dir) pairs with a slot */
    struct hslot *slot;
    char *stage;
    uint32_t *sseq, *rseq; /* [size]: messages sent to / received from each rank */
    char *seen;            /* [2 * size]: JACCL_HDR_COLL: (rank, dir) has its slot */
};

/*
 * Headers a peer owes us (algo.h), oldest first.  Up to OWED_MAX per peer
 * let a root run that many calls ahead of its receivers, as an MPI's eager
 * sends do; one slot more than that, as the run that reads the oldest may
 * owe the next in the same run.
 */
#define OWED_MAX 16
/* Read without waiting per peer and run: one more than a call adds, so a backlog drains. */
#define OWED_READ 2
/*
 * Our own headers that only confirm a call to a peer we send nothing else
 * are held back (a system call each over TCP) until this many, until the run
 * would wait, or until we send that peer anything else.  Fewer than OWED_MAX,
 * so a peer never waits for one of a call this rank has made.  8 and 16, not
 * 4 and 8: 4 ranks over TCP, 8-512 B, all-reduces 0.9x the time, all-gathers,
 * broadcasts and reduces 0.8x.
 */
#define OWED_OUT 8

struct owed_hdr {
    char wire[HDR_LEN];
    struct jaccl_hdr want;
    int rank; /* the peer's rank on the communicator of the call, for messages */
};

struct owed_peer {
    struct owed_hdr q[OWED_MAX + 1];
    int head, n;
    unsigned rx; /* the run numbered so receives from this peer */
    unsigned tx; /* the run numbered so sends to this peer */
    size_t done; /* bytes of the oldest read by earlier runs */
    int nout;    /* headers held back in out */
    char out[OWED_OUT][HDR_LEN];
};

struct jaccl_owed {
    int n, nout;
    jaccl_result_t broken; /* the failure that left these links out of step */
    unsigned run;          /* runs laid out while headers were owed */
    struct owed_peer p[];  /* [transport peer] */
};

/* Whether c may defer headers: it has the table and its links are in step. */
static inline int owed_on(const struct jaccl_algo_ctx *c)
{
    return c->owed && c->owed->broken == JACCL_SUCCESS;
}

/* Headers owed to c (none once its links failed: they are out of step). */
static inline int owed_count(const struct jaccl_algo_ctx *c)
{
    return owed_on(c) ? c->owed->n : 0;
}

/* Headers c's links hold back, and those owed to it. */
static inline int owed_any(const struct jaccl_algo_ctx *c)
{
    return owed_on(c) ? c->owed->n + c->owed->nout : 0;
}

/* A little-endian 64-bit word at p (headers: the same bytes on every host). */
static inline void put_le(char *p, uint64_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    memcpy(p, &v, sizeof(v));
}

static inline uint64_t get_le(const char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

/*
 * Wire layout: bytes 0-1 magic, 2 kind, 3 dtype, 4 op, 5-7 zero, 8-11 root,
 * 12-15 seq, 16-23 count, 24-31 aux; written and read as four words.
 */
static inline void hdr_encode(const struct jaccl_hdr *h, char *w)
{
    put_le(w, HDR_MAGIC | (uint64_t)(h->kind & 0xff) << 16 | (uint64_t)(h->dtype & 0xff) << 24 |
                  (uint64_t)(h->op & 0xff) << 32);
    put_le(w + 8, (uint32_t)h->root | (uint64_t)h->seq << 32);
    put_le(w + 16, h->count);
    put_le(w + 24, h->aux);
}

static inline int hdr_decode(const char *w, struct jaccl_hdr *h)
{
    uint64_t w0 = get_le(w), w1 = get_le(w + 8);
    *h = (struct jaccl_hdr){.kind = (int)(w0 >> 16 & 0xff),
                            .dtype = (int)(w0 >> 24 & 0xff),
                            .op = (int)(w0 >> 32 & 0xff),
                            .root = (int)(int32_t)(uint32_t)w1,
                            .seq = (uint32_t)(w1 >> 32),
                            .count = get_le(w + 16),
                            .aux = get_le(w + 24)};
    return (w0 & 0xffff) == HDR_MAGIC && h->kind < JACCL_HDR_KINDS;
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
    if (H->mode == JACCL_HDR_COLL) memset(H->seen, 0, 2 * n); /* only collectives read it */
    size_t at = (fixed + 15) & ~(size_t)15;
    H->slot = (struct hslot *)(void *)(c->hdr_buf + at);
    H->stage = c->hdr_buf + at + sl;
    H->n = H->unchecked = H->served = 0;
    return 0;
}

/* Whether stream i's first part travels with its header, and how long that part is. */
static size_t hdr_first_part(const struct jaccl_stream *s, int nl, int reduce)
{
    size_t off, len = s->len;
    if (reduce) return SIZE_MAX;
    if (nl > 1) jaccl_algo_part(s->len, nl, 0, 64, &off, &len); /* one link: all of it */
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
    H->served += first;
    return first;
}

/* Add at xi the transfer of stream s's header, with its first plen bytes unless SIZE_MAX. */
static inline void hdr_add(struct jaccl_algo_ctx *c, struct run_hdrs *H,
                           const struct jaccl_stream *s, size_t plen, int xi)
{
    /* Field by field: this runs for every small call, a compound literal would zero want too. */
    struct hslot *h = &H->slot[H->n++];
    h->rank = s->peer;
    h->peer = jaccl_algo_peer(c, s->peer);
    h->dir = s->dir;
    h->xi = xi;
    h->wire = H->stage;
    h->plen = plen == SIZE_MAX ? 0 : plen;
    h->checked = 0;
    H->stage += HDR_LEN + h->plen;
    struct jaccl_hdr msg, *mine = &c->hdr;
    if (H->mode == JACCL_HDR_P2P) { /* a message's header: its size and number between us */
        uint32_t *seq = s->dir == JACCL_XFER_SEND ? H->sseq : H->rseq;
        msg = (struct jaccl_hdr){.kind = JACCL_HDR_SEND, .count = s->len, .seq = seq[s->peer]++};
        mine = &msg;
    }
    if (s->dir == JACCL_XFER_SEND) {
        hdr_encode(mine, h->wire);
        if (h->plen) jaccl_copy(h->wire + HDR_LEN, s->buf, h->plen);
    } else {
        h->want = *mine;
        h->dst = s->buf;
        H->unchecked++;
    }
    c->xfers[xi] = (struct jaccl_xfer){h->wire, HDR_LEN + h->plen, 0, h->peer, 0, s->dir, 0};
}

/* Slots and staging a run may need: one header per stream, or two per peer; and those owed. */
static inline int hdr_prepare(struct jaccl_algo_ctx *c, const struct jaccl_stream *st, int ns,
                              struct run_hdrs *H)
{
    int n = H->mode == JACCL_HDR_P2P ? ns : ns + 2 * c->size;
    n += owed_count(c);
    size_t stage = (size_t)n * HDR_LEN;
    for (int i = 0; i < ns; i++) stage += st[i].len < COALESCE_MAX ? st[i].len : COALESCE_MAX;
    return hdr_reserve(c, n, stage, H);
}

/*
 * After a failure: send len bytes to peer, within 200 ms, unless half a
 * message to it is on its way (they would land inside it).  c's error stays
 * the run's.  Returns whether it tried.
 */
static int send_aside(struct jaccl_algo_ctx *c, void *buf, size_t len, int peer, int nx)
{
    for (int i = 0; i < nx; i++) {
        const struct jaccl_xfer *x = &c->xfers[i];
        if (x->peer == peer && x->dir == JACCL_XFER_SEND && x->done > 0 && x->done < x->len)
            return 0;
    }
    struct jaccl_err spare = *c->err;
    struct jaccl_xfer x = {buf, len, 0, peer, 0, JACCL_XFER_SEND, 0};
    c->tp->err = &spare;
    c->tp->ops->progress(c->tp, &x, 1, 0, jaccl_now_ns() + 200000000);
    c->tp->err = c->err;
    return 1;
}

/* ---- owed headers (algo.h): read by a later run ---- */

struct jaccl_owed *jaccl_owed_new(int tp_size)
{
    return calloc(1, sizeof(struct jaccl_owed) + (size_t)tp_size * sizeof(struct owed_peer));
}

void jaccl_owed_free(struct jaccl_owed *o)
{
    free(o);
}

void jaccl_owed_broken(struct jaccl_owed *o, jaccl_result_t rc)
{
    if (o && o->broken == JACCL_SUCCESS) o->broken = rc;
}

/* Add at xi the read of peer's k-th oldest owed header, checked as it arrives. */
static void owed_post(struct jaccl_algo_ctx *c, struct run_hdrs *H, int peer, int k, int xi)
{
    struct owed_peer *o = &c->owed->p[peer];
    struct owed_hdr *e = &o->q[(o->head + k) % (OWED_MAX + 1)];
    struct hslot *h = &H->slot[H->n++];
    *h = (struct hslot){.rank = e->rank,
                        .peer = peer,
                        .dir = JACCL_XFER_RECV,
                        .xi = xi,
                        .wire = e->wire,
                        .want = e->want};
    H->unchecked++;
    size_t done = k == 0 ? o->done : 0;
    c->xfers[xi] = (struct jaccl_xfer){e->wire, HDR_LEN, done, peer, 0, JACCL_XFER_RECV, 0};
}

/* The m oldest of peer's are read (or being read, by a run that waits for them). */
static void owed_pop(struct jaccl_owed *w, int peer, int m)
{
    struct owed_peer *o = &w->p[peer];
    o->head = (o->head + m) % (OWED_MAX + 1);
    o->n -= m;
    w->n -= m;
    if (m) o->done = 0;
}

/* Post the m oldest of peer's owed headers from xi on, to be waited for. */
static int owed_post_due(struct jaccl_algo_ctx *c, struct run_hdrs *H, int peer, int m, int xi)
{
    for (int k = 0; k < m; k++) owed_post(c, H, peer, k, xi++);
    owed_pop(c->owed, peer, m);
    return xi;
}

/* Add at xi the send of the headers held back for peer. */
static void owed_flush(struct jaccl_algo_ctx *c, int peer, int xi)
{
    struct owed_peer *o = &c->owed->p[peer];
    c->xfers[xi] =
        (struct jaccl_xfer){o->out, (size_t)o->nout * HDR_LEN, 0, peer, 0, JACCL_XFER_SEND, 0};
    c->owed->nout -= o->nout;
    o->nout = 0;
}

/*
 * Post what this run must read ahead of its own transfers: everything owed
 * by a peer it receives from (on the link it comes before the peer's later
 * bytes), everything for a settle, and in a collective's first run the
 * oldest of a member whose queue is full, to make room for this call's.
 * The rest waits for owed_post_rest.
 */
static int owed_post_must(struct jaccl_algo_ctx *c, struct run_hdrs *H,
                          const struct jaccl_stream *st, int ns)
{
    int n = owed_any(c), nx = 0, all = H->mode == JACCL_HDR_SETTLE;
    if (n == 0) return 0;
    if (n > c->xfers_cap && run_grow(c, n) != 0) return -1;
    unsigned run = ++c->owed->run;
    for (int i = 0; i < ns; i++) {
        struct owed_peer *o = &c->owed->p[jaccl_algo_peer(c, st[i].peer)];
        *(st[i].dir == JACCL_XFER_RECV ? &o->rx : &o->tx) = run;
    }
    for (int p = 0; p < c->tp->size; p++) {
        struct owed_peer *o = &c->owed->p[p];
        if (o->nout && (all || o->tx == run)) owed_flush(c, p, nx++); /* before the run's bytes */
        nx = owed_post_due(c, H, p, o->n && (all || o->rx == run) ? o->n : 0, nx);
    }
    for (int r = 0; r < c->size && H->mode == JACCL_HDR_COLL; r++) {
        int p = jaccl_algo_peer(c, r);
        if (r != c->rank && c->owed->p[p].n == OWED_MAX) nx = owed_post_due(c, H, p, 1, nx);
    }
    return nx;
}

/*
 * Post the others last (so a timeout names what the run waits for), read if
 * they come but not waited for: a rank blocked on one peer still learns of a
 * mismatch another has sent it, even one deferred by this run.  Lazy ones
 * (transport.h) while fewer are owed than a peer sends at once: over TCP a
 * look at a socket is a system call, mostly for nothing.
 */
static int owed_post_rest(struct jaccl_algo_ctx *c, struct run_hdrs *H, int nx)
{
    int n = owed_count(c);
    H->opt = H->opt_end = nx;
    if (n == 0) return nx;
    if (nx + n > c->xfers_cap && run_grow(c, nx + n) != 0) return -1;
    for (int p = 0; p < c->tp->size; p++) {
        int m = c->owed->p[p].n, flags = m < OWED_OUT ? JACCL_XFER_LAZY : 0;
        for (int k = 0; k < m && k < OWED_READ; k++) {
            owed_post(c, H, p, k, nx);
            c->xfers[nx++].flags = flags;
        }
    }
    H->opt_end = nx;
    return nx;
}

/* After the run: those read whole are done with (each was checked); part of the next is kept. */
static void owed_keep(struct jaccl_algo_ctx *c, const struct run_hdrs *H)
{
    int nx = H->opt_end;
    for (int i = H->opt; i < nx; i++) {
        const struct jaccl_xfer *x = &c->xfers[i];
        if (x->done == HDR_LEN) {
            owed_pop(c->owed, x->peer, 1);
            continue;
        }
        c->owed->p[x->peer].done = x->done;
        while (i + 1 < nx && c->xfers[i + 1].peer == x->peer) i++; /* its later ones: nothing */
    }
}

/* Rank r's header of this call is read by a later run. */
static void owed_defer(struct jaccl_algo_ctx *c, int r)
{
    struct owed_peer *o = &c->owed->p[jaccl_algo_peer(c, r)];
    struct owed_hdr *e = &o->q[(o->head + o->n) % (OWED_MAX + 1)];
    e->want = c->hdr;
    e->rank = r;
    o->n++;
    c->owed->n++;
}

/* Hold back our header of this call to rank r; send those held once there are OWED_OUT. */
static int owed_hold(struct jaccl_algo_ctx *c, int r, int nx)
{
    int peer = jaccl_algo_peer(c, r);
    struct owed_peer *o = &c->owed->p[peer];
    hdr_encode(&c->hdr, o->out[o->nout++]);
    c->owed->nout++;
    if (o->nout == OWED_OUT) owed_flush(c, peer, nx++);
    return nx;
}

/* Before the run waits: send everything held back (a peer may wait for it). */
static int owed_flush_all(struct jaccl_algo_ctx *c, int nx)
{
    if (nx + c->owed->nout > c->xfers_cap && run_grow(c, nx + c->owed->nout) != 0) return -1;
    for (int p = 0; p < c->tp->size && c->owed->nout; p++)
        if (c->owed->p[p].nout) owed_flush(c, p, nx++);
    return nx;
}

/*
 * The run failed: still send each peer our held-back headers (so a peer in
 * another call learns which, and fails naming both), unless half a message
 * to it is on its way: they would land inside it.
 */
__attribute__((cold, noinline)) static void owed_flush_failed(struct jaccl_algo_ctx *c, int nx)
{
    for (int p = 0; p < c->tp->size; p++) {
        struct owed_peer *o = &c->owed->p[p];
        if (!o->nout || !send_aside(c, o->out, (size_t)o->nout * HDR_LEN, p, nx)) continue;
        c->owed->nout -= o->nout;
        o->nout = 0;
    }
}

/* JACCL_HDR_COLL: a header each way with every rank the run's streams did not reach. */
static int hdr_add_rest(struct jaccl_algo_ctx *c, struct run_hdrs *H, int nx)
{
    if (H->mode != JACCL_HDR_COLL || H->served == 2 * (c->size - 1)) return nx;
    for (int r = 0; r < c->size; r++)
        for (int d = 0; d < 2 && r != c->rank; d++) {
            if (H->seen[2 * r + d]) continue;
            if (nx + 1 > c->xfers_cap && run_grow(c, nx + 1) != 0) return -1;
            struct jaccl_stream s = {d, r, NULL, 0, NULL};
            if (d == JACCL_XFER_RECV && owed_on(c))
                owed_defer(c, r);
            else if (owed_on(c))
                nx = owed_hold(c, r, nx);
            else
                hdr_add(c, H, &s, SIZE_MAX, nx++);
        }
    return nx;
}

/* The receive of h refused a message of the wrong size: tell its sender, if we can. */
static void hdr_notice(struct jaccl_algo_ctx *c, const struct hslot *h, const struct jaccl_hdr *got,
                       int nx)
{
    char w[HDR_LEN];
    struct jaccl_hdr n = {
        .kind = JACCL_HDR_NOTICE, .count = got->count, .aux = h->want.count, .seq = got->seq};
    hdr_encode(&n, w);
    send_aside(c, w, HDR_LEN, h->peer, nx);
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

/* The header of h arrived and is not the one expected (kept out of line: hdr_check runs often). */
__attribute__((cold, noinline)) static jaccl_result_t hdr_refuse(struct jaccl_algo_ctx *c,
                                                                 const struct hslot *h, int nx)
{
    struct jaccl_hdr got;
    char want[160];
    if (hdr_decode(h->wire, &got)) return hdr_mismatch(c, h, &got, nx);
    return jaccl_err_set(c->err, JACCL_ERR_INVALID_USAGE,
                         "rank %d sent bytes that are not a jaccl header where this rank "
                         "expects the header of %s: the two ranks' calls are out of step",
                         h->rank, hdr_describe(&h->want, 1, want, sizeof(want)));
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
        if (!hdr_decode(h->wire, &got) || !hdr_same(&got, &h->want)) return hdr_refuse(c, h, nx);
    }
    return JACCL_SUCCESS;
}

/* Move payloads that arrived with their headers to where they belong. */
static void hdr_deliver(const struct run_hdrs *H)
{
    for (int i = 0; i < H->n; i++)
        if (H->slot[i].dir == JACCL_XFER_RECV && H->slot[i].plen)
            jaccl_copy(H->slot[i].dst, H->slot[i].wire + HDR_LEN, H->slot[i].plen);
}

/* ---- the transfer engine ---- */

/* Lay out the transfers; returns how many, or -1 if they don't fit. */
static int run_setup(struct jaccl_algo_ctx *c, struct jaccl_stream *st, int ns, int withred,
                     struct red_part *red, int *nred, struct run_hdrs *H)
{
    int nx = owed_post_must(c, H, st, ns);
    *nred = 0;
    for (int i = 0; i < ns && nx >= 0; i++) {
        int peer = jaccl_algo_peer(c, st[i].peer), nl = 1; /* both ends see the same length */
        if (st[i].len >= STRIPE_MIN) nl = c->tp->ops->links(c->tp, peer);
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
            int fl = st[i].dir == JACCL_XFER_SEND ? c->run_flags : 0;
            struct jaccl_xfer x = {st[i].buf + off, len, 0, peer, l, st[i].dir, fl};
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
    nx = nx < 0 ? -1 : hdr_add_rest(c, H, nx);
    return nx < 0 ? -1 : owed_post_rest(c, H, nx);
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

/* Whether any transfer the run waits for is unfinished (not the owed reads in H's range). */
static int run_waits(const struct jaccl_algo_ctx *c, const struct run_hdrs *H, int nx)
{
    if (run_pending(c, H->opt)) return 1;
    for (int i = H->opt_end; i < nx; i++)
        if (c->xfers[i].done < c->xfers[i].len) return 1;
    return 0;
}

/* A call on a communicator sharing c's links failed while headers were owed on them. */
__attribute__((cold, noinline)) static jaccl_result_t owed_broken(struct jaccl_algo_ctx *c)
{
    return jaccl_err_set(c->err, c->owed->broken,
                         "a call on a communicator that shares these links failed (%s) and left "
                         "them out of step; destroy this communicator too",
                         jaccl_result_string(c->owed->broken));
}

/*
 * Where a message costs a system call, a run holding headers back waits
 * up to this long (blocked, not spinning) before it sends them; a peer that
 * must read one, or that is in a different call and learns so from it,
 * waits that much longer.  The data it waits for usually comes first, and
 * the headers then go OWED_OUT to a message (4 ranks over TCP: a 30 us spin
 * let a broadcast's receivers send each header alone, 3 messages per call).
 */
#define HOLD_NS 1000000

/* Flush the held-back headers; nx grows by a transfer per peer (-1: out of memory). */
static int run_unhold(struct jaccl_algo_ctx *c, int nx)
{
    nx = owed_flush_all(c, nx);
    if (nx < 0)
        jaccl_err_set(c->err, JACCL_ERR_NOMEM, "cannot add %d held-back headers", c->owed->nout);
    return nx;
}

/*
 * Move the run's transfers until all are done (owed reads need not be).
 * With headers held back, the run waits HOLD_NS where messages cost system
 * calls, elsewhere not at all; if it is not done by then, the headers go out
 * and it waits as usual.
 */
static jaccl_result_t run_loop(struct jaccl_algo_ctx *c, struct jaccl_stream *st,
                               struct red_part *red, int nred, jaccl_reduce_fn fn, size_t esize,
                               struct run_hdrs *H, int *pnx)
{
    int held = owed_on(c) && c->owed->nout, nx = *pnx;
    int64_t hold_until = held && c->tp->msg_syscall ? jaccl_now_ns() + HOLD_NS : 0;
    for (int pass = 0;; pass++) {
        int busy = nred ? run_reduce_ready(c, st, red, nred, fn, esize) : 0;
        if (!busy && !run_waits(c, H, nx)) break;
        if (held && pass > 0 && !(hold_until && jaccl_now_ns() < hold_until)) {
            if ((nx = run_unhold(c, nx)) < 0) return JACCL_ERR_NOMEM;
            *pnx = nx;
            held = 0;
        }
        /* Return after each step while headers are due, to check them as they arrive. */
        int any = nred > 0 || H->unchecked > 0;
        int64_t deadline = held && !hold_until ? JACCL_TP_NOWAIT : c->deadline_ns;
        c->tp->return_ns = held ? hold_until : 0;
        jaccl_result_t rc = c->tp->ops->progress(c->tp, c->xfers, nx, any, deadline);
        c->tp->return_ns = 0;
        /* Before any reduce; and on a failure too, as a peer that refused our
         * header closes its links right after its own header reaches us. */
        if (H->unchecked) {
            jaccl_result_t hc = hdr_check(c, H, nx);
            rc = hc != JACCL_SUCCESS ? hc : rc;
        }
        if (rc != JACCL_SUCCESS) return rc;
    }
    return JACCL_SUCCESS;
}

jaccl_result_t jaccl_algo_run_bulk(struct jaccl_algo_ctx *c, struct jaccl_stream *st, int ns)
{
    c->run_flags = JACCL_XFER_BULK;
    jaccl_result_t rc = jaccl_algo_run(c, st, ns, NULL, 0);
    c->run_flags = 0;
    return rc;
}

/*
 * Two ranks swapping at most COALESCE_MAX bytes each way, nothing owed (the
 * 2-rank small all-reduce and all-gather, a small exchange inside a call):
 * one transfer each way, its header and payload together, laid out without
 * the general bookkeeping, which took as many instructions as the transfer
 * itself (2 ranks over shm, 8 B all-reduce: ~750 of ~1700 per call).
 */
static int run_is_pair(const struct jaccl_algo_ctx *c, int mode, const struct jaccl_stream *st,
                       int ns, jaccl_reduce_fn fn)
{
    if (ns != 2 || fn || owed_any(c)) return 0;
    if (mode != JACCL_HDR_OFF && (mode != JACCL_HDR_COLL || c->size != 2)) return 0;
    return st[0].dir == JACCL_XFER_SEND && st[1].dir == JACCL_XFER_RECV &&
           st[0].peer == st[1].peer && st[0].len <= COALESCE_MAX && st[1].len <= COALESCE_MAX;
}

/* xfers holds at least 8 from the start (comm.c) and never shrinks: room for 2. */
static jaccl_result_t run_pair(struct jaccl_algo_ctx *c, int mode, struct jaccl_stream *st)
{
    struct run_hdrs H = {.mode = JACCL_HDR_OFF};
    int nx = 2;
    if (mode == JACCL_HDR_COLL) {
        if (hdr_reserve(c, 2, 2 * HDR_LEN + st[0].len + st[1].len, &H) != 0)
            return jaccl_err_set(c->err, JACCL_ERR_NOMEM, "cannot lay out 2 headers");
        hdr_add(c, &H, &st[0], st[0].len, 0);
        hdr_add(c, &H, &st[1], st[1].len, 1);
    } else {
        int peer = jaccl_algo_peer(c, st[0].peer);
        c->xfers[0] =
            (struct jaccl_xfer){st[0].buf, st[0].len, 0, peer, 0, JACCL_XFER_SEND, c->run_flags};
        c->xfers[1] = (struct jaccl_xfer){st[1].buf, st[1].len, 0, peer, 0, JACCL_XFER_RECV, 0};
    }
    jaccl_result_t rc = run_loop(c, st, NULL, 0, NULL, 0, &H, &nx);
    if (rc == JACCL_SUCCESS) hdr_deliver(&H);
    return rc;
}

jaccl_result_t jaccl_algo_run(struct jaccl_algo_ctx *c, struct jaccl_stream *st, int ns,
                              jaccl_reduce_fn fn, size_t esize)
{
    struct red_part red[RUN_MAX_RED * JACCL_MAX_LINKS];
    struct run_hdrs H = {.mode = c->hdr_mode};
    int nred;
    c->tp->err = c->err; /* communicators split from one another share the transport */
    if (H.mode == JACCL_HDR_COLL) c->hdr_mode = JACCL_HDR_OFF; /* the first run only */
    if (c->owed && c->owed->broken && c->owed->n) return owed_broken(c);
    if (run_is_pair(c, H.mode, st, ns, fn)) return run_pair(c, H.mode, st);
    int plain = H.mode == JACCL_HDR_OFF && !owed_any(c);
    int nx = plain || hdr_prepare(c, st, ns, &H) == 0
                 ? run_setup(c, st, ns, fn != NULL, red, &nred, &H)
                 : -1;
    if (nx < 0)
        return jaccl_err_set(c->err, JACCL_ERR_NOMEM,
                             "cannot lay out %d transfers (out of memory, "
                             "or more than %d reducing streams)",
                             ns, RUN_MAX_RED);
    jaccl_result_t rc = run_loop(c, st, red, nred, fn, esize, &H, &nx);
    if (H.opt < H.opt_end) owed_keep(c, &H);
    if (rc != JACCL_SUCCESS && owed_on(c) && c->owed->nout) owed_flush_failed(c, nx);
    if (rc == JACCL_SUCCESS) hdr_deliver(&H);
    return rc;
}

jaccl_result_t jaccl_algo_settle(struct jaccl_algo_ctx *c)
{
    if (!owed_any(c)) return JACCL_SUCCESS;
    int mode = c->hdr_mode;
    c->hdr_mode = JACCL_HDR_SETTLE;
    jaccl_result_t rc = jaccl_algo_run(c, NULL, 0, NULL, 0);
    c->hdr_mode = mode;
    return rc;
}

/* ---- batches: point-to-point runs that grow while they progress ---- */

/* One run added to a batch: its streams' transfers sit in its lane at [base, base + nx). */
struct batch_part {
    struct jaccl_algo_ctx *c;
    struct run_hdrs H;
    char *hmem; /* H's slots and staging, after st[]: stable while the lane's array grows */
    struct jaccl_err err; /* this part's own error: "rank R: CALL: ..." */
    const volatile int *aborted;
    int64_t deadline_ns;
    int base, nx, lane;
    void *tag;
    jaccl_result_t rc;
    struct batch_part *next; /* in the lane while it runs, then in the finished list */
    int ns;
    struct jaccl_stream st[]; /* for messages */
};

/* Everything on one transport: a single array, so each link carries its transfers in order. */
struct batch_lane {
    struct jaccl_tp *tp;
    struct jaccl_xfer *x;
    int start, n, cap; /* x[start, n) run; those before start belong to finished parts */
    struct batch_part *head, *tail;
    jaccl_result_t dead; /* a failure left its links out of step: later parts fail at once */
    char dead_msg[JACCL_ERR_LEN];
};

struct jaccl_batch {
    struct batch_lane *lanes;
    int nlanes, running;
    struct batch_part *done, *done_tail;
    struct batch_part *spare; /* finished one-stream parts kept for the next message */
    int nspare;
};

/* One-stream parts kept for reuse: a window of sends allocates nothing once warm. */
#define BATCH_SPARE 256

jaccl_result_t jaccl_batch_new(struct jaccl_batch **out)
{
    struct jaccl_batch *b = calloc(1, sizeof(*b));
    if (!b) return JACCL_ERR_NOMEM;
    *out = b;
    return JACCL_SUCCESS;
}

static void part_free(struct batch_part *p)
{
    free(p);
}

/* Offset of a part's header slots: after its ns streams, aligned for the slots. */
static size_t part_hoff(int ns)
{
    size_t a = _Alignof(struct hslot),
           off = sizeof(struct batch_part) + (size_t)ns * sizeof(struct jaccl_stream);
    return (off + a - 1) / a * a;
}

/* Bytes of a part of ns streams, with its header slots and staging. */
static size_t part_size(int ns)
{
    return part_hoff(ns) + (size_t)ns * (sizeof(struct hslot) + HDR_LEN + COALESCE_MAX);
}

static struct batch_part *part_alloc(struct jaccl_batch *b, int ns)
{
    struct batch_part *p = NULL;
    if (ns == 1 && b->spare) {
        p = b->spare;
        b->spare = p->next;
        b->nspare--;
    }
    return p ? p : malloc(part_size(ns));
}

static void part_release(struct jaccl_batch *b, struct batch_part *p)
{
    if (p->ns != 1 || b->nspare >= BATCH_SPARE) {
        part_free(p);
        return;
    }
    p->next = b->spare;
    b->spare = p;
    b->nspare++;
}

void jaccl_batch_free(struct jaccl_batch *b)
{
    if (!b) return;
    for (int i = 0; i < b->nlanes; i++) {
        for (struct batch_part *p = b->lanes[i].head, *q; p; p = q) {
            q = p->next;
            part_free(p);
        }
        free(b->lanes[i].x);
    }
    for (struct batch_part *p = b->done, *q; p; p = q) {
        q = p->next;
        part_free(p);
    }
    for (struct batch_part *p = b->spare, *q; p; p = q) {
        q = p->next;
        part_free(p);
    }
    free(b->lanes);
    free(b);
}

int jaccl_batch_running(const struct jaccl_batch *b)
{
    return b->running;
}

/* The lane of tp, made on first use; -1 without memory. */
static int batch_lane(struct jaccl_batch *b, struct jaccl_tp *tp)
{
    for (int i = 0; i < b->nlanes; i++)
        if (b->lanes[i].tp == tp) return i;
    struct batch_lane *l = realloc(b->lanes, (size_t)(b->nlanes + 1) * sizeof(*l));
    if (!l) return -1;
    b->lanes = l;
    l[b->nlanes] = (struct batch_lane){.tp = tp};
    return b->nlanes++;
}

/* Parts from p on moved down by k transfers. */
static void lane_rebase(struct batch_part *p, int k)
{
    for (; p; p = p->next) {
        p->base -= k;
        for (int i = 0; i < p->H.n; i++) p->H.slot[i].xi -= k;
    }
}

/* Take p out of its lane (its transfers are complete or the lane failed) into the finished list. */
static void part_finish(struct jaccl_batch *b, struct batch_part *p, jaccl_result_t rc)
{
    struct batch_lane *l = &b->lanes[p->lane];
    struct batch_part **pp = &l->head, *prev = NULL;
    while (*pp != p) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    *pp = p->next;
    if (l->tail == p) l->tail = prev;
    if (!prev) {
        /* The oldest part, as most are: its transfers are left behind the start, not copied. */
        l->start = p->base + p->nx;
    } else {
        /* Later parts move down over its transfers: their order on every link is kept. */
        memmove(l->x + p->base, l->x + p->base + p->nx,
                (size_t)(l->n - p->base - p->nx) * sizeof(*l->x));
        l->n -= p->nx;
        lane_rebase(p->next, p->nx);
    }
    if (!l->head) l->start = l->n = 0;
    p->rc = rc;
    p->next = NULL;
    if (b->done_tail)
        b->done_tail->next = p;
    else
        b->done = p;
    b->done_tail = p;
    b->running--;
}

/* Lay out p's streams behind everything already in lane l. */
static int part_setup(struct batch_lane *l, struct batch_part *p, struct jaccl_stream *st, int ns)
{
    struct jaccl_algo_ctx *c = p->c;
    int nred;
    p->H.mode = JACCL_HDR_P2P;
    /* Its own ns slots suffice: jaccl_batch_add read everything owed first. */
    if (owed_any(c) != 0 || hdr_prepare(c, st, ns, &p->H) != 0) return -1;
    /* The ctx's header buffer is reused by its next run: this part keeps its own. */
    size_t sl = (size_t)ns * sizeof(struct hslot);
    p->H.slot = (struct hslot *)(void *)p->hmem;
    p->H.stage = p->hmem + sl;
    int nx = run_setup(c, st, ns, 0, NULL, &nred, &p->H);
    if (nx < 0) return -1;
    if (l->n + nx > l->cap && l->start > 0) { /* drop the finished parts' transfers first */
        memmove(l->x, l->x + l->start, (size_t)(l->n - l->start) * sizeof(*l->x));
        lane_rebase(l->head, l->start);
        l->n -= l->start;
        l->start = 0;
    }
    if (l->n + nx > l->cap) {
        int cap = l->cap ? l->cap : 64;
        while (cap < l->n + nx) cap *= 2;
        struct jaccl_xfer *x = realloc(l->x, (size_t)cap * sizeof(*x));
        if (!x) return -1;
        l->x = x;
        l->cap = cap;
    }
    memcpy(l->x + l->n, c->xfers, (size_t)nx * sizeof(*l->x));
    for (int i = 0; i < p->H.n; i++) p->H.slot[i].xi += l->n;
    p->base = l->n;
    p->nx = nx;
    l->n += nx;
    return 0;
}

jaccl_result_t jaccl_batch_add(struct jaccl_batch *b, struct jaccl_algo_ctx *c,
                               struct jaccl_stream *st, int ns, const volatile int *aborted,
                               void *tag)
{
    /* Collectives ran before (the worker runs them alone): their owed headers come first. */
    jaccl_result_t rc = jaccl_algo_settle(c);
    if (rc != JACCL_SUCCESS) return rc;
    int li = batch_lane(b, c->tp);
    struct batch_part *p = li < 0 ? NULL : part_alloc(b, ns);
    if (!p) return jaccl_err_set(c->err, JACCL_ERR_NOMEM, "cannot add %d transfers to a batch", ns);
    *p = (struct batch_part){.c = c,
                             .err = {.rank = c->err->rank, .call = c->err->call},
                             .aborted = aborted,
                             .deadline_ns = c->deadline_ns,
                             .lane = li,
                             .tag = tag,
                             .ns = ns,
                             .hmem = (char *)p + part_hoff(ns)};
    memcpy(p->st, st, (size_t)ns * sizeof(*st));
    struct batch_lane *l = &b->lanes[li];
    if (!l->dead && part_setup(l, p, st, ns) != 0) {
        part_free(p);
        return jaccl_err_set(c->err, JACCL_ERR_NOMEM, "cannot lay out %d transfers", ns);
    }
    if (l->tail)
        l->tail->next = p;
    else
        l->head = p;
    l->tail = p;
    b->running++;
    if (l->dead) {
        jaccl_err_set(&p->err, l->dead,
                      "not started: an earlier transfer on the same links "
                      "failed (%s)",
                      l->dead_msg);
        part_finish(b, p, l->dead);
    }
    return JACCL_SUCCESS;
}

/* The stream of p behind its first unfinished transfer (for messages). */
static const struct jaccl_stream *part_waiting(const struct batch_lane *l,
                                               const struct batch_part *p)
{
    for (int i = p->base; i < p->base + p->nx; i++) {
        const struct jaccl_xfer *x = &l->x[i];
        if (x->done == x->len) continue;
        for (int s = 0; s < p->ns; s++)
            if (p->st[s].dir == x->dir && jaccl_algo_peer(p->c, p->st[s].peer) == x->peer)
                return &p->st[s];
    }
    return &p->st[0];
}

static jaccl_result_t part_aborted(const struct batch_lane *l, struct batch_part *p)
{
    const struct jaccl_stream *s = part_waiting(l, p);
    return jaccl_err_set(&p->err, JACCL_ERR_ABORTED,
                         "the communicator was aborted (jaccl_comm_abort) while a %s of %zu "
                         "bytes with rank %d was in progress; destroy it",
                         s->dir == JACCL_XFER_SEND ? "send" : "recv", s->len, s->peer);
}

/* Whether p ran out of time or was aborted; sets its error. */
static jaccl_result_t part_expired(const struct batch_lane *l, struct batch_part *p, int64_t now)
{
    if (jaccl_tp_aborted(p->aborted)) return part_aborted(l, p);
    if (now <= p->deadline_ns) return JACCL_SUCCESS;
    const struct jaccl_stream *s = part_waiting(l, p);
    const char *dir = s->dir == JACCL_XFER_SEND ? "send" : "recv";
    return jaccl_err_set(&p->err, JACCL_ERR_TIMEOUT,
                         "a %s of %zu bytes %s rank %d did not finish before JACCL_TIMEOUT: rank "
                         "%d did not make the matching jaccl_%s/jaccl_i%s call, or is stalled",
                         dir, s->len, s->dir == JACCL_XFER_SEND ? "to" : "from", s->peer, s->peer,
                         s->dir == JACCL_XFER_SEND ? "recv" : "send",
                         s->dir == JACCL_XFER_SEND ? "recv" : "send");
}

/* p failed (its err says why): every other part of the lane gives up too. */
static void lane_fail(struct jaccl_batch *b, struct batch_part *p, jaccl_result_t rc)
{
    struct batch_lane *l = &b->lanes[p->lane];
    l->dead = rc;
    snprintf(l->dead_msg, sizeof(l->dead_msg), "%s", p->err.msg);
    part_finish(b, p, rc);
    while (l->head) {
        struct batch_part *q = l->head;
        if (rc == JACCL_ERR_ABORTED)
            part_aborted(l, q);
        else
            jaccl_err_set(&q->err, rc, "gave up: a transfer on the same links failed first (%s)",
                          l->dead_msg);
        part_finish(b, q, rc);
    }
}

/* Check p's headers that arrived; finish p when all its transfers are complete. */
static jaccl_result_t part_poll(struct jaccl_batch *b, struct batch_lane *l, struct batch_part *p,
                                int *fin)
{
    if (p->H.unchecked) {
        struct jaccl_algo_ctx v = *p->c; /* headers are checked against the lane's array */
        v.xfers = l->x;
        v.xfers_cap = l->cap;
        v.err = &p->err;
        jaccl_result_t rc = hdr_check(&v, &p->H, l->n);
        if (rc != JACCL_SUCCESS || p->H.unchecked) return rc;
    }
    for (int i = p->base; i < p->base + p->nx; i++)
        if (l->x[i].done < l->x[i].len) return JACCL_SUCCESS;
    hdr_deliver(&p->H);
    part_finish(b, p, JACCL_SUCCESS);
    *fin = 1;
    return JACCL_SUCCESS;
}

/*
 * The transport failed under lane l.  Parts whose transfers all completed
 * still succeed, and a header that arrived refusing ours is the error to
 * report (a peer that refused it closes its links right after); else the
 * oldest part takes the transport's error and the rest give up.
 */
static void lane_broken(struct jaccl_batch *b, struct batch_lane *l, jaccl_result_t rc)
{
    struct batch_part *head = l->head;
    char msg[JACCL_ERR_LEN];
    snprintf(msg, sizeof(msg), "%s", head->err.msg);
    for (struct batch_part *p = head, *q; p; p = q) {
        int fin = 0;
        q = p->next;
        jaccl_result_t hc = part_poll(b, l, p, &fin);
        if (hc != JACCL_SUCCESS) {
            lane_fail(b, p, hc);
            return;
        }
    }
    if (!l->head) return;
    if (l->head != head) snprintf(l->head->err.msg, sizeof(l->head->err.msg), "%s", msg);
    lane_fail(b, l->head, rc);
}

/* One pass of lane l; returns whether anything moved. */
static int lane_step(struct jaccl_batch *b, struct batch_lane *l, int64_t now)
{
    if (!l->head) return 0;
    size_t before = 0, after = 0;
    int first = l->start, nx = l->n - l->start; /* a part finishing moves the start */
    for (int i = first; i < first + nx; i++) before += l->x[i].done;
    struct jaccl_err *prev = l->tp->err; /* parts are freed once taken: don't leave ours there */
    l->tp->err = &l->head->err;          /* a transport error is the oldest running part's */
    jaccl_result_t rc = l->tp->ops->progress(l->tp, l->x + first, nx, 1, JACCL_TP_NOWAIT);
    l->tp->err = prev;
    for (int i = first; i < first + nx; i++) after += l->x[i].done;
    if (rc != JACCL_SUCCESS) {
        lane_broken(b, l, rc);
        return 1;
    }
    for (struct batch_part *p = l->head, *q; p; p = q) {
        int fin = 0;
        q = p->next;
        rc = part_poll(b, l, p, &fin);
        if (rc == JACCL_SUCCESS && !fin) rc = part_expired(l, p, now);
        if (rc != JACCL_SUCCESS) {
            lane_fail(b, p, rc);
            return 1;
        }
    }
    return after != before;
}

int jaccl_batch_step(struct jaccl_batch *b)
{
    int64_t now = jaccl_now_ns();
    int moved = 0;
    for (int i = 0; i < b->nlanes; i++) moved |= lane_step(b, &b->lanes[i], now);
    return moved;
}

int jaccl_batch_take(struct jaccl_batch *b, void **tag, jaccl_result_t *rc, char *msg, size_t len)
{
    struct batch_part *p = b->done;
    if (!p) return 0;
    b->done = p->next;
    if (!b->done) b->done_tail = NULL;
    *tag = p->tag;
    *rc = p->rc;
    if (p->rc != JACCL_SUCCESS) snprintf(msg, len, "%s", p->err.msg);
    part_release(b, p);
    return 1;
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
