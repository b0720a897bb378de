/*
 * The job key and the handshake's parsers, in one process: key parsing,
 * HMAC-SHA256 against RFC 4231, and the acceptor and connector state
 * machines driven byte by byte (good peers, wrong keys, reflection, key on
 * one side only, junk), plus JACCL_JOB_KEY in the environment parser.
 */
#include "core/bootstrap.h"
#include "core/env.h"
#include "transport/tcp/tcp.h"
#include "util/auth.h"
#include "util/handshake.h"
#include "util/log.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static const char *const key_hex =
    "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";

static struct jaccl_key key_of(const char *hex)
{
    struct jaccl_key k = {0};
    assert_int_equal(jaccl_auth_parse_key(hex, &k), 0);
    return k;
}

static void test_parse_key(void **state)
{
    (void)state;
    struct jaccl_key k = key_of(key_hex);
    assert_int_equal(k.len, 32);
    assert_int_equal(k.bytes[0], 0x00);
    assert_int_equal(k.bytes[9], 0x99);
    assert_int_equal(k.bytes[31], 0xff);
    static const char *const bad[] = {
        "",
        "0011",                              /* too short */
        "00112233445566778899aabbccddeef",   /* odd */
        "00112233445566778899aabbccddeefg",  /* not hex */
        "0x112233445566778899aabbccddeeff",  /* prefix */
        "00112233445566778899aabbccddeeff ", /* trailing space */
        ("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
         "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00"), /* 129 */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct jaccl_key untouched = {.len = 7};
        assert_int_equal(jaccl_auth_parse_key(bad[i], &untouched), -1);
        assert_int_equal(untouched.len, 7);
    }
    assert_int_equal(jaccl_auth_parse_key("00112233445566778899aabbccddeeff", &k), 0);
    assert_int_equal(k.len, 16);
}

/* RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?". */
static void test_hmac_rfc4231(void **state)
{
    (void)state;
    static const uint8_t want[32] = {0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e,
                                     0x6a, 0x04, 0x24, 0x26, 0x08, 0x95, 0x75, 0xc7,
                                     0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83,
                                     0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec, 0x38, 0x43};
    struct jaccl_key k = {.len = 4, .bytes = "Jefe"};
    uint8_t mac[JACCL_MAC_LEN];
    /* label || a || b is the message: split it anywhere. */
    assert_int_equal(jaccl_auth_mac(&k, "what do ", "ya want ", 8, "for nothing?", 12, mac), 0);
    assert_memory_equal(mac, want, 32);
    assert_true(jaccl_auth_mac_equal(mac, want));
    mac[31] ^= 1;
    assert_false(jaccl_auth_mac_equal(mac, want));
    struct jaccl_key none = {0};
    assert_int_equal(jaccl_auth_mac(&none, "x", "", 0, "", 0, mac), -1);
}

/* A connector's hello as jaccl_hs_connect builds it (see handshake.h). */
static size_t make_hello(uint8_t *h, const struct jaccl_hs_proto *p, int keyed, const uint8_t *body)
{
    h[0] = (uint8_t)(p->magic >> 24);
    h[1] = (uint8_t)(p->magic >> 16);
    h[2] = (uint8_t)(p->magic >> 8);
    h[3] = (uint8_t)p->magic;
    h[4] = (uint8_t)(p->version >> 8);
    h[5] = (uint8_t)p->version;
    h[6] = 0;
    h[7] = keyed ? 1 : 0;
    memcpy(h + 8, body, p->body_len);
    memset(h + 8 + p->body_len, 0x5a, JACCL_NONCE_LEN);
    return 8 + p->body_len + JACCL_NONCE_LEN;
}

/* Feed the acceptor bytes one at a time; returns the step where it stopped needing more. */
static enum jaccl_hs_step feed(const struct jaccl_hs_proto *p, const struct jaccl_key *key,
                               struct jaccl_hs_conn *c, const uint8_t *bytes, size_t n)
{
    enum jaccl_hs_step st = JACCL_HS_MORE;
    uint8_t *buf = c->state == JACCL_HS_WANT_HELLO ? c->hello : c->proof;
    for (size_t i = 0; i < n && st == JACCL_HS_MORE; i++) {
        buf[c->got++] = bytes[i];
        st = jaccl_hs_accept_step(p, key, c);
    }
    return st;
}

