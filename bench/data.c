/*
 * Verifiable data for the check phase.  Every input is a small non-negative
 * integer (or a power of two for PROD) chosen so that the exact result of the
 * collective is representable in the dtype: any reduction order then gives the
 * same bits, and a single wrong element is caught without tolerances (except
 * floating-point AVG, whose final division may round).
 *
 * Bool inputs are 0 or 1 and the library's results are 0 or 1, so bytes are
 * compared as they are.  For SUM/MAX (OR) rank r sets index i where
 * (i + r) % period == 0, for PROD/MIN (AND) it clears those: with
 * period = nranks + 1 each such index is owned by one rank, so a missing
 * contribution flips the result.  Copies of bool use the bit parity of the
 * usual value.  Complex64 has the usual value as its real part and another
 * small integer as its imaginary part; its PROD factors are 1 or 2i, whose
 * products 2^k i^k are exact in any order.
 *
 * The receive buffer is poisoned with 0xff bytes before the checked call: that
 * is NaN for floating types, -1 or the type's maximum for integers and 255
 * for bool, none of which is ever expected, so elements the library did not
 * write are counted.
 */
#include "bench.h"

#include <math.h>
#include <string.h>

/* Mismatches printed per check and rank: enough to see a pattern, not a flood. */
#define MAX_REPORTED 5

/* One element; im is 0 except for complex64. */
typedef struct {
    double re, im;
} value_t;

