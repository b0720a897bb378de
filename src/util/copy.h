/*
 * Bulk copies of user data.
 *
 * jaccl_copy: a store to a line followed by a load 1-63 bytes further on,
 * modulo 4 KiB, looks to the CPU like a load of what was just stored (4K
 * aliasing) and waits for it.  Copying forward with dst that little ahead of
 * src does that on every line: glibc's memcpy (rep movsb) of 2 KiB-1 MiB
 * runs at 2 GB/s instead of 40 on this project's AMD EPYC VM (larger copies
 * go by vector loops at the usual speed: left to memcpy, which may stream).
 * Copying those backward never loads behind a pending store (16-23 GB/s).
 * Where it showed: an all-gather's own block into a receive buffer 16 bytes
 * off the send buffer (64 KiB blocks, 2 ranks: 62-65 us per call, now
 * 30-34), and some shm ring records, whose distance from the user's buffer
 * moves with the ring position (shm all-gathers of 64 KiB-1 MiB 0.84-0.87x
 * the time).
 *
 * jaccl_copy_stream: copies into buffers too large for the caches.  An
 * ordinary store first reads the line it writes (write allocate); a
 * non-temporal store does not, so such a copy moves two bytes per byte
 * instead of three.  glibc's memcpy streams only past a threshold set by the
 * last-level cache size, which some virtual machines report as hundreds of
 * MiB: there it never streams.
 */
#ifndef JACCL_UTIL_COPY_H
#define JACCL_UTIL_COPY_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <emmintrin.h>
#endif

/* Copies this long go by rep movsb in glibc (from 2 KiB; above 1 MiB, by vector loops). */
#define JACCL_COPY_ALIAS_MIN ((size_t)2 << 10)
#define JACCL_COPY_ALIAS_MAX ((size_t)1 << 20)

/* Copy n bytes to dst from the end down (buffers that do not overlap). */
static inline void jaccl_copy_down(void *dst, const void *src, size_t n)
{
    char *d = dst;
    const char *s = src;
    size_t tail = n & 63;
    while (n > tail) {
        n -= 64;
#if defined(__x86_64__) && defined(__GNUC__)
        /* a line's four loads before its stores, in registers */
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(s + n));
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(s + n + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(const void *)(s + n + 32));
        __m128i e = _mm_loadu_si128((const __m128i *)(const void *)(s + n + 48));
        _mm_storeu_si128((__m128i *)(void *)(d + n), a);
        _mm_storeu_si128((__m128i *)(void *)(d + n + 16), b);
        _mm_storeu_si128((__m128i *)(void *)(d + n + 32), c);
        _mm_storeu_si128((__m128i *)(void *)(d + n + 48), e);
#else
        memcpy(d + n, s + n, 64);
#endif
    }
    memcpy(d, s, tail);
}

/* memcpy (buffers that do not overlap), backward where forward would alias (above). */
static inline void jaccl_copy(void *dst, const void *src, size_t n)
{
    size_t ahead = (size_t)((uintptr_t)dst - (uintptr_t)src) & 4095;
    if (ahead > 0 && ahead < 64 && n >= JACCL_COPY_ALIAS_MIN && n < JACCL_COPY_ALIAS_MAX)
        jaccl_copy_down(dst, src, n);
    else
        memcpy(dst, src, n);
}

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
