/* jaccl-launch: starts the ranks of a program, on this machine (-n N) or on the hosts of a
 * hostfile over ssh, with the JACCL bootstrap environment; prefixes their output lines with
 * the rank, and makes sure that neither the ranks nor their descendants outlive the job.
 *
 * Design: the launcher is single-threaded and event driven. All ranks share one process
 * group (the first rank leads it), so one kill(-pgid) reaches every rank and every
 * descendant that stayed in the group. Signals (SIGCHLD and the launcher's own
 * SIGINT/SIGTERM/SIGHUP) are blocked and read from a signalfd, so all work happens in
 * the poll() loop, never in a handler. The launcher is a child subreaper, so orphaned
 * descendants are re-parented to it and reaped. Ranks die with the launcher through
 * PR_SET_PDEATHSIG; a small guardian process kills the rest of the group then.
 *
 * A remote rank is an ssh client in the same group, with SIGINT/SIGTERM/SIGHUP ignored (ssh
 * keeps ignored signals ignored). Its stdin is a control pipe: the job key, then the names
 * of the signals to deliver remotely; the remote wrapper (remote.c) stops the session's
 * processes when told, or when the connection closes because the ssh client died. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hostfile.h"
#include "plan.h"
#include "remote.h"

#define PROG      "jaccl-launch"
#define MAX_RANKS 4096
/* Lines longer than this are split; every piece gets its own prefix, so output stays
 * line-oriented and memory stays bounded. */
#define LINE_CAP (64 * 1024)
/* Between SIGTERM and SIGKILL. */
#define GRACE_MS 2000
/* After SIGKILL (or once all ranks are gone): how long to keep reading pipes that are
 * still held open by processes that escaped the process group. */
#define GIVEUP_MS 1000
/* While leftover descendants of finished ranks exist we poll for them at this period:
 * they are not always our children, so no SIGCHLD tells us when they are gone. */
#define PROBE_MS 20

struct opts {
    int n;
    int nenv;
    char **env;         /* "K=V" strings from argv */
    int64_t timeout_ms; /* 0: none */
    char **argv;        /* PROGRAM ARGS... */
    const char *hostfile, *hosts, *backend, *cwd, *ssh;
    int port; /* coordinator port; 0: pick one */
    bool dry_run;
    struct plan plan; /* filled once the arguments are read */
};

/* Buffered output to the launcher's stdout or stderr. */
struct out {
    int fd;
    size_t len;
    char buf[2 * LINE_CAP];
};

/* One of a rank's output pipes. */
struct stream {
    int fd; /* read end, -1 once closed */
    int rank;
    struct out *out;
    char *buf; /* unterminated tail of the output so far */
    size_t len;
};

struct rank {
    pid_t pid;
    bool running;
    int host;        /* index in the hostfile, -1 for -n N */
    bool remote;     /* started through ssh */
    int ctl;         /* write end of a remote rank's control pipe, -1: none */
    char **ssh_argv; /* remote ranks: the ssh command line */
    char *ssh_cmd;   /* ... and the command it runs there */
    char prefix[16];
    size_t prefix_len;
    struct stream io[2]; /* stdout, stderr */
};

struct job {
    const struct opts *o;
    const struct plan *p;
    char devices_file[64]; /* local copy of the device matrix, for local ranks; "" if none */
    struct rank *ranks;
    int started;
    int live; /* started and not yet reaped */
    int open_streams;
    pid_t pgid; /* 0 until the first rank exists */
    pid_t self;
    pid_t guard_pid; /* 0: none */
    int guard_fd;    /* write end of the guardian's pipe, -1: none */
    int sigfd;
    sigset_t old_mask;
    struct sigaction old_pipe, old_chld;
    int status; /* exit status of the launcher; -1 until decided */
    bool stopping, killed;
    int stop_sig;                           /* what the group was last sent before SIGKILL */
    int64_t timeout_at, kill_at, giveup_at; /* CLOCK_MONOTONIC ms, 0: unset */
    struct pollfd *pfds;
    struct stream **pmap; /* pfds[i] belongs to pmap[i], i >= 1 */
};

static struct out outs[2];

/* ------------------------------------------------------------------ arguments */

