/*
 * state.h — the session database: an SQLite file `convd.db` in state_dir, in WAL mode,
 * that holds every session (layer, W, b, init, counters, idle clock, and with
 * persist_inputs its cached x) and the ids remembered for 410. The session store
 * (session.c) is its only user: it writes through here before an answer acknowledges a
 * change, and reads everything back at start.
 *
 * Durability: each change is one transaction. synchronous=NORMAL in WAL mode makes a
 * commit survive a process crash (kill -9) as soon as it returns; the WAL reaches the disk
 * at checkpoints, which state_checkpoint runs about once a second from the store's
 * background thread, so a power loss costs at most the changes of the last second or so,
 * and never half a change.
 *
 * Threads: one connection for requests behind a mutex (every call here but
 * state_checkpoint), one for checkpoints. Ownership: the caller owns every buffer it passes;
 * state_load_layer returns a layer the caller frees.
 */
#ifndef SERVER_STATE_H
#define SERVER_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "../core/cvd.h"
#include "apierr.h"

#define STATE_SCHEMA_VERSION 1
#define STATE_DB_FILE        "convd.db"

typedef struct state_db state_db;

/* A stored session without its tensors: what the store keeps in memory for every session. */
typedef struct state_row {
    const char *id;
    cvd_conv2d_params p;
    int scheme; /* cvd_init_scheme, or CODEC_INIT_GIVEN */
    uint64_t seed;
    int W_rank, b_rank;
    uint64_t forwards, backwards;
    double last_used; /* wall clock, s since the epoch */
} state_row;

/* Opens (creating dir and file if missing) and checks the database: readable, writable,
 * WAL, intact (quick_check), ours, and of a schema this build reads (older ones are
 * migrated). 0, or -1 with a message naming the file and the reason in err. */
int state_open(const char *dir, state_db **out, char *err, size_t err_size);
void state_close(state_db *db);
const char *state_path(const state_db *db);

/* Calls fn for every stored session, then every remembered id dropped at or after `since`
 * (oldest first). fn's non-zero return stops the walk and is returned. -1 with err on a
 * database error. */
int state_each_session(state_db *db, int (*fn)(void *arg, const state_row *r), void *arg, char *err,
                       size_t err_size);
int state_each_dropped(state_db *db, double since, int (*fn)(void *arg, const char *id, double t),
                       void *arg, char *err, size_t err_size);

/* Builds the layer of a stored session with its W, b and (if stored) cached x, whose rank
 * as sent goes to *x_rank (0: none). 0, or -1 with e set (internal: the database failed or
 * disagrees with itself). */
int state_load_layer(state_db *db, const state_row *r, cvd_conv2d **out, int *x_rank, apierr *e);

/* Stores a new session whole. */
int state_insert(state_db *db, const state_row *r, const cvd_conv2d *l, apierr *e);
/* Replaces W and b (and the ranks, counters and idle clock) of a stored session. */
int state_save_weights(state_db *db, const state_row *r, const cvd_conv2d *l, apierr *e);
/* Stores the layer's cached x with the rank it was sent in (persist_inputs only). */
int state_save_input(state_db *db, const char *id, const cvd_conv2d *l, int x_rank, apierr *e);
/* Counters and idle clocks of many sessions in one transaction (rows whose id is gone are
 * skipped). */
int state_save_counters(state_db *db, const state_row *rows, size_t n);
/* Deletes a session; with remember, its id is kept for 410 as dropped at time t. */
int state_delete(state_db *db, const char *id, int remember, double t, apierr *e);
/* Forgets remembered ids dropped before `before`, and all but the newest `keep`. */
int state_prune_dropped(state_db *db, double before, size_t keep);

/* Copies the WAL into the database file and syncs it (PASSIVE: never waits for writers). */
void state_checkpoint(state_db *db);

#endif /* SERVER_STATE_H */
