/*
 * jaccl-bench: bandwidth of jaccl collectives over a range of sizes, printed
 * as nccl-tests does.  Every rank runs this program (jaccl-launch starts them);
 * rank 0 prints.  Per size: one untimed call, a barrier, -n timed calls, then
 * (with -c 1) one call on verifiable data whose result is checked; first
 * out-of-place, then in-place.  Times are the slowest rank's average.
 */
#include "bench.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096

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
    bench_row_t *rows;
    size_t nrows;
    size_t rowcap;
} bench_t;

/* One size step.  count is the call's count: per rank for allgather. */
typedef struct {
    size_t count;
    size_t sendbytes;
    size_t recvbytes; /* also the printed size, as nccl-tests */
} bench_layout_t;

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

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void barrier(bench_t *b)
{
    int32_t x = 0;
    JCALL(b, jaccl_allreduce, &x, &x, 1, JACCL_INT32, JACCL_SUM, b->comm);
}

/* Every rank gets the largest status, so all exit together instead of some
 * waiting for a peer that has gone. */
static int32_t agree_status(bench_t *b, int32_t status)
{
    JCALL(b, jaccl_allreduce, &status, &status, 1, JACCL_INT32, JACCL_MAX, b->comm);
    return status;
}

static bench_layout_t layout_for(const bench_t *b, size_t bytes)
{
    bench_layout_t l;
    if (b->o.coll == COLL_ALLGATHER) {
        l.count = bytes / b->elemsize / (size_t)b->nranks;
        l.sendbytes = l.count * b->elemsize;
        l.recvbytes = l.sendbytes * (size_t)b->nranks;
    } else {
        l.count = bytes / b->elemsize;
        l.sendbytes = l.recvbytes = l.count * b->elemsize;
    }
    return l;
}

/* Page-aligned, and touched now so no page fault lands in a timed loop. */
static char *alloc_touched(size_t bytes)
{
    size_t len = bytes == 0 ? PAGE : (bytes + PAGE - 1) / PAGE * PAGE;
    char *p = aligned_alloc(PAGE, len);
    if (p != NULL) memset(p, 0, len);
    return p;
}

