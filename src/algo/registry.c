#include "algo/algo.h"

#include <string.h>

extern const struct jaccl_algo_ops jaccl_mesh_ops;
extern const struct jaccl_algo_ops jaccl_ring_ops;

const struct jaccl_algo_ops *const jaccl_algos[] = {
    &jaccl_mesh_ops,
    &jaccl_ring_ops,
    NULL,
};

const struct jaccl_algo_ops *jaccl_algo_find(const char *name)
{
    for (int i = 0; jaccl_algos[i]; i++)
        if (strcmp(jaccl_algos[i]->name, name) == 0) return jaccl_algos[i];
    return NULL;
}
