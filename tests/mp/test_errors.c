/*
 * Failures across real processes: bad environments make jaccl_comm_init_env
 * return the right code quickly with a message; every launcher's variables
 * start a working job; bad arguments leave a communicator usable; a peer that
 * dies makes the survivors' next call fail instead of hanging.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define E_CONFIG  JACCL_ERR_CONFIG
#define E_TIMEOUT JACCL_ERR_TIMEOUT
#define QUICK     1.0 /* seconds a configuration error may take */

/* ---- jaccl_comm_init_env with a bad environment ---- */

struct env_case {
    const char *name;
    const char *env[8];
    jaccl_result_t want;
    double max_s; /* the call must return within this */
};

static int expect_init(void *arg)
{
    const struct env_case *c = arg;
    static int sentinel;
    jaccl_comm_t comm = (jaccl_comm_t)(void *)&sentinel;
    double t0 = mp_now();
    jaccl_result_t rc = jaccl_comm_init_env(&comm);
    double dt = mp_now() - t0;
    const char *msg = jaccl_last_error(NULL);
    if (rc == JACCL_SUCCESS) jaccl_comm_destroy(comm);
    MP_CHECK(rc == c->want, "%s: init returned %s, want %s (%s)", c->name, jaccl_result_string(rc),
             jaccl_result_string(c->want), msg);
    MP_CHECK(dt <= c->max_s, "%s: init took %.2f s, want <= %.2f s", c->name, dt, c->max_s);
    if (rc == JACCL_SUCCESS) return 0;
    MP_CHECK(comm == (jaccl_comm_t)(void *)&sentinel, "%s: *comm was set on failure", c->name);
    MP_CHECK(msg && *msg, "%s: jaccl_last_error(NULL) is empty after %s", c->name,
             jaccl_result_string(rc));
    fprintf(stderr, "[mp] %s: %s in %.2f s: %s\n", c->name, jaccl_result_string(rc), dt, msg);
    return 0;
}

static void test_env_case(void **state)
{
    const struct env_case *c = *state;
    assert_int_equal(mp_run_raw(1, c->env, expect_init, (void *)c, c->max_s + 20), 0);
}

#define RS2   "JACCL_RANK=0", "JACCL_SIZE=2"
#define COORD "JACCL_COORDINATOR=@COORD@"
/* JACCL_TIMEOUT=2 first: should a bad value be accepted, init fails in 2 s, not 120 s. */
/* clang-format off */
#define CFG(name, ...) {name, {"JACCL_TIMEOUT=2", __VA_ARGS__}, E_CONFIG, QUICK}
/* clang-format on */

