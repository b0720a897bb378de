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

/*
 * The body of main for a table of cases, each with a name, run by run (the
 * case is its state); MP_FILTER picks cases by name.  Needs cmocka.h.
 */
#define REL_RUN_CASES(group, cases, run)                                                           \
    do {                                                                                           \
        enum { N_ = sizeof(cases) / sizeof(cases[0]) };                                            \
        struct CMUnitTest t_[N_];                                                                  \
        for (int i_ = 0; i_ < N_; i_++)                                                            \
            t_[i_] = (struct CMUnitTest){cases[i_].name, run, NULL, NULL, (void *)&cases[i_]};     \
        if (getenv("MP_FILTER")) cmocka_set_test_filter(getenv("MP_FILTER"));                      \
        return _cmocka_run_group_tests(group, t_, N_, NULL, NULL);                                 \
    } while (0)

#endif