static void usage(FILE *f)
{
    fputs("Usage: " PROG " -n N [OPTIONS] [--] PROGRAM [ARGS...]\n"
          "       " PROG " --hostfile FILE | --hosts A,B,... [OPTIONS] [--] PROGRAM [ARGS...]\n"
          "\n"
          "Starts N local ranks of PROGRAM, or one rank per host of a hostfile (MLX's\n"
          "format; \"slots\": K or A:K for K ranks) over ssh. Each rank gets JACCL_RANK,\n"
          "JACCL_SIZE, JACCL_COORDINATOR (127.0.0.1, or the first host's first ip, and a\n"
          "free or random port) and JACCL_JOB_KEY (random unless set) in its environment,\n"
          "and every line it writes to stdout or stderr is printed with a \"[RANK] \" prefix.\n"
          "Hosts that are this machine run without ssh.\n"
          "\n"
          "  -n N            number of ranks (1..4096) on this machine\n"
          "  --hostfile FILE hosts, backend and envs from a JSON hostfile\n"
          "  --hosts A,B,... hosts given by name (ssh destinations)\n"
          "  --backend B     mesh (algorithm), ring (algorithm, over TCP: MLX's ring),\n"
          "                  tcp, rdma (transport), or MLX's jaccl / jaccl-ring (mesh / ring\n"
          "                  over the hosts' \"rdma\" devices: the launcher writes their\n"
          "                  matrix to a file named by JACCL_IBV_DEVICES on each host);\n"
          "                  default: the hostfile's\n"
          "  --cwd DIR       directory the ranks run in (default: the current one, when\n"
          "                  it exists on the host)\n"
          "  --ssh CMD       ssh command line (default: $JACCL_SSH, else ssh); BatchMode\n"
          "                  is always on: keys or an agent, no passwords\n"
          "  --port P        coordinator port (default: free here, random for a remote)\n"
          "  --dry-run       print what would run where, and exit\n"
          "  --env K=V       also set K=V in every rank (repeatable; applied after the\n"
          "                  JACCL_* variables, so it can override them)\n"
          "  --timeout SEC   stop all ranks after SEC seconds and exit with status 124\n"
          "  -h, --help      print this help\n"
          "\n"
          "When a rank fails, or the launcher gets SIGINT/SIGTERM/SIGHUP, all ranks and\n"
          "their descendants, here and on every host, are sent SIGTERM (the signal itself\n"
          "when forwarding one), then SIGKILL after 2 s. Leftover descendants of ranks\n"
          "that exited are also stopped. A local rank 0 reads the launcher's stdin unless\n"
          "it is a terminal; the other ranks read /dev/null.\n"
          "\n"
          "Exit status: 0 if every rank exits 0; otherwise the first failure (a rank's\n"
          "exit status, 128+S for signal S), 124 on timeout, 127 if PROGRAM cannot be\n"
          "run, 255 if ssh fails, 2 for usage errors.\n",
          f);
}

static int bad_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, PROG ": ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry '" PROG " --help' for more information.\n");
    return 2;
}

static bool parse_ranks(const char *s, int *n)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > MAX_RANKS) return false;
    *n = (int)v;
    return true;
}

static bool parse_seconds(const char *s, int64_t *ms)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v <= 0 || v > 1e9) return false;
    *ms = (int64_t)(v * 1000.0 + 0.5);
    if (*ms == 0) *ms = 1;
    return true;
}

/* Handles one option; returns -1 to go on, else the exit status. */
static int parse_opt(int c, char *arg, const char *word, struct opts *o)
{
    switch (c) {
    case 'n':
        if (!parse_ranks(arg, &o->n))
            return bad_usage("invalid rank count '%s' (expected 1..4096)", arg);
        return -1;
    case 'e':
        if (!hf_env_ok(arg))
            return bad_usage("invalid --env '%s' (expected KEY=VALUE, KEY: letters, digits, _)",
                             arg);
        o->env[o->nenv++] = arg;
        return -1;
    case 't':
        if (!parse_seconds(arg, &o->timeout_ms))
            return bad_usage("invalid --timeout '%s' (expected seconds > 0)", arg);
        return -1;
    case 'F':
        o->hostfile = arg;
        return -1;
    case 'H':
        o->hosts = arg;
        return -1;
    case 'b':
        o->backend = arg;
        return -1;
    case 'C':
        o->cwd = arg;
        return -1;
    case 'S':
        o->ssh = arg;
        return -1;
    case 'p': {
        char *end;
        errno = 0;
        long port = strtol(arg, &end, 10);
        if (errno || end == arg || *end || port < 1 || port > 65535)
            return bad_usage("invalid --port '%s' (expected 1..65535)", arg);
        o->port = (int)port;
        return -1;
    }
    case 'D':
        o->dry_run = true;
        return -1;
    case 'h':
        usage(stdout);
        return 0;
    case ':':
        return bad_usage("option '%s' requires an argument", word);
    default:
        return bad_usage("unknown option '%s'", word);
    }
}

