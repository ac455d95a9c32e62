/*
 * parallel.c — a minimal fork-join for the memory-bound loops around the GEMMs (im2col,
 * col2im): the caller runs part 0 and up to CVD_MAX_PARTS-1 short-lived pthreads run the
 * rest. No pool and no global state, so distinct layers stay independent across threads;
 * if a thread cannot be started its part runs on the caller, so this never fails.
 */
#include "cvd_internal.h"

#include <pthread.h>

typedef struct part {
    cvd_task_fn fn;
    void *arg;
    int index, count;
} part;

static void *run_part(void *p)
{
    const part *t = p;
    t->fn(t->arg, t->index, t->count);
    return NULL;
}

void cvd_parallel_run(int nparts, cvd_task_fn fn, void *arg)
{
    if (nparts > CVD_MAX_PARTS)
        nparts = CVD_MAX_PARTS;
    if (nparts <= 1) {
        fn(arg, 0, 1);
        return;
    }
    pthread_t th[CVD_MAX_PARTS];
    part parts[CVD_MAX_PARTS];
    int started[CVD_MAX_PARTS] = {0};
    for (int i = 1; i < nparts; i++) {
        parts[i] = (part){fn, arg, i, nparts};
        started[i] = pthread_create(&th[i], NULL, run_part, &parts[i]) == 0;
    }
    fn(arg, 0, nparts);
    for (int i = 1; i < nparts; i++) {
        if (started[i])
            pthread_join(th[i], NULL);
        else
            fn(arg, i, nparts);
    }
}

int cvd_parallel_parts(size_t work)
{
    if (work < CVD_PARALLEL_MIN_WORK)
        return 1;
    int n = openblas_get_num_threads();
    return n < 1 ? 1 : n > CVD_MAX_PARTS ? CVD_MAX_PARTS : n;
}
