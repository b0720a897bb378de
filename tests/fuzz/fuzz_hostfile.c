/*
 * libFuzzer harness: jaccl-launch's hostfile (JSON, tools/hostfile.c), read
 * from a memory file, then the device matrix built from its "rdma" rows;
 * the same bytes as a comma-separated host list.
 */
#include "fuzz_common.h"
#include "hostfile.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_memfile_open("jaccl-hostfile");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hostfile hf;
    char err[512], *json = NULL, *s;
    const char *path = fuzz_memfile_write(data, size);
    if (!path) return 0;
    memset(&hf, 0, sizeof(hf));
    if (hf_load(path, &hf, err, sizeof(err)) == 0) {
        if (hf_devices_json(&hf, path, &json, err, sizeof(err)) == 0) free(json);
        hf_free(&hf);
    }
    if (!(s = fuzz_cstring(data, size))) return 0;
    memset(&hf, 0, sizeof(hf));
    if (hf_from_list(s, &hf, err, sizeof(err)) == 0) hf_free(&hf);
    free(s);
    return 0;
}
