/*
 * test_limits.c — 413 and 422 (spec §5): a Content-Length over --max-body-bytes is refused
 * before the body is read (headers only, the answer must come at once); a body exactly at
 * the limit passes and one byte more does not; a chunked body over the limit; a layer whose
 * im2col workspace would be ~100 GB answers 413 fast naming max_session_bytes; a small
 * --max-session-bytes; absurd tensor shapes; results that overflow (float32 forward, float64
 * forward and gradient, an SGD step) answer 422 and leave the session as it was.
 */
#include "itest.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BODY_LIMIT 4096

static const char *err_message(const http_res *r)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(r->json, "error"), "message"));
}

/* Sends raw request text and reads the answer; returns the status and fills r's body/json. */
static long raw_exchange(const char *text, size_t len, int timeout_ms, http_res *r, double *elapsed)
{
    memset(r, 0, sizeof *r);
    int fd = raw_connect(daemon_port(dmn));
    assert_true(fd >= 0);
    double t0 = now_sec();
    assert_int_equal(raw_send(fd, text, len), 0);
    char *resp = NULL;
    long st = raw_read_response(fd, timeout_ms, &resp);
    *elapsed = now_sec() - t0;
    close(fd);
    const char *body = strstr(resp, "\r\n\r\n");
    r->status = st;
    r->body = strdup(body ? body + 4 : "");
    r->len = strlen(r->body);
    r->json = cJSON_Parse(r->body);
    if (strcasestr(resp, "Content-Type: application/json"))
        snprintf(r->content_type, sizeof r->content_type, "application/json");
    free(resp);
    return st;
}

static void test_content_length_refused_before_body(void **state)
{
    (void)state;
    static const char *const lengths[] = {"1000000000000", "4097", "67108865"};
    static const char *const paths[] = {"/forward", "/sessions", "/backward"};
    for (size_t i = 0; i < 3; i++) {
        char *text = strf("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                          "application/json\r\nContent-Length: %s\r\n\r\n",
                          paths[i], lengths[i]);
        http_res r;
        double dt;
        /* No body follows: an answer can only come if the daemon refuses from the header. */
        long st = raw_exchange(text, strlen(text), 5000, &r, &dt);
        print_message("Content-Length %s: HTTP %ld after %.3f s\n", lengths[i], st, dt);
        expect_error(&r, 413, "payload_too_large", "max_body_bytes");
        assert_true(dt < 3.0);
        http_res_free(&r);
        free(text);
    }
}

static void test_body_at_limit(void **state)
{
    (void)state;
    const notebook *nb = notebook_get();
    char *W = tt_json(nb->W.data, nb->W.rank, nb->W.shape, TT_NESTED, 64, 1);
    char *x = tt_json(nb->x.data, nb->x.rank, nb->x.shape, TT_NESTED, 64, 1);
    char *d = tt_json(nb->delta.data, nb->delta.rank, nb->delta.shape, TT_NESTED, 64, 1);
    char *core = strf("{\"layer\":{\"W\":%s},\"x\":%s,\"delta\":%s", W, x, d);
    size_t n = strlen(core);
    assert_true(n + 1 < BODY_LIMIT);
    char *body = malloc(BODY_LIMIT + 2);
    assert_non_null(body);
    /* Pad with JSON whitespace to exactly the limit, then one byte more. */
    memcpy(body, core, n);
    memset(body + n, ' ', BODY_LIMIT - 1 - n);
    body[BODY_LIMIT - 1] = '}';
    body[BODY_LIMIT] = '\0';
    http_res r;
    req(dmn, "POST", "/backward", body, &r);
    expect_status(&r, 200);
    expect_tensor(jget(r.json, "dW"), &nb->dW, TT_NESTED, 0, 0, "dW");
    http_res_free(&r);
    body[BODY_LIMIT - 1] = ' ';
    body[BODY_LIMIT] = '}';
    body[BODY_LIMIT + 1] = '\0';
    req(dmn, "POST", "/backward", body, &r);
    expect_error(&r, 413, "payload_too_large", "max_body_bytes");
    http_res_free(&r);
    free(body);
    free(core);
    free(W);
    free(x);
    free(d);
}

