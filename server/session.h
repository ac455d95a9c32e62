/*
 * session.h — the session store: id → session, with refcounts, a lock per session, idle
 * expiry, a session limit with LRU eviction, and a memory of dropped ids (410 vs 404).
 *
 * Ids are 16 bytes from getrandom(), hex-encoded (32 lowercase characters), behind
 * `NODE.` when the store has a node name (so a router can find a session's node). The map sits
 * behind one store mutex held only for lookups and bookkeeping, never during compute; each
 * session has its own mutex, so requests on one session are serialised and different
 * sessions run in parallel. A session deleted or dropped while in use is freed when its
 * last user releases it. Ownership: the store owns every session and its layer; a caller
 * holds a session only between session_acquire/session_create and session_release.
 *
 * With a state database (state.h) every session is stored there too: session_persist
 * writes what a request changed before its answer, counters and idle clocks follow within
 * a second from the background thread, drops and deletes are written as they happen, and
 * session_store_new reads everything back (layers lazily, on first use). In memory, an
 * idle session's workspace is trimmed after a second, and with a database its whole layer
 * is unloaded after half the idle timeout (at most 60 s) unless it holds a cache that is
 * not stored.
 */
#ifndef SERVER_SESSION_H
#define SERVER_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "../core/cvd.h"
#include "apierr.h"
#include "config.h"
#include "metrics.h"
#include "state.h"

#define SESSION_ID_LEN 32                                   /* hex characters */
#define SESSION_ID_MAX (CONFIG_NODE_MAX + 1 + SESSION_ID_LEN) /* NODE.hex */

/* What a holder may read and write while it holds the session (its lock is held). */
typedef struct session {
    char id[SESSION_ID_MAX + 1]; /* immutable */
    cvd_conv2d *layer;           /* owned; freed with the session */
    int W_rank;                  /* rank W was sent with (3 or 4; 4 when generated) */
    int b_rank;                  /* rank b was sent with (1 or 2; 1 when never sent) */
    int scheme;                  /* cvd_init_scheme, or CODEC_INIT_GIVEN when W was sent */
    uint64_t seed;
    int x_rank; /* rank of the cached forward's x as sent (3 or 4); 0: none */
    uint64_t forwards, backwards;
    int restored; /* read from the database at start, no forward cached since */
} session;

typedef struct session_opts {
    int max_sessions;        /* >= 1 */
    double idle_timeout_s;   /* > 0 */
    double evict_min_idle_s; /* only sessions idle this long may be evicted (contract: 60) */
    size_t remember_max;     /* dropped ids remembered for 410 (contract: 100 000) */
    double remember_s;       /* ... and for how long (contract: 24 h) */
    int reaper;              /* 1: run a thread that expires idle sessions */
    const char *node_name;   /* "" or NULL: bare ids */
    state_db *db;            /* NULL: memory only; else borrowed, outlives the store */
    int persist_inputs;      /* with db: store each forward's cache too */
} session_opts;

typedef struct session_store session_store;

/* Fills o with the contract's values for max_sessions and idle_timeout_s. */
void session_opts_default(session_opts *o, int max_sessions, double idle_timeout_s);

/* Creates a store (and its reaper thread when o->reaper); with o->db, loads every stored
 * session and remembered id (sessions idle past the timeout while the daemon was down are
 * expired now). 0, or -1 with a message in err (out of memory, no thread, a database that
 * cannot be read or holds another node's sessions). */
int session_store_new(const session_opts *o, session_store **out, char *err, size_t err_size);
/* Stops the reaper and frees every session. No session may be held. NULL is a no-op. */
void session_store_free(session_store *st);

/* Creates an empty session (layer NULL) and returns it held: the caller fills it, then
 * session_release()s it (build the layer first, so a failure never takes a slot). At the session
 * limit, evicts the least recently used session idle for >= evict_min_idle_s, else fails
 * with too_many_sessions. 0 or -1 with e set. */
int session_create(session_store *st, session **out, apierr *e);

/* Finds id and returns the session held (locked; counts as use), its layer loaded.
 * session_not_found for an id never issued or deleted, session_expired for one dropped for
 * idleness or eviction, wrong_node for an id of another node. 0 or -1 with e set. */
int session_acquire(session_store *st, const char *id, session **out, apierr *e);

/* Ends a hold: unlocks, marks the session used now, and frees it if it was dropped. */
void session_release(session_store *st, session *s);

#define SESSION_SAVE_NEW     1u /* the whole session (after session_create and filling it) */
#define SESSION_SAVE_WEIGHTS 2u /* W, b, their ranks (an SGD step, PATCH, W/b on a forward) */
#define SESSION_SAVE_INPUT   4u /* the cached x (ignored unless persist_inputs) */

/* Writes what the holder changed to the database before the answer acknowledges it; a
 * no-op without one. 0, or -1 with e set: the change is not stored and the caller must
 * undo it in memory (session_discard a new session; restore the weights). */
int session_persist(session_store *st, session *s, unsigned what, apierr *e);

/* Ends the hold on a session made by session_create whose persist failed: it is removed
 * (its id answers 404) and freed. */
void session_discard(session_store *st, session *s);

/* One row of GET /sessions: a snapshot taken under the store mutex. */
typedef struct session_info {
    char id[SESSION_ID_MAX + 1];
    cvd_conv2d_params p;
    int scheme;
    uint64_t seed;
    int cached;
    uint64_t forwards, backwards;
    double idle_s;
} session_info;

/* Up to `limit` live sessions with ids after `after` ("" or NULL: from the first), in id
 * order, into a malloc'd array (*out, the caller frees; NULL when *n is 0); *more is 1 when
 * further sessions follow the last one. 0, or -1 when out of memory. */
int session_list(session_store *st, const char *after, size_t limit, session_info **out, size_t *n,
                 int *more);

/* Deletes a session (its id then answers 404). If it is in use, it is freed when released.
 * 0, or -1 with e set as session_acquire would. */
int session_delete(session_store *st, const char *id, apierr *e);

/* Drops every session idle longer than the timeout now; returns how many. */
size_t session_store_reap(session_store *st);

/* Gauges and counters for /metrics. */
void session_store_stats(session_store *st, metrics_sessions *out);

double session_store_idle_timeout(const session_store *st);

/* Writes every pending counter and idle clock (the reaper does it each second; main at a
 * clean stop). */
void session_store_flush(session_store *st);

#endif /* SERVER_SESSION_H */
