/*
 * The transport interface: point-to-point byte streams ("links") between
 * ranks.  A transport knows nothing of collectives; it moves the bytes of
 * posted transfers and reports who failed.
 */
#ifndef JACCL_TRANSPORT_H
#define JACCL_TRANSPORT_H

#include "util/auth.h"
#include "util/err.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

enum { JACCL_XFER_SEND = 0, JACCL_XFER_RECV = 1 };

/* jaccl_xfer.flags: a large copy straight into its final place, not reduced on
 * arrival (all-gather blocks): a single copy may pay where a plain one would not. */
#define JACCL_XFER_BULK 1
/*
 * jaccl_xfer.flags: a receive nobody waits for (a header a peer owes): moved
 * when it can be, never waited for alone (progress returns once the others
 * are done) and never named by a timeout.  A transport may look at it only
 * now and then (TCP: a system call per look); TCP also never fails a wait
 * over one (a peer that is gone fails the first transfer waited for).
 */
#define JACCL_XFER_LAZY 2

/*
 * One posted transfer.  Transfers on the same (peer, link, dir) are carried
 * in array order, and the two sides must post matching lengths in the same
 * order: a link is a pair of FIFO byte streams.
 */
struct jaccl_xfer {
    void *buf;
    size_t len;
    size_t done; /* bytes moved so far; the transfer is complete at len */
    int peer;
    int link;
    int dir;
    int flags; /* JACCL_XFER_* flags */
};

/* Whether a wait is for x: unfinished and not lazy (what pending counts and timeouts name). */
static inline int jaccl_xfer_waited(const struct jaccl_xfer *x)
{
    return x->done < x->len && !(x->flags & JACCL_XFER_LAZY);
}

/* Where a rank runs, exchanged at bootstrap (core/hostid.c). */
struct jaccl_tp_host {
    uint64_t boot;                /* hash of the kernel's boot id */
    uint64_t netns, mntns, pidns; /* namespace inodes: network, mount (/dev/shm), pid */
    int32_t pid, ncpu;
    int32_t leader; /* lowest rank on the same host, as the core counts hosts */
    int32_t pad;
};

#define JACCL_TP_DEVNAME_MAX 64
#define JACCL_MAX_LINKS      16

/*
 * This rank's row of the JACCL device file (JACCL_IBV_DEVICES) and the RDMA
 * settings, parsed by the core for the RDMA transport.
 */
struct jaccl_tp_rdma_cfg {
    const char *devfile;         /* where the row came from, for messages */
    const unsigned char *cables; /* [size]: cables from this rank to each rank (0: none) */
    const char (*names)[JACCL_TP_DEVNAME_MAX]; /* [peer * JACCL_MAX_LINKS + cable] */
    const char *lib;                           /* JACCL_IBVERBS_LIB, or NULL for libibverbs.so.1 */
    int qp_type;                               /* 0: auto, 1: rc, 2: uc (JACCL_IB_QP_TYPE) */
    int gid_index; /* -1: find the IPv4-mapped GID (JACCL_IB_GID_INDEX) */
};

/* What the core gives a transport when it opens. */
struct jaccl_tp_params {
    int rank, size;
    uint64_t job_id;
    int64_t deadline_ns;           /* for opening and connecting */
    struct sockaddr_storage local; /* address that reached the coordinator: listen here */
    socklen_t local_len;
    int links_per_peer; /* requested, e.g. JACCL_TCP_SOCKETS */
    int64_t spin_ns;    /* how long waits spin before blocking */
    /*
     * Set (non-zero) by jaccl_comm_abort from any thread or a signal handler.
     * Every blocking wait of a transport checks it at least every few
     * milliseconds and then returns JACCL_ERR_ABORTED.  May be NULL.
     */
    const volatile int *abort_flag;
    int oversubscribed;                /* more local ranks than cores: yield while spinning */
    const struct jaccl_tp_host *hosts; /* [size], every rank's; NULL: all on other hosts */
    int shm_single_copy; /* JACCL_SHM_SINGLE_COPY: 1 on, 0 off, -1 where faster than a copy */
    const struct jaccl_tp_rdma_cfg *rdma; /* RDMA devices of this rank; NULL: none */
    const struct jaccl_key *key;          /* JACCL_JOB_KEY for link handshakes (len 0: none) */
    struct jaccl_err *err;
};

