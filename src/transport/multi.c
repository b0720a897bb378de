/*
 * The per-link composite ("auto"): opens every transport of the registry and
 * serves each peer with the first one, in priority order, that has a link to
 * it.  Algorithms see one transport whose links go through different ones.
 */
#include "transport/transport.h"
#include "util/log.h"
#include "util/time.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MULTI_MAX_SUB 8
#define NAP_MAX_NS    1000000LL /* mixed waits poll; a link on another host is slower anyway */

struct multi_sub {
    const struct jaccl_transport_ops *ops;
    struct jaccl_tp *tp;
};

struct multi_tp {
    struct jaccl_tp base;
    int nsub;
    struct multi_sub sub[MULTI_MAX_SUB];
    int *serve; /* peer -> index in sub[], -1 for none */
    int only;   /* the index in sub[] serving every peer, or -1: progress goes straight there */
    struct jaccl_tp_host *hosts;
    struct jaccl_xfer *tmp;
    int tmp_cap;
    int64_t spin_ns;
    int oversub;
    const volatile int *abort_flag;
};

static void multi_close(struct jaccl_tp *tp)
{
    struct multi_tp *t = (struct multi_tp *)tp;
    if (!t) return;
    for (int i = t->nsub - 1; i >= 0; i--)
        if (t->sub[i].tp) t->sub[i].ops->close(t->sub[i].tp);
    free(t->tmp);
    free(t->hosts);
    free(t->serve);
    free(t);
}

/* Our address: a mask of the transports we opened, then each one's (u16 length, bytes). */
static jaccl_result_t multi_open_sub(struct multi_tp *t, const struct jaccl_tp_params *p, int i,
                                     unsigned char *addr, size_t *pos)
{
    const struct jaccl_transport_ops *ops = jaccl_transports[i];
    unsigned char a[JACCL_TP_ADDR_MAX + 1];
    size_t len = 0;
    t->sub[i].ops = ops;
    jaccl_result_t rc = ops->open(p, &t->sub[i].tp, a, &len);
    if (rc == JACCL_ERR_UNSUPPORTED) {
        log_info("transport %s: not available here (%s); not used", ops->name, p->err->msg);
        t->sub[i].tp = NULL;
        return JACCL_SUCCESS;
    }
    if (rc != JACCL_SUCCESS) return rc;
    t->sub[i].tp->ops = ops;
    t->sub[i].tp->refs = 1;
    if (*pos + 2 + len > JACCL_TP_MULTI_ADDR_MAX)
        return jaccl_err_set(p->err, JACCL_ERR_INTERNAL, "transport addresses exceed %d bytes",
                             JACCL_TP_MULTI_ADDR_MAX);
    addr[0] |= (unsigned char)(1u << i);
    addr[*pos] = (unsigned char)(len & 0xff);
    addr[*pos + 1] = (unsigned char)(len >> 8);
    memcpy(addr + *pos + 2, a, len);
    *pos += 2 + len;
    return JACCL_SUCCESS;
}

static jaccl_result_t multi_open(const struct jaccl_tp_params *p, struct jaccl_tp **out, void *addr,
                                 size_t *addr_len)
{
    struct multi_tp *t = calloc(1, sizeof(*t));
    if (t) t->serve = malloc((size_t)p->size * sizeof(int));
    if (t && p->hosts) t->hosts = malloc((size_t)p->size * sizeof(*t->hosts));
    if (!t || !t->serve || (p->hosts && !t->hosts)) {
        multi_close(t ? &t->base : NULL);
        return jaccl_err_set(p->err, JACCL_ERR_NOMEM, "out of memory opening the transports");
    }
    if (p->hosts) memcpy(t->hosts, p->hosts, (size_t)p->size * sizeof(*t->hosts));
    t->base = (struct jaccl_tp){.rank = p->rank, .size = p->size, .err = p->err};
    t->only = -1;
    t->spin_ns = p->spin_ns;
    t->oversub = p->oversubscribed;
    t->abort_flag = p->abort_flag;
    size_t pos = 1;
    memset(addr, 0, 1);
    jaccl_result_t rc = JACCL_SUCCESS;
    for (int i = 0; jaccl_transports[i] && i < MULTI_MAX_SUB && rc == JACCL_SUCCESS; i++) {
        t->nsub = i + 1;
        rc = multi_open_sub(t, p, i, addr, &pos);
    }
    if (rc != JACCL_SUCCESS) {
        multi_close(&t->base);
        return rc;
    }
    *addr_len = pos;
    *out = &t->base;
    return JACCL_SUCCESS;
}

