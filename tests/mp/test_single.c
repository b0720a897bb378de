/*
 * A job of one: with no launcher variable at all, jaccl_comm_init_env gives
 * a communicator of size 1 whose collectives copy (or leave in place), and
 * whose point-to-point calls have no valid peer.  Run in a child process with
 * a cleared environment, like the other multi-process tests.
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
#include "values.h"

#define COUNT 1001

static void fill(jaccl_dtype_t dt, void *buf, size_t count, uint64_t seed)
{
    for (size_t i = 0; i < count; i++) {
        uint64_t h = mp_mix(seed + i);
        if (mp_is_float(dt))
            mp_store_float(dt, buf, i, mp_rand_float(dt, h, -5, 5));
        else
            mp_store_int(dt, buf, i, h);
    }
}

static int allreduce_copies(jaccl_comm_t c, jaccl_dtype_t dt, jaccl_op_t op, unsigned char *a,
                            unsigned char *b)
{
    size_t bytes = COUNT * jaccl_dtype_size(dt);
    if (!mp_op_defined(dt, op)) { /* bool AVG, complex MIN/MAX */
        MP_EXPECT(c, jaccl_allreduce(a, b, COUNT, dt, op, c), JACCL_ERR_UNSUPPORTED);
        return 0;
    }
    fill(dt, a, COUNT, (uint64_t)dt * 16 + (uint64_t)op);
    memset(b, 0xee, bytes + 1);
    MP_OK(c, jaccl_allreduce(a, b, COUNT, dt, op, c));
    MP_CHECK(memcmp(a, b, bytes) == 0 && b[bytes] == 0xee, "%s %s out of place: not a copy",
             mp_dtype_name(dt), mp_op_name(op));
    MP_OK(c, jaccl_allreduce(b, b, COUNT, dt, op, c));
    MP_CHECK(memcmp(a, b, bytes) == 0, "%s %s in place: changed the data", mp_dtype_name(dt),
             mp_op_name(op));
    MP_OK(c, jaccl_allreduce(a, b, 0, dt, op, c));
    MP_OK(c, jaccl_allreduce(NULL, NULL, 0, dt, op, c));
    return 0;
}

static int allgather_copies(jaccl_comm_t c, jaccl_dtype_t dt, unsigned char *a, unsigned char *b)
{
    size_t bytes = COUNT * jaccl_dtype_size(dt);
    fill(dt, a, COUNT, 99 + (uint64_t)dt);
    memset(b, 0xee, bytes + 1);
    MP_OK(c, jaccl_allgather(a, b, COUNT, dt, c));
    MP_CHECK(memcmp(a, b, bytes) == 0 && b[bytes] == 0xee, "%s allgather: not a copy",
             mp_dtype_name(dt));
    MP_OK(c, jaccl_allgather(b, b, COUNT, dt, c)); /* in place: rank 0's block is recvbuf */
    MP_CHECK(memcmp(a, b, bytes) == 0, "%s allgather in place changed the data", mp_dtype_name(dt));
    MP_OK(c, jaccl_allgather(NULL, NULL, 0, dt, c));
    return 0;
}

static int no_peers(jaccl_comm_t c, unsigned char *a)
{
    MP_EXPECT(c, jaccl_send(a, 1, JACCL_UINT8, 0, c), JACCL_ERR_INVALID_ARGUMENT);
    MP_EXPECT(c, jaccl_recv(a, 1, JACCL_UINT8, 0, c), JACCL_ERR_INVALID_ARGUMENT);
    MP_EXPECT(c, jaccl_send(a, 1, JACCL_UINT8, 1, c), JACCL_ERR_INVALID_ARGUMENT);
    MP_EXPECT(c, jaccl_recv(a, 1, JACCL_UINT8, -1, c), JACCL_ERR_INVALID_ARGUMENT);
    MP_EXPECT(c, jaccl_allreduce(NULL, a, 1, JACCL_UINT8, JACCL_SUM, c),
              JACCL_ERR_INVALID_ARGUMENT);
    MP_EXPECT(c, jaccl_allreduce(a, a, 1, (jaccl_dtype_t)99, JACCL_SUM, c),
              JACCL_ERR_INVALID_ARGUMENT);
    MP_EXPECT(c, jaccl_allreduce(a, a, 1, JACCL_UINT8, (jaccl_op_t)99, c),
              JACCL_ERR_INVALID_ARGUMENT);
    return 0;
}