static void test_chunked_body(void **state)
{
    (void)state;
    const char *head = "POST /backward HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                       "application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    /* Under the limit, in three chunks: a normal answer. */
    const notebook *nb = notebook_get();
    char *W = tt_json(nb->W.data, nb->W.rank, nb->W.shape, TT_NESTED, 64, 1);
    char *x = tt_json(nb->x.data, nb->x.rank, nb->x.shape, TT_NESTED, 64, 1);
    char *d = tt_json(nb->delta.data, nb->delta.rank, nb->delta.shape, TT_NESTED, 64, 1);
    char *a = strf("{\"layer\":{\"W\":%s},", W), *b = strf("\"x\":%s,", x);
    char *c = strf("\"delta\":%s}", d);
    char *text = strf("%s%zx\r\n%s\r\n%zx\r\n%s\r\n%zx\r\n%s\r\n0\r\n\r\n", head, strlen(a), a,
                      strlen(b), b, strlen(c), c);
    http_res r;
    double dt;
    raw_exchange(text, strlen(text), 10000, &r, &dt);
    expect_status(&r, 200);
    expect_tensor(jget(r.json, "dW"), &nb->dW, TT_NESTED, 0, 0, "dW (chunked)");
    http_res_free(&r);
    free(text);
    /* Over the limit: 3 chunks of 2000 bytes of whitespace-padded JSON. */
    char pad[2001];
    memset(pad, ' ', 2000);
    pad[2000] = '\0';
    pad[0] = '{';
    text = strf("%s7d0\r\n%s\r\n7d0\r\n%s\r\n7d0\r\n%s\r\n0\r\n\r\n", head, pad, pad, pad);
    raw_exchange(text, strlen(text), 10000, &r, &dt);
    print_message("chunked 6000 bytes: HTTP %ld after %.3f s\n", r.status, dt);
    expect_error(&r, 413, "payload_too_large", "max_body_bytes");
    http_res_free(&r);
    free(text);
    free(a);
    free(b);
    free(c);
    free(W);
    free(x);
    free(d);
}

/* OH = OW = 80001 with a 3x3 kernel: im2col would hold 9 * 6.4e9 doubles (~460 GB). */
static void test_workspace_over_session_limit(void **state)
{
    (void)state;
    static const char *const bodies[][2] = {
        {"/forward", "{\"layer\":{\"in_channels\":1,\"out_channels\":1,\"kernel_size\":3,"
                     "\"padding\":40000},\"x\":[[[[1]]]]}"},
        {"/backward", "{\"layer\":{\"in_channels\":1,\"out_channels\":1,\"kernel_size\":3,"
                      "\"padding\":40000},\"x\":[[[[1]]]],\"delta\":[[[[1]]]]}"},
        {"/sessions", "{\"in_channels\":4096,\"out_channels\":4096,\"kernel_size\":11}"},
        {"/forward", "{\"layer\":{\"in_channels\":1,\"out_channels\":1000000000,"
                     "\"kernel_size\":1},\"x\":[[[[1]]]]}"},
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        http_res r;
        req(dmn, "POST", bodies[i][0], bodies[i][1], &r);
        print_message("%s %s: %ld in %.3f s\n", bodies[i][0], bodies[i][1], r.status, r.seconds);
        expect_error(&r, 413, "payload_too_large", "max_session_bytes");
        assert_true(r.seconds < 2.0);
        http_res_free(&r);
    }
    /* The session path: the session exists, the too-big forward leaves it unchanged. */
    char *id = session_create(dmn, "{\"in_channels\":1,\"out_channels\":1,\"kernel_size\":3,"
                                   "\"padding\":40000,\"init\":{\"scheme\":\"zeros\"}}");
    session_snap s;
    snap_take(dmn, id, &s);
    char *body = strf("{\"session\":\"%s\",\"x\":[[[[1]]]]}", id);
    http_res r;
    req(dmn, "POST", "/forward", body, &r);
    expect_error(&r, 413, "payload_too_large", "max_session_bytes");
    assert_true(r.seconds < 2.0);
    http_res_free(&r);
    snap_expect_same(dmn, id, &s);
    snap_free(&s);
    free(body);
    free(id);
}

