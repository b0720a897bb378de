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

#define PAGE 4096

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

typedef struct {
    size_t count; /* per rank for allgather */
    size_t sendbytes;
    size_t recvbytes; /* also the printed size */
} drv_layout_t;

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
               "  -c 0|1    verify results after timing (default 1)\n"
               "  -d TYPE   element type, as jaccl-bench (default float)\n"
               "  -o OP     sum prod min max (default sum; allreduce only)\n"
               "  -W N      p2p: messages in flight in the bandwidth steps (default 64)\n"
               "  -J FILE   also write the results as JSON to FILE (rank 0)\n"
               "  -h        show this help\n\n"
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

static drv_layout_t layout_for(const drv_t *d, size_t bytes)
{
    drv_layout_t l;
    if (d->o.coll == COLL_ALLGATHER) {
        l.count = bytes / d->elemsize / (size_t)d->nranks;
        l.sendbytes = l.count * d->elemsize;
        l.recvbytes = l.sendbytes * (size_t)d->nranks;
    } else {
        l.count = bytes / d->elemsize;
        l.sendbytes = l.recvbytes = l.count * d->elemsize;
    }
    return l;
}

/* Page-aligned and touched now, so no page fault lands in a timed loop. */
static char *alloc_touched(size_t bytes)
{
    size_t len = bytes == 0 ? PAGE : (bytes + PAGE - 1) / PAGE * PAGE;
    char *p = aligned_alloc(PAGE, len);
    if (p != NULL) memset(p, 0, len);
    return p;
}

static int32_t alloc_buffers(drv_t *d)
{
    drv_layout_t max = layout_for(d, d->o.maxbytes);
    d->sendbuf = alloc_touched(max.sendbytes);
    d->recvbuf = alloc_touched(max.recvbytes);
    if (d->sendbuf != NULL && d->recvbuf != NULL) return 0;
    fprintf(stderr, "%s: rank %d: cannot allocate %zu + %zu bytes of buffers\n", d->prog, d->rank,
            max.sendbytes, max.recvbytes);
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

/* 0 if this driver and the library can run o, else 2 after a message (rank 0). */
static int32_t check_opts(const drv_t *d)
{
    bench_coll_t c = d->o.coll;
    int known = c == COLL_ALLREDUCE || c == COLL_ALLGATHER || c == COLL_SENDRECV || c == COLL_P2P;
    if (known) return peer_check_opts(&d->o, d->rank == 0);
    if (d->rank == 0)
        fprintf(stderr, "%s: %s is not implemented (allreduce, allgather, sendrecv, p2p)\n",
                d->prog, opts_coll_name(d->o.coll));
    return 2;
}

/* Returns the status every rank agrees on. */
static int setup(drv_t *d)
{
    int32_t status = check_opts(d);
    d->elemsize = peer_elem_size(d->o.dtype);
    data_pattern_init(&d->pattern, d->o.coll, d->o.dtype, d->o.op, d->nranks);
    if (status == 0) status = alloc_buffers(d);
    if (status == 0) status = open_json(d);
    return (int)peer_max_i32(status);
}

/* Host and pid of every rank, for the header; the library goes below its first line. */
static void print_header(drv_t *d)
{
    bench_host_t me, *all = calloc((size_t)d->nranks, sizeof *all);
    char *text = NULL, extra[128];
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
        snprintf(extra, sizeof extra, "# library: %s\n", peer_library());
        copy_relabeled(mem, stdout, d->prog, extra);
        fclose(mem);
    }
    free(text);
    free(all);
}

/* ------------------------------------------------------------ measurement */

/* Even ranks send first, odd ranks receive first, as jaccl-bench. */
static void run_sendrecv(drv_t *d, const drv_layout_t *l)
{
    int next = (d->rank + 1) % d->nranks;
    int prev = (d->rank + d->nranks - 1) % d->nranks;
    if (d->rank % 2 == 0) peer_send(d->sendbuf, l->count, &d->o, next);
    peer_recv(d->recvbuf, l->count, &d->o, prev);
    if (d->rank % 2 != 0) peer_send(d->sendbuf, l->count, &d->o, next);
}

/* Where this rank's input lives; in place it is inside the receive buffer. */
static char *input_buffer(const drv_t *d, const drv_layout_t *l, int inplace)
{
    if (!inplace) return d->sendbuf;
    if (d->o.coll == COLL_ALLGATHER) return d->recvbuf + (size_t)d->rank * l->sendbytes;
    return d->recvbuf;
}

static void run_coll(drv_t *d, const drv_layout_t *l, int inplace)
{
    const char *in = inplace ? NULL : d->sendbuf;
    switch (d->o.coll) {
    case COLL_ALLREDUCE:
        peer_allreduce(in, d->recvbuf, l->count, &d->o);
        break;
    case COLL_ALLGATHER:
        peer_allgather(in, d->recvbuf, l->count, &d->o);
        break;
    case COLL_SENDRECV:
        run_sendrecv(d, l);
        break;
    default: /* refused by check_opts */
        break;
    }
}

