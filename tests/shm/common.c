#include "common.h"

#include <dirent.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>

int shm_private_devshm(void)
{
    if (unshare(CLONE_NEWNS) != 0) return -1;
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) return -1;
    return mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=256m,mode=1777");
}

int shm_count_segments(void)
{
    DIR *d = opendir("/dev/shm");
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));) n += strncmp(e->d_name, "jaccl-", 6) == 0;
    closedir(d);
    return n;
}

/* Element i of rank r's vector: small integers, so float sums are exact. */
static int32_t val(uint32_t tag, int r, size_t i)
{
    return (int32_t)((tag * 7u + (uint32_t)r * 13u + (uint32_t)i) % 1000u);
}

static int check_allreduce(jaccl_comm_t comm, uint32_t tag, size_t count, int32_t *v)
{
    int n = jaccl_comm_size(comm), me = jaccl_comm_rank(comm);
    for (size_t i = 0; i < count; i++) v[i] = val(tag, me, i);
    MP_OK(comm, jaccl_allreduce(v, v, count, JACCL_INT32, JACCL_SUM, comm));
    for (size_t i = 0; i < count; i++) {
        int32_t want = 0;
        for (int r = 0; r < n; r++) want += val(tag, r, i);
        MP_CHECK(v[i] == want, "allreduce of %zu: element %zu is %d, want %d", count, i, v[i],
                 want);
    }
    return 0;
}

static int check_allgather(jaccl_comm_t comm, uint32_t tag, size_t count, int32_t *v)
{
    int n = jaccl_comm_size(comm), me = jaccl_comm_rank(comm);
    int32_t *mine = v + (size_t)me * count;
    for (size_t i = 0; i < count; i++) mine[i] = val(tag, me, i);
    MP_OK(comm, jaccl_allgather(mine, v, count, JACCL_INT32, comm));
    for (int r = 0; r < n; r++)
        for (size_t i = 0; i < count; i++)
            MP_CHECK(v[(size_t)r * count + i] == val(tag, r, i),
                     "allgather of %zu: rank %d's element %zu is wrong", count, r, i);
    return 0;
}

/* Send to the next rank, receive from the previous, in one group. */
static int check_sendrecv(jaccl_comm_t comm, uint32_t tag, size_t count, int32_t *v)
{
    int n = jaccl_comm_size(comm), me = jaccl_comm_rank(comm), prev = (me + n - 1) % n;
    int32_t *out = v, *in = v + count;
    for (size_t i = 0; i < count; i++) out[i] = val(tag, me, i);
    MP_OK(comm, jaccl_group_start());
    MP_OK(comm, jaccl_send(out, count, JACCL_INT32, (me + 1) % n, comm));
    MP_OK(comm, jaccl_recv(in, count, JACCL_INT32, prev, comm));
    MP_OK(comm, jaccl_group_end());
    for (size_t i = 0; i < count; i++)
        MP_CHECK(in[i] == val(tag, prev, i), "recv of %zu from rank %d: element %zu is wrong",
                 count, prev, i);
    return 0;
}

int shm_check_collectives(jaccl_comm_t comm, uint32_t tag)
{
    /* Around the ring's record size, the single-copy threshold and the reduce segment. */
    static const size_t counts[] = {1, 3, 1000, 4099, 16384, 16385, 65536 + 7, (1u << 20) + 3};
    size_t max = counts[sizeof(counts) / sizeof(counts[0]) - 1];
    int32_t *v = malloc(max * sizeof(int32_t) * (size_t)jaccl_comm_size(comm));
    MP_CHECK(v, "out of memory");
    int rc = 0;
    for (size_t k = 0; rc == 0 && k < sizeof(counts) / sizeof(counts[0]); k++) {
        rc = check_allreduce(comm, tag + (uint32_t)k, counts[k], v);
        if (rc == 0) rc = check_allgather(comm, tag + (uint32_t)k, counts[k], v);
        if (rc == 0) rc = check_sendrecv(comm, tag + (uint32_t)k, counts[k], v);
    }
    free(v);
    return rc;
}
