/*
 * Grouped point-to-point calls across real processes: between
 * jaccl_group_start and jaccl_group_end sends and receives are recorded and
 * then run all at once, so exchanges that would deadlock as blocking calls
 * (everyone sending megabytes before receiving) complete:
 *  - every rank sends 4 MiB to and receives 4 MiB from every other rank;
 *  - a halo exchange with the left and right neighbours, several steps;
 *  - several messages per pair in one group, arriving in the order sent;
 *    and many (more than a handful) per pair;
 *  - nested groups: only the outermost end runs the calls;
 *  - a group on a communicator whose progress thread is running (after a
 *    non-blocking call), and a group spanning two communicators, also where
 *    both send to the same peer over the links they share;
 *  - misuse: jaccl_group_end without a start and collectives inside a group
 *    give JACCL_ERR_INVALID_USAGE, bad peers JACCL_ERR_INVALID_ARGUMENT, and
 *    the communicator keeps working.
 * Every message's bytes are a function of (sender, receiver, index, step) and
 * are checked on arrival.
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

/* Messages far larger than the sockets buffer: blocking calls in these orders would deadlock. */
#define BIG      (4u << 20)
#define HUGE_MSG (16u << 20)

static uint64_t msg_seed(int from, int to, int k, int step)
{
    return ((uint64_t)from << 40) ^ ((uint64_t)to << 32) ^ ((uint64_t)k << 16) ^ (uint64_t)step;
}

/* The largest dtype that divides bytes, so not only bytes travel. */
static jaccl_dtype_t dtype_for(size_t bytes)
{
    if (bytes % 8 == 0) return bytes % 16 ? JACCL_COMPLEX64 : JACCL_INT64;
    if (bytes % 4 == 0) return JACCL_FLOAT32;
    if (bytes % 2 == 0) return bytes % 4 ? JACCL_INT16 : JACCL_UINT16;
    return bytes % 3 ? JACCL_BOOL : JACCL_UINT8;
}

/* Both are recorded inside a group; outside one they run at once. */
static jaccl_result_t send_bytes(const void *p, size_t bytes, int peer, jaccl_comm_t comm)
{
    jaccl_dtype_t dt = dtype_for(bytes);
    return jaccl_send(p, bytes / jaccl_dtype_size(dt), dt, peer, comm);
}

static jaccl_result_t recv_bytes(void *p, size_t bytes, int peer, jaccl_comm_t comm)
{
    jaccl_dtype_t dt = dtype_for(bytes);
    return jaccl_recv(p, bytes / jaccl_dtype_size(dt), dt, peer, comm);
}

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

/* ---- every rank to every rank, 4 MiB each way, in one group ---- */

static int all_pairs_once(jaccl_comm_t comm, size_t size, int step, char **sbuf, char **rbuf)
{
    int n = jaccl_comm_size(comm), me = jaccl_comm_rank(comm);
    size_t len = size + (size_t)step; /* odd sizes too */
    for (int p = 0; p < n; p++) {
        if (p == me) continue;
        api_fill_bytes(sbuf[p], len, msg_seed(me, p, 0, step));
        memset(rbuf[p], 0xee, len);
        api_guard_set(rbuf[p] + len);
    }
    /*
     * The order that deadlocks as blocking calls: every rank sends all before
     * receiving; then all receive first; then even ranks send first.
     */
    int send_first = step == 0 ? 1 : step == 1 ? 0 : me % 2 == 0;
    MP_OK(comm, jaccl_group_start());
    for (int half = 0; half < 2; half++)
        for (int k = 1; k < n; k++) {
            int p = (me + k) % n;
            if ((half == 0) == send_first)
                MP_OK(comm, send_bytes(sbuf[p], len, p, comm));
            else
                MP_OK(comm, recv_bytes(rbuf[p], len, p, comm));
        }
    MP_OK(comm, jaccl_group_end());
    for (int p = 0; p < n; p++) {
        if (p == me) continue;
        char what[96];
        snprintf(what, sizeof(what), "step %d: %zu B from rank %d", step, len, p);
        MP_CHECK(api_guard_ok(rbuf[p] + len), "%s: wrote past the buffer", what);
        if (api_check_bytes(rbuf[p], len, msg_seed(p, me, 0, step), what)) return 1;
        if (api_check_bytes(sbuf[p], len, msg_seed(me, p, 0, step), "send buffer")) return 1;
    }
    api_count(1);
    return 0;
}

