/*
 * Unit tests for the reduction kernels (src/util/reduce.c): every dtype x op
 * against a plain reference, aliasing, vector tails, integer wrapping, AVG
 * scaling, half precision conversions against an independent reference, bool
 * and complex64 semantics, and the SIMD kernels against the portable ones bit
 * for bit.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/reduce.h"

/* Test-only hook defined in reduce.c: nonzero forces the portable kernels. */
void jaccl_reduce_force_portable(int on);

static const jaccl_dtype_t all_dtypes[] = {
    JACCL_INT8,   JACCL_UINT8,   JACCL_INT32,    JACCL_UINT32,    JACCL_INT64,
    JACCL_UINT64, JACCL_FLOAT16, JACCL_BFLOAT16, JACCL_FLOAT32,   JACCL_FLOAT64,
    JACCL_BOOL,   JACCL_INT16,   JACCL_UINT16,   JACCL_COMPLEX64,
};
static const jaccl_op_t all_ops[] = {JACCL_SUM, JACCL_PROD, JACCL_MIN, JACCL_MAX, JACCL_AVG};
#define N_DTYPES (sizeof all_dtypes / sizeof all_dtypes[0])
#define N_OPS    (sizeof all_ops / sizeof all_ops[0])

static size_t esize(jaccl_dtype_t dt)
{
    static const size_t sz[JACCL_DTYPE_COUNT] = {1, 1, 4, 4, 8, 8, 2, 2, 4, 8, 1, 2, 2, 8};
    return sz[dt];
}

/* Bool has no AVG, complex64 no MIN or MAX: jaccl_reduce_get gives NULL for them. */
static int op_defined(jaccl_dtype_t dt, jaccl_op_t op)
{
    if (dt == JACCL_BOOL) return op != JACCL_AVG;
    if (dt == JACCL_COMPLEX64) return op != JACCL_MIN && op != JACCL_MAX;
    return 1;
}

