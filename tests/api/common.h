/*
 * Shared by the API tests: a table-driven cmocka main over the multi-process
 * harness, reproducible inputs for every dtype x op with an independent
 * reference (no library code), random bytes, and buffer guards.
 */
#ifndef JACCL_TESTS_API_COMMON_H
#define JACCL_TESTS_API_COMMON_H

#include "harness.h"
#include "values.h"

#include <stddef.h>
#include <stdint.h>

#define API_MAXR  16
#define API_GUARD 64

/* ---- the test table ---- */

struct api_test {
    const char *name;
    int np;
    const char *env[6]; /* NULL-terminated extra environment (see harness.h) */
    mp_rank_fn fn;      /* run with a communicator from the environment, or */
    mp_raw_fn raw;      /* run without one (the function makes its own) */
    const void *arg;
    double timeout_s; /* 0: 120 s */
};

/* Run every test of the table as a cmocka test; MP_FILTER selects some by name. */
int api_main(const char *group, const struct api_test *tests, int n);

/* In a child: count a case; api_report prints the count (rank 0 only). */
void api_count(unsigned n);
void api_report(jaccl_comm_t comm, const char *what);

/* ---- reproducible inputs and their reductions ---- */

/*
 * Rank r's element i of a case is a function of (seed, r, i).  EXACT inputs
 * make every reduction exact whatever the order (integers wrap, floats are
 * small integers, powers of two, or compared), so the reference is exact
 * and so is the check.  FUZZ (floats and complex only): random values whose
 * sums and products round; checked against a tolerance.
 */
enum { API_EXACT, API_FUZZ };

struct api_gen {
    jaccl_dtype_t dt;
    jaccl_op_t op;
    int n, mode;
    uint64_t seed[API_MAXR], tseed;
};

void api_gen_init(struct api_gen *g, jaccl_dtype_t dt, jaccl_op_t op, int n, int mode,
                  uint64_t seed);
/* Rank r's elements first .. first + count - 1 into buf[0 .. count - 1]. */
void api_gen_fill(const struct api_gen *g, int r, void *buf, size_t first, size_t count);
/*
 * Check buf[k] against the reduction over every rank of element first + k,
 * for k = start, start + step, ... < count.  Returns 0, or prints and 1.
 */
int api_gen_check(const struct api_gen *g, const void *buf, size_t first, size_t count,
                  size_t start, size_t step, const char *what);
/* "dtype op" of a case. */
const char *api_gen_name(const struct api_gen *g);

/* ---- bytes ---- */

/* len pseudo-random bytes from seed; byte j depends on (seed, j) only. */
void api_fill_bytes(void *p, size_t len, uint64_t seed);
/* 0 if p holds api_fill_bytes(len, seed), else print where it differs and 1. */
int api_check_bytes(const void *p, size_t len, uint64_t seed, const char *what);

/* API_GUARD bytes of 0xa5 at p; whether they are intact. */
void api_guard_set(void *p);
int api_guard_ok(const void *p);

/* Milliseconds of sleep. */
void api_sleep_ms(int ms);

#endif