static int all_pairs(jaccl_comm_t comm, void *arg)
{
    int n = jaccl_comm_size(comm), rc = 0;
    size_t size = arg ? *(const size_t *)arg : BIG;
    char *sbuf[API_MAXR] = {0}, *rbuf[API_MAXR] = {0};
    for (int p = 0; p < n; p++) {
        sbuf[p] = malloc(size + 8 + API_GUARD);
        rbuf[p] = malloc(size + 8 + API_GUARD);
        MP_CHECK(sbuf[p] && rbuf[p], "out of memory");
    }
    double t0 = mp_now();
    for (int step = 0; step < 3 && rc == 0; step++)
        rc = all_pairs_once(comm, size, step, sbuf, rbuf);
    if (rc == 0 && jaccl_comm_rank(comm) == 0)
        printf("[api] 3 all-pairs groups of %zu MiB per pair and direction: %.2f s\n", size >> 20,
               mp_now() - t0);
    for (int p = 0; p < n; p++) {
        free(sbuf[p]);
        free(rbuf[p]);
    }
    if (rc == 0) rc = check_sum(comm, 1);
    api_report(comm, NULL);
    return rc;
}

/* ---- halo exchange ---- */

static int halo(jaccl_comm_t comm, void *arg)
{
    int n = jaccl_comm_size(comm), me = jaccl_comm_rank(comm);
    int left = (me + n - 1) % n, right = (me + 1) % n;
    size_t w = BIG / 2; /* bytes of each halo */
    char *edge_l = malloc(w), *edge_r = malloc(w), *ghost_l = malloc(w + API_GUARD),
         *ghost_r = malloc(w + API_GUARD);
    (void)arg;
    MP_CHECK(edge_l && edge_r && ghost_l && ghost_r, "out of memory");
    for (int step = 0; step < 4; step++) {
        /* Our left edge goes to the left neighbour, which keeps it as its right ghost. */
        api_fill_bytes(edge_l, w, msg_seed(me, left, 'L', step));
        api_fill_bytes(edge_r, w, msg_seed(me, right, 'R', step));
        memset(ghost_l, 0xee, w);
        memset(ghost_r, 0xee, w);
        api_guard_set(ghost_l + w);
        api_guard_set(ghost_r + w);
        MP_OK(comm, jaccl_group_start());
        MP_OK(comm, send_bytes(edge_l, w, left, comm));
        MP_OK(comm, send_bytes(edge_r, w, right, comm));
        /* With 2 ranks left == right: the right neighbour's left edge is sent first. */
        MP_OK(comm, recv_bytes(ghost_r, w, right, comm));
        MP_OK(comm, recv_bytes(ghost_l, w, left, comm));
        MP_OK(comm, jaccl_group_end());
        char what[64];
        snprintf(what, sizeof(what), "step %d: left ghost", step);
        MP_CHECK(api_guard_ok(ghost_l + w) && api_guard_ok(ghost_r + w), "%s: overrun", what);
        if (api_check_bytes(ghost_l, w, msg_seed(left, me, 'R', step), what)) return 1;
        snprintf(what, sizeof(what), "step %d: right ghost", step);
        if (api_check_bytes(ghost_r, w, msg_seed(right, me, 'L', step), what)) return 1;
        api_count(1);
    }
    free(edge_l);
    free(edge_r);
    free(ghost_l);
    free(ghost_r);
    api_report(comm, NULL);
    return check_sum(comm, 2);
}