/* Fills o; returns -1 to go on, else the exit status (0 after --help). */
static int parse_args(int argc, char **argv, struct opts *o)
{
    static const struct option longopts[] = {
        {"env", required_argument, NULL, 'e'},
        {"timeout", required_argument, NULL, 't'},
        {"hostfile", required_argument, NULL, 'F'},
        {"hosts", required_argument, NULL, 'H'},
        {"backend", required_argument, NULL, 'b'},
        {"cwd", required_argument, NULL, 'C'},
        {"ssh", required_argument, NULL, 'S'},
        {"port", required_argument, NULL, 'p'},
        {"dry-run", no_argument, NULL, 'D'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct opts){.env = calloc((size_t)argc, sizeof(char *))};
    if (!o->env) return bad_usage("%s", strerror(errno));
    opterr = 0;
    int c;
    /* '+': stop at PROGRAM, whose own options are not ours. */
    while ((c = getopt_long(argc, argv, "+:hn:", longopts, NULL)) != -1) {
        /* The offending word: an unknown short option may sit inside a cluster. */
        const char *word = argv[optind - 1];
        char shortopt[3] = {'-', (char)optopt, '\0'};
        if (c == '?' && optopt && strncmp(word, "--", 2) != 0) word = shortopt;
        int rc = parse_opt(c, optarg, word, o);
        if (rc >= 0) return rc;
    }
    int modes = (o->n > 0) + (o->hostfile != NULL) + (o->hosts != NULL);
    if (modes == 0) return bad_usage("%s", "-n N, --hostfile FILE or --hosts LIST is required");
    if (modes > 1) return bad_usage("%s", "use one of -n, --hostfile and --hosts");
    if (optind >= argc) return bad_usage("%s", "missing PROGRAM");
    o->argv = argv + optind;
    return -1;
}

/* ------------------------------------------------------------------ output */

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && errno == EAGAIN) {
            /* Our stdout may be a non-blocking fd shared with someone else. */
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            poll(&pfd, 1, 100);
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else {
            return; /* e.g. EPIPE: nobody reads our output any more; drop it */
        }
    }
}

static void out_flush(struct out *o)
{
    write_all(o->fd, o->buf, o->len);
    o->len = 0;
}

/* Appends prefix, the line s[0..n) and a newline. */
static void out_line(struct out *o, const struct rank *k, const char *s, size_t n)
{
    if (o->len + k->prefix_len + n + 1 > sizeof o->buf) out_flush(o);
    memcpy(o->buf + o->len, k->prefix, k->prefix_len);
    o->len += k->prefix_len;
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len++] = '\n';
}

/* Prints the complete lines in s's buffer and keeps the unterminated rest, unless it
 * fills the whole buffer: then it is printed as a line of its own. */
static void emit_lines(struct stream *s, const struct rank *k)
{
    char *p = s->buf, *end = s->buf + s->len, *nl;
    while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        out_line(s->out, k, p, (size_t)(nl - p));
        p = nl + 1;
    }
    s->len = (size_t)(end - p);
    if (s->len == LINE_CAP) {
        out_line(s->out, k, p, s->len);
        s->len = 0;
    }
    memmove(s->buf, p, s->len);
    out_flush(s->out);
}

/* EOF (or an error): print a final unterminated line, then forget the pipe. */
static void close_stream(struct job *j, struct stream *s)
{
    if (s->len > 0) {
        out_line(s->out, &j->ranks[s->rank], s->buf, s->len);
        out_flush(s->out);
        s->len = 0;
    }
    close(s->fd);
    s->fd = -1;
    j->open_streams--;
}

static void read_stream(struct job *j, struct stream *s)
{
    ssize_t n = read(s->fd, s->buf + s->len, LINE_CAP - s->len);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
    if (n <= 0) {
        close_stream(j, s);
        return;
    }
    s->len += (size_t)n;
    emit_lines(s, &j->ranks[s->rank]);
}

