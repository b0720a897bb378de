/*
 * The TCP transport's link handshake body and its parser, pure, shared with
 * the fuzzers (tests/fuzz).  The handshake itself is util/handshake.h.
 */
#ifndef JACCL_TRANSPORT_TCP_H
#define JACCL_TRANSPORT_TCP_H

#include "util/handshake.h"

#include <stddef.h>
#include <stdint.h>

/* Body: from u32, to u32, link u32, job id u64 (big-endian). */
#define JACCL_TCP_HELLO_LEN 20

struct jaccl_tcp_hello {
    uint32_t from, to, link;
    uint64_t job_id;
};

extern const struct jaccl_hs_proto jaccl_tcp_proto;

/* 0, or -1 when len is not JACCL_TCP_HELLO_LEN. */
int jaccl_tcp_parse_hello(const uint8_t *body, size_t len, struct jaccl_tcp_hello *h);
void jaccl_tcp_hello_bytes(const struct jaccl_tcp_hello *h, uint8_t body[JACCL_TCP_HELLO_LEN]);

/*
 * The link slot (from * nlinks + link) a hello from an authenticated peer
 * belongs at for this rank of a job, or -1 if it belongs to no slot.
 */
int jaccl_tcp_hello_slot(const struct jaccl_tcp_hello *h, uint64_t job_id, int rank, int size,
                         int nlinks);

#endif
