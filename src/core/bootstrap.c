#include "core/bootstrap.h"
#include "util/handshake.h"
#include "util/log.h"
#include "util/sock.h"
#include "util/time.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define BS_MAGIC      0x4a424f4fu /* "JBOO" */
#define BS_VERSION    2
#define BS_MAX_RECORD (1u << 20)
#define BS_REPLY_LEN  16

/* Hello body: rank u32, size u32 (big-endian), inside the handshake of util/handshake.h. */
const struct jaccl_hs_proto jaccl_bs_proto = {
    .magic = BS_MAGIC, .version = BS_VERSION, .body_len = JACCL_BS_HELLO_LEN, .who = "coordinator"};

static uint32_t get32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

int jaccl_bs_parse_hello(const uint8_t *body, size_t len, uint32_t *rank, uint32_t *size)
{
    if (len != JACCL_BS_HELLO_LEN) return -1;
    *rank = get32(body);
    *size = get32(body + 4);
    return 0;
}

/* Reply: status u32 (0, or the coordinator's size when ours differs), pad u32, job id u64. */
int jaccl_bs_parse_reply(const uint8_t *buf, size_t len, uint32_t *status, uint64_t *job_id)
{
    if (len != BS_REPLY_LEN) return -1;
    *status = get32(buf);
    *job_id = (uint64_t)get32(buf + 8) << 32 | get32(buf + 12);
    return 0;
}

static void put32(uint8_t *b, uint32_t v)
{
    for (int i = 0; i < 4; i++) b[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void bs_reply_bytes(uint8_t *b, uint32_t status, uint64_t job_id)
{
    put32(b, status);
    put32(b + 4, 0);
    put32(b + 8, (uint32_t)(job_id >> 32));
    put32(b + 12, (uint32_t)job_id);
}

/* The data path listens on our bootstrap address, on a port of its own. */
static void bs_clear_port(struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)ss)->sin6_port = 0;
    else
        ((struct sockaddr_in *)ss)->sin_port = 0;
}

/* Check an authenticated hello against the job; a bad one is answered so the sender can say why. */
static jaccl_result_t bs_check_hello(struct jaccl_bootstrap *bs, int fd, uint32_t rank,
                                     uint32_t size, int64_t deadline)
{
    uint8_t no[BS_REPLY_LEN];
    if (size == (uint32_t)bs->size && rank > 0 && rank < size && bs->fds[rank] < 0)
        return JACCL_SUCCESS;
    bs_reply_bytes(no, (uint32_t)bs->size, 0);
    jaccl_sock_write_all(fd, no, sizeof(no), deadline, "a misconfigured rank", bs->err);
    if (size != (uint32_t)bs->size)
        return jaccl_err_set(bs->err, JACCL_ERR_CONFIG,
                             "a process with rank %u says the job "
                             "has %u ranks, but rank 0 has %d; set the same size on every rank",
                             rank, size, bs->size);
    return jaccl_err_set(bs->err, JACCL_ERR_CONFIG,
                         "two processes claim rank %u (or rank 0); "
                         "give every process its own rank",
                         rank);
}

static jaccl_result_t bs_missing(struct jaccl_bootstrap *bs, int joined,
                                 struct jaccl_hs_server *srv)
{
    char note[300];
    int r = 1;
    while (bs->fds[r] >= 0) r++;
    return jaccl_err_set(bs->err, JACCL_ERR_TIMEOUT,
                         "only %d of %d ranks reached the coordinator before the deadline; rank "
                         "%d (at least) is missing: did it start, with the same "
                         "JACCL_COORDINATOR and JACCL_JOB_KEY?%s",
                         joined, bs->size, r, jaccl_hs_server_note(srv, note, sizeof(note)));
}

