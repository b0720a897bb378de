/*
 * Mismatched calls at 2 and 3 ranks: ranks that call different collectives,
 * or the same one with a different count, dtype, op or root, and a send and
 * a receive of different sizes.  Every rank involved must get
 * JACCL_ERR_INVALID_USAGE at once (not at the timeout), with a message that
 * names both sides; no rank may return success with mixed-up data.  A rank
 * that receives nothing from the odd rank in the call (a broadcast's root)
 * reads its header in the next call, which must fail so.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rel.h"

#include <stdio.h>
#include <time.h>

#define QUICK_S 5.0 /* JACCL_TIMEOUT is 20 s: failing well before it means "detected" */
#define ODD     2   /* the rank that calls differently */

enum what { COUNT, COUNT_LARGE, DTYPE, OP, KIND, ROOT, P2P_SIZE };

struct mcase {
    const char *name;
    enum what what;
    int np;
    const char *algo;
    const char *mine, *theirs; /* what the message must quote for each side */
    const char *transport;     /* JACCL_TRANSPORT, or NULL: the suite's own */
};

static jaccl_result_t call(jaccl_comm_t comm, const struct mcase *m, int odd, void *s, void *r)
{
    size_t n = m->what == COUNT_LARGE ? (1u << 18) + (odd ? 64 : 0)
                                      : 8 + (odd && m->what == COUNT ? 8 : 0);
    jaccl_dtype_t dt = m->what == DTYPE && odd ? JACCL_INT32 : JACCL_FLOAT32;
    jaccl_op_t op = m->what == OP && odd ? JACCL_MAX : JACCL_SUM;
    if (m->what == KIND && odd) return jaccl_allgather(s, r, n, dt, comm);
    if (m->what == ROOT) return jaccl_broadcast(s, r, n, dt, odd ? 1 : 0, comm);
    return jaccl_allreduce(s, r, n, dt, op, comm);
}

/* Rank 0 sends 16 floats; rank 1 receives 8: both must learn it. */
static int p2p_job(jaccl_comm_t comm, const struct mcase *m, float *buf)
{
    int me = jaccl_comm_rank(comm);
    double t0 = mp_now();
    if (me == 0) {
        MP_OK(comm, jaccl_send(buf, 16, JACCL_FLOAT32, 1, comm)); /* buffered: it cannot know yet */
        MP_EXPECT(comm, jaccl_recv(buf, 1, JACCL_FLOAT32, 1, comm), JACCL_ERR_INVALID_USAGE);
    } else if (me == 1) {
        MP_EXPECT(comm, jaccl_recv(buf, 8, JACCL_FLOAT32, 0, comm), JACCL_ERR_INVALID_USAGE);
    } else {
        return 0;
    }
    const char *msg = jaccl_last_error(comm);
    double dt = mp_now() - t0;
    MP_CHECK(dt < QUICK_S, "%s: took %.2f s", m->name, dt);
    MP_CHECK(strstr(msg, "64 bytes") && strstr(msg, "32 bytes") && strstr(msg, "rank "),
             "%s: the message does not give both sizes: %s", m->name, msg);
    printf("[rel] %s rank %d: invalid usage in %.3f s: %s\n", m->name, me, dt, msg);
    return 0;
}

static int mismatch_job(jaccl_comm_t comm, void *arg)
{
    const struct mcase *m = arg;
    int me = jaccl_comm_rank(comm), n = jaccl_comm_size(comm), odd = me == ODD % n;
    size_t len = ((1u << 18) + 64) * 4 * (size_t)n;
    float *s = calloc(len, 1), *r = calloc(len, 1);
    MP_CHECK(s && r, "out of memory");
    int rc = 0;
    MP_OK(comm, jaccl_barrier(comm)); /* everyone connected and in step first */
    if (m->what == P2P_SIZE) {
        rc = p2p_job(comm, m, s);
    } else {
        double t0 = mp_now();
        jaccl_result_t res = call(comm, m, odd, s, r);
        if (res == JACCL_SUCCESS && m->what == ROOT && !odd) res = jaccl_barrier(comm);
        double dt = mp_now() - t0;
        const char *msg = jaccl_last_error(comm);
        MP_CHECK(res == JACCL_ERR_INVALID_USAGE, "%s: returned %s: %s", m->name,
                 jaccl_result_string(res), msg);
        MP_CHECK(dt < QUICK_S, "%s: took %.2f s", m->name, dt);
        MP_CHECK(strstr(msg, m->mine) && strstr(msg, m->theirs) && strstr(msg, "rank "),
                 "%s: the message does not name both sides ('%s', '%s'): %s", m->name, m->mine,
                 m->theirs, msg);
        printf("[rel] %s rank %d: invalid usage in %.3f s: %s\n", m->name, me, dt, msg);
        /* The links are out of step now: the communicator refuses further calls. */
        MP_EXPECT(comm, jaccl_barrier(comm), JACCL_ERR_INVALID_USAGE);
    }
    /*
     * Stay a moment: a rank that exits at once closes its links, and a peer
     * that has not yet read the odd rank's header then sees that instead.
     */
    struct timespec nap = {0, 300000000L};
    nanosleep(&nap, NULL);
    free(s);
    free(r);
    return rc;
}

static const struct mcase cases[] = {
    {"count-np2", COUNT, 2, "auto", "count 8,", "count 16,", NULL},
    {"count-np3-ring", COUNT, 3, "ring", "count 8,", "count 16,", NULL},
    {"count-np3-mesh", COUNT, 3, "mesh", "count 8,", "count 16,", NULL},
    {"count-large-np3", COUNT_LARGE, 3, "auto", "count 262144,", "count 262208,", NULL},
    {"dtype-np3", DTYPE, 3, "auto", "float32", "int32", NULL},
    {"op-np2", OP, 2, "ring", "sum", "max", NULL},
    {"kind-np3", KIND, 3, "auto", "allreduce #", "allgather #", NULL},
    {"kind-np2-ring", KIND, 2, "ring", "allreduce #", "allgather #", NULL},
    {"root-np3", ROOT, 3, "auto", "root 0", "root 1", NULL},
    {"sendrecv-size-np2", P2P_SIZE, 2, "auto", "", "", NULL},
    {"sendrecv-size-np3", P2P_SIZE, 3, "auto", "", "", NULL},
    /* Recursive doubling (TCP): ranks that never exchange data with rank 2 learn it too. */
    {"count-np3-tcp", COUNT, 3, "mesh", "count 8,", "count 16,", "tcp"},
    {"count-np4-tcp", COUNT, 4, "mesh", "count 8,", "count 16,", "tcp"},
    {"kind-np4-tcp", KIND, 4, "auto", "allreduce #", "allgather #", "tcp"},
};

static void run_case(void **state)
{
    const struct mcase *m = *state;
    char algo[64], tp[64];
    snprintf(algo, sizeof(algo), "JACCL_ALGO=%s", m->algo);
    snprintf(tp, sizeof(tp), "JACCL_TRANSPORT=%s", m->transport ? m->transport : "");
    const char *env[] = {"JACCL_TIMEOUT=20", algo, m->transport ? tp : NULL, NULL};
    assert_int_equal(mp_run(m->np, env, mismatch_job, (void *)m, 60), 0);
}

int main(void)
{
    REL_RUN_CASES("rel-mismatch", cases, run_case);
}
