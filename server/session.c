/*
 * session.c — the session store. A chained hash map of live sessions keyed by their 16
 * random id bytes, one store mutex for the map and bookkeeping (refs, last use, dead flag),
 * and a mutex per session held by its user for the whole request. Dropped ids (expired or
 * evicted) go into a ring with a hash index so they answer 410 for remember_s or until
 * remember_max newer ones push them out. Sessions are freed outside the store mutex, by
 * whoever drops the last reference, and database writes run outside it too. The entry
 * mirrors what GET /sessions and the counter flush read (params, counters, cached), so
 * neither needs a session's own lock; a session with refs == 0 is touched by nobody else,
 * which is what lets the reaper trim or unload it under the store mutex alone.
 */
#include "session.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "budget.h"
#include "log.h"

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
    struct entry *next; /* hash chain */
    cvd_conv2d_params p; /* mirrors, updated at create, load and release */
    uint64_t fw, bw;
    int cached;
    int stored;  /* in the database (persisted once) */
    int dirty;   /* counters or idle clock newer than the database's */
    int trimmed; /* workspace freed since the last use */
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

static double clock_s(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double now_s(void)
{
    return clock_s(CLOCK_MONOTONIC);
}

/* The database keeps wall-clock times, so idle expiry counts across a restart. */
static double wall_of(double mono)
{
    return clock_s(CLOCK_REALTIME) - (now_s() - mono);
}

static size_t pow2_at_least(size_t n)
{
    size_t p = 16;
    while (p < n && p < ((size_t)1 << 20))
        p <<= 1;
    return p;
}

static uint64_t key_hash(const uint8_t key[16])
{
    uint64_t h;
    memcpy(&h, key, sizeof h); /* the key is random: its bytes are a good hash */
    return h;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int parse_hex(const char *id, uint8_t key[16])
{
    if (strlen(id) != SESSION_ID_LEN)
        return -1;
    for (int i = 0; i < 16; i++) {
        int hi = hexval(id[2 * i]), lo = hexval(id[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        key[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

typedef enum { ID_OURS, ID_OTHER_NODE, ID_MALFORMED } id_kind;

/* Splits id into NODE and the 32 hex digits; ours when NODE is this store's node (none for
 * a store without a node name). */
static id_kind parse_id(const session_store *st, const char *id, uint8_t key[16])
{
    if (!id)
        return ID_MALFORMED;
    const char *dot = strrchr(id, '.');
    const char *hex = dot ? dot + 1 : id;
    if (parse_hex(hex, key) != 0)
        return ID_MALFORMED;
    size_t nlen = dot ? (size_t)(dot - id) : 0;
    if (nlen == st->node_len && strncmp(id, st->node, nlen) == 0)
        return ID_OURS;
    return ID_OTHER_NODE;
}

static void format_id(const session_store *st, const uint8_t key[16], char out[SESSION_ID_MAX + 1])
{
    static const char hex[] = "0123456789abcdef";
    size_t k = 0;
    if (st->node_len) {
        memcpy(out, st->node, st->node_len);
        out[st->node_len] = '.';
        k = st->node_len + 1;
    }
    for (int i = 0; i < 16; i++) {
        out[k + 2 * i] = hex[key[i] >> 4];
        out[k + 2 * i + 1] = hex[key[i] & 15];
    }
    out[k + SESSION_ID_LEN] = '\0';
}

static void entry_free(entry *e)
{
    cvd_conv2d_free(e->s.layer);
    pthread_mutex_destroy(&e->lock);
    free(e);
}

static void free_list(entry *e)
{
    while (e) {
        entry *next = e->next;
        entry_free(e);
        e = next;
    }
}

/* --- the map (store mutex held) --- */

static entry **slot_of(session_store *st, const uint8_t key[16])
{
    entry **p = &st->buckets[key_hash(key) & (st->nbuckets - 1)];
    while (*p && memcmp((*p)->key, key, 16) != 0)
        p = &(*p)->next;
    return p;
}

static void unlink_entry(session_store *st, entry *e)
{
    entry **p = slot_of(st, e->key);
    if (*p == e)
        *p = e->next;
    e->next = NULL;
    e->dead = 1;
    st->live--;
    st->bytes -= e->bytes;
    budget_adjust(-(int64_t)e->bytes); /* edge hook: the budget follows st->bytes */
    e->bytes = 0;
}

/* --- remembered ids (store mutex held) --- */

static void remember(session_store *st, const uint8_t key[16], double now)
{
    if (st->o.remember_max == 0)
        return;
    if (!st->ring) {
        st->nrheads = pow2_at_least(st->o.remember_max);
        st->ring = calloc(st->o.remember_max, sizeof *st->ring);
        st->rheads = malloc(st->nrheads * sizeof *st->rheads);
        if (!st->ring || !st->rheads) {
            /* degrade to 404 for dropped ids rather than fail the request */
            free(st->ring);
            free(st->rheads);
            st->ring = NULL;
            st->rheads = NULL;
            return;
        }
        for (size_t i = 0; i < st->nrheads; i++)
            st->rheads[i] = -1;
    }
    size_t i = st->ring_head;
    if (st->ring_len == st->o.remember_max) {
        /* the ring is full: slot i holds the oldest id; unhook it from its chain */
        int32_t *p = &st->rheads[key_hash(st->ring[i].key) & (st->nrheads - 1)];
        while (*p != -1 && *p != (int32_t)i)
            p = &st->ring[*p].next;
        if (*p == (int32_t)i)
            *p = st->ring[i].next;
    } else {
        st->ring_len++;
    }
    memcpy(st->ring[i].key, key, 16);
    st->ring[i].t = now;
    int32_t *head = &st->rheads[key_hash(key) & (st->nrheads - 1)];
    st->ring[i].next = *head;
    *head = (int32_t)i;
    st->ring_head = (i + 1) % st->o.remember_max;
}

static int remembered_id(const session_store *st, const uint8_t key[16], double now)
{
    if (!st->ring)
        return 0;
    for (int32_t j = st->rheads[key_hash(key) & (st->nrheads - 1)]; j != -1; j = st->ring[j].next) {
        if (memcmp(st->ring[j].key, key, 16) == 0)
            return now - st->ring[j].t <= st->o.remember_s;
    }
    return 0;
}

/* Drops e for idleness or eviction: 410 from now on. Returns e if it can be freed now. */
static entry *drop(session_store *st, entry *e, double now)
{
    unlink_entry(st, e);
    remember(st, e->key, now);
    return e->refs == 0 ? e : NULL;
}

static int idle_expired(const session_store *st, const entry *e, double now)
{
    return e->refs == 0 && now - e->last_used > st->o.idle_timeout_s;
}

/* Expires every idle session; appends them to *dead. Returns the count. */
static size_t reap_locked(session_store *st, double now, entry **dead)
{
    size_t n = 0;
    for (size_t b = 0; b < st->nbuckets; b++) {
        entry *e = st->buckets[b];
        while (e) {
            entry *next = e->next;
            if (idle_expired(st, e, now)) {
                drop(st, e, now);
                st->expired++;
                e->next = *dead;
                *dead = e;
                n++;
            }
            e = next;
        }
    }
    return n;
}

/* Frees dropped entries; with a database, first deletes them there and remembers their ids
 * (for 410 after a restart too). */
static void bury(session_store *st, entry *dead)
{
    if (st->o.db) {
        double t = clock_s(CLOCK_REALTIME);
        for (entry *e = dead; e; e = e->next) {
            apierr err;
            if (e->stored && state_delete(st->o.db, e->s.id, 1, t, &err) != 0)
                log_warn("%s", err.msg);
        }
    }
    free_list(dead);
}

static double unload_after(const session_store *st)
{
    double t = st->o.idle_timeout_s / 2;
    return t < 60 ? t : 60;
}

/* Frees the workspace of sessions idle TRIM_AFTER_S, and with a database unloads the layer
 * of those idle unload_after() whose cache (if any) is stored. Returns how many. */
static size_t trim_locked(session_store *st, double now)
{
    size_t n = 0;
    for (size_t b = 0; b < st->nbuckets; b++) {
        for (entry *e = st->buckets[b]; e; e = e->next) {
            if (e->refs || !e->s.layer)
                continue;
            double idle = now - e->last_used;
            int cache_safe = !e->cached || st->o.persist_inputs;
            if (st->o.db && e->stored && cache_safe && idle >= unload_after(st)) {
                cvd_conv2d_free(e->s.layer);
                e->s.layer = NULL;
            } else if (!e->trimmed && idle >= TRIM_AFTER_S) {
                cvd_conv2d_trim(e->s.layer);
                e->trimmed = 1;
            } else {
                continue;
            }
            size_t now_bytes = e->s.layer ? cvd_conv2d_bytes(e->s.layer) : 0;
            st->bytes -= e->bytes - now_bytes;
            budget_adjust((int64_t)now_bytes - (int64_t)e->bytes); /* edge hook */
            e->bytes = now_bytes;
            n++;
        }
    }
    return n;
}

/* Counters and idle clocks of the sessions used since the last flush, copied under the
 * store mutex and written outside it. */
void session_store_flush(session_store *st)
{
    if (!st->o.db)
        return;
    typedef struct {
        char id[SESSION_ID_MAX + 1];
        state_row r;
    } pending;
    pthread_mutex_lock(&st->mu);
    size_t n = 0, cap = 0;
    pending *rows = NULL;
    for (size_t b = 0; b < st->nbuckets; b++)
        for (entry *e = st->buckets[b]; e; e = e->next)
            if (e->dirty && e->stored)
                cap++;
    if (cap)
        rows = malloc(cap * sizeof *rows);
    for (size_t b = 0; rows && b < st->nbuckets; b++) {
        for (entry *e = st->buckets[b]; e; e = e->next) {
            if (!e->dirty || !e->stored)
                continue;
            memcpy(rows[n].id, e->s.id, sizeof rows[n].id);
            rows[n].r = (state_row){.id = rows[n].id,
                                    .forwards = e->fw,
                                    .backwards = e->bw,
                                    .last_used = wall_of(e->last_used)};
            e->dirty = 0;
            n++;
        }
    }
    pthread_mutex_unlock(&st->mu);
    if (!n) {
        free(rows);
        return;
    }
    state_row *flat = malloc(n * sizeof *flat);
    for (size_t i = 0; flat && i < n; i++)
        flat[i] = rows[i].r;
    if (!flat || state_save_counters(st->o.db, flat, n) != 0)
        log_warn("could not store the counters of %zu sessions (tried again in a second)", n);
    free(flat);
    free(rows);
}

static void reaper_tick(session_store *st, double now)
{
    entry *dead = NULL;
    reap_locked(st, now, &dead);
    /* glibc keeps freed memory for the next request; once sessions went idle or away, give
     * it back (at most every 2 s: malloc_trim walks the whole heap, arena by arena) */
    st->trim_pending |= dead || trim_locked(st, now);
    int give_back = st->trim_pending && now - st->last_malloc_trim >= 2;
    if (give_back) {
        st->trim_pending = 0;
        st->last_malloc_trim = now;
    }
    pthread_mutex_unlock(&st->mu);
    bury(st, dead);
    if (give_back)
        malloc_trim(0);
    if (st->o.db) {
        session_store_flush(st);
        state_checkpoint(st->o.db);
        if (now - st->last_prune >= 60) {
            state_prune_dropped(st->o.db, clock_s(CLOCK_REALTIME) - st->o.remember_s,
                                st->o.remember_max);
            st->last_prune = now;
        }
    }
    pthread_mutex_lock(&st->mu);
}

static void *reaper_main(void *arg)
{
    session_store *st = arg;
    double tick = st->o.idle_timeout_s / 4;
    if (tick > 1)
        tick = 1;
    if (tick < 0.01)
        tick = 0.01;
    pthread_mutex_lock(&st->mu);
    while (!st->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        double t = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 + tick;
        ts.tv_sec = (time_t)t;
        ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
        pthread_cond_timedwait(&st->cv, &st->mu, &ts);
        if (st->stopping)
            break;
        reaper_tick(st, now_s());
    }
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

void session_opts_default(session_opts *o, int max_sessions, double idle_timeout_s)
{
    *o = (session_opts){
        .max_sessions = max_sessions,
        .idle_timeout_s = idle_timeout_s,
        .evict_min_idle_s = 60,
        .remember_max = 100000,
        .remember_s = 86400,
        .reaper = 1,
    };
}

typedef struct loader {
    session_store *st;
    double now, wall;
    char *err;
    size_t err_size;
    entry *expired; /* idle past the timeout while the daemon was down */
} loader;

static int load_session(void *arg, const state_row *r)
{
    loader *ld = arg;
    session_store *st = ld->st;
    uint8_t key[16];
    if (parse_id(st, r->id, key) != ID_OURS) {
        snprintf(ld->err, ld->err_size,
                 "%s holds session %.80s, which is not of this node (node_name \"%s\"); start "
                 "convd with the node_name that state_dir was written with, or give this node "
                 "its own state_dir",
                 state_path(st->o.db), r->id, st->node);
        return -1;
    }
    entry *n = calloc(1, sizeof *n);
    if (!n) {
        snprintf(ld->err, ld->err_size, "out of memory loading sessions");
        return -1;
    }
    pthread_mutex_init(&n->lock, NULL);
    memcpy(n->key, key, 16);
    snprintf(n->s.id, sizeof n->s.id, "%s", r->id);
    n->s.W_rank = r->W_rank;
    n->s.b_rank = r->b_rank;
    n->s.scheme = r->scheme;
    n->s.seed = r->seed;
    n->s.forwards = n->fw = r->forwards;
    n->s.backwards = n->bw = r->backwards;
    n->s.restored = 1;
    n->p = r->p;
    n->stored = 1;
    double idle = ld->wall - r->last_used;
    n->last_used = ld->now - (idle > 0 ? idle : 0);
    if (idle > st->o.idle_timeout_s) {
        n->next = ld->expired;
        ld->expired = n;
        return 0;
    }
    entry **slot = slot_of(st, key);
    n->next = *slot;
    *slot = n;
    st->live++;
    return 0;
}

static int load_dropped(void *arg, const char *id, double t)
{
    loader *ld = arg;
    uint8_t key[16];
    if (parse_id(ld->st, id, key) == ID_OURS)
        remember(ld->st, key, ld->now - (ld->wall - t));
    return 0;
}

/* Reads the database into a new store: remembered ids first (oldest first, so the ring
 * keeps the newest), then sessions; those that expired while the daemon was down are
 * dropped now, as the reaper would have. */
static int load_all(session_store *st, char *err, size_t n)
{
    loader ld = {st, now_s(), clock_s(CLOCK_REALTIME), err, n, NULL};
    if (state_each_dropped(st->o.db, ld.wall - st->o.remember_s, load_dropped, &ld, err, n) ||
        state_each_session(st->o.db, load_session, &ld, err, n)) {
        free_list(ld.expired);
        return -1;
    }
    for (entry *e = ld.expired; e; e = e->next) {
        remember(st, e->key, ld.now);
        st->expired++;
    }
    bury(st, ld.expired);
    log_info("loaded %zu sessions from %s", st->live, state_path(st->o.db));
    return 0;
}

int session_store_new(const session_opts *o, session_store **out, char *err, size_t err_size)
{
    *out = NULL;
    snprintf(err, err_size, "out of memory creating the session store");
    size_t node_len = o->node_name ? strlen(o->node_name) : 0;
    if (o->max_sessions < 1 || !(o->idle_timeout_s > 0) || node_len > CONFIG_NODE_MAX) {
        snprintf(err, err_size, "bad session store options");
        return -1;
    }
    session_store *st = calloc(1, sizeof *st);
    if (!st)
        return -1;
    st->o = *o;
    st->node_len = node_len;
    memcpy(st->node, node_len ? o->node_name : "", node_len + 1);
    st->o.node_name = st->node;
    st->nbuckets = pow2_at_least((size_t)o->max_sessions * 2);
    st->buckets = calloc(st->nbuckets, sizeof(entry *)); /* chain heads */
    if (!st->buckets) {
        free(st);
        return -1;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&st->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&st->mu, NULL);
    if (o->db && load_all(st, err, err_size) != 0) {
        session_store_free(st);
        return -1;
    }
    if (o->reaper) {
        if (pthread_create(&st->reaper, NULL, reaper_main, st) != 0) {
            snprintf(err, err_size, "cannot start the session reaper thread");
            session_store_free(st);
            return -1;
        }
        st->reaper_on = 1;
    }
    *out = st;
    return 0;
}

void session_store_free(session_store *st)
{
    if (!st)
        return;
    if (st->reaper_on) {
        pthread_mutex_lock(&st->mu);
        st->stopping = 1;
        pthread_cond_signal(&st->cv);
        pthread_mutex_unlock(&st->mu);
        pthread_join(st->reaper, NULL);
    }
    session_store_flush(st);
    for (size_t b = 0; b < st->nbuckets; b++)
        free_list(st->buckets[b]);
    free(st->buckets);
    free(st->ring);
    free(st->rheads);
    pthread_cond_destroy(&st->cv);
    pthread_mutex_destroy(&st->mu);
    free(st);
}

static int random_key(uint8_t key[16])
{
    size_t got = 0;
    while (got < 16) {
        ssize_t n = getrandom(key + got, 16 - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        got += (size_t)n;
    }
    return 0;
}

int session_create(session_store *st, session **out, apierr *e)
{
    *out = NULL;
    entry *n = calloc(1, sizeof *n);
    if (!n)
        return apierr_set(e, APIERR_INTERNAL, "out of memory creating a session");
    pthread_mutex_init(&n->lock, NULL);
    n->s.W_rank = 4;
    n->s.b_rank = 1;
    n->refs = 1;
    pthread_mutex_lock(&n->lock); /* nobody else can see it yet */

    entry *dead = NULL;
    pthread_mutex_lock(&st->mu);
    double now = now_s();
    if (st->live >= (size_t)st->o.max_sessions) {
        reap_locked(st, now, &dead);
        if (st->live >= (size_t)st->o.max_sessions) {
            entry *lru = NULL;
            for (size_t b = 0; b < st->nbuckets; b++)
                for (entry *c = st->buckets[b]; c; c = c->next)
                    if (c->refs == 0 && now - c->last_used >= st->o.evict_min_idle_s &&
                        (!lru || c->last_used < lru->last_used))
                        lru = c;
            if (!lru) {
                pthread_mutex_unlock(&st->mu);
                bury(st, dead);
                pthread_mutex_unlock(&n->lock);
                entry_free(n);
                return apierr_set(e, APIERR_TOO_MANY_SESSIONS,
                                  "the session limit (max_sessions = %d) is reached and no "
                                  "session has been idle for %g s or more; delete sessions you "
                                  "no longer need (DELETE /sessions/{id}) or raise max_sessions",
                                  st->o.max_sessions, st->o.evict_min_idle_s);
            }
            drop(st, lru, now);
            st->evicted++;
            lru->next = dead;
            dead = lru;
        }
    }
    for (;;) {
        if (random_key(n->key) != 0) {
            pthread_mutex_unlock(&st->mu);
            bury(st, dead);
            pthread_mutex_unlock(&n->lock);
            entry_free(n);
            return apierr_set(e, APIERR_INTERNAL, "getrandom failed: %s", strerror(errno));
        }
        if (!*slot_of(st, n->key) && !remembered_id(st, n->key, now))
            break;
    }
    format_id(st, n->key, n->s.id);
    entry **slot = slot_of(st, n->key);
    *slot = n;
    n->last_used = now;
    st->live++;
    st->created++;
    pthread_mutex_unlock(&st->mu);
    bury(st, dead);
    *out = &n->s;
    return 0;
}

/* Looks id up with the store mutex held. Returns the entry, or NULL with e set; an entry
 * found idle past its timeout is dropped (and put on *dead) and answers 410. */
static entry *lookup_locked(session_store *st, const char *id, double now, entry **dead, apierr *e)
{
    uint8_t key[16];
    id_kind k = parse_id(st, id, key);
    if (k == ID_OTHER_NODE) {
        const char *dot = strrchr(id, '.');
        int nlen = dot ? (int)(dot - id) : 0;
        apierr_set(e, APIERR_WRONG_NODE,
                   "session %.80s belongs to node \"%.*s\", and this is node \"%s\": send the id "
                   "in the X-Session-Id header or in the path (/sessions/{id}/forward, "
                   "/sessions/{id}/backward) so the router sends the request to its node",
                   id, nlen > 40 ? 40 : nlen, id, st->node);
        return NULL;
    }
    if (k == ID_MALFORMED) {
        apierr_set(e, APIERR_SESSION_NOT_FOUND,
                   "no session \"%.80s\": session ids are what POST /sessions or an inline "
                   "/forward returned (%s32 hex digits)",
                   id ? id : "", st->node_len ? "NODE. and " : "");
        return NULL;
    }
    entry *n = *slot_of(st, key);
    if (n && idle_expired(st, n, now)) {
        drop(st, n, now);
        st->expired++;
        n->next = *dead;
        *dead = n;
        n = NULL;
    }
    if (n)
        return n;
    if (remembered_id(st, key, now))
        apierr_set(e, APIERR_SESSION_EXPIRED,
                   "session %s expired: it was dropped after %g s idle or evicted at the "
                   "session limit; create a new one with POST /sessions",
                   id, st->o.idle_timeout_s);
    else
        apierr_set(e, APIERR_SESSION_NOT_FOUND,
                   "no session %s: it was never created here or has been deleted; create one "
                   "with POST /sessions",
                   id);
    return NULL;
}

int session_acquire(session_store *st, const char *id, session **out, apierr *e)
{
    *out = NULL;
    entry *dead = NULL;
    pthread_mutex_lock(&st->mu);
    double now = now_s();
    entry *n = lookup_locked(st, id, now, &dead, e);
    if (n) {
        n->refs++;
        n->last_used = now;
    }
    pthread_mutex_unlock(&st->mu);
    bury(st, dead);
    if (!n)
        return -1;
    pthread_mutex_lock(&n->lock);
    pthread_mutex_lock(&st->mu);
    int gone = n->dead; /* deleted while we waited for the lock */
    pthread_mutex_unlock(&st->mu);
    if (gone) {
        session_release(st, &n->s);
        return apierr_set(e, APIERR_SESSION_NOT_FOUND,
                          "no session %s: it was deleted; create one with POST /sessions", id);
    }
    if (!n->s.layer && n->stored && st->o.db) {
        /* the holder's view: n->p changes only under this session's lock */
        state_row r = {.id = n->s.id, .p = n->p};
        int x_rank;
        if (state_load_layer(st->o.db, &r, &n->s.layer, &x_rank, e) != 0) {
            session_release(st, &n->s);
            return -1;
        }
        if (x_rank)
            n->s.x_rank = x_rank;
    }
    *out = &n->s;
    return 0;
}

void session_release(session_store *st, session *s)
{
    if (!s)
        return;
    entry *n = (entry *)s;
    int cached = s->layer && cvd_conv2d_has_cache(s->layer, NULL);
    if (cached && s->x_rank)
        s->restored = 0;
    uint64_t fw = s->forwards, bw = s->backwards;
    size_t bytes = s->layer ? cvd_conv2d_bytes(s->layer) : 0;
    cvd_conv2d_params p = s->layer ? *cvd_conv2d_get_params(s->layer) : n->p;
    pthread_mutex_unlock(&n->lock);
    pthread_mutex_lock(&st->mu);
    n->p = p;
    if (!n->dead) {
        st->bytes += bytes - n->bytes;
        budget_adjust((int64_t)bytes - (int64_t)n->bytes); /* edge hook */
        n->bytes = bytes;
    }
    n->last_used = now_s();
    n->fw = fw;
    n->bw = bw;
    n->cached = cached;
    n->dirty = 1;
    n->trimmed = 0;
    int last = --n->refs == 0 && n->dead;
    pthread_mutex_unlock(&st->mu);
    if (last)
        entry_free(n);
}

int session_persist(session_store *st, session *s, unsigned what, apierr *e)
{
    if (!st->o.db)
        return 0;
    entry *n = (entry *)s;
    state_row r = {.id = s->id,
                   .p = *cvd_conv2d_get_params(s->layer),
                   .scheme = s->scheme,
                   .seed = s->seed,
                   .W_rank = s->W_rank,
                   .b_rank = s->b_rank,
                   .forwards = s->forwards,
                   .backwards = s->backwards,
                   .last_used = clock_s(CLOCK_REALTIME)};
    if (what & SESSION_SAVE_NEW) {
        if (state_insert(st->o.db, &r, s->layer, e) != 0)
            return -1;
        pthread_mutex_lock(&st->mu);
        n->stored = 1;
        pthread_mutex_unlock(&st->mu);
    } else if ((what & SESSION_SAVE_WEIGHTS) && state_save_weights(st->o.db, &r, s->layer, e)) {
        return -1;
    }
    if ((what & SESSION_SAVE_INPUT) && st->o.persist_inputs &&
        state_save_input(st->o.db, s->id, s->layer, s->x_rank, e) != 0)
        return -1;
    return 0;
}

void session_discard(session_store *st, session *s)
{
    entry *n = (entry *)s;
    pthread_mutex_lock(&st->mu);
    if (!n->dead) {
        unlink_entry(st, n);
        st->created--;
    }
    pthread_mutex_unlock(&st->mu);
    if (n->stored && st->o.db) {
        apierr err;
        state_delete(st->o.db, s->id, 0, 0, &err);
    }
    session_release(st, s);
}

int session_delete(session_store *st, const char *id, apierr *e)
{
    entry *dead = NULL;
    pthread_mutex_lock(&st->mu);
    entry *n = lookup_locked(st, id, now_s(), &dead, e);
    int stored = n && n->stored;
    pthread_mutex_unlock(&st->mu);
    bury(st, dead);
    if (!n)
        return -1;
    /* The database first: a delete that is answered is a delete that stays. The entry is not
     * held here, so it can still go away meanwhile; the second lookup settles that. */
    if (stored && st->o.db && state_delete(st->o.db, id, 0, 0, e) != 0)
        return -1;
    pthread_mutex_lock(&st->mu);
    n = lookup_locked(st, id, now_s(), &dead, e);
    int last = 0;
    if (n) {
        unlink_entry(st, n);
        st->deleted++;
        st->trim_pending = 1;
        last = n->refs == 0;
    }
    pthread_mutex_unlock(&st->mu);
    bury(st, dead);
    if (last)
        entry_free(n);
    return n ? 0 : -1;
}

size_t session_store_reap(session_store *st)
{
    entry *dead = NULL;
    pthread_mutex_lock(&st->mu);
    size_t k = reap_locked(st, now_s(), &dead);
    pthread_mutex_unlock(&st->mu);
    bury(st, dead);
    return k;
}

static int by_id(const void *a, const void *b)
{
    return strcmp(((const session_info *)a)->id, ((const session_info *)b)->id);
}

int session_list(session_store *st, const char *after, size_t limit, session_info **out, size_t *n,
                 int *more)
{
    *out = NULL;
    *n = 0;
    *more = 0;
    pthread_mutex_lock(&st->mu);
    double now = now_s();
    size_t cap = st->live, k = 0;
    session_info *v = cap ? malloc(cap * sizeof *v) : NULL;
    if (cap && !v) {
        pthread_mutex_unlock(&st->mu);
        return -1;
    }
    for (size_t b = 0; b < st->nbuckets; b++) {
        for (const entry *e = st->buckets[b]; e && k < cap; e = e->next) {
            if (idle_expired(st, e, now) || (after && *after && strcmp(e->s.id, after) <= 0))
                continue;
            v[k++] = (session_info){.p = e->p,
                                    .scheme = e->s.scheme,
                                    .seed = e->s.seed,
                                    .cached = e->cached,
                                    .forwards = e->fw,
                                    .backwards = e->bw,
                                    .idle_s = e->refs ? 0 : now - e->last_used};
            memcpy(v[k - 1].id, e->s.id, sizeof v[k - 1].id);
        }
    }
    pthread_mutex_unlock(&st->mu);
    qsort(v, k, sizeof *v, by_id);
    *more = k > limit;
    *n = k > limit ? limit : k;
    if (*n == 0) {
        free(v);
        v = NULL;
    }
    *out = v;
    return 0;
}
void session_store_stats(session_store *st, metrics_sessions *out)
{
    pthread_mutex_lock(&st->mu);
    *out = (metrics_sessions){
        .live = st->live,
        .created = st->created,
        .expired = st->expired,
        .evicted = st->evicted,
        .deleted = st->deleted,
        .bytes = st->bytes,
    };
    for (size_t b = 0; b < st->nbuckets; b++)
        for (const entry *e = st->buckets[b]; e; e = e->next)
            out->loaded += e->bytes > 0;
    pthread_mutex_unlock(&st->mu);
}

double session_store_idle_timeout(const session_store *st)
{
    return st->o.idle_timeout_s;
}
