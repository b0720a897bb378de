/* Helpers of the API tests: see common.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>

#include <cmocka.h>

#include "common.h"

/* ---- the test table ---- */

static const char *current_test = "?"; /* set in the parent; the children inherit it */
static unsigned n_cases;

void api_count(unsigned n)
{
    n_cases += n;
}

void api_report(jaccl_comm_t comm, const char *what)
{
    if ((comm ? jaccl_comm_rank(comm) : mp_rank()) != 0) return;
    printf("[api] %s%s%s: %u cases\n", current_test, what ? " " : "", what ? what : "", n_cases);
    fflush(stdout);
}

static void run_one(void **state)
{
    const struct api_test *t = *state;
    double t0 = mp_now(), limit = t->timeout_s > 0 ? t->timeout_s : 120;
    current_test = t->name;
    n_cases = 0;
    int rc = t->raw ? mp_run_raw(t->np, t->env, t->raw, (void *)t->arg, limit)
                    : mp_run(t->np, t->env, t->fn, (void *)t->arg, limit);
    print_message("%s: %.2f s\n", t->name, mp_now() - t0);
    assert_int_equal(rc, 0);
}

int api_main(const char *group, const struct api_test *tests, int n)
{
    struct CMUnitTest *cases = calloc((size_t)n, sizeof(*cases));
    if (!cases) return 1;
    for (int i = 0; i < n; i++)
        cases[i] = (struct CMUnitTest){tests[i].name, run_one, NULL, NULL, (void *)&tests[i]};
    if (getenv("MP_FILTER")) cmocka_set_test_filter(getenv("MP_FILTER"));
    int rc = _cmocka_run_group_tests(group, cases, (size_t)n, NULL, NULL);
    free(cases);
    return rc;
}

/* ---- inputs ---- */

static const char *const op_names[JACCL_OP_COUNT] = {"sum", "prod", "min", "max", "avg"};

const char *api_gen_name(const struct api_gen *g)
{
    static char buf[64];
    snprintf(buf, sizeof(buf), "%s %s%s", mp_dtype_name(g->dt),
             (unsigned)g->op < JACCL_OP_COUNT ? op_names[g->op] : "?",
             g->mode == API_FUZZ ? " (random floats)" : "");
    return buf;
}

void api_gen_init(struct api_gen *g, jaccl_dtype_t dt, jaccl_op_t op, int n, int mode,
                  uint64_t seed)
{
    g->dt = dt;
    g->op = op;
    g->n = n;
    g->mode = mode;
    for (int r = 0; r < API_MAXR; r++) g->seed[r] = mp_mix(seed * 977 + (uint64_t)r);
    g->tseed = mp_mix(seed ^ 0x7e57);
}

static uint64_t gen_h(const struct api_gen *g, int r, size_t i)
{
    return mp_mix(g->seed[r] + i);
}

/* Mostly random bits, one in eight a small signed value (so products are not all 0). */
static uint64_t gen_int(const struct api_gen *g, int r, size_t i)
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
static double gen_avg(const struct api_gen *g, int r, size_t i)
{
    if (r < g->n - 1) return small_int(gen_h(g, r, i));
    double sum = 0;
    for (int q = 0; q < g->n - 1; q++) sum += small_int(gen_h(g, q, i));
    return g->n * small_int(mp_mix(g->tseed + i)) - sum;
}

