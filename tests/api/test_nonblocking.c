/*
 * Non-blocking calls across real processes:
 *  - a 16 MiB all-reduce runs while the caller computes, polling jaccl_test
 *    between slices of work; how many slices ran before it completed and
 *    the overlap achieved are printed (timing is reported, not asserted);
 *  - requests of every kind in flight at once, some depending on earlier
 *    ones' results, then jaccl_wait_all; and again with a blocking call
 *    issued behind them, which must see their effects, after which every
 *    earlier request must test as complete (completion in issue order);
 *  - crossing 16 MiB isend/irecv between neighbours, both ways round (and
 *    with a jaccl_test and some work between the isend and the irecv);
 *  - many isend/irecv with every peer in flight at once, kept in order;
 *  - communicators destroyed right after their last wait;
 *  - argument errors and undefined dtype x op pairs are reported by
 *    jaccl_wait (or jaccl_test) with a message, each for its own request,
 *    and the communicator keeps working.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <unistd.h>

#include <cmocka.h>

#include "common.h"

#define BIG (MP_SANITIZED ? (4u << 20) : (16u << 20))

/* rank + 1 summed over comm, with a tag: the communicator still works. */
static int check_sum(jaccl_comm_t c, int64_t tag)
{
    int n = jaccl_comm_size(c);
    int64_t v[2] = {jaccl_comm_rank(c) + 1, tag}, want = (int64_t)n * (n + 1) / 2;
    MP_OK(c, jaccl_allreduce(v, v, 2, JACCL_INT64, JACCL_SUM, c));
    MP_CHECK(v[0] == want && v[1] == tag * n, "sum %lld (want %lld), tag %lld (want %lld)",
             (long long)v[0], (long long)want, (long long)v[1], (long long)(tag * n));
    return 0;
}

/* ---- compute while an all-reduce runs ---- */

static volatile double sink;

/* One slice of work that touches no communication buffer (~1 ms). */
static void compute_slice(double *work, size_t n)
{
    double acc = 0;
    for (size_t i = 0; i < n; i++) {
        work[i] = work[i] * 0.999 + sqrt((double)i + work[i] * work[i]);
        acc += work[i];
    }
    sink = acc;
}

static int overlap(jaccl_comm_t comm, void *arg)
{
    int me = jaccl_comm_rank(comm), n = jaccl_comm_size(comm);
    size_t count = BIG / 4, wn = 1u << 15;
    struct api_gen g;
    float *send = malloc(BIG), *recv = malloc(BIG);
    double *work = calloc(wn, sizeof(double));
    (void)arg;
    MP_CHECK(send && recv && work, "out of memory");
    api_gen_init(&g, JACCL_FLOAT32, JACCL_SUM, n, API_EXACT, 4242);
    api_gen_fill(&g, me, send, 0, count);
    /* Alone: the all-reduce (after a warm-up), and one slice of work. */
    MP_OK(comm, jaccl_allreduce(send, recv, count, JACCL_FLOAT32, JACCL_SUM, comm));
    double t0 = mp_now();
    MP_OK(comm, jaccl_allreduce(send, recv, count, JACCL_FLOAT32, JACCL_SUM, comm));
    double t_comm = mp_now() - t0;
    t0 = mp_now();
    for (int i = 0; i < 20; i++) compute_slice(work, wn);
    double t_slice = (mp_now() - t0) / 20;
    /* Enough slices to cover the all-reduce about twice: the same on every rank. */
    double plan[2] = {t_comm, t_slice};
    MP_OK(comm, jaccl_allreduce(plan, plan, 2, JACCL_FLOAT64, JACCL_MAX, comm));
    int slices = (int)(2 * plan[0] / plan[1]) + 1;
    if (slices > 5000) slices = 5000;
    /* Together. */
    memset(recv, 0xee, BIG);
    jaccl_request_t req;
    int done = 0, before = 0, polls = 0;
    t0 = mp_now();
    MP_OK(comm, jaccl_iallreduce(send, recv, count, JACCL_FLOAT32, JACCL_SUM, comm, &req));
    double t_issue = mp_now() - t0, t_done = 0;
    for (int i = 0; i < slices; i++) {
        compute_slice(work, wn);
        if (!done) {
            polls++;
            MP_OK(comm, jaccl_test(req, &done));
            if (done) {
                before = i + 1;
                t_done = mp_now() - t0;
            }
        }
    }
    if (!done) {
        MP_OK(comm, jaccl_wait(req));
        before = slices;
        t_done = mp_now() - t0;
    }
    double t_total = mp_now() - t0, t_compute = slices * t_slice;
    double hidden = t_comm + t_compute - t_total, shorter = t_comm < t_compute ? t_comm : t_compute;
    if (api_gen_check(&g, recv, 0, count, (size_t)me, (size_t)n, "iallreduce") ||
        mp_check_same(comm, recv, BIG, "iallreduce"))
        return 1;
    printf("[api] rank %d: %u MiB iallreduce: alone %.1f ms; issue %.3f ms; done after %d of %d "
           "slices of %.2f ms (%d polls, %.1f ms); compute alone %.1f ms, both %.1f ms: "
           "overlap %.0f%%\n",
           me, BIG >> 20, t_comm * 1e3, t_issue * 1e3, before, slices, t_slice * 1e3, polls,
           t_done * 1e3, t_compute * 1e3, t_total * 1e3,
           shorter > 0 ? 100 * (hidden > 0 ? hidden : 0) / shorter : 0.0);
    fflush(stdout);
    api_count(1);
    free(send);
    free(recv);
    free(work);
    api_report(comm, NULL);
    return check_sum(comm, 1);
}