/* ------------------------------------------------------------------ stopping */

/* One line to a remote rank's wrapper; a rank whose ssh is gone just drops it. */
static void ctl_send(struct rank *k, const char *line)
{
    if (k->ctl < 0) return;
    struct iovec v[2] = {{(void *)line, strlen(line)}, {"\n", 1}};
    if (writev(k->ctl, v, 2) < 0 && errno != EINTR) {
        close(k->ctl);
        k->ctl = -1;
    }
}

static const char *sig_word(int sig)
{
    switch (sig) {
    case SIGINT:
        return "INT";
    case SIGHUP:
        return "HUP";
    case SIGKILL:
        return "KILL";
    default:
        return "TERM";
    }
}

/* The local group (remote ranks' ssh clients ignore all but SIGKILL), and every remote
 * rank still running. Each rank also by its pid: one that left the group (setsid) would
 * otherwise keep the launcher waiting for it past the timeout and SIGKILL. */
static void signal_group(struct job *j, int sig)
{
    for (int r = 0; r < j->started; r++) {
        if (!j->ranks[r].running) continue;
        ctl_send(&j->ranks[r], sig_word(sig));
        kill(j->ranks[r].pid, sig);
    }
    if (j->pgid > 0) kill(-j->pgid, sig);
}

/* Is any process (a rank or a descendant that stayed in the group) left? */
static bool group_alive(const struct job *j)
{
    return j->pgid > 0 && kill(-j->pgid, 0) == 0;
}

/* Starts stopping the job with sig; SIGKILL follows after the grace period. */
static void stop(struct job *j, int sig)
{
    if (j->stopping) return;
    j->stopping = true;
    j->stop_sig = sig;
    signal_group(j, sig);
    j->kill_at = rm_now_ms() + GRACE_MS;
}

static void kill_now(struct job *j)
{
    signal_group(j, SIGKILL);
    j->killed = true;
    j->kill_at = 0;
    j->giveup_at = rm_now_ms() + GIVEUP_MS;
}

static void set_status(struct job *j, int status)
{
    if (j->status < 0) j->status = status;
}

static const char *signame(int sig)
{
    switch (sig) {
    case SIGINT:
        return "SIGINT";
    case SIGTERM:
        return "SIGTERM";
    case SIGHUP:
        return "SIGHUP";
    default:
        return "a signal";
    }
}

/* SIGINT/SIGTERM/SIGHUP to the launcher: forward it; a second one means "now". */
static void on_launcher_signal(struct job *j, int sig)
{
    set_status(j, 128 + sig);
    if (!j->stopping) {
        fprintf(stderr, PROG ": received %s; stopping the ranks\n", signame(sig));
        stop(j, sig);
    } else if (!j->killed) {
        fprintf(stderr, PROG ": received %s again; killing the ranks\n", signame(sig));
        kill_now(j);
    }
}

static void rank_exited(struct job *j, int r, int st)
{
    struct rank *k = &j->ranks[r];
    k->running = false;
    if (k->ctl >= 0) {
        close(k->ctl);
        k->ctl = -1;
    }
    if (--j->live == 0) {
        int64_t t = rm_now_ms() + GRACE_MS + GIVEUP_MS;
        if (!j->giveup_at || t < j->giveup_at) j->giveup_at = t;
    }
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (code == 0 || j->stopping) return; /* after stop(), deaths are expected */
    const char *more = j->live > 0 ? "; stopping the other ranks" : "";
    const char *host = k->host >= 0 ? j->p->hf.hosts[k->host].ssh : NULL;
    if (k->remote && code == 255)
        fprintf(stderr,
                PROG ": rank %d: ssh to %s failed with status 255 (see its message above; "
                     "check that 'ssh -o BatchMode=yes %s true' works)%s\n",
                r, host, host, more);
    else if (host)
        fprintf(stderr, PROG ": rank %d on %s exited with status %d%s%s\n", r, host, code,
                code > 128 && code < 128 + 65 ? " (killed by a signal)" : "", more);
    else if (WIFEXITED(st))
        fprintf(stderr, PROG ": rank %d exited with status %d%s\n", r, code, more);
    else
        fprintf(stderr, PROG ": rank %d was killed by signal %d (%s)%s\n", r, WTERMSIG(st),
                strsignal(WTERMSIG(st)), more);
    set_status(j, code);
    stop(j, SIGTERM);
}

