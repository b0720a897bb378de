/* Error detail carried by each communicator: which rank, which call, what happened. */
#ifndef JACCL_UTIL_ERR_H
#define JACCL_UTIL_ERR_H

#include "jaccl.h"

#define JACCL_ERR_LEN 512

struct jaccl_err {
    char msg[JACCL_ERR_LEN];
    const char *call; /* the API call in progress, e.g. "jaccl_allreduce" */
    int rank;         /* -1 until known */
};

/*
 * Record "rank R: CALL: <message>" in e, log it, and return rc, so an error
 * is reported where it is first seen: `return jaccl_err_set(e, rc, ...)`.
 */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
jaccl_result_t
jaccl_err_set(struct jaccl_err *e, jaccl_result_t rc, const char *fmt, ...);

#endif
