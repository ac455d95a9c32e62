/*
 * test_prescan.c — large base64 requests, whose tensors the daemon decodes while the body
 * arrives (server/prescan.c). Sent again chunked (no Content-Length: no prescan, the plain
 * path) they must get the same answers byte for byte, for forward and backward on a
 * session, and the same error, with the session unchanged, for a bad character in the
 * middle of x and for a non-finite element. The large base64 answers must also equal, value
 * for value, the same answers printed flat.
 */
#include "itest.h"

#include <stdlib.h>
#include <string.h>

#define N  2
#define C  4
#define HW 100 /* x: 2x4x100x100 float32 = 320 KB, 427 KB of base64: prescanned */

static const char *const chunked[] = {"Transfer-Encoding: chunked", NULL};
static char *last_body; /* the last request both_ways sent on the first session */

/* base64 of n float32 values (i*0.001 - 1; element bad set to infinity if >= 0). */
static char *b64_values(size_t n, long bad)
{
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = (long)i == bad ? 1e38f * 10.0f : (float)i * 0.001f - 1.0f;
    char *t = malloc(4 * ((n * 4 + 2) / 3) + 1);
    b64_encode((const unsigned char *)v, n * 4, t);
    free(v);
    return t;
}

/* The answer with its "session" member removed (two sessions answer alike otherwise). */
static char *without_session(const char *body)
{
    char *s = strdup(body), *p = strstr(s, "\"session\":\"");
    if (p) {
        char *end = strchr(p + 11, '"');
        assert_non_null(end);
        memmove(p, end + 1, strlen(end + 1) + 1);
    }
    return s;
}

/* method path with body on session id, once with a Content-Length and once chunked;
 * both answers must be equal. Returns the first (caller frees). */
static void both_ways(const char *path, const char *fmt_body, const char *id1, const char *id2,
                      const char *tensor, long status, http_res *out)
{
    char *b1 = strf(fmt_body, id1, tensor), *b2 = strf(fmt_body, id2, tensor);
    free(last_body);
    last_body = strf("%s", b1);
    http_res r2;
    req(dmn, "POST", path, b1, out);
    req_h(dmn, "POST", path, b2, chunked, &r2);
    expect_status(out, status);
    expect_status(&r2, status);
    char *a = without_session(out->body), *b = without_session(r2.body);
    if (strcmp(a, b))
        fail_msg("%s: prescanned and chunked answers differ (%zu / %zu bytes)", path, strlen(a),
                 strlen(b));
    free(a);
    free(b);
    http_res_free(&r2);
    free(b1);
    free(b2);
}

/* The tensor `name` of a base64 answer r equals, value for value, the same request's
 * answer printed flat (asked again with "output":"flat" on the request's session: forward
 * and backward give the same results when repeated). */
static void same_as_flat(const http_res *r, const char *name)
{
    ttensor a, b;
    tensor_read(jget(r->json, name), &a, name);
    assert_int_equal(a.form, TT_BASE64);
    const char *path = strcmp(name, "y") ? "/backward" : "/forward";
    char *again = strf("%s", last_body);
    char *flat = strstr(again, "\"output\":\"base64\"");
    assert_non_null(flat);
    memcpy(flat, "\"output\":\"flat\"  ", 17);
    http_res f;
    req(dmn, "POST", path, again, &f);
    expect_status(&f, 200);
    tensor_read(jget(f.json, name), &b, name);
    assert_int_equal(a.n, b.n);
    assert_memory_equal(a.shape, b.shape, sizeof a.shape);
    /* flat prints the shortest text that reads back to the same float32 */
    for (size_t i = 0; i < a.n; i++)
        if (a.data[i] != (double)(float)b.data[i])
            fail_msg("%s[%zu]: base64 %.9g, flat %.9g", name, i, a.data[i], b.data[i]);
    tt_free(&a);
    tt_free(&b);
    http_res_free(&f);
    free(again);
}

static void test_same_answers_as_chunked(void **state)
{
    (void)state;
    const char *layer =
        "{\"in_channels\":4,\"out_channels\":4,\"kernel_size\":3,\"padding\":1,"
        "\"dtype\":\"float32\",\"init\":{\"scheme\":\"kaiming_uniform\",\"seed\":5}}";
    char *id1 = session_create(dmn, layer), *id2 = session_create(dmn, layer);
    char *x = b64_values((size_t)N * C * HW * HW, -1);
    http_res r;
    both_ways("/forward",
              "{\"session\":\"%s\",\"x\":{\"shape\":[2,4,100,100],\"dtype\":\"float32\",\"base64\":"
              "\"%s\"},\"output\":\"base64\"}",
              id1, id2, x, 200, &r);
    same_as_flat(&r, "y");
    http_res_free(&r);
    char *delta = b64_values((size_t)N * 4 * HW * HW, -1);
    both_ways("/backward",
              "{\"session\":\"%s\",\"delta\":{\"shape\":[2,4,100,100],\"base64\":\"%s\"},"
              "\"output\":\"base64\"}",
              id1, id2, delta, 200, &r);
    same_as_flat(&r, "dx");
    http_res_free(&r);
    free(delta);

    /* a bad character in the middle of x, then an infinity: the same error both ways, and
     * the sessions keep their cached input */
    session_snap s1;
    snap_take(dmn, id1, &s1);
    const size_t n = strlen(x);
    x[n / 2] = '-';
    both_ways("/forward", "{\"session\":\"%s\",\"x\":{\"shape\":[2,4,100,100],\"base64\":\"%s\"}}",
              id1, id2, x, 400, &r);
    expect_error(&r, 400, "invalid_tensor", "x");
    http_res_free(&r);
    free(x);
    x = b64_values((size_t)N * C * HW * HW, 50000);
    both_ways("/forward", "{\"session\":\"%s\",\"x\":{\"shape\":[2,4,100,100],\"base64\":\"%s\"}}",
              id1, id2, x, 400, &r);
    expect_error(&r, 400, "invalid_tensor", "x");
    http_res_free(&r);
    snap_expect_same(dmn, id1, &s1);
    snap_free(&s1);
    free(x);
    free(id1);
    free(id2);
    free(last_body);
    last_body = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_answers_as_chunked),
        cmocka_unit_test(itest_daemon_exits_cleanly),
    };
    return ITEST_SHARED_MAIN(tests, NULL, NULL, NULL);
}
