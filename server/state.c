/*
 * state.c — the session database on SQLite (see state.h for what is stored and how durable
 * it is). Statements are prepared once at open and used under one mutex; every write is a
 * single statement or an explicit transaction, so a crash leaves each change applied whole
 * or not at all. Tensors are stored as raw little-endian bytes in the layer's dtype.
 * The schema has a version (PRAGMA user_version) and an application id, and a table of
 * migrations from each older version: v1 is the only one so far.
 */
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define APP_ID 0x63766431 /* "cvd1": tells our file from another program's */

enum {
    Q_INSERT,
    Q_WEIGHTS,
    Q_INPUT,
    Q_COUNTERS,
    Q_DELETE,
    Q_REMEMBER,
    Q_LOAD,
    Q_BEGIN,
    Q_COMMIT,
    Q_ROLLBACK,
    Q_COUNT
};

static const char *const queries[Q_COUNT] = {
    [Q_INSERT] = "INSERT INTO sessions(id, dtype, in_channels, out_channels, groups, kh, kw, sh, "
                 "sw, dh, dw, pad_mode, ph, pw, bias, scheme, seed, w_rank, b_rank, forwards, "
                 "backwards, last_used, W, b) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, "
                 "?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)",
    [Q_WEIGHTS] = "UPDATE sessions SET W = ?2, b = ?3, w_rank = ?4, b_rank = ?5, forwards = ?6, "
                  "backwards = ?7, last_used = ?8 WHERE id = ?1",
    [Q_INPUT] = "UPDATE sessions SET x = ?2, x_shape = ?3, x_rank = ?4 WHERE id = ?1",
    [Q_COUNTERS] =
        "UPDATE sessions SET forwards = ?2, backwards = ?3, last_used = ?4 WHERE id = ?1",
    [Q_DELETE] = "DELETE FROM sessions WHERE id = ?1",
    [Q_REMEMBER] = "INSERT OR REPLACE INTO dropped(id, t) VALUES(?1, ?2)",
    [Q_LOAD] = "SELECT W, b, x, x_shape, x_rank FROM sessions WHERE id = ?1",
    [Q_BEGIN] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
};

/* migrations[v] takes a database of schema v to v + 1. */
static const char *const migrations[STATE_SCHEMA_VERSION] = {
    "CREATE TABLE sessions("
    " id TEXT PRIMARY KEY NOT NULL,"
    " dtype INTEGER NOT NULL, in_channels INTEGER NOT NULL, out_channels INTEGER NOT NULL,"
    " groups INTEGER NOT NULL, kh INTEGER NOT NULL, kw INTEGER NOT NULL, sh INTEGER NOT NULL,"
    " sw INTEGER NOT NULL, dh INTEGER NOT NULL, dw INTEGER NOT NULL, pad_mode INTEGER NOT NULL,"
    " ph INTEGER NOT NULL, pw INTEGER NOT NULL, bias INTEGER NOT NULL, scheme INTEGER NOT NULL,"
    " seed INTEGER NOT NULL, w_rank INTEGER NOT NULL, b_rank INTEGER NOT NULL,"
    " forwards INTEGER NOT NULL, backwards INTEGER NOT NULL, last_used REAL NOT NULL,"
    " W BLOB NOT NULL, b BLOB, x BLOB, x_shape BLOB, x_rank INTEGER);"
    "CREATE TABLE dropped(id TEXT PRIMARY KEY NOT NULL, t REAL NOT NULL);"
    "CREATE INDEX dropped_by_time ON dropped(t);",
};

struct state_db {
    sqlite3 *db;   /* requests, under mu */
    sqlite3 *ckpt; /* the background thread's checkpoints */
    pthread_mutex_t mu;
    sqlite3_stmt *q[Q_COUNT];
    int lock_fd; /* flock on convd.lock: one daemon per state_dir */
    char path[1100];
};

static int fail(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
    return -1;
}

