/*
 * All-reduce across real processes: every dtype x op x algorithm at 2, 3 and
 * 4 ranks, in and out of place.  Each rank can generate every rank's input,
 * so the reference is computed here, independently of the library.  Inputs
 * are chosen so results are exact (integers wrap; floats are small integers,
 * powers of two or min/max); random float inputs, whose sums round, are
 * checked against a tolerance.  Every result is also hashed and compared
 * across ranks, which must hold the same bits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include <cmocka.h>

#include "harness.h"
#include "values.h"

#define GUARD       64
#define MAXR        16
#define COUNT_END   SIZE_MAX
#define SPLIT_CHECK 50000 /* above this many elements each rank checks a slice */

/* Which cases a run covers: the cross product of the masks and counts. */
struct ar_plan {
    unsigned dtypes, ops;
    unsigned places; /* bits: 1 << OUT_OF_PLACE, IN_PLACE, MIXED (below) */
    int mode;        /* EXACT, FUZZ or NANS (below) */
    const size_t *counts;
    size_t misalign; /* byte offset of the buffers from malloc's alignment */
};

struct ar_test {
    const char *name;
    int np;
    const char *env[4];
    const struct ar_plan *plans[4];
};

/*
 * EXACT: inputs whose results are exact.  FUZZ: random floats, results round
 * (checked to a tolerance).  NANS: EXACT with one float in 16 a NaN.
 */
enum { EXACT, FUZZ, NANS };

/* Where the result goes: MIXED is in place on odd ranks only. */
enum { OUT_OF_PLACE, IN_PLACE, MIXED };

/* Inputs of one case: rank r's element i is a function of (seed[r], i). */
struct gen {
    jaccl_dtype_t dt;
    jaccl_op_t op;
    int mode, n, rank, place;
    size_t misalign;
    uint64_t seed[MAXR], tseed;
};

static char case_desc[160];

static const char *describe(const struct gen *g, size_t count)
{
    static const char *const places[] = {"out-of-place", "in-place", "in-place-on-odd-ranks"};
    const char *mode = g->mode == FUZZ ? " random-floats" : g->mode == NANS ? " with-NaNs" : "";
    snprintf(case_desc, sizeof(case_desc), "allreduce %s %s count=%zu %s%s misalign=%zu np=%d",
             mp_dtype_name(g->dt), mp_op_name(g->op), count, places[g->place], mode, g->misalign,
             g->n);
    return case_desc;
}

static uint64_t gen_h(const struct gen *g, int r, size_t i)
{
    return mp_mix(g->seed[r] + i);
}

static uint64_t gen_int(const struct gen *g, int r, size_t i)
{
    uint64_t h = gen_h(g, r, i);
    uint64_t v = (h & 7) == 0 ? (uint64_t)((int64_t)((h >> 8) % 9) - 4) : h >> 3;
    return mp_norm_int(g->dt, v);
}

static double small_int(uint64_t h)
{
    return (double)((int)((h >> 8) % 17) - 8);
}

/* AVG: the last rank makes the sum n * t, so the average t is exact. */
static double gen_avg(const struct gen *g, int r, size_t i)
{
    if (r < g->n - 1) return small_int(gen_h(g, r, i));
    double sum = 0;
    for (int q = 0; q < g->n - 1; q++) sum += small_int(gen_h(g, q, i));
    return g->n * small_int(mp_mix(g->tseed + i)) - sum;
}

static double gen_float(const struct gen *g, int r, size_t i)
{
    static const double pow2[4] = {0.5, 1, 2, 4};
    uint64_t h = gen_h(g, r, i);
    if (g->mode == FUZZ) return mp_rand_float(g->dt, h, g->op == JACCL_PROD ? -1 : -3, 0);
    if (g->mode == NANS && (h >> 40) % 16 == 0) return NAN;
    switch (g->op) {
    case JACCL_SUM:
        return small_int(h);
    case JACCL_PROD:
        return ((h >> 8) & 1 ? -1 : 1) * pow2[(h >> 9) % 4];
    case JACCL_AVG:
        return gen_avg(g, r, i);
    default:
        return mp_rand_float(g->dt, h, -6, 6);
    }
}

static uint64_t int_min_max(const struct gen *g, uint64_t a, uint64_t b)
{
    int less = mp_is_signed(g->dt) ? (int64_t)b < (int64_t)a : b < a;
    if (g->op == JACCL_MIN) return less ? b : a;
    return less ? a : b;
}

