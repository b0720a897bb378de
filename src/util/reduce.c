/*
 * Element-wise reduction kernels.
 *
 * Integers and float32/64: each dtype x op is a plain loop that GCC
 * vectorises (-O3, and -O2 too), in four restrict-qualified variants (dst
 * distinct, dst == a, dst == b, all three equal) so that no runtime overlap
 * check is needed; the operand order stays a op b in all of them.
 *
 * Float16 and bfloat16 go through float32.  f32 has 24 significand bits, at
 * least 2p + 2 for both (p = 11 and 8), so one float32 operation followed by
 * the rounding to half is the correctly rounded half result: no double
 * rounding error for +, * and /, and min/max are exact.
 *
 * Bool: one byte, any nonzero byte is true; sum and max are OR, product and
 * min are AND, and the result is always 0 or 1.  It has no AVG (the core
 * rejects it; jaccl_reduce_get returns NULL).
 *
 * Complex64: float32 pairs (real, imaginary).  The sum is float32's on twice
 * as many floats; the product, (a+bi)(c+di) = (ac-bd) + (ad+bc)i, rounds each
 * of the four products and then each sum: see CPLX_KERNELS for how no FMA can
 * creep in.  No min or max (NULL).
 *
 * On x86-64 with AVX2 and F16C, chosen at run time, the half kernels use
 * intrinsics and the others an AVX2 build of the portable loops.  They give
 * the same bits as the portable code, which the unit tests check.
 */
#include "util/reduce.h"

#include <stdatomic.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define REDUCE_X86 1
#endif

/*
 * Element types with alignment 1: buffers come from users and byte offsets,
 * so an element may sit at any address.  x86 vector loads do not care, and
 * the vectoriser still uses them.
 */
#if defined(__GNUC__)
#define UNALIGNED __attribute__((aligned(1)))
#else
#define UNALIGNED
#endif
typedef int8_t i8_t;
typedef uint8_t u8_t;
typedef int16_t i16_t UNALIGNED;
typedef uint16_t u16_t UNALIGNED;
typedef int32_t i32_t UNALIGNED;
typedef uint32_t u32_t UNALIGNED;
typedef int64_t i64_t UNALIGNED;
typedef uint64_t u64_t UNALIGNED;
typedef uint16_t h16_t UNALIGNED; /* float16 and bfloat16 bits */
typedef float f32_t UNALIGNED;
typedef double f64_t UNALIGNED;

/* ---- scalar operations ------------------------------------------------- */

/*
 * Integers: arithmetic in the unsigned type wraps without undefined
 * behaviour; the conversion back to a signed type is modular in GCC and
 * Clang.  The 1u factor keeps uint8 products from being promoted to (signed)
 * int before the multiply can overflow it.
 */
#define INT_OPS(name, T, U)                                                                        \
    static inline T name##_sum(T x, T y)                                                           \
    {                                                                                              \
        return (T)(1u * (U)x + (U)y);                                                              \
    }                                                                                              \
    static inline T name##_prod(T x, T y)                                                          \
    {                                                                                              \
        return (T)(1u * (U)x * (U)y);                                                              \
    }                                                                                              \
    static inline T name##_min(T x, T y)                                                           \
    {                                                                                              \
        return y < x ? y : x;                                                                      \
    }                                                                                              \
    static inline T name##_max(T x, T y)                                                           \
    {                                                                                              \
        return y > x ? y : x;                                                                      \
    }

INT_OPS(i8, int8_t, uint8_t)
INT_OPS(u8, uint8_t, uint8_t)
INT_OPS(i16, int16_t, uint16_t)
INT_OPS(u16, uint16_t, uint16_t)
INT_OPS(i32, int32_t, uint32_t)
INT_OPS(u32, uint32_t, uint32_t)
INT_OPS(i64, int64_t, uint64_t)
INT_OPS(u64, uint64_t, uint64_t)

/*
 * Floats: min/max propagate NaN (fmin/fmax would drop it) and, to give the
 * same bits for the same inputs, return x when x is NaN, else y.  Equal
 * operands (+0, -0) give y.  A sum or product of two NaNs is a quiet NaN
 * with either payload: the compiler may swap the operands of + and *.
 */
#define FLOAT_OPS(name, T)                                                                         \
    static inline T name##_sum(T x, T y)                                                           \
    {                                                                                              \
        return x + y;                                                                              \
    }                                                                                              \
    static inline T name##_prod(T x, T y)                                                          \
    {                                                                                              \
        return x * y;                                                                              \
    }                                                                                              \
    static inline T name##_min(T x, T y)                                                           \
    {                                                                                              \
        return (x < y || x != x) ? x : y;                                                          \
    }                                                                                              \
    static inline T name##_max(T x, T y)                                                           \
    {                                                                                              \
        return (x > y || x != x) ? x : y;                                                          \
    }

