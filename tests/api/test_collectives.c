/*
 * Reduce-scatter, broadcast, reduce, all-to-all and barrier across real
 * processes at 2, 3 and 4 ranks, with JACCL_ALGO=mesh, ring and auto (and
 * per-collective choices and several sockets per peer):
 *  - reduce-scatter and reduce: every dtype x every op the header defines
 *    (bool: sum/max are OR, prod/min are AND; complex64: sum, prod, avg);
 *  - broadcast from every root, reduce to every root;
 *  - counts 0, 1, 7, 1001 (odd, not divisible by 2, 3 or 4), mid-sized ones
 *    that cross the algorithms' segment sizes, and one 8 MiB case each;
 *  - in place per the header's rules, out of place, and in place on odd
 *    ranks only; guards around every output, inputs checked unchanged, and
 *    on non-roots an output buffer the call must not write;
 *  - the barrier really waits for the last rank;
 *  - undefined dtype x op pairs give JACCL_ERR_UNSUPPORTED, a bad root, dtype,
 *    op, NULL buffer or overlap JACCL_ERR_INVALID_ARGUMENT, and the
 *    communicator keeps working.
 * Every result is compared with a reference computed here from every rank's
 * inputs; the inputs make every reduction exact whatever its order, so float
 * results must match bit for bit, and broadcast results are also compared
 * across ranks by hash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>

#include <cmocka.h>

#include "common.h"

#define END SIZE_MAX

/* Where the result goes.  MIXED: in place on odd ranks, out of place on even ones. */
enum { OUT, IN, MIXED, NPLACES };
static const char *const place_names[NPLACES] = {"out-of-place", "in-place", "in-place-on-odd"};

struct plan {
    int small, mid, large, errors, barrier;
};

struct ctx {
    jaccl_comm_t comm;
    int n, me;
    uint64_t seed;
    char what[160];
};

static int inplace_here(const struct ctx *c, int place)
{
    return place == IN || (place == MIXED && c->me % 2);
}

/* ---- reduce-scatter ---- */

static int rs_run(struct ctx *c, const struct api_gen *g, size_t rc, int place, char *send,
                  char *recv)
{
    size_t es = jaccl_dtype_size(g->dt), blk = rc * es, all = blk * (size_t)c->n;
    int inpl = inplace_here(c, place);
    char *own = send + (size_t)c->me * blk, *r = inpl ? own : recv;
    api_gen_fill(g, c->me, send, 0, rc * (size_t)c->n);
    api_guard_set(send + all);
    memset(recv, 0xee, blk);
    api_guard_set(recv + blk);
    /* Every byte of sendbuf the call may not write: all of it, or all but our block. */
    uint64_t before = mp_fnv(mp_fnv(MP_FNV_INIT, send, inpl ? (size_t)(own - send) : all),
                             inpl ? own + blk : send, inpl ? all - (size_t)(own - send) - blk : 0);
    MP_OK(c->comm, jaccl_reduce_scatter(send, r, rc, g->dt, g->op, c->comm));
    MP_CHECK(api_guard_ok(send + all) && api_guard_ok(recv + blk), "%s: wrote past a buffer",
             c->what);
    uint64_t after = mp_fnv(mp_fnv(MP_FNV_INIT, send, inpl ? (size_t)(own - send) : all),
                            inpl ? own + blk : send, inpl ? all - (size_t)(own - send) - blk : 0);
    MP_CHECK(before == after, "%s: sendbuf changed outside this rank's block", c->what);
    return api_gen_check(g, r, (size_t)c->me * rc, rc, 0, 1, c->what);
}

static int rs_case(struct ctx *c, jaccl_dtype_t dt, jaccl_op_t op, size_t rc, int place)
{
    struct api_gen g;
    size_t es = jaccl_dtype_size(dt), blk = rc * es;
    api_gen_init(&g, dt, op, c->n, API_EXACT, ++c->seed);
    snprintf(c->what, sizeof(c->what), "reduce_scatter recvcount=%zu %s np=%d", rc,
             place_names[place], c->n);
    char *send = malloc(blk * (size_t)c->n + API_GUARD), *recv = malloc(blk + API_GUARD);
    MP_CHECK(send && recv, "%s: out of memory", c->what);
    int rcode = rs_run(c, &g, rc, place, send, recv);
    free(send);
    free(recv);
    if (rcode == 0 && rc == 0) MP_OK(c->comm, jaccl_reduce_scatter(NULL, NULL, 0, dt, op, c->comm));
    api_count(1);
    return rcode;
}

