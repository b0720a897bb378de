/*
 * jaccl_comm_split across real processes:
 *  - odd and even ranks (color = rank % 2) in two groups running different
 *    collectives at the same time (odd: all-reduce, even: all-gather);
 *  - ordering by key, ties broken by the parent's order (key = -rank
 *    reverses the ranks);
 *  - JACCL_SPLIT_NOCOLOR gives NULL; a color below -1 is refused;
 *  - a split of a split, with every collective and send/recv on it;
 *  - children keep working after their parent (and grandparent) is destroyed;
 *  - non-blocking calls on a parent and its child at the same time (they
 *    share links).
 * Results are checked against references computed here; float results are
 * compared across the group's ranks by hash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"

/* Each member's world rank, gathered over c: who is in the group, in which order. */
static int members(jaccl_comm_t c, int *out)
{
    int32_t mine = mp_rank(), all[API_MAXR];
    MP_OK(c, jaccl_allgather(&mine, all, 1, JACCL_INT32, c));
    for (int i = 0; i < jaccl_comm_size(c); i++) out[i] = all[i];
    return 0;
}

static int expect_members(jaccl_comm_t c, const int *want, int m, const char *what)
{
    int got[API_MAXR];
    MP_CHECK(c, "%s: no communicator", what);
    MP_CHECK(jaccl_comm_size(c) == m, "%s: size %d, want %d", what, jaccl_comm_size(c), m);
    if (members(c, got)) return 1;
    for (int i = 0; i < m; i++) {
        MP_CHECK(got[i] == want[i], "%s: rank %d is world rank %d, want %d", what, i, got[i],
                 want[i]);
        if (want[i] == mp_rank())
            MP_CHECK(jaccl_comm_rank(c) == i, "%s: our rank is %d, want %d", what,
                     jaccl_comm_rank(c), i);
    }
    api_count(1);
    return 0;
}

/* ---- checked collectives on any communicator ---- */

static int check_allreduce(jaccl_comm_t c, jaccl_dtype_t dt, jaccl_op_t op, size_t count,
                           uint64_t seed, const char *what)
{
    struct api_gen g;
    size_t bytes = count * jaccl_dtype_size(dt);
    char *s = malloc(bytes + 1), *r = malloc(bytes + 1);
    MP_CHECK(s && r, "out of memory");
    api_gen_init(&g, dt, op, jaccl_comm_size(c), API_EXACT, seed);
    api_gen_fill(&g, jaccl_comm_rank(c), s, 0, count);
    MP_OK(c, jaccl_allreduce(s, r, count, dt, op, c));
    if (api_gen_check(&g, r, 0, count, 0, 1, what) || mp_check_same(c, r, bytes, what)) return 1;
    free(s);
    free(r);
    api_count(1);
    return 0;
}

static int check_allgather(jaccl_comm_t c, size_t bytes, uint64_t seed, const char *what)
{
    int m = jaccl_comm_size(c), me = jaccl_comm_rank(c);
    char *s = malloc(bytes + 1), *r = malloc(bytes * (size_t)m + 1);
    MP_CHECK(s && r, "out of memory");
    api_fill_bytes(s, bytes, seed + (uint64_t)me);
    MP_OK(c, jaccl_allgather(s, r, bytes, JACCL_UINT8, c));
    for (int q = 0; q < m; q++)
        if (api_check_bytes(r + (size_t)q * bytes, bytes, seed + (uint64_t)q, what)) return 1;
    free(s);
    free(r);
    api_count(1);
    return 0;
}

