/*
 * The RDMA transport over the verbs emulator (libjaccl-verbs-emu.so, named
 * by VERBS_EMU_LIB): collectives and send/recv across 2-4 processes on
 * meshes and rings of one or two cables, RC and UC, the MLX example files,
 * the fallback to TCP when no device or library is there, and every fault
 * the emulator injects, each ending in an error on every rank (no hang:
 * JACCL_TIMEOUT is short and mp_run bounds each job).
 *
 * The test reads the emulator's counters to check that data really went
 * over the emulated fabric, and that no SEND was ever lost for want of a
 * posted receive (on UC the wire drops those; credits must prevent it).
 */
#include <dlfcn.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define JOB_TIMEOUT 60.0

static char dir[256];
static char lib_env[600], fabric[64];
static int (*emu_stats)(unsigned long long *, unsigned long long *);

/* ---- device files ----------------------------------------------------- */

/* Cell [i][j] of an n-rank file: cables per cabled pair; ring: neighbours only. */
static void cell(FILE *f, int i, int j, int n, int cables, int ring, const char *same)
{
    int lo = i < j ? i : j, hi = i < j ? j : i;
    int cabled = i != j && (!ring || n < 4 || hi - lo == 1 || hi - lo == n - 1);
    if (!cabled) {
        fputs("null", f);
        return;
    }
    fputs(cables > 1 ? "[" : "", f);
    for (int k = 0; k < cables; k++) {
        if (same)
            fprintf(f, "%s\"%s\"", k ? ", " : "", same);
        else
            fprintf(f, "%s\"emu%d\"", k ? ", " : "", (lo * n + hi) * cables + k);
    }
    fputs(cables > 1 ? "]" : "", f);
}

/* Write dir/NAME-N.json for jobs of 2 to 4 ranks. */
static void write_files(const char *name, int cables, int ring, const char *same)
{
    for (int n = 2; n <= 4; n++) {
        char path[400];
        snprintf(path, sizeof(path), "%s/%s-%d.json", dir, name, n);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputc('[', f);
        for (int i = 0; i < n; i++) {
            fputs(i ? ",\n [" : "[", f);
            for (int j = 0; j < n; j++) {
                fputs(j ? ", " : "", f);
                cell(f, i, j, n, cables, ring, same);
            }
            fputc(']', f);
        }
        fputs("]\n", f);
        fclose(f);
    }
}

static void set_devices(int cables)
{
    char v[1024] = "";
    for (int k = 0; k < 16 * cables; k++)
        snprintf(v + strlen(v), sizeof(v) - strlen(v), "%semu%d", k ? "," : "", k);
    setenv("VERBS_EMU_DEVICES", v, 1);
}

/* ---- what the ranks run ----------------------------------------------- */

static int check_allreduce(jaccl_comm_t comm, int r, int n)
{
    static const size_t counts[] = {1, 1000, 65536 + 17, 300001};
    for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
        size_t c = counts[k];
        int32_t *a = malloc(c * sizeof(*a));
        MP_CHECK(a != NULL, "out of memory");
        for (size_t i = 0; i < c; i++) a[i] = (int32_t)(i % 1000) * (r + 1);
        MP_OK(comm, jaccl_allreduce(a, a, c, JACCL_INT32, JACCL_SUM, comm));
        for (size_t i = 0; i < c; i++)
            MP_CHECK(a[i] == (int32_t)(i % 1000) * n * (n + 1) / 2, "allreduce of %zu: [%zu] = %d",
                     c, i, (int)a[i]);
        free(a);
    }
    return 0;
}

static int check_allgather(jaccl_comm_t comm, int r, int n)
{
    size_t c = 100003;
    int32_t *mine = malloc(c * sizeof(int32_t)), *all = malloc(c * sizeof(int32_t) * (size_t)n);
    MP_CHECK(mine && all, "out of memory");
    for (size_t i = 0; i < c; i++) mine[i] = r * 1000003 + (int32_t)i;
    MP_OK(comm, jaccl_allgather(mine, all, c, JACCL_INT32, comm));
    for (int p = 0; p < n; p++)
        for (size_t i = 0; i < c; i++)
            MP_CHECK(all[(size_t)p * c + i] == p * 1000003 + (int32_t)i, "allgather block %d", p);
    free(mine);
    free(all);
    return 0;
}

