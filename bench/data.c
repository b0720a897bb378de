/*
 * Verifiable data for the check phase.  Every input is a small non-negative
 * integer (or a power of two for PROD) chosen so that the exact result of the
 * collective is representable in the dtype: any reduction order then gives the
 * same bits, and a single wrong element is caught without tolerances (except
 * floating-point AVG, whose final division may round).
 *
 * The receive buffer is poisoned with 0xff bytes before the checked call: that
 * is NaN for floating types and -1 or the type's maximum for integers, none of
 * which is ever expected, so elements the library did not write are counted.
 */
#include "bench.h"

#include <math.h>
#include <string.h>

/* Mismatches printed per check and rank: enough to see a pattern, not a flood. */
#define MAX_REPORTED 5

/* Largest integer result that is exact in dtype and never equals the poison. */
static double exact_limit(jaccl_dtype_t dtype)
{
    switch (dtype) {
    case JACCL_INT8:
        return 127;
    case JACCL_UINT8:
        return 254;
    case JACCL_INT32:
    case JACCL_UINT32:
        return 2147483647.0;
    case JACCL_FLOAT16:
        return 2048;
    case JACCL_BFLOAT16:
        return 256;
    case JACCL_FLOAT32:
        return 16777216.0;
    default: /* 64-bit types: expectations are computed in double */
        return 9007199254740992.0;
    }
}

/* Largest power of two a PROD result may reach in dtype. */
static int max_doublings(jaccl_dtype_t dtype)
{
    switch (dtype) {
    case JACCL_INT8:
        return 6;
    case JACCL_UINT8:
        return 7;
    case JACCL_INT32:
        return 30;
    case JACCL_UINT32:
        return 31;
    case JACCL_INT64:
        return 62;
    case JACCL_UINT64:
        return 63;
    case JACCL_FLOAT16:
        return 15;
    default:
        return 60;
    }
}

static int is_float(jaccl_dtype_t dtype)
{
    return dtype >= JACCL_FLOAT16;
}

/* Relative error of one rounding in dtype, for AVG's division. */
static double rounding_tolerance(jaccl_dtype_t dtype)
{
    switch (dtype) {
    case JACCL_FLOAT16:
        return ldexp(1.0, -10);
    case JACCL_BFLOAT16:
        return ldexp(1.0, -7);
    case JACCL_FLOAT32:
        return ldexp(1.0, -23);
    default:
        return ldexp(1.0, -52);
    }
}

void data_pattern_init(bench_pattern_t *p, bench_coll_t coll, jaccl_dtype_t dtype, jaccl_op_t op,
                       int nranks)
{
    double limit = exact_limit(dtype);
    memset(p, 0, sizeof *p);
    p->coll = coll;
    p->dtype = dtype;
    p->op = op;
    p->nranks = nranks;
    if (coll != COLL_ALLREDUCE) {
        /* Copies only: any representable value will do; 251 is prime to mix ranks. */
        p->modulus = limit < 251 ? (size_t)limit : 251;
        return;
    }
    /* nranks * (modulus - 1) <= limit keeps SUM and AVG exact; 16 keeps MIN/MAX varied. */
    double m = floor(limit / nranks) + 1;
    p->modulus = m < 16 ? (size_t)m : 16;
    /* At most ceil(nranks / period) ranks contribute a 2 to any element. */
    size_t d = (size_t)max_doublings(dtype);
    size_t period = ((size_t)nranks + d - 1) / d;
    p->period = period < 3 ? 3 : period;
    if (op == JACCL_AVG && is_float(dtype)) p->tol = rounding_tolerance(dtype);
}

static double input_value(const bench_pattern_t *p, int rank, size_t i)
{
    size_t r = (size_t)rank;
    if (p->coll == COLL_ALLREDUCE && p->op == JACCL_PROD) return (i + r) % p->period ? 1.0 : 2.0;
    return (double)((7 * r + i) % p->modulus);
}

static double expected_value(const bench_pattern_t *p, size_t i)
{
    double acc = input_value(p, 0, i);
    for (int r = 1; r < p->nranks; r++) {
        double v = input_value(p, r, i);
        switch (p->op) {
        case JACCL_PROD:
            acc *= v;
            break;
        case JACCL_MIN:
            acc = v < acc ? v : acc;
            break;
        case JACCL_MAX:
            acc = v > acc ? v : acc;
            break;
        default: /* SUM, AVG */
            acc += v;
            break;
        }
    }
    if (p->op != JACCL_AVG) return acc;
    /* Integer AVG truncates; the sum is a small non-negative integer. */
    if (!is_float(p->dtype)) return (double)((uint64_t)acc / (uint64_t)p->nranks);
    return acc / p->nranks;
}

