/*
 * Strangers against a real job: a stranger process connects to the
 * coordinator and to every rank's listening port while the job initialises
 * and while it runs, and sends nothing, random bytes, or a valid-looking
 * handshake with the wrong key (or the right hello and a wrong proof).  The
 * job must complete with verified results; every handshaking stranger must
 * be dropped.  A rank with the wrong key, or with a key on one side only,
 * cannot join, and both sides say what failed.
 *
 * Windows: ranks other than 0 start only once the stranger's connections to
 * the coordinator are in place; in the rank-port cases, an all-gather
 * callback holds every rank (listener open) until the stranger's
 * connections to every rank's port are in place.  Ports are found the way
 * an outsider would: the LISTEN sockets in /proc/net/tcp owned by the ranks.
 *
 * The stranger builds its handshakes from the byte layout documented in
 * src/util/handshake.h (not from the library's code), and checks the
 * acceptor's MAC under the real key: an independent check of the format.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define KEY           "6a616363c1206a6f62206b657920666f722074657374733a2073656372657421"
#define WRONGKEY      "00000000000000000000000000000000000000000000000000000000000000ff"
#define BS_MAGIC      0x4a424f4fu /* "JBOO", version 2: the coordinator */
#define TCP_MAGIC     0x4a43434cu /* "JCCL", version 2: a rank's link listener */
#define PROTO_VERSION 2
#define MAX_CONNS     256
#define ITERS         200

/* ---- the stranger ---- */

enum kind { SILENT, SCAN, JUNK, WRONG_KEY, BAD_PROOF, UNKEYED, KEYED_VS_NONE, NKINDS };
static const char *const kind_names[NKINDS] = {"silent",
                                               "scan",
                                               "random bytes",
                                               "wrong key",
                                               "right hello, wrong proof",
                                               "hello without key",
                                               "hello with a key"};

struct conn {
    int fd, kind, coord;
    uint8_t hello[64];
    size_t hello_len;
};

struct stats {
    int tried[2][NKINDS];    /* [coordinator?][kind] connections made */
    int dropped[2][NKINDS];  /* handshakes the job closed on us */
    int answered[2][NKINDS]; /* handshakes that got a challenge (a top rank serves none) */
    int refused_status;      /* refusals with the status we expected */
    int format_ok;           /* challenges whose MAC verified under the real key */
    int refused_connects;    /* connection attempts after the listeners closed */
};

struct ctx {
    char dir[256];
    int port;
    int np;
    int keyed;        /* the job has JACCL_JOB_KEY */
    int hold_ranks;   /* rank-port case: the callback holds every rank */
    int coord_rounds; /* attack rounds on the coordinator */
};

static uint64_t rng_state;

static uint64_t rnd(void)
{
    rng_state = mp_mix(rng_state);
    return rng_state;
}

static void put32(uint8_t *b, uint32_t v)
{
    b[0] = (uint8_t)(v >> 24);
    b[1] = (uint8_t)(v >> 16);
    b[2] = (uint8_t)(v >> 8);
    b[3] = (uint8_t)v;
}

static int connect_port(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) return fd;
    if (fd >= 0) close(fd);
    return -1;
}

static int hex_key(const char *hex, uint8_t *out)
{
    size_t n = strlen(hex) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
    return (int)n;
}

static void mac(const char *keyhex, const char *label, const uint8_t *a, size_t al,
                const uint8_t *b, size_t bl, uint8_t out[32])
{
    uint8_t key[64], msg[256];
    int kl = hex_key(keyhex, key);
    size_t ll = strlen(label);
    unsigned ol = 32;
    memcpy(msg, label, ll);
    memcpy(msg + ll, a, al);
    memcpy(msg + ll + al, b, bl);
    HMAC(EVP_sha256(), key, kl, msg, ll + al + bl, out, &ol);
}

/* HELLO: magic, version, flags, body, nonce (src/util/handshake.h). */
static void make_hello(struct conn *c, int keyed, int np)
{
    uint8_t *h = c->hello;
    put32(h, c->coord ? BS_MAGIC : TCP_MAGIC);
    h[4] = 0;
    h[5] = PROTO_VERSION;
    h[6] = 0;
    h[7] = keyed ? 1 : 0;
    size_t body = c->coord ? 8 : 20;
    memset(h + 8, 0, body);
    if (c->coord) { /* "I am rank 1 of this job": the slot a stranger must not take */
        put32(h + 8, 1);
        put32(h + 12, (uint32_t)np);
    } else { /* from the top rank to rank 0, link 0, some job id */
        put32(h + 8, (uint32_t)np - 1);
        put32(h + 20, (uint32_t)rnd());
    }
    for (size_t i = 0; i < 16; i++) h[8 + body + i] = (uint8_t)rnd();
    c->hello_len = 8 + body + 16;
}

