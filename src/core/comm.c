/* The public API: communicator lifetime, argument checks, dispatch to algorithms. */
#include "core/comm.h"
#include "core/devfile.h"
#include "core/hostid.h"
#include "util/log.h"
#include "util/time.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SEG_BYTES     (128u << 10)
#define ONESHOT_BYTES (32u << 10)

/* Why the last jaccl_comm_init_env on this thread failed. */
static _Thread_local char init_error[JACCL_ERR_LEN];

static const size_t dtype_sizes[JACCL_DTYPE_COUNT] = {
    [JACCL_INT8] = 1,    [JACCL_UINT8] = 1,     [JACCL_INT32] = 4,   [JACCL_UINT32] = 4,
    [JACCL_INT64] = 8,   [JACCL_UINT64] = 8,    [JACCL_FLOAT16] = 2, [JACCL_BFLOAT16] = 2,
    [JACCL_FLOAT32] = 4, [JACCL_FLOAT64] = 8,   [JACCL_BOOL] = 1,    [JACCL_INT16] = 2,
    [JACCL_UINT16] = 2,  [JACCL_COMPLEX64] = 8,
};

JACCL_API size_t jaccl_dtype_size(jaccl_dtype_t dtype)
{
    return (unsigned)dtype < JACCL_DTYPE_COUNT ? dtype_sizes[dtype] : 0;
}

/*
 * TCP connections per pair when JACCL_TCP_SOCKETS is unset, the same on
 * every rank (all see the same hosts): 2 where every host's ranks fit its
 * cores (2-rank all-gathers of 256 KiB-64 MiB ran 1.2-1.8x faster on this
 * VM), 1 where some host is oversubscribed (2 made that 1.5-3x slower).
 */
static int comm_default_sockets(const struct jaccl_tp_host *all, int n)
{
    for (int r = 0; r < n; r++) {
        int local = 0;
        for (int q = 0; q < n; q++) local += all[q].leader == all[r].leader;
        if (local > all[r].ncpu) return 1;
    }
    return 2;
}

/* Every rank's host identity; more ranks on this host than cores: waits must yield. */
static jaccl_result_t comm_hosts(struct jaccl_comm *c, int64_t deadline, struct jaccl_tp_host **out,
                                 int *oversub)
{
    struct jaccl_tp_host mine, *all = malloc(sizeof(mine) * (size_t)c->size);
    if (!all) return jaccl_err_set(&c->err, JACCL_ERR_NOMEM, "out of memory");
    jaccl_hostid_self(&mine);
    jaccl_result_t rc = jaccl_bootstrap_allgather(&c->bs, &mine, sizeof(mine), all, deadline);
    if (rc != JACCL_SUCCESS) {
        free(all);
        return rc;
    }
    int local = jaccl_hostid_group(all, c->size, c->rank, c->env.shm_scope_host);
    *oversub = local > mine.ncpu;
    if (c->env.tcp_sockets == 0) c->env.tcp_sockets = comm_default_sockets(all, c->size);
    if (*oversub)
        log_info("%d ranks share this host's %d cores: waits will yield", local, (int)mine.ncpu);
    *out = all;
    return JACCL_SUCCESS;
}

#define AUTO_INDEX 127 /* in the record: the composite, not a single transport */

static const char *transport_name(int i)
{
    if (i == AUTO_INDEX) return "auto";
    /* The index came off the wire: check it against the registry. */
    for (int k = 0; jaccl_transports[k]; k++)
        if (k == i) return jaccl_transports[k]->name;
    return "unknown";
}

