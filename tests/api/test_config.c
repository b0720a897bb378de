/*
 * jaccl_comm_init with a jaccl_config_t, in processes without any JACCL_*
 * variable:
 *  - explicit rank, size and coordinator (and algorithm, timeout);
 *  - the embedder's all-gather callback instead of a coordinator: a real
 *    rendezvous through files in a temporary directory (each rank writes
 *    DIR/rN.rank atomically by rename, then polls for every rank's file
 *    until a deadline) -- with no coordinator anywhere;
 *  - a failing callback fails the init (without hanging or leaking);
 *  - explicit fields win over the environment;
 *  - errors: a wrong config.version (JACCL_ERR_INVALID_ARGUMENT), rank or
 *    size out of range (JACCL_ERR_CONFIG), bad coordinator, algorithm or
 *    transport strings, config.timeout_s honoured;
 *  - jaccl_version() is the header's JACCL_VERSION_MAJOR.MINOR.PATCH.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netdb.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common.h"

extern char **environ;

static char rdv_base[256]; /* made by the parent; the children inherit the name */

/* Unset every JACCL_* variable but the log level: the config alone must do. */
static int clean_env(void)
{
    char name[256];
    for (int again = 1; again;) {
        again = 0;
        for (char **e = environ; *e; e++) {
            size_t n = strcspn(*e, "=");
            if (strncmp(*e, "JACCL_", 6) != 0 || strncmp(*e, "JACCL_LOG_LEVEL=", 16) == 0 ||
                n >= sizeof(name))
                continue;
            memcpy(name, *e, n);
            name[n] = '\0';
            unsetenv(name);
            again = 1;
            break;
        }
    }
    for (char **e = environ; *e; e++)
        MP_CHECK(strncmp(*e, "JACCL_", 6) != 0 || strncmp(*e, "JACCL_LOG_LEVEL=", 16) == 0,
                 "%s is still set", *e);
    return 0;
}

/* The coordinator address the harness picked, passed as API_COORD (not a JACCL_ name). */
static const char *coord(void)
{
    static char buf[64];
    const char *v = getenv("API_COORD");
    snprintf(buf, sizeof(buf), "%s", v ? v : "");
    unsetenv("API_COORD");
    return buf;
}

/* rank + 1 summed, a broadcast and an all-gather: the communicator works. */
static int works(jaccl_comm_t c, int want_rank, int want_size)
{
    int n = jaccl_comm_size(c), me = jaccl_comm_rank(c);
    MP_CHECK(me == want_rank && n == want_size, "rank %d size %d, want %d and %d", me, n, want_rank,
             want_size);
    int64_t v[2] = {me + 1, 5};
    MP_OK(c, jaccl_allreduce(v, v, 2, JACCL_INT64, JACCL_SUM, c));
    MP_CHECK(v[0] == (int64_t)n * (n + 1) / 2 && v[1] == 5 * n, "allreduce %lld %lld",
             (long long)v[0], (long long)v[1]);
    char s[1000], r[1000 * API_MAXR];
    api_fill_bytes(s, sizeof(s), 77 + (uint64_t)me);
    MP_OK(c, jaccl_allgather(s, r, sizeof(s), JACCL_UINT8, c));
    for (int q = 0; q < n; q++)
        if (api_check_bytes(r + (size_t)q * sizeof(s), sizeof(s), 77 + (uint64_t)q, "allgather"))
            return 1;
    api_fill_bytes(s, sizeof(s), me == n - 1 ? 99 : 1);
    MP_OK(c, jaccl_broadcast(s, s, sizeof(s) / 4, JACCL_FLOAT32, n - 1, c));
    if (api_check_bytes(s, sizeof(s), 99, "broadcast")) return 1;
    jaccl_request_t q;
    MP_OK(c, jaccl_iallreduce(v, v, 1, JACCL_INT64, JACCL_MAX, c, &q));
    MP_OK(c, jaccl_wait(q));
    MP_OK(c, jaccl_barrier(c));
    api_count(1);
    return 0;
}

