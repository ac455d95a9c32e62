/*
 * metrics.h — process-wide request and compute metrics, rendered in the Prometheus text
 * exposition format (version 0.0.4). Recording is lock-free (relaxed atomics), so it is
 * cheap on every request; rendering reads the counters without stopping writers (a scrape
 * may see one request counted in a counter but not yet in the histogram).
 */
#ifndef SERVER_METRICS_H
#define SERVER_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* The endpoint label of a request (one per route; OTHER = no route matched). */
typedef enum {
    METRICS_EP_ROOT = 0,
    METRICS_EP_HEALTHZ,
    METRICS_EP_READYZ,
    METRICS_EP_METRICS,
    METRICS_EP_CREATE_SESSION,
    METRICS_EP_GET_SESSION,
    METRICS_EP_DELETE_SESSION,
    METRICS_EP_FORWARD,
    METRICS_EP_BACKWARD,
    METRICS_EP_LIST_SESSIONS,
    METRICS_EP_PATCH_SESSION,
    METRICS_EP_OPENAPI,
    METRICS_EP_OTHER,
    METRICS_EP_COUNT
} metrics_endpoint;

/* Session gauges and counters, owned by the session store and passed in at render time. */
typedef struct metrics_sessions {
    uint64_t live, created, expired, evicted, deleted;
    uint64_t loaded; /* sessions whose layer is in memory (the rest wait on disk) */
    uint64_t bytes;  /* what the loaded layers hold: weights, cache, workspace */
} metrics_sessions;

/* Records one finished request. */
void metrics_request(metrics_endpoint ep, int status, double seconds, size_t bytes_in,
                     size_t bytes_out);
/* Adds time spent in the core's forward/backward. */
void metrics_compute(double seconds);

/* Appends the whole exposition to b. 0, or -1 when out of memory. */
int metrics_render(buf *b, const metrics_sessions *s);

/* The label value of an endpoint ("forward", ...). */
const char *metrics_endpoint_name(metrics_endpoint ep);

#endif /* SERVER_METRICS_H */