/* ---- helpers ------------------------------------------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

/* splitmix64: deterministic, so a failure reproduces. */
static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bitsf(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint64_t dbits(double f)
{
    uint64_t u;
    memcpy(&u, &f, 8);
    return u;
}

static double bitsd(uint64_t u)
{
    double f;
    memcpy(&f, &u, 8);
    return f;
}

static int f16_is_nan(uint16_t h)
{
    return (h & 0x7c00) == 0x7c00 && (h & 0x03ff) != 0;
}
static int bf16_is_nan(uint16_t h)
{
    return (h & 0x7f80) == 0x7f80 && (h & 0x007f) != 0;
}

/* Little-endian element bits of size sz, with constant-size copies the compiler inlines. */
static uint64_t get_bits(const void *p, size_t sz)
{
    uint8_t v1;
    uint16_t v2;
    uint32_t v4;
    uint64_t v8;
    switch (sz) {
    case 1:
        return memcpy(&v1, p, 1), v1;
    case 2:
        return memcpy(&v2, p, 2), v2;
    case 4:
        return memcpy(&v4, p, 4), v4;
    default:
        return memcpy(&v8, p, 8), v8;
    }
}

static void put_bits(void *p, uint64_t v, size_t sz)
{
    uint8_t v1 = (uint8_t)v;
    uint16_t v2 = (uint16_t)v;
    uint32_t v4 = (uint32_t)v;
    switch (sz) {
    case 1:
        memcpy(p, &v1, 1);
        break;
    case 2:
        memcpy(p, &v2, 2);
        break;
    case 4:
        memcpy(p, &v4, 4);
        break;
    default:
        memcpy(p, &v, 8);
        break;
    }
}

/*
 * Bits of a float32 (or float64): mostly ordinary numbers with exponents in
 * [-20, 20], and now and then NaN (quiet or signalling), inf, zero, a
 * subnormal or something huge.  Signs and mantissas are random.
 */
static uint64_t rnd_float_bits(int is_f32)
{
    uint64_t r = rnd(), r2 = rnd();
    int mbits = is_f32 ? 23 : 52;
    uint64_t emax = is_f32 ? 0xff : 0x7ff, bias = emax / 2;
    uint64_t sign = (r >> 63) << (is_f32 ? 31 : 63), mant = r & ((1ull << mbits) - 1), exp;
    switch (r2 % 32) {
    case 0:
        exp = emax, mant |= 1;
        break; /* NaN */
    case 1:
        exp = emax, mant = 0;
        break; /* inf */
    case 2:
        exp = 0, mant = 0;
        break; /* zero */
    case 3:
        exp = 0;
        break; /* subnormal */
    case 4:
        exp = emax - 1 - (r2 >> 32) % 4;
        break;
    default:
        exp = bias - 20 + (r2 >> 32) % 41;
        break;
    }
    return sign | exp << mbits | mant;
}

/*
 * A bool byte: false half the time, else any nonzero byte (0x01 and 0x80
 * more often than the rest).
 */
static uint64_t rnd_bool(void)
{
    uint64_t r = rnd();
    switch (r % 8) {
    case 0:
    case 1:
    case 2:
    case 3:
        return 0;
    case 4:
        return 0x01;
    case 5:
        return 0x80;
    default:
        return 1 + (r >> 8) % 255;
    }
}

static void fill_random(jaccl_dtype_t dt, void *buf, size_t n)
{
    unsigned char *p = buf;
    size_t sz = esize(dt);
    for (size_t i = 0; i < n; i++) {
        /* Every bit pattern for ints and halves; floats weighted as above. */
        uint64_t r = dt == JACCL_FLOAT32     ? rnd_float_bits(1)
                     : dt == JACCL_FLOAT64   ? rnd_float_bits(0)
                     : dt == JACCL_BOOL      ? rnd_bool()
                     : dt == JACCL_COMPLEX64 ? rnd_float_bits(1) | rnd_float_bits(1) << 32
                                             : rnd();
        put_bits(p + i * sz, r, sz);
    }
}

/* ---- reference ---------------------------------------------------------- */

/* The documented NaN rule: a if a is NaN, else b if b is NaN. */
static float ref_minmax_f(float a, float b, int is_max)
{
    if (isnan(a)) return a;
    if (isnan(b)) return b;
    return (is_max ? a > b : a < b) ? a : b;
}

static double ref_minmax_d(double a, double b, int is_max)
{
    if (isnan(a)) return a;
    if (isnan(b)) return b;
    return (is_max ? a > b : a < b) ? a : b;
}

static float ref_f32(jaccl_op_t op, float a, float b)
{
    switch (op) {
    case JACCL_PROD:
        return a * b;
    case JACCL_MIN:
        return ref_minmax_f(a, b, 0);
    case JACCL_MAX:
        return ref_minmax_f(a, b, 1);
    default:
        return a + b;
    }
}

static double ref_f64(jaccl_op_t op, double a, double b)
{
    switch (op) {
    case JACCL_PROD:
        return a * b;
    case JACCL_MIN:
        return ref_minmax_d(a, b, 0);
    case JACCL_MAX:
        return ref_minmax_d(a, b, 1);
    default:
        return a + b;
    }
}

/* Integers: exact result reduced mod 2^bits (two's complement), by hand. */
static uint64_t ref_int(jaccl_op_t op, uint64_t a, uint64_t b, int bits, int is_signed)
{
    uint64_t mask = bits == 64 ? ~0ull : (1ull << bits) - 1;
    uint64_t sbit = 1ull << (bits - 1);
    /* Sign-extend to compare; unsigned arithmetic already wraps mod 2^64. */
    int64_t sa = (int64_t)(is_signed && (a & sbit) ? a | ~mask : a);
    int64_t sb = (int64_t)(is_signed && (b & sbit) ? b | ~mask : b);
    int a_lt_b = is_signed ? sa < sb : a < b;
    switch (op) {
    case JACCL_PROD:
        return (a * b) & mask;
    case JACCL_MIN:
        return a_lt_b ? a : b;
    case JACCL_MAX:
        return a_lt_b ? b : a;
    default:
        return (a + b) & mask;
    }
}

/* Bool: nonzero is true; SUM and MAX are OR, PROD and MIN AND; the result is 0 or 1. */
static uint64_t ref_bool(jaccl_op_t op, uint64_t a, uint64_t b)
{
    int x = (a & 0xff) != 0, y = (b & 0xff) != 0;
    return op == JACCL_PROD || op == JACCL_MIN ? (x && y) : (x || y);
}

/*
 * Complex64 (low 32 bits real, high imaginary): the sum per component, the
 * product (ac - bd) + (ad + bc)i with each product and each sum rounded to
 * float32.  Each product of two floats is exact in double, so converting it
 * to float is the float32 product, fused or not: this reference does not
 * depend on how the compiler treats a * b - c * d.
 */
static uint64_t ref_c64(jaccl_op_t op, uint64_t x, uint64_t y)
{
    float a = bitsf((uint32_t)x), b = bitsf((uint32_t)(x >> 32));
    float c = bitsf((uint32_t)y), d = bitsf((uint32_t)(y >> 32));
    float re, im;
    if (op == JACCL_PROD) {
        float ac = (float)((double)a * c), bd = (float)((double)b * d);
        float ad = (float)((double)a * d), bc = (float)((double)b * c);
        re = ac - bd;
        im = ad + bc;
    } else {
        re = a + c;
        im = b + d;
    }
    return (uint64_t)fbits(im) << 32 | fbits(re);
}

/*
 * a op b for one element of dt, as bits.  Sets *nan_any when the result is a
 * NaN whose payload the kernel may choose (float32/64 sum or product; for
 * complex64, a component that is NaN).
 */
static uint64_t ref_elem(jaccl_dtype_t dt, jaccl_op_t op, uint64_t a, uint64_t b, int *nan_any)
{
    int arith = op != JACCL_MIN && op != JACCL_MAX;
    float fr;
    double dr;
    *nan_any = 0;
    switch (dt) {
    case JACCL_FLOAT16:
        fr = ref_f32(op, jaccl_f16_to_f32((uint16_t)a), jaccl_f16_to_f32((uint16_t)b));
        /* Half sums and products give the canonical NaN; min/max the operand's. */
        return isnan(fr) && arith ? 0x7e00 : jaccl_f32_to_f16(fr);
    case JACCL_BFLOAT16:
        fr = ref_f32(op, jaccl_bf16_to_f32((uint16_t)a), jaccl_bf16_to_f32((uint16_t)b));
        return isnan(fr) && arith ? 0x7fc0 : jaccl_f32_to_bf16(fr);
    case JACCL_FLOAT32:
        fr = ref_f32(op, bitsf((uint32_t)a), bitsf((uint32_t)b));
        *nan_any = isnan(fr) && arith;
        return fbits(fr);
    case JACCL_FLOAT64:
        dr = ref_f64(op, bitsd(a), bitsd(b));
        *nan_any = isnan(dr) && arith;
        return dbits(dr);
    case JACCL_BOOL:
        return ref_bool(op, a, b);
    case JACCL_COMPLEX64:
        *nan_any = 1; /* elem_ok looks at each component */
        return ref_c64(op, a, b);
    default: {
        int is_signed =
            dt == JACCL_INT8 || dt == JACCL_INT16 || dt == JACCL_INT32 || dt == JACCL_INT64;
        return ref_int(op, a, b, (int)esize(dt) * 8, is_signed);
    }
    }
}

static int elem_is_nan(jaccl_dtype_t dt, uint64_t v)
{
    switch (dt) {
    case JACCL_FLOAT16:
        return f16_is_nan((uint16_t)v);
    case JACCL_BFLOAT16:
        return bf16_is_nan((uint16_t)v);
    case JACCL_FLOAT32:
        return isnan(bitsf((uint32_t)v)) != 0;
    case JACCL_FLOAT64:
        return isnan(bitsd(v)) != 0;
    default:
        return 0;
    }
}

/*
 * got is right for want: the same bits, or both NaN where nan_any lets the
 * payload vary.  Complex64 compares each component on its own.
 */
static int elem_ok(jaccl_dtype_t dt, uint64_t got, uint64_t want, int nan_any)
{
    if (got == want) return 1;
    if (!nan_any) return 0;
    if (dt != JACCL_COMPLEX64) return elem_is_nan(dt, got) && elem_is_nan(dt, want);
    for (int h = 0; h < 64; h += 32) {
        uint32_t g = (uint32_t)(got >> h), w = (uint32_t)(want >> h);
        if (g != w && !(isnan(bitsf(g)) && isnan(bitsf(w)))) return 0;
    }
    return 1;
}

/* ---- kernels against the reference -------------------------------------- */

enum alias { DISTINCT, DST_IS_A, DST_IS_B, ALL_SAME };

/* Buffers for check_kernel, made once for the longest run. */
#define MAX_N 1000003
static struct {
    unsigned char *a, *b, *d, *nan_ok;
    uint64_t *want;
} pool;

static int pool_setup(void **state)
{
    (void)state;
    size_t bytes = MAX_N * 8 + 16;
    pool.a = malloc(bytes), pool.b = malloc(bytes), pool.d = malloc(bytes);
    pool.nan_ok = malloc(MAX_N), pool.want = malloc(MAX_N * sizeof(uint64_t));
    return pool.a && pool.b && pool.d && pool.nan_ok && pool.want ? 0 : -1;
}

static int pool_teardown(void **state)
{
    (void)state;
    free(pool.a), free(pool.b), free(pool.d), free(pool.nan_ok), free(pool.want);
    return 0;
}

/*
 * Run dtype x op on n random elements with the given aliasing, at byte offset
 * off from malloc's alignment, and compare each element with the reference.
 */
static void check_kernel(jaccl_dtype_t dt, jaccl_op_t op, size_t n, enum alias al, size_t off)
{
    size_t sz = esize(dt);
    unsigned char *a = pool.a + off, *b = pool.b + off, *d = pool.d + off;
    assert_true(n <= MAX_N);
    fill_random(dt, a, n);
    fill_random(dt, b, n);
    fill_random(dt, d, n);
    if (al == ALL_SAME) b = a;
    for (size_t i = 0; i < n; i++) {
        int any;
        pool.want[i] = ref_elem(dt, op, get_bits(a + i * sz, sz), get_bits(b + i * sz, sz), &any);
        pool.nan_ok[i] = (unsigned char)any;
    }
    if (al == DST_IS_A || al == ALL_SAME) d = a;
    if (al == DST_IS_B) d = b;
    jaccl_reduce_fn fn = jaccl_reduce_get(dt, op);
    assert_non_null(fn);
    fn(d, a, b, n);
    for (size_t i = 0; i < n; i++) {
        uint64_t got = get_bits(d + i * sz, sz);
        if (elem_ok(dt, got, pool.want[i], pool.nan_ok[i])) continue;
        fail_msg("dtype %d op %d n %zu alias %d off %zu: element %zu is 0x%llx, want 0x%llx", dt,
                 op, n, al, off, i, (unsigned long long)got, (unsigned long long)pool.want[i]);
    }
}

static void test_get(void **state)
{
    (void)state;
    assert_null(jaccl_reduce_get(JACCL_DTYPE_COUNT, JACCL_SUM));
    assert_null(jaccl_reduce_get((jaccl_dtype_t)-1, JACCL_SUM));
    assert_null(jaccl_reduce_get(JACCL_FLOAT32, JACCL_OP_COUNT));
    assert_null(jaccl_reduce_get(JACCL_FLOAT32, (jaccl_op_t)-1));
    for (int portable = 0; portable < 2; portable++) {
        jaccl_reduce_force_portable(portable);
        for (size_t t = 0; t < N_DTYPES; t++) {
            jaccl_dtype_t dt = all_dtypes[t];
            for (size_t o = 0; o < N_OPS; o++) {
                if (op_defined(dt, all_ops[o]))
                    assert_non_null(jaccl_reduce_get(dt, all_ops[o]));
                else
                    assert_null(jaccl_reduce_get(dt, all_ops[o]));
            }
            if (op_defined(dt, JACCL_AVG))
                assert_ptr_equal(jaccl_reduce_get(dt, JACCL_AVG), jaccl_reduce_get(dt, JACCL_SUM));
        }
        assert_null(jaccl_reduce_get(JACCL_BOOL, JACCL_AVG));
        assert_null(jaccl_reduce_get(JACCL_COMPLEX64, JACCL_MIN));
        assert_null(jaccl_reduce_get(JACCL_COMPLEX64, JACCL_MAX));
        /* Bool's four ops are two kernels. */
        assert_ptr_equal(jaccl_reduce_get(JACCL_BOOL, JACCL_SUM),
                         jaccl_reduce_get(JACCL_BOOL, JACCL_MAX));
        assert_ptr_equal(jaccl_reduce_get(JACCL_BOOL, JACCL_PROD),
                         jaccl_reduce_get(JACCL_BOOL, JACCL_MIN));
    }
    jaccl_reduce_force_portable(0);

    /* Where the CPU has AVX2 + F16C, every defined dtype x op has a SIMD kernel. */
    jaccl_reduce_force_portable(1);
    jaccl_reduce_fn portable_f16 = jaccl_reduce_get(JACCL_FLOAT16, JACCL_SUM);
    jaccl_reduce_force_portable(0);
    if (jaccl_reduce_get(JACCL_FLOAT16, JACCL_SUM) != portable_f16) {
        for (size_t t = 0; t < N_DTYPES; t++)
            for (size_t o = 0; o < N_OPS; o++) {
                jaccl_dtype_t dt = all_dtypes[t];
                if (!op_defined(dt, all_ops[o])) continue;
                jaccl_reduce_fn simd = jaccl_reduce_get(dt, all_ops[o]);
                jaccl_reduce_force_portable(1);
                jaccl_reduce_fn portable = jaccl_reduce_get(dt, all_ops[o]);
                jaccl_reduce_force_portable(0);
                if (simd == portable) fail_msg("dtype %d op %d: no SIMD kernel", dt, all_ops[o]);
            }
    }

    /* Scaling bool does nothing (the core never asks: bool has no AVG). */
    uint8_t b[3] = {0x80, 0x01, 0x00};
    jaccl_reduce_scale(b, 3, JACCL_BOOL, 2);
    assert_int_equal(b[0], 0x80);
    assert_int_equal(b[1], 0x01);
    assert_int_equal(b[2], 0x00);
}

/* Short and odd lengths cover the vector loops' tails; offset 1 misaligns elements. */
static void test_kernels_short(void **state)
{
    (void)state;
    static const size_t lens[] = {0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 65, 1000};
    for (int portable = 0; portable < 2; portable++) {
        jaccl_reduce_force_portable(portable);
        for (size_t t = 0; t < N_DTYPES; t++)
            for (size_t o = 0; o < N_OPS; o++) {
                if (!op_defined(all_dtypes[t], all_ops[o])) continue;
                for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++)
                    for (int al = DISTINCT; al <= ALL_SAME; al++)
                        for (size_t off = 0; off < 2; off++)
                            check_kernel(all_dtypes[t], all_ops[o], lens[l], (enum alias)al, off);
            }
    }
    jaccl_reduce_force_portable(0);
}

