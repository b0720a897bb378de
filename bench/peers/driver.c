/*
 * Driver of the peer benchmarks (mpi-bench-*, gloo-bench): jaccl-bench's
 * measurement (bench/bench.c) over the library of peer.h.  Per size: one
 * untimed call, a barrier, -n timed calls, then (with -c 1) one checked call
 * on verifiable data; out-of-place first, then in-place.  Times are the
 * slowest rank's average.  Options, data patterns and output are
 * jaccl-bench's own files (opts.c, data.c, report.c), compiled in as they are;
 * only the program name in their messages is replaced.
 */
#include "peer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    bench_opts_t o;
    const char *prog;
    int rank;
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
} drv_t;

/* ------------------------------------------------------------ messages */

/* Writes line with every "jaccl-bench" replaced by prog. */
static void put_relabeled(FILE *out, const char *line, const char *prog)
{
    static const char old[] = "jaccl-bench";
    const char *hit;
    while ((hit = strstr(line, old)) != NULL) {
        fwrite(line, 1, (size_t)(hit - line), out);
        fputs(prog, out);
        line = hit + sizeof old - 1;
    }
    fputs(line, out);
}

/* Copies f (rewound) to out, relabeled; after the first line, also extra. */
static void copy_relabeled(FILE *f, FILE *out, const char *prog, const char *extra)
{
    char line[512];
    int first = 1;
    rewind(f);
    while (fgets(line, sizeof line, f) != NULL) {
        put_relabeled(out, line, prog);
        if (first && extra != NULL) fputs(extra, out);
        first = 0;
    }
    fflush(out);
}

static void usage(FILE *f, const char *prog)
{
    fprintf(f,
            "Usage: %s COLLECTIVE [flags]\n"
            "jaccl-bench's measurement over %s: the same flags, table and JSON.\n"
            "Run one process per rank.\n\n",
            prog, peer_library());
    peer_usage(f, prog);
    fprintf(f, "  -b SIZE   smallest size in bytes (default 8); K, M, G suffixes are 1024-based\n"
               "  -e SIZE   largest size in bytes (default 64M)\n"
               "  -f FACTOR multiply the size by FACTOR (> 1) each step (default 2)\n"
               "  -n ITERS  timed iterations per size (default 20)\n"
               "  -w ITERS  warm-up iterations at the largest and smallest size (default 5)\n"
               "  -T MS     time limit per size: stop before -n calls once they have taken\n"
               "            MS milliseconds (checked after 1, 3, 7, 15 ... calls; default 0)\n"
               "  -c 0|1    verify results after timing (default 1)\n"
               "  -d TYPE   element type, as jaccl-bench (default float)\n"
               "  -o OP     sum prod min max (default sum; allreduce, reducescatter and\n"
               "            reduce only)\n"
               "  -r ROOT   root rank of broadcast and reduce (default 0)\n"
               "  -W N      p2p: messages in flight in the bandwidth steps (default 64)\n"
               "  -J FILE   also write the results as JSON to FILE (rank 0)\n"
               "  -h        show this help\n\n"
               "SIZE, the count column and busbw are jaccl-bench's (see jaccl-bench -h).\n"
               "Exit status: 0 ok, 1 library error or wrong results, 2 bad usage.\n");
}

static int wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) return 1;
    return 0;
}

/* opts_parse with its messages relabeled.  Returns -1 to go on, else the exit status. */
static int parse_opts(drv_t *d, int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        usage(stdout, d->prog);
        return 0;
    }
    FILE *tmp = tmpfile();
    int saved = tmp != NULL ? dup(STDERR_FILENO) : -1;
    fflush(stderr);
    if (saved >= 0) dup2(fileno(tmp), STDERR_FILENO);
    int rc = opts_parse(argc, argv, &d->o);
    fflush(stderr);
    if (saved >= 0) {
        dup2(saved, STDERR_FILENO);
        close(saved);
        copy_relabeled(tmp, stderr, d->prog, NULL);
    }
    if (tmp != NULL) fclose(tmp);
    if (rc == OPTS_OK) return -1;
    return rc == OPTS_HELP ? 0 : 2;
}

