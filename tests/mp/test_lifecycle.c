/*
 * Communicator lifetime across real processes: destroy and create again with
 * the same coordinator address (its port is reused at once), and two live
 * communicators in one process, with different rank orders and algorithms,
 * used in turn.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

/* rank + 1 summed over the communicator, checked; tag varies the data per call. */
static int check_sum(jaccl_comm_t c, int64_t tag)
{
    int n = jaccl_comm_size(c);
    int64_t v[2] = {jaccl_comm_rank(c) + 1, tag}, want = (int64_t)n * (n + 1) / 2;
    MP_OK(c, jaccl_allreduce(v, v, 2, JACCL_INT64, JACCL_SUM, c));
    MP_CHECK(v[0] == want && v[1] == tag * n, "sum %lld (want %lld), tag %lld (want %lld)",
             (long long)v[0], (long long)want, (long long)v[1], (long long)(tag * n));
    return 0;
}

static int init_or_fail(jaccl_comm_t *c, const char *what)
{
    jaccl_result_t rc = jaccl_comm_init_env(c);
    MP_CHECK(rc == JACCL_SUCCESS, "%s: init returned %s: %s", what, jaccl_result_string(rc),
             jaccl_last_error(NULL));
    return 0;
}

/* ---- destroy, then init again on the same address, several times ---- */

static int reinit(void *arg)
{
    (void)arg;
    for (int round = 0; round < 4; round++) {
        jaccl_comm_t c = NULL;
        char what[32];
        snprintf(what, sizeof(what), "round %d", round);
        if (init_or_fail(&c, what) || check_sum(c, round)) return 1;
        MP_OK(NULL, jaccl_comm_destroy(c));
    }
    return 0;
}

static void test_reinit_same_coordinator_np2(void **state)
{
    static const char *const env[] = {"JACCL_RANK=@RANK@", "JACCL_SIZE=@SIZE@",
                                      "JACCL_COORDINATOR=@COORD@", "JACCL_TIMEOUT=10", NULL};
    (void)state;
    assert_int_equal(mp_run_raw(2, env, reinit, NULL, 60), 0);
}

static void test_reinit_same_coordinator_np4(void **state)
{
    static const char *const env[] = {"JACCL_RANK=@RANK@", "JACCL_SIZE=@SIZE@",
                                      "JACCL_COORDINATOR=@COORD@", "JACCL_TIMEOUT=10", NULL};
    (void)state;
    assert_int_equal(mp_run_raw(4, env, reinit, NULL, 60), 0);
}

/* ---- two communicators at once ---- */

/* B: ranks in reverse order, its own coordinator and algorithm. */
static int init_second(jaccl_comm_t *b)
{
    char rank[16];
    snprintf(rank, sizeof(rank), "%d", mp_size() - 1 - mp_rank());
    setenv("JACCL_RANK", rank, 1);
    setenv("JACCL_COORDINATOR", getenv("MP_COORD2"), 1);
    setenv("JACCL_ALGO", "mesh", 1);
    if (init_or_fail(b, "second communicator")) return 1;
    MP_CHECK(jaccl_comm_rank(*b) == mp_size() - 1 - mp_rank(), "B rank %d", jaccl_comm_rank(*b));
    return 0;
}

/* A message from A's rank 0 to A's rank 1, and one back on B, in turn. */
static int p2p_both(jaccl_comm_t a, jaccl_comm_t b)
{
    int32_t x = 1234, y = 0;
    if (jaccl_comm_rank(a) == 0) MP_OK(a, jaccl_send(&x, 1, JACCL_INT32, 1, a));
    if (jaccl_comm_rank(a) == 1) {
        MP_OK(a, jaccl_recv(&y, 1, JACCL_INT32, 0, a));
        MP_CHECK(y == 1234, "on A got %d", (int)y);
    }
    int nb = jaccl_comm_size(b);
    if (jaccl_comm_rank(b) == nb - 2) MP_OK(b, jaccl_send(&x, 1, JACCL_INT32, nb - 1, b));
    if (jaccl_comm_rank(b) == nb - 1) {
        MP_OK(b, jaccl_recv(&y, 1, JACCL_INT32, nb - 2, b));
        MP_CHECK(y == 1234, "on B got %d", (int)y);
    }
    return 0;
}

static int two_comms(void *arg)
{
    (void)arg;
    jaccl_comm_t a = NULL, b = NULL;
    int rc = init_or_fail(&a, "first communicator") || init_second(&b);
    for (int i = 0; rc == 0 && i < 20; i++)
        rc = check_sum(i % 2 ? a : b, i) || (i % 5 == 0 && p2p_both(a, b));
    jaccl_comm_destroy(a);
    if (rc == 0) rc = check_sum(b, 99); /* B outlives A */
    jaccl_comm_destroy(b);
    return rc;
}

static void test_two_communicators_np3(void **state)
{
    static const char *const env[] = {"JACCL_RANK=@RANK@",         "JACCL_SIZE=@SIZE@",
                                      "JACCL_COORDINATOR=@COORD@", "JACCL_ALGO=ring",
                                      "MP_COORD2=@COORD2@",        NULL};
    (void)state;
    assert_int_equal(mp_run_raw(3, env, two_comms, NULL, 60), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reinit_same_coordinator_np2),
        cmocka_unit_test(test_reinit_same_coordinator_np4),
        cmocka_unit_test(test_two_communicators_np3),
    };
    return cmocka_run_group_tests_name("mp-lifecycle", tests, NULL, NULL);
}