/* ---- several messages per pair, order kept ---- */

struct multi {
    int k;               /* messages per ordered pair */
    const size_t *sizes; /* size of message j is sizes[j % nsizes] */
    int nsizes;
};

static size_t multi_size(const struct multi *m, int j, int from)
{
    return m->sizes[(j + from) % m->nsizes];
}

static int multi_run(jaccl_comm_t comm, const struct multi *m, char ***sb, char ***rb)
{
    int n = jaccl_comm_size(comm), me = jaccl_comm_rank(comm);
    for (int p = 0; p < n; p++)
        for (int j = 0; p != me && j < m->k; j++) {
            api_fill_bytes(sb[p][j], multi_size(m, j, me), msg_seed(me, p, j, 9));
            memset(rb[p][j], 0xee, multi_size(m, j, p));
            api_guard_set(rb[p][j] + multi_size(m, j, p));
        }
    /* Interleaved differently on every rank; per pair and direction, j goes up. */
    MP_OK(comm, jaccl_group_start());
    for (int j = 0; j < m->k; j++)
        for (int i = 1; i < n; i++) {
            int p = (me + (j % 2 ? n - i : i)) % n;
            if ((me + j) % 2) {
                MP_OK(comm, send_bytes(sb[p][j], multi_size(m, j, me), p, comm));
                MP_OK(comm, recv_bytes(rb[p][j], multi_size(m, j, p), p, comm));
            } else {
                MP_OK(comm, recv_bytes(rb[p][j], multi_size(m, j, p), p, comm));
                MP_OK(comm, send_bytes(sb[p][j], multi_size(m, j, me), p, comm));
            }
        }
    MP_OK(comm, jaccl_group_end());
    for (int p = 0; p < n; p++)
        for (int j = 0; p != me && j < m->k; j++) {
            char what[96];
            size_t len = multi_size(m, j, p);
            snprintf(what, sizeof(what), "message %d of %d (%zu B) from rank %d", j, m->k, len, p);
            MP_CHECK(api_guard_ok(rb[p][j] + len), "%s: overrun", what);
            if (api_check_bytes(rb[p][j], len, msg_seed(p, me, j, 9), what)) return 1;
        }
    api_count(1);
    return 0;
}

static int multi(jaccl_comm_t comm, void *arg)
{
    const struct multi *m = arg;
    int n = jaccl_comm_size(comm), rc = 0;
    size_t max = 0;
    for (int s = 0; s < m->nsizes; s++) max = m->sizes[s] > max ? m->sizes[s] : max;
    char **sb[API_MAXR], **rb[API_MAXR];
    for (int p = 0; p < n; p++) {
        sb[p] = calloc((size_t)m->k, sizeof(char *));
        rb[p] = calloc((size_t)m->k, sizeof(char *));
        MP_CHECK(sb[p] && rb[p], "out of memory");
        for (int j = 0; j < m->k; j++) {
            sb[p][j] = malloc(max + 1);
            rb[p][j] = malloc(max + API_GUARD);
            MP_CHECK(sb[p][j] && rb[p][j], "out of memory");
        }
    }
    rc = multi_run(comm, m, sb, rb);
    if (rc == 0) rc = multi_run(comm, m, sb, rb); /* the links are still in step */
    for (int p = 0; p < n; p++) {
        for (int j = 0; j < m->k; j++) {
            free(sb[p][j]);
            free(rb[p][j]);
        }
        free(sb[p]);
        free(rb[p]);
    }
    if (rc == 0) rc = check_sum(comm, 3);
    api_report(comm, NULL);
    return rc;
}

static const size_t mixed_sizes[] = {(1u << 20) + 3, 0, 17, 256u << 10, 1, 4096};
static const size_t small_sizes[] = {1000, 1, 64, 0, 333};
static const struct multi several = {4, mixed_sizes, 6};
static const struct multi many = {16, small_sizes, 5};