static const struct env_case env_cases[] = {
    CFG("size-without-rank", "JACCL_SIZE=2", COORD),
    CFG("rank-without-size", "JACCL_RANK=0", COORD),
    CFG("rank-equals-size", "JACCL_RANK=2", "JACCL_SIZE=2", COORD),
    CFG("rank-above-size", "JACCL_RANK=7", "JACCL_SIZE=4", COORD),
    CFG("rank-negative", "JACCL_RANK=-1", "JACCL_SIZE=2", COORD),
    CFG("rank-non-numeric", "JACCL_RANK=abc", "JACCL_SIZE=2", COORD),
    CFG("rank-trailing-junk", "JACCL_RANK=1x", "JACCL_SIZE=2", COORD),
    CFG("size-zero", "JACCL_RANK=0", "JACCL_SIZE=0", COORD),
    CFG("size-non-numeric", "JACCL_RANK=0", "JACCL_SIZE=two", COORD),
    CFG("ompi-rank-without-size", "OMPI_COMM_WORLD_RANK=0", COORD),
    CFG("slurm-rank-out-of-range", "SLURM_PROCID=3", "SLURM_NTASKS=2", COORD),
    CFG("coordinator-missing-rank0", RS2),
    CFG("coordinator-missing-rank1", "JACCL_RANK=1", "JACCL_SIZE=2"),
    CFG("coordinator-nohostport", RS2, "JACCL_COORDINATOR=nohostport"),
    CFG("coordinator-no-port", RS2, "JACCL_COORDINATOR=host:"),
    CFG("coordinator-port-too-big", RS2, "JACCL_COORDINATOR=host:99999"),
    CFG("coordinator-port-zero", RS2, "JACCL_COORDINATOR=127.0.0.1:0"),
    CFG("coordinator-port-not-a-number", RS2, "JACCL_COORDINATOR=1.2.3.4:abc"),
    CFG("coordinator-no-host", RS2, "JACCL_COORDINATOR=:1234"),
    CFG("coordinator-bare-ipv6", RS2, "JACCL_COORDINATOR=::1:1234"),
    CFG("coordinator-unclosed-bracket", RS2, "JACCL_COORDINATOR=[::1:1234"),
    CFG("mlx-coordinator-malformed", RS2, "MLX_JACCL_COORDINATOR=nohostport"),
    CFG("coordinator-unresolvable-rank1", "JACCL_RANK=1", "JACCL_SIZE=2",
        "JACCL_COORDINATOR=no-such-host.invalid:1234", "JACCL_TIMEOUT=2"),
    CFG("coordinator-unresolvable-rank0", RS2, "JACCL_COORDINATOR=no-such-host.invalid:1234",
        "JACCL_TIMEOUT=2"),
    CFG("transport-unknown", RS2, COORD, "JACCL_TRANSPORT=carrier-pigeon"),
    CFG("algo-unknown", RS2, COORD, "JACCL_ALGO=bogus"),
    CFG("algo-unknown-for-collective", RS2, COORD, "JACCL_ALGO=allreduce:bogus"),
    CFG("algo-unknown-collective", RS2, COORD, "JACCL_ALGO=allscan:ring"),
    CFG("algo-empty-item", RS2, COORD, "JACCL_ALGO=ring,,mesh"),
    CFG("timeout-negative", RS2, COORD, "JACCL_TIMEOUT=-1"),
    CFG("timeout-non-numeric", RS2, COORD, "JACCL_TIMEOUT=abc"),
    CFG("timeout-zero", RS2, COORD, "JACCL_TIMEOUT=0"),
    CFG("timeout-nan", RS2, COORD, "JACCL_TIMEOUT=nan"),
    CFG("tcp-sockets-zero", RS2, COORD, "JACCL_TCP_SOCKETS=0"),
    CFG("tcp-sockets-17", RS2, COORD, "JACCL_TCP_SOCKETS=17"),
    CFG("ring-bidir-2", RS2, COORD, "JACCL_RING_BIDIR=2"),
    CFG("spin-us-negative", RS2, COORD, "JACCL_SPIN_US=-5"),
    {"unreachable-coordinator",
     {"JACCL_RANK=1", "JACCL_SIZE=2", COORD, "JACCL_TIMEOUT=2"},
     E_TIMEOUT,
     3.0},
    {"rank0-alone", {RS2, COORD, "JACCL_TIMEOUT=2"}, E_TIMEOUT, 3.0},
    {"rank0-of-3-alone",
     {"JACCL_RANK=0", "JACCL_SIZE=3", COORD, "JACCL_TIMEOUT=2"},
     E_TIMEOUT,
     3.0},
    {"size-1-explicit", {"JACCL_RANK=0", "JACCL_SIZE=1"}, JACCL_SUCCESS, QUICK},
    {"no-environment", {NULL}, JACCL_SUCCESS, QUICK},
};

/* The message names the coordinator's address once (it is not repeated). */
static int unreachable_message(void *arg)
{
    (void)arg;
    jaccl_comm_t comm = NULL;
    const char *addr = getenv("JACCL_COORDINATOR");
    jaccl_result_t rc = jaccl_comm_init_env(&comm);
    if (rc == JACCL_SUCCESS) jaccl_comm_destroy(comm);
    const char *msg = jaccl_last_error(NULL), *p = msg;
    int n = 0;
    while ((p = strstr(p, addr)) != NULL) n++, p++;
    MP_CHECK(rc == E_TIMEOUT && n == 1, "%s; the message names %s %d times: '%s'",
             jaccl_result_string(rc), addr, n, msg);
    return 0;
}

static void test_unreachable_message(void **state)
{
    static const char *const env[] = {"JACCL_RANK=1", "JACCL_SIZE=2", COORD, "JACCL_TIMEOUT=1",
                                      NULL};
    (void)state;
    assert_int_equal(mp_run_raw(1, env, unreachable_message, NULL, 20), 0);
}

/* ---- ranks that disagree on the size: both must be told, neither may hang ---- */

