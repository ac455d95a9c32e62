/*
 * parallel.c — the core's threads: the process-wide thread count (cvd_set_num_threads),
 * OpenBLAS kept single-threaded, and a minimal fork-join.
 *
 * Why convd splits the work itself and runs each GEMM on one OpenBLAS thread: OpenBLAS
 * 0.3.21 splits one GEMM across its pool and serialises concurrent threaded GEMMs on one
 * lock, while single-threaded GEMMs from different threads run side by side. Giving each
 * thread whole images (im2col and GEMM of its own, no barrier between them) leaves no
 * thread waiting on another (docs/kernels.md has the figures).
 *
 * Fork-join: the work is cut into tasks handed out through an atomic counter, so a helper
 * the OS is slow to schedule only delays the task it holds: the caller takes the rest. A
 * task's result never depends on which thread ran it, so results depend on the thread
 * count but not on scheduling. Helpers are pooled threads drawn from one process-wide
 * budget of count-1: concurrent callers (the daemon's sessions) share the cores instead of
 * each adding count-1 more threads; a caller that gets no helper (or cannot start one)
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
    pthread_mutex_t mu; /* guards pending; the caller sleeps on done until it is 0 */
    pthread_cond_t done;
    int pending; /* helpers that have not finished */
} job;

static void run_tasks(job *j)
{
    for (int t; (t = atomic_fetch_add(&j->next, 1)) < j->ntasks;)
        j->fn(j->arg, t, j->ntasks);
}

/* The helper pool: threads started on first need and kept for the process, each parked on
 * its own slot. A free helper is woken through its slot instead of a thread being created
 * per call (a pthread_create + join costs 30-50 us, which a layer with nine tap GEMMs per
 * image paid nine times); after a job it spins about 20 us for the next one (the back-to-
 * back GEMMs of one layer), then sleeps. */
typedef struct slot {
    pthread_mutex_t mu;
    pthread_cond_t wake;
    _Atomic(job *) job; /* set by the caller that reserved the slot, cleared when done */
    atomic_int busy;    /* reserved by a caller (0 -> 1), freed by the helper */
    int started, quit;  /* under pool_mu / mu */
    pthread_t th;
} slot;

#define HELPER_SPINS 1000

static slot slots[CVD_MAX_PARTS];
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER; /* guards starting helpers */
static pthread_once_t slots_once = PTHREAD_ONCE_INIT;

static void slots_init(void)
{
    for (int i = 0; i < CVD_MAX_PARTS; i++) {
        pthread_mutex_init(&slots[i].mu, NULL);
        pthread_cond_init(&slots[i].wake, NULL);
        atomic_init(&slots[i].job, NULL);
        atomic_init(&slots[i].busy, 0);
    }
}

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *helper(void *p)
{
    slot *s = p;
    for (;;) {
        job *j = NULL;
        for (int i = 0; i < HELPER_SPINS && !(j = atomic_load(&s->job)); i++)
            cpu_relax();
        if (!j) {
            pthread_mutex_lock(&s->mu);
            while (!(j = atomic_load(&s->job)) && !s->quit)
                pthread_cond_wait(&s->wake, &s->mu);
            pthread_mutex_unlock(&s->mu);
            if (!j)
                return NULL;
        }
        run_tasks(j);
        atomic_store(&s->job, NULL);
        atomic_store(&s->busy, 0);
        /* the last touch of j: the caller may return (and j go) once pending is 0 */
        pthread_mutex_lock(&j->mu);
        if (--j->pending == 0)
            pthread_cond_signal(&j->done);
        pthread_mutex_unlock(&j->mu);
    }
}

/* A free slot with a running helper, reserved for the caller; NULL if none can be had. */
static slot *slot_reserve(void)
{
    for (int i = 0; i < CVD_MAX_PARTS; i++) {
        slot *s = &slots[i];
        int free_ = 0;
        if (!atomic_compare_exchange_strong(&s->busy, &free_, 1))
            continue;
        pthread_mutex_lock(&pool_mu);
        if (!s->started && pthread_create(&s->th, NULL, helper, s) == 0)
            s->started = 1;
        const int ok = s->started;
        pthread_mutex_unlock(&pool_mu);
        if (ok)
            return s;
        atomic_store(&s->busy, 0);
        return NULL;
    }
    return NULL;
}

/* At exit, helpers are told to quit and joined, so none outlives the process's data. */
__attribute__((destructor)) static void pool_stop(void)
{
    pthread_mutex_lock(&pool_mu);
    for (int i = 0; i < CVD_MAX_PARTS; i++) {
        slot *s = &slots[i];
        if (!s->started)
            continue;
        pthread_mutex_lock(&s->mu);
        s->quit = 1;
        pthread_cond_signal(&s->wake);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->th, NULL);
        s->started = 0;
    }
    pthread_mutex_unlock(&pool_mu);
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
    const int granted = nthreads > 1 ? helpers_take(nthreads - 1) : 0;
    job j = {.fn = fn, .arg = arg, .ntasks = ntasks};
    atomic_init(&j.next, 0);
    if (!granted) {
        run_tasks(&j);
        return;
    }
    pthread_once(&slots_once, slots_init);
    pthread_mutex_init(&j.mu, NULL);
    pthread_cond_init(&j.done, NULL);
    slot *got[CVD_MAX_PARTS];
    int n = 0;
    while (n < granted && (got[n] = slot_reserve()) != NULL)
        n++;
    j.pending = n;
    for (int i = 0; i < n; i++) {
        pthread_mutex_lock(&got[i]->mu);
        atomic_store(&got[i]->job, &j);
        pthread_cond_signal(&got[i]->wake);
        pthread_mutex_unlock(&got[i]->mu);
    }
    run_tasks(&j);
    pthread_mutex_lock(&j.mu);
    while (j.pending)
        pthread_cond_wait(&j.done, &j.mu);
    pthread_mutex_unlock(&j.mu);
    pthread_cond_destroy(&j.done);
    pthread_mutex_destroy(&j.mu);
    atomic_fetch_sub(&helpers_out, granted);
}

int cvd_parallel_parts(size_t work, int nt)
{
    if (work < CVD_PARALLEL_MIN_WORK || nt < 1)
        return 1;
    return nt > CVD_MAX_PARTS ? CVD_MAX_PARTS : nt;
}