/* Largest integer result that is exact in dtype and never equals the poison. */
static double exact_limit(jaccl_dtype_t dtype)
{
    switch (dtype) {
    case JACCL_INT8:
        return 127;
    case JACCL_UINT8:
        return 254;
    case JACCL_BOOL:
        return 1;
    case JACCL_INT16:
        return 32767;
    case JACCL_UINT16:
        return 65534;
    case JACCL_INT32:
    case JACCL_UINT32:
        return 2147483647.0;
    case JACCL_FLOAT16:
        return 2048;
    case JACCL_BFLOAT16:
        return 256;
    case JACCL_FLOAT32:
    case JACCL_COMPLEX64:
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
    case JACCL_INT16:
        return 14;
    case JACCL_UINT16:
        return 15;
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
    switch (dtype) {
    case JACCL_FLOAT16:
    case JACCL_BFLOAT16:
    case JACCL_FLOAT32:
    case JACCL_FLOAT64:
    case JACCL_COMPLEX64:
        return 1;
    default:
        return 0;
    }
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
    case JACCL_COMPLEX64:
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
    if (!opts_coll_reduces(coll) || dtype == JACCL_BOOL) {
        /* Copies: any representable value will do; 251 is prime to mix ranks. */
        p->modulus = limit < 251 && dtype != JACCL_BOOL ? (size_t)limit : 251;
        p->period = (size_t)nranks + 1; /* bool reductions: see the top */
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

static int parity(size_t k)
{
    int bit = 0;
    for (; k != 0; k &= k - 1) bit ^= 1;
    return bit;
}

static value_t real(double re)
{
    value_t v = {re, 0.0};
    return v;
}

/* The op the check folds with: bool's SUM is OR (MAX on 0/1), its PROD AND (MIN). */
static jaccl_op_t fold_op(const bench_pattern_t *p)
{
    if (p->dtype != JACCL_BOOL) return p->op;
    return p->op == JACCL_SUM ? JACCL_MAX : p->op == JACCL_PROD ? JACCL_MIN : p->op;
}

static value_t reduce_input(const bench_pattern_t *p, size_t r, size_t i)
{
    int hit = (i + r) % p->period == 0;
    if (p->dtype == JACCL_BOOL) return real(fold_op(p) == JACCL_MAX ? hit : !hit);
    value_t two_i = {0.0, 2.0};
    if (p->dtype == JACCL_COMPLEX64) return hit ? two_i : real(1.0);
    return real(hit ? 2.0 : 1.0);
}

static value_t input_value(const bench_pattern_t *p, int rank, size_t i)
{
    size_t r = (size_t)rank;
    int reduces = opts_coll_reduces(p->coll);
    if (reduces && (p->op == JACCL_PROD || p->dtype == JACCL_BOOL)) return reduce_input(p, r, i);
    size_t k = (7 * r + i) % p->modulus;
    if (p->dtype == JACCL_BOOL) return real(parity(k));
    value_t v = {(double)k, (double)((3 * r + 5 * i + 1) % p->modulus)};
    return p->dtype == JACCL_COMPLEX64 ? v : real(v.re);
}

static value_t fold(jaccl_op_t op, value_t acc, value_t v)
{
    value_t out = {acc.re + v.re, acc.im + v.im}; /* SUM, AVG */
    switch (op) {
    case JACCL_PROD:
        out.re = acc.re * v.re - acc.im * v.im;
        out.im = acc.re * v.im + acc.im * v.re;
        return out;
    case JACCL_MIN:
        return v.re < acc.re ? v : acc;
    case JACCL_MAX:
        return v.re > acc.re ? v : acc;
    default:
        return out;
    }
}

static value_t expected_value(const bench_pattern_t *p, size_t i)
{
    value_t acc = input_value(p, 0, i);
    for (int r = 1; r < p->nranks; r++) acc = fold(fold_op(p), acc, input_value(p, r, i));
    if (p->op != JACCL_AVG) return acc;
    /* Integer AVG truncates; the sum is a small non-negative integer. */
    if (!is_float(p->dtype)) return real((double)((uint64_t)acc.re / (uint64_t)p->nranks));
    value_t avg = {acc.re / p->nranks, acc.im / p->nranks};
    return avg;
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

static void store(jaccl_dtype_t dtype, void *buf, size_t i, value_t value)
{
    double v = value.re;
    switch (dtype) {
    case JACCL_INT8:
        ((int8_t *)buf)[i] = (int8_t)v;
        break;
    case JACCL_UINT8:
    case JACCL_BOOL:
        ((uint8_t *)buf)[i] = (uint8_t)v;
        break;
    case JACCL_INT16:
        ((int16_t *)buf)[i] = (int16_t)v;
        break;
    case JACCL_UINT16:
        ((uint16_t *)buf)[i] = (uint16_t)v;
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
    case JACCL_COMPLEX64:
        ((float *)buf)[2 * i] = (float)v;
        ((float *)buf)[2 * i + 1] = (float)value.im;
        break;
    default:
        ((double *)buf)[i] = v;
        break;
    }
}

static double load_real(jaccl_dtype_t dtype, const void *buf, size_t i)
{
    switch (dtype) {
    case JACCL_INT8:
        return ((const int8_t *)buf)[i];
    case JACCL_UINT8:
    case JACCL_BOOL: /* the byte as it is: results must be 0 or 1 */
        return ((const uint8_t *)buf)[i];
    case JACCL_INT16:
        return ((const int16_t *)buf)[i];
    case JACCL_UINT16:
        return ((const uint16_t *)buf)[i];
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

static value_t load(jaccl_dtype_t dtype, const void *buf, size_t i)
{
    if (dtype != JACCL_COMPLEX64) return real(load_real(dtype, buf, i));
    value_t v = {((const float *)buf)[2 * i], ((const float *)buf)[2 * i + 1]};
    return v;
}

void data_fill(const bench_pattern_t *p, void *buf, size_t count, int rank)
{
    for (size_t i = 0; i < count; i++) store(p->dtype, buf, i, input_value(p, rank, i));
}

static int close_enough(const bench_pattern_t *p, double got, double want)
{
    return got == want || fabs(got - want) <= fabs(want) * p->tol;
}

/* Returns 1 for a mismatch, reporting the first few of each check. */
static int mismatch(const bench_pattern_t *p, value_t got, value_t want, size_t i, uint64_t seen,
                    const char *label)
{
    if (close_enough(p, got.re, want.re) && close_enough(p, got.im, want.im)) return 0;
    if (seen >= MAX_REPORTED) return 1;
    if (p->dtype == JACCL_COMPLEX64)
        fprintf(stderr, "jaccl-bench: %s: element %zu is (%.9g, %.9g), expected (%.9g, %.9g)\n",
                label, i, got.re, got.im, want.re, want.im);
    else
        fprintf(stderr, "jaccl-bench: %s: element %zu is %.17g, expected %.17g\n", label, i, got.re,
                want.re);
    return 1;
}

uint64_t data_check_reduce_at(const bench_pattern_t *p, const void *buf, size_t count, size_t first,
                              const char *label)
{
    uint64_t wrong = 0;
    for (size_t i = 0; i < count; i++)
        wrong += mismatch(p, load(p->dtype, buf, i), expected_value(p, first + i), i, wrong, label);
    return wrong;
}

uint64_t data_check_input_at(const bench_pattern_t *p, const void *buf, size_t count, int rank,
                             size_t first, const char *label)
{
    uint64_t wrong = 0;
    for (size_t i = 0; i < count; i++)
        wrong +=
            mismatch(p, load(p->dtype, buf, i), input_value(p, rank, first + i), i, wrong, label);
    return wrong;
}

uint64_t data_check_reduce(const bench_pattern_t *p, const void *buf, size_t count,
                           const char *label)
{
    return data_check_reduce_at(p, buf, count, 0, label);
}

uint64_t data_check_input(const bench_pattern_t *p, const void *buf, size_t count, int rank,
                          const char *label)
{
    return data_check_input_at(p, buf, count, rank, 0, label);
}

/* Mismatches of buf against rank's input from index first; what names the source. */
static uint64_t check_from(const bench_pattern_t *p, const char *buf, size_t count, int rank,
                           size_t first, const char *label, const char *what)
{
    char from[192];
    snprintf(from, sizeof from, "%s, %s %d", label, what, rank);
    return data_check_input_at(p, buf, count, rank, first, from);
}

/* Block r of buf is rank r's input from index first (allgather, alltoall). */
static uint64_t check_blocks(const bench_pattern_t *p, const char *buf, size_t count,
                             size_t elemsize, size_t first, const char *label)
{
    uint64_t wrong = 0;
    for (int r = 0; r < p->nranks; r++)
        wrong += check_from(p, buf + (size_t)r * count * elemsize, count, r, first, label,
                            "block of rank");
    return wrong;
}

uint64_t data_check_output(const bench_pattern_t *p, const void *out, size_t count, size_t elemsize,
                           int rank, int root, const char *label)
{
    size_t mine = (size_t)rank * count; /* index of this rank's block */
    int prev = (rank + p->nranks - 1) % p->nranks;
    switch (p->coll) {
    case COLL_ALLREDUCE:
        return data_check_reduce(p, out, count, label);
    case COLL_REDUCESCATTER:
        return data_check_reduce_at(p, out, count, mine, label);
    case COLL_REDUCE: /* the other ranks' output is unspecified */
        return rank == root ? data_check_reduce(p, out, count, label) : 0;
    case COLL_BROADCAST:
        return check_from(p, out, count, root, 0, label, "from root");
    case COLL_SENDRECV:
        return check_from(p, out, count, prev, 0, label, "from rank");
    case COLL_ALLGATHER:
        return check_blocks(p, out, count, elemsize, 0, label);
    case COLL_ALLTOALL:
        return check_blocks(p, out, count, elemsize, mine, label);
    case COLL_P2P: /* p2p.c checks its own */
        return 0;
    }
    return 0;
}