/*
 * Transport i's address within rank r's record: 1 and (*out, *len) when r
 * opened it, 0 when it did not, -1 (error set) when the record, which came
 * off the wire, runs past its bounds.
 */
static int sub_addr(struct multi_tp *t, const unsigned char *addrs, size_t stride, int r, int i,
                    const unsigned char **out, size_t *len)
{
    const unsigned char *rec = addrs + (size_t)r * stride;
    size_t pos = 1;
    for (int k = 0; k <= i; k++) {
        if (!(rec[0] & (1u << k))) continue;
        size_t n = pos + 2 <= JACCL_TP_MULTI_ADDR_MAX ? (size_t)(rec[pos] | rec[pos + 1] << 8) : 0;
        if (pos + 2 + n > JACCL_TP_MULTI_ADDR_MAX || n > JACCL_TP_ADDR_MAX) {
            jaccl_err_set(t->base.err, JACCL_ERR_CONFIG,
                          "rank %d sent a malformed transport address (%s at byte %zu); do all "
                          "ranks run the same jaccl build?",
                          r, jaccl_transports[k]->name, pos);
            return -1;
        }
        if (k == i) {
            *out = rec + pos + 2;
            *len = n;
            return 1;
        }
        pos += 2 + n;
    }
    return 0;
}

/* Connect transport i if every rank opened it (all must run the same connects). */
static jaccl_result_t multi_connect_sub(struct multi_tp *t, int i, const unsigned char *addrs,
                                        size_t stride, int64_t deadline_ns)
{
    struct multi_sub *s = &t->sub[i];
    int n = t->base.size;
    const unsigned char *sa;
    size_t len;
    for (int r = 0; r < n; r++) {
        int has = sub_addr(t, addrs, stride, r, i, &sa, &len);
        if (has < 0) return JACCL_ERR_CONFIG;
        if (has) continue;
        if (s->tp) log_info("transport %s: rank %d could not open it; not used", s->ops->name, r);
        if (s->tp) s->ops->close(s->tp);
        s->tp = NULL;
        return JACCL_SUCCESS;
    }
    unsigned char *a = n > 0 ? calloc((size_t)n, JACCL_TP_ADDR_MAX) : NULL;
    if (!a) return jaccl_err_set(t->base.err, JACCL_ERR_NOMEM, "out of memory connecting");
    for (int r = 0; r < n; r++) {
        sub_addr(t, addrs, stride, r, i, &sa, &len); /* checked above */
        memcpy(a + (size_t)r * JACCL_TP_ADDR_MAX, sa, len);
    }
    jaccl_result_t rc = s->ops->connect(s->tp, a, JACCL_TP_ADDR_MAX, deadline_ns);
    free(a);
    return rc;
}

/* Why transport s does not serve peer (for the log). */
static const char *why_not(const struct multi_tp *t, int peer)
{
    const struct jaccl_tp_host *h = t->hosts;
    if (h && h[peer].leader != h[t->base.rank].leader)
        return h[peer].boot == h[t->base.rank].boot ? "on another host (network namespace)"
                                                    : "on another host";
    return "no link";
}

/* Serve each peer with the first transport that has a link to it. */
static jaccl_result_t multi_choose(struct multi_tp *t)
{
    for (int p = 0; p < t->base.size; p++) {
        char why[256] = "";
        size_t w = 0;
        t->serve[p] = -1;
        for (int i = 0; i < t->nsub && t->serve[p] < 0; i++) {
            struct multi_sub *s = &t->sub[i];
            if (s->tp && s->ops->links(s->tp, p) > 0)
                t->serve[p] = i;
            else if (w < sizeof(why) - 1)
                w += (size_t)snprintf(why + w, sizeof(why) - w, "; %s: %s", s->ops->name,
                                      s->tp ? why_not(t, p) : "not available");
        }
        if (t->serve[p] < 0)
            return jaccl_err_set(t->base.err, JACCL_ERR_UNSUPPORTED,
                                 "no transport reaches rank %d%s", p, why);
        if (p != t->base.rank) log_info("rank %d: via %s%s", p, t->sub[t->serve[p]].ops->name, why);
    }
    return JACCL_SUCCESS;
}

/*
 * The selector's inputs must be the same on every rank: the first transport
 * when the job is on one host, else the slowest (last) one connected.
 */
