/*
 * Shared by the libFuzzer harnesses: a memory file the parsers read by path,
 * as they read a real file, and the input as a C string.
 */
#ifndef JACCL_FUZZ_COMMON_H
#define JACCL_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fuzz_fd = -1;
static char fuzz_path[64];

/* Creates the memory file once, from LLVMFuzzerInitialize. */
static inline void fuzz_memfile_open(const char *name)
{
    fuzz_fd = memfd_create(name, 0);
    snprintf(fuzz_path, sizeof(fuzz_path), "/proc/self/fd/%d", fuzz_fd);
}

/* Replaces the memory file's contents by the input; returns its path, NULL on failure. */
static inline const char *fuzz_memfile_write(const uint8_t *data, size_t size)
{
    if (fuzz_fd < 0 || ftruncate(fuzz_fd, 0) != 0) return NULL;
    if (pwrite(fuzz_fd, data, size, 0) != (ssize_t)size) return NULL;
    return fuzz_path;
}

/* The input with a terminating NUL (the caller frees it); NULL when out of memory. */
static inline char *fuzz_cstring(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s) return NULL;
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

#endif
