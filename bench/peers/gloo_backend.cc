/*
 * peer.h over Gloo: gloo::allreduce (ring), gloo::allgather,
 * ReduceScatterHalvingDoubling, gloo::broadcast, gloo::reduce, gloo::alltoall
 * and unbound-buffer send/recv, over Gloo's TCP transport.  Rank and size
 * come from the environment as jaccl's (JACCL_RANK/JACCL_SIZE, so jaccl-launch
 * starts it); the rendezvous is a file store in GLOO_BENCH_STORE, or, under
 * jaccl-launch, in a directory named after JACCL_COORDINATOR that rank 0
 * removes once all ranks are connected.  Gloo throws on errors: each entry point catches and
 * ends the process with status 1.
 */
#include "peer.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/alltoall.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/config.h>
#include <gloo/math.h>
#include <gloo/reduce.h>
#include <gloo/reduce_scatter.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/file_store.h>
#include <gloo/transport/tcp/device.h>
#include <gloo/types.h>

namespace
{

std::shared_ptr<gloo::rendezvous::Context> ctx;
/* The reduce-scatter of the last size (see reduce_scatter_bound). */
struct {
    std::unique_ptr<gloo::Algorithm> alg;
    void *buf;
    size_t count;
} bound;
std::string owned_store; /* removed by rank 0 after connecting; "" if the caller's */
int my_rank = -1;

const uint64_t kSendRecvSlot = 0x5e4d;

[[noreturn]] void fail(const char *what, const char *why)
{
    fprintf(stderr, "gloo-bench: rank %d: %s: %s\n", my_rank, what, why);
    exit(1);
}

template <typename F> void guard(const char *what, F f)
{
    try {
        f();
    } catch (const std::exception &e) {
        fail(what, e.what());
    }
}

/* The first of names that is set, as a non-negative int; -1 if none is. */
int env_int(const char *const *names)
{
    for (; *names != nullptr; names++) {
        const char *s = getenv(*names);
        if (s == nullptr || *s == '\0') continue;
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno != 0 || *end != '\0' || v < 0 || v > 1 << 20) fail(*names, "not a valid number");
        return (int)v;
    }
    return -1;
}

std::string tmp_dir()
{
    const char *tmp = getenv("TMPDIR");
    return tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
}

/* GLOO_BENCH_STORE, else one directory per jaccl-launch job. */
std::string store_dir()
{
    const char *dir = getenv("GLOO_BENCH_STORE");
    if (dir != nullptr && *dir != '\0') return dir;
    const char *coord = getenv("JACCL_COORDINATOR");
    if (coord == nullptr || *coord == '\0')
        fail("rendezvous", "set GLOO_BENCH_STORE to a fresh directory that all ranks share");
    std::string name = coord;
    for (char &c : name)
        if (c == '/' || c == ':') c = '_';
    owned_store = tmp_dir() + "/gloo-bench-" + std::to_string(getuid()) + "-" + name;
    return owned_store;
}

void remove_owned_store()
{
    DIR *d = opendir(owned_store.c_str());
    if (d == nullptr) return;
    for (struct dirent *e; (e = readdir(d)) != nullptr;)
        if (e->d_name[0] != '.') unlink((owned_store + "/" + e->d_name).c_str());
    closedir(d);
    rmdir(owned_store.c_str());
}

std::shared_ptr<gloo::transport::Device> tcp_device()
{
    gloo::transport::tcp::attr attr;
    const char *ifname = getenv("GLOO_SOCKET_IFNAME");
    const char *host = getenv("GLOO_BENCH_HOST");
    if (ifname != nullptr && *ifname != '\0')
        attr.iface = ifname;
    else
        attr.hostname = host != nullptr && *host != '\0' ? host : "127.0.0.1";
    return gloo::transport::tcp::CreateDevice(attr);
}

void connect(int rank, int size)
{
    std::string dir = store_dir();
    if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) fail(dir.c_str(), strerror(errno));
    gloo::rendezvous::FileStore store(dir);
    auto dev = tcp_device();
    ctx = std::make_shared<gloo::rendezvous::Context>(rank, size);
    ctx->connectFullMesh(store, dev);
}

using ReduceFn = void (*)(void *, const void *, const void *, size_t);

template <typename T> ReduceFn reduce_fn(jaccl_op_t op)
{
    switch (op) {
    case JACCL_SUM:
        return static_cast<ReduceFn>(&gloo::sum<T>);
    case JACCL_PROD:
        return static_cast<ReduceFn>(&gloo::product<T>);
    case JACCL_MIN:
        return static_cast<ReduceFn>(&gloo::min<T>);
    case JACCL_MAX:
        return static_cast<ReduceFn>(&gloo::max<T>);
    default:
        return nullptr;
    }
}

