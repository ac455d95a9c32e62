/*
 * fuzz_request.c — libFuzzer target for the whole request path without sockets: method,
 * path, headers and body go through router_match, the daemon's own pre-body checks (gate.c:
 * drain, auth, 404/405, 415, Content-Length 413), the streaming body limit, and the
 * api handler, against one session store that lives across inputs. Input format, up to
 * MAX_REQS requests separated by a line "%%":
 *     METHOD PATH[?output=...]\n  Header: value\n ...  \n\n  body
 * "@S@" anywhere is replaced by the id of the last session an answer named, so one input
 * can create, forward, backward, get and delete. A pseudo-header "X-Fuzz: auth" turns the
 * API key on for the input, "X-Fuzz: drain" makes the daemon draining, and "X-Fuzz: small"
 * anywhere runs the whole input on a second store of 2 sessions, where creating a third
 * evicts the least recently used (which must then answer 410).
 * Oracles (any failure aborts): handler status and error agree; no 500; every JSON answer
 * parses (no duplicate keys); an error body carries its code; a request that fails changes
 * no session, and one that succeeds changes no session but the one it names (both checked
 * by comparing GET /sessions/{id}?output=base64 before and after); once the sessions an
 * input's answers named are deleted, the store is empty (nothing created on the quiet).
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "../core/cvd.h"
#include "../server/api.h"
#include "../server/codec.h"
#include "../server/config.h"
#include "../server/gate.h"
#include "../server/log.h"
#include "../server/router.h"
#include "../server/session.h"

#define MAX_REQS       8
#define MAX_HEADERS    16
#define MAX_TRACKED    16
#define API_KEY        "fuzzkey"
#define SEP            "\n%%\n"
#define PLACEHOLDER    "@S@"
#define SMALL_SESSIONS 2

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static srv_config cfg_open, cfg_auth;
static session_store *big_store, *small_store;
static session_store *store; /* the one this input uses */
static atomic_int draining;

typedef struct hdr {
    char *name, *value;
} hdr;

typedef struct request {
    char *method, *path, *query;
    hdr h[MAX_HEADERS];
    int nh;
    char *body; /* NUL-terminated */
    size_t body_len;
    int auth, drain;
} request;

typedef struct tracked {
    char id[SESSION_ID_MAX + 1];
    char *snap; /* GET ?output=base64 body */
} tracked;

typedef struct state {
    tracked t[MAX_TRACKED];
    int n;
    char last[SESSION_ID_MAX + 1];
} state;

static void fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_request: %s\n%s\n", what, detail ? detail : "");
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_set_level(LOG_LEVEL_ERROR);
    cvd_set_num_threads(1);
    config_defaults(&cfg_open);
    cfg_open.max_body_bytes = 12000;
    cfg_open.max_sessions = 64;
    cfg_open.idle_timeout = 3600;
    cfg_open.max_session_bytes = 4u << 20;
    cfg_auth = cfg_open;
    snprintf(cfg_auth.api_key, sizeof cfg_auth.api_key, "%s", API_KEY);
    session_opts o;
    session_opts_default(&o, cfg_open.max_sessions, cfg_open.idle_timeout);
    o.reaper = 0;
    o.remember_max = 1000;
    /* small: 2 sessions, any of them evictable at once, so creating a third evicts (410) */
    session_opts so = o;
    so.max_sessions = SMALL_SESSIONS;
    so.evict_min_idle_s = 0;
    so.remember_max = 16;
    if (session_store_new(&o, &big_store, NULL, 0) != 0 || session_store_new(&so, &small_store, NULL, 0) != 0)
        fail("cannot create the session stores", NULL);
    return 0;
}