/* Shapes whose element count is absurd or overflows: refused without allocating. */
static void test_absurd_shapes(void **state)
{
    (void)state;
    static const char *const xs[] = {
        "{\"shape\":[100000,100000,100,100],\"base64\":\"AAAAAAAA8D8=\"}",
        "{\"shape\":[4294967296,4294967296,4294967296,4294967296],\"data\":[1]}",
        "{\"shape\":[9223372036854775807,2,1,1],\"data\":[1]}",
        "{\"shape\":[1e300,1,1,1],\"data\":[1]}",
    };
    const notebook *nb = notebook_get();
    char *W = tt_json(nb->W.data, nb->W.rank, nb->W.shape, TT_NESTED, 64, 1);
    for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) {
        char *body = strf("{\"layer\":{\"W\":%s},\"x\":%s}", W, xs[i]);
        http_res r;
        req(dmn, "POST", "/forward", body, &r);
        /* A limit error names the setting; an encoding error names the field. */
        if (r.status == 413)
            expect_error(&r, 413, "payload_too_large", "max_session_bytes|max_body_bytes");
        else
            expect_error(&r, 400, "invalid_tensor", "x");
        assert_true(r.seconds < 2.0);
        http_res_free(&r);
        free(body);
    }
    free(W);
}

/* --max-session-bytes 100000: weights alone over it, or cache + workspace over it. */
static void test_small_session_limit(void **state)
{
    (void)state;
    static const char *const args[] = {"--max-session-bytes", "100000", NULL};
    test_daemon *d = start_or_fail(args, NULL);
    http_res r;
    req(d, "POST", "/sessions", "{\"in_channels\":64,\"out_channels\":64,\"kernel_size\":3}", &r);
    expect_error(&r, 413, "payload_too_large", "max_session_bytes");
    http_res_free(&r);
    char *id = session_create(d, "{\"in_channels\":1,\"out_channels\":2,\"kernel_size\":3,"
                                 "\"init\":{\"scheme\":\"zeros\"}}");
    session_snap s;
    snap_take(d, id, &s);
    int64_t shape[4] = {1, 1, 100, 100};
    ttensor x;
    tt_make(&x, 4, shape, NULL);
    for (size_t i = 0; i < x.n; i++)
        x.data[i] = (double)(i % 7);
    char *xs = tt_json(x.data, 4, shape, TT_BASE64, 64, 1);
    char *body = strf("{\"session\":\"%s\",\"x\":%s}", id, xs);
    req(d, "POST", "/forward", body, &r);
    expect_error(&r, 413, "payload_too_large", "max_session_bytes");
    http_res_free(&r);
    snap_expect_same(d, id, &s);
    /* A small input still fits. */
    free(body);
    body = strf("{\"session\":\"%s\",\"x\":[[[[1,2,3],[4,5,6],[7,8,9]]]]}", id);
    req(d, "POST", "/forward", body, &r);
    expect_status(&r, 200);
    http_res_free(&r);
    free(body);
    free(xs);
    tt_free(&x);
    snap_free(&s);
    free(id);
    stop_expect_clean(d);
}

static void expect_422_unchanged(const char *layer, const char *fwd_extra, const char *x,
                                 const char *bwd)
{
    char *id = session_create(dmn, layer);
    http_res r;
    if (bwd) {
        char *body = strf("{\"session\":\"%s\",\"x\":%s}", id, x);
        req(dmn, "POST", "/forward", body, &r);
        expect_status(&r, 200);
        http_res_free(&r);
        free(body);
    }
    session_snap s;
    snap_take(dmn, id, &s);
    char *body = bwd ? strf("{\"session\":\"%s\",%s}", id, bwd)
                     : strf("{\"session\":\"%s\",\"x\":%s%s}", id, x, fwd_extra);
    req(dmn, "POST", bwd ? "/backward" : "/forward", body, &r);
    expect_error(&r, 422, "non_finite_result", NULL);
    assert_non_null(err_message(&r));
    http_res_free(&r);
    snap_expect_same(dmn, id, &s);
    snap_free(&s);
    free(body);
    free(id);
}