/* Every collective and a ring of sends on c, checked. */
static int exercise(jaccl_comm_t c, uint64_t seed, const char *what)
{
    int m = jaccl_comm_size(c), me = jaccl_comm_rank(c);
    enum { N = 513 };
    int32_t s[N * API_MAXR], r[N * API_MAXR];
    if (check_allreduce(c, JACCL_FLOAT32, JACCL_SUM, 40009, seed, what) ||
        check_allreduce(c, JACCL_COMPLEX64, JACCL_PROD, 1001, seed + 1, what) ||
        check_allgather(c, 3001, seed + 2, what))
        return 1;
    /* reduce-scatter of (q + 1) * (i + 1): block me sums to m(m+1)/2 * (i + 1) */
    for (int i = 0; i < N * m; i++) s[i] = (me + 1) * (i + 1);
    MP_OK(c, jaccl_reduce_scatter(s, r, N, JACCL_INT32, JACCL_SUM, c));
    for (int i = 0; i < N; i++)
        MP_CHECK(r[i] == m * (m + 1) / 2 * (me * N + i + 1), "%s: reduce_scatter [%d] = %d", what,
                 i, r[i]);
    /* broadcast from the last rank, reduce to it */
    for (int i = 0; i < N; i++) s[i] = me == m - 1 ? i * 7 : -1;
    MP_OK(c, jaccl_broadcast(s, s, N, JACCL_INT32, m - 1, c));
    for (int i = 0; i < N; i++) MP_CHECK(s[i] == i * 7, "%s: broadcast [%d] = %d", what, i, s[i]);
    for (int i = 0; i < N; i++) s[i] = me * 1000 + i;
    MP_OK(c, jaccl_reduce(s, me == m - 1 ? r : NULL, N, JACCL_INT32, JACCL_MAX, m - 1, c));
    for (int i = 0; me == m - 1 && i < N; i++)
        MP_CHECK(r[i] == (m - 1) * 1000 + i, "%s: reduce [%d] = %d", what, i, r[i]);
    /* alltoall: block q of ours = q * 100 + me */
    for (int q = 0; q < m; q++)
        for (int i = 0; i < N; i++) s[q * N + i] = (me * 100 + q) * 1000 + i;
    MP_OK(c, jaccl_alltoall(s, r, N, JACCL_INT32, c));
    for (int q = 0; q < m; q++)
        for (int i = 0; i < N; i++)
            MP_CHECK(r[q * N + i] == (q * 100 + me) * 1000 + i, "%s: alltoall block %d [%d] = %d",
                     what, q, i, r[q * N + i]);
    MP_OK(c, jaccl_barrier(c));
    /* a ring of sends, grouped */
    if (m > 1) {
        int to = (me + 1) % m, from = (me + m - 1) % m;
        for (int i = 0; i < N; i++) s[i] = me * 31 + i;
        MP_OK(c, jaccl_group_start());
        MP_OK(c, jaccl_send(s, N, JACCL_INT32, to, c));
        MP_OK(c, jaccl_recv(r, N, JACCL_INT32, from, c));
        MP_OK(c, jaccl_group_end());
        for (int i = 0; i < N; i++)
            MP_CHECK(r[i] == from * 31 + i, "%s: recv from %d [%d] = %d", what, from, i, r[i]);
    }
    api_count(6);
    return 0;
}

/* ---- odd and even ranks, different collectives at the same time ---- */

static int odd_even(jaccl_comm_t comm, void *arg)
{
    int n = jaccl_comm_size(comm), me = jaccl_comm_rank(comm), color = me % 2, m = 0;
    int want[API_MAXR];
    jaccl_comm_t half = NULL;
    (void)arg;
    MP_OK(comm, jaccl_comm_split(comm, color, me, &half));
    for (int r = color; r < n; r += 2) want[m++] = r;
    if (expect_members(half, want, m, "odd/even split")) return 1;
    static const size_t sizes[] = {1, 1001, 40009, 262147, 7};
    for (int it = 0; it < 10; it++) {
        size_t count = sizes[it % 5];
        uint64_t seed = 100 + (uint64_t)it;
        int rc = color ? check_allreduce(half, it % 2 ? JACCL_INT16 : JACCL_FLOAT32,
                                         it % 3 ? JACCL_SUM : JACCL_MAX, count, seed, "odd group")
                       : check_allgather(half, count * 4, seed, "even group");
        if (rc) return 1;
    }
    /* The world communicator is still in step with both groups done. */
    if (check_allreduce(comm, JACCL_INT64, JACCL_SUM, 1001, 7, "world after the groups")) return 1;
    MP_OK(NULL, jaccl_comm_destroy(half));
    api_report(comm, NULL);
    return 0;
}

/* ---- key order ---- */