/* Replaces every PLACEHOLDER in [s, s+n) by id; returns a new NUL-terminated string. */
static char *substitute(const char *s, size_t n, const char *id, size_t *out_len)
{
    size_t pl = strlen(PLACEHOLDER), il = strlen(id), cap = n + 1, count = 0;
    for (size_t i = 0; i + pl <= n; i++)
        if (memcmp(s + i, PLACEHOLDER, pl) == 0)
            count++;
    cap += count * il;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (i + pl <= n && memcmp(s + i, PLACEHOLDER, pl) == 0) {
            memcpy(out + o, id, il);
            o += il;
            i += pl;
        } else {
            out[o++] = s[i++];
        }
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

/* Splits text (owned by the caller, modified in place) into a request. -1 if malformed. */
static int parse_request(char *text, size_t len, request *q)
{
    memset(q, 0, sizeof *q);
    char *end = text + len;
    char *nl = memchr(text, '\n', len);
    char *line_end = nl ? nl : end;
    *line_end = '\0';
    if (strlen(text) != (size_t)(line_end - text))
        return -1; /* a NUL in the request line */
    char *sp = strchr(text, ' ');
    if (!sp)
        return -1;
    *sp = '\0';
    q->method = text;
    q->path = trim(sp + 1);
    char *qm = strchr(q->path, '?');
    if (qm) {
        *qm = '\0';
        q->query = qm + 1;
    }
    if (!*q->method || q->path[0] != '/')
        return -1;
    char *p = nl ? nl + 1 : end;
    while (p < end) {
        char *e = memchr(p, '\n', (size_t)(end - p));
        char *le = e ? e : end;
        *le = '\0';
        char *ln = p;
        p = e ? e + 1 : end;
        if (*trim(ln) == '\0')
            break; /* blank line: the body follows */
        char *colon = strchr(ln, ':');
        if (!colon || q->nh == MAX_HEADERS)
            continue;
        *colon = '\0';
        char *name = trim(ln), *value = trim(colon + 1);
        if (strcasecmp(name, "X-Fuzz") == 0) {
            q->auth |= strcmp(value, "auth") == 0;
            q->drain |= strcmp(value, "drain") == 0;
            continue;
        }
        q->h[q->nh++] = (hdr){name, value};
    }
    q->body = p;
    q->body_len = (size_t)(end - p);
    return 0;
}

/* MHD_lookup_connection_value: the first header of that name, case-insensitive. */
static const char *header(const request *q, const char *name)
{
    for (int i = 0; i < q->nh; i++)
        if (strcasecmp(q->h[i].name, name) == 0)
            return q->h[i].value;
    return NULL;
}

/* The first value of `output` in the query string (MHD_GET_ARGUMENT_KIND), no unescaping. */
static const char *query_output(request *q)
{
    for (char *s = q->query; s && *s;) {
        char *amp = strchr(s, '&');
        if (amp)
            *amp = '\0';
        if (strncmp(s, "output=", 7) == 0)
            return s + 7;
        if (strcmp(s, "output") == 0)
            return "";
        s = amp ? amp + 1 : NULL;
    }
    return NULL;
}

/* The daemon's pre-body checks (gate.c), then the streaming body limit http.c applies
 * while the body arrives. 0: go on; -1: answer e. */
static int early_checks(const request *q, const srv_config *cfg, route_result rr,
                        const route_match *m, apierr *e)
{
    if (rr == ROUTE_METHOD_NOT_ALLOWED && !m->allow[0])
        fail("405 without an Allow list", q->path);
    const gate_request g = {
        .method = q->method,
        .path = q->path,
        .rr = rr,
        .m = m,
        .draining = atomic_load(&draining),
        .authorization = header(q, "Authorization"),
        .content_type = header(q, "Content-Type"),
        .content_length = header(q, "Content-Length"),
    };
    if (gate_check(cfg, &g, e))
        return -1;
    if (m->has_body && q->body_len > cfg->max_body_bytes)
        return apierr_set(e, APIERR_PAYLOAD_TOO_LARGE, "over max_body_bytes");
    return 0;
}

/* The answer's body must be JSON; an error's must be {"error":{"code":c,"message":...}}. */
static void check_answer(const api_req *r, int status, const buf *body)
{
    apierr e = {0};
    cJSON *root = codec_parse(body->data, body->len, &e);
    if (!root) {
        fprintf(stderr, "%.*s\n", (int)(body->len > 2000 ? 2000 : body->len), body->data);
        fail("the answer is not valid JSON", e.msg);
    }
    if (r->err.code != APIERR_NONE) {
        const cJSON *er = cJSON_GetObjectItemCaseSensitive(root, "error");
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(er, "code");
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(er, "message");
        if (!cJSON_IsString(code) || strcmp(code->valuestring, apierr_name(r->err.code)) != 0 ||
            !cJSON_IsString(msg) || !msg->valuestring[0])
            fail("a malformed error body", body->data);
    } else if (!cJSON_IsObject(root) || ((status < 200 || status > 299) && status != 503)) {
        /* a handler answers 503 without an error only for /readyz while draining */
        fail("a success answer is not an object with a 2xx status", body->data);
    }
    cJSON_Delete(root);
}

/* GET /sessions/{id}?output=base64 through the handler; NULL with *status if not 200. */
static char *snapshot(const char *id, int *status)
{
    api_ctx ctx = {.store = store, .cfg = &cfg_open, .draining = &draining};
    api_req r = {0};
    buf_init(&r.out);
    r.id = id;
    r.q_output = "base64";
    int rc = api_session_get(&ctx, &r);
    *status = rc == 0 ? r.status : apierr_status(r.err.code);
    if (rc != 0 || r.out.oom) {
        buf_free(&r.out);
        return NULL;
    }
    size_t len;
    return buf_steal(&r.out, &len);
}

static void track(state *s, const char *id)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->t[i].id, id) == 0)
            return;
    if (s->n == MAX_TRACKED)
        return;
    int st;
    char *snap = snapshot(id, &st);
    if (!snap)
        return;
    memcpy(s->t[s->n].id, id, SESSION_ID_MAX + 1);
    s->t[s->n].snap = snap;
    s->n++;
}

