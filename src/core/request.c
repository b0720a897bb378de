/*
 * Non-blocking calls: one progress worker per set of links (a communicator
 * and those split from it share one, refcounted) runs queued operations, so
 * two threads never drive the same links.  While it has work, blocking calls
 * on any of those communicators queue too.  Collectives run one at a time in
 * issue order.  Sends and receives wait in the queue until the caller
 * flushes them (wait, test, or a later collective), then join the worker's
 * batch, which keeps taking those flushed later while it runs: each moves as
 * soon as its peer's matching call does, in issue order per peer and
 * direction, so crossing isend/irecv pairs cannot deadlock, whatever order
 * they are issued and waited for in.
 */
#include "core/comm.h"
#include "util/log.h"
#include "util/time.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct jaccl_request {
    struct jaccl_comm *comm;
    struct jaccl_call call;
    jaccl_result_t rc;
    int done, flushed;
    int waited; /* a caller sleeps until this one is done */
    char msg[JACCL_ERR_LEN];
    struct jaccl_request *next;
};

struct jaccl_worker {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    struct jaccl_request *head, *tail;
    /* Submitted, not yet complete (every communicator's); changed under mu,
     * read without it by jaccl_worker_active on every call. */
    _Atomic int pending;
    int any_waiters; /* callers that sleep until some count drops: every completion wakes them */
    int stop, started;
    int refs;                  /* communicators sharing the links (the last one stops the thread) */
    int rank;                  /* for log lines of the thread */
    struct jaccl_batch *batch; /* the sends and receives in progress (the thread's own) */
};

/* Idle passes of the worker that poll at once, and then that yield, before it naps. */
#define WORKER_POLL 64
#define WORKER_SPIN 256

static _Thread_local int in_worker; /* the default TLS model: see group.c */

/*
 * Calls go through the thread only while it has work: when it is idle the
 * caller (the only thread that submits) may drive the links itself.
 */
int jaccl_worker_active(const struct jaccl_comm *c)
{
    if (!c->worker || in_worker) return 0;
    /* Acquire: what the thread did on the links before it finished is ours to see. */
    return atomic_load_explicit(&c->worker->pending, memory_order_acquire) > 0;
}

static int is_p2p(const struct jaccl_request *q)
{
    return q->call.kind == JACCL_CALL_SEND || q->call.kind == JACCL_CALL_RECV;
}

static jaccl_result_t call_run(struct jaccl_comm *c, const struct jaccl_call *k)
{
    switch (k->kind) {
    case JACCL_CALL_ALLREDUCE:
        return jaccl_allreduce(k->s, k->r, k->count, k->dtype, k->op, c);
    case JACCL_CALL_ALLGATHER:
        return jaccl_allgather(k->s, k->r, k->count, k->dtype, c);
    case JACCL_CALL_REDUCE_SCATTER:
        return jaccl_reduce_scatter(k->s, k->r, k->count, k->dtype, k->op, c);
    case JACCL_CALL_BROADCAST:
        return jaccl_broadcast(k->s, k->r, k->count, k->dtype, k->root, c);
    case JACCL_CALL_REDUCE:
        return jaccl_reduce(k->s, k->r, k->count, k->dtype, k->op, k->root, c);
    case JACCL_CALL_ALLTOALL:
        return jaccl_alltoall(k->s, k->r, k->count, k->dtype, c);
    case JACCL_CALL_BARRIER:
        return jaccl_barrier(c);
    case JACCL_CALL_SEND:
        return jaccl_send(k->s, k->count, k->dtype, k->root, c);
    case JACCL_CALL_RECV:
        return jaccl_recv(k->r, k->count, k->dtype, k->root, c);
    }
    return JACCL_ERR_INTERNAL;
}

/* With the lock held: q is complete (its waiter may free it at once). */
static void worker_done(struct jaccl_worker *w, struct jaccl_request *q)
{
    q->comm->queued--;
    atomic_fetch_sub_explicit(&w->pending, 1, memory_order_release);
    q->done = 1;
    /* Only those who sleep on this one or on a count: a window of sends wakes its caller once. */
    if (q->waited || w->any_waiters) pthread_cond_broadcast(&w->done);
}

