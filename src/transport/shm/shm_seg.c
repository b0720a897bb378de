/*
 * The shared segment: created by the lowest local rank when it opens,
 * mapped by the others once addresses were exchanged, and unlinked as soon
 * as every local rank has it mapped, so a kill -9 leaves nothing behind.
 */
#include "transport/shm/shm.h"
#include "util/log.h"
#include "util/time.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define SHM_MAGIC   0x4a53484du /* "JSHM" */
#define SHM_VERSION 3
#define PROBE_SALT  0x9e3779b97f4a7c15ull

static size_t round_cl(size_t n)
{
    return (n + SHM_CL - 1) & ~(size_t)(SHM_CL - 1);
}

/* Bytes per ring: as large as fits SHM_RINGS_ALL, within [SHM_RING_MIN, SHM_RING_MAX]. */
static size_t ring_bytes(int n)
{
    size_t r = SHM_RING_MAX;
    while (r > SHM_RING_MIN && r * (size_t)n * (size_t)n > SHM_RINGS_ALL) r /= 2;
    return r;
}

/* Offsets of the parts; returns the segment's size. */
static size_t seg_layout(int n, size_t *o_ranks, size_t *o_cma, size_t *o_chan)
{
    size_t nn = (size_t)n * (size_t)n;
    *o_ranks = round_cl(sizeof(struct shm_hdr));
    *o_cma = *o_ranks + (size_t)n * sizeof(struct shm_rank);
    *o_chan = round_cl(*o_cma + nn);
    return *o_chan + nn * (sizeof(struct shm_chan) + ring_bytes(n));
}

/* Inline records are at most a quarter of the ring: the receiver copies out while we copy in. */
static struct shm_end chan_end(const struct shm_tp *t, char *base, size_t ring, int idx)
{
    char *c = base + (size_t)idx * (sizeof(struct shm_chan) + ring);
    uint64_t chunk = ring / 4 < SHM_INLINE_CHUNK ? ring / 4 : SHM_INLINE_CHUNK;
    return (struct shm_end){.ch = (struct shm_chan *)c,
                            .ring = (unsigned char *)c + sizeof(struct shm_chan),
                            .size = ring,
                            .salt = t->salt,
                            .chunk = chunk};
}

/* Point our views into a mapped segment. */
static void seg_views(struct shm_tp *t)
{
    size_t o_ranks, o_cma, o_chan;
    seg_layout(t->nlocal, &o_ranks, &o_cma, &o_chan);
    char *s = t->seg;
    t->ring_bytes = ring_bytes(t->nlocal);
    t->hdr = (struct shm_hdr *)s;
    t->ranks = (struct shm_rank *)(s + o_ranks);
    t->cma_ok = (unsigned char *)(s + o_cma);
    for (int j = 0; j < t->nlocal; j++) {
        t->out[j] = chan_end(t, s + o_chan, t->ring_bytes, t->me * t->nlocal + j);
        t->in[j] = chan_end(t, s + o_chan, t->ring_bytes, j * t->nlocal + t->me);
    }
}