static int key_order(jaccl_comm_t comm, void *arg)
{
    int n = jaccl_comm_size(comm), me = jaccl_comm_rank(comm), want[API_MAXR], m;
    jaccl_comm_t c = NULL;
    (void)arg;
    /* key = -rank reverses */
    MP_OK(comm, jaccl_comm_split(comm, 3, -me, &c));
    for (int i = 0; i < n; i++) want[i] = n - 1 - i;
    if (expect_members(c, want, n, "key = -rank") || exercise(c, 11, "reversed")) return 1;
    MP_OK(NULL, jaccl_comm_destroy(c));
    /* equal keys keep the parent's order */
    MP_OK(comm, jaccl_comm_split(comm, 0, 42, &c));
    for (int i = 0; i < n; i++) want[i] = i;
    if (expect_members(c, want, n, "equal keys")) return 1;
    MP_OK(NULL, jaccl_comm_destroy(c));
    /* key = rank % 2: even ranks first, each part in the parent's order */
    MP_OK(comm, jaccl_comm_split(comm, 1, me % 2, &c));
    m = 0;
    for (int r = 0; r < n; r += 2) want[m++] = r;
    for (int r = 1; r < n; r += 2) want[m++] = r;
    if (expect_members(c, want, n, "key = rank % 2") || exercise(c, 12, "evens first")) return 1;
    MP_OK(NULL, jaccl_comm_destroy(c));
    /* large and negative keys, colors that are not 0..k */
    MP_OK(comm,
          jaccl_comm_split(comm, me < n / 2 ? 1000000 : 7, me % 2 ? -2000000000 : 2000000000, &c));
    m = 0;
    int lo = me < n / 2 ? 0 : n / 2, hi = me < n / 2 ? n / 2 : n;
    for (int odd = 1; odd >= 0; odd--)
        for (int r = lo; r < hi; r++)
            if (r % 2 == odd) want[m++] = r;
    if (expect_members(c, want, m, "halves, odd ranks first")) return 1;
    MP_OK(NULL, jaccl_comm_destroy(c));
    api_report(comm, NULL);
    return 0;
}

/* ---- no color ---- */

static int nocolor(jaccl_comm_t comm, void *arg)
{
    int n = jaccl_comm_size(comm), me = jaccl_comm_rank(comm), want[API_MAXR];
    jaccl_comm_t c = (jaccl_comm_t)&c; /* must be set to NULL */
    (void)arg;
    MP_OK(comm, jaccl_comm_split(comm, me == 0 ? JACCL_SPLIT_NOCOLOR : 5, me, &c));
    if (me == 0) {
        MP_CHECK(c == NULL, "JACCL_SPLIT_NOCOLOR gave a communicator");
        MP_CHECK(jaccl_comm_rank(c) == -1 && jaccl_comm_size(c) == -1, "NULL comm's rank/size");
    } else {
        for (int i = 0; i < n - 1; i++) want[i] = i + 1;
        if (expect_members(c, want, n - 1, "all but rank 0") || exercise(c, 21, "all but rank 0"))
            return 1;
    }
    MP_OK(NULL, jaccl_comm_destroy(c)); /* NULL is accepted */
    api_count(1);
    /* Everyone without a color. */
    c = (jaccl_comm_t)&c;
    MP_OK(comm, jaccl_comm_split(comm, JACCL_SPLIT_NOCOLOR, 0, &c));
    MP_CHECK(c == NULL, "all JACCL_SPLIT_NOCOLOR: got a communicator");
    api_count(1);
    /* A color below -1 is refused, and the communicator still works. */
    c = NULL;
    MP_EXPECT(comm, jaccl_comm_split(comm, -2, 0, &c), JACCL_ERR_INVALID_ARGUMENT);
    MP_CHECK(c == NULL, "a refused split set the communicator");
    MP_CHECK(jaccl_comm_split(NULL, 0, 0, &c) == JACCL_ERR_INVALID_ARGUMENT, "split of NULL");
    api_count(2);
    if (check_allreduce(comm, JACCL_INT32, JACCL_SUM, 77, 5, "world after refused splits"))
        return 1;
    api_report(comm, NULL);
    return 0;
}

/* ---- split of a split, parents destroyed first ---- */

