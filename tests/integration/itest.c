/*
 * itest.c — shared assertions and helpers for the integration tests (see itest.h).
 * A failing check prints what the daemon actually answered (status and body), so a
 * failure report is enough to file a bug without re-running anything.
 */
#include "itest.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FAIL_AT(file, line, ...)                                                                   \
    do {                                                                                           \
        print_error(__VA_ARGS__);                                                                  \
        print_error("\n");                                                                         \
        _fail((file), (line));                                                                     \
    } while (0)

char *strf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        fail_msg("strf: out of memory");
    return s;
}

double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

cJSON *fixture_load(const char *name)
{
    const char *dir = getenv("CONVD_FIXTURES");
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir && *dir ? dir : "tests/fixtures", name);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open fixture %s", path);
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 65536 > cap) {
            cap = cap ? cap * 2 : 1 << 20;
            char *p = realloc(text, cap);
            assert_non_null(p);
            text = p;
        }
        size_t r = fread(text + len, 1, cap - len, f);
        if (r == 0)
            break;
        len += r;
    }
    fclose(f);
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    if (!j)
        fail_msg("fixture %s is not JSON", path);
    return j;
}

char *json_text(const cJSON *node)
{
    assert_non_null(node);
    char *s = cJSON_PrintUnformatted(node);
    assert_non_null(s);
    return s;
}

void req_h(test_daemon *d, const char *method, const char *path, const char *body,
           const char *const *hdrs, http_res *r)
{
    if (http_do(NULL, daemon_url(d), method, path, body, body ? strlen(body) : 0, hdrs, r) != 0) {
        char *log = daemon_log(d);
        print_error("%s %s: no HTTP answer (curl error %d: %s)\ndaemon output:\n%s\n", method, path,
                    r->curl_rc, curl_easy_strerror((CURLcode)r->curl_rc), log);
        free(log);
        fail();
    }
}

void req(test_daemon *d, const char *method, const char *path, const char *body, http_res *r)
{
    req_h(d, method, path, body, NULL, r);
}

static const char *clip(const char *s)
{
    static char buf[1200];
    size_t n = strlen(s);
    if (n < sizeof buf)
        return s;
    memcpy(buf, s, 1000);
    snprintf(buf + 1000, sizeof buf - 1000, "... (%zu bytes)", n);
    return buf;
}

void expect_status_at(const http_res *r, long status, const char *file, int line)
{
    if (r->status != status)
        FAIL_AT(file, line, "expected HTTP %ld, got %ld: %s", status, r->status,
                clip(r->body ? r->body : ""));
}

/* Whether s equals one of the '|'-separated alternatives in alts. */
static int one_of(const char *s, const char *alts)
{
    size_t n = strlen(s);
    for (const char *p = alts; p;) {
        const char *bar = strchr(p, '|');
        size_t k = bar ? (size_t)(bar - p) : strlen(p);
        if (k == n && strncmp(p, s, n) == 0)
            return 1;
        p = bar ? bar + 1 : NULL;
    }
    return 0;
}

int msg_names(const char *msg, const char *field)
{
    size_t n = strlen(field);
    for (const char *p = strstr(msg, field); p; p = strstr(p + 1, field)) {
        int before = p == msg || !(isalnum((unsigned char)p[-1]) || p[-1] == '_');
        int after = !(isalnum((unsigned char)p[n]) || p[n] == '_');
        if (before && after)
            return 1;
    }
    return 0;
}

int msg_has_shape(const char *msg, const char *shape)
{
    char buf[1024];
    size_t k = 0;
    for (const char *p = msg; *p && k + 1 < sizeof buf; p++)
        if (*p != ' ')
            buf[k++] = *p;
    buf[k] = '\0';
    return strstr(buf, shape) != NULL;
}

static int names_any(const char *msg, const char *fields)
{
    for (const char *p = fields; p;) {
        const char *bar = strchr(p, '|');
        char one[128];
        size_t k = bar ? (size_t)(bar - p) : strlen(p);
        if (k >= sizeof one)
            k = sizeof one - 1;
        memcpy(one, p, k);
        one[k] = '\0';
        if (msg_names(msg, one))
            return 1;
        p = bar ? bar + 1 : NULL;
    }
    return 0;
}

int error_check(const http_res *r, long status, const char *code, const char *fields, char *why,
                size_t n)
{
    const char *body = clip(r->body ? r->body : "");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(r->json, "error");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "code");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
    if (r->status != status)
        snprintf(why, n, "expected HTTP %ld %s, got %ld: %s", status, code, r->status, body);
    else if (!cJSON_IsObject(e) || !cJSON_IsString(c) || !cJSON_IsString(m))
        snprintf(why, n, "not a {\"error\":{\"code\",\"message\"}} body: %s", body);
    else if (!one_of(c->valuestring, code))
        snprintf(why, n, "expected error code %s, got %s: %s", code, c->valuestring, body);
    else if (strlen(m->valuestring) < 8)
        snprintf(why, n, "error message too short to help anyone: %s", body);
    else if (fields && !names_any(m->valuestring, fields))
        snprintf(why, n, "error message does not name %s: %s", fields, body);
    else if (strncmp(r->content_type, "application/json", 16) != 0)
        snprintf(why, n, "error Content-Type is '%s', expected application/json", r->content_type);
    else
        return 0;
    return -1;
}

