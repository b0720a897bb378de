#include "core/bootstrap.h"
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
#define BS_VERSION    1
#define BS_HELLO_WAIT 5000000000LL
#define BS_MAX_RECORD (1u << 20)

struct bs_hello {
    uint32_t magic;
    uint16_t version, pad;
    uint32_t rank, size;
};

struct bs_reply {
    uint32_t status; /* 0, or the size the coordinator runs with when ours differs */
    uint32_t pad;
    uint64_t job_id;
};

/* The data path listens on our bootstrap address, on a port of its own. */
static void bs_clear_port(struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)ss)->sin6_port = 0;
    else
        ((struct sockaddr_in *)ss)->sin_port = 0;
}

/* Read a hello from a new connection; 0 if it is a rank of this job, -1 for a stranger. */
static int bs_read_hello(struct jaccl_bootstrap *bs, int fd, int64_t deadline, struct bs_hello *h)
{
    struct jaccl_err quiet = {.rank = -1};
    int64_t d = jaccl_now_ns() + BS_HELLO_WAIT;
    if (jaccl_sock_read_all(fd, h, sizeof(*h), d < deadline ? d : deadline, "a new connection",
                            &quiet) != JACCL_SUCCESS)
        return -1;
    h->rank = ntohl(h->rank);
    h->size = ntohl(h->size);
    if (ntohl(h->magic) != BS_MAGIC || ntohs(h->version) != BS_VERSION) return -1;
    return 0;
}

/* Check a hello against the job; a bad one is answered so the sender can say why. */
static jaccl_result_t bs_check_hello(struct jaccl_bootstrap *bs, int fd, const struct bs_hello *h,
                                     int64_t deadline)
{
    struct bs_reply no = {.status = htonl((uint32_t)bs->size)};
    if (h->size == (uint32_t)bs->size && h->rank > 0 && h->rank < h->size && bs->fds[h->rank] < 0)
        return JACCL_SUCCESS;
    jaccl_sock_write_all(fd, &no, sizeof(no), deadline, "a misconfigured rank", bs->err);
    if (h->size != (uint32_t)bs->size)
        return jaccl_err_set(bs->err, JACCL_ERR_CONFIG,
                             "a process with rank %u says the job "
                             "has %u ranks, but rank 0 has %d; set the same size on every rank",
                             h->rank, h->size, bs->size);
    return jaccl_err_set(bs->err, JACCL_ERR_CONFIG,
                         "two processes claim rank %u (or rank 0); "
                         "give every process its own rank",
                         h->rank);
}

static jaccl_result_t bs_root_accept(struct jaccl_bootstrap *bs, int lfd, int64_t deadline)
{
    for (int joined = 1; joined < bs->size;) {
        int fd;
        struct bs_hello h;
        jaccl_result_t rc = jaccl_sock_accept(lfd, deadline, &fd, bs->err);
        if (rc == JACCL_ERR_TIMEOUT) {
            int r = 1;
            while (bs->fds[r] >= 0) r++;
            return jaccl_err_set(bs->err, JACCL_ERR_TIMEOUT,
                                 "only %d of %d ranks reached the "
                                 "coordinator before the deadline; rank %d (at least) is missing: "
                                 "did it start, with the same JACCL_COORDINATOR?",
                                 joined, bs->size, r);
        }
        if (rc != JACCL_SUCCESS) return rc;
        if (bs_read_hello(bs, fd, deadline, &h) != 0) {
            log_warn("bootstrap: dropped a connection that did not introduce itself as a rank");
            close(fd);
            continue;
        }
        rc = bs_check_hello(bs, fd, &h, deadline);
        if (rc != JACCL_SUCCESS) {
            close(fd);
            return rc;
        }
        bs->fds[h.rank] = fd;
        joined++;
    }
    return JACCL_SUCCESS;
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
    struct bs_reply ok = {.status = 0, .job_id = bs->job_id};
    for (int r = 1; r < bs->size && rc == JACCL_SUCCESS; r++)
        rc = jaccl_sock_write_all(bs->fds[r], &ok, sizeof(ok), deadline, "a rank", bs->err);
    bs_clear_port(&bs->local);
    return rc;
}

static jaccl_result_t bs_join(struct jaccl_bootstrap *bs, const struct sockaddr_storage *addr,
                              socklen_t len, int64_t deadline)
{
    char name[128];
    snprintf(name, sizeof(name), "the coordinator (rank 0)");
    jaccl_result_t rc = jaccl_sock_connect(addr, len, deadline, name, &bs->fd, bs->err);
    if (rc != JACCL_SUCCESS) return rc;
    bs->local_len = sizeof(bs->local);
    getsockname(bs->fd, (struct sockaddr *)&bs->local, &bs->local_len);
    struct bs_hello h = {htonl(BS_MAGIC), htons(BS_VERSION), 0, htonl((uint32_t)bs->rank),
                         htonl((uint32_t)bs->size)};
    struct bs_reply reply;
    rc = jaccl_sock_write_all(bs->fd, &h, sizeof(h), deadline, name, bs->err);
    if (rc == JACCL_SUCCESS)
        rc = jaccl_sock_read_all(bs->fd, &reply, sizeof(reply), deadline, name, bs->err);
    if (rc != JACCL_SUCCESS) return rc;
    if (reply.status != 0)
        return jaccl_err_set(bs->err, JACCL_ERR_CONFIG,
                             "the coordinator refused rank %d: it runs "
                             "a job of %u ranks (we have %d), or another process has our rank",
                             bs->rank, ntohl(reply.status), bs->size);
    bs->job_id = reply.job_id;
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
                                   .user = env->allgather_user};
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
    if (len > BS_MAX_RECORD) return JACCL_ERR_INTERNAL;
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