FLOAT_OPS(f32, float)
FLOAT_OPS(f64, double)

/* Bool: nonzero is true, the result 0 or 1.  & rather than && keeps it branch-free. */
static inline uint8_t bool_or(uint8_t x, uint8_t y)
{
    return (uint8_t)((x | y) != 0);
}
static inline uint8_t bool_and(uint8_t x, uint8_t y)
{
    return (uint8_t)((x != 0) & (y != 0));
}

/* ---- half precision conversions ---------------------------------------- */

static inline uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float float_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/*
 * x if c else y, by masks.  A ?: would let GCC sink the float arithmetic
 * feeding one arm into a branch, which it then cannot if-convert (floats may
 * trap under the default -ftrapping-math), and the loop would not vectorise.
 */
static inline uint32_t pick(int c, uint32_t x, uint32_t y)
{
    uint32_t m = 0u - (uint32_t)c;
    return (x & m) | (y & ~m);
}

/* A signalling NaN comes out quiet with its payload, as F16C's vcvtph2ps does. */
static inline float f16_to_f32(uint16_t h)
{
    int32_t em = h & 0x7fff; /* signed: SSE2 compares only signed integers */
    uint32_t m_special = pick(em >= 0x7c00, ~0u, 0), m_nan = pick(em > 0x7c00, ~0u, 0);
    /* Rebias the exponent 15 -> 127, twice over for inf/NaN (31 -> 255). */
    uint32_t normal = ((uint32_t)em << 13) + 0x38000000u + (m_special & 0x38000000u);
    normal |= m_nan & 0x00400000u;
    /* em * 2^-24 is exact and a normal float32, so FTZ/DAZ cannot touch it. */
    uint32_t sub = bits_of((float)em * 0x1p-24f);
    return float_of((uint32_t)(h & 0x8000u) << 16 | pick(em >= 0x0400, normal, sub));
}

/*
 * Round to nearest even.  Normal range: rebias and round the 13 dropped bits
 * in integers; a carry runs on into the exponent and up to inf.  Below 2^-14:
 * adding 0.5 puts the f16 subnormal unit 2^-24 at float32's last mantissa
 * bit, so the FPU's (default, nearest-even) rounding does the work; float32
 * subnormals (or DAZ) round to zero either way.  NaN keeps its top payload
 * bits and is quieted, as F16C's vcvtps2ph does.
 */