/* Open one stranger connection of a kind and send its first bytes; -1 if refused. */
static int open_stranger(struct conn *c, int port, int coord, int kind, const struct ctx *x)
{
    uint8_t junk[512];
    c->fd = connect_port(port);
    c->kind = kind;
    c->coord = coord;
    if (c->fd < 0) return -1;
    if (kind == SCAN) {
        close(c->fd);
        c->fd = -1;
        return 0;
    }
    if (kind == JUNK) {
        size_t n = 64 + rnd() % 400;
        for (size_t i = 0; i < n; i++) junk[i] = (uint8_t)rnd();
        if (rnd() % 2) memcpy(junk, coord ? "JBOO" : "JCCL", 4); /* a plausible start */
        return send(c->fd, junk, n, MSG_NOSIGNAL) < 0 ? -1 : 0;
    }
    if (kind == SILENT) return 0;
    make_hello(c, kind != UNKEYED, x->np);
    return send(c->fd, c->hello, c->hello_len, MSG_NOSIGNAL) < 0 ? -1 : 0;
}

/* Read exactly n bytes, or up to EOF, within ms; bytes read. */
static size_t read_for(int fd, uint8_t *buf, size_t n, int ms)
{
    size_t got = 0;
    double end = mp_now() + ms / 1000.0;
    while (got < n && mp_now() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0) continue;
        ssize_t r = recv(fd, buf + got, n - got, 0);
        if (r <= 0) break;
        got += (size_t)r;
    }
    return got;
}

/* 1 when the job closed the connection within ms. */
static int closed_by_peer(int fd, int ms)
{
    uint8_t b[64];
    double end = mp_now() + ms / 1000.0;
    while (mp_now() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0) continue;
        ssize_t r = recv(fd, b, sizeof(b), 0);
        if (r == 0 || (r < 0 && errno == ECONNRESET)) return 1;
        if (r < 0) return 0;
    }
    return 0;
}

/* Finish a handshaking stranger: check the challenge, send a bad proof, see it dropped. */
static void finish_handshake(struct conn *c, struct stats *st)
{
    uint8_t ch[56], proof[32], want[32];
    size_t got = read_for(c->fd, ch, sizeof(ch), 15000);
    int ci = c->coord;
    st->answered[ci][c->kind] += got == sizeof(ch);
    if (c->kind == UNKEYED || c->kind == KEYED_VS_NONE) { /* a key on one side only */
        int expect = c->kind == UNKEYED ? 1 : 2;
        if (got == sizeof(ch) && ch[6] == 0 && ch[7] == expect) st->refused_status++;
        st->dropped[ci][c->kind] += closed_by_peer(c->fd, 10000);
        return;
    }
    if (got != sizeof(ch)) {
        st->dropped[ci][c->kind] += got == 0 && closed_by_peer(c->fd, 10);
        return;
    }
    mac(KEY, "jaccl accept", c->hello, c->hello_len, ch, 24, want);
    st->format_ok += memcmp(want, ch + 24, 32) == 0;
    if (c->kind == WRONG_KEY)
        mac(WRONGKEY, "jaccl connect", c->hello, c->hello_len, ch, 56, proof);
    else
        for (int i = 0; i < 32; i++) proof[i] = (uint8_t)rnd();
    send(c->fd, proof, sizeof(proof), MSG_NOSIGNAL);
    st->dropped[ci][c->kind] += closed_by_peer(c->fd, 10000);
}

