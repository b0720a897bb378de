/*
 * A verbs emulator for tests: the libibverbs entry points jaccl's RDMA
 * transport uses, loaded with JACCL_IBVERBS_LIB, moving data between
 * processes through a shared-memory "fabric" (VERBS_EMU_FABRIC names it).
 *
 * Each queue pair owns a slot of the fabric with an inbound byte ring.  A
 * sender's post_send queues the request; the emulator copies queued
 * requests into the destination's ring whenever the sender calls into
 * verbs.  The receiver's process drains its rings whenever it calls in:
 * a SEND takes the oldest posted receive (UC: none posted, the message is
 * lost; RC: it waits, as RNR retries would), an RDMA WRITE lands in the
 * region its rkey names.  A cable is a device name: both ends of a queue
 * pair must be on devices of the same name, as in the JACCL device file.
 *
 * Environment:
 *   VERBS_EMU_FABRIC   shm name of the fabric (default /jaccl-verbs-emu-UID)
 *   VERBS_EMU_DEVICES  comma-separated device names this host has (none if unset)
 *   VERBS_EMU_NO_RC=1  devices offer UC queue pairs only (like Thunderbolt)
 *   VERBS_EMU_FAULT    wc_error:N     the N-th send request completes in error
 *                      max_qp:N       creating a queue pair fails past N per device
 *                      max_mr:N       registering fails past N regions (0: at once)
 *                      link_down:D:N  device D's port goes down after N packets
 *   VERBS_EMU_FAULT_RANK  apply the fault only where JACCL_RANK is this
 */
#include <infiniband/verbs.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define EMU_API     __attribute__((visibility("default")))
#define EMU_SLOTS   256
#define EMU_RING    (4u << 20)
#define EMU_MAX_MSG (1u << 20)
#define EMU_MAX_DEV 32
#define EMU_MAX_MR  1024
#define EMU_MAX_QP  256
#define EMU_MAX_WR  4096
#define EMU_MAX_SGE 4

enum { PKT_SEND = 1, PKT_WRITE = 2 };

/* ---- the shared fabric ------------------------------------------------ */

struct emu_slot {
    atomic_uint claimed;
    atomic_uint qpn;
    atomic_int pid;
    atomic_uint state; /* enum ibv_qp_state of the owner's queue pair */
    uint32_t type;
    union ibv_gid gid;
    char dev[64];
    atomic_ullong head, tail; /* ring bytes written, read */
};

struct emu_fabric {
    atomic_uint gen;
    atomic_ullong packets, sends_lost; /* for tests: data moved, SENDs lost for want of a receive */
    atomic_uint down_set;              /* a link_down fault fired: cable down_dev is cut */
    char down_dev[64];
    struct emu_slot slot[EMU_SLOTS];
};

struct emu_pkt {
    uint32_t size, op, len, src_qpn;
    uint64_t raddr;
    uint32_t rkey, pad;
};

/* ---- this process's objects ------------------------------------------- */

struct emu_dev {
    struct ibv_device dev;
    int index, down;
    long packets;
};

struct emu_cq {
    struct ibv_cq cq;
    struct ibv_wc *wc;
    int cap, head, n;
};

struct emu_wr {
    uint64_t wr_id;
    int op, nsge, signaled;
    struct ibv_sge sge[EMU_MAX_SGE];
    uint64_t raddr;
    uint32_t rkey;
};

struct emu_q {
    struct emu_wr *wr;
    int cap, head, n;
};

struct emu_qp {
    struct ibv_qp qp;
    struct emu_dev *dev;
    int slot;
    uint32_t dest_qpn;
    struct emu_q sq, rq;
};

static pthread_mutex_t emu_lock = PTHREAD_MUTEX_INITIALIZER;
static struct emu_fabric *fab;
static char *rings;
static struct emu_dev devs[EMU_MAX_DEV];
static int ndevs = -1;
static struct ibv_mr *mrs[EMU_MAX_MR];
static struct emu_qp *qps[EMU_MAX_QP];
static struct {
    int wc_error, max_qp, max_mr, down_dev;
    long down_after, sends;
} fault = {.down_dev = -1};

static void emu_say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[verbs-emu pid %d] ", (int)getpid());
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int emu_map_fabric(void);

/*
 * Every process of a job parses before any data moves: a cut left by an
 * earlier job on this fabric is mended here.
 */