/* ------------------------------------------------------------ setup */

/* The receive buffer is of the larger size: in place, reducescatter's input is in it. */
static int32_t alloc_buffers(drv_t *d)
{
    bench_layout_t max = opts_layout(d->o.coll, d->nranks, d->elemsize, d->o.maxbytes);
    d->sendbuf = bench_alloc_touched(max.sendbytes, d->o.offset);
    d->recvbuf = bench_alloc_touched(max.bytes, d->o.offset);
    if (d->sendbuf != NULL && d->recvbuf != NULL) return 0;
    fprintf(stderr, "%s: rank %d: cannot allocate %zu + %zu bytes of buffers\n", d->prog, d->rank,
            max.sendbytes, max.bytes);
    return 1;
}

static int32_t open_json(drv_t *d)
{
    if (d->rank != 0 || d->o.json_path == NULL) return 0;
    d->json = fopen(d->o.json_path, "w");
    if (d->json != NULL) return 0;
    fprintf(stderr, "%s: cannot open -J file '%s': %s\n", d->prog, d->o.json_path, strerror(errno));
    return 2;
}

/* -r can only be checked once the size is known: a usage error (2), as in jaccl-bench. */
static int32_t check_root(const drv_t *d)
{
    if (!opts_coll_rooted(d->o.coll) || d->o.root < d->nranks) return 0;
    if (d->rank == 0)
        fprintf(stderr, "%s: -r %d is not a rank: there are %d (0..%d)\n", d->prog, d->o.root,
                d->nranks, d->nranks - 1);
    return 2;
}

/* Returns the status every rank agrees on. */
static int setup(drv_t *d)
{
    int32_t status = peer_check_opts(&d->o, d->rank == 0);
    if (status == 0) status = check_root(d);
    d->elemsize = peer_elem_size(d->o.dtype);
    data_pattern_init(&d->pattern, d->o.coll, d->o.dtype, d->o.op, d->nranks);
    if (status == 0) status = alloc_buffers(d);
    if (status == 0) status = open_json(d);
    return (int)peer_max_i32(status);
}

/* The lines below the header's first: the library, and how its measurement differs. */
static void header_extra(const drv_t *d, char *extra, size_t len)
{
    const char *note = peer_note(&d->o);
    int n = snprintf(extra, len, "# library: %s\n", peer_library());
    if (n > 0 && (size_t)n < len && note != NULL)
        snprintf(extra + n, len - (size_t)n, "# note: %s\n", note);
}

/* Host and pid of every rank, for the header; the library goes below its first line. */
static void print_header(drv_t *d)
{
    bench_host_t me, *all = calloc((size_t)d->nranks, sizeof *all);
    char *text = NULL, extra[512];
    size_t len = 0;
    if (all == NULL) {
        fprintf(stderr, "%s: rank %d: out of memory\n", d->prog, d->rank);
        exit(1);
    }
    memset(&me, 0, sizeof me);
    me.pid = (int)getpid();
    if (gethostname(me.host, sizeof me.host - 1) != 0) strcpy(me.host, "?");
    peer_allgather_bytes(&me, all, sizeof me);
    for (int r = 0; r < d->nranks; r++) all[r].host[sizeof all[r].host - 1] = '\0';
    FILE *mem = d->rank == 0 ? open_memstream(&text, &len) : NULL;
    if (mem != NULL) {
        if (d->o.coll == COLL_P2P)
            report_p2p_header(mem, &d->o, d->nranks, all);
        else
            report_header(mem, &d->o, d->nranks, all);
        fclose(mem);
        mem = fmemopen(text, len, "r");
    }
    if (mem != NULL) {
        header_extra(d, extra, sizeof extra);
        copy_relabeled(mem, stdout, d->prog, extra);
        fclose(mem);
    }
    free(text);
    free(all);
}