/* The LISTEN ports on 127.0.0.1 owned by processes with parent ppid (but us). */
static int sibling_ports(pid_t ppid, int *ports, int max)
{
    unsigned long inodes[256];
    int ni = 0, np = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char path[300], line[512], link[64];
        int pid = atoi(e->d_name), pp = -1;
        if (pid <= 0 || pid == getpid()) continue;
        snprintf(path, sizeof(path), "/proc/%d/stat", pid);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        if (fgets(line, sizeof(line), f)) {
            char *rp = strrchr(line, ')');
            if (rp) sscanf(rp + 2, "%*c %d", &pp);
        }
        fclose(f);
        if (pp != ppid) continue;
        snprintf(path, sizeof(path), "/proc/%d/fd", pid);
        DIR *fd = opendir(path);
        struct dirent *fe;
        while (fd && (fe = readdir(fd))) {
            char p2[600];
            snprintf(p2, sizeof(p2), "%s/%s", path, fe->d_name);
            ssize_t n = readlink(p2, link, sizeof(link) - 1);
            if (n <= 0) continue;
            link[n] = '\0';
            if (ni < 256 && sscanf(link, "socket:[%lu]", &inodes[ni]) == 1) ni++;
        }
        if (fd) closedir(fd);
    }
    if (d) closedir(d);
    FILE *f = fopen("/proc/net/tcp", "r");
    char line[512];
    while (f && fgets(line, sizeof(line), f)) {
        unsigned ip, port, state;
        unsigned long inode;
        if (sscanf(line, " %*d: %x:%x %*x:%*x %x %*x:%*x %*x:%*x %*x %*d %*d %lu", &ip, &port,
                   &state, &inode) != 4 ||
            state != 0x0A)
            continue;
        for (int i = 0; i < ni && np < max; i++)
            if (inodes[i] == inode) ports[np++] = (int)port;
    }
    if (f) fclose(f);
    return np;
}

static void touch(const struct ctx *x, const char *name)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/%s", x->dir, name);
    close(open(path, O_WRONLY | O_CREAT, 0600));
}

static void save_stats(const struct ctx *x, const struct stats *st)
{
    char path[400], tmp[400];
    snprintf(path, sizeof(path), "%s/stats", x->dir);
    snprintf(tmp, sizeof(tmp), "%s/stats.tmp", x->dir);
    FILE *f = fopen(tmp, "w");
    if (!f) return;
    fwrite(st, sizeof(*st), 1, f);
    fclose(f);
    rename(tmp, path);
}

/* One volley at a port: every kind, silent ones several times. */
static int volley(struct conn *c, int n, int port, int coord, int silent, const struct ctx *x,
                  struct stats *st)
{
    int kinds[] = {SCAN, JUNK, JUNK, WRONG_KEY, BAD_PROOF, x->keyed ? UNKEYED : KEYED_VS_NONE};
    for (int i = 0; i < silent && n < MAX_CONNS; i++)
        if (open_stranger(&c[n], port, coord, SILENT, x) == 0) st->tried[coord][c[n++].kind]++;
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]) && n < MAX_CONNS; i++) {
        int k = kinds[i];
        if (!x->keyed && (k == WRONG_KEY || k == BAD_PROOF)) k = JUNK;
        if (open_stranger(&c[n], port, coord, k, x) == 0) {
            st->tried[coord][k]++;
            if (c[n].fd >= 0) n++;
        } else {
            st->refused_connects++;
        }
    }
    return n;
}

static void finish_all(struct conn *c, int n, struct stats *st)
{
    for (int i = 0; i < n; i++)
        if (c[i].kind != SILENT && c[i].kind != JUNK) finish_handshake(&c[i], st);
}

static void stranger_main(const struct ctx *x, pid_t parent)
{
    static struct conn c[MAX_CONNS];
    struct stats st = {0};
    int n = 0, seen[64], nseen = 0;
    rng_state = (uint64_t)getpid() * 7919u + (uint64_t)time(NULL);
    double end = mp_now() + (x->hold_ranks ? 0 : 20);
    while (mp_now() < end) { /* the coordinator comes up with rank 0 */
        int fd = connect_port(x->port);
        if (fd >= 0) {
            close(fd);
            break;
        }
        usleep(5000);
    }
    for (int r = 0; r < x->coord_rounds && !x->hold_ranks; r++)
        n = volley(c, n, x->port, 1, 12, x, &st);
    save_stats(x, &st);
    touch(x, "coord.ready");
    /* Rank ports: attack each as it appears, until the parent stops us. */
    end = mp_now() + 60;
    while (mp_now() < end) {
        int ports[64], k = sibling_ports(parent, ports, 64), fresh = 0;
        for (int i = 0; i < k; i++) {
            int known = ports[i] == x->port;
            for (int j = 0; j < nseen; j++) known |= seen[j] == ports[i];
            if (known || nseen == 64) continue;
            seen[nseen++] = ports[i];
            if (getenv("SEC_VERBOSE")) fprintf(stderr, "[stranger] attacking port %d\n", ports[i]);
            n = volley(c, n, ports[i], 0, 4, x, &st);
            fresh = 1;
        }
        int all_seen = nseen >= x->np;
        if (x->hold_ranks && all_seen) touch(x, "ranks.ready");
        if (fresh) save_stats(x, &st);
        /* Held ranks answer only once released: finish handshakes after that. */
        if (n > 0 && (all_seen || !x->hold_ranks)) {
            finish_all(c, n, &st);
            for (int i = 0; i < n; i++)
                if (c[i].fd >= 0) close(c[i].fd);
            n = 0;
            save_stats(x, &st);
        }
        /* While the job runs: knock on the coordinator again (its listener is closed). */
        int fd = connect_port(x->port);
        if (fd >= 0) {
            st.tried[1][SCAN]++;
            close(fd);
        } else {
            st.refused_connects++;
        }
        save_stats(x, &st);
        usleep(1000);
    }
    _exit(0);
}

