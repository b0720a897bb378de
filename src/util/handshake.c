#include "util/handshake.h"
#include "util/log.h"
#include "util/sock.h"
#include "util/time.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define LABEL_ACCEPT  "jaccl accept"
#define LABEL_CONNECT "jaccl connect"
#define CH_HEAD       (8 + JACCL_NONCE_LEN) /* the challenge before its MAC */

static void put16(uint8_t *b, uint16_t v)
{
    b[0] = (uint8_t)(v >> 8);
    b[1] = (uint8_t)v;
}

static void put32(uint8_t *b, uint32_t v)
{
    put16(b, (uint16_t)(v >> 16));
    put16(b + 2, (uint16_t)v);
}

static uint16_t get16(const uint8_t *b)
{
    return (uint16_t)(b[0] << 8 | b[1]);
}

static uint32_t get32(const uint8_t *b)
{
    return (uint32_t)get16(b) << 16 | get16(b + 2);
}

static size_t hello_len(const struct jaccl_hs_proto *p)
{
    return 8 + (size_t)p->body_len + JACCL_NONCE_LEN;
}

size_t jaccl_hs_want(const struct jaccl_hs_proto *p, const struct jaccl_hs_conn *c)
{
    return c->state == JACCL_HS_WANT_HELLO ? hello_len(p) : JACCL_HS_PROOF_LEN;
}

static enum jaccl_hs_step drop(struct jaccl_hs_conn *c, const char *why)
{
    c->why = why;
    return JACCL_HS_DROP;
}

static enum jaccl_hs_step refuse(struct jaccl_hs_conn *c, uint16_t status, const char *why)
{
    put16(c->challenge + 6, status);
    c->why = why;
    return JACCL_HS_REFUSE;
}

/* A complete hello: answer it with a challenge (or a refusal). */
static enum jaccl_hs_step on_hello(const struct jaccl_hs_proto *p, const struct jaccl_key *key,
                                   struct jaccl_hs_conn *c)
{
    const uint8_t *h = c->hello;
    if (get32(h) != p->magic) return drop(c, "sent bytes that are not a jaccl handshake");
    if (get16(h + 4) != p->version)
        return drop(c, "speaks another version of the jaccl protocol (a different jaccl build?)");
    uint16_t flags = get16(h + 6);
    if (flags & ~JACCL_HS_KEYED) return drop(c, "sent unknown handshake flags");
    memset(c->challenge, 0, sizeof(c->challenge));
    put32(c->challenge, p->magic);
    put16(c->challenge + 4, p->version);
    if (key->len && !(flags & JACCL_HS_KEYED))
        return refuse(c, JACCL_HS_NEED_KEY, "has no JACCL_JOB_KEY, but this job has one");
    if (!key->len && (flags & JACCL_HS_KEYED))
        return refuse(c, JACCL_HS_NO_KEY, "has a JACCL_JOB_KEY, but this job runs without one");
    if (jaccl_auth_random(c->challenge + 8, JACCL_NONCE_LEN) != 0)
        return drop(c, "could not be challenged (no random bytes)");
    if (key->len && jaccl_auth_mac(key, LABEL_ACCEPT, h, hello_len(p), c->challenge, CH_HEAD,
                                   c->challenge + CH_HEAD) != 0)
        return drop(c, "could not be challenged (HMAC failed)");
    c->state = JACCL_HS_WANT_PROOF;
    c->got = 0;
    return JACCL_HS_REPLY;
}

enum jaccl_hs_step jaccl_hs_accept_step(const struct jaccl_hs_proto *p, const struct jaccl_key *key,
                                        struct jaccl_hs_conn *c)
{
    if (c->got < jaccl_hs_want(p, c)) return JACCL_HS_MORE;
    if (c->state == JACCL_HS_WANT_HELLO) return on_hello(p, key, c);
    if (!key->len) return JACCL_HS_DONE;
    uint8_t mac[JACCL_MAC_LEN];
    if (jaccl_auth_mac(key, LABEL_CONNECT, c->hello, hello_len(p), c->challenge,
                       JACCL_HS_CHALLENGE_LEN, mac) != 0 ||
        !jaccl_auth_mac_equal(mac, c->proof))
        return drop(c, "failed authentication (wrong JACCL_JOB_KEY?)");
    return JACCL_HS_DONE;
}

