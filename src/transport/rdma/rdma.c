/*
 * RDMA verbs transport, as JACCL uses it over Thunderbolt and as any
 * InfiniBand or RoCE device offers it.  One queue pair per cable listed in
 * the device file (RC where the device has it, UC otherwise).  Data moves
 * through registered, pre-faulted staging slots: a SEND carries up to one
 * slot; the receiver copies it out and reposts the slot, then returns the
 * credit with an RDMA WRITE into the sender's mailbox, so a SEND is never
 * posted before its receive (UC would drop it silently).
 */
#include "transport/rdma/ibv.h"
#include "transport/transport.h"
#include "util/copy.h"
#include "util/log.h"
#include "util/time.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define RD_NRECV        16           /* receive slots per queue pair */
#define RD_NSEND        8            /* send slots in flight per queue pair */
#define RD_SLOT         (128u << 10) /* bytes per staging slot */
#define RD_MAGIC        0x4a524431u  /* "JRD1" */
#define RD_PORT         1
#define RD_MBOX         64 /* bytes of mailbox and sources per queue pair */
#define RD_WRITES       2  /* credit writes in flight per queue pair */
#define RD_STALL_MS     10000
#define RD_DRAIN_NS     2000000000LL
#define RD_READY_GAP    1000000LL /* UC: resend "ready" every ms until the peer answers */
#define RD_SPIN_MORE_NS 1000000LL /* the emulated or real peer answers in microseconds */

enum { WR_SEND = 1, WR_WRITE = 2, WR_RECV = 3 };
enum { QP_AUTO = 0, QP_RC = 1, QP_UC = 2 };

/* One link's record in the address blob. */
struct rd_wire_link {
    uint16_t peer, cable;
    uint32_t qpn, psn, rkey;
    uint64_t mbox;
    uint8_t gid[16];
    uint16_t lid, nrecv;
    uint8_t mtu, qp_type, pad[2];
    uint32_t slot;
};

struct rd_wire {
    uint32_t magic;
    uint16_t nlinks, pad;
    uint64_t job_id;
    struct rd_wire_link link[];
};

struct rd_dev {
    char name[JACCL_TP_DEVNAME_MAX];
    struct ibv_context *ctx;
    struct ibv_pd *pd;
    struct ibv_cq *cq;
    struct ibv_mr *mr;
    char *mem; /* mailboxes, then every queue pair's slots */
    size_t mem_len, used;
    struct ibv_device_attr attr;
    struct ibv_port_attr port;
    union ibv_gid gid;
    int gid_index, qp_type, nlinks, ncqe;
    int next; /* links set up so far: the index of the next one's mailbox */
};

struct rd_link {
    int peer, cable, index;
    struct rd_dev *dev;
    struct ibv_qp *qp;
    uint32_t psn;
    char *rslots, *sslots;
    volatile uint64_t *mbox; /* [0] receives the peer reposted, [1] peer ready */
    uint64_t *src;           /* [0] our reposts, [1] ready: sources of our writes */
    uint64_t r_posted, r_arrived, r_consumed;
    size_t r_off;
    uint32_t r_len[RD_NRECV];
    uint64_t s_posted, s_done, credit_sent;
    uint64_t s_limit; /* sends the peer has room for, read once per pass */
    int writes_out, ready_sent;
    int failed; /* a credit write or receive failed: no data may move any more */
    struct ibv_wc fail;
    int64_t ready_at;
    uint32_t peer_nrecv, peer_qpn;
    uint64_t peer_mbox;
    uint32_t peer_rkey;
};

struct rd_tp {
    struct jaccl_tp base;
    struct jaccl_ibv ibv;
    struct ibv_device **list;
    uint64_t job_id;
    int64_t spin_ns;
    const volatile int *abort_flag;
    char devfile[256];
    int ndev, nlinks, maxc;
    struct rd_dev dev[JACCL_MAX_LINKS * 4];
    unsigned char *cables; /* [peer] */
    struct rd_link *links; /* [nlinks] */
    int *link_of;          /* [peer * maxc + cable] -> index in links, or -1 */
};

static const char *qp_type_name(int t)
{
    return t == QP_RC ? "RC" : "UC";
}

/*
 * "No RDMA here": the message is kept for a forced JACCL_TRANSPORT=rdma, but
 * logged at info only: auto mode then goes on without RDMA, as most jobs do.
 */
static jaccl_result_t rd_unsupported(const struct jaccl_tp_params *p, const char *fmt,
                                     const char *a, const char *b)
{
    char msg[400];
    struct jaccl_err *e = p->err;
    int n = 0;
    snprintf(msg, sizeof(msg), fmt, a, b);
    if (e->rank >= 0) n = snprintf(e->msg, sizeof(e->msg), "rank %d: ", e->rank);
    if (e->call) n += snprintf(e->msg + n, sizeof(e->msg) - (size_t)n, "%.64s: ", e->call);
    snprintf(e->msg + n, sizeof(e->msg) - (size_t)n, "rdma: %s", msg);
    log_info("rdma: not used: %s", msg);
    return JACCL_ERR_UNSUPPORTED;
}

/* ---- devices ---------------------------------------------------------- */

static struct ibv_device *rd_find(struct rd_tp *t, int n, const char *name, char *known, size_t len)
{
    known[0] = '\0';
    for (int i = 0; i < n; i++) {
        const char *d = t->ibv.get_device_name(t->list[i]);
        if (d && strcmp(d, name) == 0) return t->list[i];
        size_t at = strlen(known);
        snprintf(known + at, len - at, "%s%s", at ? ", " : "", d ? d : "?");
    }
    return NULL;
}