/* With the lock held: the head, if it can run now. */
static struct jaccl_request *worker_ready(struct jaccl_worker *w)
{
    struct jaccl_request *q = w->head;
    return q && (!is_p2p(q) || q->flushed) ? q : NULL;
}

/* With the lock held: take the head off the queue. */
static struct jaccl_request *worker_pop(struct jaccl_worker *w)
{
    struct jaccl_request *q = w->head;
    w->head = q->next;
    if (!w->head) w->tail = NULL;
    return q;
}

/*
 * Without the lock: check a send's or receive's arguments as the blocking
 * call does (it records its stream instead of running it) and add the stream
 * to the batch.  Returns 0 if it completed at once: refused, or nothing to move.
 */
static int worker_add(struct jaccl_worker *w, struct jaccl_request *q)
{
    struct jaccl_comm *c = q->comm;
    struct jaccl_stream st;
    jaccl_group_start();
    q->rc = call_run(c, &q->call);
    int n = jaccl_group_detach(&c, &st);
    if (q->rc == JACCL_SUCCESS && n == 1) {
        q->rc = jaccl_batch_add(w->batch, &c->actx, &st, 1, c->abort_flag, q);
        /* Its message number is spent: later ones would not match the peer's. */
        if (q->rc != JACCL_SUCCESS) jaccl_call_end(c, q->rc);
    }
    if (q->rc == JACCL_SUCCESS) return n;
    snprintf(q->msg, sizeof(q->msg), "%s", c->err.msg); /* a call refused keeps its own result */
    return 0;
}

/* With the lock held: add the flushed sends and receives at the head to the batch. */
static void worker_absorb(struct jaccl_worker *w)
{
    while (w->head && is_p2p(w->head) && w->head->flushed) {
        struct jaccl_request *q = worker_pop(w);
        pthread_mutex_unlock(&w->mu);
        int running = worker_add(w, q);
        pthread_mutex_lock(&w->mu);
        if (!running) worker_done(w, q);
    }
}

/* Without the lock: end the calls of the batch's finished requests and complete them. */
static void worker_finish(struct jaccl_worker *w)
{
    void *tag;
    jaccl_result_t rc;
    char msg[JACCL_ERR_LEN];
    while (jaccl_batch_take(w->batch, &tag, &rc, msg, sizeof(msg))) {
        struct jaccl_request *q = tag;
        struct jaccl_comm *c = q->comm;
        if (rc != JACCL_SUCCESS) {
            snprintf(q->msg, sizeof(q->msg), "%s", msg);
            snprintf(c->err.msg, sizeof(c->err.msg), "%s", msg);
        }
        q->rc = jaccl_call_end(c, rc); /* a failure leaves the links out of step */
        pthread_mutex_lock(&w->mu);
        worker_done(w, q);
        pthread_mutex_unlock(&w->mu);
    }
}

/*
 * With the lock held: nothing moved.  Poll again at once (a reply from a
 * rank on this host takes microseconds), then yield, then sleep in naps
 * growing to 1 ms; a flush (new work) wakes us at once.
 */
static void worker_nap(struct jaccl_worker *w, int idle)
{
    if (idle < WORKER_POLL || (worker_ready(w) && is_p2p(w->head))) return;
    if (idle < WORKER_SPIN) {
        pthread_mutex_unlock(&w->mu);
        sched_yield();
        pthread_mutex_lock(&w->mu);
        return;
    }
    int shift = (idle - WORKER_SPIN) / 16;
    int64_t ns = shift >= 6 ? 1000000 : (int64_t)20000 << shift;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    ns += t.tv_nsec;
    t.tv_sec += (time_t)(ns / 1000000000);
    t.tv_nsec = (long)(ns % 1000000000);
    pthread_cond_timedwait(&w->work, &w->mu, &t);
}