static uint64_t ref_int(const struct gen *g, size_t i)
{
    uint64_t acc = gen_int(g, 0, i);
    for (int r = 1; r < g->n; r++) {
        uint64_t x = gen_int(g, r, i);
        if (g->op == JACCL_SUM || g->op == JACCL_AVG)
            acc += x;
        else if (g->op == JACCL_PROD)
            acc *= x;
        else
            acc = int_min_max(g, acc, x);
    }
    acc = mp_norm_int(g->dt, acc);
    if (g->op != JACCL_AVG) return acc;
    if (mp_is_signed(g->dt)) return mp_norm_int(g->dt, (uint64_t)((int64_t)acc / g->n));
    return acc / (uint64_t)g->n;
}

/* The exact result in double; *scale bounds its magnitude for the rounding tolerance. */
static double ref_float(const struct gen *g, size_t i, double *scale)
{
    double acc = gen_float(g, 0, i), mag = fabs(acc);
    for (int r = 1; r < g->n; r++) {
        double x = gen_float(g, r, i);
        mag += fabs(x);
        if (g->op == JACCL_SUM || g->op == JACCL_AVG)
            acc += x;
        else if (g->op == JACCL_PROD)
            acc *= x;
        else if (isnan(x) || isnan(acc))
            acc = NAN; /* min/max with a NaN are NaN */
        else
            acc = (g->op == JACCL_MIN) == (x < acc) ? x : acc;
    }
    if (g->op == JACCL_AVG) {
        acc /= g->n;
        mag /= g->n;
    }
    *scale = g->op == JACCL_PROD ? fabs(acc) : mag;
    return acc;
}

/* Bool: a byte, true when non-zero; SUM and MAX are OR, PROD and MIN are AND. */
static int bool_is_or(jaccl_op_t op)
{
    return op == JACCL_SUM || op == JACCL_MAX;
}

static uint8_t gen_bool(const struct gen *g, int r, size_t i)
{
    uint64_t h = gen_h(g, r, i);
    if ((h >> 8) % (bool_is_or(g->op) ? 2 : 5) == 0) return 0; /* both results are common */
    return (uint8_t)(1 + (h >> 16) % 255);                     /* any non-zero byte is true */
}

static int ref_bool(const struct gen *g, size_t i)
{
    int acc = !bool_is_or(g->op);
    for (int r = 0; r < g->n; r++) {
        int x = gen_bool(g, r, i) != 0;
        acc = bool_is_or(g->op) ? (acc | x) : (acc & x);
    }
    return acc;
}

/* Complex64: small integer parts, so sums, products and averages are exact. */
static void gen_cplx(const struct gen *g, int r, size_t i, double *re, double *im)
{
    uint64_t h = gen_h(g, r, i);
    if (g->op == JACCL_PROD) {
        *re = (double)((int)((h >> 8) % 5) - 2);
        *im = (double)((int)((h >> 16) % 5) - 2);
    } else if (g->op != JACCL_AVG || r < g->n - 1) {
        *re = small_int(h);
        *im = small_int(h >> 16);
    } else { /* AVG, last rank: make both sums multiples of n */
        double a, b, sre = 0, sim = 0;
        for (int q = 0; q < g->n - 1; q++) {
            gen_cplx(g, q, i, &a, &b);
            sre += a;
            sim += b;
        }
        uint64_t t = mp_mix(g->tseed + i);
        *re = g->n * small_int(t) - sre;
        *im = g->n * small_int(t >> 16) - sim;
    }
}

static void ref_cplx(const struct gen *g, size_t i, double *re, double *im)
{
    double a, b, c, d;
    gen_cplx(g, 0, i, &a, &b);
    for (int r = 1; r < g->n; r++) {
        gen_cplx(g, r, i, &c, &d);
        double x = g->op == JACCL_PROD ? a * c - b * d : a + c;
        b = g->op == JACCL_PROD ? a * d + b * c : b + d;
        a = x;
    }
    *re = g->op == JACCL_AVG ? a / g->n : a;
    *im = g->op == JACCL_AVG ? b / g->n : b;
}

static void fill(const struct gen *g, int r, void *buf, size_t count)
{
    double re, im;
    for (size_t i = 0; i < count; i++) {
        if (mp_is_float(g->dt)) {
            mp_store_float(g->dt, buf, i, gen_float(g, r, i));
        } else if (mp_is_complex(g->dt)) {
            gen_cplx(g, r, i, &re, &im);
            mp_store_float(JACCL_FLOAT32, buf, 2 * i, re);
            mp_store_float(JACCL_FLOAT32, buf, 2 * i + 1, im);
        } else {
            mp_store_int(g->dt, buf, i, mp_is_bool(g->dt) ? gen_bool(g, r, i) : gen_int(g, r, i));
        }
    }
}

