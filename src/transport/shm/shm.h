/*
 * Shared-memory transport, internal.  One segment per host per job holds,
 * for every directed pair of local ranks, a single-producer single-consumer
 * byte ring of framed records; a record is inline data, or (for large
 * transfers) the address of the sender's buffer, which the receiver reads
 * with process_vm_readv (one copy) and acknowledges.
 *
 * Records start on a cache line and their header is written last, with a
 * tag made of the record's ring position: the receiver polls the header
 * itself, so a small message costs one cache-line transfer, not two (an
 * index, then the data).  The tag is mixed with a per-job salt so that old
 * bytes left in the ring are not mistaken for a header.
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
#define SHM_PROBE_BYTES ((size_t)2 << 20) /* past L2: large transfers come from memory */
/* Largest inline record: the receiver starts copying while we write more. */
#define SHM_INLINE_CHUNK ((uint64_t)64 << 10)

enum { SHM_REC_INLINE = 1, SHM_REC_CMA = 2 };

struct shm_rec {
    _Atomic uint64_t tag; /* position ^ salt: stored last (release), polled by the receiver */
    uint32_t len;         /* payload bytes (inline) */
    uint32_t kind;
};

#define SHM_REC_HDR ((uint64_t)sizeof(struct shm_rec))

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
    _Atomic uint32_t failed; /* we gave up a transfer: our buffers may be gone */
};

/* One directed channel's shared state, written by its consumer; its ring follows. */
struct shm_chan {
    _Alignas(SHM_CL) _Atomic uint64_t tail; /* ring bytes consumed: the producer's space */
    _Atomic uint64_t ack;                   /* single-copy bytes the consumer has read */
};

/* This rank's view of one channel. */
struct shm_end {
    struct shm_chan *ch;
    unsigned char *ring;
    uint64_t size;       /* of the ring */
    uint64_t salt;       /* of the record tags */
    uint64_t chunk;      /* largest inline record payload */
    uint64_t head, tail; /* sender: where we write, the receiver's tail when last read;
                            receiver: tail only (what we consumed) */
    /* sender: single-copy bytes described and not yet acknowledged */
    uint64_t cma_out, ack_seen;
    /* receiver: what is left of the record being read */
    uint64_t rec_left, rec_addr;
    uint32_t rec_kind;
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
    uint64_t job_id, salt;
    int64_t spin_ns;
    int oversub, single_copy; /* single_copy: JACCL_SHM_SINGLE_COPY (-1: measure) */
    int cma_fast;             /* -1 until the first large send measures it */
    const volatile int *abort_flag;
    uint32_t *stamp; /* per (peer, dir): last scan that saw its head */
    uint32_t gen;
    int *wake, nwake; /* local ranks to wake (if asleep) at the end of this scan */
    uint32_t *wstamp; /* per local rank: the scan that queued it in wake */
    int64_t next_liveness;
};

/* Segment setup (shm_seg.c). */
jaccl_result_t jaccl_shm_seg_create(struct shm_tp *t);
jaccl_result_t jaccl_shm_seg_attach(struct shm_tp *t, int64_t deadline_ns);
void jaccl_shm_seg_close(struct shm_tp *t);
/* A wait between checks of shared state: checks the abort flag and the deadline. */
jaccl_result_t jaccl_shm_nap(struct shm_tp *t, int64_t deadline_ns, const char *what);

/* Whether single-copy reads beat two copies on this machine (measured once, on first use). */
int jaccl_shm_cma_fast(struct shm_tp *t);

#endif
