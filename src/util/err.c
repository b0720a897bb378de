#include "util/err.h"
#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>

#define JACCL_RESULT_STR_(name, str) [name] = str,
static const char *const result_strings[] = {JACCL_RESULT_LIST(JACCL_RESULT_STR_)};
#undef JACCL_RESULT_STR_

JACCL_API const char *jaccl_result_string(jaccl_result_t result)
{
    if ((unsigned)result >= JACCL_RESULT_COUNT) return "unknown result code";
    return result_strings[result];
}

jaccl_result_t jaccl_err_set(struct jaccl_err *e, jaccl_result_t rc, const char *fmt, ...)
{
    int n = 0;
    if (e->rank >= 0) n = snprintf(e->msg, sizeof(e->msg), "rank %d: ", e->rank);
    if (e->call) n += snprintf(e->msg + n, sizeof(e->msg) - (size_t)n, "%s: ", e->call);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg + n, sizeof(e->msg) - (size_t)n, fmt, ap);
    va_end(ap);
    int level = rc == JACCL_ERR_INVALID_ARGUMENT ? JACCL_LOG_DEBUG : JACCL_LOG_WARN;
    JACCL_LOG(level, "%s (%s)", e->msg, jaccl_result_string(rc));
    return rc;
}
