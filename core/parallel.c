/*
 * parallel.c — the core's threads: the process-wide thread count (cvd_set_num_threads),
 * OpenBLAS kept single-threaded, and a minimal fork-join.
 *
 * Why convd splits the work itself and runs each GEMM on one OpenBLAS thread: OpenBLAS
 * 0.3.21 splits one GEMM across its pool and serialises concurrent threaded GEMMs on one
 * lock, while single-threaded GEMMs from different threads run side by side. Giving each
 * thread whole images (im2col and GEMM of its own, no barrier between them) measured on 2
 * Zen 4 cores: float64 +10-40 %, the stem float32 +60 %, other float32 shapes +10-20 %.
 *
 * Fork-join: the work is cut into tasks handed out through an atomic counter, so a helper
 * the OS is slow to schedule only delays the task it holds: the caller takes the rest. A
 * task's result never depends on which thread ran it, so results depend on the thread
 * count but not on scheduling. Helpers are short-lived pthreads drawn from one process-wide
 * budget of count-1: concurrent callers (the daemon's sessions) share the cores instead of
 * each starting count-1 more threads; a caller that gets no helper (or cannot start one)
 * runs every task itself, so this never fails.
 */
#include "cvd_internal.h"

#include <cblas.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

static atomic_int nthreads_set; /* 0 until cvd_set_num_threads (or the first use) */
static atomic_int helpers_out;  /* helper threads running now, all callers together */

/* OpenBLAS's idle threads busy-wait (sched_yield) for 2^28 TSC cycles, about 0.1 s, after
 * every threaded GEMM, taking a core from whatever runs next. convd calls OpenBLAS with
 * one thread, so its pool should never run; in case something else in the process raises
 * OpenBLAS's count again, the spin is cut to 2^16 cycles (about 20 us). OpenBLAS reads the
 * setting when it loads, so it is set, re-read, and the idle pool stopped (it starts again
 * on a threaded call). OPENBLAS_THREAD_TIMEOUT in the environment wins; the hooks are weak
 * so a BLAS without them (a serial or OpenMP build) still links. */
#define BLAS_SPIN_LOG2_CYCLES "16"
__attribute__((weak)) void openblas_read_env(void);
__attribute__((weak)) void blas_thread_shutdown_(void);

static void blas_short_spin(void)
{
    if (getenv("OPENBLAS_THREAD_TIMEOUT") || !openblas_read_env || !blas_thread_shutdown_)
        return;
    if (setenv("OPENBLAS_THREAD_TIMEOUT", BLAS_SPIN_LOG2_CYCLES, 0) != 0)
        return;
    openblas_read_env();
    blas_thread_shutdown_();
}

void cvd_set_num_threads(int n)
{
    n = n < 1 ? 1 : n > CVD_MAX_PARTS ? CVD_MAX_PARTS : n;
    openblas_set_num_threads(1);
    blas_short_spin();
    atomic_store(&nthreads_set, n);
}

/* The default for a program that never called cvd_set_num_threads: the CPUs this process
 * may run on (its affinity mask, so a pinned container does not get the host's count),
 * and OpenBLAS on one thread. No setenv here (blas_short_spin): other threads may be
 * running getenv, and OpenBLAS's pool, which convd never uses, spins only once, at load. */
static void set_default_threads(void)
{
    cpu_set_t set;
    long n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 0;
    if (n < 1)
        n = sysconf(_SC_NPROCESSORS_ONLN);
    int unset = 0;
    openblas_set_num_threads(1);
    /* a cvd_set_num_threads that got here first wins */
    atomic_compare_exchange_strong(&nthreads_set, &unset,
                                   n < 1               ? 1
                                   : n > CVD_MAX_PARTS ? CVD_MAX_PARTS
                                                       : (int)n);
}

int cvd_get_num_threads(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    if (atomic_load(&nthreads_set) == 0)
        pthread_once(&once, set_default_threads);
    return atomic_load(&nthreads_set);
}

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

/* Takes up to want helpers from the budget of count-1; returns how many it got. */
static int helpers_take(int want)
{
    const int budget = cvd_get_num_threads() - 1;
    int out = atomic_load(&helpers_out);
    for (;;) {
        int got = budget - out < want ? budget - out : want;
        if (got <= 0)
            return 0;
        if (atomic_compare_exchange_weak(&helpers_out, &out, out + got))
            return got;
    }
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
    const int granted = nthreads > 1 ? helpers_take(nthreads - 1) : 0;
    int started = 0;
    while (started < granted && pthread_create(&th[started], NULL, worker, &j) == 0)
        started++;
    if (started < granted)
        atomic_fetch_sub(&helpers_out, granted - started);
    worker(&j);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    if (started)
        atomic_fetch_sub(&helpers_out, started);
}

int cvd_parallel_parts(size_t work, int nt)
{
    if (work < CVD_PARALLEL_MIN_WORK || nt < 1)
        return 1;
    return nt > CVD_MAX_PARTS ? CVD_MAX_PARTS : nt;
}
