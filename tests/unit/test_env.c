/* Unit tests: environment parsing, host:port splitting, the selector's choices. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../env_vars.h"
#include "core/comm.h"
#include "util/sock.h"

static int clear_env(void **state)
{
    (void)state;
    for (size_t i = 0; i < JACCL_TEST_ENV_NVARS; i++) unsetenv(jaccl_test_env_vars[i]);
    return 0;
}

/* Parse with the given NAME=VALUE pairs set; returns the result code. */
static jaccl_result_t parse_with(struct jaccl_env *env, struct jaccl_err *e, const char *const *kv)
{
    clear_env(NULL);
    for (; *kv; kv += 2) setenv(kv[0], kv[1], 1);
    *e = (struct jaccl_err){.rank = -1};
    return jaccl_env_parse(env, NULL, e);
}

static void test_defaults_single_rank(void **state)
{
    struct jaccl_env env;
    struct jaccl_err e;
    const char *kv[] = {NULL};
    assert_int_equal(parse_with(&env, &e, kv), JACCL_SUCCESS);
    assert_int_equal(env.rank, 0);
    assert_int_equal(env.size, 1);
    assert_string_equal(env.transport, "auto");
    assert_true(env.timeout_s > 0);
    assert_int_equal(env.tcp_sockets, 0); /* unset: chosen at init from the hosts */
}

static void test_full_config(void **state)
{
    struct jaccl_env env;
    struct jaccl_err e;
    const char *kv[] = {"JACCL_RANK",
                        "2",
                        "JACCL_SIZE",
                        "4",
                        "JACCL_COORDINATOR",
                        "[::1]:29500",
                        "JACCL_TIMEOUT",
                        "2.5",
                        "JACCL_ALGO",
                        "allreduce:ring,allgather:mesh",
                        "JACCL_TCP_SOCKETS",
                        "4",
                        NULL};
    assert_int_equal(parse_with(&env, &e, kv), JACCL_SUCCESS);
    assert_int_equal(env.rank, 2);
    assert_int_equal(env.size, 4);
    assert_string_equal(env.coord_host, "::1");
    assert_string_equal(env.coord_port, "29500");
    assert_true(env.timeout_s == 2.5);
    assert_string_equal(env.algo[JACCL_COLL_ALLREDUCE]->name, "ring");
    assert_string_equal(env.algo[JACCL_COLL_ALLGATHER]->name, "mesh");
    assert_int_equal(env.tcp_sockets, 4);
}

static void test_fallback_launchers(void **state)
{
    const char *const sources[][4] = {
        {"MLX_RANK", "1", "JACCL_SIZE", "2"},
        {"OMPI_COMM_WORLD_RANK", "1", "OMPI_COMM_WORLD_SIZE", "2"},
        {"PMI_RANK", "1", "PMI_SIZE", "2"},
        {"SLURM_PROCID", "1", "SLURM_NTASKS", "2"},
    };
    for (size_t i = 0; i < sizeof(sources) / sizeof(sources[0]); i++) {
        struct jaccl_env env;
        struct jaccl_err e;
        const char *kv[] = {sources[i][0],           sources[i][1],    sources[i][2], sources[i][3],
                            "MLX_JACCL_COORDINATOR", "localhost:1234", NULL};
        assert_int_equal(parse_with(&env, &e, kv), JACCL_SUCCESS);
        assert_int_equal(env.rank, 1);
        assert_int_equal(env.size, 2);
        assert_string_equal(env.rank_var, sources[i][0]);
    }
}

/* JACCL_RANK wins over every launcher; then Open MPI, MPICH (PMI), Slurm, in that order.
 * Each case: the expected rank and variable, then the environment. */