static int size_mismatch(void *arg)
{
    (void)arg;
    jaccl_comm_t comm = NULL;
    char s[16];
    snprintf(s, sizeof(s), "%d", mp_rank() == 0 ? 2 : 3);
    setenv("JACCL_SIZE", s, 1);
    double t0 = mp_now();
    jaccl_result_t rc = jaccl_comm_init_env(&comm);
    if (rc == JACCL_SUCCESS) jaccl_comm_destroy(comm);
    MP_CHECK(rc == E_CONFIG, "init returned %s, want %s (%s)", jaccl_result_string(rc),
             jaccl_result_string(E_CONFIG), jaccl_last_error(NULL));
    MP_CHECK(mp_now() - t0 < 3.0, "took %.2f s", mp_now() - t0);
    MP_CHECK(*jaccl_last_error(NULL), "no message");
    return 0;
}

static void test_size_mismatch(void **state)
{
    static const char *const env[] = {"JACCL_RANK=@RANK@", COORD, "JACCL_TIMEOUT=2", NULL};
    (void)state;
    assert_int_equal(mp_run_raw(2, env, size_mismatch, NULL, 30), 0);
}

/* Two processes claim rank 1: rank 0 must say so; nobody may succeed or hang. */
static int duplicate_rank(void *arg)
{
    (void)arg;
    jaccl_comm_t comm = NULL;
    setenv("JACCL_RANK", mp_rank() == 0 ? "0" : "1", 1);
    double t0 = mp_now();
    jaccl_result_t rc = jaccl_comm_init_env(&comm);
    if (rc == JACCL_SUCCESS) jaccl_comm_destroy(comm);
    MP_CHECK(rc != JACCL_SUCCESS, "init succeeded with a duplicate rank");
    MP_CHECK(mp_rank() != 0 || rc == E_CONFIG, "rank 0 returned %s, want %s (%s)",
             jaccl_result_string(rc), jaccl_result_string(E_CONFIG), jaccl_last_error(NULL));
    MP_CHECK(mp_now() - t0 < 3.0, "took %.2f s", mp_now() - t0);
    MP_CHECK(*jaccl_last_error(NULL), "no message");
    return 0;
}

static void test_duplicate_rank(void **state)
{
    static const char *const env[] = {"JACCL_SIZE=3", COORD, "JACCL_TIMEOUT=2", NULL};
    (void)state;
    assert_int_equal(mp_run_raw(3, env, duplicate_rank, NULL, 30), 0);
}

/* ---- launchers' variables ---- */

static int launcher_job(jaccl_comm_t comm, void *arg)
{
    (void)arg;
    int n = mp_size();
    int64_t v = jaccl_comm_rank(comm) + 1, sum = 0;
    MP_CHECK(jaccl_comm_rank(comm) == mp_rank(), "rank %d, want %d", jaccl_comm_rank(comm),
             mp_rank());
    MP_CHECK(jaccl_comm_size(comm) == n, "size %d, want %d", jaccl_comm_size(comm), n);
    MP_OK(comm, jaccl_allreduce(&v, &sum, 1, JACCL_INT64, JACCL_SUM, comm));
    MP_CHECK(sum == n * (n + 1) / 2, "sum %lld", (long long)sum);
    return 0;
}

#define NO_JACCL "JACCL_RANK", "JACCL_SIZE"

static const char *const env_ompi[] = {NO_JACCL, "OMPI_COMM_WORLD_RANK=@RANK@",
                                       "OMPI_COMM_WORLD_SIZE=@SIZE@", NULL};
static const char *const env_pmi[] = {NO_JACCL, "PMI_RANK=@RANK@", "PMI_SIZE=@SIZE@", NULL};
static const char *const env_slurm[] = {NO_JACCL, "SLURM_PROCID=@RANK@", "SLURM_NTASKS=@SIZE@",
                                        NULL};
static const char *const env_mlx[] = {"JACCL_RANK", "JACCL_COORDINATOR", "MLX_RANK=@RANK@",
                                      "MLX_JACCL_COORDINATOR=@COORD@", NULL};

/* JACCL_RANK comes first: other launchers' (conflicting) variables are ignored. */
static const char *const env_precedence[] = {
    "SLURM_PROCID=0",         "SLURM_NTASKS=1",         "MLX_RANK=0",
    "OMPI_COMM_WORLD_RANK=5", "OMPI_COMM_WORLD_SIZE=2", NULL};