/* With the lock held: run the batch until empty, adding sends and receives flushed meanwhile. */
static void worker_p2p(struct jaccl_worker *w)
{
    for (int idle = 0;;) {
        worker_absorb(w);
        pthread_mutex_unlock(&w->mu);
        int moved = jaccl_batch_running(w->batch) && jaccl_batch_step(w->batch);
        worker_finish(w);
        pthread_mutex_lock(&w->mu);
        if (!jaccl_batch_running(w->batch)) return;
        idle = moved ? 0 : idle + 1;
        if (idle) worker_nap(w, idle);
    }
}

static void *worker_main(void *arg)
{
    struct jaccl_worker *w = arg;
    in_worker = 1;
    jaccl_log_set_rank(w->rank);
    pthread_mutex_lock(&w->mu);
    for (;;) {
        struct jaccl_request *q;
        while (!(q = worker_ready(w)) && !w->stop) pthread_cond_wait(&w->work, &w->mu);
        if (!q) break;
        if (is_p2p(q)) {
            worker_p2p(w);
            continue;
        }
        /* A collective waits for the sends and receives before it: they share its links. */
        worker_pop(w);
        pthread_mutex_unlock(&w->mu);
        q->rc = call_run(q->comm, &q->call);
        snprintf(q->msg, sizeof(q->msg), "%s", q->comm->err.msg);
        pthread_mutex_lock(&w->mu);
        worker_done(w, q);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

jaccl_result_t jaccl_worker_new(struct jaccl_comm *c)
{
    struct jaccl_worker *w = calloc(1, sizeof(*w));
    if (!w || jaccl_batch_new(&w->batch) != JACCL_SUCCESS) {
        free(w);
        return jaccl_err_set(&c->err, JACCL_ERR_NOMEM, "cannot allocate a progress worker");
    }
    pthread_condattr_t ca; /* its naps are timed on the monotonic clock */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->work, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&w->done, NULL);
    w->refs = 1;
    c->worker = w;
    return JACCL_SUCCESS;
}

void jaccl_worker_share(struct jaccl_comm *parent, struct jaccl_comm *child)
{
    jaccl_worker_release(child);
    struct jaccl_worker *w = parent->worker;
    pthread_mutex_lock(&w->mu);
    w->refs++;
    pthread_mutex_unlock(&w->mu);
    child->worker = w;
}

/* With the lock held: the thread starts with the first request on these links. */
static jaccl_result_t worker_start(struct jaccl_comm *c, struct jaccl_worker *w)
{
    if (w->started) return JACCL_SUCCESS;
    w->rank = c->rank;
    int err = pthread_create(&w->thread, NULL, worker_main, w);
    if (err)
        return jaccl_err_set(&c->err, JACCL_ERR_SYSTEM, "cannot start a progress thread: %s",
                             strerror(err));
    w->started = 1;
    log_debug("progress thread started");
    return JACCL_SUCCESS;
}

/* With the lock held: queued sends and receives may start (a wake only if some were held). */
static void worker_flush(struct jaccl_worker *w)
{
    int held = 0;
    for (struct jaccl_request *q = w->head; q; q = q->next) {
        held |= !q->flushed;
        q->flushed = 1;
    }
    if (held) pthread_cond_signal(&w->work);
}

jaccl_result_t jaccl_worker_submit(struct jaccl_comm *c, const struct jaccl_call *call,
                                   jaccl_request_t *out)
{
    if (!c || !out) return JACCL_ERR_INVALID_ARGUMENT;
    if (jaccl_group_active())
        return jaccl_err_set(&c->err, JACCL_ERR_INVALID_USAGE,
                             "non-blocking calls may not be made between jaccl_group_start and "
                             "jaccl_group_end");
    struct jaccl_request *q = calloc(1, sizeof(*q));
    if (!q) return jaccl_err_set(&c->err, JACCL_ERR_NOMEM, "cannot allocate a request");
    *q = (struct jaccl_request){.comm = c, .call = *call};
    struct jaccl_worker *w = c->worker;
    pthread_mutex_lock(&w->mu);
    jaccl_result_t rc = worker_start(c, w);
    if (rc != JACCL_SUCCESS) {
        pthread_mutex_unlock(&w->mu);
        free(q);
        return rc;
    }
    if (w->tail)
        w->tail->next = q;
    else
        w->head = q;
    w->tail = q;
    atomic_fetch_add_explicit(&w->pending, 1, memory_order_relaxed);
    c->queued++;
    if (!is_p2p(q)) worker_flush(w); /* a collective behind them must not wait forever */
    pthread_mutex_unlock(&w->mu);
    *out = q;
    return JACCL_SUCCESS;
}

jaccl_result_t jaccl_worker_call(struct jaccl_comm *c, const struct jaccl_call *call)
{
    jaccl_request_t q = NULL;
    jaccl_result_t rc = jaccl_worker_submit(c, call, &q);
    return rc == JACCL_SUCCESS ? jaccl_wait(q) : rc;
}

void jaccl_worker_drain(struct jaccl_comm *c)
{
    struct jaccl_worker *w = c->worker;
    if (!w || in_worker) return;
    pthread_mutex_lock(&w->mu);
    worker_flush(w);
    w->any_waiters++;
    while (w->pending > 0) pthread_cond_wait(&w->done, &w->mu);
    w->any_waiters--;
    pthread_mutex_unlock(&w->mu);
}

void jaccl_worker_release(struct jaccl_comm *c)
{
    struct jaccl_worker *w = c->worker;
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    worker_flush(w);
    /* Requests of c still queued (never waited for) run before c goes away. */
    w->any_waiters++;
    while (c->queued > 0) pthread_cond_wait(&w->done, &w->mu);
    w->any_waiters--;
    c->worker = NULL; /* the thread reads it while it runs c's requests */
    int last = --w->refs == 0;
    w->stop = last;
    pthread_cond_signal(&w->work);
    pthread_mutex_unlock(&w->mu);
    if (!last) return;
    if (w->started) pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->work);
    pthread_cond_destroy(&w->done);
    jaccl_batch_free(w->batch);
    free(w);
}