static int init_ok(jaccl_comm_t *c, const jaccl_config_t *cfg, const char *what)
{
    jaccl_result_t rc = jaccl_comm_init(c, cfg);
    MP_CHECK(rc == JACCL_SUCCESS, "%s: jaccl_comm_init returned %s: %s", what,
             jaccl_result_string(rc), jaccl_last_error(NULL));
    return 0;
}

/* ---- explicit rank, size and coordinator ---- */

static int explicit_config(void *arg)
{
    const char *algo = arg;
    const char *addr = coord();
    if (clean_env()) return 1;
    jaccl_config_t cfg = JACCL_CONFIG_INIT;
    cfg.rank = mp_rank();
    cfg.size = mp_size();
    cfg.coordinator = addr;
    cfg.algo = algo;
    cfg.timeout_s = 10;
    jaccl_comm_t c = NULL;
    if (init_ok(&c, &cfg, "explicit config") || works(c, mp_rank(), mp_size())) return 1;
    MP_OK(NULL, jaccl_comm_destroy(c));
    api_report(NULL, NULL);
    return 0;
}

/* ---- the embedder's all-gather: files in a directory ---- */

struct rdv {
    char dir[320];
    int rank, size, calls;
    int fail_at; /* >= 0: this call returns fail_rc */
    jaccl_result_t fail_rc;
    double timeout_s;
    size_t lens[16];
};

