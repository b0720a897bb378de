/* jaccl-config: probes hosts over ssh, finds the links between them, checks that they form a
 * mesh or a ring, and writes a hostfile for jaccl-launch (MLX's format plus "tcp"). */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hostfile.h"
#include "remote.h"
#include "topo.h"

#define PROG "jaccl-config"
#define MARK "@@jaccl-config@@\n"

/* What runs on every host; the markers split its output. */
static const char probe_script[] = "ip -j addr show || exit 3; echo '@@jaccl-config@@'; "
                                   "rdma -j link show 2>/dev/null; echo; echo '@@jaccl-config@@'; "
                                   "id -u";

struct opts {
    const char *hosts, *backend, *output, *ssh;
    char **env;
    int nenv;
    bool auto_setup, dot;
    int timeout_ms;
};

static void usage(FILE *f)
{
    fputs("Usage: " PROG " --hosts A,B,... [--backend mesh|ring] [--env K=V]... --output FILE\n"
          "                    [--auto-setup] [--dot] [--ssh CMD] [--timeout SEC]\n"
          "\n"
          "Checks that every host answers over ssh (BatchMode, within the timeout), reads\n"
          "its interfaces, IPv4 addresses and RDMA devices (ip -j addr, rdma -j link),\n"
          "finds the links between the hosts (a subnet that two hosts share is a cable;\n"
          "one that all share carries the coordinator), checks that the cables form a\n"
          "mesh (every pair) or a ring, and writes the hostfile for jaccl-launch. For a\n"
          "ring the hosts are written in ring order.\n"
          "\n"
          "  --hosts LIST    ssh destinations, comma separated\n"
          "  --backend B     mesh or ring (default: mesh if every pair has a cable, else\n"
          "                  ring)\n"
          "  --env K=V       add to the hostfile's \"envs\" (repeatable)\n"
          "  --output FILE   the hostfile to write\n"
          "  --auto-setup    run the setup commands (interfaces up, matching MTUs); without\n"
          "                  it they are only printed\n"
          "  --dot           print the links as a Graphviz graph on stdout\n"
          "  --ssh CMD       ssh command line (default: $JACCL_SSH, else ssh)\n"
          "  --timeout SEC   per host probe (default 15)\n"
          "\n"
          "On macOS hosts, run the printed commands with ifconfig (ifconfig IF up,\n"
          "ifconfig IF mtu M) instead; probing needs iproute2 there (ip).\n"
          "Exit status: 0 hostfile written, 1 a host or the topology failed, 2 usage.\n",
          f);
}

static int bad_usage(const char *msg, const char *arg)
{
    fprintf(stderr, PROG ": %s%s\nTry '" PROG " --help' for more information.\n", msg, arg);
    return 2;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    static const struct option lo[] = {
        {"hosts", required_argument, NULL, 'H'}, {"backend", required_argument, NULL, 'b'},
        {"env", required_argument, NULL, 'e'},   {"output", required_argument, NULL, 'o'},
        {"auto-setup", no_argument, NULL, 'a'},  {"dot", no_argument, NULL, 'd'},
        {"ssh", required_argument, NULL, 's'},   {"timeout", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0},
    };
    *o = (struct opts){.timeout_ms = 15000, .env = calloc((size_t)argc, sizeof(char *))};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
        switch (c) {
        case 'H':
            o->hosts = optarg;
            break;
        case 'b':
            if (strcmp(optarg, "mesh") && strcmp(optarg, "ring"))
                return bad_usage("--backend must be mesh or ring, not ", optarg);
            o->backend = optarg;
            break;
        case 'e':
            if (!hf_env_ok(optarg))
                return bad_usage("--env expects KEY=VALUE (KEY: letters, digits, _), not ", optarg);
            o->env[o->nenv++] = optarg;
            break;
        case 'o':
            o->output = optarg;
            break;
        case 'a':
            o->auto_setup = true;
            break;
        case 'd':
            o->dot = true;
            break;
        case 's':
            o->ssh = optarg;
            break;
        case 't': {
            char *end;
            double sec = strtod(optarg, &end);
            /* bounded before the conversion: (int) of 1e10 or nan is undefined */
            if (end == optarg || *end || !(sec >= 0.001 && sec <= 86400))
                return bad_usage("--timeout expects seconds (0.001 to 86400), not ", optarg);
            o->timeout_ms = (int)(sec * 1000);
            break;
        }
        case 'h':
            usage(stdout);
            return 0;
        case ':':
            return bad_usage("missing value for ", argv[optind - 1]);
        default:
            return bad_usage("unknown option ", argv[optind - 1]);
        }
    }
    if (optind < argc) return bad_usage("unexpected argument ", argv[optind]);
    if (!o->hosts) return bad_usage("--hosts is required", "");
    if (!o->output && !o->dot) return bad_usage("--output FILE is required", "");
    if (!o->ssh) o->ssh = getenv("JACCL_SSH");
    if (!o->ssh || !*o->ssh) o->ssh = "ssh";
    return -1;
}

