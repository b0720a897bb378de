/*
 * Host identity: which ranks share a kernel, a network namespace and memory.
 * Exchanged at bootstrap; transports use it to pick links (shm on one host).
 */
#ifndef JACCL_CORE_HOSTID_H
#define JACCL_CORE_HOSTID_H

#include "transport/transport.h"

/* This process: boot id hash, namespace inodes, pid, online cores. */
void jaccl_hostid_self(struct jaccl_tp_host *h);

/*
 * Same host: same boot id and, unless ignore_netns, same network namespace
 * (two namespaces on one machine count as two hosts by default).
 */
int jaccl_hostid_same(const struct jaccl_tp_host *a, const struct jaccl_tp_host *b,
                      int ignore_netns);

/* Set every rank's leader (lowest rank on its host); returns how many share ours. */
int jaccl_hostid_group(struct jaccl_tp_host *all, int n, int rank, int ignore_netns);

#endif
