/*
 * Every environment variable jaccl reads, for tests that set them (the fuzzer
 * picks one by an input byte: keep the order, append new names at the end)
 * or clear them (the unit tests, so a variable of the caller's shell cannot
 * change their result).
 */
#ifndef JACCL_TEST_ENV_VARS_H
#define JACCL_TEST_ENV_VARS_H

#include <stddef.h>

static const char *const jaccl_test_env_vars[] = {
    "JACCL_RANK",
    "JACCL_SIZE",
    "MLX_RANK",
    "OMPI_COMM_WORLD_RANK",
    "OMPI_COMM_WORLD_SIZE",
    "PMI_RANK",
    "PMI_SIZE",
    "SLURM_PROCID",
    "SLURM_NTASKS",
    "JACCL_COORDINATOR",
    "MLX_JACCL_COORDINATOR",
    "JACCL_TRANSPORT",
    "JACCL_ALGO",
    "JACCL_TIMEOUT",
    "JACCL_TCP_SOCKETS",
    "JACCL_SPIN_US",
    "JACCL_RING_BIDIR",
    "JACCL_SHM_SCOPE",
    "JACCL_JOB_KEY",
    "JACCL_IBV_DEVICES",
    "MLX_IBV_DEVICES",
    "JACCL_IBVERBS_LIB",
    "JACCL_IB_GID_INDEX",
    "MLX_JACCL_RING",
    "JACCL_RING",
    "JACCL_IB_QP_TYPE",
    "JACCL_SHM_SINGLE_COPY",
};
#define JACCL_TEST_ENV_NVARS (sizeof(jaccl_test_env_vars) / sizeof(jaccl_test_env_vars[0]))

#endif