/* ------------------------------------------------------------------ probing */

/* Runs cmd on host (directly when it is this machine); returns rm_capture's status. */
static int run_on(const struct opts *o, const struct topo_host *h, const char *cmd, char **out,
                  char **err)
{
    char *local[] = {"/bin/sh", "-c", (char *)cmd, NULL};
    char **argv = h->local ? NULL : rm_ssh_argv(o->ssh, h->name, cmd);
    int rc = rm_capture(h->local ? local : argv, o->timeout_ms, out, err);
    free(argv);
    return rc;
}

/* The last non-empty line of s (ssh's error), in place. */
static const char *last_line(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r')) s[--n] = '\0';
    char *nl = strrchr(s, '\n');
    return nl ? nl + 1 : s;
}

static int probe_fail(const struct topo_host *h, int rc, char *err, const struct opts *o)
{
    if (rc == -2)
        fprintf(stderr, "unreachable: no answer within %d s\n", o->timeout_ms / 1000);
    else if (rc == 255)
        fprintf(stderr, "unreachable: %s (ssh -o BatchMode=yes %s)\n", last_line(err), h->name);
    else if (rc == 3 || rc == 127)
        fprintf(stderr, "cannot run 'ip -j addr' there (%s): install iproute2\n", last_line(err));
    else if (rc == -3)
        fprintf(stderr, "unexpected probe output (%s)\n", last_line(err));
    else
        fprintf(stderr, "probe failed with status %d: %s\n", rc, last_line(err));
    return -1;
}

struct probing {
    const struct opts *o;
    struct topo *t;
    int failed;
};

/* One host's probe output, as soon as it is in: progress line, then its interfaces. */
static void probed(int i, int rc, char *out, char *err, void *arg)
{
    struct probing *pr = arg;
    struct topo_host *h = &pr->t->hosts[i];
    char msg[512];
    char *m1 = out ? strstr(out, MARK) : NULL, *m2 = m1 ? strstr(m1 + 1, MARK) : NULL;
    fprintf(stderr, PROG ": [%d/%d] %s: ", i + 1, pr->t->n, h->name);
    if (rc != 0 || !m2) {
        probe_fail(h, rc == 0 ? -3 : rc, err ? err : "", pr->o);
    } else {
        *m1 = *m2 = '\0';
        h->root = atoi(m2 + strlen(MARK)) == 0;
        if (topo_parse_host(h, out, m1 + strlen(MARK), msg, sizeof msg) != 0) {
            fprintf(stderr, "%s\n", msg);
        } else {
            int ndev = 0;
            for (int k = 0; k < h->nifs; k++) ndev += h->ifs[k].rdma[0] != '\0';
            fprintf(stderr, "ok: %d interface(s) with IPv4 addresses, %d RDMA device(s)%s\n",
                    h->nifs, ndev, h->local ? " (this machine)" : "");
            h->ok = true;
        }
    }
    pr->failed += !h->ok;
    free(out);
    free(err);
}