static void multi_model(struct multi_tp *t)
{
    int one_host = t->hosts != NULL, pick = -1;
    for (int r = 0; one_host && r < t->base.size; r++) one_host = t->hosts[r].leader == 0;
    for (int i = 0; i < t->nsub; i++)
        if (t->sub[i].tp && (pick < 0 || !one_host)) pick = i;
    t->base.alpha_s = t->sub[pick].tp->alpha_s;
    t->base.beta_Bps = t->sub[pick].tp->beta_Bps;
    t->base.msg_syscall = t->sub[pick].tp->msg_syscall;
}

/* The transport serving every peer, or -1 when they are served by several. */
static int multi_only(const struct multi_tp *t)
{
    int only = -1;
    for (int p = 0; p < t->base.size; p++) {
        if (p == t->base.rank) continue;
        if (only >= 0 && t->serve[p] != only) return -1;
        only = t->serve[p];
    }
    return only;
}

static jaccl_result_t multi_connect(struct jaccl_tp *tp, const void *addrs, size_t stride,
                                    int64_t deadline_ns)
{
    struct multi_tp *t = (struct multi_tp *)tp;
    for (int i = 0; i < t->nsub; i++) {
        jaccl_result_t rc = multi_connect_sub(t, i, addrs, stride, deadline_ns);
        if (rc != JACCL_SUCCESS) return rc;
    }
    jaccl_result_t rc = multi_choose(t);
    if (rc != JACCL_SUCCESS) return rc;
    multi_model(t);
    t->only = multi_only(t);
    return JACCL_SUCCESS;
}

static int multi_links(struct jaccl_tp *tp, int peer)
{
    struct multi_tp *t = (struct multi_tp *)tp;
    struct multi_sub *s = &t->sub[t->serve[peer]];
    return s->ops->links(s->tp, peer);
}

/* The one transport with pending transfers; -1 if none, -2 if several. */
static int multi_single(const struct multi_tp *t, const struct jaccl_xfer *x, int n)
{
    int only = -1;
    for (int i = 0; i < n; i++) {
        if (x[i].done == x[i].len) continue;
        int s = t->serve[x[i].peer];
        if (only >= 0 && s != only) return -2;
        only = s;
    }
    return only;
}

/* One non-blocking pass of transport s over its own transfers; *moved if any moved. */
static jaccl_result_t multi_pass(struct multi_tp *t, int s, struct jaccl_xfer *x, int n, int *moved)
{
    int m = 0;
    for (int i = 0; i < n; i++)
        if (t->serve[x[i].peer] == s) t->tmp[m++] = x[i];
    struct jaccl_tp *tp = t->sub[s].tp;
    jaccl_result_t rc = tp->ops->progress(tp, t->tmp, m, 1, JACCL_TP_NOWAIT);
    m = 0;
    for (int i = 0; i < n; i++) {
        if (t->serve[x[i].peer] != s) continue;
        *moved |= t->tmp[m].done != x[i].done;
        x[i].done = t->tmp[m++].done;
    }
    return rc;
}

static jaccl_result_t multi_timeout(struct multi_tp *t, struct jaccl_xfer *x, int n)
{
    for (int i = 0; i < n; i++)
        if (jaccl_xfer_waited(&x[i]))
            return jaccl_err_set(t->base.err, JACCL_ERR_TIMEOUT,
                                 "timed out waiting for rank %d (%s, link %d) to %s (%zu of %zu "
                                 "bytes); it may be stalled, dead, or in a different call; "
                                 "JACCL_TIMEOUT sets the limit",
                                 x[i].peer, t->sub[t->serve[x[i].peer]].ops->name, x[i].link,
                                 x[i].dir == JACCL_XFER_RECV ? "send data" : "take data", x[i].done,
                                 x[i].len);
    return JACCL_ERR_INTERNAL;
}

/* Nothing moved for a while: back off (yield, then naps up to NAP_MAX_NS). */
static jaccl_result_t multi_idle(struct multi_tp *t, struct jaccl_xfer *x, int n, int64_t now,
                                 int64_t since, int64_t *nap, int64_t deadline)
{
    if (jaccl_tp_aborted(t->abort_flag))
        return jaccl_err_set(t->base.err, JACCL_ERR_ABORTED,
                             "the communicator was aborted (jaccl_comm_abort) during a transfer");
    if (now >= deadline) return multi_timeout(t, x, n);
    if (now - since < t->spin_ns) {
        if (t->oversub) sched_yield();
        return JACCL_SUCCESS;
    }
    *nap = *nap ? (*nap * 2 > NAP_MAX_NS ? NAP_MAX_NS : *nap * 2) : 20000;
    int64_t wake = jaccl_tp_wake_ns(&t->base, deadline);
    struct timespec ts = {0, (long)(wake - now < *nap ? wake - now : *nap)};
    nanosleep(&ts, NULL);
    return JACCL_SUCCESS;
}

