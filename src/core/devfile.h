/*
 * The JACCL device file (JACCL_IBV_DEVICES, alias MLX_IBV_DEVICES): a JSON
 * N x N matrix whose cell [i][j] is null, a device name, or a list of device
 * names (one per cable between ranks i and j; the k-th names on both sides
 * are the same cable).  An mlx.launch hostfile ({"hosts": [{"rdma": row}]})
 * is read the same way.  The job's size is the number of rows.
 */
#ifndef JACCL_CORE_DEVFILE_H
#define JACCL_CORE_DEVFILE_H

#include "core/env.h"
#include "transport/transport.h"
#include "util/err.h"

struct jaccl_devfile {
    int size;
    unsigned char *cables;               /* [i * size + j] */
    char (*names)[JACCL_TP_DEVNAME_MAX]; /* [(i * size + j) * JACCL_MAX_LINKS + k] */
};

/* Parse and validate path; errors name the variable (var), the file and the cell. */
jaccl_result_t jaccl_devfile_load(const char *path, const char *var, struct jaccl_devfile *df,
                                  struct jaccl_err *e);
void jaccl_devfile_free(struct jaccl_devfile *df);

/* 1 if every rank has cables to its two ring neighbours only (a ring of size > 3). */
int jaccl_devfile_is_ring(const struct jaccl_devfile *df);

/*
 * Load env's device file, if one is named, check it describes size ranks and
 * point cfg at rank's row (valid until jaccl_devfile_free(df)); df->size is 0
 * when no file is named.  A ring-shaped file makes the ring the default.
 */
jaccl_result_t jaccl_devfile_setup(struct jaccl_env *env, int rank, int size,
                                   struct jaccl_devfile *df, struct jaccl_tp_rdma_cfg *cfg,
                                   struct jaccl_err *e);

#endif
