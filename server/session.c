/*
 * session.c — the session store. A chained hash map of live sessions keyed by their 16
 * random id bytes, one store mutex for the map and bookkeeping (refs, last use, dead flag),
 * and a mutex per session held by its user for the whole request. Dropped ids (expired or
 * evicted) go into a ring with a hash index so they answer 410 for remember_s or until
 * remember_max newer ones push them out. Sessions are freed outside the store mutex, by
 * whoever drops the last reference, and database writes run outside it too. The entry
 * mirrors what GET /sessions and the counter flush read (params, counters, cached), so
 * neither needs a session's own lock; a session with refs == 0 is touched by nobody else,
 * which is what lets the reaper trim or unload it under the store mutex alone. The
 * background thread, loading and the database side are in session_keep.c.
 */
#include "session_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "budget.h"
#include "clock.h"

/* The database keeps wall-clock times, so idle expiry counts across a restart. */
double session_wall_of(double mono)
{
    return clock_wall() - (clock_mono() - mono);
}

size_t session_pow2(size_t n)
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

/* Splits id into NODE and the 32 hex digits; ours when NODE is this store's node (none for
 * a store without a node name). */
id_kind session_parse_id(const session_store *st, const char *id, uint8_t key[16])
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

void session_format_id(const session_store *st, const uint8_t key[16], char out[SESSION_ID_MAX + 1])
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

void session_entry_free(entry *e)
{
    cvd_conv2d_free(e->s.layer);
    pthread_mutex_destroy(&e->lock);
    free(e);
}

void session_free_list(entry *e)
{
    while (e) {
        entry *next = e->next;
        session_entry_free(e);
        e = next;
    }
}

/* --- the map (store mutex held) --- */

entry **session_slot(session_store *st, const uint8_t key[16])
{
    entry **p = &st->buckets[key_hash(key) & (st->nbuckets - 1)];
    while (*p && memcmp((*p)->key, key, 16) != 0)
        p = &(*p)->next;
    return p;
}

void session_unlink(session_store *st, entry *e)
{
    entry **p = session_slot(st, e->key);
    if (*p == e)
        *p = e->next;
    e->next = NULL;
    e->dead = 1;
    st->live--;
    st->bytes -= e->bytes;
    budget_adjust(-(int64_t)e->bytes); /* the memory budget follows st->bytes */
    e->bytes = 0;
}

/* --- remembered ids (store mutex held) --- */

