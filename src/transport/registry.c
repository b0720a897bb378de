#include "transport/transport.h"

#include <string.h>

extern const struct jaccl_transport_ops jaccl_rdma_ops;
extern const struct jaccl_transport_ops jaccl_shm_ops;
extern const struct jaccl_transport_ops jaccl_tcp_ops;

/* Priority order: faster transports first; TCP works everywhere so it is last. */
const struct jaccl_transport_ops *const jaccl_transports[] = {
    &jaccl_rdma_ops,
    &jaccl_shm_ops, /* ranks of one host; no links to others */
    &jaccl_tcp_ops,
    NULL,
};

const struct jaccl_transport_ops *jaccl_transport_find(const char *name)
{
    for (int i = 0; jaccl_transports[i]; i++)
        if (strcmp(jaccl_transports[i]->name, name) == 0) return jaccl_transports[i];
    return NULL;
}
