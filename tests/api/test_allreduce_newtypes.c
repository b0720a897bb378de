/*
 * All-reduce over the dtypes added with the full API -- bool, int16, uint16
 * and complex64 -- with every op the header defines for them (bool: sum/max
 * are OR, prod/min are AND; complex64: sum, prod, avg), at 2, 3 and 4 ranks
 * with JACCL_ALGO=mesh, ring and auto (and the ring both ways round).
 * Counts from 0 to past the mesh's one-shot size and the ring's segments;
 * out of place, in place, in place on odd ranks only, and misaligned.
 * Exact inputs are checked bit for bit against a reference computed here;
 * random complex64 inputs, whose products and sums round differently in
 * different orders, against a tolerance.  Every result is hashed and the
 * hashes compared across ranks: all ranks must hold the same bits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"

#define END SIZE_MAX

enum { OUT, IN, MIXED, NPLACES };
static const char *const place_names[NPLACES] = {"out-of-place", "in-place", "in-place-on-odd"};

static const jaccl_dtype_t new_types[] = {JACCL_BOOL, JACCL_INT16, JACCL_UINT16, JACCL_COMPLEX64};
#define NTYPES (sizeof(new_types) / sizeof(new_types[0]))

/* ONESHOT: the mesh's one-shot size (32 KiB); the counts that fill it and pass it by one. */
#define ONESHOT (SIZE_MAX - 2)
static const size_t counts[] = {0, 1, 7, 1001, ONESHOT, ONESHOT + 1, 40009, END};
static const size_t big_count = MP_SANITIZED ? 100003 : 300007;

static size_t count_for(size_t c, jaccl_dtype_t dt)
{
    return c >= ONESHOT ? (32u << 10) / jaccl_dtype_size(dt) + (c - ONESHOT) : c;
}

static int run_case(jaccl_comm_t comm, const struct api_gen *g, size_t count, int place,
                    size_t misalign, char *sbase, char *rbase)
{
    int me = jaccl_comm_rank(comm), n = jaccl_comm_size(comm);
    size_t bytes = count * jaccl_dtype_size(g->dt);
    int inpl = place == IN || (place == MIXED && me % 2);
    char *send = sbase + misalign, *recv = rbase + (misalign ? misalign + 2 : 0), what[160];
    snprintf(what, sizeof(what), "allreduce count=%zu %s misalign=%zu np=%d", count,
             place_names[place], misalign, n);
    api_gen_fill(g, me, send, 0, count);
    api_guard_set(send + bytes);
    if (inpl)
        memcpy(recv, send, bytes);
    else
        memset(recv, 0xee, bytes);
    api_guard_set(recv + bytes);
    uint64_t before = mp_fnv(MP_FNV_INIT, send, bytes);
    MP_OK(comm, jaccl_allreduce(inpl ? recv : send, recv, count, g->dt, g->op, comm));
    MP_CHECK(api_guard_ok(send + bytes) && api_guard_ok(recv + bytes), "%s %s: wrote past a buffer",
             what, api_gen_name(g));
    MP_CHECK(inpl || mp_fnv(MP_FNV_INIT, send, bytes) == before, "%s %s: sendbuf changed", what,
             api_gen_name(g));
    /* Large results: each rank checks every n-th element; the hashes cover the rest. */
    size_t step = count > 50000 ? (size_t)n : 1, start = count > 50000 ? (size_t)me : 0;
    if (api_gen_check(g, recv, 0, count, start, step, what)) return 1;
    char full[200];
    snprintf(full, sizeof(full), "%s %s", what, api_gen_name(g));
    return mp_check_same(comm, recv, bytes, full);
}

static int ar_case(jaccl_comm_t comm, jaccl_dtype_t dt, jaccl_op_t op, int mode, size_t count,
                   int place, size_t misalign, uint64_t seed)
{
    struct api_gen g;
    size_t bytes = count * jaccl_dtype_size(dt);
    api_gen_init(&g, dt, op, jaccl_comm_size(comm), mode, seed);
    char *s = malloc(bytes + API_GUARD + 8), *r = malloc(bytes + API_GUARD + 8);
    MP_CHECK(s && r, "out of memory");
    int rc = run_case(comm, &g, count, place, misalign, s, r);
    free(s);
    free(r);
    if (rc == 0 && count == 0) MP_OK(comm, jaccl_allreduce(NULL, NULL, 0, dt, op, comm));
    api_count(1);
    return rc;
}

static int rank_main(jaccl_comm_t comm, void *arg)
{
    uint64_t seed = 77;
    (void)arg;
    MP_CHECK(jaccl_comm_size(comm) == mp_size(), "size %d", jaccl_comm_size(comm));
    for (size_t t = 0; t < NTYPES; t++) {
        jaccl_dtype_t dt = new_types[t];
        for (int o = 0; o < JACCL_OP_COUNT; o++) {
            jaccl_op_t op = (jaccl_op_t)o;
            if (!mp_op_defined(dt, op)) continue;
            for (const size_t *c = counts; *c != END; c++)
                for (int pl = OUT; pl < NPLACES; pl++)
                    if (ar_case(comm, dt, op, API_EXACT, count_for(*c, dt), pl, 0, ++seed))
                        return 1;
            if (ar_case(comm, dt, op, API_EXACT, 1001, MIXED, 1, ++seed) ||
                ar_case(comm, dt, op, API_EXACT, 40009, OUT, 3, ++seed) ||
                ar_case(comm, dt, op, API_EXACT, big_count, o % 2 ? IN : OUT, 0, ++seed))
                return 1;
        }
    }
    /* Random complex64: the rounding depends on the order, the bits must not differ by rank. */
    static const jaccl_op_t cops[] = {JACCL_SUM, JACCL_PROD, JACCL_AVG};
    for (int i = 0; i < 3; i++)
        for (const size_t *c = counts; *c != END; c++)
            if (ar_case(comm, JACCL_COMPLEX64, cops[i], API_FUZZ, count_for(*c, JACCL_COMPLEX64),
                        (int)(count_for(*c, JACCL_COMPLEX64) % NPLACES), 0, ++seed))
                return 1;
    api_report(comm, NULL);
    return 0;
}

/* clang-format off */
#define CROSS(NP, ALGO) {"np" #NP "-" ALGO, NP, {"JACCL_ALGO=" ALGO}, rank_main, NULL, NULL, 0}

static const struct api_test tests[] = {
    CROSS(2, "mesh"), CROSS(2, "ring"), CROSS(2, "auto"),
    CROSS(3, "mesh"), CROSS(3, "ring"), CROSS(3, "auto"),
    CROSS(4, "mesh"), CROSS(4, "ring"), CROSS(4, "auto"),
    {"np3-ring-bidir-sockets2", 3, {"JACCL_ALGO=ring", "JACCL_RING_BIDIR=1", "JACCL_TCP_SOCKETS=2"},
     rank_main, NULL, NULL, 0},
};
/* clang-format on */

int main(void)
{
    return api_main("api-allreduce-newtypes", tests, (int)(sizeof(tests) / sizeof(tests[0])));
}
