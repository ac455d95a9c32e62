/*
 * failalloc.h — the control block shared between a test and the failalloc.so shim
 * (failalloc.c) preloaded into the daemon under test. The test creates a file of at least
 * FAILALLOC_CTL_SIZE bytes, names it in FAILALLOC_CTL in the daemon's environment, and
 * maps it too; both sides then see the same three counters.
 *
 * Protocol: the test zeroes `count` and `failed`, then stores N > 0 in `nth`: from then on
 * the daemon's allocations (malloc, calloc, realloc, aligned allocations) are counted, and
 * the Nth returns NULL with errno ENOMEM, once. Storing 0 in `nth` stops the counting;
 * `failed` says whether the Nth allocation was reached.
 */
#ifndef TESTS_SHIM_FAILALLOC_H
#define TESTS_SHIM_FAILALLOC_H

#include <stdatomic.h>

#define FAILALLOC_CTL_SIZE 4096

typedef struct failalloc_ctl {
    atomic_long nth;    /* 0: off; N: fail the Nth allocation counted */
    atomic_long count;  /* allocations counted since the test armed it */
    atomic_long failed; /* allocations failed on purpose */
} failalloc_ctl;

#endif /* TESTS_SHIM_FAILALLOC_H */