static jaccl_result_t seg_map(struct shm_tp *t, int fd, const char *how)
{
    void *m = mmap(NULL, t->seg_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (m == MAP_FAILED)
        return jaccl_err_set(t->base.err, JACCL_ERR_SYSTEM,
                             "shm: cannot map %zu bytes of %s (%s): %s; is /dev/shm full or "
                             "too small? JACCL_TRANSPORT=tcp avoids shared memory",
                             t->seg_len, t->name, how, strerror(errno));
    t->seg = m;
    seg_views(t);
    return JACCL_SUCCESS;
}

jaccl_result_t jaccl_shm_seg_create(struct shm_tp *t)
{
    size_t o_ranks, o_cma, o_chan;
    t->seg_len = seg_layout(t->nlocal, &o_ranks, &o_cma, &o_chan);
    int fd = shm_open(t->name, O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0)
        return jaccl_err_set(t->base.err, JACCL_ERR_SYSTEM, "shm: cannot create segment %s: %s%s",
                             t->name, strerror(errno),
                             errno == EEXIST ? " (a stale job with the same id? remove it)"
                                             : "; JACCL_TRANSPORT=tcp avoids shared memory");
    t->linked = 1;
    jaccl_result_t rc = JACCL_SUCCESS;
    if (ftruncate(fd, (off_t)t->seg_len) != 0)
        rc = jaccl_err_set(t->base.err, JACCL_ERR_SYSTEM, "shm: cannot size %s to %zu bytes: %s",
                           t->name, t->seg_len, strerror(errno));
    if (rc == JACCL_SUCCESS) rc = seg_map(t, fd, "created");
    close(fd);
    if (rc != JACCL_SUCCESS) return rc;
    *t->hdr = (struct shm_hdr){.magic = SHM_MAGIC,
                               .version = SHM_VERSION,
                               .nlocal = (uint32_t)t->nlocal,
                               .job_id = t->job_id};
    return JACCL_SUCCESS;
}

static jaccl_result_t seg_open(struct shm_tp *t)
{
    size_t o_ranks, o_cma, o_chan;
    t->seg_len = seg_layout(t->nlocal, &o_ranks, &o_cma, &o_chan);
    int fd = shm_open(t->name, O_RDWR, 0);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || (size_t)st.st_size != t->seg_len) {
        jaccl_result_t rc = jaccl_err_set(
            t->base.err, JACCL_ERR_SYSTEM,
            "shm: cannot open segment %s made by rank %d: %s; do the ranks of this host share "
            "/dev/shm? (JACCL_TRANSPORT=tcp avoids shared memory)",
            t->name, t->lrank[0], fd < 0 ? strerror(errno) : "wrong size");
        if (fd >= 0) close(fd);
        return rc;
    }
    jaccl_result_t rc = seg_map(t, fd, "opened");
    close(fd);
    if (rc == JACCL_SUCCESS &&
        (t->hdr->magic != SHM_MAGIC || t->hdr->version != SHM_VERSION ||
         t->hdr->job_id != t->job_id || t->hdr->nlocal != (uint32_t)t->nlocal))
        rc = jaccl_err_set(t->base.err, JACCL_ERR_INTERNAL,
                           "shm: segment %s belongs to another job", t->name);
    return rc;
}

jaccl_result_t jaccl_shm_nap(struct shm_tp *t, int64_t deadline_ns, const char *what)
{
    if (jaccl_tp_aborted(t->abort_flag))
        return jaccl_err_set(t->base.err, JACCL_ERR_ABORTED, "shm: aborted while %s", what);
    if (jaccl_now_ns() >= deadline_ns)
        return jaccl_err_set(t->base.err, JACCL_ERR_TIMEOUT,
                             "shm: timed out while %s; a rank of this host did not start, "
                             "died, or is stuck; JACCL_TIMEOUT sets the limit",
                             what);
    const struct timespec nap = {0, 50000};
    nanosleep(&nap, NULL);
    return JACCL_SUCCESS;
}

/* Wait until every local rank has counted itself in c. */
static jaccl_result_t seg_barrier(struct shm_tp *t, _Atomic uint32_t *c, int64_t deadline,
                                  const char *what)
{
    atomic_fetch_add(c, 1);
    while (atomic_load(c) < (uint32_t)t->nlocal) {
        jaccl_result_t rc = jaccl_shm_nap(t, deadline, what);
        if (rc != JACCL_SUCCESS) return rc;
    }
    return JACCL_SUCCESS;
}

static double now_s(void)
{
    return (double)jaccl_now_ns() * 1e-9;
}

/*
 * Is a process_vm_readv faster than the rings' two copies?  Those overlap,
 * the sender's with the receiver's, so the read must beat one memcpy (also
 * when ranks outnumber cores: there it lost here at 1.8x one memcpy's time).
 * Often it does; in some virtual machines pinning the pages costs more
 * (this VM: reads at 0.3-0.5x memcpy, and 1.3-2x slower all-reduces).  A
 * property of the machine, not of a pair, and reading our own memory costs
 * the same as a peer's: measured once, at the first large send, so init
 * stays quick.
 */