static void emu_parse_fault(void)
{
    if (emu_map_fabric() == 0) atomic_store(&fab->down_set, 0);
    const char *f = getenv("VERBS_EMU_FAULT"), *only = getenv("VERBS_EMU_FAULT_RANK");
    const char *rank = getenv("JACCL_RANK");
    if (!f || (only && (!rank || strcmp(only, rank) != 0))) return;
    char dev[64];
    long n;
    if (sscanf(f, "wc_error:%ld", &n) == 1)
        fault.wc_error = (int)n;
    else if (sscanf(f, "max_qp:%ld", &n) == 1)
        fault.max_qp = (int)n;
    else if (sscanf(f, "max_mr:%ld", &n) == 1)
        fault.max_mr = n > 0 ? (int)n : -1;
    else if (sscanf(f, "link_down:%63[^:]:%ld", dev, &n) == 2) {
        for (int i = 0; i < ndevs; i++)
            if (strcmp(devs[i].dev.name, dev) == 0) fault.down_dev = i;
        fault.down_after = n;
    } else
        emu_say("VERBS_EMU_FAULT='%s' not understood", f);
}

static void emu_parse_devices(void)
{
    const char *v = getenv("VERBS_EMU_DEVICES");
    ndevs = 0;
    while (v && *v && ndevs < EMU_MAX_DEV) {
        size_t n = strcspn(v, ",");
        struct emu_dev *d = &devs[ndevs];
        snprintf(d->dev.name, sizeof(d->dev.name), "%.*s", (int)n, v);
        snprintf(d->dev.dev_name, sizeof(d->dev.dev_name), "uverbs%d", ndevs);
        d->dev.node_type = IBV_NODE_CA;
        d->dev.transport_type = IBV_TRANSPORT_IB;
        d->index = ndevs++;
        v += n + (v[n] == ',');
    }
    emu_parse_fault();
}

static int emu_map_fabric(void)
{
    if (fab) return 0;
    char name[128];
    const char *v = getenv("VERBS_EMU_FABRIC");
    if (v)
        snprintf(name, sizeof(name), "%s", v);
    else
        snprintf(name, sizeof(name), "/jaccl-verbs-emu-%d", (int)getuid());
    size_t len = sizeof(struct emu_fabric) + (size_t)EMU_SLOTS * EMU_RING;
    int fd = shm_open(name, O_RDWR | O_CREAT, 0600);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || ((size_t)st.st_size < len && ftruncate(fd, (off_t)len))) {
        emu_say("cannot open fabric %s: %s", name, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return -1;
    fab = m;
    rings = (char *)m + sizeof(struct emu_fabric);
    return 0;
}

/* A cut cable is down on every process that has a device of that name. */
static int dev_down(struct emu_dev *d)
{
    if (!d->down && fab && atomic_load(&fab->down_set) && strcmp(fab->down_dev, d->dev.name) == 0)
        d->down = 1;
    return d->down;
}

/* ---- rings ------------------------------------------------------------ */

static void ring_put(int slot, uint64_t at, const void *src, size_t len)
{
    char *r = rings + (size_t)slot * EMU_RING;
    size_t off = (size_t)(at % EMU_RING), first = EMU_RING - off < len ? EMU_RING - off : len;
    memcpy(r + off, src, first);
    memcpy(r, (const char *)src + first, len - first);
}

static void ring_get(int slot, uint64_t at, void *dst, size_t len)
{
    const char *r = rings + (size_t)slot * EMU_RING;
    size_t off = (size_t)(at % EMU_RING), first = EMU_RING - off < len ? EMU_RING - off : len;
    memcpy(dst, r + off, first);
    memcpy((char *)dst + first, r, len - first);
}

static struct emu_slot *slot_of(uint32_t qpn, int *index)
{
    int i = (int)(qpn & 0x3ff) - 1;
    if (i < 0 || i >= EMU_SLOTS) return NULL;
    struct emu_slot *s = &fab->slot[i];
    if (!atomic_load(&s->claimed) || atomic_load(&s->qpn) != qpn) return NULL;
    *index = i;
    return s;
}

/* A free slot, or one whose owner died without destroying its queue pair. */
static int slot_claim(void)
{
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < EMU_SLOTS; i++) {
            struct emu_slot *s = &fab->slot[i];
            unsigned zero = 0;
            int pid = atomic_load(&s->pid);
            if (pass == 0 && atomic_compare_exchange_strong(&s->claimed, &zero, 1)) return i;
            if (pass == 1 && pid > 0 && kill(pid, 0) != 0 && errno == ESRCH &&
                atomic_compare_exchange_strong(&s->pid, &pid, (int)getpid()))
                return i;
        }
    return -1;
}

/* ---- completions ------------------------------------------------------ */

