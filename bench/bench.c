/*
 * jaccl-bench: bandwidth of jaccl collectives over a range of sizes, printed
 * as nccl-tests does.  Every rank runs this program (jaccl-launch starts them);
 * rank 0 prints.  Per size: one untimed call, a barrier, -n timed calls, then
 * (with -c 1) one call on verifiable data whose result is checked; first
 * out-of-place, then in-place.  Times are the slowest rank's average.
 */
#include "bench.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    bench_opts_t o;
    jaccl_comm_t comm;
    int rank; /* -1 until the communicator exists */
    int nranks;
    size_t elemsize;
    bench_pattern_t pattern;
    char *sendbuf;
    char *recvbuf;
    FILE *json;
    bench_row_t *rows; /* p2p: p2p_rows */
    p2p_row_t *p2p_rows;
    size_t nrows;
    size_t rowcap;
} bench_t;

/* Names for error messages, by collective. */
static const char *const call_names[] = {
    [COLL_ALLREDUCE] = "jaccl_allreduce",      [COLL_ALLGATHER] = "jaccl_allgather",
    [COLL_SENDRECV] = "jaccl_send/jaccl_recv", [COLL_REDUCESCATTER] = "jaccl_reduce_scatter",
    [COLL_BROADCAST] = "jaccl_broadcast",      [COLL_REDUCE] = "jaccl_reduce",
    [COLL_ALLTOALL] = "jaccl_alltoall",        [COLL_P2P] = "jaccl_send/jaccl_recv"};

static void check_result(const bench_t *b, jaccl_result_t rc, const char *call)
{
    if (rc == JACCL_SUCCESS) return;
    char rank[16] = "?";
    if (b->rank >= 0) snprintf(rank, sizeof rank, "%d", b->rank);
    fprintf(stderr, "jaccl-bench: rank %s: %s failed: %s: %s\n", rank, call,
            jaccl_result_string(rc), jaccl_last_error(b->comm));
    exit(1);
}

/* JCALL(b, jaccl_send, ...) calls and names the failing function. */
#define JCALL(b, fn, ...) check_result((b), fn(__VA_ARGS__), #fn)

static void barrier(bench_t *b)
{
    int32_t x = 0;
    JCALL(b, jaccl_allreduce, &x, &x, 1, JACCL_INT32, JACCL_SUM, b->comm);
}

/* Every rank gets the largest value: a status, so all exit together instead of
 * some waiting for a peer that has gone, or a count of calls to time. */
static int32_t agree_max(bench_t *b, int32_t v)
{
    JCALL(b, jaccl_allreduce, &v, &v, 1, JACCL_INT32, JACCL_MAX, b->comm);
    return v;
}

/* The receive buffer is of the larger size: in place, reducescatter's input is in it. */
static int32_t alloc_buffers(bench_t *b)
{
    bench_layout_t max = opts_layout(b->o.coll, b->nranks, b->elemsize, b->o.maxbytes);
    b->sendbuf = bench_alloc_touched(max.sendbytes, b->o.offset);
    b->recvbuf = bench_alloc_touched(max.bytes, b->o.offset);
    if (b->sendbuf != NULL && b->recvbuf != NULL) return 0;
    fprintf(stderr, "jaccl-bench: rank %d: cannot allocate %zu + %zu bytes of buffers\n", b->rank,
            max.sendbytes, max.bytes);
    return 1;
}

static int32_t open_json(bench_t *b)
{
    if (b->rank != 0 || b->o.json_path == NULL) return 0;
    b->json = fopen(b->o.json_path, "w");
    if (b->json != NULL) return 0;
    fprintf(stderr, "jaccl-bench: cannot open -J file '%s': %s\n", b->o.json_path, strerror(errno));
    return 2;
}