/* Reaps every exited child: ranks, and orphans re-parented to us (ignored). */
static void reap(struct job *j)
{
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        for (int r = 0; r < j->started; r++) {
            if (j->ranks[r].running && j->ranks[r].pid == pid) {
                rank_exited(j, r, st);
                break;
            }
        }
    }
}

/* ------------------------------------------------------------------ guardian */

/* The guardian's body: wait for the group id, then for "done" or EOF. EOF means the
 * launcher died without cleaning up (SIGKILL, crash), so kill what is left of the job. */
_Noreturn static void guard(int fd)
{
    setpgid(0, 0); /* survive a kill aimed at the launcher's own process group */
    int null = open("/dev/null", O_RDWR);
    /* Do not hold the caller's pipes open after the launcher is gone. */
    for (int i = 0; null >= 0 && i < 3; i++) dup2(null, i);
    pid_t pgid = 0;
    char done;
    if (read(fd, &pgid, sizeof pgid) == (ssize_t)sizeof pgid && pgid > 0 && read(fd, &done, 1) != 1)
        kill(-pgid, SIGKILL);
    _exit(0);
}

/* PR_SET_PDEATHSIG covers the ranks, not their descendants (say, the real program
 * behind a wrapper script): the guardian outlives the launcher to cover those. It is
 * forked before any rank, so it holds none of their pipes; signals stay blocked in it. */
static int start_guardian(struct job *j)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(p[1]);
        guard(p[0]);
    }
    close(p[0]);
    if (pid < 0) {
        close(p[1]);
        return -1;
    }
    j->guard_pid = pid;
    j->guard_fd = p[1];
    return 0;
}

static void guardian_arm(struct job *j)
{
    if (j->guard_fd >= 0) write_all(j->guard_fd, (const char *)&j->pgid, sizeof j->pgid);
}

/* Everything is reaped: tell the guardian to exit quietly, and reap it. */
static void guardian_release(struct job *j)
{
    if (j->guard_fd < 0) return;
    write_all(j->guard_fd, "d", 1);
    close(j->guard_fd);
    waitpid(j->guard_pid, NULL, 0);
}

/* ------------------------------------------------------------------ starting ranks */

/* Generic part of a rank's child side: join the job's process group, die with the
 * launcher, wire up stdio and undo the launcher's signal setup. */
static void child_setup(const struct job *j, int r, int in_fd, int out_fd, int err_fd)
{
    setpgid(0, j->pgid); /* pgid 0 for rank 0: it becomes the group leader */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != j->self) _exit(127); /* the launcher died before prctl() */
    /* Ranks run in a background process group: reading a terminal would stop them. */
    if (in_fd >= 0) {
        dup2(in_fd, STDIN_FILENO);
    } else if (r != 0 || isatty(STDIN_FILENO)) {
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0 && null != STDIN_FILENO) {
            dup2(null, STDIN_FILENO);
            close(null);
        }
    }
    dup2(out_fd, STDOUT_FILENO);
    dup2(err_fd, STDERR_FILENO);
    sigaction(SIGPIPE, &j->old_pipe, NULL);
    sigaction(SIGCHLD, &j->old_chld, NULL);
}

/* A remote rank: ssh carries the environment in its command line; the signals we forward
 * go through the control pipe, so the ssh client itself must not die of them. */
_Noreturn static void exec_ssh(const struct job *j, int r)
{
    struct sigaction ign = {.sa_handler = SIG_IGN};
    sigaction(SIGINT, &ign, NULL);
    sigaction(SIGTERM, &ign, NULL);
    sigaction(SIGHUP, &ign, NULL);
    sigprocmask(SIG_SETMASK, &j->old_mask, NULL);
    char **argv = j->ranks[r].ssh_argv;
    execvp(argv[0], argv);
    dprintf(STDERR_FILENO, PROG ": cannot run %s for rank %d: %s\n", argv[0], r, strerror(errno));
    _exit(255);
}