static int single_job(jaccl_comm_t c, unsigned char *a, unsigned char *b)
{
    MP_CHECK(jaccl_comm_rank(c) == 0 && jaccl_comm_size(c) == 1, "rank %d size %d",
             jaccl_comm_rank(c), jaccl_comm_size(c));
    for (int dt = 0; dt < JACCL_DTYPE_COUNT; dt++) {
        for (int op = 0; op < JACCL_OP_COUNT; op++)
            if (allreduce_copies(c, (jaccl_dtype_t)dt, (jaccl_op_t)op, a, b)) return 1;
        if (allgather_copies(c, (jaccl_dtype_t)dt, a, b)) return 1;
    }
    return no_peers(c, a);
}

static int single_main(void *arg)
{
    (void)arg;
    jaccl_comm_t c = NULL;
    MP_CHECK(getenv("JACCL_RANK") == NULL && getenv("JACCL_SIZE") == NULL, "env not cleared");
    MP_OK(NULL, jaccl_comm_init_env(&c));
    unsigned char *a = malloc(COUNT * 8 + 1), *b = malloc(COUNT * 8 + 1);
    int rc = a && b ? single_job(c, a, b) : 1;
    free(a);
    free(b);
    MP_OK(NULL, jaccl_comm_destroy(c));
    return rc;
}

static void test_size1_no_env(void **state)
{
    (void)state;
    assert_int_equal(mp_run_raw(1, NULL, single_main, NULL, 60), 0);
}

/* The same through JACCL_RANK=0 JACCL_SIZE=1 and the harness's own init. */
static int size1_job(jaccl_comm_t c, void *arg)
{
    (void)arg;
    unsigned char a[8 * COUNT + 1], b[8 * COUNT + 1];
    return single_job(c, a, b);
}

static void test_size1_explicit(void **state)
{
    static const char *const env[] = {"JACCL_SIZE=1", "JACCL_COORDINATOR", NULL};
    (void)state;
    assert_int_equal(mp_run(1, env, size1_job, NULL, 60), 0);
}

/* The calls that need no communicator. */
static int api_basics(void *arg)
{
    (void)arg;
    for (int r = 0; r < JACCL_RESULT_COUNT; r++) {
        const char *s = jaccl_result_string((jaccl_result_t)r);
        MP_CHECK(s && *s, "jaccl_result_string(%d) is empty", r);
    }
    MP_CHECK(jaccl_result_string(JACCL_RESULT_COUNT) != NULL, "result string of COUNT");
    MP_CHECK(jaccl_result_string((jaccl_result_t)1000) != NULL, "result string of 1000");
    MP_CHECK(jaccl_result_string((jaccl_result_t)-1) != NULL, "result string of -1");
    MP_CHECK(mp_dtypes_known() == (1u << JACCL_DTYPE_COUNT) - 1,
             "jaccl.h declares dtypes tests/mp/values.c does not know (mask %#x): teach it",
             ~mp_dtypes_known() & ((1u << JACCL_DTYPE_COUNT) - 1));
    for (int d = 0; d < JACCL_DTYPE_COUNT; d++)
        MP_CHECK(jaccl_dtype_size((jaccl_dtype_t)d) == mp_dtype_size((jaccl_dtype_t)d),
                 "size of %s is %zu, want %zu", mp_dtype_name((jaccl_dtype_t)d),
                 jaccl_dtype_size((jaccl_dtype_t)d), mp_dtype_size((jaccl_dtype_t)d));
    MP_CHECK(jaccl_dtype_size((jaccl_dtype_t)99) == 0, "size of dtype 99");
    MP_CHECK(jaccl_comm_rank(NULL) == -1 && jaccl_comm_size(NULL) == -1, "rank/size of NULL");
    MP_CHECK(jaccl_comm_destroy(NULL) == JACCL_SUCCESS, "destroy(NULL)");
    MP_CHECK(jaccl_comm_init_env(NULL) == JACCL_ERR_INVALID_ARGUMENT, "init_env(NULL)");
    MP_CHECK(*jaccl_last_error(NULL), "no message after init_env(NULL)");
    return 0;
}

static void test_api_basics(void **state)
{
    (void)state;
    assert_int_equal(mp_run_raw(1, NULL, api_basics, NULL, 30), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_size1_no_env),
        cmocka_unit_test(test_size1_explicit),
        cmocka_unit_test(test_api_basics),
    };
    return cmocka_run_group_tests_name("mp-single", tests, NULL, NULL);
}