static jaccl_result_t comm_open_transport(struct jaccl_comm *c, struct jaccl_tp_params *p,
                                          char *addr, size_t *len)
{
    const struct jaccl_transport_ops *ops = &jaccl_multi_ops;
    int index = AUTO_INDEX;
    if (strcmp(c->env.transport, "auto") != 0) {
        for (index = 0; jaccl_transports[index]; index++)
            if (strcmp(jaccl_transports[index]->name, c->env.transport) == 0) break;
        ops = jaccl_transports[index];
        if (!ops)
            return jaccl_err_set(&c->err, JACCL_ERR_CONFIG, "JACCL_TRANSPORT=%s is not built in",
                                 c->env.transport);
    }
    jaccl_result_t rc = ops->open(p, &c->tp, addr, len);
    if (rc != JACCL_SUCCESS) return rc;
    c->tp->ops = ops;
    c->tp->refs = 1;
    addr[JACCL_TP_MULTI_ADDR_MAX] = (char)index;
    if (index != AUTO_INDEX) log_info("transport %s chosen (JACCL_TRANSPORT)", ops->name);
    return JACCL_SUCCESS;
}

/* A forced transport must reach every peer (shm does not leave the host). */
static jaccl_result_t comm_check_links(struct jaccl_comm *c, const struct jaccl_tp_host *hosts)
{
    for (int p = 0; p < c->size; p++) {
        if (p == c->rank || c->tp->ops->links(c->tp, p) > 0) continue;
        return jaccl_err_set(&c->err, JACCL_ERR_CONFIG,
                             "JACCL_TRANSPORT=%s has no link to rank %d (%s); unset "
                             "JACCL_TRANSPORT (auto picks a transport per peer)",
                             c->tp->ops->name, p,
                             hosts[p].leader != hosts[c->rank].leader ? "it is on another host"
                                                                      : "no device or cable");
    }
    return JACCL_SUCCESS;
}

static jaccl_result_t comm_connect(struct jaccl_comm *c, int64_t deadline)
{
    int oversub = 0;
    struct jaccl_tp_host *hosts = NULL;
    jaccl_result_t rc = comm_hosts(c, deadline, &hosts, &oversub);
    if (rc != JACCL_SUCCESS) return rc;
    struct jaccl_tp_params p = {.rank = c->rank,
                                .size = c->size,
                                .job_id = c->bs.job_id,
                                .deadline_ns = deadline,
                                .local = c->bs.local,
                                .local_len = c->bs.local_len,
                                .links_per_peer = c->env.tcp_sockets,
                                .spin_ns = c->env.spin_ns,
                                .oversubscribed = oversub,
                                .hosts = hosts,
                                .shm_single_copy = c->env.shm_single_copy,
                                .abort_flag = c->abort_flag,
                                .key = &c->env.job_key,
                                .err = &c->err};
    /* Each record: the transport's address, then the index of the transport chosen. */
    size_t rec = JACCL_TP_MULTI_ADDR_MAX + 8, len = 0;
    char *all = calloc((size_t)c->size + 1, rec), *mine = all + (size_t)c->size * rec;
    if (!all) {
        free(hosts);
        return jaccl_err_set(&c->err, JACCL_ERR_NOMEM, "out of memory");
    }
    struct jaccl_devfile df;
    struct jaccl_tp_rdma_cfg rdma;
    rc = jaccl_devfile_setup(&c->env, c->rank, c->size, &df, &rdma, &c->err);
    p.rdma = df.size ? &rdma : NULL;
    if (rc == JACCL_SUCCESS) rc = comm_open_transport(c, &p, mine, &len);
    jaccl_devfile_free(&df); /* the transport keeps what it needs */
    if (rc == JACCL_SUCCESS) rc = jaccl_bootstrap_allgather(&c->bs, mine, rec, all, deadline);
    for (int r = 0; rc == JACCL_SUCCESS && r < c->size; r++) {
        int theirs = all[(size_t)r * rec + JACCL_TP_MULTI_ADDR_MAX];
        if (theirs != mine[JACCL_TP_MULTI_ADDR_MAX])
            rc = jaccl_err_set(&c->err, JACCL_ERR_CONFIG,
                               "rank %d chose transport %s but we "
                               "chose %s; set the same JACCL_TRANSPORT everywhere",
                               r, transport_name(theirs), c->tp->ops->name);
    }
    if (rc == JACCL_SUCCESS) rc = c->tp->ops->connect(c->tp, all, rec, deadline);
    if (rc == JACCL_SUCCESS) rc = comm_check_links(c, hosts);
    free(all);
    free(hosts);
    return rc;
}