/* ---- many requests of every kind in flight ---- */

enum { K = 1001 };

struct bufs {
    int32_t a[K], b[K], ab[K]; /* iallreduce a -> b; then b in place; blocking b -> ab */
    int16_t c[K], d[K * API_MAXR];
    float e[2 * K * API_MAXR], f[2 * K]; /* complex64: e -> f reduce-scatter */
    uint8_t gbc[K];                      /* broadcast in place */
    int64_t h[K * API_MAXR], i[K * API_MAXR], j[K * API_MAXR]; /* alltoall h -> i -> j */
    uint16_t sr[2][K], rr[2][K];                               /* isend/irecv both ways */
};

static uint64_t key(int rank, int which, size_t idx)
{
    return mp_mix(((uint64_t)rank << 48) ^ ((uint64_t)which << 40) ^ idx);
}

static void bufs_fill(struct bufs *B, int me, int n, int round)
{
    memset(B, 0xee, sizeof(*B));
    for (size_t x = 0; x < K; x++) {
        B->a[x] = (int32_t)(key(me, 1 + round, x) % 1000) - 500;
        B->c[x] = (int16_t)key(me, 2 + round, x);
        B->gbc[x] = me == n - 1 ? (uint8_t)key(me, 3 + round, x) : 0;
        B->sr[0][x] = (uint16_t)key(me, 4 + round, x);
        B->sr[1][x] = (uint16_t)key(me, 5 + round, x);
    }
    for (size_t x = 0; x < (size_t)n * K; x++) {
        B->h[x] = (int64_t)key(me, 6 + round, x);
        /* complex entries in {-1, 0, 1} + {-1, 0, 1}i: products stay exact */
        B->e[2 * x] = (float)((int)(key(me, 7 + round, x) % 3) - 1);
        B->e[2 * x + 1] = (float)((int)(key(me, 8 + round, x) % 3) - 1);
    }
}

static int bufs_check(const struct bufs *B, int me, int n, int round, int with_blocking)
{
    int left = (me + n - 1) % n, right = (me + 1) % n;
    for (size_t x = 0; x < K; x++) {
        int64_t sum = 0;
        for (int r = 0; r < n; r++) sum += (int32_t)(key(r, 1 + round, x) % 1000) - 500;
        /* b = sum, then b = n * sum in place, then ab = n * n * sum (blocking, behind them) */
        MP_CHECK(B->b[x] == n * sum,
                 "round %d: iallreduce on its own output: b[%zu] = %d, want "
                 "%lld",
                 round, x, B->b[x], (long long)(n * sum));
        MP_CHECK(!with_blocking || B->ab[x] == n * n * sum,
                 "round %d: blocking allreduce behind the requests: ab[%zu] = %d, want %lld", round,
                 x, B->ab[x], (long long)(n * n * sum));
        MP_CHECK(B->gbc[x] == (uint8_t)key(n - 1, 3 + round, x), "round %d: ibroadcast [%zu]",
                 round, x);
        MP_CHECK(B->rr[0][x] == (uint16_t)key(left, 4 + round, x) &&
                     B->rr[1][x] == (uint16_t)key(right, 5 + round, x),
                 "round %d: irecv [%zu]", round, x);
        /* our reduce-scatter block: element me * K + x of the product over ranks */
        size_t gx = (size_t)me * K + x;
        double re = 1, im = 0;
        for (int r = 0; r < n; r++) {
            double c = (int)(key(r, 7 + round, gx) % 3) - 1,
                   d = (int)(key(r, 8 + round, gx) % 3) - 1;
            double t = re * c - im * d;
            im = re * d + im * c;
            re = t;
        }
        MP_CHECK(B->f[2 * x] == re && B->f[2 * x + 1] == im,
                 "round %d: ireduce_scatter complex64 prod [%zu] = %g%+gi, want %g%+gi", round, x,
                 B->f[2 * x], B->f[2 * x + 1], re, im);
    }
    for (int r = 0; r < n; r++)
        for (size_t x = 0; x < K; x++) {
            MP_CHECK(B->d[(size_t)r * K + x] == (int16_t)key(r, 2 + round, x),
                     "round %d: iallgather block %d [%zu]", round, r, x);
            /* i block r = rank r's h block me; j block r = rank r's i block me = our h block r */
            MP_CHECK(B->i[(size_t)r * K + x] == (int64_t)key(r, 6 + round, (size_t)me * K + x),
                     "round %d: ialltoall block %d [%zu]", round, r, x);
            MP_CHECK(B->j[(size_t)r * K + x] == B->h[(size_t)r * K + x],
                     "round %d: ialltoall of the previous ialltoall's output, block %d [%zu]",
                     round, r, x);
        }
    return 0;
}

