/* jaccl-config's link finding (tools/topo.c) on recorded `ip -j addr` and `rdma -j link`
 * output: cables, the shared network, RDMA devices per cable, ring order. The namespace
 * tests cover the same on live hosts, except RDMA devices, which they do not have. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "topo.h"

/* Host h of 4 in a ring: eth0 on 192.168.0.0/24, cable interfaces to h-1 and h+1. */
static void ring_host(int h, char *ip, size_t iplen, char *rdma, size_t rdmalen)
{
    int next = (h + 1) % 4, prev = (h + 3) % 4;
    int lo_n = h < next ? h : next, hi_n = h < next ? next : h;
    int lo_p = h < prev ? h : prev, hi_p = h < prev ? prev : h;
    snprintf(ip, iplen,
             "[{\"ifname\":\"lo\",\"flags\":[\"LOOPBACK\",\"UP\"],\"mtu\":65536,\"addr_info\":"
             "[{\"family\":\"inet\",\"local\":\"127.0.0.1\",\"prefixlen\":8,\"scope\":\"host\"}]},"
             "{\"ifname\":\"eth0\",\"flags\":[\"UP\"],\"mtu\":1500,\"addr_info\":[{\"family\":"
             "\"inet\",\"local\":\"192.168.0.%d\",\"prefixlen\":24,\"scope\":\"global\"},"
             "{\"family\":\"inet6\",\"local\":\"fe80::1\",\"prefixlen\":64,\"scope\":\"link\"}]},"
             "{\"ifname\":\"en%d\",\"flags\":[\"UP\"],\"mtu\":9000,\"addr_info\":[{\"family\":"
             "\"inet\",\"local\":\"10.0.%d.%d\",\"prefixlen\":30,\"scope\":\"global\"}]},"
             "{\"ifname\":\"en%d\",\"flags\":[],\"mtu\":1500,\"addr_info\":[{\"family\":"
             "\"inet\",\"local\":\"10.0.%d.%d\",\"prefixlen\":30,\"scope\":\"global\"}]}]",
             10 + h, next, 10 * lo_n + hi_n, h == lo_n ? 1 : 2, prev, 10 * lo_p + hi_p,
             h == lo_p ? 1 : 2);
    snprintf(rdma, rdmalen,
             "[{\"ifindex\":1,\"ifname\":\"rxe_%d\",\"port\":1,\"state\":\"ACTIVE\","
             "\"netdev\":\"en%d\"}]",
             next, next);
}

static void load(struct topo *t, struct topo_host *hosts, const char *const *names)
{
    char ip[2048], rdma[256], err[256];
    *t = (struct topo){.n = 4, .hosts = hosts};
    for (int h = 0; h < 4; h++) {
        hosts[h] = (struct topo_host){.name = names[h]};
        ring_host(names[h][1] - '0', ip, sizeof ip, rdma, sizeof rdma);
        assert_int_equal(topo_parse_host(&hosts[h], ip, rdma, err, sizeof err), 0);
    }
    assert_int_equal(topo_links(t), 0);
}

static void test_ring(void **state)
{
    const char *const names[] = {"h0", "h2", "h1", "h3"}; /* not in ring order */
    struct topo_host hosts[4];
    struct topo t;
    int order[4];
    load(&t, hosts, names);
    assert_int_equal(hosts[0].nifs, 3); /* lo skipped */
    assert_false(hosts[0].ifs[2].up);
    assert_int_equal(t.ncables, 4);
    assert_int_equal(topo_ncables(&t, 0, 2), 1); /* h0-h1 */
    assert_int_equal(topo_ncables(&t, 0, 1), 0); /* h0-h2 */
    assert_int_equal(t.shared_prefix, 24);
    assert_int_equal(topo_shared_addr(&t, 1), 0xc0a8000c); /* h2: 192.168.0.12 */
    assert_true(topo_ring(&t, order));
    assert_int_equal(order[0], 0);
    assert_int_equal(order[2], 1); /* h2 is opposite h0 */
    /* h0's cable to h1 is en1 with rxe_1; its cable to h3 has no RDMA device */
    for (int c = 0; c < t.ncables; c++) {
        const struct topo_cable *x = &t.cables[c];
        if (x->host[0] == 0 || x->host[1] == 0) {
            int s = x->host[0] == 0 ? 0 : 1;
            const struct topo_if *f = &hosts[0].ifs[x->ifc[s]];
            assert_string_equal(f->rdma, strcmp(f->name, "en1") == 0 ? "rxe_1" : "");
        }
    }
    topo_free(&t);
}

static void test_bad_json(void **state)
{
    struct topo_host h = {.name = "x"};
    char err[256];
    assert_int_equal(topo_parse_host(&h, "[{\"ifname\": ", "", err, sizeof err), -1);
    assert_non_null(strstr(err, "ip -j addr"));
    assert_int_equal(topo_parse_host(&h, "{}", "", err, sizeof err), -1);
    /* an rdma tool without JSON output: no devices, not an error */
    assert_int_equal(topo_parse_host(&h, "[]", "0: mlx5_0/1: state ACTIVE", err, sizeof err), 0);
    free(h.ifs);
}

/* Hosts cabled as given pairs, without interfaces: enough for topo_ring. */
static void cable_pairs(struct topo *t, struct topo_cable *cables, int n, const int (*pairs)[2],
                        int npairs)
{
    *t = (struct topo){.n = n, .cables = cables, .ncables = npairs, .shared_prefix = -1};
    for (int c = 0; c < npairs; c++)
        cables[c] = (struct topo_cable){.host = {pairs[c][0], pairs[c][1]}};
}

/* Two cliques of 12 hosts joined by one cable have no ring. The search for one used to try
 * every path through the first clique (11! of them) and hang jaccl-config; a host with a
 * single neighbour is refused at once. A plain ring of 64 hosts is still found. */
static void test_ring_search_bounded(void **state)
{
    enum { K = 12 };
    static int pairs[2 * K * K][2];
    static struct topo_cable cables[2 * K * K];
    int order[TOPO_MAX_HOSTS], np = 0;
    struct topo t;
    for (int side = 0; side < 2; side++)
        for (int i = 0; i < K; i++)
            for (int j = i + 1; j < K; j++) {
                pairs[np][0] = side * K + i;
                pairs[np++][1] = side * K + j;
            }
    pairs[np][0] = 0;
    pairs[np++][1] = K;
    cable_pairs(&t, cables, 2 * K, (const int(*)[2])pairs, np);
    assert_false(topo_ring(&t, order));
    /* one host hanging off the first clique by a single cable */
    cable_pairs(&t, cables, K + 1, (const int(*)[2])pairs, K * (K - 1) / 2 + 0);
    cables[t.ncables++] = (struct topo_cable){.host = {3, K}};
    assert_false(topo_ring(&t, order));
    /* a ring of 64, numbered out of order: h -> (h + 5) mod 64 */
    np = 0;
    for (int h = 0; h < TOPO_MAX_HOSTS; h++) {
        pairs[np][0] = h;
        pairs[np++][1] = (h + 5) % TOPO_MAX_HOSTS;
    }
    cable_pairs(&t, cables, TOPO_MAX_HOSTS, (const int(*)[2])pairs, np);
    assert_true(topo_ring(&t, order));
    for (int k = 0; k < TOPO_MAX_HOSTS; k++) assert_int_equal(order[k], (5 * k) % TOPO_MAX_HOSTS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ring),
        cmocka_unit_test(test_bad_json),
        cmocka_unit_test(test_ring_search_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
