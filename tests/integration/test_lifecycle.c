/*
 * test_lifecycle.c — the process (spec §6): SIGTERM/SIGINT exit 0; a drain with a request
 * in flight (a slowly sent body: /readyz turns 503 {"status":"draining"}, /healthz and
 * /metrics stay 200, new work gets 503 shutting_down, the in-flight request still completes
 * with 200, then exit 0); the drain timeout bounds a stuck request; SIGTERM during a big
 * forward (8x64x56x56); --version, --help, a bad flag, --healthcheck; and the settings'
 * precedence flag > environment > file > default, seen through idle_timeout_s.
 */
#include "itest.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int exit_code_of(int ws)
{
    if (ws == -1)
        return -1;
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
}

static void expect_exit_zero(test_daemon *d, int timeout_ms)
{
    int ws = daemon_wait(d, timeout_ms);
    int code = exit_code_of(ws);
    if (code != 0) {
        char *log = daemon_log(d);
        print_error("daemon exit status %d (-1: still running after %d ms); output:\n%s\n", code,
                    timeout_ms, log);
        free(log);
        daemon_kill(d);
        fail();
    }
    daemon_kill(d);
}

static void test_signals_exit_zero(void **state)
{
    (void)state;
    static const int sigs[] = {SIGTERM, SIGINT};
    for (int i = 0; i < 2; i++) {
        test_daemon *d = start_or_fail(NULL, NULL);
        http_res r;
        req(d, "GET", "/healthz", NULL, &r);
        expect_status(&r, 200);
        http_res_free(&r);
        double t0 = now_sec();
        daemon_signal(d, sigs[i]);
        expect_exit_zero(d, 10000);
        print_message("signal %d: exited in %.3f s\n", sigs[i], now_sec() - t0);
    }
}

/* The notebook's stateless backward, as raw text split in two halves. */
static char *notebook_body(void)
{
    const notebook *nb = notebook_get();
    char *W = tt_json(nb->W.data, nb->W.rank, nb->W.shape, TT_NESTED, 64, 1);
    char *x = tt_json(nb->x.data, nb->x.rank, nb->x.shape, TT_NESTED, 64, 1);
    char *d = tt_json(nb->delta.data, nb->delta.rank, nb->delta.shape, TT_NESTED, 64, 1);
    char *body = strf("{\"layer\":{\"W\":%s},\"x\":%s,\"delta\":%s}", W, x, d);
    free(W);
    free(x);
    free(d);
    return body;
}

/* Opens a connection and sends the headers plus the first half of body. */
static int start_slow_request(test_daemon *d, const char *body)
{
    int fd = raw_connect(daemon_port(d));
    assert_true(fd >= 0);
    size_t n = strlen(body);
    char *head = strf("POST /backward HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                      "application/json\r\nContent-Length: %zu\r\n\r\n",
                      n);
    assert_int_equal(raw_send(fd, head, strlen(head)), 0);
    assert_int_equal(raw_send(fd, body, n / 2), 0);
    free(head);
    /* Let the daemon read the headers (nothing observable to poll for). */
    sleep_ms(200);
    return fd;
}

