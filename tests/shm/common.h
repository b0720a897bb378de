/* Helpers for the shared-memory transport tests. */
#ifndef JACCL_TESTS_SHM_COMMON_H
#define JACCL_TESTS_SHM_COMMON_H

#include "harness.h"

/* Run the rest of this process in a mount namespace with its own empty /dev/shm. */
int shm_private_devshm(void);
/* Entries of /dev/shm whose name starts with "jaccl-". */
int shm_count_segments(void);
/* Collectives over sizes crossing the ring and single-copy paths, checked exactly. */
int shm_check_collectives(jaccl_comm_t comm, uint32_t tag);

#endif