/*
 * Large results are checked in slices, element i by rank i % n: mp_check_same
 * then proves every rank holds the same bits, so together they check all.
 */
static size_t first_checked(const struct gen *g, size_t count)
{
    return count > SPLIT_CHECK ? (size_t)g->rank : 0;
}

static size_t check_step(const struct gen *g, size_t count)
{
    return count > SPLIT_CHECK ? (size_t)g->n : 1;
}

static int check_float(const struct gen *g, const void *buf, size_t count)
{
    size_t step = check_step(g, count);
    for (size_t i = first_checked(g, count); i < count; i += step) {
        double scale, want = ref_float(g, i, &scale), got = mp_load_float(g->dt, buf, i);
        /* Each of the n - 1 reductions (and the division) rounds once, relative to scale. */
        double tol = g->mode == FUZZ ? 2.0 * (g->n + 1) * mp_eps(g->dt) * scale : 0;
        if (isnan(want) && isnan(got)) continue;
        MP_CHECK(fabs(got - want) <= tol, "%s: element %zu is %.17g, want %.17g (tolerance %g)",
                 describe(g, count), i, got, want, tol);
    }
    return 0;
}

static int check_int(const struct gen *g, const void *buf, size_t count)
{
    size_t step = check_step(g, count);
    for (size_t i = first_checked(g, count); i < count; i += step) {
        uint64_t want = ref_int(g, i), got = mp_load_int(g->dt, buf, i);
        MP_CHECK(got == want, "%s: element %zu is %lld (0x%llx), want %lld (0x%llx)",
                 describe(g, count), i, (long long)got, (unsigned long long)got, (long long)want,
                 (unsigned long long)want);
    }
    return 0;
}

static int check_bool(const struct gen *g, const void *buf, size_t count)
{
    size_t step = check_step(g, count);
    for (size_t i = first_checked(g, count); i < count; i += step) {
        int want = ref_bool(g, i), got = (int)mp_load_int(JACCL_UINT8, buf, i);
        MP_CHECK((got != 0) == want, "%s: element %zu is %d, want %s", describe(g, count), i, got,
                 want ? "true (non-zero)" : "false (0)");
    }
    return 0;
}

static int check_cplx(const struct gen *g, const void *buf, size_t count)
{
    size_t step = check_step(g, count);
    for (size_t i = first_checked(g, count); i < count; i += step) {
        double re, im, gre = mp_load_float(JACCL_FLOAT32, buf, 2 * i),
                       gim = mp_load_float(JACCL_FLOAT32, buf, 2 * i + 1);
        ref_cplx(g, i, &re, &im);
        MP_CHECK(gre == re && gim == im, "%s: element %zu is %g%+gi, want %g%+gi",
                 describe(g, count), i, gre, gim, re, im);
    }
    return 0;
}

static int check_result(const struct gen *g, const void *buf, size_t count)
{
    if (mp_is_float(g->dt)) return check_float(g, buf, count);
    if (mp_is_complex(g->dt)) return check_cplx(g, buf, count);
    if (mp_is_bool(g->dt)) return check_bool(g, buf, count);
    return check_int(g, buf, count);
}

static int guard_intact(const char *p)
{
    for (int i = 0; i < GUARD; i++)
        if ((unsigned char)p[i] != 0xa5) return 0;
    return 1;
}

static int run_case(jaccl_comm_t comm, const struct gen *g, size_t count, char *send, char *recv)
{
    size_t bytes = count * jaccl_dtype_size(g->dt);
    int inplace = g->place == IN_PLACE || (g->place == MIXED && g->rank % 2);
    fill(g, g->rank, send, count);
    memset(send + bytes, 0xa5, GUARD);
    memset(recv + bytes, 0xa5, GUARD);
    if (inplace)
        memcpy(recv, send, bytes);
    else
        memset(recv, 0xee, bytes);
    uint64_t send_hash = mp_fnv(MP_FNV_INIT, send, bytes);
    MP_OK(comm, jaccl_allreduce(inplace ? recv : send, recv, count, g->dt, g->op, comm));
    MP_CHECK(guard_intact(recv + bytes), "%s: wrote past the end of recvbuf", describe(g, count));
    MP_CHECK(inplace || mp_fnv(MP_FNV_INIT, send, bytes) == send_hash, "%s: sendbuf was modified",
             describe(g, count));
    int rc = check_result(g, recv, count);
    return rc ? rc : mp_check_same(comm, recv, bytes, describe(g, count));
}