void session_remember(session_store *st, const uint8_t key[16], double now)
{
    if (st->o.remember_max == 0)
        return;
    if (!st->ring) {
        st->nrheads = session_pow2(st->o.remember_max);
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

int session_remembered(const session_store *st, const uint8_t key[16], double now)
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
entry *session_drop(session_store *st, entry *e, double now)
{
    session_unlink(st, e);
    session_remember(st, e->key, now);
    return e->refs == 0 ? e : NULL;
}

int session_idle_expired(const session_store *st, const entry *e, double now)
{
    return e->refs == 0 && now - e->last_used > st->o.idle_timeout_s;
}

/* Expires every idle session; appends them to *dead. Returns the count. */
size_t session_reap_locked(session_store *st, double now, entry **dead)
{
    size_t n = 0;
    for (size_t b = 0; b < st->nbuckets; b++) {
        entry *e = st->buckets[b];
        while (e) {
            entry *next = e->next;
            if (session_idle_expired(st, e, now)) {
                session_drop(st, e, now);
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
    double now = clock_mono();
    if (st->live >= (size_t)st->o.max_sessions) {
        session_reap_locked(st, now, &dead);
        if (st->live >= (size_t)st->o.max_sessions) {
            entry *lru = NULL;
            for (size_t b = 0; b < st->nbuckets; b++)
                for (entry *c = st->buckets[b]; c; c = c->next)
                    if (c->refs == 0 && now - c->last_used >= st->o.evict_min_idle_s &&
                        (!lru || c->last_used < lru->last_used))
                        lru = c;
            if (!lru) {
                pthread_mutex_unlock(&st->mu);
                session_bury(st, dead);
                pthread_mutex_unlock(&n->lock);
                session_entry_free(n);
                return apierr_set(e, APIERR_TOO_MANY_SESSIONS,
                                  "the session limit (max_sessions = %d) is reached and no "
                                  "session has been idle for %g s or more; delete sessions you "
                                  "no longer need (DELETE /sessions/{id}) or raise max_sessions",
                                  st->o.max_sessions, st->o.evict_min_idle_s);
            }
            session_drop(st, lru, now);
            st->evicted++;
            lru->next = dead;
            dead = lru;
        }
    }
    for (;;) {
        if (random_key(n->key) != 0) {
            pthread_mutex_unlock(&st->mu);
            session_bury(st, dead);
            pthread_mutex_unlock(&n->lock);
            session_entry_free(n);
            return apierr_set(e, APIERR_INTERNAL, "getrandom failed: %s", strerror(errno));
        }
        if (!*session_slot(st, n->key) && !session_remembered(st, n->key, now))
            break;
    }
    session_format_id(st, n->key, n->s.id);
    entry **slot = session_slot(st, n->key);
    *slot = n;
    n->last_used = now;
    st->live++;
    st->created++;
    pthread_mutex_unlock(&st->mu);
    session_bury(st, dead);
    *out = &n->s;
    return 0;
}

/* Looks id up with the store mutex held. Returns the entry, or NULL with e set; an entry
 * found idle past its timeout is dropped (and put on *dead) and answers 410. */
static entry *lookup_locked(session_store *st, const char *id, double now, entry **dead, apierr *e)
{
    uint8_t key[16];
    id_kind k = session_parse_id(st, id, key);
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
    entry *n = *session_slot(st, key);
    if (n && session_idle_expired(st, n, now)) {
        session_drop(st, n, now);
        st->expired++;
        n->next = *dead;
        *dead = n;
        n = NULL;
    }
    if (n)
        return n;
    if (session_remembered(st, key, now))
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
    double now = clock_mono();
    entry *n = lookup_locked(st, id, now, &dead, e);
    if (n) {
        n->refs++;
        n->last_used = now;
    }
    pthread_mutex_unlock(&st->mu);
    session_bury(st, dead);
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
        budget_adjust((int64_t)bytes - (int64_t)n->bytes);
        n->bytes = bytes;
    }
    n->last_used = clock_mono();
    n->fw = fw;
    n->bw = bw;
    n->cached = cached;
    n->dirty = 1;
    n->trimmed = 0;
    int last = --n->refs == 0 && n->dead;
    pthread_mutex_unlock(&st->mu);
    if (last)
        session_entry_free(n);
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
                   .last_used = clock_wall()};
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
        session_unlink(st, n);
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
    entry *n = lookup_locked(st, id, clock_mono(), &dead, e);
    int stored = n && n->stored;
    pthread_mutex_unlock(&st->mu);
    session_bury(st, dead);
    if (!n)
        return -1;
    /* The database first: a delete that is answered is a delete that stays. The entry is not
     * held here, so it can still go away meanwhile; the second lookup settles that. */
    if (stored && st->o.db && state_delete(st->o.db, id, 0, 0, e) != 0)
        return -1;
    pthread_mutex_lock(&st->mu);
    n = lookup_locked(st, id, clock_mono(), &dead, e);
    int last = 0;
    if (n) {
        session_unlink(st, n);
        st->deleted++;
        st->trim_pending = 1;
        last = n->refs == 0;
    }
    pthread_mutex_unlock(&st->mu);
    session_bury(st, dead);
    if (last)
        session_entry_free(n);
    return n ? 0 : -1;
}

size_t session_store_reap(session_store *st)
{
    entry *dead = NULL;
    pthread_mutex_lock(&st->mu);
    size_t k = session_reap_locked(st, clock_mono(), &dead);
    pthread_mutex_unlock(&st->mu);
    session_bury(st, dead);
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
    double now = clock_mono();
    size_t cap = st->live, k = 0;
    session_info *v = cap ? malloc(cap * sizeof *v) : NULL;
    if (cap && !v) {
        pthread_mutex_unlock(&st->mu);
        return -1;
    }
    for (size_t b = 0; b < st->nbuckets; b++) {
        for (const entry *e = st->buckets[b]; e && k < cap; e = e->next) {
            if (session_idle_expired(st, e, now) ||
                (after && *after && strcmp(e->s.id, after) <= 0))
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
    if (k) /* v is NULL for an empty store, and qsort's pointer must not be */
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