static double gen_float(const struct api_gen *g, int r, size_t i)
{
    static const double pow2[4] = {0.5, 1, 2, 4};
    uint64_t h = gen_h(g, r, i);
    if (g->mode == API_FUZZ) return mp_rand_float(g->dt, h, g->op == JACCL_PROD ? -1 : -3, 0);
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

static int bool_is_or(jaccl_op_t op)
{
    return op == JACCL_SUM || op == JACCL_MAX;
}

/* Any non-zero byte is true; both results common for either kind of op. */
static uint8_t gen_bool(const struct api_gen *g, int r, size_t i)
{
    uint64_t h = gen_h(g, r, i);
    if ((h >> 8) % (bool_is_or(g->op) ? 2 : 5) == 0) return 0;
    return (uint8_t)(1 + (h >> 16) % 255);
}

/* Complex: small integer parts (exact), or random float32 parts (FUZZ). */
static void gen_cplx(const struct api_gen *g, int r, size_t i, double *re, double *im)
{
    uint64_t h = gen_h(g, r, i);
    if (g->mode == API_FUZZ) {
        *re = mp_rand_float(JACCL_FLOAT32, h, -3, 0);
        *im = mp_rand_float(JACCL_FLOAT32, mp_mix(h), -3, 0);
    } else if (g->op == JACCL_PROD) {
        *re = (double)((int)((h >> 8) % 5) - 2);
        *im = (double)((int)((h >> 16) % 5) - 2);
    } else if (g->op != JACCL_AVG || r < g->n - 1) {
        *re = small_int(h);
        *im = small_int(h >> 16);
    } else { /* AVG, last rank: both sums are multiples of n */
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

void api_gen_fill(const struct api_gen *g, int r, void *buf, size_t first, size_t count)
{
    double re, im;
    for (size_t k = 0; k < count; k++) {
        size_t i = first + k;
        if (mp_is_float(g->dt)) {
            mp_store_float(g->dt, buf, k, gen_float(g, r, i));
        } else if (mp_is_complex(g->dt)) {
            gen_cplx(g, r, i, &re, &im);
            mp_store_float(JACCL_FLOAT32, buf, 2 * k, re);
            mp_store_float(JACCL_FLOAT32, buf, 2 * k + 1, im);
        } else if (mp_is_bool(g->dt)) {
            mp_store_int(g->dt, buf, k, gen_bool(g, r, i));
        } else {
            mp_store_int(g->dt, buf, k, gen_int(g, r, i));
        }
    }
}

/* ---- the reference ---- */

static uint64_t ref_int(const struct api_gen *g, size_t i)
{
    uint64_t acc = gen_int(g, 0, i);
    for (int r = 1; r < g->n; r++) {
        uint64_t x = gen_int(g, r, i);
        int less = mp_is_signed(g->dt) ? (int64_t)x < (int64_t)acc : x < acc;
        if (g->op == JACCL_SUM || g->op == JACCL_AVG)
            acc += x;
        else if (g->op == JACCL_PROD)
            acc *= x;
        else if ((g->op == JACCL_MIN) == less)
            acc = x;
    }
    acc = mp_norm_int(g->dt, acc); /* the sum wraps, then AVG truncates toward zero */
    if (g->op != JACCL_AVG) return acc;
    if (mp_is_signed(g->dt)) return mp_norm_int(g->dt, (uint64_t)((int64_t)acc / g->n));
    return acc / (uint64_t)g->n;
}

static double ref_float(const struct api_gen *g, size_t i, double *tol)
{
    double acc = gen_float(g, 0, i), mag = fabs(acc);
    for (int r = 1; r < g->n; r++) {
        double x = gen_float(g, r, i);
        mag += fabs(x);
        if (g->op == JACCL_SUM || g->op == JACCL_AVG)
            acc += x;
        else if (g->op == JACCL_PROD)
            acc *= x;
        else if ((g->op == JACCL_MIN) == (x < acc))
            acc = x;
    }
    if (g->op == JACCL_AVG) {
        acc /= g->n;
        mag /= g->n;
    }
    double scale = g->op == JACCL_PROD ? fabs(acc) : mag;
    *tol = g->mode == API_FUZZ ? 2.0 * (g->n + 1) * mp_eps(g->dt) * scale : 0;
    return acc;
}

static int ref_bool(const struct api_gen *g, size_t i)
{
    int acc = !bool_is_or(g->op);
    for (int r = 0; r < g->n; r++) {
        int x = gen_bool(g, r, i) != 0;
        acc = bool_is_or(g->op) ? (acc | x) : (acc & x);
    }
    return acc;
}

static void ref_cplx(const struct api_gen *g, size_t i, double *re, double *im, double *tol)
{
    double a, b, c, d, mag;
    gen_cplx(g, 0, i, &a, &b);
    mag = fabs(a) + fabs(b);
    double msum = mag;
    for (int r = 1; r < g->n; r++) {
        gen_cplx(g, r, i, &c, &d);
        double x = g->op == JACCL_PROD ? a * c - b * d : a + c;
        b = g->op == JACCL_PROD ? a * d + b * c : b + d;
        a = x;
        mag *= fabs(c) + fabs(d);
        msum += fabs(c) + fabs(d);
    }
    *re = g->op == JACCL_AVG ? a / g->n : a;
    *im = g->op == JACCL_AVG ? b / g->n : b;
    double eps = ldexp(1.0, -24);
    *tol = 0;
    if (g->mode == API_FUZZ)
        *tol = g->op == JACCL_PROD ? 8.0 * (g->n + 1) * eps * mag : 2.0 * (g->n + 2) * eps * msum;
}

int api_gen_check(const struct api_gen *g, const void *buf, size_t first, size_t count,
                  size_t start, size_t step, const char *what)
{
    for (size_t k = start; k < count; k += step) {
        size_t i = first + k;
        if (mp_is_float(g->dt)) {
            double tol, want = ref_float(g, i, &tol), got = mp_load_float(g->dt, buf, k);
            MP_CHECK(fabs(got - want) <= tol,
                     "%s %s: element %zu (global %zu) is %.17g, want %.17g (tolerance %g)", what,
                     api_gen_name(g), k, i, got, want, tol);
        } else if (mp_is_complex(g->dt)) {
            double re, im, tol, gre = mp_load_float(JACCL_FLOAT32, buf, 2 * k),
                                gim = mp_load_float(JACCL_FLOAT32, buf, 2 * k + 1);
            ref_cplx(g, i, &re, &im, &tol);
            MP_CHECK(fabs(gre - re) <= tol && fabs(gim - im) <= tol,
                     "%s %s: element %zu (global %zu) is %.9g%+.9gi, want %.9g%+.9gi "
                     "(tolerance %g)",
                     what, api_gen_name(g), k, i, gre, gim, re, im, tol);
        } else if (mp_is_bool(g->dt)) {
            int want = ref_bool(g, i), got = (int)mp_load_int(JACCL_UINT8, buf, k);
            MP_CHECK((got != 0) == want, "%s %s: element %zu (global %zu) is %d, want %s", what,
                     api_gen_name(g), k, i, got, want ? "true (non-zero)" : "false (0)");
        } else {
            uint64_t want = ref_int(g, i), got = mp_load_int(g->dt, buf, k);
            MP_CHECK(got == want,
                     "%s %s: element %zu (global %zu) is %lld (0x%llx), want %lld (0x%llx)", what,
                     api_gen_name(g), k, i, (long long)got, (unsigned long long)got,
                     (long long)want, (unsigned long long)want);
        }
    }
    return 0;
}

/* ---- bytes ---- */

void api_fill_bytes(void *p, size_t len, uint64_t seed)
{
    unsigned char *b = p;
    uint64_t s = mp_mix(seed), w;
    size_t j = 0;
    for (; j + 8 <= len; j += 8) {
        w = mp_mix(s + j / 8);
        memcpy(b + j, &w, 8);
    }
    if (j < len) {
        w = mp_mix(s + j / 8);
        memcpy(b + j, &w, len - j);
    }
}

int api_check_bytes(const void *p, size_t len, uint64_t seed, const char *what)
{
    const unsigned char *b = p;
    uint64_t s = mp_mix(seed), w;
    for (size_t j = 0; j < len; j += 8) {
        size_t m = len - j < 8 ? len - j : 8;
        w = mp_mix(s + j / 8);
        if (memcmp(b + j, &w, m) == 0) continue;
        unsigned char want[8];
        memcpy(want, &w, 8);
        size_t k = 0;
        while (b[j + k] == want[k]) k++;
        MP_CHECK(0, "%s: byte %zu of %zu is 0x%02x, want 0x%02x", what, j + k, len, b[j + k],
                 want[k]);
    }
    return 0;
}

void api_guard_set(void *p)
{
    memset(p, 0xa5, API_GUARD);
}

int api_guard_ok(const void *p)
{
    const unsigned char *b = p;
    for (int i = 0; i < API_GUARD; i++)
        if (b[i] != 0xa5) return 0;
    return 1;
}

void api_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}