int jaccl_shm_cma_fast(struct shm_tp *t)
{
    if (t->cma_fast >= 0) return t->cma_fast;
    size_t n = SHM_PROBE_BYTES;
    char *buf = malloc(2 * n);
    double cma = 1e9, copy = 1e9;
    t->cma_fast = 0;
    if (!buf) return 0;
    memset(buf, 1, 2 * n);
    struct iovec l = {buf, n}, r = {buf + n, n};
    for (int k = 0; k < 3; k++) {
        double t0 = now_s();
        ssize_t got = process_vm_readv(getpid(), &l, 1, &r, 1, 0);
        int why = errno;
        double t1 = now_s();
        memcpy(buf, buf + n, n);
        double t2 = now_s();
        if (got != (ssize_t)n) {
            log_info("shm: single copy is off: process_vm_readv of our own memory: %s",
                     got < 0 ? strerror(why) : "short read");
            break;
        }
        if (t1 - t0 < cma) cma = t1 - t0;
        if (t2 - t1 < copy) copy = t2 - t1;
    }
    free(buf);
    if (cma == 1e9) return 0;
    t->cma_fast = cma < copy;
    log_info("shm: single copy is %s: process_vm_readv %.1f GB/s, memcpy %.1f GB/s, measured at "
             "the first large send (JACCL_SHM_SINGLE_COPY=0/1 decides instead)",
             t->cma_fast ? "on" : "off", (double)n / cma * 1e-9, (double)n / copy * 1e-9);
    return t->cma_fast;
}

/* Can we read peer j's memory (process_vm_readv)?  Logs why not. */
static int probe_peer(struct shm_tp *t, int j)
{
    struct shm_rank *r = &t->ranks[j];
    uint64_t v = 0;
    if (!t->pids[j]) {
        log_info("shm: single copy from rank %d is off: it runs in another pid namespace",
                 t->lrank[j]);
        return 0;
    }
    struct iovec l = {&v, sizeof(v)}, rem = {(void *)(uintptr_t)r->probe_addr, sizeof(v)};
    ssize_t n = process_vm_readv(r->pid, &l, 1, &rem, 1, 0);
    if (n == (ssize_t)sizeof(v) && v == (t->job_id ^ PROBE_SALT ^ (uint64_t)r->rank)) return 1;
    log_info("shm: single copy from rank %d is off: process_vm_readv: %s; large messages "
             "are copied through the rings (ptrace rules: CAP_SYS_PTRACE or "
             "kernel.yama.ptrace_scope=0 allow it)",
             t->lrank[j], n < 0 ? strerror(errno) : "read the wrong bytes");
    return 0;
}

jaccl_result_t jaccl_shm_seg_attach(struct shm_tp *t, int64_t deadline)
{
    jaccl_result_t rc = t->me == 0 ? JACCL_SUCCESS : seg_open(t);
    if (rc != JACCL_SUCCESS) return rc;
    t->probe = t->job_id ^ PROBE_SALT ^ (uint64_t)t->base.rank;
    struct shm_rank *mine = &t->ranks[t->me];
    mine->pid = (int32_t)getpid();
    mine->rank = t->base.rank;
    mine->probe_addr = (uint64_t)(uintptr_t)&t->probe;
    t->cma_fast = t->single_copy == -1 ? -1 : t->single_copy;
    rc = seg_barrier(t, &t->hdr->mapped, deadline,
                     "waiting for the ranks of this host to map "
                     "the shared segment");
    if (rc != JACCL_SUCCESS) return rc;
    if (shm_unlink(t->name) != 0 && errno != ENOENT)
        log_warn("shm: cannot unlink %s: %s", t->name, strerror(errno));
    t->linked = 0;
    for (int j = 0; j < t->nlocal; j++)
        if (j != t->me) t->cma_ok[j * t->nlocal + t->me] = t->single_copy != 0 && probe_peer(t, j);
    rc = seg_barrier(t, &t->hdr->probed, deadline,
                     "waiting for the ranks of this host to test "
                     "single-copy reads");
    for (int j = 0; rc == JACCL_SUCCESS && j < t->nlocal; j++)
        t->out[j].single_copy = j != t->me && t->cma_ok[t->me * t->nlocal + j];
    return rc;
}

void jaccl_shm_seg_close(struct shm_tp *t)
{
    if (t->seg) munmap(t->seg, t->seg_len);
    if (t->linked && shm_unlink(t->name) == 0)
        log_debug("shm: removed segment %s on the way out", t->name);
    t->seg = NULL;
    t->linked = 0;
}