/* Long enough for many blocks, with the SIMD kernels (where the CPU has
 * them) and the portable ones. */
static void test_kernels_long(void **state)
{
    (void)state;
    for (int portable = 0; portable < 2; portable++) {
        jaccl_reduce_force_portable(portable);
        for (size_t t = 0; t < N_DTYPES; t++)
            for (size_t o = 0; o < N_OPS - 1; o++) {
                if (!op_defined(all_dtypes[t], all_ops[o])) continue;
                check_kernel(all_dtypes[t], all_ops[o], 1000003, DISTINCT, 0);
                check_kernel(all_dtypes[t], all_ops[o], 1000003, DST_IS_A, 0);
            }
    }
    jaccl_reduce_force_portable(0);
}

/* ---- integer wrapping at the limits ------------------------------------ */

static void run1(jaccl_dtype_t dt, jaccl_op_t op, const void *a, const void *b, void *d)
{
    jaccl_reduce_get(dt, op)(d, a, b, 1);
}

static void test_int_wrap(void **state)
{
    (void)state;
    int8_t a8, b8, r8;
    a8 = INT8_MAX, b8 = 1;
    run1(JACCL_INT8, JACCL_SUM, &a8, &b8, &r8);
    assert_int_equal(r8, INT8_MIN);
    a8 = INT8_MIN, b8 = -1;
    run1(JACCL_INT8, JACCL_SUM, &a8, &b8, &r8);
    assert_int_equal(r8, INT8_MAX);
    a8 = INT8_MAX, b8 = 2;
    run1(JACCL_INT8, JACCL_PROD, &a8, &b8, &r8);
    assert_int_equal(r8, -2);
    a8 = INT8_MIN, b8 = -1;
    run1(JACCL_INT8, JACCL_PROD, &a8, &b8, &r8);
    assert_int_equal(r8, INT8_MIN);

    uint8_t u8a = UINT8_MAX, u8b = UINT8_MAX, u8r;
    run1(JACCL_UINT8, JACCL_PROD, &u8a, &u8b, &u8r);
    assert_int_equal(u8r, 1);
    run1(JACCL_UINT8, JACCL_SUM, &u8a, &u8b, &u8r);
    assert_int_equal(u8r, 254);

    int32_t a32, b32, r32;
    a32 = INT32_MAX, b32 = 1;
    run1(JACCL_INT32, JACCL_SUM, &a32, &b32, &r32);
    assert_int_equal(r32, INT32_MIN);
    a32 = INT32_MIN, b32 = INT32_MIN;
    run1(JACCL_INT32, JACCL_SUM, &a32, &b32, &r32);
    assert_int_equal(r32, 0);
    a32 = INT32_MIN, b32 = -1;
    run1(JACCL_INT32, JACCL_PROD, &a32, &b32, &r32);
    assert_int_equal(r32, INT32_MIN);
    a32 = 0x10000, b32 = 0x10000;
    run1(JACCL_INT32, JACCL_PROD, &a32, &b32, &r32);
    assert_int_equal(r32, 0);
    a32 = INT32_MAX, b32 = INT32_MAX;
    run1(JACCL_INT32, JACCL_PROD, &a32, &b32, &r32);
    assert_int_equal(r32, 1);

    uint32_t u32a = UINT32_MAX, u32b = 1, u32r;
    run1(JACCL_UINT32, JACCL_SUM, &u32a, &u32b, &u32r);
    assert_int_equal(u32r, 0);

    int64_t a64, b64, r64;
    a64 = INT64_MAX, b64 = 1;
    run1(JACCL_INT64, JACCL_SUM, &a64, &b64, &r64);
    assert_true(r64 == INT64_MIN);
    a64 = INT64_MIN, b64 = -1;
    run1(JACCL_INT64, JACCL_PROD, &a64, &b64, &r64);
    assert_true(r64 == INT64_MIN);
    a64 = INT64_MAX, b64 = INT64_MAX;
    run1(JACCL_INT64, JACCL_PROD, &a64, &b64, &r64);
    assert_true(r64 == 1);
    a64 = INT64_MIN, b64 = INT64_MAX;
    run1(JACCL_INT64, JACCL_MIN, &a64, &b64, &r64);
    assert_true(r64 == INT64_MIN);
    run1(JACCL_INT64, JACCL_MAX, &a64, &b64, &r64);
    assert_true(r64 == INT64_MAX);

    uint64_t u64a = UINT64_MAX, u64b = 2, u64r;
    run1(JACCL_UINT64, JACCL_PROD, &u64a, &u64b, &u64r);
    assert_true(u64r == UINT64_MAX - 1);
    run1(JACCL_UINT64, JACCL_MIN, &u64a, &u64b, &u64r);
    assert_true(u64r == 2);
}

