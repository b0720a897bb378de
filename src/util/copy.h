/*
 * Copies into buffers too large for the caches.  An ordinary store first
 * reads the line it writes (write allocate); a non-temporal store does not,
 * so such a copy moves two bytes per byte instead of three.  glibc's memcpy
 * streams only past a threshold set by the last-level cache size, which
 * some virtual machines report as hundreds of MiB: there it never streams.
 */
#ifndef JACCL_UTIL_COPY_H
#define JACCL_UTIL_COPY_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <emmintrin.h>
#endif

/* memcpy with non-temporal stores where the CPU has them; dst is not left in the cache. */
static inline void jaccl_copy_stream(void *dst, const void *src, size_t n)
{
#if defined(__x86_64__) && defined(__GNUC__)
    char *d = dst;
    const char *s = src;
    size_t head = (size_t)(-(uintptr_t)d & 63);
    if (n < head + 64) {
        memcpy(d, s, n);
        return;
    }
    memcpy(d, s, head);
    d += head, s += head, n -= head;
    for (; n >= 64; d += 64, s += 64, n -= 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)s);
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(s + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(const void *)(s + 32));
        __m128i e = _mm_loadu_si128((const __m128i *)(const void *)(s + 48));
        _mm_stream_si128((__m128i *)(void *)d, a);
        _mm_stream_si128((__m128i *)(void *)(d + 16), b);
        _mm_stream_si128((__m128i *)(void *)(d + 32), c);
        _mm_stream_si128((__m128i *)(void *)(d + 48), e);
    }
    _mm_sfence(); /* streamed stores are weakly ordered: finish them before any flag */
    memcpy(d, s, n);
#else
    memcpy(dst, src, n);
#endif
}

#endif
