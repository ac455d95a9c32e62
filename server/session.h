/*
 * session.h — the session store: id → session, with refcounts, a lock per session, idle
 * expiry, a session limit with LRU eviction, and a memory of dropped ids (410 vs 404).
 *
 * Ids are 16 bytes from getrandom(), hex-encoded (32 lowercase characters). The map sits
 * behind one store mutex held only for lookups and bookkeeping, never during compute; each
 * session has its own mutex, so requests on one session are serialised and different
 * sessions run in parallel. A session deleted or dropped while in use is freed when its
 * last user releases it. Ownership: the store owns every session and its layer; a caller
 * holds a session only between session_acquire/session_create and session_release.
 */
#ifndef SERVER_SESSION_H
#define SERVER_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "../core/cvd.h"
#include "apierr.h"
#include "metrics.h"

#define SESSION_ID_LEN 32 /* hex characters */

/* What a holder may read and write while it holds the session (its lock is held). */
typedef struct session {
    char id[SESSION_ID_LEN + 1]; /* immutable */
    cvd_conv2d *layer;           /* owned; freed with the session */
    int W_rank;                  /* rank W was sent with (3 or 4; 4 when generated) */
    int b_rank;                  /* rank b was sent with (1 or 2; 1 when never sent) */
    int scheme;                  /* cvd_init_scheme, or CODEC_INIT_GIVEN when W was sent */
    uint64_t seed;
    int x_rank; /* rank of the cached forward's x as sent (3 or 4); 0: none */
    uint64_t forwards, backwards;
} session;

typedef struct session_opts {
    int max_sessions;        /* >= 1 */
    double idle_timeout_s;   /* > 0 */
    double evict_min_idle_s; /* only sessions idle this long may be evicted (contract: 60) */
    size_t remember_max;     /* dropped ids remembered for 410 (contract: 100 000) */
    double remember_s;       /* ... and for how long (contract: 24 h) */
    int reaper;              /* 1: run a thread that expires idle sessions */
} session_opts;

typedef struct session_store session_store;

/* Fills o with the contract's values for max_sessions and idle_timeout_s. */
void session_opts_default(session_opts *o, int max_sessions, double idle_timeout_s);

/* Creates a store (and its reaper thread when o->reaper). 0, or -1 when out of memory or
 * the thread cannot start. */
int session_store_new(const session_opts *o, session_store **out);
/* Stops the reaper and frees every session. No session may be held. NULL is a no-op. */
void session_store_free(session_store *st);

/* Creates an empty session (layer NULL) and returns it held: the caller fills it, then
 * session_release()s it (build the layer first, so a failure never takes a slot). At the session
 * limit, evicts the least recently used session idle for >= evict_min_idle_s, else fails
 * with too_many_sessions. 0 or -1 with e set. */
int session_create(session_store *st, session **out, apierr *e);

/* Finds id and returns the session held (locked; counts as use). session_not_found for an
 * id never issued or deleted, session_expired for one dropped for idleness or eviction.
 * 0 or -1 with e set. */
int session_acquire(session_store *st, const char *id, session **out, apierr *e);

/* Ends a hold: unlocks, marks the session used now, and frees it if it was dropped. */
void session_release(session_store *st, session *s);

/* Deletes a session (its id then answers 404). If it is in use, it is freed when released.
 * 0, or -1 with e set as session_acquire would. */
int session_delete(session_store *st, const char *id, apierr *e);

/* Drops every session idle longer than the timeout now; returns how many. */
size_t session_store_reap(session_store *st);

/* Gauges and counters for /metrics. */
void session_store_stats(session_store *st, metrics_sessions *out);

double session_store_idle_timeout(const session_store *st);

#endif /* SERVER_SESSION_H */