/*
 * int16 and uint16 at the limits, on n copies of one pair so that both the
 * vector loop and the tail see it, with every aliasing; SIMD and portable.
 */
static void check16(jaccl_dtype_t dt, jaccl_op_t op, uint16_t x, uint16_t y, uint16_t want)
{
    enum { N = 37 };
    uint16_t a[N], b[N], d[N];
    for (int portable = 0; portable < 2; portable++) {
        jaccl_reduce_force_portable(portable);
        jaccl_reduce_fn fn = jaccl_reduce_get(dt, op);
        for (int al = DISTINCT; al <= DST_IS_B; al++) {
            for (int i = 0; i < N; i++) a[i] = x, b[i] = y, d[i] = 0x5a5a;
            uint16_t *dst = al == DST_IS_A ? a : al == DST_IS_B ? b : d;
            fn(dst, a, b, N);
            for (int i = 0; i < N; i++)
                if (dst[i] != want)
                    fail_msg("dtype %d op %d alias %d: 0x%04x op 0x%04x = 0x%04x, want 0x%04x", dt,
                             op, al, x, y, dst[i], want);
        }
    }
    jaccl_reduce_force_portable(0);
}

#define U16(v) ((uint16_t)(int16_t)(v))

static void test_int16_wrap(void **state)
{
    (void)state;
    check16(JACCL_INT16, JACCL_SUM, U16(INT16_MAX), 1, U16(INT16_MIN));
    check16(JACCL_INT16, JACCL_SUM, U16(INT16_MIN), U16(-1), U16(INT16_MAX));
    check16(JACCL_INT16, JACCL_SUM, U16(INT16_MIN), U16(INT16_MIN), 0);
    check16(JACCL_INT16, JACCL_PROD, U16(INT16_MIN), U16(-1), U16(INT16_MIN));
    check16(JACCL_INT16, JACCL_PROD, U16(INT16_MAX), 2, U16(-2));
    check16(JACCL_INT16, JACCL_PROD, 0x100, 0x100, 0);
    check16(JACCL_INT16, JACCL_PROD, U16(INT16_MAX), U16(INT16_MAX), 1);
    check16(JACCL_INT16, JACCL_PROD, U16(-3), U16(5), U16(-15));
    check16(JACCL_INT16, JACCL_MIN, U16(INT16_MIN), U16(INT16_MAX), U16(INT16_MIN));
    check16(JACCL_INT16, JACCL_MAX, U16(INT16_MIN), U16(INT16_MAX), U16(INT16_MAX));
    check16(JACCL_INT16, JACCL_MIN, U16(-1), 1, U16(-1));
    check16(JACCL_INT16, JACCL_MAX, U16(-1), 0, 0);
    check16(JACCL_INT16, JACCL_AVG, U16(INT16_MAX), 1, U16(INT16_MIN));

    check16(JACCL_UINT16, JACCL_SUM, UINT16_MAX, 1, 0);
    check16(JACCL_UINT16, JACCL_SUM, UINT16_MAX, UINT16_MAX, UINT16_MAX - 1);
    check16(JACCL_UINT16, JACCL_PROD, UINT16_MAX, UINT16_MAX, 1);
    check16(JACCL_UINT16, JACCL_PROD, 0x100, 0x100, 0);
    check16(JACCL_UINT16, JACCL_PROD, 0x8000, 2, 0);
    check16(JACCL_UINT16, JACCL_PROD, 300, 200, (uint16_t)(60000));
    check16(JACCL_UINT16, JACCL_MIN, UINT16_MAX, 0x8000, 0x8000); /* unsigned: no sign */
    check16(JACCL_UINT16, JACCL_MAX, UINT16_MAX, 0x8000, UINT16_MAX);
    check16(JACCL_UINT16, JACCL_MIN, 0, UINT16_MAX, 0);
    check16(JACCL_UINT16, JACCL_AVG, UINT16_MAX, 2, 1);
}

/* ---- bool ------------------------------------------------------------------ */

static void test_bool(void **state)
{
    (void)state;
    /* Every pair of {0, 0x01, 0x80, 0xff, 0x02}, over lengths with a vector part and a tail. */
    static const uint8_t vals[] = {0x00, 0x01, 0x80, 0xff, 0x02};
    enum { NV = sizeof vals, NP = NV * NV, N = NP * 7 + 3 };
    static const jaccl_op_t ops[] = {JACCL_SUM, JACCL_PROD, JACCL_MIN, JACCL_MAX};
    uint8_t a[N], b[N], d[N];
    for (int portable = 0; portable < 2; portable++) {
        jaccl_reduce_force_portable(portable);
        for (size_t o = 0; o < 4; o++) {
            int is_or = ops[o] == JACCL_SUM || ops[o] == JACCL_MAX;
            for (int al = DISTINCT; al <= ALL_SAME; al++) {
                for (size_t n = 0; n <= N; n += n < 40 ? 1 : 29) {
                    for (size_t i = 0; i < N; i++) {
                        a[i] = vals[i % NP / NV], b[i] = vals[i % NV], d[i] = 0xa5;
                        if (al == ALL_SAME) b[i] = a[i];
                    }
                    uint8_t *dst = al == DISTINCT ? d : al == DST_IS_B ? b : a;
                    uint8_t want[N];
                    for (size_t i = 0; i < n; i++)
                        want[i] = is_or ? (a[i] || b[i]) : (a[i] && b[i]);
                    jaccl_reduce_get(JACCL_BOOL, ops[o])(dst, a, al == ALL_SAME ? a : b, n);
                    for (size_t i = 0; i < n; i++)
                        if (dst[i] != want[i])
                            fail_msg("bool op %d alias %d n %zu element %zu: 0x%02x, want %d",
                                     ops[o], al, n, i, dst[i], want[i]);
                    if (al == DISTINCT && n < N) assert_int_equal(d[n], 0xa5); /* no overrun */
                }
            }
        }
        /* 0x80 and 0x01 are both true: AND gives 1, not 0x80 & 0x01 == 0. */
        uint8_t x = 0x80, y = 0x01, r = 0xee;
        run1(JACCL_BOOL, JACCL_PROD, &x, &y, &r);
        assert_int_equal(r, 1);
        run1(JACCL_BOOL, JACCL_MIN, &x, &y, &r);
        assert_int_equal(r, 1);
        run1(JACCL_BOOL, JACCL_SUM, &x, &x, &r); /* not 0x80 | 0x80 */
        assert_int_equal(r, 1);
        x = 0;
        run1(JACCL_BOOL, JACCL_MAX, &x, &x, &r);
        assert_int_equal(r, 0);
    }
    jaccl_reduce_force_portable(0);
}

/* ---- complex64 ------------------------------------------------------------- */

