/*
 * bench_time.h — the clock and the sort order the benchmark programs share (each is a
 * single-file program, so these are static).
 */
#ifndef BENCH_TIME_H
#define BENCH_TIME_H

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Monotonic milliseconds from an arbitrary origin; with BENCH_CLOCK=cpu in the
 * environment, the process's CPU time instead: with BENCH_THREADS=1 that compares two
 * builds on a machine other jobs are loading, where wall time swings with their load. */
static double now_ms(void)
{
    static int cpu = -1;
    if (cpu < 0) {
        const char *c = getenv("BENCH_CLOCK");
        cpu = c && !strcmp(c, "cpu");
    }
    struct timespec ts;
    clock_gettime(cpu ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* qsort order of doubles, ascending. */
static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#endif /* BENCH_TIME_H */
