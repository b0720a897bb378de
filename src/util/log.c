#include "util/log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int jaccl_log_level_current = JACCL_LOG_WARN;
static int log_rank = -1;
static pthread_once_t log_once = PTHREAD_ONCE_INIT;

static const char *const level_names[] = {"error", "warn", "info", "debug", "trace"};

static void log_read_env(void)
{
    const char *s = getenv("JACCL_LOG_LEVEL");
    if (!s || !*s) return;
    for (int i = 0; i < (int)(sizeof(level_names) / sizeof(level_names[0])); i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            jaccl_log_level_current = i;
            return;
        }
    }
    fprintf(stderr,
            "jaccl: warn: JACCL_LOG_LEVEL=%s is not one of error, warn, info, debug, trace;"
            " using warn\n",
            s);
}

void jaccl_log_init(void)
{
    pthread_once(&log_once, log_read_env);
}

void jaccl_log_set_rank(int rank)
{
    log_rank = rank;
}

void jaccl_log_write(int level, const char *fmt, ...)
{
    char line[1024];
    int n;
    if (log_rank >= 0)
        n = snprintf(line, sizeof(line), "jaccl: rank %d: %s: ", log_rank, level_names[level]);
    else
        n = snprintf(line, sizeof(line), "jaccl: %s: ", level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    /* One fputs per line keeps lines from different threads whole. */
    size_t len = strlen(line);
    if (len < sizeof(line) - 1) {
        line[len] = '\n';
        line[len + 1] = '\0';
    }
    fputs(line, stderr);
}