/* ---- nested groups ---- */

static int nested(jaccl_comm_t comm, void *arg)
{
    int n = jaccl_comm_size(comm), me = jaccl_comm_rank(comm);
    int to = (me + 1) % n, from = (me + n - 1) % n;
    char *s = malloc(HUGE_MSG), *r = malloc(HUGE_MSG);
    (void)arg;
    MP_CHECK(s && r, "out of memory");
    api_fill_bytes(s, HUGE_MSG, msg_seed(me, to, 0, 5));
    MP_OK(comm, jaccl_group_start());
    MP_OK(comm, jaccl_group_start());
    MP_OK(comm, send_bytes(s, HUGE_MSG, to, comm));
    /* Runs nothing: were the send run here, every rank would block sending. */
    MP_OK(comm, jaccl_group_end());
    MP_OK(comm, jaccl_group_start());
    MP_OK(comm, jaccl_group_end());
    MP_OK(comm, recv_bytes(r, HUGE_MSG, from, comm));
    MP_OK(comm, jaccl_group_end());
    if (api_check_bytes(r, HUGE_MSG, msg_seed(from, me, 0, 5), "nested group")) return 1;
    api_count(1);
    /* Empty groups, and messages of 0 elements, are fine. */
    MP_OK(comm, jaccl_group_start());
    MP_OK(comm, jaccl_group_end());
    MP_OK(comm, jaccl_group_start());
    MP_OK(comm, jaccl_send(s, 0, JACCL_FLOAT32, to, comm));
    MP_OK(comm, jaccl_recv(NULL, 0, JACCL_FLOAT32, from, comm));
    MP_OK(comm, jaccl_group_end());
    api_count(2);
    free(s);
    free(r);
    api_report(comm, NULL);
    return check_sum(comm, 4);
}

/* ---- misuse ---- */

static int misuse(jaccl_comm_t comm, void *arg)
{
    int n = jaccl_comm_size(comm), me = jaccl_comm_rank(comm);
    int to = (me + 1) % n, from = (me + n - 1) % n;
    int32_t s[64], r[64 * API_MAXR], v[64];
    (void)arg;
    for (int i = 0; i < 64; i++) s[i] = me * 1000 + i;
    MP_CHECK(jaccl_group_end() == JACCL_ERR_INVALID_USAGE, "group_end without start");
    MP_CHECK(jaccl_group_end() == JACCL_ERR_INVALID_USAGE, "second group_end without start");
    api_count(2);
    MP_OK(comm, jaccl_group_start());
    /* A real exchange recorded before the misuse still runs at the end. */
    MP_OK(comm, jaccl_send(s, 64, JACCL_INT32, to, comm));
    const jaccl_result_t U = JACCL_ERR_INVALID_USAGE;
    MP_EXPECT(comm, jaccl_allreduce(s, v, 64, JACCL_INT32, JACCL_SUM, comm), U);
    MP_EXPECT(comm, jaccl_allgather(s, r, 64, JACCL_INT32, comm), U);
    MP_EXPECT(comm, jaccl_reduce_scatter(r, v, 1, JACCL_INT32, JACCL_SUM, comm), U);
    MP_EXPECT(comm, jaccl_broadcast(s, v, 64, JACCL_INT32, 0, comm), U);
    MP_EXPECT(comm, jaccl_reduce(s, v, 64, JACCL_INT32, JACCL_MAX, 0, comm), U);
    MP_EXPECT(comm, jaccl_alltoall(r, v, 1, JACCL_INT32, comm), U);
    MP_EXPECT(comm, jaccl_barrier(comm), U);
    api_count(7);
    /* Bad peers are refused when recorded. */
    const jaccl_result_t A = JACCL_ERR_INVALID_ARGUMENT;
    MP_EXPECT(comm, jaccl_send(s, 64, JACCL_INT32, me, comm), A);
    MP_EXPECT(comm, jaccl_send(s, 64, JACCL_INT32, n, comm), A);
    MP_EXPECT(comm, jaccl_recv(v, 64, JACCL_INT32, -1, comm), A);
    MP_EXPECT(comm, jaccl_recv(NULL, 64, JACCL_INT32, from, comm), A);
    api_count(4);
    MP_OK(comm, jaccl_recv(v, 64, JACCL_INT32, from, comm));
    MP_OK(comm, jaccl_group_end());
    for (int i = 0; i < 64; i++)
        MP_CHECK(v[i] == from * 1000 + i, "element %d is %d, want %d", i, v[i], from * 1000 + i);
    MP_CHECK(jaccl_group_end() == JACCL_ERR_INVALID_USAGE, "group_end after the group ended");
    api_count(2);
    api_report(comm, NULL);
    return check_sum(comm, 5);
}

