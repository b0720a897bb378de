/* Multi-process test harness: fork the ranks, give them an environment, reap them. */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if MP_SANITIZED
#include <sanitizer/lsan_interface.h>
#endif

extern char **environ;

#define MP_MAX_RANKS 16

struct mp_job {
    int nranks;
    const char *const *env;
    mp_rank_fn fn;
    mp_raw_fn raw_fn;
    void *arg;
    char coord[32], coord2[32];
    pid_t parent;
};

static int g_rank = -1, g_size = 0;

int mp_rank(void)
{
    return g_rank;
}

int mp_size(void)
{
    return g_size;
}

double mp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void mp_fail(const char *file, int line, const char *what, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "[mp rank %d/%d pid %d] %s:%d: %s: %s\n", g_rank, g_size, (int)getpid(), file,
            line, what, msg);
    fflush(stderr);
}

uint64_t mp_fnv(uint64_t h, const void *p, size_t len)
{
    const unsigned char *b = p;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) { /* FNV-1a over 8-byte words, then bytes: fast enough */
        uint64_t w;
        memcpy(&w, b + i, 8);
        h = (h ^ w) * 1099511628211ull;
        h ^= h >> 29;
    }
    for (; i < len; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

uint64_t mp_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

int mp_check_same(jaccl_comm_t comm, const void *buf, size_t len, const char *what)
{
    int n = jaccl_comm_size(comm);
    uint64_t mine = mp_fnv(MP_FNV_INIT, buf, len), all[MP_MAX_RANKS];
    MP_CHECK(n > 0 && n <= MP_MAX_RANKS, "bad size %d", n);
    MP_OK(comm, jaccl_allgather(&mine, all, 1, JACCL_UINT64, comm));
    for (int r = 0; r < n; r++)
        MP_CHECK(all[r] == mine, "%s: rank %d's result hashes to %016llx, ours to %016llx", what, r,
                 (unsigned long long)all[r], (unsigned long long)mine);
    return 0;
}

/* n distinct ports on 127.0.0.1 that were free a moment ago (nobody listens on them now). */
static int free_ports(int *ports, int n)
{
    int fds[4], ok = n <= 4;
    if (!ok) return -1;
    for (int i = 0; i < n; i++) { /* all bound at once, so they differ */
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(a);
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        ports[i] = -1;
        if (fds[i] >= 0 && bind(fds[i], (struct sockaddr *)&a, sizeof(a)) == 0 &&
            getsockname(fds[i], (struct sockaddr *)&a, &len) == 0)
            ports[i] = ntohs(a.sin_port);
        ok = ok && ports[i] > 0;
    }
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0) close(fds[i]);
    return ok ? 0 : -1;
}

static int is_launcher_var(const char *e)
{
    static const char *const prefixes[] = {"JACCL_", "MLX_", "OMPI_", "PMI_", "SLURM_"};
    if (strncmp(e, "JACCL_LOG_LEVEL=", 16) == 0) return 0; /* keep, for debugging */
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
        if (strncmp(e, prefixes[i], strlen(prefixes[i])) == 0) return 1;
    return 0;
}

/* Remove every variable a launcher could have left that jaccl might read. */
static void clear_launcher_env(void)
{
    char name[256];
    for (int again = 1; again;) {
        again = 0;
        for (char **e = environ; *e; e++) {
            size_t n = strcspn(*e, "=");
            if (!is_launcher_var(*e) || n >= sizeof(name)) continue;
            memcpy(name, *e, n);
            name[n] = '\0';
            unsetenv(name); /* environ changed: start over */
            again = 1;
            break;
        }
    }
}

/* Copy src to dst replacing @RANK@, @SIZE@, @COORD@ and @COORD2@. */
static void substitute(char *dst, size_t cap, const char *src, const struct mp_job *job)
{
    size_t n = 0;
    dst[0] = '\0';
    while (*src && n + 1 < cap) {
        const char *rep = NULL;
        char num[16];
        size_t skip = 0;
        if (strncmp(src, "@RANK@", 6) == 0 || strncmp(src, "@SIZE@", 6) == 0) {
            snprintf(num, sizeof(num), "%d", src[1] == 'R' ? g_rank : job->nranks);
            rep = num;
            skip = 6;
        } else if (strncmp(src, "@COORD@", 7) == 0) {
            rep = job->coord;
            skip = 7;
        } else if (strncmp(src, "@COORD2@", 8) == 0) {
            rep = job->coord2;
            skip = 8;
        }
        if (rep) {
            n += (size_t)snprintf(dst + n, cap - n, "%s", rep);
            if (n >= cap) n = cap - 1;
            src += skip;
        } else {
            dst[n++] = *src++;
            dst[n] = '\0';
        }
    }
}