static uint16_t float_to_half(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t a = x & 0x7fffffff;
    if (a > 0x7f800000) return sign | 0x7e00;  /* NaN */
    if (a >= 0x477ff000) return sign | 0x7c00; /* rounds to infinity (incl. infinity) */
    if (a < 0x38800000) {                      /* half subnormal: multiples of 2^-24 */
        float mag;
        memcpy(&mag, &a, sizeof mag);
        return sign | (uint16_t)nearbyintf(mag * 16777216.0f);
    }
    uint32_t h = (a >> 13) - (112u << 10); /* rebias exponent 127 -> 15 */
    uint32_t rest = a & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++; /* round to nearest even */
    return sign | (uint16_t)h;
}

static double half_to_double(uint16_t h)
{
    int e = (h >> 10) & 0x1f;
    int m = h & 0x3ff;
    double v;
    if (e == 0)
        v = ldexp(m, -24);
    else if (e == 31)
        v = m ? NAN : INFINITY;
    else
        v = ldexp(m | 0x400, e - 25);
    return (h & 0x8000) ? -v : v;
}

static uint16_t float_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    x += 0x7fff + ((x >> 16) & 1);                                          /* nearest even */
    return (uint16_t)(x >> 16);
}

static double bf16_to_double(uint16_t b)
{
    uint32_t x = (uint32_t)b << 16;
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

static void store(jaccl_dtype_t dtype, void *buf, size_t i, double v)
{
    switch (dtype) {
    case JACCL_INT8:
        ((int8_t *)buf)[i] = (int8_t)v;
        break;
    case JACCL_UINT8:
        ((uint8_t *)buf)[i] = (uint8_t)v;
        break;
    case JACCL_INT32:
        ((int32_t *)buf)[i] = (int32_t)v;
        break;
    case JACCL_UINT32:
        ((uint32_t *)buf)[i] = (uint32_t)v;
        break;
    case JACCL_INT64:
        ((int64_t *)buf)[i] = (int64_t)v;
        break;
    case JACCL_UINT64:
        ((uint64_t *)buf)[i] = (uint64_t)v;
        break;
    case JACCL_FLOAT16:
        ((uint16_t *)buf)[i] = float_to_half((float)v);
        break;
    case JACCL_BFLOAT16:
        ((uint16_t *)buf)[i] = float_to_bf16((float)v);
        break;
    case JACCL_FLOAT32:
        ((float *)buf)[i] = (float)v;
        break;
    default:
        ((double *)buf)[i] = v;
        break;
    }
}

static double load(jaccl_dtype_t dtype, const void *buf, size_t i)
{
    switch (dtype) {
    case JACCL_INT8:
        return ((const int8_t *)buf)[i];
    case JACCL_UINT8:
        return ((const uint8_t *)buf)[i];
    case JACCL_INT32:
        return ((const int32_t *)buf)[i];
    case JACCL_UINT32:
        return ((const uint32_t *)buf)[i];
    case JACCL_INT64:
        return (double)((const int64_t *)buf)[i];
    case JACCL_UINT64:
        return (double)((const uint64_t *)buf)[i];
    case JACCL_FLOAT16:
        return half_to_double(((const uint16_t *)buf)[i]);
    case JACCL_BFLOAT16:
        return bf16_to_double(((const uint16_t *)buf)[i]);
    case JACCL_FLOAT32:
        return ((const float *)buf)[i];
    default:
        return ((const double *)buf)[i];
    }
}

void data_fill(const bench_pattern_t *p, void *buf, size_t count, int rank)
{
    for (size_t i = 0; i < count; i++) store(p->dtype, buf, i, input_value(p, rank, i));
}

/* Returns 1 for a mismatch, reporting the first few of each check. */
static int mismatch(const bench_pattern_t *p, double got, double want, size_t i, uint64_t seen,
                    const char *label)
{
    if (got == want || fabs(got - want) <= want * p->tol) return 0;
    if (seen < MAX_REPORTED)
        fprintf(stderr, "jaccl-bench: %s: element %zu is %.17g, expected %.17g\n", label, i, got,
                want);
    return 1;
}

uint64_t data_check_reduce(const bench_pattern_t *p, const void *buf, size_t count,
                           const char *label)
{
    uint64_t wrong = 0;
    for (size_t i = 0; i < count; i++)
        wrong += mismatch(p, load(p->dtype, buf, i), expected_value(p, i), i, wrong, label);
    return wrong;
}

uint64_t data_check_input(const bench_pattern_t *p, const void *buf, size_t count, int rank,
                          const char *label)
{
    uint64_t wrong = 0;
    for (size_t i = 0; i < count; i++)
        wrong += mismatch(p, load(p->dtype, buf, i), input_value(p, rank, i), i, wrong, label);
    return wrong;
}
