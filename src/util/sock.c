#include "util/sock.h"
#include "util/time.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int jaccl_sock_split_hostport(const char *s, char *host, size_t hostlen, char *port, size_t portlen)
{
    const char *colon, *hbeg = s, *hend;
    if (s[0] == '[') {
        hend = strchr(s, ']');
        if (!hend || hend[1] != ':') return -1;
        hbeg = s + 1;
        colon = hend + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || memchr(s, ':', (size_t)(colon - s))) return -1; /* bare IPv6 needs [] */
        hend = colon;
    }
    size_t hl = (size_t)(hend - hbeg), pl = strlen(colon + 1);
    if (hl == 0 || hl >= hostlen || pl == 0 || pl >= portlen) return -1;
    for (const char *p = colon + 1; *p; p++)
        if (*p < '0' || *p > '9') return -1;
    long pn = strtol(colon + 1, NULL, 10);
    if (pn <= 0 || pn > 65535) return -1;
    memcpy(host, hbeg, hl);
    host[hl] = '\0';
    memcpy(port, colon + 1, pl + 1);
    return 0;
}

jaccl_result_t jaccl_sock_resolve(const char *host, const char *port, const char *what,
                                  struct sockaddr_storage *out, socklen_t *outlen,
                                  struct jaccl_err *e)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0)
        return jaccl_err_set(e, JACCL_ERR_CONFIG, "cannot resolve %s host '%s': %s; check the name",
                             what, host, gai_strerror(rc));
    memcpy(out, res->ai_addr, res->ai_addrlen);
    *outlen = res->ai_addrlen;
    freeaddrinfo(res);
    return JACCL_SUCCESS;
}

void jaccl_sock_tune(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
}

jaccl_result_t jaccl_sock_listen(struct sockaddr_storage *addr, socklen_t *len, int backlog,
                                 int *fd, struct jaccl_err *e)
{
    char s[80];
    int one = 1, lfd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0) return jaccl_err_set(e, JACCL_ERR_SYSTEM, "socket(): %s", strerror(errno));
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(lfd, (struct sockaddr *)addr, *len) != 0 || listen(lfd, backlog) != 0) {
        int err = errno;
        close(lfd);
        return jaccl_err_set(e, JACCL_ERR_SYSTEM,
                             "cannot listen on %s: %s; is the address local and the port free?",
                             jaccl_sock_str(addr, s, sizeof(s)), strerror(err));
    }
    getsockname(lfd, (struct sockaddr *)addr, len);
    fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK);
    *fd = lfd;
    return JACCL_SUCCESS;
}

/* One non-blocking connect attempt; returns 0, or the errno that failed it. */
static int connect_once(const struct sockaddr_storage *addr, socklen_t len, int64_t deadline_ns,
                        int *fd)
{
    int s = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0) return errno;
    int err = 0;
    if (connect(s, (const struct sockaddr *)addr, len) != 0) {
        err = errno;
        if (err == EINPROGRESS) {
            struct pollfd p = {.fd = s, .events = POLLOUT};
            int n = poll(&p, 1, jaccl_ms_left(deadline_ns));
            socklen_t el = sizeof(err);
            err = ETIMEDOUT;
            if (n > 0) getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &el);
        }
    }
    if (err) {
        close(s);
        return err;
    }
    *fd = s;
    return 0;
}

jaccl_result_t jaccl_sock_connect(const struct sockaddr_storage *addr, socklen_t len,
                                  int64_t deadline_ns, const char *what, int *fd,
                                  struct jaccl_err *e)
{
    char s[80];
    int err, tries = 0;
    /* The listener may not be up yet: retry with a short, growing pause. */
    while ((err = connect_once(addr, len, deadline_ns, fd)) != 0) {
        int retry = err == ECONNREFUSED || err == ETIMEDOUT || err == EHOSTUNREACH ||
                    err == ENETUNREACH || err == ECONNRESET || err == EAGAIN;
        if (!retry)
            return jaccl_err_set(e, JACCL_ERR_SYSTEM, "cannot connect to %s at %s: %s", what,
                                 jaccl_sock_str(addr, s, sizeof(s)), strerror(err));
        if (jaccl_now_ns() >= deadline_ns)
            return jaccl_err_set(
                e, JACCL_ERR_TIMEOUT,
                "cannot connect to %s at %s before the deadline (%d attempts, last: "
                "%s); is it running and reachable? raise JACCL_TIMEOUT if it "
                "starts late",
                what, jaccl_sock_str(addr, s, sizeof(s)), tries + 1, strerror(err));
        struct timespec ts = {0, (tries < 10 ? 1 + tries : 50) * 1000000L};
        nanosleep(&ts, NULL);
        tries++;
    }
    jaccl_sock_tune(*fd);
    return JACCL_SUCCESS;
}