int jaccl_hs_check_challenge(const struct jaccl_hs_proto *p, const struct jaccl_key *key,
                             const uint8_t *hello, const uint8_t *ch, size_t ch_len,
                             uint8_t proof[JACCL_HS_PROOF_LEN], const char **why)
{
    uint8_t mac[JACCL_MAC_LEN];
    if (ch_len != JACCL_HS_CHALLENGE_LEN || get32(ch) != p->magic || get16(ch + 4) != p->version) {
        *why = "did not answer with a jaccl handshake: is it a jaccl process of the same version?";
        return -1;
    }
    switch (get16(ch + 6)) {
    case JACCL_HS_OK:
        break;
    case JACCL_HS_NEED_KEY:
        *why = "requires a JACCL_JOB_KEY and this process has none; set the same "
               "JACCL_JOB_KEY on every rank (jaccl-launch does)";
        return -1;
    case JACCL_HS_NO_KEY:
        *why = "runs without a JACCL_JOB_KEY but this process has one; set the same "
               "JACCL_JOB_KEY on every rank, or on none";
        return -1;
    default:
        *why = "refused the connection with an unknown status";
        return -1;
    }
    memset(proof, 0, JACCL_HS_PROOF_LEN);
    if (!key->len) return 0;
    *why = "failed authentication: its proof does not match our JACCL_JOB_KEY (is "
           "JACCL_JOB_KEY the same on every rank?)";
    if (jaccl_auth_mac(key, LABEL_CONNECT, hello, hello_len(p), ch, JACCL_HS_CHALLENGE_LEN,
                       proof) != 0 ||
        jaccl_auth_mac(key, LABEL_ACCEPT, hello, hello_len(p), ch, CH_HEAD, mac) != 0)
        return -1;
    return jaccl_auth_mac_equal(mac, ch + CH_HEAD) ? 0 : 1;
}

jaccl_result_t jaccl_hs_connect(int fd, const struct jaccl_hs_proto *p, const struct jaccl_key *key,
                                const void *body, int64_t deadline, const char *peer,
                                struct jaccl_err *e)
{
    uint8_t hello[JACCL_HS_HELLO_MAX], ch[JACCL_HS_CHALLENGE_LEN], proof[JACCL_HS_PROOF_LEN];
    const char *why = "";
    put32(hello, p->magic);
    put16(hello + 4, p->version);
    put16(hello + 6, key->len ? JACCL_HS_KEYED : 0);
    memcpy(hello + 8, body, p->body_len);
    if (jaccl_auth_random(hello + 8 + p->body_len, JACCL_NONCE_LEN) != 0)
        return jaccl_err_set(e, JACCL_ERR_SYSTEM, "no random bytes for the handshake with %s",
                             peer);
    jaccl_result_t rc = jaccl_sock_write_all(fd, hello, hello_len(p), deadline, peer, e);
    if (rc == JACCL_SUCCESS) rc = jaccl_sock_read_all(fd, ch, sizeof(ch), deadline, peer, e);
    if (rc != JACCL_SUCCESS) return rc;
    int ok = jaccl_hs_check_challenge(p, key, hello, ch, sizeof(ch), proof, &why);
    /*
     * Also when the peer's MAC failed: then the keys differ, so our proof is
     * of no use to it, and it can report the wrong key too.  The MAC covers
     * our fresh nonce, so it can't be replayed elsewhere.
     */
    if (ok >= 0) rc = jaccl_sock_write_all(fd, proof, sizeof(proof), deadline, peer, e);
    if (ok != 0) return jaccl_err_set(e, JACCL_ERR_CONFIG, "%s %s", peer, why);
    return rc;
}

void jaccl_hs_server_init(struct jaccl_hs_server *s, const struct jaccl_hs_proto *p,
                          const struct jaccl_key *key, int lfd)
{
    s->proto = p;
    s->key = key;
    s->lfd = lfd;
    s->n = 0;
    s->dropped = 0;
    s->last_drop[0] = '\0';
}

/* Forget conn[i], keeping the rest in arrival order. */
static void conn_remove(struct jaccl_hs_server *s, int i)
{
    memmove(&s->conn[i], &s->conn[i + 1], sizeof(s->conn[0]) * (size_t)(s->n - i - 1));
    s->n--;
}

static void conn_drop(struct jaccl_hs_server *s, int i, const char *why)
{
    struct jaccl_hs_conn *c = &s->conn[i];
    log_warn("%s: connection from %s %s; dropped", s->proto->who, c->peer, why);
    snprintf(s->last_drop, sizeof(s->last_drop), "%s %s", c->peer, why);
    s->dropped++;
    close(c->fd);
    conn_remove(s, i);
}