/* Issue every kind; returns the number of requests. */
static int issue_all(jaccl_comm_t comm, struct bufs *B, jaccl_request_t *q)
{
    int me = jaccl_comm_rank(comm), n = jaccl_comm_size(comm), m = 0;
    int left = (me + n - 1) % n, right = (me + 1) % n;
    MP_OK(comm, jaccl_iallreduce(B->a, B->b, K, JACCL_INT32, JACCL_SUM, comm, &q[m++]));
    MP_OK(comm, jaccl_iallgather(B->c, B->d, K, JACCL_INT16, comm, &q[m++]));
    MP_OK(comm, jaccl_ireduce_scatter(B->e, B->f, K, JACCL_COMPLEX64, JACCL_PROD, comm, &q[m++]));
    MP_OK(comm, jaccl_ibroadcast(B->gbc, B->gbc, K, JACCL_UINT8, n - 1, comm, &q[m++]));
    MP_OK(comm, jaccl_ialltoall(B->h, B->i, K, JACCL_INT64, comm, &q[m++]));
    /* With 2 ranks left == right: the messages between the pair arrive in the order sent. */
    MP_OK(comm, jaccl_isend(B->sr[0], K, JACCL_UINT16, right, comm, &q[m++]));
    MP_OK(comm, jaccl_irecv(B->rr[0], K, JACCL_UINT16, left, comm, &q[m++]));
    MP_OK(comm, jaccl_isend(B->sr[1], K, JACCL_UINT16, left, comm, &q[m++]));
    MP_OK(comm, jaccl_irecv(B->rr[1], K, JACCL_UINT16, right, comm, &q[m++]));
    /* These read what earlier requests write: right only if they run in issue order. */
    MP_OK(comm, jaccl_iallreduce(B->b, B->b, K, JACCL_INT32, JACCL_SUM, comm, &q[m++]));
    MP_OK(comm, jaccl_ialltoall(B->i, B->j, K, JACCL_INT64, comm, &q[m++]));
    return m;
}

static int in_flight(jaccl_comm_t comm, void *arg)
{
    int me = jaccl_comm_rank(comm), n = jaccl_comm_size(comm);
    struct bufs *B = malloc(sizeof(*B));
    jaccl_request_t q[16];
    (void)arg;
    MP_CHECK(B, "out of memory");
    for (int round = 0; round < 4; round++) {
        bufs_fill(B, me, n, round);
        int m = issue_all(comm, B, q);
        if (round % 2 == 0) {
            /* Wait for them all at once. */
            MP_OK(comm, jaccl_wait_all(m, q));
            if (bufs_check(B, me, n, round, 0)) return 1;
        } else {
            /* A blocking call behind them sees their effects and returns after all of them. */
            MP_OK(comm, jaccl_allreduce(B->b, B->ab, K, JACCL_INT32, JACCL_SUM, comm));
            for (int i = 0; i < m; i++) {
                int done = 0;
                MP_OK(comm, jaccl_test(q[i], &done));
                MP_CHECK(done,
                         "round %d: request %d of %d not complete after a later blocking "
                         "call returned",
                         round, i, m);
            }
            if (bufs_check(B, me, n, round, 1)) return 1;
        }
        api_count(1);
    }
    /* Waiting in reverse issue order works too. */
    bufs_fill(B, me, n, 9);
    int m = issue_all(comm, B, q);
    for (int i = m - 1; i >= 0; i--) MP_OK(comm, jaccl_wait(q[i]));
    if (bufs_check(B, me, n, 9, 0)) return 1;
    api_count(1);
    free(B);
    api_report(comm, NULL);
    return check_sum(comm, 2);
}

/* ---- crossing 16 MiB isend/irecv ---- */

static uint64_t msg_seed(int from, int to, int which)
{
    return ((uint64_t)from << 40) ^ ((uint64_t)to << 32) ^ (uint64_t)which;
}

struct cross {
    size_t bytes;
    int test_between; /* jaccl_test on the first isend before the irecv is posted */
};