/* ---- the ranks ---- */

static int wait_file(const struct ctx *x, const char *name, double timeout_s)
{
    char path[400];
    struct stat sb;
    snprintf(path, sizeof(path), "%s/%s", x->dir, name);
    double end = mp_now() + timeout_s;
    while (stat(path, &sb) != 0) {
        if (mp_now() > end) return -1;
        usleep(2000);
    }
    return 0;
}

/* Run collectives while the stranger keeps knocking; every result verified. */
static int workload(jaccl_comm_t comm)
{
    int rank = jaccl_comm_rank(comm), n = jaccl_comm_size(comm);
    int64_t v[1024], got[1024 * 4];
    for (int it = 0; it < ITERS; it++) {
        for (int i = 0; i < 1024; i++) v[i] = (int64_t)it * 1000003 + i * (rank + 1);
        MP_OK(comm, jaccl_allreduce(v, v, 1024, JACCL_INT64, JACCL_SUM, comm));
        for (int i = 0; i < 1024; i++) {
            int64_t want = (int64_t)n * it * 1000003 + (int64_t)i * n * (n + 1) / 2;
            MP_CHECK(v[i] == want, "iteration %d: allreduce[%d] = %lld, want %lld", it, i,
                     (long long)v[i], (long long)want);
        }
        for (int i = 0; i < 1024; i++) v[i] = (int64_t)rank << 32 | (uint32_t)(it + i);
        MP_OK(comm, jaccl_allgather(v, got, 1024, JACCL_INT64, comm));
        for (int r = 0; r < n; r++)
            for (int i = 0; i < 1024; i++)
                MP_CHECK(got[r * 1024 + i] == ((int64_t)r << 32 | (uint32_t)(it + i)),
                         "iteration %d: allgather block %d element %d wrong", it, r, i);
    }
    return 0;
}

/* The embedder's all-gather over files; holds every rank at the transport-address round. */
struct rdv {
    const struct ctx *x;
    int rank, size, round, held;
};

static jaccl_result_t file_allgather(const void *mine, void *all, size_t len, void *user)
{
    struct rdv *r = user;
    char path[400], tmp[400];
    int round = r->round++;
    snprintf(tmp, sizeof(tmp), "%s/.r%d.%d", r->x->dir, round, r->rank);
    snprintf(path, sizeof(path), "%s/r%d.%d", r->x->dir, round, r->rank);
    FILE *f = fopen(tmp, "w");
    if (!f || fwrite(mine, 1, len, f) != len || fclose(f) != 0 || rename(tmp, path) != 0)
        return JACCL_ERR_SYSTEM;
    for (int q = 0; q < r->size; q++) {
        snprintf(path, sizeof(path), "%s/r%d.%d", r->x->dir, round, q);
        double end = mp_now() + 20;
        while (!(f = fopen(path, "r"))) {
            if (mp_now() > end) return JACCL_ERR_TIMEOUT;
            usleep(1000);
        }
        size_t got = fread((char *)all + (size_t)q * len, 1, len, f);
        fclose(f);
        if (got != len) return JACCL_ERR_INTERNAL;
    }
    /* Transport addresses are the one large record: every listener is open now. */
    if (len >= 256 && !r->held && r->x->hold_ranks) {
        r->held = 1;
        if (wait_file(r->x, "ranks.ready", 20) != 0) return JACCL_ERR_TIMEOUT;
    }
    return JACCL_SUCCESS;
}

