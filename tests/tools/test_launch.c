/* Tests for jaccl-launch: runs the real executable (path in $JACCL_LAUNCH) and checks its
 * output, exit status, and that no rank or descendant survives it. Every run is bounded:
 * a launcher that overstays its deadline is SIGKILLed and the test fails. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RUN_DEADLINE_MS 20000
#define OUT_CAP         (1 << 20)

struct proc {
    pid_t pid;
    int out, err; /* read ends of the launcher's stdout and stderr */
};

struct result {
    int status; /* exit status, or 128+S if killed by signal S */
    double secs;
    size_t out_len, err_len;
    char out[OUT_CAP + 1];
    char err[OUT_CAP + 1];
};

static struct result res; /* big; tests run one at a time */
static char tmpdir[64];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *launcher(void)
{
    const char *p = getenv("JACCL_LAUNCH");
    return p && *p ? p : "./jaccl-launch";
}

/* Starts the launcher with args (NULL-terminated, without argv[0]). */
static struct proc spawn(const char *const *args)
{
    const char *argv[64] = {launcher()};
    int n = 1, out[2], err[2];
    while (args[n - 1] && n < 63) argv[n] = args[n - 1], n++;
    argv[n] = NULL;
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    assert_int_equal(pipe2(err, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(out[1], STDOUT_FILENO);
        dup2(err[1], STDERR_FILENO);
        execv(argv[0], (char *const *)argv);
        dprintf(STDERR_FILENO, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(99);
    }
    close(out[1]);
    close(err[1]);
    return (struct proc){.pid = pid, .out = out[0], .err = err[0]};
}

/* Reads fd into buf; returns false at EOF (and closes fd). */
static bool drain(int *fd, char *buf, size_t *len)
{
    size_t room = OUT_CAP - *len;
    char sink[4096];
    ssize_t n = room ? read(*fd, buf + *len, room) : read(*fd, sink, sizeof sink);
    if (n < 0 && errno == EINTR) return true;
    if (n <= 0) {
        close(*fd);
        *fd = -1;
        return false;
    }
    if (room) *len += (size_t)n;
    buf[*len] = '\0';
    return true;
}

/* Collects the launcher's output and status into res; fails after the deadline. */
static void collect(struct proc *p, double started)
{
    res.out_len = res.err_len = 0;
    res.out[0] = res.err[0] = '\0';
    double deadline = started + RUN_DEADLINE_MS / 1000.0;
    while (p->out >= 0 || p->err >= 0) {
        struct pollfd pfd[2] = {{.fd = p->out, .events = POLLIN}, {.fd = p->err, .events = POLLIN}};
        int left = (int)((deadline - now_s()) * 1000);
        if (left <= 0 || poll(pfd, 2, left) == 0) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, NULL, 0);
            fail_msg("launcher still running after %d ms", RUN_DEADLINE_MS);
        }
        if (pfd[0].revents) drain(&p->out, res.out, &res.out_len);
        if (pfd[1].revents) drain(&p->err, res.err, &res.err_len);
    }
    int st;
    assert_int_equal(waitpid(p->pid, &st, 0), p->pid);
    res.secs = now_s() - started;
    res.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void run(const char *const *args)
{
    double t = now_s();
    struct proc p = spawn(args);
    collect(&p, t);
}

/* How many lines of s equal line. */
static int count_lines(const char *s, const char *line)
{
    int n = 0;
    size_t len = strlen(line);
    for (const char *p = s; *p;) {
        const char *nl = strchr(p, '\n');
        size_t l = nl ? (size_t)(nl - p) : strlen(p);
        if (l == len && memcmp(p, line, len) == 0) n++;
        p += l + (nl != NULL);
    }
    return n;
}

/* ------------------------------------------------------------------ pid markers */

static int setup_tmpdir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/jaccl-launch-test.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_tmpdir(void **state)
{
    (void)state;
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    char path[512];
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", tmpdir, e->d_name);
        unlink(path);
    }
    if (d) closedir(d);
    return rmdir(tmpdir);
}

/* "D=<tmpdir>" for --env. */
static const char *dir_env(void)
{
    static char kv[80];
    snprintf(kv, sizeof kv, "D=%s", tmpdir);
    return kv;
}

/* Reads the pids a rank wrote to $D/<rank> ("pid pid ..."); returns how many. */
static int read_pids(int rank, pid_t *pids, int max)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%d", tmpdir, rank);
    FILE *f = fopen(path, "r");
    int n = 0, v;
    while (f && n < max && fscanf(f, "%d", &v) == 1) pids[n++] = v;
    if (f) fclose(f);
    return n;
}