static int nested(void *arg)
{
    jaccl_comm_t world = NULL, a = NULL, b = NULL, c = NULL;
    int destroy_parents = arg != NULL;
    jaccl_result_t rc = jaccl_comm_init_env(&world);
    MP_CHECK(rc == JACCL_SUCCESS, "init: %s: %s", jaccl_result_string(rc), jaccl_last_error(NULL));
    int n = jaccl_comm_size(world), me = jaccl_comm_rank(world), want[API_MAXR], m = 0;
    /* a: my parity, reversed; b: a split of a, reversed again (the parent's order) */
    MP_OK(world, jaccl_comm_split(world, me % 2, -me, &a));
    for (int r = n - 1; r >= 0; r--)
        if (r % 2 == me % 2) want[m++] = r;
    if (expect_members(a, want, m, "a (parity, reversed)")) return 1;
    MP_OK(a, jaccl_comm_split(a, 0, -jaccl_comm_rank(a), &b));
    for (int i = 0; i < m / 2; i++) {
        int t = want[i];
        want[i] = want[m - 1 - i];
        want[m - 1 - i] = t;
    }
    if (expect_members(b, want, m, "b (a split of a)")) return 1;
    /* c: a split of b without its rank 0 */
    MP_OK(b, jaccl_comm_split(b, jaccl_comm_rank(b) == 0 ? JACCL_SPLIT_NOCOLOR : 1, 0, &c));
    MP_CHECK((jaccl_comm_rank(b) == 0) == (c == NULL), "c: NULL on b's rank 0 only");
    if (destroy_parents) {
        MP_OK(NULL, jaccl_comm_destroy(world));
        world = NULL;
    }
    if (exercise(a, 31, "a") || exercise(b, 32, "b")) return 1;
    if (destroy_parents) {
        MP_OK(NULL, jaccl_comm_destroy(a));
        a = NULL;
        MP_OK(NULL, jaccl_comm_destroy(b));
        b = NULL;
    }
    if (c &&
        (expect_members(c, want + 1, m - 1, "c (b without its rank 0)") || exercise(c, 33, "c")))
        return 1;
    if (b && exercise(b, 34, "b again")) return 1;
    if (world && exercise(world, 35, "world")) return 1;
    MP_OK(NULL, jaccl_comm_destroy(c));
    MP_OK(NULL, jaccl_comm_destroy(b));
    MP_OK(NULL, jaccl_comm_destroy(a));
    MP_OK(NULL, jaccl_comm_destroy(world));
    api_report(NULL, NULL);
    return 0;
}

/* ---- non-blocking on a parent and its child at once ---- */

static int parent_and_child(jaccl_comm_t comm, void *arg)
{
    int n = jaccl_comm_size(comm), me = jaccl_comm_rank(comm);
    size_t count = MP_SANITIZED ? 1u << 18 : 1u << 20;
    float *a = malloc(count * 4), *b = malloc(count * 4), *x = malloc(count * 4);
    jaccl_comm_t rev = NULL;
    jaccl_request_t q[2];
    (void)arg;
    MP_CHECK(a && b && x, "out of memory");
    MP_OK(comm, jaccl_comm_split(comm, 0, -me, &rev));
    for (int round = 0; round < 4; round++) {
        for (size_t i = 0; i < count; i++) {
            a[i] = (float)(me + 1);
            b[i] = x[i] = (float)(2 * me + 1 + round);
        }
        /* The user calls from one thread; the library runs both requests meanwhile. */
        MP_OK(comm, jaccl_iallreduce(a, a, count, JACCL_FLOAT32, JACCL_SUM, comm, &q[0]));
        MP_OK(rev, jaccl_iallreduce(b, b, count, JACCL_FLOAT32, JACCL_MAX, rev, &q[1]));
        MP_OK(comm, jaccl_wait(q[0]));
        MP_OK(rev, jaccl_wait(q[1]));
        /* A blocking call on the child while the parent's request may still run. */
        MP_OK(comm, jaccl_iallreduce(a, a, count, JACCL_FLOAT32, JACCL_MAX, comm, &q[0]));
        MP_OK(rev, jaccl_allreduce(x, x, count, JACCL_FLOAT32, JACCL_MIN, rev));
        MP_OK(comm, jaccl_wait(q[0]));
        for (size_t i = 0; i < count; i++)
            MP_CHECK(a[i] == n * (n + 1) / 2 && b[i] == 2 * n - 1 + round && x[i] == 1 + round,
                     "round %d [%zu]: %g %g %g", round, i, a[i], b[i], x[i]);
        api_count(1);
    }
    MP_OK(NULL, jaccl_comm_destroy(rev));
    free(a);
    free(b);
    free(x);
    api_report(comm, NULL);
    return 0;
}

/*
 * isend/irecv on a parent and its child, interleaved, larger than the link
 * buffers: the shared worker must run both communicators' sends and
 * receives together (one at a time would leave every rank sending).
 */