static int write_all(int fd, const void *p, size_t len)
{
    const char *b = p;
    while (len > 0) {
        ssize_t n = write(fd, b, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        b += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Read rank q's record of this round: 0 done, 1 not there yet, -1 broken. */
static int read_record(const char *path, void *out, size_t len)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return errno == ENOENT ? 1 : -1;
    uint64_t have = 0;
    ssize_t n = read(fd, &have, sizeof(have)), m = n == sizeof(have) ? read(fd, out, len) : -1;
    close(fd);
    return n == sizeof(have) && have == len && m == (ssize_t)len ? 0 : -1;
}

static jaccl_result_t file_allgather(const void *mine, void *all, size_t len, void *user)
{
    struct rdv *r = user;
    int round = r->calls++;
    char tmp[400], path[400];
    if (round < 16) r->lens[round] = len;
    if (round == r->fail_at) return r->fail_rc;
    /* Publish ours atomically: write a temporary file, then rename it into place. */
    snprintf(tmp, sizeof(tmp), "%s/.r%d.%d.tmp", r->dir, round, r->rank);
    snprintf(path, sizeof(path), "%s/r%d.%d", r->dir, round, r->rank);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    uint64_t l = len;
    if (fd < 0) return JACCL_ERR_SYSTEM;
    int bad = write_all(fd, &l, sizeof(l)) || write_all(fd, mine, len);
    if (close(fd) != 0 || bad || rename(tmp, path) != 0) return JACCL_ERR_SYSTEM;
    /* Collect everyone's, polling until the deadline. */
    double deadline = mp_now() + r->timeout_s;
    for (int q = 0; q < r->size; q++) {
        snprintf(path, sizeof(path), "%s/r%d.%d", r->dir, round, q);
        for (;;) {
            int st = read_record(path, (char *)all + (size_t)q * len, len);
            if (st < 0) return JACCL_ERR_INTERNAL;
            if (st == 0) break;
            if (mp_now() > deadline) return JACCL_ERR_TIMEOUT;
            api_sleep_ms(1);
        }
    }
    return JACCL_SUCCESS;
}

struct cb_case {
    const char *listen_host;
    int fail_at;
    jaccl_result_t fail_rc;
};

/* The rendezvous directory of this test: one per test, under the parent's. */
static int rdv_init(struct rdv *r, const struct cb_case *k)
{
    const char *name = getenv("API_TEST");
    memset(r, 0, sizeof(*r));
    snprintf(r->dir, sizeof(r->dir), "%s/%s", rdv_base, name ? name : "x");
    MP_CHECK(mkdir(r->dir, 0700) == 0 || errno == EEXIST, "mkdir %s: %s", r->dir, strerror(errno));
    unsetenv("API_TEST");
    r->rank = mp_rank();
    r->size = mp_size();
    r->fail_at = k->fail_at;
    r->fail_rc = k->fail_rc;
    r->timeout_s = 20;
    return 0;
}

static int callback_config(void *arg)
{
    const struct cb_case *k = arg;
    struct rdv r;
    if (rdv_init(&r, k) || clean_env()) return 1;
    jaccl_config_t cfg = JACCL_CONFIG_INIT;
    cfg.rank = mp_rank();
    cfg.size = mp_size();
    cfg.allgather = file_allgather;
    cfg.allgather_user = &r;
    cfg.listen_host = k->listen_host;
    cfg.timeout_s = 20;
    jaccl_comm_t c = NULL;
    if (!k->listen_host) { /* the default, this host's name: only where it resolves */
        char host[256] = "";
        struct addrinfo *ai = NULL;
        int unresolved = gethostname(host, sizeof(host)) != 0 || getaddrinfo(host, NULL, NULL, &ai);
        if (ai) freeaddrinfo(ai);
        if (unresolved) {
            if (mp_rank() == 0)
                printf("[api] skipped: this host's name '%s' does not resolve\n", host);
            return 0;
        }
    }
    if (k->fail_at >= 0) {
        double t0 = mp_now();
        jaccl_result_t rc = jaccl_comm_init(&c, &cfg);
        MP_CHECK(rc == k->fail_rc && c == NULL,
                 "callback failing at call %d: init returned %s, want %s", k->fail_at,
                 jaccl_result_string(rc), jaccl_result_string(k->fail_rc));
        MP_CHECK(*jaccl_last_error(NULL), "no message");
        MP_CHECK(mp_now() - t0 < 15, "the failed init took %.1f s", mp_now() - t0);
        MP_CHECK(r.calls == k->fail_at + 1, "the callback was called %d times after failing",
                 r.calls);
        api_count(1);
        api_report(NULL, NULL);
        return 0;
    }
    if (init_ok(&c, &cfg, "all-gather callback")) return 1;
    MP_CHECK(r.calls >= 1, "the callback was never called");
    if (works(c, mp_rank(), mp_size())) return 1;
    /* Every rank called it as often, with the same lengths (it is collective). */
    int32_t mine[17] = {r.calls}, all[17 * API_MAXR];
    for (int i = 0; i < r.calls && i < 16; i++) mine[1 + i] = (int32_t)r.lens[i];
    MP_OK(c, jaccl_allgather(mine, all, 17, JACCL_INT32, c));
    for (int q = 0; q < r.size; q++)
        MP_CHECK(memcmp(all + 17 * q, mine, sizeof(mine)) == 0,
                 "rank %d called the callback differently", q);
    if (mp_rank() == 0) printf("[api] the callback ran %d times\n", r.calls);
    api_count(1);
    MP_OK(NULL, jaccl_comm_destroy(c));
    api_report(NULL, NULL);
    return 0;
}

/* ---- explicit fields win over the environment ---- */

static int overrides(void *arg)
{
    const char *addr = coord();
    (void)arg;
    if (clean_env()) return 1;
    setenv("JACCL_RANK", "7", 1); /* all wrong: the config must be used instead */
    setenv("JACCL_SIZE", "99", 1);
    setenv("JACCL_COORDINATOR", "not-a-host-port", 1);
    setenv("JACCL_ALGO", "bogus", 1);
    setenv("JACCL_TRANSPORT", "carrier-pigeon", 1);
    setenv("JACCL_TIMEOUT", "-3", 1);
    jaccl_config_t cfg = JACCL_CONFIG_INIT;
    cfg.rank = mp_rank();
    cfg.size = mp_size();
    cfg.coordinator = addr;
    cfg.algo = "allreduce:ring,reduce:mesh";
    cfg.transport = "auto";
    cfg.timeout_s = 10;
    jaccl_comm_t c = NULL;
    if (init_ok(&c, &cfg, "config over a bad environment") || works(c, mp_rank(), mp_size()))
        return 1;
    MP_OK(NULL, jaccl_comm_destroy(c));
    api_report(NULL, NULL);
    return 0;
}

/* ---- errors, in one process ---- */

static int expect_init(const jaccl_config_t *cfg, jaccl_result_t want, const char *what)
{
    jaccl_comm_t c = (jaccl_comm_t)&c;
    double t0 = mp_now();
    jaccl_result_t rc = jaccl_comm_init(&c, cfg);
    MP_CHECK(rc == want, "%s: jaccl_comm_init returned %s, want %s (%s)", what,
             jaccl_result_string(rc), jaccl_result_string(want), jaccl_last_error(NULL));
    MP_CHECK(c == (jaccl_comm_t)&c, "%s: *comm was set on failure", what);
    MP_CHECK(*jaccl_last_error(NULL), "%s: no message", what);
    MP_CHECK(mp_now() - t0 < 5, "%s: took %.1f s", what, mp_now() - t0);
    api_count(1);
    return 0;
}

static int errors(void *arg)
{
    const char *addr = coord();
    const jaccl_result_t A = JACCL_ERR_INVALID_ARGUMENT, C = JACCL_ERR_CONFIG;
    (void)arg;
    if (clean_env()) return 1;
    static const unsigned versions[] = {0, JACCL_CONFIG_VERSION + 1, 99, 0xffffffffu};
    for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
        jaccl_config_t cfg = JACCL_CONFIG_INIT;
        cfg.version = versions[i];
        if (expect_init(&cfg, A, "wrong config.version")) return 1;
        cfg.rank = 0; /* even with a valid rest */
        cfg.size = 1;
        if (expect_init(&cfg, A, "wrong config.version, size 1")) return 1;
    }
    static const int rs[][2] = {{2, 2}, {5, 4},   {-1, 2}, {0, -1},
                                {0, 0}, {-2, -2}, {1, 1},  {-5, 3}};
    for (size_t i = 0; i < sizeof(rs) / sizeof(rs[0]); i++) {
        jaccl_config_t cfg = JACCL_CONFIG_INIT;
        char what[64];
        cfg.rank = rs[i][0];
        cfg.size = rs[i][1];
        cfg.coordinator = addr;
        snprintf(what, sizeof(what), "config rank %d size %d", rs[i][0], rs[i][1]);
        if (expect_init(&cfg, C, what)) return 1;
    }
    /* Bad strings, checked before any connection. */
    const char *const bad_coord[] = {"nohostport", "host:", "127.0.0.1:0", ":1234", "[::1:5"};
    for (size_t i = 0; i < sizeof(bad_coord) / sizeof(bad_coord[0]); i++) {
        jaccl_config_t cfg = JACCL_CONFIG_INIT;
        cfg.rank = 0;
        cfg.size = 2;
        cfg.coordinator = bad_coord[i];
        if (expect_init(&cfg, C, bad_coord[i])) return 1;
    }
    {
        jaccl_config_t cfg = JACCL_CONFIG_INIT;
        cfg.rank = 0;
        cfg.size = 2;
        if (expect_init(&cfg, C, "size 2 without coordinator or callback")) return 1;
        cfg.coordinator = addr;
        cfg.algo = "bogus";
        if (expect_init(&cfg, C, "config.algo bogus")) return 1;
        cfg.algo = "allscan:ring";
        if (expect_init(&cfg, C, "config.algo allscan:ring")) return 1;
        cfg.algo = NULL;
        cfg.transport = "carrier-pigeon";
        if (expect_init(&cfg, C, "config.transport carrier-pigeon")) return 1;
    }
    /* config.timeout_s: rank 0 of 2 alone gives up after about a second. */
    {
        jaccl_config_t cfg = JACCL_CONFIG_INIT;
        jaccl_comm_t c = NULL;
        cfg.rank = 0;
        cfg.size = 2;
        cfg.coordinator = addr;
        cfg.timeout_s = 1;
        double t0 = mp_now();
        jaccl_result_t rc = jaccl_comm_init(&c, &cfg);
        double t = mp_now() - t0;
        MP_CHECK(rc == JACCL_ERR_TIMEOUT && t > 0.5 && t < 4,
                 "alone with timeout_s = 1: %s after %.2f s (%s)", jaccl_result_string(rc), t,
                 jaccl_last_error(NULL));
        api_count(1);
    }
    MP_CHECK(jaccl_comm_init(NULL, NULL) == A, "jaccl_comm_init(NULL, ...)");
    api_count(1);
    /* With no config and no environment: a job of one, as jaccl_comm_init_env. */
    jaccl_comm_t c = NULL;
    if (init_ok(&c, NULL, "no config, no environment") || works(c, 0, 1)) return 1;
    MP_OK(NULL, jaccl_comm_destroy(c));
    /* size 1 from the config, no coordinator needed */
    jaccl_config_t one = JACCL_CONFIG_INIT;
    one.rank = 0;
    one.size = 1;
    if (init_ok(&c, &one, "config size 1") || works(c, 0, 1)) return 1;
    MP_OK(NULL, jaccl_comm_destroy(c));
    api_report(NULL, NULL);
    return 0;
}

/* ---- the version ---- */

static int version(void *arg)
{
    char want[32];
    (void)arg;
    snprintf(want, sizeof(want), "%d.%d.%d", JACCL_VERSION_MAJOR, JACCL_VERSION_MINOR,
             JACCL_VERSION_PATCH);
    const char *v = jaccl_version();
    MP_CHECK(v && strcmp(v, want) == 0, "jaccl_version() is '%s', the header says %s",
             v ? v : "(null)", want);
    MP_CHECK(JACCL_VERSION_CODE ==
                 JACCL_VERSION_MAJOR * 10000 + JACCL_VERSION_MINOR * 100 + JACCL_VERSION_PATCH,
             "JACCL_VERSION_CODE");
    api_count(1);
    api_report(NULL, NULL);
    return 0;
}

/* clang-format off */
#define RAW(NAME, NP, FN, ARG, ...) {NAME, NP, {"API_COORD=@COORD@", "API_TEST=" NAME, __VA_ARGS__}, \
                                     NULL, FN, ARG, 90}