/* Waits until ranks 0..n-1 of the launcher p have all written their marker file. */
static void wait_markers(const struct proc *p, int n)
{
    double deadline = now_s() + 10;
    for (int r = 0; r < n; r++) {
        pid_t pid;
        while (read_pids(r, &pid, 1) < 1) {
            if (now_s() > deadline) {
                kill(p->pid, SIGKILL); /* its guardian takes the ranks down */
                waitpid(p->pid, NULL, 0);
                fail_msg("rank %d did not start", r);
            }
            usleep(10000);
        }
    }
}

static bool pid_gone(pid_t pid)
{
    return kill(pid, 0) != 0 && errno == ESRCH;
}

/* Every pid recorded by ranks 0..n-1 is gone (marker files are optional per rank). */
static void assert_markers_gone(int n)
{
    for (int r = 0; r < n; r++) {
        pid_t pids[4];
        int k = read_pids(r, pids, 4);
        for (int i = 0; i < k; i++) {
            if (!pid_gone(pids[i])) kill(pids[i], SIGKILL); /* do not leak it */
            assert_true(pid_gone(pids[i]));
        }
    }
}

/* Writes "$$ $!" (the shell and its background sleep) atomically to $D/$JACCL_RANK. */
#define MARK "echo $$ $! > \"$D/$JACCL_RANK.tmp\" && mv \"$D/$JACCL_RANK.tmp\" \"$D/$JACCL_RANK\""

/* ------------------------------------------------------------------ tests */

/* Every rank prints its rank, the size and the coordinator, prefixed by its rank. */
static void test_env_and_prefix(void **state)
{
    (void)state;
    const char *args[] = {"-n", "3", "sh", "-c", "echo $JACCL_RANK $JACCL_SIZE $JACCL_COORDINATOR",
                          NULL};
    run(args);
    assert_int_equal(res.status, 0);
    char first[64] = "", coord[64];
    int seen = 0, lines = 0, port = 0;
    for (char *line = strtok(res.out, "\n"); line; line = strtok(NULL, "\n"), lines++) {
        int pr, r, size;
        assert_int_equal(sscanf(line, "[%d] %d %d %63s", &pr, &r, &size, coord), 4);
        assert_int_equal(pr, r);
        assert_int_equal(size, 3);
        assert_true(r >= 0 && r < 3);
        seen |= 1 << r;
        if (!first[0]) memcpy(first, coord, sizeof coord);
        assert_string_equal(coord, first);
    }
    assert_int_equal(lines, 3);
    assert_int_equal(seen, 7);
    assert_int_equal(sscanf(first, "127.0.0.1:%d", &port), 1);
    assert_true(port > 0 && port < 65536);
}

static void test_failure_stops_others(void **state)
{
    (void)state;
    /* Rank 1 fails once the others sleep, so their sleeps are recorded and must die. */
    const char *args[] = {
        "-n",
        "4",
        "--env",
        dir_env(),
        "sh",
        "-c",
        "if [ $JACCL_RANK = 1 ]; then"
        "  while [ ! -e \"$D/0\" ] || [ ! -e \"$D/2\" ] || [ ! -e \"$D/3\" ]; do sleep 0.01; done;"
        "  echo bye; exit 3; fi; sleep 30 & " MARK "; wait",
        NULL};
    run(args);
    assert_int_equal(res.status, 3);
    assert_true(res.secs < 10);
    assert_int_equal(count_lines(res.out, "[1] bye"), 1);
    assert_non_null(strstr(res.err, "rank 1 exited with status 3"));
    assert_markers_gone(4);
}

static void test_sigterm_stops_ranks(void **state)
{
    (void)state;
    const char *args[] = {"-n", "2", "--env", dir_env(), "sh", "-c", "sleep 30 & " MARK "; wait",
                          NULL};
    double t = now_s();
    struct proc p = spawn(args);
    wait_markers(&p, 2);
    kill(p.pid, SIGTERM);
    collect(&p, t);
    assert_int_equal(res.status, 128 + SIGTERM);
    assert_true(res.secs < 10);
    assert_non_null(strstr(res.err, "received SIGTERM"));
    assert_markers_gone(2);
}

