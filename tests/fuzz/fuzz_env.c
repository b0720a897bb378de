/*
 * libFuzzer harness: the environment parser.  Each input line is one
 * variable: its first byte picks a name jaccl reads, the rest is the value.
 * The raw input also goes, as one string, to the parsers of single values
 * (JACCL_ALGO, JACCL_JOB_KEY, host:port).
 */
#include "../env_vars.h"
#include "core/env.h"
#include "fuzz_common.h"
#include "util/auth.h"
#include "util/log.h"
#include "util/sock.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    jaccl_log_level_current = -1; /* the parser's messages would drown the fuzzer's */
    return 0;
}

static void single_values(const char *s)
{
    const struct jaccl_algo_ops *algo[JACCL_COLL_COUNT];
    struct jaccl_err e = {.rank = -1};
    struct jaccl_key key;
    char host[256], port[16];
    jaccl_env_parse_algo(s, algo, &e);
    jaccl_auth_parse_key(s, &key);
    jaccl_sock_split_hostport(s, host, sizeof(host), port, sizeof(port));
}

extern char **environ;

/*
 * The variables go into an environment of our own: setenv() would leak every
 * value it replaces and grow without bound over millions of runs.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_cstring(data, size), *vars[64], **saved = environ;
    size_t n = 0;
    if (!s) return 0;
    single_values(s);
    for (char *line = s, *next; line && *line && n < 63; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        const char *name = jaccl_test_env_vars[(unsigned char)line[0] % JACCL_TEST_ENV_NVARS];
        size_t len = strlen(name) + strlen(line + 1) + 2;
        if (!(vars[n] = malloc(len))) break;
        snprintf(vars[n++], len, "%s=%s", name, line + 1);
    }
    vars[n] = NULL;
    struct jaccl_env env;
    struct jaccl_err e = {.rank = -1};
    environ = vars;
    jaccl_env_parse(&env, NULL, &e);
    environ = saved;
    for (size_t i = 0; i < n; i++) free(vars[i]);
    free(s);
    return 0;
}