/*
 * With the lock held: the caller asks after q.  A worker napping between
 * polls looks again at once, so a caller polling jaccl_test sets the pace,
 * as it did before (a request already done needs no one woken).
 */
static void worker_kick(struct jaccl_worker *w, struct jaccl_request *q)
{
    worker_flush(w);
    if (!q->done) pthread_cond_signal(&w->work);
}

/* With the lock held: sleep until q is done (every queued operation has a deadline). */
static void worker_sleep_until(struct jaccl_worker *w, struct jaccl_request *q)
{
    while (!q->done) {
        q->waited = 1;
        pthread_cond_wait(&w->done, &w->mu);
    }
}

/*
 * Requests of one worker complete in issue order per peer and direction, so
 * sleeping on the last first wakes once for all of them (not once per
 * request).  Requests of several workers are left to the waits in turn.
 */
static void worker_sleep_all(int n, jaccl_request_t *requests)
{
    struct jaccl_worker *w = requests[0] ? requests[0]->comm->worker : NULL;
    for (int i = 0; i < n; i++)
        if (!w || !requests[i] || requests[i]->comm->worker != w) return;
    pthread_mutex_lock(&w->mu);
    worker_flush(w);
    for (int i = n - 1; i >= 0; i--) worker_sleep_until(w, requests[i]);
    pthread_mutex_unlock(&w->mu);
}

JACCL_API jaccl_result_t jaccl_test(jaccl_request_t q, int *done)
{
    if (!q || !done) return JACCL_ERR_INVALID_ARGUMENT;
    struct jaccl_worker *w = q->comm->worker;
    pthread_mutex_lock(&w->mu);
    worker_kick(w, q);
    *done = q->done;
    pthread_mutex_unlock(&w->mu);
    if (!*done) return JACCL_SUCCESS;
    return jaccl_wait(q);
}