static int ar_case(jaccl_comm_t comm, const struct gen *g, size_t count)
{
    size_t bytes = count * jaccl_dtype_size(g->dt), off = g->misalign;
    char *send = malloc(bytes + GUARD + 16), *recv = malloc(bytes + GUARD + 16);
    int rc = 1;
    /* A misaligned case offsets the two buffers differently. */
    if (send && recv)
        rc = run_case(comm, g, count, send + off, recv + (off ? off + 2 : 0));
    else
        mp_fail(__FILE__, __LINE__, "malloc", "%zu bytes", bytes + GUARD);
    free(send);
    free(recv);
    if (count == 0 && rc == 0) /* no buffers at all is fine too */
        MP_OK(comm, jaccl_allreduce(NULL, NULL, 0, g->dt, g->op, comm));
    return rc;
}

static void gen_init(struct gen *g, jaccl_comm_t comm, int dt, int op, int mode, uint64_t seed)
{
    g->dt = (jaccl_dtype_t)dt;
    g->op = (jaccl_op_t)op;
    g->mode = mode;
    g->n = jaccl_comm_size(comm);
    g->rank = jaccl_comm_rank(comm);
    for (int r = 0; r < g->n && r < MAXR; r++) g->seed[r] = mp_mix(seed * 131 + (uint64_t)r);
    g->tseed = mp_mix(seed ^ 0x5eed);
}

static unsigned n_cases; /* cases run by this rank, for MP_VERBOSE */

static int run_plan(jaccl_comm_t comm, const struct ar_plan *p, uint64_t *seed)
{
    struct gen g;
    for (int dt = 0; dt < JACCL_DTYPE_COUNT; dt++) {
        if (!(p->dtypes & MP_BIT(dt)) || (p->mode && !mp_is_float((jaccl_dtype_t)dt))) continue;
        for (int op = 0; op < JACCL_OP_COUNT; op++) {
            if (!(p->ops & MP_BIT(op)) || !mp_op_defined((jaccl_dtype_t)dt, (jaccl_op_t)op))
                continue;
            for (const size_t *c = p->counts; *c != COUNT_END; c++)
                for (int place = OUT_OF_PLACE; place <= MIXED; place++) {
                    if (!(p->places & MP_BIT(place))) continue;
                    gen_init(&g, comm, dt, op, p->mode, ++*seed);
                    g.place = place;
                    g.misalign = p->misalign;
                    if (ar_case(comm, &g, *c) != 0) return 1;
                    n_cases++;
                }
        }
    }
    return 0;
}

static int rank_main(jaccl_comm_t comm, void *arg)
{
    const struct ar_test *t = arg;
    uint64_t seed = 1000;
    MP_CHECK(jaccl_comm_size(comm) == t->np, "size %d, want %d", jaccl_comm_size(comm), t->np);
    for (int i = 0; i < 4 && t->plans[i]; i++) {
        double t0 = mp_now();
        if (run_plan(comm, t->plans[i], &seed) != 0) return 1;
        if (getenv("MP_VERBOSE") && jaccl_comm_rank(comm) == 0)
            fprintf(stderr, "  plan %d: %.2f s, %u cases so far\n", i, mp_now() - t0, n_cases);
    }
    return 0;
}

static void test_allreduce(void **state)
{
    const struct ar_test *t = *state;
    double t0 = mp_now();
    assert_int_equal(mp_run(t->np, t->env, rank_main, (void *)t, 240), 0);
    print_message("%s: %.2f s\n", t->name, mp_now() - t0);
}

/* ---- the plans ---- */

static const size_t small_counts[] = {0, 1, 7, 67, 4099, 40009, COUNT_END};
static const size_t fuzz_counts[] = {7, 4099, 40009, COUNT_END};
/* Sanitizer builds are several times slower: they shrink the largest cases 4x. */
static const size_t mid_counts[] = {MP_SANITIZED ? 250007 : 1000003, COUNT_END};
static const size_t variant_counts[] = {1, 7, 4099, 40009, COUNT_END};
/* 64 MiB of float32 (16 MiB under sanitizers) */
static const size_t large_counts[] = {MP_SANITIZED ? 4u << 20 : 16u << 20, COUNT_END};

#define FLOATS MP_FLOATS
#define ONE_PER_SIZE                                                                               \
    (MP_BIT(JACCL_INT8) | MP_BIT(JACCL_BFLOAT16) | MP_BIT(JACCL_FLOAT32) | MP_BIT(JACCL_INT64))