/* All hosts at once (an unreachable one costs its timeout once, not per host). */
static int probe_all(const struct opts *o, struct topo *t)
{
    struct probing pr = {o, t, 0};
    char *local[] = {"/bin/sh", "-c", (char *)probe_script, NULL};
    char *bad_ssh[] = {"/bin/sh", "-c", "echo 'cannot use that ssh command' >&2; exit 255", NULL};
    char ***argvs = calloc((size_t)t->n, sizeof *argvs);
    for (int i = 0; argvs && i < t->n; i++) {
        t->hosts[i].local = rm_is_local(t->hosts[i].name);
        argvs[i] = t->hosts[i].local ? local : rm_ssh_argv(o->ssh, t->hosts[i].name, probe_script);
        if (!argvs[i]) argvs[i] = bad_ssh; /* an empty --ssh, or no memory */
    }
    if (argvs) rm_capture_all((char **const *)argvs, t->n, o->timeout_ms, probed, &pr);
    for (int i = 0; argvs && i < t->n; i++)
        if (argvs[i] != local && argvs[i] != bad_ssh) free(argvs[i]);
    if (!argvs) pr.failed = t->n;
    free(argvs);
    if (pr.failed)
        fprintf(stderr, PROG ": %d of %d host(s) failed; no hostfile written\n", pr.failed, t->n);
    return pr.failed ? -1 : 0;
}

/* ------------------------------------------------------------------ topology */

static const char *ip_str(uint32_t a, char *buf)
{
    struct in_addr in = {.s_addr = htonl(a)};
    return inet_ntop(AF_INET, &in, buf, INET_ADDRSTRLEN);
}

/* mesh: every pair cabled (or no cables at all: one switched network carries everything);
 * ring: a cycle along cables, written into order. Returns the backend, NULL on failure. */
static const char *check_topology(const struct opts *o, const struct topo *t, int *order)
{
    for (int i = 0; i < t->n; i++) order[i] = i;
    if (t->ncables == 0) {
        if (t->shared_prefix < 0) {
            fprintf(stderr, PROG ": the hosts share no link and no network\n");
            return NULL;
        }
        fprintf(stderr, PROG ": no point-to-point links; every host is on one network, "
                             "which carries the whole job\n");
        return o->backend ? o->backend : "mesh";
    }
    int missing = 0;
    for (int i = 0; i < t->n; i++)
        for (int j = i + 1; j < t->n; j++) missing += topo_ncables(t, i, j) == 0;
    bool want_mesh = o->backend ? strcmp(o->backend, "mesh") == 0 : missing == 0;
    if (want_mesh && missing == 0) return "mesh";
    if (want_mesh) {
        fprintf(stderr, PROG ": not a mesh: %d pair(s) of hosts have no direct link:", missing);
        for (int i = 0; i < t->n; i++)
            for (int j = i + 1; j < t->n; j++)
                if (topo_ncables(t, i, j) == 0)
                    fprintf(stderr, " %s-%s", t->hosts[i].name, t->hosts[j].name);
        fprintf(stderr, "\n");
        return NULL;
    }
    if (topo_ring(t, order)) return "ring";
    fprintf(stderr, PROG ": the links form neither a mesh nor a ring (see --dot)\n");
    return NULL;
}

static void print_dot(const struct topo *t)
{
    char a[INET_ADDRSTRLEN], b[INET_ADDRSTRLEN];
    printf("graph jaccl {\n");
    for (int i = 0; i < t->n; i++) printf("  \"%s\";\n", t->hosts[i].name);
    for (int c = 0; c < t->ncables; c++) {
        const struct topo_cable *x = &t->cables[c];
        const struct topo_if *f = &t->hosts[x->host[0]].ifs[x->ifc[0]];
        const struct topo_if *g = &t->hosts[x->host[1]].ifs[x->ifc[1]];
        printf("  \"%s\" -- \"%s\" [label=\"%s %s%s%s - %s %s%s%s\"];\n", t->hosts[x->host[0]].name,
               t->hosts[x->host[1]].name, f->name, ip_str(x->addr[0], a), f->rdma[0] ? " " : "",
               f->rdma, g->name, ip_str(x->addr[1], b), g->rdma[0] ? " " : "", g->rdma);
    }
    printf("}\n");
}