static void test_complex(void **state)
{
    (void)state;
    for (int portable = 0; portable < 2; portable++) {
        jaccl_reduce_force_portable(portable);
        jaccl_reduce_fn sum = jaccl_reduce_get(JACCL_COMPLEX64, JACCL_SUM);
        jaccl_reduce_fn prod = jaccl_reduce_get(JACCL_COMPLEX64, JACCL_PROD);

        /* (1+2i)(3+4i) = -5+10i; (1+2i)+(3+4i) = 4+6i; real times imaginary. */
        float x[2] = {1, 2}, y[2] = {3, 4}, r[2];
        prod(r, x, y, 1);
        assert_true(r[0] == -5.0f && r[1] == 10.0f);
        sum(r, x, y, 1);
        assert_true(r[0] == 4.0f && r[1] == 6.0f);
        float i1[2] = {0, 1};
        prod(r, i1, i1, 1); /* i * i = -1 + 0i */
        assert_true(r[0] == -1.0f && r[1] == 0.0f && !signbit(r[1]));

        /*
         * No FMA, over a vector part and a tail and each aliasing: with
         * x = y = (1 + 2^-12) + i, ac = 1 + 2^-11 + 2^-24 rounds (to even) to
         * 1 + 2^-11, so ac - bd = 2^-11, where a fused ac - bd would keep
         * the 2^-24.  And with x = (1 + 2^-12)(1 + i), y = (1 + 2^-12) - i,
         * ad + bc = 2^-12, where fusing bc in gives 2^-12 + 2^-24.
         */
        enum { N = 389 };
        static float a[2 * N], b[2 * N], d[2 * N];
        static const float cases[2][6] = {
            {1 + 0x1p-12f, 1, 1 + 0x1p-12f, 1, 0x1p-11f, 2 + 0x1p-11f},
            {1 + 0x1p-12f, 1 + 0x1p-12f, 1 + 0x1p-12f, -1, 2 + 0x1p-11f + 0x1p-12f, 0x1p-12f},
        };
        for (int c = 0; c < 2; c++) {
            const float *k = cases[c];
            for (int al = DISTINCT; al <= DST_IS_B; al++) {
                for (size_t i = 0; i < N; i++) {
                    a[2 * i] = k[0], a[2 * i + 1] = k[1], b[2 * i] = k[2], b[2 * i + 1] = k[3];
                    d[2 * i] = d[2 * i + 1] = NAN;
                }
                float *dst = al == DST_IS_A ? a : al == DST_IS_B ? b : d;
                prod(dst, a, b, N);
                for (size_t i = 0; i < N; i++)
                    if (fbits(dst[2 * i]) != fbits(k[4]) || fbits(dst[2 * i + 1]) != fbits(k[5]))
                        fail_msg("case %d alias %d element %zu: %a%+ai, want %a%+ai", c, al, i,
                                 (double)dst[2 * i], (double)dst[2 * i + 1], (double)k[4],
                                 (double)k[5]);
            }
        }

        /* AVG divides each component, as float32 division does. */
        enum { M = 1001 };
        static float s[2 * M], w[2 * M];
        for (int dv = 2; dv <= 9; dv++) {
            for (size_t i = 0; i < 2 * M; i++)
                s[i] = bitsf((uint32_t)rnd_float_bits(1)), w[i] = s[i] / (float)dv;
            jaccl_reduce_scale(s, M, JACCL_COMPLEX64, dv);
            for (size_t i = 0; i < 2 * M; i++)
                assert_true(fbits(s[i]) == fbits(w[i]) || (isnan(s[i]) && isnan(w[i])));
        }
        float third[2] = {1, -3};
        jaccl_reduce_scale(third, 1, JACCL_COMPLEX64, 3);
        assert_true(third[0] == 1.0f / 3 && third[1] == -1.0f);
    }
    jaccl_reduce_force_portable(0);
}

/* ---- AVG scaling ---------------------------------------------------------- */

static void test_scale_int(void **state)
{
    (void)state;
    int32_t v32[] = {-7, 7, -1, 1, 0, -6, INT32_MIN, INT32_MAX, -5, 5, 123456789};
    int32_t w32[] = {-3, 3, 0, 0, 0, -3, INT32_MIN / 2, INT32_MAX / 2, -2, 2, 61728394};
    jaccl_reduce_scale(v32, 11, JACCL_INT32, 2);
    assert_memory_equal(v32, w32, sizeof v32);

    int8_t v8[] = {-128, 127, -7, 7, -1, 1, -3};
    int8_t w8[] = {-42, 42, -2, 2, 0, 0, -1};
    jaccl_reduce_scale(v8, 7, JACCL_INT8, 3);
    assert_memory_equal(v8, w8, sizeof v8);

    int16_t v16[] = {INT16_MIN, INT16_MAX, -7, 7, -1, 1, -3, 0};
    int16_t w16[] = {-10922, 10922, -2, 2, 0, 0, -1, 0};
    jaccl_reduce_scale(v16, 8, JACCL_INT16, 3);
    assert_memory_equal(v16, w16, sizeof v16);

    uint16_t vu16[] = {UINT16_MAX, 0x8000, 7, 2, 1, 0};
    uint16_t wu16[] = {21845, 10922, 2, 0, 0, 0};
    jaccl_reduce_scale(vu16, 6, JACCL_UINT16, 3);
    assert_memory_equal(vu16, wu16, sizeof vu16);

    int64_t v64[] = {INT64_MIN, INT64_MAX, -7, 7, -1};
    int64_t w64[] = {INT64_MIN / 3, INT64_MAX / 3, -2, 2, 0};
    jaccl_reduce_scale(v64, 5, JACCL_INT64, 3);
    assert_memory_equal(v64, w64, sizeof v64);

    /* Random values and divisors against C's /, including the largest ones. */
    static const int divs[] = {2, 3, 4, 5, 7, 8, 9, 10, 100, 1000, 65537, 1 << 30, INT_MAX};
    enum { N = 4099 };
    static int32_t i32[N], i32w[N];
    static uint32_t u32[N], u32w[N];
    static int8_t i8[N], i8w[N];
    static uint8_t u8[N], u8w[N];
    static int16_t i16[N], i16w[N];
    static uint16_t u16[N], u16w[N];
    static int64_t i64[N], i64w[N];
    static uint64_t u64[N], u64w[N];
    for (size_t k = 0; k < sizeof divs / sizeof divs[0]; k++) {
        int dv = divs[k];
        for (size_t i = 0; i < N; i++) {
            uint64_t r = rnd();
            i32[i] = (int32_t)(uint32_t)r, i32w[i] = i32[i] / dv;
            u32[i] = (uint32_t)(r >> 32), u32w[i] = u32[i] / (uint32_t)dv;
            i8[i] = (int8_t)(r >> 8), i8w[i] = (int8_t)(i8[i] / dv);
            u8[i] = (uint8_t)(r >> 16), u8w[i] = (uint8_t)(u8[i] / dv);
            i16[i] = (int16_t)(r >> 24), i16w[i] = (int16_t)(i16[i] / dv);
            u16[i] = (uint16_t)(r >> 40), u16w[i] = (uint16_t)(u16[i] / dv);
            i64[i] = (int64_t)rnd(), i64w[i] = i64[i] / dv;
            u64[i] = rnd(), u64w[i] = u64[i] / (uint64_t)dv;
        }
        i32[0] = INT32_MIN, i32w[0] = INT32_MIN / dv, i32[1] = INT32_MAX, i32w[1] = INT32_MAX / dv;
        u32[0] = UINT32_MAX, u32w[0] = UINT32_MAX / (uint32_t)dv;
        i16[0] = INT16_MIN, i16w[0] = (int16_t)(INT16_MIN / dv);
        i16[1] = INT16_MAX, i16w[1] = (int16_t)(INT16_MAX / dv);
        u16[0] = UINT16_MAX, u16w[0] = (uint16_t)(UINT16_MAX / dv);
        jaccl_reduce_scale(i32, N, JACCL_INT32, dv);
        jaccl_reduce_scale(u32, N, JACCL_UINT32, dv);
        jaccl_reduce_scale(i8, N, JACCL_INT8, dv);
        jaccl_reduce_scale(u8, N, JACCL_UINT8, dv);
        jaccl_reduce_scale(i16, N, JACCL_INT16, dv);
        jaccl_reduce_scale(u16, N, JACCL_UINT16, dv);
        jaccl_reduce_scale(i64, N, JACCL_INT64, dv);
        jaccl_reduce_scale(u64, N, JACCL_UINT64, dv);
        assert_memory_equal(i32, i32w, sizeof i32);
        assert_memory_equal(u32, u32w, sizeof u32);
        assert_memory_equal(i8, i8w, sizeof i8);
        assert_memory_equal(u8, u8w, sizeof u8);
        assert_memory_equal(i16, i16w, sizeof i16);
        assert_memory_equal(u16, u16w, sizeof u16);
        assert_memory_equal(i64, i64w, sizeof i64);
        assert_memory_equal(u64, u64w, sizeof u64);
    }

    /* Divisor 1 (and nonsense below it) leaves the buffer alone. */
    int32_t one[] = {-5, 5};
    jaccl_reduce_scale(one, 2, JACCL_INT32, 1);
    jaccl_reduce_scale(one, 2, JACCL_INT32, 0);
    assert_int_equal(one[0], -5);
    assert_int_equal(one[1], 5);
}