static void test_drain_with_request_in_flight(void **state)
{
    (void)state;
    static const char *const args[] = {"--drain-timeout", "10", NULL};
    test_daemon *d = start_or_fail(args, NULL);
    char *body = notebook_body();
    int fd = start_slow_request(d, body);
    assert_int_equal(daemon_signal(d, SIGTERM), 0);

    /* /readyz turns 503 {"status":"draining"} */
    http_res r;
    double deadline = now_sec() + 5;
    for (;;) {
        req(d, "GET", "/readyz", NULL, &r);
        if (r.status == 503 || now_sec() > deadline)
            break;
        http_res_free(&r);
        sleep_ms(10);
    }
    expect_status(&r, 503);
    assert_string_equal(cJSON_GetStringValue(jget(r.json, "status")), "draining");
    http_res_free(&r);
    req(d, "GET", "/healthz", NULL, &r);
    expect_status(&r, 200);
    http_res_free(&r);
    req(d, "GET", "/metrics", NULL, &r);
    expect_status(&r, 200);
    http_res_free(&r);
    static const char *const work[][3] = {
        {"POST", "/sessions", "{\"W\":[[[[1]]]]}"},
        {"POST", "/forward", "{\"layer\":{\"W\":[[[[1]]]]},\"x\":[[[[1]]]]}"},
        {"POST", "/backward", "{\"layer\":{\"W\":[[[[1]]]]},\"x\":[[[[1]]]],\"delta\":[[[[1]]]]}"},
        {"GET", "/sessions/00000000000000000000000000000000", NULL},
        {"GET", "/", NULL},
    };
    for (size_t i = 0; i < sizeof work / sizeof work[0]; i++) {
        req(d, work[i][0], work[i][1], work[i][2], &r);
        print_message("draining: %s %s -> %ld\n", work[i][0], work[i][1], r.status);
        expect_error(&r, 503, "shutting_down", NULL);
        http_res_free(&r);
    }
    assert_true(daemon_wait(d, 0) == -1); /* still running: a request is in flight */

    /* The in-flight request finishes normally. */
    size_t n = strlen(body);
    assert_int_equal(raw_send(fd, body + n / 2, n - n / 2), 0);
    char *resp = NULL;
    long st = raw_read_response(fd, 10000, &resp);
    close(fd);
    if (st != 200)
        fail_msg("in-flight request answered %ld: %s", st, resp);
    cJSON *j = cJSON_Parse(strstr(resp, "\r\n\r\n") + 4);
    expect_tensor(cJSON_GetObjectItemCaseSensitive(j, "dW"), &notebook_get()->dW, TT_NESTED, 0, 0,
                  "dW of the in-flight request");
    cJSON_Delete(j);
    free(resp);
    free(body);
    double t0 = now_sec();
    expect_exit_zero(d, 10000);
    print_message("exited %.3f s after the last request\n", now_sec() - t0);
}

static void test_drain_timeout_bounds_a_stuck_request(void **state)
{
    (void)state;
    /* no minimum body rate: else the stalled body is dropped at once (test_edge_drain.c) */
    static const char *const args[] = {"--drain-timeout", "1", "--body-min-rate", "0", NULL};
    test_daemon *d = start_or_fail(args, NULL);
    char *body = notebook_body();
    int fd = start_slow_request(d, body); /* never finished */
    double t0 = now_sec();
    daemon_signal(d, SIGTERM);
    expect_exit_zero(d, 8000);
    double dt = now_sec() - t0;
    print_message("exited %.3f s after SIGTERM with a stuck request\n", dt);
    assert_true(dt >= 0.9 && dt < 6);
    close(fd);
    free(body);
}

/* SIGTERM while an 8x64x56x56 forward is being read/computed: it completes with 200. */
static void test_sigterm_during_big_forward(void **state)
{
    (void)state;
    enum { N = 8, C = 64, F = 64, H = 56, K = 3, OH = H - K + 1 };
    test_daemon *d = start_or_fail(NULL, NULL);
    int64_t xs[4] = {N, C, H, H}, ws[4] = {F, C, K, K};
    ttensor x, W;
    tt_make(&x, 4, xs, NULL);
    tt_make(&W, 4, ws, NULL);
    /* Dyadic values: every sum is exact in float64, whatever the summation order. */
    for (size_t i = 0; i < x.n; i++)
        x.data[i] = (double)((int)(i % 17) - 8) / 8;
    for (size_t i = 0; i < W.n; i++)
        W.data[i] = (double)((int)(i % 13) - 6) / 16;
    char *xj = tt_json(x.data, 4, xs, TT_BASE64, 32, 1);
    char *Wj = tt_json(W.data, 4, ws, TT_BASE64, 32, 1);
    char *body = strf("{\"layer\":{\"W\":%s,\"bias\":false},\"x\":%s}", Wj, xj);
    free(xj);
    free(Wj);
    size_t n = strlen(body);
    int fd = raw_connect(daemon_port(d));
    assert_true(fd >= 0);
    char *head = strf("POST /forward HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                      "application/json\r\nContent-Length: %zu\r\n\r\n",
                      n);
    double t0 = now_sec();
    assert_int_equal(raw_send(fd, head, strlen(head)), 0);
    assert_int_equal(raw_send(fd, body, n), 0);
    daemon_signal(d, SIGTERM);
    char *resp = NULL;
    long st = raw_read_response(fd, 60000, &resp);
    double dt = now_sec() - t0;
    close(fd);
    print_message("%zu-byte forward answered %ld in %.3f s\n", n, st, dt);
    if (st != 200)
        fail_msg("in-flight forward answered %ld: %.300s", st, resp ? resp : "");
    cJSON *j = cJSON_Parse(strstr(resp, "\r\n\r\n") + 4);
    free(resp);
    ttensor y;
    tensor_read(cJSON_GetObjectItemCaseSensitive(j, "y"), &y, "y");
    cJSON_Delete(j);
    assert_int_equal(y.form, TT_BASE64);
    assert_int_equal(y.bits, 64);
    int64_t want_shape[4] = {N, F, OH, OH};
    assert_int_equal(y.rank, 4);
    assert_memory_equal(y.shape, want_shape, sizeof want_shape);
    /* Check 64 outputs spread over the tensor against the direct sum. */
    for (int s = 0; s < 64; s++) {
        size_t idx = (size_t)s * 7919 * 13 % y.n;
        int64_t ow = idx % OH, oh = idx / OH % OH, f = idx / OH / OH % F, nn = idx / OH / OH / F;
        double sum = 0;
        for (int c = 0; c < C; c++)
            for (int i = 0; i < K; i++)
                for (int k = 0; k < K; k++)
                    sum += x.data[((nn * C + c) * H + oh + i) * H + ow + k] *
                           W.data[((f * C + c) * K + i) * K + k];
        if (y.data[idx] != sum)
            fail_msg("y[%zu] = %.17g, expected %.17g", idx, y.data[idx], sum);
    }
    tt_free(&y);
    tt_free(&x);
    tt_free(&W);
    free(head);
    free(body);
    expect_exit_zero(d, 15000);
}