/* Average microseconds per call on this rank; *iters: how many were timed. */
static double time_mode(drv_t *d, const drv_layout_t *l, int inplace, int *iters)
{
    memset(d->sendbuf, 0, l->sendbytes);
    memset(d->recvbuf, 0, l->recvbytes);
    double first = bench_now_us();
    run_coll(d, l, inplace);
    int n = (int)peer_max_i32((int32_t)opts_iters_within(&d->o, bench_now_us() - first));
    double start = bench_now_us();
    for (int i = 0; i < n; i++) run_coll(d, l, inplace);
    *iters = n;
    return (bench_now_us() - start) / n;
}

static uint64_t verify_output(drv_t *d, const drv_layout_t *l, const char *label)
{
    char from[160];
    uint64_t wrong = 0;
    int prev = (d->rank + d->nranks - 1) % d->nranks;
    switch (d->o.coll) {
    case COLL_ALLREDUCE:
        return data_check_reduce(&d->pattern, d->recvbuf, l->count, label);
    case COLL_ALLGATHER:
        for (int r = 0; r < d->nranks; r++) {
            snprintf(from, sizeof from, "%s, block of rank %d", label, r);
            wrong += data_check_input(&d->pattern, d->recvbuf + (size_t)r * l->sendbytes, l->count,
                                      r, from);
        }
        return wrong;
    case COLL_SENDRECV:
        snprintf(from, sizeof from, "%s, from rank %d", label, prev);
        return data_check_input(&d->pattern, d->recvbuf, l->count, prev, from);
    default: /* refused by check_opts */
        return 0;
    }
}

/* One call on fresh verifiable input (receive buffer poisoned first). */
static uint64_t check_mode(drv_t *d, const drv_layout_t *l, int inplace)
{
    char label[128];
    snprintf(label, sizeof label, "%s: rank %d: %s %zu B %s", d->prog, d->rank,
             opts_coll_name(d->o.coll), l->recvbytes, inplace ? "in-place" : "out-of-place");
    memset(d->recvbuf, 0xff, l->recvbytes);
    data_fill(&d->pattern, input_buffer(d, l, inplace), l->count, d->rank);
    run_coll(d, l, inplace);
    uint64_t wrong = verify_output(d, l, label);
    if (!inplace) {
        strncat(label, ", send buffer", sizeof label - strlen(label) - 1);
        wrong += data_check_input(&d->pattern, d->sendbuf, l->count, d->rank, label);
    }
    return wrong;
}

static double busbw_factor(const drv_t *d)
{
    double n = d->nranks;
    if (d->o.coll == COLL_ALLREDUCE) return 2.0 * (n - 1) / n;
    if (d->o.coll == COLL_ALLGATHER) return (n - 1) / n;
    return 1.0;
}

static void agree_row(drv_t *d, bench_row_t *row)
{
    peer_max_f64(row->time_us, 2);
    peer_sum_u64(row->wrong, 2);
    for (int m = 0; m < row->modes; m++) {
        double t = row->time_us[m];
        row->algbw[m] = t > 0 ? (double)row->bytes / t / 1e3 : 0.0;
        row->busbw[m] = row->algbw[m] * busbw_factor(d);
    }
}

static void bench_step(drv_t *d, const drv_layout_t *l, bench_row_t *row)
{
    memset(row, 0, sizeof *row);
    row->bytes = l->recvbytes;
    row->elems = l->recvbytes / d->elemsize;
    row->modes = d->o.coll == COLL_SENDRECV ? 1 : 2;
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
    drv_layout_t big = layout_for(d, d->o.maxbytes);
    drv_layout_t small = layout_for(d, d->o.minbytes);
    for (int i = 0; i < d->o.warmup && big.count > 0; i++) run_coll(d, &big, 0);
    for (int i = 0; i < d->o.warmup && small.count > 0; i++) run_coll(d, &small, 0);
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
        drv_layout_t l = layout_for(d, size);
        if (l.count == 0 || l.count == last_count) continue;
        last_count = l.count;
        bench_row_t *row = push_row(d);
        bench_step(d, &l, row);
        if (d->rank == 0) report_row(stdout, &d->o, row);
    }
}

/* ------------------------------------------------------------ results */

static int32_t write_json(drv_t *d, uint64_t wrong, double avg)
{
    if (d->json == NULL) return 0;
    int failed =
        d->o.coll == COLL_P2P
            ? report_p2p_json(d->json, &d->o, d->nranks, d->p2p_rows, d->nrows, wrong, avg) != 0
            : report_json(d->json, &d->o, d->nranks, d->rows, d->nrows, wrong, avg) != 0;
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
    free(d.sendbuf);
    free(d.recvbuf);
    return status;
}