static inline uint16_t f32_to_f16(float f)
{
    uint32_t x = bits_of(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    int32_t ax = (int32_t)(x & 0x7fffffffu); /* signed: SSE2 compares only signed integers */
    uint32_t normal = ((uint32_t)ax - 0x38000000u + 0x0fffu + (((uint32_t)ax >> 13) & 1u)) >> 13;
    uint32_t sub = bits_of(float_of((uint32_t)ax) + 0.5f) - 0x3f000000u;
    uint32_t nan = 0x7e00u | (((uint32_t)ax >> 13) & 0x03ffu);
    /* From 2^16 up (and 65520..65535 by rounding) the result is inf. */
    uint32_t r = pick(ax > 0x7f800000, nan,
                      pick(ax >= 0x47800000, 0x7c00u, pick(ax >= 0x38800000, normal, sub)));
    return (uint16_t)(sign | r);
}

static inline float bf16_to_f32(uint16_t h)
{
    return float_of((uint32_t)h << 16);
}

/* Round to nearest even on the low 16 bits; the carry reaches inf when it must. */
static inline uint16_t f32_to_bf16(float f)
{
    uint32_t x = bits_of(f);
    uint32_t rounded = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;
    uint32_t nan = (x >> 16) | 0x0040u;
    return (uint16_t)((int32_t)(x & 0x7fffffffu) > 0x7f800000 ? nan : rounded);
}

float jaccl_f16_to_f32(uint16_t h)
{
    return f16_to_f32(h);
}
uint16_t jaccl_f32_to_f16(float f)
{
    return f32_to_f16(f);
}
float jaccl_bf16_to_f32(uint16_t h)
{
    return bf16_to_f32(h);
}
uint16_t jaccl_f32_to_bf16(float f)
{
    return f32_to_bf16(f);
}

/*
 * A NaN sum or product of halves is the canonical quiet NaN (f16 0x7e00, bf16
 * 0x7fc0).  With two NaN operands x86 returns the first one's payload, and a
 * compiler may swap the operands of + and *, so keeping a payload would let
 * the F16C and the portable kernels disagree.  Min/max keep theirs (x's).
 */
static inline float canon_nan(float f)
{
    return float_of(pick(f != f, 0x7fc00000u, bits_of(f)));
}

static inline float half_sum(float x, float y)
{
    return canon_nan(x + y);
}
static inline float half_prod(float x, float y)
{
    return canon_nan(x * y);
}

/* ---- loops -------------------------------------------------------------- */

#if defined(__GNUC__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE
#endif

/*
 * for (i = 0; i < n; i++) BODY, as two loops: the first runs a multiple of 16
 * times, which even GCC's -O2 vectoriser (cost model "very cheap": no
 * epilogue of its own) accepts; the second does the rest.
 */
#define FOR_EACH(i, n, BODY)                                                                       \
    do {                                                                                           \
        size_t i, whole_ = (n) & ~(size_t)15;                                                      \
        for (i = 0; i < whole_; i++) BODY;                                                         \
        for (; i < (n); i++) BODY;                                                                 \
    } while (0)

/*
 * One kernel: four loops that differ only in which pointers alias, so each
 * can be restrict-qualified, and a dispatcher on the pointers.  The loops stay
 * out of line: inlined into the dispatcher, GCC's -O2 vectoriser loses track
 * of FOR_EACH's multiple of 16.  ATTR builds the same loops for another target.
 */
#define KERNEL(name, T, OP, ATTR)                                                                  \
    ATTR NOINLINE static void name##_3(T *restrict d, const T *restrict a, const T *restrict b,    \
                                       size_t n)                                                   \
    {                                                                                              \
        FOR_EACH(i, n, d[i] = OP(a[i], b[i]));                                                     \
    }                                                                                              \
    ATTR NOINLINE static void name##_a(T *restrict d, const T *restrict b, size_t n)               \
    {                                                                                              \
        FOR_EACH(i, n, d[i] = OP(d[i], b[i]));                                                     \
    }                                                                                              \
    ATTR NOINLINE static void name##_b(T *restrict d, const T *restrict a, size_t n)               \
    {                                                                                              \
        FOR_EACH(i, n, d[i] = OP(a[i], d[i]));                                                     \
    }                                                                                              \
    ATTR NOINLINE static void name##_s(T *d, size_t n)                                             \
    {                                                                                              \
        FOR_EACH(i, n, d[i] = OP(d[i], d[i]));                                                     \
    }                                                                                              \
    static void name(void *d, const void *a, const void *b, size_t n)                              \
    {                                                                                              \
        if (d != a && d != b)                                                                      \
            name##_3(d, a, b, n);                                                                  \
        else if (d != b)                                                                           \
            name##_a(d, b, n);                                                                     \
        else if (d != a)                                                                           \
            name##_b(d, a, n);                                                                     \
        else                                                                                       \
            name##_s(d, n);                                                                        \
    }

