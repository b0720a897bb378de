/* Output of jaccl-bench: the nccl-tests table on stdout and the optional JSON file. */
#include "bench.h"

#include <errno.h>

static void report_ranks(FILE *f, int nranks, const bench_host_t *hosts)
{
    fprintf(f, "#\n# Using ranks\n");
    for (int r = 0; r < nranks; r++)
        fprintf(f, "#  Rank %2d Pid %6d on %10s\n", r, hosts[r].pid, hosts[r].host);
    fprintf(f, "#\n");
}

/* Only when -a moved the buffers: the default header stays nccl-tests' own. */
static void report_offset(FILE *f, const bench_opts_t *o)
{
    if (o->offset) fprintf(f, "# buffers: %d bytes past a page boundary (-a)\n", o->offset);
}

void report_header(FILE *f, const bench_opts_t *o, int nranks, const bench_host_t *hosts)
{
    fprintf(f, "# jaccl-bench %s: nranks %d dtype %s op %s\n", opts_coll_name(o->coll), nranks,
            opts_dtype_name(o->dtype), opts_op_name(o));
    fprintf(f,
            "# minBytes %zu maxBytes %zu step: %g(factor) warmup iters: %d iters: %d "
            "validation: %d\n",
            o->minbytes, o->maxbytes, o->stepfactor, o->warmup, o->iters, o->check);
    report_offset(f, o);
    report_ranks(f, nranks, hosts);
    /* Column layout copied from nccl-tests so existing parsers keep working. */
    fprintf(f,
            "# %10s  %12s  %8s  %6s  %6s           out-of-place                       in-place\n",
            "", "", "", "", "");
    fprintf(f, "# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s %6s  %7s  %6s  %6s %6s\n", "size",
            "count", "type", "redop", "root", "time", "algbw", "busbw", "#wrong", "time", "algbw",
            "busbw", "#wrong");
    fprintf(f, "# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s  %5s  %7s  %6s  %6s  %5s\n", "(B)",
            "(elements)", "", "", "", "(us)", "(GB/s)", "(GB/s)", "", "(us)", "(GB/s)", "(GB/s)",
            "");
}

/* Fewer decimals for longer times keep the column 7 wide, as nccl-tests. */
static void format_time(char *buf, size_t len, double us)
{
    int decimals = us >= 10000.0 ? 0 : us >= 100.0 ? 1 : 2;
    snprintf(buf, len, "%7.*f", decimals, us);
}

static void report_mode(FILE *f, const bench_opts_t *o, const bench_row_t *row, int mode)
{
    char time[32], wrong[32] = "N/A";
    if (mode >= row->modes) {
        fprintf(f, "  %7s  %6s  %6s  %5s", "N/A", "N/A", "N/A", "N/A");
        return;
    }
    format_time(time, sizeof time, row->time_us[mode]);
    if (o->check) snprintf(wrong, sizeof wrong, "%llu", (unsigned long long)row->wrong[mode]);
    fprintf(f, "  %7s  %6.2f  %6.2f  %5s", time, row->algbw[mode], row->busbw[mode], wrong);
}

void report_row(FILE *f, const bench_opts_t *o, const bench_row_t *row)
{
    report_row_root(f, o, row, -1);
}

void report_row_root(FILE *f, const bench_opts_t *o, const bench_row_t *row, int root)
{
    fprintf(f, "%12zu  %12zu  %8s  %6s  %6i", row->bytes, row->elems, opts_dtype_name(o->dtype),
            opts_op_name(o), root);
    report_mode(f, o, row, 0);
    report_mode(f, o, row, 1);
    fprintf(f, "\n");
    fflush(f);
}

void report_footer(FILE *f, const bench_opts_t *o, uint64_t wrong, double avg_busbw)
{
    if (o->check)
        fprintf(f, "# Out of bounds values : %llu %s\n", (unsigned long long)wrong,
                wrong ? "FAILED" : "OK");
    else
        fprintf(f, "# Out of bounds values : N/A (-c 0)\n");
    /* p2p's mean is of its window bandwidth, not a bus bandwidth */
    fprintf(f, "# Avg %s : %g\n#\n", o->coll == COLL_P2P ? "window bandwidth" : "bus bandwidth   ",
            avg_busbw);
    fflush(f);
}

static void json_mode(FILE *f, const bench_opts_t *o, const bench_row_t *row, int mode)
{
    if (mode >= row->modes) {
        fprintf(f, "null");
        return;
    }
    fprintf(f,
            "{\"time_us\": %.6g, \"iters\": %d, \"algbw_gbps\": %.6g, \"busbw_gbps\": %.6g, "
            "\"wrong\": ",
            row->time_us[mode], row->iters[mode], row->algbw[mode], row->busbw[mode]);
    if (o->check)
        fprintf(f, "%llu}", (unsigned long long)row->wrong[mode]);
    else
        fprintf(f, "null}");
}

static void json_row(FILE *f, const bench_opts_t *o, const bench_row_t *row, int root)
{
    fprintf(f,
            "    {\"size\": %zu, \"count\": %zu, \"type\": \"%s\", \"redop\": \"%s\", "
            "\"root\": %d,\n     \"out_of_place\": ",
            row->bytes, row->elems, opts_dtype_name(o->dtype), opts_op_name(o), root);
    json_mode(f, o, row, 0);
    fprintf(f, ",\n     \"in_place\": ");
    json_mode(f, o, row, 1);
    fprintf(f, "}");
}

int report_json(FILE *f, const bench_opts_t *o, int nranks, const bench_row_t *rows, size_t nrows,
                uint64_t wrong, double avg_busbw)
{
    return report_json_root(f, o, nranks, rows, nrows, wrong, avg_busbw, -1);
}

