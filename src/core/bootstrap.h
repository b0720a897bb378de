/*
 * Bootstrap: a star of TCP connections through the coordinator (rank 0), or
 * the embedder's own all-gather, used to agree on a job id and to exchange
 * small records at init.
 */
#ifndef JACCL_CORE_BOOTSTRAP_H
#define JACCL_CORE_BOOTSTRAP_H

#include "core/env.h"
#include "util/handshake.h"

#include <sys/socket.h>

struct jaccl_bootstrap {
    int rank, size;
    int fd;   /* non-root: to the coordinator */
    int *fds; /* root: from each rank (fds[0] unused) */
    uint64_t job_id;
    struct sockaddr_storage local; /* our address as seen on the coordinator's network */
    socklen_t local_len;
    struct jaccl_err *err;
    jaccl_allgather_fn user_fn; /* the embedder's all-gather, used instead of the star */
    void *user;
    const struct jaccl_key *key; /* JACCL_JOB_KEY, proven in the handshake with rank 0 */
};

jaccl_result_t jaccl_bootstrap_init(struct jaccl_bootstrap *bs, const struct jaccl_env *env,
                                    int64_t deadline_ns, struct jaccl_err *e);

/* all[r * len ...] = rank r's mine[len]; every rank passes the same len. */
jaccl_result_t jaccl_bootstrap_allgather(struct jaccl_bootstrap *bs, const void *mine, size_t len,
                                         void *all, int64_t deadline_ns);

void jaccl_bootstrap_close(struct jaccl_bootstrap *bs);

/* The handshake's wire format and its parsers, pure, for the fuzzers (tests/fuzz). */
#define JACCL_BS_HELLO_LEN 8
extern const struct jaccl_hs_proto jaccl_bs_proto;
/* A hello body: rank, size; a reply: status, job id.  0, or -1 when len is wrong. */
int jaccl_bs_parse_hello(const uint8_t *body, size_t len, uint32_t *rank, uint32_t *size);
int jaccl_bs_parse_reply(const uint8_t *buf, size_t len, uint32_t *status, uint64_t *job_id);

#endif