static void test_launcher_precedence(void **state)
{
    (void)state;
    assert_int_equal(mp_run(2, env_precedence, launcher_job, NULL, 30), 0);
}

static void test_launcher_ompi(void **state)
{
    (void)state;
    assert_int_equal(mp_run(2, env_ompi, launcher_job, NULL, 30), 0);
}

static void test_launcher_pmi(void **state)
{
    (void)state;
    assert_int_equal(mp_run(2, env_pmi, launcher_job, NULL, 30), 0);
}

static void test_launcher_slurm(void **state)
{
    (void)state;
    assert_int_equal(mp_run(3, env_slurm, launcher_job, NULL, 30), 0);
}

static void test_launcher_mlx(void **state)
{
    (void)state;
    assert_int_equal(mp_run(2, env_mlx, launcher_job, NULL, 30), 0);
}

/* ---- bad arguments on a working communicator ---- */

#define BAD_ARG(comm, expr) MP_EXPECT(comm, expr, JACCL_ERR_INVALID_ARGUMENT)

static int bad_allreduce_args(jaccl_comm_t c, int32_t *buf)
{
    BAD_ARG(c, jaccl_allreduce(NULL, buf, 4, JACCL_INT32, JACCL_SUM, c));
    BAD_ARG(c, jaccl_allreduce(buf, NULL, 4, JACCL_INT32, JACCL_SUM, c));
    BAD_ARG(c, jaccl_allreduce(buf, buf, 4, (jaccl_dtype_t)99, JACCL_SUM, c));
    BAD_ARG(c, jaccl_allreduce(buf, buf, 4, JACCL_DTYPE_COUNT, JACCL_SUM, c));
    BAD_ARG(c, jaccl_allreduce(buf, buf, 4, JACCL_INT32, (jaccl_op_t)99, c));
    BAD_ARG(c, jaccl_allreduce(buf, buf, 4, JACCL_INT32, JACCL_OP_COUNT, c));
    BAD_ARG(c, jaccl_allreduce(buf, buf + 1, 4, JACCL_INT32, JACCL_SUM, c)); /* overlap */
    BAD_ARG(c, jaccl_allreduce(buf, buf + 32, SIZE_MAX / 2, JACCL_INT32, JACCL_SUM, c));
    MP_CHECK(jaccl_allreduce(buf, buf, 4, JACCL_INT32, JACCL_SUM, NULL) ==
                 JACCL_ERR_INVALID_ARGUMENT,
             "allreduce with a NULL comm");
    return 0;
}

/* Combinations the header leaves undefined: refused, and the communicator stays usable. */
static int unsupported_ops(jaccl_comm_t c, int32_t *buf)
{
    MP_EXPECT(c, jaccl_allreduce(buf, buf, 4, JACCL_BOOL, JACCL_AVG, c), JACCL_ERR_UNSUPPORTED);
    MP_EXPECT(c, jaccl_allreduce(buf, buf, 2, JACCL_COMPLEX64, JACCL_MIN, c),
              JACCL_ERR_UNSUPPORTED);
    MP_EXPECT(c, jaccl_allreduce(buf, buf + 8, 2, JACCL_COMPLEX64, JACCL_MAX, c),
              JACCL_ERR_UNSUPPORTED);
    return 0;
}

static int bad_allgather_args(jaccl_comm_t c, int32_t *buf)
{
    BAD_ARG(c, jaccl_allgather(NULL, buf, 2, JACCL_INT32, c));
    BAD_ARG(c, jaccl_allgather(buf, NULL, 2, JACCL_INT32, c));
    BAD_ARG(c, jaccl_allgather(buf, buf + 16, 2, (jaccl_dtype_t)99, c));
    BAD_ARG(c, jaccl_allgather(buf, buf + 16, SIZE_MAX / 8, JACCL_INT32, c)); /* x size overflows */
    /* Overlaps recvbuf but is not this rank's block. */
    int own = 2 * jaccl_comm_rank(c), other = own == 0 ? 1 : own - 1;
    BAD_ARG(c, jaccl_allgather(buf + other, buf, 2, JACCL_INT32, c));
    MP_CHECK(jaccl_allgather(buf, buf + 16, 2, JACCL_INT32, NULL) == JACCL_ERR_INVALID_ARGUMENT,
             "allgather with a NULL comm");
    return 0;
}

