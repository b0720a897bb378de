/*
 * Shared-memory transport: links to the ranks of this host (shm.h has the
 * layout).  Small transfers are copied through the rings; large ones are
 * read by the receiver straight from the sender's buffer.  Waits poll
 * (yielding between polls only where ranks outnumber cores), then sleep on
 * a futex doorbell that peers ring, when they see we sleep, after changing
 * something we may wait for.
 */
#include "transport/shm/shm.h"
#include "util/copy.h"
#include "util/log.h"
#include "util/time.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define CMA_MIN       ((size_t)64 << 10)  /* below this, two copies beat a system call */
#define CMA_BULK_MIN  ((size_t)256 << 10) /* oversubscribed bulk sends: see shm_cma_pays */
#define WAIT_SLICE_NS 2000000LL           /* futex sleeps: short, to see the abort flag */
#define LIVENESS_NS   50000000LL
#define SPIN_POLLS    16 /* idle polls between looks at the clock (a poll is ~40 ns) */
#define YIELD_POLLS   8  /* oversubscribed: polls before giving the core to a rank that needs it */
#define PURE_SPIN_NS  2000LL /* a round trip on idle cores; after it, the peer may need a core */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline uint64_t rec_bytes(uint64_t payload)
{
    return (SHM_REC_HDR + payload + SHM_CL - 1) & ~(uint64_t)(SHM_CL - 1);
}

