/*
 * Fault injection at 4 ranks, over TCP and over shared memory: a rank is
 * killed (SIGKILL) before, during or after a collective, one TCP socket is
 * shut down mid-transfer, or a rank is stopped (SIGSTOP) past the timeout.
 * Every other rank's failing call must return the right error, with a
 * message naming a peer, its host and the call, within JACCL_TIMEOUT + 1 s
 * (JACCL_TIMEOUT is 2 s over TCP, 4 s over shared memory, whose init takes
 * longer).  JACCL_TEST_LONG=1 repeats each fault 10 times.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rel.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define NP          4
#define VICTIM      2
#define BOUND_S(sc) ((sc)->timeout_s + 1.0) /* the deadline property under test */
#define COUNT       (1u << 18)              /* floats per all-reduce: 1 MiB, a few ms */
#define MAX_ITERS   3000

enum fault { KILL_BEFORE, KILL_DURING, KILL_AFTER, CLOSE_SOCKET, STOP_BEFORE, STOP_DURING };

struct scenario {
    const char *name;
    enum fault fault;
    int quick, lng;        /* trials by default and in long mode */
    const char *transport; /* JACCL_TRANSPORT=... */
    double timeout_s;      /* JACCL_TIMEOUT: also bounds init, which shm makes slower */
};

struct trial {
    const struct scenario *sc;
    int index;
};

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* A failed call: the right code, within the bound, naming a rank, its host and the call. */
static int check_failure(jaccl_comm_t comm, const struct trial *t, jaccl_result_t rc, double dt,
                         int timeout_ok)
{
    const char *msg = jaccl_last_error(comm);
    int code_ok = rc == JACCL_ERR_REMOTE || (timeout_ok && rc == JACCL_ERR_TIMEOUT);
    MP_CHECK(code_ok, "%s: returned %s: %s", t->sc->name, jaccl_result_string(rc), msg);
    MP_CHECK(dt <= BOUND_S(t->sc), "%s: failed after %.3f s, over the bound %.1f s: %s",
             t->sc->name, dt, BOUND_S(t->sc), msg);
    /* Over TCP the peer's host is its address; shared memory is this host by definition. */
    int tcp = strstr(t->sc->transport, "tcp") != NULL;
    MP_CHECK(strstr(msg, "jaccl_allreduce") && (!tcp || strstr(msg, "127.0.0.1")) &&
                 strstr(msg, "rank "),
             "%s: the message does not name the call, a peer and its host: %s", t->sc->name, msg);
    printf("[rel] %s trial %d rank %d: %s in %.3f s: %s\n", t->sc->name, t->index, mp_rank(),
           jaccl_result_string(rc), dt, msg);
    fflush(stdout);
    return 0;
}

/* All-reduce until a call fails; that call is checked. */
static int until_failure(jaccl_comm_t comm, const struct trial *t, float *buf, int timeout_ok)
{
    for (int i = 0; i < MAX_ITERS; i++) {
        double t0 = mp_now();
        jaccl_result_t rc = jaccl_allreduce(buf, buf, COUNT, JACCL_FLOAT32, JACCL_SUM, comm);
        if (rc != JACCL_SUCCESS) return check_failure(comm, t, rc, mp_now() - t0, timeout_ok);
    }
    MP_CHECK(0, "%s: %d all-reduces succeeded; the fault never showed", t->sc->name, MAX_ITERS);
    return 1;
}

struct delayed {
    double after_s;
    int sig;
};

/* Send ourselves a signal a little later, while the main thread is inside a collective. */
static void *signal_later(void *arg)
{
    const struct delayed *d = arg;
    sleep_s(d->after_s);
    kill(getpid(), d->sig);
    return NULL;
}

static int coordinator_port(void)
{
    const char *c = getenv("JACCL_COORDINATOR"), *colon = c ? strrchr(c, ':') : NULL;
    return colon ? atoi(colon + 1) : -1;
}

/* Shut down one established TCP socket of ours (a link, not the bootstrap), mid-transfer. */
static void *close_one_later(void *arg)
{
    const struct delayed *d = arg;
    sleep_s(d->after_s);
    int coord = coordinator_port();
    for (int fd = 3; fd < 1024; fd++) {
        struct sockaddr_in a;
        socklen_t len = sizeof(a);
        int type = 0;
        socklen_t tl = sizeof(type);
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_STREAM) continue;
        if (getpeername(fd, (struct sockaddr *)&a, &len) != 0 || a.sin_family != AF_INET) continue;
        if (ntohs(a.sin_port) == coord) continue;
        printf("[rel] rank %d: shutting down fd %d (peer port %d)\n", mp_rank(), fd,
               ntohs(a.sin_port));
        fflush(stdout);
        shutdown(fd, SHUT_RDWR);
        return NULL;
    }
    fprintf(stderr, "[rel] rank %d: no link socket found\n", mp_rank());
    return NULL;
}

static int victim_kill(jaccl_comm_t comm, const struct trial *t, float *buf)
{
    if (t->sc->fault == KILL_AFTER)
        MP_OK(comm, jaccl_allreduce(buf, buf, COUNT, JACCL_FLOAT32, JACCL_SUM, comm));
    if (t->sc->fault != KILL_DURING) {
        fflush(NULL);
        kill(getpid(), SIGKILL);
    }
    static struct delayed d;
    pthread_t th;
    d = (struct delayed){0.02 + 0.01 * (t->index % 5), SIGKILL};
    MP_CHECK(pthread_create(&th, NULL, signal_later, &d) == 0, "pthread_create");
    for (int i = 0; i < MAX_ITERS; i++)
        jaccl_allreduce(buf, buf, COUNT, JACCL_FLOAT32, JACCL_SUM, comm);
    MP_CHECK(0, "the victim is still alive");
    return 1;
}