static void test_launcher_precedence(void **state)
{
    const char *const cases[][14] = {
        {"2", "JACCL_RANK", "JACCL_RANK", "2", "JACCL_SIZE", "3", "OMPI_COMM_WORLD_RANK", "1",
         "OMPI_COMM_WORLD_SIZE", "2", NULL},
        {"1", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_RANK", "1", "OMPI_COMM_WORLD_SIZE", "2",
         "PMI_RANK", "0", "PMI_SIZE", "2", "SLURM_PROCID", "0", NULL},
        {"3", "PMI_RANK", "PMI_RANK", "3", "PMI_SIZE", "4", "SLURM_PROCID", "0", "SLURM_NTASKS",
         "2", NULL},
        /* a stale JACCL_SIZE without JACCL_RANK does not hide mpirun's variables */
        {"1", "OMPI_COMM_WORLD_RANK", "JACCL_SIZE", "8", "OMPI_COMM_WORLD_RANK", "1",
         "OMPI_COMM_WORLD_SIZE", "2", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct jaccl_env env;
        struct jaccl_err e;
        const char *kv[16] = {NULL};
        size_t n = 0;
        for (size_t k = 2; k < 14 && cases[i][k]; k++) kv[n++] = cases[i][k];
        kv[n++] = "JACCL_COORDINATOR";
        kv[n++] = "127.0.0.1:29500";
        kv[n] = NULL;
        assert_int_equal(parse_with(&env, &e, kv), JACCL_SUCCESS);
        assert_int_equal(env.rank, atoi(cases[i][0]));
        assert_string_equal(env.rank_var, cases[i][1]);
    }
}

/* A launcher's rank without its size, or out of range: the message names its variables. */
static void test_launcher_errors(void **state)
{
    const char *const cases[][5] = {
        {"OMPI_COMM_WORLD_RANK", "0", NULL, NULL, "OMPI_COMM_WORLD_SIZE"},
        {"PMI_RANK", "0", NULL, NULL, "PMI_SIZE"},
        {"SLURM_PROCID", "4", "SLURM_NTASKS", "4", "SLURM_PROCID=4"},
        {"PMI_RANK", "0", "PMI_SIZE", "zero", "PMI_SIZE"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct jaccl_env env;
        struct jaccl_err e;
        const char *kv[] = {cases[i][0], cases[i][1], cases[i][2], cases[i][3], NULL};
        assert_int_equal(parse_with(&env, &e, kv), JACCL_ERR_CONFIG);
        assert_non_null(strstr(e.msg, cases[i][4]));
    }
}

/* Each case must fail with CONFIG and name the variable in its message. */
static void test_bad_values(void **state)
{
    const char *const cases[][7] = {
        {"JACCL_SIZE", "2", NULL},
        {"JACCL_RANK", "0", NULL},
        {"JACCL_RANK", "4", "JACCL_SIZE", "4", NULL},
        {"JACCL_RANK", "x", "JACCL_SIZE", "4", NULL},
        {"JACCL_RANK", "-1", "JACCL_SIZE", "4", NULL},
        {"JACCL_RANK", "0", "JACCL_SIZE", "0", NULL},
        {"JACCL_RANK", "0", "JACCL_SIZE", "2", NULL},
        {"JACCL_RANK", "0", "JACCL_SIZE", "2", "JACCL_COORDINATOR", "nohostport", NULL},
        {"JACCL_RANK", "0", "JACCL_SIZE", "2", "JACCL_COORDINATOR", "host:", NULL},
        {"JACCL_RANK", "0", "JACCL_SIZE", "2", "JACCL_COORDINATOR", "host:99999", NULL},
        {"JACCL_RANK", "0", "JACCL_SIZE", "2", "JACCL_COORDINATOR", "::1:80", NULL},
        {"JACCL_TIMEOUT", "-1", NULL},
        {"JACCL_TIMEOUT", "abc", NULL},
        {"JACCL_TRANSPORT", "carrier-pigeon", NULL},
        {"JACCL_ALGO", "tree", NULL},
        {"JACCL_ALGO", "scatter:ring", NULL},
        {"JACCL_ALGO", "ring,,mesh", NULL},
        {"JACCL_TCP_SOCKETS", "0", NULL},
        {"JACCL_TCP_SOCKETS", "99", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct jaccl_env env;
        struct jaccl_err e;
        assert_int_equal(parse_with(&env, &e, cases[i]), JACCL_ERR_CONFIG);
        assert_true(strlen(e.msg) > 10);
        assert_non_null(strstr(e.msg, "JACCL_") ? e.msg : NULL);
    }
}

static void test_split_hostport(void **state)
{
    char h[64], p[16];
    assert_int_equal(jaccl_sock_split_hostport("10.0.0.1:29500", h, sizeof(h), p, sizeof(p)), 0);
    assert_string_equal(h, "10.0.0.1");
    assert_string_equal(p, "29500");
    assert_int_equal(jaccl_sock_split_hostport("[fe80::1]:7", h, sizeof(h), p, sizeof(p)), 0);
    assert_string_equal(h, "fe80::1");
    assert_int_equal(jaccl_sock_split_hostport("mac-0.local:1", h, sizeof(h), p, sizeof(p)), 0);
    assert_string_equal(h, "mac-0.local");
    const char *bad[] = {"", ":80", "host", "host:0", "host:65536", "[::1]80", "[::1]:", "h:8x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(jaccl_sock_split_hostport(bad[i], h, sizeof(h), p, sizeof(p)), -1);
}

/* A communicator with only what the selector reads. */
static void fake_comm(struct jaccl_comm *c, struct jaccl_tp *tp, int size)
{
    memset(c, 0, sizeof(*c));
    *tp = (struct jaccl_tp){.rank = 0, .size = size, .alpha_s = 12e-6, .beta_Bps = 3e9};
    c->size = size;
    c->actx = (struct jaccl_algo_ctx){.rank = 0,
                                      .size = size,
                                      .tp = tp,
                                      .seg_bytes = 128 << 10,
                                      .oneshot_bytes = 32 << 10,
                                      .gamma_Bps = 8e9,
                                      .max_links = 1};
}

static void test_selector(void **state)
{
    struct jaccl_comm c;
    struct jaccl_tp tp;
    fake_comm(&c, &tp, 4);
    /* Small messages: fewest steps wins. */
    assert_string_equal(jaccl_select(&c, JACCL_COLL_ALLREDUCE, 8)->name, "mesh");
    /* More links per neighbour make the ring cheaper for large messages. */
    c.actx.max_links = 4;
    assert_string_equal(jaccl_select(&c, JACCL_COLL_ALLREDUCE, 64 << 20)->name, "ring");
    /* JACCL_ALGO overrides the model. */
    struct jaccl_err e = {.rank = -1};
    assert_int_equal(jaccl_env_parse_algo("allreduce:ring", c.env.algo, &e), JACCL_SUCCESS);
    assert_string_equal(jaccl_select(&c, JACCL_COLL_ALLREDUCE, 8)->name, "ring");
    assert_null(c.env.algo[JACCL_COLL_ALLGATHER]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults_single_rank, clear_env),
        cmocka_unit_test_setup(test_full_config, clear_env),
        cmocka_unit_test_setup(test_fallback_launchers, clear_env),
        cmocka_unit_test_setup(test_launcher_precedence, clear_env),
        cmocka_unit_test_setup(test_launcher_errors, clear_env),
        cmocka_unit_test_setup(test_bad_values, clear_env),
        cmocka_unit_test(test_split_hostport),
        cmocka_unit_test(test_selector),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