static int crossing(jaccl_comm_t comm, void *arg)
{
    const struct cross *x = arg;
    int me = jaccl_comm_rank(comm), n = jaccl_comm_size(comm), test_between = x->test_between;
    int left = (me + n - 1) % n, right = (me + 1) % n;
    size_t bytes = x->bytes;
    char *s[2] = {malloc(bytes), malloc(bytes)}, *r[2] = {malloc(bytes), malloc(bytes)};
    MP_CHECK(s[0] && s[1] && r[0] && r[1], "out of memory");
    for (int round = 0; round < 2; round++) {
        jaccl_request_t q[4];
        api_fill_bytes(s[0], bytes, msg_seed(me, right, round));
        api_fill_bytes(s[1], bytes, msg_seed(me, left, round + 10));
        memset(r[0], 0xee, bytes);
        memset(r[1], 0xee, bytes);
        /* Everyone sends first: as blocking calls this would deadlock. */
        MP_OK(comm, jaccl_isend(s[0], bytes / 8, JACCL_FLOAT64, right, comm, &q[0]));
        int sent = 0;
        if (test_between) { /* poll, compute a while, then post the receive */
            MP_OK(comm, jaccl_test(q[0], &sent));
            api_sleep_ms(50);
        }
        MP_OK(comm, jaccl_irecv(r[0], bytes / 8, JACCL_FLOAT64, left, comm, &q[1]));
        /* and the other way round, with the other dtype size */
        MP_OK(comm, jaccl_isend(s[1], bytes / 2, JACCL_BFLOAT16, left, comm, &q[2]));
        MP_OK(comm, jaccl_irecv(r[1], bytes / 2, JACCL_BFLOAT16, right, comm, &q[3]));
        double t0 = mp_now();
        if (round == 0 || sent) {
            if (!sent) MP_OK(comm, jaccl_wait(q[0])); /* one wait starts them all */
            MP_OK(comm, jaccl_wait_all(3, q + 1));
        } else {
            MP_OK(comm, jaccl_wait_all(4, q));
        }
        if (me == 0)
            printf("[api] %zu MiB crossing, round %d: waits %.3f s\n", bytes >> 20, round,
                   mp_now() - t0);
        if (api_check_bytes(r[0], bytes, msg_seed(left, me, round), "from the left") ||
            api_check_bytes(r[1], bytes, msg_seed(right, me, round + 10), "from the right"))
            return 1;
        api_count(1);
    }
    for (int i = 0; i < 2; i++) {
        free(s[i]);
        free(r[i]);
    }
    api_report(comm, NULL);
    return check_sum(comm, 3);
}

/* ---- many sends and receives in flight with every peer ---- */

static int many_p2p(jaccl_comm_t comm, void *arg)
{
    enum { M = 16, LEN = 1000 };
    int me = jaccl_comm_rank(comm), n = jaccl_comm_size(comm), m = 0;
    char(*s)[M][LEN] = calloc(API_MAXR, sizeof(*s)), (*r)[M][LEN] = calloc(API_MAXR, sizeof(*r));
    jaccl_request_t *q = calloc((size_t)(2 * M * API_MAXR), sizeof(*q));
    (void)arg;
    MP_CHECK(s && r && q, "out of memory");
    /* M messages each way with every peer, all issued before any wait. */
    for (int k = 0; k < M; k++)
        for (int p = 0; p < n; p++) {
            if (p == me) continue;
            api_fill_bytes(s[p][k], LEN - (size_t)k, msg_seed(me, p, 100 + k));
            MP_OK(comm, jaccl_isend(s[p][k], LEN - (size_t)k, JACCL_UINT8, p, comm, &q[m++]));
            MP_OK(comm, jaccl_irecv(r[p][k], LEN - (size_t)k, JACCL_UINT8, p, comm, &q[m++]));
        }
    MP_OK(comm, jaccl_wait_all(m, q));
    for (int k = 0; k < M; k++)
        for (int p = 0; p < n; p++)
            if (p != me && api_check_bytes(r[p][k], LEN - (size_t)k, msg_seed(p, me, 100 + k),
                                           "message in order"))
                return 1;
    api_count(1);
    free(s);
    free(r);
    free(q);
    api_report(comm, NULL);
    return check_sum(comm, 4);
}

/* ---- a sliding window ---- */

/*
 * W sends and W receives with the right and left neighbours stay in flight:
 * each time the oldest pair is waited for, a new pair is issued, so the
 * progress thread's batch rarely empties while finished messages leave it
 * from the front and new ones join at the back, for many times its size
 * (messages too large for a socket's buffer keep it busy).
 */
static int sliding_window(jaccl_comm_t comm, void *arg)
{
    enum { W = 32, TOTAL = 600, LEN = 40000 };
    int me = jaccl_comm_rank(comm), n = jaccl_comm_size(comm);
    int right = (me + 1) % n, left = (me + n - 1) % n;
    char(*s)[LEN] = calloc(W, LEN), (*r)[LEN] = calloc(W, LEN);
    jaccl_request_t q[2 * W];
    (void)arg;
    MP_CHECK(s && r, "out of memory");
    for (int k = 0; k < TOTAL + W; k++) {
        int slot = k % W;
        size_t len = LEN - (size_t)(k % 97);
        if (k >= W) { /* message k - W is in this slot: finish and check it */
            size_t old = LEN - (size_t)((k - W) % 97);
            MP_OK(comm, jaccl_wait_all(2, &q[2 * slot]));
            if (api_check_bytes(r[slot], old, msg_seed(left, me, k - W), "in the window")) return 1;
        }
        if (k >= TOTAL) continue;
        api_fill_bytes(s[slot], len, msg_seed(me, right, k));
        MP_OK(comm, jaccl_irecv(r[slot], len, JACCL_UINT8, left, comm, &q[2 * slot]));
        MP_OK(comm, jaccl_isend(s[slot], len, JACCL_UINT8, right, comm, &q[2 * slot + 1]));
    }
    api_count(TOTAL);
    free(s);
    free(r);
    api_report(comm, NULL);
    return check_sum(comm, 5);
}

/* ---- destroy after waiting ---- */