static int bad_p2p_args(jaccl_comm_t c, int32_t *buf)
{
    int me = jaccl_comm_rank(c), n = jaccl_comm_size(c), peer = (me + 1) % n;
    BAD_ARG(c, jaccl_send(NULL, 4, JACCL_INT32, peer, c));
    BAD_ARG(c, jaccl_recv(NULL, 4, JACCL_INT32, peer, c));
    BAD_ARG(c, jaccl_send(buf, 4, JACCL_INT32, -1, c));
    BAD_ARG(c, jaccl_recv(buf, 4, JACCL_INT32, n, c));
    BAD_ARG(c, jaccl_send(buf, 4, JACCL_INT32, me, c));
    BAD_ARG(c, jaccl_recv(buf, 4, JACCL_INT32, me, c));
    BAD_ARG(c, jaccl_send(buf, 4, (jaccl_dtype_t)99, peer, c));
    BAD_ARG(c, jaccl_recv(buf, 4, (jaccl_dtype_t)99, peer, c));
    BAD_ARG(c, jaccl_send(buf, SIZE_MAX, JACCL_INT32, peer, c));
    MP_CHECK(jaccl_send(buf, 4, JACCL_INT32, peer, NULL) == JACCL_ERR_INVALID_ARGUMENT,
             "send with a NULL comm");
    MP_CHECK(jaccl_recv(buf, 4, JACCL_INT32, peer, NULL) == JACCL_ERR_INVALID_ARGUMENT,
             "recv with a NULL comm");
    return 0;
}

/* After all the refused calls: a collective and a ring of messages still work. */
static int still_works(jaccl_comm_t c)
{
    int me = jaccl_comm_rank(c), n = jaccl_comm_size(c);
    int32_t v[3] = {me, 1, -me}, got = -1;
    MP_OK(c, jaccl_allreduce(v, v, 3, JACCL_INT32, JACCL_SUM, c));
    MP_CHECK(v[0] == n * (n - 1) / 2 && v[1] == n && v[2] == -v[0], "allreduce gave %d %d %d",
             (int)v[0], (int)v[1], (int)v[2]);
    int32_t mine = 100 + me;
    if (me == 0) {
        MP_OK(c, jaccl_send(&mine, 1, JACCL_INT32, 1, c));
        MP_OK(c, jaccl_recv(&got, 1, JACCL_INT32, n - 1, c));
        MP_CHECK(got == 100 + n - 1, "got %d", (int)got);
    } else {
        MP_OK(c, jaccl_recv(&got, 1, JACCL_INT32, me - 1, c));
        MP_CHECK(got == 99 + me, "got %d", (int)got);
        MP_OK(c, jaccl_send(&mine, 1, JACCL_INT32, (me + 1) % n, c));
    }
    return 0;
}

static int bad_args_job(jaccl_comm_t comm, void *arg)
{
    (void)arg;
    int32_t buf[64] = {0};
    return bad_allreduce_args(comm, buf) || unsupported_ops(comm, buf) ||
           bad_allgather_args(comm, buf) || bad_p2p_args(comm, buf) || still_works(comm);
}

static void test_bad_args_np2(void **state)
{
    (void)state;
    assert_int_equal(mp_run(2, NULL, bad_args_job, NULL, 30), 0);
}

static void test_bad_args_np3(void **state)
{
    static const char *const env[] = {"JACCL_ALGO=ring", NULL};
    (void)state;
    assert_int_equal(mp_run(3, env, bad_args_job, NULL, 30), 0);
}

/* ---- a peer that exits without jaccl_comm_destroy ---- */

#define DEATH_TIMEOUT 3.0
#define DEATH_COUNT   (1u << 20)

struct death {
    int mid_message; /* the victim dies half way through a message to rank 0 */
};

/* The victim (last rank) waits for a word from every survivor, so it has read all its input. */
static int victim(jaccl_comm_t comm, const struct death *d, float *buf)
{
    int n = jaccl_comm_size(comm);
    for (int q = 0; q < n - 1; q++) MP_OK(comm, jaccl_recv(buf, 1, JACCL_FLOAT32, q, comm));
    /* Rank 0 sees from the header that the message is short and may stop reading: no check. */
    if (d->mid_message) jaccl_send(buf, DEATH_COUNT / 2, JACCL_FLOAT32, 0, comm);
    _exit(0);
}