/* -r can only be checked once the size is known: a usage error (2). */
static int32_t check_root(const bench_t *b)
{
    if (!opts_coll_rooted(b->o.coll) || b->o.root < b->nranks) return 0;
    if (b->rank == 0)
        fprintf(stderr, "jaccl-bench: -r %d is not a rank: there are %d (0..%d)\n", b->o.root,
                b->nranks, b->nranks - 1);
    return 2;
}

static void init(bench_t *b)
{
    JCALL(b, jaccl_comm_init_env, &b->comm);
    b->rank = jaccl_comm_rank(b->comm);
    b->nranks = jaccl_comm_size(b->comm);
    b->elemsize = jaccl_dtype_size(b->o.dtype);
    data_pattern_init(&b->pattern, b->o.coll, b->o.dtype, b->o.op, b->nranks);
    int32_t status = check_root(b);
    if (status == 0) status = alloc_buffers(b);
    if (status == 0) status = open_json(b);
    status = agree_max(b, status);
    if (status != 0) exit((int)status);
}

/* Host and pid of every rank, for the header. */
static void print_header(bench_t *b)
{
    bench_host_t me, *all = calloc((size_t)b->nranks, sizeof *all);
    if (all == NULL) {
        fprintf(stderr, "jaccl-bench: rank %d: out of memory\n", b->rank);
        exit(1);
    }
    memset(&me, 0, sizeof me);
    me.pid = (int)getpid();
    if (gethostname(me.host, sizeof me.host - 1) != 0) strcpy(me.host, "?");
    JCALL(b, jaccl_allgather, &me, all, sizeof me, JACCL_UINT8, b->comm);
    for (int r = 0; r < b->nranks; r++) all[r].host[sizeof all[r].host - 1] = '\0';
    if (b->rank == 0 && b->o.coll == COLL_P2P) report_p2p_header(stdout, &b->o, b->nranks, all);
    if (b->rank == 0 && b->o.coll != COLL_P2P) report_header(stdout, &b->o, b->nranks, all);
    free(all);
}

/*
 * The API has only blocking send and receive, so even ranks send first and odd
 * ranks receive first: every send meets a posted receive.  With an odd number
 * of ranks, ranks n-1 and 0 are both even and send first, but rank 0's send
 * completes (rank 1 receives first) before rank 0 receives from n-1, so the
 * ring unwinds without a cycle.
 */
static void run_sendrecv(bench_t *b, const bench_layout_t *l)
{
    int next = (b->rank + 1) % b->nranks;
    int prev = (b->rank + b->nranks - 1) % b->nranks;
    if (b->rank % 2 == 0) JCALL(b, jaccl_send, b->sendbuf, l->count, b->o.dtype, next, b->comm);
    JCALL(b, jaccl_recv, b->recvbuf, l->count, b->o.dtype, prev, b->comm);
    if (b->rank % 2 != 0) JCALL(b, jaccl_send, b->sendbuf, l->count, b->o.dtype, next, b->comm);
}

/*
 * Where this rank's input lives; in place it is inside the receive buffer, as
 * the header's in-place rules say (on every rank for broadcast and reduce).
 */
static char *input_buffer(const bench_t *b, const bench_layout_t *l, int inplace)
{
    if (!inplace) return b->sendbuf;
    if (b->o.coll == COLL_ALLGATHER) return b->recvbuf + (size_t)b->rank * l->sendbytes;
    return b->recvbuf;
}

/* Where this rank's output goes: in place, reducescatter's is this rank's input block. */
static char *output_buffer(const bench_t *b, const bench_layout_t *l, int inplace)
{
    if (inplace && b->o.coll == COLL_REDUCESCATTER)
        return b->recvbuf + (size_t)b->rank * l->recvbytes;
    return b->recvbuf;
}

