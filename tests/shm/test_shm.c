/*
 * The shared-memory transport across real processes: both large-message
 * paths, two jobs in one /dev/shm at once, and a rank killed mid-collective.
 * Tests that need their own /dev/shm (a mount namespace, as root) run the
 * whole process in one, so the count of segments left is exactly theirs.
 */
#include "common.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int collectives_job(jaccl_comm_t comm, void *arg)
{
    return shm_check_collectives(comm, *(const uint32_t *)arg);
}

/* copy NULL: the transport chooses per transfer (3 ranks on CI's 2 cores: oversubscribed). */
static void run_paths(const char *copy, const char *algo)
{
    const char *const env[] = {"JACCL_TRANSPORT=shm", algo, copy, NULL};
    uint32_t tag = 11;
    assert_int_equal(mp_run(3, env, collectives_job, &tag, 120), 0);
}

static void test_single_copy_mesh(void **state)
{
    (void)state;
    run_paths("JACCL_SHM_SINGLE_COPY=1", "JACCL_ALGO=mesh");
}

static void test_single_copy_ring(void **state)
{
    (void)state;
    run_paths("JACCL_SHM_SINGLE_COPY=1", "JACCL_ALGO=ring");
}

static void test_copy_only_mesh(void **state)
{
    (void)state;
    run_paths("JACCL_SHM_SINGLE_COPY=0", "JACCL_ALGO=mesh");
}

static void test_copy_only_ring(void **state)
{
    (void)state;
    run_paths("JACCL_SHM_SINGLE_COPY=0", "JACCL_ALGO=ring");
}

/* Two jobs of 3 ranks in one /dev/shm at the same time, each checking its own results. */
/*
 * Ranks that outnumber the cores send all-gather blocks of 256 KiB and more
 * with a single copy, other transfers through the rings: both kinds of
 * record interleave on one ring.
 */
static void test_chosen_per_transfer_mesh(void **state)
{
    (void)state;
    run_paths(NULL, "JACCL_ALGO=mesh");
}

static void test_two_jobs_at_once(void **state)
{
    (void)state;
    const char *const env[] = {"JACCL_TRANSPORT=shm", NULL};
    uint32_t tag_a = 100, tag_b = 200;
    pid_t other = fork();
    assert_true(other >= 0);
    if (other == 0) _exit(mp_run(3, env, collectives_job, &tag_b, 120) == 0 ? 0 : 1);
    int a = mp_run(3, env, collectives_job, &tag_a, 120), st = 0;
    assert_int_equal(waitpid(other, &st, 0), other);
    assert_int_equal(a, 0);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(shm_count_segments(), 0);
}

#define KILL_COUNT (1u << 22)

static void *killer(void *arg)
{
    (void)arg;
    struct timespec ts = {0, 5000000};
    nanosleep(&ts, NULL);
    raise(SIGKILL);
    return NULL;
}

/* The last rank is killed (-9) within 5 ms, in the middle of a stream of collectives. */
static int kill_job(jaccl_comm_t comm, void *arg)
{
    (void)arg;
    int n = jaccl_comm_size(comm), me = jaccl_comm_rank(comm);
    float *v = calloc(KILL_COUNT, sizeof(float));
    MP_CHECK(v, "out of memory");
    MP_OK(comm, jaccl_allreduce(v, v, 16, JACCL_FLOAT32, JACCL_SUM, comm));
    MP_CHECK(shm_count_segments() == 0, "a segment is still linked after init");
    pthread_t th;
    if (me == n - 1) MP_CHECK(pthread_create(&th, NULL, killer, NULL) == 0, "pthread_create");
    double t0 = mp_now();
    jaccl_result_t rc = JACCL_SUCCESS;
    for (int i = 0; rc == JACCL_SUCCESS && i < 2000; i++) {
        size_t count = i % 2 ? 64 : KILL_COUNT; /* through the rings and single-copy */
        rc = jaccl_allreduce(v, v, count, JACCL_FLOAT32, JACCL_SUM, comm);
    }
    free(v);
    MP_CHECK(rc == JACCL_ERR_REMOTE || rc == JACCL_ERR_TIMEOUT, "got %s, want a failure (%s)",
             jaccl_result_string(rc), jaccl_last_error(comm));
    MP_CHECK(mp_now() - t0 < 12, "failing took %.1f s", mp_now() - t0);
    fprintf(stderr, "[shm rank %d] failed as expected in %.2f s: %s\n", me, mp_now() - t0,
            jaccl_last_error(comm));
    return 0;
}

static void test_kill_mid_collective(void **state)
{
    (void)state;
    const char *const env[] = {"JACCL_TRANSPORT=shm", "JACCL_TIMEOUT=10", NULL};
    assert_int_equal(mp_run(3, env, kill_job, NULL, 60), 1); /* the victim only */
    assert_int_equal(shm_count_segments(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_copy_mesh),         cmocka_unit_test(test_single_copy_ring),
        cmocka_unit_test(test_copy_only_mesh),           cmocka_unit_test(test_copy_only_ring),
        cmocka_unit_test(test_chosen_per_transfer_mesh), cmocka_unit_test(test_two_jobs_at_once),
        cmocka_unit_test(test_kill_mid_collective),
    };
    if (shm_private_devshm() != 0) {
        fprintf(stderr, "shm tests need a private /dev/shm (root, mount namespaces)\n");
        return 77;
    }
    if (getenv("MP_FILTER")) cmocka_set_test_filter(getenv("MP_FILTER"));
    return cmocka_run_group_tests_name("shm", tests, NULL, NULL);
}
