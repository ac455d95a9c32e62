/*
 * metrics.c — request counters by (endpoint, status), a latency histogram per endpoint,
 * byte and compute counters, all as relaxed atomics in static storage: a request records
 * itself with a handful of fetch_adds and no lock. Statuses are folded into a fixed list
 * (every status the daemon answers with) so the counter table is a plain array.
 */
#include "metrics.h"

#include <stdatomic.h>

static const char *const ep_names[METRICS_EP_COUNT] = {
    "root",          "healthz",        "readyz",  "metrics",  "create_session",
    "get_session",   "delete_session", "forward", "backward", "list_sessions",
    "patch_session", "openapi",        "other",
};

static const int statuses[] = {200, 201, 204, 400, 401, 404, 405, 409, 410,
                               413, 415, 421, 422, 429, 500, 503, 0};
#define NSTATUS (sizeof statuses / sizeof statuses[0]) /* last slot: any other status */

/* Upper bounds in seconds; the +Inf bucket is the request count itself. */
static const double bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
#define NBUCKET (sizeof bounds / sizeof bounds[0])

static _Atomic uint64_t requests[METRICS_EP_COUNT][NSTATUS];
static _Atomic uint64_t hist[METRICS_EP_COUNT][NBUCKET]; /* non-cumulative per bucket */
static _Atomic uint64_t hist_count[METRICS_EP_COUNT];
static _Atomic uint64_t hist_sum_ns[METRICS_EP_COUNT];
static _Atomic uint64_t bytes_in, bytes_out, compute_ns;

const char *metrics_endpoint_name(metrics_endpoint ep)
{
    return (unsigned)ep < METRICS_EP_COUNT ? ep_names[ep] : "other";
}

static uint64_t to_ns(double s)
{
    return s > 0 ? (uint64_t)(s * 1e9) : 0;
}

void metrics_request(metrics_endpoint ep, int status, double seconds, size_t in, size_t out)
{
    if ((unsigned)ep >= METRICS_EP_COUNT)
        ep = METRICS_EP_OTHER;
    size_t si = NSTATUS - 1;
    for (size_t i = 0; i + 1 < NSTATUS; i++) {
        if (statuses[i] == status) {
            si = i;
            break;
        }
    }
    atomic_fetch_add_explicit(&requests[ep][si], 1, memory_order_relaxed);
    size_t bi = 0;
    while (bi < NBUCKET && seconds > bounds[bi])
        bi++;
    if (bi < NBUCKET)
        atomic_fetch_add_explicit(&hist[ep][bi], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&hist_count[ep], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&hist_sum_ns[ep], to_ns(seconds), memory_order_relaxed);
    atomic_fetch_add_explicit(&bytes_in, in, memory_order_relaxed);
    atomic_fetch_add_explicit(&bytes_out, out, memory_order_relaxed);
}

void metrics_compute(double seconds)
{
    atomic_fetch_add_explicit(&compute_ns, to_ns(seconds), memory_order_relaxed);
}

static uint64_t get(_Atomic uint64_t *a)
{
    return atomic_load_explicit(a, memory_order_relaxed);
}

static void counter(buf *b, const char *name, const char *help, uint64_t v)
{
    buf_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
               (unsigned long long)v);
}

int metrics_render(buf *b, const metrics_sessions *s)
{
    buf_puts(b, "# HELP convd_requests_total HTTP requests answered, by endpoint and status.\n"
                "# TYPE convd_requests_total counter\n");
    for (int e = 0; e < METRICS_EP_COUNT; e++) {
        for (size_t i = 0; i < NSTATUS; i++) {
            uint64_t v = get(&requests[e][i]);
            if (!v)
                continue;
            if (statuses[i])
                buf_printf(b, "convd_requests_total{endpoint=\"%s\",status=\"%d\"} %llu\n",
                           ep_names[e], statuses[i], (unsigned long long)v);
            else
                buf_printf(b, "convd_requests_total{endpoint=\"%s\",status=\"other\"} %llu\n",
                           ep_names[e], (unsigned long long)v);
        }
    }
    buf_puts(b, "# HELP convd_request_duration_seconds Time from the request's headers to the "
                "end of its answer, by endpoint.\n"
                "# TYPE convd_request_duration_seconds histogram\n");
    for (int e = 0; e < METRICS_EP_COUNT; e++) {
        uint64_t count = get(&hist_count[e]);
        if (!count)
            continue;
        uint64_t cum = 0;
        for (size_t i = 0; i < NBUCKET; i++) {
            cum += get(&hist[e][i]);
            buf_printf(b, "convd_request_duration_seconds_bucket{endpoint=\"%s\",le=\"%g\"} %llu\n",
                       ep_names[e], bounds[i], (unsigned long long)cum);
        }
        buf_printf(b,
                   "convd_request_duration_seconds_bucket{endpoint=\"%s\",le=\"+Inf\"} %llu\n"
                   "convd_request_duration_seconds_sum{endpoint=\"%s\"} %.9f\n"
                   "convd_request_duration_seconds_count{endpoint=\"%s\"} %llu\n",
                   ep_names[e], (unsigned long long)count, ep_names[e],
                   (double)get(&hist_sum_ns[e]) / 1e9, ep_names[e], (unsigned long long)count);
    }
    buf_printf(b,
               "# HELP convd_sessions_live Sessions currently held.\n"
               "# TYPE convd_sessions_live gauge\nconvd_sessions_live %llu\n",
               (unsigned long long)s->live);
    buf_printf(b,
               "# HELP convd_sessions_loaded Sessions whose layer is in memory; with a state_dir "
               "the others are on disk and load on use.\n"
               "# TYPE convd_sessions_loaded gauge\nconvd_sessions_loaded %llu\n"
               "# HELP convd_session_bytes Bytes the sessions' layers hold (weights, cached "
               "input, workspace) as of their last use.\n"
               "# TYPE convd_session_bytes gauge\nconvd_session_bytes %llu\n",
               (unsigned long long)s->loaded, (unsigned long long)s->bytes);
    counter(b, "convd_sessions_created_total", "Sessions created.", s->created);
    counter(b, "convd_sessions_expired_total", "Sessions dropped after their idle timeout.",
            s->expired);
    counter(b, "convd_sessions_evicted_total",
            "Sessions evicted to make room at the session limit.", s->evicted);
    counter(b, "convd_sessions_deleted_total", "Sessions deleted by DELETE /sessions/{id}.",
            s->deleted);
    counter(b, "convd_bytes_in_total", "Request body bytes received.", get(&bytes_in));
    counter(b, "convd_bytes_out_total", "Response body bytes sent.", get(&bytes_out));
    buf_printf(b,
               "# HELP convd_compute_seconds_total Time spent in convolution forward and "
               "backward.\n# TYPE convd_compute_seconds_total counter\n"
               "convd_compute_seconds_total %.9f\n",
               (double)get(&compute_ns) / 1e9);
    return b->oom ? -1 : 0;
}