static void test_non_finite_results(void **state)
{
    (void)state;
    /* float32 forward: 3e38 * 10 overflows float32 (not float64). */
    expect_422_unchanged("{\"W\":[[[[3e38]]]],\"dtype\":\"float32\",\"bias\":false}", "",
                         "[[[[10]]]]", NULL);
    /* float64 forward overflow. */
    expect_422_unchanged("{\"W\":[[[[1e308]]]]}", "", "[[[[10]]]]", NULL);
    /* A gradient that overflows: dx = W * delta. */
    expect_422_unchanged("{\"W\":[[[[1e308]]]]}", NULL, "[[[[-1]]]]", "\"delta\":[[[[10]]]]");
    /* An SGD step that overflows W (W - lr*dW = 1e308 + 1e308) leaves W and b as they were. */
    expect_422_unchanged("{\"W\":[[[[1e308]]]]}", NULL, "[[[[-1]]]]",
                         "\"delta\":[[[[1]]]],\"lr\":1e308");
    /* ...and one that overflows only b (b - lr*db). */
    expect_422_unchanged("{\"W\":[[[[1]]]],\"b\":[-1e308]}", NULL, "[[[[1]]]]",
                         "\"delta\":[[[[1]]]],\"lr\":1e308");
    /* float32 session, step overflows float32 only. */
    expect_422_unchanged("{\"W\":[[[[3e38]]]],\"dtype\":\"float32\"}", NULL, "[[[[-1]]]]",
                         "\"delta\":[[[[1]]]],\"lr\":1e38");
    /* Stateless: dx overflows float32. */
    http_res r;
    req(dmn, "POST", "/backward",
        "{\"layer\":{\"W\":[[[[3e38]]]],\"dtype\":\"float32\"},\"x\":[[[[1]]]],"
        "\"delta\":[[[[10]]]]}",
        &r);
    expect_error(&r, 422, "non_finite_result", NULL);
    http_res_free(&r);
}

/* An inline-layer forward that fails (422) leaves no session: prove it with the session
 * count — a daemon with --max-sessions 1 must still accept one session afterwards. */
static void test_failed_inline_forward_leaves_nothing(void **state)
{
    (void)state;
    static const char *const args[] = {"--max-sessions", "1", NULL};
    test_daemon *d = start_or_fail(args, NULL);
    http_res r;
    for (int i = 0; i < 3; i++) {
        req(d, "POST", "/forward",
            "{\"layer\":{\"W\":[[[[3e38]]]],\"dtype\":\"float32\"},\"x\":[[[[10]]]]}", &r);
        expect_error(&r, 422, "non_finite_result", NULL);
        assert_null(cJSON_GetObjectItemCaseSensitive(r.json, "session"));
        http_res_free(&r);
    }
    char *id = session_create(d, "{\"W\":[[[[1]]]]}");
    free(id);
    stop_expect_clean(d);
}

static const char *const daemon_args[] = {"--max-body-bytes", "4096", NULL};

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_length_refused_before_body),
        cmocka_unit_test(test_body_at_limit),
        cmocka_unit_test(test_chunked_body),
        cmocka_unit_test(test_workspace_over_session_limit),
        cmocka_unit_test(test_absurd_shapes),
        cmocka_unit_test(test_non_finite_results),
        cmocka_unit_test(itest_daemon_exits_cleanly),
        cmocka_unit_test(test_small_session_limit),
        cmocka_unit_test(test_failed_inline_forward_leaves_nothing),
    };
    return ITEST_SHARED_MAIN(tests, daemon_args, NULL, NULL);
}
