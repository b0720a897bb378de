/*
 * The algorithm interface.  An algorithm turns a collective into transfers
 * on links; it sees the transport only through jaccl_tp's ops table.
 */
#ifndef JACCL_ALGO_H
#define JACCL_ALGO_H

#include "transport/transport.h"
#include "util/reduce.h"

enum jaccl_coll {
    JACCL_COLL_ALLREDUCE,
    JACCL_COLL_ALLGATHER,
    JACCL_COLL_REDUCE_SCATTER,
    JACCL_COLL_BROADCAST,
    JACCL_COLL_REDUCE,
    JACCL_COLL_ALLTOALL,
    JACCL_COLL_COUNT
};

/*
 * Every collective and every point-to-point message carries a header, so
 * that ranks making different calls fail with JACCL_ERR_INVALID_USAGE
 * instead of exchanging bytes that mean different things (common.c).
 */
enum { JACCL_HDR_BARRIER = JACCL_COLL_COUNT, JACCL_HDR_SEND, JACCL_HDR_NOTICE, JACCL_HDR_KINDS };

struct jaccl_hdr {
    int kind;  /* an enum jaccl_coll, or JACCL_HDR_* */
    int dtype; /* jaccl_dtype_t */
    int op;
    int root;
    uint64_t count; /* the call's count; bytes for a send; for a notice, the bytes refused */
    uint64_t aux;   /* for a notice: the bytes the receive expected */
    uint32_t seq;   /* collectives on this communicator; messages to/from this peer */
};

enum {
    JACCL_HDR_OFF,   /* nothing added (the communicator's own internal traffic) */
    JACCL_HDR_COLL,  /* the next run exchanges hdr with every rank, then checks theirs */
    JACCL_HDR_P2P,   /* every stream of the next run carries or expects its own header */
    JACCL_HDR_SETTLE /* the next run reads every owed header and nothing else */
};

/* What an algorithm works with; owned by the communicator, reused by every call. */
struct jaccl_algo_ctx {
    int rank, size;
    struct jaccl_tp *tp;
    const int *peers; /* transport peer of each rank here; NULL: the same number */
    struct jaccl_err *err;
    int64_t deadline_ns;  /* of the call in progress */
    size_t seg_bytes;     /* receive-and-reduce segment: small enough to stay in cache */
    size_t oneshot_bytes; /* largest message the mesh sends whole to every peer */
    char *scratch;        /* allocated and touched once at init */
    size_t scratch_len;
    struct jaccl_xfer *xfers;
    int xfers_cap;
    char *work; /* for algorithms that need a copy; grown on demand, never shrunk */
    size_t work_len;
    double gamma_Bps;     /* reduction speed, for the cost model */
    int max_links;        /* most links to any peer */
    int ring_bidir;       /* ring: send halves both ways round */
    int hdr_mode;         /* JACCL_HDR_*, set by the core for the call in progress */
    int run_flags;        /* JACCL_XFER_* flags of the run in progress's sends */
    struct jaccl_hdr hdr; /* JACCL_HDR_COLL: this call's */
    uint32_t coll_seq;    /* collectives made so far */
    char *hdr_buf;        /* message counters per peer, header slots, staging; grown on demand */
    size_t hdr_buf_len;
    struct jaccl_owed *owed; /* shared by the contexts on one transport; NULL: read every
                                header in the call that sends it */
};

/*
 * Collective headers not read yet, up to 8 per transport peer.  A rank that
 * only sends to a peer in a collective would wait for that peer's header
 * alone (a round trip per broadcast for its root); it reads it in a later
 * run: one that receives from the peer (before any of its later bytes), or
 * any run while it arrives (the one that defers it too), or the run that
 * would owe a 9th.  The other way, a header that only confirms our call to
 * a peer we send nothing else is held back until there are 4, the run would
 * wait (where messages cost system calls, once it has polled 30 us), or we
 * send that peer anything else.  Shared by every context on one transport (communicators
 * split from one another share links).
 */
struct jaccl_owed;
struct jaccl_owed *jaccl_owed_new(int tp_size);
void jaccl_owed_free(struct jaccl_owed *o);
/*
 * A call on these links failed with rc: what is owed can no longer be read
 * in step, so every later run of a context that shares them fails with rc
 * while anything is owed (jaccl_algo_settle skips it), and none defers more.
 */
void jaccl_owed_broken(struct jaccl_owed *o, jaccl_result_t rc);
/*
 * Read and check every header c's transport owes, before a batch or a close
 * uses the links.  Errors as jaccl_algo_run.
 */
jaccl_result_t jaccl_algo_settle(struct jaccl_algo_ctx *c);