static void test_cli(void **state)
{
    (void)state;
    char *out;
    static const char *const version[] = {"--version", NULL};
    assert_int_equal(daemon_run_cli(version, NULL, 5000, &out), 0);
    print_message("--version: %s", out);
    test_daemon *d = start_or_fail(NULL, NULL);
    http_res r;
    req(d, "GET", "/", NULL, &r);
    const char *v = cJSON_GetStringValue(jget(r.json, "version"));
    if (!v || !strstr(out, v))
        fail_msg("--version says '%s' but GET / says version '%s'", out, v ? v : "(none)");
    http_res_free(&r);
    free(out);

    static const char *const help[] = {"--help", NULL};
    assert_int_equal(daemon_run_cli(help, NULL, 5000, &out), 0);
    static const char *const must[] = {"--port",         "--bind",          "--max-body-bytes",
                                       "--idle-timeout", "--drain-timeout", "--api-key",
                                       "--config",       "CONVD_PORT",      "--healthcheck"};
    for (size_t i = 0; i < sizeof must / sizeof must[0]; i++)
        if (!strstr(out, must[i]))
            fail_msg("--help does not mention %s:\n%s", must[i], out);
    free(out);

    static const char *const bad[] = {"--no-such-flag", NULL};
    int rc = daemon_run_cli(bad, NULL, 5000, &out);
    if (rc <= 0 || !strstr(out, "--no-such-flag"))
        fail_msg("a bad flag exited %d with: %s", rc, out);
    free(out);
    static const char *const badval[] = {"--max-sessions", "lots", "--port", "0", NULL};
    rc = daemon_run_cli(badval, NULL, 5000, &out);
    if (rc <= 0 || !strstr(out, "max-sessions"))
        fail_msg("a bad value exited %d with: %s", rc, out);
    free(out);

    /* --healthcheck URL: 0 against the running daemon, 1 against nothing. */
    char *url = strf("%s/healthz", daemon_url(d));
    const char *hc[] = {"--healthcheck", url, NULL};
    assert_int_equal(daemon_run_cli(hc, NULL, 10000, NULL), 0);
    char *port = strf("%d", daemon_port(d));
    const char *hc_port[] = {"--port", port, "--healthcheck", NULL};
    assert_int_equal(daemon_run_cli(hc_port, NULL, 10000, NULL), 0);
    stop_expect_clean(d);
    rc = daemon_run_cli(hc, NULL, 10000, &out);
    if (rc != 1)
        fail_msg("--healthcheck against a stopped daemon exited %d: %s", rc, out);
    free(out);
    free(port);
    free(url);
}

/* idle_timeout_s as the daemon reports it for a new session. */
static double idle_timeout_of(test_daemon *d)
{
    http_res r;
    req(d, "POST", "/sessions", "{\"W\":[[[[1]]]]}", &r);
    expect_status(&r, 201);
    double v = jnum(r.json, "idle_timeout_s");
    http_res_free(&r);
    return v;
}