/* One value of a single-row pragma or query, as text into out ("" if no row). */
static int query_text(sqlite3 *db, const char *sql, char *out, size_t n)
{
    sqlite3_stmt *st;
    out[0] = '\0';
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(out, n, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

static int query_int(sqlite3 *db, const char *sql, long long *v)
{
    char t[64];
    if (query_text(db, sql, t, sizeof t))
        return -1;
    *v = strtoll(t, NULL, 10);
    return 0;
}

/* Creates or upgrades the schema; refuses a file that is not ours or is newer. */
static int migrate(state_db *s, char *err, size_t n)
{
    long long app, ver, tables;
    if (query_int(s->db, "PRAGMA application_id", &app) ||
        query_int(s->db, "PRAGMA user_version", &ver) ||
        query_int(s->db, "SELECT count(*) FROM sqlite_master", &tables))
        return fail(err, n, "%s: cannot read the schema: %s", s->path, sqlite3_errmsg(s->db));
    if (app != APP_ID && !(app == 0 && ver == 0 && tables == 0))
        return fail(err, n,
                    "%s is not a convd state database (application_id %lld); point state_dir at "
                    "an empty directory or at convd's own",
                    s->path, app);
    if (ver > STATE_SCHEMA_VERSION)
        return fail(err, n,
                    "%s has schema version %lld, newer than this convd reads (%d); run the convd "
                    "that wrote it, or a newer one",
                    s->path, ver, STATE_SCHEMA_VERSION);
    if (ver < 0)
        return fail(err, n, "%s has a bad schema version %lld", s->path, ver);
    for (long long v = ver; v < STATE_SCHEMA_VERSION; v++) {
        char sql[1024];
        snprintf(sql, sizeof sql, "PRAGMA application_id = %d; PRAGMA user_version = %lld;", APP_ID,
                 v + 1);
        char *msg = NULL;
        if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK ||
            sqlite3_exec(s->db, migrations[v], NULL, NULL, &msg) != SQLITE_OK ||
            sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK ||
            sqlite3_exec(s->db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK) {
            fail(err, n, "%s: migrating schema %lld to %lld failed: %s", s->path, v, v + 1,
                 msg ? msg : sqlite3_errmsg(s->db));
            sqlite3_free(msg);
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
    }
    return 0;
}

static int open_conn(state_db *s, sqlite3 **db, char *err, size_t n)
{
    int rc = sqlite3_open_v2(
        s->path, db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK)
        return fail(err, n, "%s: cannot open: %s", s->path,
                    *db ? sqlite3_errmsg(*db) : sqlite3_errstr(rc));
    if (sqlite3_db_readonly(*db, "main") == 1)
        return fail(err, n,
                    "%s: the file is read-only; convd needs to write it (check its owner "
                    "and permissions)",
                    s->path);
    sqlite3_busy_timeout(*db, 5000);
    return 0;
}

static int lock_dir(state_db *s, const char *dir, char *err, size_t n)
{
    char lp[1100];
    snprintf(lp, sizeof lp, "%s/convd.lock", dir);
    s->lock_fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lock_fd < 0)
        return fail(err, n, "%s: cannot open: %s", lp, strerror(errno));
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0)
        return fail(err, n,
                    "%s: %s; another convd is using state_dir %s (each daemon needs its own)", lp,
                    errno == EWOULDBLOCK ? "locked" : strerror(errno), dir);
    return 0;
}

/* mkdir -p: the parents too (`make run` points at var/state in a fresh clone). */
static int make_dirs(const char *dir)
{
    char p[1024];
    snprintf(p, sizeof p, "%s", dir);
    for (char *c = p + 1; *c; c++) {
        if (*c != '/')
            continue;
        *c = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST)
            return -1;
        *c = '/';
    }
    return mkdir(p, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

int state_open(const char *dir, state_db **out, char *err, size_t n)
{
    *out = NULL;
    if (strlen(dir) > 1000)
        return fail(err, n, "state_dir is too long (at most 1000 bytes)");
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        if (errno != ENOENT || make_dirs(dir) != 0)
            return fail(err, n, "state_dir %s: cannot create: %s", dir, strerror(errno));
    } else if (!S_ISDIR(sb.st_mode)) {
        return fail(err, n, "state_dir %s is not a directory", dir);
    }
    if (access(dir, R_OK | W_OK | X_OK) != 0)
        return fail(err, n, "state_dir %s: no permission to read and write it (%s)", dir,
                    strerror(errno));
    state_db *s = calloc(1, sizeof *s);
    if (!s)
        return fail(err, n, "out of memory opening the state database");
    s->lock_fd = -1;
    pthread_mutex_init(&s->mu, NULL);
    snprintf(s->path, sizeof s->path, "%s/" STATE_DB_FILE, dir);
    char mode[32], check[512];
    if (lock_dir(s, dir, err, n) || open_conn(s, &s->db, err, n))
        goto bad;
    if (query_text(s->db, "PRAGMA quick_check", check, sizeof check) != 0) {
        fail(err, n,
             "%s: %s; the file is damaged or not a database (move it away to start "
             "empty, or restore it from a backup)",
             s->path, sqlite3_errmsg(s->db));
        goto bad;
    }
    if (strcmp(check, "ok") != 0) {
        fail(err, n,
             "%s: integrity check failed: %.300s; the file is damaged (move it away to "
             "start empty, or restore it from a backup)",
             s->path, check);
        goto bad;
    }
    if (query_text(s->db, "PRAGMA journal_mode = WAL", mode, sizeof mode) != 0 ||
        strcmp(mode, "wal") != 0) {
        fail(err, n, "%s: cannot switch to WAL mode (%s)", s->path,
             mode[0] ? mode : sqlite3_errmsg(s->db));
        goto bad;
    }
    /* Checkpoints run from the background thread (state_checkpoint); 10000 pages is only a
     * bound on the WAL in case that thread falls behind. */
    if (sqlite3_exec(s->db, "PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 10000;", NULL,
                     NULL, NULL) != SQLITE_OK ||
        migrate(s, err, n) || open_conn(s, &s->ckpt, err, n))
        goto bad;
    for (int i = 0; i < Q_COUNT; i++) {
        if (sqlite3_prepare_v3(s->db, queries[i], -1, SQLITE_PREPARE_PERSISTENT, &s->q[i], NULL) !=
            SQLITE_OK) {
            fail(err, n, "%s: the schema does not match this convd: %s", s->path,
                 sqlite3_errmsg(s->db));
            goto bad;
        }
    }
    *out = s;
    return 0;
bad:
    state_close(s);
    return -1;
}

void state_close(state_db *s)
{
    if (!s)
        return;
    for (int i = 0; i < Q_COUNT; i++)
        sqlite3_finalize(s->q[i]);
    sqlite3_close(s->ckpt);
    sqlite3_close(s->db);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

const char *state_path(const state_db *s)
{
    return s->path;
}

static void row_of(sqlite3_stmt *st, state_row *r)
{
    r->id = (const char *)sqlite3_column_text(st, 0);
    r->p = (cvd_conv2d_params){
        .dtype = (cvd_dtype)sqlite3_column_int(st, 1),
        .in_channels = sqlite3_column_int64(st, 2),
        .out_channels = sqlite3_column_int64(st, 3),
        .groups = sqlite3_column_int64(st, 4),
        .kh = sqlite3_column_int64(st, 5),
        .kw = sqlite3_column_int64(st, 6),
        .sh = sqlite3_column_int64(st, 7),
        .sw = sqlite3_column_int64(st, 8),
        .dh = sqlite3_column_int64(st, 9),
        .dw = sqlite3_column_int64(st, 10),
        .pad_mode = (cvd_pad_mode)sqlite3_column_int(st, 11),
        .ph = sqlite3_column_int64(st, 12),
        .pw = sqlite3_column_int64(st, 13),
        .bias = sqlite3_column_int(st, 14),
    };
    r->scheme = sqlite3_column_int(st, 15);
    r->seed = (uint64_t)sqlite3_column_int64(st, 16);
    r->W_rank = sqlite3_column_int(st, 17);
    r->b_rank = sqlite3_column_int(st, 18);
    r->forwards = (uint64_t)sqlite3_column_int64(st, 19);
    r->backwards = (uint64_t)sqlite3_column_int64(st, 20);
    r->last_used = sqlite3_column_double(st, 21);
}

int state_each_session(state_db *s, int (*fn)(void *, const state_row *), void *arg, char *err,
                       size_t n)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT id, dtype, in_channels, out_channels, groups, kh, kw, sh, sw, "
                           "dh, dw, pad_mode, ph, pw, bias, scheme, seed, w_rank, b_rank, "
                           "forwards, backwards, last_used FROM sessions ORDER BY id",
                           -1, &st, NULL) != SQLITE_OK)
        return fail(err, n, "%s: %s", s->path, sqlite3_errmsg(s->db));
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        state_row r;
        row_of(st, &r);
        stop = fn(arg, &r);
    }
    if (!stop && rc != SQLITE_DONE)
        stop = fail(err, n, "%s: reading sessions: %s", s->path, sqlite3_errmsg(s->db));
    sqlite3_finalize(st);
    return stop;
}