/* A non-blocking collective is a collective: inside a group it is refused too. */
static int nonblocking_in_group(jaccl_comm_t comm, void *arg)
{
    int32_t s[64] = {0}, v[64];
    jaccl_request_t req = NULL;
    (void)arg;
    MP_OK(comm, jaccl_group_start());
    jaccl_result_t rc = jaccl_iallreduce(s, v, 64, JACCL_INT32, JACCL_SUM, comm, &req);
    if (rc == JACCL_SUCCESS) rc = jaccl_wait(req);
    MP_OK(comm, jaccl_group_end());
    MP_CHECK(rc == JACCL_ERR_INVALID_USAGE, "jaccl_iallreduce inside a group: %s, want %s",
             jaccl_result_string(rc), jaccl_result_string(JACCL_ERR_INVALID_USAGE));
    api_count(1);
    api_report(comm, NULL);
    return check_sum(comm, 6);
}

/* ---- a group on a communicator with a progress thread ---- */

static int with_progress_thread(jaccl_comm_t comm, void *arg)
{
    int me = jaccl_comm_rank(comm);
    int32_t v[4] = {me, me, me, me}, s[4] = {0};
    jaccl_request_t req;
    (void)arg;
    /* Start the communicator's progress thread. */
    MP_OK(comm, jaccl_iallreduce(v, v, 4, JACCL_INT32, JACCL_SUM, comm, &req));
    MP_OK(comm, jaccl_wait(req));
    /* A group of large crossing messages must still run all at once. */
    size_t huge = HUGE_MSG;
    if (all_pairs(comm, &huge)) return 1;
    /* A collective inside a group is still misuse. */
    MP_OK(comm, jaccl_group_start());
    jaccl_result_t rc = jaccl_allreduce(s, s, 4, JACCL_INT32, JACCL_SUM, comm);
    MP_OK(comm, jaccl_group_end());
    MP_CHECK(rc == JACCL_ERR_INVALID_USAGE,
             "allreduce inside a group, with a progress thread: %s, want %s",
             jaccl_result_string(rc), jaccl_result_string(JACCL_ERR_INVALID_USAGE));
    api_count(1);
    return 0;
}

/* ---- one group over two communicators ---- */