static int expect_failure(jaccl_comm_t comm, jaccl_result_t rc, double t0, double limit,
                          const char *what)
{
    double dt = mp_now() - t0;
    /* The message cut short is also smaller than the receive: its header says so. */
    int short_msg = strstr(jaccl_last_error(comm), "bytes but this jaccl_recv expects") != NULL ||
                    strstr(jaccl_last_error(comm), "first error: rank 0: jaccl_recv") != NULL;
    MP_CHECK(rc == JACCL_ERR_REMOTE || rc == JACCL_ERR_TIMEOUT ||
                 (rc == JACCL_ERR_INVALID_USAGE && short_msg),
             "%s returned %s, want a failure: %s", what, jaccl_result_string(rc),
             jaccl_last_error(comm));
    MP_CHECK(dt <= limit, "%s took %.2f s to fail (limit %.1f s)", what, dt, limit);
    MP_CHECK(*jaccl_last_error(comm), "%s: no message", what);
    fprintf(stderr, "[mp rank %d] %s: %s in %.2f s: %s\n", mp_rank(), what, jaccl_result_string(rc),
            dt, jaccl_last_error(comm));
    return 0;
}

static int survivor(jaccl_comm_t comm, const struct death *d, float *buf)
{
    int n = jaccl_comm_size(comm), me = jaccl_comm_rank(comm);
    MP_OK(comm, jaccl_send(buf, 1, JACCL_FLOAT32, n - 1, comm));
    double t0 = mp_now();
    jaccl_result_t rc;
    if (d->mid_message && me == 0) {
        rc = jaccl_recv(buf, DEATH_COUNT, JACCL_FLOAT32, n - 1, comm);
        if (expect_failure(comm, rc, t0, DEATH_TIMEOUT + 1, "recv cut short")) return 1;
        t0 = mp_now();
    }
    rc = jaccl_allreduce(buf, buf, DEATH_COUNT, JACCL_FLOAT32, JACCL_SUM, comm);
    if (expect_failure(comm, rc, t0, DEATH_TIMEOUT + 1, "allreduce")) return 1;
    t0 = mp_now(); /* the communicator is broken now: the next call fails at once */
    rc = jaccl_allreduce(buf, buf, 1, JACCL_FLOAT32, JACCL_SUM, comm);
    return expect_failure(comm, rc, t0, DEATH_TIMEOUT + 1, "next allreduce");
}

static int death_job(jaccl_comm_t comm, void *arg)
{
    const struct death *d = arg;
    float *buf = calloc(DEATH_COUNT, sizeof(float));
    MP_CHECK(buf, "out of memory");
    int rc = 0;
    MP_OK(comm, jaccl_allreduce(buf, buf, DEATH_COUNT, JACCL_FLOAT32, JACCL_SUM, comm));
    if (jaccl_comm_rank(comm) == jaccl_comm_size(comm) - 1)
        rc = victim(comm, d, buf);
    else
        rc = survivor(comm, d, buf);
    free(buf);
    return rc;
}

static void run_death(int np, const char *algo, int mid_message)
{
    char a[32];
    snprintf(a, sizeof(a), "JACCL_ALGO=%s", algo);
    const char *const env[] = {a, "JACCL_TIMEOUT=3", NULL};
    struct death d = {mid_message};
    assert_int_equal(mp_run(np, env, death_job, &d, 30), 0);
}

static void test_death_np2_mesh(void **state)
{
    (void)state;
    run_death(2, "mesh", 0);
}

static void test_death_np3_mesh(void **state)
{
    (void)state;
    run_death(3, "mesh", 0);
}

static void test_death_np3_ring(void **state)
{
    (void)state;
    run_death(3, "ring", 0);
}

static void test_death_np4_ring(void **state)
{
    (void)state;
    run_death(4, "ring", 0);
}

static void test_death_mid_message_np2(void **state)
{
    (void)state;
    run_death(2, "auto", 1);
}

static void test_death_mid_message_np3(void **state)
{
    (void)state;
    run_death(3, "ring", 1);
}

/* ---- a peer that is alive but never joins the call ---- */

#define STALL_TIMEOUT 2 /* JACCL_TIMEOUT of these jobs */

/*
 * The late rank's first call may still complete (the others' data can be
 * waiting in its sockets) but must not hang; its next call must fail.
 */
