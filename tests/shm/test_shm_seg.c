/*
 * Segment names: a second segment with a name in use is refused, never
 * shared.  And the shm variables are checked when the environment is read.
 */
#include "core/env.h"
#include "transport/shm/shm.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct fake {
    struct shm_tp t;
    struct shm_end out[2], in[2];
    int lrank[2];
    struct jaccl_err err;
};

static void fake_init(struct fake *f, const char *name)
{
    memset(f, 0, sizeof(*f));
    f->err.rank = 0;
    f->t.base.err = &f->err;
    f->t.nlocal = 2;
    f->t.out = f->out;
    f->t.in = f->in;
    f->t.lrank = f->lrank;
    f->t.job_id = 42;
    snprintf(f->t.name, sizeof(f->t.name), "%s", name);
}

static void test_name_taken(void **state)
{
    (void)state;
    static struct fake a, b;
    char name[64];
    snprintf(name, sizeof(name), "/jaccl-test-%d", (int)getpid());
    fake_init(&a, name);
    fake_init(&b, name);
    assert_int_equal(jaccl_shm_seg_create(&a.t), JACCL_SUCCESS);
    assert_int_equal(jaccl_shm_seg_create(&b.t), JACCL_ERR_SYSTEM);
    assert_non_null(strstr(b.err.msg, "exists"));
    jaccl_shm_seg_close(&b.t); /* must not remove a's name */
    int fd = shm_open(name, O_RDONLY, 0);
    assert_true(fd >= 0);
    close(fd);
    jaccl_shm_seg_close(&a.t); /* still linked: a removes it on the way out */
    assert_true(shm_open(name, O_RDONLY, 0) < 0 && errno == ENOENT);
}

static jaccl_result_t parse_with(const char *name, const char *value, struct jaccl_env *env,
                                 struct jaccl_err *e)
{
    setenv(name, value, 1);
    jaccl_result_t rc = jaccl_env_parse(env, NULL, e);
    unsetenv(name);
    return rc;
}

static void test_env(void **state)
{
    (void)state;
    static struct jaccl_env env;
    struct jaccl_err e = {.rank = -1};
    assert_int_equal(parse_with("JACCL_SHM_SCOPE", "host", &env, &e), JACCL_SUCCESS);
    assert_int_equal(env.shm_scope_host, 1);
    assert_int_equal(parse_with("JACCL_SHM_SCOPE", "netns", &env, &e), JACCL_SUCCESS);
    assert_int_equal(env.shm_scope_host, 0);
    assert_int_equal(parse_with("JACCL_SHM_SCOPE", "galaxy", &env, &e), JACCL_ERR_CONFIG);
    assert_non_null(strstr(e.msg, "JACCL_SHM_SCOPE='galaxy'"));
    assert_int_equal(parse_with("JACCL_SHM_SINGLE_COPY", "0", &env, &e), JACCL_SUCCESS);
    assert_int_equal(env.shm_single_copy, 0);
    assert_int_equal(parse_with("JACCL_SHM_SINGLE_COPY", "2", &env, &e), JACCL_ERR_CONFIG);
    assert_non_null(strstr(e.msg, "JACCL_SHM_SINGLE_COPY"));
    assert_int_equal(parse_with("JACCL_TRANSPORT", "shm", &env, &e), JACCL_SUCCESS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_name_taken),
                                       cmocka_unit_test(test_env)};
    return cmocka_run_group_tests_name("shm-seg", tests, NULL, NULL);
}
