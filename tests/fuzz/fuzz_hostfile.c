/*
 * libFuzzer harness: jaccl-launch's hostfile (JSON, tools/hostfile.c), read
 * from a memory file, then the device matrix built from its "rdma" rows;
 * the same bytes as a comma-separated host list.
 */
#include "hostfile.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fd = memfd_create("jaccl-hostfile", 0);
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hostfile hf;
    char err[512], *json = NULL;
    if (fd < 0 || ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size) return 0;
    memset(&hf, 0, sizeof(hf));
    if (hf_load(path, &hf, err, sizeof(err)) == 0) {
        if (hf_devices_json(&hf, path, &json, err, sizeof(err)) == 0) free(json);
        hf_free(&hf);
    }
    char *s = malloc(size + 1);
    if (!s) return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    memset(&hf, 0, sizeof(hf));
    if (hf_from_list(s, &hf, err, sizeof(err)) == 0) hf_free(&hf);
    free(s);
    return 0;
}
