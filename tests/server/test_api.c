/*
 * test_api.c — the endpoint handlers without HTTP: the notebook end to end (§7), shapes
 * in and out (rank-3 x, W and delta), need and lr, the 422 rule, stateless backward, and
 * the promises that a failed inline forward leaves no session and that bad input never
 * changes a session (its weights and counters are compared before and after).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../../server/api.h"
#include "../../server/base64.h"

static session_store *store;
static srv_config cfg;
static atomic_int draining;
static api_ctx ctx;

static int setup(void **state)
{
    (void)state;
    config_defaults(&cfg);
    cfg.max_session_bytes = 64 << 20;
    session_opts o;
    session_opts_default(&o, 16, 100);
    o.reaper = 0;
    if (session_store_new(&o, &store, NULL, 0) != 0)
        return -1;
    ctx = (api_ctx){.store = store, .cfg = &cfg, .draining = &draining};
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    session_store_free(store);
    return 0;
}

typedef struct answer {
    int status;
    cJSON *json; /* the body, parsed */
    char session[SESSION_ID_MAX + 1];
    char code[40]; /* error code, "" on success */
} answer;

static answer call(api_handler h, const char *id, const char *hdr, const char *body)
{
    api_req r = {0};
    buf_init(&r.out);
    r.id = id;
    r.hdr_session = hdr;
    r.body = body;
    r.body_len = body ? strlen(body) : 0;
    int rc = h(&ctx, &r);
    answer a = {0};
    memcpy(a.session, r.session, sizeof a.session);
    if (rc != 0) {
        assert_int_not_equal(r.err.code, APIERR_NONE);
        a.status = apierr_status(r.err.code);
        snprintf(a.code, sizeof a.code, "%s", apierr_name(r.err.code));
        assert_true(r.err.msg[0] != '\0');
    } else {
        a.status = r.status;
        if (r.out.len) {
            a.json = cJSON_ParseWithLength(r.out.data, r.out.len);
            if (!a.json)
                fail_msg("handler wrote invalid JSON: %s", r.out.data);
        }
    }
    buf_free(&r.out);
    return a;
}

static void expect_error(answer a, int status, const char *code)
{
    if (a.status != status || strcmp(a.code, code) != 0)
        fail_msg("expected %d %s, got %d %s", status, code, a.status, a.code);
    cJSON_Delete(a.json);
}

/* The JSON text of member `key` of a's body (caller frees). */
static char *member(const answer *a, const char *key)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(a->json, key);
    return m ? cJSON_PrintUnformatted(m) : NULL;
}

static void expect_member(const answer *a, const char *key, const char *text)
{
    char *t = member(a, key);
    if (!t || strcmp(t, text) != 0)
        fail_msg("%s is %s, expected %s", key, t ? t : "(absent)", text);
    free(t);
}

static void expect_absent(const answer *a, const char *key)
{
    assert_null(cJSON_GetObjectItemCaseSensitive(a->json, key));
}

#define NB_W  "[[[0,0,0],[0,1,0],[0,-1,0]],[[0,0,0],[0,-1,1],[0,0,0]]]"
#define NB_X  "[[[[1,2,3,4],[5,6,7,8],[9,10,11,12],[13,14,15,16]]]]"
#define NB_D  "[[[-4,-4],[10,11]],[[1,-7],[1,-11]]]"
#define NB_Y  "[[[[-4,-4],[-4,-4]],[[1,1],[1,1]]]]"
#define NB_DX "[[[[0,0,0,0],[0,-5,4,-7],[0,13,27,-11],[0,-10,-11,0]]]]"
#define NB_DW                                                                                      \
    "[[[104,117,130],[156,169,182],[208,221,234]],[[-74,-90,-106],[-138,-154,-170],[-202,-218,"    \
    "-234]]]"