static void cq_push(struct ibv_cq *c, uint64_t wr_id, enum ibv_wc_status st, enum ibv_wc_opcode op,
                    uint32_t len, uint32_t qpn)
{
    struct emu_cq *q = (struct emu_cq *)c;
    if (q->n == q->cap) {
        emu_say("completion queue overrun (%d entries): a completion is lost", q->cap);
        return;
    }
    struct ibv_wc *w = &q->wc[(q->head + q->n++) % q->cap];
    memset(w, 0, sizeof(*w));
    w->wr_id = wr_id;
    w->status = st;
    w->opcode = op;
    w->byte_len = len;
    w->qp_num = qpn;
}

/* The queue pair fails: every posted request completes flushed. */
static void qp_error(struct emu_qp *q)
{
    q->qp.state = IBV_QPS_ERR;
    atomic_store(&fab->slot[q->slot].state, IBV_QPS_ERR);
    for (; q->sq.n > 0; q->sq.n--, q->sq.head = (q->sq.head + 1) % q->sq.cap)
        cq_push(q->qp.send_cq, q->sq.wr[q->sq.head].wr_id, IBV_WC_WR_FLUSH_ERR, IBV_WC_SEND, 0,
                q->qp.qp_num);
    for (; q->rq.n > 0; q->rq.n--, q->rq.head = (q->rq.head + 1) % q->rq.cap)
        cq_push(q->qp.recv_cq, q->rq.wr[q->rq.head].wr_id, IBV_WC_WR_FLUSH_ERR, IBV_WC_RECV, 0,
                q->qp.qp_num);
}

/* ---- sending ---------------------------------------------------------- */

static size_t wr_len(const struct emu_wr *w)
{
    size_t n = 0;
    for (int i = 0; i < w->nsge; i++) n += w->sge[i].length;
    return n;
}

static void sq_complete(struct emu_qp *q, enum ibv_wc_status st)
{
    struct emu_wr *w = &q->sq.wr[q->sq.head];
    enum ibv_wc_opcode op = w->op == PKT_SEND ? IBV_WC_SEND : IBV_WC_RDMA_WRITE;
    if (w->signaled || st != IBV_WC_SUCCESS)
        cq_push(q->qp.send_cq, w->wr_id, st, op, (uint32_t)wr_len(w), q->qp.qp_num);
    q->sq.head = (q->sq.head + 1) % q->sq.cap;
    q->sq.n--;
    if (st != IBV_WC_SUCCESS) qp_error(q);
}

/* Copy the head request into the destination's ring; 0 when the ring is full. */
static int sq_push_one(struct emu_qp *q)
{
    struct emu_wr *w = &q->sq.wr[q->sq.head];
    int di = 0, rc = q->qp.qp_type == IBV_QPT_RC;
    struct emu_slot *d = slot_of(q->dest_qpn, &di);
    if (fault.wc_error && ++fault.sends == fault.wc_error) {
        sq_complete(q, IBV_WC_REM_OP_ERR);
        return 1;
    }
    if (dev_down(q->dev) || !d) { /* nobody answers: RC gives up, UC never knows */
        sq_complete(q, rc ? IBV_WC_RETRY_EXC_ERR : IBV_WC_SUCCESS);
        return 1;
    }
    size_t len = wr_len(w), total = (sizeof(struct emu_pkt) + len + 7) & ~(size_t)7;
    uint64_t head = atomic_load(&d->head);
    if (total > EMU_RING - (head - atomic_load_explicit(&d->tail, memory_order_acquire))) return 0;
    struct emu_pkt p = {
        (uint32_t)total, (uint32_t)w->op, (uint32_t)len, q->qp.qp_num, w->raddr, w->rkey, 0};
    ring_put(di, head, &p, sizeof(p));
    uint64_t at = head + sizeof(p);
    for (int i = 0; i < w->nsge; i++) {
        ring_put(di, at, (void *)(uintptr_t)w->sge[i].addr, w->sge[i].length);
        at += w->sge[i].length;
    }
    atomic_store_explicit(&d->head, head + total, memory_order_release);
    atomic_fetch_add(&fab->packets, 1);
    if (fault.down_dev == q->dev->index && ++q->dev->packets >= fault.down_after) {
        emu_say("fault: %s goes down (both ends: the cable is cut)", q->dev->dev.name);
        snprintf(fab->down_dev, sizeof(fab->down_dev), "%s", q->dev->dev.name);
        atomic_store(&fab->down_set, 1);
    }
    sq_complete(q, IBV_WC_SUCCESS);
    return 1;
}

static void sq_push(struct emu_qp *q)
{
    while (q->sq.n > 0 && q->qp.state == IBV_QPS_RTS && sq_push_one(q)) {
    }
}

/* ---- receiving -------------------------------------------------------- */

static struct ibv_mr *mr_by_key(uint32_t key)
{
    for (int i = 0; i < EMU_MAX_MR; i++)
        if (mrs[i] && mrs[i]->rkey == key) return mrs[i];
    return NULL;
}

