/* Hostfile parsing: every error names the file, the host entry and the field. */
#include "hostfile.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SLOTS 1024

struct ctx {
    const char *file;
    char *err;
    size_t errlen;
};

/* "FILE: hosts[i] (name): field "f": what"; host < 0 for top-level fields. */
static int fail(const struct ctx *c, long host, const char *name, const char *field,
                const char *fmt, ...)
{
    int n = snprintf(c->err, c->errlen, "%s: ", c->file);
    if (host >= 0 && n >= 0 && (size_t)n < c->errlen)
        n += snprintf(c->err + n, c->errlen - (size_t)n,
                      name ? "hosts[%ld] (%s): " : "hosts[%ld]: ", host, name);
    if (field && n >= 0 && (size_t)n < c->errlen)
        n += snprintf(c->err + n, c->errlen - (size_t)n, "field \"%s\": ", field);
    if (n >= 0 && (size_t)n < c->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

bool hf_env_ok(const char *kv)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv || (*kv >= '0' && *kv <= '9')) return false;
    for (const char *p = kv; p < eq; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_'))
            return false;
    return true;
}

bool hf_dest_ok(const char *dest)
{
    return *dest && *dest != '-' && !strpbrk(dest, " \t\r\n");
}

/* An array of strings into a malloc'd vector. */
static int string_array(const struct ctx *c, long host, const char *name, const char *field,
                        json_t *v, char ***out, size_t *n)
{
    if (!json_is_array(v)) return fail(c, host, name, field, "expected an array of strings");
    *n = json_array_size(v);
    *out = calloc(*n + 1, sizeof **out);
    if (!*out) return fail(c, host, name, field, "out of memory");
    for (size_t i = 0; i < *n; i++) {
        json_t *s = json_array_get(v, i);
        if (!json_is_string(s)) return fail(c, host, name, field, "item %zu is not a string", i);
        if (!((*out)[i] = strdup(json_string_value(s))))
            return fail(c, host, name, field, "out of memory");
    }
    return 0;
}

/* A cell of an "rdma" row: null, a device name, or a list of names (one per cable). */
static bool rdma_cell_ok(json_t *v)
{
    if (json_is_null(v) || json_is_string(v)) return true;
    if (!json_is_array(v) || json_array_size(v) == 0) return false;
    size_t i;
    json_t *s;
    json_array_foreach(v, i, s) if (!json_is_string(s)) return false;
    return true;
}

static int parse_rdma(const struct ctx *c, long i, const char *name, json_t *v, struct hf_host *h)
{
    if (json_is_null(v)) return 0;
    if (!json_is_array(v))
        return fail(c, i, name, "rdma", "expected an array with one cell per host");
    size_t j;
    json_t *cell;
    json_array_foreach(v, j, cell) if (!rdma_cell_ok(cell)) return fail(
        c, i, name, "rdma", "cell %zu is not null, a device name or a list of device names", j);
    h->rdma = json_incref(v);
    return 0;
}

static int parse_slots(const struct ctx *c, long i, const char *name, json_t *v, struct hf_host *h)
{
    h->slots = 1;
    if (!v) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > MAX_SLOTS)
        return fail(c, i, name, "slots", "expected an integer from 1 to %d", MAX_SLOTS);
    h->slots = (int)json_integer_value(v);
    return 0;
}

static int parse_host(const struct ctx *c, long i, json_t *v, struct hf_host *h)
{
    h->slots = 1;
    if (json_is_string(v)) {
        if (!hf_dest_ok(json_string_value(v)))
            return fail(c, i, NULL, NULL,
                        "'%s' is not an ssh destination (empty, starts with '-' or has spaces)",
                        json_string_value(v));
        h->ssh = strdup(json_string_value(v));
        return h->ssh ? 0 : fail(c, i, NULL, NULL, "out of memory");
    }
    if (!json_is_object(v))
        return fail(c, i, NULL, NULL,
                    "expected an object such as {\"ssh\": \"host\", \"ips\": []}");
    json_t *ssh = json_object_get(v, "ssh"), *ips = json_object_get(v, "ips");
    if (!json_is_string(ssh) || !*json_string_value(ssh))
        return fail(c, i, NULL, "ssh", ssh ? "expected a non-empty string" : "missing");
    const char *name = json_string_value(ssh);
    if (!hf_dest_ok(name))
        return fail(c, i, NULL, "ssh",
                    "'%s' is not an ssh destination (starts with '-' or has "
                    "spaces)",
                    name);
    if (!(h->ssh = strdup(name))) return fail(c, i, name, "ssh", "out of memory");
    if (ips && !json_is_null(ips) && string_array(c, i, name, "ips", ips, &h->ips, &h->nips))
        return -1;
    if (parse_slots(c, i, name, json_object_get(v, "slots"), h)) return -1;
    json_t *rdma = json_object_get(v, "rdma");
    return rdma ? parse_rdma(c, i, name, rdma, h) : 0;
}

static int parse_hosts(const struct ctx *c, json_t *arr, struct hostfile *hf)
{
    if (!json_is_array(arr)) return fail(c, -1, NULL, "hosts", "expected an array of hosts");
    hf->nhosts = json_array_size(arr);
    if (hf->nhosts == 0) return fail(c, -1, NULL, "hosts", "no hosts");
    if (!(hf->hosts = calloc(hf->nhosts, sizeof *hf->hosts)))
        return fail(c, -1, NULL, "hosts", "out of memory");
    for (size_t i = 0; i < hf->nhosts; i++)
        if (parse_host(c, (long)i, json_array_get(arr, i), &hf->hosts[i])) return -1;
    return 0;
}