static void test_settings_precedence(void **state)
{
    (void)state;
    char path[] = "/tmp/convd-itest-confXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *conf = "# test config\nidle_timeout = 5\nmax_sessions = 7\n";
    assert_int_equal(write(fd, conf, strlen(conf)), (ssize_t)strlen(conf));
    close(fd);
    char *envconf = strf("CONVD_CONFIG=%s", path);
    const struct {
        const char *args[4];
        const char *env[3];
        double want;
    } cases[] = {
        {{NULL}, {NULL}, 900},
        {{"--config", path, NULL}, {NULL}, 5},
        {{NULL}, {envconf, NULL}, 5},
        {{"--config", path, NULL}, {"CONVD_IDLE_TIMEOUT=7", NULL}, 7},
        {{"--config", path, "--idle-timeout", "3"}, {"CONVD_IDLE_TIMEOUT=7", NULL}, 3},
        {{NULL}, {"CONVD_IDLE_TIMEOUT=7", NULL}, 7},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *args[5] = {cases[i].args[0], cases[i].args[1], cases[i].args[2],
                               cases[i].args[3], NULL};
        test_daemon *d = start_or_fail(args, cases[i].env);
        double got = idle_timeout_of(d);
        print_message("case %zu: idle_timeout_s %g\n", i, got);
        if (got != cases[i].want)
            fail_msg("case %zu: idle_timeout_s %g, expected %g", i, got, cases[i].want);
        stop_expect_clean(d);
    }
    /* A bad config file stops the daemon and says where. */
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    const char *badconf = "idle_timeout = 5\nno_such_key = 1\n";
    assert_int_equal(write(fd, badconf, strlen(badconf)), (ssize_t)strlen(badconf));
    close(fd);
    const char *args[] = {"--config", path, "--port", "0", NULL};
    char *out;
    int rc = daemon_run_cli(args, NULL, 5000, &out);
    if (rc <= 0 || !strstr(out, "no_such_key"))
        fail_msg("a config file with an unknown key: exit %d, output: %s", rc, out);
    free(out);
    unlink(path);
    free(envconf);
}

/* Every setting also has a CONVD_* variable: check the limits' effects. */
static void test_settings_from_environment(void **state)
{
    (void)state;
    static const char *const env[] = {"CONVD_MAX_SESSIONS=1",
                                      "CONVD_MAX_BODY_BYTES=2000",
                                      "CONVD_MAX_SESSION_BYTES=100000",
                                      "CONVD_IDLE_TIMEOUT=11",
                                      "CONVD_THREADS=3",
                                      "CONVD_LOG_LEVEL=debug",
                                      NULL};
    test_daemon *d = start_or_fail(NULL, env);
    http_res r;
    req(d, "POST", "/sessions", "{\"in_channels\":64,\"out_channels\":64,\"kernel_size\":3}", &r);
    expect_error(&r, 413, "payload_too_large", "max_session_bytes");
    http_res_free(&r);
    assert_int_equal(idle_timeout_of(d), 11);
    req(d, "POST", "/sessions", "{\"W\":[[[[1]]]]}", &r);
    expect_error(&r, 429, "too_many_sessions", "max_sessions");
    http_res_free(&r);
    char body[2100];
    memset(body, ' ', sizeof body - 1);
    body[0] = '{';
    body[sizeof body - 2] = '}';
    body[sizeof body - 1] = '\0';
    req(d, "POST", "/sessions", body, &r);
    expect_error(&r, 413, "payload_too_large", "max_body_bytes");
    http_res_free(&r);
    /* The harness's --log-level warn beats CONVD_LOG_LEVEL=debug: no info/debug lines. */
    char *log = daemon_log(d);
    int chatty = strstr(log, " info ") || strstr(log, " debug ");
    if (chatty)
        print_error("flag --log-level warn lost to CONVD_LOG_LEVEL=debug:\n%s\n", log);
    free(log);
    assert_false(chatty);
    stop_expect_clean(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signals_exit_zero),
        cmocka_unit_test(test_drain_with_request_in_flight),
        cmocka_unit_test(test_drain_timeout_bounds_a_stuck_request),
        cmocka_unit_test(test_sigterm_during_big_forward),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_settings_precedence),
        cmocka_unit_test(test_settings_from_environment),
    };
    return ITEST_MAIN(tests, NULL, NULL);
}