/* A ring of send/recv (neighbours only, so it runs on a ring of cables), and an alltoall. */
static int check_p2p(jaccl_comm_t comm, int r, int n)
{
    size_t len = 500001;
    unsigned char *s = malloc(len), *d = malloc(len);
    int right = (r + 1) % n, left = (r + n - 1) % n;
    MP_CHECK(s && d, "out of memory");
    for (size_t i = 0; i < len; i++) s[i] = (unsigned char)(i * 31 + (size_t)r);
    jaccl_group_start();
    MP_OK(comm, jaccl_send(s, len, JACCL_UINT8, right, comm));
    MP_OK(comm, jaccl_recv(d, len, JACCL_UINT8, left, comm));
    MP_OK(comm, jaccl_group_end());
    for (size_t i = 0; i < len; i++)
        MP_CHECK(d[i] == (unsigned char)(i * 31 + (size_t)left), "recv from %d: byte %zu", left, i);
    int32_t *a = malloc(4000 * (size_t)n), *b = malloc(4000 * (size_t)n);
    MP_CHECK(a && b, "out of memory");
    for (int i = 0; i < 1000 * n; i++) a[i] = r * 100000 + i;
    MP_OK(comm, jaccl_alltoall(a, b, 1000, JACCL_INT32, comm));
    for (int p = 0; p < n; p++)
        MP_CHECK(b[p * 1000 + 7] == p * 100000 + r * 1000 + 7, "alltoall block %d", p);
    free(a);
    free(b);
    free(s);
    free(d);
    return 0;
}

/* An all-gather of blocks that go out in several pieces (over 1 MiB per peer and link). */
static int big_allgather(jaccl_comm_t comm, void *arg)
{
    int r = jaccl_comm_rank(comm), n = jaccl_comm_size(comm);
    size_t c = (3u << 20) + 17;
    unsigned char *mine = malloc(c), *all = malloc(c * (size_t)n);
    (void)arg;
    MP_CHECK(mine && all, "out of memory");
    for (size_t i = 0; i < c; i++) mine[i] = (unsigned char)(i * 7 + (size_t)r * 13 + i / 4099);
    MP_OK(comm, jaccl_allgather(mine, all, c, JACCL_UINT8, comm));
    for (int p = 0; p < n; p++)
        for (size_t i = 0; i < c; i++)
            MP_CHECK(all[(size_t)p * c + i] == (unsigned char)(i * 7 + (size_t)p * 13 + i / 4099),
                     "allgather block %d byte %zu", p, i);
    free(mine);
    free(all);
    return 0;
}

static int traffic(jaccl_comm_t comm, void *arg)
{
    int r = jaccl_comm_rank(comm), n = jaccl_comm_size(comm);
    (void)arg;
    if (check_allreduce(comm, r, n) || check_allgather(comm, r, n) || check_p2p(comm, r, n))
        return 1;
    MP_OK(comm, jaccl_barrier(comm));
    return 0;
}

/* Init must fail on this rank with a message containing arg (a string). */
static int init_fails(void *arg)
{
    jaccl_comm_t comm = NULL;
    jaccl_result_t rc = jaccl_comm_init_env(&comm);
    const char *msg = jaccl_last_error(NULL);
    if (rc == JACCL_SUCCESS) jaccl_comm_destroy(comm);
    MP_CHECK(rc != JACCL_SUCCESS, "init succeeded; expected '%s'", (const char *)arg);
    MP_CHECK(strstr(msg, (const char *)arg) != NULL, "error '%s' lacks '%s'", msg,
             (const char *)arg);
    return 0;
}

/* Collectives must fail on every rank; where arg is given for this rank, with that text. */
static int run_fails(jaccl_comm_t comm, void *arg)
{
    const char *const *want = arg;
    int r = jaccl_comm_rank(comm);
    size_t c = 1 << 18;
    int32_t *a = calloc(c, sizeof(*a));
    jaccl_result_t rc = JACCL_SUCCESS;
    MP_CHECK(a != NULL, "out of memory");
    for (int i = 0; i < 20 && rc == JACCL_SUCCESS; i++)
        rc = jaccl_allreduce(a, a, c, JACCL_INT32, JACCL_SUM, comm);
    free(a);
    const char *msg = jaccl_last_error(comm);
    MP_CHECK(rc != JACCL_SUCCESS && msg && *msg, "20 all-reduces succeeded despite the fault");
    if (want[r]) MP_CHECK(strstr(msg, want[r]) != NULL, "error '%s' lacks '%s'", msg, want[r]);
    fprintf(stderr, "rank %d failed as expected: %s\n", r, msg);
    return 0;
}

/* ---- running a job ---------------------------------------------------- */

static void stats(unsigned long long *packets, unsigned long long *lost)
{
    assert_int_equal(emu_stats(packets, lost), 0);
}

