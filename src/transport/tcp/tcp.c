/*
 * TCP transport: a full mesh of sockets, links_per_peer sockets per pair.
 * Rank j connects to every lower rank i and introduces itself with a
 * handshake; i accepts and files the socket under (j, link).
 */
#include "transport/tcp/tcp.h"
#include "transport/transport.h"
#include "util/copy.h"
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
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define TCP_MAGIC     0x4a43434cu /* "JCCL" */
#define TCP_VERSION   2
#define TCP_MAX_LINKS JACCL_MAX_LINKS
#define STALL_WARN_MS 10000
/*
 * Transfers queued on one socket and direction that one system call moves
 * together (a header and its data, several messages): over loopback each
 * send costs a pass through the whole stack, 4-5 us on this VM, so a header
 * sent apart from its data made a 2 KiB all-reduce take 19 us instead of 10.
 */
#define TCP_GATHER    8
#define TCP_LOOKAHEAD (4 * TCP_GATHER) /* how far behind the head to look for them */
/*
 * Bytes a receive reads past what its transfers ask for, per link, kept for
 * the transfers that come next: a rank behind its peers (a broadcast's or a
 * reduce's root, 4 ranks on 2 cores) takes several calls' messages in one
 * system call instead of one each.
 */
#define TCP_RXBUF 8192
/*
 * A read that empties the socket after two or more small segments makes the
 * kernel send a bare ACK at once, and an ACK costs as much as a message; so a
 * read ahead that served fewer than RA_PAYS transfers (a peer one call ahead,
 * as in recursive doubling) turns reading ahead off on that link for the next
 * RA_REST reads (4 ranks, 8 B all-reduces: 1.6 bare ACKs per call beside 8.5
 * messages, 0.2 with this).
 */
#define RA_PAYS 4
#define RA_REST 16

const struct jaccl_hs_proto jaccl_tcp_proto = {
    .magic = TCP_MAGIC, .version = TCP_VERSION, .body_len = JACCL_TCP_HELLO_LEN, .who = "tcp"};

static uint32_t get32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static void put32(uint8_t *b, uint32_t v)
{
    for (int i = 0; i < 4; i++) b[i] = (uint8_t)(v >> (24 - 8 * i));
}

int jaccl_tcp_parse_hello(const uint8_t *body, size_t len, struct jaccl_tcp_hello *h)
{
    if (len != JACCL_TCP_HELLO_LEN) return -1;
    h->from = get32(body);
    h->to = get32(body + 4);
    h->link = get32(body + 8);
    h->job_id = (uint64_t)get32(body + 12) << 32 | get32(body + 16);
    return 0;
}

void jaccl_tcp_hello_bytes(const struct jaccl_tcp_hello *h, uint8_t body[JACCL_TCP_HELLO_LEN])
{
    put32(body, h->from);
    put32(body + 4, h->to);
    put32(body + 8, h->link);
    put32(body + 12, (uint32_t)(h->job_id >> 32));
    put32(body + 16, (uint32_t)h->job_id);
}

int jaccl_tcp_hello_slot(const struct jaccl_tcp_hello *h, uint64_t job_id, int rank, int size,
                         int nlinks)
{
    if (h->job_id != job_id || h->to != (uint32_t)rank) return -1;
    if (h->from <= (uint32_t)rank || h->from >= (uint32_t)size) return -1;
    if (h->link >= (uint32_t)nlinks) return -1;
    return (int)h->from * nlinks + (int)h->link;
}

struct tcp_tp {
    struct jaccl_tp base;
    int lfd;
    int nlinks;
    uint64_t job_id;
    int64_t spin_ns;
    struct jaccl_key key;          /* JACCL_JOB_KEY, proven in every link's handshake */
    int *fds;                      /* [peer * nlinks + link]; -1 for self */
    struct jaccl_wire_addr *addrs; /* every rank's listener, for messages */
    uint32_t *stamp;               /* per (peer, link, dir): last scan that saw its head */
    uint32_t gen;
    struct pollfd *pfds;
    const volatile int *abort_flag; /* set by jaccl_comm_abort */
    int broken;          /* a transfer failed: every link was shut down so peers see it at once */
    int64_t lazy_at;     /* when a wait looks at lazy transfers next */
    unsigned char *gone; /* [peer * nlinks + link]: a lazy look found it closed (not looked at
                            again: a transfer waited for on it fails as usual) */
    unsigned char *rx;   /* [peer * nlinks + link]: TCP_RXBUF bytes read ahead of the transfers */
    struct tcp_rx {
        uint32_t off, len; /* the unread bytes of a link's rx */
        uint16_t served;   /* transfers they served so far */
        uint16_t rest;     /* reads left before reading ahead again */
    } * rxq;
};