void expect_error_at(const http_res *r, long status, const char *code, const char *fields,
                     const char *file, int line)
{
    char why[1400];
    if (error_check(r, status, code, fields, why, sizeof why) != 0)
        FAIL_AT(file, line, "%s", why);
}

char *raw_member(const char *body, const char *key)
{
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = body ? strstr(body, pat) : NULL;
    if (!p)
        return NULL;
    p += strlen(pat);
    while (*p == ' ')
        p++;
    const char *q = p;
    int depth = 0, in_str = 0;
    for (; *q; q++) {
        if (in_str) {
            if (*q == '\\' && q[1])
                q++;
            else if (*q == '"')
                in_str = 0;
            if (!in_str && depth == 0) {
                q++;
                break;
            }
            continue;
        }
        if (*q == '"')
            in_str = 1;
        else if (*q == '[' || *q == '{')
            depth++;
        else if (*q == ']' || *q == '}') {
            if (depth == 0)
                break;
            if (--depth == 0) {
                q++;
                break;
            }
        } else if (*q == ',' && depth == 0)
            break;
    }
    return strndup(p, (size_t)(q - p));
}

const cJSON *jget_at(const cJSON *obj, const char *key, const char *file, int line)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) {
        char *t = obj ? cJSON_PrintUnformatted(obj) : NULL;
        FAIL_AT(file, line, "no \"%s\" in %s", key, t ? clip(t) : "(null)");
    }
    return v;
}

double jnum_at(const cJSON *obj, const char *key, const char *file, int line)
{
    const cJSON *v = jget_at(obj, key, file, line);
    if (!cJSON_IsNumber(v))
        FAIL_AT(file, line, "\"%s\" is not a number", key);
    return v->valuedouble;
}

void tensor_read_at(const cJSON *node, ttensor *t, const char *what, const char *file, int line)
{
    char why[256];
    if (tt_from_json(node, t, why, sizeof why) != 0)
        FAIL_AT(file, line, "%s: %s", what, why);
}

void expect_tensor_at(const cJSON *got, const ttensor *want, tt_form form, int bits, double tol,
                      const char *what, const char *file, int line)
{
    static const char *const names[] = {"nested", "flat", "base64"};
    ttensor t;
    char why[512];
    if (!got)
        FAIL_AT(file, line, "%s is missing", what);
    if (tt_from_json(got, &t, why, sizeof why) != 0)
        FAIL_AT(file, line, "%s: %s", what, why);
    if (t.form != form) {
        tt_free(&t);
        FAIL_AT(file, line, "%s came back %s, expected %s", what, names[t.form], names[form]);
    }
    if (form == TT_BASE64 && bits && t.bits != bits) {
        int tb = t.bits;
        tt_free(&t);
        FAIL_AT(file, line, "%s: base64 dtype bits %d, expected %d", what, tb, bits);
    }
    int rc = tt_compare(&t, want, tol, why, sizeof why);
    tt_free(&t);
    if (rc != 0)
        FAIL_AT(file, line, "%s: %s", what, why);
}

char *session_create_at(test_daemon *d, const char *layer, const char *file, int line)
{
    http_res r;
    req(d, "POST", "/sessions", layer, &r);
    if (r.status != 201)
        FAIL_AT(file, line, "POST /sessions: expected 201, got %ld: %s", r.status, clip(r.body));
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(r.json, "session");
    if (!cJSON_IsString(s) || strlen(s->valuestring) < 22)
        FAIL_AT(file, line, "POST /sessions: no proper \"session\" id: %s", r.body);
    char *id = strdup(s->valuestring);
    char *loc = strf("/sessions/%s", id);
    if (strcmp(r.location, loc) != 0)
        FAIL_AT(file, line, "Location is '%s', expected '%s'", r.location, loc);
    if (!r.has_session_id || strcmp(r.session_id, id) != 0)
        FAIL_AT(file, line, "X-Session-Id is '%s', expected '%s'", r.session_id, id);
    free(loc);
    http_res_free(&r);
    return id;
}

void snap_take_at(test_daemon *d, const char *id, session_snap *s, const char *file, int line)
{
    memset(s, 0, sizeof *s);
    char *path = strf("/sessions/%s?output=flat", id);
    http_res r;
    req(d, "GET", path, NULL, &r);
    free(path);
    if (r.status != 200)
        FAIL_AT(file, line, "GET session: expected 200, got %ld: %s", r.status, clip(r.body));
    const cJSON *W = cJSON_GetObjectItemCaseSensitive(r.json, "W");
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(r.json, "b");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(r.json, "cached");
    if (!W || !cJSON_IsBool(c))
        FAIL_AT(file, line, "GET session lacks W or a boolean cached: %s", clip(r.body));
    s->W = raw_member(r.body, "W");
    s->b = b ? raw_member(r.body, "b") : strdup("");
    s->cached = cJSON_IsTrue(c);
    s->forwards = jnum_at(r.json, "forwards", file, line);
    s->backwards = jnum_at(r.json, "backwards", file, line);
    http_res_free(&r);
}