/* ---- reduce ---- */

static int red_run(struct ctx *c, const struct api_gen *g, size_t count, int root, int place,
                   char *send, char *recv)
{
    size_t bytes = count * jaccl_dtype_size(g->dt);
    int isroot = c->me == root, inpl = place == IN;
    api_gen_fill(g, c->me, send, 0, count);
    api_guard_set(send + bytes);
    memset(recv, 0xee, bytes);
    api_guard_set(recv + bytes);
    /* Non-roots: in place, recvbuf is sendbuf; else NULL on odd ranks, a buffer never written. */
    char *r = inpl ? send : (isroot || c->me % 2 == 0) ? recv : NULL;
    uint64_t before = mp_fnv(MP_FNV_INIT, send, bytes);
    MP_OK(c->comm, jaccl_reduce(send, r, count, g->dt, g->op, root, c->comm));
    MP_CHECK(api_guard_ok(send + bytes) && api_guard_ok(recv + bytes), "%s: wrote past a buffer",
             c->what);
    if (!isroot || !inpl)
        MP_CHECK(mp_fnv(MP_FNV_INIT, send, bytes) == before, "%s: sendbuf changed on rank %d",
                 c->what, c->me);
    if (!isroot) {
        for (size_t i = 0; i < bytes; i++)
            MP_CHECK((unsigned char)recv[i] == 0xee, "%s: recvbuf of non-root written at byte %zu",
                     c->what, i);
        return 0;
    }
    return api_gen_check(g, r, 0, count, 0, 1, c->what);
}

static int red_case(struct ctx *c, jaccl_dtype_t dt, jaccl_op_t op, size_t count, int root,
                    int place)
{
    struct api_gen g;
    size_t bytes = count * jaccl_dtype_size(dt);
    api_gen_init(&g, dt, op, c->n, API_EXACT, ++c->seed);
    snprintf(c->what, sizeof(c->what), "reduce count=%zu root=%d %s np=%d", count, root,
             place_names[place], c->n);
    char *send = malloc(bytes + API_GUARD), *recv = malloc(bytes + API_GUARD);
    MP_CHECK(send && recv, "%s: out of memory", c->what);
    int rc = red_run(c, &g, count, root, place, send, recv);
    free(send);
    free(recv);
    if (rc == 0 && count == 0) MP_OK(c->comm, jaccl_reduce(NULL, NULL, 0, dt, op, root, c->comm));
    api_count(1);
    return rc;
}

/* ---- broadcast ---- */

static int bc_run(struct ctx *c, size_t bytes, jaccl_dtype_t dt, size_t count, int root, int place,
                  char *send, char *recv)
{
    int isroot = c->me == root;
    uint64_t data = c->seed * 31 + 1, junk = c->seed * 31 + 2;
    api_fill_bytes(send, bytes, isroot ? data : junk);
    api_guard_set(send + bytes);
    memset(recv, 0xee, bytes);
    api_guard_set(recv + bytes);
    /* The root in place broadcasts from recvbuf; non-roots pass NULL or a buffer never read. */
    const char *s = place == IN ? (isroot ? recv : NULL) : send;
    if (place == IN && isroot) api_fill_bytes(recv, bytes, data);
    MP_OK(c->comm, jaccl_broadcast(s, recv, count, dt, root, c->comm));
    MP_CHECK(api_guard_ok(send + bytes) && api_guard_ok(recv + bytes), "%s: wrote past a buffer",
             c->what);
    if (api_check_bytes(recv, bytes, data, c->what)) return 1;
    if (place != IN && api_check_bytes(send, bytes, isroot ? data : junk, c->what)) return 1;
    return bytes >= 4096 ? mp_check_same(c->comm, recv, bytes, c->what) : 0;
}

