/* Hostfiles: MLX's format (a list of hosts, or {"backend", "envs", "hosts"}) with optional
 * extensions of ours ("slots" per host, "tcp" addresses per link), parsed with jansson. */
#ifndef JACCL_TOOLS_HOSTFILE_H
#define JACCL_TOOLS_HOSTFILE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct hf_host {
    char *ssh;  /* how the launcher reaches the host ("user@name" allowed) */
    char **ips; /* coordination addresses; ips[0] of host 0 hosts the coordinator */
    size_t nips;
    int slots;    /* ranks on this host (ours; default 1) */
    json_t *rdma; /* NULL or the validated "rdma" row (a reference) */
};

struct hostfile {
    char *backend; /* NULL when the file has none */
    char **envs;   /* "K=V" */
    size_t nenvs;
    struct hf_host *hosts;
    size_t nhosts;
};

/* Parses path; on failure returns -1 and writes a message naming the file, the host entry
 * and the field into err. */
int hf_load(const char *path, struct hostfile *hf, char *err, size_t errlen);

/* A plain comma-separated host list ("a,b,c"; "a:2" for two ranks on a). */
int hf_from_list(const char *list, struct hostfile *hf, char *err, size_t errlen);

/* The JACCL_IBV_DEVICES matrix from the hosts' "rdma" rows (compact JSON, malloc'd), or
 * NULL when no host has one; -1 with a message when the rows do not form an N x N matrix. */
int hf_devices_json(const struct hostfile *hf, const char *file, char **out, char *err,
                    size_t errlen);

void hf_free(struct hostfile *hf);

/* KEY=VALUE with KEY a shell variable name (the remote wrapper exports it). */
bool hf_env_ok(const char *kv);

/* A usable ssh destination: not empty, no whitespace, and not starting with '-' (ssh would
 * take it for an option, such as -oProxyCommand=...). */
bool hf_dest_ok(const char *dest);

#endif
