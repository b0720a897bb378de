/*
 * Two network namespaces x 2 ranks (run by netns_run.sh, which puts ranks
 * 0, 1 in one and 2, 3 in the other): shm inside each, TCP between.
 */
#include "common.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int collectives_job(jaccl_comm_t comm, void *arg)
{
    return shm_check_collectives(comm, *(const uint32_t *)arg);
}

static void run_mix(const char *algo)
{
    const char *const env[] = {algo, NULL};
    uint32_t tag = 7;
    assert_int_equal(mp_run(4, env, collectives_job, &tag, 120), 0);
}

static void test_mix_mesh(void **state)
{
    (void)state;
    run_mix("JACCL_ALGO=mesh");
}

static void test_mix_ring(void **state)
{
    (void)state;
    run_mix("JACCL_ALGO=ring");
}

static int forced_shm(void *arg)
{
    jaccl_comm_t comm = NULL;
    jaccl_result_t rc = jaccl_comm_init_env(&comm);
    if (arg) { /* JACCL_SHM_SCOPE=host: one host, shm everywhere */
        MP_OK(NULL, rc);
        uint32_t tag = 3;
        int bad = shm_check_collectives(comm, tag);
        jaccl_comm_destroy(comm);
        return bad;
    }
    MP_CHECK(rc == JACCL_ERR_CONFIG, "init returned %s, want a configuration error",
             jaccl_result_string(rc));
    MP_CHECK(strstr(jaccl_last_error(NULL), "another host"), "message: %s", jaccl_last_error(NULL));
    return 0;
}

#define RAW_ENV                                                                                    \
    "JACCL_RANK=@RANK@", "JACCL_SIZE=@SIZE@", "JACCL_COORDINATOR=@COORD@", "JACCL_TIMEOUT=10",     \
        "JACCL_TRANSPORT=shm"

static void test_forced_shm_refused(void **state)
{
    (void)state;
    const char *const env[] = {RAW_ENV, NULL};
    assert_int_equal(mp_run_raw(4, env, forced_shm, NULL, 60), 0);
}

static void test_scope_host(void **state)
{
    (void)state;
    const char *const env[] = {RAW_ENV, "JACCL_SHM_SCOPE=host", NULL};
    assert_int_equal(mp_run_raw(4, env, forced_shm, (void *)1, 60), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mix_mesh),
        cmocka_unit_test(test_mix_ring),
        cmocka_unit_test(test_forced_shm_refused),
        cmocka_unit_test(test_scope_host),
    };
    if (!getenv("MP_NETNS")) {
        fprintf(stderr, "run me through netns_run.sh\n");
        return 1;
    }
    if (getenv("MP_FILTER")) cmocka_set_test_filter(getenv("MP_FILTER"));
    return cmocka_run_group_tests_name("shm-netns", tests, NULL, NULL);
}