/* The stopped rank: continued by rank 0 once every survivor has failed; then anything goes. */
static int victim_stop(jaccl_comm_t comm, const struct trial *t, float *buf)
{
    static struct delayed d;
    pthread_t th;
    if (t->sc->fault == STOP_BEFORE) {
        kill(getpid(), SIGSTOP);
    } else {
        d = (struct delayed){0.02 + 0.01 * (t->index % 5), SIGSTOP};
        MP_CHECK(pthread_create(&th, NULL, signal_later, &d) == 0, "pthread_create");
    }
    for (int i = 0; i < MAX_ITERS; i++)
        if (jaccl_allreduce(buf, buf, COUNT, JACCL_FLOAT32, JACCL_SUM, comm) != JACCL_SUCCESS)
            break;
    if (t->sc->fault == STOP_DURING) pthread_join(th, NULL);
    return 0;
}

static int fault_job(jaccl_comm_t comm, void *arg)
{
    const struct trial *t = arg;
    enum fault f = t->sc->fault;
    int me = jaccl_comm_rank(comm);
    int64_t pids[NP], mine = (int64_t)getpid();
    float *buf = calloc(COUNT, sizeof(float));
    MP_CHECK(buf, "out of memory");
    MP_OK(comm, jaccl_allgather(&mine, pids, 1, JACCL_INT64, comm));
    int stop = f == STOP_BEFORE || f == STOP_DURING;
    int rc;
    if (me == VICTIM && f != CLOSE_SOCKET) {
        rc = stop ? victim_stop(comm, t, buf) : victim_kill(comm, t, buf);
    } else {
        static struct delayed d;
        pthread_t th;
        int closer = f == CLOSE_SOCKET && me == 1;
        d = (struct delayed){0.02 + 0.01 * (t->index % 5), 0};
        if (closer) MP_CHECK(pthread_create(&th, NULL, close_one_later, &d) == 0, "thread");
        if (f == KILL_AFTER)
            MP_OK(comm, jaccl_allreduce(buf, buf, COUNT, JACCL_FLOAT32, JACCL_SUM, comm));
        rc = until_failure(comm, t, buf, stop);
        if (closer) pthread_join(th, NULL);
        if (stop && me == 0) {
            sleep_s(BOUND_S(t->sc)); /* past every survivor's deadline */
            kill((pid_t)pids[VICTIM], SIGCONT);
        }
    }
    free(buf);
    return rc;
}

static void run_scenario(void **state)
{
    const struct scenario *sc = *state;
    int n = rel_trials(sc->quick, sc->lng), expect_dead = sc->fault <= KILL_AFTER;
    for (int i = 0; i < n; i++) {
        struct trial t = {sc, i};
        /* Alternate the algorithms: the mesh talks to every peer, the ring to neighbours. */
        const char *algo =
            sc->fault == CLOSE_SOCKET || i % 2 == 0 ? "JACCL_ALGO=mesh" : "JACCL_ALGO=ring";
        char timeout[64];
        snprintf(timeout, sizeof(timeout), "JACCL_TIMEOUT=%g", sc->timeout_s);
        const char *env[] = {sc->transport, timeout, algo, NULL};
        double t0 = mp_now();
        int failed = mp_run(NP, env, fault_job, &t, 60);
        print_message("%s trial %d (%s): %.2f s\n", sc->name, i, algo + 11, mp_now() - t0);
        /* A killed victim counts as one failed rank; every survivor must have passed. */
        assert_int_equal(failed, expect_dead ? 1 : 0);
    }
    printf("[rel] %s: %d faults injected, %d survived by every rank\n", sc->name, n, n);
}

#define TCP "JACCL_TRANSPORT=tcp"
#define SHM "JACCL_TRANSPORT=shm"
static const struct scenario scenarios[] = {
    {"kill-before", KILL_BEFORE, 2, 10, TCP, 2},
    {"kill-during", KILL_DURING, 2, 10, TCP, 2},
    {"kill-after", KILL_AFTER, 2, 10, TCP, 2},
    {"close-socket", CLOSE_SOCKET, 2, 10, TCP, 2},
    {"stop-before", STOP_BEFORE, 1, 10, TCP, 2},
    {"stop-during", STOP_DURING, 1, 10, TCP, 2},
    {"shm-kill-before", KILL_BEFORE, 1, 10, SHM, 4},
    {"shm-kill-during", KILL_DURING, 1, 10, SHM, 4},
    {"shm-kill-after", KILL_AFTER, 1, 10, SHM, 4},
    {"shm-stop-during", STOP_DURING, 1, 10, SHM, 4},
};

int main(void)
{
    enum { N = sizeof(scenarios) / sizeof(scenarios[0]) };
    struct CMUnitTest tests[N];
    for (int i = 0; i < N; i++)
        tests[i] =
            (struct CMUnitTest){scenarios[i].name, run_scenario, NULL, NULL, (void *)&scenarios[i]};
    if (getenv("MP_FILTER")) cmocka_set_test_filter(getenv("MP_FILTER"));
    return _cmocka_run_group_tests("rel-faults", tests, N, NULL, NULL);
}
