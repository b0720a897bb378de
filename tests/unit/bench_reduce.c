/*
 * Bandwidth of the reduction kernels, in place (dst == a, as the collectives
 * use them), against memcpy and a plain float32 a[i] += b[i] loop built with
 * the same flags (and, on x86-64, built for AVX2 as well, as the kernels are
 * when the CPU has it).  GB/s counts every byte read and written (3 per element
 * byte for a kernel, 2 for memcpy); Gelem/s counts elements reduced.
 *
 * usage: bench_reduce [bytes-per-buffer ...]   (default: 256 KiB and 64 MiB)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/reduce.h"
#include "util/time.h"

/* Test-only hook defined in reduce.c: nonzero forces the portable kernels. */
void jaccl_reduce_force_portable(int on);

static const char *const dtype_names[JACCL_DTYPE_COUNT] = {
    "int8", "uint8", "int32", "uint32", "int64", "uint64", "f16",
    "bf16", "f32",   "f64",   "bool",   "int16", "uint16", "complex64"};
static const char *const op_names[] = {"sum", "prod", "min", "max"};
static const size_t dtype_sizes[JACCL_DTYPE_COUNT] = {1, 1, 4, 4, 8, 8, 2, 2, 4, 8, 1, 2, 2, 8};

/* noinline so the loop is compiled once, as written, and not folded into the timing loop. */
__attribute__((noinline)) static void plain_add(float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++) a[i] += b[i];
}

#if defined(__x86_64__) && defined(__GNUC__)
/* The same loop built for AVX2, which the library's kernels use when the CPU has it. */
__attribute__((noinline, target("avx2"))) static void plain_add_avx2(float *a, const float *b,
                                                                     size_t n)
{
    for (size_t i = 0; i < n; i++) a[i] += b[i];
}
#define HAVE_AVX2_BASELINE 1
#endif

__attribute__((noinline)) static void plain_copy(void *d, const void *s, size_t n)
{
    memcpy(d, s, n);
}

enum kind { K_MEMCPY, K_PLAIN, K_PLAIN_AVX2, K_KERNEL, K_KERNEL_3 };

struct job {
    enum kind kind;
    jaccl_reduce_fn fn;
    void *a, *b, *d;
    size_t bytes, n;
};

static void run_once(const struct job *j)
{
    switch (j->kind) {
    case K_MEMCPY:
        plain_copy(j->a, j->b, j->bytes);
        break;
    case K_PLAIN:
        plain_add(j->a, j->b, j->n);
        break;
    case K_PLAIN_AVX2:
#ifdef HAVE_AVX2_BASELINE
        plain_add_avx2(j->a, j->b, j->n);
#endif
        break;
    case K_KERNEL:
        j->fn(j->a, j->a, j->b, j->n);
        break;
    case K_KERNEL_3:
        j->fn(j->d, j->a, j->b, j->n);
        break;
    }
}

/*
 * Seconds per call: the best of several timed batches, each about 20 ms, so a
 * busy neighbour on a shared machine costs a batch, not the figure.
 */
static double time_job(const struct job *j)
{
    size_t reps = 1;
    for (;;) { /* calibrate */
        int64_t t0 = jaccl_now_ns();
        for (size_t r = 0; r < reps; r++) run_once(j);
        if (jaccl_now_ns() - t0 > 5000000 || reps > ((size_t)1 << 30)) break;
        reps *= 2;
    }
    reps *= 4;
    double best = 1e30;
    for (int batch = 0; batch < 7; batch++) {
        int64_t t0 = jaccl_now_ns();
        for (size_t r = 0; r < reps; r++) run_once(j);
        double s = (double)(jaccl_now_ns() - t0) * 1e-9 / (double)reps;
        if (s < best) best = s;
    }
    return best;
}

/*
 * Small values, and b = 1 for floats (1 + 0i for complex64), so repeated
 * in-place runs stay finite and normal.
 */
static void fill(jaccl_dtype_t dt, unsigned char *a, unsigned char *b, size_t n)
{
    static const uint16_t one16[2] = {0x3c00, 0x3f80}; /* f16, bf16 1.0 */
    size_t sz = dtype_sizes[dt];
    for (size_t i = 0; i < n; i++) {
        uint64_t va = 1 + i % 7, vb = 1 + i % 5;
        float fa = (float)va, fb = 1.0f;
        double da = (double)va, db = 1.0;
        if (dt == JACCL_FLOAT32) memcpy(&va, &fa, 4), memcpy(&vb, &fb, 4);
        if (dt == JACCL_FLOAT64) memcpy(&va, &da, 8), memcpy(&vb, &db, 8);
        if (dt == JACCL_FLOAT16 || dt == JACCL_BFLOAT16) {
            va = vb = one16[dt == JACCL_BFLOAT16];
        }
        if (dt == JACCL_COMPLEX64) {
            float ca[2] = {fa, fa}, cb[2] = {1.0f, 0.0f};
            memcpy(&va, ca, 8), memcpy(&vb, cb, 8);
        }
        if (dt == JACCL_BOOL) va &= 1, vb &= 1;
        memcpy(a + i * sz, &va, sz);
        memcpy(b + i * sz, &vb, sz);
    }
}

