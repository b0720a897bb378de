/*
 * TCP transport: a full mesh of sockets, links_per_peer sockets per pair.
 * Rank j connects to every lower rank i and introduces itself with a
 * handshake; i accepts and files the socket under (j, link).
 */
#include "transport/transport.h"
#include "util/log.h"
#include "util/sock.h"
#include "util/time.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TCP_MAGIC      0x4a43434cu /* "JCCL" */
#define TCP_VERSION    1
#define TCP_MAX_LINKS  JACCL_MAX_LINKS
#define HANDSHAKE_WAIT 5000000000LL /* a real peer sends its handshake at once */
#define STALL_WARN_MS  10000

struct tcp_handshake {
    uint32_t magic;
    uint16_t version;
    uint16_t link;
    uint64_t job_id;
    uint32_t from, to;
};

struct tcp_tp {
    struct jaccl_tp base;
    int lfd;
    int nlinks;
    uint64_t job_id;
    int64_t spin_ns;
    int *fds;                      /* [peer * nlinks + link]; -1 for self */
    struct jaccl_wire_addr *addrs; /* every rank's listener, for messages */
    uint32_t *stamp;               /* per (peer, link, dir): last scan that saw its head */
    uint32_t gen;
    struct pollfd *pfds;
};

static const char *peer_name(struct tcp_tp *t, int peer, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    char a[80];
    jaccl_sock_from_wire(&t->addrs[peer], &ss);
    snprintf(buf, len, "rank %d (%s)", peer, jaccl_sock_str(&ss, a, sizeof(a)));
    return buf;
}

static jaccl_result_t tcp_open(const struct jaccl_tp_params *p, struct jaccl_tp **out, void *addr,
                               size_t *addr_len)
{
    int nl = p->links_per_peer < 1 ? 1 : p->links_per_peer;
    if (nl > TCP_MAX_LINKS)
        return jaccl_err_set(p->err, JACCL_ERR_CONFIG, "JACCL_TCP_SOCKETS=%d exceeds the limit %d",
                             nl, TCP_MAX_LINKS);
    struct tcp_tp *t = calloc(1, sizeof(*t));
    size_t nq = (size_t)p->size * (size_t)nl;
    if (!t) return jaccl_err_set(p->err, JACCL_ERR_NOMEM, "tcp: cannot allocate state");
    t->fds = malloc(nq * sizeof(int));
    t->stamp = calloc(nq * 2, sizeof(uint32_t));
    t->pfds = malloc(nq * 2 * sizeof(struct pollfd));
    t->addrs = calloc((size_t)p->size, sizeof(*t->addrs));
    t->lfd = -1;
    if (!t->fds || !t->stamp || !t->pfds || !t->addrs) goto nomem;
    for (size_t i = 0; i < nq; i++) t->fds[i] = -1;
    t->base = (struct jaccl_tp){
        .rank = p->rank, .size = p->size, .err = p->err, .alpha_s = 12e-6, .beta_Bps = 3.0e9};
    t->nlinks = nl;
    t->job_id = p->job_id;
    t->spin_ns = p->spin_ns;
    struct sockaddr_storage la = p->local;
    socklen_t ll = p->local_len;
    jaccl_result_t rc = jaccl_sock_listen(&la, &ll, p->size * nl + 16, &t->lfd, p->err);
    if (rc != JACCL_SUCCESS) goto fail;
    jaccl_sock_to_wire(&la, (struct jaccl_wire_addr *)addr);
    *addr_len = sizeof(struct jaccl_wire_addr);
    *out = &t->base;
    return JACCL_SUCCESS;
nomem:
    rc = jaccl_err_set(p->err, JACCL_ERR_NOMEM, "tcp: cannot allocate state for %d ranks", p->size);
fail:
    free(t->addrs);
    free(t->pfds);
    free(t->stamp);
    free(t->fds);
    free(t);
    return rc;
}