/* The four kernels k_<name>_<op> of one dtype, from its scalar ops <ops>_<op>. */
#define KERNELS(name, ops, T, ATTR)                                                                \
    KERNEL(k_##name##_sum, T, ops##_sum, ATTR)                                                     \
    KERNEL(k_##name##_prod, T, ops##_prod, ATTR)                                                   \
    KERNEL(k_##name##_min, T, ops##_min, ATTR)                                                     \
    KERNEL(k_##name##_max, T, ops##_max, ATTR)

#define NO_ATTR
KERNELS(i8, i8, i8_t, NO_ATTR)
KERNELS(u8, u8, u8_t, NO_ATTR)
KERNELS(i16, i16, i16_t, NO_ATTR)
KERNELS(u16, u16, u16_t, NO_ATTR)
KERNELS(i32, i32, i32_t, NO_ATTR)
KERNELS(u32, u32, u32_t, NO_ATTR)
KERNELS(i64, i64, i64_t, NO_ATTR)
KERNELS(u64, u64, u64_t, NO_ATTR)
KERNELS(f32, f32, f32_t, NO_ATTR)
KERNELS(f64, f64, f64_t, NO_ATTR)

/* Bool: two kernels serve the four ops. */
#define BOOL_KERNELS(name, ATTR)                                                                   \
    KERNEL(k_##name##_or, u8_t, bool_or, ATTR)                                                     \
    KERNEL(k_##name##_and, u8_t, bool_and, ATTR)

BOOL_KERNELS(bool, NO_ATTR)

/*
 * Complex64.  The sum is the float32 sum of 2n floats.  The product is built
 * so that no compiler flag can fuse a multiply into the add or subtract after
 * it: -ffp-contract=off (ISO C's default in GCC) or FP_CONTRACT OFF is not
 * enough, since GCC 12's vectoriser still turns the interleaved ac - bd,
 * ad + bc into vfmaddsub when FMA is enabled (-march=native, say).  So a
 * block is multiplied in one out-of-line loop into t = (ac, ad) and u = (bd,
 * bc) on the stack, and another subtracts and adds them; the multiplies and
 * the adds never meet in one function.  Both loops vectorise, over distinct
 * arrays: a block is read whole before it is written, so dst == a or b is
 * fine.  x = a + bi is the first operand, y = c + di the second.
 */
enum { CPLX_BLOCK = 256 };

#define CPLX_KERNELS(name, f32name, ATTR)                                                          \
    static void k_##name##_sum(void *d, const void *a, const void *b, size_t n)                    \
    {                                                                                              \
        k_##f32name##_sum(d, a, b, 2 * n);                                                         \
    }                                                                                              \
    ATTR NOINLINE static void name##_mul(float *restrict t, float *restrict u,                     \
                                         const f32_t *restrict x, const f32_t *restrict y,         \
                                         size_t n)                                                 \
    {                                                                                              \
        FOR_EACH(i, n, {                                                                           \
            t[2 * i] = x[2 * i] * y[2 * i];                                                        \
            t[2 * i + 1] = x[2 * i] * y[2 * i + 1];                                                \
            u[2 * i] = x[2 * i + 1] * y[2 * i + 1];                                                \
            u[2 * i + 1] = x[2 * i + 1] * y[2 * i];                                                \
        });                                                                                        \
    }                                                                                              \
    ATTR NOINLINE static void name##_addsub(f32_t *restrict d, const float *restrict t,            \
                                            const float *restrict u, size_t n)                     \
    {                                                                                              \
        FOR_EACH(i, n, {                                                                           \
            d[2 * i] = t[2 * i] - u[2 * i];                                                        \
            d[2 * i + 1] = t[2 * i + 1] + u[2 * i + 1];                                            \
        });                                                                                        \
    }                                                                                              \
    static void k_##name##_prod(void *dv, const void *av, const void *bv, size_t n)                \
    {                                                                                              \
        f32_t *d = dv;                                                                             \
        const f32_t *a = av, *b = bv;                                                              \
        float t[2 * CPLX_BLOCK], u[2 * CPLX_BLOCK];                                                \
        for (size_t i = 0; i < n; i += CPLX_BLOCK) {                                               \
            size_t m = n - i < CPLX_BLOCK ? n - i : CPLX_BLOCK;                                    \
            name##_mul(t, u, a + 2 * i, b + 2 * i, m);                                             \
            name##_addsub(d + 2 * i, t, u, m);                                                     \
        }                                                                                          \
    }

CPLX_KERNELS(c64, f32, NO_ATTR)

/*
 * Halves, portable: a block at a time is widened into float32 arrays on the
 * stack, reduced there and rounded back.  Every step is a loop over distinct
 * arrays, so it vectorises without aliasing variants (a block is read whole
 * before it is written: dst == a or b is fine), and the conversions are built
 * once per type, not once per op and variant.
 */
enum { HALF_BLOCK = 256 };

#define HALF_CONVERSIONS(name, to32, from32)                                                       \
    NOINLINE static void name##_widen(float *restrict out, const h16_t *restrict in, size_t n)     \
    {                                                                                              \
        FOR_EACH(i, n, out[i] = to32(in[i]));                                                      \
    }                                                                                              \
    NOINLINE static void name##_narrow(h16_t *restrict out, const float *restrict in, size_t n)    \
    {                                                                                              \
        FOR_EACH(i, n, out[i] = from32(in[i]));                                                    \
    }

HALF_CONVERSIONS(f16, f16_to_f32, f32_to_f16)
HALF_CONVERSIONS(bf16, bf16_to_f32, f32_to_bf16)

#define HALF_KERNEL(name, conv, OP)                                                                \
    static void name(void *dv, const void *av, const void *bv, size_t n)                           \
    {                                                                                              \
        h16_t *d = dv;                                                                             \
        const h16_t *a = av, *b = bv;                                                              \
        float x[HALF_BLOCK], y[HALF_BLOCK];                                                        \
        for (size_t i = 0; i < n; i += HALF_BLOCK) {                                               \
            size_t m = n - i < HALF_BLOCK ? n - i : HALF_BLOCK;                                    \
            conv##_widen(x, a + i, m);                                                             \
            conv##_widen(y, b + i, m);                                                             \
            FOR_EACH(j, m, x[j] = OP(x[j], y[j]));                                                 \
            conv##_narrow(d + i, x, m);                                                            \
        }                                                                                          \
    }

#define HALF_KERNELS(name)                                                                         \
    HALF_KERNEL(k_##name##_sum, name, half_sum)                                                    \
    HALF_KERNEL(k_##name##_prod, name, half_prod)                                                  \
    HALF_KERNEL(k_##name##_min, name, f32_min)                                                     \
    HALF_KERNEL(k_##name##_max, name, f32_max)

HALF_KERNELS(f16)
HALF_KERNELS(bf16)

#define ROW(name)                                                                                  \
    {                                                                                              \
        k_##name##_sum, k_##name##_prod, k_##name##_min, k_##name##_max                            \
    }

/* Bool: sum and max are OR, product and min AND.  Complex: no min or max. */
#define BOOL_ROW(name)                                                                             \
    {                                                                                              \
        k_##name##_or, k_##name##_and, k_##name##_and, k_##name##_or                               \
    }
#define CPLX_ROW(name)                                                                             \
    {                                                                                              \
        k_##name##_sum, k_##name##_prod, NULL, NULL                                                \
    }

/* Indexed [dtype][op] for op < JACCL_AVG; NULL where dtype x op is not defined. */
static const jaccl_reduce_fn portable_kernels[JACCL_DTYPE_COUNT][JACCL_AVG] = {
    [JACCL_INT8] = ROW(i8),     [JACCL_UINT8] = ROW(u8),           [JACCL_INT32] = ROW(i32),
    [JACCL_UINT32] = ROW(u32),  [JACCL_INT64] = ROW(i64),          [JACCL_UINT64] = ROW(u64),
    [JACCL_FLOAT16] = ROW(f16), [JACCL_BFLOAT16] = ROW(bf16),      [JACCL_FLOAT32] = ROW(f32),
    [JACCL_FLOAT64] = ROW(f64), [JACCL_BOOL] = BOOL_ROW(bool),     [JACCL_INT16] = ROW(i16),
    [JACCL_UINT16] = ROW(u16),  [JACCL_COMPLEX64] = CPLX_ROW(c64),
};

/* ---- scaling (AVG) ------------------------------------------------------ */

/*
 * buf[i] = FROM(TO(buf[i]) / divisor).  Floats: one correctly rounded
 * division.  Integers truncate toward zero, as C's / does; 8-, 16- and
 * 32-bit ones divide in float and double, which vectorise where integer
 * division does not.  That is exact: a non-integer x / d is at least 1/d from
 * any integer, and the rounding error, under |x|/d * 2^-24 (float, |x| <=
 * 2^16) or |x|/d * 2^-53 (double, |x| <= 2^32), is smaller, so truncation
 * lands right.  (A float divisor above 2^24 may be rounded, but then |x| / d
 * < 2^-8 and the result is 0 either way.)  Complex64: each float component,
 * the float32 scaling of 2n floats.  Bool has none (no AVG).
 */
#define SCALE(name, T, TO, FROM, D, ATTR)                                                          \
    ATTR static void scale_##name(void *buf, size_t n, int divisor)                                \
    {                                                                                              \
        T *p = buf;                                                                                \
        D div = (D)divisor;                                                                        \
        FOR_EACH(i, n, p[i] = FROM(TO(p[i]) / div));                                               \
    }

#define AS_IS(x) (x)
SCALE(i8, i8_t, (float), (int8_t), float, NO_ATTR)
SCALE(u8, u8_t, (float), (uint8_t), float, NO_ATTR)
SCALE(i16, i16_t, (float), (int16_t), float, NO_ATTR)
SCALE(u16, u16_t, (float), (uint16_t), float, NO_ATTR)
SCALE(i32, i32_t, (double), (int32_t), double, NO_ATTR)
SCALE(u32, u32_t, (double), (uint32_t), double, NO_ATTR)
SCALE(i64, i64_t, AS_IS, AS_IS, int64_t, NO_ATTR)
SCALE(u64, u64_t, AS_IS, AS_IS, uint64_t, NO_ATTR)
SCALE(f32, f32_t, AS_IS, AS_IS, float, NO_ATTR)
SCALE(f64, f64_t, AS_IS, AS_IS, double, NO_ATTR)

#define HALF_SCALE(name)                                                                           \
    static void scale_##name(void *buf, size_t n, int divisor)                                     \
    {                                                                                              \
        h16_t *p = buf;                                                                            \
        float x[HALF_BLOCK], div = (float)divisor;                                                 \
        for (size_t i = 0; i < n; i += HALF_BLOCK) {                                               \
            size_t m = n - i < HALF_BLOCK ? n - i : HALF_BLOCK;                                    \
            name##_widen(x, p + i, m);                                                             \
            FOR_EACH(j, m, x[j] /= div);                                                           \
            name##_narrow(p + i, x, m);                                                            \
        }                                                                                          \
    }

HALF_SCALE(f16)
HALF_SCALE(bf16)

static void scale_c64(void *buf, size_t n, int divisor)
{
    scale_f32(buf, 2 * n, divisor);
}

typedef void (*scale_fn)(void *buf, size_t n, int divisor);

static const scale_fn portable_scale[JACCL_DTYPE_COUNT] = {
    [JACCL_INT8] = scale_i8,       [JACCL_UINT8] = scale_u8,      [JACCL_INT32] = scale_i32,
    [JACCL_UINT32] = scale_u32,    [JACCL_INT64] = scale_i64,     [JACCL_UINT64] = scale_u64,
    [JACCL_FLOAT16] = scale_f16,   [JACCL_BFLOAT16] = scale_bf16, [JACCL_FLOAT32] = scale_f32,
    [JACCL_FLOAT64] = scale_f64,   [JACCL_INT16] = scale_i16,     [JACCL_UINT16] = scale_u16,
    [JACCL_COMPLEX64] = scale_c64,
};

/* ---- x86-64: AVX2 + F16C ------------------------------------------------ */

#ifdef REDUCE_X86
#define SIMD_ATTR __attribute__((target("avx2,f16c")))

/* As canon_nan: NaN lanes become the canonical quiet NaN. */
SIMD_ATTR static inline __m256 v_canon(__m256 r)
{
    __m256 qnan = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fc00000));
    return _mm256_blendv_ps(r, qnan, _mm256_cmp_ps(r, r, _CMP_UNORD_Q));
}

/* Plain + and *: store_f16_canon and store_bf16_canon make their NaNs canonical. */
SIMD_ATTR static inline __m256 v_sum(__m256 x, __m256 y)
{
    return _mm256_add_ps(x, y);
}
SIMD_ATTR static inline __m256 v_prod(__m256 x, __m256 y)
{
    return _mm256_mul_ps(x, y);
}

/* Same rule as f32_min/f32_max: x if x < y (x > y) or x is NaN, else y. */
SIMD_ATTR static inline __m256 v_min(__m256 x, __m256 y)
{
    __m256 take_x =
        _mm256_or_ps(_mm256_cmp_ps(x, y, _CMP_LT_OQ), _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    return _mm256_blendv_ps(y, x, take_x);
}

SIMD_ATTR static inline __m256 v_max(__m256 x, __m256 y)
{
    __m256 take_x =
        _mm256_or_ps(_mm256_cmp_ps(x, y, _CMP_GT_OQ), _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    return _mm256_blendv_ps(y, x, take_x);
}

/* Sixteen halves as float32, in two vectors; which element sits where is up to LOAD/STORE. */
typedef struct {
    __m256 lo, hi;
} v16;

SIMD_ATTR static inline v16 load_f16(const h16_t *p)
{
    return (v16){_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)),
                 _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 8)))};
}

/* Explicit rounding (not MXCSR's): nearest even, like the portable code. */
#define F16C_RNE (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

SIMD_ATTR static inline void store_f16(h16_t *p, v16 v)
{
    _mm_storeu_si128((__m128i *)p, _mm256_cvtps_ph(v.lo, F16C_RNE));
    _mm_storeu_si128((__m128i *)(p + 8), _mm256_cvtps_ph(v.hi, F16C_RNE));
}

/* For sum and product: any NaN becomes 0x7e00, checked on the halves (16 lanes at once). */
SIMD_ATTR static inline void store_f16_canon(h16_t *p, v16 v)
{
    __m256i h = _mm256_set_m128i(_mm256_cvtps_ph(v.hi, F16C_RNE), _mm256_cvtps_ph(v.lo, F16C_RNE));
    __m256i mag = _mm256_and_si256(h, _mm256_set1_epi16(0x7fff));
    __m256i nan = _mm256_cmpgt_epi16(mag, _mm256_set1_epi16(0x7c00));
    h = _mm256_blendv_epi8(h, _mm256_set1_epi16(0x7e00), nan);
    _mm256_storeu_si256((__m256i *)p, h);
}

/*
 * A bfloat16 in the top half of a 32-bit lane is its float32.  Unpacking
 * against zero puts it there in one step; lo gets elements 0-3 and 8-11, hi
 * 4-7 and 12-15, and the pack in store_bf16 puts them back in order.
 */
SIMD_ATTR static inline v16 load_bf16(const h16_t *p)
{
    __m256i v = _mm256_loadu_si256((const __m256i *)p), z = _mm256_setzero_si256();
    return (v16){_mm256_castsi256_ps(_mm256_unpacklo_epi16(z, v)),
                 _mm256_castsi256_ps(_mm256_unpackhi_epi16(z, v))};
}

/* f32_to_bf16's rounding, without its NaN case. */
SIMD_ATTR static inline __m256i round_bf16(__m256i x)
{
    __m256i odd = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
    return _mm256_srli_epi32(_mm256_add_epi32(x, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7fff))),
                             16);
}

/* f32_to_bf16: a NaN keeps its top payload bits and is quieted. */
SIMD_ATTR static inline __m256i to_bf16(__m256 f)
{
    __m256i x = _mm256_castps_si256(f);
    __m256i nan = _mm256_or_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(0x40));
    __m256 is_nan = _mm256_cmp_ps(f, f, _CMP_UNORD_Q);
    return _mm256_blendv_epi8(round_bf16(x), nan, _mm256_castps_si256(is_nan));
}

