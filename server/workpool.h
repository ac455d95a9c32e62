/*
 * workpool.h — a fixed set of threads running jobs in arrival order, so computation runs
 * off the threads that serve the sockets (api.md §8.3: health answers in milliseconds
 * while every core computes). A job is a struct the caller embeds in its own state and
 * owns; submitting never allocates, so it cannot fail.
 */
#ifndef SERVER_WORKPOOL_H
#define SERVER_WORKPOOL_H

typedef struct workpool workpool;

typedef struct workpool_job {
    struct workpool_job *next; /* the pool's */
    void (*run)(struct workpool_job *job);
} workpool_job;

/* Starts `threads` threads. 0, or -1 when none could be started. */
int workpool_new(int threads, workpool **out);
/* Queues job; one of the threads calls job->run(job) soon. */
void workpool_submit(workpool *p, workpool_job *job);
/* Runs what is queued, then stops and joins the threads and frees p. NULL: no-op. */
void workpool_free(workpool *p);

#endif /* SERVER_WORKPOOL_H */
