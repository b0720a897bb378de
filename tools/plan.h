/* What a job runs where: ranks on hosts, environment, coordinator, job key, device file. */
#ifndef JACCL_TOOLS_PLAN_H
#define JACCL_TOOLS_PLAN_H

#include <stdbool.h>
#include <stdio.h>

#include "hostfile.h"

struct plan_args {
    int n;                /* -n N: local ranks, no hostfile */
    const char *hostfile; /* or a hostfile */
    const char *hosts;    /* or a host list */
    const char *backend;  /* NULL: the hostfile's */
    const char *cwd;      /* NULL: the current directory, if it exists there */
    const char *ssh;      /* NULL: $JACCL_SSH or "ssh" */
    int port;             /* 0: pick */
    char **env;           /* --env K=V */
    int nenv;
    char **argv; /* PROGRAM ARGS */
};

struct plan {
    struct hostfile hf; /* empty for -n N */
    int n;
    int *host;    /* per rank: index in hf.hosts, -1 for -n N */
    bool *remote; /* per rank: through ssh */
    char **env;   /* backend variables, hostfile envs, --env: applied in this order */
    int nenv;
    char *devices; /* JACCL_IBV_DEVICES matrix (JSON) or NULL */
    char coord[300];
    const char *key; /* JACCL_JOB_KEY */
    char keybuf[65];
    char cwd[4096];
    bool cwd_strict;
    const char *ssh;
    char **argv;
};

/* Fills p; on failure prints why (naming the file, host and field) and returns -1. */
int plan_make(struct plan *p, const struct plan_args *a);

/* The ssh argv (malloc'd block, see rm_ssh_argv) and the command in it for a remote rank. */
char **plan_ssh_argv(const struct plan *p, int rank, char **cmd);

/* --dry-run: one block per rank. */
void plan_print(const struct plan *p, FILE *f);

void plan_free(struct plan *p);

#endif
