/*
 * Grouped point-to-point calls: recorded per thread, then run together, so
 * every send and receive progresses at once.  One communicator's run as one
 * step of the transfer engine; several communicators' are polled side by side
 * (crossing orders across them cannot deadlock), unless two of them would
 * share a link direction: then they run one after the other.
 */
#include "core/comm.h"

#include <pthread.h>
#include <stdlib.h>

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

/*
 * Whether two of the communicators would put streams on the same link
 * direction (split communicators share links): their bytes would interleave,
 * so they run one after the other instead of at once.
 */
static int group_conflicts(struct jaccl_comm **cs, struct jaccl_stream **st, const int *ns, int n)
{
    for (int a = 0; a < n; a++)
        for (int b = a + 1; b < n; b++) {
            if (cs[a]->tp != cs[b]->tp) continue;
            for (int i = 0; i < ns[a]; i++)
                for (int j = 0; j < ns[b]; j++)
                    if (st[a][i].dir == st[b][j].dir &&
                        jaccl_algo_peer(&cs[a]->actx, st[a][i].peer) ==
                            jaccl_algo_peer(&cs[b]->actx, st[b][j].peer))
                        return 1;
        }
    return 0;
}

/* Run the group's communicators, in the order first recorded, each as one step. */
static jaccl_result_t group_run(struct jaccl_comm **cs, struct jaccl_stream **st, int *ns, int n)
{
    jaccl_result_t first = JACCL_SUCCESS;
    int ok = 0, failed = 0;
    for (int i = 0; i < n; i++) jaccl_worker_drain(cs[i]); /* queued calls come first */
    for (int i = 0; i < n; i++) {
        jaccl_result_t rc = jaccl_call_begin(cs[i], "jaccl_group_end");
        if (rc != JACCL_SUCCESS) {
            if (first == JACCL_SUCCESS) first = rc;
            continue;
        }
        cs[i]->actx.hdr_mode = JACCL_HDR_P2P;
        cs[ok] = cs[i];
        st[ok] = st[i];
        ns[ok++] = ns[i];
    }
    if (ok == 1 || (ok > 1 && group_conflicts(cs, st, ns, ok))) {
        for (int i = 0; i < ok; i++) {
            jaccl_result_t rc =
                jaccl_call_end(cs[i], jaccl_algo_run(&cs[i]->actx, st[i], ns[i], NULL, 0));
            if (first == JACCL_SUCCESS) first = rc;
        }
        return first;
    }
    if (ok == 0) return first;
    struct jaccl_algo_ctx *ax[ok];
    const volatile int *ab[ok];
    for (int i = 0; i < ok; i++) {
        ax[i] = &cs[i]->actx;
        ab[i] = cs[i]->abort_flag;
    }
    jaccl_result_t rc = jaccl_algo_run_multi(ax, st, ns, ok, ab, &failed);
    for (int i = 0; i < ok; i++) { /* a failure leaves every communicator's links out of step */
        if (rc != JACCL_SUCCESS && i != failed)
            jaccl_err_set(&cs[i]->err, rc, "a group's transfers failed: %s", cs[failed]->err.msg);
        jaccl_result_t r = jaccl_call_end(cs[i], rc);
        if (first == JACCL_SUCCESS) first = r;
    }
    return first;
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