/* How a rank is started, in the child after child_setup(). */
_Noreturn static void exec_rank(const struct job *j, int r)
{
    char rank[16], size[16];
    if (j->ranks[r].remote) exec_ssh(j, r);
    snprintf(rank, sizeof rank, "%d", r);
    snprintf(size, sizeof size, "%d", j->p->n);
    if (setenv("JACCL_RANK", rank, 1) || setenv("JACCL_SIZE", size, 1) ||
        setenv("JACCL_COORDINATOR", j->p->coord, 1) || setenv("JACCL_JOB_KEY", j->p->key, 1) ||
        (j->devices_file[0] && setenv("JACCL_IBV_DEVICES", j->devices_file, 1))) {
        dprintf(STDERR_FILENO, PROG ": cannot set the environment: %s\n", strerror(errno));
        _exit(127);
    }
    for (int i = 0; i < j->p->nenv; i++) putenv(j->p->env[i]);
    if (j->p->cwd[0] && chdir(j->p->cwd) != 0) {
        dprintf(STDERR_FILENO, PROG ": rank %d: cannot cd to %s: %s\n", r, j->p->cwd,
                strerror(errno));
        _exit(127);
    }
    /* Unblock last: a SIGTERM sent to the group meanwhile is delivered now. */
    sigprocmask(SIG_SETMASK, &j->old_mask, NULL);
    execvp(j->o->argv[0], j->o->argv);
    dprintf(STDERR_FILENO, PROG ": cannot run %s: %s\n", j->o->argv[0], strerror(errno));
    _exit(127);
}

static void init_stream(struct job *j, struct stream *s, int r, int fd, int which)
{
    s->fd = fd;
    s->rank = r;
    s->out = &outs[which];
    s->len = 0;
    j->open_streams++;
}

/* Pipes, fork, and bookkeeping for rank r; returns 0 or an errno value. */
static int start_rank(struct job *j, int r)
{
    struct rank *k = &j->ranks[r];
    int out[2], err[2], ctl[2] = {-1, -1}, e;
    if (k->remote && pipe2(ctl, O_CLOEXEC) != 0) return errno;
    if (pipe2(out, O_CLOEXEC) != 0) {
        e = errno;
        goto close_ctl;
    }
    if (pipe2(err, O_CLOEXEC) != 0) {
        e = errno;
        goto close_out;
    }
    pid_t pid = fork();
    if (pid < 0) {
        e = errno;
        goto close_err;
    }
    if (pid == 0) {
        child_setup(j, r, ctl[0], out[1], err[1]);
        exec_rank(j, r);
    }
    if (k->remote) {
        close(ctl[0]);
        k->ctl = ctl[1];
        ctl_send(k, j->p->key);
    }
    /* Also set here: the child may not have run yet when we next signal the group. */
    setpgid(pid, j->pgid ? j->pgid : pid);
    if (!j->pgid) {
        j->pgid = pid;
        guardian_arm(j);
    }
    close(out[1]);
    close(err[1]);
    k->pid = pid;
    k->running = true;
    k->prefix_len = (size_t)snprintf(k->prefix, sizeof k->prefix, "[%d] ", r);
    init_stream(j, &k->io[0], r, out[0], 0);
    init_stream(j, &k->io[1], r, err[0], 1);
    j->started++;
    j->live++;
    return 0;
close_err:
    close(err[0]);
    close(err[1]);
close_out:
    close(out[0]);
    close(out[1]);
close_ctl:
    if (ctl[0] >= 0) close(ctl[0]);
    if (ctl[1] >= 0) close(ctl[1]);
    return e;
}

/* ------------------------------------------------------------------ setup */

static int setup_signals(struct job *j)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    if (sigprocmask(SIG_BLOCK, &set, &j->old_mask) != 0) return -1;
    struct sigaction ign = {.sa_handler = SIG_IGN}, dfl = {.sa_handler = SIG_DFL};
    /* A closed stdout must not kill us while ranks still run. */
    sigaction(SIGPIPE, &ign, &j->old_pipe);
    /* An inherited SIG_IGN would make the kernel reap ranks before we see their status. */
    sigaction(SIGCHLD, &dfl, &j->old_chld);
    /* Orphaned descendants come to us, so we can reap them instead of leaving zombies. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    j->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    return j->sigfd < 0 ? -1 : 0;
}

/* Allocated up front, so output never fails later; untouched pages cost nothing. */
static int alloc_buffers(struct job *j)
{
    for (int r = 0; r < j->p->n; r++)
        for (int i = 0; i < 2; i++)
            if (!(j->ranks[r].io[i].buf = malloc(LINE_CAP))) return -1;
    return 0;
}