static jaccl_result_t call_coll(bench_t *b, const void *in, void *out, size_t count)
{
    jaccl_dtype_t t = b->o.dtype;
    switch (b->o.coll) {
    case COLL_ALLREDUCE:
        return jaccl_allreduce(in, out, count, t, b->o.op, b->comm);
    case COLL_ALLGATHER:
        return jaccl_allgather(in, out, count, t, b->comm);
    case COLL_REDUCESCATTER:
        return jaccl_reduce_scatter(in, out, count, t, b->o.op, b->comm);
    case COLL_BROADCAST:
        return jaccl_broadcast(in, out, count, t, b->o.root, b->comm);
    case COLL_REDUCE:
        return jaccl_reduce(in, out, count, t, b->o.op, b->o.root, b->comm);
    case COLL_ALLTOALL:
        return jaccl_alltoall(in, out, count, t, b->comm);
    case COLL_SENDRECV: /* run_sendrecv */
    case COLL_P2P:      /* bench_p2p */
        break;
    }
    return JACCL_ERR_INTERNAL;
}

static void run_coll(bench_t *b, const bench_layout_t *l, int inplace)
{
    if (b->o.coll == COLL_SENDRECV) {
        run_sendrecv(b, l);
        return;
    }
    jaccl_result_t rc =
        call_coll(b, input_buffer(b, l, inplace), output_buffer(b, l, inplace), l->count);
    check_result(b, rc, call_names[b->o.coll]);
}

struct timed_call {
    bench_t *b;
    const bench_layout_t *l;
    int inplace;
};

static void timed_call(void *ctx)
{
    struct timed_call *t = ctx;
    run_coll(t->b, t->l, t->inplace);
}

static int32_t timed_agree(void *ctx, int32_t v)
{
    return agree_max(((struct timed_call *)ctx)->b, v);
}

/* Average microseconds per call on this rank; *iters: how many were timed. */
static double time_mode(bench_t *b, const bench_layout_t *l, int inplace, int *iters)
{
    struct timed_call c = {b, l, inplace};
    bench_timed_t t = {&c, timed_call, timed_agree};
    /* Zeros keep repeated in-place reductions clear of overflow and NaN. */
    memset(b->sendbuf, 0, l->sendbytes);
    memset(b->recvbuf, 0, l->bytes);
    /* Untimed first call (as nccl-tests), then a barrier so all ranks start together. */
    run_coll(b, l, inplace);
    agree_max(b, 0);
    return bench_time_calls(&b->o, &t, iters);
}

/* Mismatches in the output of the checked call. */
static uint64_t verify_output(const bench_t *b, const bench_layout_t *l, int inplace,
                              const char *label)
{
    return data_check_output(&b->pattern, output_buffer(b, l, inplace), l->count, b->elemsize,
                             b->rank, b->o.root, label);
}

/* One call on fresh verifiable input; returns this rank's wrong elements. */
static uint64_t check_mode(bench_t *b, const bench_layout_t *l, int inplace)
{
    char label[96];
    size_t inputs = l->sendbytes / b->elemsize;
    snprintf(label, sizeof label, "rank %d: %s %zu B %s", b->rank, opts_coll_name(b->o.coll),
             l->bytes, inplace ? "in-place" : "out-of-place");
    /* Poison first (see data.c), so elements the library never wrote are caught. */
    memset(b->recvbuf, 0xff, l->bytes);
    data_fill(&b->pattern, input_buffer(b, l, inplace), inputs, b->rank);
    run_coll(b, l, inplace);
    uint64_t wrong = verify_output(b, l, inplace, label);
    if (!inplace) {
        /* The send buffer is const in the API: it must come back untouched. */
        strncat(label, ", send buffer", sizeof label - strlen(label) - 1);
        wrong += data_check_input(&b->pattern, b->sendbuf, inputs, b->rank, label);
    }
    return wrong;
}

/* All ranks report the slowest time and the total of wrong elements. */
static void agree_row(bench_t *b, bench_row_t *row)
{
    JCALL(b, jaccl_allreduce, row->time_us, row->time_us, 2, JACCL_FLOAT64, JACCL_MAX, b->comm);
    JCALL(b, jaccl_allreduce, row->wrong, row->wrong, 2, JACCL_UINT64, JACCL_SUM, b->comm);
    for (int m = 0; m < row->modes; m++) {
        double t = row->time_us[m];
        /* bytes per microsecond / 1e3 = GB/s */
        row->algbw[m] = t > 0 ? (double)row->bytes / t / 1e3 : 0.0;
        row->busbw[m] = row->algbw[m] * opts_busbw_factor(b->o.coll, b->nranks);
    }
}