JACCL_API jaccl_result_t jaccl_wait(jaccl_request_t q)
{
    if (!q) return JACCL_ERR_INVALID_ARGUMENT;
    struct jaccl_comm *c = q->comm;
    struct jaccl_worker *w = c->worker;
    pthread_mutex_lock(&w->mu);
    worker_kick(w, q);
    worker_sleep_until(w, q);
    jaccl_result_t rc = q->rc;
    /*
     * A failure's message becomes the communicator's last error.  The thread
     * writes c->err while it runs later requests, so wait until it is idle
     * (each request has a deadline; after a transport failure they fail fast).
     */
    w->any_waiters++;
    while (rc != JACCL_SUCCESS && c->queued > 0) pthread_cond_wait(&w->done, &w->mu);
    w->any_waiters--;
    if (rc != JACCL_SUCCESS) snprintf(c->err.msg, sizeof(c->err.msg), "%s", q->msg);
    pthread_mutex_unlock(&w->mu);
    free(q);
    return rc;
}

JACCL_API jaccl_result_t jaccl_wait_all(int n, jaccl_request_t *requests)
{
    jaccl_result_t first = JACCL_SUCCESS;
    if (n < 0 || (n > 0 && !requests)) return JACCL_ERR_INVALID_ARGUMENT;
    if (n > 1) worker_sleep_all(n, requests); /* then each wait below returns at once */
    for (int i = 0; i < n; i++) {
        jaccl_result_t rc = jaccl_wait(requests[i]);
        if (first == JACCL_SUCCESS) first = rc;
    }
    return first;
}

#define SUBMIT(comm, req, ...)                                                                     \
    do {                                                                                           \
        struct jaccl_call k_ = {__VA_ARGS__};                                                      \
        return jaccl_worker_submit((comm), &k_, (req));                                            \
    } while (0)

JACCL_API jaccl_result_t jaccl_iallreduce(const void *sendbuf, void *recvbuf, size_t count,
                                          jaccl_dtype_t dtype, jaccl_op_t op, jaccl_comm_t comm,
                                          jaccl_request_t *request)
{
    SUBMIT(comm, request, JACCL_CALL_ALLREDUCE, sendbuf, recvbuf, count, dtype, op, 0);
}

JACCL_API jaccl_result_t jaccl_iallgather(const void *sendbuf, void *recvbuf, size_t sendcount,
                                          jaccl_dtype_t dtype, jaccl_comm_t comm,
                                          jaccl_request_t *request)
{
    SUBMIT(comm, request, JACCL_CALL_ALLGATHER, sendbuf, recvbuf, sendcount, dtype, 0, 0);
}

JACCL_API jaccl_result_t jaccl_ireduce_scatter(const void *sendbuf, void *recvbuf, size_t recvcount,
                                               jaccl_dtype_t dtype, jaccl_op_t op,
                                               jaccl_comm_t comm, jaccl_request_t *request)
{
    SUBMIT(comm, request, JACCL_CALL_REDUCE_SCATTER, sendbuf, recvbuf, recvcount, dtype, op, 0);
}

JACCL_API jaccl_result_t jaccl_ibroadcast(const void *sendbuf, void *recvbuf, size_t count,
                                          jaccl_dtype_t dtype, int root, jaccl_comm_t comm,
                                          jaccl_request_t *request)
{
    SUBMIT(comm, request, JACCL_CALL_BROADCAST, sendbuf, recvbuf, count, dtype, 0, root);
}

JACCL_API jaccl_result_t jaccl_ialltoall(const void *sendbuf, void *recvbuf, size_t count,
                                         jaccl_dtype_t dtype, jaccl_comm_t comm,
                                         jaccl_request_t *request)
{
    SUBMIT(comm, request, JACCL_CALL_ALLTOALL, sendbuf, recvbuf, count, dtype, 0, 0);
}

JACCL_API jaccl_result_t jaccl_isend(const void *buf, size_t count, jaccl_dtype_t dtype, int peer,
                                     jaccl_comm_t comm, jaccl_request_t *request)
{
    SUBMIT(comm, request, JACCL_CALL_SEND, buf, NULL, count, dtype, 0, peer);
}

JACCL_API jaccl_result_t jaccl_irecv(void *buf, size_t count, jaccl_dtype_t dtype, int peer,
                                     jaccl_comm_t comm, jaccl_request_t *request)
{
    SUBMIT(comm, request, JACCL_CALL_RECV, NULL, buf, count, dtype, 0, peer);
}