/* ------------------------------------------------------------ measurement */

/* Even ranks send first, odd ranks receive first, as jaccl-bench. */
static void run_sendrecv(drv_t *d, const bench_layout_t *l)
{
    int next = (d->rank + 1) % d->nranks;
    int prev = (d->rank + d->nranks - 1) % d->nranks;
    if (d->rank % 2 == 0) peer_send(d->sendbuf, l->count, &d->o, next);
    peer_recv(d->recvbuf, l->count, &d->o, prev);
    if (d->rank % 2 != 0) peer_send(d->sendbuf, l->count, &d->o, next);
}

/*
 * Where this rank's input lives; in place it is inside the receive buffer (on
 * every rank for broadcast and reduce), as jaccl-bench puts it.
 */
static char *input_buffer(const drv_t *d, const bench_layout_t *l, int inplace)
{
    if (!inplace) return d->sendbuf;
    if (d->o.coll == COLL_ALLGATHER) return d->recvbuf + (size_t)d->rank * l->sendbytes;
    return d->recvbuf;
}

/* in == NULL tells the library to work in place (peer.h). */
static void run_coll(drv_t *d, const bench_layout_t *l, int inplace)
{
    const char *in = inplace ? NULL : d->sendbuf;
    char *out = d->recvbuf;
    const bench_opts_t *o = &d->o;
    switch (o->coll) {
    case COLL_ALLREDUCE:
        peer_allreduce(in, out, l->count, o);
        break;
    case COLL_ALLGATHER:
        peer_allgather(in, out, l->count, o);
        break;
    case COLL_REDUCESCATTER:
        peer_reduce_scatter(in, out, l->count, o);
        break;
    case COLL_BROADCAST:
        peer_broadcast(in, out, l->count, o);
        break;
    case COLL_REDUCE:
        peer_reduce(in, out, l->count, o);
        break;
    case COLL_ALLTOALL:
        peer_alltoall(in, out, l->count, o);
        break;
    case COLL_SENDRECV:
        run_sendrecv(d, l);
        break;
    case COLL_P2P: /* drv_p2p */
        break;
    }
}

struct timed_call {
    drv_t *d;
    const bench_layout_t *l;
    int inplace;
};

static void timed_call(void *ctx)
{
    struct timed_call *t = ctx;
    run_coll(t->d, t->l, t->inplace);
}

static int32_t timed_agree(void *ctx, int32_t v)
{
    (void)ctx;
    return peer_max_i32(v);
}

/* Average microseconds per call on this rank; *iters: how many were timed. */
static double time_mode(drv_t *d, const bench_layout_t *l, int inplace, int *iters)
{
    struct timed_call c = {d, l, inplace};
    bench_timed_t t = {&c, timed_call, timed_agree};
    memset(d->sendbuf, 0, l->sendbytes);
    memset(d->recvbuf, 0, l->bytes);
    run_coll(d, l, inplace);
    peer_barrier();
    return bench_time_calls(&d->o, &t, iters);
}

/*
 * Mismatches in the output of the checked call.  It is at the start of the
 * receive buffer in every mode: in place, reducescatter's too (peer.h), where
 * jaccl-bench looks in block rank.
 */
static uint64_t verify_output(const drv_t *d, const bench_layout_t *l, const char *label)
{
    return data_check_output(&d->pattern, d->recvbuf, l->count, d->elemsize, d->rank, d->o.root,
                             label);
}