static void test_scale_float(void **state)
{
    (void)state;
    enum { N = 1001 };
    static float f[N], fw[N];
    static double d[N], dw[N];
    static uint16_t h[N], hw[N], bh[N], bw[N];
    for (int portable = 0; portable < 2; portable++) {
        jaccl_reduce_force_portable(portable);
        for (int dv = 2; dv <= 9; dv++) {
            for (size_t i = 0; i < N; i++) {
                f[i] = bitsf((uint32_t)rnd_float_bits(1)), fw[i] = f[i] / (float)dv;
                d[i] = bitsd(rnd_float_bits(0)), dw[i] = d[i] / dv;
                h[i] = (uint16_t)rnd(),
                hw[i] = jaccl_f32_to_f16(jaccl_f16_to_f32(h[i]) / (float)dv);
                bh[i] = (uint16_t)rnd(),
                bw[i] = jaccl_f32_to_bf16(jaccl_bf16_to_f32(bh[i]) / (float)dv);
            }
            jaccl_reduce_scale(f, N, JACCL_FLOAT32, dv);
            jaccl_reduce_scale(d, N, JACCL_FLOAT64, dv);
            jaccl_reduce_scale(h, N, JACCL_FLOAT16, dv);
            jaccl_reduce_scale(bh, N, JACCL_BFLOAT16, dv);
            for (size_t i = 0; i < N; i++) {
                assert_true(fbits(f[i]) == fbits(fw[i]) || (isnan(f[i]) && isnan(fw[i])));
                assert_true(dbits(d[i]) == dbits(dw[i]) || (isnan(d[i]) && isnan(dw[i])));
                assert_true(h[i] == hw[i] || (f16_is_nan(h[i]) && f16_is_nan(hw[i])));
                assert_true(bh[i] == bw[i] || (bf16_is_nan(bh[i]) && bf16_is_nan(bw[i])));
            }
        }
        /* 1/3 rounded to nearest: f16 0x3555, bf16 0x3eab (0x3eaaaaab rounds up). */
        uint16_t third[2] = {0x3c00, 0xbc00}, bthird[2] = {0x3f80, 0xbf80};
        jaccl_reduce_scale(third, 2, JACCL_FLOAT16, 3);
        jaccl_reduce_scale(bthird, 2, JACCL_BFLOAT16, 3);
        assert_int_equal(third[0], 0x3555);
        assert_int_equal(third[1], 0xb555);
        assert_int_equal(bthird[0], 0x3eab);
        assert_int_equal(bthird[1], 0xbeab);
    }
    jaccl_reduce_force_portable(0);
}

/* ---- half precision: independent reference ------------------------------ */

/* Value of a finite f16 from its fields, the textbook way. */
static double ref_f16_value(uint16_t h)
{
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return h & 0x8000 ? -v : v;
}

/* Value of positive pattern h (0..top) where top, inf, counts as the next binade's start. */
static double ref_pos_value(uint16_t h, int bf)
{
    if (bf) return h == 0x7f80 ? ldexp(1, 128) : (double)bitsf((uint32_t)h << 16);
    return h == 0x7c00 ? 65536.0 : ref_f16_value(h);
}

/*
 * Round f (not NaN) to f16 or bf16, nearest even, by search: positive
 * patterns increase with their value, so find the two that bracket |f| and
 * take the nearer, or the even one on a tie.  Overflow falls out: inf sits
 * where the next binade would start.
 */
static uint16_t ref_round(float f, int bf)
{
    uint16_t top = bf ? 0x7f80 : 0x7c00, sign = signbit(f) ? 0x8000 : 0;
    double v = fabs((double)f);
    if (v >= ref_pos_value(top, bf)) return sign | top;
    uint16_t lo = 0, hi = top; /* value(lo) <= v < value(hi) */
    while (hi - lo > 1) {
        uint16_t mid = (uint16_t)((lo + hi) / 2);
        if (ref_pos_value(mid, bf) <= v)
            lo = mid;
        else
            hi = mid;
    }
    double d0 = v - ref_pos_value(lo, bf), d1 = ref_pos_value(hi, bf) - v;
    uint16_t r = d0 < d1 ? lo : d1 < d0 ? hi : (lo & 1 ? hi : lo);
    return sign | r;
}

static void test_f16_exhaustive(void **state)
{
    (void)state;
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = jaccl_f16_to_f32(h);
        if (f16_is_nan(h)) {
            /* Quiet NaN, same sign, payload moved up. */
            uint32_t want =
                (uint32_t)(h & 0x8000) << 16 | 0x7fc00000u | (uint32_t)(h & 0x3ff) << 13;
            assert_int_equal(fbits(f), want);
            assert_int_equal(jaccl_f32_to_f16(f), h | 0x0200);
        } else {
            assert_true(fbits(f) == fbits((float)ref_f16_value(h)));
            assert_int_equal(jaccl_f32_to_f16(f), h);
        }
    }
}

static void test_bf16_exhaustive(void **state)
{
    (void)state;
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = jaccl_bf16_to_f32(h);
        assert_int_equal(fbits(f), (uint32_t)h << 16);
        assert_int_equal(jaccl_f32_to_bf16(f), bf16_is_nan(h) ? h | 0x0040 : h);
    }
}

/* Every tie between neighbours, and one float32 ulp either side of it. */
static void check_ties(int bf)
{
    uint16_t top = bf ? 0x7f80 : 0x7c00;
    for (uint16_t h = 0; h < top; h++) {
        float mid = (float)((ref_pos_value(h, bf) + ref_pos_value((uint16_t)(h + 1), bf)) / 2);
        uint16_t even = h & 1 ? (uint16_t)(h + 1) : h;
        float below = nextafterf(mid, 0), above = nextafterf(mid, INFINITY);
        for (int s = 0; s < 2; s++) {
            uint16_t sg = s ? 0x8000 : 0;
            float m = s ? -mid : mid, lo = s ? -below : below, hi = s ? -above : above;
            uint16_t got = bf ? jaccl_f32_to_bf16(m) : jaccl_f32_to_f16(m);
            if (got != (sg | even)) fail_msg("bf %d tie above 0x%04x: got 0x%04x", bf, h, got);
            assert_int_equal(bf ? jaccl_f32_to_bf16(lo) : jaccl_f32_to_f16(lo), sg | h);
            assert_int_equal(bf ? jaccl_f32_to_bf16(hi) : jaccl_f32_to_f16(hi), sg | (h + 1));
        }
    }
}

static void test_half_ties(void **state)
{
    (void)state;
    check_ties(0);
    check_ties(1);
}

/* Random float32 patterns, weighted toward the f16 range, against the search. */
static void test_half_random(void **state)
{
    (void)state;
    for (int i = 0; i < 300000; i++) {
        uint32_t x = (uint32_t)rnd();
        if (i & 1) x = (x & 0x83ffffffu) | ((uint32_t)(96 + rnd() % 48) << 23); /* 2^-31..2^16 */
        float f = bitsf(x);
        if (isnan(f)) continue;
        uint16_t h = jaccl_f32_to_f16(f), bh = jaccl_f32_to_bf16(f);
        if (h != ref_round(f, 0)) fail_msg("f16 of 0x%08x: 0x%04x", x, h);
        if (bh != ref_round(f, 1)) fail_msg("bf16 of 0x%08x: 0x%04x", x, bh);
    }
}