/* The most links this rank has to any peer. */
static int comm_local_links(const struct jaccl_comm *c)
{
    int most = 0;
    for (int p = 0; c->tp && p < c->size; p++) {
        int links = c->tp->ops->links(c->tp, p); /* the world: no peer map */
        if (p != c->rank && links > most) most = links;
    }
    return most;
}

/*
 * The most links any rank has to any peer.  Algorithms cut pieces and the
 * selector models costs from it, so it must be the same on every rank: a
 * device file can give one pair more cables than another.
 */
static jaccl_result_t comm_agree_links(struct jaccl_comm *c, int64_t deadline, int *out)
{
    int32_t mine = comm_local_links(c), *all = malloc(sizeof(mine) * (size_t)c->size);
    if (!all) return jaccl_err_set(&c->err, JACCL_ERR_NOMEM, "out of memory");
    jaccl_result_t rc = jaccl_bootstrap_allgather(&c->bs, &mine, sizeof(mine), all, deadline);
    for (int r = 0; rc == JACCL_SUCCESS && r < c->size; r++)
        if (all[r] > mine) mine = all[r];
    free(all);
    if (rc == JACCL_SUCCESS) *out = mine;
    return rc;
}

/*
 * Scratch and transfer slots for the algorithms, allocated and touched once;
 * owed is the parent's (a split shares its links) or NULL for new links.
 */
static jaccl_result_t comm_setup_algos(struct jaccl_comm *c, int max_links, struct jaccl_owed *owed)
{
    struct jaccl_algo_ctx *a = &c->actx;
    *a = (struct jaccl_algo_ctx){.rank = c->rank,
                                 .size = c->size,
                                 .tp = c->tp,
                                 .err = &c->err,
                                 .seg_bytes = SEG_BYTES,
                                 .oneshot_bytes = ONESHOT_BYTES,
                                 .gamma_Bps = 8e9,
                                 .ring_bidir = c->env.ring_bidir};
    a->peers = c->peers;
    a->max_links = max_links;
    a->owed = owed || !c->tp ? owed : jaccl_owed_new(c->tp->size);
    size_t n = (size_t)c->size, need = jaccl_algo_run_scratch(a, 2);
    if (n * a->oneshot_bytes > need) need = n * a->oneshot_bytes;
    if (n * a->seg_bytes > need) need = n * a->seg_bytes;
    a->xfers_cap = (int)(4 * n * (size_t)(a->max_links + 1)) + 8;
    a->scratch = malloc(need);
    a->xfers = calloc((size_t)a->xfers_cap, sizeof(*a->xfers));
    if (!a->scratch || !a->xfers || (c->tp && !a->owed))
        return jaccl_err_set(&c->err, JACCL_ERR_NOMEM, "cannot allocate %zu bytes of scratch",
                             need);
    memset(a->scratch, 0, need); /* fault the pages in now, not during the first call */
    a->scratch_len = need;
    return JACCL_SUCCESS;
}

static jaccl_result_t comm_init(struct jaccl_comm *c, const jaccl_config_t *cfg)
{
    jaccl_result_t rc = jaccl_env_parse(&c->env, cfg, &c->err);
    if (rc != JACCL_SUCCESS) return rc;
    c->rank = c->env.rank;
    c->size = c->env.size;
    c->err.rank = c->rank;
    jaccl_log_set_rank(c->rank);
    int64_t deadline = jaccl_now_ns() + (int64_t)(c->env.timeout_s * 1e9);
    int links = 0;
    if (c->size > 1) {
        rc = jaccl_bootstrap_init(&c->bs, &c->env, deadline, &c->err);
        if (rc == JACCL_SUCCESS) rc = comm_connect(c, deadline);
        if (rc == JACCL_SUCCESS) rc = comm_agree_links(c, deadline, &links);
        if (rc != JACCL_SUCCESS) return rc;
    } else {
        log_info("a job of one rank (%s not set): collectives copy locally", "JACCL_RANK");
    }
    rc = comm_setup_algos(c, links, NULL);
    if (rc == JACCL_SUCCESS && c->size > 1) jaccl_select_log_table(c);
    return rc;
}