/* One call on fresh verifiable input (receive buffer poisoned first). */
static uint64_t check_mode(drv_t *d, const bench_layout_t *l, int inplace)
{
    char label[128];
    size_t inputs = l->sendbytes / d->elemsize;
    snprintf(label, sizeof label, "%s: rank %d: %s %zu B %s", d->prog, d->rank,
             opts_coll_name(d->o.coll), l->bytes, inplace ? "in-place" : "out-of-place");
    memset(d->recvbuf, 0xff, l->bytes);
    data_fill(&d->pattern, input_buffer(d, l, inplace), inputs, d->rank);
    run_coll(d, l, inplace);
    uint64_t wrong = verify_output(d, l, label);
    if (!inplace) {
        strncat(label, ", send buffer", sizeof label - strlen(label) - 1);
        wrong += data_check_input(&d->pattern, d->sendbuf, inputs, d->rank, label);
    }
    return wrong;
}

static void agree_row(drv_t *d, bench_row_t *row)
{
    peer_max_f64(row->time_us, 2);
    peer_sum_u64(row->wrong, 2);
    for (int m = 0; m < row->modes; m++) {
        double t = row->time_us[m];
        row->algbw[m] = t > 0 ? (double)row->bytes / t / 1e3 : 0.0;
        row->busbw[m] = row->algbw[m] * opts_busbw_factor(d->o.coll, d->nranks);
    }
}

static void bench_step(drv_t *d, const bench_layout_t *l, bench_row_t *row)
{
    memset(row, 0, sizeof *row);
    row->bytes = l->bytes;
    row->elems = l->elems;
    /* Blocking send/recv cannot share one buffer; some libraries lack an in-place form. */
    row->modes = d->o.coll == COLL_SENDRECV || !peer_in_place(&d->o) ? 1 : 2;
    for (int m = 0; m < row->modes; m++) {
        row->time_us[m] = time_mode(d, l, m, &row->iters[m]);
        if (d->o.check) row->wrong[m] = check_mode(d, l, m);
    }
    agree_row(d, row);
}

static bench_row_t *push_row(drv_t *d)
{
    if (d->nrows == d->rowcap) {
        size_t cap = d->rowcap ? 2 * d->rowcap : 64;
        bench_row_t *rows = realloc(d->rows, cap * sizeof *rows);
        if (rows == NULL) {
            fprintf(stderr, "%s: rank %d: out of memory\n", d->prog, d->rank);
            exit(1);
        }
        d->rows = rows;
        d->rowcap = cap;
    }
    return &d->rows[d->nrows++];
}

static void warmup(drv_t *d)
{
    bench_layout_t big = opts_layout(d->o.coll, d->nranks, d->elemsize, d->o.maxbytes);
    bench_layout_t small = opts_layout(d->o.coll, d->nranks, d->elemsize, d->o.minbytes);
    for (int i = 0; i < d->o.warmup && big.count > 0; i++) run_coll(d, &big, 0);
    for (int i = 0; i < d->o.warmup && small.count > 0; i++) run_coll(d, &small, 0);
}

/* As jaccl-bench: the root for broadcast and reduce, else -1. */
static int root_column(const drv_t *d)
{
    return opts_coll_rooted(d->o.coll) ? d->o.root : -1;
}

/* ---- p2p over the library (bench/p2p.c times it, as in jaccl-bench) ---- */

static void pd_send(void *ctx, const void *buf, size_t count, int peer)
{
    peer_send(buf, count, &((drv_t *)ctx)->o, peer);
}

static void pd_recv(void *ctx, void *buf, size_t count, int peer)
{
    peer_recv(buf, count, &((drv_t *)ctx)->o, peer);
}

static void pd_window(void *ctx, const void *sbuf, int nsend, void *rbuf, int nrecv, size_t count,
                      int peer)
{
    peer_window(sbuf, nsend, rbuf, nrecv, count, &((drv_t *)ctx)->o, peer);
}

static void pd_barrier(void *ctx)
{
    (void)ctx;
    peer_barrier();
}

static void pd_max_f64(void *ctx, double *v, int n)
{
    (void)ctx;
    peer_max_f64(v, n);
}