static void test_half_special(void **state)
{
    (void)state;
    /* f16 subnormals: 2^-24 is the smallest, 2^-25 a tie to zero. */
    assert_int_equal(jaccl_f32_to_f16(0x1p-24f), 0x0001);
    assert_int_equal(jaccl_f32_to_f16(0x1p-25f), 0x0000);
    assert_int_equal(jaccl_f32_to_f16(nextafterf(0x1p-25f, 1)), 0x0001);
    assert_int_equal(jaccl_f32_to_f16(-0x1p-25f), 0x8000);
    assert_int_equal(jaccl_f32_to_f16(0x1.8p-24f), 0x0002);   /* 1.5 units: tie to even 2 */
    assert_int_equal(jaccl_f32_to_f16(0x1.ffcp-15f), 0x0400); /* top subnormal + half: to normal */
    assert_int_equal(jaccl_f32_to_f16(bitsf(1)), 0x0000);     /* float32 subnormal */
    assert_true(fbits(jaccl_f16_to_f32(0x0001)) == fbits(0x1p-24f));
    assert_true(fbits(jaccl_f16_to_f32(0x03ff)) == fbits(0x1.ff8p-15f));
    assert_true(fbits(jaccl_f16_to_f32(0x8000)) == 0x80000000u);
    /* bfloat16 keeps float32's subnormals. */
    assert_int_equal(jaccl_f32_to_bf16(bitsf(0x00010000u)), 0x0001);
    assert_int_equal(jaccl_f32_to_bf16(bitsf(0x00008000u)), 0x0000); /* tie to even */
    assert_int_equal(jaccl_f32_to_bf16(bitsf(0x00018000u)), 0x0002);
    /* Overflow. */
    assert_int_equal(jaccl_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(jaccl_f32_to_f16(65519.99f), 0x7bff);
    assert_int_equal(jaccl_f32_to_f16(65520.0f), 0x7c00);
    assert_int_equal(jaccl_f32_to_f16(-1e10f), 0xfc00);
    assert_int_equal(jaccl_f32_to_f16(INFINITY), 0x7c00);
    assert_int_equal(jaccl_f32_to_bf16(FLT_MAX), 0x7f80);
    assert_int_equal(jaccl_f32_to_bf16(-FLT_MAX), 0xff80);
    assert_int_equal(jaccl_f32_to_bf16(bitsf(0x7f7f7fffu)), 0x7f7f);
    assert_int_equal(jaccl_f32_to_bf16(-INFINITY), 0xff80);
    assert_true(isinf(jaccl_f16_to_f32(0x7c00)) && jaccl_f16_to_f32(0xfc00) < 0);
    /* NaN stays NaN and comes out quiet, whatever its payload. */
    static const uint32_t nans[] = {0x7f800001u, 0x7fa00000u, 0xff800001u, 0x7fc00000u,
                                    0x7fffffffu, 0xffc00001u, 0x7f802000u};
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        uint16_t h = jaccl_f32_to_f16(bitsf(nans[i])), b = jaccl_f32_to_bf16(bitsf(nans[i]));
        assert_true(f16_is_nan(h) && (h & 0x0200));
        assert_true(bf16_is_nan(b) && (b & 0x0040));
        assert_int_equal(h & 0x8000, (nans[i] >> 16) & 0x8000);
        assert_int_equal(b & 0x8000, (nans[i] >> 16) & 0x8000);
    }
}

#ifdef __FLT16_MAX__
/* A second opinion where the compiler has _Float16: its own conversions. */
__extension__ typedef _Float16 cc_f16;

static void test_f16_compiler(void **state)
{
    (void)state;
    for (int i = 0; i < 300000; i++) {
        uint32_t x = (uint32_t)rnd();
        if (i & 1) x = (x & 0x83ffffffu) | ((uint32_t)(96 + rnd() % 48) << 23);
        float f = bitsf(x);
        if (isnan(f)) continue;
        cc_f16 c = (cc_f16)f;
        uint16_t want;
        memcpy(&want, &c, 2);
        assert_int_equal(jaccl_f32_to_f16(f), want);
    }
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        cc_f16 c;
        memcpy(&c, &h, 2);
        if (!f16_is_nan(h)) assert_true(fbits(jaccl_f16_to_f32(h)) == fbits((float)c));
    }
}
#endif

/* ---- min/max with NaN ----------------------------------------------------- */

static void test_minmax_nan(void **state)
{
    (void)state;
    float na = bitsf(0x7fc00001u), nb = bitsf(0xffc00002u), one = 1.0f, r;
    for (int portable = 0; portable < 2; portable++) {
        jaccl_reduce_force_portable(portable);
        for (jaccl_op_t op = JACCL_MIN; op <= JACCL_MAX; op++) {
            run1(JACCL_FLOAT32, op, &na, &one, &r);
            assert_int_equal(fbits(r), 0x7fc00001u);
            run1(JACCL_FLOAT32, op, &one, &nb, &r);
            assert_int_equal(fbits(r), 0xffc00002u);
            run1(JACCL_FLOAT32, op, &na, &nb, &r);
            assert_int_equal(fbits(r), 0x7fc00001u);
            run1(JACCL_FLOAT32, op, &nb, &na, &r);
            assert_int_equal(fbits(r), 0xffc00002u);

            double da = bitsd(0x7ff8000000000001u), done = -1.0, dr;
            run1(JACCL_FLOAT64, op, &done, &da, &dr);
            assert_true(dbits(dr) == 0x7ff8000000000001u);
            run1(JACCL_FLOAT64, op, &da, &done, &dr);
            assert_true(dbits(dr) == 0x7ff8000000000001u);

            /* Halves: a's NaN, quieted; b's NaN when only b is one. */
            uint16_t hn = 0x7c01, hm = 0xfd00, h1 = 0x3c00, hr;
            run1(JACCL_FLOAT16, op, &hn, &h1, &hr);
            assert_int_equal(hr, 0x7e01);
            run1(JACCL_FLOAT16, op, &h1, &hm, &hr);
            assert_int_equal(hr, 0xff00);
            run1(JACCL_FLOAT16, op, &hn, &hm, &hr);
            assert_int_equal(hr, 0x7e01);
            uint16_t bn = 0x7f81, b1 = 0x3f80;
            run1(JACCL_BFLOAT16, op, &b1, &bn, &hr);
            assert_int_equal(hr, 0x7fc1);

            /* Ordinary values still work: min(1, 2) and max(1, 2), -inf < x. */
            float two = 2.0f, ninf = -INFINITY;
            run1(JACCL_FLOAT32, op, &one, &two, &r);
            assert_true(r == (op == JACCL_MIN ? 1.0f : 2.0f));
            run1(JACCL_FLOAT32, op, &ninf, &two, &r);
            assert_true(r == (op == JACCL_MIN ? -INFINITY : 2.0f));
        }
    }
    jaccl_reduce_force_portable(0);
}

/* Sums and products of halves with a NaN give the canonical quiet NaN. */
static void test_half_nan_arith(void **state)
{
    (void)state;
    static const uint16_t f16_in[][2] = {
        {0x7c01, 0x3c00}, {0x3c00, 0xfd00}, {0x7e55, 0xfc01}, {0x7c00, 0x0000}, {0x7c00, 0xfc00}};
    static const uint16_t bf16_in[][2] = {{0x7f81, 0x3f80}, {0x3f80, 0xffc1}, {0x7f80, 0x0000}};
    for (int portable = 0; portable < 2; portable++) {
        jaccl_reduce_force_portable(portable);
        for (size_t i = 0; i < sizeof f16_in / sizeof f16_in[0]; i++) {
            uint16_t r;
            /* inf + -inf and inf * 0 are invalid: NaN too. */
            jaccl_op_t op = i == 3 ? JACCL_PROD : JACCL_SUM;
            run1(JACCL_FLOAT16, op, &f16_in[i][0], &f16_in[i][1], &r);
            assert_int_equal(r, 0x7e00);
            run1(JACCL_FLOAT16, JACCL_PROD, &f16_in[i][0], &f16_in[i][1], &r);
            assert_true(f16_is_nan(r) || i == 4);
        }
        for (size_t i = 0; i < sizeof bf16_in / sizeof bf16_in[0]; i++) {
            uint16_t r;
            run1(JACCL_BFLOAT16, i == 2 ? JACCL_PROD : JACCL_SUM, &bf16_in[i][0], &bf16_in[i][1],
                 &r);
            assert_int_equal(r, 0x7fc0);
        }
    }
    jaccl_reduce_force_portable(0);
}

