/*
 * libFuzzer harness: the JACCL device file (JSON, src/core/devfile.c), read
 * from a memory file as jaccl reads the file JACCL_IBV_DEVICES names.
 */
#include "core/devfile.h"
#include "util/log.h"

#include <stdint.h>
#include <stdio.h>
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
    jaccl_log_level_current = -1;
    fd = memfd_create("jaccl-devfile", 0);
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct jaccl_devfile df;
    struct jaccl_err e = {.rank = -1};
    if (fd < 0 || ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size) return 0;
    if (jaccl_devfile_load(path, "JACCL_IBV_DEVICES", &df, &e) == JACCL_SUCCESS) {
        jaccl_devfile_is_ring(&df);
        jaccl_devfile_free(&df);
    }
    return 0;
}