static void pd_sum_u64(void *ctx, uint64_t *v, int n)
{
    (void)ctx;
    peer_sum_u64(v, n);
}

static void drv_p2p(drv_t *d)
{
    const p2p_ops_t ops = {.ctx = d,
                           .send = pd_send,
                           .recv = pd_recv,
                           .window = pd_window,
                           .barrier = pd_barrier,
                           .max_f64 = pd_max_f64,
                           .sum_u64 = pd_sum_u64};
    const p2p_ctx_t p = {.o = &d->o,
                         .ops = &ops,
                         .pattern = &d->pattern,
                         .rank = d->rank,
                         .nranks = d->nranks,
                         .elemsize = d->elemsize,
                         .sendbuf = d->sendbuf,
                         .recvbuf = d->recvbuf};
    d->nrows = p2p_run(&p, &d->p2p_rows);
}

static void bench_sizes(drv_t *d)
{
    if (d->o.coll == COLL_P2P) {
        drv_p2p(d);
        return;
    }
    size_t last_count = 0;
    if (d->o.coll == COLL_SENDRECV && d->nranks < 2) {
        if (d->rank == 0) printf("# sendrecv needs at least 2 ranks: nothing to measure\n");
        return;
    }
    warmup(d);
    for (size_t size = d->o.minbytes; size <= d->o.maxbytes;
         size = opts_next_size(size, d->o.stepfactor)) {
        bench_layout_t l = opts_layout(d->o.coll, d->nranks, d->elemsize, size);
        if (l.count == 0 || l.count == last_count) continue;
        last_count = l.count;
        bench_row_t *row = push_row(d);
        bench_step(d, &l, row);
        if (d->rank == 0) report_row_root(stdout, &d->o, row, root_column(d));
    }
}

/* ------------------------------------------------------------ results */

static int32_t write_json(drv_t *d, uint64_t wrong, double avg)
{
    if (d->json == NULL) return 0;
    int failed =
        d->o.coll == COLL_P2P
            ? report_p2p_json(d->json, &d->o, d->nranks, d->p2p_rows, d->nrows, wrong, avg) != 0
            : report_json_root(d->json, &d->o, d->nranks, d->rows, d->nrows, wrong, avg,
                               root_column(d)) != 0;
    if (fclose(d->json) != 0) failed = 1;
    d->json = NULL;
    if (!failed) return 0;
    fprintf(stderr, "%s: writing -J file '%s' failed: %s\n", d->prog, d->o.json_path,
            strerror(errno));
    return 1;
}

static int finish(drv_t *d)
{
    uint64_t wrong;
    double avg;
    if (d->o.coll == COLL_P2P)
        report_p2p_totals(d->p2p_rows, d->nrows, &wrong, &avg);
    else
        report_totals(d->rows, d->nrows, &wrong, &avg);
    int32_t status = wrong > 0 ? 1 : 0;
    if (d->rank == 0) {
        report_footer(stdout, &d->o, wrong, avg);
        if (write_json(d, wrong, avg) != 0) status = 1;
    }
    return (int)peer_max_i32(status);
}

int main(int argc, char **argv)
{
    drv_t d;
    memset(&d, 0, sizeof d);
    d.rank = -1;
    const char *slash = strrchr(argv[0], '/');
    d.prog = slash != NULL ? slash + 1 : argv[0];
    int rc = parse_opts(&d, argc, argv);
    if (rc >= 0) return rc;
    setvbuf(stdout, NULL, _IOLBF, 0);
    peer_init(&argc, &argv, &d.rank, &d.nranks);
    int status = setup(&d);
    if (status == 0) {
        print_header(&d);
        bench_sizes(&d);
        status = finish(&d);
    }
    if (d.json != NULL) fclose(d.json);
    peer_finalize();
    free(d.rows);
    free(d.p2p_rows);
    bench_free_touched(d.sendbuf, d.o.offset);
    bench_free_touched(d.recvbuf, d.o.offset);
    return status;
}
