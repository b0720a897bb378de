/*
 * A non-ML job on the C API alone: estimate pi by throwing random points at the
 * unit square.  Rank 0 decides the sample count and broadcasts it, every rank
 * throws its share with its own random stream, one all-reduce adds the hits,
 * an all-gather collects every rank's count for the report, and a reduce finds
 * the slowest rank's time.  Exits non-zero if the estimate is off by more than
 * six standard deviations or the gathered counts disagree with the sum.
 *
 * Usage: monte_carlo_pi [SAMPLES]   (total over all ranks; default 4000000)
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <jaccl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define PI 3.14159265358979323846

/* splitmix64: a small, good generator; seeded per rank so streams differ. */
static uint64_t next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t throw_points(uint64_t n, uint64_t seed)
{
    uint64_t hits = 0, s = seed;
    for (uint64_t i = 0; i < n; i++) {
        double x = (double)(next(&s) >> 11) * 0x1p-53, y = (double)(next(&s) >> 11) * 0x1p-53;
        hits += x * x + y * y < 1.0;
    }
    return hits;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Throw this rank's share, combine, check; 0 when the estimate is good. */
static int estimate(uint64_t total, jaccl_comm_t comm, uint64_t *gathered)
{
    int rank = jaccl_comm_rank(comm), np = jaccl_comm_size(comm);
    uint64_t mine = total / (uint64_t)np + ((uint64_t)rank < total % (uint64_t)np);
    double t0 = now_s();
    uint64_t hits = throw_points(mine, 0x5eed0000ull + (uint64_t)rank), sum = 0;
    double elapsed = now_s() - t0, slowest = 0;
    if (jaccl_allreduce(&hits, &sum, 1, JACCL_UINT64, JACCL_SUM, comm) != JACCL_SUCCESS ||
        jaccl_allgather(&hits, gathered, 1, JACCL_UINT64, comm) != JACCL_SUCCESS ||
        jaccl_reduce(&elapsed, &slowest, 1, JACCL_FLOAT64, JACCL_MAX, 0, comm) != JACCL_SUCCESS) {
        fprintf(stderr, "rank %d: %s\n", rank, jaccl_last_error(comm));
        return 1;
    }
    uint64_t check = 0;
    for (int r = 0; r < np; r++) check += gathered[r];
    double pi = 4.0 * (double)sum / (double)total;
    double sigma = 4.0 * sqrt(PI / 4 * (1 - PI / 4) / (double)total);
    int ok = check == sum && fabs(pi - PI) < 6 * sigma;
    if (rank == 0 || !ok)
        printf("rank %d: np=%d samples=%llu pi ~ %.6f (error %.1e, sigma %.1e) in %.3f s: %s\n",
               rank, np, (unsigned long long)total, pi, pi - PI, sigma, slowest,
               ok ? "ok" : "WRONG");
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    jaccl_comm_t comm;
    if (jaccl_comm_init_env(&comm) != JACCL_SUCCESS) {
        fprintf(stderr, "init failed: %s\n", jaccl_last_error(NULL));
        return 1;
    }
    int rank = jaccl_comm_rank(comm), np = jaccl_comm_size(comm), rc = 1;
    /* Rank 0's command line decides; the others learn it by broadcast. */
    uint64_t total = argc > 1 ? strtoull(argv[1], NULL, 10) : 4000000;
    uint64_t *gathered = malloc(sizeof(uint64_t) * (size_t)np);
    if (!gathered) {
        fprintf(stderr, "rank %d: out of memory\n", rank);
    } else if (jaccl_broadcast(&total, &total, 1, JACCL_UINT64, 0, comm) != JACCL_SUCCESS) {
        fprintf(stderr, "rank %d: %s\n", rank, jaccl_last_error(comm));
    } else if (total == 0) {
        if (rank == 0) fprintf(stderr, "usage: %s [SAMPLES > 0]\n", argv[0]);
        rc = 2;
    } else {
        rc = estimate(total, comm, gathered);
    }
    free(gathered);
    jaccl_comm_destroy(comm);
    return rc;
}
