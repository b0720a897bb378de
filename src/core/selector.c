/*
 * The selector: an alpha-beta(-gamma) cost model per algorithm.  Its inputs
 * are the same on every rank (configuration, not local measurement), so every
 * rank picks the same algorithm for the same call.
 */
#include "core/comm.h"
#include "util/log.h"

#include <stdio.h>
#include <string.h>

/* The cost model's choice: every algorithm's modelled time, the least wins. */
static const struct jaccl_algo_ops *select_model(const struct jaccl_comm *comm,
                                                 enum jaccl_coll coll, size_t bytes)
{
    const struct jaccl_algo_ops *best = jaccl_algos[0];
    double best_cost = best->cost(&comm->actx, coll, bytes);
    for (int i = 1; jaccl_algos[i]; i++) {
        double c = jaccl_algos[i]->cost(&comm->actx, coll, bytes);
        if (c < best_cost) {
            best_cost = c;
            best = jaccl_algos[i];
        }
    }
    return best;
}

/*
 * Small calls are dominated by their software path, and a program repeats a
 * few sizes: remember the choice per exact size (one slot per power of two,
 * so neighbouring sizes do not evict each other).
 */
const struct jaccl_algo_ops *jaccl_select(struct jaccl_comm *comm, enum jaccl_coll coll,
                                          size_t bytes)
{
    if (comm->env.algo[coll]) return comm->env.algo[coll];
    unsigned cls = bytes ? (unsigned)(64 - __builtin_clzll((unsigned long long)bytes)) : 0;
    struct jaccl_sel_memo *m = &comm->sel_memo[coll][cls % JACCL_SEL_MEMO];
    if (m->ops && m->bytes == bytes) return m->ops;
    m->ops = select_model(comm, coll, bytes);
    m->bytes = bytes;
    return m->ops;
}

void jaccl_select_log_table(const struct jaccl_comm *comm)
{
    if (JACCL_LOG_INFO > jaccl_log_level_current || comm->rank != 0) return;
    for (int coll = 0; coll < JACCL_COLL_COUNT; coll++) {
        char line[512];
        int n = snprintf(line, sizeof(line), "selector: %s:", jaccl_coll_names[coll]);
        for (size_t b = 8; b <= ((size_t)64 << 20) && n < (int)sizeof(line) - 32; b *= 4)
            n += snprintf(line + n, sizeof(line) - (size_t)n, " %zu=%s", b,
                          (comm->env.algo[coll] ? comm->env.algo[coll]
                                                : select_model(comm, (enum jaccl_coll)coll, b))
                              ->name);
        log_info("%s%s", line, comm->env.algo[coll] ? " (forced by JACCL_ALGO)" : "");
    }
}
