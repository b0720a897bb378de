/* Runs every collective once or twice on checkable data and reports mismatches; the cluster
 * tests start it on namespace hosts through jaccl-launch. Exit 0 only if all agree. */
#include <jaccl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define BIG   300000 /* elements: large enough for the pipelined/scatter paths */
#define BLOCK 1000

static int rank, size, bad;

/* Rank r's element i. */
static int32_t v(int r, size_t i)
{
    return (int32_t)((r + 1) * 1000 + (int)(i % 997));
}

static int32_t vsum(size_t i)
{
    int32_t s = 0;
    for (int r = 0; r < size; r++) s += v(r, i);
    return s;
}

static void check(const char *what, const int32_t *got, size_t n, int32_t (*want)(size_t))
{
    for (size_t i = 0; i < n; i++) {
        if (got[i] != want(i)) {
            fprintf(stderr, "rank %d: %s: element %zu is %d, expected %d\n", rank, what, i,
                    (int)got[i], (int)want(i));
            bad++;
            return;
        }
    }
}

static void call(const char *what, jaccl_result_t rc, jaccl_comm_t comm)
{
    if (rc == JACCL_SUCCESS) return;
    fprintf(stderr, "rank %d: %s failed: %s: %s\n", rank, what, jaccl_result_string(rc),
            jaccl_last_error(comm));
    exit(1);
}

static size_t cur; /* the parameter of the expected-value functions below */
static int32_t w_bcast(size_t i)
{
    return v(1 % size, i);
}
static int32_t w_gather(size_t i)
{
    return v((int)(i / BLOCK), i % BLOCK);
}
static int32_t w_scatter(size_t i)
{
    return vsum((size_t)rank * BLOCK + i);
}
static int32_t w_a2a(size_t i)
{
    return v((int)(i / BLOCK), (size_t)rank * BLOCK + i % BLOCK);
}
static int32_t w_ring(size_t i)
{
    return v((int)cur, i);
}

static void fill(int32_t *buf, size_t n)
{
    for (size_t i = 0; i < n; i++) buf[i] = v(rank, i);
}

static void reductions(jaccl_comm_t comm, int32_t *a, int32_t *b)
{
    size_t counts[] = {5, BIG};
    for (int k = 0; k < 2; k++) {
        fill(a, counts[k]);
        call("jaccl_allreduce", jaccl_allreduce(a, b, counts[k], JACCL_INT32, JACCL_SUM, comm),
             comm);
        check("allreduce", b, counts[k], vsum);
    }
    fill(a, (size_t)size * BLOCK);
    call("jaccl_reduce_scatter", jaccl_reduce_scatter(a, b, BLOCK, JACCL_INT32, JACCL_SUM, comm),
         comm);
    check("reduce_scatter", b, BLOCK, w_scatter);
    fill(a, BIG);
    call("jaccl_reduce", jaccl_reduce(a, b, BIG, JACCL_INT32, JACCL_SUM, size - 1, comm), comm);
    if (rank == size - 1) check("reduce", b, BIG, vsum);
}

static void movements(jaccl_comm_t comm, int32_t *a, int32_t *b)
{
    fill(a, BIG);
    call("jaccl_broadcast", jaccl_broadcast(a, b, BIG, JACCL_INT32, 1 % size, comm), comm);
    check("broadcast", b, BIG, w_bcast);
    fill(a, BLOCK);
    call("jaccl_allgather", jaccl_allgather(a, b, BLOCK, JACCL_INT32, comm), comm);
    check("allgather", b, (size_t)size * BLOCK, w_gather);
    fill(a, (size_t)size * BLOCK);
    call("jaccl_alltoall", jaccl_alltoall(a, b, BLOCK, JACCL_INT32, comm), comm);
    check("alltoall", b, (size_t)size * BLOCK, w_a2a);
    if (size == 1) return; /* no peer to send to */
    fill(a, BIG);
    call("jaccl_group_start", jaccl_group_start(), comm);
    call("jaccl_send", jaccl_send(a, BIG, JACCL_INT32, (rank + 1) % size, comm), comm);
    call("jaccl_recv", jaccl_recv(b, BIG, JACCL_INT32, (rank + size - 1) % size, comm), comm);
    call("jaccl_group_end", jaccl_group_end(), comm);
    cur = (size_t)((rank + size - 1) % size);
    check("send/recv", b, BIG, w_ring);
}

int main(void)
{
    jaccl_comm_t comm;
    call("jaccl_comm_init_env", jaccl_comm_init_env(&comm), NULL);
    rank = jaccl_comm_rank(comm);
    size = jaccl_comm_size(comm);
    size_t n = (size_t)size * BLOCK > BIG ? (size_t)size * BLOCK : BIG;
    int32_t *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    if (!a || !b) return 1;
    reductions(comm, a, b);
    movements(comm, a, b);
    call("jaccl_barrier", jaccl_barrier(comm), comm);
    call("jaccl_comm_destroy", jaccl_comm_destroy(comm), NULL);
    free(a);
    free(b);
    if (bad) return 1;
    printf("rank %d of %d: all collectives ok\n", rank, size);
    return 0;
}
