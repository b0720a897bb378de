/* Remote ranks. sshd makes every session its own process group, so the wrapper can stop the
 * program and whatever it started with kill(0) and leave nothing behind. */
#include "remote.h"

#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* $1 cwd, $2 strict cd (1/0), $3 device matrix JSON or "", $4 count of K=V, then K=V...,
 * then PROGRAM ARGS. The first stdin line is the job key (may be empty); later lines are
 * signals to forward. The watcher ignores the signals it forwards, and kills itself last.
 * The program keeps default signal dispositions: a trap with a command resets in children.
 * The watcher reads fd 3: a background list's stdin is /dev/null unless redirected.
 * One line: csh-family login shells reject newlines inside quotes. */
static const char wrapper[] =
    "h=$(hostname 2>/dev/null); "
    "if [ -n \"$1\" ] && ! cd \"$1\" 2>/dev/null && [ \"$2\" = 1 ]; then "
    "echo \"jaccl-launch: $h: cannot cd to $1\" >&2; exit 127; fi; "
    "d=$3; n=$4; shift 4; "
    "while [ \"$n\" -gt 0 ]; do export \"$1\"; shift; n=$((n-1)); done; "
    "IFS= read -r k; if [ -n \"$k\" ]; then export JACCL_JOB_KEY=\"$k\"; fi; "
    "f=; "
    "if [ -n \"$d\" ]; then "
    "f=$(umask 077; mktemp \"${TMPDIR:-/tmp}/jaccl-devices.XXXXXX\") || exit 127; "
    "printf '%s\\n' \"$d\" >\"$f\"; export JACCL_IBV_DEVICES=\"$f\"; fi; "
    "trap : INT TERM HUP; "
    "exec 3<&0; "
    "(trap '' INT TERM HUP; "
    "while IFS= read -r s; do case $s in "
    "INT|TERM|HUP) kill -s \"$s\" 0;; "
    "KILL) [ -z \"$f\" ] || rm -f \"$f\"; kill -s KILL 0;; "
    "esac; done; "
    "kill -s TERM 0; sleep 1; [ -z \"$f\" ] || rm -f \"$f\"; kill -s KILL 0) <&3 >/dev/null 2>&1 & "
    "w=$!; "
    "\"$@\" </dev/null 3<&-; "
    "s=$?; "
    "kill -s KILL \"$w\" 2>/dev/null; "
    "kill -s TERM 0 2>/dev/null; "
    "[ -z \"$f\" ] || rm -f \"$f\"; "
    "exit $s";

const char *rm_hostpart(const char *dest)
{
    const char *at = strrchr(dest, '@');
    return at ? at + 1 : dest;
}

static bool same_addr(const struct sockaddr *a, const struct sockaddr *b)
{
    if (!a || !b || a->sa_family != b->sa_family) return false;
    if (a->sa_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    if (a->sa_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                      &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr)) == 0;
    return false;
}

bool rm_is_local(const char *dest)
{
    const char *host = rm_hostpart(dest);
    if (strcmp(host, "localhost") == 0) return true;
    struct addrinfo hints = {.ai_flags = AI_NUMERICSERV}, *res;
    if (getaddrinfo(host, NULL, &hints, &res) != 0) return false;
    struct ifaddrs *ifs;
    bool local = false;
    if (getifaddrs(&ifs) == 0) {
        for (struct addrinfo *a = res; a && !local; a = a->ai_next) {
            /* 127.0.0.0/8 is this machine whether or not lo lists the exact address. */
            if (a->ai_family == AF_INET &&
                (ntohl(((struct sockaddr_in *)a->ai_addr)->sin_addr.s_addr) >> 24) == 127)
                local = true;
            for (struct ifaddrs *i = ifs; i && !local; i = i->ifa_next)
                local = same_addr(a->ai_addr, i->ifa_addr);
        }
        freeifaddrs(ifs);
    }
    freeaddrinfo(res);
    return local;
}

char *rm_quote(const char *s)
{
    size_t n = 3;
    for (const char *p = s; *p; p++) n += *p == '\'' ? 4 : 1;
    char *q = malloc(n), *o = q;
    if (!q) return NULL;
    *o++ = '\'';
    for (const char *p = s; *p; p++) {
        if (*p == '\'') {
            memcpy(o, "'\\''", 4);
            o += 4;
        } else {
            *o++ = *p;
        }
    }
    *o++ = '\'';
    *o = '\0';
    return q;
}