static const char *peer_name(struct tcp_tp *t, int peer, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    char a[80];
    jaccl_sock_from_wire(&t->addrs[peer], &ss);
    snprintf(buf, len, "rank %d (%s)", peer, jaccl_sock_str(&ss, a, sizeof(a)));
    return buf;
}

/* Index of x's link in fds and gone. */
static int tcp_link(const struct tcp_tp *t, const struct jaccl_xfer *x)
{
    return x->peer * t->nlinks + x->link;
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
    t->gone = calloc(nq, 1);
    t->rx = malloc(nq * TCP_RXBUF);
    t->rxq = calloc(nq, sizeof(*t->rxq));
    t->lfd = -1;
    if (!t->fds || !t->stamp || !t->pfds || !t->addrs || !t->gone || !t->rx || !t->rxq) goto nomem;
    for (size_t i = 0; i < nq; i++) t->fds[i] = -1;
    t->base = (struct jaccl_tp){.rank = p->rank,
                                .size = p->size,
                                .err = p->err,
                                .alpha_s = 12e-6,
                                .beta_Bps = 3.0e9,
                                .msg_syscall = 1};
    t->nlinks = nl;
    t->job_id = p->job_id;
    if (p->key) t->key = *p->key;
    t->spin_ns = p->spin_ns;
    t->abort_flag = p->abort_flag;
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
    free(t->rxq);
    free(t->rx);
    free(t->gone);
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
        uint8_t body[JACCL_TCP_HELLO_LEN];
        struct jaccl_tcp_hello h = {.from = (uint32_t)t->base.rank,
                                    .to = (uint32_t)peer,
                                    .link = (uint32_t)l,
                                    .job_id = t->job_id};
        jaccl_result_t rc = jaccl_sock_connect(&ss, len, deadline_ns, name, &fd, t->base.err);
        if (rc != JACCL_SUCCESS) return rc;
        t->fds[peer * t->nlinks + l] = fd;
        jaccl_tcp_hello_bytes(&h, body);
        rc = jaccl_hs_connect(fd, &jaccl_tcp_proto, &t->key, body, deadline_ns, name, t->base.err);
        if (rc != JACCL_SUCCESS) return rc;
    }
    return JACCL_SUCCESS;
}

/* The first higher rank with a link missing: it did not connect in time. */
static jaccl_result_t tcp_missing(struct tcp_tp *t, struct jaccl_hs_server *srv)
{
    char name[128], note[300];
    int p = t->base.rank + 1;
    while (p < t->base.size - 1 && t->fds[p * t->nlinks + t->nlinks - 1] >= 0) p++;
    return jaccl_err_set(t->base.err, JACCL_ERR_TIMEOUT,
                         "%s did not connect before the deadline; did it start and can it reach "
                         "this host?%s",
                         peer_name(t, p, name, sizeof(name)),
                         jaccl_hs_server_note(srv, note, sizeof(note)));
}