static void report(const char *name, double secs, size_t bytes, size_t traffic_mult, size_t n)
{
    printf("  %-22s %8.2f GB/s  %7.3f Gelem/s\n", name,
           (double)(bytes * traffic_mult) / secs * 1e-9, n ? (double)n / secs * 1e-9 : 0.0);
}

static void bench_size(size_t bytes)
{
    unsigned char *a = aligned_alloc(64, bytes), *b = aligned_alloc(64, bytes),
                  *d = aligned_alloc(64, bytes);
    if (!a || !b || !d) {
        fprintf(stderr, "bench_reduce: out of memory for %zu bytes\n", bytes);
        exit(1);
    }
    memset(d, 0, bytes);
    printf("buffers of %zu KiB\n", bytes >> 10);

    fill(JACCL_FLOAT32, a, b, bytes / 4);
    struct job j = {K_MEMCPY, NULL, a, b, d, bytes, bytes / 4};
    report("memcpy", time_job(&j), bytes, 2, 0);
    j.kind = K_PLAIN;
    double plain = time_job(&j);
    report("plain f32 a+=b", plain, bytes, 3, j.n);
    double plain_avx2 = 0;
#ifdef HAVE_AVX2_BASELINE
    if (__builtin_cpu_supports("avx2")) {
        j.kind = K_PLAIN_AVX2;
        plain_avx2 = time_job(&j);
        report("plain f32 a+=b, AVX2", plain_avx2, bytes, 3, j.n);
    }
#endif

    double f32_sum = 0, half_sum[2] = {0, 0};
    for (int dt = 0; dt < JACCL_DTYPE_COUNT; dt++) {
        for (int op = 0; op < 4; op++) {
            jaccl_reduce_fn fn = jaccl_reduce_get((jaccl_dtype_t)dt, (jaccl_op_t)op);
            if (!fn) continue; /* complex64 min/max: not defined */
            size_t n = bytes / dtype_sizes[dt];
            fill((jaccl_dtype_t)dt, a, b, n);
            struct job k = {K_KERNEL, fn, a, b, d, bytes, n};
            double s = time_job(&k);
            char name[64];
            snprintf(name, sizeof name, "%s %s", dtype_names[dt], op_names[op]);
            report(name, s, bytes, 3, n);
            if (dt == JACCL_FLOAT32 && op == JACCL_SUM) f32_sum = (double)n / s;
            if (dt == JACCL_FLOAT16 && op == JACCL_SUM) half_sum[0] = (double)n / s;
            if (dt == JACCL_BFLOAT16 && op == JACCL_SUM) half_sum[1] = (double)n / s;
        }
    }

    /* Out of place, and the portable half kernels for comparison. */
    size_t n32 = bytes / 4;
    fill(JACCL_FLOAT32, a, b, n32);
    struct job k3 = {K_KERNEL_3, jaccl_reduce_get(JACCL_FLOAT32, JACCL_SUM), a, b, d, bytes, n32};
    report("f32 sum (dst != a)", time_job(&k3), bytes, 3, n32);
    jaccl_reduce_force_portable(1);
    for (int dt = JACCL_FLOAT16; dt <= JACCL_BFLOAT16; dt++) {
        fill((jaccl_dtype_t)dt, a, b, bytes / 2);
        struct job k = {K_KERNEL, jaccl_reduce_get((jaccl_dtype_t)dt, JACCL_SUM), a, b, d, bytes,
                        bytes / 2};
        char name[64];
        snprintf(name, sizeof name, "%s sum (portable)", dtype_names[dt]);
        report(name, time_job(&k), bytes, 3, bytes / 2);
    }
    jaccl_reduce_force_portable(0);

    printf("  f32 sum vs plain loop: %.0f%% of its bandwidth",
           100.0 * f32_sum / ((double)n32 / plain));
    if (plain_avx2 > 0)
        printf(", %.0f%% of the AVX2 build's", 100.0 * f32_sum / ((double)n32 / plain_avx2));
    printf("\n");
    printf("  f16 sum: %.0f%% of f32 sum's elements/s; bf16 sum: %.0f%%\n\n",
           100.0 * half_sum[0] / f32_sum, 100.0 * half_sum[1] / f32_sum);
    free(a);
    free(b);
    free(d);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        bench_size((size_t)256 << 10);
        bench_size((size_t)64 << 20);
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        size_t bytes = (size_t)strtoull(argv[i], NULL, 0) & ~(size_t)63;
        if (bytes == 0) {
            fprintf(stderr, "usage: bench_reduce [bytes-per-buffer ...]\n");
            return 2;
        }
        bench_size(bytes);
    }
    return 0;
}