/* Run traffic on np ranks with env; data must cross the fabric, no SEND be lost. */
static void traffic_job(int np, const char *const *env, int want_rdma)
{
    unsigned long long p0, l0, p1, l1;
    stats(&p0, &l0);
    assert_int_equal(mp_run(np, env, traffic, NULL, JOB_TIMEOUT), 0);
    stats(&p1, &l1);
    if (want_rdma) assert_true(p1 > p0);
    if (!want_rdma) assert_true(p1 == p0);
    assert_true(l1 == l0);
}

/* mp_run_raw sets nothing itself. */
#define RAW_ENV "JACCL_RANK=@RANK@", "JACCL_SIZE=@SIZE@", "JACCL_COORDINATOR=@COORD@"

static char *path_env(const char *var, const char *name)
{
    static char buf[8][600];
    static int next;
    char *b = buf[next++ % 8];
    snprintf(b, sizeof(buf[0]), "%s=%s/%s", var, dir, name);
    return b;
}

/* ---- cases ------------------------------------------------------------ */

static void mesh_rc(void **state)
{
    (void)state;
    write_files("mesh1", 1, 0, NULL);
    set_devices(1);
    for (int np = 2; np <= 4; np++) {
        const char *env[] = {"JACCL_TRANSPORT=rdma", lib_env,
                             path_env("JACCL_IBV_DEVICES", "mesh1-@SIZE@.json"), NULL};
        traffic_job(np, env, 1);
    }
}

static void mesh_uc_two_cables(void **state)
{
    (void)state;
    write_files("mesh2", 2, 0, NULL);
    set_devices(2);
    setenv("VERBS_EMU_NO_RC", "1", 1);
    const char *env[] = {"JACCL_TRANSPORT=rdma", lib_env,
                         path_env("JACCL_IBV_DEVICES", "mesh2-@SIZE@.json"), NULL};
    traffic_job(4, env, 1);
    traffic_job(3, env, 1);
    unsetenv("VERBS_EMU_NO_RC");
}

/* Ring of 4, 2 cables: neighbours over RDMA, the others over the next transport. */
static void ring_two_cables_auto(void **state)
{
    (void)state;
    write_files("ring2", 2, 1, NULL);
    set_devices(2);
    const char *env[] = {lib_env, path_env("MLX_IBV_DEVICES", "ring2-@SIZE@.json"), NULL};
    traffic_job(4, env, 1);
    const char *uc[] = {lib_env, path_env("MLX_IBV_DEVICES", "ring2-@SIZE@.json"),
                        "JACCL_IB_QP_TYPE=uc", NULL};
    traffic_job(4, uc, 1);
}

static void mlx_files(void **state)
{
    char mesh[600], ring[600];
    const char *data = getenv("VERBS_DATA");
    (void)state;
    snprintf(mesh, sizeof(mesh), "JACCL_IBV_DEVICES=%s/jaccl-devices-mesh4.json", data);
    snprintf(ring, sizeof(ring), "MLX_IBV_DEVICES=%s/mlx-hostfile-jaccl-ring4-2cables.json", data);
    setenv("VERBS_EMU_DEVICES", "rdma_en3,rdma_en4,rdma_en5,rdma_en6", 1);
    const char *m[] = {"JACCL_TRANSPORT=rdma", lib_env, mesh, NULL};
    traffic_job(4, m, 1);
    const char *r[] = {lib_env, ring, "MLX_JACCL_RING=1", NULL};
    traffic_job(4, r, 1);
}

/*
 * Pairs with 1, 2 and 3 cables: each rank has a different most-links count,
 * yet all must cut a large all-gather into the same pieces.
 */
