/* Job planning for jaccl-launch: everything decided before the first rank starts. */
#include "plan.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "remote.h"

#define PROG      "jaccl-launch"
#define MAX_RANKS 4096

/* A free TCP port on 127.0.0.1 for the coordinator (rank 0 binds it right away). */
static int free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static int random_bytes(void *buf, size_t n)
{
    for (size_t got = 0; got < n;) {
        ssize_t r = getrandom((char *)buf + got, n - got, 0);
        if (r < 0 && errno != EINTR) return -1;
        if (r > 0) got += (size_t)r;
    }
    return 0;
}

/* The value of K in the last "K=..." of env, or NULL. */
static const char *env_lookup(char **env, int n, const char *key)
{
    size_t kl = strlen(key);
    const char *v = NULL;
    for (int i = 0; i < n; i++)
        if (strncmp(env[i], key, kl) == 0 && env[i][kl] == '=') v = env[i] + kl + 1;
    return v;
}

/* --env first, then the launcher's environment, else 32 random bytes in hex. */
static int pick_key(struct plan *p, const struct plan_args *a)
{
    p->key = env_lookup(a->env, a->nenv, "JACCL_JOB_KEY");
    if (!p->key) p->key = getenv("JACCL_JOB_KEY");
    if (p->key && *p->key) return 0;
    unsigned char raw[32];
    if (random_bytes(raw, sizeof raw) != 0) {
        fprintf(stderr, PROG ": cannot make a job key: getrandom: %s\n", strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < sizeof raw; i++) snprintf(p->keybuf + 2 * i, 3, "%02x", raw[i]);
    p->key = p->keybuf;
    return 0;
}

struct backend {
    const char *name, *algo, *transport;
    bool devices; /* wants the device file */
};

static const struct backend backends[] = {
    {"mesh", "mesh", NULL, true},  {"ring", "ring", "tcp", false},
    {"tcp", NULL, "tcp", false},   {"rdma", NULL, "rdma", true},
    {"jaccl", "mesh", NULL, true}, {"jaccl-ring", "ring", NULL, true},
};

static const struct backend *find_backend(const char *name, const char *from)
{
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++)
        if (strcmp(backends[i].name, name) == 0) return &backends[i];
    if (strcmp(name, "mpi") == 0 || strcmp(name, "nccl") == 0)
        fprintf(stderr, PROG ": %s: backend '%s' is not jaccl's; start such jobs with mpirun\n",
                from, name);
    else
        fprintf(stderr,
                PROG ": %s: unknown backend '%s' (mesh, ring, tcp, rdma; MLX's jaccl, "
                     "jaccl-ring, ring)\n",
                from, name);
    return NULL;
}

/* Backend variables, then the hostfile's envs, then --env (later ones win). */
static int make_env(struct plan *p, const struct plan_args *a)
{
    const char *name = a->backend ? a->backend : p->hf.backend;
    const struct backend *b = NULL;
    if (name && !(b = find_backend(name, a->backend ? "--backend" : a->hostfile))) return -1;
    p->env = calloc((size_t)a->nenv + p->hf.nenvs + 2, sizeof *p->env);
    if (!p->env) return -1;
    if (b && b->algo)
        p->env[p->nenv++] =
            (char *)(strcmp(b->algo, "mesh") ? "JACCL_ALGO=ring" : "JACCL_ALGO=mesh");
    if (b && b->transport)
        p->env[p->nenv++] =
            (char *)(strcmp(b->transport, "tcp") ? "JACCL_TRANSPORT=rdma" : "JACCL_TRANSPORT=tcp");
    for (size_t i = 0; i < p->hf.nenvs; i++) p->env[p->nenv++] = p->hf.envs[i];
    for (int i = 0; i < a->nenv; i++) p->env[p->nenv++] = a->env[i];
    if (b && !b->devices) return 0;
    char err[512];
    if (hf_devices_json(&p->hf, a->hostfile ? a->hostfile : "--hosts", &p->devices, err,
                        sizeof err) != 0) {
        fprintf(stderr, PROG ": %s\n", err);
        return -1;
    }
    if (b && strcmp(b->name, "rdma") == 0 && !p->devices) {
        fprintf(stderr, PROG ": backend rdma needs the hosts' \"rdma\" rows in the hostfile\n");
        return -1;
    }
    return 0;
}

static int place_ranks(struct plan *p)
{
    p->n = 0;
    for (size_t h = 0; h < p->hf.nhosts; h++) {
        p->n += p->hf.hosts[h].slots; /* slots <= 1024: no overflow before the check */
        if (p->n > MAX_RANKS) {
            fprintf(stderr, PROG ": more than %d ranks in the hostfile\n", MAX_RANKS);
            return -1;
        }
    }
    p->host = calloc((size_t)p->n, sizeof *p->host);
    p->remote = calloc((size_t)p->n, sizeof *p->remote);
    if (!p->host || !p->remote) return -1;
    int r = 0;
    for (size_t h = 0; h < p->hf.nhosts; h++) {
        bool remote = !rm_is_local(p->hf.hosts[h].ssh);
        for (int s = 0; s < p->hf.hosts[h].slots; s++, r++) {
            p->host[r] = (int)h;
            p->remote[r] = remote;
        }
    }
    return 0;
}

static bool any_remote(const struct plan *p)
{
    for (int r = 0; r < p->n; r++)
        if (p->remote[r]) return true;
    return false;
}