JACCL_API const char *jaccl_version(void)
{
    return JACCL_VERSION_STRING;
}

static struct jaccl_comm *comm_alloc(const char *call)
{
    struct jaccl_comm *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(init_error, sizeof(init_error), "%s: out of memory", call);
        return NULL;
    }
    c->err = (struct jaccl_err){.rank = -1, .call = call};
    c->bs.fd = -1;
    c->abort_flag = calloc(1, sizeof(*c->abort_flag));
    if (!c->abort_flag || jaccl_worker_new(c) != JACCL_SUCCESS) {
        snprintf(init_error, sizeof(init_error), "%s: out of memory", call);
        free(c->abort_flag);
        free(c);
        return NULL;
    }
    return c;
}

JACCL_API jaccl_result_t jaccl_comm_init(jaccl_comm_t *comm, const jaccl_config_t *config)
{
    jaccl_log_init();
    init_error[0] = '\0';
    if (!comm) {
        snprintf(init_error, sizeof(init_error), "jaccl_comm_init: comm is NULL");
        return JACCL_ERR_INVALID_ARGUMENT;
    }
    struct jaccl_comm *c = comm_alloc(config ? "jaccl_comm_init" : "jaccl_comm_init_env");
    if (!c) return JACCL_ERR_NOMEM;
    jaccl_result_t rc = comm_init(c, config);
    if (rc != JACCL_SUCCESS) {
        snprintf(init_error, sizeof(init_error), "%s", c->err.msg);
        jaccl_comm_destroy(c);
        return rc;
    }
    c->err.msg[0] = '\0';
    *comm = c;
    return JACCL_SUCCESS;
}

JACCL_API jaccl_result_t jaccl_comm_init_env(jaccl_comm_t *comm)
{
    return jaccl_comm_init(comm, NULL);
}

/* Ranks of the new group, in order of (key, rank in the parent). */
static int split_members(const int32_t *all, int n, int color, int *members)
{
    int m = 0;
    for (int r = 0; r < n; r++) {
        if (all[3 * r] != color) continue;
        int i = m++;
        while (i > 0 && (all[3 * members[i - 1] + 1] > all[3 * r + 1])) {
            members[i] = members[i - 1];
            i--;
        }
        members[i] = r;
    }
    return m;
}

/* A communicator over some of parent's ranks, sharing its transport. */
static jaccl_result_t split_build(struct jaccl_comm *parent, const int *members, int m,
                                  struct jaccl_comm **out)
{
    struct jaccl_comm *c = comm_alloc("jaccl_comm_split");
    int *peers = c ? malloc(sizeof(int) * (size_t)m) : NULL;
    if (!peers) {
        jaccl_comm_destroy(c);
        return jaccl_err_set(&parent->err, JACCL_ERR_NOMEM, "out of memory");
    }
    c->env = parent->env;
    c->size = m;
    for (int i = 0; i < m; i++) {
        peers[i] = jaccl_algo_peer(&parent->actx, members[i]);
        if (members[i] == parent->rank) c->rank = i;
    }
    c->peers = peers;
    c->err.rank = c->rank;
    c->tp = parent->tp;
    if (c->tp) { /* the links are shared, so are the abort flag and the progress worker */
        c->tp->refs++;
        free(c->abort_flag);
        c->abort_flag = parent->abort_flag;
        jaccl_worker_share(parent, c);
    }
    /* The parent's count, agreed by every rank, covers any subset's links. */
    jaccl_result_t rc = comm_setup_algos(c, parent->actx.max_links, parent->actx.owed);
    if (rc != JACCL_SUCCESS) {
        snprintf(parent->err.msg, sizeof(parent->err.msg), "%s", c->err.msg);
        jaccl_comm_destroy(c);
        return rc;
    }
    *out = c;
    return JACCL_SUCCESS;
}

