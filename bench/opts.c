/* Command-line parsing for jaccl-bench; flags follow nccl-tests. */
#include "bench.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* Sizes beyond this cannot be allocated anyway; the cap keeps size math far from overflow. */
#define MAX_BYTES ((size_t)1 << 48)

/* In bench_coll_t order. */
static const char *const coll_names[] = {"allreduce", "allgather", "sendrecv", "reducescatter",
                                         "broadcast", "reduce",    "alltoall", "p2p"};

#define COLL_LIST                                                                                  \
    "allreduce, allgather, reducescatter, broadcast, reduce, alltoall, sendrecv or p2p"

/* Printed names follow nccl-tests (which has no bool, int16, uint16 or complex64). */
static const char *const dtype_names[JACCL_DTYPE_COUNT] = {
    "int8",     "uint8", "int32",  "uint32", "int64", "uint64", "half",
    "bfloat16", "float", "double", "bool",   "int16", "uint16", "complex64"};

#define DTYPE_LIST                                                                                 \
    "int8 uint8 int16 uint16 int32 uint32 int64 uint64 bool half bfloat16 float double complex64"

static const char *const op_names[JACCL_OP_COUNT] = {"sum", "prod", "min", "max", "avg"};

static const struct {
    const char *name;
    jaccl_dtype_t dtype;
} dtype_aliases[] = {
    {"float16", JACCL_FLOAT16}, {"float32", JACCL_FLOAT32}, {"float64", JACCL_FLOAT64}};

const char *opts_coll_name(bench_coll_t coll)
{
    return coll_names[coll];
}

const char *opts_dtype_name(jaccl_dtype_t dtype)
{
    return dtype_names[dtype];
}

int opts_coll_reduces(bench_coll_t coll)
{
    return coll == COLL_ALLREDUCE || coll == COLL_REDUCESCATTER || coll == COLL_REDUCE;
}

int opts_coll_rooted(bench_coll_t coll)
{
    return coll == COLL_BROADCAST || coll == COLL_REDUCE;
}

const char *opts_op_name(const bench_opts_t *o)
{
    return opts_coll_reduces(o->coll) ? op_names[o->op] : "none";
}

static void usage(FILE *f)
{
    fprintf(f, "Usage: jaccl-bench COLLECTIVE [flags]\n"
               "Measure a jaccl collective over a range of sizes (output as nccl-tests).\n"
               "Run one process per rank, e.g. jaccl-launch -n 2 jaccl-bench allreduce.\n"
               "\n"
               "COLLECTIVE: " COLL_LIST "\n"
               "  -b SIZE   smallest size in bytes (default 8); K, M, G suffixes are 1024-based\n"
               "  -e SIZE   largest size in bytes (default 64M)\n"
               "  -f FACTOR multiply the size by FACTOR (> 1) each step (default 2)\n"
               "  -n ITERS  timed iterations per size (default 20)\n"
               "  -w ITERS  warm-up iterations at the largest and smallest size (default 5)\n"
               "  -T MS     time limit per size: stop before -n calls once they have taken\n"
               "            MS milliseconds (checked after 1, 3, 7, 15 ... calls; default 0,\n"
               "            no limit); the JSON gives the calls timed per row\n"
               "  -c 0|1    verify results after timing (default 1)\n"
               "  -d TYPE   int8 uint8 int16 uint16 int32 uint32 int64 uint64 bool\n"
               "            half|float16 bfloat16 float|float32 double|float64 complex64\n"
               "            (default float)\n"
               "  -o OP     sum prod min max avg (default sum; allreduce, reducescatter and\n"
               "            reduce only); for bool sum and max are OR, prod and min are AND\n"
               "            and there is no avg; complex64 has sum, prod and avg only\n"
               "  -r ROOT   root rank of broadcast and reduce (default 0)\n"
               "  -W N      p2p: messages in flight in the bandwidth steps (default 64; fewer\n"
               "            where N messages would exceed 128 MiB)\n"
               "  -J FILE   also write the results as JSON to FILE (rank 0)\n"
               "  -a BYTES  start the send and receive buffers BYTES past a 4 KiB page\n"
               "            boundary (0-4095; default 0), as malloc's large blocks are (16)\n"
               "  -h        show this help\n"
               "\n"
               "SIZE is as in nccl-tests: the gathered (receive) size for allgather, every\n"
               "rank's whole send buffer for reducescatter and alltoall, the buffer for the\n"
               "others; it is rounded down to whole elements (per rank where split).  The\n"
               "count column is the call's count (per rank for reducescatter, per peer for\n"
               "alltoall), except for allgather: all gathered elements.  busbw is algbw\n"
               "times 2(n-1)/n for allreduce, (n-1)/n for allgather, reducescatter and\n"
               "alltoall, 1 for broadcast, reduce and sendrecv.\n"
               "\n"
               "p2p measures ranks 0 and 1 as the OSU micro-benchmarks do: latency is half\n"
               "a ping-pong round trip, bw a window of -W messages from rank 0 to rank 1\n"
               "followed by an acknowledgement, bibw a window each way at once.\n"
               "Exit status: 0 ok, 1 jaccl error or wrong results, 2 bad usage.\n");
}