SIMD_ATTR static inline void store_bf16(h16_t *p, v16 v)
{
    _mm256_storeu_si256((__m256i *)p, _mm256_packus_epi32(to_bf16(v.lo), to_bf16(v.hi)));
}

/* For sum and product: any NaN becomes 0x7fc00000 first, which rounding maps to 0x7fc0. */
SIMD_ATTR static inline void store_bf16_canon(h16_t *p, v16 v)
{
    __m256i lo = round_bf16(_mm256_castps_si256(v_canon(v.lo)));
    __m256i hi = round_bf16(_mm256_castps_si256(v_canon(v.hi)));
    _mm256_storeu_si256((__m256i *)p, _mm256_packus_epi32(lo, hi));
}

/*
 * Sixteen elements at a time; each block is loaded before it is stored, so
 * dst == a or dst == b is fine.  The tail goes through a padded block so
 * every element takes the same path.
 */
#define SIMD_HALF_KERNEL(name, LOAD, VOP, STORE)                                                   \
    SIMD_ATTR static void name(void *dv, const void *av, const void *bv, size_t n)                 \
    {                                                                                              \
        h16_t *d = dv;                                                                             \
        const h16_t *a = av, *b = bv;                                                              \
        size_t i = 0;                                                                              \
        for (; i + 16 <= n; i += 16) {                                                             \
            v16 x = LOAD(a + i), y = LOAD(b + i);                                                  \
            STORE(d + i, (v16){VOP(x.lo, y.lo), VOP(x.hi, y.hi)});                                 \
        }                                                                                          \
        if (i == n) return;                                                                        \
        uint16_t ta[16] = {0}, tb[16] = {0}, td[16];                                               \
        memcpy(ta, a + i, (n - i) * 2);                                                            \
        memcpy(tb, b + i, (n - i) * 2);                                                            \
        v16 x = LOAD(ta), y = LOAD(tb);                                                            \
        STORE(td, (v16){VOP(x.lo, y.lo), VOP(x.hi, y.hi)});                                        \
        memcpy(d + i, td, (n - i) * 2);                                                            \
    }