int snap_same(test_daemon *d, const char *id, const session_snap *s)
{
    session_snap now;
    snap_take_at(d, id, &now, __FILE__, __LINE__);
    int same = strcmp(now.W, s->W) == 0 && strcmp(now.b, s->b) == 0 && now.cached == s->cached &&
               now.forwards == s->forwards && now.backwards == s->backwards;
    if (!same)
        print_error("session %s changed by a failed request:\n before W=%s b=%s cached=%d "
                    "forwards=%g backwards=%g\n",
                    id, clip(s->W), s->b, s->cached, s->forwards, s->backwards);
    if (!same)
        print_error(" after  W=%s b=%s cached=%d forwards=%g backwards=%g\n", clip(now.W), now.b,
                    now.cached, now.forwards, now.backwards);
    snap_free(&now);
    return same;
}

void snap_expect_same_at(test_daemon *d, const char *id, const session_snap *s, const char *file,
                         int line)
{
    if (!snap_same(d, id, s))
        _fail(file, line);
}

void snap_free(session_snap *s)
{
    free(s->W);
    free(s->b);
    memset(s, 0, sizeof *s);
}

double prom_sum(const char *text, const char *prefix, const char *const *parts)
{
    double sum = 0;
    int found = 0;
    size_t plen = strlen(prefix);
    for (const char *line = text; line && *line;) {
        const char *eol = strchr(line, '\n');
        size_t n = eol ? (size_t)(eol - line) : strlen(line);
        if (n > 0 && line[0] != '#' && n < 1024 && strncmp(line, prefix, plen) == 0) {
            char buf[1024];
            memcpy(buf, line, n);
            buf[n] = '\0';
            char *val = strrchr(buf, ' ');
            int ok = val != NULL;
            if (ok)
                *val++ = '\0';
            for (size_t i = 0; ok && parts && parts[i]; i++)
                ok = strstr(buf, parts[i]) != NULL;
            if (ok) {
                sum += strtod(val, NULL);
                found = 1;
            }
        }
        line = eol ? eol + 1 : NULL;
    }
    return found ? sum : -1;
}

test_daemon *start_or_fail_at(const char *const *args, const char *const *env, const char *file,
                              int line)
{
    test_daemon *d = daemon_start(args, env);
    if (!d)
        FAIL_AT(file, line, "the daemon (%s) did not start", daemon_bin());
    return d;
}

void stop_expect_clean_at(test_daemon *d, const char *file, int line)
{
    int rc = daemon_stop(d);
    if (rc != 0)
        FAIL_AT(file, line, "daemon exit status %d after SIGTERM, expected 0", rc);
}

static void load_member(const cJSON *root, const char *key, ttensor *t)
{
    char why[256];
    if (tt_from_json(cJSON_GetObjectItemCaseSensitive(root, key), t, why, sizeof why) != 0)
        fail_msg("notebook.json %s: %s", key, why);
}

const notebook *notebook_get(void)
{
    static notebook nb;
    static int loaded;
    if (!loaded) {
        cJSON *j = fixture_load("notebook.json");
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "expected");
        load_member(j, "x", &nb.x);
        load_member(j, "W", &nb.W);
        load_member(j, "delta", &nb.delta);
        load_member(e, "y", &nb.y);
        load_member(e, "dx", &nb.dx);
        load_member(e, "dW", &nb.dW);
        load_member(e, "db", &nb.db);
        cJSON_Delete(j);
        loaded = 1;
    }
    return &nb;
}

int itest_main(const struct CMUnitTest *tests, size_t n, const char *group, CMFixtureFunction setup,
               CMFixtureFunction teardown)
{
    curl_global_init(CURL_GLOBAL_ALL);
    int rc = _cmocka_run_group_tests(group, tests, n, setup, teardown);
    curl_global_cleanup();
    return rc;
}

test_daemon *dmn;
static const char *const *shared_args;
static CMFixtureFunction shared_more, shared_less;

static int shared_setup(void **state)
{
    dmn = daemon_start(shared_args, NULL);
    if (!dmn)
        return -1;
    return shared_more ? shared_more(state) : 0;
}

static int shared_teardown(void **state)
{
    int rc = shared_less ? shared_less(state) : 0;
    daemon_kill(dmn);
    dmn = NULL;
    return rc;
}

int itest_shared_main(const struct CMUnitTest *tests, size_t n, const char *group,
                      const char *const *args, CMFixtureFunction more, CMFixtureFunction less)
{
    shared_args = args;
    shared_more = more;
    shared_less = less;
    return itest_main(tests, n, group, shared_setup, shared_teardown);
}

void itest_daemon_exits_cleanly(void **state)
{
    (void)state;
    test_daemon *d = dmn;
    dmn = NULL;
    stop_expect_clean(d);
}