static jaccl_result_t tcp_connect_lower(struct tcp_tp *t, int peer, int64_t deadline_ns)
{
    char name[128];
    struct sockaddr_storage ss;
    socklen_t len = jaccl_sock_from_wire(&t->addrs[peer], &ss);
    peer_name(t, peer, name, sizeof(name));
    for (int l = 0; l < t->nlinks; l++) {
        int fd;
        jaccl_result_t rc = jaccl_sock_connect(&ss, len, deadline_ns, name, &fd, t->base.err);
        if (rc != JACCL_SUCCESS) return rc;
        t->fds[peer * t->nlinks + l] = fd;
        struct tcp_handshake h = {.magic = htonl(TCP_MAGIC),
                                  .version = htons(TCP_VERSION),
                                  .link = htons((uint16_t)l),
                                  .job_id = t->job_id,
                                  .from = htonl((uint32_t)t->base.rank),
                                  .to = htonl((uint32_t)peer)};
        rc = jaccl_sock_write_all(fd, &h, sizeof(h), deadline_ns, name, t->base.err);
        if (rc != JACCL_SUCCESS) return rc;
    }
    return JACCL_SUCCESS;
}

/* Check a handshake; on success set *slot to the index it belongs at. */
static int handshake_ok(struct tcp_tp *t, const struct tcp_handshake *h, int *slot)
{
    uint32_t from = ntohl(h->from);
    uint16_t link = ntohs(h->link);
    if (ntohl(h->magic) != TCP_MAGIC || ntohs(h->version) != TCP_VERSION) return 0;
    if (h->job_id != t->job_id || ntohl(h->to) != (uint32_t)t->base.rank) return 0;
    if (from <= (uint32_t)t->base.rank || from >= (uint32_t)t->base.size) return 0;
    if (link >= t->nlinks) return 0;
    *slot = (int)from * t->nlinks + link;
    return t->fds[*slot] < 0;
}

/* Accept from every higher rank; connections that fail the handshake are dropped. */
static jaccl_result_t tcp_accept_higher(struct tcp_tp *t, int64_t deadline_ns)
{
    int want = (t->base.size - 1 - t->base.rank) * t->nlinks;
    struct jaccl_err scratch = {.rank = -1};
    while (want > 0) {
        int fd, slot;
        jaccl_result_t rc = jaccl_sock_accept(t->lfd, deadline_ns, &fd, t->base.err);
        if (rc == JACCL_ERR_TIMEOUT) {
            for (int p = t->base.rank + 1; p < t->base.size; p++)
                if (t->fds[p * t->nlinks + t->nlinks - 1] < 0) {
                    char name[128];
                    return jaccl_err_set(t->base.err, JACCL_ERR_TIMEOUT,
                                         "%s did not connect before the deadline; did it start "
                                         "and can it reach this host?",
                                         peer_name(t, p, name, sizeof(name)));
                }
        }
        if (rc != JACCL_SUCCESS) return rc;
        struct tcp_handshake h;
        int64_t hs_deadline = jaccl_now_ns() + HANDSHAKE_WAIT;
        if (hs_deadline > deadline_ns) hs_deadline = deadline_ns;
        rc = jaccl_sock_read_all(fd, &h, sizeof(h), hs_deadline, "connecting peer", &scratch);
        if (rc != JACCL_SUCCESS || !handshake_ok(t, &h, &slot)) {
            log_warn("tcp: dropped a connection with a missing or wrong handshake");
            close(fd);
            continue;
        }
        t->fds[slot] = fd;
        want--;
    }
    return JACCL_SUCCESS;
}

