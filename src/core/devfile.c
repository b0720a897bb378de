/* The JACCL device file, read with jansson. */
#include "core/devfile.h"
#include "util/log.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct df_ctx {
    const char *var, *path;
    int hostfile; /* cells are hosts[i].rdma[j] rather than [i][j] */
    struct jaccl_err *e;
};

static jaccl_result_t cell_err(const struct df_ctx *c, int i, int j, const char *what)
{
    if (c->hostfile)
        return jaccl_err_set(c->e, JACCL_ERR_CONFIG, "%s=%s: hosts[%d].rdma[%d] %s", c->var,
                             c->path, i, j, what);
    return jaccl_err_set(c->e, JACCL_ERR_CONFIG, "%s=%s: cell [%d][%d] %s", c->var, c->path, i, j,
                         what);
}

static jaccl_result_t cell_name(const struct df_ctx *c, int i, int j, json_t *v, char *out)
{
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;
    if (!s) return cell_err(c, i, j, "holds something other than a device name (a string)");
    if (!*s || strlen(s) >= JACCL_TP_DEVNAME_MAX)
        return cell_err(c, i, j, "names a device with an empty or over-long name");
    strcpy(out, s);
    return JACCL_SUCCESS;
}

/* Cell [i][j]: null, a name, or a non-empty list of names. */
static jaccl_result_t parse_cell(const struct df_ctx *c, struct jaccl_devfile *df, int i, int j,
                                 json_t *v)
{
    size_t at = (size_t)i * (size_t)df->size + (size_t)j, n = 1;
    char(*names)[JACCL_TP_DEVNAME_MAX] = df->names + at * JACCL_MAX_LINKS;
    if (json_is_null(v)) return JACCL_SUCCESS;
    if (i == j) return cell_err(c, i, j, "is on the diagonal and must be null");
    if (json_is_array(v)) {
        n = json_array_size(v);
        if (n == 0) return cell_err(c, i, j, "is an empty list (use null for no cable)");
        if (n > JACCL_MAX_LINKS) return cell_err(c, i, j, "lists more than 16 cables");
        for (size_t k = 0; k < n; k++) {
            jaccl_result_t rc = cell_name(c, i, j, json_array_get(v, k), names[k]);
            if (rc != JACCL_SUCCESS) return rc;
        }
    } else {
        jaccl_result_t rc = cell_name(c, i, j, v, names[0]);
        if (rc != JACCL_SUCCESS) return rc;
    }
    df->cables[at] = (unsigned char)n;
    return JACCL_SUCCESS;
}

/* The rows: the root array, or hosts[i].rdma of an mlx.launch hostfile. */
/* Direct cables between every pair: jobs this size use a switched fabric instead. */
#define DEVFILE_MAX_RANKS 256

static json_t *row_of(struct df_ctx *c, json_t *root, int i)
{
    if (!c->hostfile) return json_array_get(root, (size_t)i);
    return json_object_get(json_array_get(json_object_get(root, "hosts"), (size_t)i), "rdma");
}

/* Checked before anything is allocated, so the file's size bounds the memory used. */
static jaccl_result_t check_square(struct df_ctx *c, json_t *root, int n)
{
    for (int i = 0; i < n; i++) {
        json_t *row = row_of(c, root, i);
        if (!json_is_array(row) || json_array_size(row) != (size_t)n)
            return jaccl_err_set(c->e, JACCL_ERR_CONFIG,
                                 "%s=%s: row %d is not a list of %d cells (the matrix must be "
                                 "square: one row and one column per rank)",
                                 c->var, c->path, i, n);
    }
    return JACCL_SUCCESS;
}

static jaccl_result_t parse_rows(struct df_ctx *c, json_t *root, struct jaccl_devfile *df)
{
    for (int i = 0; i < df->size; i++) {
        json_t *row = row_of(c, root, i);
        for (int j = 0; j < df->size; j++) {
            jaccl_result_t rc = parse_cell(c, df, i, j, json_array_get(row, (size_t)j));
            if (rc != JACCL_SUCCESS) return rc;
        }
    }
    return JACCL_SUCCESS;
}

/* A cable has two ends: [i][j] and [j][i] list the same number of devices. */
static jaccl_result_t check_symmetric(const struct df_ctx *c, const struct jaccl_devfile *df)
{
    for (int i = 0; i < df->size; i++)
        for (int j = i + 1; j < df->size; j++) {
            int a = df->cables[i * df->size + j], b = df->cables[j * df->size + i];
            if (a == b) continue;
            char what[160];
            snprintf(what, sizeof(what),
                     "has %d cable(s) but cell [%d][%d] has %d: both ends of a link must be "
                     "listed, the same number of times",
                     a, j, i, b);
            return cell_err(c, i, j, what);
        }
    return JACCL_SUCCESS;
}

