/* Links between hosts, from their interface addresses: hosts that have addresses in the same
 * IPv4 subnet share a link; a subnet of exactly two hosts is a cable. */
#include "topo.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t mask(int prefix)
{
    return prefix <= 0 ? 0 : prefix >= 32 ? 0xffffffffu : ~((1u << (32 - prefix)) - 1);
}

static bool has_flag(json_t *flags, const char *f)
{
    size_t i;
    json_t *v;
    json_array_foreach(flags, i, v) if (json_is_string(v) &&
                                        strcmp(json_string_value(v), f) == 0) return true;
    return false;
}

/* The global IPv4 addresses of one `ip -j addr` entry. */
static void parse_addrs(json_t *info, struct topo_if *f)
{
    size_t i;
    json_t *a;
    json_array_foreach(info, i, a)
    {
        const char *fam = json_string_value(json_object_get(a, "family"));
        const char *local = json_string_value(json_object_get(a, "local"));
        const char *scope = json_string_value(json_object_get(a, "scope"));
        struct in_addr in;
        if (!fam || strcmp(fam, "inet") != 0 || !local || inet_pton(AF_INET, local, &in) != 1)
            continue;
        if ((scope && strcmp(scope, "global") != 0) || f->naddr == TOPO_MAX_ADDRS) continue;
        f->addr[f->naddr] = ntohl(in.s_addr);
        f->prefix[f->naddr++] = (int)json_integer_value(json_object_get(a, "prefixlen"));
    }
}

static int parse_ifs(struct topo_host *h, json_t *root, char *err, size_t errlen)
{
    if (!json_is_array(root)) {
        snprintf(err, errlen, "'ip -j addr' did not print a JSON array");
        return -1;
    }
    h->ifs = calloc(json_array_size(root) + 1, sizeof *h->ifs);
    if (!h->ifs) return -1;
    size_t i;
    json_t *e;
    json_array_foreach(root, i, e)
    {
        const char *name = json_string_value(json_object_get(e, "ifname"));
        json_t *flags = json_object_get(e, "flags");
        if (!name || has_flag(flags, "LOOPBACK")) continue;
        struct topo_if *f = &h->ifs[h->nifs];
        snprintf(f->name, sizeof f->name, "%s", name);
        f->up = has_flag(flags, "UP");
        f->mtu = (int)json_integer_value(json_object_get(e, "mtu"));
        parse_addrs(json_object_get(e, "addr_info"), f);
        if (f->naddr > 0) h->nifs++;
    }
    return 0;
}

/* `rdma -j link`: [{"ifname": "mlx5_0", "port": 1, "netdev": "enp1s0f0", ...}, ...]. */
static void parse_rdma(struct topo_host *h, json_t *root)
{
    size_t i;
    json_t *e;
    json_array_foreach(root, i, e)
    {
        const char *dev = json_string_value(json_object_get(e, "ifname"));
        const char *netdev = json_string_value(json_object_get(e, "netdev"));
        for (int k = 0; dev && netdev && k < h->nifs; k++)
            if (strcmp(h->ifs[k].name, netdev) == 0)
                snprintf(h->ifs[k].rdma, sizeof h->ifs[k].rdma, "%s", dev);
    }
}

int topo_parse_host(struct topo_host *h, const char *ip_json, const char *rdma_json, char *err,
                    size_t errlen)
{
    json_error_t je;
    json_t *root = json_loads(ip_json, 0, &je);
    if (!root) {
        snprintf(err, errlen, "cannot parse 'ip -j addr' output: line %d: %s", je.line, je.text);
        return -1;
    }
    int rc = parse_ifs(h, root, err, errlen);
    json_decref(root);
    if (rc == 0 && rdma_json && strspn(rdma_json, " \t\r\n") < strlen(rdma_json)) {
        json_t *r = json_loads(rdma_json, 0, &je);
        if (r) parse_rdma(h, r); /* an old rdma tool without -j: no devices, not an error */
        json_decref(r);
    }
    return rc;
}

struct member {
    int host, ifc;
    uint32_t addr, net;
    int prefix;
};

static int by_subnet(const void *a, const void *b)
{
    const struct member *x = a, *y = b;
    if (x->prefix != y->prefix) return x->prefix < y->prefix ? -1 : 1;
    if (x->net != y->net) return x->net < y->net ? -1 : 1;
    return x->host != y->host ? x->host - y->host : x->ifc - y->ifc;
}

