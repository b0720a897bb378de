/*
 * Point-to-point across real processes.  For every ordered pair (i, j), i
 * sends a burst of messages of 0 B to 8 MiB to j, which receives them in
 * order and answers with a burst of its own; the pair (j, i) then does the
 * reverse.  Concurrent disjoint pairs and a collective afterwards check the
 * links stay in step.  Run with one and with two TCP sockets per peer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "values.h"

#define GUARD    64
#define MAX_SIZE (8u << 20)

struct sr_test {
    const char *name;
    int np;
    const char *env[3];
};

/* One burst, sent back to back; 0 B and odd sizes included. */
static const size_t sizes[] = {1,       0, 3, 8, 63, 64, 65, 4097, 65536, 131073, (1u << 20) + 13,
                               MAX_SIZE};
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

/* The largest element type that divides bytes, so dtypes other than bytes are used too. */
static jaccl_dtype_t dtype_for(size_t bytes)
{
    if (bytes % 8 == 0) return (bytes / 8) % 2 ? JACCL_FLOAT64 : JACCL_INT64;
    if (bytes % 4 == 0) return JACCL_FLOAT32;
    if (bytes % 2 == 0) return JACCL_BFLOAT16;
    return JACCL_UINT8;
}

static void fill(unsigned char *p, size_t len, uint64_t seed)
{
    uint64_t w = 0, s = mp_mix(seed);
    for (size_t j = 0; j < len; j++) {
        if (j % 8 == 0) w = mp_mix(s + j / 8);
        p[j] = (unsigned char)(w >> (8 * (j % 8)));
    }
}

static uint64_t msg_seed(int from, int to, int round, size_t k)
{
    return ((uint64_t)from << 48) ^ ((uint64_t)to << 40) ^ ((uint64_t)round << 16) ^ k;
}

static int send_burst(jaccl_comm_t comm, int to, int round, unsigned char *buf)
{
    int me = jaccl_comm_rank(comm);
    for (size_t k = 0; k < NSIZES; k++) {
        jaccl_dtype_t dt = dtype_for(sizes[k]);
        fill(buf, sizes[k], msg_seed(me, to, round, k));
        uint64_t h = mp_fnv(MP_FNV_INIT, buf, sizes[k]);
        MP_OK(comm, jaccl_send(buf, sizes[k] / jaccl_dtype_size(dt), dt, to, comm));
        MP_CHECK(mp_fnv(MP_FNV_INIT, buf, sizes[k]) == h, "send of %zu B to %d changed buf",
                 sizes[k], to);
    }
    return 0;
}

static int recv_burst(jaccl_comm_t comm, int from, int round, unsigned char *buf,
                      unsigned char *want)
{
    int me = jaccl_comm_rank(comm);
    for (size_t k = 0; k < NSIZES; k++) {
        jaccl_dtype_t dt = dtype_for(sizes[k]);
        memset(buf, 0xee, sizes[k]);
        memset(buf + sizes[k], 0xa5, GUARD);
        MP_OK(comm, jaccl_recv(buf, sizes[k] / jaccl_dtype_size(dt), dt, from, comm));
        fill(want, sizes[k], msg_seed(from, me, round, k));
        memset(want + sizes[k], 0xa5, GUARD);
        if (memcmp(buf, want, sizes[k] + GUARD) == 0) continue;
        size_t j = 0;
        while (buf[j] == want[j]) j++;
        mp_fail(__FILE__, __LINE__, "recv_burst",
                "message %zu (%zu B, %s) from rank %d, round %d: byte %zu is 0x%02x, want 0x%02x%s",
                k, sizes[k], mp_dtype_name(dt), from, round, j, buf[j], want[j],
                j >= sizes[k] ? " (past the end: overflow)" : "");
        return 1;
    }
    return 0;
}

/* i sends a burst then receives j's; j receives then answers. */
static int pair_exchange(jaccl_comm_t comm, int i, int j, int round, unsigned char *buf,
                         unsigned char *want)
{
    int me = jaccl_comm_rank(comm);
    if (me == i) return send_burst(comm, j, round, buf) || recv_burst(comm, j, round, buf, want);
    if (me == j) return recv_burst(comm, i, round, buf, want) || send_burst(comm, i, round, buf);
    return 0;
}

static int all_pairs(jaccl_comm_t comm, unsigned char *buf, unsigned char *want)
{
    int n = jaccl_comm_size(comm), round = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            if (i != j && pair_exchange(comm, i, j, round++, buf, want) != 0) return 1;
    return 0;
}

/* Disjoint pairs (0,1), (2,3) at once: even ranks send first. */
static int concurrent_pairs(jaccl_comm_t comm, unsigned char *buf, unsigned char *want)
{
    int me = jaccl_comm_rank(comm), n = jaccl_comm_size(comm), peer = me ^ 1;
    if (peer >= n) return 0;
    int i = me % 2 == 0 ? me : peer, j = i + 1;
    return pair_exchange(comm, i, j, 1000, buf, want);
}

/* A collective after all that: the links must still be in step. */
static int collective_after(jaccl_comm_t comm)
{
    int n = jaccl_comm_size(comm);
    int32_t v = jaccl_comm_rank(comm) + 1, sum = 0;
    MP_OK(comm, jaccl_allreduce(&v, &sum, 1, JACCL_INT32, JACCL_SUM, comm));
    MP_CHECK(sum == n * (n + 1) / 2, "allreduce after send/recv gave %d, want %d", (int)sum,
             n * (n + 1) / 2);
    return 0;
}

static int rank_main(jaccl_comm_t comm, void *arg)
{
    const struct sr_test *t = arg;
    MP_CHECK(jaccl_comm_size(comm) == t->np, "size %d", jaccl_comm_size(comm));
    unsigned char *buf = malloc(MAX_SIZE + GUARD), *want = malloc(MAX_SIZE + GUARD);
    int rc = 1;
    if (buf && want)
        rc = all_pairs(comm, buf, want) || concurrent_pairs(comm, buf, want) ||
             collective_after(comm);
    free(buf);
    free(want);
    return rc;
}

static void test_sendrecv(void **state)
{
    const struct sr_test *t = *state;
    double t0 = mp_now();
    assert_int_equal(mp_run(t->np, t->env, rank_main, (void *)t, 240), 0);
    print_message("%s: %.2f s\n", t->name, mp_now() - t0);
}

static const struct sr_test tests[] = {
    {"np2", 2, {NULL}},
    {"np3", 3, {NULL}},
    {"np4", 4, {NULL}},
    {"np2-sockets2", 2, {"JACCL_TCP_SOCKETS=2"}},
    {"np3-sockets2", 3, {"JACCL_TCP_SOCKETS=2"}},
    {"np4-sockets2", 4, {"JACCL_TCP_SOCKETS=2"}},
    {"np3-sockets16-ring", 3, {"JACCL_TCP_SOCKETS=16", "JACCL_ALGO=ring"}},
};

int main(void)
{
    enum { N = sizeof(tests) / sizeof(tests[0]) };
    struct CMUnitTest cases[N];
    for (int i = 0; i < N; i++)
        cases[i] = (struct CMUnitTest){tests[i].name, test_sendrecv, NULL, NULL, (void *)&tests[i]};
    if (getenv("MP_FILTER")) cmocka_set_test_filter(getenv("MP_FILTER"));
    return _cmocka_run_group_tests("mp-sendrecv", cases, N, NULL, NULL);
}
