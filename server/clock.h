/*
 * clock.h — the daemon's two clocks, as seconds in a double: monotonic for deadlines,
 * latencies and idle times (immune to the wall clock being set), and the wall clock for
 * times that must mean the same after a restart (the session database's idle clocks).
 */
#ifndef SERVER_CLOCK_H
#define SERVER_CLOCK_H

#include <time.h>

static inline double clock_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline double clock_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#endif /* SERVER_CLOCK_H */
