/*
 * All-gather across real processes: every dtype (the data is opaque bytes,
 * NaN patterns included) at 2, 3 and 4 ranks, mesh, ring and auto, counts
 * from 0 to a 64 MiB result, in place and out of place.  Guards on both
 * sides of recvbuf catch stray writes; every rank checks the whole result
 * and the ranks compare hashes of it.
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

#define GUARD     64
#define COUNT_END SIZE_MAX

/* The cross product of dtypes, counts and places. */
struct ag_plan {
    unsigned dtypes;
    const size_t *counts;
    unsigned places; /* bits: out of place, in place, in place on odd ranks */
};

struct ag_test {
    const char *name;
    int np;
    const char *env[4];
    const struct ag_plan *plans[2];
};

struct ag_case {
    jaccl_dtype_t dt;
    size_t count, bytes; /* per rank */
    int n, rank, place;  /* 0 out of place, 1 in place, 2 in place on odd ranks only */
    int inplace;         /* this rank's choice */
    uint64_t seed;
};

static char case_desc[128];

static const char *describe(const struct ag_case *c)
{
    static const char *const places[] = {"out-of-place", "in-place", "in-place-on-odd-ranks"};
    snprintf(case_desc, sizeof(case_desc), "allgather %s count=%zu %s np=%d", mp_dtype_name(c->dt),
             c->count, places[c->place], c->n);
    return case_desc;
}

/* Rank q's block: random bytes from (seed, q). */
static void fill_block(const struct ag_case *c, int q, unsigned char *p)
{
    uint64_t s = mp_mix(c->seed * 131 + (uint64_t)q), w;
    size_t j = 0;
    for (; j + 8 <= c->bytes; j += 8) {
        w = mp_mix(s + j / 8);
        memcpy(p + j, &w, 8);
    }
    w = mp_mix(s + j / 8);
    memcpy(p + j, &w, c->bytes - j);
}

static int check_block(const struct ag_case *c, int q, const unsigned char *got, unsigned char *tmp)
{
    fill_block(c, q, tmp);
    if (memcmp(got, tmp, c->bytes) == 0) return 0;
    size_t j = 0;
    while (got[j] == tmp[j]) j++;
    mp_fail(__FILE__, __LINE__, "check_block",
            "%s: block of rank %d differs at byte %zu: 0x%02x, want 0x%02x", describe(c), q, j,
            got[j], tmp[j]);
    return 1;
}

static int guards_intact(const unsigned char *base, size_t total)
{
    for (size_t i = 0; i < GUARD; i++)
        if (base[i] != 0xa5 || base[GUARD + total + i] != 0xa5) return 0;
    return 1;
}

static int run_case(jaccl_comm_t comm, const struct ag_case *c, unsigned char *base,
                    unsigned char *send, unsigned char *tmp)
{
    size_t total = c->bytes * (size_t)c->n;
    unsigned char *recv = base + GUARD, *own = recv + (size_t)c->rank * c->bytes;
    memset(base, 0xa5, GUARD);
    memset(recv + total, 0xa5, GUARD);
    memset(recv, 0xee, total);
    fill_block(c, c->rank, c->inplace ? own : send);
    const void *sbuf = c->inplace ? own : send;
    uint64_t send_hash = mp_fnv(MP_FNV_INIT, send, c->inplace ? 0 : c->bytes);
    MP_OK(comm, jaccl_allgather(sbuf, recv, c->count, c->dt, comm));
    MP_CHECK(guards_intact(base, total), "%s: wrote outside recvbuf", describe(c));
    MP_CHECK(mp_fnv(MP_FNV_INIT, send, c->inplace ? 0 : c->bytes) == send_hash,
             "%s: sendbuf was modified", describe(c));
    for (int q = 0; q < c->n; q++)
        if (check_block(c, q, recv + (size_t)q * c->bytes, tmp) != 0) return 1;
    return mp_check_same(comm, recv, total, describe(c));
}

static int ag_case(jaccl_comm_t comm, const struct ag_case *c)
{
    size_t total = c->bytes * (size_t)c->n;
    unsigned char *base = malloc(total + 2 * GUARD), *send = malloc(c->bytes + 1),
                  *tmp = malloc(c->bytes + 1);
    int rc = 1;
    if (base && send && tmp)
        rc = run_case(comm, c, base, send, tmp);
    else
        mp_fail(__FILE__, __LINE__, "malloc", "%zu bytes", total + 2 * GUARD);
    free(base);
    free(send);
    free(tmp);
    if (c->count == 0 && rc == 0) MP_OK(comm, jaccl_allgather(NULL, NULL, 0, c->dt, comm));
    return rc;
}

