/* Element access for every dtype, written independently of src/util/reduce.c. */
#include "values.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Kinds: 'i' signed integer, 'u' unsigned, 'f' real float, 'b' bool, 'c' complex. */
static const struct {
    const char *name;
    unsigned char size;
    char kind;
} info[JACCL_DTYPE_COUNT] = {
    [JACCL_INT8] = {"int8", 1, 'i'},       [JACCL_UINT8] = {"uint8", 1, 'u'},
    [JACCL_INT16] = {"int16", 2, 'i'},     [JACCL_UINT16] = {"uint16", 2, 'u'},
    [JACCL_INT32] = {"int32", 4, 'i'},     [JACCL_UINT32] = {"uint32", 4, 'u'},
    [JACCL_INT64] = {"int64", 8, 'i'},     [JACCL_UINT64] = {"uint64", 8, 'u'},
    [JACCL_FLOAT16] = {"float16", 2, 'f'}, [JACCL_BFLOAT16] = {"bfloat16", 2, 'f'},
    [JACCL_FLOAT32] = {"float32", 4, 'f'}, [JACCL_FLOAT64] = {"float64", 8, 'f'},
    [JACCL_BOOL] = {"bool", 1, 'b'},       [JACCL_COMPLEX64] = {"complex64", 8, 'c'},
};

static char kind(jaccl_dtype_t dt)
{
    return (unsigned)dt < JACCL_DTYPE_COUNT ? info[dt].kind : 0;
}

unsigned mp_dtypes_known(void)
{
    unsigned m = 0;
    for (int d = 0; d < JACCL_DTYPE_COUNT; d++)
        if (info[d].kind) m |= MP_BIT(d);
    return m;
}

const char *mp_dtype_name(jaccl_dtype_t dt)
{
    return kind(dt) ? info[dt].name : "?";
}

size_t mp_dtype_size(jaccl_dtype_t dt)
{
    return kind(dt) ? info[dt].size : 0;
}

const char *mp_op_name(jaccl_op_t op)
{
    static const char *const names[JACCL_OP_COUNT] = {"sum", "prod", "min", "max", "avg"};
    return (unsigned)op < JACCL_OP_COUNT ? names[op] : "?";
}

int mp_is_int(jaccl_dtype_t dt)
{
    return kind(dt) == 'i' || kind(dt) == 'u';
}

int mp_is_float(jaccl_dtype_t dt)
{
    return kind(dt) == 'f';
}

int mp_is_signed(jaccl_dtype_t dt)
{
    return kind(dt) == 'i';
}

int mp_is_bool(jaccl_dtype_t dt)
{
    return kind(dt) == 'b';
}

int mp_is_complex(jaccl_dtype_t dt)
{
    return kind(dt) == 'c';
}

int mp_op_defined(jaccl_dtype_t dt, jaccl_op_t op)
{
    if (mp_is_bool(dt)) return op != JACCL_AVG;
    if (mp_is_complex(dt)) return op == JACCL_SUM || op == JACCL_PROD || op == JACCL_AVG;
    return kind(dt) != 0;
}

int mp_mant_bits(jaccl_dtype_t dt)
{
    switch (dt) {
    case JACCL_FLOAT16:
        return 10;
    case JACCL_BFLOAT16:
        return 7;
    case JACCL_FLOAT32:
        return 23;
    default:
        return 52;
    }
}

double mp_eps(jaccl_dtype_t dt)
{
    return ldexp(1.0, -mp_mant_bits(dt) - 1);
}

static size_t esize(jaccl_dtype_t dt)
{
    return mp_dtype_size(dt);
}

uint64_t mp_norm_int(jaccl_dtype_t dt, uint64_t v)
{
    unsigned bits = 8 * (unsigned)esize(dt);
    if (bits == 0 || bits >= 64) return v;
    uint64_t mask = (1ull << bits) - 1;
    v &= mask;
    if (mp_is_signed(dt) && (v >> (bits - 1))) v |= ~mask; /* sign-extend */
    return v;
}

uint64_t mp_load_int(jaccl_dtype_t dt, const void *buf, size_t i)
{
    size_t es = esize(dt);
    uint64_t v = 0;
    memcpy(&v, (const char *)buf + i * es, es); /* little-endian host */
    return mp_norm_int(dt, v);
}

void mp_store_int(jaccl_dtype_t dt, void *buf, size_t i, uint64_t v)
{
    size_t es = esize(dt);
    memcpy((char *)buf + i * es, &v, es);
}

static double f16_decode(uint16_t h)
{
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return (h & 0x8000) ? -v : v;
}

/* Exact values only: normal numbers and zero (the tests make no subnormals). */
static uint16_t f16_encode(double v)
{
    uint16_t s = signbit(v) ? 0x8000 : 0;
    int e;
    if (v == 0) return s;
    double m = frexp(fabs(v), &e); /* |v| = m * 2^e, m in [0.5, 1) */
    int be = e - 1 + 15;
    if (be <= 0 || be >= 31) return 0x7e00; /* out of range: a NaN, caught by the caller */
    return (uint16_t)(s | (be << 10) | (uint16_t)((m * 2 - 1) * 1024));
}

static double bf16_decode(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

static uint16_t bf16_encode(double v)
{
    float f = (float)v;
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return (uint16_t)(u >> 16);
}

double mp_load_float(jaccl_dtype_t dt, const void *buf, size_t i)
{
    const char *p = (const char *)buf + i * esize(dt);
    uint16_t h;
    float f;
    double d;
    switch (dt) {
    case JACCL_FLOAT16:
        memcpy(&h, p, 2);
        return f16_decode(h);
    case JACCL_BFLOAT16:
        memcpy(&h, p, 2);
        return bf16_decode(h);
    case JACCL_FLOAT32:
        memcpy(&f, p, 4);
        return f;
    default:
        memcpy(&d, p, 8);
        return d;
    }
}

void mp_store_float(jaccl_dtype_t dt, void *buf, size_t i, double v)
{
    char *p = (char *)buf + i * esize(dt);
    uint16_t h;
    float f = (float)v;
    switch (dt) {
    case JACCL_FLOAT16:
        h = isnan(v) ? 0x7e00 : f16_encode(v);
        memcpy(p, &h, 2);
        break;
    case JACCL_BFLOAT16:
        h = bf16_encode(v);
        memcpy(p, &h, 2);
        break;
    case JACCL_FLOAT32:
        memcpy(p, &f, 4);
        break;
    default:
        memcpy(p, &v, 8);
        break;
    }
    if (!isnan(v) && mp_load_float(dt, buf, i) != v) {
        fprintf(stderr, "test bug: %.17g is not exact in %s\n", v, mp_dtype_name(dt));
        abort();
    }
}

double mp_rand_float(jaccl_dtype_t dt, uint64_t h, int emin, int emax)
{
    int p = mp_mant_bits(dt);
    uint64_t mant = (h >> 12) & ((1ull << p) - 1);
    int e = emin + (int)(((h >> 1) & 0x3ff) % (uint64_t)(emax - emin + 1));
    /* The double (-1)^s * 1.mant * 2^e, built from its fields (no libm on the hot path). */
    uint64_t bits = (h & 1) << 63 | (uint64_t)(e + 1023) << 52 | mant << (52 - p);
    double v;
    memcpy(&v, &bits, sizeof(v));
    return v;
}
