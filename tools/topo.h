/* What jaccl-config learns about hosts, and the links it finds between them. */
#ifndef JACCL_TOOLS_TOPO_H
#define JACCL_TOOLS_TOPO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TOPO_MAX_HOSTS 64
#define TOPO_MAX_ADDRS 8

struct topo_if {
    char name[32];
    bool up;
    int mtu;
    int naddr;
    uint32_t addr[TOPO_MAX_ADDRS]; /* IPv4, host order */
    int prefix[TOPO_MAX_ADDRS];
    char rdma[64]; /* RDMA device on this interface, "" if none */
};

struct topo_host {
    const char *name; /* as given on the command line */
    bool ok, local, root;
    int nifs;
    struct topo_if *ifs;
};

/* A point-to-point link: a subnet that exactly two hosts have addresses in. */
struct topo_cable {
    int host[2], ifc[2];
    uint32_t addr[2], net;
    int prefix;
};

struct topo {
    int n;
    struct topo_host *hosts;
    struct topo_cable *cables; /* sorted by subnet */
    int ncables;
    int shared_prefix; /* a subnet every host is on (for the coordinator); -1: none */
    uint32_t shared_net;
};

/* Fills h->ifs from `ip -j addr` output and the RDMA devices from `rdma -j link` (may be
 * empty); -1 with a message on malformed JSON. */
int topo_parse_host(struct topo_host *h, const char *ip_json, const char *rdma_json, char *err,
                    size_t errlen);

/* Finds the cables and the shared subnet of the hosts probed so far. */
int topo_links(struct topo *t);

/* Number of cables between hosts i and j. */
int topo_ncables(const struct topo *t, int i, int j);

/* A ring through all hosts along cables, starting at host 0; false if there is none, or
 * if a bounded search finds none (only dense links without a ring take that long). */
bool topo_ring(const struct topo *t, int *order);

/* This host's address on the shared subnet (0: none). */
uint32_t topo_shared_addr(const struct topo *t, int host);

void topo_free(struct topo *t);

#endif