static void apply_env(const char *entry, const struct mp_job *job)
{
    char name[128], value[512];
    size_t n = strcspn(entry, "=");
    if (n >= sizeof(name)) n = sizeof(name) - 1;
    memcpy(name, entry, n);
    name[n] = '\0';
    if (entry[n] != '=') {
        unsetenv(name);
        return;
    }
    substitute(value, sizeof(value), entry + n + 1, job);
    setenv(name, value, 1);
}

static int child_with_comm(const struct mp_job *job)
{
    jaccl_comm_t comm = NULL;
    jaccl_result_t rc = jaccl_comm_init_env(&comm);
    if (rc != JACCL_SUCCESS) {
        mp_fail(__FILE__, __LINE__, "jaccl_comm_init_env", "returned %s: %s",
                jaccl_result_string(rc), jaccl_last_error(NULL));
        return 1;
    }
    int status = job->fn(comm, job->arg);
    if (status != 0)
        mp_fail(__FILE__, __LINE__, "rank function", "returned %d (last error: '%s')", status,
                jaccl_last_error(comm));
    rc = jaccl_comm_destroy(comm);
    if (rc != JACCL_SUCCESS && status == 0) {
        mp_fail(__FILE__, __LINE__, "jaccl_comm_destroy", "returned %s", jaccl_result_string(rc));
        status = 1;
    }
    return status;
}

/*
 * cmocka catches these in the parent and longjmps back into its test runner:
 * a child that inherited its handlers would go on to run the parent's next
 * tests.  A child must die of them instead.
 */
static void default_signals(void)
{
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGSYS, SIGABRT, SIGPIPE};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) signal(sigs[i], SIG_DFL);
}

/*
 * Whole-suite variations (tests/shm runs suites with them): MP_NETNS lists
 * network namespaces by name (/run/netns/NAME), rank r joins entry r modulo
 * their number; MP_EXTRA_ENV is a space-separated list of NAME=VALUE applied
 * to every rank before the test's own entries.
 */
