/*
 * session.c — the session store. A chained hash map of live sessions keyed by their 16
 * random id bytes, one store mutex for the map and bookkeeping (refs, last use, dead flag),
 * and a mutex per session held by its user for the whole request. Dropped ids (expired or
 * evicted) go into a ring with a hash index so they answer 410 for remember_s or until
 * remember_max newer ones push them out. Sessions are freed outside the store mutex, by
 * whoever drops the last reference.
 */
#include "session.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

typedef struct entry {
    session s; /* first: a session * is an entry * */
    uint8_t key[16];
    pthread_mutex_t lock; /* held by the session's user */
    /* guarded by the store mutex: */
    int refs;
    int dead; /* removed from the map; freed when refs drops to 0 */
    double last_used;
    struct entry *next; /* hash chain */
} entry;

typedef struct remembered {
    uint8_t key[16];
    double t;     /* when it was dropped */
    int32_t next; /* hash chain, -1 ends */
} remembered;

struct session_store {
    session_opts o;
    pthread_mutex_t mu;
    entry **buckets;
    size_t nbuckets; /* power of two */
    size_t live;
    uint64_t created, expired, evicted, deleted;

    remembered *ring; /* allocated on the first drop */
    size_t ring_head, ring_len;
    int32_t *rheads;
    size_t nrheads; /* power of two */

    pthread_t reaper;
    int reaper_on, stopping;
    pthread_cond_t cv;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
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

static int parse_id(const char *id, uint8_t key[16])
{
    if (!id || strlen(id) != SESSION_ID_LEN)
        return -1;
    for (int i = 0; i < 16; i++) {
        int hi = hexval(id[2 * i]), lo = hexval(id[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        key[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static void format_id(const uint8_t key[16], char out[SESSION_ID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[key[i] >> 4];
        out[2 * i + 1] = hex[key[i] & 15];
    }
    out[SESSION_ID_LEN] = '\0';
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
        entry *dead = NULL;
        reap_locked(st, now_s(), &dead);
        if (dead) {
            pthread_mutex_unlock(&st->mu);
            free_list(dead);
            pthread_mutex_lock(&st->mu);
        }
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

int session_store_new(const session_opts *o, session_store **out)
{
    *out = NULL;
    if (o->max_sessions < 1 || !(o->idle_timeout_s > 0))
        return -1;
    session_store *st = calloc(1, sizeof *st);
    if (!st)
        return -1;
    st->o = *o;
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
    if (o->reaper) {
        if (pthread_create(&st->reaper, NULL, reaper_main, st) != 0) {
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
                free_list(dead);
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
            free_list(dead);
            pthread_mutex_unlock(&n->lock);
            entry_free(n);
            return apierr_set(e, APIERR_INTERNAL, "getrandom failed: %s", strerror(errno));
        }
        if (!*slot_of(st, n->key) && !remembered_id(st, n->key, now))
            break;
    }
    format_id(n->key, n->s.id);
    entry **slot = slot_of(st, n->key);
    *slot = n;
    n->last_used = now;
    st->live++;
    st->created++;
    pthread_mutex_unlock(&st->mu);
    free_list(dead);
    *out = &n->s;
    return 0;
}

/* Looks id up with the store mutex held. Returns the entry, or NULL with e set; an entry
 * found idle past its timeout is dropped (and put on *dead) and answers 410. */
static entry *lookup_locked(session_store *st, const char *id, double now, entry **dead, apierr *e)
{
    uint8_t key[16];
    if (parse_id(id, key) != 0) {
        apierr_set(e, APIERR_SESSION_NOT_FOUND,
                   "no session \"%.40s\": session ids are the 32 hex digits that POST /sessions "
                   "or an inline /forward returned",
                   id ? id : "");
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
    free_list(dead);
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
    *out = &n->s;
    return 0;
}

void session_release(session_store *st, session *s)
{
    if (!s)
        return;
    entry *n = (entry *)s;
    pthread_mutex_unlock(&n->lock);
    pthread_mutex_lock(&st->mu);
    n->last_used = now_s();
    int last = --n->refs == 0 && n->dead;
    pthread_mutex_unlock(&st->mu);
    if (last)
        entry_free(n);
}

int session_delete(session_store *st, const char *id, apierr *e)
{
    entry *dead = NULL;
    pthread_mutex_lock(&st->mu);
    entry *n = lookup_locked(st, id, now_s(), &dead, e);
    int last = 0;
    if (n) {
        unlink_entry(st, n);
        st->deleted++;
        last = n->refs == 0;
    }
    pthread_mutex_unlock(&st->mu);
    free_list(dead);
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
    free_list(dead);
    return k;
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
    };
    pthread_mutex_unlock(&st->mu);
}

double session_store_idle_timeout(const session_store *st)
{
    return st->o.idle_timeout_s;
}