/* Wake local rank j if it sleeps; the fence pairs with the one in shm_sleep. */
static void shm_notify(struct shm_tp *t, int j)
{
    struct shm_rank *r = &t->ranks[j];
    atomic_thread_fence(memory_order_seq_cst);
    if (!atomic_load_explicit(&r->sleeping, memory_order_relaxed)) return;
    atomic_fetch_add(&r->bell, 1);
    syscall(SYS_futex, &r->bell, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* Queue j for shm_wake_queued: one fence per scan, however many records it moved. */
static inline void shm_wake_later(struct shm_tp *t, int j)
{
    if (t->wstamp[j] == t->gen) return;
    t->wstamp[j] = t->gen;
    t->wake[t->nwake++] = j;
}

static void shm_wake_queued(struct shm_tp *t)
{
    atomic_thread_fence(memory_order_seq_cst);
    for (int k = 0; k < t->nwake; k++) {
        struct shm_rank *r = &t->ranks[t->wake[k]];
        if (!atomic_load_explicit(&r->sleeping, memory_order_relaxed)) continue;
        atomic_fetch_add(&r->bell, 1);
        syscall(SYS_futex, &r->bell, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
    }
    t->nwake = 0;
}

static void ring_write(struct shm_end *e, uint64_t pos, const void *src, size_t n)
{
    size_t off = (size_t)(pos & (e->size - 1)), first = (size_t)e->size - off;
    if (first > n) first = n;
    jaccl_copy(e->ring + off, src, first);
    if (n > first) jaccl_copy(e->ring, (const char *)src + first, n - first);
}

static void ring_read(const struct shm_end *e, uint64_t pos, void *dst, size_t n)
{
    size_t off = (size_t)(pos & (e->size - 1)), first = (size_t)e->size - off;
    if (first > n) first = n;
    jaccl_copy(dst, e->ring + off, first);
    if (n > first) jaccl_copy((char *)dst + first, e->ring, n - first);
}

/* The header of the record at pos (records start on a cache line: it never wraps). */
static inline struct shm_rec *ring_rec(const struct shm_end *e, uint64_t pos)
{
    return (struct shm_rec *)(void *)(e->ring + (pos & (e->size - 1)));
}

/* Free bytes in our outgoing ring; reloads the consumer's tail only when short. */
static inline uint64_t ring_space(struct shm_end *e, uint64_t need)
{
    uint64_t space = e->size - (e->head - e->tail);
    if (space >= need) return space;
    e->tail = atomic_load_explicit(&e->ch->tail, memory_order_acquire);
    return e->size - (e->head - e->tail);
}

/* Publish the record at e->head (its payload already written) and move past it. */
static inline void rec_publish(struct shm_end *e, uint32_t len, uint32_t kind, uint64_t bytes)
{
    struct shm_rec *h = ring_rec(e, e->head);
    h->len = len;
    h->kind = kind;
    atomic_store_explicit(&h->tag, e->head ^ e->salt, memory_order_release);
    e->head += bytes;
}

/* Describe the rest of x for the receiver to read in place. */
static int send_cma(struct shm_end *e, struct jaccl_xfer *x)
{
    struct shm_cma_desc d = {(uint64_t)(uintptr_t)x->buf + x->done, x->len - x->done};
    uint64_t need = rec_bytes(sizeof(d));
    if (ring_space(e, need) < need) return 0;
    ring_write(e, e->head + SHM_REC_HDR, &d, sizeof(d));
    e->cma_out = x->len - x->done;
    rec_publish(e, 0, SHM_REC_CMA, need);
    return 1;
}

/* Copy a record of x (at most e->chunk) into the ring if it fits; 1 if it did. */
static inline int send_inline(struct shm_end *e, struct jaccl_xfer *x)
{
    uint64_t n = x->len - x->done;
    if (n == 0) return 0;
    if (n > e->chunk) n = e->chunk;
    uint64_t space = ring_space(e, rec_bytes(n)) & ~(uint64_t)(SHM_CL - 1);
    if (space < SHM_CL) return 0;
    if (rec_bytes(n) > space) n = space - SHM_REC_HDR; /* part of it, the rest when there is room */
    ring_write(e, e->head + SHM_REC_HDR, (const char *)x->buf + x->done, (size_t)n);
    x->done += n;
    rec_publish(e, (uint32_t)n, SHM_REC_INLINE, rec_bytes(n));
    return 1;
}

/*
 * Where ranks outnumber cores, the cores' time is what runs out: a single
 * copy halves it for plain copies into their final place, even where it is
 * slower per byte than memcpy (4 ranks here: all-gathers of 1-16 MiB
 * 1.2-1.6x faster).  Not for data reduced on arrival: the receiver reads it
 * in cache-sized segments, a system call each (all-reduces 2-4x slower).
 * The caller has checked that the peer lets us (JACCL_SHM_SINGLE_COPY=0: never).
 */
static int shm_cma_pays(struct shm_tp *t, const struct jaccl_xfer *x)
{
    if (t->oversub && (x->flags & JACCL_XFER_BULK) && x->len - x->done >= CMA_BULK_MIN) return 1;
    return jaccl_shm_cma_fast(t);
}

/* Advance the head send of a stream; returns 1 if anything changed. */
static int shm_send(struct shm_tp *t, int j, struct jaccl_xfer *x)
{
    struct shm_end *e = &t->out[j];
    if (e->cma_out) {
        uint64_t a = atomic_load_explicit(&e->ch->ack, memory_order_acquire);
        if (a == e->ack_seen) return 0;
        x->done += a - e->ack_seen;
        e->cma_out -= a - e->ack_seen;
        e->ack_seen = a;
        return 1;
    }
    if (e->single_copy && x->len - x->done >= CMA_MIN && shm_cma_pays(t, x)) {
        int moved = send_cma(e, x);
        if (moved) shm_wake_later(t, j);
        return moved;
    }
    if (!send_inline(e, x)) return 0;
    while (x->done < x->len) { /* wake the receiver now: it copies out while we copy in */
        shm_notify(t, j);
        if (!send_inline(e, x)) break;
    }
    shm_wake_later(t, j);
    return 1;
}

/* Take the next record's header; 0 when none has arrived. */
static inline int recv_header(struct shm_end *e)
{
    const struct shm_rec *h = ring_rec(e, e->tail);
    if (atomic_load_explicit(&h->tag, memory_order_acquire) != (e->tail ^ e->salt)) return 0;
    e->rec_kind = h->kind;
    if (h->kind == SHM_REC_CMA) {
        struct shm_cma_desc d;
        ring_read(e, e->tail + SHM_REC_HDR, &d, sizeof(d));
        e->rec_left = d.len;
        e->rec_addr = d.addr;
        e->tail += rec_bytes(sizeof(d));
    } else {
        e->rec_left = h->len;
        e->tail += SHM_REC_HDR;
    }
    return 1;
}

/* Read n bytes of the sender's buffer into dst (one copy). */
static jaccl_result_t recv_cma(struct shm_tp *t, int j, struct shm_end *e, void *dst, uint64_t *n)
{
    struct iovec l = {dst, (size_t)*n}, r = {(void *)(uintptr_t)e->rec_addr, (size_t)*n};
    ssize_t got = process_vm_readv(t->ranks[j].pid, &l, 1, &r, 1, 0);
    if (got <= 0)
        return jaccl_err_set(t->base.err, JACCL_ERR_REMOTE,
                             "shm: reading %llu bytes from rank %d (pid %d, this host) failed: "
                             "%s; it exited or failed: see its own error",
                             (unsigned long long)*n, t->lrank[j], (int)t->ranks[j].pid,
                             got < 0 ? strerror(errno) : "nothing read");
    /* Read, then check: a sender that gave up may have freed what we read. */
    if (atomic_load(&t->ranks[j].failed))
        return jaccl_err_set(t->base.err, JACCL_ERR_REMOTE,
                             "rank %d gave up a transfer to us (it failed: see its own error)",
                             t->lrank[j]);
    *n = (uint64_t)got;
    e->rec_addr += *n;
    atomic_store_explicit(&e->ch->ack, atomic_load_explicit(&e->ch->ack, memory_order_relaxed) + *n,
                          memory_order_release);
    return JACCL_SUCCESS;
}

/* Advance the head receive of a stream. */
static jaccl_result_t shm_recv(struct shm_tp *t, int j, struct jaccl_xfer *x, int *moved)
{
    struct shm_end *e = &t->in[j];
    uint64_t tail0 = e->tail;
    int acked = 0;
    while (x->done < x->len) {
        if (e->rec_left == 0 && !recv_header(e)) break;
        uint64_t n = x->len - x->done;
        if (n > e->rec_left) n = e->rec_left;
        char *dst = (char *)x->buf + x->done;
        if (e->rec_kind == SHM_REC_CMA) {
            jaccl_result_t rc = recv_cma(t, j, e, dst, &n);
            if (rc != JACCL_SUCCESS) return rc;
            acked = 1;
        } else {
            ring_read(e, e->tail, dst, (size_t)n);
            e->tail += n;
        }
        x->done += n;
        e->rec_left -= n;
        if (e->rec_left == 0) e->tail = (e->tail + SHM_CL - 1) & ~(uint64_t)(SHM_CL - 1);
        *moved = 1;
    }
    if (e->tail != tail0) atomic_store_explicit(&e->ch->tail, e->tail, memory_order_release);
    if (e->tail != tail0 || acked) shm_wake_later(t, j);
    return JACCL_SUCCESS;
}

/* One pass over the head transfer of every stream; counts what is still pending. */
static jaccl_result_t shm_scan(struct shm_tp *t, struct jaccl_xfer *x, int n, int *moved,
                               int *pending)
{
    jaccl_result_t rc = JACCL_SUCCESS;
    t->gen++;
    *pending = 0;
    for (int i = 0; i < n && rc == JACCL_SUCCESS; i++) {
        if (x[i].done == x[i].len) continue;
        size_t q = (size_t)x[i].peer * 2 + (size_t)x[i].dir;
        int waited = !(x[i].flags & JACCL_XFER_LAZY);
        if (t->stamp[q] == t->gen) {
            *pending += waited; /* queued behind an earlier transfer on the same stream */
            continue;
        }
        int j = t->lidx[x[i].peer];
        if (x[i].dir == JACCL_XFER_SEND)
            *moved |= shm_send(t, j, &x[i]);
        else
            rc = shm_recv(t, j, &x[i], moved);
        if (x[i].done < x[i].len) {
            t->stamp[q] = t->gen; /* later transfers on this stream wait for it */
            *pending += waited;
        }
    }
    if (t->nwake) shm_wake_queued(t);
    return rc;
}

/* A zombie or a vanished process will never move our data. */
static int pid_gone(int32_t pid)
{
    char path[64], buf[256];
    if (kill(pid, 0) != 0) return errno == ESRCH;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
}

static const char *xfer_what(const struct jaccl_xfer *x)
{
    return x->dir == JACCL_XFER_RECV ? "send data" : "take data";
}

/*
 * Fail fast when a peer we wait for has died (kill -9 leaves no socket to
 * close); but what it wrote before it went is still in the ring (it may
 * have sent us its last message and exited since our last look): take that
 * first.
 */
static jaccl_result_t shm_liveness(struct shm_tp *t, struct jaccl_xfer *x, int n, int *moved)
{
    for (int i = 0; i < n; i++) {
        int j = t->lidx[x[i].peer], pending = 0;
        if (!jaccl_xfer_waited(&x[i])) continue;
        if (!t->pids[j] || !pid_gone(t->pids[j])) continue;
        jaccl_result_t rc = shm_scan(t, x, n, moved, &pending);
        if (rc != JACCL_SUCCESS || *moved) return rc;
        return jaccl_err_set(t->base.err, JACCL_ERR_REMOTE,
                             "rank %d (pid %d, this host) exited or was killed while we waited "
                             "for it to %s (%zu of %zu bytes); see its own error",
                             x[i].peer, (int)t->pids[j], xfer_what(&x[i]), x[i].done, x[i].len);
    }
    return JACCL_SUCCESS;
}

static jaccl_result_t shm_timeout(struct shm_tp *t, struct jaccl_xfer *x, int n)
{
    for (int i = 0; i < n; i++) {
        if (!jaccl_xfer_waited(&x[i])) continue;
        return jaccl_err_set(t->base.err, JACCL_ERR_TIMEOUT,
                             "timed out waiting for rank %d (shared memory) to %s (%zu of %zu "
                             "bytes); it may be stalled, dead, or in a different call; "
                             "JACCL_TIMEOUT sets the limit",
                             x[i].peer, xfer_what(&x[i]), x[i].done, x[i].len);
    }
    return JACCL_ERR_INTERNAL;
}

/* Checks before sleeping: abort, deadline, dead peers (*moved: a dead one's last bytes). */
static jaccl_result_t shm_check(struct shm_tp *t, struct jaccl_xfer *x, int n, int64_t now,
                                int64_t deadline, int *moved)
{
    if (jaccl_tp_aborted(t->abort_flag))
        return jaccl_err_set(t->base.err, JACCL_ERR_ABORTED,
                             "the communicator was aborted (jaccl_comm_abort) during a transfer");
    if (now >= deadline) return shm_timeout(t, x, n);
    if (now < t->next_liveness) return JACCL_SUCCESS;
    t->next_liveness = now + LIVENESS_NS;
    return shm_liveness(t, x, n, moved);
}

/* Sleep on our doorbell until a peer rings it, a slice passes, or the deadline. */
static jaccl_result_t shm_sleep(struct shm_tp *t, struct jaccl_xfer *x, int n, int64_t deadline,
                                int *moved, int *pending)
{
    struct shm_rank *me = &t->ranks[t->me];
    uint32_t bell = atomic_load(&me->bell);
    atomic_store(&me->sleeping, 1);
    atomic_thread_fence(memory_order_seq_cst);
    jaccl_result_t rc = shm_scan(t, x, n, moved, pending);
    int64_t now = jaccl_now_ns();
    if (rc == JACCL_SUCCESS && !*moved && *pending) rc = shm_check(t, x, n, now, deadline, moved);
    if (rc == JACCL_SUCCESS && !*moved && *pending) {
        int64_t wake = jaccl_tp_wake_ns(&t->base, deadline);
        int64_t left = wake - now < WAIT_SLICE_NS ? wake - now : WAIT_SLICE_NS;
        struct timespec ts = {0, (long)left};
        syscall(SYS_futex, &me->bell, FUTEX_WAIT, bell, &ts, NULL, 0);
    }
    atomic_store_explicit(&me->sleeping, 0, memory_order_relaxed);
    return rc;
}

/*
 * A pass that must not wait (a batch of non-blocking transfers) still
 * notices a dead peer, as a blocking wait does; the caller keeps deadlines.
 */
static jaccl_result_t shm_nowait_check(struct shm_tp *t, struct jaccl_xfer *x, int n)
{
    int64_t now = jaccl_now_ns();
    int moved = 0;
    if (now < t->next_liveness) return JACCL_SUCCESS;
    t->next_liveness = now + LIVENESS_NS;
    return shm_liveness(t, x, n, &moved);
}

static void shm_failed(struct jaccl_tp *tp)
{
    struct shm_tp *t = (struct shm_tp *)tp;
    if (t->ranks) atomic_store(&t->ranks[t->me].failed, 1);
}

/*
 * Poll without a system call while a reply is likely soon: a system call
 * costs microseconds in some virtual machines, a poll tens of nanoseconds.
 * Ranks that outnumber the cores yield between short bursts of polls (the
 * rank we wait for may need this core); others poll for PURE_SPIN_NS first.
 * After spin_ns, sleep.
 */
static jaccl_result_t shm_progress_loop(struct jaccl_tp *tp, struct jaccl_xfer *x, int n, int any,
                                        int64_t deadline_ns)
{
    struct shm_tp *t = (struct shm_tp *)tp;
    int64_t idle_since = 0;
    int polls = 0, burst = t->oversub ? YIELD_POLLS : SPIN_POLLS;
    for (;;) {
        int moved = 0, pending = 0;
        jaccl_result_t rc = shm_scan(t, x, n, &moved, &pending);
        if (rc != JACCL_SUCCESS) return rc;
        if (pending == 0 || (moved && any)) return JACCL_SUCCESS;
        if (deadline_ns == JACCL_TP_NOWAIT)
            return moved ? JACCL_SUCCESS : shm_nowait_check(t, x, n);
        if (moved) {
            idle_since = 0;
            polls = 0;
            continue;
        }
        cpu_relax();
        if (++polls < burst) continue;
        polls = 0;
        int64_t now = jaccl_now_ns();
        if (jaccl_tp_return_due(tp, now)) return JACCL_SUCCESS;
        if (idle_since == 0) idle_since = now;
        if (now - idle_since < t->spin_ns && now < deadline_ns &&
            !jaccl_tp_aborted(t->abort_flag)) {
            if (t->oversub || now - idle_since > PURE_SPIN_NS) sched_yield();
            continue;
        }
        /* Its scans count too: the last transfer may finish in one of them. */
        rc = shm_sleep(t, x, n, deadline_ns, &moved, &pending);
        if (rc != JACCL_SUCCESS || pending == 0 || (moved && any)) return rc;
        if (moved) idle_since = 0;
    }
}

/*
 * Record tags are position ^ salt: the top bit keeps a tag from ever being
 * zero (a fresh segment), the mixed job id keeps user data that happens to
 * hold a ring position from passing for a header.
 */
static uint64_t tag_salt(uint64_t job_id)
{
    uint64_t z = job_id + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (z ^ (z >> 31)) | (1ull << 63);
}

/* The ranks we share memory with: same host (as the core counts) and same /dev/shm. */
static int shm_find_local(struct shm_tp *t, const struct jaccl_tp_params *p)
{
    const struct jaccl_tp_host *h = p->hosts, *mine = h ? &h[p->rank] : NULL;
    int n = 0;
    for (int r = 0; r < p->size; r++) {
        int local = r == p->rank || (h && h[r].leader == mine->leader && h[r].mntns == mine->mntns);
        t->lidx[r] = local ? n : -1;
        if (!local) continue;
        if (r == p->rank) t->me = n;
        t->pids[n] = h && h[r].pidns == mine->pidns ? h[r].pid : 0;
        t->lrank[n++] = r;
    }
    return n;
}

static jaccl_result_t shm_alloc(struct shm_tp **out, const struct jaccl_tp_params *p)
{
    struct shm_tp *t = calloc(1, sizeof(*t));
    size_t n = (size_t)p->size;
    if (t) {
        t->lidx = malloc(n * sizeof(int));
        t->lrank = malloc(n * sizeof(int));
        t->pids = calloc(n, sizeof(int32_t));
        t->out = calloc(n, sizeof(struct shm_end));
        t->in = calloc(n, sizeof(struct shm_end));
        t->stamp = calloc(n * 2, sizeof(uint32_t));
        t->wake = malloc(n * sizeof(int));
        t->wstamp = calloc(n, sizeof(uint32_t));
    }
    if (!t || !t->lidx || !t->lrank || !t->pids || !t->out || !t->in || !t->stamp || !t->wake ||
        !t->wstamp) {
        if (t) free(t->wstamp), free(t->wake), free(t->stamp), free(t->in), free(t->out);
        if (t) free(t->pids), free(t->lrank), free(t->lidx);
        free(t);
        return jaccl_err_set(p->err, JACCL_ERR_NOMEM, "shm: cannot allocate state for %d ranks",
                             p->size);
    }
    *out = t;
    return JACCL_SUCCESS;
}

static void shm_close(struct jaccl_tp *tp)
{
    struct shm_tp *t = (struct shm_tp *)tp;
    if (!t) return;
    jaccl_shm_seg_close(t);
    free(t->wstamp);
    free(t->wake);
    free(t->stamp);
    free(t->in);
    free(t->out);
    free(t->pids);
    free(t->lrank);
    free(t->lidx);
    free(t);
}

static jaccl_result_t shm_open_tp(const struct jaccl_tp_params *p, struct jaccl_tp **out,
                                  void *addr, size_t *addr_len)
{
    struct shm_tp *t = NULL;
    jaccl_result_t rc = shm_alloc(&t, p);
    if (rc != JACCL_SUCCESS) return rc;
    t->base = (struct jaccl_tp){
        .rank = p->rank, .size = p->size, .err = p->err, .alpha_s = 0.5e-6, .beta_Bps = 8e9};
    t->nlocal = shm_find_local(t, p);
    t->job_id = p->job_id;
    t->salt = tag_salt(p->job_id);
    t->spin_ns = p->spin_ns;
    t->oversub = p->oversubscribed;
    t->single_copy = p->shm_single_copy;
    t->abort_flag = p->abort_flag;
    /* The job id is random and the leader's rank tells the hosts of one job apart. */
    snprintf(t->name, sizeof(t->name), "/jaccl-%016llx-%d", (unsigned long long)p->job_id,
             t->lrank[0]);
    t->linked = t->nlocal > 1;
    if (t->nlocal > 1 && t->me == 0) rc = jaccl_shm_seg_create(t);
    if (rc != JACCL_SUCCESS) {
        shm_close(&t->base);
        return rc;
    }
    memset(addr, 0, 1);
    *addr_len = 1;
    *out = &t->base;
    return JACCL_SUCCESS;
}

static jaccl_result_t shm_connect(struct jaccl_tp *tp, const void *addrs, size_t stride,
                                  int64_t deadline_ns)
{
    struct shm_tp *t = (struct shm_tp *)tp;
    (void)addrs;
    (void)stride;
    if (t->nlocal < 2) return JACCL_SUCCESS;
    jaccl_result_t rc = jaccl_shm_seg_attach(t, deadline_ns);
    if (rc != JACCL_SUCCESS) return rc;
    int cma = 0;
    for (int j = 0; j < t->nlocal; j++) cma += t->out[j].single_copy;
    log_info("shm: %d ranks share this host (ranks %d..%d), %zu KiB segment, single copy allowed "
             "to %d of %d",
             t->nlocal, t->lrank[0], t->lrank[t->nlocal - 1], t->seg_len >> 10, cma, t->nlocal - 1);
    return JACCL_SUCCESS;
}

static int shm_links(struct jaccl_tp *tp, int peer)
{
    return ((struct shm_tp *)tp)->lidx[peer] >= 0;
}

/* One whose wait failed will not keep the buffers its peers may be reading. */
static jaccl_result_t shm_progress(struct jaccl_tp *tp, struct jaccl_xfer *x, int n, int any,
                                   int64_t deadline_ns)
{
    jaccl_result_t rc = shm_progress_loop(tp, x, n, any, deadline_ns);
    if (rc != JACCL_SUCCESS) shm_failed(tp);
    return rc;
}

const struct jaccl_transport_ops jaccl_shm_ops = {
    .name = "shm",
    .open = shm_open_tp,
    .connect = shm_connect,
    .links = shm_links,
    .progress = shm_progress,
    .close = shm_close,
    .failed = shm_failed,
};