static int write_in(struct emu_qp *q, int slot, uint64_t at, const struct emu_pkt *p)
{
    struct ibv_mr *mr = mr_by_key(p->rkey);
    if (!mr || p->raddr < (uintptr_t)mr->addr ||
        p->raddr + p->len > (uintptr_t)mr->addr + mr->length) {
        emu_say("RDMA WRITE to %#llx+%u with rkey %#x hits no registered region: QP %#x fails",
                (unsigned long long)p->raddr, p->len, p->rkey, q->qp.qp_num);
        qp_error(q);
        return -1;
    }
    ring_get(slot, at, (void *)(uintptr_t)p->raddr, p->len);
    return 0;
}

/* Scatter a SEND into the oldest posted receive. */
static void recv_in(struct emu_qp *q, int slot, uint64_t at, const struct emu_pkt *p)
{
    struct emu_wr *w = &q->rq.wr[q->rq.head];
    size_t left = p->len;
    if (left > wr_len(w)) {
        cq_push(q->qp.recv_cq, w->wr_id, IBV_WC_LOC_LEN_ERR, IBV_WC_RECV, 0, q->qp.qp_num);
        q->rq.head = (q->rq.head + 1) % q->rq.cap;
        q->rq.n--;
        qp_error(q);
        return;
    }
    for (int i = 0; i < w->nsge && left > 0; i++) {
        size_t n = left < w->sge[i].length ? left : w->sge[i].length;
        ring_get(slot, at, (void *)(uintptr_t)w->sge[i].addr, n);
        at += n;
        left -= n;
    }
    cq_push(q->qp.recv_cq, w->wr_id, IBV_WC_SUCCESS, IBV_WC_RECV, p->len, q->qp.qp_num);
    q->rq.head = (q->rq.head + 1) % q->rq.cap;
    q->rq.n--;
}

/* Handle the packet at the ring's tail; 0 when it must wait (RC, nothing to land in). */
static int deliver_one(struct emu_qp *q, struct emu_slot *s, uint64_t tail)
{
    struct emu_pkt p;
    ring_get(q->slot, tail, &p, sizeof(p));
    int rc = q->qp.qp_type == IBV_QPT_RC,
        ready = q->qp.state == IBV_QPS_RTR || q->qp.state == IBV_QPS_RTS;
    int lost = dev_down(q->dev) || q->qp.state == IBV_QPS_ERR;
    if (!lost && (!ready || (p.op == PKT_SEND && q->rq.n == 0))) {
        if (rc) return 0; /* the sender retries until we can take it */
        lost = 1;         /* UC: dropped, as the wire would */
        if (p.op == PKT_SEND) atomic_fetch_add(&fab->sends_lost, 1);
        if (getenv("VERBS_EMU_VERBOSE")) emu_say("UC: dropped a packet to QP %#x", q->qp.qp_num);
    }
    if (!lost && p.op == PKT_SEND) recv_in(q, q->slot, tail + sizeof(p), &p);
    if (!lost && p.op == PKT_WRITE) write_in(q, q->slot, tail + sizeof(p), &p);
    atomic_store_explicit(&s->tail, tail + p.size, memory_order_release);
    return 1;
}

static void deliver(struct emu_qp *q)
{
    struct emu_slot *s = &fab->slot[q->slot];
    for (;;) {
        uint64_t tail = atomic_load(&s->tail);
        if (tail == atomic_load_explicit(&s->head, memory_order_acquire)) return;
        if (!deliver_one(q, s, tail)) return;
    }
}

/* Everything this process's queue pairs can do now. */
static void engine(void)
{
    for (int i = 0; i < EMU_MAX_QP; i++)
        if (qps[i]) sq_push(qps[i]);
    for (int i = 0; i < EMU_MAX_QP; i++)
        if (qps[i]) deliver(qps[i]);
}

/* ---- ops table -------------------------------------------------------- */

static int q_add(struct emu_q *q, uint64_t id, int op, int signaled, const struct ibv_sge *sg,
                 int nsge)
{
    if (q->n == q->cap || nsge > EMU_MAX_SGE || nsge < 0) return ENOMEM;
    struct emu_wr *w = &q->wr[(q->head + q->n) % q->cap];
    *w = (struct emu_wr){.wr_id = id, .op = op, .nsge = nsge, .signaled = signaled};
    memcpy(w->sge, sg, sizeof(*sg) * (size_t)nsge);
    for (int i = 0; i < nsge; i++) {
        struct ibv_mr *mr = mr_by_key(sg[i].lkey);
        if (!mr || sg[i].addr < (uintptr_t)mr->addr ||
            sg[i].addr + sg[i].length > (uintptr_t)mr->addr + mr->length) {
            emu_say("a work request's buffer %#llx+%u is outside region lkey %#x",
                    (unsigned long long)sg[i].addr, sg[i].length, sg[i].lkey);
            return EINVAL;
        }
    }
    q->n++;
    return 0;
}

