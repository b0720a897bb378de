/* Running ranks on other hosts over ssh: the remote command line and its wrapper. */
#ifndef JACCL_TOOLS_REMOTE_H
#define JACCL_TOOLS_REMOTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Does the ssh destination ("user@host" allowed) name this machine (an address of one of
 * its interfaces, or localhost)? Names that do not resolve here are remote. */
bool rm_is_local(const char *dest);

/* Milliseconds on the monotonic clock. */
int64_t rm_now_ms(void);

/* The host part of an ssh destination, without "user@" (points into dest). */
const char *rm_hostpart(const char *dest);

/* argv for running remote_cmd on dest: the words of ssh_cmd (e.g. "ssh -p 2222"), then
 * BatchMode and a connect timeout (the user's own -o options come first and win), then
 * dest and the command. NULL-terminated, malloc'd as one block; NULL on failure. */
char **rm_ssh_argv(const char *ssh_cmd, const char *dest, const char *remote_cmd);

/* s in single quotes for a POSIX shell (malloc'd). */
char *rm_quote(const char *s);

struct rm_spec {
    const char *cwd;     /* directory to run in */
    bool cwd_strict;     /* fail when it is missing (else stay in the home directory) */
    const char *devices; /* JSON of the JACCL_IBV_DEVICES file, or NULL */
    char **env;          /* "K=V" to export */
    size_t nenv;
    char *const *argv; /* PROGRAM ARGS... */
};

/* The command ssh runs remotely: a small sh wrapper around the program that reads the job
 * key and then control lines (INT, TERM, HUP, KILL) from its stdin, and stops every process
 * of the session when a line says so or when the connection closes. malloc'd. */
char *rm_command(const struct rm_spec *s);

/* Runs argv with stdin from /dev/null, collecting stdout and stderr (NUL-terminated,
 * malloc'd, at most 4 MiB each) until it exits or timeout_ms passes (then it is killed:
 * returns -2). Returns its exit status (128+S for signal S) or -1 if it cannot be run. */
int rm_capture(char *const *argv, int timeout_ms, char **out, char **err);

/* The same for n commands at once; done(i, status, out, err, arg) is called as each one
 * finishes (out and err then belong to the callee). */
typedef void (*rm_done_fn)(int i, int status, char *out, char *err, void *arg);
void rm_capture_all(char **const *argvs, int n, int timeout_ms, rm_done_fn done, void *arg);

#endif