static void bench_step(bench_t *b, const bench_layout_t *l, bench_row_t *row)
{
    memset(row, 0, sizeof *row);
    row->bytes = l->bytes;
    row->elems = l->elems;
    /* Blocking send/recv cannot share one buffer on a receive-first rank. */
    row->modes = b->o.coll == COLL_SENDRECV ? 1 : 2;
    for (int m = 0; m < row->modes; m++) {
        row->time_us[m] = time_mode(b, l, m, &row->iters[m]);
        if (b->o.check) row->wrong[m] = check_mode(b, l, m);
    }
    agree_row(b, row);
}

static bench_row_t *push_row(bench_t *b)
{
    if (b->nrows == b->rowcap) {
        size_t cap = b->rowcap ? 2 * b->rowcap : 64;
        bench_row_t *rows = realloc(b->rows, cap * sizeof *rows);
        if (rows == NULL) {
            fprintf(stderr, "jaccl-bench: rank %d: out of memory\n", b->rank);
            exit(1);
        }
        b->rows = rows;
        b->rowcap = cap;
    }
    return &b->rows[b->nrows++];
}

/* As nccl-tests: warm up at the largest size (buffers, connections), then the smallest. */
static void warmup(bench_t *b)
{
    bench_layout_t big = opts_layout(b->o.coll, b->nranks, b->elemsize, b->o.maxbytes);
    bench_layout_t small = opts_layout(b->o.coll, b->nranks, b->elemsize, b->o.minbytes);
    for (int i = 0; i < b->o.warmup && big.count > 0; i++) run_coll(b, &big, 0);
    for (int i = 0; i < b->o.warmup && small.count > 0; i++) run_coll(b, &small, 0);
}

/* As nccl-tests: the root for broadcast and reduce, else -1. */
static int root_column(const bench_t *b)
{
    return opts_coll_rooted(b->o.coll) ? b->o.root : -1;
}

/* ---- p2p (p2p.c times it over these calls) ---- */

static void jb_send(void *ctx, const void *buf, size_t count, int peer)
{
    bench_t *b = ctx;
    JCALL(b, jaccl_send, buf, count, b->o.dtype, peer, b->comm);
}

static void jb_recv(void *ctx, void *buf, size_t count, int peer)
{
    bench_t *b = ctx;
    JCALL(b, jaccl_recv, buf, count, b->o.dtype, peer, b->comm);
}

/* Receives are posted first, as a receiver that is ready is what a window measures. */
static void jb_window(void *ctx, const void *sbuf, int nsend, void *rbuf, int nrecv, size_t count,
                      int peer)
{
    bench_t *b = ctx;
    jaccl_request_t req[2 * 1024];
    int n = 0;
    for (int i = 0; i < nrecv; i++)
        JCALL(b, jaccl_irecv, rbuf, count, b->o.dtype, peer, b->comm, &req[n++]);
    for (int i = 0; i < nsend; i++)
        JCALL(b, jaccl_isend, sbuf, count, b->o.dtype, peer, b->comm, &req[n++]);
    JCALL(b, jaccl_wait_all, n, req);
}

static void jb_barrier(void *ctx)
{
    barrier(ctx);
}

static void jb_max_f64(void *ctx, double *v, int n)
{
    bench_t *b = ctx;
    JCALL(b, jaccl_allreduce, v, v, (size_t)n, JACCL_FLOAT64, JACCL_MAX, b->comm);
}

static void jb_sum_u64(void *ctx, uint64_t *v, int n)
{
    bench_t *b = ctx;
    JCALL(b, jaccl_allreduce, v, v, (size_t)n, JACCL_UINT64, JACCL_SUM, b->comm);
}