int report_json_root(FILE *f, const bench_opts_t *o, int nranks, const bench_row_t *rows,
                     size_t nrows, uint64_t wrong, double avg_busbw, int root)
{
    fprintf(f,
            "{\n  \"collective\": \"%s\", \"nranks\": %d, \"dtype\": \"%s\", \"op\": \"%s\",\n"
            "  \"minbytes\": %zu, \"maxbytes\": %zu, \"stepfactor\": %.6g, \"iters\": %d, "
            "\"warmup_iters\": %d, \"check\": %d, \"offset\": %d,\n  \"rows\": [",
            opts_coll_name(o->coll), nranks, opts_dtype_name(o->dtype), opts_op_name(o),
            o->minbytes, o->maxbytes, o->stepfactor, o->iters, o->warmup, o->check, o->offset);
    for (size_t i = 0; i < nrows; i++) {
        fprintf(f, "%s\n", i ? "," : "");
        json_row(f, o, &rows[i], root);
    }
    fprintf(f, "\n  ],\n  \"wrong\": ");
    if (o->check)
        fprintf(f, "%llu", (unsigned long long)wrong);
    else
        fprintf(f, "null");
    fprintf(f, ",\n  \"avg_busbw_gbps\": %.6g\n}\n", avg_busbw);
    /* fflush/ferror catch a full disk before the caller reports success. */
    if (fflush(f) != 0 || ferror(f)) {
        if (errno == 0) errno = EIO;
        return -1;
    }
    return 0;
}

void report_totals(const bench_row_t *rows, size_t nrows, uint64_t *wrong, double *avg_busbw)
{
    double bw = 0;
    int nbw = 0;
    *wrong = 0;
    for (size_t i = 0; i < nrows; i++) {
        for (int m = 0; m < rows[i].modes; m++) {
            *wrong += rows[i].wrong[m];
            bw += rows[i].busbw[m];
            nbw++;
        }
    }
    *avg_busbw = nbw > 0 ? bw / nbw : 0.0;
}

/* ---- p2p: its own columns (OSU's measurements, nccl-tests' layout) ---- */

void report_p2p_header(FILE *f, const bench_opts_t *o, int nranks, const bench_host_t *hosts)
{
    fprintf(f, "# jaccl-bench p2p: ranks 0 and 1 of %d, dtype %s, window %d\n", nranks,
            opts_dtype_name(o->dtype), o->window);
    fprintf(f, "# minBytes %zu maxBytes %zu step: %g(factor) iters: %d validation: %d\n",
            o->minbytes, o->maxbytes, o->stepfactor, o->iters, o->check);
    report_offset(f, o);
    fprintf(f, "# latency: half a ping-pong; bw: a window of messages 0 -> 1, then an ack;\n"
               "# bibw: a window each way at once\n");
    report_ranks(f, nranks, hosts);
    fprintf(f, "# %10s  %12s  %8s  %6s  %8s  %7s  %7s  %6s\n", "size", "count", "type", "window",
            "latency", "bw", "bibw", "#wrong");
    fprintf(f, "# %10s  %12s  %8s  %6s  %8s  %7s  %7s  %6s\n", "(B)", "(elements)", "", "", "(us)",
            "(GB/s)", "(GB/s)", "");
}

void report_p2p_row(FILE *f, const bench_opts_t *o, const p2p_row_t *row)
{
    char time[32], wrong[32] = "N/A";
    format_time(time, sizeof time, row->latency_us);
    if (o->check) snprintf(wrong, sizeof wrong, "%llu", (unsigned long long)row->wrong);
    fprintf(f, "%12zu  %12zu  %8s  %6d  %8s  %7.3f  %7.3f  %6s\n", row->bytes, row->elems,
            opts_dtype_name(o->dtype), row->window, time, row->bw, row->bibw, wrong);
    fflush(f);
}

void report_p2p_totals(const p2p_row_t *rows, size_t nrows, uint64_t *wrong, double *avg_bw)
{
    double bw = 0;
    *wrong = 0;
    for (size_t i = 0; i < nrows; i++) {
        *wrong += rows[i].wrong;
        bw += rows[i].bw;
    }
    *avg_bw = nrows ? bw / (double)nrows : 0.0;
}

int report_p2p_json(FILE *f, const bench_opts_t *o, int nranks, const p2p_row_t *rows, size_t nrows,
                    uint64_t wrong, double avg_bw)
{
    fprintf(f,
            "{\n  \"collective\": \"p2p\", \"nranks\": %d, \"dtype\": \"%s\", \"window\": %d,\n"
            "  \"minbytes\": %zu, \"maxbytes\": %zu, \"stepfactor\": %.6g, \"iters\": %d, "
            "\"check\": %d, \"offset\": %d,\n  \"rows\": [",
            nranks, opts_dtype_name(o->dtype), o->window, o->minbytes, o->maxbytes, o->stepfactor,
            o->iters, o->check, o->offset);
    for (size_t i = 0; i < nrows; i++)
        fprintf(f,
                "%s\n    {\"size\": %zu, \"count\": %zu, \"window\": %d, \"latency_us\": %.6g, "
                "\"bw_gbps\": %.6g, \"bibw_gbps\": %.6g, \"wrong\": %llu}",
                i ? "," : "", rows[i].bytes, rows[i].elems, rows[i].window, rows[i].latency_us,
                rows[i].bw, rows[i].bibw, (unsigned long long)rows[i].wrong);
    fprintf(f, "\n  ],\n  \"wrong\": %llu,\n  \"avg_bw_gbps\": %.6g\n}\n",
            (unsigned long long)wrong, avg_bw);
    if (fflush(f) != 0 || ferror(f)) {
        if (errno == 0) errno = EIO;
        return -1;
    }
    return 0;
}