static int run_plan(jaccl_comm_t comm, const struct ag_plan *p, struct ag_case *c)
{
    for (int dt = 0; dt < JACCL_DTYPE_COUNT; dt++) {
        if (!(p->dtypes & MP_BIT(dt))) continue;
        for (const size_t *n = p->counts; *n != COUNT_END; n++)
            for (c->place = 0; c->place < 3; c->place++) {
                if (!(p->places & MP_BIT(c->place))) continue;
                c->inplace = c->place == 1 || (c->place == 2 && c->rank % 2);
                c->dt = (jaccl_dtype_t)dt;
                c->count = *n;
                c->bytes = *n * jaccl_dtype_size(c->dt);
                c->seed++;
                if (ag_case(comm, c) != 0) return 1;
            }
    }
    return 0;
}

static int rank_main(jaccl_comm_t comm, void *arg)
{
    const struct ag_test *t = arg;
    struct ag_case c = {.n = jaccl_comm_size(comm), .rank = jaccl_comm_rank(comm), .seed = 7};
    MP_CHECK(c.n == t->np, "size %d, want %d", c.n, t->np);
    for (int i = 0; i < 2 && t->plans[i]; i++)
        if (run_plan(comm, t->plans[i], &c) != 0) return 1;
    return 0;
}

static void test_allgather(void **state)
{
    const struct ag_test *t = *state;
    double t0 = mp_now();
    assert_int_equal(mp_run(t->np, t->env, rank_main, (void *)t, 240), 0);
    print_message("%s: %.2f s\n", t->name, mp_now() - t0);
}

/*
 * The library sees a dtype only through its size: every dtype at small
 * counts, one per size at larger ones.
 */
static const size_t small_counts[] = {0, 1, 7, 33, COUNT_END};
static const size_t sized_counts[] = {4099, 40009, 300007, COUNT_END};
static const size_t variant_counts[] = {1, 7, 33, 4099, 40009, 300007, COUNT_END};
/* x 4 ranks x 4 B = 64 MiB (16 MiB under sanitizers, which are much slower) */
static const size_t large_counts[] = {MP_SANITIZED ? 1u << 20 : 4u << 20, COUNT_END};

#define ONE_PER_SIZE                                                                               \
    (MP_BIT(JACCL_UINT8) | MP_BIT(JACCL_FLOAT16) | MP_BIT(JACCL_FLOAT32) | MP_BIT(JACCL_INT64))
#define ALL_PLACES 7u

/* clang-format off */
static const struct ag_plan small = {MP_DTYPE_ALL, small_counts, ALL_PLACES};
static const struct ag_plan sized = {ONE_PER_SIZE, sized_counts, ALL_PLACES};
static const struct ag_plan variant = {ONE_PER_SIZE, variant_counts, ALL_PLACES};
static const struct ag_plan large = {MP_BIT(JACCL_FLOAT32), large_counts, 3u};

#define CROSS(NP, ALGO) {"np" #NP "-" ALGO, NP, {"JACCL_ALGO=" ALGO}, {&small, &sized}}
#define VARIANT(NAME, NP, ...) {NAME, NP, {__VA_ARGS__}, {&variant}}
#define LARGE(NP, ALGO) {"large-np" #NP "-" ALGO, NP, {"JACCL_ALGO=" ALGO}, {&large}}

static const struct ag_test tests[] = {
    CROSS(2, "mesh"), CROSS(2, "ring"), CROSS(2, "auto"),
    CROSS(3, "mesh"), CROSS(3, "ring"), CROSS(3, "auto"),
    CROSS(4, "mesh"), CROSS(4, "ring"), CROSS(4, "auto"),
    VARIANT("np3-ring-bidir-sockets2", 3, "JACCL_ALGO=ring", "JACCL_RING_BIDIR=1",
            "JACCL_TCP_SOCKETS=2"),
    VARIANT("np4-mesh-sockets3", 4, "JACCL_ALGO=mesh", "JACCL_TCP_SOCKETS=3"),
    VARIANT("np3-ring-sockets16", 3, "JACCL_ALGO=ring", "JACCL_TCP_SOCKETS=16"),
    VARIANT("np3-per-collective", 3, "JACCL_ALGO=allgather:ring,allreduce:mesh"),
    LARGE(4, "mesh"), LARGE(4, "ring"),
};
/* clang-format on */

int main(void)
{
    enum { N = sizeof(tests) / sizeof(tests[0]) };
    struct CMUnitTest cases[N];
    for (int i = 0; i < N; i++)
        cases[i] =
            (struct CMUnitTest){tests[i].name, test_allgather, NULL, NULL, (void *)&tests[i]};
    if (getenv("MP_FILTER")) cmocka_set_test_filter(getenv("MP_FILTER"));
    return _cmocka_run_group_tests("mp-allgather", cases, N, NULL, NULL);
}