/* ---- SIMD against portable, bit for bit ------------------------------------ */

/*
 * Run dt x op on a, b with the SIMD path and the portable one: same bits.
 * Except which NaN a float32/64 (or complex64) sum or product of two NaNs
 * returns: that is up to the compiler, which may swap the operands of + and *
 * (Clang does).  strict drops that exception, for inputs without NaNs.
 */
static void check_same_x(jaccl_dtype_t dt, jaccl_op_t op, const void *a, const void *b, size_t n,
                         int strict)
{
    size_t sz = esize(dt);
    unsigned char *fast = malloc(n * sz + 1), *slow = malloc(n * sz + 1);
    assert_non_null(fast);
    assert_non_null(slow);
    jaccl_reduce_force_portable(0);
    jaccl_reduce_get(dt, op)(fast, a, b, n);
    jaccl_reduce_force_portable(1);
    jaccl_reduce_get(dt, op)(slow, a, b, n);
    jaccl_reduce_force_portable(0);
    int any_nan = !strict &&
                  (dt == JACCL_FLOAT32 || dt == JACCL_FLOAT64 || dt == JACCL_COMPLEX64) &&
                  op != JACCL_MIN && op != JACCL_MAX;
    for (size_t i = 0; i < n; i++) {
        uint64_t x = get_bits(fast + i * sz, sz), y = get_bits(slow + i * sz, sz);
        if (elem_ok(dt, x, y, any_nan)) continue;
        fail_msg("dtype %d op %d element %zu: simd 0x%llx, portable 0x%llx", dt, op, i,
                 (unsigned long long)x, (unsigned long long)y);
    }
    free(fast);
    free(slow);
}

static void check_same(jaccl_dtype_t dt, jaccl_op_t op, const void *a, const void *b, size_t n)
{
    check_same_x(dt, op, a, b, n, 0);
}

static void test_simd_matches_portable(void **state)
{
    (void)state;
    enum { N = 65536 * 2 + 5 };
    static uint16_t a[N], b[N], ties_a[N], ties_b[N];
    jaccl_reduce_force_portable(1);
    jaccl_reduce_fn portable = jaccl_reduce_get(JACCL_FLOAT16, JACCL_SUM);
    jaccl_reduce_force_portable(0);
    if (jaccl_reduce_get(JACCL_FLOAT16, JACCL_SUM) == portable)
        print_message("no AVX2 + F16C here: the portable kernels are compared with themselves\n");
    /* All patterns against all patterns shifted, then random pairs. */
    for (size_t i = 0; i < N; i++) {
        a[i] = (uint16_t)i;
        b[i] = (uint16_t)(i < 65536 ? i * 7919u + 13u : rnd());
    }
    /* f16 ties through the float32 sum: h + half its ulp, for every h from 2^-13 up. */
    size_t nt = 0;
    for (uint16_t h = 0x0800; h < 0x7c00; h++) {
        int k = (h >> 10) - 15 - 11; /* half ulp of h is 2^k, k >= -24 */
        uint16_t half_ulp = k >= -14 ? (uint16_t)((k + 15) << 10) : (uint16_t)(1u << (k + 24));
        ties_a[nt] = h, ties_b[nt++] = half_ulp;
    }
    for (size_t t = 0; t < N_DTYPES; t++) {
        jaccl_dtype_t dt = all_dtypes[t];
        size_t n = N * 2 / esize(dt); /* reuse the same bytes as every dtype */
        for (size_t o = 0; o < N_OPS; o++)
            if (op_defined(dt, all_ops[o])) check_same(dt, all_ops[o], a, b, n - 3);
    }

    /*
     * Complex64 without NaN inputs: exactly the same bits, NaNs included (an
     * invalid operation gives the one default NaN on either path).
     */
    {
        enum { NC = 20011 };
        static float ca[2 * NC], cb[2 * NC];
        for (size_t i = 0; i < 2 * NC; i++) {
            do ca[i] = bitsf((uint32_t)rnd_float_bits(1));
            while (isnan(ca[i]));
            do cb[i] = bitsf((uint32_t)rnd_float_bits(1));
            while (isnan(cb[i]));
        }
        for (size_t k = 0; k < 3; k++) {
            size_t n = NC - k;
            check_same_x(JACCL_COMPLEX64, JACCL_SUM, ca, cb, n, 1);
            check_same_x(JACCL_COMPLEX64, JACCL_PROD, ca, cb, n, 1);
            check_same_x(JACCL_COMPLEX64, JACCL_PROD, cb, ca, n, 1);
            check_same_x(JACCL_COMPLEX64, JACCL_PROD, ca, ca, n, 1);
        }
    }
    check_same(JACCL_FLOAT16, JACCL_SUM, ties_a, ties_b, nt);
    check_same(JACCL_FLOAT16, JACCL_SUM, ties_b, ties_a, nt);

    /* The SIMD sum of a tie lands on the even neighbour. */
    static uint16_t out[N];
    jaccl_reduce_get(JACCL_FLOAT16, JACCL_SUM)(out, ties_a, ties_b, nt);
    for (size_t i = 0; i < nt; i++) {
        uint16_t even = ties_a[i] & 1 ? (uint16_t)(ties_a[i] + 1) : ties_a[i];
        if (out[i] != even) fail_msg("0x%04x + 0x%04x = 0x%04x", ties_a[i], ties_b[i], out[i]);
    }

    /* Round trip of every f16 through the SIMD conversions: max(x, x) == x. */
    jaccl_reduce_get(JACCL_FLOAT16, JACCL_MAX)(out, a, a, 65536);
    for (uint32_t i = 0; i < 65536; i++)
        assert_int_equal(out[i], f16_is_nan((uint16_t)i) ? i | 0x0200 : i);

    /* Scaling as well. */
    for (int dv = 2; dv < 12; dv++) {
        static uint16_t s1[N], s2[N];
        memcpy(s1, a, sizeof a);
        memcpy(s2, a, sizeof a);
        for (int bf = 0; bf < 2; bf++) {
            jaccl_dtype_t dt = bf ? JACCL_BFLOAT16 : JACCL_FLOAT16;
            jaccl_reduce_force_portable(0);
            jaccl_reduce_scale(s1, N - 1, dt, dv);
            jaccl_reduce_force_portable(1);
            jaccl_reduce_scale(s2, N - 1, dt, dv);
            jaccl_reduce_force_portable(0);
            assert_memory_equal(s1, s2, sizeof s1);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get),
        cmocka_unit_test(test_kernels_short),
        cmocka_unit_test(test_kernels_long),
        cmocka_unit_test(test_int_wrap),
        cmocka_unit_test(test_int16_wrap),
        cmocka_unit_test(test_bool),
        cmocka_unit_test(test_complex),
        cmocka_unit_test(test_scale_int),
        cmocka_unit_test(test_scale_float),
        cmocka_unit_test(test_f16_exhaustive),
        cmocka_unit_test(test_bf16_exhaustive),
        cmocka_unit_test(test_half_ties),
        cmocka_unit_test(test_half_random),
        cmocka_unit_test(test_half_special),
#ifdef __FLT16_MAX__
        cmocka_unit_test(test_f16_compiler),
#endif
        cmocka_unit_test(test_minmax_nan),
        cmocka_unit_test(test_half_nan_arith),
        cmocka_unit_test(test_simd_matches_portable),
    };
    return cmocka_run_group_tests(tests, pool_setup, pool_teardown);
}
