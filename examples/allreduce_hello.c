/* The smallest complete jaccl program: every rank adds its vector in place. */
#include <jaccl.h>
#include <stdio.h>

int main(void)
{
    jaccl_comm_t comm;
    if (jaccl_comm_init_env(&comm) != JACCL_SUCCESS) {
        fprintf(stderr, "init failed: %s\n", jaccl_last_error(NULL));
        return 1;
    }
    float x[4] = {1, 2, 3, (float)jaccl_comm_rank(comm)};
    jaccl_result_t rc = jaccl_allreduce(x, x, 4, JACCL_FLOAT32, JACCL_SUM, comm); /* in place */
    if (rc != JACCL_SUCCESS) {
        fprintf(stderr, "allreduce failed: %s\n", jaccl_last_error(comm));
        jaccl_comm_destroy(comm);
        return 1;
    }
    printf("rank %d: %g %g %g %g\n", jaccl_comm_rank(comm), x[0], x[1], x[2], x[3]);
    jaccl_comm_destroy(comm);
    return 0;
}
