/*
 * bench_time.h — the clock and the sort order the benchmark programs share (each is a
 * single-file program, so these are static).
 */
#ifndef BENCH_TIME_H
#define BENCH_TIME_H

#include <time.h>

/* Monotonic milliseconds from an arbitrary origin. */
static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* qsort order of doubles, ascending. */
static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#endif /* BENCH_TIME_H */