static int destroy_after_wait(jaccl_comm_t comm, void *arg)
{
    int me = jaccl_comm_rank(comm), n = jaccl_comm_size(comm);
    (void)arg;
    for (int round = 0; round < 6; round++) {
        jaccl_comm_t dup = NULL;
        jaccl_request_t q[3];
        int32_t v[64], w[64], b[64];
        MP_OK(comm, jaccl_comm_split(comm, 0, -me, &dup));
        MP_CHECK(dup && jaccl_comm_rank(dup) == n - 1 - me, "split rank %d", jaccl_comm_rank(dup));
        for (int i = 0; i < 64; i++) v[i] = b[i] = me * 100 + i + round;
        MP_OK(dup, jaccl_iallreduce(v, w, 64, JACCL_INT32, JACCL_MAX, dup, &q[0]));
        MP_OK(dup, jaccl_ibroadcast(b, b, 64, JACCL_INT32, 0, dup, &q[1]));
        MP_OK(dup, jaccl_iallreduce(w, w, 64, JACCL_INT32, JACCL_MIN, dup, &q[2]));
        if (round % 2)
            MP_OK(dup, jaccl_wait_all(3, q));
        else
            for (int i = 0; i < 3; i++) MP_OK(dup, jaccl_wait(q[i]));
        MP_OK(NULL, jaccl_comm_destroy(dup)); /* at once: stops the progress thread */
        /* dup's rank 0 is our rank n - 1 */
        for (int i = 0; i < 64; i++)
            MP_CHECK(w[i] == (n - 1) * 100 + i + round && b[i] == (n - 1) * 100 + i + round,
                     "round %d: [%d] max %d, broadcast %d", round, i, w[i], b[i]);
        api_count(1);
    }
    /* The world communicator's progress thread, too, is stopped by its destroy (the harness). */
    jaccl_request_t q;
    int32_t x = me;
    MP_OK(comm, jaccl_iallreduce(&x, &x, 1, JACCL_INT32, JACCL_SUM, comm, &q));
    MP_OK(comm, jaccl_wait(q));
    MP_CHECK(x == n * (n - 1) / 2, "sum %d", x);
    api_count(1);
    api_report(comm, NULL);
    return 0;
}

/* ---- errors ---- */

/* Wait (or test until done) for q, expecting want and a message. */
static int expect_req(jaccl_comm_t comm, jaccl_request_t q, int use_test, jaccl_result_t want,
                      const char *what)
{
    jaccl_result_t rc;
    if (use_test) {
        int done = 0;
        double t0 = mp_now();
        do {
            rc = jaccl_test(q, &done);
        } while (!done && mp_now() - t0 < 20);
        MP_CHECK(done, "%s: jaccl_test never reported completion", what);
    } else {
        rc = jaccl_wait(q);
    }
    const char *msg = jaccl_last_error(comm);
    MP_CHECK(rc == want && (want == JACCL_SUCCESS || (msg && *msg)),
             "%s: %s returned %s, want %s (last error '%s')", what,
             use_test ? "jaccl_test" : "jaccl_wait", jaccl_result_string(rc),
             jaccl_result_string(want), msg ? msg : "(null)");
    api_count(1);
    return 0;
}

