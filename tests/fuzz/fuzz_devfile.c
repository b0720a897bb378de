/*
 * libFuzzer harness: the JACCL device file (JSON, src/core/devfile.c), read
 * from a memory file as jaccl reads the file JACCL_IBV_DEVICES names.
 */
#include "core/devfile.h"
#include "fuzz_common.h"
#include "util/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    jaccl_log_level_current = -1;
    fuzz_memfile_open("jaccl-devfile");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct jaccl_devfile df;
    struct jaccl_err e = {.rank = -1};
    const char *path = fuzz_memfile_write(data, size);
    if (!path) return 0;
    if (jaccl_devfile_load(path, "JACCL_IBV_DEVICES", &df, &e) == JACCL_SUCCESS) {
        jaccl_devfile_is_ring(&df);
        jaccl_devfile_free(&df);
    }
    return 0;
}
