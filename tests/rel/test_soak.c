/*
 * Soak: random collectives at 3 ranks, every result checked against a
 * reference computed without the library (tests/api/common.c).  Each
 * operation draws the collective, dtype, op, count, root, in place or not,
 * and the communicator: one forced to the ring (over the default transport),
 * one forced to the mesh and one left to the selector (both over TCP, three
 * sockets per pair).
 * 1,000 operations by default, 10,000 with JACCL_TEST_LONG=1, or
 * JACCL_SOAK_OPS.  A wrong result is counted, reported and fails the test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common.h"
#include "rel.h"

#include <stdio.h>

#define NP       3
#define NCOMMS   3
#define MAXCOUNT (1u << 16)
#define MAXBYTES ((size_t)MAXCOUNT * 8 * NP)

enum kind {
    ALLREDUCE,
    ALLGATHER,
    REDUCE_SCATTER,
    BROADCAST,
    REDUCE,
    ALLTOALL,
    BARRIER,
    SENDRECV,
    KINDS
};

static const char *const kind_names[KINDS] = {"allreduce", "allgather", "reduce_scatter",
                                              "broadcast", "reduce",    "alltoall",
                                              "barrier",   "sendrecv"};

struct op {
    enum kind kind;
    jaccl_dtype_t dt;
    jaccl_op_t op;
    size_t count, es;
    int root, inplace, comm;
    uint64_t seed;
};

struct soak {
    jaccl_comm_t comm[NCOMMS];
    char *s, *r;
    int me, n;
    unsigned wrong, ops;
};

static jaccl_result_t bootstrap_ag(const void *mine, void *all, size_t len, void *user)
{
    return jaccl_allgather(mine, all, len, JACCL_UINT8, (jaccl_comm_t)user);
}

/* The same draw on every rank: a function of the operation's index only. */
static struct op draw(uint64_t i)
{
    uint64_t h = mp_mix(0x50a4 + i), h2 = mp_mix(h);
    struct op o = {.kind = (enum kind)(h % KINDS),
                   .dt = (jaccl_dtype_t)((h >> 8) % JACCL_DTYPE_COUNT),
                   .op = (jaccl_op_t)((h >> 16) % JACCL_OP_COUNT),
                   .root = (int)((h >> 24) % NP),
                   .inplace = (int)((h >> 28) & 1),
                   .comm = (int)((h >> 32) % NCOMMS),
                   .seed = h2};
    if (o.dt == JACCL_BOOL && o.op == JACCL_AVG) o.op = JACCL_SUM;
    if (o.dt == JACCL_COMPLEX64 && (o.op == JACCL_MIN || o.op == JACCL_MAX)) o.op = JACCL_PROD;
    unsigned r = (unsigned)((h2 >> 40) % 100);
    size_t lo = r < 50 ? 1 : r < 85 ? 65 : 4097, hi = r < 50 ? 64 : r < 85 ? 4096 : MAXCOUNT;
    o.count = lo + (size_t)(h2 % (hi - lo + 1));
    o.es = jaccl_dtype_size(o.dt);
    return o;
}

static jaccl_result_t run_reduction(struct soak *S, const struct op *o, jaccl_comm_t c,
                                    struct api_gen *g)
{
    size_t n = (size_t)S->n, es = o->es, cnt = o->count;
    api_gen_init(g, o->dt, o->op, S->n, API_EXACT, o->seed);
    if (o->kind == ALLREDUCE) {
        api_gen_fill(g, S->me, S->s, 0, cnt);
        return jaccl_allreduce(S->s, o->inplace ? S->s : S->r, cnt, o->dt, o->op, c);
    }
    if (o->kind == REDUCE) {
        api_gen_fill(g, S->me, S->s, 0, cnt);
        int mine = o->inplace && S->me == o->root;
        return jaccl_reduce(S->s, mine ? S->s : S->r, cnt, o->dt, o->op, o->root, c);
    }
    api_gen_fill(g, S->me, S->s, 0, n * cnt);
    char *dst = o->inplace ? S->s + (size_t)S->me * cnt * es : S->r;
    return jaccl_reduce_scatter(S->s, dst, cnt, o->dt, o->op, c);
}

static int check_reduction(struct soak *S, const struct op *o, const struct api_gen *g,
                           const char *what)
{
    size_t cnt = o->count, es = o->es;
    if (o->kind == ALLREDUCE) return api_gen_check(g, o->inplace ? S->s : S->r, 0, cnt, 0, 1, what);
    if (o->kind == REDUCE) {
        if (S->me != o->root) return 0;
        return api_gen_check(g, o->inplace ? S->s : S->r, 0, cnt, 0, 1, what);
    }
    const char *got = o->inplace ? S->s + (size_t)S->me * cnt * es : S->r;
    return api_gen_check(g, got, (size_t)S->me * cnt, cnt, 0, 1, what);
}

/* Data moves: rank r's block for rank p is filled from seed ^ (r * 64 + p). */
static uint64_t block_seed(const struct op *o, int from, int to)
{
    return o->seed ^ (uint64_t)(from * 64 + to);
}

