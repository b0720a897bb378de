/*
 * util/copy.h: jaccl_copy_stream, which the ring all-gather uses for blocks
 * past the caches: every alignment of source and destination, lengths
 * around its 64-byte stride, and no byte written outside the destination;
 * jaccl_copy at the distances that make it copy backward and around them.
 */
#include "util/copy.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#define GUARD 64

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(i * 131u + seed);
}

/* Copy n bytes from src + so to dst + GUARD + d0 and check the copy and both guards. */
static void check_one(const unsigned char *src, unsigned char *dst, size_t so, size_t d0, size_t n)
{
    size_t span = GUARD + d0 + n + GUARD;
    memset(dst, 0xa5, span);
    jaccl_copy_stream(dst + GUARD + d0, src + so, n);
    assert_memory_equal(dst + GUARD + d0, src + so, n);
    for (size_t i = 0; i < GUARD + d0; i++) assert_int_equal(dst[i], 0xa5);
    for (size_t i = GUARD + d0 + n; i < span; i++) assert_int_equal(dst[i], 0xa5);
}

static void test_every_alignment(void **state)
{
    (void)state;
    static const size_t lens[] = {0, 1, 63, 64, 65, 127, 128, 129, 191, 200, 4096, 4099};
    size_t cap = 64 + 4099;
    unsigned char *src = malloc(cap), *dst = malloc(GUARD + 64 + cap + GUARD);
    assert_non_null(src);
    assert_non_null(dst);
    fill(src, cap, 7);
    for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++)
        for (size_t so = 0; so < 64; so += 5)
            for (size_t d0 = 0; d0 < 64; d0++) check_one(src, dst, so, d0, lens[k]);
    free(dst);
    free(src);
}

/* A large copy from and to odd addresses: the bytes and both neighbours. */
static void test_large(void **state)
{
    (void)state;
    size_t n = ((size_t)4 << 20) + 4096 + 13;
    unsigned char *src = malloc(n + 3), *dst = malloc(n + 3);
    assert_non_null(src);
    assert_non_null(dst);
    fill(src, n + 3, 3);
    memset(dst, 0, n + 3);
    jaccl_copy_stream(dst + 1, src + 3, n);
    assert_memory_equal(dst + 1, src + 3, n);
    assert_int_equal(dst[0], 0);
    assert_int_equal(dst[n + 1], 0);
    free(dst);
    free(src);
}

/*
 * jaccl_copy with dst at distances from src, modulo 4 KiB, that copy
 * backward (1-63) and around them, lengths around its 2 KiB threshold and
 * 64-byte stride; the bytes and GUARD bytes either side of the destination.
 */
static void test_copy_distances(void **state)
{
    (void)state;
    static const size_t lens[] = {2047, 2048, 2049, 2111, 4096 + 13, 65536 + 7};
    static const size_t gaps[] = {0, 1, 8, 16, 31, 32, 63, 64, 65, 4095, 4096 + 16};
    size_t nmax = 65536 + 7, span = 8192 + nmax + 4096 + 16 + nmax + 2 * GUARD;
    unsigned char *mem = malloc(span + 4096);
    assert_non_null(mem);
    unsigned char *src = mem + (4096 - (uintptr_t)mem % 4096) + 5; /* 5 past a page */
    fill(src, nmax, 11);
    for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++)
        for (size_t g = 0; g < sizeof(gaps) / sizeof(gaps[0]); g++) {
            /* dst past src's end, at gaps[g] modulo 4 KiB from src */
            size_t at = ((nmax + GUARD + 4095) / 4096) * 4096 + gaps[g];
            unsigned char *dst = src + at;
            memset(dst - GUARD, 0xa5, lens[k] + 2 * GUARD);
            jaccl_copy(dst, src, lens[k]);
            assert_memory_equal(dst, src, lens[k]);
            for (size_t i = 1; i <= GUARD; i++) {
                assert_int_equal(dst[-(ptrdiff_t)i], 0xa5);
                assert_int_equal(dst[lens[k] + i - 1], 0xa5);
            }
        }
    free(mem);
}

/* jaccl_copy_down itself, whatever the length: every tail and a few whole lines. */
static void test_copy_down(void **state)
{
    (void)state;
    unsigned char src[4200], dst[4200 + 2 * GUARD];
    fill(src, sizeof(src), 5);
    for (size_t n = 0; n < 4200; n += n < 200 ? 1 : 997) {
        memset(dst, 0xa5, sizeof(dst));
        jaccl_copy_down(dst + GUARD, src, n);
        assert_memory_equal(dst + GUARD, src, n);
        for (size_t i = 0; i < GUARD; i++) assert_int_equal(dst[i], 0xa5);
        for (size_t i = GUARD + n; i < sizeof(dst); i++) assert_int_equal(dst[i], 0xa5);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_alignment),
        cmocka_unit_test(test_large),
        cmocka_unit_test(test_copy_distances),
        cmocka_unit_test(test_copy_down),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
