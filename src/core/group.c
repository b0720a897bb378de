/*
 * Grouped point-to-point calls: recorded per thread, then run as one step of
 * the transfer engine per communicator, so every send and receive progresses
 * at once.
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

/* Run the recorded calls of one communicator, in the order they were made. */
static jaccl_result_t group_run(struct group_state *g, struct jaccl_comm *c)
{
    int n = 0;
    if (group_grow((void **)&g->run, &g->run_cap, g->len, sizeof(*g->run)) != 0)
        return jaccl_err_set(&c->err, JACCL_ERR_NOMEM, "group: out of memory");
    for (int i = 0; i < g->len; i++) {
        if (g->ops[i].comm != c) continue;
        g->run[n++] = g->ops[i].st;
        g->ops[i].comm = NULL; /* done */
    }
    jaccl_worker_drain(c); /* issue order: queued non-blocking calls come first */
    jaccl_result_t rc = jaccl_call_begin(c, "jaccl_group_end");
    if (rc == JACCL_SUCCESS) {
        c->actx.hdr_mode = JACCL_HDR_P2P;
        rc = jaccl_call_end(c, jaccl_algo_run(&c->actx, g->run, n, NULL, 0));
    }
    return rc;
}

JACCL_API jaccl_result_t jaccl_group_end(void)
{
    jaccl_result_t first = JACCL_SUCCESS;
    if (group_depth == 0) return JACCL_ERR_INVALID_USAGE;
    if (--group_depth > 0) return JACCL_SUCCESS;
    struct group_state *g = group_state();
    for (int i = 0; g && i < g->len; i++) {
        if (!g->ops[i].comm) continue;
        jaccl_result_t rc = group_run(g, g->ops[i].comm);
        if (first == JACCL_SUCCESS) first = rc;
    }
    if (g) g->len = 0;
    return first;
}