static int parse_top(const struct ctx *c, json_t *root, struct hostfile *hf)
{
    if (json_is_array(root)) return parse_hosts(c, root, hf);
    if (!json_is_object(root))
        return fail(c, -1, NULL, NULL, "expected a list of hosts or an object with \"hosts\"");
    json_t *b = json_object_get(root, "backend"), *envs = json_object_get(root, "envs");
    if (b && !json_is_null(b)) {
        if (!json_is_string(b)) return fail(c, -1, NULL, "backend", "expected a string");
        if (!(hf->backend = strdup(json_string_value(b))))
            return fail(c, -1, NULL, "backend", "out of memory");
    }
    if (envs && !json_is_null(envs)) {
        if (string_array(c, -1, NULL, "envs", envs, &hf->envs, &hf->nenvs)) return -1;
        for (size_t i = 0; i < hf->nenvs; i++)
            if (!hf_env_ok(hf->envs[i]))
                return fail(c, -1, NULL, "envs",
                            "item %zu '%s' is not KEY=VALUE (KEY: letters, digits, '_')", i,
                            hf->envs[i]);
    }
    json_t *hosts = json_object_get(root, "hosts");
    if (!hosts) return fail(c, -1, NULL, "hosts", "missing");
    return parse_hosts(c, hosts, hf);
}

int hf_load(const char *path, struct hostfile *hf, char *err, size_t errlen)
{
    struct ctx c = {.file = path, .err = err, .errlen = errlen};
    memset(hf, 0, sizeof *hf);
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        if (je.line < 0) return fail(&c, -1, NULL, NULL, "%s", je.text);
        return fail(&c, -1, NULL, NULL, "line %d column %d: %s", je.line, je.column, je.text);
    }
    int rc = parse_top(&c, root, hf);
    json_decref(root);
    if (rc) hf_free(hf);
    return rc;
}

/* One "name" or "name:slots" item of a --hosts list. */
static int list_item(const struct ctx *c, long i, const char *s, size_t len, struct hf_host *h)
{
    h->slots = 1;
    if (len == 0) return fail(c, i, NULL, NULL, "empty host name");
    if (!(h->ssh = strndup(s, len))) return fail(c, i, NULL, NULL, "out of memory");
    char *colon = strrchr(h->ssh, ':');
    /* IPv6 literals contain colons; only a trailing ":digits" after a name counts. */
    if (colon && !strchr(colon + 1, ']') && strchr(h->ssh, ':') == colon) {
        char *end;
        errno = 0;
        long n = strtol(colon + 1, &end, 10);
        if (errno || *end || end == colon + 1 || n < 1 || n > MAX_SLOTS)
            return fail(c, i, h->ssh, "slots", "'%s' is not from 1 to %d", colon + 1, MAX_SLOTS);
        h->slots = (int)n;
        *colon = '\0';
    }
    if (!hf_dest_ok(h->ssh))
        return fail(c, i, NULL, NULL,
                    "'%s' is not an ssh destination (empty, starts with '-' or has spaces)",
                    h->ssh);
    return 0;
}

int hf_from_list(const char *list, struct hostfile *hf, char *err, size_t errlen)
{
    struct ctx c = {.file = "--hosts", .err = err, .errlen = errlen};
    memset(hf, 0, sizeof *hf);
    size_t n = 1;
    for (const char *p = list; *p; p++) n += *p == ',';
    if (!(hf->hosts = calloc(n, sizeof *hf->hosts))) return fail(&c, -1, NULL, NULL, "no memory");
    hf->nhosts = n;
    for (size_t i = 0; i < n; i++) {
        size_t len = strcspn(list, ",");
        if (list_item(&c, (long)i, list, len, &hf->hosts[i])) {
            hf_free(hf);
            return -1;
        }
        list += len + (list[len] == ',');
    }
    return 0;
}

int hf_devices_json(const struct hostfile *hf, const char *file, char **out, char *err,
                    size_t errlen)
{
    struct ctx c = {.file = file, .err = err, .errlen = errlen};
    size_t n = hf->nhosts, with = 0;
    *out = NULL;
    for (size_t i = 0; i < n; i++) with += hf->hosts[i].rdma != NULL;
    if (with == 0) return 0;
    json_t *m = json_array();
    for (size_t i = 0; i < n; i++) {
        const struct hf_host *h = &hf->hosts[i];
        const char *why = !h->rdma ? "missing, while other hosts have one"
                          : json_array_size(h->rdma) != n
                              ? "expected one cell per host (null for itself)"
                          : h->slots != 1 ? "RDMA needs one rank per host (slots 1)"
                                          : NULL;
        if (why) {
            json_decref(m);
            return fail(&c, (long)i, h->ssh, "rdma", "%s", why);
        }
        if (!json_is_null(json_array_get(h->rdma, i))) {
            json_decref(m);
            return fail(&c, (long)i, h->ssh, "rdma", "cell %zu (this host) must be null", i);
        }
        json_array_append(m, h->rdma);
    }
    *out = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    return *out ? 0 : fail(&c, -1, NULL, "rdma", "out of memory");
}

static void free_vec(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) free(v[i]);
    free(v);
}

void hf_free(struct hostfile *hf)
{
    for (size_t i = 0; hf->hosts && i < hf->nhosts; i++) {
        free(hf->hosts[i].ssh);
        free_vec(hf->hosts[i].ips, hf->hosts[i].nips);
        json_decref(hf->hosts[i].rdma);
    }
    free(hf->hosts);
    free_vec(hf->envs, hf->nenvs);
    free(hf->backend);
    memset(hf, 0, sizeof *hf);
}