JACCL_API jaccl_result_t jaccl_comm_split(jaccl_comm_t comm, int color, int key,
                                          jaccl_comm_t *newcomm)
{
    if (!comm || !newcomm) return JACCL_ERR_INVALID_ARGUMENT;
    if (color < JACCL_SPLIT_NOCOLOR)
        return jaccl_err_set(&comm->err, JACCL_ERR_INVALID_ARGUMENT,
                             "color %d is negative "
                             "(use a color >= 0 or JACCL_SPLIT_NOCOLOR)",
                             color);
    int32_t mine[3] = {color, key, comm->rank}, *all = malloc(sizeof(mine) * (size_t)comm->size);
    int *members = malloc(sizeof(int) * (size_t)comm->size);
    jaccl_result_t rc = all && members ? JACCL_SUCCESS : JACCL_ERR_NOMEM;
    if (rc == JACCL_SUCCESS) rc = jaccl_allgather(mine, all, 3, JACCL_INT32, comm);
    comm->err.call = "jaccl_comm_split";
    if (rc == JACCL_SUCCESS && color == JACCL_SPLIT_NOCOLOR)
        *newcomm = NULL;
    else if (rc == JACCL_SUCCESS)
        rc = split_build(comm, members, split_members(all, comm->size, color, members), newcomm);
    free(members);
    free(all);
    return rc;
}

/*
 * The last communicator on these links sends the headers it holds back and
 * reads what peers still owe it before closing: TCP answers a close with
 * unread data by a reset, which can throw away bytes a peer has yet to read.
 */
static void comm_settle(struct jaccl_comm *c)
{
    if (c->failed != JACCL_SUCCESS || jaccl_tp_aborted(c->abort_flag)) return;
    c->err.call = "jaccl_comm_destroy";
    c->actx.deadline_ns = jaccl_deadline_ns((int64_t)(c->env.timeout_s * 1e9));
    if (jaccl_algo_settle(&c->actx) != JACCL_SUCCESS)
        log_warn("closing without the last collective's check: %s", c->err.msg);
}

JACCL_API jaccl_result_t jaccl_comm_destroy(jaccl_comm_t comm)
{
    if (!comm) return JACCL_SUCCESS;
    jaccl_worker_release(comm);
    if (!comm->tp) {
        free(comm->abort_flag);
    } else if (--comm->tp->refs == 0) {
        comm_settle(comm);
        comm->tp->ops->close(comm->tp);
        jaccl_owed_free(comm->actx.owed);
        free(comm->abort_flag);
    }
    free(comm->peers);
    jaccl_bootstrap_close(&comm->bs);
    free(comm->actx.scratch);
    free(comm->actx.xfers);
    free(comm->actx.work);
    free(comm->actx.hdr_buf);
    free(comm);
    return JACCL_SUCCESS;
}

/* Async-signal-safe: one atomic store, which every wait checks within a few ms. */
JACCL_API jaccl_result_t jaccl_comm_abort(jaccl_comm_t comm)
{
    if (!comm) return JACCL_ERR_INVALID_ARGUMENT;
    __atomic_store_n(comm->abort_flag, 1, __ATOMIC_RELAXED);
    return JACCL_SUCCESS;
}

JACCL_API int jaccl_comm_rank(jaccl_comm_t comm)
{
    return comm ? comm->rank : -1;
}

JACCL_API int jaccl_comm_size(jaccl_comm_t comm)
{
    return comm ? comm->size : -1;
}

JACCL_API const char *jaccl_last_error(jaccl_comm_t comm)
{
    return comm ? comm->err.msg : init_error;
}
