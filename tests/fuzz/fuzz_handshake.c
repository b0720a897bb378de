/*
 * libFuzzer harness: every byte jaccl reads off the wire before a peer is
 * trusted.  The input drives the acceptor's handshake parser (bootstrap or
 * TCP protocol, with or without a key, delivered in chunks of some size);
 * a hello that completes goes to the protocol's body parser.  The same
 * bytes are then read as the acceptor's challenge by the connector's check,
 * as a bootstrap reply, and as a transport address.
 */
#include "core/bootstrap.h"
#include "transport/tcp/tcp.h"
#include "util/auth.h"
#include "util/handshake.h"
#include "util/log.h"
#include "util/sock.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct jaccl_key key;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    jaccl_log_level_current = -1;
    jaccl_auth_parse_key("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", &key);
    return 0;
}

static void on_body(const struct jaccl_hs_proto *p, const uint8_t *body)
{
    if (p == &jaccl_bs_proto) {
        uint32_t rank, size;
        jaccl_bs_parse_hello(body, JACCL_BS_HELLO_LEN, &rank, &size);
        return;
    }
    struct jaccl_tcp_hello h;
    if (jaccl_tcp_parse_hello(body, JACCL_TCP_HELLO_LEN, &h) == 0)
        jaccl_tcp_hello_slot(&h, 0x1234, 1, 4, 2);
}

/* Feed data to the acceptor chunk bytes at a time, as recv() might deliver it. */
static void acceptor(const struct jaccl_hs_proto *p, const struct jaccl_key *k, size_t chunk,
                     const uint8_t *d, size_t n)
{
    struct jaccl_hs_conn c = {.fd = -1};
    for (size_t i = 0; i < n;) {
        uint8_t *buf = c.state == JACCL_HS_WANT_HELLO ? c.hello : c.proof;
        size_t m = jaccl_hs_want(p, &c) - c.got;
        if (m > chunk) m = chunk;
        if (m > n - i) m = n - i;
        memcpy(buf + c.got, d + i, m);
        c.got += m;
        i += m;
        enum jaccl_hs_step st = jaccl_hs_accept_step(p, k, &c);
        if (st == JACCL_HS_DONE) on_body(p, c.hello + 8);
        if (st == JACCL_HS_DONE || st == JACCL_HS_DROP || st == JACCL_HS_REFUSE) return;
    }
}

static void connector(const struct jaccl_hs_proto *p, const struct jaccl_key *k, const uint8_t *d,
                      size_t n)
{
    uint8_t hello[JACCL_HS_HELLO_MAX] = {0}, proof[JACCL_HS_PROOF_LEN];
    const char *why = NULL;
    jaccl_hs_check_challenge(p, k, hello, d, n, proof, &why);
    uint32_t status;
    uint64_t id;
    jaccl_bs_parse_reply(d, n, &status, &id);
    if (n >= sizeof(struct jaccl_wire_addr)) {
        struct jaccl_wire_addr w;
        struct sockaddr_storage ss;
        char str[80];
        memcpy(&w, d, sizeof(w));
        jaccl_sock_from_wire(&w, &ss);
        jaccl_sock_str(&ss, str, sizeof(str));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct jaccl_key none;
    if (size < 1) return 0;
    uint8_t mode = data[0];
    const struct jaccl_hs_proto *p = mode & 1 ? &jaccl_tcp_proto : &jaccl_bs_proto;
    const struct jaccl_key *k = mode & 2 ? &key : &none;
    acceptor(p, k, 1 + (mode >> 2), data + 1, size - 1);
    connector(p, k, data + 1, size - 1);
    return 0;
}
