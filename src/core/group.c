/*
 * Grouped point-to-point calls: recorded per thread, then run as one step of
 * the transfer engine per communicator, so every send and receive progresses
 * at once.
 */
#include "core/comm.h"

#include <stdlib.h>

struct group_op {
    struct jaccl_comm *comm;
    struct jaccl_stream st;
};

static _Thread_local int group_depth;
static _Thread_local struct group_op *group_ops;
static _Thread_local int group_len, group_cap;

int jaccl_group_active(void)
{
    return group_depth > 0;
}

jaccl_result_t jaccl_group_add(struct jaccl_comm *c, const struct jaccl_stream *st)
{
    if (group_len == group_cap) {
        int cap = group_cap ? 2 * group_cap : 16;
        struct group_op *ops = realloc(group_ops, (size_t)cap * sizeof(*ops));
        if (!ops) return jaccl_err_set(&c->err, JACCL_ERR_NOMEM, "group: out of memory");
        group_ops = ops;
        group_cap = cap;
    }
    group_ops[group_len++] = (struct group_op){c, *st};
    return JACCL_SUCCESS;
}

JACCL_API jaccl_result_t jaccl_group_start(void)
{
    group_depth++;
    return JACCL_SUCCESS;
}

/* Run the recorded calls of one communicator, in the order they were made. */
static jaccl_result_t group_run(struct jaccl_comm *c)
{
    int n = 0;
    for (int i = 0; i < group_len; i++)
        if (group_ops[i].comm == c) n++;
    struct jaccl_stream *st = malloc(sizeof(*st) * (size_t)n);
    if (!st) return jaccl_err_set(&c->err, JACCL_ERR_NOMEM, "group: out of memory");
    n = 0;
    for (int i = 0; i < group_len; i++) {
        if (group_ops[i].comm != c) continue;
        st[n++] = group_ops[i].st;
        group_ops[i].comm = NULL; /* done */
    }
    jaccl_worker_drain(c); /* issue order: queued non-blocking calls come first */
    jaccl_result_t rc = jaccl_call_begin(c, "jaccl_group_end");
    if (rc == JACCL_SUCCESS) rc = jaccl_call_end(c, jaccl_algo_run(&c->actx, st, n, NULL, 0));
    free(st);
    return rc;
}

JACCL_API jaccl_result_t jaccl_group_end(void)
{
    jaccl_result_t first = JACCL_SUCCESS;
    if (group_depth == 0) return JACCL_ERR_INVALID_USAGE;
    if (--group_depth > 0) return JACCL_SUCCESS;
    for (int i = 0; i < group_len; i++) {
        if (!group_ops[i].comm) continue;
        jaccl_result_t rc = group_run(group_ops[i].comm);
        if (first == JACCL_SUCCESS) first = rc;
    }
    /* Free the list: a thread's last group must not leak it when the thread ends. */
    free(group_ops);
    group_ops = NULL;
    group_len = group_cap = 0;
    return first;
}