static int bc_case(struct ctx *c, jaccl_dtype_t dt, size_t count, int root, int place)
{
    size_t bytes = count * jaccl_dtype_size(dt);
    ++c->seed;
    snprintf(c->what, sizeof(c->what), "broadcast %s count=%zu root=%d %s np=%d", mp_dtype_name(dt),
             count, root, place_names[place], c->n);
    char *send = malloc(bytes + API_GUARD), *recv = malloc(bytes + API_GUARD);
    MP_CHECK(send && recv, "%s: out of memory", c->what);
    int rc = bc_run(c, bytes, dt, count, root, place, send, recv);
    free(send);
    free(recv);
    if (rc == 0 && count == 0) MP_OK(c->comm, jaccl_broadcast(NULL, NULL, 0, dt, root, c->comm));
    api_count(1);
    return rc;
}

/* ---- all-to-all ---- */

static uint64_t a2a_seed(uint64_t seed, int from, int to)
{
    return seed * 4096 + (uint64_t)from * 64 + (uint64_t)to;
}

static int a2a_run(struct ctx *c, jaccl_dtype_t dt, size_t count, int place, char *send, char *recv)
{
    size_t blk = count * jaccl_dtype_size(dt), all = blk * (size_t)c->n;
    int inpl = inplace_here(c, place);
    for (int p = 0; p < c->n; p++)
        api_fill_bytes(send + (size_t)p * blk, blk, a2a_seed(c->seed, c->me, p));
    api_guard_set(send + all);
    memset(recv, 0xee, all);
    api_guard_set(recv + all);
    uint64_t before = mp_fnv(MP_FNV_INIT, send, all);
    char *r = inpl ? send : recv;
    MP_OK(c->comm, jaccl_alltoall(send, r, count, dt, c->comm));
    MP_CHECK(api_guard_ok(send + all) && api_guard_ok(recv + all), "%s: wrote past a buffer",
             c->what);
    MP_CHECK(inpl || mp_fnv(MP_FNV_INIT, send, all) == before, "%s: sendbuf changed", c->what);
    for (int p = 0; p < c->n; p++) {
        char what[200];
        snprintf(what, sizeof(what), "%s: block from rank %d", c->what, p);
        if (api_check_bytes(r + (size_t)p * blk, blk, a2a_seed(c->seed, p, c->me), what)) return 1;
    }
    return 0;
}

static int a2a_case(struct ctx *c, jaccl_dtype_t dt, size_t count, int place)
{
    size_t all = count * jaccl_dtype_size(dt) * (size_t)c->n;
    ++c->seed;
    snprintf(c->what, sizeof(c->what), "alltoall %s count=%zu %s np=%d", mp_dtype_name(dt), count,
             place_names[place], c->n);
    char *send = malloc(all + API_GUARD), *recv = malloc(all + API_GUARD);
    MP_CHECK(send && recv, "%s: out of memory", c->what);
    int rc = a2a_run(c, dt, count, place, send, recv);
    free(send);
    free(recv);
    if (rc == 0 && count == 0) MP_OK(c->comm, jaccl_alltoall(NULL, NULL, 0, dt, c->comm));
    api_count(1);
    return rc;
}

/* ---- suites ---- */

static const size_t small_counts[] = {0, 1, 7, 1001, END};

/* Every dtype x defined op at small counts, every place; roots rotate through the cases. */
static int small_suite(struct ctx *c)
{
    int k = 0;
    for (int d = 0; d < JACCL_DTYPE_COUNT; d++) {
        jaccl_dtype_t dt = (jaccl_dtype_t)d;
        for (int o = 0; o < JACCL_OP_COUNT; o++) {
            jaccl_op_t op = (jaccl_op_t)o;
            if (!mp_op_defined(dt, op)) continue;
            for (const size_t *n = small_counts; *n != END; n++) {
                for (int pl = OUT; pl < NPLACES; pl++)
                    if (rs_case(c, dt, op, *n, pl)) return 1;
                for (int pl = OUT; pl <= IN; pl++)
                    if (red_case(c, dt, op, *n, k++ % c->n, pl)) return 1;
            }
        }
        /* Data movement sees only the element size: every dtype, every root. */
        for (const size_t *n = small_counts; *n != END; n++) {
            for (int root = 0; root < c->n; root++)
                if (bc_case(c, dt, *n, root, k++ % 2 ? IN : OUT)) return 1;
            for (int pl = OUT; pl < NPLACES; pl++)
                if (a2a_case(c, dt, *n, pl)) return 1;
        }
    }
    return 0;
}