static int two_comms(jaccl_comm_t comm, void *arg)
{
    int n = jaccl_comm_size(comm), me = jaccl_comm_rank(comm);
    int to = (me + 1) % n, from = (me + n - 1) % n;
    jaccl_comm_t dup = NULL;
    char *s1 = malloc(HUGE_MSG), *s2 = malloc(HUGE_MSG), *r1 = malloc(HUGE_MSG),
         *r2 = malloc(HUGE_MSG);
    (void)arg;
    MP_CHECK(s1 && s2 && r1 && r2, "out of memory");
    MP_OK(comm, jaccl_comm_split(comm, 0, me, &dup));
    MP_CHECK(dup && jaccl_comm_rank(dup) == me, "split gave rank %d", jaccl_comm_rank(dup));
    api_fill_bytes(s1, HUGE_MSG, msg_seed(me, to, 1, 6));
    api_fill_bytes(s2, HUGE_MSG, msg_seed(me, from, 2, 6));
    /*
     * Around the ring one way on comm, the other way on dup, which shares comm's
     * links (so at least 3 ranks: every link direction then carries one message);
     * odd and even ranks record them in opposite orders.
     */
    MP_OK(comm, jaccl_group_start());
    if (me % 2) {
        MP_OK(comm, send_bytes(s1, HUGE_MSG, to, comm));
        MP_OK(dup, send_bytes(s2, HUGE_MSG, from, dup));
        MP_OK(dup, recv_bytes(r2, HUGE_MSG, to, dup));
        MP_OK(comm, recv_bytes(r1, HUGE_MSG, from, comm));
    } else {
        MP_OK(dup, send_bytes(s2, HUGE_MSG, from, dup));
        MP_OK(comm, send_bytes(s1, HUGE_MSG, to, comm));
        MP_OK(comm, recv_bytes(r1, HUGE_MSG, from, comm));
        MP_OK(dup, recv_bytes(r2, HUGE_MSG, to, dup));
    }
    jaccl_result_t rc = jaccl_group_end();
    MP_CHECK(rc == JACCL_SUCCESS, "jaccl_group_end over two communicators: %s: '%s' / '%s'",
             jaccl_result_string(rc), jaccl_last_error(comm), jaccl_last_error(dup));
    if (api_check_bytes(r1, HUGE_MSG, msg_seed(from, me, 1, 6), "from the left on comm") ||
        api_check_bytes(r2, HUGE_MSG, msg_seed(to, me, 2, 6), "from the right on the split"))
        return 1;
    api_count(1);
    free(s1);
    free(s2);
    free(r1);
    free(r2);
    if (check_sum(dup, 7) || check_sum(comm, 8)) return 1;
    MP_OK(NULL, jaccl_comm_destroy(dup));
    api_report(comm, NULL);
    return 0;
}

/* ---- two communicators that share links, in one group ---- */

/* One recorded call: on comm (0) or its split (1), a send (1) or receive (0) of message k. */
struct shared_op {
    int dup, send, peer, k;
};

/*
 * Ranks 0 and 2 each use both communicators on one link direction (0 -> 1,
 * 2 -> 3), recording them in opposite orders (their peers agree per link).
 * Run one communicator after the other, rank 0's split part waits for rank
 * 2's split part, which comes after rank 2's comm part, which waits for rank
 * 0's comm part: a deadlock.  Run together, every link direction carries its
 * messages in the order both ends recorded them.
 */
static const struct shared_op shared_plan[4][4] = {
    {{1, 1, 1, 0}, {0, 1, 1, 1}, {1, 0, 2, 2}, {0, 1, 2, 3}},
    {{1, 0, 0, 0}, {0, 0, 0, 1}, {-1, 0, 0, 0}, {-1, 0, 0, 0}},
    {{0, 0, 0, 3}, {0, 1, 3, 4}, {1, 1, 0, 2}, {1, 1, 3, 5}},
    {{0, 0, 2, 4}, {1, 0, 2, 5}, {-1, 0, 0, 0}, {-1, 0, 0, 0}},
};

#define SHARED_LEN(k) ((size_t)(64u << 10) + (size_t)(k)*64)