static int emu_post_send(struct ibv_qp *qp, struct ibv_send_wr *wr, struct ibv_send_wr **bad)
{
    struct emu_qp *q = (struct emu_qp *)qp;
    int rc = 0;
    pthread_mutex_lock(&emu_lock);
    for (; wr && rc == 0; wr = wr->next) {
        int op = wr->opcode == IBV_WR_SEND         ? PKT_SEND
                 : wr->opcode == IBV_WR_RDMA_WRITE ? PKT_WRITE
                                                   : 0;
        /* In the error state requests are taken and flushed, as providers do. */
        if ((qp->state != IBV_QPS_RTS && qp->state != IBV_QPS_ERR) || !op) rc = EINVAL;
        if (op == PKT_SEND && (size_t)wr->num_sge > 0 && wr->sg_list[0].length > EMU_MAX_MSG)
            rc = EINVAL;
        int signaled = qp->qp_type == IBV_QPT_RC || qp->qp_type == IBV_QPT_UC
                           ? (wr->send_flags & IBV_SEND_SIGNALED) != 0
                           : 1;
        if (rc == 0) rc = q_add(&q->sq, wr->wr_id, op, signaled, wr->sg_list, wr->num_sge);
        if (rc == 0) {
            q->sq.wr[(q->sq.head + q->sq.n - 1) % q->sq.cap].raddr = wr->wr.rdma.remote_addr;
            q->sq.wr[(q->sq.head + q->sq.n - 1) % q->sq.cap].rkey = wr->wr.rdma.rkey;
        }
        if (rc) *bad = wr;
    }
    if (qp->state == IBV_QPS_ERR) qp_error(q);
    engine();
    pthread_mutex_unlock(&emu_lock);
    return rc;
}

static int emu_post_recv(struct ibv_qp *qp, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad)
{
    struct emu_qp *q = (struct emu_qp *)qp;
    int rc = 0;
    pthread_mutex_lock(&emu_lock);
    engine(); /* what arrived before this receive was posted cannot land in it */
    for (; wr && rc == 0; wr = wr->next) {
        if (qp->state == IBV_QPS_RESET) rc = EINVAL;
        if (rc == 0) rc = q_add(&q->rq, wr->wr_id, 0, 1, wr->sg_list, wr->num_sge);
        if (rc) *bad = wr;
    }
    if (qp->state == IBV_QPS_ERR) qp_error(q); /* taken and flushed */
    pthread_mutex_unlock(&emu_lock);
    return rc;
}

static int emu_poll_cq(struct ibv_cq *cq, int n, struct ibv_wc *wc)
{
    struct emu_cq *q = (struct emu_cq *)cq;
    int got = 0;
    pthread_mutex_lock(&emu_lock);
    engine();
    for (; got < n && q->n > 0; got++, q->n--, q->head = (q->head + 1) % q->cap)
        wc[got] = q->wc[q->head];
    pthread_mutex_unlock(&emu_lock);
    return got;
}

/* ---- entry points ----------------------------------------------------- */

struct emu_ctx {
    struct ibv_context ctx;
    struct emu_dev *dev;
};

EMU_API struct ibv_device **ibv_get_device_list(int *num)
{
    pthread_mutex_lock(&emu_lock);
    if (ndevs < 0) emu_parse_devices();
    struct ibv_device **l = calloc((size_t)ndevs + 1, sizeof(*l));
    for (int i = 0; l && i < ndevs; i++) l[i] = &devs[i].dev;
    if (num) *num = l ? ndevs : 0;
    pthread_mutex_unlock(&emu_lock);
    if (!l) errno = ENOMEM;
    return l;
}

EMU_API void ibv_free_device_list(struct ibv_device **list)
{
    free(list);
}

EMU_API const char *ibv_get_device_name(struct ibv_device *dev)
{
    return dev->name;
}

EMU_API struct ibv_context *ibv_open_device(struct ibv_device *dev)
{
    struct emu_ctx *c = calloc(1, sizeof(*c));
    if (!c || emu_map_fabric() != 0) {
        free(c);
        errno = ENODEV;
        return NULL;
    }
    c->dev = (struct emu_dev *)dev;
    c->ctx.device = dev;
    c->ctx.cmd_fd = c->ctx.async_fd = -1;
    c->ctx.ops.post_send = emu_post_send;
    c->ctx.ops.post_recv = emu_post_recv;
    c->ctx.ops.poll_cq = emu_poll_cq;
    pthread_mutex_init(&c->ctx.mutex, NULL);
    return &c->ctx;
}

