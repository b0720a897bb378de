/*
 * Tensor-parallel inference of a two-layer MLP, y = W2 relu(W1 x + b1) + b2,
 * sharded the way MLX's shard_linear does it:
 *   layer 1 ("all-to-sharded"): each rank holds a block of W1's output rows and
 *     computes its slice of the hidden vector; no communication;
 *   layer 2 ("sharded-to-all"): each rank holds the matching block of W2's input
 *     columns, computes a partial y from its hidden slice, and one all-reduce
 *     sums the partials.
 * Tokens are processed one at a time, as in decoding.  Every rank checks its
 * output against the unsharded model and exits non-zero if they differ.
 *
 * Usage: tensor_parallel_mlp [TOKENS [D_MODEL [D_HIDDEN]]]
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <jaccl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

struct model {
    int d, h;       /* model and hidden widths */
    int lo, hi;     /* this rank's hidden rows [lo, hi) */
    float *w1, *b1; /* h x d, h */
    float *w2, *b2; /* d x h, d */
};

/* The same pseudo-random value for index i on every rank: weights need no broadcast. */
static float weight(uint64_t seed, uint64_t i, int fan_in)
{
    uint64_t z = seed * 0x9e3779b97f4a7c15ull + i + 1;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)((double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0) / sqrtf((float)fan_in);
}

static void fill(float *a, size_t n, uint64_t seed, int fan_in)
{
    for (size_t i = 0; i < n; i++) a[i] = weight(seed, i, fan_in);
}

/* hidden[j - lo] = relu(W1[j] . x + b1[j]) for j in [lo, hi) */
static void layer1(const struct model *m, int lo, int hi, const float *x, float *hidden)
{
    for (int j = lo; j < hi; j++) {
        const float *row = m->w1 + (size_t)j * m->d;
        float s = m->b1[j];
        for (int k = 0; k < m->d; k++) s += row[k] * x[k];
        hidden[j - lo] = s > 0 ? s : 0;
    }
}

/* y = W2[:, lo:hi] hidden (+ b2 when with_bias) */
static void layer2(const struct model *m, int lo, int hi, const float *hidden, int with_bias,
                   float *y)
{
    for (int i = 0; i < m->d; i++) {
        const float *row = m->w2 + (size_t)i * m->h;
        float s = with_bias ? m->b2[i] : 0;
        for (int j = lo; j < hi; j++) s += row[j] * hidden[j - lo];
        y[i] = s;
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One token through the sharded model: local layers, then the one all-reduce. */
static jaccl_result_t forward_sharded(const struct model *m, const float *x, float *hidden,
                                      float *y, jaccl_comm_t comm)
{
    layer1(m, m->lo, m->hi, x, hidden);
    /* b2 is added once, by rank 0, so the sum counts it once. */
    layer2(m, m->lo, m->hi, hidden, jaccl_comm_rank(comm) == 0, y);
    return jaccl_allreduce(y, y, (size_t)m->d, JACCL_FLOAT32, JACCL_SUM, comm);
}

/* Largest |a - b| relative to max(1, |b|) over n elements. */
static double max_rel_err(const float *a, const float *b, int n)
{
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]) / fmax(1.0, fabs((double)b[i]));
        worst = e > worst ? e : worst;
    }
    return worst;
}

static int run(struct model *m, int tokens, jaccl_comm_t comm)
{
    int rank = jaccl_comm_rank(comm), np = jaccl_comm_size(comm);
    float *x = malloc(sizeof(float) * (size_t)m->d), *y = malloc(sizeof(float) * (size_t)m->d);
    float *ref = malloc(sizeof(float) * (size_t)m->d), *hid = malloc(sizeof(float) * (size_t)m->h);
    int rc = 1;
    double err = 0, t_sharded = 0;
    if (!x || !y || !ref || !hid) goto out;
    for (int t = 0; t < tokens; t++) {
        fill(x, (size_t)m->d, 1000 + (uint64_t)t, 1); /* the token's embedding */
        if (jaccl_barrier(comm) != JACCL_SUCCESS) goto fail;
        double t0 = now_s();
        if (forward_sharded(m, x, hid, y, comm) != JACCL_SUCCESS) goto fail;
        if (t > 0) t_sharded += now_s() - t0; /* token 0 warms up */
        layer1(m, 0, m->h, x, hid);
        layer2(m, 0, m->h, hid, 1, ref);
        double e = max_rel_err(y, ref, m->d);
        err = e > err ? e : err;
    }
    int ok = err < 1e-4;
    if (rank == 0 || !ok)
        printf("rank %d: np=%d d_model=%d d_hidden=%d tokens=%d per-token %.1f us, "
               "max rel diff vs unsharded %.2e: %s\n",
               rank, np, m->d, m->h, tokens, t_sharded / (tokens > 1 ? tokens - 1 : 1) * 1e6, err,
               ok ? "ok" : "MISMATCH");
    rc = ok ? 0 : 1;
    goto out;
fail:
    fprintf(stderr, "rank %d: %s\n", rank, jaccl_last_error(comm));
out:
    free(x), free(y), free(ref), free(hid);
    return rc;
}

int main(int argc, char **argv)
{
    int tokens = argc > 1 ? atoi(argv[1]) : 32;
    struct model m = {.d = argc > 2 ? atoi(argv[2]) : 512, .h = argc > 3 ? atoi(argv[3]) : 2048};
    if (tokens < 1 || m.d < 1 || m.h < 1) {
        fprintf(stderr, "usage: %s [TOKENS [D_MODEL [D_HIDDEN]]], all > 0\n", argv[0]);
        return 2;
    }
    jaccl_comm_t comm;
    if (jaccl_comm_init_env(&comm) != JACCL_SUCCESS) {
        fprintf(stderr, "init failed: %s\n", jaccl_last_error(NULL));
        return 1;
    }
    int rank = jaccl_comm_rank(comm), np = jaccl_comm_size(comm);
    m.lo = (int)((long)m.h * rank / np);
    m.hi = (int)((long)m.h * (rank + 1) / np);
    /* Every rank builds the whole model, to check against it; a real shard
     * would load only rows [lo, hi) of W1 and columns [lo, hi) of W2. */
    m.w1 = malloc(sizeof(float) * (size_t)m.h * (size_t)m.d);
    m.w2 = malloc(sizeof(float) * (size_t)m.d * (size_t)m.h);
    m.b1 = malloc(sizeof(float) * (size_t)m.h);
    m.b2 = malloc(sizeof(float) * (size_t)m.d);
    int rc = 1;
    if (m.w1 && m.w2 && m.b1 && m.b2) {
        fill(m.w1, (size_t)m.h * (size_t)m.d, 1, m.d);
        fill(m.b1, (size_t)m.h, 2, m.d);
        fill(m.w2, (size_t)m.d * (size_t)m.h, 3, m.h);
        fill(m.b2, (size_t)m.d, 4, m.h);
        rc = run(&m, tokens, comm);
    } else {
        fprintf(stderr, "rank %d: out of memory for the model\n", rank);
    }
    free(m.w1), free(m.w2), free(m.b1), free(m.b2);
    jaccl_comm_destroy(comm);
    return rc;
}