/* Ranks that ignore SIGTERM get SIGKILL after the grace period. */
static void test_sigkill_after_grace(void **state)
{
    (void)state;
    const char *args[] = {
        "-n", "2", "--env", dir_env(), "sh", "-c", "trap '' INT TERM; sleep 30 & " MARK "; wait",
        NULL};
    double t = now_s();
    struct proc p = spawn(args);
    wait_markers(&p, 2);
    kill(p.pid, SIGINT);
    collect(&p, t);
    assert_int_equal(res.status, 128 + SIGINT);
    assert_true(res.secs > 1.5 && res.secs < 10);
    assert_non_null(strstr(res.err, "2 rank(s) still running after 2 s; sending SIGKILL"));
    assert_markers_gone(2);
}

/* SIGKILL to the launcher: the ranks (PDEATHSIG) and their children (guardian) die. */
static void test_launcher_killed(void **state)
{
    (void)state;
    const char *args[] = {"-n", "2", "--env", dir_env(), "sh", "-c", "sleep 30 & " MARK "; wait",
                          NULL};
    /* Orphans come to us, so we can tell dead (reaped) from zombie. */
    assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    struct proc p = spawn(args);
    wait_markers(&p, 2);
    kill(p.pid, SIGKILL);
    waitpid(p.pid, NULL, 0);
    close(p.out);
    close(p.err);
    double deadline = now_s() + 5;
    bool all_gone = false;
    while (!all_gone && now_s() < deadline) {
        while (waitpid(-1, NULL, WNOHANG) > 0) continue;
        all_gone = true;
        for (int r = 0; r < 2; r++) {
            pid_t pids[2];
            int k = read_pids(r, pids, 2);
            for (int i = 0; i < k; i++) all_gone &= pid_gone(pids[i]);
        }
        if (!all_gone) usleep(10000);
    }
    prctl(PR_SET_CHILD_SUBREAPER, 0);
    while (waitpid(-1, NULL, WNOHANG) > 0) continue;
    assert_markers_gone(2);
}

/* Descendants left behind by ranks that succeeded are stopped too. */
static void test_leftovers_stopped(void **state)
{
    (void)state;
    const char *args[] = {"-n", "2", "--env", dir_env(), "sh", "-c", "sleep 30 & " MARK, NULL};
    run(args);
    assert_int_equal(res.status, 0);
    assert_true(res.secs < 10);
    assert_non_null(strstr(res.err, "stopping the processes they left behind"));
    assert_markers_gone(2);
}

static void test_env_option(void **state)
{
    (void)state;
    const char *args[] = {"-n",
                          "2",
                          "--env",
                          "FOO=bar",
                          "--env=BAZ=a=b",
                          "--env",
                          "JACCL_SIZE=7",
                          "sh",
                          "-c",
                          "echo \"$FOO $BAZ $JACCL_SIZE\"",
                          NULL};
    run(args);
    assert_int_equal(res.status, 0);
    assert_int_equal(count_lines(res.out, "[0] bar a=b 7"), 1);
    assert_int_equal(count_lines(res.out, "[1] bar a=b 7"), 1);
}

static void test_program_args_untouched(void **state)
{
    (void)state;
    const char *args[] = {"-n", "1",  "--",    "sh", "-c", "printf '%s\\n' \"$*\"",
                          "sh", "-n", "--env", NULL};
    run(args);
    assert_int_equal(res.status, 0);
    assert_string_equal(res.out, "[0] -n --env\n");
}

static void test_missing_program(void **state)
{
    (void)state;
    const char *args[] = {"-n", "2", "/nonexistent/jaccl-no-such-program", NULL};
    run(args);
    assert_int_equal(res.status, 127);
    assert_non_null(strstr(res.err, "jaccl-launch: cannot run /nonexistent/jaccl-no-such-program"));
}