/* f(T()) with the C++ type of dtype; false for types Gloo lacks (bfloat16). */
template <typename F> bool with_type(jaccl_dtype_t dtype, F f)
{
    switch (dtype) {
    case JACCL_INT8:
        return f(int8_t()), true;
    case JACCL_UINT8:
        return f(uint8_t()), true;
    case JACCL_INT32:
        return f(int32_t()), true;
    case JACCL_UINT32:
        return f(uint32_t()), true;
    case JACCL_INT64:
        return f(int64_t()), true;
    case JACCL_UINT64:
        return f(uint64_t()), true;
    case JACCL_FLOAT16:
        return f(gloo::float16()), true;
    case JACCL_FLOAT32:
        return f(float()), true;
    case JACCL_FLOAT64:
        return f(double()), true;
    default:
        return false;
    }
}

/* in == nullptr: in place on out. */
template <typename T> void allreduce_as(const void *in, void *out, size_t count, jaccl_op_t op)
{
    gloo::AllreduceOptions opts(ctx);
    if (in != nullptr) opts.setInput(static_cast<T *>(const_cast<void *>(in)), count);
    opts.setOutput(static_cast<T *>(out), count);
    opts.setReduceFunction(reduce_fn<T>(op));
    gloo::allreduce(opts);
}

/* The algorithm class's form of op; nullptr for avg. */
template <typename T> const gloo::ReductionFunction<T> *reduction(jaccl_op_t op)
{
    switch (op) {
    case JACCL_SUM:
        return gloo::ReductionFunction<T>::sum;
    case JACCL_PROD:
        return gloo::ReductionFunction<T>::product;
    case JACCL_MIN:
        return gloo::ReductionFunction<T>::min;
    case JACCL_MAX:
        return gloo::ReductionFunction<T>::max;
    default:
        return nullptr;
    }
}

/*
 * This Gloo's reduce-scatter is an algorithm class that binds its buffer and
 * connections when built, so it is built once per size, by the first (untimed)
 * call of a size, and reused by the timed ones; count is the whole input.
 */
template <typename T> gloo::Algorithm &reduce_scatter_bound(void *buf, size_t count, jaccl_op_t op)
{
    if (bound.alg && bound.buf == buf && bound.count == count) return *bound.alg;
    bound.alg.reset();
    std::vector<int> blocks((size_t)ctx->size, (int)(count / (size_t)ctx->size));
    std::vector<T *> ptrs{static_cast<T *>(buf)};
    bound.alg.reset(
        new gloo::ReduceScatterHalvingDoubling<T>(ctx, ptrs, (int)count, blocks, reduction<T>(op)));
    bound.buf = buf;
    bound.count = count;
    return *bound.alg;
}

/* count is the result per rank; in == nullptr: in place. */
template <typename T> void reduce_scatter_as(const void *in, void *out, size_t count, jaccl_op_t op)
{
    size_t all = count * (size_t)ctx->size;
    /* The class works in place only: out of place starts with a copy. */
    if (in != nullptr) memcpy(out, in, all * sizeof(T));
    reduce_scatter_bound<T>(out, all, op).run();
}

/* in == nullptr: in place on out. */
template <typename T>
void reduce_as(const void *in, void *out, size_t count, jaccl_op_t op, int root)
{
    gloo::ReduceOptions opts(ctx);
    if (in != nullptr) opts.setInput(static_cast<T *>(const_cast<void *>(in)), count);
    opts.setOutput(static_cast<T *>(out), count);
    opts.setReduceFunction(reduce_fn<T>(op));
    opts.setRoot(root);
    gloo::reduce(opts);
}

/* Gloo's allgather moves bytes; in == nullptr: in place. */
void allgather_raw(const void *in, void *out, size_t bytes)
{
    gloo::AllgatherOptions opts(ctx);
    if (in != nullptr) opts.setInput(static_cast<uint8_t *>(const_cast<void *>(in)), bytes);
    opts.setOutput(static_cast<uint8_t *>(out), bytes * (size_t)ctx->size);
    gloo::allgather(opts);
}

size_t elem_size(jaccl_dtype_t dtype)
{
    size_t n = 0;
    with_type(dtype, [&](auto t) { n = sizeof t; });
    return n;
}

} // namespace