static jaccl_result_t tcp_connect(struct jaccl_tp *tp, const void *addrs, size_t stride,
                                  int64_t deadline_ns)
{
    struct tcp_tp *t = (struct tcp_tp *)tp;
    for (int p = 0; p < tp->size; p++)
        memcpy(&t->addrs[p], (const char *)addrs + (size_t)p * stride, sizeof(t->addrs[p]));
    /* Connects complete in the peer's backlog, so connecting first cannot deadlock. */
    for (int p = 0; p < tp->rank; p++) {
        jaccl_result_t rc = tcp_connect_lower(t, p, deadline_ns);
        if (rc != JACCL_SUCCESS) return rc;
    }
    jaccl_result_t rc = tcp_accept_higher(t, deadline_ns);
    if (rc != JACCL_SUCCESS) return rc;
    close(t->lfd);
    t->lfd = -1;
    log_debug("tcp: connected to %d peers with %d socket(s) each", tp->size - 1, t->nlinks);
    return JACCL_SUCCESS;
}

static int tcp_links(struct jaccl_tp *tp, int peer)
{
    (void)peer;
    return ((struct tcp_tp *)tp)->nlinks;
}

/* Move as many bytes of x as the socket takes now; *moved is set if any moved. */
static jaccl_result_t tcp_move(struct tcp_tp *t, struct jaccl_xfer *x, int *moved)
{
    int fd = t->fds[x->peer * t->nlinks + x->link];
    while (x->done < x->len) {
        char *p = (char *)x->buf + x->done;
        size_t left = x->len - x->done;
        ssize_t n = x->dir == JACCL_XFER_SEND ? send(fd, p, left, MSG_NOSIGNAL | MSG_DONTWAIT)
                                              : recv(fd, p, left, MSG_DONTWAIT);
        if (n > 0) {
            x->done += (size_t)n;
            *moved = 1;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) break;
        char name[128];
        peer_name(t, x->peer, name, sizeof(name));
        if (n == 0)
            return jaccl_err_set(t->base.err, JACCL_ERR_REMOTE,
                                 "%s closed its connection (link %d) with %zu of %zu bytes "
                                 "received; it exited or failed: see its own error",
                                 name, x->link, x->done, x->len);
        return jaccl_err_set(t->base.err, JACCL_ERR_REMOTE, "%s %s failed (link %d): %s",
                             x->dir == JACCL_XFER_SEND ? "send to" : "recv from", name, x->link,
                             strerror(errno));
    }
    return JACCL_SUCCESS;
}

/* One pass over the head transfer of every queue; counts what is still pending. */
static jaccl_result_t tcp_scan(struct tcp_tp *t, struct jaccl_xfer *x, int n, int *moved,
                               int *pending)
{
    t->gen++;
    *pending = 0;
    for (int i = 0; i < n; i++) {
        if (x[i].done == x[i].len) continue;
        size_t q =
            ((size_t)x[i].peer * (size_t)t->nlinks + (size_t)x[i].link) * 2 + (size_t)x[i].dir;
        if (t->stamp[q] == t->gen) {
            (*pending)++; /* queued behind an earlier transfer on the same stream */
            continue;
        }
        t->stamp[q] = t->gen;
        jaccl_result_t rc = tcp_move(t, &x[i], moved);
        if (rc != JACCL_SUCCESS) return rc;
        if (x[i].done < x[i].len) (*pending)++;
    }
    return JACCL_SUCCESS;
}

static jaccl_result_t tcp_timeout(struct tcp_tp *t, struct jaccl_xfer *x, int n)
{
    for (int i = 0; i < n; i++) {
        if (x[i].done == x[i].len) continue;
        char name[128];
        int recv = x[i].dir == JACCL_XFER_RECV;
        return jaccl_err_set(t->base.err, JACCL_ERR_TIMEOUT,
                             "timed out waiting for %s to %s (link %d, %zu of %zu bytes); it may "
                             "be stalled, dead, or in a different call; JACCL_TIMEOUT sets the "
                             "limit",
                             peer_name(t, x[i].peer, name, sizeof(name)),
                             recv ? "send data" : "take data", x[i].link, x[i].done, x[i].len);
    }
    return JACCL_ERR_INTERNAL;
}

