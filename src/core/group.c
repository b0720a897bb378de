/*
 * Grouped point-to-point calls: recorded per thread, then run together, so
 * every send and receive progresses at once.  One communicator's run as one
 * step of the transfer engine; several communicators' as one batch of the
 * engine (crossing orders across them cannot deadlock), even when they share
 * links.
 */
#include "core/comm.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

struct group_op {
    struct jaccl_comm *comm;
    struct jaccl_stream st;
};

/*
 * What a thread has recorded.  Its arrays grow once and are reused by every
 * later group; a key destructor frees them when the thread ends.
 */
struct group_state {
    struct group_op *ops;
    int len, cap;
    struct jaccl_stream *run; /* one communicator's streams, contiguous */
    int run_cap;
};

/* The default TLS model: initial-exec would save a call per collective but can fail to load
 * from a dlopen (Python) in a process whose static TLS is used up. */
static _Thread_local int group_depth;
static pthread_key_t group_key;
static pthread_once_t group_once = PTHREAD_ONCE_INIT;

static void group_free(void *p)
{
    struct group_state *g = p;
    free(g->ops);
    free(g->run);
    free(g);
}

static void group_key_init(void)
{
    pthread_key_create(&group_key, group_free);
}

static struct group_state *group_state(void)
{
    pthread_once(&group_once, group_key_init);
    struct group_state *g = pthread_getspecific(group_key);
    if (!g && (g = calloc(1, sizeof(*g))) != NULL) pthread_setspecific(group_key, g);
    return g;
}

int jaccl_group_active(void)
{
    return group_depth > 0;
}

/* Grow *arr (of *cap elements of size) to hold need. */
static int group_grow(void **arr, int *cap, int need, size_t size)
{
    if (need <= *cap) return 0;
    int n = *cap ? 2 * *cap : 16;
    while (n < need) n *= 2;
    void *a = realloc(*arr, (size_t)n * size);
    if (!a) return -1;
    *arr = a;
    *cap = n;
    return 0;
}

jaccl_result_t jaccl_group_add(struct jaccl_comm *c, const struct jaccl_stream *st)
{
    struct group_state *g = group_state();
    if (!g || group_grow((void **)&g->ops, &g->cap, g->len + 1, sizeof(*g->ops)) != 0)
        return jaccl_err_set(&c->err, JACCL_ERR_NOMEM, "group: out of memory");
    g->ops[g->len++] = (struct group_op){c, *st};
    return JACCL_SUCCESS;
}

JACCL_API jaccl_result_t jaccl_group_start(void)
{
    group_depth++;
    return JACCL_SUCCESS;
}

/* Copy comm c's recorded streams, in the order they were made, to g->run + at. */
static int group_collect(struct group_state *g, struct jaccl_comm *c, int at)
{
    int n = 0;
    for (int i = 0; i < g->len; i++) {
        if (g->ops[i].comm != c) continue;
        g->run[at + n++] = g->ops[i].st;
        g->ops[i].comm = NULL; /* taken */
    }
    return n;
}

/* Back off while nothing moves: yield at first, then naps growing to 1 ms. */
static void group_nap(int idle)
{
    if (idle < 32) {
        sched_yield();
        return;
    }
    int shift = (idle - 32) / 16;
    long ns = shift >= 6 ? 1000000 : 20000L << shift;
    struct timespec t = {0, ns < 1000000 ? ns : 1000000};
    nanosleep(&t, NULL);
}

/* End the call of every communicator whose part finished. */
static void group_finish(struct jaccl_batch *b, jaccl_result_t *first)
{
    void *tag;
    jaccl_result_t rc;
    char msg[JACCL_ERR_LEN];
    while (jaccl_batch_take(b, &tag, &rc, msg, sizeof(msg))) {
        struct jaccl_comm *c = tag;
        if (rc != JACCL_SUCCESS) snprintf(c->err.msg, sizeof(c->err.msg), "%s", msg);
        rc = jaccl_call_end(c, rc);
        if (*first == JACCL_SUCCESS) *first = rc;
    }
}

/*
 * Several communicators' streams run as one batch: on links they share (a
 * communicator and those split from it), each link carries the parts in the
 * order their communicators were first recorded, so the peer must record
 * them in that order too; elsewhere they move independently.
 */
