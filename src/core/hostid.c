#include "core/hostid.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The inode of /proc/self/ns/<name>; 0 where namespaces are not visible. */
static uint64_t ns_inode(const char *name)
{
    char path[64];
    struct stat st;
    snprintf(path, sizeof(path), "/proc/self/ns/%s", name);
    return stat(path, &st) == 0 ? (uint64_t)st.st_ino : 0;
}

/* FNV-1a of the boot id; the host name when the kernel has none (not Linux). */
static uint64_t boot_hash(void)
{
    char buf[256] = {0};
    size_t n = 0;
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (f) {
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
    }
    if (n == 0 && gethostname(buf, sizeof(buf) - 1) == 0) n = strlen(buf);
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)buf[i]) * 1099511628211ull;
    return h;
}

void jaccl_hostid_self(struct jaccl_tp_host *h)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    *h = (struct jaccl_tp_host){.boot = boot_hash(),
                                .netns = ns_inode("net"),
                                .mntns = ns_inode("mnt"),
                                .pidns = ns_inode("pid"),
                                .pid = (int32_t)getpid(),
                                .ncpu = cpus > 0 ? (int32_t)cpus : 1,
                                .leader = -1};
}

int jaccl_hostid_same(const struct jaccl_tp_host *a, const struct jaccl_tp_host *b,
                      int ignore_netns)
{
    return a->boot == b->boot && (ignore_netns || a->netns == b->netns);
}

int jaccl_hostid_group(struct jaccl_tp_host *all, int n, int rank, int ignore_netns)
{
    for (int r = 0; r < n; r++) {
        all[r].leader = r;
        for (int q = 0; q < r; q++)
            if (jaccl_hostid_same(&all[q], &all[r], ignore_netns)) {
                all[r].leader = all[q].leader;
                break;
            }
    }
    int local = 0;
    for (int r = 0; r < n; r++) local += all[r].leader == all[rank].leader;
    return local;
}