/* Admit every rank; strangers are dropped by the handshake, without taking a slot. */
static jaccl_result_t bs_root_accept(struct jaccl_bootstrap *bs, int lfd, int64_t deadline)
{
    struct jaccl_hs_server *srv = malloc(sizeof(*srv));
    jaccl_result_t rc = JACCL_SUCCESS;
    if (!srv) return jaccl_err_set(bs->err, JACCL_ERR_NOMEM, "bootstrap: out of memory");
    jaccl_hs_server_init(srv, &jaccl_bs_proto, bs->key, lfd);
    for (int joined = 1; joined < bs->size;) {
        int fd;
        uint8_t body[JACCL_BS_HELLO_LEN];
        uint32_t rank, size;
        rc = jaccl_hs_accept(srv, deadline, &fd, body, bs->err);
        if (rc == JACCL_ERR_TIMEOUT) rc = bs_missing(bs, joined, srv);
        if (rc != JACCL_SUCCESS) break;
        jaccl_bs_parse_hello(body, sizeof(body), &rank, &size);
        rc = bs_check_hello(bs, fd, rank, size, deadline);
        if (rc != JACCL_SUCCESS) {
            close(fd);
            break;
        }
        bs->fds[rank] = fd;
        joined++;
    }
    jaccl_hs_server_close(srv);
    free(srv);
    return rc;
}

static jaccl_result_t bs_root(struct jaccl_bootstrap *bs, const struct sockaddr_storage *addr,
                              socklen_t len, int64_t deadline)
{
    int lfd;
    bs->local = *addr;
    bs->local_len = len;
    jaccl_result_t rc = jaccl_sock_listen(&bs->local, &bs->local_len, 128, &lfd, bs->err);
    if (rc != JACCL_SUCCESS) return rc;
    rc = bs_root_accept(bs, lfd, deadline);
    close(lfd);
    if (rc != JACCL_SUCCESS) return rc;
    if (getrandom(&bs->job_id, sizeof(bs->job_id), 0) != sizeof(bs->job_id))
        bs->job_id = (uint64_t)jaccl_now_ns() ^ ((uint64_t)getpid() << 32);
    uint8_t ok[BS_REPLY_LEN];
    bs_reply_bytes(ok, 0, bs->job_id);
    for (int r = 1; r < bs->size && rc == JACCL_SUCCESS; r++)
        rc = jaccl_sock_write_all(bs->fds[r], ok, sizeof(ok), deadline, "a rank", bs->err);
    bs_clear_port(&bs->local);
    return rc;
}

static jaccl_result_t bs_join(struct jaccl_bootstrap *bs, const struct sockaddr_storage *addr,
                              socklen_t len, int64_t deadline)
{
    char name[128], a[80];
    uint8_t body[JACCL_BS_HELLO_LEN], reply[BS_REPLY_LEN];
    uint32_t status;
    jaccl_result_t rc =
        jaccl_sock_connect(addr, len, deadline, "the coordinator (rank 0)", &bs->fd, bs->err);
    if (rc != JACCL_SUCCESS) return rc;
    snprintf(name, sizeof(name), "the coordinator (rank 0) at %s",
             jaccl_sock_str(addr, a, sizeof(a)));
    bs->local_len = sizeof(bs->local);
    getsockname(bs->fd, (struct sockaddr *)&bs->local, &bs->local_len);
    put32(body, (uint32_t)bs->rank);
    put32(body + 4, (uint32_t)bs->size);
    rc = jaccl_hs_connect(bs->fd, &jaccl_bs_proto, bs->key, body, deadline, name, bs->err);
    if (rc == JACCL_SUCCESS)
        rc = jaccl_sock_read_all(bs->fd, reply, sizeof(reply), deadline, name, bs->err);
    if (rc != JACCL_SUCCESS) return rc;
    jaccl_bs_parse_reply(reply, sizeof(reply), &status, &bs->job_id);
    if (status != 0)
        return jaccl_err_set(bs->err, JACCL_ERR_CONFIG,
                             "the coordinator refused rank %d: it runs "
                             "a job of %u ranks (we have %d), or another process has our rank",
                             bs->rank, status, bs->size);
    bs_clear_port(&bs->local);
    return JACCL_SUCCESS;
}

/* With the embedder's all-gather: listen on listen_host, take rank 0's job id. */
static jaccl_result_t bs_user(struct jaccl_bootstrap *bs, const struct jaccl_env *env,
                              int64_t deadline)
{
    char host[256] = "127.0.0.1";
    if (env->listen_host[0])
        snprintf(host, sizeof(host), "%s", env->listen_host);
    else
        gethostname(host, sizeof(host));
    jaccl_result_t rc =
        jaccl_sock_resolve(host, "0", "listen", &bs->local, &bs->local_len, bs->err);
    if (rc != JACCL_SUCCESS) return rc;
    uint64_t mine, *all = malloc(sizeof(mine) * (size_t)bs->size);
    if (!all) return jaccl_err_set(bs->err, JACCL_ERR_NOMEM, "bootstrap: out of memory");
    if (getrandom(&mine, sizeof(mine), 0) != sizeof(mine)) mine = (uint64_t)jaccl_now_ns();
    rc = jaccl_bootstrap_allgather(bs, &mine, sizeof(mine), all, deadline);
    if (rc == JACCL_SUCCESS) bs->job_id = all[0];
    free(all);
    return rc;
}

