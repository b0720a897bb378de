/* Monotonic clock and deadlines. */
#ifndef JACCL_UTIL_TIME_H
#define JACCL_UTIL_TIME_H

#include <stdint.h>
#include <time.h>

/* The coarse clock's step is the kernel tick: at most 10 ms (HZ=100), usually 1-4 ms. */
#define JACCL_COARSE_TICK_NS 10000000LL

static inline int64_t jaccl_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * A deadline timeout_ns from now, for calls that usually finish long before
 * it: read from the tick-granular clock (a fraction of the precise clock's
 * cost, which a small collective pays once per call), plus one tick so it is
 * never earlier than asked.  Compared against jaccl_now_ns(): the same clock.
 */
static inline int64_t jaccl_deadline_ns(int64_t timeout_ns)
{
#ifdef CLOCK_MONOTONIC_COARSE
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + JACCL_COARSE_TICK_NS + timeout_ns;
#else
    return jaccl_now_ns() + timeout_ns;
#endif
}

/* Milliseconds left until deadline_ns (0 when passed), for poll(). */
static inline int jaccl_ms_left(int64_t deadline_ns)
{
    int64_t left = deadline_ns - jaccl_now_ns();
    if (left <= 0) return 0;
    left = (left + 999999) / 1000000;
    return left > 1000000 ? 1000000 : (int)left;
}

#endif
