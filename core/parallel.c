/*
 * parallel.c — a minimal fork-join for the memory-bound loops around the GEMMs (im2col,
 * col2im). The work is cut into more tasks than threads and handed out through an atomic
 * counter, so a helper thread that the OS is slow to schedule (a busy machine) only delays
 * the one task it holds: the caller takes the rest. Helpers are short-lived pthreads; there
 * is no pool and no global state, so distinct layers stay independent across threads. If a
 * helper cannot be started the caller does its share, so this never fails.
 */
#include "cvd_internal.h"

#include <pthread.h>
#include <stdatomic.h>

typedef struct job {
    cvd_task_fn fn;
    void *arg;
    int ntasks;
    atomic_int next;
} job;

static void *worker(void *p)
{
    job *j = p;
    for (int t; (t = atomic_fetch_add(&j->next, 1)) < j->ntasks;)
        j->fn(j->arg, t, j->ntasks);
    return NULL;
}

void cvd_parallel_run(int nthreads, int ntasks, cvd_task_fn fn, void *arg)
{
    if (nthreads > CVD_MAX_PARTS)
        nthreads = CVD_MAX_PARTS;
    if (nthreads > ntasks)
        nthreads = ntasks;
    job j = {.fn = fn, .arg = arg, .ntasks = ntasks};
    atomic_init(&j.next, 0);
    pthread_t th[CVD_MAX_PARTS];
    int started = 0;
    for (int i = 1; i < nthreads; i++) {
        if (pthread_create(&th[started], NULL, worker, &j) != 0)
            break;
        started++;
    }
    worker(&j);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
}

int cvd_parallel_parts(size_t work)
{
    if (work < CVD_PARALLEL_MIN_WORK)
        return 1;
    int n = openblas_get_num_threads();
    return n < 1 ? 1 : n > CVD_MAX_PARTS ? CVD_MAX_PARTS : n;
}