/* Local ranks read the device matrix from a file of ours, removed when the job ends. */
static int write_devices_file(struct job *j)
{
    bool local = false;
    for (int r = 0; r < j->p->n; r++) local |= !j->p->remote[r];
    if (!j->p->devices || !local) return 0;
    snprintf(j->devices_file, sizeof j->devices_file, "/tmp/jaccl-devices.XXXXXX");
    int fd = mkstemp(j->devices_file);
    if (fd < 0) {
        j->devices_file[0] = '\0';
        return -1;
    }
    write_all(fd, j->p->devices, strlen(j->p->devices));
    write_all(fd, "\n", 1);
    close(fd);
    return 0;
}

static int prepare_ranks(struct job *j)
{
    for (int r = 0; r < j->p->n; r++) {
        struct rank *k = &j->ranks[r];
        k->host = j->p->host[r];
        k->remote = j->p->remote[r];
        k->ctl = -1;
        if (k->remote && !(k->ssh_argv = plan_ssh_argv(j->p, r, &k->ssh_cmd))) return -1;
    }
    return 0;
}

static int job_init(struct job *j)
{
    int n = j->p->n;
    j->self = getpid();
    j->ranks = calloc((size_t)n, sizeof *j->ranks);
    j->pfds = calloc((size_t)(2 * n + 1), sizeof *j->pfds);
    j->pmap = calloc((size_t)(2 * n + 1), sizeof *j->pmap);
    if (!j->ranks || !j->pfds || !j->pmap || prepare_ranks(j) != 0 || alloc_buffers(j) != 0 ||
        write_devices_file(j) != 0 || setup_signals(j) != 0 || start_guardian(j) != 0) {
        fprintf(stderr, PROG ": cannot set up: %s\n", strerror(errno));
        return -1;
    }
    if (j->o->timeout_ms) j->timeout_at = rm_now_ms() + j->o->timeout_ms;
    return 0;
}

static void job_free(struct job *j)
{
    for (int r = 0; j->ranks && r < j->p->n; r++) {
        for (int i = 0; i < 2; i++) free(j->ranks[r].io[i].buf);
        free(j->ranks[r].ssh_argv);
        free(j->ranks[r].ssh_cmd);
        if (j->ranks[r].remote && j->ranks[r].ctl >= 0) close(j->ranks[r].ctl);
    }
    if (j->devices_file[0]) unlink(j->devices_file);
    free(j->ranks);
    free(j->pfds);
    free(j->pmap);
    if (j->sigfd >= 0) close(j->sigfd);
}

/* ------------------------------------------------------------------ event loop */

static int build_pollfds(struct job *j)
{
    int n = 0;
    j->pfds[n++] = (struct pollfd){.fd = j->sigfd, .events = POLLIN};
    for (int r = 0; r < j->started; r++) {
        for (int i = 0; i < 2; i++) {
            struct stream *s = &j->ranks[r].io[i];
            if (s->fd < 0) continue;
            j->pmap[n] = s;
            j->pfds[n++] = (struct pollfd){.fd = s->fd, .events = POLLIN};
        }
    }
    return n;
}

static void handle_signals(struct job *j)
{
    struct signalfd_siginfo si;
    while (read(j->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGCHLD)
            reap(j);
        else
            on_launcher_signal(j, (int)si.ssi_signo);
    }
}

static int64_t earliest(int64_t a, int64_t b)
{
    if (!a) return b;
    if (!b) return a;
    return a < b ? a : b;
}

static int poll_timeout(const struct job *j, bool leftovers)
{
    int64_t t = rm_now_ms(), at = j->kill_at;
    if (!j->stopping) at = earliest(at, j->timeout_at);
    if (j->live == 0) at = earliest(at, j->giveup_at);
    if (leftovers) at = earliest(at, t + PROBE_MS);
    if (!at) return -1;
    return at <= t ? 0 : (int)(at - t);
}

/* All ranks have exited, but processes they started remain in the group. Those often
 * ignore SIGINT (shells do so for background jobs), hence SIGTERM even after SIGINT. */
static void stop_leftovers(struct job *j)
{
    if (!j->stopping) {
        fprintf(stderr, PROG ": all ranks exited; stopping the processes they left behind\n");
        stop(j, SIGTERM);
    } else if (j->stop_sig != SIGTERM && !j->killed) {
        j->stop_sig = SIGTERM;
        signal_group(j, SIGTERM);
    }
}