EMU_API int ibv_close_device(struct ibv_context *ctx)
{
    pthread_mutex_destroy(&ctx->mutex);
    free(ctx);
    return 0;
}

EMU_API int ibv_query_device(struct ibv_context *ctx, struct ibv_device_attr *a)
{
    memset(a, 0, sizeof(*a));
    snprintf(a->fw_ver, sizeof(a->fw_ver), "verbs-emu");
    a->max_mr_size = 1ull << 40;
    a->max_qp = 64; /* the faults below fail creation past their limit, as when others use them */
    a->max_qp_wr = EMU_MAX_WR;
    a->max_sge = EMU_MAX_SGE;
    a->max_cqe = 1 << 16;
    a->max_mr = EMU_MAX_MR;
    a->max_pd = 64;
    a->phys_port_cnt = 1;
    (void)ctx;
    return 0;
}

#undef ibv_query_port
EMU_API int ibv_query_port(struct ibv_context *ctx, uint8_t port, struct _compat_ibv_port_attr *pa)
{
    struct ibv_port_attr *a = (struct ibv_port_attr *)pa;
    if (port != 1) return EINVAL;
    a->state = dev_down(((struct emu_ctx *)ctx)->dev) ? IBV_PORT_DOWN : IBV_PORT_ACTIVE;
    a->max_mtu = IBV_MTU_4096;
    a->active_mtu = IBV_MTU_1024;
    a->gid_tbl_len = 2;
    a->max_msg_sz = EMU_MAX_MSG;
    a->link_layer = IBV_LINK_LAYER_ETHERNET;
    a->lid = 0;
    return 0;
}

/* Index 0: link-local; index 1: IPv4-mapped ::ffff:10.dev.pid (what JACCL looks for). */
static void emu_gid(const struct emu_dev *d, int index, union ibv_gid *g)
{
    unsigned pid = (unsigned)getpid();
    memset(g, 0, sizeof(*g));
    if (index == 0) {
        g->raw[0] = 0xfe;
        g->raw[1] = 0x80;
        g->raw[11] = (uint8_t)d->index;
        memcpy(g->raw + 12, &pid, 4);
        return;
    }
    g->raw[10] = g->raw[11] = 0xff;
    g->raw[12] = 10;
    g->raw[13] = (uint8_t)d->index;
    g->raw[14] = (uint8_t)(pid >> 8);
    g->raw[15] = (uint8_t)pid;
}

EMU_API int ibv_query_gid(struct ibv_context *ctx, uint8_t port, int index, union ibv_gid *gid)
{
    if (port != 1 || index < 0 || index > 1) return -1;
    emu_gid(((struct emu_ctx *)ctx)->dev, index, gid);
    return 0;
}

EMU_API struct ibv_pd *ibv_alloc_pd(struct ibv_context *ctx)
{
    struct ibv_pd *pd = calloc(1, sizeof(*pd));
    if (pd) pd->context = ctx;
    return pd;
}

EMU_API int ibv_dealloc_pd(struct ibv_pd *pd)
{
    free(pd);
    return 0;
}

#undef ibv_reg_mr
EMU_API struct ibv_mr *ibv_reg_mr(struct ibv_pd *pd, void *addr, size_t len, int access)
{
    static uint32_t gen;
    int live = 0, free_i = -1;
    pthread_mutex_lock(&emu_lock);
    for (int i = 0; i < EMU_MAX_MR; i++) {
        live += mrs[i] != NULL;
        if (!mrs[i] && free_i < 0) free_i = i;
    }
    int limit = fault.max_mr > 0 ? fault.max_mr : fault.max_mr < 0 ? 0 : EMU_MAX_MR;
    struct ibv_mr *mr = live < limit && free_i >= 0 ? calloc(1, sizeof(*mr)) : NULL;
    if (mr) {
        *mr = (struct ibv_mr){.context = pd->context, .pd = pd, .addr = addr, .length = len};
        mr->lkey = mr->rkey = ((++gen & 0xffff) << 16) | (uint32_t)(free_i + 1);
        mr->handle = (uint32_t)access;
        mrs[free_i] = mr;
    }
    pthread_mutex_unlock(&emu_lock);
    if (!mr) errno = ENOMEM;
    return mr;
}

EMU_API int ibv_dereg_mr(struct ibv_mr *mr)
{
    pthread_mutex_lock(&emu_lock);
    for (int i = 0; i < EMU_MAX_MR; i++)
        if (mrs[i] == mr) mrs[i] = NULL;
    pthread_mutex_unlock(&emu_lock);
    free(mr);
    return 0;
}