static int p2p_parent_and_child(jaccl_comm_t comm, void *arg)
{
    int n = jaccl_comm_size(comm), me = jaccl_comm_rank(comm);
    size_t bytes = MP_SANITIZED ? 8u << 20 : 24u << 20;
    char *s[2] = {malloc(bytes), malloc(bytes)}, *r[2] = {malloc(bytes), malloc(bytes)};
    jaccl_comm_t rev = NULL;
    (void)arg;
    MP_CHECK(s[0] && s[1] && r[0] && r[1], "out of memory");
    MP_OK(comm, jaccl_comm_split(comm, 0, -me, &rev));
    int rn = jaccl_comm_rank(rev); /* rank n - 1 - me */
    for (int round = 0; round < 2; round++) {
        jaccl_request_t q[4];
        api_fill_bytes(s[0], bytes, (uint64_t)(me * 100 + round));
        api_fill_bytes(s[1], bytes, (uint64_t)(me * 100 + 50 + round));
        /* To the right on comm; to the right on rev too, which is our left. */
        MP_OK(comm, jaccl_isend(s[0], bytes, JACCL_UINT8, (me + 1) % n, comm, &q[0]));
        MP_OK(rev, jaccl_isend(s[1], bytes, JACCL_UINT8, (rn + 1) % n, rev, &q[1]));
        MP_OK(comm, jaccl_irecv(r[0], bytes, JACCL_UINT8, (me + n - 1) % n, comm, &q[2]));
        MP_OK(rev, jaccl_irecv(r[1], bytes, JACCL_UINT8, (rn + n - 1) % n, rev, &q[3]));
        MP_OK(comm, jaccl_wait_all(4, q));
        int left = (me + n - 1) % n, right = (me + 1) % n;
        if (api_check_bytes(r[0], bytes, (uint64_t)(left * 100 + round), "from the left on comm") ||
            api_check_bytes(r[1], bytes, (uint64_t)(right * 100 + 50 + round),
                            "from the right on the child"))
            return 1;
        api_count(1);
    }
    MP_OK(NULL, jaccl_comm_destroy(rev));
    for (int i = 0; i < 2; i++) {
        free(s[i]);
        free(r[i]);
    }
    api_report(comm, NULL);
    return 0;
}

/* clang-format off */
#define T(NAME, NP, FN, ...) {NAME, NP, {__VA_ARGS__}, FN, NULL, NULL, 90}
#define RAW(NAME, NP, ARG, ...)                                                                    \
    {NAME, NP, {"JACCL_RANK=@RANK@", "JACCL_SIZE=@SIZE@", "JACCL_COORDINATOR=@COORD@",             \
                "JACCL_TIMEOUT=10", __VA_ARGS__}, NULL, nested, ARG, 90}

static const struct api_test tests[] = {
    T("odd-even-np2", 2, odd_even, NULL),
    T("odd-even-np3", 3, odd_even, NULL),
    T("odd-even-np4-mesh", 4, odd_even, "JACCL_ALGO=mesh"),
    T("odd-even-np4-ring", 4, odd_even, "JACCL_ALGO=ring"),
    T("key-order-np2", 2, key_order, NULL),
    T("key-order-np3", 3, key_order, NULL),
    T("key-order-np4", 4, key_order, "JACCL_ALGO=ring"),
    T("nocolor-np2", 2, nocolor, NULL),
    T("nocolor-np4", 4, nocolor, "JACCL_ALGO=mesh"),
    RAW("split-of-split-np3", 3, NULL, NULL),
    RAW("split-of-split-np4", 4, NULL, "JACCL_ALGO=ring"),
    RAW("parents-destroyed-np3", 3, "destroy", NULL),
    RAW("parents-destroyed-np4", 4, "destroy", "JACCL_ALGO=mesh"),
    /* A parent and its child share one progress worker (a deadlock fails within the timeout,
       which leaves room for thread-sanitized builds). */
    T("nonblocking-parent-and-child-np2", 2, parent_and_child, "JACCL_TIMEOUT=20"),
    T("nonblocking-parent-and-child-np3-mesh", 3, parent_and_child, "JACCL_TIMEOUT=20",
      "JACCL_ALGO=mesh"),
    T("nonblocking-p2p-parent-and-child-np2", 2, p2p_parent_and_child, "JACCL_TIMEOUT=20"),
    T("nonblocking-p2p-parent-and-child-np3", 3, p2p_parent_and_child, "JACCL_TIMEOUT=20"),
};
/* clang-format on */

int main(void)
{
    return api_main("api-split", tests, (int)(sizeof(tests) / sizeof(tests[0])));
}