/* Deadlines, and descendants left behind by ranks that have all exited. */
static void check_timers(struct job *j, bool leftovers)
{
    int64_t t = rm_now_ms();
    if (j->timeout_at && !j->stopping && t >= j->timeout_at) {
        fprintf(stderr, PROG ": timeout of %.3g s reached; stopping the ranks\n",
                (double)j->o->timeout_ms / 1000.0);
        set_status(j, 124);
        stop(j, SIGTERM);
    }
    if (leftovers) stop_leftovers(j);
    if (j->kill_at && t >= j->kill_at) {
        if (j->live > 0)
            fprintf(stderr, PROG ": %d rank(s) still running after %d s; sending SIGKILL\n",
                    j->live, GRACE_MS / 1000);
        else if (leftovers)
            fprintf(stderr,
                    PROG ": processes left by the ranks still running after %d s; "
                         "sending SIGKILL\n",
                    GRACE_MS / 1000);
        kill_now(j);
    }
}

static bool job_done(const struct job *j, bool leftovers)
{
    if (j->live > 0) return false;
    if (!leftovers && j->open_streams == 0) return true;
    return j->giveup_at && rm_now_ms() >= j->giveup_at;
}

static void run(struct job *j)
{
    for (;;) {
        bool leftovers = j->live == 0 && group_alive(j);
        check_timers(j, leftovers);
        if (job_done(j, leftovers)) break;
        int n = build_pollfds(j);
        if (poll(j->pfds, (nfds_t)n, poll_timeout(j, leftovers)) < 0 && errno != EINTR) {
            fprintf(stderr, PROG ": poll: %s\n", strerror(errno));
            set_status(j, 1);
            break;
        }
        /* Output first, so a failing rank's last words come before the verdict. */
        for (int i = 1; i < n; i++)
            if (j->pfds[i].revents) read_stream(j, j->pmap[i]);
        if (j->pfds[0].revents) handle_signals(j);
    }
}

/* Whatever the loop left (only after giving up or a poll failure): kill and reap. */
static void finish(struct job *j)
{
    j->stopping = true; /* deaths from here on are ours */
    for (int r = 0; r < j->started; r++)
        for (int i = 0; i < 2; i++)
            if (j->ranks[r].io[i].fd >= 0) close_stream(j, &j->ranks[r].io[i]);
    if (j->live > 0 || group_alive(j)) signal_group(j, SIGKILL);
    for (int r = 0; r < j->started; r++) {
        int st;
        if (j->ranks[r].running && waitpid(j->ranks[r].pid, &st, 0) == j->ranks[r].pid)
            rank_exited(j, r, st);
    }
}

static int launch(const struct opts *o)
{
    struct job j = {.o = o, .p = &o->plan, .status = -1, .sigfd = -1, .guard_fd = -1};
    outs[0].fd = STDOUT_FILENO;
    outs[1].fd = STDERR_FILENO;
    if (job_init(&j) != 0) {
        job_free(&j);
        return 1;
    }
    for (int r = 0; r < j.p->n; r++) {
        int e = start_rank(&j, r);
        if (e) {
            fprintf(stderr, PROG ": cannot start rank %d: %s\n", r, strerror(e));
            set_status(&j, 1);
            stop(&j, SIGTERM);
            break;
        }
    }
    run(&j);
    finish(&j);
    guardian_release(&j);
    job_free(&j);
    return j.status < 0 ? 0 : j.status;
}

/* Pipes must not land on fds 0-2 (dup2 onto itself would keep O_CLOEXEC). */
static void ensure_std_fds(void)
{
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) < 0) _exit(1);
}

int main(int argc, char **argv)
{
    struct opts o;
    ensure_std_fds();
    int rc = parse_args(argc, argv, &o);
    if (rc < 0) {
        struct plan_args a = {.n = o.n,
                              .hostfile = o.hostfile,
                              .hosts = o.hosts,
                              .backend = o.backend,
                              .cwd = o.cwd,
                              .ssh = o.ssh,
                              .port = o.port,
                              .env = o.env,
                              .nenv = o.nenv,
                              .argv = o.argv};
        if (plan_make(&o.plan, &a) != 0)
            rc = 2;
        else if (o.dry_run)
            plan_print(&o.plan, stdout), rc = 0;
        else
            rc = launch(&o);
        plan_free(&o.plan);
    }
    free(o.env);
    return rc;
}