EMU_API struct ibv_cq *ibv_create_cq(struct ibv_context *ctx, int cqe, void *user,
                                     struct ibv_comp_channel *ch, int vector)
{
    struct emu_cq *q = calloc(1, sizeof(*q));
    if (!q || cqe < 1 || !(q->wc = calloc((size_t)cqe, sizeof(*q->wc)))) {
        free(q);
        errno = ENOMEM;
        return NULL;
    }
    q->cap = q->cq.cqe = cqe;
    q->cq.context = ctx;
    q->cq.cq_context = user;
    (void)ch;
    (void)vector;
    return &q->cq;
}

EMU_API int ibv_destroy_cq(struct ibv_cq *cq)
{
    struct emu_cq *q = (struct emu_cq *)cq;
    free(q->wc);
    free(q);
    return 0;
}

static int qp_count(const struct emu_dev *d)
{
    int n = 0;
    for (int i = 0; i < EMU_MAX_QP; i++) n += qps[i] && qps[i]->dev == d;
    return n;
}

static int qp_check(struct ibv_pd *pd, const struct ibv_qp_init_attr *a, struct emu_dev **dev)
{
    *dev = ((struct emu_ctx *)pd->context)->dev;
    const char *norc = getenv("VERBS_EMU_NO_RC");
    if (a->qp_type != IBV_QPT_RC && a->qp_type != IBV_QPT_UC) return EOPNOTSUPP;
    if (a->qp_type == IBV_QPT_RC && norc && strcmp(norc, "1") == 0) return EOPNOTSUPP;
    if (a->cap.max_send_wr > EMU_MAX_WR || a->cap.max_recv_wr > EMU_MAX_WR ||
        a->cap.max_send_sge > EMU_MAX_SGE || a->cap.max_recv_sge > EMU_MAX_SGE || !a->send_cq ||
        !a->recv_cq)
        return EINVAL;
    if (qp_count(*dev) >= (fault.max_qp ? fault.max_qp : 64)) return ENOMEM;
    return 0;
}

static struct emu_qp *qp_new(struct ibv_pd *pd, const struct ibv_qp_init_attr *a)
{
    struct emu_qp *q = calloc(1, sizeof(*q));
    int i = 0;
    while (i < EMU_MAX_QP && qps[i]) i++;
    if (!q || i == EMU_MAX_QP) goto fail;
    q->sq.cap = (int)a->cap.max_send_wr + 1;
    q->rq.cap = (int)a->cap.max_recv_wr + 1;
    q->sq.wr = calloc((size_t)q->sq.cap, sizeof(struct emu_wr));
    q->rq.wr = calloc((size_t)q->rq.cap, sizeof(struct emu_wr));
    if (!q->sq.wr || !q->rq.wr || (q->slot = slot_claim()) < 0) goto fail;
    qps[i] = q;
    q->qp = (struct ibv_qp){.context = pd->context,
                            .qp_context = a->qp_context,
                            .pd = pd,
                            .send_cq = a->send_cq,
                            .recv_cq = a->recv_cq,
                            .state = IBV_QPS_RESET,
                            .qp_type = a->qp_type};
    return q;
fail:
    if (q) free(q->sq.wr);
    if (q) free(q->rq.wr);
    free(q);
    return NULL;
}

EMU_API struct ibv_qp *ibv_create_qp(struct ibv_pd *pd, struct ibv_qp_init_attr *a)
{
    struct emu_dev *dev;
    pthread_mutex_lock(&emu_lock);
    int err = qp_check(pd, a, &dev);
    struct emu_qp *q = err ? NULL : qp_new(pd, a);
    if (q) {
        struct emu_slot *s = &fab->slot[q->slot];
        unsigned gen = atomic_fetch_add(&fab->gen, 1) + 1;
        q->dev = dev;
        q->qp.qp_num = ((gen & 0x3fff) << 10) | (uint32_t)(q->slot + 1);
        atomic_store(&s->head, 0);
        atomic_store(&s->tail, 0);
        atomic_store(&s->pid, (int)getpid());
        atomic_store(&s->state, IBV_QPS_RESET);
        s->type = a->qp_type;
        snprintf(s->dev, sizeof(s->dev), "%s", dev->dev.name);
        emu_gid(dev, 1, &s->gid);
        atomic_store(&s->qpn, q->qp.qp_num);
    }
    pthread_mutex_unlock(&emu_lock);
    if (!q) errno = err ? err : ENOMEM;
    return q ? &q->qp : NULL;
}