SIMD_HALF_KERNEL(x_f16_sum, load_f16, v_sum, store_f16_canon)
SIMD_HALF_KERNEL(x_f16_prod, load_f16, v_prod, store_f16_canon)
SIMD_HALF_KERNEL(x_f16_min, load_f16, v_min, store_f16)
SIMD_HALF_KERNEL(x_f16_max, load_f16, v_max, store_f16)
SIMD_HALF_KERNEL(x_bf16_sum, load_bf16, v_sum, store_bf16_canon)
SIMD_HALF_KERNEL(x_bf16_prod, load_bf16, v_prod, store_bf16_canon)
SIMD_HALF_KERNEL(x_bf16_min, load_bf16, v_min, store_bf16)
SIMD_HALF_KERNEL(x_bf16_max, load_bf16, v_max, store_bf16)

/* buf[i] /= divisor, as the portable scale_* (x86 returns x's NaN from x / d). */
#define SIMD_HALF_SCALE(name, LOAD, STORE)                                                         \
    SIMD_ATTR static void name(void *buf, size_t n, int divisor)                                   \
    {                                                                                              \
        h16_t *p = buf;                                                                            \
        __m256 div = _mm256_set1_ps((float)divisor);                                               \
        size_t i = 0;                                                                              \
        for (; i + 16 <= n; i += 16) {                                                             \
            v16 x = LOAD(p + i);                                                                   \
            STORE(p + i, (v16){_mm256_div_ps(x.lo, div), _mm256_div_ps(x.hi, div)});               \
        }                                                                                          \
        if (i == n) return;                                                                        \
        uint16_t t[16] = {0};                                                                      \
        memcpy(t, p + i, (n - i) * 2);                                                             \
        v16 x = LOAD(t);                                                                           \
        STORE(t, (v16){_mm256_div_ps(x.lo, div), _mm256_div_ps(x.hi, div)});                       \
        memcpy(p + i, t, (n - i) * 2);                                                             \
    }

