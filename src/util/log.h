/* Leveled logging to stderr, controlled by JACCL_LOG_LEVEL. */
#ifndef JACCL_UTIL_LOG_H
#define JACCL_UTIL_LOG_H

#include <stdarg.h>

enum jaccl_log_level {
    JACCL_LOG_ERROR = 0,
    JACCL_LOG_WARN,
    JACCL_LOG_INFO,
    JACCL_LOG_DEBUG,
    JACCL_LOG_TRACE,
};

/* Current level; read from JACCL_LOG_LEVEL once (default warn). */
extern int jaccl_log_level_current;
void jaccl_log_init(void);
/* Tag printed in each line (e.g. "rank 3"); set once the rank is known. */
void jaccl_log_set_rank(int rank);

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void jaccl_log_write(int level, const char *fmt, ...);

/* The level check comes first so arguments are not evaluated when off. */
#define JACCL_LOG(level, ...)                                                                      \
    do {                                                                                           \
        if ((level) <= jaccl_log_level_current) jaccl_log_write((level), __VA_ARGS__);             \
    } while (0)

#define log_warn(...)  JACCL_LOG(JACCL_LOG_WARN, __VA_ARGS__)
#define log_info(...)  JACCL_LOG(JACCL_LOG_INFO, __VA_ARGS__)
#define log_debug(...) JACCL_LOG(JACCL_LOG_DEBUG, __VA_ARGS__)
#define log_trace(...) JACCL_LOG(JACCL_LOG_TRACE, __VA_ARGS__)

#endif