static void uneven_cables(void **state)
{
    char path[400];
    (void)state;
    snprintf(path, sizeof(path), "%s/uneven-3.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("[[null, \"emu0\", [\"emu1\", \"emu2\"]],\n"
          " [\"emu0\", null, [\"emu3\", \"emu4\", \"emu5\"]],\n"
          " [[\"emu1\", \"emu2\"], [\"emu3\", \"emu4\", \"emu5\"], null]]\n",
          f);
    fclose(f);
    set_devices(1);
    for (int k = 0; k < 2; k++) {
        const char *env[] = {"JACCL_TRANSPORT=rdma", lib_env,
                             k ? "JACCL_ALGO=ring" : "JACCL_ALGO=mesh",
                             path_env("JACCL_IBV_DEVICES", "uneven-3.json"), NULL};
        assert_int_equal(mp_run(3, env, big_allgather, NULL, JOB_TIMEOUT), 0);
    }
}

/* No device, or no library: auto runs over the other transports, rdma is refused. */
static void fallback(void **state)
{
    (void)state;
    write_files("mesh1", 1, 0, NULL);
    setenv("VERBS_EMU_DEVICES", "", 1);
    const char *file = path_env("JACCL_IBV_DEVICES", "mesh1-@SIZE@.json");
    const char *none[] = {lib_env, file, NULL};
    traffic_job(3, none, 0);
    const char *forced[] = {"JACCL_TRANSPORT=rdma", lib_env, file,
                            "JACCL_TIMEOUT=5",      RAW_ENV, NULL};
    assert_int_equal(mp_run_raw(3, forced, init_fails, (void *)"emu", JOB_TIMEOUT), 0);
    set_devices(1);
    const char *nolib[] = {"JACCL_IBVERBS_LIB=/nonexistent/libibverbs.so.1", file, NULL};
    traffic_job(2, nolib, 0);
    const char *nolib_forced[] = {"JACCL_TRANSPORT=rdma",
                                  "JACCL_IBVERBS_LIB=/nonexistent/libibverbs.so.1",
                                  file,
                                  "JACCL_TIMEOUT=5",
                                  RAW_ENV,
                                  NULL};
    assert_int_equal(mp_run_raw(2, nolib_forced, init_fails, (void *)"cannot load", JOB_TIMEOUT),
                     0);
}

static void init_fault(const char *fault, const char *want)
{
    const char *env[] = {
        "JACCL_TRANSPORT=rdma", lib_env, path_env("JACCL_IBV_DEVICES", "one-@SIZE@.json"),
        "JACCL_TIMEOUT=5",      RAW_ENV, NULL};
    write_files("one", 1, 0, "emu0");
    set_devices(1);
    setenv("VERBS_EMU_FAULT", fault, 1);
    assert_int_equal(mp_run_raw(4, env, init_fails, (void *)want, JOB_TIMEOUT), 0);
    unsetenv("VERBS_EMU_FAULT");
}

static void fault_qp_limit(void **state)
{
    (void)state;
    init_fault("max_qp:2", "ibv_create_qp");
}

static void fault_mr_limit(void **state)
{
    (void)state;
    init_fault("max_mr:0", "ibv_reg_mr");
}

static void run_fault(const char *fault, const char *rank, const char *const *want)
{
    write_files("mesh1", 1, 0, NULL);
    set_devices(1);
    setenv("VERBS_EMU_FAULT", fault, 1);
    if (rank) setenv("VERBS_EMU_FAULT_RANK", rank, 1);
    const char *env[] = {"JACCL_TRANSPORT=rdma", lib_env,
                         path_env("JACCL_IBV_DEVICES", "mesh1-@SIZE@.json"), "JACCL_TIMEOUT=4",
                         NULL};
    assert_int_equal(mp_run(4, env, run_fails, (void *)want, JOB_TIMEOUT), 0);
    unsetenv("VERBS_EMU_FAULT");
    unsetenv("VERBS_EMU_FAULT_RANK");
}

static void fault_completion_error(void **state)
{
    static const char *const want[4] = {NULL, "remote operation error", NULL, NULL};
    (void)state;
    run_fault("wc_error:60", "1", want);
}

/* Pair (0, 1) is cabled by emu1 (see cell()): it goes down on both ends. */
static void fault_link_down(void **state)
{
    static const char *const want[4] = {"emu1", "emu1", NULL, NULL};
    (void)state;
    run_fault("link_down:emu1:40", NULL, want);
}

static int setup(void **state)
{
    (void)state;
    const char *lib = getenv("VERBS_EMU_LIB");
    snprintf(dir, sizeof(dir), "%s/jaccl-rdma-test.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    snprintf(fabric, sizeof(fabric), "/jaccl-rdma-test-%d", (int)getpid());
    snprintf(lib_env, sizeof(lib_env), "JACCL_IBVERBS_LIB=%s", lib ? lib : "");
    setenv("VERBS_EMU_FABRIC", fabric, 1);
    void *h = lib ? dlopen(lib, RTLD_NOW) : NULL;
    void *f = h ? dlsym(h, "verbs_emu_stats") : NULL;
    if (!f || !mkdtemp(dir)) return -1;
    memcpy(&emu_stats, &f, sizeof(f));
    return 0;
}

static int teardown(void **state)
{
    char cmd[400];
    (void)state;
    shm_unlink(fabric);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mesh_rc),
        cmocka_unit_test(mesh_uc_two_cables),
        cmocka_unit_test(ring_two_cables_auto),
        cmocka_unit_test(mlx_files),
        cmocka_unit_test(uneven_cables),
        cmocka_unit_test(fallback),
        cmocka_unit_test(fault_qp_limit),
        cmocka_unit_test(fault_mr_limit),
        cmocka_unit_test(fault_completion_error),
        cmocka_unit_test(fault_link_down),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