SIMD_HALF_SCALE(x_scale_f16, load_f16, store_f16)
SIMD_HALF_SCALE(x_scale_bf16, load_bf16, store_bf16)

/*
 * The portable loops built again for AVX2: twice as wide, and SSE2 lacks what
 * int64 min/max/prod, int32 prod and uint32 min/max need (they are emulated,
 * or for int64 not vectorised at all).  Same source, same results.  The
 * complex product's multiplies and adds stay apart here too, and AVX2 alone
 * has no FMA anyway.
 */
#define AVX2_ATTR __attribute__((target("avx2")))
KERNELS(i8_avx2, i8, i8_t, AVX2_ATTR)
KERNELS(u8_avx2, u8, u8_t, AVX2_ATTR)
KERNELS(i16_avx2, i16, i16_t, AVX2_ATTR)
KERNELS(u16_avx2, u16, u16_t, AVX2_ATTR)
KERNELS(i32_avx2, i32, i32_t, AVX2_ATTR)
KERNELS(u32_avx2, u32, u32_t, AVX2_ATTR)
KERNELS(i64_avx2, i64, i64_t, AVX2_ATTR)
KERNELS(u64_avx2, u64, u64_t, AVX2_ATTR)
KERNELS(f32_avx2, f32, f32_t, AVX2_ATTR)
KERNELS(f64_avx2, f64, f64_t, AVX2_ATTR)
BOOL_KERNELS(bool_avx2, AVX2_ATTR)
CPLX_KERNELS(c64_avx2, f32_avx2, AVX2_ATTR)

