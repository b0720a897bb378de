/*
 * Shared-memory transport, internal.  One segment per host per job holds,
 * for every directed pair of local ranks, a single-producer single-consumer
 * byte ring of framed records; a record is inline data, or (for large
 * transfers) the address of the sender's buffer, which the receiver reads
 * with process_vm_readv (one copy) and acknowledges.
 */
#ifndef JACCL_TRANSPORT_SHM_H
#define JACCL_TRANSPORT_SHM_H

#include "transport/transport.h"

#include <stdatomic.h>
#include <stdint.h>

#define SHM_CL          64
#define SHM_RING_MAX    ((size_t)1 << 20) /* bytes per ring, a power of two ... */
#define SHM_RING_MIN    ((size_t)16 << 10)
#define SHM_RINGS_ALL   ((size_t)64 << 20) /* ... so that all rings fit in this */
#define SHM_NAME_MAX    64
#define SHM_PROBE_BYTES ((size_t)4 << 20) /* past the caches: large transfers come from memory */

enum { SHM_REC_INLINE = 1, SHM_REC_CMA = 2 };

struct shm_rec {
    uint32_t len; /* payload bytes (inline), or bytes the address covers (cma) */
    uint32_t kind;
};

struct shm_cma_desc {
    uint64_t addr;
    uint64_t len;
};

struct shm_hdr {
    uint32_t magic, version;
    uint32_t nlocal, pad;
    uint64_t job_id;
    _Alignas(SHM_CL) _Atomic uint32_t mapped; /* ranks that mapped the segment */
    _Atomic uint32_t probed;                  /* ranks that tested single-copy reads */
};

/* One per local rank: the doorbell it sleeps on, then what the others need to know. */
struct shm_rank {
    _Alignas(SHM_CL) _Atomic uint32_t bell; /* futex word: bumped to wake the owner */
    _Atomic uint32_t sleeping;
    _Alignas(SHM_CL) int32_t pid;
    int32_t rank;
    uint64_t probe_addr;     /* a word of ours the others try to read (single-copy test) */
    uint64_t probe_buf;      /* SHM_PROBE_BYTES of ours they time reading */
    _Atomic uint32_t failed; /* we gave up a transfer: our buffers may be gone */
};

/* The shared part of one directed channel; its ring (ring_bytes) follows. */
struct shm_chan {
    _Alignas(SHM_CL) _Atomic uint64_t head; /* written by the producer */
    _Alignas(SHM_CL) _Atomic uint64_t tail; /* written by the consumer */
    _Atomic uint64_t ack;                   /* single-copy bytes the consumer has read */
};

/* This rank's view of one channel. */
struct shm_end {
    struct shm_chan *ch;
    unsigned char *ring;
    uint64_t size;       /* of the ring */
    uint64_t head, tail; /* our copy of our index; a cached copy of the other one */
    /* sender: single-copy bytes described and not yet acknowledged */
    uint64_t cma_out, ack_seen;
    /* receiver: what is left of the record being read */
    uint64_t rec_left, rec_addr;
    uint32_t rec_kind, rec_pad;
    int single_copy; /* sender: the receiver can read our memory */
};

struct shm_tp {
    struct jaccl_tp base;
    int nlocal, me; /* local ranks; our index among them */
    int *lidx;      /* rank -> local index, -1 if not local */
    int *lrank;     /* local index -> rank */
    int32_t *pids;  /* local index -> pid, 0 if pids are not comparable */
    char name[SHM_NAME_MAX];
    int linked; /* the name still exists: unlink it on close */
    void *seg;
    size_t seg_len, ring_bytes;
    struct shm_hdr *hdr;
    struct shm_rank *ranks;
    unsigned char *cma_ok;    /* [sender * nlocal + receiver]: receiver can read sender */
    struct shm_end *out, *in; /* by local index */
    uint64_t probe;
    char *probe_buf;
    uint64_t job_id;
    int64_t spin_ns;
    int oversub, single_copy; /* single_copy: JACCL_SHM_SINGLE_COPY (-1: measure) */
    const volatile int *abort_flag;
    uint32_t *stamp; /* per (peer, dir): last scan that saw its head */
    uint32_t gen;
    int64_t next_liveness;
};

/* Segment setup (shm_seg.c). */
jaccl_result_t jaccl_shm_seg_create(struct shm_tp *t);
jaccl_result_t jaccl_shm_seg_attach(struct shm_tp *t, int64_t deadline_ns);
void jaccl_shm_seg_close(struct shm_tp *t);
/* A wait between checks of shared state: checks the abort flag and the deadline. */
jaccl_result_t jaccl_shm_nap(struct shm_tp *t, int64_t deadline_ns, const char *what);

#endif