/* Creates the notebook session with a forward; returns its id in id. */
static void notebook_session(char id[SESSION_ID_MAX + 1])
{
    answer a = call(api_forward, NULL, NULL, "{\"layer\":{\"W\":" NB_W "},\"x\":" NB_X "}");
    assert_int_equal(a.status, 200);
    expect_member(&a, "y", NB_Y);
    assert_int_equal(strlen(a.session), SESSION_ID_LEN);
    char *sid = member(&a, "session");
    char quoted[SESSION_ID_LEN + 3];
    snprintf(quoted, sizeof quoted, "\"%s\"", a.session);
    assert_string_equal(sid, quoted);
    free(sid);
    memcpy(id, a.session, SESSION_ID_MAX + 1);
    cJSON_Delete(a.json);
}

static char *body_for(const char *fmt, const char *id)
{
    char *b = malloc(strlen(fmt) + SESSION_ID_MAX + 1);
    sprintf(b, fmt, id);
    return b;
}

static void test_notebook(void **state)
{
    (void)state;
    char id[SESSION_ID_MAX + 1];
    notebook_session(id);
    char *b = body_for("{\"session\":\"%s\",\"delta\":" NB_D "}", id);
    answer a = call(api_backward, NULL, NULL, b);
    free(b);
    assert_int_equal(a.status, 200);
    assert_string_equal(a.session, id);
    expect_member(&a, "dx", NB_DX);
    expect_member(&a, "dW", NB_DW); /* rank 3, as W was sent */
    expect_member(&a, "db", "[13,-16]");
    cJSON_Delete(a.json);

    a = call(api_session_get, id, NULL, NULL);
    assert_int_equal(a.status, 200);
    expect_member(&a, "W", NB_W);
    expect_member(&a, "b", "[0,0]");
    expect_member(&a, "cached", "true");
    expect_member(&a, "forwards", "1");
    expect_member(&a, "backwards", "1");
    expect_member(&a, "idle_timeout_s", "100");
    cJSON_Delete(a.json);
}

static void test_header_session_and_rank3_x(void **state)
{
    (void)state;
    char id[SESSION_ID_MAX + 1];
    notebook_session(id);
    /* x rank 3 → y rank 3; the id from X-Session-Id */
    answer a = call(api_forward, NULL, id,
                    "{\"x\":[[[1,2,3,4],[5,6,7,8],[9,10,11,12],[13,14,15,"
                    "16]]],\"output\":\"flat\"}");
    assert_int_equal(a.status, 200);
    expect_member(&a, "y", "{\"shape\":[2,2,2],\"data\":[-4,-4,-4,-4,1,1,1,1]}");
    cJSON_Delete(a.json);
    /* dx comes back like the cached x: rank 3 */
    a = call(api_backward, NULL, id, "{\"delta\":" NB_D ",\"need\":[\"dx\"]}");
    assert_int_equal(a.status, 200);
    expect_member(&a, "dx", "[[[0,0,0,0],[0,-5,4,-7],[0,13,27,-11],[0,-10,-11,0]]]");
    expect_absent(&a, "dW");
    expect_absent(&a, "db");
    cJSON_Delete(a.json);
    char *b = body_for("{\"session\":\"%s\",\"delta\":" NB_D "}", id);
    expect_error(call(api_backward, NULL, "0123456789abcdef0123456789abcdef", b), 400,
                 "invalid_argument");
    free(b);
}

/* W and b and the counters of a session, as GET returns them. */
static char *snapshot(const char *id)
{
    answer a = call(api_session_get, id, NULL, NULL);
    assert_int_equal(a.status, 200);
    char *t = cJSON_PrintUnformatted(a.json);
    cJSON_Delete(a.json);
    return t;
}

