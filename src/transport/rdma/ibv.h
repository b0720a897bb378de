/*
 * libibverbs loaded at run time: one libjaccl runs with and without
 * rdma-core.  ibv_post_send, ibv_post_recv and ibv_poll_cq are inline in
 * verbs.h (they call the context's ops table), so only the real entry
 * points are looked up here.
 */
#ifndef JACCL_TRANSPORT_RDMA_IBV_H
#define JACCL_TRANSPORT_RDMA_IBV_H

#include <infiniband/verbs.h>
#include <stddef.h>

struct jaccl_ibv {
    void *handle;
    struct ibv_device **(*get_device_list)(int *n);
    void (*free_device_list)(struct ibv_device **list);
    const char *(*get_device_name)(struct ibv_device *dev);
    struct ibv_context *(*open_device)(struct ibv_device *dev);
    int (*close_device)(struct ibv_context *ctx);
    int (*query_device)(struct ibv_context *ctx, struct ibv_device_attr *attr);
    /* The 1.1 symbol, called as verbs.h's inline does for a non-extended context. */
    int (*query_port)(struct ibv_context *ctx, uint8_t port, struct ibv_port_attr *attr);
    int (*query_gid)(struct ibv_context *ctx, uint8_t port, int index, union ibv_gid *gid);
    struct ibv_pd *(*alloc_pd)(struct ibv_context *ctx);
    int (*dealloc_pd)(struct ibv_pd *pd);
    struct ibv_mr *(*reg_mr)(struct ibv_pd *pd, void *addr, size_t len, int access);
    int (*dereg_mr)(struct ibv_mr *mr);
    struct ibv_cq *(*create_cq)(struct ibv_context *ctx, int cqe, void *user,
                                struct ibv_comp_channel *ch, int vector);
    int (*destroy_cq)(struct ibv_cq *cq);
    struct ibv_qp *(*create_qp)(struct ibv_pd *pd, struct ibv_qp_init_attr *attr);
    int (*modify_qp)(struct ibv_qp *qp, struct ibv_qp_attr *attr, int mask);
    int (*destroy_qp)(struct ibv_qp *qp);
    const char *(*wc_status_str)(enum ibv_wc_status status);
};

/*
 * Load lib (NULL: libibverbs.so.1) and every entry point.  On failure
 * returns -1 and writes why (the library or the missing symbol) to why.
 */
int jaccl_ibv_load(struct jaccl_ibv *ibv, const char *lib, char *why, size_t why_len);
void jaccl_ibv_unload(struct jaccl_ibv *ibv);

#endif