/* The full exchange, acceptor key ka, connector key kc; returns the acceptor's last step. */
static enum jaccl_hs_step exchange(const struct jaccl_key *ka, const struct jaccl_key *kc,
                                   int *connector_ok)
{
    const struct jaccl_hs_proto *p = &jaccl_bs_proto;
    uint8_t body[JACCL_BS_HELLO_LEN] = {0, 0, 0, 1, 0, 0, 0, 2}, hello[JACCL_HS_HELLO_MAX];
    uint8_t proof[JACCL_HS_PROOF_LEN];
    const char *why = NULL;
    struct jaccl_hs_conn c = {.fd = -1};
    size_t hl = make_hello(hello, p, kc->len != 0, body);
    enum jaccl_hs_step st = feed(p, ka, &c, hello, hl);
    if (st == JACCL_HS_REFUSE) {
        *connector_ok =
            jaccl_hs_check_challenge(p, kc, hello, c.challenge, sizeof(c.challenge), proof, &why);
        return st;
    }
    assert_int_equal(st, JACCL_HS_REPLY);
    *connector_ok =
        jaccl_hs_check_challenge(p, kc, hello, c.challenge, sizeof(c.challenge), proof, &why);
    if (*connector_ok < 0) return st;
    return feed(p, ka, &c, proof, sizeof(proof));
}

static void test_handshake_outcomes(void **state)
{
    (void)state;
    struct jaccl_key k = key_of(key_hex), none = {0};
    struct jaccl_key wrong = key_of("ffeeddccbbaa99887766554433221100");
    int ok;
    assert_int_equal(exchange(&k, &k, &ok), JACCL_HS_DONE);
    assert_int_equal(ok, 0);
    assert_int_equal(exchange(&none, &none, &ok), JACCL_HS_DONE);
    assert_int_equal(ok, 0);
    /* Wrong key: each side sees the other's proof fail. */
    assert_int_equal(exchange(&k, &wrong, &ok), JACCL_HS_DROP);
    assert_int_equal(ok, 1);
    /* Key on one side only: refused with a status the connector explains. */
    assert_int_equal(exchange(&k, &none, &ok), JACCL_HS_REFUSE);
    assert_int_equal(ok, -1);
    assert_int_equal(exchange(&none, &k, &ok), JACCL_HS_REFUSE);
    assert_int_equal(ok, -1);
}

/* The acceptor's own MAC sent back as the proof must not pass (labels differ). */
static void test_reflection(void **state)
{
    (void)state;
    const struct jaccl_hs_proto *p = &jaccl_tcp_proto;
    struct jaccl_key k = key_of(key_hex);
    uint8_t body[JACCL_TCP_HELLO_LEN] = {0}, hello[JACCL_HS_HELLO_MAX];
    struct jaccl_hs_conn c = {.fd = -1};
    size_t hl = make_hello(hello, p, 1, body);
    assert_int_equal(feed(p, &k, &c, hello, hl), JACCL_HS_REPLY);
    uint8_t mirror[JACCL_MAC_LEN];
    memcpy(mirror, c.challenge + 8 + JACCL_NONCE_LEN, JACCL_MAC_LEN);
    assert_int_equal(feed(p, &k, &c, mirror, sizeof(mirror)), JACCL_HS_DROP);
    assert_non_null(strstr(c.why, "failed authentication"));
}

static void test_junk_and_versions(void **state)
{
    (void)state;
    const struct jaccl_hs_proto *p = &jaccl_bs_proto;
    struct jaccl_key k = key_of(key_hex);
    uint8_t body[JACCL_BS_HELLO_LEN] = {0}, hello[JACCL_HS_HELLO_MAX];
    size_t hl = make_hello(hello, p, 1, body);
    struct {
        size_t at;
        uint8_t xor ;
    } bad[] = {{0, 0x01}, {3, 0x80}, {5, 0x01}, {6, 0x80}, {7, 0x02}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct jaccl_hs_conn c = {.fd = -1};
        uint8_t h[JACCL_HS_HELLO_MAX];
        memcpy(h, hello, hl);
        h[bad[i].at] ^= bad[i].xor ;
        assert_int_equal(feed(p, &k, &c, h, hl), JACCL_HS_DROP);
        assert_non_null(c.why);
    }
    /* The TCP protocol's hello is not the coordinator's. */
    struct jaccl_hs_conn c = {.fd = -1};
    uint8_t t[JACCL_HS_HELLO_MAX], tb[JACCL_TCP_HELLO_LEN] = {0};
    size_t tl = make_hello(t, &jaccl_tcp_proto, 1, tb);
    assert_int_equal(feed(p, &k, &c, t, tl < hl ? tl : hl), JACCL_HS_DROP);
    /* A short or foreign challenge is refused by the connector. */
    uint8_t proof[JACCL_HS_PROOF_LEN], ch[JACCL_HS_CHALLENGE_LEN] = {0};
    const char *why = NULL;
    assert_int_equal(jaccl_hs_check_challenge(p, &k, hello, ch, sizeof(ch), proof, &why), -1);
    assert_int_equal(jaccl_hs_check_challenge(p, &k, hello, ch, 3, proof, &why), -1);
}

