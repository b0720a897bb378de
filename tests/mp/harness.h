/*
 * Multi-process test harness: every rank is a forked child process and the
 * ranks talk over real TCP sockets on 127.0.0.1.
 *
 * Children never run cmocka asserts: a rank function returns 0 for success
 * or non-zero after printing why (MP_CHECK and MP_OK do both); the parent
 * asserts on mp_run's result.
 *
 * Extra environment entries are "NAME=VALUE" (set) or "NAME" (unset), applied
 * in order after the harness's own.  In a value, @RANK@ becomes the child's
 * rank, @SIZE@ the number of ranks and @COORD@ the coordinator address
 * (127.0.0.1:port, a port that was free when the run started); @COORD2@ is
 * another such address, for a second communicator.
 */
#ifndef JACCL_TESTS_MP_HARNESS_H
#define JACCL_TESTS_MP_HARNESS_H

#include "jaccl.h"

#include <stddef.h>
#include <stdint.h>

/* 1 in sanitizer builds, where tests shrink their largest cases. */
#if defined(__SANITIZE_ADDRESS__)
#define MP_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MP_SANITIZED 1
#endif
#endif
#ifndef MP_SANITIZED
#define MP_SANITIZED 0
#endif

typedef int (*mp_rank_fn)(jaccl_comm_t comm, void *arg);
typedef int (*mp_raw_fn)(void *arg);

/*
 * Fork nranks children.  Each clears every launcher variable it inherited,
 * sets JACCL_RANK, JACCL_SIZE, JACCL_COORDINATOR and JACCL_TIMEOUT (10 s),
 * then extra_env, calls jaccl_comm_init_env, runs fn, destroys the
 * communicator and exits with fn's status.  Waits at most timeout_s for all
 * of them; on timeout kills them all.  Returns 0 only if every child exited 0.
 */
int mp_run(int nranks, const char *const *extra_env, mp_rank_fn fn, void *arg, double timeout_s);

/*
 * As mp_run, but the child sets only extra_env (after clearing inherited
 * launcher variables) and does not call jaccl_comm_init_env: fn does.
 */
int mp_run_raw(int nranks, const char *const *extra_env, mp_raw_fn fn, void *arg, double timeout_s);

/* In a child: its rank and the number of ranks started. */
int mp_rank(void);
int mp_size(void);

/* Seconds on a monotonic clock. */
double mp_now(void);

/* Print "[mp rank R] file:line: what: detail" to stderr. */
#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
void mp_fail(const char *file, int line, const char *what, const char *fmt, ...);

/* 64-bit FNV-1a-style hash of len bytes (word at a time), chained from h (start with MP_FNV_INIT).
 */
#define MP_FNV_INIT 1469598103934665603ull
uint64_t mp_fnv(uint64_t h, const void *p, size_t len);

/* A well-mixed 64-bit value from x (splitmix64 finaliser). */
uint64_t mp_mix(uint64_t x);

/*
 * Every rank passes the FNV hash of buf; returns 0 if all ranks hashed the
 * same bytes (checked through jaccl_allgather), non-zero after printing.
 */
int mp_check_same(jaccl_comm_t comm, const void *buf, size_t len, const char *what);

/* In a child: fail (print and return 1) unless cond holds. */
#define MP_CHECK(cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            mp_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                                       \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

/* In a child: fail unless the jaccl call expr succeeds; prints the last error of comm. */
#define MP_OK(comm, expr)                                                                          \
    do {                                                                                           \
        jaccl_result_t mp_rc_ = (expr);                                                            \
        if (mp_rc_ != JACCL_SUCCESS) {                                                             \
            mp_fail(__FILE__, __LINE__, #expr, "returned %s: %s", jaccl_result_string(mp_rc_),     \
                    jaccl_last_error(comm));                                                       \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

/* In a child: fail unless the jaccl call expr returns want and sets a last error. */
#define MP_EXPECT(comm, expr, want)                                                                \
    do {                                                                                           \
        jaccl_result_t mp_rc_ = (expr);                                                            \
        const char *mp_msg_ = jaccl_last_error(comm);                                              \
        if (mp_rc_ != (want) || !mp_msg_ || !*mp_msg_) {                                           \
            mp_fail(__FILE__, __LINE__, #expr, "returned %s (want %s), last error '%s'",           \
                    jaccl_result_string(mp_rc_), jaccl_result_string(want),                        \
                    mp_msg_ ? mp_msg_ : "(null)");                                                 \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

#endif
