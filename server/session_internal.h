/*
 * session_internal.h — what session.c (the map and the requests' calls) and
 * session_keep.c (loading, the background thread, the database side) share: the entry
 * and store structs and the map's helpers. Not for use outside the session store.
 * Functions marked "store mutex held" must be called with st->mu locked.
 */
#ifndef SERVER_SESSION_INTERNAL_H
#define SERVER_SESSION_INTERNAL_H

#include <pthread.h>
#include <time.h>

#include "session.h"

/* An idle session's workspace goes after TRIM_AFTER_S; with a database, its layer too
 * after unload_after() (then loaded again on use): memory then follows the active sessions.
 * Half the idle timeout, at most a minute: a session that idle is likely done for a while,
 * and loading it back costs one indexed read. */
#define TRIM_AFTER_S 1.0

typedef struct entry {
    session s; /* first: a session * is an entry * */
    uint8_t key[16];
    pthread_mutex_t lock; /* held by the session's user */
    /* guarded by the store mutex: */
    int refs;
    int dead; /* removed from the map; freed when refs drops to 0 */
    double last_used;
    struct entry *next;  /* hash chain */
    cvd_conv2d_params p; /* mirrors, updated at create, load and release */
    uint64_t fw, bw;
    int cached;
    int stored;   /* in the database (persisted once) */
    int dirty;    /* counters or idle clock newer than the database's */
    int trimmed;  /* workspace freed since the last use */
    size_t bytes; /* cvd_conv2d_bytes of the layer as of its last release or trim; 0 unloaded */
} entry;

typedef struct remembered {
    uint8_t key[16];
    double t;     /* when it was dropped */
    int32_t next; /* hash chain, -1 ends */
} remembered;

struct session_store {
    session_opts o;
    char node[CONFIG_NODE_MAX + 1];
    size_t node_len;
    pthread_mutex_t mu;
    entry **buckets;
    size_t nbuckets; /* power of two */
    size_t live;
    size_t bytes; /* sum of the live entries' bytes */
    uint64_t created, expired, evicted, deleted;

    remembered *ring; /* allocated on the first drop */
    size_t ring_head, ring_len;
    int32_t *rheads;
    size_t nrheads; /* power of two */

    pthread_t reaper;
    int reaper_on, stopping;
    pthread_cond_t cv;
    double last_prune, last_malloc_trim;
    int trim_pending; /* memory was freed since the last malloc_trim (store mutex) */
};

typedef enum { ID_OURS, ID_OTHER_NODE, ID_MALFORMED } id_kind;

/* The database keeps wall-clock times, so idle expiry counts across a restart. */
double session_wall_of(double mono);
size_t session_pow2(size_t n);
/* Splits id into NODE and 32 hex digits; ours when NODE is this store's node. */
id_kind session_parse_id(const session_store *st, const char *id, uint8_t key[16]);
void session_format_id(const session_store *st, const uint8_t key[16],
                       char out[SESSION_ID_MAX + 1]);
void session_entry_free(entry *e);
void session_free_list(entry *e);
/* Store mutex held: the map's slot for key; removing an entry; dropped ids for 410. */
entry **session_slot(session_store *st, const uint8_t key[16]);
void session_unlink(session_store *st, entry *e);
void session_remember(session_store *st, const uint8_t key[16], double now);
int session_remembered(const session_store *st, const uint8_t key[16], double now);
/* Store mutex held: drops e for idleness or eviction (410 from now on). */
entry *session_drop(session_store *st, entry *e, double now);
int session_idle_expired(const session_store *st, const entry *e, double now);
/* Store mutex held: expires every idle session onto *dead; returns how many. */
size_t session_reap_locked(session_store *st, double now, entry **dead);
/* Frees dropped entries; with a database, deletes them there first and remembers their
 * ids (store mutex not held). */
void session_bury(session_store *st, entry *dead);

#endif /* SERVER_SESSION_INTERNAL_H */
