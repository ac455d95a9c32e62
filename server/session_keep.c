/*
 * session_keep.c — the session store's life outside requests: creating it (and loading
 * every stored session and remembered id from the database), the background thread that
 * expires idle sessions, trims their workspaces, unloads their layers, writes counters and
 * idle clocks, checkpoints the database and gives freed memory back to the OS; and
 * freeing it. The map itself is session.c's.
 */
#include "session_internal.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budget.h"
#include "clock.h"
#include "log.h"

/* Frees dropped entries; with a database, first deletes them there and remembers their ids
 * (for 410 after a restart too). */
void session_bury(session_store *st, entry *dead)
{
    if (st->o.db) {
        double t = clock_wall();
        for (entry *e = dead; e; e = e->next) {
            apierr err;
            if (e->stored && state_delete(st->o.db, e->s.id, 1, t, &err) != 0)
                log_warn("%s", err.msg);
        }
    }
    session_free_list(dead);
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
            budget_adjust((int64_t)now_bytes - (int64_t)e->bytes);
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
                                    .last_used = session_wall_of(e->last_used)};
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
    session_reap_locked(st, now, &dead);
    /* glibc keeps freed memory for the next request; once sessions went idle or away, give
     * it back (at most every 2 s: malloc_trim walks the whole heap, arena by arena) */
    st->trim_pending |= dead || trim_locked(st, now);
    int give_back = st->trim_pending && now - st->last_malloc_trim >= 2;
    if (give_back) {
        st->trim_pending = 0;
        st->last_malloc_trim = now;
    }
    pthread_mutex_unlock(&st->mu);
    session_bury(st, dead);
    if (give_back)
        malloc_trim(0);
    if (st->o.db) {
        session_store_flush(st);
        state_checkpoint(st->o.db);
        if (now - st->last_prune >= 60) {
            state_prune_dropped(st->o.db, clock_wall() - st->o.remember_s, st->o.remember_max);
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
        reaper_tick(st, clock_mono());
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
    if (session_parse_id(st, r->id, key) != ID_OURS) {
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
    entry **slot = session_slot(st, key);
    n->next = *slot;
    *slot = n;
    st->live++;
    return 0;
}

static int load_dropped(void *arg, const char *id, double t)
{
    loader *ld = arg;
    uint8_t key[16];
    if (session_parse_id(ld->st, id, key) == ID_OURS)
        session_remember(ld->st, key, ld->now - (ld->wall - t));
    return 0;
}

/* Reads the database into a new store: remembered ids first (oldest first, so the ring
 * keeps the newest), then sessions; those that expired while the daemon was down are
 * dropped now, as the reaper would have. */
static int load_all(session_store *st, char *err, size_t n)
{
    loader ld = {st, clock_mono(), clock_wall(), err, n, NULL};
    if (state_each_dropped(st->o.db, ld.wall - st->o.remember_s, load_dropped, &ld, err, n) ||
        state_each_session(st->o.db, load_session, &ld, err, n)) {
        session_free_list(ld.expired);
        return -1;
    }
    for (entry *e = ld.expired; e; e = e->next) {
        session_remember(st, e->key, ld.now);
        st->expired++;
    }
    session_bury(st, ld.expired);
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
    st->nbuckets = session_pow2((size_t)o->max_sessions * 2);
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
        session_free_list(st->buckets[b]);
    free(st->buckets);
    free(st->ring);
    free(st->rheads);
    pthread_cond_destroy(&st->cv);
    pthread_mutex_destroy(&st->mu);
    free(st);
}