static int bad_value(char flag, const char *value, const char *expected)
{
    fprintf(stderr, "jaccl-bench: invalid value '%s' for -%c: expected %s\n", value, flag,
            expected);
    return -1;
}

static int unit_shift(char c)
{
    switch (c) {
    case 'k':
    case 'K':
        return 10;
    case 'm':
    case 'M':
        return 20;
    case 'g':
    case 'G':
        return 30;
    default:
        return 0;
    }
}

/* "64", "1.5K", "64M", "1G": binary units, as nccl-tests; fractions are rounded down. */
static int parse_size(char flag, const char *s, size_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    int shift = 0;
    if (end != s && *end != '\0' && end[1] == '\0') shift = unit_shift(*end);
    int ok = end != s && errno == 0 && (*end == '\0' || shift > 0) && isfinite(v) && v >= 0;
    if (!ok) return bad_value(flag, s, "a size such as 8, 64K, 1.5M or 1G");
    if (ldexp(v, shift) > (double)MAX_BYTES) return bad_value(flag, s, "a size up to 256 TiB");
    *out = (size_t)ldexp(v, shift);
    return 0;
}

static int parse_int(char flag, const char *s, long min, long max, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || errno != 0 || v < min || v > max) {
        char expected[64];
        snprintf(expected, sizeof expected, "an integer from %ld to %ld", min, max);
        return bad_value(flag, s, expected);
    }
    *out = (int)v;
    return 0;
}

static int parse_factor(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno != 0 || !isfinite(v) || v <= 1.0 || v > 1024.0)
        return bad_value('f', s, "a number greater than 1 and at most 1024");
    *out = v;
    return 0;
}

static int parse_dtype(const char *s, jaccl_dtype_t *out)
{
    for (int i = 0; i < JACCL_DTYPE_COUNT; i++) {
        if (strcasecmp(s, dtype_names[i]) == 0) {
            *out = (jaccl_dtype_t)i;
            return 0;
        }
    }
    for (size_t i = 0; i < sizeof dtype_aliases / sizeof dtype_aliases[0]; i++) {
        if (strcasecmp(s, dtype_aliases[i].name) == 0) {
            *out = dtype_aliases[i].dtype;
            return 0;
        }
    }
    return bad_value('d', s, DTYPE_LIST);
}

static int parse_op(const char *s, jaccl_op_t *out)
{
    for (int i = 0; i < JACCL_OP_COUNT; i++) {
        if (strcasecmp(s, op_names[i]) == 0) {
            *out = (jaccl_op_t)i;
            return 0;
        }
    }
    return bad_value('o', s, "sum, prod, min, max or avg");
}

static int parse_coll(const char *s, bench_coll_t *out)
{
    for (int i = 0; i < (int)(sizeof coll_names / sizeof coll_names[0]); i++) {
        if (strcmp(s, coll_names[i]) == 0) {
            *out = (bench_coll_t)i;
            return 0;
        }
    }
    fprintf(stderr, "jaccl-bench: unknown collective '%s': expected " COLL_LIST "\n", s);
    return -1;
}

static void opts_defaults(bench_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->minbytes = 8;
    o->maxbytes = (size_t)64 << 20;
    o->stepfactor = 2.0;
    o->iters = 20;
    o->warmup = 5;
    o->check = 1;
    o->dtype = JACCL_FLOAT32;
    o->op = JACCL_SUM;
    o->window = 64;
}

static int parse_flag(int c, const char *arg, bench_opts_t *o)
{
    switch (c) {
    case 'b':
        return parse_size('b', arg, &o->minbytes);
    case 'e':
        return parse_size('e', arg, &o->maxbytes);
    case 'f':
        return parse_factor(arg, &o->stepfactor);
    case 'n':
        return parse_int('n', arg, 1, 1000000000, &o->iters);
    case 'w':
        return parse_int('w', arg, 0, 1000000000, &o->warmup);
    case 'T':
        return parse_int('T', arg, 0, 100000000, &o->max_ms);
    case 'c':
        return parse_int('c', arg, 0, 1, &o->check);
    case 'd':
        return parse_dtype(arg, &o->dtype);
    case 'o':
        return parse_op(arg, &o->op);
    case 'r':
        return parse_int('r', arg, 0, INT_MAX, &o->root);
    case 'W':
        return parse_int('W', arg, 1, 1024, &o->window);
    case 'J':
        o->json_path = arg;
        return 0;
    case 'a':
        return parse_int('a', arg, 0, 4095, &o->offset);
    case ':':
        fprintf(stderr, "jaccl-bench: flag -%c needs a value\n", optopt);
        return -1;
    default:
        fprintf(stderr, "jaccl-bench: unknown flag -%c\n", optopt);
        return -1;
    }
}

