/* Element-wise reduction kernels for every dtype x op. */
#ifndef JACCL_UTIL_REDUCE_H
#define JACCL_UTIL_REDUCE_H

#include "jaccl.h"

#include <stddef.h>
#include <stdint.h>

/*
 * dst[i] = a[i] op b[i] for i < count.  dst may be exactly a or exactly b
 * (same pointer); otherwise no overlap.  AVG reduces as SUM: the caller
 * divides once at the end with jaccl_reduce_scale.  Float16 and bfloat16 are
 * computed in float32 and rounded to nearest even.  Integer (8 to 64 bits)
 * sums and products wrap.  Min/max with a NaN operand yield NaN.  Bool: any
 * nonzero byte is true, SUM and MAX are OR, PROD and MIN are AND, results
 * are 0 or 1.  Complex64 (float32 real, imaginary): SUM per component, PROD
 * (ac - bd) + (ad + bc)i with every product and sum rounded to float32 (no
 * FMA).
 */
typedef void (*jaccl_reduce_fn)(void *dst, const void *a, const void *b, size_t count);

/*
 * The kernel for dtype x op, or NULL if either is out of range or the
 * combination is not defined: BOOL x AVG, COMPLEX64 x MIN and MAX.
 */
jaccl_reduce_fn jaccl_reduce_get(jaccl_dtype_t dtype, jaccl_op_t op);

/*
 * buf[i] /= divisor for i < count (AVG's last step; integers truncate toward
 * zero, complex64 divides each component).  Does nothing for BOOL.
 */
void jaccl_reduce_scale(void *buf, size_t count, jaccl_dtype_t dtype, int divisor);

/* Half-precision conversions, round to nearest even; exposed for tests. */
float jaccl_f16_to_f32(uint16_t h);
uint16_t jaccl_f32_to_f16(float f);
float jaccl_bf16_to_f32(uint16_t h);
uint16_t jaccl_f32_to_bf16(float f);

#endif