/* ------------------------------------------------------------------ setup */

/* Commands for host h: cable interfaces up; both ends of a cable at the smaller MTU. */
static int setup_commands(const struct topo *t, int h, char *buf, size_t len)
{
    size_t n = 0;
    const char *sudo = t->hosts[h].root ? "" : "sudo -n ";
    for (int c = 0; c < t->ncables; c++) {
        const struct topo_cable *x = &t->cables[c];
        for (int s = 0; s < 2; s++) {
            if (x->host[s] != h) continue;
            const struct topo_if *f = &t->hosts[h].ifs[x->ifc[s]];
            const struct topo_if *g = &t->hosts[x->host[1 - s]].ifs[x->ifc[1 - s]];
            if (!f->up && n < len)
                n += (size_t)snprintf(buf + n, len - n, "%sip link set dev %s up\n", sudo, f->name);
            if (g->mtu > 0 && f->mtu > g->mtu && n < len)
                n += (size_t)snprintf(buf + n, len - n, "%sip link set dev %s mtu %d\n", sudo,
                                      f->name, g->mtu);
        }
    }
    return n < len ? (int)n : -1;
}

static int setup(const struct opts *o, struct topo *t)
{
    int failed = 0, any = 0;
    for (int h = 0; h < t->n; h++) {
        char cmds[4096], *out, *err;
        int len = setup_commands(t, h, cmds, sizeof cmds);
        if (len < 0) {
            fprintf(stderr,
                    PROG ": %s: too many setup commands to list; bring its cable "
                         "interfaces up and match their MTUs by hand\n",
                    t->hosts[h].name);
            failed++;
            continue;
        }
        if (len == 0) continue;
        any = 1;
        fprintf(stderr, PROG ": %s %s:\n%s", o->auto_setup ? "setting up" : "would run on",
                t->hosts[h].name, cmds);
        if (!o->auto_setup) continue;
        int rc = run_on(o, &t->hosts[h], cmds, &out, &err);
        if (rc != 0) {
            fprintf(stderr, PROG ": %s: setup failed (status %d): %s\n", t->hosts[h].name, rc,
                    last_line(err));
            failed++;
        }
        free(out);
        free(err);
    }
    if (any && !o->auto_setup)
        fprintf(stderr, PROG ": not run; run them on those hosts, or pass --auto-setup\n");
    return failed ? -1 : 0;
}

/* ------------------------------------------------------------------ hostfile */

/* Cell j of host i's row: null, one item, or a list (one per cable, in subnet order, so
 * the k-th item on both sides is the same cable). rdma: device names, else addresses. */
static json_t *cell(const struct topo *t, int i, int j, bool rdma)
{
    json_t *items = json_array();
    char a[INET_ADDRSTRLEN];
    for (int c = 0; c < t->ncables; c++) {
        const struct topo_cable *x = &t->cables[c];
        int s = x->host[0] == i && x->host[1] == j   ? 0
                : x->host[1] == i && x->host[0] == j ? 1
                                                     : -1;
        if (s < 0) continue;
        const char *v = rdma ? t->hosts[i].ifs[x->ifc[s]].rdma : ip_str(x->addr[s], a);
        json_array_append_new(items, *v ? json_string(v) : json_null());
    }
    size_t n = json_array_size(items);
    json_t *r = n == 0   ? json_null()
                : n == 1 ? json_incref(json_array_get(items, 0))
                         : json_incref(items);
    json_decref(items);
    return r;
}