jaccl_result_t jaccl_sock_accept(int lfd, int64_t deadline_ns, int *fd, struct jaccl_err *e)
{
    for (;;) {
        int s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (s >= 0) {
            jaccl_sock_tune(s);
            *fd = s;
            return JACCL_SUCCESS;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
            return jaccl_err_set(e, JACCL_ERR_SYSTEM, "accept(): %s", strerror(errno));
        struct pollfd p = {.fd = lfd, .events = POLLIN};
        if (jaccl_now_ns() >= deadline_ns) return JACCL_ERR_TIMEOUT; /* caller names who is late */
        poll(&p, 1, jaccl_ms_left(deadline_ns));
    }
}

/* Move bytes one way with a deadline; dir 0 reads, 1 writes. */
static jaccl_result_t sock_io_all(int fd, void *buf, size_t len, int64_t deadline_ns,
                                  const char *peer, int dir, struct jaccl_err *e)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = dir ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, 0);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n == 0) return jaccl_err_set(e, JACCL_ERR_REMOTE, "%s closed the connection", peer);
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return jaccl_err_set(e, JACCL_ERR_REMOTE, "%s to %s failed: %s", dir ? "send" : "recv",
                                 peer, strerror(errno));
        if (jaccl_now_ns() >= deadline_ns)
            return jaccl_err_set(e, JACCL_ERR_TIMEOUT,
                                 "%s did not %s before the deadline (JACCL_TIMEOUT); is it alive?",
                                 peer, dir ? "take our data" : "send its data");
        struct pollfd pf = {.fd = fd, .events = dir ? POLLOUT : POLLIN};
        poll(&pf, 1, jaccl_ms_left(deadline_ns));
    }
    return JACCL_SUCCESS;
}

jaccl_result_t jaccl_sock_write_all(int fd, const void *buf, size_t len, int64_t deadline_ns,
                                    const char *peer, struct jaccl_err *e)
{
    return sock_io_all(fd, (void *)buf, len, deadline_ns, peer, 1, e);
}

jaccl_result_t jaccl_sock_read_all(int fd, void *buf, size_t len, int64_t deadline_ns,
                                   const char *peer, struct jaccl_err *e)
{
    return sock_io_all(fd, buf, len, deadline_ns, peer, 0, e);
}

void jaccl_sock_to_wire(const struct sockaddr_storage *ss, struct jaccl_wire_addr *w)
{
    memset(w, 0, sizeof(*w));
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        w->family = htons(6);
        w->port = a->sin6_port;
        memcpy(w->addr, &a->sin6_addr, 16);
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        w->family = htons(4);
        w->port = a->sin_port;
        memcpy(w->addr, &a->sin_addr, 4);
    }
}

socklen_t jaccl_sock_from_wire(const struct jaccl_wire_addr *w, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (ntohs(w->family) == 6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = w->port;
        memcpy(&a->sin6_addr, w->addr, 16);
        return sizeof(*a);
    }
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    a->sin_port = w->port;
    memcpy(&a->sin_addr, w->addr, 4);
    return sizeof(*a);
}

const char *jaccl_sock_str(const struct sockaddr_storage *ss, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
        snprintf(buf, len, "[%s]:%u", ip, ntohs(a->sin6_port));
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
        snprintf(buf, len, "%s:%u", ip, ntohs(a->sin_port));
    }
    return buf;
}