/* Whether jaccl_comm_abort was called: an atomic read, the flag is set from other threads. */
static inline int jaccl_tp_aborted(const volatile int *flag)
{
    return flag && __atomic_load_n(flag, __ATOMIC_RELAXED);
}

/* Base of every transport instance; the transport's own state follows it. */
struct jaccl_tp {
    const struct jaccl_transport_ops *ops;
    int rank, size;
    struct jaccl_err *err;
    int refs;        /* communicators sharing this instance (split shares links) */
    double alpha_s;  /* per-message latency, for the selector */
    double beta_Bps; /* per-link bandwidth, for the selector */
    /*
     * Each message costs a system call at both ends (TCP): where that CPU
     * time is the latency, algorithms send fewer messages (algo/mesh).
     */
    int msg_syscall;
    /*
     * Nonzero: a blocking progress also returns JACCL_SUCCESS, transfers
     * still pending, once the clock passes this (jaccl_now_ns); its
     * deadline_ns still fails it.  Set by the caller around one call only.
     */
    int64_t return_ns;
};

/* Whether a blocking progress should return now (see return_ns). */
static inline int jaccl_tp_return_due(const struct jaccl_tp *tp, int64_t now_ns)
{
    return tp->return_ns && now_ns >= tp->return_ns;
}

/* The earlier of deadline_ns and tp's return_ns: how long a blocking wait may sleep. */
static inline int64_t jaccl_tp_wake_ns(const struct jaccl_tp *tp, int64_t deadline_ns)
{
    return tp->return_ns && tp->return_ns < deadline_ns ? tp->return_ns : deadline_ns;
}

#define JACCL_TP_ADDR_MAX       4096
#define JACCL_TP_MULTI_ADDR_MAX (4 * JACCL_TP_ADDR_MAX) /* the composite's: all of them */
#define JACCL_TP_NOWAIT         ((int64_t)0)

struct jaccl_transport_ops {
    const char *name;
    /*
     * Prepare to connect: open devices or listeners and write this rank's
     * address (at most JACCL_TP_ADDR_MAX bytes) for the others.
     * JACCL_ERR_UNSUPPORTED means "no device here": the next transport is tried.
     */
    jaccl_result_t (*open)(const struct jaccl_tp_params *p, struct jaccl_tp **tp, void *addr,
                           size_t *addr_len);
    /* Build the links to every peer; rank r's address is at addrs + r * stride. */
    jaccl_result_t (*connect)(struct jaccl_tp *tp, const void *addrs, size_t stride,
                              int64_t deadline_ns);
    /*
     * Number of links to peer.  0 means this transport has no link to that
     * peer (e.g. an RDMA ring without a cable between the two, or shm to
     * another host): the core then reaches the peer through the next
     * transport in priority order.
     */
    int (*links)(struct jaccl_tp *tp, int peer);
    /*
     * Move bytes of x[0..n).  Returns once every transfer is complete, or, when
     * any is set, once some progress was made.  Errors name the peer and link.
     * deadline_ns == JACCL_TP_NOWAIT asks for one pass that never blocks: move
     * what can move now and return JACCL_SUCCESS (a composite of transports
     * polls each in turn this way).
     */
    jaccl_result_t (*progress)(struct jaccl_tp *tp, struct jaccl_xfer *x, int n, int any,
                               int64_t deadline_ns);
    void (*close)(struct jaccl_tp *tp);
    /*
     * Optional (may be NULL): a transfer failed, this rank is about to give
     * up its buffers.  Peers that read our memory in place (shm single copy)
     * must stop trusting what they read from now on.
     */
    void (*failed)(struct jaccl_tp *tp);
};

/* Registry, in priority order; NULL-terminated. */
extern const struct jaccl_transport_ops *const jaccl_transports[];
const struct jaccl_transport_ops *jaccl_transport_find(const char *name);
/*
 * The composite (JACCL_TRANSPORT=auto): opens every transport above and
 * serves each peer with the first whose links(peer) > 0 (transport/multi.c).
 */
extern const struct jaccl_transport_ops jaccl_multi_ops;

#endif
