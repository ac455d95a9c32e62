/*
 * workpool.c — the job queue of workpool.h: one mutex, one condition variable, a FIFO of
 * intrusive jobs. The pool owns its threads; jobs belong to whoever submitted them.
 */
#include "workpool.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Jobs run a little below the threads that serve the sockets, so a health probe gets a
 * core at once while every core computes (on Linux a nice value is per thread). */
#define WORKPOOL_NICE 5

struct workpool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    workpool_job *head, *tail;
    int stop;
    int nthreads;
    pthread_t threads[];
};

static void *worker(void *arg)
{
    workpool *p = arg;
    /* best effort: without it jobs only compete as equals */
    (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), WORKPOOL_NICE);
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->head && !p->stop)
            pthread_cond_wait(&p->cv, &p->mu);
        workpool_job *j = p->head;
        if (!j)
            break; /* stopping, and nothing left */
        p->head = j->next;
        if (!p->head)
            p->tail = NULL;
        pthread_mutex_unlock(&p->mu);
        j->run(j);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int workpool_new(int threads, workpool **out)
{
    *out = NULL;
    if (threads < 1)
        threads = 1;
    workpool *p = calloc(1, sizeof *p + (size_t)threads * sizeof(pthread_t));
    if (!p)
        return -1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&p->threads[i], NULL, worker, p) != 0)
            break;
        p->nthreads++;
    }
    if (!p->nthreads) {
        workpool_free(p);
        return -1;
    }
    *out = p;
    return 0;
}

void workpool_submit(workpool *p, workpool_job *job)
{
    job->next = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->tail)
        p->tail->next = job;
    else
        p->head = job;
    p->tail = job;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void workpool_free(workpool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
