/* Socket helpers shared by the bootstrap and the TCP transport; all waits have deadlines. */
#ifndef JACCL_UTIL_SOCK_H
#define JACCL_UTIL_SOCK_H

#include "util/err.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* An address in a fixed wire form (family, port, 16 address bytes), network order. */
struct jaccl_wire_addr {
    uint16_t family; /* 4 or 6 */
    uint16_t port;
    uint8_t addr[16];
};

/* Split "host:port", "[v6]:port" into host and port; 0 on success, -1 if malformed. */
int jaccl_sock_split_hostport(const char *s, char *host, size_t hostlen, char *port,
                              size_t portlen);

/* Resolve host:port (TCP); what names the variable for error messages. */
jaccl_result_t jaccl_sock_resolve(const char *host, const char *port, const char *what,
                                  struct sockaddr_storage *out, socklen_t *outlen,
                                  struct jaccl_err *e);

/* Listen on addr (port 0 picks one); the bound address is written back. */
jaccl_result_t jaccl_sock_listen(struct sockaddr_storage *addr, socklen_t *len, int backlog,
                                 int *fd, struct jaccl_err *e);

/* Connect, retrying refused or unreachable attempts until deadline. */
jaccl_result_t jaccl_sock_connect(const struct sockaddr_storage *addr, socklen_t len,
                                  int64_t deadline_ns, const char *what, int *fd,
                                  struct jaccl_err *e);

/* Accept one connection before deadline (JACCL_ERR_TIMEOUT otherwise). */
jaccl_result_t jaccl_sock_accept(int lfd, int64_t deadline_ns, int *fd, struct jaccl_err *e);

/* Write or read exactly len bytes before deadline; peer names the other side. */
jaccl_result_t jaccl_sock_write_all(int fd, const void *buf, size_t len, int64_t deadline_ns,
                                    const char *peer, struct jaccl_err *e);
jaccl_result_t jaccl_sock_read_all(int fd, void *buf, size_t len, int64_t deadline_ns,
                                   const char *peer, struct jaccl_err *e);

void jaccl_sock_tune(int fd); /* non-blocking, TCP_NODELAY, close-on-exec */
void jaccl_sock_to_wire(const struct sockaddr_storage *ss, struct jaccl_wire_addr *w);
socklen_t jaccl_sock_from_wire(const struct jaccl_wire_addr *w, struct sockaddr_storage *ss);
/* "ip:port" or "[ip]:port" into buf; returns buf. */
const char *jaccl_sock_str(const struct sockaddr_storage *ss, char *buf, size_t len);

#endif