#define ISSUE(comm, expr)                                                                          \
    do {                                                                                           \
        jaccl_result_t rc_ = (expr);                                                               \
        MP_CHECK(rc_ == JACCL_SUCCESS, "%s at issue: %s (argument errors are for the wait)",       \
                 #expr, jaccl_result_string(rc_));                                                 \
    } while (0)

static int errors(jaccl_comm_t comm, void *arg)
{
    int me = jaccl_comm_rank(comm), n = jaccl_comm_size(comm);
    int left = (me + n - 1) % n, right = (me + 1) % n;
    const jaccl_result_t A = JACCL_ERR_INVALID_ARGUMENT, U = JACCL_ERR_UNSUPPORTED;
    int32_t s[32], r[32 * API_MAXR];
    jaccl_request_t q, q2, qs[4];
    (void)arg;
    for (int i = 0; i < 32; i++) s[i] = me + i;
    for (int t = 0; t < 2; t++) {
        ISSUE(comm, jaccl_iallreduce(s, r, 32, JACCL_DTYPE_COUNT, JACCL_SUM, comm, &q));
        if (expect_req(comm, q, t, A, "iallreduce with an invalid dtype")) return 1;
        ISSUE(comm, jaccl_iallreduce(s, r, 32, JACCL_INT32, JACCL_OP_COUNT, comm, &q));
        if (expect_req(comm, q, t, A, "iallreduce with an invalid op")) return 1;
        ISSUE(comm, jaccl_iallreduce(s, r, 32, JACCL_BOOL, JACCL_AVG, comm, &q));
        if (expect_req(comm, q, t, U, "iallreduce bool avg")) return 1;
        ISSUE(comm, jaccl_ireduce_scatter(s, r, 4, JACCL_COMPLEX64, JACCL_MIN, comm, &q));
        if (expect_req(comm, q, t, U, "ireduce_scatter complex64 min")) return 1;
        ISSUE(comm, jaccl_ibroadcast(s, r, 32, JACCL_INT32, n, comm, &q));
        if (expect_req(comm, q, t, A, "ibroadcast with root out of range")) return 1;
        ISSUE(comm, jaccl_iallgather(NULL, r, 32, JACCL_INT32, comm, &q));
        if (expect_req(comm, q, t, A, "iallgather from NULL")) return 1;
        ISSUE(comm, jaccl_ialltoall(s, s + 1, 4, JACCL_INT32, comm, &q));
        if (expect_req(comm, q, t, A, "ialltoall with overlapping buffers")) return 1;
        ISSUE(comm, jaccl_isend(s, 32, JACCL_INT32, me, comm, &q));
        if (expect_req(comm, q, t, A, "isend to itself")) return 1;
        ISSUE(comm, jaccl_irecv(r, 32, JACCL_INT32, n + 3, comm, &q));
        if (expect_req(comm, q, t, A, "irecv from a rank out of range")) return 1;
        ISSUE(comm, jaccl_irecv(NULL, 32, JACCL_INT32, left, comm, &q));
        if (expect_req(comm, q, t, A, "irecv into NULL")) return 1;
        if (check_sum(comm, 10 + t)) return 1;
    }
    /* A bad request among good ones: each gets its own result. */
    ISSUE(comm, jaccl_isend(s, 32, JACCL_INT32, right, comm, &qs[0]));
    ISSUE(comm, jaccl_isend(s, 32, JACCL_INT32, me, comm, &qs[1]));
    ISSUE(comm, jaccl_irecv(r, 32, JACCL_INT32, left, comm, &qs[2]));
    ISSUE(comm, jaccl_iallreduce(s, r + 32, 32, JACCL_BOOL, JACCL_AVG, comm, &qs[3]));
    ISSUE(comm, jaccl_iallreduce(s, r + 64, 32, JACCL_INT32, JACCL_MAX, comm, &q2));
    if (expect_req(comm, qs[0], 0, JACCL_SUCCESS, "good isend next to a bad one") ||
        expect_req(comm, qs[1], 0, A, "isend to itself next to good ones") ||
        expect_req(comm, qs[2], 0, JACCL_SUCCESS, "good irecv next to a bad isend") ||
        expect_req(comm, qs[3], 0, U, "iallreduce bool avg among good requests") ||
        expect_req(comm, q2, 1, JACCL_SUCCESS, "good iallreduce after a bad one"))
        return 1;
    for (int i = 0; i < 32; i++) {
        MP_CHECK(r[i] == left + i, "irecv next to a bad isend: [%d] = %d", i, r[i]);
        MP_CHECK(r[64 + i] == n - 1 + i, "iallreduce max after a bad one: [%d] = %d", i, r[64 + i]);
    }
    /* jaccl_wait_all returns the first failure and frees every request. */
    ISSUE(comm, jaccl_iallreduce(s, r, 32, JACCL_INT32, JACCL_SUM, comm, &qs[0]));
    ISSUE(comm, jaccl_iallreduce(s, r + 32, 32, JACCL_COMPLEX64, JACCL_MAX, comm, &qs[1]));
    ISSUE(comm, jaccl_ibroadcast(s, r + 64, 32, JACCL_INT32, -1, comm, &qs[2]));
    jaccl_result_t rc = jaccl_wait_all(3, qs);
    MP_CHECK(rc == U && *jaccl_last_error(comm), "wait_all: %s, want %s (first failure)",
             jaccl_result_string(rc), jaccl_result_string(U));
    api_count(1);
    /* Bad uses of the request calls themselves. */
    int done = 7;
    MP_CHECK(jaccl_wait(NULL) == A, "jaccl_wait(NULL)");
    MP_CHECK(jaccl_test(NULL, &done) == A, "jaccl_test(NULL)");
    MP_CHECK(jaccl_wait_all(0, NULL) == JACCL_SUCCESS, "jaccl_wait_all(0, NULL)");
    MP_CHECK(jaccl_wait_all(-1, qs) == A, "jaccl_wait_all(-1)");
    MP_CHECK(jaccl_wait_all(2, NULL) == A, "jaccl_wait_all(2, NULL)");
    MP_CHECK(jaccl_iallreduce(s, r, 32, JACCL_INT32, JACCL_SUM, NULL, &q) == A,
             "jaccl_iallreduce on a NULL comm");
    MP_CHECK(jaccl_iallreduce(s, r, 32, JACCL_INT32, JACCL_SUM, comm, NULL) == A,
             "jaccl_iallreduce without a request");
    MP_CHECK(jaccl_isend(s, 32, JACCL_INT32, right, comm, NULL) == A,
             "jaccl_isend without a request");
    api_count(8);
    api_report(comm, NULL);
    return check_sum(comm, 12);
}

/* ---- one request fails, the others do not wait for it ---- */

#define STUCK (64u << 20) /* more than the links can hold: a send that needs its receive */

/*
 * Rank 1 must keep its links open until rank 0 has seen its requests fail:
 * rank 0 leaves a file named after the test process, rank 1 waits for it.
 */
static void done_path(char *buf, size_t len)
{
    snprintf(buf, len, "/tmp/jaccl-test-nonblocking-%d", (int)getppid());
}

static int rank0_done(void)
{
    char path[64];
    done_path(path, sizeof(path));
    FILE *f = fopen(path, "w");
    MP_CHECK(f, "cannot create %s", path);
    fclose(f);
    return 0;
}

static int wait_rank0_done(void)
{
    char path[64];
    done_path(path, sizeof(path));
    for (double t0 = mp_now(); mp_now() - t0 < 60; api_sleep_ms(10))
        if (unlink(path) == 0) return 0;
    MP_CHECK(0, "rank 0 did not finish within 60 s");
    return 1;
}

/* Whether msg names every one of the words. */
static int names(const char *msg, const char *a, const char *b, const char *c)
{
    return msg && strstr(msg, a) && strstr(msg, b) && strstr(msg, c);
}

/*
 * Rank 0's isend is never received and times out, while its irecv, issued
 * after it, completes on time: each request has its own deadline and result.
 */
static int one_times_out(jaccl_comm_t comm, void *arg)
{
    int me = jaccl_comm_rank(comm);
    char small[4096], *big = malloc(STUCK);
    (void)arg;
    MP_CHECK(big, "out of memory");
    if (me == 1) {
        api_fill_bytes(small, sizeof(small), msg_seed(1, 0, 7));
        MP_OK(comm, jaccl_send(small, sizeof(small), JACCL_UINT8, 0, comm));
        free(big);
        return wait_rank0_done(); /* so rank 0's send fails by its deadline, not our exit */
    }
    jaccl_request_t q[2];
    int done = 0;
    memset(big, 1, STUCK);
    MP_OK(comm, jaccl_isend(big, STUCK, JACCL_UINT8, 1, comm, &q[0]));
    MP_OK(comm, jaccl_irecv(small, sizeof(small), JACCL_UINT8, 1, comm, &q[1]));
    MP_OK(comm, jaccl_test(q[0], &done));
    MP_CHECK(!done, "a %u MiB isend without its receive completed", STUCK >> 20);
    MP_OK(comm, jaccl_wait(q[1]));
    if (api_check_bytes(small, sizeof(small), msg_seed(1, 0, 7), "irecv next to a stuck isend"))
        return 1;
    jaccl_result_t rc = jaccl_wait(q[0]);
    const char *msg = jaccl_last_error(comm);
    MP_CHECK(rc == JACCL_ERR_TIMEOUT && names(msg, "rank 0", "rank 1", "send"),
             "stuck isend: %s, '%s' (want a timeout naming both ranks and the send)",
             jaccl_result_string(rc), msg);
    int32_t x = 0;
    rc = jaccl_allreduce(&x, &x, 1, JACCL_INT32, JACCL_SUM, comm);
    MP_CHECK(rc != JACCL_SUCCESS, "a call after a failed transfer succeeded");
    api_count(2);
    free(big);
    api_report(comm, NULL);
    return rank0_done();
}

/* jaccl_comm_abort ends a running isend and the irecv behind it, each with a message. */
static int abort_running(jaccl_comm_t comm, void *arg)
{
    int me = jaccl_comm_rank(comm);
    char small[64], *big = malloc(STUCK);
    (void)arg;
    MP_CHECK(big, "out of memory");
    if (me == 1) { /* makes no matching call */
        free(big);
        return wait_rank0_done();
    }
    jaccl_request_t q[2];
    int done = 0;
    memset(big, 2, STUCK);
    MP_OK(comm, jaccl_isend(big, STUCK, JACCL_UINT8, 1, comm, &q[0]));
    MP_OK(comm, jaccl_irecv(small, sizeof(small), JACCL_UINT8, 1, comm, &q[1]));
    MP_OK(comm, jaccl_test(q[0], &done));
    api_sleep_ms(100); /* the isend is under way (if it is not yet, its start refuses it) */
    MP_OK(comm, jaccl_comm_abort(comm));
    for (int i = 0; i < 2; i++) {
        jaccl_result_t rc = jaccl_wait(q[i]);
        const char *msg = jaccl_last_error(comm);
        MP_CHECK(rc == JACCL_ERR_ABORTED && names(msg, "rank 0", "abort", i ? "recv" : "send"),
                 "request %d after jaccl_comm_abort: %s, '%s'", i, jaccl_result_string(rc), msg);
    }
    api_count(2);
    free(big);
    api_report(comm, NULL);
    return rank0_done();
}

/* An irecv of the wrong size fails on its own request, naming the sender and both sizes. */
static int size_mismatch(jaccl_comm_t comm, void *arg)
{
    int me = jaccl_comm_rank(comm);
    char buf[2000] = {0};
    jaccl_request_t q;
    (void)arg;
    if (me == 0) { /* the send may complete before the receiver refuses it */
        MP_OK(comm, jaccl_isend(buf, 1000, JACCL_UINT8, 1, comm, &q));
        jaccl_result_t rc = jaccl_wait(q);
        MP_CHECK(rc == JACCL_SUCCESS || rc == JACCL_ERR_INVALID_USAGE, "isend: %s",
                 jaccl_result_string(rc));
        return 0;
    }
    MP_OK(comm, jaccl_irecv(buf, 2000, JACCL_UINT8, 0, comm, &q));
    jaccl_result_t rc = jaccl_wait(q);
    const char *msg = jaccl_last_error(comm);
    MP_CHECK(rc == JACCL_ERR_INVALID_USAGE && names(msg, "rank 0", "1000 bytes", "2000 bytes") &&
                 names(msg, "rank 1", "recv", "same size"),
             "irecv of 2000 bytes from a send of 1000: %s, '%s'", jaccl_result_string(rc), msg);
    api_count(1);
    api_report(comm, NULL);
    return 0;
}

/*
 * An irecv from a rank that exits fails with JACCL_ERR_REMOTE, naming it,
 * long before JACCL_TIMEOUT (20 s here): the worker's passes never wait, and
 * must still notice the death (shm checks the peer's pid, tcp sees the close).
 */
static int peer_exits(jaccl_comm_t comm, void *arg)
{
    char buf[64];
    jaccl_request_t q;
    (void)arg;
    MP_OK(comm, jaccl_barrier(comm));
    if (jaccl_comm_rank(comm) == 1) _exit(0); /* gone without a word, as a crash */
    double t0 = mp_now();
    MP_OK(comm, jaccl_irecv(buf, sizeof(buf), JACCL_UINT8, 1, comm, &q));
    jaccl_result_t rc = jaccl_wait(q);
    const char *msg = jaccl_last_error(comm);
    MP_CHECK(rc == JACCL_ERR_REMOTE && names(msg, "rank 0", "rank 1", "recv"),
             "irecv from a rank that exited: %s, '%s' (want a remote failure naming it)",
             jaccl_result_string(rc), msg);
    printf("[api] irecv from an exited rank failed after %.3f s\n", mp_now() - t0);
    api_count(1);
    api_report(comm, NULL);
    return 0;
}

static const struct cross cross16 = {BIG, 0};
/* Larger than the socket buffers (net.ipv4.tcp_rmem allows 32 MiB here) or a shm ring can hold. */
static const struct cross cross64_test = {64u << 20, 1};

/* clang-format off */
#define T(NAME, NP, FN, ARG) {NAME, NP, {NULL}, FN, NULL, ARG, 90}
#define TT(NAME, NP, FN, ARG) {NAME, NP, {"JACCL_TIMEOUT=5"}, FN, NULL, ARG, 90}

static const struct api_test tests[] = {
    T("overlap-np2", 2, overlap, NULL),
    T("overlap-np4", 4, overlap, NULL),
    T("in-flight-np2", 2, in_flight, NULL),
    T("in-flight-np3", 3, in_flight, NULL),
    {"in-flight-np4-ring", 4, {"JACCL_ALGO=ring"}, in_flight, NULL, NULL, 90},
    {"in-flight-np4-mesh", 4, {"JACCL_ALGO=mesh"}, in_flight, NULL, NULL, 90},
    TT("crossing-np2", 2, crossing, &cross16),
    TT("crossing-np3", 3, crossing, &cross16),
    TT("crossing-np4", 4, crossing, &cross16),
    /* jaccl_test starts a lone isend that cannot finish before its irecv is issued. */
    {"crossing-test-between-np2-tcp", 2, {"JACCL_TIMEOUT=5", "JACCL_TRANSPORT=tcp"}, crossing, NULL, &cross64_test, 90},
    {"crossing-test-between-np2-shm", 2, {"JACCL_TIMEOUT=5", "JACCL_TRANSPORT=shm"}, crossing, NULL, &cross64_test, 90},
    {"crossing-test-between-np3-tcp", 3, {"JACCL_TIMEOUT=5", "JACCL_TRANSPORT=tcp"}, crossing, NULL, &cross64_test, 90},
    T("many-p2p-in-flight-np2", 2, many_p2p, NULL),
    T("many-p2p-in-flight-np4", 4, many_p2p, NULL),
    {"sliding-window-np2-tcp", 2, {"JACCL_TRANSPORT=tcp"}, sliding_window, NULL, NULL, 90},
    {"sliding-window-np2-shm", 2, {"JACCL_TRANSPORT=shm"}, sliding_window, NULL, NULL, 90},
    T("sliding-window-np3", 3, sliding_window, NULL),
    T("destroy-after-wait-np2", 2, destroy_after_wait, NULL),
    T("destroy-after-wait-np3", 3, destroy_after_wait, NULL),
    T("errors-np2", 2, errors, NULL),
    T("size-mismatch-np2", 2, size_mismatch, NULL),
    {"one-times-out-np2-tcp", 2, {"JACCL_TIMEOUT=2", "JACCL_TRANSPORT=tcp"}, one_times_out, NULL, NULL, 90},
    {"abort-running-np2-tcp", 2, {"JACCL_TRANSPORT=tcp"}, abort_running, NULL, NULL, 90},
    {"abort-running-np2-shm", 2, {"JACCL_TRANSPORT=shm"}, abort_running, NULL, NULL, 90},
    T("errors-np3", 3, errors, NULL),
    {"peer-exits-np2-shm", 2, {"JACCL_TIMEOUT=20", "JACCL_TRANSPORT=shm"}, peer_exits, NULL, NULL, 90},
    {"peer-exits-np2-tcp", 2, {"JACCL_TIMEOUT=20", "JACCL_TRANSPORT=tcp"}, peer_exits, NULL, NULL, 90},
};
/* clang-format on */

int main(void)
{
    return api_main("api-nonblocking", tests, (int)(sizeof(tests) / sizeof(tests[0])));
}
