/*
 * The JACCL device file parser: the MLX examples (copies in data/) are
 * accepted as they are; each malformed file is refused with a message that
 * names the cell (or row) at fault.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/devfile.h"

static const char *data_dir(void)
{
    const char *d = getenv("VERBS_DATA");
    return d ? d : "data";
}

static jaccl_result_t load(const char *name, struct jaccl_devfile *df, struct jaccl_err *e)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", data_dir(), name);
    *e = (struct jaccl_err){.rank = -1};
    return jaccl_devfile_load(path, "JACCL_IBV_DEVICES", df, e);
}

static void mesh4_matrix(void **state)
{
    struct jaccl_devfile df;
    struct jaccl_err e;
    (void)state;
    assert_int_equal(load("jaccl-devices-mesh4.json", &df, &e), JACCL_SUCCESS);
    assert_int_equal(df.size, 4);
    assert_int_equal(df.cables[0 * 4 + 1], 1);
    assert_string_equal(df.names[(2 * 4 + 3) * JACCL_MAX_LINKS], "rdma_en3");
    assert_int_equal(df.cables[3 * 4 + 3], 0);
    assert_false(jaccl_devfile_is_ring(&df));
    jaccl_devfile_free(&df);
}

static void mesh4_hostfile(void **state)
{
    struct jaccl_devfile df;
    struct jaccl_err e;
    (void)state;
    assert_int_equal(load("mlx-hostfile-jaccl-mesh4.json", &df, &e), JACCL_SUCCESS);
    assert_int_equal(df.size, 4);
    assert_string_equal(df.names[(1 * 4 + 2) * JACCL_MAX_LINKS], "rdma_en5");
    jaccl_devfile_free(&df);
}

static void ring4_two_cables(void **state)
{
    struct jaccl_devfile df;
    struct jaccl_err e;
    (void)state;
    assert_int_equal(load("mlx-hostfile-jaccl-ring4-2cables.json", &df, &e), JACCL_SUCCESS);
    assert_int_equal(df.size, 4);
    assert_int_equal(df.cables[0 * 4 + 1], 2);
    assert_int_equal(df.cables[0 * 4 + 2], 0);
    assert_string_equal(df.names[(3 * 4 + 0) * JACCL_MAX_LINKS + 1], "rdma_en6");
    assert_true(jaccl_devfile_is_ring(&df));
    jaccl_devfile_free(&df);
}

static void refused(const char *file, const char *want)
{
    struct jaccl_devfile df;
    struct jaccl_err e;
    assert_int_equal(load(file, &df, &e), JACCL_ERR_CONFIG);
    if (!strstr(e.msg, want)) fail_msg("%s: message '%s' lacks '%s'", file, e.msg, want);
    assert_non_null(strstr(e.msg, "JACCL_IBV_DEVICES"));
    assert_null(df.cables);
}

static void malformed(void **state)
{
    (void)state;
    refused("bad-notsquare.json", "row 0 is not a list of 3 cells");
    refused("bad-diagonal.json", "cell [1][1] is on the diagonal");
    refused("bad-asymmetric.json", "cell [0][2] has 0 cable(s) but cell [2][0] has 1");
    refused("bad-cables.json", "cell [0][1] has 2 cable(s) but cell [1][0] has 1");
    refused("bad-type.json", "cell [0][1] holds something other than a device name");
    refused("bad-json.json", "not readable JSON");
    refused("no-such-file.json", "not readable JSON");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mesh4_matrix),
        cmocka_unit_test(mesh4_hostfile),
        cmocka_unit_test(ring4_two_cables),
        cmocka_unit_test(malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
