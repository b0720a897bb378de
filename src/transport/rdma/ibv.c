#include "transport/rdma/ibv.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#define SYM(name)                                                                                  \
    {                                                                                              \
        "ibv_" #name, offsetof(struct jaccl_ibv, name)                                             \
    }

static const struct {
    const char *name;
    size_t off;
} ibv_syms[] = {
    SYM(get_device_list), SYM(free_device_list), SYM(get_device_name), SYM(open_device),
    SYM(close_device),    SYM(query_device),     SYM(query_port),      SYM(query_gid),
    SYM(alloc_pd),        SYM(dealloc_pd),       SYM(reg_mr),          SYM(dereg_mr),
    SYM(create_cq),       SYM(destroy_cq),       SYM(create_qp),       SYM(modify_qp),
    SYM(destroy_qp),      SYM(wc_status_str),
};

int jaccl_ibv_load(struct jaccl_ibv *ibv, const char *lib, char *why, size_t why_len)
{
    memset(ibv, 0, sizeof(*ibv));
    const char *name = lib ? lib : "libibverbs.so.1";
    ibv->handle = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!ibv->handle) {
        snprintf(why, why_len, "cannot load %s: %s", name, dlerror());
        return -1;
    }
    for (size_t i = 0; i < sizeof(ibv_syms) / sizeof(ibv_syms[0]); i++) {
        void *f = dlsym(ibv->handle, ibv_syms[i].name);
        if (!f) {
            snprintf(why, why_len, "%s has no symbol %s (rdma-core too old?)", name,
                     ibv_syms[i].name);
            jaccl_ibv_unload(ibv);
            return -1;
        }
        /* Object to function pointer: copy the bits (ISO C has no cast for it). */
        memcpy((char *)ibv + ibv_syms[i].off, &f, sizeof(f));
    }
    return 0;
}

void jaccl_ibv_unload(struct jaccl_ibv *ibv)
{
    if (ibv->handle) dlclose(ibv->handle);
    memset(ibv, 0, sizeof(*ibv));
}