/* The IPv4-mapped GID (::ffff:a.b.c.d), as JACCL needs on Thunderbolt; or the one asked for. */
static int rd_pick_gid(struct rd_tp *t, struct rd_dev *d, int want)
{
    for (int i = want >= 0 ? want : 0; i < d->port.gid_tbl_len; i++) {
        union ibv_gid g;
        if (t->ibv.query_gid(d->ctx, RD_PORT, i, &g) != 0) continue;
        static const uint8_t v4[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (want >= 0 || memcmp(g.raw, v4, sizeof(v4)) == 0) {
            d->gid = g;
            d->gid_index = i;
            return 0;
        }
    }
    return -1;
}

static jaccl_result_t rd_dev_query(struct rd_tp *t, struct rd_dev *d,
                                   const struct jaccl_tp_params *p)
{
    char idx[16];
    if (t->ibv.query_device(d->ctx, &d->attr) != 0)
        return rd_unsupported(p, "ibv_query_device(%s) failed: %s", d->name, strerror(errno));
    memset(&d->port, 0, sizeof(d->port));
    if (t->ibv.query_port(d->ctx, RD_PORT, &d->port) != 0)
        return rd_unsupported(p, "ibv_query_port(%s) failed: %s", d->name, strerror(errno));
    if (d->port.state != IBV_PORT_ACTIVE)
        return rd_unsupported(p, "port 1 of %s is not active (%s); check the cable", d->name,
                              d->port.state == IBV_PORT_DOWN ? "down" : "not up");
    snprintf(idx, sizeof(idx), "%d", p->rdma->gid_index);
    if (rd_pick_gid(t, d, p->rdma->gid_index) != 0)
        return rd_unsupported(p,
                              p->rdma->gid_index >= 0
                                  ? "%s has no GID at JACCL_IB_GID_INDEX=%s"
                                  : "%s has no IPv4-mapped GID%s; give its interface an IPv4 "
                                    "address or set JACCL_IB_GID_INDEX",
                              d->name, p->rdma->gid_index >= 0 ? idx : "");
    return JACCL_SUCCESS;
}

/* Open name (once per distinct device); *out is its slot in t->dev. */
static jaccl_result_t rd_dev_open(struct rd_tp *t, int nlist, const char *name,
                                  const struct jaccl_tp_params *p, struct rd_dev **out)
{
    for (int i = 0; i < t->ndev; i++)
        if (strcmp(t->dev[i].name, name) == 0) {
            *out = &t->dev[i];
            return JACCL_SUCCESS;
        }
    char known[256];
    struct ibv_device *dv = rd_find(t, nlist, name, known, sizeof(known));
    if (!dv)
        return rd_unsupported(p, "device %s is not present here (devices: %s)", name,
                              known[0] ? known : "none");
    if (t->ndev == (int)(sizeof(t->dev) / sizeof(t->dev[0])))
        return rd_unsupported(p, "too many distinct devices (%s%s)", name, "");
    struct rd_dev *d = &t->dev[t->ndev];
    snprintf(d->name, sizeof(d->name), "%s", name);
    d->ctx = t->ibv.open_device(dv);
    if (!d->ctx) return rd_unsupported(p, "ibv_open_device(%s) failed: %s", name, strerror(errno));
    t->ndev++;
    *out = d;
    return rd_dev_query(t, d, p);
}

/* Protection domain, completion queue and one registered region per device. */
static jaccl_result_t rd_dev_setup(struct rd_tp *t, struct rd_dev *d, struct jaccl_err *e)
{
    size_t per = (size_t)(RD_NRECV + RD_NSEND) * RD_SLOT;
    int wr = RD_NSEND + RD_WRITES + 2;
    d->ncqe = d->nlinks * (wr + RD_NRECV);
    if (d->nlinks > d->attr.max_qp || d->nlinks * RD_MBOX > 4096 || d->port.max_msg_sz < RD_SLOT ||
        wr > d->attr.max_qp_wr || RD_NRECV > d->attr.max_qp_wr || d->ncqe > d->attr.max_cqe ||
        d->attr.max_mr < 1)
        return jaccl_err_set(e, JACCL_ERR_UNSUPPORTED,
                             "rdma: %s is too small for %d queue pair(s) (it allows %d QPs of %d "
                             "work requests, %d CQ entries); use fewer cables on it",
                             d->name, d->nlinks, d->attr.max_qp, d->attr.max_qp_wr,
                             d->attr.max_cqe);
    d->mem_len = 4096 + (size_t)d->nlinks * per;
    d->mem = mmap(NULL, d->mem_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (d->mem == MAP_FAILED) {
        d->mem = NULL;
        return jaccl_err_set(e, JACCL_ERR_NOMEM, "rdma: cannot map %zu bytes of staging for %s",
                             d->mem_len, d->name);
    }
    memset(d->mem, 0, d->mem_len); /* fault every page in now, not on the first transfer */
    d->used = 4096;
    d->pd = t->ibv.alloc_pd(d->ctx);
    if (!d->pd)
        return jaccl_err_set(e, JACCL_ERR_SYSTEM, "rdma: ibv_alloc_pd(%s) failed: %s", d->name,
                             strerror(errno));
    d->cq = t->ibv.create_cq(d->ctx, d->ncqe, NULL, NULL, 0);
    if (!d->cq)
        return jaccl_err_set(e, JACCL_ERR_SYSTEM, "rdma: ibv_create_cq(%s, %d) failed: %s", d->name,
                             d->ncqe, strerror(errno));
    int access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE;
    d->mr = t->ibv.reg_mr(d->pd, d->mem, d->mem_len, access);
    if (!d->mr)
        return jaccl_err_set(e, JACCL_ERR_SYSTEM,
                             "rdma: ibv_reg_mr(%s, %zu bytes) failed: %s (the device allows %d "
                             "regions; check ulimit -l)",
                             d->name, d->mem_len, strerror(errno), d->attr.max_mr);
    return JACCL_SUCCESS;
}

/* ---- queue pairs ------------------------------------------------------ */

static struct ibv_qp *rd_create_qp(struct rd_tp *t, struct rd_dev *d, int type)
{
    struct ibv_qp_init_attr a = {
        .send_cq = d->cq,
        .recv_cq = d->cq,
        .cap = {.max_send_wr = RD_NSEND + RD_WRITES + 2,
                .max_recv_wr = RD_NRECV,
                .max_send_sge = 1,
                .max_recv_sge = 1},
        .qp_type = type == QP_RC ? IBV_QPT_RC : IBV_QPT_UC,
        .sq_sig_all = 1,
    };
    return t->ibv.create_qp(d->pd, &a);
}

static jaccl_result_t rd_post_recv(struct rd_tp *t, struct rd_link *l)
{
    size_t slot = (size_t)(l->r_posted % RD_NRECV);
    struct ibv_sge sge = {.addr = (uintptr_t)(l->rslots + slot * RD_SLOT),
                          .length = RD_SLOT,
                          .lkey = l->dev->mr->lkey};
    struct ibv_recv_wr wr = {.wr_id = ((uint64_t)l->index << 8) | WR_RECV,
                             .sg_list = &sge,
                             .num_sge = 1},
                       *bad;
    int rc = ibv_post_recv(l->qp, &wr, &bad);
    if (rc != 0)
        return jaccl_err_set(t->base.err, JACCL_ERR_SYSTEM,
                             "rdma: ibv_post_recv for rank %d (cable %d, %s) failed: %s", l->peer,
                             l->cable, l->dev->name, strerror(rc));
    l->r_posted++;
    return JACCL_SUCCESS;
}

/* The device's type: RC unless it lacks RC (Thunderbolt) or JACCL_IB_QP_TYPE says. */
static struct ibv_qp *rd_qp_for(struct rd_tp *t, struct rd_dev *d, int forced)
{
    if (!d->qp_type) d->qp_type = forced ? forced : QP_RC;
    struct ibv_qp *qp = rd_create_qp(t, d, d->qp_type);
    if (!qp && !forced && d->qp_type == QP_RC && (errno == EOPNOTSUPP || errno == EINVAL)) {
        log_info("rdma: %s has no RC queue pairs; using UC", d->name);
        d->qp_type = QP_UC;
        qp = rd_create_qp(t, d, QP_UC);
    }
    return qp;
}

static jaccl_result_t rd_link_setup(struct rd_tp *t, struct rd_link *l, int forced)
{
    struct rd_dev *d = l->dev;
    int idx = d->next++;
    l->mbox = (volatile uint64_t *)(d->mem + (size_t)idx * RD_MBOX);
    l->src = (uint64_t *)(d->mem + (size_t)idx * RD_MBOX + 32);
    l->rslots = d->mem + d->used;
    l->sslots = l->rslots + (size_t)RD_NRECV * RD_SLOT;
    d->used += (size_t)(RD_NRECV + RD_NSEND) * RD_SLOT;
    l->psn = (uint32_t)(((uint64_t)jaccl_now_ns() ^ ((uint64_t)l->index << 12)) & 0xffffff);
    l->qp = rd_qp_for(t, d, forced);
    if (!l->qp)
        return jaccl_err_set(t->base.err, JACCL_ERR_SYSTEM,
                             "rdma: ibv_create_qp(%s) for rank %d cable %d failed: %s (the device "
                             "allows %d queue pairs; this rank needs %d on it); use fewer cables",
                             d->name, l->peer, l->cable, strerror(errno), d->attr.max_qp,
                             d->nlinks);
    struct ibv_qp_attr a = {
        .qp_state = IBV_QPS_INIT, .port_num = RD_PORT, .qp_access_flags = IBV_ACCESS_REMOTE_WRITE};
    int rc = t->ibv.modify_qp(l->qp, &a,
                              IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
    if (rc != 0)
        return jaccl_err_set(t->base.err, JACCL_ERR_SYSTEM,
                             "rdma: queue pair for rank %d on %s: INIT failed: %s", l->peer,
                             d->name, strerror(rc));
    for (int i = 0; i < RD_NRECV; i++) {
        jaccl_result_t r = rd_post_recv(t, l);
        if (r != JACCL_SUCCESS) return r;
    }
    return JACCL_SUCCESS;
}

/* ---- open ------------------------------------------------------------- */

static jaccl_result_t rd_alloc(struct rd_tp *t, const struct jaccl_tp_params *p)
{
    t->maxc = 1;
    for (int r = 0; r < p->size; r++) {
        int c = r == p->rank ? 0 : p->rdma->cables[r];
        t->nlinks += c;
        if (c > t->maxc) t->maxc = c;
    }
    t->cables = calloc((size_t)p->size, 1);
    t->links = calloc((size_t)t->nlinks + 1, sizeof(*t->links));
    t->link_of = malloc(sizeof(int) * (size_t)p->size * (size_t)t->maxc);
    if (!t->cables || !t->links || !t->link_of)
        return jaccl_err_set(p->err, JACCL_ERR_NOMEM, "rdma: out of memory");
    for (int i = 0; i < p->size * t->maxc; i++) t->link_of[i] = -1;
    return JACCL_SUCCESS;
}

/* Open the devices of every cable and count the links on each. */
static jaccl_result_t rd_open_devices(struct rd_tp *t, const struct jaccl_tp_params *p)
{
    int nlist = 0, n = 0;
    t->list = t->ibv.get_device_list(&nlist);
    int err = errno;
    if (!t->list)
        return rd_unsupported(p, "no RDMA devices: ibv_get_device_list failed: %s%s", strerror(err),
                              err == ENOSYS ? " (this kernel has no RDMA support)" : "");
    for (int r = 0; r < p->size; r++) {
        int nc = r == p->rank ? 0 : p->rdma->cables[r];
        t->cables[r] = (unsigned char)nc;
        for (int c = 0; c < nc; c++, n++) {
            struct rd_link *l = &t->links[n];
            const char *name = p->rdma->names[r * JACCL_MAX_LINKS + c];
            jaccl_result_t rc = rd_dev_open(t, nlist, name, p, &l->dev);
            if (rc != JACCL_SUCCESS) return rc;
            *l = (struct rd_link){.peer = r, .cable = c, .index = n, .dev = l->dev};
            l->dev->nlinks++;
            t->link_of[r * t->maxc + c] = n;
        }
    }
    return JACCL_SUCCESS;
}

static void rd_write_addr(struct rd_tp *t, void *addr, size_t *addr_len)
{
    struct rd_wire *w = addr;
    *w = (struct rd_wire){.magic = RD_MAGIC, .nlinks = (uint16_t)t->nlinks, .job_id = t->job_id};
    for (int i = 0; i < t->nlinks; i++) {
        struct rd_link *l = &t->links[i];
        struct rd_wire_link *o = &w->link[i];
        *o = (struct rd_wire_link){.peer = (uint16_t)l->peer,
                                   .cable = (uint16_t)l->cable,
                                   .qpn = l->qp->qp_num,
                                   .psn = l->psn,
                                   .rkey = l->dev->mr->rkey,
                                   .mbox = (uintptr_t)l->mbox,
                                   .lid = l->dev->port.lid,
                                   .nrecv = RD_NRECV,
                                   .mtu = (uint8_t)l->dev->port.active_mtu,
                                   .qp_type = (uint8_t)l->dev->qp_type,
                                   .slot = RD_SLOT};
        memcpy(o->gid, l->dev->gid.raw, 16);
    }
    *addr_len = sizeof(*w) + (size_t)t->nlinks * sizeof(w->link[0]);
}

static void rd_close(struct jaccl_tp *tp);

static jaccl_result_t rd_open_all(struct rd_tp *t, const struct jaccl_tp_params *p)
{
    char why[300];
    if (jaccl_ibv_load(&t->ibv, p->rdma->lib, why, sizeof(why)) != 0)
        return rd_unsupported(p, "%s%s (install rdma-core's libibverbs1, or set JACCL_IBVERBS_LIB)",
                              why, "");
    jaccl_result_t rc = rd_alloc(t, p);
    if (rc == JACCL_SUCCESS && t->nlinks == 0)
        rc = rd_unsupported(p, "%s gives this rank no cable to any other rank%s", t->devfile, "");
    if (rc == JACCL_SUCCESS &&
        sizeof(struct rd_wire) + (size_t)t->nlinks * sizeof(struct rd_wire_link) >
            JACCL_TP_ADDR_MAX)
        rc = rd_unsupported(p, "%s lists too many cables for one rank%s", t->devfile, "");
    if (rc == JACCL_SUCCESS) rc = rd_open_devices(t, p);
    for (int i = 0; rc == JACCL_SUCCESS && i < t->ndev; i++)
        rc = rd_dev_setup(t, &t->dev[i], p->err);
    for (int i = 0; rc == JACCL_SUCCESS && i < t->nlinks; i++)
        rc = rd_link_setup(t, &t->links[i], p->rdma->qp_type);
    return rc;
}

static jaccl_result_t rd_open(const struct jaccl_tp_params *p, struct jaccl_tp **out, void *addr,
                              size_t *addr_len)
{
    if (!p->rdma)
        return rd_unsupported(p,
                              "no device file (set JACCL_IBV_DEVICES to the JSON matrix of RDMA "
                              "devices between the ranks)%s%s",
                              "", "");
    struct rd_tp *t = calloc(1, sizeof(*t));
    if (!t) return jaccl_err_set(p->err, JACCL_ERR_NOMEM, "rdma: out of memory");
    t->base = (struct jaccl_tp){
        .rank = p->rank, .size = p->size, .err = p->err, .alpha_s = 5e-6, .beta_Bps = 6e9};
    t->job_id = p->job_id;
    t->spin_ns = p->spin_ns;
    t->abort_flag = p->abort_flag;
    snprintf(t->devfile, sizeof(t->devfile), "%s", p->rdma->devfile ? p->rdma->devfile : "");
    jaccl_result_t rc = rd_open_all(t, p);
    if (rc != JACCL_SUCCESS) {
        rd_close(&t->base);
        return rc;
    }
    rd_write_addr(t, addr, addr_len);
    log_info("rdma: %d queue pair(s) on %d device(s) (%s), %d x %u KiB receive slots each",
             t->nlinks, t->ndev, qp_type_name(t->dev[0].qp_type), RD_NRECV, RD_SLOT >> 10);
    *out = &t->base;
    return JACCL_SUCCESS;
}

/* ---- completions ------------------------------------------------------ */

static const char *rd_kind(int kind)
{
    static const char *const what[] = {"?", "send to", "credit write to", "receive from"};
    return what[kind >= WR_SEND && kind <= WR_RECV ? kind : 0];
}

static jaccl_result_t rd_wc_error(struct rd_tp *t, struct rd_link *l, const struct ibv_wc *wc)
{
    return jaccl_err_set(t->base.err, JACCL_ERR_REMOTE,
                         "rdma: %s rank %d failed (cable %d, device %s): %s (status %d, vendor "
                         "error %#x); the peer exited or failed, or the link went down",
                         rd_kind((int)(wc->wr_id & 0xff)), l->peer, l->cable, l->dev->name,
                         t->ibv.wc_status_str(wc->status), (int)wc->status, wc->vendor_err);
}

/*
 * A failed SEND lost data: report it now.  A failed credit write (or the
 * receives flushed after it) only matters if more data must move on that
 * link: a peer that finished and closed first fails our last credit write.
 */
static jaccl_result_t rd_completion(struct rd_tp *t, const struct ibv_wc *wc)
{
    struct rd_link *l = &t->links[wc->wr_id >> 8];
    int kind = (int)(wc->wr_id & 0xff);
    if (kind == WR_WRITE) l->writes_out--;
    if (wc->status != IBV_WC_SUCCESS) {
        if (kind == WR_SEND) return rd_wc_error(t, l, wc);
        if (!l->failed)
            log_debug("rdma: %s rank %d: %s (reported if data must still move)", rd_kind(kind),
                      l->peer, t->ibv.wc_status_str(wc->status));
        if (!l->failed) l->fail = *wc;
        l->failed = 1;
        return JACCL_SUCCESS;
    }
    if (kind == WR_RECV) l->r_len[l->r_arrived++ % RD_NRECV] = wc->byte_len;
    if (kind == WR_SEND) l->s_done++;
    return JACCL_SUCCESS;
}

static jaccl_result_t rd_poll(struct rd_tp *t, int *moved)
{
    struct ibv_wc wc[16];
    for (int d = 0; d < t->ndev; d++) {
        int n;
        while ((n = ibv_poll_cq(t->dev[d].cq, 16, wc)) > 0) {
            *moved = 1;
            for (int i = 0; i < n; i++) {
                jaccl_result_t rc = rd_completion(t, &wc[i]);
                if (rc != JACCL_SUCCESS) return rc;
            }
        }
        if (n < 0)
            return jaccl_err_set(t->base.err, JACCL_ERR_SYSTEM, "rdma: ibv_poll_cq(%s) failed (%d)",
                                 t->dev[d].name, n);
    }
    return JACCL_SUCCESS;
}

/* RDMA WRITE of src[i] into the peer's mailbox slot i. */
static jaccl_result_t rd_write(struct rd_tp *t, struct rd_link *l, int i)
{
    struct ibv_sge sge = {
        .addr = (uintptr_t)&l->src[i], .length = sizeof(uint64_t), .lkey = l->dev->mr->lkey};
    struct ibv_send_wr wr = {.wr_id = ((uint64_t)l->index << 8) | WR_WRITE,
                             .sg_list = &sge,
                             .num_sge = 1,
                             .opcode = IBV_WR_RDMA_WRITE,
                             .send_flags = IBV_SEND_SIGNALED},
                       *bad;
    wr.wr.rdma.remote_addr = l->peer_mbox + (uint64_t)i * sizeof(uint64_t);
    wr.wr.rdma.rkey = l->peer_rkey;
    int rc = ibv_post_send(l->qp, &wr, &bad);
    if (rc != 0)
        return jaccl_err_set(t->base.err, JACCL_ERR_SYSTEM,
                             "rdma: posting a write to rank %d (cable %d, %s) failed: %s", l->peer,
                             l->cable, l->dev->name, strerror(rc));
    l->writes_out++;
    return JACCL_SUCCESS;
}

/* Tell the peer about the receive slots we reposted. */
static jaccl_result_t rd_return_credits(struct rd_tp *t)
{
    for (int i = 0; i < t->nlinks; i++) {
        struct rd_link *l = &t->links[i];
        uint64_t reposted = l->r_posted - RD_NRECV;
        if (reposted == l->credit_sent || l->writes_out >= RD_WRITES || l->failed) continue;
        l->src[0] = reposted;
        jaccl_result_t rc = rd_write(t, l, 0);
        if (rc != JACCL_SUCCESS) return rc;
        l->credit_sent = reposted;
    }
    return JACCL_SUCCESS;
}

/* ---- data ------------------------------------------------------------- */

static jaccl_result_t rd_send(struct rd_tp *t, struct rd_link *l, struct jaccl_xfer *x, int *moved)
{
    if (l->failed) return rd_wc_error(t, l, &l->fail);
    while (x->done < x->len && l->s_posted - l->s_done < RD_NSEND && l->s_posted < l->s_limit) {
        size_t n = x->len - x->done < RD_SLOT ? x->len - x->done : RD_SLOT;
        char *slot = l->sslots + (size_t)(l->s_posted % RD_NSEND) * RD_SLOT;
        jaccl_copy(slot, (char *)x->buf + x->done, n);
        struct ibv_sge sge = {
            .addr = (uintptr_t)slot, .length = (uint32_t)n, .lkey = l->dev->mr->lkey};
        struct ibv_send_wr wr = {.wr_id = ((uint64_t)l->index << 8) | WR_SEND,
                                 .sg_list = &sge,
                                 .num_sge = 1,
                                 .opcode = IBV_WR_SEND,
                                 .send_flags = IBV_SEND_SIGNALED},
                           *bad;
        int rc = ibv_post_send(l->qp, &wr, &bad), polled = 0;
        /* A queue pair that failed refuses work: its completion says why. */
        if (rc != 0 && rd_poll(t, &polled) != JACCL_SUCCESS) return JACCL_ERR_REMOTE;
        if (rc != 0)
            return jaccl_err_set(t->base.err, JACCL_ERR_SYSTEM,
                                 "rdma: ibv_post_send to rank %d (cable %d, %s) failed: %s",
                                 l->peer, l->cable, l->dev->name, strerror(rc));
        l->s_posted++;
        x->done += n;
        *moved = 1;
    }
    return JACCL_SUCCESS;
}

/* Copy what has arrived into x; each emptied slot is posted again at once. */
static jaccl_result_t rd_recv(struct rd_tp *t, struct rd_link *l, struct jaccl_xfer *x, int *moved)
{
    while (x->done < x->len && l->r_consumed < l->r_arrived) {
        size_t slot = (size_t)(l->r_consumed % RD_NRECV), have = l->r_len[slot] - l->r_off;
        size_t n = x->len - x->done < have ? x->len - x->done : have;
        jaccl_copy((char *)x->buf + x->done, l->rslots + slot * RD_SLOT + l->r_off, n);
        x->done += n;
        l->r_off += n;
        *moved = 1;
        if (l->r_off < l->r_len[slot]) break;
        l->r_off = 0;
        l->r_consumed++;
        jaccl_result_t rc = l->failed ? JACCL_SUCCESS : rd_post_recv(t, l);
        if (rc != JACCL_SUCCESS) return rc;
    }
    if (l->failed && x->done < x->len) return rd_wc_error(t, l, &l->fail);
    return JACCL_SUCCESS;
}

static struct rd_link *rd_link_for(struct rd_tp *t, const struct jaccl_xfer *x)
{
    if (x->peer < 0 || x->peer >= t->base.size || x->link < 0 || x->link >= t->maxc) return NULL;
    int i = t->link_of[x->peer * t->maxc + x->link];
    return i < 0 ? NULL : &t->links[i];
}

/*
 * One pass.  Transfers of one stream are taken in array order: an earlier
 * unfinished one has taken every byte (or credit) there was, so a later one
 * of the same stream finds none.
 */
static jaccl_result_t rd_pass(struct rd_tp *t, struct jaccl_xfer *x, int n, int *moved,
                              int *pending)
{
    jaccl_result_t rc = rd_poll(t, moved);
    *pending = 0;
    /* The peer's credits land at any moment: read them once, or a later send
     * on a link could take credits that arrived after an earlier one stopped. */
    for (int i = 0; i < t->nlinks; i++)
        t->links[i].s_limit = t->links[i].peer_nrecv + t->links[i].mbox[0];
    for (int i = 0; rc == JACCL_SUCCESS && i < n; i++) {
        if (x[i].done == x[i].len) continue;
        struct rd_link *l = rd_link_for(t, &x[i]);
        if (!l)
            return jaccl_err_set(t->base.err, JACCL_ERR_INTERNAL, "rdma: no link %d to rank %d",
                                 x[i].link, x[i].peer);
        rc =
            x[i].dir == JACCL_XFER_SEND ? rd_send(t, l, &x[i], moved) : rd_recv(t, l, &x[i], moved);
        *pending += jaccl_xfer_waited(&x[i]);
    }
    if (rc == JACCL_SUCCESS) rc = rd_return_credits(t);
    return rc;
}

/* ---- waiting ---------------------------------------------------------- */

static const char *rd_port_state(struct rd_tp *t, struct rd_dev *d)
{
    struct ibv_port_attr pa;
    memset(&pa, 0, sizeof(pa));
    if (t->ibv.query_port(d->ctx, RD_PORT, &pa) != 0) return "port state unknown";
    return pa.state == IBV_PORT_ACTIVE ? "port active" : "port DOWN: check the cable";
}

static jaccl_result_t rd_timeout(struct rd_tp *t, struct jaccl_xfer *x, int n)
{
    for (int i = 0; i < n; i++) {
        if (!jaccl_xfer_waited(&x[i])) continue;
        struct rd_link *l = rd_link_for(t, &x[i]);
        int recv = x[i].dir == JACCL_XFER_RECV;
        return jaccl_err_set(t->base.err, JACCL_ERR_TIMEOUT,
                             "timed out waiting for rank %d to %s (cable %d, device %s, %s; %zu "
                             "of %zu bytes); it may be stalled, dead, or in a different call; "
                             "JACCL_TIMEOUT sets the limit",
                             x[i].peer, recv ? "send data" : "take data", x[i].link, l->dev->name,
                             rd_port_state(t, l->dev), x[i].done, x[i].len);
    }
    return JACCL_ERR_INTERNAL;
}

/* Between passes: spin, yielding the core; past a millisecond idle, sleep a little. */
static jaccl_result_t rd_idle(struct rd_tp *t, int64_t now, int64_t idle_since, int64_t deadline,
                              int64_t *warn_at, struct jaccl_xfer *x, int n)
{
    if (t->abort_flag && *t->abort_flag)
        return jaccl_err_set(t->base.err, JACCL_ERR_ABORTED, "rdma: aborted while waiting");
    if (now >= deadline) return rd_timeout(t, x, n);
    if (now >= *warn_at) {
        log_warn("%s: rdma: nothing moved for %d s; waiting on %d transfer(s); giving up in %d s "
                 "(JACCL_TIMEOUT)",
                 t->base.err->call ? t->base.err->call : "wait", RD_STALL_MS / 1000, n,
                 (int)((deadline - now) / 1000000000));
        *warn_at = now + (int64_t)RD_STALL_MS * 1000000;
    }
    if (now - idle_since < t->spin_ns + RD_SPIN_MORE_NS) {
        sched_yield();
        return JACCL_SUCCESS;
    }
    struct timespec ts = {0, 50000};
    nanosleep(&ts, NULL);
    return JACCL_SUCCESS;
}

static jaccl_result_t rd_progress(struct jaccl_tp *tp, struct jaccl_xfer *x, int n, int any,
                                  int64_t deadline_ns)
{
    struct rd_tp *t = (struct rd_tp *)tp;
    int64_t idle_since = 0, warn_at = 0;
    for (;;) {
        int moved = 0, pending = 0;
        jaccl_result_t rc = rd_pass(t, x, n, &moved, &pending);
        if (rc != JACCL_SUCCESS) return rc;
        if (pending == 0 || (moved && any) || deadline_ns == JACCL_TP_NOWAIT) return rc;
        if (moved || idle_since == 0) {
            idle_since = jaccl_now_ns();
            warn_at = idle_since + (int64_t)RD_STALL_MS * 1000000;
            continue;
        }
        int64_t now = jaccl_now_ns();
        if (jaccl_tp_return_due(tp, now)) return JACCL_SUCCESS;
        rc = rd_idle(t, now, idle_since, deadline_ns, &warn_at, x, n);
        if (rc != JACCL_SUCCESS) return rc;
    }
}

/* ---- connect ---------------------------------------------------------- */

static const struct rd_wire_link *rd_find_peer(const struct rd_wire *w, int me, int cable)
{
    for (int i = 0; i < w->nlinks; i++)
        if (w->link[i].peer == me && w->link[i].cable == cable) return &w->link[i];
    return NULL;
}

static int rd_count_to(const struct rd_wire *w, int me)
{
    int n = 0;
    for (int i = 0; i < w->nlinks; i++) n += w->link[i].peer == me;
    return n;
}

static jaccl_result_t rd_to_rtr(struct rd_tp *t, struct rd_link *l, const struct rd_wire_link *o)
{
    struct ibv_qp_attr a = {.qp_state = IBV_QPS_RTR,
                            .path_mtu = o->mtu < l->dev->port.active_mtu ? (enum ibv_mtu)o->mtu
                                                                         : l->dev->port.active_mtu,
                            .dest_qp_num = o->qpn,
                            .rq_psn = o->psn,
                            .max_dest_rd_atomic = 1,
                            .min_rnr_timer = 12};
    a.ah_attr.is_global = 1;
    a.ah_attr.dlid = o->lid;
    a.ah_attr.port_num = RD_PORT;
    a.ah_attr.grh.hop_limit = 1;
    a.ah_attr.grh.sgid_index = (uint8_t)l->dev->gid_index;
    memcpy(a.ah_attr.grh.dgid.raw, o->gid, 16);
    int mask = IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN;
    if (l->dev->qp_type == QP_RC) mask |= IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER;
    int rc = t->ibv.modify_qp(l->qp, &a, mask);
    if (rc == 0) {
        struct ibv_qp_attr s = {.qp_state = IBV_QPS_RTS,
                                .sq_psn = l->psn,
                                .timeout = 18,
                                .retry_cnt = 7,
                                .rnr_retry = 7,
                                .max_rd_atomic = 1};
        mask = IBV_QP_STATE | IBV_QP_SQ_PSN;
        if (l->dev->qp_type == QP_RC)
            mask |= IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_MAX_QP_RD_ATOMIC;
        rc = t->ibv.modify_qp(l->qp, &s, mask);
    }
    if (rc != 0)
        return jaccl_err_set(t->base.err, JACCL_ERR_SYSTEM,
                             "rdma: connecting the queue pair to rank %d (cable %d, %s) failed: "
                             "%s; check the GID (JACCL_IB_GID_INDEX) and the cable",
                             l->peer, l->cable, l->dev->name, strerror(rc));
    return JACCL_SUCCESS;
}

static jaccl_result_t rd_link_connect(struct rd_tp *t, struct rd_link *l, const struct rd_wire *w)
{
    /* The record came off the wire: trust its link count only within the slot. */
    if (w->magic != RD_MAGIC || w->job_id != t->job_id ||
        w->nlinks > (JACCL_TP_ADDR_MAX - sizeof(*w)) / sizeof(w->link[0]))
        return jaccl_err_set(t->base.err, JACCL_ERR_CONFIG,
                             "rdma: rank %d sent no valid RDMA address for this job; do all "
                             "ranks run the same jaccl build?",
                             l->peer);
    const struct rd_wire_link *o = rd_find_peer(w, t->base.rank, l->cable);
    int theirs = rd_count_to(w, t->base.rank);
    if (!o || theirs != t->cables[l->peer])
        return jaccl_err_set(t->base.err, JACCL_ERR_CONFIG,
                             "rdma: rank %d's device file lists %d cable(s) to us but %s lists "
                             "%d; give every rank the same file",
                             l->peer, theirs, t->devfile, t->cables[l->peer]);
    if (o->qp_type != l->dev->qp_type)
        return jaccl_err_set(t->base.err, JACCL_ERR_CONFIG,
                             "rdma: rank %d uses %s queue pairs on cable %d but we use %s on %s; "
                             "set JACCL_IB_QP_TYPE the same on every rank",
                             l->peer, qp_type_name(o->qp_type), l->cable,
                             qp_type_name(l->dev->qp_type), l->dev->name);
    l->peer_qpn = o->qpn;
    l->peer_nrecv = o->nrecv;
    l->peer_mbox = o->mbox;
    l->peer_rkey = o->rkey;
    if (o->slot > RD_SLOT)
        return jaccl_err_set(t->base.err, JACCL_ERR_CONFIG,
                             "rdma: rank %d receives into %u-byte slots, we into %u: run the "
                             "same jaccl everywhere",
                             l->peer, o->slot, RD_SLOT);
    return rd_to_rtr(t, l, o);
}

/* Until the peer says ready it may not have a receiving queue pair: no data before then. */
static jaccl_result_t rd_ready_step(struct rd_tp *t, struct rd_link *l, int *left)
{
    int seen = l->mbox[1] != 0;
    if (l->failed) return rd_wc_error(t, l, &l->fail);
    if (seen && l->ready_sent == 2) return JACCL_SUCCESS;
    (*left)++;
    int64_t now = jaccl_now_ns();
    if (l->writes_out > 0 || (!seen && now - l->ready_at < RD_READY_GAP)) return JACCL_SUCCESS;
    l->src[1] = 1;
    l->ready_at = now;
    l->ready_sent = seen ? 2 : 1; /* one more after seeing theirs: they may have missed ours */
    return rd_write(t, l, 1);
}

static jaccl_result_t rd_handshake(struct rd_tp *t, int64_t deadline_ns)
{
    for (;;) {
        int left = 0, moved = 0;
        jaccl_result_t rc = rd_poll(t, &moved);
        for (int i = 0; rc == JACCL_SUCCESS && i < t->nlinks; i++)
            rc = rd_ready_step(t, &t->links[i], &left);
        if (rc != JACCL_SUCCESS || left == 0) return rc;
        if (t->abort_flag && *t->abort_flag)
            return jaccl_err_set(t->base.err, JACCL_ERR_ABORTED, "rdma: aborted while connecting");
        if (jaccl_now_ns() >= deadline_ns) {
            for (int i = 0; i < t->nlinks; i++)
                if (!t->links[i].mbox[1])
                    return jaccl_err_set(
                        t->base.err, JACCL_ERR_TIMEOUT,
                        "rdma: rank %d never answered on cable %d (%s, %s); did it start, and "
                        "does its device file match?",
                        t->links[i].peer, t->links[i].cable, t->links[i].dev->name,
                        rd_port_state(t, t->links[i].dev));
            return jaccl_err_set(t->base.err, JACCL_ERR_TIMEOUT, "rdma: handshake timed out");
        }
        sched_yield();
    }
}

static jaccl_result_t rd_connect(struct jaccl_tp *tp, const void *addrs, size_t stride,
                                 int64_t deadline_ns)
{
    struct rd_tp *t = (struct rd_tp *)tp;
    for (int i = 0; i < t->nlinks; i++) {
        struct rd_link *l = &t->links[i];
        const struct rd_wire *w = (const void *)((const char *)addrs + (size_t)l->peer * stride);
        jaccl_result_t rc = rd_link_connect(t, l, w);
        if (rc != JACCL_SUCCESS) return rc;
    }
    jaccl_result_t rc = rd_handshake(t, deadline_ns);
    if (rc == JACCL_SUCCESS)
        log_debug("rdma: connected %d queue pair(s) to %d rank(s)", t->nlinks, tp->size - 1);
    return rc;
}

static int rd_links(struct jaccl_tp *tp, int peer)
{
    struct rd_tp *t = (struct rd_tp *)tp;
    return peer >= 0 && peer < tp->size ? t->cables[peer] : 0;
}

/* ---- close ------------------------------------------------------------ */

/*
 * Let posted sends leave before their queue pairs go.  Bounded, and quiet:
 * a peer that closed first fails our last credit writes, which is harmless.
 */
static void rd_drain(struct rd_tp *t)
{
    int64_t end = jaccl_now_ns() + RD_DRAIN_NS;
    for (;;) {
        int busy = 0;
        for (int i = 0; i < t->nlinks; i++)
            busy |= t->links[i].qp &&
                    (t->links[i].s_posted != t->links[i].s_done || t->links[i].writes_out > 0);
        if (!busy || jaccl_now_ns() > end) return;
        struct ibv_wc wc[16];
        for (int d = 0; d < t->ndev; d++) {
            int n = t->dev[d].cq ? ibv_poll_cq(t->dev[d].cq, 16, wc) : 0;
            for (int i = 0; i < n; i++) {
                struct rd_link *l = &t->links[wc[i].wr_id >> 8];
                l->s_done += (wc[i].wr_id & 0xff) == WR_SEND;
                l->writes_out -= (wc[i].wr_id & 0xff) == WR_WRITE;
            }
        }
        sched_yield();
    }
}

static void rd_dev_close(struct rd_tp *t, struct rd_dev *d)
{
    if (d->mr) t->ibv.dereg_mr(d->mr);
    if (d->cq) t->ibv.destroy_cq(d->cq);
    if (d->pd) t->ibv.dealloc_pd(d->pd);
    if (d->ctx) t->ibv.close_device(d->ctx);
    if (d->mem) munmap(d->mem, d->mem_len);
}

static void rd_close(struct jaccl_tp *tp)
{
    struct rd_tp *t = (struct rd_tp *)tp;
    if (!t) return;
    if (t->links) rd_drain(t);
    for (int i = 0; t->links && i < t->nlinks; i++)
        if (t->links[i].qp) t->ibv.destroy_qp(t->links[i].qp);
    for (int i = t->ndev - 1; i >= 0; i--) rd_dev_close(t, &t->dev[i]);
    if (t->list) t->ibv.free_device_list(t->list);
    jaccl_ibv_unload(&t->ibv);
    free(t->link_of);
    free(t->links);
    free(t->cables);
    free(t);
}

const struct jaccl_transport_ops jaccl_rdma_ops = {
    .name = "rdma",
    .open = rd_open,
    .connect = rd_connect,
    .links = rd_links,
    .progress = rd_progress,
    .close = rd_close,
};