static jaccl_result_t run_move(struct soak *S, const struct op *o, jaccl_comm_t c)
{
    size_t b = o->count * o->es, n = (size_t)S->n;
    int me = S->me, left = (me + S->n - 1) % S->n, right = (me + 1) % S->n;
    char *own = S->r + (size_t)me * b;
    switch (o->kind) {
    case ALLGATHER:
        api_fill_bytes(o->inplace ? own : S->s, b, block_seed(o, me, 0));
        return jaccl_allgather(o->inplace ? own : S->s, S->r, o->count, o->dt, c);
    case BROADCAST:
        if (me == o->root) api_fill_bytes(o->inplace ? S->r : S->s, b, block_seed(o, me, 0));
        return jaccl_broadcast(o->inplace ? S->r : S->s, S->r, o->count, o->dt, o->root, c);
    case ALLTOALL:
        for (size_t p = 0; p < n; p++)
            api_fill_bytes((o->inplace ? S->r : S->s) + p * b, b, block_seed(o, me, (int)p));
        return jaccl_alltoall(o->inplace ? S->r : S->s, S->r, o->count, o->dt, c);
    case SENDRECV: {
        api_fill_bytes(S->s, b, block_seed(o, me, right));
        jaccl_group_start();
        jaccl_send(S->s, o->count, o->dt, right, c);
        jaccl_recv(S->r, o->count, o->dt, left, c);
        return jaccl_group_end();
    }
    default:
        return jaccl_barrier(c);
    }
}

static int check_move(struct soak *S, const struct op *o, const char *what)
{
    size_t b = o->count * o->es;
    int me = S->me, left = (me + S->n - 1) % S->n;
    for (int p = 0; p < S->n; p++) {
        if (o->kind == ALLGATHER &&
            api_check_bytes(S->r + (size_t)p * b, b, block_seed(o, p, 0), what))
            return 1;
        if (o->kind == ALLTOALL &&
            api_check_bytes(S->r + (size_t)p * b, b, block_seed(o, p, me), what))
            return 1;
    }
    if (o->kind == BROADCAST) return api_check_bytes(S->r, b, block_seed(o, o->root, 0), what);
    if (o->kind == SENDRECV) return api_check_bytes(S->r, b, block_seed(o, left, me), what);
    return 0;
}

static int soak_one(struct soak *S, uint64_t i)
{
    struct op o = draw(i);
    jaccl_comm_t c = S->comm[o.comm];
    struct api_gen g;
    char what[160];
    snprintf(what, sizeof(what), "op %llu: %s count %zu comm %d%s", (unsigned long long)i,
             kind_names[o.kind], o.count, o.comm, o.inplace ? " in place" : "");
    int red = o.kind == ALLREDUCE || o.kind == REDUCE || o.kind == REDUCE_SCATTER;
    jaccl_result_t rc = red ? run_reduction(S, &o, c, &g) : run_move(S, &o, c);
    MP_CHECK(rc == JACCL_SUCCESS, "%s returned %s: %s", what, jaccl_result_string(rc),
             jaccl_last_error(c));
    if (red ? check_reduction(S, &o, &g, what) : check_move(S, &o, what)) S->wrong++;
    S->ops++;
    return 0;
}

static int soak_job(jaccl_comm_t comm, void *arg)
{
    unsigned long nops = *(const unsigned long *)arg;
    struct soak S = {.comm = {comm}, .me = jaccl_comm_rank(comm), .n = jaccl_comm_size(comm)};
    static const char *const algos[NCOMMS] = {NULL, "mesh", "auto"};
    for (int k = 1; k < NCOMMS; k++) {
        jaccl_config_t cfg = JACCL_CONFIG_INIT;
        cfg.algo = algos[k];
        cfg.transport = "tcp";
        cfg.allgather = bootstrap_ag;
        cfg.allgather_user = comm;
        cfg.listen_host = "127.0.0.1";
        MP_OK(comm, jaccl_comm_init(&S.comm[k], &cfg));
    }
    S.s = malloc(MAXBYTES);
    S.r = malloc(MAXBYTES);
    MP_CHECK(S.s && S.r, "out of memory");
    double t0 = mp_now();
    int rc = 0;
    for (unsigned long i = 0; i < nops && rc == 0; i++) rc = soak_one(&S, i);
    uint32_t wrong_all = S.wrong; /* every rank's wrong results, for the report */
    if (rc == 0)
        MP_OK(comm, jaccl_allreduce(&wrong_all, &wrong_all, 1, JACCL_UINT32, JACCL_SUM, comm));
    if (S.me == 0)
        printf("[rel] soak: %u operations in %.1f s, %u wrong results on all ranks\n", S.ops,
               mp_now() - t0, (unsigned)wrong_all);
    for (int k = 1; k < NCOMMS; k++) jaccl_comm_destroy(S.comm[k]);
    free(S.s);
    free(S.r);
    MP_CHECK(rc == 0 && S.wrong == 0, "%u wrong results in %u operations", S.wrong, S.ops);
    return 0;
}

static void test_soak(void **state)
{
    (void)state;
    const char *v = getenv("JACCL_SOAK_OPS");
    unsigned long nops = v ? strtoul(v, NULL, 10) : rel_long() ? 10000 : 1000;
    /* Three sockets per pair: the TCP communicators stripe transfers over several links. */
    const char *env[] = {"JACCL_ALGO=ring", "JACCL_TIMEOUT=60", "JACCL_TCP_SOCKETS=3", NULL};
    assert_int_equal(mp_run(NP, env, soak_job, &nops, 3600), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_soak)};
    return cmocka_run_group_tests_name("rel-soak", tests, NULL, NULL);
}