static jaccl_result_t group_batch(struct jaccl_comm **cs, struct jaccl_stream **st, const int *ns,
                                  int n, jaccl_result_t first)
{
    struct jaccl_batch *b = NULL;
    if (jaccl_batch_new(&b) != JACCL_SUCCESS)
        for (int i = 0; i < n; i++)
            jaccl_call_end(cs[i],
                           jaccl_err_set(&cs[i]->err, JACCL_ERR_NOMEM, "group: out of memory"));
    if (!b) return JACCL_ERR_NOMEM;
    for (int i = 0; i < n; i++) {
        jaccl_result_t rc =
            jaccl_batch_add(b, &cs[i]->actx, st[i], ns[i], cs[i]->abort_flag, cs[i]);
        if (rc != JACCL_SUCCESS) rc = jaccl_call_end(cs[i], rc);
        if (first == JACCL_SUCCESS) first = rc;
    }
    for (int idle = 0; jaccl_batch_running(b);) {
        idle = jaccl_batch_step(b) ? 0 : idle + 1;
        group_finish(b, &first);
        if (idle) group_nap(idle);
    }
    jaccl_batch_free(b);
    return first;
}

/* Run the group's communicators, in the order first recorded. */
static jaccl_result_t group_run(struct jaccl_comm **cs, struct jaccl_stream **st, int *ns, int n)
{
    jaccl_result_t first = JACCL_SUCCESS;
    int ok = 0;
    for (int i = 0; i < n; i++) jaccl_worker_drain(cs[i]); /* queued calls come first */
    for (int i = 0; i < n; i++) {
        jaccl_result_t rc = jaccl_call_begin(cs[i], "jaccl_group_end");
        if (rc != JACCL_SUCCESS) {
            if (first == JACCL_SUCCESS) first = rc;
            continue;
        }
        cs[ok] = cs[i];
        st[ok] = st[i];
        ns[ok++] = ns[i];
    }
    if (ok != 1) return ok == 0 ? first : group_batch(cs, st, ns, ok, first);
    /* One communicator: one step of the engine, which waits without polling. */
    cs[0]->actx.hdr_mode = JACCL_HDR_P2P;
    jaccl_result_t rc = jaccl_call_end(cs[0], jaccl_algo_run(&cs[0]->actx, st[0], ns[0], NULL, 0));
    return first == JACCL_SUCCESS ? rc : first;
}

int jaccl_group_detach(struct jaccl_comm **c, struct jaccl_stream *st)
{
    struct group_state *g = group_state();
    group_depth--;
    if (!g || g->len == 0) return 0;
    *c = g->ops[0].comm;
    *st = g->ops[0].st;
    g->len = 0;
    return 1;
}

JACCL_API jaccl_result_t jaccl_group_end(void)
{
    if (group_depth == 0) return JACCL_ERR_INVALID_USAGE;
    if (--group_depth > 0) return JACCL_SUCCESS;
    struct group_state *g = group_state();
    if (!g || g->len == 0) return JACCL_SUCCESS; /* nothing was recorded */
    jaccl_result_t rc = JACCL_SUCCESS;
    struct jaccl_comm **cs = malloc(sizeof(*cs) * (size_t)g->len);
    struct jaccl_stream **st = malloc(sizeof(*st) * (size_t)g->len);
    int *ns = malloc(sizeof(*ns) * (size_t)g->len), n = 0, at = 0;
    if (!cs || !st || !ns ||
        group_grow((void **)&g->run, &g->run_cap, g->len, sizeof(*g->run)) != 0)
        rc = jaccl_err_set(&g->ops[0].comm->err, JACCL_ERR_NOMEM, "group: out of memory");
    for (int i = 0; rc == JACCL_SUCCESS && i < g->len; i++) {
        struct jaccl_comm *c = g->ops[i].comm;
        if (!c) continue;
        cs[n] = c;
        st[n] = g->run + at;
        ns[n] = group_collect(g, c, at);
        at += ns[n++];
    }
    if (rc == JACCL_SUCCESS) rc = group_run(cs, st, ns, n);
    g->len = 0;
    free(cs);
    free(st);
    free(ns);
    return rc;
}