static void test_bad_args(void **state)
{
    (void)state;
    static const char *const cases[][8] = {
        {NULL},
        {"true", NULL},
        {"-n", NULL},
        {"-n", "0", "true", NULL},
        {"-n", "x", "true", NULL},
        {"-n", "99999", "true", NULL},
        {"-n", "2", NULL},
        {"-n", "2", "--env", "NOEQUALS", "true", NULL},
        {"-n", "2", "--env", "=v", "true", NULL},
        {"-n", "2", "--env", "A B=v", "true", NULL},
        {"-n", "2", "--port", "12abc", "true", NULL},
        {"-n", "2", "--port", "0", "true", NULL},
        {"-n", "2", "--timeout", "-1", "true", NULL},
        {"-n", "2", "--timeout", "soon", "true", NULL},
        {"-n", "2", "--bogus", "true", NULL},
        {"-n", "2", "-q", "true", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run(cases[i]);
        assert_int_equal(res.status, 2);
        assert_int_equal(res.out_len, 0);
        assert_non_null(strstr(res.err, "jaccl-launch: "));
    }
}

static void test_help(void **state)
{
    (void)state;
    const char *args[] = {"--help", NULL};
    run(args);
    assert_int_equal(res.status, 0);
    assert_non_null(strstr(res.out, "Usage: jaccl-launch -n N"));
}

static void test_unterminated_line(void **state)
{
    (void)state;
    const char *args[] = {"-n", "2", "sh", "-c", "printf 'one\\ntwo'; printf 'x\\ny' >&2", NULL};
    run(args);
    assert_int_equal(res.status, 0);
    for (int r = 0; r < 2; r++) {
        char l[4][32];
        snprintf(l[0], sizeof l[0], "[%d] one", r);
        snprintf(l[1], sizeof l[1], "[%d] two", r);
        snprintf(l[2], sizeof l[2], "[%d] x", r);
        snprintf(l[3], sizeof l[3], "[%d] y", r);
        assert_int_equal(count_lines(res.out, l[0]), 1);
        assert_int_equal(count_lines(res.out, l[1]), 1);
        assert_int_equal(count_lines(res.err, l[2]), 1);
        assert_int_equal(count_lines(res.err, l[3]), 1);
    }
    assert_int_equal(res.out_len, strlen("[0] one\n[0] two\n") * 2);
}

/* A line longer than the launcher's buffer is split, each piece prefixed. */
static void test_long_line(void **state)
{
    (void)state;
    const char *args[] = {"-n", "1", "sh", "-c", "head -c 200000 /dev/zero | tr '\\0' a", NULL};
    run(args);
    assert_int_equal(res.status, 0);
    size_t as = 0;
    int lines = 0;
    for (char *line = strtok(res.out, "\n"); line; line = strtok(NULL, "\n"), lines++) {
        assert_memory_equal(line, "[0] ", 4);
        assert_int_equal(strspn(line + 4, "a"), strlen(line + 4));
        as += strlen(line + 4);
    }
    assert_int_equal(as, 200000);
    assert_true(lines >= 2);
}

static void test_killed_rank(void **state)
{
    (void)state;
    const char *args[] = {
        "-n", "2", "sh", "-c", "if [ $JACCL_RANK = 1 ]; then kill -9 $$; fi; exec sleep 30", NULL};
    run(args);
    assert_int_equal(res.status, 128 + SIGKILL);
    assert_true(res.secs < 10);
    assert_non_null(strstr(res.err, "rank 1 was killed by signal 9"));
}

static void test_timeout(void **state)
{
    (void)state;
    const char *args[] = {"--timeout", "0.3", "-n", "2", "sleep", "30", NULL};
    run(args);
    assert_int_equal(res.status, 124);
    assert_true(res.secs < 10);
    assert_non_null(strstr(res.err, "timeout"));
}

/* A rank that leaves the job's process group (setsid) is still stopped at the timeout:
 * before, the launcher waited for it to exit on its own (here after 30 s, past the
 * run's deadline). Rank 0 leads the group, so it stays; setsid runs in rank 1 itself. */
static void test_rank_left_group(void **state)
{
    (void)state;
    const char *args[] = {"--timeout",
                          "0.3",
                          "-n",
                          "2",
                          "sh",
                          "-c",
                          "if [ $JACCL_RANK = 1 ]; then exec setsid sleep 30; fi; exec sleep 30",
                          NULL};
    run(args);
    assert_int_equal(res.status, 124);
}

static void test_all_succeed(void **state)
{
    (void)state;
    const char *args[] = {"-n", "4", "true", NULL};
    run(args);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.out_len + res.err_len, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_env_and_prefix),
        cmocka_unit_test_setup_teardown(test_failure_stops_others, setup_tmpdir, remove_tmpdir),
        cmocka_unit_test_setup_teardown(test_sigterm_stops_ranks, setup_tmpdir, remove_tmpdir),
        cmocka_unit_test_setup_teardown(test_sigkill_after_grace, setup_tmpdir, remove_tmpdir),
        cmocka_unit_test_setup_teardown(test_launcher_killed, setup_tmpdir, remove_tmpdir),
        cmocka_unit_test_setup_teardown(test_leftovers_stopped, setup_tmpdir, remove_tmpdir),
        cmocka_unit_test(test_env_option),
        cmocka_unit_test(test_program_args_untouched),
        cmocka_unit_test(test_missing_program),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_unterminated_line),
        cmocka_unit_test(test_long_line),
        cmocka_unit_test(test_killed_rank),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_rank_left_group),
        cmocka_unit_test(test_all_succeed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