/* Read what the connection sent; 1 if bytes came, 0 if none yet, -1 closed. */
static int conn_read(const struct jaccl_hs_proto *p, struct jaccl_hs_conn *c)
{
    uint8_t *buf = c->state == JACCL_HS_WANT_HELLO ? c->hello : c->proof;
    ssize_t n = recv(c->fd, buf + c->got, jaccl_hs_want(p, c) - c->got, MSG_DONTWAIT);
    if (n > 0) {
        c->got += (size_t)n;
        return 1;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return 0;
    return -1;
}

static int send_challenge(struct jaccl_hs_conn *c)
{
    /* 56 bytes into a fresh socket's empty send buffer: all or nothing. */
    ssize_t n = send(c->fd, c->challenge, sizeof(c->challenge), MSG_DONTWAIT | MSG_NOSIGNAL);
    return n == (ssize_t)sizeof(c->challenge) ? 0 : -1;
}

/* Serve conn[i] after poll saw it readable; 1 when it completed the handshake. */
static int conn_serve(struct jaccl_hs_server *s, int i)
{
    struct jaccl_hs_conn *c = &s->conn[i];
    int r = conn_read(s->proto, c);
    if (r < 0) {
        int silent = c->state == JACCL_HS_WANT_HELLO && c->got == 0;
        conn_drop(s, i, silent ? "closed without a handshake" : "closed during the handshake");
        return 0;
    }
    switch (jaccl_hs_accept_step(s->proto, s->key, c)) {
    case JACCL_HS_MORE:
        return 0;
    case JACCL_HS_REPLY:
        if (send_challenge(c) != 0) conn_drop(s, i, "did not take our challenge");
        return 0;
    case JACCL_HS_REFUSE:
        send_challenge(c); /* best effort: it lets a misconfigured rank say why */
        conn_drop(s, i, c->why);
        return 0;
    case JACCL_HS_DONE:
        return 1;
    case JACCL_HS_DROP:
        break;
    }
    conn_drop(s, i, c->why);
    return 0;
}

static void conn_add(struct jaccl_hs_server *s, int fd, const struct sockaddr_storage *ss)
{
    if (s->n == JACCL_HS_PENDING) /* a flood: the oldest has had the longest to speak */
        conn_drop(s, 0, "was still handshaking when too many others arrived");
    struct jaccl_hs_conn *c = &s->conn[s->n++];
    memset(c, 0, sizeof(*c));
    c->fd = fd;
    c->deadline = jaccl_now_ns() + JACCL_HS_WAIT_NS;
    jaccl_sock_str(ss, c->peer, sizeof(c->peer));
}

/* Take every connection waiting in the listener's backlog. */
static jaccl_result_t accept_new(struct jaccl_hs_server *s, struct jaccl_err *e)
{
    for (;;) {
        struct sockaddr_storage ss = {0};
        socklen_t len = sizeof(ss);
        int fd = accept4(s->lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            conn_add(s, fd, &ss);
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) return JACCL_SUCCESS;
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if ((errno == EMFILE || errno == ENFILE) && s->n > 0) {
            conn_drop(s, 0, "was dropped to free a file descriptor");
            continue;
        }
        return jaccl_err_set(e, JACCL_ERR_SYSTEM, "%s: accept(): %s", s->proto->who,
                             strerror(errno));
    }
}

/* Drop connections past their handshake deadline; returns the earliest left. */
static int64_t expire(struct jaccl_hs_server *s, int64_t now, int64_t deadline)
{
    for (int i = s->n - 1; i >= 0; i--)
        if (now >= s->conn[i].deadline)
            conn_drop(s, i, "did not complete the handshake within 5 s");
    for (int i = 0; i < s->n; i++)
        if (s->conn[i].deadline < deadline) deadline = s->conn[i].deadline;
    return deadline;
}

/* Hand conn[i] to the caller. */
static void conn_take(struct jaccl_hs_server *s, int i, int *fd, uint8_t *body)
{
    *fd = s->conn[i].fd;
    memcpy(body, s->conn[i].hello + 8, s->proto->body_len);
    jaccl_sock_tune(*fd);
    log_debug("%s: %s completed the handshake", s->proto->who, s->conn[i].peer);
    conn_remove(s, i);
}

jaccl_result_t jaccl_hs_accept(struct jaccl_hs_server *s, int64_t deadline, int *fd, uint8_t *body,
                               struct jaccl_err *e)
{
    struct pollfd pf[1 + JACCL_HS_PENDING];
    for (;;) {
        int64_t now = jaccl_now_ns(), wake = expire(s, now, deadline);
        if (now >= deadline) return JACCL_ERR_TIMEOUT;
        int n = s->n;
        pf[0] = (struct pollfd){.fd = s->lfd, .events = POLLIN};
        for (int i = 0; i < n; i++)
            pf[1 + i] = (struct pollfd){.fd = s->conn[i].fd, .events = POLLIN};
        if (poll(pf, (nfds_t)(1 + n), jaccl_ms_left(wake)) < 0 && errno != EINTR)
            return jaccl_err_set(e, JACCL_ERR_SYSTEM, "%s: poll(): %s", s->proto->who,
                                 strerror(errno));
        /* Backwards: dropping conn[i] moves only those after it, already served. */
        for (int i = n - 1; i >= 0; i--) {
            if (!pf[1 + i].revents || !conn_serve(s, i)) continue;
            conn_take(s, i, fd, body);
            return JACCL_SUCCESS;
        }
        if (pf[0].revents) {
            jaccl_result_t rc = accept_new(s, e);
            if (rc != JACCL_SUCCESS) return rc;
        }
    }
}

const char *jaccl_hs_server_note(struct jaccl_hs_server *s, char *buf, size_t len)
{
    buf[0] = '\0';
    if (s->dropped)
        snprintf(buf, len, "; %d other connection(s) were dropped, the last: %s", s->dropped,
                 s->last_drop);
    return buf;
}

void jaccl_hs_server_close(struct jaccl_hs_server *s)
{
    for (int i = 0; i < s->n; i++) close(s->conn[i].fd);
    s->n = 0;
}