struct jaccl_algo_ops {
    const char *name;
    /* recvbuf = reduction of every rank's sendbuf (in place when equal); op is never AVG. */
    jaccl_result_t (*allreduce)(struct jaccl_algo_ctx *c, const void *sendbuf, void *recvbuf,
                                size_t count, jaccl_dtype_t dtype, jaccl_op_t op);
    /* recvbuf[r * bytes ...] = rank r's block; in place when sendbuf is our own block. */
    jaccl_result_t (*allgather)(struct jaccl_algo_ctx *c, const void *sendbuf, void *recvbuf,
                                size_t bytes);
    /* recvbuf = our block (bytes) of the reduction of every rank's sendbuf (size blocks). */
    jaccl_result_t (*reduce_scatter)(struct jaccl_algo_ctx *c, const void *sendbuf, void *recvbuf,
                                     size_t count, jaccl_dtype_t dtype, jaccl_op_t op);
    /* recvbuf = root's sendbuf on every rank; root copies if they differ. */
    jaccl_result_t (*broadcast)(struct jaccl_algo_ctx *c, const void *sendbuf, void *recvbuf,
                                size_t bytes, int root);
    /* root's recvbuf = reduction of every rank's sendbuf; others' recvbuf is unused. */
    jaccl_result_t (*reduce)(struct jaccl_algo_ctx *c, const void *sendbuf, void *recvbuf,
                             size_t count, jaccl_dtype_t dtype, jaccl_op_t op, int root);
    /* recvbuf block p = rank p's sendbuf block (our rank); blocks of bytes; sendbuf != recvbuf. */
    jaccl_result_t (*alltoall)(struct jaccl_algo_ctx *c, const void *sendbuf, void *recvbuf,
                               size_t bytes);
    /*
     * Modelled seconds for coll on a message of bytes: the whole vector for
     * allreduce, reduce, broadcast and reduce-scatter (size blocks); one
     * rank's block for allgather; one rank's send buffer for alltoall.
     */
    double (*cost)(const struct jaccl_algo_ctx *c, enum jaccl_coll coll, size_t bytes);
};

/* Registry in priority order (ties in cost go to the first); NULL-terminated. */
extern const struct jaccl_algo_ops *const jaccl_algos[];
const struct jaccl_algo_ops *jaccl_algo_find(const char *name);

/* One direction of traffic with one peer, for jaccl_algo_run. */
struct jaccl_stream {
    int dir; /* JACCL_XFER_SEND or JACCL_XFER_RECV */
    int peer;
    char *buf; /* send: source; recv: destination */
    size_t len;
    const char *local; /* recv with a kernel: buf = received op local (local may be buf) */
};

/*
 * Run every stream at once until all are done.  A stream's bytes are split
 * over the peer's links in 64-byte-aligned parts.  With fn, received data is
 * reduced segment by segment as it arrives, through cache-sized scratch.
 * At most 2 streams may carry a kernel.
 */
jaccl_result_t jaccl_algo_run(struct jaccl_algo_ctx *c, struct jaccl_stream *st, int ns,
                              jaccl_reduce_fn fn, size_t esize);
/* jaccl_algo_run of plain copies into their final place (JACCL_XFER_BULK sends). */
jaccl_result_t jaccl_algo_run_bulk(struct jaccl_algo_ctx *c, struct jaccl_stream *st, int ns);

/*
 * A batch: sends and receives that keep coming while earlier ones progress
 * (non-blocking calls, groups over several communicators).  Each part added
 * is one context's streams, each with its own P2P header; parts on one
 * transport share one transfer array, so a later part's bytes follow an
 * earlier part's on every link they share (issue order per peer and
 * direction), while transfers on other links move independently.  Each part
 * has its own deadline (its context's at the time it is added), abort flag
 * and error; a failure fails every running part on the same transport, whose
 * links are then out of step.
 */
struct jaccl_batch;
jaccl_result_t jaccl_batch_new(struct jaccl_batch **out);
void jaccl_batch_free(struct jaccl_batch *b);
/*
 * Add ns streams of c; tag comes back from jaccl_batch_take.  Reads what c's
 * transport owes first (jaccl_algo_settle, which may fail as a run does);
 * otherwise fails only without memory.
 */
jaccl_result_t jaccl_batch_add(struct jaccl_batch *b, struct jaccl_algo_ctx *c,
                               struct jaccl_stream *st, int ns, const volatile int *aborted,
                               void *tag);
/* One pass over every transfer that never blocks; returns whether any byte moved. */
int jaccl_batch_step(struct jaccl_batch *b);
/* Parts added and not yet finished. */
int jaccl_batch_running(const struct jaccl_batch *b);
/* A finished part: its tag and result, and on failure its message in msg; 0 when none. */
int jaccl_batch_take(struct jaccl_batch *b, void **tag, jaccl_result_t *rc, char *msg, size_t len);

/* Byte range of part i of n of a len-byte buffer, 64-byte aligned except the end. */
void jaccl_algo_part(size_t len, int n, int i, size_t align, size_t *off, size_t *plen);

/* A workspace of at least len bytes (grown once, kept for later calls). */
jaccl_result_t jaccl_algo_work(struct jaccl_algo_ctx *c, size_t len, char **out);

/* The transport's number for rank r of this context. */
static inline int jaccl_algo_peer(const struct jaccl_algo_ctx *c, int r)
{
    return c->peers ? c->peers[r] : r;
}

/*
 * All-gather of large blocks (mesh and ring): a block this large goes out in
 * pieces of JACCL_AG_PIECE per link straight from sendbuf, each copied into
 * place once sent, while it is still in cache (measured on shm, 2 ranks, out
 * of place: 10-20% faster from 512 KiB gathered up).  Blocks from
 * JACCL_AG_STREAM_MIN are copied with non-temporal stores.  Ranks cut the
 * same pieces in place and out of place, so their transfers always match.
 */
#define JACCL_AG_FUSE_MIN   ((size_t)256 << 10)
#define JACCL_AG_PIECE      ((size_t)512 << 10)
#define JACCL_AG_STREAM_MIN ((size_t)1 << 20)

/* Copy len bytes of a bytes-long all-gather block into place. */
void jaccl_algo_ag_copy(char *dst, const char *src, size_t len, size_t bytes);

/* Scratch needed by the engine for nred reducing streams. */
size_t jaccl_algo_run_scratch(const struct jaccl_algo_ctx *c, int nred);

#endif