/* A long wait says what it waits for, well before the deadline ends it. */
static void tcp_warn_stall(struct tcp_tp *t, struct jaccl_xfer *x, int n, int ms_left)
{
    for (int i = 0; i < n; i++) {
        if (x[i].done == x[i].len) continue;
        char name[128];
        log_warn("%s: nothing moved for %d s; waiting for %s to %s (link %d, %zu of %zu bytes); "
                 "giving up in %d s (JACCL_TIMEOUT)",
                 t->base.err->call ? t->base.err->call : "wait", STALL_WARN_MS / 1000,
                 peer_name(t, x[i].peer, name, sizeof(name)),
                 x[i].dir == JACCL_XFER_RECV ? "send data" : "take data", x[i].link, x[i].done,
                 x[i].len, (ms_left - STALL_WARN_MS) / 1000);
        return;
    }
}

/* Sleep in poll() until a head transfer can move or the deadline passes. */
static jaccl_result_t tcp_block(struct tcp_tp *t, struct jaccl_xfer *x, int n, int64_t deadline)
{
    int np = 0;
    t->gen++;
    for (int i = 0; i < n; i++) {
        if (x[i].done == x[i].len) continue;
        size_t q =
            ((size_t)x[i].peer * (size_t)t->nlinks + (size_t)x[i].link) * 2 + (size_t)x[i].dir;
        if (t->stamp[q] == t->gen) continue;
        t->stamp[q] = t->gen;
        t->pfds[np].fd = t->fds[x[i].peer * t->nlinks + x[i].link];
        t->pfds[np].events = x[i].dir == JACCL_XFER_SEND ? POLLOUT : POLLIN;
        np++;
    }
    if (jaccl_now_ns() >= deadline) return tcp_timeout(t, x, n);
    int ms = jaccl_ms_left(deadline);
    int r = poll(t->pfds, (nfds_t)np, ms < STALL_WARN_MS ? ms : STALL_WARN_MS);
    if (r < 0 && errno != EINTR)
        return jaccl_err_set(t->base.err, JACCL_ERR_SYSTEM, "poll(): %s", strerror(errno));
    if (r == 0 && ms > STALL_WARN_MS) tcp_warn_stall(t, x, n, ms);
    return JACCL_SUCCESS;
}

static jaccl_result_t tcp_progress(struct jaccl_tp *tp, struct jaccl_xfer *x, int n, int any,
                                   int64_t deadline_ns)
{
    struct tcp_tp *t = (struct tcp_tp *)tp;
    int64_t idle_since = 0;
    for (;;) {
        int moved = 0, pending = 0;
        jaccl_result_t rc = tcp_scan(t, x, n, &moved, &pending);
        if (rc != JACCL_SUCCESS) return rc;
        if (pending == 0 || (moved && any)) return JACCL_SUCCESS;
        if (deadline_ns == JACCL_TP_NOWAIT) return JACCL_SUCCESS;
        if (moved) {
            idle_since = 0;
            continue;
        }
        /*
         * Spin first: a wake-up from poll costs more than a small message's
         * round trip.  Yield while spinning: the scheduler may have put the
         * peer we wait for on our core, even when ranks don't outnumber cores.
         */
        int64_t now = jaccl_now_ns();
        if (idle_since == 0) idle_since = now;
        if (now - idle_since < t->spin_ns) {
            sched_yield();
            continue;
        }
        rc = tcp_block(t, x, n, deadline_ns);
        if (rc != JACCL_SUCCESS) return rc;
    }
}

static void tcp_close(struct jaccl_tp *tp)
{
    struct tcp_tp *t = (struct tcp_tp *)tp;
    if (!t) return;
    for (int i = 0; i < tp->size * t->nlinks; i++)
        if (t->fds[i] >= 0) close(t->fds[i]);
    if (t->lfd >= 0) close(t->lfd);
    free(t->addrs);
    free(t->pfds);
    free(t->stamp);
    free(t->fds);
    free(t);
}

const struct jaccl_transport_ops jaccl_tcp_ops = {
    .name = "tcp",
    .open = tcp_open,
    .connect = tcp_connect,
    .links = tcp_links,
    .progress = tcp_progress,
    .close = tcp_close,
};
