/*
 * test_service.c — the service endpoints and auth (spec §4, §6): GET / (name, version,
 * endpoints), /healthz, /readyz, /metrics (Prometheus text, convd_* names, _total counters
 * and _seconds histograms that move with traffic: requests by endpoint and status, sessions
 * created/live, bytes in/out, compute seconds), and the API key (401 without or with a wrong
 * key on every endpoint but /healthz and /readyz; by flag, environment and key file).
 */
#include "itest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_root(void **state)
{
    (void)state;
    http_res r;
    req(dmn, "GET", "/", NULL, &r);
    expect_status(&r, 200);
    assert_true(cJSON_IsString(jget(r.json, "name")));
    assert_non_null(strstr(cJSON_GetStringValue(jget(r.json, "name")), "convd"));
    assert_true(cJSON_IsString(jget(r.json, "version")));
    assert_true(strlen(cJSON_GetStringValue(jget(r.json, "version"))) > 0);
    const cJSON *eps = jget(r.json, "endpoints");
    assert_true(cJSON_IsArray(eps) && cJSON_GetArraySize(eps) >= 9);
    char *t = json_text(eps);
    static const char *const paths[] = {"/sessions", "/forward", "/backward",
                                        "/healthz",  "/readyz",  "/metrics"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        if (!strstr(t, paths[i]))
            fail_msg("GET / endpoints do not list %s: %s", paths[i], t);
    free(t);
    assert_string_equal(r.content_type, "application/json");
    http_res_free(&r);
}

static void test_health_and_ready(void **state)
{
    (void)state;
    http_res r;
    req(dmn, "GET", "/healthz", NULL, &r);
    expect_status(&r, 200);
    assert_string_equal(cJSON_GetStringValue(jget(r.json, "status")), "ok");
    http_res_free(&r);
    req(dmn, "GET", "/readyz", NULL, &r);
    expect_status(&r, 200);
    assert_non_null(r.json);
    http_res_free(&r);
}

static char *metrics(test_daemon *d)
{
    http_res r;
    req(d, "GET", "/metrics", NULL, &r);
    expect_status(&r, 200);
    if (strncmp(r.content_type, "text/plain", 10) != 0)
        fail_msg("/metrics Content-Type '%s', expected text/plain", r.content_type);
    char *t = strdup(r.body);
    http_res_free(&r);
    return t;
}

static double metric(const char *text, const char *a, const char *b, const char *c)
{
    const char *parts[] = {a, b, c, NULL};
    return prom_sum(text, "convd_", parts);
}

/* Every sample line is a convd_ name, a value, and the TYPE lines say counter/gauge/histogram. */
static void check_exposition(const char *text)
{
    int samples = 0, counters = 0, hist = 0;
    for (const char *line = text; line && *line;) {
        const char *eol = strchr(line, '\n');
        size_t n = eol ? (size_t)(eol - line) : strlen(line);
        if (n > 0 && line[0] != '#') {
            if (strncmp(line, "convd_", 6) != 0)
                fail_msg("a sample not named convd_*: %.*s", (int)n, line);
            samples++;
        }
        if (n > 7 && strncmp(line, "# TYPE ", 7) == 0) {
            if (memmem(line, n, " counter", 8) && memmem(line, n, "_total", 6))
                counters++;
            if (memmem(line, n, " histogram", 10) && memmem(line, n, "_seconds", 8))
                hist++;
        }
        line = eol ? eol + 1 : NULL;
    }
    assert_true(samples > 10);
    assert_true(counters >= 3);
    assert_true(hist >= 1);
    assert_non_null(strstr(text, "le=\"+Inf\""));
}

static void test_metrics_move(void **state)
{
    (void)state;
    char *before = metrics(dmn);
    check_exposition(before);
    const notebook *nb = notebook_get();
    char *W = tt_json(nb->W.data, nb->W.rank, nb->W.shape, TT_NESTED, 64, 1);
    char *x = tt_json(nb->x.data, nb->x.rank, nb->x.shape, TT_NESTED, 64, 1);
    char *body = strf("{\"layer\":{\"W\":%s},\"x\":%s}", W, x);
    http_res r;
    for (int i = 0; i < 3; i++) {
        req(dmn, "POST", "/forward", body, &r);
        expect_status(&r, 200);
        http_res_free(&r);
    }
    req(dmn, "POST", "/forward", "{\"x\":1}", &r);
    expect_status(&r, 400);
    http_res_free(&r);
    struct {
        const char *a, *b, *c;
        double min_delta;
    } moves[] = {
        {"requests_total", "forward", "200", 3}, {"requests_total", "forward", "400", 1},
        {"created", "_total", NULL, 3},          {"bytes", "in", NULL, 3 * strlen(body)},
        {"bytes", "out", NULL, 3 * 40},          {"compute", "_seconds", NULL, 1e-9},
        {"_seconds_count", NULL, NULL, 4},
    };
    size_t nmoves = sizeof moves / sizeof moves[0];
    /* A request is counted when it completes, which may be a moment after its answer
     * reached us: poll briefly until every metric has moved. */
    char *after = NULL;
    size_t i = 0;
    double deadline = now_sec() + 3;
    do {
        free(after);
        after = metrics(dmn);
        for (i = 0; i < nmoves; i++) {
            double b0 = metric(before, moves[i].a, moves[i].b, moves[i].c);
            double b1 = metric(after, moves[i].a, moves[i].b, moves[i].c);
            if (b1 < 0 || b1 - (b0 < 0 ? 0 : b0) < moves[i].min_delta)
                break;
        }
    } while (i < nmoves && now_sec() < deadline && (sleep_ms(5), 1));
    check_exposition(after);
    for (i = 0; i < nmoves; i++) {
        double b0 = metric(before, moves[i].a, moves[i].b, moves[i].c);
        double b1 = metric(after, moves[i].a, moves[i].b, moves[i].c);
        print_message("%s %s %s: %g -> %g\n", moves[i].a, moves[i].b ? moves[i].b : "",
                      moves[i].c ? moves[i].c : "", b0, b1);
        if (b1 < 0 || b1 - (b0 < 0 ? 0 : b0) < moves[i].min_delta)
            fail_msg("metric convd_*%s*%s*%s* did not move by %g (%g -> %g):\n%s", moves[i].a,
                     moves[i].b ? moves[i].b : "", moves[i].c ? moves[i].c : "", moves[i].min_delta,
                     b0, b1, after);
    }
    /* Compute time may be a _seconds_total counter or a _seconds histogram: either way the
     * samples named convd_*compute*_seconds* grow (checked above with a tiny delta). */
    double live = metric(after, "sessions", "live", NULL);
    assert_true(live >= 3);
    /* A stateless backward creates no session. */
    char *d = tt_json(nb->delta.data, nb->delta.rank, nb->delta.shape, TT_NESTED, 64, 1);
    char *sl = strf("{\"layer\":{\"W\":%s},\"x\":%s,\"delta\":%s}", W, x, d);
    req(dmn, "POST", "/backward", sl, &r);
    expect_status(&r, 200);
    http_res_free(&r);
    char *last = metrics(dmn);
    assert_true(metric(last, "created", "_total", NULL) ==
                metric(after, "created", "_total", NULL));
    assert_true(metric(last, "sessions", "live", NULL) == live);
    free(last);
    free(sl);
    free(d);
    free(before);
    free(after);
    free(body);
    free(W);
    free(x);
}

/* A daemon with a key: only /healthz and /readyz are open. */
static void check_auth(test_daemon *d, const char *key)
{
    char *good = strf("Authorization: Bearer %s", key);
    char *wrong = strf("Authorization: Bearer %sx", key);
    char *basic = strf("Authorization: Basic %s", key);
    const char *bad_sets[][2] = {
        {NULL, NULL}, {wrong, NULL}, {basic, NULL}, {"Authorization: Bearer", NULL}};
    const char *ok[] = {good, NULL};
    http_res r;
    req_h(d, "POST", "/sessions", "{\"W\":[[[[1]]]]}", ok, &r);
    expect_status(&r, 201);
    char *id = strdup(cJSON_GetStringValue(jget(r.json, "session")));
    http_res_free(&r);
    char *spath = strf("/sessions/%s", id);
    char *fwd = strf("{\"session\":\"%s\",\"x\":[[[[2]]]]}", id);
    char *bwd = strf("{\"session\":\"%s\",\"delta\":[[[[1]]]]}", id);
    const struct {
        const char *method, *path, *body;
        long ok_status;
    } eps[] = {
        {"POST", "/sessions", "{\"W\":[[[[1]]]]}", 201},
        {"POST", "/forward", fwd, 200},
        {"POST", "/backward", bwd, 200},
        {"GET", spath, NULL, 200},
        {"POST", "/backward", "{\"layer\":{\"W\":[[[[1]]]]},\"x\":[[[[2]]]],\"delta\":[[[[1]]]]}",
         200},
        {"GET", "/metrics", NULL, 200},
        {"GET", "/", NULL, 200},
        {"DELETE", spath, NULL, 204},
    };
    for (size_t i = 0; i < sizeof eps / sizeof eps[0]; i++) {
        for (size_t k = 0; k < sizeof bad_sets / sizeof bad_sets[0]; k++) {
            req_h(d, eps[i].method, eps[i].path, eps[i].body, bad_sets[k][0] ? bad_sets[k] : NULL,
                  &r);
            print_message("%s %s with '%s': %ld\n", eps[i].method, eps[i].path,
                          bad_sets[k][0] ? bad_sets[k][0] : "(none)", r.status);
            expect_error(&r, 401, "unauthorized", "Authorization|Bearer|API key|api_key");
            if (strstr(r.body, key))
                fail_msg("the 401 answer echoes the key: %s", r.body);
            http_res_free(&r);
        }
        req_h(d, eps[i].method, eps[i].path, eps[i].body, ok, &r);
        expect_status(&r, eps[i].ok_status);
        http_res_free(&r);
    }
    static const char *const open_paths[] = {"/healthz", "/readyz"};
    for (size_t i = 0; i < 2; i++) {
        req(d, "GET", open_paths[i], NULL, &r);
        expect_status(&r, 200);
        http_res_free(&r);
    }
    free(spath);
    free(fwd);
    free(bwd);
    free(id);
    free(good);
    free(wrong);
    free(basic);
}

static void test_api_key_flag(void **state)
{
    (void)state;
    static const char *const args[] = {"--api-key", "s3cret-flag", NULL};
    test_daemon *d = start_or_fail(args, NULL);
    check_auth(d, "s3cret-flag");
    char *log = daemon_log(d);
    if (strstr(log, "s3cret-flag"))
        fail_msg("the daemon logged its API key:\n%s", log);
    free(log);
    stop_expect_clean(d);
}

static void test_api_key_env_and_file(void **state)
{
    (void)state;
    static const char *const env[] = {"CONVD_API_KEY=envkey123", NULL};
    test_daemon *d = start_or_fail(NULL, env);
    check_auth(d, "envkey123");
    stop_expect_clean(d);

    char path[] = "/tmp/convd-itest-keyXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *key = "filekey456\n";
    assert_int_equal(write(fd, key, strlen(key)), (ssize_t)strlen(key));
    close(fd);
    const char *args[] = {"--api-key-file", path, NULL};
    d = start_or_fail(args, NULL);
    check_auth(d, "filekey456");
    stop_expect_clean(d);
    char *envf = strf("CONVD_API_KEY_FILE=%s", path);
    const char *env2[] = {envf, NULL};
    d = start_or_fail(NULL, env2);
    check_auth(d, "filekey456");
    stop_expect_clean(d);
    free(envf);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_root),         cmocka_unit_test(test_health_and_ready),
        cmocka_unit_test(test_metrics_move), cmocka_unit_test(itest_daemon_exits_cleanly),
        cmocka_unit_test(test_api_key_flag), cmocka_unit_test(test_api_key_env_and_file),
    };
    return ITEST_SHARED_MAIN(tests, NULL, NULL, NULL);
}
