/*
 * Element access for every jaccl dtype, independent of the library: loads
 * and stores through double (floats) or 64-bit patterns (integers), with
 * half-precision formats encoded and decoded here.
 */
#ifndef JACCL_TESTS_MP_VALUES_H
#define JACCL_TESTS_MP_VALUES_H

#include "jaccl.h"

#include <stddef.h>
#include <stdint.h>

#define MP_BIT(x) (1u << (x))
#define MP_INTS                                                                                    \
    (MP_BIT(JACCL_INT8) | MP_BIT(JACCL_UINT8) | MP_BIT(JACCL_INT16) | MP_BIT(JACCL_UINT16) |       \
     MP_BIT(JACCL_INT32) | MP_BIT(JACCL_UINT32) | MP_BIT(JACCL_INT64) | MP_BIT(JACCL_UINT64))
#define MP_FLOATS                                                                                  \
    (MP_BIT(JACCL_FLOAT16) | MP_BIT(JACCL_BFLOAT16) | MP_BIT(JACCL_FLOAT32) | MP_BIT(JACCL_FLOAT64))
#define MP_DTYPE_ALL (MP_INTS | MP_FLOATS | MP_BIT(JACCL_BOOL) | MP_BIT(JACCL_COMPLEX64))
#define MP_OP_ALL    ((1u << JACCL_OP_COUNT) - 1)

/* Bit mask of the dtypes these helpers know: MP_DTYPE_ALL unless the header grew. */
unsigned mp_dtypes_known(void);

/* Name and size in bytes, from this file's own table ("?" and 0 if unknown). */
const char *mp_dtype_name(jaccl_dtype_t dt);
size_t mp_dtype_size(jaccl_dtype_t dt);
const char *mp_op_name(jaccl_op_t op);

int mp_is_int(jaccl_dtype_t dt);   /* (u)int8..64 */
int mp_is_float(jaccl_dtype_t dt); /* float16, bfloat16, float32, float64 */
int mp_is_signed(jaccl_dtype_t dt);
int mp_is_bool(jaccl_dtype_t dt);
int mp_is_complex(jaccl_dtype_t dt);
/* Whether the header defines op for dt (bool has no AVG, complex no MIN/MAX). */
int mp_op_defined(jaccl_dtype_t dt, jaccl_op_t op);
/* Explicit mantissa bits of a float dtype (10, 7, 23, 52). */
int mp_mant_bits(jaccl_dtype_t dt);
/* Unit roundoff of a float dtype. */
double mp_eps(jaccl_dtype_t dt);

/* Integer element i as 64 bits: sign-extended for signed dtypes, else zero-extended. */
uint64_t mp_load_int(jaccl_dtype_t dt, const void *buf, size_t i);
/* Store the low bits of v. */
void mp_store_int(jaccl_dtype_t dt, void *buf, size_t i, uint64_t v);
/* v truncated to dt's width, then extended as mp_load_int would. */
uint64_t mp_norm_int(jaccl_dtype_t dt, uint64_t v);

double mp_load_float(jaccl_dtype_t dt, const void *buf, size_t i);
/* Store v, which must be exactly representable in dt (aborts otherwise) or a NaN. */
void mp_store_float(jaccl_dtype_t dt, void *buf, size_t i, double v);

/* (1 + m) * 2^e with m random in dt's precision, e in [emin, emax], random sign. */
double mp_rand_float(jaccl_dtype_t dt, uint64_t h, int emin, int emax);

#endif
