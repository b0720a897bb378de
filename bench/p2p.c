/*
 * Point-to-point between ranks 0 and 1, as the OSU micro-benchmarks measure
 * it: latency is half a ping-pong's round trip; bandwidth is a window of
 * messages in flight from rank 0 to rank 1, then a one-element
 * acknowledgement; bidirectional bandwidth is both ranks streaming a window
 * at once.  The loop is written against p2p_ops_t, so jaccl-bench and the
 * peer benchmarks (bench/peers) time exactly the same steps.  Other ranks
 * only join the agreements.
 */
#include "bench.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Bytes in flight per window at most: keeps a 64 MiB step to a few seconds. */
#define P2P_WINDOW_BYTES ((size_t)128 << 20)

int p2p_window(const bench_opts_t *o, size_t bytes)
{
    size_t most = bytes ? P2P_WINDOW_BYTES / bytes : (size_t)o->window;
    if (most < 1) most = 1;
    return (size_t)o->window < most ? o->window : (int)most;
}

/* One round trip, rank 0 first. */
static void pingpong(const p2p_ctx_t *p, size_t count)
{
    const p2p_ops_t *ops = p->ops;
    if (p->rank == 0) {
        ops->send(ops->ctx, p->sendbuf, count, 1);
        ops->recv(ops->ctx, p->recvbuf, count, 1);
    } else if (p->rank == 1) {
        ops->recv(ops->ctx, p->recvbuf, count, 0);
        ops->send(ops->ctx, p->sendbuf, count, 0);
    }
}

/* One window from rank 0 to rank 1 (both ways with bidir), then an acknowledgement. */
static void stream(const p2p_ctx_t *p, size_t count, int win, int bidir)
{
    const p2p_ops_t *ops = p->ops;
    if (p->rank > 1) return;
    int peer = 1 - p->rank, sends = p->rank == 0 || bidir, recvs = p->rank == 1 || bidir;
    ops->window(ops->ctx, p->sendbuf, sends ? win : 0, p->recvbuf, recvs ? win : 0, count, peer);
    if (bidir) return; /* each side waited for the other's window */
    if (p->rank == 1)
        ops->send(ops->ctx, p->sendbuf, 1, 0);
    else
        ops->recv(ops->ctx, p->recvbuf, 1, 1);
}

/* Microseconds per repetition: one untimed, a barrier, then -n timed. */
static double timed(const p2p_ctx_t *p, size_t count, int win, int kind)
{
    int iters = p->o->iters;
    double t0 = 0;
    for (int i = 0; i <= iters; i++) {
        if (i == 1) {
            p->ops->barrier(p->ops->ctx);
            t0 = bench_now_us();
        }
        if (kind == 0)
            pingpong(p, count);
        else
            stream(p, count, win, kind == 2);
    }
    return (bench_now_us() - t0) / iters;
}

/* As nccl-tests: -w round trips at the largest size (buffers, connections), then the smallest. */
static void p2p_warmup(const p2p_ctx_t *p, size_t big, size_t small)
{
    for (int i = 0; i < p->o->warmup && big > 0; i++) pingpong(p, big);
    for (int i = 0; i < p->o->warmup && small > 0; i++) pingpong(p, small);
}

/* Rank 1 checks what rank 0 sent, then rank 0 what rank 1 sent; this rank's wrong elements. */
static uint64_t p2p_check(const p2p_ctx_t *p, size_t count, size_t bytes)
{
    uint64_t wrong = 0;
    char label[96];
    for (int from = 0; from < 2 && p->rank < 2; from++) {
        snprintf(label, sizeof label, "rank %d: p2p %zu B, from rank %d", p->rank, bytes, from);
        if (p->rank == from) {
            data_fill(p->pattern, p->sendbuf, count, from);
            p->ops->send(p->ops->ctx, p->sendbuf, count, 1 - from);
        } else {
            memset(p->recvbuf, 0xff, bytes);
            p->ops->recv(p->ops->ctx, p->recvbuf, count, from);
            wrong += data_check_input(p->pattern, p->recvbuf, count, from, label);
        }
    }
    return wrong;
}

static void p2p_step(const p2p_ctx_t *p, size_t count, p2p_row_t *row)
{
    size_t bytes = count * p->elemsize;
    double t[3] = {0, 0, 0};
    memset(row, 0, sizeof *row);
    row->bytes = bytes;
    row->elems = count;
    row->window = p2p_window(p->o, bytes);
    for (int kind = 0; kind < 3; kind++) {
        double us = timed(p, count, row->window, kind);
        if (p->rank == 0) t[kind] = us; /* rank 0 waits for every reply: its clock counts */
    }
    if (p->o->check) row->wrong = p2p_check(p, count, bytes);
    p->ops->max_f64(p->ops->ctx, t, 3);
    p->ops->sum_u64(p->ops->ctx, &row->wrong, 1);
    row->latency_us = t[0] / 2;
    /* bytes per microsecond / 1e3 = GB/s */
    row->bw = t[1] > 0 ? (double)bytes * row->window / t[1] / 1e3 : 0;
    row->bibw = t[2] > 0 ? 2.0 * (double)bytes * row->window / t[2] / 1e3 : 0;
}

size_t p2p_run(const p2p_ctx_t *p, p2p_row_t **rows)
{
    size_t n = 0, cap = 0, last = 0;
    *rows = NULL;
    if (p->nranks < 2) {
        if (p->rank == 0) printf("# p2p needs at least 2 ranks: nothing to measure\n");
        return 0;
    }
    p2p_warmup(p, p->o->maxbytes / p->elemsize, p->o->minbytes / p->elemsize);
    for (size_t size = p->o->minbytes; size <= p->o->maxbytes;
         size = opts_next_size(size, p->o->stepfactor)) {
        size_t count = size / p->elemsize;
        if (count == 0 || count == last) continue;
        last = count;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            p2p_row_t *more = realloc(*rows, cap * sizeof *more);
            if (more == NULL) {
                fprintf(stderr, "rank %d: out of memory for p2p rows\n", p->rank);
                exit(1);
            }
            *rows = more;
        }
        p2p_step(p, count, &(*rows)[n]);
        if (p->rank == 0) report_p2p_row(stdout, p->o, &(*rows)[n]);
        n++;
    }
    return n;
}