static int suite_env(const struct mp_job *job, int rank)
{
    char buf[1024], path[300], *save = NULL, *tok;
    const char *v = getenv("MP_NETNS");
    int n = 0;
    snprintf(buf, sizeof(buf), "%s", v ? v : "");
    for (tok = strtok_r(buf, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) n++;
    snprintf(buf, sizeof(buf), "%s", v ? v : "");
    tok = strtok_r(buf, " ", &save);
    for (int i = 0; n > 0 && i < rank % n; i++) tok = strtok_r(NULL, " ", &save);
    if (n > 0) {
        snprintf(path, sizeof(path), "/run/netns/%s", tok);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
            mp_fail(__FILE__, __LINE__, "MP_NETNS", "cannot join %s: %s", path, strerror(errno));
            return -1;
        }
        close(fd);
    }
    snprintf(buf, sizeof(buf), "%s", getenv("MP_EXTRA_ENV") ? getenv("MP_EXTRA_ENV") : "");
    for (tok = strtok_r(buf, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
        apply_env(tok, job);
    return 0;
}

static void child_main(const struct mp_job *job, int rank)
{
    default_signals();
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != job->parent) _exit(120); /* the parent is already gone */
    g_rank = rank;
    g_size = job->nranks;
    clear_launcher_env();
    if (suite_env(job, rank) != 0) _exit(1);
    if (job->fn) {
        static const char *const std_env[] = {"JACCL_RANK=@RANK@", "JACCL_SIZE=@SIZE@",
                                              "JACCL_COORDINATOR=@COORD@", "JACCL_TIMEOUT=10"};
        for (size_t i = 0; i < sizeof(std_env) / sizeof(std_env[0]); i++)
            apply_env(std_env[i], job);
    }
    for (size_t i = 0; job->env && job->env[i]; i++) apply_env(job->env[i], job);
    int status = job->fn ? child_with_comm(job) : job->raw_fn(job->arg);
#if MP_SANITIZED
    /* _exit skips LeakSanitizer's check at exit: run it here, with every comm destroyed. */
    if (__lsan_do_recoverable_leak_check() && status == 0) {
        mp_fail(__FILE__, __LINE__, "LeakSanitizer", "memory leaked (report above)");
        status = 1;
    }
#endif
    fflush(NULL);
    _exit(status == 0 ? 0 : (status & 0x7f) ? (status & 0x7f) : 1);
}

static void report_child(int rank, pid_t pid, int st)
{
    if (WIFEXITED(st) && WEXITSTATUS(st) != 0)
        fprintf(stderr, "[mp] rank %d (pid %d) exited with status %d\n", rank, (int)pid,
                WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        fprintf(stderr, "[mp] rank %d (pid %d) was killed by signal %d (%s)\n", rank, (int)pid,
                WTERMSIG(st), strsignal(WTERMSIG(st)));
}

/* Reap every child by the deadline; kill the rest.  Returns the number that failed. */
static int reap(const pid_t *pids, int n, double timeout_s)
{
    int left = n, failed = 0, done[MP_MAX_RANKS] = {0};
    double deadline = mp_now() + timeout_s;
    const struct timespec nap = {0, 2000000};
    while (left > 0 && mp_now() < deadline) {
        int progressed = 0;
        for (int r = 0; r < n; r++) {
            int st;
            if (done[r] || waitpid(pids[r], &st, WNOHANG) != pids[r]) continue;
            done[r] = progressed = 1;
            left--;
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) failed++;
            report_child(r, pids[r], st);
        }
        if (!progressed) nanosleep(&nap, NULL);
    }
    for (int r = 0; r < n; r++) {
        if (done[r]) continue;
        fprintf(stderr, "[mp] rank %d (pid %d) still running after %.1f s: killing it\n", r,
                (int)pids[r], timeout_s);
        kill(pids[r], SIGKILL);
        while (waitpid(pids[r], NULL, 0) < 0 && errno == EINTR) {
        }
        failed++;
    }
    return failed;
}

static int run_job(struct mp_job *job, double timeout_s)
{
    pid_t pids[MP_MAX_RANKS];
    int ports[2];
    if (job->nranks < 1 || job->nranks > MP_MAX_RANKS || free_ports(ports, 2) != 0) {
        fprintf(stderr, "[mp] bad rank count %d or no free port\n", job->nranks);
        return -1;
    }
    /* MP_COORD_HOST: where rank 0 listens when MP_NETNS puts the ranks apart. */
    const char *host = getenv("MP_COORD_HOST") ? getenv("MP_COORD_HOST") : "127.0.0.1";
    snprintf(job->coord, sizeof(job->coord), "%s:%d", host, ports[0]);
    snprintf(job->coord2, sizeof(job->coord2), "%s:%d", host, ports[1]);
    job->parent = getpid();
    fflush(NULL);
    for (int r = 0; r < job->nranks; r++) {
        pids[r] = fork();
        if (pids[r] == 0) child_main(job, r);
        if (pids[r] < 0) {
            fprintf(stderr, "[mp] fork: %s\n", strerror(errno));
            for (int q = 0; q < r; q++) kill(pids[q], SIGKILL);
            for (int q = 0; q < r; q++) waitpid(pids[q], NULL, 0);
            return -1;
        }
    }
    int failed = reap(pids, job->nranks, timeout_s);
    if (failed) fprintf(stderr, "[mp] %d of %d ranks failed\n", failed, job->nranks);
    return failed;
}

int mp_run(int nranks, const char *const *extra_env, mp_rank_fn fn, void *arg, double timeout_s)
{
    struct mp_job job = {.nranks = nranks, .env = extra_env, .fn = fn, .arg = arg};
    return run_job(&job, timeout_s);
}

int mp_run_raw(int nranks, const char *const *extra_env, mp_raw_fn fn, void *arg, double timeout_s)
{
    struct mp_job job = {.nranks = nranks, .env = extra_env, .raw_fn = fn, .arg = arg};
    return run_job(&job, timeout_s);
}
