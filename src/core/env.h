/* Configuration read from the environment (JACCL's and MLX's names, MPI/Slurm fallbacks). */
#ifndef JACCL_CORE_ENV_H
#define JACCL_CORE_ENV_H

#include "algo/algo.h"
#include "util/auth.h"
#include "util/err.h"

#include <stddef.h>
#include <stdint.h>

struct jaccl_env {
    int rank, size;
    const char *rank_var, *size_var; /* where they came from, for messages */
    char coord_host[256];
    char coord_port[16];
    char transport[16];                                  /* "auto" or a transport name */
    const struct jaccl_algo_ops *algo[JACCL_COLL_COUNT]; /* NULL: the selector picks */
    double timeout_s;
    int tcp_sockets;
    int64_t spin_ns;
    int ring_bidir;
    int shm_scope_host;  /* JACCL_SHM_SCOPE=host: network namespaces on one machine are one host */
    int shm_single_copy; /* JACCL_SHM_SINGLE_COPY: 1 on, 0 off, -1 (auto) where it is faster */
    jaccl_allgather_fn allgather; /* the embedder's rendezvous, replacing the coordinator */
    void *allgather_user;
    char listen_host[256];
    /* RDMA: JACCL_IBV_DEVICES (or MLX_IBV_DEVICES), JACCL_RING, JACCL_IB_*, JACCL_IBVERBS_LIB */
    char ibv_devices[512];
    const char *ibv_devices_var;
    int ring;
    int ib_qp_type;   /* 0 auto, 1 rc, 2 uc */
    int ib_gid_index; /* -1: the IPv4-mapped GID */
    char ibverbs_lib[512];
    struct jaccl_key job_key; /* JACCL_JOB_KEY; len 0: unauthenticated */
};

/*
 * Fill env from cfg where it sets a field, else from getenv(); cfg may be NULL.
 * On failure the message names the variable (or config field) and what to do.
 */
jaccl_result_t jaccl_env_parse(struct jaccl_env *env, const jaccl_config_t *cfg,
                               struct jaccl_err *e);

/* Parse a JACCL_ALGO value ("ring", "allreduce:ring,allgather:mesh", "auto") into algo[]. */
jaccl_result_t jaccl_env_parse_algo(const char *s, const struct jaccl_algo_ops **algo,
                                    struct jaccl_err *e);

extern const char *const jaccl_coll_names[JACCL_COLL_COUNT];

#endif
