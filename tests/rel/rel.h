/* Shared by the reliability tests: trial counts and a bounded-time failure check. */
#ifndef JACCL_TESTS_REL_H
#define JACCL_TESTS_REL_H

#include "harness.h"

#include <stdlib.h>
#include <string.h>

/* JACCL_TEST_LONG=1: the suite's long mode, with many more trials. */
static inline int rel_long(void)
{
    const char *v = getenv("JACCL_TEST_LONG");
    return v && strcmp(v, "1") == 0;
}

static inline int rel_trials(int quick, int lng)
{
    return rel_long() ? lng : quick;
}

#endif