jaccl_result_t jaccl_bootstrap_init(struct jaccl_bootstrap *bs, const struct jaccl_env *env,
                                    int64_t deadline_ns, struct jaccl_err *e)
{
    struct sockaddr_storage addr;
    socklen_t len;
    *bs = (struct jaccl_bootstrap){.rank = env->rank,
                                   .size = env->size,
                                   .fd = -1,
                                   .err = e,
                                   .user_fn = env->allgather,
                                   .user = env->allgather_user,
                                   .key = &env->job_key};
    if (!env->job_key.len && env->rank == 0)
        log_info("JACCL_JOB_KEY is not set: the job is unauthenticated (the coordinator and the "
                 "links accept any process that speaks jaccl's protocol)");
    if (bs->user_fn) return bs_user(bs, env, deadline_ns);
    jaccl_result_t rc =
        jaccl_sock_resolve(env->coord_host, env->coord_port, "JACCL_COORDINATOR", &addr, &len, e);
    if (rc != JACCL_SUCCESS) return rc;
    if (env->rank != 0) return bs_join(bs, &addr, len, deadline_ns);
    bs->fds = malloc((size_t)env->size * sizeof(int));
    if (!bs->fds) return jaccl_err_set(e, JACCL_ERR_NOMEM, "bootstrap: out of memory");
    for (int r = 0; r < env->size; r++) bs->fds[r] = -1;
    return bs_root(bs, &addr, len, deadline_ns);
}

jaccl_result_t jaccl_bootstrap_allgather(struct jaccl_bootstrap *bs, const void *mine, size_t len,
                                         void *all, int64_t deadline_ns)
{
    char *out = all;
    jaccl_result_t rc = JACCL_SUCCESS;
    if (len > BS_MAX_RECORD)
        return jaccl_err_set(bs->err, JACCL_ERR_INTERNAL,
                             "bootstrap: rank %d's record of %zu bytes exceeds the %d-byte limit",
                             bs->rank, len, (int)BS_MAX_RECORD);
    if (bs->user_fn) {
        rc = bs->user_fn(mine, all, len, bs->user);
        if (rc != JACCL_SUCCESS)
            return jaccl_err_set(bs->err, rc, "the embedder's allgather callback failed (%s)",
                                 jaccl_result_string(rc));
        return JACCL_SUCCESS;
    }
    memcpy(out + (size_t)bs->rank * len, mine, len);
    if (bs->rank != 0) {
        rc = jaccl_sock_write_all(bs->fd, mine, len, deadline_ns, "the coordinator", bs->err);
        if (rc != JACCL_SUCCESS) return rc;
        return jaccl_sock_read_all(bs->fd, out, len * (size_t)bs->size, deadline_ns,
                                   "the coordinator", bs->err);
    }
    for (int r = 1; r < bs->size && rc == JACCL_SUCCESS; r++) {
        char name[32];
        snprintf(name, sizeof(name), "rank %d", r);
        rc =
            jaccl_sock_read_all(bs->fds[r], out + (size_t)r * len, len, deadline_ns, name, bs->err);
    }
    for (int r = 1; r < bs->size && rc == JACCL_SUCCESS; r++) {
        char name[32];
        snprintf(name, sizeof(name), "rank %d", r);
        rc = jaccl_sock_write_all(bs->fds[r], out, len * (size_t)bs->size, deadline_ns, name,
                                  bs->err);
    }
    return rc;
}

void jaccl_bootstrap_close(struct jaccl_bootstrap *bs)
{
    if (bs->fd >= 0) close(bs->fd);
    for (int r = 1; bs->fds && r < bs->size; r++)
        if (bs->fds[r] >= 0) close(bs->fds[r]);
    free(bs->fds);
    bs->fds = NULL;
    bs->fd = -1;
}