#define OPS(a, b, c) (MP_BIT(JACCL_##a) | MP_BIT(JACCL_##b) | MP_BIT(JACCL_##c))
#define OUT          MP_BIT(OUT_OF_PLACE)
#define BOTH         (MP_BIT(OUT_OF_PLACE) | MP_BIT(IN_PLACE))
#define ALL_PLACES   (BOTH | MP_BIT(MIXED))

/* clang-format off */
static const struct ar_plan full = {MP_DTYPE_ALL, MP_OP_ALL, BOTH, EXACT, small_counts, 0};
static const struct ar_plan fuzz = {FLOATS, OPS(SUM, PROD, AVG), OUT, FUZZ, fuzz_counts, 0};
static const struct ar_plan nans = {FLOATS, OPS(MIN, MAX, SUM), OUT, NANS, fuzz_counts, 0};
static const struct ar_plan mid = {ONE_PER_SIZE, MP_BIT(JACCL_SUM), OUT, EXACT, mid_counts, 0};
static const struct ar_plan mid_all = {MP_DTYPE_ALL, MP_BIT(JACCL_SUM), OUT, EXACT, mid_counts, 0};
static const struct ar_plan variant = {ONE_PER_SIZE, MP_OP_ALL, ALL_PLACES, EXACT, variant_counts, 0};
static const struct ar_plan variant_mid = {ONE_PER_SIZE, MP_BIT(JACCL_SUM), ALL_PLACES, EXACT, mid_counts, 0};
static const struct ar_plan misaligned = {MP_DTYPE_ALL, MP_OP_ALL, ALL_PLACES, EXACT, variant_counts, 1};
static const struct ar_plan large = {MP_BIT(JACCL_FLOAT32), MP_BIT(JACCL_SUM), OUT, EXACT, large_counts, 0};

#define CROSS(NP, ALGO) {"np" #NP "-" ALGO, NP, {"JACCL_ALGO=" ALGO}, {&full, &fuzz, &nans, &mid}}
#define LARGE(NP, ALGO) {"large-np" #NP "-" ALGO, NP, {"JACCL_ALGO=" ALGO}, {&large}}
#define RING            "JACCL_ALGO=ring"
#define MESH            "JACCL_ALGO=mesh"
#define BIDIR           "JACCL_RING_BIDIR=1"

static const struct ar_test tests[] = {
    CROSS(2, "mesh"), CROSS(2, "ring"), CROSS(2, "auto"),
    CROSS(3, "mesh"), CROSS(3, "ring"), CROSS(3, "auto"),
    CROSS(4, "mesh"), CROSS(4, "ring"), CROSS(4, "auto"),
    {"np2-ring-bidir", 2, {RING, BIDIR}, {&variant}},
    {"np3-ring-sockets16", 3, {RING, "JACCL_TCP_SOCKETS=16"}, {&variant}},
    {"np4-mesh-sockets16", 4, {MESH, "JACCL_TCP_SOCKETS=16"}, {&variant_mid}},
    {"np3-mesh-sockets3", 3, {MESH, "JACCL_TCP_SOCKETS=3"}, {&variant, &variant_mid, &mid_all}},
    {"np4-ring-sockets3", 4, {RING, "JACCL_TCP_SOCKETS=3"}, {&variant, &variant_mid}},
    {"np3-ring-bidir", 3, {RING, BIDIR}, {&variant, &variant_mid, &fuzz}},
    {"np4-ring-bidir-sockets3", 4, {RING, BIDIR, "JACCL_TCP_SOCKETS=3"}, {&variant, &variant_mid, &fuzz}},
    {"np3-per-collective", 3, {"JACCL_ALGO=allreduce:ring,allgather:mesh"}, {&variant, &variant_mid, &mid_all}},
    {"np2-unset-algo", 2, {"JACCL_ALGO"}, {&variant, &variant_mid}},
    {"np3-mesh-misaligned", 3, {MESH}, {&misaligned}},
    {"np3-ring-misaligned", 3, {RING, BIDIR}, {&misaligned}},
    LARGE(2, "mesh"), LARGE(2, "ring"),
    LARGE(4, "mesh"), LARGE(4, "ring"),
};
/* clang-format on */

int main(void)
{
    enum { N = sizeof(tests) / sizeof(tests[0]) };
    struct CMUnitTest cases[N];
    for (int i = 0; i < N; i++)
        cases[i] =
            (struct CMUnitTest){tests[i].name, test_allreduce, NULL, NULL, (void *)&tests[i]};
    if (getenv("MP_FILTER")) cmocka_set_test_filter(getenv("MP_FILTER"));
    return _cmocka_run_group_tests("mp-allreduce", cases, N, NULL, NULL);
}