/* Accept from every higher rank; strangers are dropped by the handshake, taking no slot. */
static jaccl_result_t tcp_accept_higher(struct tcp_tp *t, int64_t deadline_ns)
{
    int want = (t->base.size - 1 - t->base.rank) * t->nlinks;
    struct jaccl_hs_server *srv = malloc(sizeof(*srv));
    jaccl_result_t rc = JACCL_SUCCESS;
    if (!srv) return jaccl_err_set(t->base.err, JACCL_ERR_NOMEM, "tcp: out of memory");
    jaccl_hs_server_init(srv, &jaccl_tcp_proto, &t->key, t->lfd);
    while (want > 0) {
        int fd, slot;
        uint8_t body[JACCL_TCP_HELLO_LEN];
        struct jaccl_tcp_hello h;
        rc = jaccl_hs_accept(srv, deadline_ns, &fd, body, t->base.err);
        if (rc == JACCL_ERR_TIMEOUT) rc = tcp_missing(t, srv);
        if (rc != JACCL_SUCCESS) break;
        jaccl_tcp_parse_hello(body, sizeof(body), &h);
        slot = jaccl_tcp_hello_slot(&h, t->job_id, t->base.rank, t->base.size, t->nlinks);
        if (slot < 0 || t->fds[slot] >= 0) {
            log_warn("tcp: dropped a link from rank %u (link %u) that belongs to another job "
                     "or is already connected",
                     h.from, h.link);
            close(fd);
            continue;
        }
        t->fds[slot] = fd;
        want--;
    }
    jaccl_hs_server_close(srv);
    free(srv);
    return rc;
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

static jaccl_result_t tcp_move_error(struct tcp_tp *t, const struct jaccl_xfer *x, ssize_t n)
{
    char name[128];
    peer_name(t, x->peer, name, sizeof(name));
    if (n == 0 || errno == ECONNRESET || errno == EPIPE)
        return jaccl_err_set(t->base.err, JACCL_ERR_REMOTE,
                             "%s %s its connection (link %d) with %zu of %zu bytes %s; it "
                             "exited, crashed or failed: check its output",
                             name, n == 0 ? "closed" : "reset", x->link, x->done, x->len,
                             x->dir == JACCL_XFER_SEND ? "sent" : "received");
    return jaccl_err_set(t->base.err, JACCL_ERR_REMOTE, "%s %s failed (link %d): %s",
                         x->dir == JACCL_XFER_SEND ? "send to" : "recv from", name, x->link,
                         strerror(errno));
}

/* x[i] (the head of its queue) and the unfinished transfers behind it on that queue, in order. */
static int tcp_gather(const struct jaccl_xfer *x, int i, int n, int *idx)
{
    int k = 0, end = n - i > TCP_LOOKAHEAD ? i + TCP_LOOKAHEAD : n;
    idx[k++] = i;
    for (int j = i + 1; j < end && k < TCP_GATHER; j++)
        if (x[j].peer == x[i].peer && x[j].link == x[i].link && x[j].dir == x[i].dir &&
            x[j].done < x[j].len)
            idx[k++] = j;
    return k;
}

/* Link l's read-ahead buffer. */
static unsigned char *tcp_rxbuf(const struct tcp_tp *t, int l)
{
    return t->rx + (size_t)l * TCP_RXBUF;
}

/* Give the gathered transfers from idx[first] on got bytes, in order; returns what is left. */
static size_t tcp_credit(struct jaccl_xfer *x, const int *idx, int first, int ng, size_t got)
{
    for (int k = first; k < ng && got > 0; k++) {
        struct jaccl_xfer *y = &x[idx[k]];
        size_t take = y->len - y->done < got ? y->len - y->done : got;
        y->done += take;
        got -= take;
    }
    return got;
}

/* Serve the gathered receives from what link l read ahead; *moved if any moved. */
static void tcp_rx_take(struct tcp_tp *t, int l, struct jaccl_xfer *x, const int *idx, int ng,
                        int *moved)
{
    struct tcp_rx *q = &t->rxq[l];
    const unsigned char *b = tcp_rxbuf(t, l);
    for (int k = 0; k < ng && q->len > 0; k++) {
        struct jaccl_xfer *y = &x[idx[k]];
        size_t take = y->len - y->done < q->len ? y->len - y->done : q->len;
        jaccl_copy((char *)y->buf + y->done, b + q->off, take);
        y->done += take;
        q->off += (uint32_t)take;
        q->len -= (uint32_t)take;
        q->served += take > 0;
        *moved |= take > 0;
    }
    if (q->len > 0) return;
    q->off = 0;
    if (q->served < RA_PAYS) q->rest = RA_REST;
}

/* After a receive on link l that got bytes: what it read past its transfers, if it read ahead. */
static void tcp_rx_got(struct tcp_tp *t, int l, int ra, size_t ahead)
{
    struct tcp_rx *q = &t->rxq[l];
    if (ra)
        *q = (struct tcp_rx){.len = (uint32_t)ahead};
    else if (q->rest > 0)
        q->rest--;
}

/* Move as many bytes of x[i] and its queue as the socket takes now; *moved if any moved. */
static jaccl_result_t tcp_move(struct tcp_tp *t, struct jaccl_xfer *x, int i, int n, int *moved)
{
    int idx[TCP_GATHER], ng = tcp_gather(x, i, n, idx), first = 0, l = tcp_link(t, &x[i]);
    int fd = t->fds[l], send = x[i].dir == JACCL_XFER_SEND, ra = 0;
    if (!send && t->rxq[l].len) tcp_rx_take(t, l, x, idx, ng, moved);
    for (;;) {
        struct iovec v[TCP_GATHER + 1];
        int nv = 0;
        while (first < ng && x[idx[first]].done == x[idx[first]].len) first++;
        if (first == ng) return JACCL_SUCCESS;
        for (int k = first; k < ng; k++) {
            struct jaccl_xfer *y = &x[idx[k]];
            v[nv++] = (struct iovec){(char *)y->buf + y->done, y->len - y->done};
        }
        if (!send && (ra = t->rxq[l].rest == 0))
            v[nv++] = (struct iovec){tcp_rxbuf(t, l), TCP_RXBUF};
        struct msghdr m = {.msg_iov = v, .msg_iovlen = (size_t)nv};
        ssize_t got =
            send ? sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT) : recvmsg(fd, &m, MSG_DONTWAIT);
        if (got <= 0) {
            if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
                return JACCL_SUCCESS;
            /* Not for a lazy one: a peer that is gone fails the first call that needs it. */
            if (x[i].flags & JACCL_XFER_LAZY) {
                t->gone[l] = 1; /* a closed socket polls ready */
                return JACCL_SUCCESS;
            }
            return tcp_move_error(t, &x[idx[first]], got);
        }
        *moved = 1;
        size_t ahead = tcp_credit(x, idx, first, ng, (size_t)got);
        if (!send) tcp_rx_got(t, l, ra, ahead);
    }
}