static bool any_rdma(const struct topo *t)
{
    for (int c = 0; c < t->ncables; c++)
        for (int s = 0; s < 2; s++)
            if (t->hosts[t->cables[c].host[s]].ifs[t->cables[c].ifc[s]].rdma[0]) return true;
    return false;
}

static json_t *host_entry(const struct topo *t, const int *order, int k, bool rdma)
{
    int i = order[k];
    char a[INET_ADDRSTRLEN];
    uint32_t shared = topo_shared_addr(t, i);
    json_t *ips = json_array(), *tcp = json_array(), *dev = json_array();
    if (shared) json_array_append_new(ips, json_string(ip_str(shared, a)));
    for (int m = 0; m < t->n; m++) {
        json_array_append_new(tcp, cell(t, i, order[m], false));
        json_array_append_new(dev, cell(t, i, order[m], true));
    }
    json_t *h = json_pack("{s:s, s:o}", "ssh", t->hosts[i].name, "ips", ips);
    if (rdma)
        json_object_set_new(h, "rdma", dev);
    else
        json_decref(dev);
    if (t->ncables)
        json_object_set_new(h, "tcp", tcp);
    else
        json_decref(tcp);
    return h;
}

static int write_hostfile(const struct opts *o, const struct topo *t, const int *order,
                          const char *backend)
{
    bool rdma = any_rdma(t);
    json_t *envs = json_array(), *hosts = json_array();
    for (int i = 0; i < o->nenv; i++) json_array_append_new(envs, json_string(o->env[i]));
    for (int k = 0; k < t->n; k++) json_array_append_new(hosts, host_entry(t, order, k, rdma));
    /* With RDMA devices, MLX's names: the mesh or ring runs over them. */
    if (rdma) backend = strcmp(backend, "ring") == 0 ? "jaccl-ring" : "jaccl";
    json_t *root = json_pack("{s:s, s:o, s:o}", "backend", backend, "envs", envs, "hosts", hosts);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", o->output);
    int rc = json_dump_file(root, tmp, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (rc != 0 || rename(tmp, o->output) != 0) {
        fprintf(stderr, PROG ": cannot write %s: %s\n", o->output, strerror(errno));
        unlink(tmp);
        return -1;
    }
    fprintf(stderr, PROG ": wrote %s (%s, %d hosts%s); run: jaccl-launch --hostfile %s PROGRAM\n",
            o->output, backend, t->n, rdma ? ", RDMA" : "", o->output);
    return 0;
}

/* ------------------------------------------------------------------ main */

static int configure(const struct opts *o, struct topo *t)
{
    int order[TOPO_MAX_HOSTS];
    if (probe_all(o, t) != 0 || topo_links(t) != 0) return 1;
    if (t->shared_prefix < 0)
        fprintf(stderr, PROG ": warning: no network reaches every host; the coordinator is "
                             "then reached by the first host's ssh name\n");
    if (o->dot) print_dot(t);
    const char *backend = check_topology(o, t, order);
    if (!backend) return 1;
    if (setup(o, t) != 0) return 1;
    return o->output && write_hostfile(o, t, order, backend) != 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
    struct opts o;
    struct hostfile hf;
    char err[512];
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0) {
        free(o.env);
        return rc;
    }
    if (hf_from_list(o.hosts, &hf, err, sizeof err) != 0 || hf.nhosts > TOPO_MAX_HOSTS) {
        fprintf(stderr, PROG ": %s\n", hf.nhosts ? "too many hosts (at most 64)" : err);
        free(o.env);
        return 2;
    }
    struct topo t = {.n = (int)hf.nhosts, .hosts = calloc(hf.nhosts, sizeof(struct topo_host))};
    for (int i = 0; t.hosts && i < t.n; i++) t.hosts[i].name = hf.hosts[i].ssh;
    rc = t.hosts ? configure(&o, &t) : 1;
    topo_free(&t);
    free(t.hosts);
    hf_free(&hf);
    free(o.env);
    return rc;
}