static int rank_main(void *arg)
{
    const struct ctx *x = arg;
    jaccl_comm_t comm = NULL;
    if (x->hold_ranks) {
        struct rdv r = {.x = x, .rank = mp_rank(), .size = mp_size()};
        jaccl_config_t cfg = JACCL_CONFIG_INIT;
        cfg.rank = r.rank;
        cfg.size = r.size;
        cfg.allgather = file_allgather;
        cfg.allgather_user = &r;
        cfg.listen_host = "127.0.0.1";
        MP_OK(NULL, jaccl_comm_init(&comm, &cfg));
    } else {
        if (mp_rank() > 0) MP_CHECK(wait_file(x, "coord.ready", 20) == 0, "no stranger");
        MP_OK(NULL, jaccl_comm_init_env(&comm));
    }
    int bad = workload(comm);
    jaccl_comm_destroy(comm);
    return bad;
}

/* ---- the parent ---- */

static int free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[600];
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2])))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    if (d) closedir(d);
    rmdir(dir);
}

static void print_stats(const char *name, const struct stats *st)
{
    printf("[sec] %s:", name);
    for (int w = 1; w >= 0; w--)
        for (int k = 0; k < NKINDS; k++)
            if (st->tried[w][k])
                printf(" %s/%s %d (dropped %d)", w ? "coord" : "rank", kind_names[k],
                       st->tried[w][k], st->dropped[w][k]);
    printf("; refused connects %d, MAC format checks %d, key-mode refusals %d\n",
           st->refused_connects, st->format_ok, st->refused_status);
}

/* Handshaking strangers (not silent, scan or junk) must all have been dropped. */
static void check_dropped(const struct stats *st, const struct ctx *x)
{
    int w = !x->hold_ranks, mode = x->keyed ? UNKEYED : KEYED_VS_NONE, hs = 0;
    for (int v = 0; v < 2; v++)
        for (int k = WRONG_KEY; k < NKINDS; k++)
            assert_int_equal(st->dropped[v][k], st->tried[v][k]);
    for (int k = WRONG_KEY; k < NKINDS; k++) hs += st->tried[w][k];
    assert_true(hs > 0); /* attacked while initialising: the coordinator, or every rank's port */
    if (x->hold_ranks) {
        assert_true(st->tried[0][SILENT] >= 4 * x->np);  /* every rank's port */
        assert_true(st->answered[0][mode] >= x->np - 1); /* all but the top rank serve */
    } else {
        assert_true(st->tried[1][SILENT] >= 12);
        for (int k = WRONG_KEY; k < NKINDS; k++)
            assert_int_equal(st->answered[1][k], st->tried[1][k]);
    }
    assert_int_equal(st->refused_status, st->answered[0][mode] + st->answered[1][mode]);
    if (x->keyed)
        assert_int_equal(st->format_ok, st->answered[0][WRONG_KEY] + st->answered[1][WRONG_KEY] +
                                            st->answered[0][BAD_PROOF] +
                                            st->answered[1][BAD_PROOF]);
}

static void run_strangers(const char *name, int np, int keyed, int hold_ranks)
{
    struct ctx x = {.np = np, .keyed = keyed, .hold_ranks = hold_ranks, .coord_rounds = 2};
    char coord[64];
    snprintf(x.dir, sizeof(x.dir), "/tmp/jaccl-sec-%d-XXXXXX", (int)getpid());
    assert_non_null(mkdtemp(x.dir));
    x.port = free_port();
    assert_true(x.port > 0);
    snprintf(coord, sizeof(coord), "JACCL_COORDINATOR=127.0.0.1:%d", x.port);
    const char *env[] = {"JACCL_RANK=@RANK@",
                         "JACCL_SIZE=@SIZE@",
                         coord,
                         "JACCL_TRANSPORT=tcp",
                         "JACCL_TIMEOUT=20",
                         keyed ? "JACCL_JOB_KEY=" KEY : "JACCL_JOB_KEY",
                         NULL};
    if (hold_ranks) touch(&x, "coord.ready");
    fflush(NULL);
    pid_t parent = getpid(), s = fork();
    assert_true(s >= 0);
    if (s == 0) stranger_main(&x, parent);
    int rc = mp_run_raw(np, env, rank_main, &x, 90);
    kill(s, SIGKILL);
    waitpid(s, NULL, 0);
    struct stats st = {0};
    char path[400];
    snprintf(path, sizeof(path), "%s/stats", x.dir);
    FILE *f = fopen(path, "r");
    if (f) {
        if (fread(&st, sizeof(st), 1, f) != 1) memset(&st, 0, sizeof(st));
        fclose(f);
    }
    rm_dir(x.dir);
    print_stats(name, &st);
    assert_int_equal(rc, 0);
    check_dropped(&st, &x);
}

