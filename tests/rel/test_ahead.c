/*
 * Ranks that only send to a peer in a collective (a broadcast's root, a
 * reduce's other ranks) do not wait for that peer's header: they read it in
 * a later call.  Over TCP and shm:
 *  - a root runs ahead of a receiver that starts late, by at most 16 calls
 *    (its 17th broadcast returns only once the receiver has started), and
 *    every broadcast arrives with its own data;
 *  - ranks that run ahead and then destroy the communicator at once lose
 *    nothing: the late ranks still get every byte (a close with unread
 *    bytes would reset the connection and drop what the peer had not read).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rel.h"

#include <stdio.h>
#include <time.h>

#define LATE_S  0.4 /* the late rank's nap before its first call */
#define AHEAD   16  /* calls a rank may run ahead (OWED_MAX in src/algo/common.c) */
#define NCALLS  40
#define COUNT   1024
#define LATE_NP 3

static void nap(double s)
{
    struct timespec t = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&t, NULL);
}

static float value(int call, int rank, int i)
{
    return (float)(call * 4096 + rank * 1024 + i % 1024);
}

/* Rank 0 broadcasts NCALLS times; the last rank starts LATE_S late. */
static int bcast_job(jaccl_comm_t comm, void *arg)
{
    (void)arg;
    int me = jaccl_comm_rank(comm), n = jaccl_comm_size(comm), late = me == n - 1;
    float *buf = malloc(COUNT * sizeof(float));
    double ret[NCALLS];
    MP_CHECK(buf != NULL, "out of memory");
    double t0 = mp_now(); /* before the barrier: the late rank cannot leave it before we enter */
    MP_OK(comm, jaccl_barrier(comm));
    if (late) nap(LATE_S);
    for (int k = 0; k < NCALLS; k++) {
        for (int i = 0; i < COUNT; i++) buf[i] = me == 0 ? value(k, 0, i) : -1.0f;
        MP_OK(comm, jaccl_broadcast(buf, buf, COUNT, JACCL_FLOAT32, 0, comm));
        ret[k] = mp_now() - t0;
        for (int i = 0; i < COUNT; i++)
            MP_CHECK(buf[i] == value(k, 0, i), "broadcast %d: element %d is %g, not %g", k, i,
                     (double)buf[i], (double)value(k, 0, i));
    }
    if (me == 0) {
        MP_CHECK(ret[AHEAD - 1] < LATE_S / 2,
                 "broadcast %d returned after %.3f s: the root waited for the late rank instead "
                 "of running %d calls ahead",
                 AHEAD - 1, ret[AHEAD - 1], AHEAD);
        /* The 17th call reads the 1st's header: it cannot return before the late rank starts. */
        MP_CHECK(ret[AHEAD] >= LATE_S * 0.9,
                 "broadcast %d returned after %.3f s, before rank %d "
                 "started (%.1f s): the root ran more than %d calls ahead",
                 AHEAD, ret[AHEAD], n - 1, LATE_S, AHEAD);
        printf("[rel] root: broadcast %d returned at %.3f s, %d at %.3f s (late rank starts at "
               "%.1f s)\n",
               AHEAD - 1, ret[AHEAD - 1], AHEAD, ret[AHEAD], LATE_S);
    }
    free(buf);
    return 0;
}

/*
 * Everyone but the last rank runs ahead and returns (the harness destroys the
 * communicator and exits) while the last rank has yet to start: a broadcast
 * from rank 0 and a reduce to the last rank, alternating.
 */
static int close_job(jaccl_comm_t comm, void *arg)
{
    (void)arg;
    int me = jaccl_comm_rank(comm), n = jaccl_comm_size(comm), last = n - 1;
    float *buf = malloc(COUNT * sizeof(float)), *out = malloc(COUNT * sizeof(float));
    MP_CHECK(buf && out, "out of memory");
    MP_OK(comm, jaccl_barrier(comm));
    if (me == last) nap(LATE_S);
    for (int k = 0; k < 6; k++) {
        for (int i = 0; i < COUNT; i++) buf[i] = me == 0 ? value(k, 0, i) : -1.0f;
        MP_OK(comm, jaccl_broadcast(buf, buf, COUNT, JACCL_FLOAT32, 0, comm));
        for (int i = 0; i < COUNT; i++)
            MP_CHECK(buf[i] == value(k, 0, i), "broadcast %d: element %d is %g", k, i,
                     (double)buf[i]);
        for (int i = 0; i < COUNT; i++) buf[i] = value(k, me, i);
        MP_OK(comm, jaccl_reduce(buf, out, COUNT, JACCL_FLOAT32, JACCL_SUM, last, comm));
        for (int i = 0; i < COUNT && me == last; i++) {
            float want = 0;
            for (int r = 0; r < n; r++) want += value(k, r, i);
            MP_CHECK(out[i] == want, "reduce %d: element %d is %g, not %g", k, i, (double)out[i],
                     (double)want);
        }
    }
    free(out);
    free(buf);
    return 0;
}

struct acase {
    const char *name;
    mp_rank_fn fn;
    int np;
    const char *transport, *algo;
};

static const struct acase cases[] = {
    {"bcast-ahead-tcp-np2", bcast_job, 2, "tcp", "auto"},
    {"bcast-ahead-tcp-np3-mesh", bcast_job, LATE_NP, "tcp", "mesh"},
    {"bcast-ahead-shm-np3", bcast_job, LATE_NP, "shm", "auto"},
    {"bcast-ahead-tcp-np3-ring", bcast_job, LATE_NP, "tcp", "ring"},
    {"close-ahead-tcp-np3", close_job, LATE_NP, "tcp", "auto"},
    {"close-ahead-tcp-np3-ring", close_job, LATE_NP, "tcp", "ring"},
    {"close-ahead-shm-np3", close_job, LATE_NP, "shm", "auto"},
};

static void run_case(void **state)
{
    const struct acase *a = *state;
    char tp[64], algo[64];
    snprintf(tp, sizeof(tp), "JACCL_TRANSPORT=%s", a->transport);
    snprintf(algo, sizeof(algo), "JACCL_ALGO=%s", a->algo);
    const char *env[] = {tp, algo, NULL};
    assert_int_equal(mp_run(a->np, env, a->fn, (void *)a, 60), 0);
}

int main(void)
{
    REL_RUN_CASES("rel-ahead", cases, run_case);
}
