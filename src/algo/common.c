/* The transfer engine every algorithm runs its steps on. */
#include "algo/algo.h"

#include <stdlib.h>
#include <string.h>

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

/* Lay out the transfers; returns how many, or -1 if they don't fit. */
static int run_setup(struct jaccl_algo_ctx *c, struct jaccl_stream *st, int ns, int withred,
                     struct red_part *red, int *nred)
{
    int nx = 0;
    *nred = 0;
    for (int i = 0; i < ns; i++) {
        int peer = jaccl_algo_peer(c, st[i].peer), nl = c->tp->ops->links(c->tp, peer);
        int reduce = withred && st[i].dir == JACCL_XFER_RECV;
        if (nx + nl * (reduce ? 2 : 1) > c->xfers_cap && run_grow(c, nx + nl * 2) != 0) return -1;
        if (reduce && *nred + nl > RUN_MAX_RED * JACCL_MAX_LINKS) return -1;
        for (int l = 0; l < nl; l++) {
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
    return nx;
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

jaccl_result_t jaccl_algo_run(struct jaccl_algo_ctx *c, struct jaccl_stream *st, int ns,
                              jaccl_reduce_fn fn, size_t esize)
{
    struct red_part red[RUN_MAX_RED * JACCL_MAX_LINKS];
    int nred;
    c->tp->err = c->err; /* communicators split from one another share the transport */
    int nx = run_setup(c, st, ns, fn != NULL, red, &nred);
    if (nx < 0)
        return jaccl_err_set(c->err, JACCL_ERR_NOMEM,
                             "cannot lay out %d transfers (out of memory, "
                             "or more than %d reducing streams)",
                             ns, RUN_MAX_RED);
    if (nred == 0) return c->tp->ops->progress(c->tp, c->xfers, nx, 0, c->deadline_ns);
    for (;;) {
        int busy = run_reduce_ready(c, st, red, nred, fn, esize);
        int pending = 0;
        for (int i = 0; i < nx && !pending; i++) pending = c->xfers[i].done < c->xfers[i].len;
        if (!busy && !pending) return JACCL_SUCCESS;
        jaccl_result_t rc = c->tp->ops->progress(c->tp, c->xfers, nx, 1, c->deadline_ns);
        if (rc != JACCL_SUCCESS) return rc;
    }
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