static const struct cb_case cb_loopback = {"127.0.0.1", -1, JACCL_SUCCESS};
static const struct cb_case cb_hostname = {NULL, -1, JACCL_SUCCESS};
static const struct cb_case cb_fail_first = {"127.0.0.1", 0, JACCL_ERR_REMOTE};
static const struct cb_case cb_fail_later = {"127.0.0.1", 2, JACCL_ERR_TIMEOUT};

static const struct api_test tests[] = {
    RAW("explicit-np2", 2, explicit_config, NULL, NULL),
    RAW("explicit-np3-ring", 3, explicit_config, "ring", NULL),
    RAW("explicit-np4-mesh", 4, explicit_config, "mesh", NULL),
    RAW("callback-np2", 2, callback_config, &cb_loopback, NULL),
    RAW("callback-np3", 3, callback_config, &cb_loopback, NULL),
    RAW("callback-np4", 4, callback_config, &cb_loopback, NULL),
    RAW("callback-default-listen-host-np2", 2, callback_config, &cb_hostname, NULL),
    RAW("callback-fails-first-call-np2", 2, callback_config, &cb_fail_first, NULL),
    RAW("callback-fails-third-call-np3", 3, callback_config, &cb_fail_later, NULL),
    RAW("config-over-environment-np2", 2, overrides, NULL, NULL),
    RAW("errors", 1, errors, NULL, NULL),
    RAW("version", 1, version, NULL, NULL),
};
/* clang-format on */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(void)
{
    snprintf(rdv_base, sizeof(rdv_base), "%s/jaccl-api-config-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(rdv_base)) {
        perror("mkdtemp");
        return 1;
    }
    int rc = api_main("api-config", tests, (int)(sizeof(tests) / sizeof(tests[0])));
    nftw(rdv_base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}