static int late_rank(jaccl_comm_t comm, float *v, size_t count)
{
    double t0 = mp_now();
    jaccl_result_t rc = jaccl_allreduce(v, v, count, JACCL_FLOAT32, JACCL_SUM, comm);
    MP_CHECK(mp_now() - t0 <= STALL_TIMEOUT + 1, "late allreduce took %.2f s (%s)", mp_now() - t0,
             jaccl_result_string(rc));
    t0 = mp_now();
    rc = jaccl_allreduce(v, v, count, JACCL_FLOAT32, JACCL_SUM, comm);
    return expect_failure(comm, rc, t0, STALL_TIMEOUT + 1, "allreduce after the others left");
}

/* A large count fills the socket buffers, so senders block too. */
static int stall_ranks(jaccl_comm_t comm, float *v, size_t count)
{
    MP_OK(comm, jaccl_allreduce(v, v, count, JACCL_FLOAT32, JACCL_SUM, comm));
    if (jaccl_comm_rank(comm) == jaccl_comm_size(comm) - 1) {
        /* Sleep through the others' deadline; by then they have given up and left. */
        struct timespec ts = {STALL_TIMEOUT + 1, 500000000};
        nanosleep(&ts, NULL);
        return late_rank(comm, v, count);
    }
    double t0 = mp_now();
    jaccl_result_t rc = jaccl_allreduce(v, v, count, JACCL_FLOAT32, JACCL_SUM, comm);
    return expect_failure(comm, rc, t0, STALL_TIMEOUT + 1, "allreduce with a stalled peer");
}

static int stall_job(jaccl_comm_t comm, void *arg)
{
    size_t count = *(const size_t *)arg;
    float *v = calloc(count, sizeof(float));
    MP_CHECK(v, "out of memory");
    int rc = stall_ranks(comm, v, count);
    free(v);
    return rc;
}

static void run_stall(int np, const char *algo, size_t count)
{
    char a[32];
    snprintf(a, sizeof(a), "JACCL_ALGO=%s", algo);
    const char *const env[] = {a, "JACCL_TIMEOUT=2", NULL};
    assert_int_equal(mp_run(np, env, stall_job, &count, 30), 0);
}

static void test_stall_np2_mesh(void **state)
{
    (void)state;
    run_stall(2, "mesh", 1);
}

static void test_stall_np3_ring(void **state)
{
    (void)state;
    run_stall(3, "ring", 1);
}

static void test_stall_large_np2_ring(void **state)
{
    (void)state;
    run_stall(2, "ring", 4u << 20);
}

static void test_stall_large_np3_mesh(void **state)
{
    (void)state;
    run_stall(3, "mesh", 4u << 20);
}

int main(void)
{
    enum { NE = sizeof(env_cases) / sizeof(env_cases[0]) };
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_unreachable_message),   cmocka_unit_test(test_size_mismatch),
        cmocka_unit_test(test_duplicate_rank),        cmocka_unit_test(test_launcher_precedence),
        cmocka_unit_test(test_launcher_ompi),         cmocka_unit_test(test_launcher_pmi),
        cmocka_unit_test(test_launcher_slurm),        cmocka_unit_test(test_launcher_mlx),
        cmocka_unit_test(test_bad_args_np2),          cmocka_unit_test(test_bad_args_np3),
        cmocka_unit_test(test_death_np2_mesh),        cmocka_unit_test(test_death_np3_mesh),
        cmocka_unit_test(test_death_np3_ring),        cmocka_unit_test(test_death_np4_ring),
        cmocka_unit_test(test_death_mid_message_np2), cmocka_unit_test(test_death_mid_message_np3),
        cmocka_unit_test(test_stall_np2_mesh),        cmocka_unit_test(test_stall_np3_ring),
        cmocka_unit_test(test_stall_large_np2_ring),  cmocka_unit_test(test_stall_large_np3_mesh),
    };
    enum { NF = sizeof(fixed) / sizeof(fixed[0]) };
    struct CMUnitTest cases[NE + NF];
    for (int i = 0; i < NE; i++)
        cases[i] = (struct CMUnitTest){env_cases[i].name, test_env_case, NULL, NULL,
                                       (void *)&env_cases[i]};
    memcpy(cases + NE, fixed, sizeof(fixed));
    if (getenv("MP_FILTER")) cmocka_set_test_filter(getenv("MP_FILTER"));
    return _cmocka_run_group_tests("mp-errors", cases, NE + NF, NULL, NULL);
}