extern "C" {

const char *peer_library(void)
{
    static const std::string name = "Gloo " + std::to_string(GLOO_VERSION_MAJOR) + "." +
                                    std::to_string(GLOO_VERSION_MINOR) + "." +
                                    std::to_string(GLOO_VERSION_PATCH) + " (TCP)";
    return name.c_str();
}

void peer_usage(FILE *f, const char *prog)
{
    fprintf(f,
            "COLLECTIVE: allreduce (gloo::allreduce, ring), allgather (gloo::allgather),\n"
            "            reducescatter (ReduceScatterHalvingDoubling: power-of-two ranks, in\n"
            "            place only, out of place copies its input in first), broadcast\n"
            "            (gloo::broadcast), reduce (gloo::reduce), alltoall (gloo::alltoall:\n"
            "            out of place only), sendrecv (unbound buffers, to the next rank) or\n"
            "            p2p (ranks 0 and 1, unbound buffers with several sends or receives\n"
            "            pending)\n"
            "Start it with jaccl-launch -n 2 %s allreduce.  Environment:\n"
            "  JACCL_RANK, JACCL_SIZE (or OMPI_COMM_WORLD_*, PMI_*, SLURM_*): this rank, ranks\n"
            "  GLOO_BENCH_STORE   rendezvous directory shared by all ranks, fresh for each\n"
            "                     job (default under jaccl-launch: one in $TMPDIR or /tmp)\n"
            "  GLOO_SOCKET_IFNAME interface to use, or GLOO_BENCH_HOST an address of this\n"
            "                     host (default 127.0.0.1)\n",
            prog);
}

void peer_init(int *argc, char ***argv, int *rank, int *nranks)
{
    static const char *const rank_vars[] = {"JACCL_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK",
                                            "SLURM_PROCID", nullptr};
    static const char *const size_vars[] = {"JACCL_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE",
                                            "SLURM_NTASKS", nullptr};
    (void)argc;
    (void)argv;
    *rank = my_rank = env_int(rank_vars);
    *nranks = env_int(size_vars);
    if (*rank < 0 || *nranks < 1 || *rank >= *nranks)
        fail("environment", "set JACCL_RANK and JACCL_SIZE (or start with jaccl-launch)");
    guard("connecting", [&] { connect(*rank, *nranks); });
    peer_barrier();
    if (*rank == 0 && !owned_store.empty()) remove_owned_store();
}

size_t peer_elem_size(jaccl_dtype_t dtype)
{
    return elem_size(dtype);
}

int peer_check_opts(const bench_opts_t *o, int verbose)
{
    std::string why;
    if (elem_size(o->dtype) == 0)
        why = std::string("Gloo has no ") + opts_dtype_name(o->dtype);
    else if (opts_coll_reduces(o->coll) && reduce_fn<float>(o->op) == nullptr)
        why = std::string("Gloo has no ") + opts_op_name(o) + " reduction";
    else if (o->coll == COLL_REDUCESCATTER && o->maxbytes > (size_t)INT_MAX)
        why = "-e " + std::to_string(o->maxbytes) +
              " is more bytes than ReduceScatterHalvingDoubling counts (an int)";
    else if (o->coll == COLL_REDUCESCATTER && (ctx->size & (ctx->size - 1)) != 0)
        /* Seen here: wrong results in about half of the 3-rank runs. */
        why = "reducescatter needs a power-of-two number of ranks: with " +
              std::to_string(ctx->size) +
              ", ReduceScatterHalvingDoubling's ranks outside its largest power-of-two block "
              "do not wait for the others between calls, so back-to-back calls race";
    if (why.empty()) return 0;
    if (verbose) fprintf(stderr, "gloo-bench: %s\n", why.c_str());
    return 2;
}

int peer_in_place(const bench_opts_t *o)
{
    return o->coll != COLL_ALLTOALL;
}

const char *peer_note(const bench_opts_t *o)
{
    if (o->coll == COLL_ALLTOALL)
        return "in-place N/A: gloo::alltoall has no in-place form (it sends from and receives "
               "into one block of the same buffer at once)";
    if (o->coll == COLL_REDUCESCATTER)
        return "ReduceScatterHalvingDoubling works in place only: out-of-place times a copy of "
               "the input to the receive buffer and the in-place call; each size's instance is "
               "built by its first, untimed call";
    return nullptr;
}

void peer_allreduce(const void *in, void *out, size_t count, const bench_opts_t *o)
{
    guard("gloo::allreduce", [&] {
        with_type(o->dtype, [&](auto t) { allreduce_as<decltype(t)>(in, out, count, o->op); });
    });
}

void peer_allgather(const void *in, void *out, size_t count, const bench_opts_t *o)
{
    guard("gloo::allgather", [&] { allgather_raw(in, out, count * elem_size(o->dtype)); });
}

void peer_reduce_scatter(const void *in, void *out, size_t count, const bench_opts_t *o)
{
    guard("ReduceScatterHalvingDoubling", [&] {
        with_type(o->dtype, [&](auto t) { reduce_scatter_as<decltype(t)>(in, out, count, o->op); });
    });
}

/* Non-root ranks may not name an input: Gloo forwards through their output. */
void peer_broadcast(const void *in, void *out, size_t count, const bench_opts_t *o)
{
    guard("gloo::broadcast", [&] {
        size_t bytes = count * elem_size(o->dtype);
        gloo::BroadcastOptions opts(ctx);
        if (in != nullptr && my_rank == o->root)
            opts.setInput(static_cast<uint8_t *>(const_cast<void *>(in)), bytes);
        opts.setOutput(static_cast<uint8_t *>(out), bytes);
        opts.setRoot(o->root);
        gloo::broadcast(opts);
    });
}

void peer_reduce(const void *in, void *out, size_t count, const bench_opts_t *o)
{
    guard("gloo::reduce", [&] {
        with_type(o->dtype,
                  [&](auto t) { reduce_as<decltype(t)>(in, out, count, o->op, o->root); });
    });
}

/* No in-place form: the driver never asks for one (peer_in_place). */
void peer_alltoall(const void *in, void *out, size_t count, const bench_opts_t *o)
{
    if (in == nullptr) fail("gloo::alltoall", "no in-place form");
    guard("gloo::alltoall", [&] {
        size_t bytes = count * elem_size(o->dtype) * (size_t)ctx->size;
        gloo::AlltoallOptions opts(ctx);
        opts.setInput(static_cast<uint8_t *>(const_cast<void *>(in)), bytes);
        opts.setOutput(static_cast<uint8_t *>(out), bytes);
        gloo::alltoall(opts);
    });
}

void peer_send(const void *buf, size_t count, const bench_opts_t *o, int peer)
{
    guard("send", [&] {
        auto ub = ctx->createUnboundBuffer(const_cast<void *>(buf), count * elem_size(o->dtype));
        ub->send(peer, kSendRecvSlot);
        ub->waitSend();
    });
}

void peer_recv(void *buf, size_t count, const bench_opts_t *o, int peer)
{
    guard("recv", [&] {
        auto ub = ctx->createUnboundBuffer(buf, count * elem_size(o->dtype));
        ub->recv(peer, kSendRecvSlot);
        ub->waitRecv();
    });
}

/* One buffer each way, with nsend sends and nrecv receives pending on it at once. */
void peer_window(const void *sbuf, int nsend, void *rbuf, int nrecv, size_t count,
                 const bench_opts_t *o, int peer)
{
    guard("window", [&] {
        size_t bytes = count * elem_size(o->dtype);
        auto rb = ctx->createUnboundBuffer(rbuf, bytes);
        auto sb = ctx->createUnboundBuffer(const_cast<void *>(sbuf), bytes);
        for (int i = 0; i < nrecv; i++) rb->recv(peer, kSendRecvSlot);
        for (int i = 0; i < nsend; i++) sb->send(peer, kSendRecvSlot);
        for (int i = 0; i < nrecv; i++) rb->waitRecv();
        for (int i = 0; i < nsend; i++) sb->waitSend();
    });
}

void peer_barrier(void)
{
    guard("gloo::barrier", [] {
        gloo::BarrierOptions opts(ctx);
        gloo::barrier(opts);
    });
}

void peer_max_f64(double *v, int n)
{
    guard("gloo::allreduce", [&] { allreduce_as<double>(nullptr, v, (size_t)n, JACCL_MAX); });
}

void peer_sum_u64(uint64_t *v, int n)
{
    guard("gloo::allreduce", [&] { allreduce_as<uint64_t>(nullptr, v, (size_t)n, JACCL_SUM); });
}

int32_t peer_max_i32(int32_t v)
{
    guard("gloo::allreduce", [&] { allreduce_as<int32_t>(nullptr, &v, 1, JACCL_MAX); });
    return v;
}

void peer_allgather_bytes(const void *in, void *out, size_t bytes)
{
    guard("gloo::allgather", [&] { allgather_raw(in, out, bytes); });
}

void peer_finalize(void)
{
    guard("closing", [] {
        bound.alg.reset(); /* holds buffers of the context's pairs */
        ctx.reset();
    });
}

} // extern "C"