static void test_body_parsers(void **state)
{
    (void)state;
    uint8_t b[JACCL_TCP_HELLO_LEN];
    struct jaccl_tcp_hello h = {.from = 3, .to = 1, .link = 2, .job_id = 0x0102030405060708ull}, g;
    jaccl_tcp_hello_bytes(&h, b);
    assert_int_equal(jaccl_tcp_parse_hello(b, sizeof(b), &g), 0);
    assert_memory_equal(&h, &g, sizeof(h));
    assert_int_equal(jaccl_tcp_parse_hello(b, sizeof(b) - 1, &g), -1);
    assert_int_equal(jaccl_tcp_hello_slot(&g, h.job_id, 1, 4, 4), 3 * 4 + 2);
    assert_int_equal(jaccl_tcp_hello_slot(&g, h.job_id + 1, 1, 4, 4), -1); /* another job */
    assert_int_equal(jaccl_tcp_hello_slot(&g, h.job_id, 0, 4, 4), -1);     /* not for us */
    assert_int_equal(jaccl_tcp_hello_slot(&g, h.job_id, 1, 3, 4), -1);     /* no rank 3 */
    assert_int_equal(jaccl_tcp_hello_slot(&g, h.job_id, 1, 4, 2), -1);     /* no link 2 */
    g.from = 0xffffffffu;
    assert_int_equal(jaccl_tcp_hello_slot(&g, h.job_id, 1, 4, 4), -1);
    uint32_t rank, size, status;
    uint64_t id;
    uint8_t r[16] = {0, 0, 0, 9, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8};
    assert_int_equal(jaccl_bs_parse_hello(r, 8, &rank, &size), 0);
    assert_int_equal(rank, 9);
    assert_int_equal(jaccl_bs_parse_hello(r, 7, &rank, &size), -1);
    assert_int_equal(jaccl_bs_parse_reply(r, 16, &status, &id), 0);
    assert_int_equal(status, 9);
    assert_int_equal(id, 0x0102030405060708ull);
    assert_int_equal(jaccl_bs_parse_reply(r, 15, &status, &id), -1);
}

static void test_env_key(void **state)
{
    (void)state;
    struct jaccl_env env;
    struct jaccl_err e = {.rank = -1};
    unsetenv("JACCL_RANK");
    unsetenv("JACCL_SIZE");
    setenv("JACCL_JOB_KEY", key_hex, 1);
    assert_int_equal(jaccl_env_parse(&env, NULL, &e), JACCL_SUCCESS);
    assert_int_equal(env.job_key.len, 32);
    unsetenv("JACCL_JOB_KEY");
    assert_int_equal(jaccl_env_parse(&env, NULL, &e), JACCL_SUCCESS);
    assert_int_equal(env.job_key.len, 0);
    setenv("JACCL_JOB_KEY", "secretsecretsecretsecretsecretsecret", 1);
    assert_int_equal(jaccl_env_parse(&env, NULL, &e), JACCL_ERR_CONFIG);
    assert_non_null(strstr(e.msg, "JACCL_JOB_KEY"));
    assert_null(strstr(e.msg, "secret")); /* the value is never shown */
    unsetenv("JACCL_JOB_KEY");
}

int main(void)
{
    jaccl_log_level_current = JACCL_LOG_ERROR;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_key),
        cmocka_unit_test(test_hmac_rfc4231),
        cmocka_unit_test(test_handshake_outcomes),
        cmocka_unit_test(test_reflection),
        cmocka_unit_test(test_junk_and_versions),
        cmocka_unit_test(test_body_parsers),
        cmocka_unit_test(test_env_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