/* The first host's first ip (its ssh name without one); 127.0.0.1 when all is local. */
static int make_coord(struct plan *p, int port)
{
    const struct hf_host *h0 = p->hf.nhosts ? &p->hf.hosts[0] : NULL;
    const char *host = "127.0.0.1";
    if (h0 && any_remote(p)) {
        host = h0->nips ? h0->ips[0] : rm_hostpart(h0->ssh);
        if (!h0->nips && !p->remote[0]) {
            fprintf(stderr,
                    PROG ": hosts[0] (%s) is this machine and has no \"ips\": give it an "
                         "address the other hosts reach, or put a remote host first\n",
                    h0->ssh);
            return -1;
        }
    }
    if (!port && (p->n == 0 || !p->remote[0])) port = free_port();
    if (!port) {
        unsigned short r;
        if (random_bytes(&r, sizeof r) != 0) return -1;
        port = 20000 + r % 20000;
    }
    if (port < 0) {
        fprintf(stderr, PROG ": cannot find a free port: %s\n", strerror(errno));
        return -1;
    }
    const char *fmt = strchr(host, ':') ? "[%s]:%d" : "%s:%d";
    snprintf(p->coord, sizeof p->coord, fmt, host, port);
    return 0;
}

static int load_hosts(struct plan *p, const struct plan_args *a)
{
    char err[1024];
    int rc = a->hostfile ? hf_load(a->hostfile, &p->hf, err, sizeof err)
                         : hf_from_list(a->hosts, &p->hf, err, sizeof err);
    if (rc != 0) fprintf(stderr, PROG ": %s\n", err);
    return rc;
}

int plan_make(struct plan *p, const struct plan_args *a)
{
    memset(p, 0, sizeof *p);
    p->argv = a->argv;
    p->ssh = a->ssh ? a->ssh : getenv("JACCL_SSH");
    if (!p->ssh || !*p->ssh) p->ssh = "ssh";
    if (a->n > 0) {
        p->n = a->n;
        if (!(p->host = calloc((size_t)p->n, sizeof *p->host)) ||
            !(p->remote = calloc((size_t)p->n, sizeof *p->remote)))
            return -1;
        for (int r = 0; r < p->n; r++) p->host[r] = -1;
    } else if (load_hosts(p, a) != 0 || place_ranks(p) != 0) {
        return -1;
    }
    p->cwd_strict = a->cwd != NULL;
    if (a->cwd)
        snprintf(p->cwd, sizeof p->cwd, "%s", a->cwd);
    else if (!getcwd(p->cwd, sizeof p->cwd))
        p->cwd[0] = '\0';
    if (a->n > 0 && !a->cwd) p->cwd[0] = '\0'; /* local ranks: stay where we are */
    if (make_env(p, a) != 0 || pick_key(p, a) != 0) return -1;
    return make_coord(p, a->port);
}

/* "K=V" strings for the wrapper: rank, size, coordinator, then the job's env. */
char **plan_ssh_argv(const struct plan *p, int rank, char **cmd)
{
    char rk[32], sz[32], co[320];
    snprintf(rk, sizeof rk, "JACCL_RANK=%d", rank);
    snprintf(sz, sizeof sz, "JACCL_SIZE=%d", p->n);
    snprintf(co, sizeof co, "JACCL_COORDINATOR=%s", p->coord);
    char **env = calloc((size_t)p->nenv + 3, sizeof *env);
    if (!env) return NULL;
    env[0] = rk;
    env[1] = sz;
    env[2] = co;
    for (int i = 0; i < p->nenv; i++) env[3 + i] = p->env[i];
    struct rm_spec spec = {.cwd = p->cwd,
                           .cwd_strict = p->cwd_strict,
                           .devices = p->devices,
                           .env = env,
                           .nenv = (size_t)p->nenv + 3,
                           .argv = p->argv};
    *cmd = rm_command(&spec);
    free(env);
    if (!*cmd) return NULL;
    char **argv = rm_ssh_argv(p->ssh, p->hf.hosts[p->host[rank]].ssh, *cmd);
    if (!argv) {
        free(*cmd);
        *cmd = NULL;
    }
    return argv;
}

static void print_quoted(FILE *f, const char *s)
{
    if (*s &&
        strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+=/.,:@%[]") ==
            strlen(s)) {
        fputs(s, f);
        return;
    }
    char *q = rm_quote(s);
    fputs(q ? q : s, f);
    free(q);
}

void plan_print(const struct plan *p, FILE *f)
{
    fprintf(f, "# %d rank(s), coordinator %s%s%s\n", p->n, p->coord,
            p->devices ? ", JACCL_IBV_DEVICES " : "", p->devices ? p->devices : "");
    for (int r = 0; r < p->n; r++) {
        const char *host = p->host[r] >= 0 ? p->hf.hosts[p->host[r]].ssh : "localhost";
        fprintf(f, "rank %d on %s", r, host);
        if (p->remote[r]) {
            char **argv = rm_ssh_argv(p->ssh, host, "");
            fputs(" via", f);
            for (int i = 0; argv && argv[i + 1]; i++) fprintf(f, " %s", argv[i]);
            free(argv);
        }
        fputs(":", f);
        if (p->cwd[0]) fprintf(f, " cd %s;", p->cwd);
        fprintf(f, " JACCL_RANK=%d JACCL_SIZE=%d JACCL_COORDINATOR=%s JACCL_JOB_KEY=(%s)", r, p->n,
                p->coord, p->key == p->keybuf ? "random" : "set");
        for (int i = 0; i < p->nenv; i++) {
            fputc(' ', f);
            print_quoted(f, p->env[i]);
        }
        for (int i = 0; p->argv[i]; i++) {
            fputc(' ', f);
            print_quoted(f, p->argv[i]);
        }
        fputc('\n', f);
    }
}

void plan_free(struct plan *p)
{
    free(p->host);
    free(p->remote);
    free(p->env);
    free(p->devices);
    hf_free(&p->hf);
}
