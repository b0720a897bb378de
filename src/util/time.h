/* Monotonic clock and deadlines. */
#ifndef JACCL_UTIL_TIME_H
#define JACCL_UTIL_TIME_H

#include <stdint.h>
#include <time.h>

static inline int64_t jaccl_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
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