int state_each_dropped(state_db *s, double since, int (*fn)(void *, const char *, double),
                       void *arg, char *err, size_t n)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "SELECT id, t FROM dropped WHERE t >= ?1 ORDER BY t", -1, &st,
                           NULL) != SQLITE_OK)
        return fail(err, n, "%s: %s", s->path, sqlite3_errmsg(s->db));
    sqlite3_bind_double(st, 1, since);
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW)
        stop = fn(arg, (const char *)sqlite3_column_text(st, 0), sqlite3_column_double(st, 1));
    if (!stop && rc != SQLITE_DONE)
        stop = fail(err, n, "%s: reading dropped ids: %s", s->path, sqlite3_errmsg(s->db));
    sqlite3_finalize(st);
    return stop;
}

static int db_error(state_db *s, apierr *e, const char *what, const char *id)
{
    return apierr_set(e, APIERR_INTERNAL, "the session database (%s) failed %s session %s: %s",
                      s->path, what, id, sqlite3_errmsg(s->db));
}

/* Runs a bound statement to completion and resets it. SQLITE_DONE or the error code. */
static int run(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

static size_t tensor_bytes(const cvd_tensor *t)
{
    return (size_t)cvd_tensor_numel(t) * cvd_dtype_size(t->dtype);
}

static void bind_tensor(sqlite3_stmt *st, int i, const cvd_tensor *t)
{
    if (t)
        sqlite3_bind_blob64(st, i, t->data, tensor_bytes(t), SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

int state_insert(state_db *s, const state_row *r, const cvd_conv2d *l, apierr *e)
{
    const int64_t v[] = {r->p.dtype,
                         r->p.in_channels,
                         r->p.out_channels,
                         r->p.groups,
                         r->p.kh,
                         r->p.kw,
                         r->p.sh,
                         r->p.sw,
                         r->p.dh,
                         r->p.dw,
                         r->p.pad_mode,
                         r->p.ph,
                         r->p.pw,
                         r->p.bias,
                         r->scheme,
                         (int64_t)r->seed,
                         r->W_rank,
                         r->b_rank,
                         (int64_t)r->forwards,
                         (int64_t)r->backwards};
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *st = s->q[Q_INSERT];
    sqlite3_bind_text(st, 1, r->id, -1, SQLITE_STATIC);
    for (int i = 0; i < (int)(sizeof v / sizeof v[0]); i++)
        sqlite3_bind_int64(st, 2 + i, v[i]);
    sqlite3_bind_double(st, 22, r->last_used);
    bind_tensor(st, 23, cvd_conv2d_weight(l));
    bind_tensor(st, 24, cvd_conv2d_bias(l));
    int rc = run(st) == SQLITE_DONE ? 0 : db_error(s, e, "storing", r->id);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int state_save_weights(state_db *s, const state_row *r, const cvd_conv2d *l, apierr *e)
{
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *st = s->q[Q_WEIGHTS];
    sqlite3_bind_text(st, 1, r->id, -1, SQLITE_STATIC);
    bind_tensor(st, 2, cvd_conv2d_weight(l));
    bind_tensor(st, 3, cvd_conv2d_bias(l));
    sqlite3_bind_int(st, 4, r->W_rank);
    sqlite3_bind_int(st, 5, r->b_rank);
    sqlite3_bind_int64(st, 6, (int64_t)r->forwards);
    sqlite3_bind_int64(st, 7, (int64_t)r->backwards);
    sqlite3_bind_double(st, 8, r->last_used);
    int rc = run(st) == SQLITE_DONE && sqlite3_changes(s->db) == 1
                 ? 0
                 : db_error(s, e, "saving the weights of", r->id);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int state_save_input(state_db *s, const char *id, const cvd_conv2d *l, int x_rank, apierr *e)
{
    int64_t xs[4];
    if (!cvd_conv2d_has_cache(l, xs))
        return 0;
    const cvd_conv2d_params *p = cvd_conv2d_get_params(l);
    /* the cache holds exactly x's elements; its size was checked when it was made */
    uint64_t bytes = (uint64_t)(xs[0] * xs[1] * xs[2] * xs[3]) * cvd_dtype_size(p->dtype);
    if (bytes > 1000000000u) /* SQLite's default largest value */
        return apierr_set(e, APIERR_PAYLOAD_TOO_LARGE,
                          "x is %llu bytes, over the 1e9 bytes persist_inputs can store for one "
                          "session; send a smaller batch or turn persist_inputs off",
                          (unsigned long long)bytes);
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *st = s->q[Q_INPUT];
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_blob64(st, 2, cvd_conv2d_cache_data(l), bytes, SQLITE_STATIC);
    sqlite3_bind_blob(st, 3, xs, sizeof xs, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, x_rank);
    int rc = run(st) == SQLITE_DONE ? 0 : db_error(s, e, "saving the forward input of", id);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int tx(state_db *s, int q)
{
    return run(s->q[q]) == SQLITE_DONE ? 0 : -1;
}

int state_save_counters(state_db *s, const state_row *rows, size_t n)
{
    pthread_mutex_lock(&s->mu);
    int rc = tx(s, Q_BEGIN);
    sqlite3_stmt *st = s->q[Q_COUNTERS];
    for (size_t i = 0; rc == 0 && i < n; i++) {
        sqlite3_bind_text(st, 1, rows[i].id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (int64_t)rows[i].forwards);
        sqlite3_bind_int64(st, 3, (int64_t)rows[i].backwards);
        sqlite3_bind_double(st, 4, rows[i].last_used);
        rc = run(st) == SQLITE_DONE ? 0 : -1;
    }
    if (rc == 0)
        rc = tx(s, Q_COMMIT);
    if (rc != 0)
        tx(s, Q_ROLLBACK);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int state_delete(state_db *s, const char *id, int remember, double t, apierr *e)
{
    pthread_mutex_lock(&s->mu);
    int rc = tx(s, Q_BEGIN);
    if (rc == 0) {
        sqlite3_bind_text(s->q[Q_DELETE], 1, id, -1, SQLITE_STATIC);
        rc = run(s->q[Q_DELETE]) == SQLITE_DONE ? 0 : -1;
    }
    if (rc == 0 && remember) {
        sqlite3_bind_text(s->q[Q_REMEMBER], 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_double(s->q[Q_REMEMBER], 2, t);
        rc = run(s->q[Q_REMEMBER]) == SQLITE_DONE ? 0 : -1;
    }
    if (rc == 0)
        rc = tx(s, Q_COMMIT);
    if (rc != 0) {
        db_error(s, e, "deleting", id);
        tx(s, Q_ROLLBACK);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int state_prune_dropped(state_db *s, double before, size_t keep)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "DELETE FROM dropped WHERE t < %.6f OR id NOT IN (SELECT id FROM dropped ORDER BY t "
             "DESC LIMIT %zu)",
             before, keep);
    pthread_mutex_lock(&s->mu);
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* A stored blob as a tensor of `shape` (no copy: valid until the statement moves on). */
static int blob_tensor(sqlite3_stmt *st, int col, cvd_dtype dt, int rank, const int64_t *shape,
                       cvd_tensor *t)
{
    *t = (cvd_tensor){.dtype = dt, .rank = rank};
    memcpy(t->shape, shape, sizeof(int64_t) * (size_t)rank);
    t->data = (void *)sqlite3_column_blob(st, col);
    return t->data && (size_t)sqlite3_column_bytes(st, col) == tensor_bytes(t) ? 0 : -1;
}

int state_load_layer(state_db *s, const state_row *r, cvd_conv2d **out, int *x_rank, apierr *e)
{
    *out = NULL;
    *x_rank = 0;
    cvd_conv2d *l = NULL;
    cvd_err ce = {{0}};
    if (cvd_conv2d_create(&r->p, &l, &ce) != CVD_OK)
        return apierr_set(e, APIERR_INTERNAL, "session %s: the stored layer is invalid: %s", r->id,
                          ce.msg);
    const cvd_tensor *W = cvd_conv2d_weight(l);
    int64_t F = r->p.out_channels;
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *st = s->q[Q_LOAD];
    sqlite3_bind_text(st, 1, r->id, -1, SQLITE_STATIC);
    int rc = -1;
    cvd_tensor w, b, x;
    if (sqlite3_step(st) != SQLITE_ROW) {
        db_error(s, e, "loading", r->id);
    } else if (blob_tensor(st, 0, r->p.dtype, 4, W->shape, &w) ||
               (r->p.bias && blob_tensor(st, 1, r->p.dtype, 1, &F, &b))) {
        apierr_set(e, APIERR_INTERNAL, "session %s: the stored W or b has the wrong size", r->id);
    } else if (cvd_conv2d_set_weights(l, &w, r->p.bias ? &b : NULL, &ce) != CVD_OK) {
        apierr_set(e, APIERR_INTERNAL, "session %s: the stored weights are invalid: %s", r->id,
                   ce.msg);
    } else {
        rc = 0;
        if (sqlite3_column_type(st, 2) == SQLITE_BLOB &&
            sqlite3_column_bytes(st, 3) == (int)sizeof(int64_t[4])) {
            int64_t xs[4];
            memcpy(xs, sqlite3_column_blob(st, 3), sizeof xs);
            if (blob_tensor(st, 2, r->p.dtype, 4, xs, &x) ||
                cvd_conv2d_set_cache(l, &x, &ce) != CVD_OK)
                rc = apierr_set(e, APIERR_INTERNAL, "session %s: the stored x is invalid", r->id);
            else
                *x_rank = sqlite3_column_int(st, 4);
        }
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    pthread_mutex_unlock(&s->mu);
    if (rc != 0) {
        cvd_conv2d_free(l);
        return -1;
    }
    *out = l;
    return 0;
}

void state_checkpoint(state_db *s)
{
    sqlite3_wal_checkpoint_v2(s->ckpt, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
}