/* Transfers through several transports: poll each in turn. */
static jaccl_result_t multi_mixed(struct multi_tp *t, struct jaccl_xfer *x, int n, int any,
                                  int64_t deadline_ns)
{
    if (n > t->tmp_cap) {
        struct jaccl_xfer *tmp = realloc(t->tmp, (size_t)n * sizeof(*tmp));
        if (!tmp) return jaccl_err_set(t->base.err, JACCL_ERR_NOMEM, "out of memory");
        t->tmp = tmp;
        t->tmp_cap = n;
    }
    int64_t since = jaccl_now_ns(), nap = 0;
    for (;;) {
        int moved = 0, pending = 0;
        for (int s = 0; s < t->nsub; s++) {
            if (!t->sub[s].tp) continue;
            jaccl_result_t rc = multi_pass(t, s, x, n, &moved);
            if (rc != JACCL_SUCCESS) return rc;
        }
        for (int i = 0; i < n && !pending; i++) pending = jaccl_xfer_waited(&x[i]);
        if (!pending || (moved && any) || deadline_ns == JACCL_TP_NOWAIT) return JACCL_SUCCESS;
        if (moved) {
            since = jaccl_now_ns();
            nap = 0;
            continue;
        }
        int64_t now = jaccl_now_ns();
        if (jaccl_tp_return_due(&t->base, now)) return JACCL_SUCCESS;
        jaccl_result_t rc = multi_idle(t, x, n, now, since, &nap, deadline_ns);
        if (rc != JACCL_SUCCESS) return rc;
    }
}

static void multi_failed(struct jaccl_tp *tp)
{
    struct multi_tp *t = (struct multi_tp *)tp;
    for (int s = 0; s < t->nsub; s++)
        if (t->sub[s].tp && t->sub[s].ops->failed) t->sub[s].ops->failed(t->sub[s].tp);
}

/* All of x through the one transport sub, with the composite's return_ns for this call only. */
static jaccl_result_t multi_sub_progress(const struct jaccl_tp *tp, struct jaccl_tp *sub,
                                         struct jaccl_xfer *x, int n, int any, int64_t deadline_ns)
{
    sub->return_ns = tp->return_ns;
    jaccl_result_t rc = sub->ops->progress(sub, x, n, any, deadline_ns);
    sub->return_ns = 0;
    return rc;
}

/* Peers served by different transports (out of line: the one-transport case is the hot one). */
__attribute__((noinline)) static jaccl_result_t multi_run(struct jaccl_tp *tp, struct jaccl_xfer *x,
                                                          int n, int any, int64_t deadline_ns)
{
    struct multi_tp *t = (struct multi_tp *)tp;
    for (int s = 0; s < t->nsub; s++)
        if (t->sub[s].tp) t->sub[s].tp->err = tp->err;
    int s = multi_single(t, x, n);
    if (s == -1) return JACCL_SUCCESS;
    if (s >= 0) return multi_sub_progress(tp, t->sub[s].tp, x, n, any, deadline_ns);
    return multi_mixed(t, x, n, any, deadline_ns);
}

/* A failure through any transport fails them all (see transport.h, failed). */
static jaccl_result_t multi_progress(struct jaccl_tp *tp, struct jaccl_xfer *x, int n, int any,
                                     int64_t deadline_ns)
{
    struct multi_tp *t = (struct multi_tp *)tp;
    jaccl_result_t rc;
    if (t->only >= 0) { /* one transport reaches every peer: no sorting, no copies */
        struct jaccl_tp *sub = t->sub[t->only].tp;
        sub->err = tp->err; /* split communicators swap it */
        rc = multi_sub_progress(tp, sub, x, n, any, deadline_ns);
    } else {
        rc = multi_run(tp, x, n, any, deadline_ns);
    }
    if (rc != JACCL_SUCCESS) multi_failed(tp);
    return rc;
}

const struct jaccl_transport_ops jaccl_multi_ops = {
    .name = "auto",
    .open = multi_open,
    .connect = multi_connect,
    .links = multi_links,
    .progress = multi_progress,
    .close = multi_close,
    .failed = multi_failed,
};