static void test_bad_input_never_changes_a_session(void **state)
{
    (void)state;
    char id[SESSION_ID_MAX + 1];
    notebook_session(id);
    char *before = snapshot(id);
    static const struct {
        api_handler h;
        const char *fmt;
        int status;
        const char *code;
    } bad[] = {
        {api_forward, "{\"session\":\"%s\",\"x\":[[[[1,2],[3,4]]]]}", 400, "shape_mismatch"},
        {api_forward, "{\"session\":\"%s\",\"x\":[[[[1,2,3],[4,5]]]]}", 400, "invalid_tensor"},
        {api_forward, "{\"session\":\"%s\",\"x\":" NB_X ",\"cache\":1}", 400, "invalid_argument"},
        {api_forward, "{\"session\":\"%s\",\"x\":" NB_X ",\"strid\":1}", 400, "invalid_argument"},
        {api_forward, "{\"session\":\"%s\",\"x\":" NB_X ",\"output\":\"csv\"}", 400,
         "invalid_argument"},
        {api_forward, "{\"session\":\"%s\",\"layer\":{},\"x\":" NB_X "}", 400, "invalid_argument"},
        {api_backward, "{\"session\":\"%s\",\"delta\":[[[1]]],\"lr\":1}", 400, "shape_mismatch"},
        {api_backward, "{\"session\":\"%s\",\"delta\":" NB_D ",\"lr\":-1}", 400,
         "invalid_argument"},
        {api_backward, "{\"session\":\"%s\",\"delta\":" NB_D ",\"lr\":\"1\"}", 400,
         "invalid_argument"},
        {api_backward, "{\"session\":\"%s\",\"delta\":" NB_D ",\"need\":[]}", 400,
         "invalid_argument"},
        {api_backward, "{\"session\":\"%s\",\"delta\":" NB_D ",\"need\":[\"dx\",\"dx\"]}", 400,
         "invalid_argument"},
        {api_backward, "{\"session\":\"%s\",\"delta\":" NB_D ",\"need\":[\"dy\"]}", 400,
         "invalid_argument"},
        {api_backward, "{\"session\":\"%s\",\"delta\":" NB_D ",\"x\":" NB_X "}", 400,
         "invalid_argument"},
        {api_backward, "{\"session\":\"%s\"}", 400, "invalid_argument"},
        /* an SGD step that overflows is refused whole */
        {api_backward, "{\"session\":\"%s\",\"delta\":" NB_D ",\"lr\":1e308}", 422,
         "non_finite_result"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *b = body_for(bad[i].fmt, id);
        answer a = call(bad[i].h, NULL, NULL, b);
        if (a.status != bad[i].status || strcmp(a.code, bad[i].code) != 0)
            fail_msg("%s: expected %d %s, got %d %s", b, bad[i].status, bad[i].code, a.status,
                     a.code);
        cJSON_Delete(a.json);
        free(b);
    }
    char *after = snapshot(id);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

static void test_sgd_step_and_db_shape(void **state)
{
    (void)state;
    /* b sent as (F, 1): db comes back (F, 1); lr updates W and b even when need omits them */
    answer a = call(api_session_create, NULL, NULL,
                    "{\"W\":[[[[1]]],[[[2]]]],\"b\":[[0.5],[1]],\"dtype\":\"float64\"}");
    assert_int_equal(a.status, 201);
    char id[SESSION_ID_MAX + 1];
    memcpy(id, a.session, sizeof id);
    expect_absent(&a, "W");
    cJSON_Delete(a.json);
    char *b = body_for("{\"session\":\"%s\",\"x\":[[[[3]]]]}", id);
    a = call(api_forward, NULL, NULL, b);
    free(b);
    expect_member(&a, "y", "[[[[3.5]],[[7]]]]");
    cJSON_Delete(a.json);
    b = body_for("{\"session\":\"%s\",\"delta\":[[[[1]],[[2]]]],\"lr\":0.5,\"need\":[\"db\"]}", id);
    a = call(api_backward, NULL, NULL, b);
    free(b);
    assert_int_equal(a.status, 200);
    expect_member(&a, "db", "[[1],[2]]");
    expect_absent(&a, "dW");
    cJSON_Delete(a.json);
    a = call(api_session_get, id, NULL, NULL);
    /* dW = delta * x = [3, 6]: W = [1 - 1.5, 2 - 3]; b = [0.5 - 0.5, 1 - 1] */
    expect_member(&a, "W", "[[[[-0.5]]],[[[-1]]]]");
    expect_member(&a, "b", "[[0],[0]]");
    cJSON_Delete(a.json);
}

static void test_failed_inline_forward_leaves_no_session(void **state)
{
    (void)state;
    metrics_sessions before, after;
    session_store_stats(store, &before);
    answer a =
        call(api_forward, NULL, NULL, "{\"layer\":{\"W\":" NB_W "},\"x\":[[[[1,2],[3,4]]]]}");
    assert_string_equal(a.session, ""); /* no X-Session-Id for a session that is gone */
    expect_error(a, 400, "shape_mismatch");
    session_store_stats(store, &after);
    assert_int_equal(after.live, before.live);
    assert_int_equal(after.created, before.created);
}

/* At the session limit, a failing inline forward must not evict an idle session to make
 * room for a session it then throws away: the idle one stays, and a good request may
 * still evict it. */
static void test_failed_inline_forward_evicts_nothing(void **state)
{
    (void)state;
    session_opts o;
    session_opts_default(&o, 1, 100);
    o.reaper = 0;
    o.evict_min_idle_s = 0; /* every idle session is evictable at once */
    session_store *small;
    assert_int_equal(session_store_new(&o, &small, NULL, 0), 0);
    api_ctx saved = ctx;
    ctx.store = small;
    answer first = call(api_session_create, NULL, NULL, "{\"W\":" NB_W "}");
    assert_int_equal(first.status, 201);
    cJSON_Delete(first.json);
    char id[SESSION_ID_MAX + 1];
    memcpy(id, first.session, sizeof id);

    expect_error(
        call(api_forward, NULL, NULL, "{\"layer\":{\"W\":" NB_W "},\"x\":[[[[1,2],[3,4]]]]}"), 400,
        "shape_mismatch");
    expect_error(
        call(api_forward, NULL, NULL, "{\"layer\":{\"W\":" NB_W "},\"x\":[[[[1,2],[3]]]]}"), 400,
        "invalid_tensor");
    answer still = call(api_session_get, id, NULL, NULL);
    assert_int_equal(still.status, 200);
    cJSON_Delete(still.json);

    answer good = call(api_forward, NULL, NULL, "{\"layer\":{\"W\":" NB_W "},\"x\":" NB_X "}");
    assert_int_equal(good.status, 200);
    cJSON_Delete(good.json);
    expect_error(call(api_session_get, id, NULL, NULL), 410, "session_expired");
    ctx = saved;
    session_store_free(small);
}

static void test_stateless_backward(void **state)
{
    (void)state;
    metrics_sessions before, after;
    session_store_stats(store, &before);
    answer a =
        call(api_backward, NULL, NULL,
             "{\"layer\":{\"W\":" NB_W ",\"bias\":false},\"x\":" NB_X ",\"delta\":" NB_D "}");
    assert_int_equal(a.status, 200);
    assert_string_equal(a.session, "");
    expect_absent(&a, "session");
    expect_absent(&a, "db"); /* no bias, no db */
    expect_member(&a, "dx", NB_DX);
    expect_member(&a, "dW", NB_DW);
    cJSON_Delete(a.json);
    expect_error(call(api_backward, NULL, NULL,
                      "{\"layer\":{\"W\":" NB_W "},\"x\":" NB_X ",\"delta\":" NB_D ",\"lr\":0.1}"),
                 400, "invalid_argument");
    expect_error(call(api_backward, NULL, NULL,
                      "{\"layer\":{\"W\":" NB_W ",\"bias\":false},\"x\":" NB_X ",\"delta\":" NB_D
                      ",\"need\":[\"db\"]}"),
                 400, "invalid_argument");
    session_store_stats(store, &after);
    assert_int_equal(after.created, before.created);
}

static void test_no_cache_and_lookup_errors(void **state)
{
    (void)state;
    answer a = call(api_session_create, NULL, NULL,
                    "{\"in_channels\":1,\"out_channels\":1,"
                    "\"kernel_size\":1}");
    char id[SESSION_ID_MAX + 1];
    memcpy(id, a.session, sizeof id);
    cJSON_Delete(a.json);
    char *b = body_for("{\"session\":\"%s\",\"x\":[[[1]]],\"cache\":false}", id);
    a = call(api_forward, NULL, NULL, b);
    assert_int_equal(a.status, 200);
    cJSON_Delete(a.json);
    free(b);
    b = body_for("{\"session\":\"%s\",\"delta\":[[[1]]]}", id);
    a = call(api_backward, NULL, NULL, b);
    assert_string_equal(a.session, id);
    expect_error(a, 409, "no_forward_cache");
    free(b);
    a = call(api_session_delete, id, NULL, NULL);
    assert_int_equal(a.status, 204);
    expect_error(call(api_session_get, id, NULL, NULL), 404, "session_not_found");
    expect_error(call(api_session_get, "x", NULL, NULL), 404, "session_not_found");
    expect_error(call(api_forward, NULL, NULL, "{\"x\":[[[1]]]}"), 400, "invalid_argument");
    expect_error(call(api_forward, NULL, NULL, "[]"), 400, "invalid_argument");
    expect_error(call(api_forward, NULL, NULL, "{"), 400, "invalid_json");
}

static void test_memory_limit_is_checked_first(void **state)
{
    (void)state;
    /* a 1x1 layer whose im2col over a huge x would need far more than the limit: refused
     * from the shape alone, before the data is decoded (the data here is a single value) */
    answer a = call(api_forward, NULL, NULL,
                    "{\"layer\":{\"in_channels\":64,\"out_channels\":64,\"kernel_size\":51,"
                    "\"padding\":25},\"x\":{\"shape\":[1,64,4000,4000],\"data\":[1]}}");
    expect_error(a, 413, "payload_too_large");
}

/* A large base64 answer (360 KB): an identity 1x1 layer gives y's text equal to x's. */
static void test_large_base64_answer(void **state)
{
    (void)state;
    const size_t n = 300 * 300; /* 360 KB of float32: over API_HOLE_MIN_BYTES */
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = (float)i * 0.5f - 7.25f;
    char *t = malloc(base64_encoded_len(n * 4) + 1);
    base64_encode(t, v, n * 4);
    t[base64_encoded_len(n * 4)] = '\0';
    size_t len = strlen(t) + 200;
    char *body = malloc(len);
    snprintf(body, len,
             "{\"layer\":{\"W\":[[[[1]]]],\"bias\":false,\"dtype\":\"float32\"},\"x\":{\"shape\":["
             "1,1,300,300],"
             "\"dtype\":\"float32\",\"base64\":\"%s\"},\"cache\":false}",
             t);
    answer a = call(api_forward, NULL, NULL, body);
    assert_int_equal(a.status, 200);
    const cJSON *y = cJSON_GetObjectItemCaseSensitive(a.json, "y");
    const cJSON *b64 = cJSON_GetObjectItemCaseSensitive(y, "base64");
    assert_true(cJSON_IsString(b64));
    assert_string_equal(b64->valuestring, t);
    cJSON_Delete(a.json);
    free(body);
    free(t);
    free(v);
}

static void test_small_endpoints(void **state)
{
    (void)state;
    answer a = call(api_root, NULL, NULL, NULL);
    expect_member(&a, "name", "\"convd\"");
    cJSON_Delete(a.json);
    a = call(api_readyz, NULL, NULL, NULL);
    assert_int_equal(a.status, 200);
    cJSON_Delete(a.json);
    atomic_store(&draining, 1);
    a = call(api_readyz, NULL, NULL, NULL);
    assert_int_equal(a.status, 503);
    expect_member(&a, "status", "\"draining\"");
    cJSON_Delete(a.json);
    atomic_store(&draining, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_notebook),
        cmocka_unit_test(test_header_session_and_rank3_x),
        cmocka_unit_test(test_bad_input_never_changes_a_session),
        cmocka_unit_test(test_sgd_step_and_db_shape),
        cmocka_unit_test(test_failed_inline_forward_leaves_no_session),
        cmocka_unit_test(test_failed_inline_forward_evicts_nothing),
        cmocka_unit_test(test_stateless_backward),
        cmocka_unit_test(test_no_cache_and_lookup_errors),
        cmocka_unit_test(test_memory_limit_is_checked_first),
        cmocka_unit_test(test_large_base64_answer),
        cmocka_unit_test(test_small_endpoints),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