static int shared_links(jaccl_comm_t comm, void *arg)
{
    int me = jaccl_comm_rank(comm);
    jaccl_comm_t dup = NULL, cs[2];
    char *buf[4] = {NULL};
    (void)arg;
    MP_OK(comm, jaccl_comm_split(comm, 0, me, &dup));
    cs[0] = comm;
    cs[1] = dup;
    const struct shared_op *ops = shared_plan[me];
    MP_OK(comm, jaccl_group_start());
    for (int i = 0; i < 4 && ops[i].dup >= 0; i++) {
        const struct shared_op *o = &ops[i];
        buf[i] = malloc(SHARED_LEN(o->k));
        MP_CHECK(buf[i], "out of memory");
        if (o->send) api_fill_bytes(buf[i], SHARED_LEN(o->k), msg_seed(me, o->peer, o->k, 9));
        jaccl_comm_t c = cs[o->dup];
        MP_OK(c, o->send ? send_bytes(buf[i], SHARED_LEN(o->k), o->peer, c)
                         : recv_bytes(buf[i], SHARED_LEN(o->k), o->peer, c));
    }
    jaccl_result_t rc = jaccl_group_end();
    MP_CHECK(rc == JACCL_SUCCESS,
             "jaccl_group_end over communicators sharing links: %s: '%s' / '%s'",
             jaccl_result_string(rc), jaccl_last_error(comm), jaccl_last_error(dup));
    for (int i = 0; i < 4 && ops[i].dup >= 0; i++) {
        const struct shared_op *o = &ops[i];
        if (!o->send && api_check_bytes(buf[i], SHARED_LEN(o->k), msg_seed(o->peer, me, o->k, 9),
                                        o->dup ? "on the split" : "on comm"))
            return 1;
        free(buf[i]);
    }
    api_count(1);
    if (check_sum(dup, 9) || check_sum(comm, 10)) return 1;
    MP_OK(NULL, jaccl_comm_destroy(dup));
    api_report(comm, NULL);
    return 0;
}

/* clang-format off */
#define T(NAME, NP, FN, ARG) {NAME, NP, {NULL}, FN, NULL, ARG, 90}
/* Where a deadlock is suspected: a short JACCL_TIMEOUT turns it into a quick failure. */
#define TT(NAME, NP, FN, ARG) {NAME, NP, {"JACCL_TIMEOUT=5"}, FN, NULL, ARG, 90}

static const struct api_test tests[] = {
    T("all-pairs-np2", 2, all_pairs, NULL),
    T("all-pairs-np3", 3, all_pairs, NULL),
    T("all-pairs-np4", 4, all_pairs, NULL),
    {"all-pairs-np4-sockets3", 4, {"JACCL_TCP_SOCKETS=3"}, all_pairs, NULL, NULL, 90},
    T("halo-np2", 2, halo, NULL),
    T("halo-np3", 3, halo, NULL),
    T("halo-np4", 4, halo, NULL),
    T("several-per-pair-np2", 2, multi, &several),
    T("several-per-pair-np4", 4, multi, &several),
    {"several-per-pair-np3-sockets2", 3, {"JACCL_TCP_SOCKETS=2"}, multi, NULL, &several, 90},
    T("many-per-pair-np2", 2, multi, &many),
    T("many-per-pair-np4", 4, multi, &many),
    TT("nested-np2", 2, nested, NULL),
    TT("nested-np3", 3, nested, NULL),
    T("misuse-np2", 2, misuse, NULL),
    T("misuse-np3", 3, misuse, NULL),
    T("nonblocking-in-group-np2", 2, nonblocking_in_group, NULL),
    TT("with-progress-thread-np2", 2, with_progress_thread, NULL),
    TT("with-progress-thread-np3", 3, with_progress_thread, NULL),
    /* Two communicators' streams progress at once: crossing orders do not deadlock
       (a deadlock fails within the timeout, which leaves room for sanitized builds). */
    {"two-communicators-np3", 3, {"JACCL_TIMEOUT=20"}, two_comms, NULL, NULL, 90},
    {"two-communicators-np4", 4, {"JACCL_TIMEOUT=20"}, two_comms, NULL, NULL, 90},
    {"shared-links-np4", 4, {"JACCL_TIMEOUT=20"}, shared_links, NULL, NULL, 90},
    {"shared-links-np4-tcp", 4, {"JACCL_TIMEOUT=20", "JACCL_TRANSPORT=tcp"}, shared_links, NULL, NULL, 90},
};
/* clang-format on */

int main(void)
{
    return api_main("api-group", tests, (int)(sizeof(tests) / sizeof(tests[0])));
}