static const jaccl_reduce_fn simd_kernels[JACCL_DTYPE_COUNT][JACCL_AVG] = {
    [JACCL_INT8] = ROW(i8_avx2),
    [JACCL_UINT8] = ROW(u8_avx2),
    [JACCL_INT32] = ROW(i32_avx2),
    [JACCL_UINT32] = ROW(u32_avx2),
    [JACCL_INT64] = ROW(i64_avx2),
    [JACCL_UINT64] = ROW(u64_avx2),
    [JACCL_FLOAT16] = {x_f16_sum, x_f16_prod, x_f16_min, x_f16_max},
    [JACCL_BFLOAT16] = {x_bf16_sum, x_bf16_prod, x_bf16_min, x_bf16_max},
    [JACCL_FLOAT32] = ROW(f32_avx2),
    [JACCL_FLOAT64] = ROW(f64_avx2),
    [JACCL_BOOL] = BOOL_ROW(bool_avx2),
    [JACCL_INT16] = ROW(i16_avx2),
    [JACCL_UINT16] = ROW(u16_avx2),
    [JACCL_COMPLEX64] = CPLX_ROW(c64_avx2),
};

static const scale_fn simd_scale[JACCL_DTYPE_COUNT] = {
    [JACCL_FLOAT16] = x_scale_f16,
    [JACCL_BFLOAT16] = x_scale_bf16,
};
#endif

/* ---- dispatch ----------------------------------------------------------- */

/* Test-only hook (not in reduce.h): nonzero forces the portable kernels. */
void jaccl_reduce_force_portable(int on);

static atomic_int force_portable;

void jaccl_reduce_force_portable(int on)
{
    atomic_store(&force_portable, on != 0);
}

#ifdef REDUCE_X86
static int cpu_has_simd(void)
{
    /* cpu_supports("avx2") includes the OS saving ymm state; F16C is read
     * directly because Clang's cpu_supports does not know it. */
    unsigned eax, ebx, ecx, edx;
    __builtin_cpu_init(); /* idempotent; needed if we run before libgcc's constructor */
    return __builtin_cpu_supports("avx2") && __get_cpuid(1, &eax, &ebx, &ecx, &edx) &&
           (ecx & bit_F16C);
}
#endif

/* Asked once: cpuid is slow, and in a virtual machine it traps to the host. */
static int use_simd(void)
{
#ifdef REDUCE_X86
    static atomic_int has = -1; /* not asked yet */
    if (atomic_load_explicit(&force_portable, memory_order_relaxed)) return 0;
    int h = atomic_load_explicit(&has, memory_order_relaxed);
    if (h < 0) atomic_store_explicit(&has, h = cpu_has_simd(), memory_order_relaxed);
    return h;
#else
    return 0;
#endif
}

jaccl_reduce_fn jaccl_reduce_get(jaccl_dtype_t dtype, jaccl_op_t op)
{
    if ((unsigned)dtype >= JACCL_DTYPE_COUNT || (unsigned)op >= JACCL_OP_COUNT) return NULL;
    if (op == JACCL_AVG) {
        if (!portable_scale[dtype]) return NULL; /* AVG needs a scale: none for bool */
        op = JACCL_SUM; /* the division comes later, in jaccl_reduce_scale */
    }
#ifdef REDUCE_X86
    if (simd_kernels[dtype][op] && use_simd()) return simd_kernels[dtype][op];
#endif
    return portable_kernels[dtype][op];
}

/*
 * A divisor below 1 cannot come from a communicator size; leave buf alone.
 * So too for bool, which has no AVG.
 */
void jaccl_reduce_scale(void *buf, size_t count, jaccl_dtype_t dtype, int divisor)
{
    if ((unsigned)dtype >= JACCL_DTYPE_COUNT || divisor <= 1 || count == 0) return;
    if (!portable_scale[dtype]) return;
#ifdef REDUCE_X86
    if (simd_scale[dtype] && use_simd()) {
        simd_scale[dtype](buf, count, divisor);
        return;
    }
#endif
    portable_scale[dtype](buf, count, divisor);
}