/* Mid sizes cross the one-shot (32 KiB), segment (128 KiB) and pipeline (512 KiB) sizes. */
static const struct {
    jaccl_dtype_t dt;
    jaccl_op_t op;
} mid_ops[] = {
    {JACCL_FLOAT32, JACCL_SUM},   {JACCL_FLOAT32, JACCL_AVG},   {JACCL_FLOAT64, JACCL_MAX},
    {JACCL_INT16, JACCL_SUM},     {JACCL_UINT16, JACCL_AVG},    {JACCL_UINT8, JACCL_PROD},
    {JACCL_COMPLEX64, JACCL_SUM}, {JACCL_COMPLEX64, JACCL_AVG}, {JACCL_BOOL, JACCL_MIN},
    {JACCL_BOOL, JACCL_MAX},      {JACCL_FLOAT16, JACCL_SUM},   {JACCL_BFLOAT16, JACCL_AVG},
    {JACCL_INT64, JACCL_MIN},
};
#define NMID (sizeof(mid_ops) / sizeof(mid_ops[0]))

static int mid_suite(struct ctx *c)
{
    static const jaccl_dtype_t move_dts[] = {JACCL_UINT8, JACCL_INT16, JACCL_FLOAT32,
                                             JACCL_COMPLEX64};
    for (size_t i = 0; i < NMID; i++) {
        if (rs_case(c, mid_ops[i].dt, mid_ops[i].op, 40009, i % 2 ? IN : OUT)) return 1;
        if (rs_case(c, mid_ops[i].dt, mid_ops[i].op, 3001, MIXED)) return 1;
        if (red_case(c, mid_ops[i].dt, mid_ops[i].op, 40009, (int)(i % (size_t)c->n),
                     i % 2 ? OUT : IN))
            return 1;
    }
    /* Reduce to and broadcast from every root at sizes that take the long paths. */
    for (int root = 0; root < c->n; root++) {
        if (red_case(c, JACCL_FLOAT32, JACCL_SUM, 300007, root, root % 2 ? IN : OUT)) return 1;
        if (red_case(c, JACCL_INT32, JACCL_AVG, 40009, root, root % 2 ? OUT : IN)) return 1;
    }
    for (size_t i = 0; i < sizeof(move_dts) / sizeof(move_dts[0]); i++) {
        for (int root = 0; root < c->n; root++)
            if (bc_case(c, move_dts[i], i % 2 ? 40009 : 300007, root,
                        (root + (int)i) % 2 ? IN : OUT))
                return 1;
        if (a2a_case(c, move_dts[i], 10007, (int)i % NPLACES)) return 1;
        if (a2a_case(c, move_dts[i], 70001, (int)(i + 1) % NPLACES)) return 1;
    }
    return 0;
}

/* One 8 MiB case per collective (2 MiB under sanitizers). */
static int large_suite(struct ctx *c)
{
    size_t mib = MP_SANITIZED ? 2 : 8, floats = (mib << 20) / 4;
    int root = (int)(c->seed % (uint64_t)c->n);
    double t0 = mp_now();
    if (rs_case(c, JACCL_FLOAT32, JACCL_SUM, floats / (size_t)c->n + 1, OUT)) return 1;
    double t1 = mp_now();
    if (red_case(c, JACCL_FLOAT32, JACCL_SUM, floats + 3, root, IN)) return 1;
    double t2 = mp_now();
    if (bc_case(c, JACCL_UINT8, (mib << 20) + 5, (root + 1) % c->n, OUT)) return 1;
    double t3 = mp_now();
    if (a2a_case(c, JACCL_INT64, (mib << 20) / 8 / (size_t)c->n + 1, OUT)) return 1;
    double t4 = mp_now();
    if (c->me == 0)
        printf("[api] %zu MiB cases, with checks: reduce_scatter %.2f s, reduce %.2f s, "
               "broadcast %.2f s, alltoall %.2f s\n",
               mib, t1 - t0, t2 - t1, t3 - t2, t4 - t3);
    return 0;
}