/* Flags and COLLECTIVE may come in any order (getopt permutes argv). */
static int parse_args(int argc, char **argv, bench_opts_t *o)
{
    int c;
    opterr = 0; /* our messages name the flag and what it expects */
    while ((c = getopt(argc, argv, ":b:e:f:n:w:T:c:d:o:r:W:J:a:h")) != -1) {
        if (c == 'h') return OPTS_HELP;
        if (parse_flag(c, optarg, o) != 0) return OPTS_ERROR;
    }
    if (optind == argc) {
        fprintf(stderr, "jaccl-bench: missing COLLECTIVE (" COLL_LIST ")\n");
        return OPTS_ERROR;
    }
    if (optind + 1 < argc) {
        fprintf(stderr, "jaccl-bench: unexpected argument '%s'\n", argv[optind + 1]);
        return OPTS_ERROR;
    }
    return parse_coll(argv[optind], &o->coll) == 0 ? OPTS_OK : OPTS_ERROR;
}

/* The library refuses these pairs: say so before any rank starts. */
static int check_op_dtype(const bench_opts_t *o)
{
    if (!opts_coll_reduces(o->coll)) return 0;
    int minmax = o->op == JACCL_MIN || o->op == JACCL_MAX;
    if (o->dtype == JACCL_BOOL && o->op == JACCL_AVG)
        fprintf(stderr, "jaccl-bench: -o avg is not defined for bool\n");
    else if (o->dtype == JACCL_COMPLEX64 && minmax)
        fprintf(stderr, "jaccl-bench: -o %s is not defined for complex64 (sum, prod, avg only)\n",
                op_names[o->op]);
    else
        return 0;
    return -1;
}

int opts_parse(int argc, char **argv, bench_opts_t *o)
{
    opts_defaults(o);
    int rc = parse_args(argc, argv, o);
    if (rc == OPTS_OK && o->minbytes > o->maxbytes) {
        fprintf(stderr, "jaccl-bench: -b %zu is larger than -e %zu\n", o->minbytes, o->maxbytes);
        rc = OPTS_ERROR;
    }
    if (rc == OPTS_OK && check_op_dtype(o) != 0) rc = OPTS_ERROR;
    if (rc == OPTS_HELP) usage(stdout);
    if (rc == OPTS_ERROR) fprintf(stderr, "Try 'jaccl-bench -h' for help.\n");
    return rc;
}

size_t opts_next_size(size_t size, double factor)
{
    double next = floor((double)size * factor);
    if (next >= 0x1p62) return SIZE_MAX; /* beyond any -e: ends the loop */
    return next > (double)size ? (size_t)next : size + 1;
}

double bench_time_calls(const bench_opts_t *o, const bench_timed_t *t, int *iters)
{
    double spent = 0, limit_us = (double)o->max_ms * 1e3;
    long done = 0, block = o->max_ms > 0 ? 1 : o->iters;
    for (; done < o->iters; block *= 2) {
        long n = block < o->iters - done ? block : o->iters - done;
        double start = bench_now_us();
        for (long i = 0; i < n; i++) t->call(t->ctx);
        spent += bench_now_us() - start;
        done += n;
        if (o->max_ms > 0 && done < o->iters && t->agree_max(t->ctx, spent >= limit_us)) break;
    }
    *iters = (int)done;
    return spent / (double)done;
}

/* Input of one block per rank: reducescatter, alltoall. */
static int sends_blocks(bench_coll_t coll)
{
    return coll == COLL_REDUCESCATTER || coll == COLL_ALLTOALL;
}

/* Output of one block per rank: allgather, alltoall. */
static int receives_blocks(bench_coll_t coll)
{
    return coll == COLL_ALLGATHER || coll == COLL_ALLTOALL;
}

bench_layout_t opts_layout(bench_coll_t coll, int nranks, size_t elemsize, size_t bytes)
{
    bench_layout_t l;
    size_t n = (size_t)nranks;
    int split = sends_blocks(coll) || receives_blocks(coll);
    l.count = bytes / elemsize / (split ? n : 1);
    size_t block = l.count * elemsize;
    l.sendbytes = sends_blocks(coll) ? block * n : block;
    l.recvbytes = receives_blocks(coll) ? block * n : block;
    l.bytes = l.sendbytes > l.recvbytes ? l.sendbytes : l.recvbytes;
    /* nccl-tests prints the call's count; jaccl-bench always printed allgather's total. */
    l.elems = coll == COLL_ALLGATHER ? l.recvbytes / elemsize : l.count;
    return l;
}

double opts_busbw_factor(bench_coll_t coll, int nranks)
{
    double n = nranks;
    switch (coll) {
    case COLL_ALLREDUCE:
        return 2.0 * (n - 1) / n;
    case COLL_ALLGATHER:
    case COLL_REDUCESCATTER:
    case COLL_ALLTOALL:
        return (n - 1) / n;
    default: /* broadcast, reduce, sendrecv */
        return 1.0;
    }
}

char *bench_alloc_touched(size_t bytes, int offset)
{
    size_t page = 4096, need = bytes + (size_t)offset;
    size_t len = need == 0 ? page : (need + page - 1) / page * page;
    char *p = aligned_alloc(page, len);
    if (p == NULL) return NULL;
    memset(p, 0, len);
    return p + offset;
}

void bench_free_touched(char *p, int offset)
{
    if (p != NULL) free(p - offset);
}

double bench_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}