static void bench_p2p(bench_t *b)
{
    const p2p_ops_t ops = {.ctx = b,
                           .send = jb_send,
                           .recv = jb_recv,
                           .window = jb_window,
                           .barrier = jb_barrier,
                           .max_f64 = jb_max_f64,
                           .sum_u64 = jb_sum_u64};
    const p2p_ctx_t p = {.o = &b->o,
                         .ops = &ops,
                         .pattern = &b->pattern,
                         .rank = b->rank,
                         .nranks = b->nranks,
                         .elemsize = b->elemsize,
                         .sendbuf = b->sendbuf,
                         .recvbuf = b->recvbuf};
    b->nrows = p2p_run(&p, &b->p2p_rows);
}

static void bench_sizes(bench_t *b)
{
    if (b->o.coll == COLL_P2P) {
        bench_p2p(b);
        return;
    }
    size_t last_count = 0;
    if (b->o.coll == COLL_SENDRECV && b->nranks < 2) {
        if (b->rank == 0) printf("# sendrecv needs at least 2 ranks: nothing to measure\n");
        return;
    }
    warmup(b);
    for (size_t size = b->o.minbytes; size <= b->o.maxbytes;
         size = opts_next_size(size, b->o.stepfactor)) {
        bench_layout_t l = opts_layout(b->o.coll, b->nranks, b->elemsize, size);
        /* Sizes below one element (per rank), or rounding to an earlier count, add nothing. */
        if (l.count == 0 || l.count == last_count) continue;
        last_count = l.count;
        bench_row_t *row = push_row(b);
        bench_step(b, &l, row);
        if (b->rank == 0) report_row_root(stdout, &b->o, row, root_column(b));
    }
}

static int32_t write_json(bench_t *b, uint64_t wrong, double avg)
{
    if (b->json == NULL) return 0;
    int failed =
        b->o.coll == COLL_P2P
            ? report_p2p_json(b->json, &b->o, b->nranks, b->p2p_rows, b->nrows, wrong, avg) != 0
            : report_json_root(b->json, &b->o, b->nranks, b->rows, b->nrows, wrong, avg,
                               root_column(b)) != 0;
    if (fclose(b->json) != 0) failed = 1;
    b->json = NULL;
    if (!failed) return 0;
    fprintf(stderr, "jaccl-bench: writing -J file '%s' failed: %s\n", b->o.json_path,
            strerror(errno));
    return 1;
}

/* Footer and JSON; returns the exit status every rank agrees on. */
static int finish(bench_t *b)
{
    uint64_t wrong;
    double avg;
    if (b->o.coll == COLL_P2P)
        report_p2p_totals(b->p2p_rows, b->nrows, &wrong, &avg);
    else
        report_totals(b->rows, b->nrows, &wrong, &avg);
    int32_t status = wrong > 0 ? 1 : 0;
    if (b->rank == 0) {
        report_footer(stdout, &b->o, wrong, avg);
        if (write_json(b, wrong, avg) != 0) status = 1;
    }
    return (int)agree_max(b, status);
}

int main(int argc, char **argv)
{
    bench_t b;
    memset(&b, 0, sizeof b);
    b.rank = -1;
    int rc = opts_parse(argc, argv, &b.o);
    if (rc != OPTS_OK) return rc == OPTS_HELP ? 0 : 2;
    /* Rows appear as they finish, even through the launcher's pipe. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    init(&b);
    print_header(&b);
    bench_sizes(&b);
    int status = finish(&b);
    jaccl_result_t rc_destroy = jaccl_comm_destroy(b.comm);
    b.comm = NULL; /* freed either way: there is no detail left to read */
    check_result(&b, rc_destroy, "jaccl_comm_destroy");
    free(b.rows);
    free(b.p2p_rows);
    bench_free_touched(b.sendbuf, b.o.offset);
    bench_free_touched(b.recvbuf, b.o.offset);
    return status;
}