/* Every tracked session but `changed` must read as before; `changed` is re-read (or
 * dropped from tracking once gone). */
static void verify_sessions(state *s, const char *changed, int may_evict, const char *what)
{
    for (int i = 0; i < s->n; i++) {
        int st;
        char *now = snapshot(s->t[i].id, &st);
        if (changed && strcmp(changed, s->t[i].id) == 0) {
            free(s->t[i].snap);
            s->t[i].snap = now;
            if (!now) {
                s->t[i] = s->t[--s->n];
                i--;
            }
            continue;
        }
        if (!now && st == 410 && may_evict) {
            /* evicted to make room for a new session: it answers 410 from now on */
            free(s->t[i].snap);
            s->t[i] = s->t[--s->n];
            i--;
            continue;
        }
        if (!now || strcmp(now, s->t[i].snap) != 0) {
            fprintf(stderr, "session %s (GET %d)\nbefore: %.300s\nafter:  %.300s\n", s->t[i].id, st,
                    s->t[i].snap, now ? now : "(none)");
            free(now);
            fail("a request changed a session it does not name", what);
        }
        free(now);
    }
}

static void serve(state *s, request *q)
{
    const srv_config *cfg = q->auth ? &cfg_auth : &cfg_open;
    api_ctx ctx = {.store = store, .cfg = cfg, .draining = &draining};
    atomic_store(&draining, q->drain);
    route_match m;
    route_result rr = router_match(q->method, q->path, &m);
    if ((rr == ROUTE_OK) != (m.handler != NULL))
        fail("router_match's result and handler disagree", q->path);
    api_req r = {0};
    buf_init(&r.out);
    int rc = -1;
    if (early_checks(q, cfg, rr, &m, &r.err) == 0) {
        r.id = m.id[0] ? m.id : NULL;
        r.hdr_session = header(q, "X-Session-Id");
        r.q_output = query_output(q);
        r.body = q->body_len ? q->body : NULL;
        r.body_len = q->body_len;
        rc = m.handler(&ctx, &r);
        if ((rc == 0) != (r.err.code == APIERR_NONE))
            fail("a handler's return value and its error disagree", r.err.msg);
        if (rc != 0 && !r.err.msg[0])
            fail("an error without a message", apierr_name(r.err.code));
    }
    int status = r.err.code != APIERR_NONE ? apierr_status(r.err.code) : r.status;
    if (r.err.code == APIERR_INTERNAL)
        fail("500 internal", r.err.msg);
    if (status < 200 || status > 599)
        fail("a status outside 200..599", NULL);
    if (r.err.code != APIERR_NONE) {
        buf_free(&r.out);
        buf_init(&r.out);
        api_error_body(&r.out, &r.err);
    }
    if (r.out.oom)
        fail("out of memory building an answer", NULL);
    if (status != 204 && !r.content_type)
        check_answer(&r, status, &r.out);
    if (status == 204 && r.out.len)
        fail("a 204 with a body", r.out.data);
    atomic_store(&draining, 0);

    int ok = r.err.code == APIERR_NONE;
    /* in the small store, a request that creates a session may evict another, even when it
     * then fails (session_create runs before x is checked) */
    int creates = m.handler == api_session_create || m.handler == api_forward;
    verify_sessions(s, ok && r.session[0] ? r.session : NULL, store == small_store && creates,
                    q->path);
    if (ok && r.session[0]) {
        memcpy(s->last, r.session, sizeof s->last);
        if (status != 204)
            track(s, r.session);
    }
    buf_free(&r.out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    state s = {0};
    memset(s.last, '0', SESSION_ID_LEN);
    store = memmem(data, size, "X-Fuzz: small", 13) ? small_store : big_store;
    const char *p = (const char *)data, *end = p + size;
    for (int k = 0; k < MAX_REQS && p < end; k++) {
        const char *sep = memmem(p, (size_t)(end - p), SEP, strlen(SEP));
        size_t n = sep ? (size_t)(sep - p) : (size_t)(end - p);
        size_t len;
        char *text = substitute(p, n, s.last, &len);
        request q;
        if (text && parse_request(text, len, &q) == 0)
            serve(&s, &q);
        free(text);
        p = sep ? sep + strlen(SEP) : end;
    }
    /* leave the store as it was: delete what this input made */
    for (int i = 0; i < s.n; i++) {
        session_delete(store, s.t[i].id, NULL);
        free(s.t[i].snap);
    }
    metrics_sessions ms;
    session_store_stats(store, &ms);
    if (ms.live != 0)
        fail("a session no answer named was left in the store", NULL);
    return 0;
}