static json_t *df_read(struct df_ctx *c, struct jaccl_err *e)
{
    json_error_t je;
    json_t *root = json_load_file(c->path, 0, &je);
    if (!root && je.line < 0)
        jaccl_err_set(e, JACCL_ERR_CONFIG, "%s=%s: not readable JSON: %s", c->var, c->path,
                      je.text);
    else if (!root)
        jaccl_err_set(e, JACCL_ERR_CONFIG, "%s=%s: not readable JSON: %s (line %d, column %d)",
                      c->var, c->path, je.text, je.line, je.column);
    return root;
}

jaccl_result_t jaccl_devfile_load(const char *path, const char *var, struct jaccl_devfile *df,
                                  struct jaccl_err *e)
{
    struct df_ctx c = {.var = var, .path = path, .e = e};
    memset(df, 0, sizeof(*df));
    json_t *root = df_read(&c, e), *hosts = json_object_get(root, "hosts");
    if (!root) return JACCL_ERR_CONFIG;
    c.hostfile = json_is_array(hosts);
    size_t n = json_array_size(c.hostfile ? hosts : root);
    jaccl_result_t rc = JACCL_SUCCESS;
    if ((!json_is_array(root) && !c.hostfile) || n == 0)
        rc = jaccl_err_set(e, JACCL_ERR_CONFIG,
                           "%s=%s: expected a non-empty list of rows (an N x N matrix of device "
                           "names) or an mlx.launch hostfile with \"hosts\"",
                           var, path);
    else if (n > DEVFILE_MAX_RANKS)
        rc = jaccl_err_set(e, JACCL_ERR_CONFIG,
                           "%s=%s: %zu rows; a device file describes at most %d ranks", var, path,
                           n, DEVFILE_MAX_RANKS);
    df->size = (int)n;
    if (rc == JACCL_SUCCESS) rc = check_square(&c, root, df->size);
    if (rc == JACCL_SUCCESS) {
        df->cables = calloc(n * n, 1);
        df->names = calloc(n * n * JACCL_MAX_LINKS, sizeof(*df->names));
        if (!df->cables || !df->names)
            rc = jaccl_err_set(e, JACCL_ERR_NOMEM, "%s: out of memory for %zu ranks", var, n);
    }
    if (rc == JACCL_SUCCESS) rc = parse_rows(&c, root, df);
    if (rc == JACCL_SUCCESS) rc = check_symmetric(&c, df);
    json_decref(root);
    if (rc != JACCL_SUCCESS) jaccl_devfile_free(df);
    return rc;
}

void jaccl_devfile_free(struct jaccl_devfile *df)
{
    free(df->cables);
    free(df->names);
    memset(df, 0, sizeof(*df));
}

int jaccl_devfile_is_ring(const struct jaccl_devfile *df)
{
    int n = df->size;
    if (n < 4) return 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            int neighbour = j == (i + 1) % n || i == (j + 1) % n;
            if ((df->cables[i * n + j] != 0) != neighbour) return 0;
        }
    return 1;
}

jaccl_result_t jaccl_devfile_setup(struct jaccl_env *env, int rank, int size,
                                   struct jaccl_devfile *df, struct jaccl_tp_rdma_cfg *cfg,
                                   struct jaccl_err *e)
{
    memset(df, 0, sizeof(*df));
    if (!env->ibv_devices[0]) return JACCL_SUCCESS;
    jaccl_result_t rc = jaccl_devfile_load(env->ibv_devices, env->ibv_devices_var, df, e);
    if (rc != JACCL_SUCCESS) return rc;
    if (df->size != size) {
        rc = jaccl_err_set(e, JACCL_ERR_CONFIG,
                           "%s=%s describes %d ranks but the job has %d; give every rank the "
                           "file made for this job",
                           env->ibv_devices_var, env->ibv_devices, df->size, size);
        jaccl_devfile_free(df);
        return rc;
    }
    *cfg = (struct jaccl_tp_rdma_cfg){
        .devfile = env->ibv_devices,
        .cables = df->cables + (size_t)rank * (size_t)size,
        .names = (const char(*)[JACCL_TP_DEVNAME_MAX])(df->names + (size_t)rank * (size_t)size *
                                                                       JACCL_MAX_LINKS),
        .lib = env->ibverbs_lib[0] ? env->ibverbs_lib : NULL,
        .qp_type = env->ib_qp_type,
        .gid_index = env->ib_gid_index,
    };
    /* A ring of cables: the ring algorithm uses them; the mesh would cross to TCP. */
    if (jaccl_devfile_is_ring(df) && !env->ring) {
        log_info("%s describes a ring: collectives use the ring algorithm unless JACCL_ALGO "
                 "says otherwise",
                 env->ibv_devices_var);
        for (int c = 0; c < JACCL_COLL_COUNT; c++)
            if (!env->algo[c]) env->algo[c] = jaccl_algo_find("ring");
    }
    return JACCL_SUCCESS;
}