/* RTR: the destination must exist, on a device of the same name (the cable), at that GID. */
static int qp_rtr(struct emu_qp *q, const struct ibv_qp_attr *a)
{
    int di = 0;
    struct emu_slot *d = slot_of(a->dest_qp_num, &di);
    if (!d) {
        emu_say("RTR: no queue pair %#x on the fabric", a->dest_qp_num);
        return EINVAL;
    }
    if (strcmp(d->dev, q->dev->dev.name) != 0 || d->type != q->qp.qp_type) {
        emu_say("RTR: QP %#x on %s cannot reach QP %#x on %s (no such cable, or another type)",
                q->qp.qp_num, q->dev->dev.name, a->dest_qp_num, d->dev);
        return EINVAL;
    }
    if (!a->ah_attr.is_global || memcmp(a->ah_attr.grh.dgid.raw, d->gid.raw, 16) != 0 ||
        a->ah_attr.grh.sgid_index > 1 || a->path_mtu > IBV_MTU_1024) {
        emu_say("RTR: QP %#x: wrong GID, GID index or MTU for QP %#x", q->qp.qp_num,
                a->dest_qp_num);
        return EINVAL;
    }
    q->dest_qpn = a->dest_qp_num;
    return 0;
}

static int qp_needs(enum ibv_qp_state to, int rc)
{
    switch (to) {
    case IBV_QPS_INIT:
        return IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS;
    case IBV_QPS_RTR:
        return IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
               (rc ? IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER : 0);
    case IBV_QPS_RTS:
        return IBV_QP_STATE | IBV_QP_SQ_PSN |
               (rc ? IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_MAX_QP_RD_ATOMIC
                   : 0);
    default:
        return IBV_QP_STATE;
    }
}

EMU_API int ibv_modify_qp(struct ibv_qp *qp, struct ibv_qp_attr *a, int mask)
{
    struct emu_qp *q = (struct emu_qp *)qp;
    enum ibv_qp_state to = a->qp_state, from = qp->state;
    int ok =
        to == IBV_QPS_ERR || to == IBV_QPS_RESET || (from == IBV_QPS_RESET && to == IBV_QPS_INIT) ||
        (from == IBV_QPS_INIT && to == IBV_QPS_RTR) || (from == IBV_QPS_RTR && to == IBV_QPS_RTS);
    int need = qp_needs(to, qp->qp_type == IBV_QPT_RC), rc = 0;
    if (!(mask & IBV_QP_STATE) || !ok || (mask & need) != need) {
        emu_say("modify_qp %#x: %d -> %d with attribute mask %#x refused (needs %#x)", qp->qp_num,
                (int)from, (int)to, mask, need);
        return EINVAL;
    }
    pthread_mutex_lock(&emu_lock);
    if (to == IBV_QPS_RTR) rc = qp_rtr(q, a);
    if (rc == 0 && to == IBV_QPS_ERR) qp_error(q);
    if (rc == 0) {
        qp->state = to;
        atomic_store(&fab->slot[q->slot].state, to);
    }
    pthread_mutex_unlock(&emu_lock);
    return rc;
}

EMU_API int ibv_destroy_qp(struct ibv_qp *qp)
{
    struct emu_qp *q = (struct emu_qp *)qp;
    pthread_mutex_lock(&emu_lock);
    for (int i = 0; i < EMU_MAX_QP; i++)
        if (qps[i] == q) qps[i] = NULL;
    struct emu_slot *s = &fab->slot[q->slot];
    atomic_store(&s->qpn, 0);
    atomic_store(&s->pid, 0);
    atomic_store(&s->claimed, 0);
    pthread_mutex_unlock(&emu_lock);
    free(q->sq.wr);
    free(q->rq.wr);
    free(q);
    return 0;
}

EMU_API const char *ibv_wc_status_str(enum ibv_wc_status st)
{
    switch (st) {
    case IBV_WC_SUCCESS:
        return "success";
    case IBV_WC_LOC_LEN_ERR:
        return "local length error";
    case IBV_WC_WR_FLUSH_ERR:
        return "Work Request Flushed Error";
    case IBV_WC_REM_OP_ERR:
        return "remote operation error";
    case IBV_WC_RETRY_EXC_ERR:
        return "transport retry counter exceeded";
    default:
        return "other error";
    }
}

/* For tests (not a verbs call): what the fabric has carried.  0, or -1 if it cannot be mapped. */
EMU_API int verbs_emu_stats(unsigned long long *packets, unsigned long long *sends_lost);
EMU_API int verbs_emu_stats(unsigned long long *packets, unsigned long long *sends_lost)
{
    pthread_mutex_lock(&emu_lock);
    int rc = emu_map_fabric();
    if (rc == 0) {
        *packets = atomic_load(&fab->packets);
        *sends_lost = atomic_load(&fab->sends_lost);
    }
    pthread_mutex_unlock(&emu_lock);
    return rc;
}
