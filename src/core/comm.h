/* The communicator: configuration, bootstrap, one transport, algorithms, selector. */
#ifndef JACCL_CORE_COMM_H
#define JACCL_CORE_COMM_H

#include "algo/algo.h"
#include "core/bootstrap.h"
#include "core/env.h"

#define JACCL_SEL_MEMO 8 /* remembered sizes per collective (direct-mapped by power of two) */

struct jaccl_comm {
    int rank, size;
    struct jaccl_err err;
    jaccl_result_t failed; /* set after a transport error: links may be out of step */
    char failed_msg[JACCL_ERR_LEN];
    struct jaccl_env env;
    struct jaccl_bootstrap bs;
    struct jaccl_tp *tp;
    int *peers; /* split: the transport's number for each rank here; NULL otherwise */
    /* Progress worker, shared (refcounted) with communicators split from this one:
       one thread per set of links, started by the first non-blocking call. */
    struct jaccl_worker *worker;
    int queued;      /* this communicator's requests not yet complete (under the worker's lock) */
    int *abort_flag; /* set by jaccl_comm_abort; shared with communicators split from this one */
    struct jaccl_algo_ctx actx;
    /* The selector's recent choices (selector.c): repeated sizes skip the cost model. */
    struct jaccl_sel_memo {
        size_t bytes;
        const struct jaccl_algo_ops *ops; /* NULL: empty */
    } sel_memo[JACCL_COLL_COUNT][JACCL_SEL_MEMO];
};

/* Start a call: name it, refuse a failed communicator, set the deadline. */
jaccl_result_t jaccl_call_begin(struct jaccl_comm *c, const char *call);
/* End a call: after a failed transfer the communicator refuses further calls. */
jaccl_result_t jaccl_call_end(struct jaccl_comm *c, jaccl_result_t rc);

/* A call's arguments, to queue it for the progress thread (request.c). */
enum jaccl_call_kind {
    JACCL_CALL_ALLREDUCE,
    JACCL_CALL_ALLGATHER,
    JACCL_CALL_REDUCE_SCATTER,
    JACCL_CALL_BROADCAST,
    JACCL_CALL_REDUCE,
    JACCL_CALL_ALLTOALL,
    JACCL_CALL_BARRIER,
    JACCL_CALL_SEND,
    JACCL_CALL_RECV,
};

struct jaccl_call {
    enum jaccl_call_kind kind;
    const void *s;
    void *r;
    size_t count;
    jaccl_dtype_t dtype;
    jaccl_op_t op;
    int root; /* or the peer of a send or receive */
};

/* True when calls on c must go through its progress thread (we are not it). */
int jaccl_worker_active(const struct jaccl_comm *c);
jaccl_result_t jaccl_worker_submit(struct jaccl_comm *c, const struct jaccl_call *call,
                                   jaccl_request_t *out);
/* Queue a blocking call behind the non-blocking ones and wait for it. */
jaccl_result_t jaccl_worker_call(struct jaccl_comm *c, const struct jaccl_call *call);
/* Wait until everything queued has completed (a group is about to use the links). */
void jaccl_worker_drain(struct jaccl_comm *c);
/* A worker of c's own (no thread yet); a split child shares its parent's instead. */
jaccl_result_t jaccl_worker_new(struct jaccl_comm *c);
void jaccl_worker_share(struct jaccl_comm *parent, struct jaccl_comm *child);
/* Run what c has queued, then drop c's share; the last one stops the thread. */
void jaccl_worker_release(struct jaccl_comm *c);

/* Grouped calls (group.c): inside a group, point-to-point calls are recorded. */
int jaccl_group_active(void);
jaccl_result_t jaccl_group_add(struct jaccl_comm *c, const struct jaccl_stream *st);
/* End a group of one call without running it; 1 and its stream if it recorded one. */
int jaccl_group_detach(struct jaccl_comm **c, struct jaccl_stream *st);

/* The algorithm for coll on a message of bytes: forced by JACCL_ALGO, else cheapest. */
const struct jaccl_algo_ops *jaccl_select(struct jaccl_comm *comm, enum jaccl_coll coll,
                                          size_t bytes);
/* Log the selector's choices for a range of sizes (at info level). */
void jaccl_select_log_table(const struct jaccl_comm *comm);

#endif
