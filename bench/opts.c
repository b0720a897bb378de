/* Command-line parsing for jaccl-bench; flags follow nccl-tests. */
#include "bench.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* Sizes beyond this cannot be allocated anyway; the cap keeps size math far from overflow. */
#define MAX_BYTES ((size_t)1 << 48)

static const char *const coll_names[] = {"allreduce", "allgather", "sendrecv"};

/* Printed names follow nccl-tests. */
static const char *const dtype_names[JACCL_DTYPE_COUNT] = {
    "int8", "uint8", "int32", "uint32", "int64", "uint64", "half", "bfloat16", "float", "double"};

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

const char *opts_op_name(const bench_opts_t *o)
{
    return o->coll == COLL_ALLREDUCE ? op_names[o->op] : "none";
}

static void usage(FILE *f)
{
    fprintf(f, "Usage: jaccl-bench COLLECTIVE [flags]\n"
               "Measure a jaccl collective over a range of sizes (output as nccl-tests).\n"
               "Run one process per rank, e.g. jaccl-launch -n 2 jaccl-bench allreduce.\n"
               "\n"
               "COLLECTIVE: allreduce, allgather or sendrecv\n"
               "  -b SIZE   smallest size in bytes (default 8); K, M, G suffixes are 1024-based\n"
               "  -e SIZE   largest size in bytes (default 64M)\n"
               "  -f FACTOR multiply the size by FACTOR (> 1) each step (default 2)\n"
               "  -n ITERS  timed iterations per size (default 20)\n"
               "  -w ITERS  warm-up iterations at the largest and smallest size (default 5)\n"
               "  -c 0|1    verify results after timing (default 1)\n"
               "  -d TYPE   int8 uint8 int32 uint32 int64 uint64 half|float16 bfloat16\n"
               "            float|float32 double|float64 (default float)\n"
               "  -o OP     sum prod min max avg (default sum; allreduce only)\n"
               "  -J FILE   also write the results as JSON to FILE (rank 0)\n"
               "  -h        show this help\n"
               "\n"
               "For allgather SIZE is the gathered (receive) size, as in nccl-tests.\n"
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
    return bad_value('d', s, "int8 uint8 int32 uint32 int64 uint64 half bfloat16 float double");
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
    fprintf(stderr,
            "jaccl-bench: unknown collective '%s': expected allreduce, allgather or "
            "sendrecv\n",
            s);
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
    case 'c':
        return parse_int('c', arg, 0, 1, &o->check);
    case 'd':
        return parse_dtype(arg, &o->dtype);
    case 'o':
        return parse_op(arg, &o->op);
    case 'J':
        o->json_path = arg;
        return 0;
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
    while ((c = getopt(argc, argv, ":b:e:f:n:w:c:d:o:J:h")) != -1) {
        if (c == 'h') return OPTS_HELP;
        if (parse_flag(c, optarg, o) != 0) return OPTS_ERROR;
    }
    if (optind == argc) {
        fprintf(stderr, "jaccl-bench: missing COLLECTIVE (allreduce, allgather or sendrecv)\n");
        return OPTS_ERROR;
    }
    if (optind + 1 < argc) {
        fprintf(stderr, "jaccl-bench: unexpected argument '%s'\n", argv[optind + 1]);
        return OPTS_ERROR;
    }
    return parse_coll(argv[optind], &o->coll) == 0 ? OPTS_OK : OPTS_ERROR;
}

int opts_parse(int argc, char **argv, bench_opts_t *o)
{
    opts_defaults(o);
    int rc = parse_args(argc, argv, o);
    if (rc == OPTS_OK && o->minbytes > o->maxbytes) {
        fprintf(stderr, "jaccl-bench: -b %zu is larger than -e %zu\n", o->minbytes, o->maxbytes);
        rc = OPTS_ERROR;
    }
    if (rc == OPTS_HELP) usage(stdout);
    if (rc == OPTS_ERROR) fprintf(stderr, "Try 'jaccl-bench -h' for help.\n");
    return rc;
}