static int32_t alloc_buffers(bench_t *b)
{
    bench_layout_t max = layout_for(b, b->o.maxbytes);
    b->sendbuf = alloc_touched(max.sendbytes);
    b->recvbuf = alloc_touched(max.recvbytes);
    if (b->sendbuf != NULL && b->recvbuf != NULL) return 0;
    fprintf(stderr, "jaccl-bench: rank %d: cannot allocate %zu + %zu bytes of buffers\n", b->rank,
            max.sendbytes, max.recvbytes);
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

static void init(bench_t *b)
{
    JCALL(b, jaccl_comm_init_env, &b->comm);
    b->rank = jaccl_comm_rank(b->comm);
    b->nranks = jaccl_comm_size(b->comm);
    b->elemsize = jaccl_dtype_size(b->o.dtype);
    data_pattern_init(&b->pattern, b->o.coll, b->o.dtype, b->o.op, b->nranks);
    int32_t status = alloc_buffers(b);
    int32_t json_status = open_json(b);
    status = agree_status(b, status > json_status ? status : json_status);
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
    if (b->rank == 0) report_header(stdout, &b->o, b->nranks, all);
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

/* Where this rank's input lives; in place it is inside the receive buffer. */
static char *input_buffer(const bench_t *b, const bench_layout_t *l, int inplace)
{
    if (!inplace) return b->sendbuf;
    if (b->o.coll == COLL_ALLGATHER) return b->recvbuf + (size_t)b->rank * l->sendbytes;
    return b->recvbuf;
}

static void run_coll(bench_t *b, const bench_layout_t *l, int inplace)
{
    const char *in = input_buffer(b, l, inplace);
    switch (b->o.coll) {
    case COLL_ALLREDUCE:
        JCALL(b, jaccl_allreduce, in, b->recvbuf, l->count, b->o.dtype, b->o.op, b->comm);
        break;
    case COLL_ALLGATHER:
        JCALL(b, jaccl_allgather, in, b->recvbuf, l->count, b->o.dtype, b->comm);
        break;
    case COLL_SENDRECV:
        run_sendrecv(b, l);
        break;
    }
}

/* Average microseconds per call on this rank. */
static double time_mode(bench_t *b, const bench_layout_t *l, int inplace)
{
    /* Zeros keep repeated in-place reductions clear of overflow and NaN. */
    memset(b->sendbuf, 0, l->sendbytes);
    memset(b->recvbuf, 0, l->recvbytes);
    /* Untimed first call (as nccl-tests), then a barrier so all ranks start together. */
    run_coll(b, l, inplace);
    barrier(b);
    double start = now_us();
    for (int i = 0; i < b->o.iters; i++) run_coll(b, l, inplace);
    return (now_us() - start) / b->o.iters;
}

/* Mismatches in the output of the checked call. */
static uint64_t verify_output(bench_t *b, const bench_layout_t *l, const char *label)
{
    char from[128];
    uint64_t wrong = 0;
    switch (b->o.coll) {
    case COLL_ALLREDUCE:
        return data_check_reduce(&b->pattern, b->recvbuf, l->count, label);
    case COLL_ALLGATHER:
        for (int r = 0; r < b->nranks; r++) {
            snprintf(from, sizeof from, "%s, block of rank %d", label, r);
            wrong += data_check_input(&b->pattern, b->recvbuf + (size_t)r * l->sendbytes, l->count,
                                      r, from);
        }
        return wrong;
    case COLL_SENDRECV:
        snprintf(from, sizeof from, "%s, from rank %d", label,
                 (b->rank + b->nranks - 1) % b->nranks);
        return data_check_input(&b->pattern, b->recvbuf, l->count,
                                (b->rank + b->nranks - 1) % b->nranks, from);
    }
    return 0;
}

/* One call on fresh verifiable input; returns this rank's wrong elements. */
static uint64_t check_mode(bench_t *b, const bench_layout_t *l, int inplace)
{
    char label[96];
    snprintf(label, sizeof label, "rank %d: %s %zu B %s", b->rank, opts_coll_name(b->o.coll),
             l->recvbytes, inplace ? "in-place" : "out-of-place");
    /* Poison first (see data.c), so elements the library never wrote are caught. */
    memset(b->recvbuf, 0xff, l->recvbytes);
    data_fill(&b->pattern, input_buffer(b, l, inplace), l->count, b->rank);
    run_coll(b, l, inplace);
    uint64_t wrong = verify_output(b, l, label);
    if (!inplace) {
        /* The send buffer is const in the API: it must come back untouched. */
        strncat(label, ", send buffer", sizeof label - strlen(label) - 1);
        wrong += data_check_input(&b->pattern, b->sendbuf, l->count, b->rank, label);
    }
    return wrong;
}

static double busbw_factor(const bench_t *b)
{
    double n = b->nranks;
    switch (b->o.coll) {
    case COLL_ALLREDUCE:
        return 2.0 * (n - 1) / n;
    case COLL_ALLGATHER:
        return (n - 1) / n;
    default:
        return 1.0;
    }
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
        row->busbw[m] = row->algbw[m] * busbw_factor(b);
    }
}

static void bench_step(bench_t *b, const bench_layout_t *l, bench_row_t *row)
{
    memset(row, 0, sizeof *row);
    row->bytes = l->recvbytes;
    row->elems = l->recvbytes / b->elemsize;
    /* Blocking send/recv cannot share one buffer on a receive-first rank. */
    row->modes = b->o.coll == COLL_SENDRECV ? 1 : 2;
    for (int m = 0; m < row->modes; m++) {
        row->time_us[m] = time_mode(b, l, m);
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

static size_t next_size(size_t size, double factor)
{
    double next = floor((double)size * factor);
    if (next >= 0x1p62) return SIZE_MAX; /* beyond any -e: ends the loop */
    return next > (double)size ? (size_t)next : size + 1;
}

/* As nccl-tests: warm up at the largest size (buffers, connections), then the smallest. */
static void warmup(bench_t *b)
{
    bench_layout_t big = layout_for(b, b->o.maxbytes);
    bench_layout_t small = layout_for(b, b->o.minbytes);
    for (int i = 0; i < b->o.warmup && big.count > 0; i++) run_coll(b, &big, 0);
    for (int i = 0; i < b->o.warmup && small.count > 0; i++) run_coll(b, &small, 0);
}

static void bench_sizes(bench_t *b)
{
    size_t last_count = 0;
    if (b->o.coll == COLL_SENDRECV && b->nranks < 2) {
        if (b->rank == 0) printf("# sendrecv needs at least 2 ranks: nothing to measure\n");
        return;
    }
    warmup(b);
    for (size_t size = b->o.minbytes; size <= b->o.maxbytes;
         size = next_size(size, b->o.stepfactor)) {
        bench_layout_t l = layout_for(b, size);
        /* Sizes below one element (per rank), or rounding to an earlier count, add nothing. */
        if (l.count == 0 || l.count == last_count) continue;
        last_count = l.count;
        bench_row_t *row = push_row(b);
        bench_step(b, &l, row);
        if (b->rank == 0) report_row(stdout, &b->o, row);
    }
}

static int32_t write_json(bench_t *b, uint64_t wrong, double avg)
{
    if (b->json == NULL) return 0;
    int failed = report_json(b->json, &b->o, b->nranks, b->rows, b->nrows, wrong, avg) != 0;
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
    uint64_t wrong = 0;
    double bw = 0;
    int nbw = 0;
    for (size_t i = 0; i < b->nrows; i++) {
        for (int m = 0; m < b->rows[i].modes; m++) {
            wrong += b->rows[i].wrong[m];
            bw += b->rows[i].busbw[m];
            nbw++;
        }
    }
    double avg = nbw > 0 ? bw / nbw : 0.0;
    int32_t status = wrong > 0 ? 1 : 0;
    if (b->rank == 0) {
        report_footer(stdout, &b->o, wrong, avg);
        if (write_json(b, wrong, avg) != 0) status = 1;
    }
    return (int)agree_status(b, status);
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
    free(b.sendbuf);
    free(b.recvbuf);
    return status;
}