char **rm_ssh_argv(const char *ssh_cmd, const char *dest, const char *remote_cmd)
{
    static const char *const extra[] = {"-o", "BatchMode=yes", "-o", "ConnectTimeout=10"};
    size_t words = 0, len = strlen(ssh_cmd) + 1;
    for (const char *p = ssh_cmd; *p; p++)
        if (*p != ' ' && *p != '\t' && (p == ssh_cmd || p[-1] == ' ' || p[-1] == '\t')) words++;
    size_t nptr = words + 4 + 3;
    char **argv = malloc(nptr * sizeof(char *) + len);
    if (!argv || words == 0) {
        free(argv);
        return NULL;
    }
    char *buf = (char *)(argv + nptr), *save = NULL;
    memcpy(buf, ssh_cmd, len);
    size_t n = 0;
    for (char *w = strtok_r(buf, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) argv[n++] = w;
    for (size_t i = 0; i < 4; i++) argv[n++] = (char *)extra[i];
    argv[n++] = (char *)dest;
    argv[n++] = (char *)remote_cmd;
    argv[n] = NULL;
    return argv;
}

/* Appends the quoted s and a space to *buf (grown as needed). */
static int append(char **buf, size_t *len, size_t *cap, const char *s, bool quote)
{
    char *q = quote ? rm_quote(s) : strdup(s);
    if (!q) return -1;
    size_t n = strlen(q);
    if (*len + n + 2 > *cap) {
        size_t c = (*cap + n + 2) * 2;
        char *b = realloc(*buf, c);
        if (!b) {
            free(q);
            return -1;
        }
        *buf = b;
        *cap = c;
    }
    memcpy(*buf + *len, q, n);
    *len += n;
    (*buf)[(*len)++] = ' ';
    (*buf)[*len] = '\0';
    free(q);
    return 0;
}

char *rm_command(const struct rm_spec *s)
{
    char *buf = NULL, count[24];
    size_t len = 0, cap = 0;
    snprintf(count, sizeof count, "%zu", s->nenv);
    int rc = append(&buf, &len, &cap, "exec /bin/sh -c", false);
    rc |= append(&buf, &len, &cap, wrapper, true);
    rc |= append(&buf, &len, &cap, "jaccl-rank", false);
    rc |= append(&buf, &len, &cap, s->cwd ? s->cwd : "", true);
    rc |= append(&buf, &len, &cap, s->cwd_strict ? "1" : "0", false);
    rc |= append(&buf, &len, &cap, s->devices ? s->devices : "", true);
    rc |= append(&buf, &len, &cap, count, false);
    for (size_t i = 0; i < s->nenv && rc == 0; i++) rc |= append(&buf, &len, &cap, s->env[i], true);
    for (size_t i = 0; s->argv[i] && rc == 0; i++) rc |= append(&buf, &len, &cap, s->argv[i], true);
    if (rc) {
        free(buf);
        return NULL;
    }
    buf[len - 1] = '\0'; /* the trailing space */
    return buf;
}

struct sink {
    int fd;
    char *buf;
    size_t len, cap;
};

#define CAPTURE_MAX (4u << 20)

static void sink_read(struct sink *s)
{
    if (s->cap - s->len < 4096 && s->cap < CAPTURE_MAX) {
        size_t c = s->cap ? 2 * s->cap : 8192;
        char *b = realloc(s->buf, c + 1);
        if (b) {
            s->buf = b;
            s->cap = c;
        }
    }
    char drop[4096];
    bool room = s->buf && s->cap > s->len;
    ssize_t n =
        room ? read(s->fd, s->buf + s->len, s->cap - s->len) : read(s->fd, drop, sizeof drop);
    if (n < 0 && errno == EINTR) return;
    if (n <= 0) {
        close(s->fd);
        s->fd = -1;
        return;
    }
    if (room) s->len += (size_t)n;
}

int64_t rm_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static pid_t spawn_piped(char *const *argv, int out, int err)
{
    pid_t pid = fork();
    if (pid != 0) return pid;
    int null = open("/dev/null", O_RDONLY);
    if (null >= 0) dup2(null, STDIN_FILENO);
    dup2(out, STDOUT_FILENO);
    dup2(err, STDERR_FILENO);
    setpgid(0, 0); /* so a timeout kills what it started too */
    execvp(argv[0], argv);
    dprintf(STDERR_FILENO, "cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

static char *sink_take(struct sink *s)
{
    char *b = s->buf ? s->buf : malloc(1);
    if (b) b[s->buf ? s->len : 0] = '\0';
    return b;
}

struct job_io {
    pid_t pid;
    struct sink s[2];
    bool reported;
};

static void start_one(struct job_io *j, char *const *argv)
{
    int po[2], pe[2];
    j->pid = -1;
    j->s[0].fd = j->s[1].fd = -1;
    if (pipe2(po, O_CLOEXEC) != 0) return;
    if (pipe2(pe, O_CLOEXEC) != 0) {
        close(po[0]);
        close(po[1]);
        return;
    }
    j->pid = spawn_piped(argv, po[1], pe[1]);
    close(po[1]);
    close(pe[1]);
    j->s[0].fd = po[0];
    j->s[1].fd = pe[0];
}

/*
 * Reaps a job whose pipes are closed.  A child may close them and keep
 * running: it gets until the deadline, then SIGKILL (it times out).
 */
static bool reap_by(pid_t pid, int64_t deadline, int *st)
{
    while (rm_now_ms() < deadline) {
        if (waitpid(pid, st, WNOHANG) == pid) return true;
        nanosleep(&(struct timespec){0, 5 * 1000 * 1000}, NULL);
    }
    kill(-pid, SIGKILL);
    waitpid(pid, st, 0); /* SIGKILL cannot be ignored: this returns */
    return false;
}

/* Reaps job i once both pipes are closed (or now, killing it, when timed out). */
static void finish_one(struct job_io *j, int i, bool timed_out, int64_t deadline, rm_done_fn done,
                       void *arg)
{
    int st = 0, status;
    for (int k = 0; k < 2; k++)
        if (j->s[k].fd >= 0) close(j->s[k].fd);
    j->s[0].fd = j->s[1].fd = -1;
    if (j->pid > 0) timed_out = !reap_by(j->pid, timed_out ? 0 : deadline, &st);
    status = j->pid < 0      ? -1
             : timed_out     ? -2
             : WIFEXITED(st) ? WEXITSTATUS(st)
                             : 128 + WTERMSIG(st);
    j->reported = true;
    done(i, status, sink_take(&j->s[0]), sink_take(&j->s[1]), arg);
}

static int poll_all(struct job_io *jobs, int n, struct pollfd *p, int64_t deadline)
{
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 2; k++)
            p[2 * i + k] = (struct pollfd){.fd = jobs[i].s[k].fd, .events = POLLIN};
    int64_t left = deadline - rm_now_ms();
    return left <= 0 ? 0 : poll(p, (nfds_t)(2 * n), (int)left);
}

void rm_capture_all(char **const *argvs, int n, int timeout_ms, rm_done_fn done, void *arg)
{
    struct job_io *jobs = calloc((size_t)n, sizeof *jobs);
    struct pollfd *p = calloc((size_t)(2 * n), sizeof *p);
    for (int i = 0; jobs && p && i < n; i++) start_one(&jobs[i], argvs[i]);
    int64_t deadline = rm_now_ms() + timeout_ms;
    for (int left = n; jobs && p && left > 0;) {
        bool timed_out = poll_all(jobs, n, p, deadline) == 0;
        for (int i = 0; i < n; i++) {
            struct job_io *j = &jobs[i];
            if (j->reported) continue;
            for (int k = 0; k < 2 && !timed_out; k++)
                if (p[2 * i + k].revents) sink_read(&j->s[k]);
            if (timed_out || (j->s[0].fd < 0 && j->s[1].fd < 0)) {
                finish_one(j, i, timed_out, deadline, done, arg);
                left--;
            }
        }
    }
    free(jobs);
    free(p);
}

struct one_result {
    int status;
    char *out, *err;
};

static void keep_one(int i, int status, char *out, char *err, void *arg)
{
    struct one_result *r = arg;
    (void)i;
    *r = (struct one_result){status, out, err};
}

int rm_capture(char *const *argv, int timeout_ms, char **out, char **err)
{
    char **const argvs[1] = {(char **)argv};
    struct one_result r = {-1, NULL, NULL};
    rm_capture_all(argvs, 1, timeout_ms, keep_one, &r);
    *out = r.out ? r.out : strdup("");
    *err = r.err ? r.err : strdup("");
    return *out && *err ? r.status : -1;
}