/* One subnet's members m[0..k): a cable if two hosts, the shared network if all of them. */
static void classify(struct topo *t, const struct member *m, int k)
{
    int hosts = 1;
    for (int i = 1; i < k; i++) hosts += m[i].host != m[i - 1].host;
    if (hosts == 2) {
        int second = 1;
        while (m[second].host == m[0].host) second++;
        t->cables[t->ncables++] = (struct topo_cable){
            .host = {m[0].host, m[second].host},
            .ifc = {m[0].ifc, m[second].ifc},
            .addr = {m[0].addr, m[second].addr},
            .net = m[0].net,
            .prefix = m[0].prefix,
        };
    }
    if (hosts == t->n && t->shared_prefix < 0) {
        t->shared_net = m[0].net;
        t->shared_prefix = m[0].prefix;
    }
}

int topo_links(struct topo *t)
{
    int total = 0;
    for (int h = 0; h < t->n; h++)
        for (int i = 0; i < t->hosts[h].nifs; i++) total += t->hosts[h].ifs[i].naddr;
    struct member *m = calloc((size_t)total + 1, sizeof *m);
    t->cables = calloc((size_t)total + 1, sizeof *t->cables);
    if (!m || !t->cables) {
        free(m);
        return -1;
    }
    int k = 0;
    for (int h = 0; h < t->n; h++)
        for (int i = 0; i < t->hosts[h].nifs; i++)
            for (int a = 0; a < t->hosts[h].ifs[i].naddr; a++) {
                const struct topo_if *f = &t->hosts[h].ifs[i];
                m[k++] = (struct member){h, i, f->addr[a], f->addr[a] & mask(f->prefix[a]),
                                         f->prefix[a]};
            }
    qsort(m, (size_t)k, sizeof *m, by_subnet);
    t->shared_prefix = -1;
    for (int s = 0, e; s < k; s = e) {
        for (e = s + 1; e < k && m[e].net == m[s].net && m[e].prefix == m[s].prefix; e++) {
        }
        classify(t, m + s, e - s);
    }
    free(m);
    return 0;
}

int topo_ncables(const struct topo *t, int i, int j)
{
    int n = 0;
    for (int c = 0; c < t->ncables; c++) {
        const struct topo_cable *x = &t->cables[c];
        n += (x->host[0] == i && x->host[1] == j) || (x->host[0] == j && x->host[1] == i);
    }
    return n;
}

/* The search for a ring is a Hamiltonian cycle search: exponential on dense links that
 * have none (two cliques joined by one cable). The budget bounds it; a ring of cables
 * (two neighbours per host) or a mesh takes n steps. */
#define RING_SEARCH_BUDGET 1000000L

struct ring_search {
    int n;
    bool adj[TOPO_MAX_HOSTS][TOPO_MAX_HOSTS];
    bool used[TOPO_MAX_HOSTS];
    int *order;
    long budget;
};

static bool extend(struct ring_search *rs, int depth)
{
    int last = rs->order[depth - 1];
    if (depth == rs->n) return rs->adj[last][rs->order[0]];
    if (--rs->budget < 0) return false;
    for (int h = 1; h < rs->n; h++) {
        if (rs->used[h] || !rs->adj[last][h]) continue;
        rs->used[h] = true;
        rs->order[depth] = h;
        if (extend(rs, depth + 1)) return true;
        rs->used[h] = false;
    }
    return false;
}

bool topo_ring(const struct topo *t, int *order)
{
    order[0] = 0;
    if (t->n < 2 || t->n > TOPO_MAX_HOSTS) return false;
    if (t->n == 2) {
        order[1] = 1;
        return topo_ncables(t, 0, 1) > 0;
    }
    struct ring_search *rs = calloc(1, sizeof *rs);
    if (!rs) return false;
    *rs = (struct ring_search){.n = t->n, .order = order, .budget = RING_SEARCH_BUDGET};
    for (int c = 0; c < t->ncables; c++) {
        const struct topo_cable *x = &t->cables[c];
        rs->adj[x->host[0]][x->host[1]] = rs->adj[x->host[1]][x->host[0]] = true;
    }
    bool ok = true;
    for (int h = 0; h < t->n && ok; h++) {
        int deg = 0;
        for (int k = 0; k < t->n; k++) deg += rs->adj[h][k];
        ok = deg >= 2; /* a host with one neighbour is on no ring */
    }
    rs->used[0] = true;
    ok = ok && extend(rs, 1);
    free(rs);
    return ok;
}

uint32_t topo_shared_addr(const struct topo *t, int host)
{
    if (t->shared_prefix < 0) return 0;
    const struct topo_host *h = &t->hosts[host];
    for (int i = 0; i < h->nifs; i++)
        for (int a = 0; a < h->ifs[i].naddr; a++)
            if (h->ifs[i].prefix[a] == t->shared_prefix &&
                (h->ifs[i].addr[a] & mask(t->shared_prefix)) == t->shared_net)
                return h->ifs[i].addr[a];
    return 0;
}

void topo_free(struct topo *t)
{
    for (int h = 0; t->hosts && h < t->n; h++) free(t->hosts[h].ifs);
    free(t->cables);
    t->cables = NULL;
}