/* Whether every rank entered before any left, on the machine-wide monotonic clock. */
static int barrier_suite(struct ctx *c)
{
    double t[2], all[2 * API_MAXR];
    for (int i = 0; i < 12; i++) {
        if (c->me == i % c->n) api_sleep_ms(15); /* the late rank changes every time */
        t[0] = mp_now();
        MP_OK(c->comm, jaccl_barrier(c->comm));
        t[1] = mp_now();
        MP_OK(c->comm, jaccl_allgather(t, all, 2, JACCL_FLOAT64, c->comm));
        double last_in = all[0], first_out = all[1];
        for (int r = 1; r < c->n; r++) {
            last_in = all[2 * r] > last_in ? all[2 * r] : last_in;
            first_out = all[2 * r + 1] < first_out ? all[2 * r + 1] : first_out;
        }
        MP_CHECK(first_out >= last_in,
                 "barrier %d: a rank left %.6f s before the last rank entered", i,
                 last_in - first_out);
        api_count(1);
    }
    for (int i = 0; i < 50; i++) MP_OK(c->comm, jaccl_barrier(c->comm)); /* back to back */
    api_count(1);
    return 0;
}

/* After an argument error, every collective still works. */
static int still_works(struct ctx *c, const char *after)
{
    int32_t v[3] = {c->me + 1, 1, -c->me};
    MP_OK(c->comm, jaccl_allreduce(v, v, 3, JACCL_INT32, JACCL_SUM, c->comm));
    int32_t want = c->n * (c->n + 1) / 2;
    MP_CHECK(v[0] == want && v[1] == c->n && v[2] == -(c->n * (c->n - 1) / 2),
             "after %s: allreduce gives %d %d %d", after, v[0], v[1], v[2]);
    if (rs_case(c, JACCL_BOOL, JACCL_MAX, 5, OUT) ||
        red_case(c, JACCL_COMPLEX64, JACCL_PROD, 5, c->n - 1, OUT) ||
        bc_case(c, JACCL_INT16, 5, c->n - 1, OUT) || a2a_case(c, JACCL_UINT8, 5, IN))
        return 1;
    return 0;
}

#define EXPECT(expr, want)                                                                         \
    do {                                                                                           \
        MP_EXPECT(c->comm, expr, want);                                                            \
        api_count(1);                                                                              \
    } while (0)

static int errors_suite(struct ctx *c)
{
    enum { K = 8 };
    jaccl_comm_t comm = c->comm;
    const jaccl_result_t UNSUP = JACCL_ERR_UNSUPPORTED, INVAL = JACCL_ERR_INVALID_ARGUMENT;
    const jaccl_dtype_t BADT = JACCL_DTYPE_COUNT;
    const jaccl_op_t BADO = JACCL_OP_COUNT;
    uint64_t s[K * API_MAXR + 4] = {0}, r[K * API_MAXR + 4] = {0};
    /* Undefined dtype x op pairs, on every reducing collective. */
    static const struct {
        jaccl_dtype_t dt;
        jaccl_op_t op;
    } undef[] = {
        {JACCL_BOOL, JACCL_AVG}, {JACCL_COMPLEX64, JACCL_MIN}, {JACCL_COMPLEX64, JACCL_MAX}};
    for (size_t i = 0; i < sizeof(undef) / sizeof(undef[0]); i++) {
        EXPECT(jaccl_allreduce(s, r, K, undef[i].dt, undef[i].op, comm), UNSUP);
        EXPECT(jaccl_allreduce(r, r, K, undef[i].dt, undef[i].op, comm), UNSUP);
        EXPECT(jaccl_reduce_scatter(s, r, K, undef[i].dt, undef[i].op, comm), UNSUP);
        EXPECT(jaccl_reduce(s, r, K, undef[i].dt, undef[i].op, 0, comm), UNSUP);
        EXPECT(jaccl_reduce(s, s, 0, undef[i].dt, undef[i].op, c->n - 1, comm), UNSUP);
        if (still_works(c, "an unsupported dtype x op")) return 1;
    }
    /* Roots out of range. */
    const int roots[] = {-1, c->n, c->n + 7, INT_MAX, INT_MIN};
    for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
        EXPECT(jaccl_broadcast(s, r, K, JACCL_UINT64, roots[i], comm), INVAL);
        EXPECT(jaccl_broadcast(r, r, 0, JACCL_UINT64, roots[i], comm), INVAL);
        EXPECT(jaccl_reduce(s, r, K, JACCL_UINT64, JACCL_SUM, roots[i], comm), INVAL);
    }
    if (still_works(c, "a root out of range")) return 1;
    /* Bad dtype and op, NULL buffers, overlapping buffers (the same on every rank). */
    EXPECT(jaccl_reduce_scatter(s, r, K, BADT, JACCL_SUM, comm), INVAL);
    EXPECT(jaccl_reduce_scatter(s, r, K, JACCL_INT32, BADO, comm), INVAL);
    EXPECT(jaccl_reduce(s, r, K, BADT, JACCL_SUM, 0, comm), INVAL);
    EXPECT(jaccl_reduce(s, r, K, JACCL_INT32, BADO, 0, comm), INVAL);
    EXPECT(jaccl_broadcast(s, r, K, BADT, 0, comm), INVAL);
    EXPECT(jaccl_alltoall(s, r, K, BADT, comm), INVAL);
    EXPECT(jaccl_reduce_scatter(s, NULL, K, JACCL_INT32, JACCL_SUM, comm), INVAL);
    EXPECT(jaccl_reduce_scatter(NULL, r, K, JACCL_INT32, JACCL_SUM, comm), INVAL);
    EXPECT(jaccl_reduce(NULL, r, K, JACCL_INT32, JACCL_SUM, 0, comm), INVAL);
    EXPECT(jaccl_broadcast(s, NULL, K, JACCL_INT32, 0, comm), INVAL);
    EXPECT(jaccl_alltoall(NULL, r, K, JACCL_INT32, comm), INVAL);
    EXPECT(jaccl_alltoall(s, NULL, K, JACCL_INT32, comm), INVAL);
    /* recvbuf one element past this rank's block: overlaps without being in place. */
    EXPECT(jaccl_reduce_scatter(s, s + (size_t)c->me * 4 + 1, 4, JACCL_UINT64, JACCL_SUM, comm),
           INVAL);
    EXPECT(jaccl_alltoall(s, s + 1, 4, JACCL_UINT64, comm), INVAL);
    if (still_works(c, "argument errors")) return 1;
    return 0;
}

