#include "core/env.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/sock.h"

const char *const jaccl_coll_names[JACCL_COLL_COUNT] = {"allreduce", "allgather", "reducescatter",
                                                        "broadcast", "reduce",    "alltoall"};

/* Launchers that set rank and size, in the order they are tried. */
static const struct {
    const char *rank, *size;
} rank_sources[] = {
    {"JACCL_RANK", "JACCL_SIZE"},
    {"MLX_RANK", "JACCL_SIZE"},
    {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"},
    {"PMI_RANK", "PMI_SIZE"},
    {"SLURM_PROCID", "SLURM_NTASKS"},
};

static const char *env_get(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* Strict integer parse of variable name; absent leaves *out untouched. */
static jaccl_result_t env_int(const char *name, long lo, long hi, long *out, struct jaccl_err *e)
{
    const char *v = env_get(name);
    if (!v) return JACCL_SUCCESS;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || *end || end == v || x < lo || x > hi)
        return jaccl_err_set(e, JACCL_ERR_CONFIG, "%s='%s' is not an integer in [%ld, %ld]", name,
                             v, lo, hi);
    *out = x;
    return JACCL_SUCCESS;
}

static jaccl_result_t config_rank_size(struct jaccl_env *env, const jaccl_config_t *cfg,
                                       struct jaccl_err *e)
{
    if (cfg->size < 1 || cfg->rank < 0 || cfg->rank >= cfg->size)
        return jaccl_err_set(e, JACCL_ERR_CONFIG,
                             "config: rank %d is out of range for size %d "
                             "(set both, or both to -1 to read the environment)",
                             cfg->rank, cfg->size);
    env->rank = cfg->rank;
    env->size = cfg->size;
    env->rank_var = "config.rank";
    env->size_var = "config.size";
    return JACCL_SUCCESS;
}

static jaccl_result_t env_rank_size(struct jaccl_env *env, struct jaccl_err *e)
{
    size_t n = sizeof(rank_sources) / sizeof(rank_sources[0]), i;
    for (i = 0; i < n && !env_get(rank_sources[i].rank); i++) {
    }
    if (i == n) {
        if (env_get("JACCL_SIZE"))
            return jaccl_err_set(e, JACCL_ERR_CONFIG,
                                 "JACCL_SIZE is set but JACCL_RANK is not; "
                                 "set JACCL_RANK to this process's rank, or use jaccl-launch");
        env->rank = 0; /* a plain run is a job of one */
        env->size = 1;
        env->rank_var = env->size_var = "(default)";
        return JACCL_SUCCESS;
    }
    long rank = -1, size = -1;
    env->rank_var = rank_sources[i].rank;
    env->size_var = rank_sources[i].size;
    if (!env_get(env->size_var))
        return jaccl_err_set(e, JACCL_ERR_CONFIG,
                             "%s is set but %s is not; set %s to the number "
                             "of ranks",
                             env->rank_var, env->size_var, env->size_var);
    jaccl_result_t rc = env_int(env->size_var, 1, 1 << 20, &size, e);
    if (rc == JACCL_SUCCESS) rc = env_int(env->rank_var, 0, 1 << 20, &rank, e);
    if (rc != JACCL_SUCCESS) return rc;
    if (rank >= size)
        return jaccl_err_set(e, JACCL_ERR_CONFIG,
                             "%s=%ld is out of range for %s=%ld (ranks are "
                             "0..%ld)",
                             env->rank_var, rank, env->size_var, size, size - 1);
    env->rank = (int)rank;
    env->size = (int)size;
    return JACCL_SUCCESS;
}

static jaccl_result_t env_coordinator(struct jaccl_env *env, const char *cfg_value,
                                      struct jaccl_err *e)
{
    const char *name = "config.coordinator", *v = cfg_value;
    if (!v) v = env_get(name = "JACCL_COORDINATOR");
    if (!v) v = env_get(name = "MLX_JACCL_COORDINATOR");
    if (!v) {
        if (env->size == 1 || env->allgather) return JACCL_SUCCESS;
        return jaccl_err_set(e, JACCL_ERR_CONFIG,
                             "JACCL_COORDINATOR is not set; set it to "
                             "host:port where rank 0 listens (e.g. 10.0.0.1:29500), the same on "
                             "every rank");
    }
    if (jaccl_sock_split_hostport(v, env->coord_host, sizeof(env->coord_host), env->coord_port,
                                  sizeof(env->coord_port)) != 0)
        return jaccl_err_set(e, JACCL_ERR_CONFIG,
                             "%s='%s' is not host:port (IPv6: [addr]:port; "
                             "port 1-65535)",
                             name, v);
    return JACCL_SUCCESS;
}

static jaccl_result_t env_timeout(struct jaccl_env *env, double cfg_value, struct jaccl_err *e)
{
    const char *v = env_get("JACCL_TIMEOUT");
    env->timeout_s = 120;
    if (cfg_value > 0) {
        if (!isfinite(cfg_value) || cfg_value > 1e7) /* deadlines are int64 ns */
            return jaccl_err_set(e, JACCL_ERR_CONFIG,
                                 "jaccl_config_t.timeout_s = %g is out of range (at most 1e7 s)",
                                 cfg_value);
        env->timeout_s = cfg_value;
        return JACCL_SUCCESS;
    }
    if (!v) return JACCL_SUCCESS;
    char *end;
    double t = strtod(v, &end);
    if (*end || end == v || !(t > 0) || !isfinite(t) || t > 1e7)
        return jaccl_err_set(e, JACCL_ERR_CONFIG,
                             "JACCL_TIMEOUT='%s' is not a positive number "
                             "of seconds",
                             v);
    env->timeout_s = t;
    return JACCL_SUCCESS;
}

static jaccl_result_t env_transport(struct jaccl_env *env, const char *cfg_value,
                                    struct jaccl_err *e)
{
    const char *v = cfg_value ? cfg_value : env_get("JACCL_TRANSPORT");
    snprintf(env->transport, sizeof(env->transport), "%s", v ? v : "auto");
    if (!v || strcmp(v, "auto") == 0 || jaccl_transport_find(v)) return JACCL_SUCCESS;
    char names[128] = "auto";
    for (int i = 0; jaccl_transports[i]; i++)
        snprintf(names + strlen(names), sizeof(names) - strlen(names), ", %s",
                 jaccl_transports[i]->name);
    return jaccl_err_set(e, JACCL_ERR_CONFIG, "JACCL_TRANSPORT='%s' is not one of: %s", v, names);
}

static jaccl_result_t algo_token(const char *tok, size_t len, const struct jaccl_algo_ops **algo,
                                 struct jaccl_err *e)
{
    char buf[64];
    if (len >= sizeof(buf)) len = sizeof(buf) - 1;
    memcpy(buf, tok, len);
    buf[len] = '\0';
    char *colon = strchr(buf, ':'), *name = colon ? colon + 1 : buf;
    int coll = -1;
    if (colon) {
        *colon = '\0';
        for (int c = 0; c < JACCL_COLL_COUNT; c++)
            if (strcmp(buf, jaccl_coll_names[c]) == 0) coll = c;
        if (coll < 0)
            return jaccl_err_set(e, JACCL_ERR_CONFIG,
                                 "JACCL_ALGO: unknown collective '%s' (allreduce, "
                                 "allgather, reducescatter, broadcast, reduce, alltoall)",
                                 buf);
    }
    const struct jaccl_algo_ops *a = strcmp(name, "auto") == 0 ? NULL : jaccl_algo_find(name);
    if (!a && strcmp(name, "auto") != 0)
        return jaccl_err_set(e, JACCL_ERR_CONFIG,
                             "JACCL_ALGO: unknown algorithm '%s' (auto, "
                             "mesh, ring)",
                             name);
    for (int c = 0; c < JACCL_COLL_COUNT; c++)
        if (coll < 0 || coll == c) algo[c] = a;
    return JACCL_SUCCESS;
}

jaccl_result_t jaccl_env_parse_algo(const char *s, const struct jaccl_algo_ops **algo,
                                    struct jaccl_err *e)
{
    for (int c = 0; c < JACCL_COLL_COUNT; c++) algo[c] = NULL;
    while (s && *s) {
        size_t len = strcspn(s, ",");
        if (len == 0) return jaccl_err_set(e, JACCL_ERR_CONFIG, "JACCL_ALGO has an empty item");
        jaccl_result_t rc = algo_token(s, len, algo, e);
        if (rc != JACCL_SUCCESS) return rc;
        s += len + (s[len] == ',');
    }
    return JACCL_SUCCESS;
}

/* JACCL_SHM_SCOPE: netns (default) or host, what counts as one host. */
static jaccl_result_t env_shm_scope(struct jaccl_env *env, struct jaccl_err *e)
{
    const char *v = env_get("JACCL_SHM_SCOPE");
    if (!v || strcmp(v, "netns") == 0) return JACCL_SUCCESS;
    if (strcmp(v, "host") == 0) {
        env->shm_scope_host = 1;
        return JACCL_SUCCESS;
    }
    return jaccl_err_set(e, JACCL_ERR_CONFIG,
                         "JACCL_SHM_SCOPE='%s' is not 'netns' (ranks in one network namespace "
                         "share memory) or 'host' (every rank of the machine does)",
                         v);
}

/* JACCL_JOB_KEY: hex; the message never shows the value, it is a secret. */
static jaccl_result_t env_job_key(struct jaccl_env *env, struct jaccl_err *e)
{
    const char *v = env_get("JACCL_JOB_KEY");
    if (!v || jaccl_auth_parse_key(v, &env->job_key) == 0) return JACCL_SUCCESS;
    return jaccl_err_set(e, JACCL_ERR_CONFIG,
                         "JACCL_JOB_KEY (%zu characters) is not %d to %d hex digits, an even "
                         "number; jaccl-launch sets one, or make one with 'openssl rand -hex 32'",
                         strnlen(v, 4096), 2 * JACCL_KEY_MIN, 2 * JACCL_KEY_MAX);
}

static jaccl_result_t env_tuning(struct jaccl_env *env, struct jaccl_err *e)
{
    long sockets = 0, spin_us = 100, bidir = 0; /* sockets 0: chosen at init (comm.c) */
    jaccl_result_t rc = env_int("JACCL_TCP_SOCKETS", 1, JACCL_MAX_LINKS, &sockets, e);
    if (rc == JACCL_SUCCESS) rc = env_int("JACCL_SPIN_US", 0, 10000000, &spin_us, e);
    if (rc == JACCL_SUCCESS) rc = env_int("JACCL_RING_BIDIR", 0, 1, &bidir, e);
    env->tcp_sockets = (int)sockets;
    env->spin_ns = spin_us * 1000;
    env->ring_bidir = (int)bidir;
    if (rc == JACCL_SUCCESS) rc = env_shm_scope(env, e);
    long single = -1;
    if (rc == JACCL_SUCCESS) rc = env_int("JACCL_SHM_SINGLE_COPY", -1, 1, &single, e);
    env->shm_single_copy = (int)single;
    return rc;
}

/* A 0/1 flag; "true"/"false" accepted as MLX's launcher writes them. */
static jaccl_result_t env_flag(const char *name, int *out, struct jaccl_err *e)
{
    const char *v = env_get(name);
    if (!v) return JACCL_SUCCESS;
    if (strcmp(v, "1") == 0 || strcmp(v, "true") == 0)
        *out = 1;
    else if (strcmp(v, "0") == 0 || strcmp(v, "false") == 0)
        *out = 0;
    else
        return jaccl_err_set(e, JACCL_ERR_CONFIG, "%s='%s' is not 0 or 1", name, v);
    return JACCL_SUCCESS;
}

static jaccl_result_t env_rdma(struct jaccl_env *env, struct jaccl_err *e)
{
    const char *dev = env_get(env->ibv_devices_var = "JACCL_IBV_DEVICES"), *qp;
    if (!dev) dev = env_get(env->ibv_devices_var = "MLX_IBV_DEVICES");
    snprintf(env->ibv_devices, sizeof(env->ibv_devices), "%s", dev ? dev : "");
    const char *lib = env_get("JACCL_IBVERBS_LIB");
    snprintf(env->ibverbs_lib, sizeof(env->ibverbs_lib), "%s", lib ? lib : "");
    long gid = -1;
    jaccl_result_t rc = env_int("JACCL_IB_GID_INDEX", 0, 255, &gid, e);
    env->ib_gid_index = (int)gid;
    if (rc == JACCL_SUCCESS) rc = env_flag("MLX_JACCL_RING", &env->ring, e);
    if (rc == JACCL_SUCCESS) rc = env_flag("JACCL_RING", &env->ring, e);
    if (rc != JACCL_SUCCESS || !(qp = env_get("JACCL_IB_QP_TYPE"))) return rc;
    if (strcmp(qp, "rc") == 0 || strcmp(qp, "uc") == 0)
        env->ib_qp_type = qp[0] == 'r' ? 1 : 2;
    else if (strcmp(qp, "auto") != 0)
        return jaccl_err_set(e, JACCL_ERR_CONFIG, "JACCL_IB_QP_TYPE='%s' is not auto, rc or uc",
                             qp);
    return JACCL_SUCCESS;
}

jaccl_result_t jaccl_env_parse(struct jaccl_env *env, const jaccl_config_t *cfg,
                               struct jaccl_err *e)
{
    static const jaccl_config_t none = JACCL_CONFIG_INIT;
    jaccl_result_t rc = JACCL_SUCCESS;
    memset(env, 0, sizeof(*env));
    if (!cfg) cfg = &none;
    if (cfg->version != JACCL_CONFIG_VERSION)
        return jaccl_err_set(e, JACCL_ERR_INVALID_ARGUMENT,
                             "config.version is %u, expected %u: "
                             "start from JACCL_CONFIG_INIT",
                             cfg->version, JACCL_CONFIG_VERSION);
    env->allgather = cfg->allgather;
    env->allgather_user = cfg->allgather_user;
    if (cfg->listen_host)
        snprintf(env->listen_host, sizeof(env->listen_host), "%s", cfg->listen_host);
    if (cfg->rank == -1 && cfg->size == -1)
        rc = env_rank_size(env, e);
    else
        rc = config_rank_size(env, cfg, e);
    if (rc == JACCL_SUCCESS) rc = env_coordinator(env, cfg->coordinator, e);
    if (rc == JACCL_SUCCESS) rc = env_timeout(env, cfg->timeout_s, e);
    if (rc == JACCL_SUCCESS) rc = env_transport(env, cfg->transport, e);
    const char *algo = cfg->algo ? cfg->algo : env_get("JACCL_ALGO");
    if (rc == JACCL_SUCCESS) rc = jaccl_env_parse_algo(algo, env->algo, e);
    if (rc == JACCL_SUCCESS) rc = env_tuning(env, e);
    if (rc == JACCL_SUCCESS) rc = env_rdma(env, e);
    /* JACCL_RING: the ring for every collective JACCL_ALGO leaves to the selector. */
    for (int c = 0; rc == JACCL_SUCCESS && env->ring && c < JACCL_COLL_COUNT; c++)
        if (!env->algo[c]) env->algo[c] = jaccl_algo_find("ring");
    if (rc == JACCL_SUCCESS) rc = env_job_key(env, e);
    return rc;
}