static void test_coordinator_keyed(void **state)
{
    (void)state;
    run_strangers("coordinator, keyed, np=3", 3, 1, 0);
}

static void test_rank_ports_keyed(void **state)
{
    (void)state;
    run_strangers("rank ports, keyed, np=4", 4, 1, 1);
}

static void test_coordinator_unkeyed(void **state)
{
    (void)state;
    run_strangers("coordinator, no key, np=3", 3, 0, 0);
}

static void test_rank_ports_unkeyed(void **state)
{
    (void)state;
    run_strangers("rank ports, no key, np=3", 3, 0, 1);
}

/* ---- who cannot join ---- */

struct join_case {
    const char *want0, *want1; /* in rank 0's and rank 1's init error */
    jaccl_result_t rc0, rc1;
};

static int join_main(void *arg)
{
    const struct join_case *k = arg;
    const char *key = getenv(mp_rank() ? "SEC_KEY1" : "SEC_KEY0");
    jaccl_comm_t comm = NULL;
    if (key && *key)
        setenv("JACCL_JOB_KEY", key, 1);
    else
        unsetenv("JACCL_JOB_KEY");
    jaccl_result_t rc = jaccl_comm_init_env(&comm);
    const char *msg = jaccl_last_error(NULL), *want = mp_rank() ? k->want1 : k->want0;
    jaccl_result_t want_rc = mp_rank() ? k->rc1 : k->rc0;
    if (comm) jaccl_comm_destroy(comm);
    MP_CHECK(rc == want_rc, "init returned %s, want %s (%s)", jaccl_result_string(rc),
             jaccl_result_string(want_rc), msg);
    MP_CHECK(strstr(msg, want), "the error '%s' does not say '%s'", msg, want);
    MP_CHECK(!strstr(msg, KEY) && !strstr(msg, WRONGKEY), "the error shows a key: %s", msg);
    printf("[sec] rank %d: %s\n", mp_rank(), msg);
    return 0;
}

/* Rank r's key comes from SEC_KEY<r> (the harness passes one environment to all). */
static void run_join(const char *key0, const char *key1, const struct join_case *k)
{
    const char *env[] = {"JACCL_RANK=@RANK@",   "JACCL_SIZE=2",    "JACCL_COORDINATOR=@COORD@",
                         "JACCL_TRANSPORT=tcp", "JACCL_TIMEOUT=3", NULL};
    setenv("SEC_KEY0", key0, 1);
    setenv("SEC_KEY1", key1, 1);
    assert_int_equal(mp_run_raw(2, env, join_main, (void *)k, 30), 0);
    unsetenv("SEC_KEY0");
    unsetenv("SEC_KEY1");
}

static void test_wrong_key(void **state)
{
    (void)state;
    struct join_case k = {
        .want0 = "failed authentication (wrong JACCL_JOB_KEY?)",
        .want1 = "failed authentication: its proof does not match our JACCL_JOB_KEY",
        .rc0 = JACCL_ERR_TIMEOUT,
        .rc1 = JACCL_ERR_CONFIG,
    };
    run_join(KEY, WRONGKEY, &k);
}

static void test_key_only_on_rank0(void **state)
{
    (void)state;
    struct join_case k = {.want0 = "has no JACCL_JOB_KEY, but this job has one",
                          .want1 = "requires a JACCL_JOB_KEY and this process has none",
                          .rc0 = JACCL_ERR_TIMEOUT,
                          .rc1 = JACCL_ERR_CONFIG};
    run_join(KEY, "", &k);
}

static void test_key_only_on_rank1(void **state)
{
    (void)state;
    struct join_case k = {.want0 = "has a JACCL_JOB_KEY, but this job runs without one",
                          .want1 = "runs without a JACCL_JOB_KEY but this process has one",
                          .rc0 = JACCL_ERR_TIMEOUT,
                          .rc1 = JACCL_ERR_CONFIG};
    run_join("", KEY, &k);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (getenv("SEC_FILTER")) cmocka_set_test_filter(getenv("SEC_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_coordinator_keyed),   cmocka_unit_test(test_rank_ports_keyed),
        cmocka_unit_test(test_coordinator_unkeyed), cmocka_unit_test(test_rank_ports_unkeyed),
        cmocka_unit_test(test_wrong_key),           cmocka_unit_test(test_key_only_on_rank0),
        cmocka_unit_test(test_key_only_on_rank1),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