/*
 * One pass over the head transfer of every queue (of lazy ones too when
 * lazy); counts what is still pending, lazy ones aside.
 */
static jaccl_result_t tcp_scan(struct tcp_tp *t, struct jaccl_xfer *x, int n, int lazy, int *moved,
                               int *pending)
{
    t->gen++;
    *pending = 0;
    for (int i = 0; i < n; i++) {
        int lz = x[i].flags & JACCL_XFER_LAZY;
        if (x[i].done == x[i].len || (lz && (!lazy || t->gone[tcp_link(t, &x[i])]))) continue;
        size_t q =
            ((size_t)x[i].peer * (size_t)t->nlinks + (size_t)x[i].link) * 2 + (size_t)x[i].dir;
        if (t->stamp[q] == t->gen) {
            *pending += !lz; /* queued behind an earlier transfer on the same stream */
            continue;
        }
        t->stamp[q] = t->gen;
        jaccl_result_t rc = tcp_move(t, x, i, n, moved);
        if (rc != JACCL_SUCCESS) return rc;
        *pending += x[i].done < x[i].len && !lz;
    }
    return JACCL_SUCCESS;
}

static jaccl_result_t tcp_timeout(struct tcp_tp *t, struct jaccl_xfer *x, int n)
{
    for (int i = 0; i < n; i++) {
        if (!jaccl_xfer_waited(&x[i])) continue;
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
static void tcp_warn_stall(struct tcp_tp *t, struct jaccl_xfer *x, int n, int64_t idle_ns,
                           int64_t deadline)
{
    for (int i = 0; i < n; i++) {
        if (!jaccl_xfer_waited(&x[i])) continue;
        char name[128];
        log_warn("%s: nothing moved for %d s; waiting for %s to %s (link %d, %zu of %zu bytes); "
                 "giving up in %d s (JACCL_TIMEOUT)",
                 t->base.err->call ? t->base.err->call : "wait", (int)(idle_ns / 1000000000),
                 peer_name(t, x[i].peer, name, sizeof(name)),
                 x[i].dir == JACCL_XFER_RECV ? "send data" : "take data", x[i].link, x[i].done,
                 x[i].len, jaccl_ms_left(deadline) / 1000);
        return;
    }
}

/* jaccl_comm_abort was called: say what the call was waiting for. */
static jaccl_result_t tcp_aborted(struct tcp_tp *t, struct jaccl_xfer *x, int n)
{
    char name[128] = "no peer";
    for (int i = 0; i < n; i++)
        if (jaccl_xfer_waited(&x[i])) {
            peer_name(t, x[i].peer, name, sizeof(name));
            break;
        }
    return jaccl_err_set(t->base.err, JACCL_ERR_ABORTED,
                         "aborted by jaccl_comm_abort while waiting for %s; destroy the "
                         "communicator",
                         name);
}

/*
 * After a failure the links are out of step: shut every one down, so that
 * peers blocked on us fail at once instead of at their deadline.
 */
static jaccl_result_t tcp_fail(struct tcp_tp *t, jaccl_result_t rc)
{
    if (t->broken) return rc;
    t->broken = 1;
    for (int i = 0; i < t->base.size * t->nlinks; i++)
        if (t->fds[i] >= 0) shutdown(t->fds[i], SHUT_RDWR);
    return rc;
}

/* Poll in slices this short when the wait can be aborted. */
#define ABORT_CHECK_MS 5
/* A wait looks at lazy transfers (transport.h) when it starts, at most this often, and in
 * every poll(). */
#define LAZY_EVERY_NS 1000000

/*
 * Sleep in poll() until a head transfer can move, the deadline passes or an
 * abort; not at all when a lazy one's bytes were read ahead (poll() cannot
 * see those: the wait's next pass takes them).
 */
static jaccl_result_t tcp_block(struct tcp_tp *t, struct jaccl_xfer *x, int n, int64_t deadline)
{
    int np = 0, ahead = 0;
    t->gen++;
    for (int i = 0; i < n; i++) {
        if (x[i].done == x[i].len ||
            ((x[i].flags & JACCL_XFER_LAZY) && t->gone[tcp_link(t, &x[i])]))
            continue;
        size_t q =
            ((size_t)x[i].peer * (size_t)t->nlinks + (size_t)x[i].link) * 2 + (size_t)x[i].dir;
        if (t->stamp[q] == t->gen) continue;
        t->stamp[q] = t->gen;
        t->pfds[np].fd = t->fds[tcp_link(t, &x[i])];
        t->pfds[np].events = x[i].dir == JACCL_XFER_SEND ? POLLOUT : POLLIN;
        ahead |= x[i].dir == JACCL_XFER_RECV && t->rxq[tcp_link(t, &x[i])].len > 0;
        np++;
    }
    if (jaccl_now_ns() >= deadline) return tcp_timeout(t, x, n);
    int ms = jaccl_ms_left(jaccl_tp_wake_ns(&t->base, deadline));
    int slice = ms < STALL_WARN_MS ? ms : STALL_WARN_MS;
    if (t->abort_flag && slice > ABORT_CHECK_MS) slice = ABORT_CHECK_MS;
    if (ahead) slice = 0;
    int r = poll(t->pfds, (nfds_t)np, slice);
    if (r < 0 && errno != EINTR)
        return jaccl_err_set(t->base.err, JACCL_ERR_SYSTEM, "poll(): %s", strerror(errno));
    return JACCL_SUCCESS;
}

static jaccl_result_t tcp_wait(struct tcp_tp *t, struct jaccl_xfer *x, int n, int any,
                               int64_t deadline_ns)
{
    int64_t idle_since = 0, warn_at = 0;
    int lazy = jaccl_now_ns() >= t->lazy_at;
    for (;;) {
        int moved = 0, pending = 0;
        jaccl_result_t rc = tcp_scan(t, x, n, lazy, &moved, &pending);
        if (lazy) t->lazy_at = jaccl_now_ns() + LAZY_EVERY_NS;
        lazy = 0;
        if (rc != JACCL_SUCCESS) return rc;
        if (pending == 0 || (moved && any)) return JACCL_SUCCESS;
        if (jaccl_tp_aborted(t->abort_flag)) return tcp_aborted(t, x, n);
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
        if (jaccl_tp_return_due(&t->base, now)) return JACCL_SUCCESS;
        if (idle_since == 0) {
            idle_since = now;
            warn_at = now + (int64_t)STALL_WARN_MS * 1000000;
        }
        if (now - idle_since < t->spin_ns) {
            sched_yield();
            continue;
        }
        if (now >= warn_at && deadline_ns - now > 1000000000) {
            tcp_warn_stall(t, x, n, now - idle_since, deadline_ns);
            warn_at += (int64_t)STALL_WARN_MS * 1000000;
        }
        rc = tcp_block(t, x, n, deadline_ns);
        if (rc != JACCL_SUCCESS) return rc;
        lazy = 1; /* the poll watched them too */
    }
}

static jaccl_result_t tcp_progress(struct jaccl_tp *tp, struct jaccl_xfer *x, int n, int any,
                                   int64_t deadline_ns)
{
    struct tcp_tp *t = (struct tcp_tp *)tp;
    if (t->broken)
        return jaccl_err_set(tp->err, JACCL_ERR_REMOTE,
                             "the links were shut down after an earlier failure (on this "
                             "communicator or one split from it); destroy it");
    jaccl_result_t rc = tcp_wait(t, x, n, any, deadline_ns);
    return rc == JACCL_SUCCESS ? rc : tcp_fail(t, rc);
}

static void tcp_close(struct jaccl_tp *tp)
{
    struct tcp_tp *t = (struct tcp_tp *)tp;
    if (!t) return;
    for (int i = 0; i < tp->size * t->nlinks; i++)
        if (t->fds[i] >= 0) close(t->fds[i]);
    if (t->lfd >= 0) close(t->lfd);
    free(t->rxq);
    free(t->rx);
    free(t->gone);
    free(t->addrs);
    free(t->pfds);
    free(t->stamp);
    free(t->fds);
    jaccl_auth_wipe(&t->key);
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