static int rank_main(jaccl_comm_t comm, void *arg)
{
    const struct plan *p = arg;
    struct ctx c = {.comm = comm, .n = jaccl_comm_size(comm), .me = jaccl_comm_rank(comm)};
    c.seed = 1000 * (uint64_t)c.n;
    MP_CHECK(c.n == mp_size() && c.n <= API_MAXR, "size %d", c.n);
    double t0 = mp_now();
    if (p->small && small_suite(&c)) return 1;
    double t1 = mp_now();
    if (p->mid && mid_suite(&c)) return 1;
    double t2 = mp_now();
    if (p->large && large_suite(&c)) return 1;
    if (p->barrier && barrier_suite(&c)) return 1;
    if (p->errors && errors_suite(&c)) return 1;
    if (c.me == 0)
        printf("[api] small %.2f s, mid %.2f s, rest %.2f s\n", t1 - t0, t2 - t1, mp_now() - t2);
    api_report(comm, NULL);
    return 0;
}

static const struct plan full = {1, 1, 1, 1, 1};
static const struct plan mid_only = {0, 1, 0, 0, 0};

/* clang-format off */
#define CROSS(NP, ALGO) {"np" #NP "-" ALGO, NP, {"JACCL_ALGO=" ALGO}, rank_main, NULL, &full, 0}
#define MID(NAME, NP, ...) {NAME, NP, {__VA_ARGS__}, rank_main, NULL, &mid_only, 0}

static const struct api_test tests[] = {
    CROSS(2, "mesh"), CROSS(2, "ring"), CROSS(2, "auto"),
    CROSS(3, "mesh"), CROSS(3, "ring"), CROSS(3, "auto"),
    CROSS(4, "mesh"), CROSS(4, "ring"), CROSS(4, "auto"),
    MID("np3-per-collective", 3,
        "JACCL_ALGO=reducescatter:ring,broadcast:mesh,reduce:ring,alltoall:mesh"),
    MID("np4-per-collective-swapped", 4,
        "JACCL_ALGO=reducescatter:mesh,broadcast:ring,reduce:mesh,alltoall:ring"),
    MID("np3-ring-sockets3", 3, "JACCL_ALGO=ring", "JACCL_TCP_SOCKETS=3"),
    MID("np4-mesh-sockets2", 4, "JACCL_ALGO=mesh", "JACCL_TCP_SOCKETS=2"),
};
/* clang-format on */

int main(void)
{
    return api_main("api-collectives", tests, (int)(sizeof(tests) / sizeof(tests[0])));
}
