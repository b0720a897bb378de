/*
 * jaccl_comm_abort: from another thread and from a signal handler, while a
 * receive is blocked (blocking or through the progress thread).  The blocked
 * call returns JACCL_ERR_ABORTED long before JACCL_TIMEOUT (20 s), every
 * later call is refused with it, destroy works, and the peer that waited on
 * us fails promptly too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rel.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>

#define PROMPT_S 5.0 /* "promptly": a quarter of JACCL_TIMEOUT */
#define DELAY_MS 200

enum how { FROM_THREAD, FROM_SIGNAL, NONBLOCKING, IDLE };

static jaccl_comm_t g_comm; /* for the signal handler */

static void on_alarm(int sig)
{
    (void)sig;
    jaccl_comm_abort(g_comm);
}

static void *abort_later(void *arg)
{
    struct timespec ts = {0, DELAY_MS * 1000000L};
    nanosleep(&ts, NULL);
    jaccl_comm_abort(arg);
    return NULL;
}

/* Arrange for comm to be aborted in DELAY_MS, the way the case says. */
static int arm(jaccl_comm_t comm, enum how how, pthread_t *th)
{
    if (how == FROM_SIGNAL) {
        g_comm = comm;
        struct sigaction sa = {0};
        sa.sa_handler = on_alarm;
        sigemptyset(&sa.sa_mask);
        MP_CHECK(sigaction(SIGALRM, &sa, NULL) == 0, "sigaction");
        struct itimerval it = {{0, 0}, {0, DELAY_MS * 1000}};
        MP_CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0, "setitimer");
        return 0;
    }
    MP_CHECK(pthread_create(th, NULL, abort_later, comm) == 0, "pthread_create");
    return 0;
}

/* Rank 0 blocks in a receive nobody answers and is aborted. */
static int aborted_rank(jaccl_comm_t comm, enum how how)
{
    float buf[4] = {0};
    pthread_t th;
    if (how == IDLE) {
        MP_OK(comm, jaccl_comm_abort(comm));
        MP_EXPECT(comm, jaccl_allreduce(buf, buf, 4, JACCL_FLOAT32, JACCL_SUM, comm),
                  JACCL_ERR_ABORTED);
        return 0;
    }
    if (arm(comm, how, &th)) return 1;
    double t0 = mp_now();
    jaccl_result_t rc;
    if (how == NONBLOCKING) {
        jaccl_request_t q[2];
        MP_OK(comm, jaccl_irecv(buf, 4, JACCL_FLOAT32, 1, comm, &q[0]));
        MP_OK(comm, jaccl_iallreduce(buf, buf, 4, JACCL_FLOAT32, JACCL_SUM, comm, &q[1]));
        rc = jaccl_wait_all(2, q);
    } else {
        rc = jaccl_recv(buf, 4, JACCL_FLOAT32, 1, comm);
    }
    double dt = mp_now() - t0;
    if (how != FROM_SIGNAL) pthread_join(th, NULL);
    const char *msg = jaccl_last_error(comm);
    MP_CHECK(rc == JACCL_ERR_ABORTED, "returned %s: %s", jaccl_result_string(rc), msg);
    MP_CHECK(dt < PROMPT_S, "the aborted call took %.2f s", dt);
    printf("[rel] rank 0: aborted in %.3f s (%.0f ms after the abort): %s\n", dt,
           dt * 1e3 - DELAY_MS, msg);
    MP_EXPECT(comm, jaccl_barrier(comm), JACCL_ERR_ABORTED); /* refused from now on */
    return 0;
}

/* Rank 1 waits for rank 0, which is aborted: it must not wait out its timeout. */
static int waiting_peer(jaccl_comm_t comm)
{
    float buf[4] = {0};
    double t0 = mp_now();
    jaccl_result_t rc = jaccl_recv(buf, 4, JACCL_FLOAT32, 0, comm);
    double dt = mp_now() - t0;
    MP_CHECK(rc == JACCL_ERR_REMOTE, "the peer's recv returned %s: %s", jaccl_result_string(rc),
             jaccl_last_error(comm));
    MP_CHECK(dt < PROMPT_S, "the peer's recv took %.2f s", dt);
    printf("[rel] rank 1: failed in %.3f s: %s\n", dt, jaccl_last_error(comm));
    return 0;
}

static int abort_job(jaccl_comm_t comm, void *arg)
{
    enum how how = *(const enum how *)arg;
    MP_OK(comm, jaccl_barrier(comm));
    if (jaccl_comm_rank(comm) == 0) return aborted_rank(comm, how);
    if (how == IDLE) return 0;
    return waiting_peer(comm);
}

static const enum how hows[] = {FROM_THREAD, FROM_SIGNAL, NONBLOCKING, IDLE};
static const char *const names[] = {"abort-from-thread", "abort-from-signal-handler",
                                    "abort-nonblocking", "abort-idle"};

static void run_case(void **state)
{
    const enum how *how = *state;
    const char *env[] = {"JACCL_TRANSPORT=tcp", "JACCL_TIMEOUT=20", NULL};
    int n = rel_trials(1, 5);
    for (int i = 0; i < n; i++) assert_int_equal(mp_run(2, env, abort_job, (void *)how, 60), 0);
}

int main(void)
{
    enum { N = sizeof(hows) / sizeof(hows[0]) };
    struct CMUnitTest tests[N];
    for (int i = 0; i < N; i++)
        tests[i] = (struct CMUnitTest){names[i], run_case, NULL, NULL, (void *)&hows[i]};
    if (getenv("MP_FILTER")) cmocka_set_test_filter(getenv("MP_FILTER"));
    return _cmocka_run_group_tests("rel-abort", tests, N, NULL, NULL);
}
