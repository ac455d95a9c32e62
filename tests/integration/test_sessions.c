/*
 * test_sessions.c — session semantics (spec §4): the SGD step `lr`, `need` subsets,
 * `cache: false`, a forward replacing the cache, the `output` override, X-Session-Id
 * routing, GET fields and ?output=, DELETE, unknown ids, idle expiry (410 vs 404), the
 * session limit (429) and — only with CONVD_SLOW_TESTS=1, since it needs 61 s of idleness —
 * LRU eviction. Expected values come from the notebook fixture and a naive convolution.
 */
#include "itest.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const double B0[2] = {0.5, -0.25};

/* A session on the notebook's W, with b = B0 when with_b (else b is zeros). */
static char *nb_session(test_daemon *d, int with_b)
{
    const notebook *nb = notebook_get();
    char *W = tt_json(nb->W.data, nb->W.rank, nb->W.shape, TT_NESTED, 64, 1);
    char *layer =
        with_b ? strf("{\"W\":%s,\"b\":[%.17g,%.17g]}", W, B0[0], B0[1]) : strf("{\"W\":%s}", W);
    char *id = session_create(d, layer);
    free(layer);
    free(W);
    return id;
}

static char *nb_json(const ttensor *t, tt_form f)
{
    char *s = tt_json(t->data, t->rank, t->shape, f, 64, 1);
    assert_non_null(s);
    return s;
}

/* POST path {"session": id, key: value, extra...}; extra is "" or ",\"k\":v...". */
static void post_session(test_daemon *d, const char *path, const char *id, const char *key,
                         const char *value, const char *extra, http_res *r)
{
    char *body = strf("{\"session\":\"%s\",\"%s\":%s%s}", id, key, value, extra);
    req(d, "POST", path, body, r);
    free(body);
}

static void forward_ok(test_daemon *d, const char *id, const ttensor *x, const char *extra)
{
    char *xs = nb_json(x, TT_NESTED);
    http_res r;
    post_session(d, "/forward", id, "x", xs, extra, &r);
    expect_status(&r, 200);
    http_res_free(&r);
    free(xs);
}

static void backward(test_daemon *d, const char *id, const char *extra, http_res *r)
{
    char *ds = nb_json(&notebook_get()->delta, TT_NESTED);
    post_session(d, "/backward", id, "delta", ds, extra, r);
    free(ds);
}

static void get_session(test_daemon *d, const char *id, const char *query, http_res *r)
{
    char *path = strf("/sessions/%s%s", id, query);
    req(d, "GET", path, NULL, r);
    free(path);
}

static void scaled(const ttensor *src, double k, ttensor *dst)
{
    tt_make(dst, src->rank, src->shape, src->data);
    for (size_t i = 0; i < dst->n; i++)
        dst->data[i] *= k;
}

static void test_lr_step(void **state)
{
    (void)state;
    const notebook *nb = notebook_get();
    char *id = nb_session(dmn, 1);
    forward_ok(dmn, id, &nb->x, "");
    http_res r;
    backward(dmn, id, ",\"lr\":0.1", &r);
    expect_status(&r, 200);
    /* The answer holds the gradients, not the new weights. */
    expect_tensor(jget(r.json, "dW"), &nb->dW, TT_NESTED, 0, 0, "dW");
    expect_tensor(jget(r.json, "db"), &nb->db, TT_NESTED, 0, 0, "db");
    expect_tensor(jget(r.json, "dx"), &nb->dx, TT_NESTED, 0, 0, "dx");
    http_res_free(&r);

    ttensor W1, b1;
    tt_make(&W1, nb->W.rank, nb->W.shape, nb->W.data);
    for (size_t i = 0; i < W1.n; i++)
        W1.data[i] -= 0.1 * nb->dW.data[i];
    int64_t two = 2;
    tt_make(&b1, 1, &two, B0);
    for (int i = 0; i < 2; i++)
        b1.data[i] -= 0.1 * nb->db.data[i];
    get_session(dmn, id, "?output=flat", &r);
    expect_status(&r, 200);
    expect_tensor(jget(r.json, "W"), &W1, TT_FLAT, 0, 1e-12 * (1 + tt_max_abs(&W1)), "W - lr*dW");
    expect_tensor(jget(r.json, "b"), &b1, TT_FLAT, 0, 1e-12 * (1 + tt_max_abs(&b1)), "b - lr*db");
    assert_int_equal(jnum(r.json, "backwards"), 1);
    http_res_free(&r);

    /* The next forward uses the stepped weights. */
    ref_conv g = {
        .C = 1, .F = 2, .groups = 1, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .dh = 1, .dw = 1};
    int64_t ys[4] = {1, 2, 2, 2};
    ttensor y1;
    tt_make(&y1, 4, ys, NULL);
    ref_conv_forward(&g, nb->x.data, 1, 4, 4, W1.data, b1.data, 2, 2, y1.data);
    char *xs = nb_json(&nb->x, TT_NESTED);
    post_session(dmn, "/forward", id, "x", xs, "", &r);
    expect_status(&r, 200);
    expect_tensor(jget(r.json, "y"), &y1, TT_NESTED, 0, 1e-9 * (1 + tt_max_abs(&y1)),
                  "y after the step");
    http_res_free(&r);
    free(xs);

    /* lr 0 leaves the weights exactly as they were. */
    session_snap before;
    snap_take(dmn, id, &before);
    backward(dmn, id, ",\"lr\":0", &r);
    expect_status(&r, 200);
    http_res_free(&r);
    get_session(dmn, id, "?output=flat", &r);
    char *Wt = raw_member(r.body, "W"), *bt = raw_member(r.body, "b");
    assert_string_equal(Wt, before.W);
    assert_string_equal(bt, before.b);
    free(Wt);
    free(bt);
    http_res_free(&r);
    snap_free(&before);
    tt_free(&y1);
    tt_free(&W1);
    tt_free(&b1);
    free(id);
}

static void expect_keys(const http_res *r, int dx, int dW, int db)
{
    expect_status(r, 200);
    const notebook *nb = notebook_get();
    const char *names[3] = {"dx", "dW", "db"};
    const ttensor *want[3] = {&nb->dx, &nb->dW, &nb->db};
    int on[3] = {dx, dW, db};
    for (int i = 0; i < 3; i++) {
        const cJSON *g = cJSON_GetObjectItemCaseSensitive(r->json, names[i]);
        if (on[i])
            expect_tensor(g, want[i], TT_NESTED, 0, 0, names[i]);
        else if (g)
            fail_msg("%s was not asked for but is in the answer: %s", names[i], r->body);
    }
}

static void test_need_subsets(void **state)
{
    (void)state;
    const notebook *nb = notebook_get();
    char *id = nb_session(dmn, 1);
    forward_ok(dmn, id, &nb->x, "");
    static const struct {
        const char *need;
        int dx, dW, db;
    } rows[] = {
        {"[\"dW\"]", 0, 1, 0},        {"[\"dx\"]", 1, 0, 0},
        {"[\"db\"]", 0, 0, 1},        {"[\"dx\",\"db\"]", 1, 0, 1},
        {"[\"dW\",\"db\"]", 0, 1, 1}, {"[\"db\",\"dW\",\"dx\"]", 1, 1, 1},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char *extra = strf(",\"need\":%s", rows[i].need);
        http_res r;
        backward(dmn, id, extra, &r);
        print_message("need %s\n", rows[i].need);
        expect_keys(&r, rows[i].dx, rows[i].dW, rows[i].db);
        http_res_free(&r);
        free(extra);
    }
    /* An SGD step still updates both W and b when only dx is asked for. */
    http_res r;
    backward(dmn, id, ",\"need\":[\"dx\"],\"lr\":1", &r);
    expect_keys(&r, 1, 0, 0);
    http_res_free(&r);
    get_session(dmn, id, "?output=flat", &r);
    expect_status(&r, 200);
    ttensor W1, b1;
    tensor_read(jget(r.json, "W"), &W1, "W");
    tensor_read(jget(r.json, "b"), &b1, "b");
    for (size_t i = 0; i < W1.n; i++)
        assert_float_equal(W1.data[i], nb->W.data[i] - nb->dW.data[i], 1e-12);
    for (size_t i = 0; i < 2; i++)
        assert_float_equal(b1.data[i], B0[i] - nb->db.data[i], 1e-12);
    assert_int_equal(jnum(r.json, "backwards"), 7);
    tt_free(&W1);
    tt_free(&b1);
    http_res_free(&r);
    free(id);
}

static void test_cache_false(void **state)
{
    (void)state;
    const notebook *nb = notebook_get();
    char *id = nb_session(dmn, 0);
    forward_ok(dmn, id, &nb->x, "");
    ttensor x2, y2;
    scaled(&nb->x, 2, &x2);
    scaled(&nb->y, 2, &y2);
    char *xs = nb_json(&x2, TT_NESTED);
    http_res r;
    post_session(dmn, "/forward", id, "x", xs, ",\"cache\":false", &r);
    expect_status(&r, 200);
    expect_tensor(jget(r.json, "y"), &y2, TT_NESTED, 0, 0, "y of 2x");
    http_res_free(&r);
    get_session(dmn, id, "", &r);
    assert_true(cJSON_IsTrue(jget(r.json, "cached")));
    assert_int_equal(jnum(r.json, "forwards"), 2);
    http_res_free(&r);
    /* The cache still holds x, not 2x. */
    backward(dmn, id, "", &r);
    expect_keys(&r, 1, 1, 1);
    http_res_free(&r);
    free(xs);

    /* A fresh session forwarded only with cache:false has nothing to go backward from. */
    char *id2 = nb_session(dmn, 0);
    forward_ok(dmn, id2, &nb->x, ",\"cache\":false");
    get_session(dmn, id2, "", &r);
    assert_false(cJSON_IsTrue(jget(r.json, "cached")));
    assert_int_equal(jnum(r.json, "forwards"), 1);
    http_res_free(&r);
    session_snap s;
    snap_take(dmn, id2, &s);
    backward(dmn, id2, "", &r);
    expect_error(&r, 409, "no_forward_cache", NULL);
    assert_true(r.has_session_id);
    assert_string_equal(r.session_id, id2);
    http_res_free(&r);
    snap_expect_same(dmn, id2, &s);
    snap_free(&s);
    /* cache:true is the default spelled out. */
    forward_ok(dmn, id2, &nb->x, ",\"cache\":true");
    backward(dmn, id2, "", &r);
    expect_keys(&r, 1, 1, 1);
    http_res_free(&r);
    tt_free(&x2);
    tt_free(&y2);
    free(id);
    free(id2);
}

static void test_forward_replaces_cache(void **state)
{
    (void)state;
    const notebook *nb = notebook_get();
    char *id = nb_session(dmn, 0);
    forward_ok(dmn, id, &nb->x, "");
    ttensor x3, dW3;
    scaled(&nb->x, 3, &x3);
    scaled(&nb->dW, 3, &dW3);
    forward_ok(dmn, id, &x3, "");
    http_res r;
    backward(dmn, id, "", &r);
    expect_status(&r, 200);
    expect_tensor(jget(r.json, "dW"), &dW3, TT_NESTED, 0, 0, "dW from the last forward's x");
    expect_tensor(jget(r.json, "dx"), &nb->dx, TT_NESTED, 0, 0, "dx");
    http_res_free(&r);
    get_session(dmn, id, "", &r);
    assert_int_equal(jnum(r.json, "forwards"), 2);
    assert_int_equal(jnum(r.json, "backwards"), 1);
    http_res_free(&r);
    tt_free(&x3);
    tt_free(&dW3);
    free(id);
}

static void test_output_override(void **state)
{
    (void)state;
    const notebook *nb = notebook_get();
    char *id = nb_session(dmn, 0);
    char *xs = nb_json(&nb->x, TT_NESTED);
    static const struct {
        const char *name;
        tt_form form;
    } outs[] = {{"flat", TT_FLAT}, {"base64", TT_BASE64}, {"nested", TT_NESTED}};
    for (size_t i = 0; i < 3; i++) {
        char *extra = strf(",\"output\":\"%s\"", outs[i].name);
        http_res r;
        post_session(dmn, "/forward", id, "x", xs, extra, &r);
        expect_status(&r, 200);
        expect_tensor(jget(r.json, "y"), &nb->y, outs[i].form, 64, 0, outs[i].name);
        http_res_free(&r);
        /* delta sent flat, answer as asked */
        char *ds = nb_json(&nb->delta, TT_FLAT);
        post_session(dmn, "/backward", id, "delta", ds, extra, &r);
        expect_status(&r, 200);
        expect_tensor(jget(r.json, "dx"), &nb->dx, outs[i].form, 64, 0, "dx");
        expect_tensor(jget(r.json, "dW"), &nb->dW, outs[i].form, 64, 0, "dW");
        expect_tensor(jget(r.json, "db"), &nb->db, outs[i].form, 64, 0, "db");
        http_res_free(&r);
        free(ds);
        free(extra);
    }
    /* Stateless backward honours it too. */
    char *Ws = nb_json(&nb->W, TT_NESTED), *ds = nb_json(&nb->delta, TT_NESTED);
    char *body =
        strf("{\"layer\":{\"W\":%s},\"x\":%s,\"delta\":%s,\"output\":\"base64\"}", Ws, xs, ds);
    http_res r;
    req(dmn, "POST", "/backward", body, &r);
    expect_status(&r, 200);
    expect_tensor(jget(r.json, "dW"), &nb->dW, TT_BASE64, 64, 0, "stateless dW base64");
    http_res_free(&r);
    free(body);
    free(Ws);
    free(ds);
    free(xs);
    free(id);
}

static void test_header_routing(void **state)
{
    (void)state;
    const notebook *nb = notebook_get();
    char *id = nb_session(dmn, 0);
    char *hdr = strf("X-Session-Id: %s", id);
    const char *hdrs[] = {hdr, NULL};
    char *xs = nb_json(&nb->x, TT_NESTED), *ds = nb_json(&nb->delta, TT_NESTED);
    char *body = strf("{\"x\":%s}", xs);
    http_res r;
    req_h(dmn, "POST", "/forward", body, hdrs, &r);
    expect_status(&r, 200);
    assert_string_equal(cJSON_GetStringValue(jget(r.json, "session")), id);
    assert_true(r.has_session_id);
    assert_string_equal(r.session_id, id);
    expect_tensor(jget(r.json, "y"), &nb->y, TT_NESTED, 0, 0, "y");
    http_res_free(&r);
    free(body);
    body = strf("{\"delta\":%s}", ds);
    req_h(dmn, "POST", "/backward", body, hdrs, &r);
    expect_status(&r, 200);
    assert_string_equal(r.session_id, id);
    expect_keys(&r, 1, 1, 1);
    http_res_free(&r);
    free(body);
    /* Header and body naming the same session is fine. */
    body = strf("{\"session\":\"%s\",\"delta\":%s}", id, ds);
    req_h(dmn, "POST", "/backward", body, hdrs, &r);
    expect_status(&r, 200);
    http_res_free(&r);
    free(body);
    /* Every answer that concerns a session carries the header: GET and DELETE too. */
    get_session(dmn, id, "", &r);
    expect_status(&r, 200);
    assert_string_equal(r.session_id, id);
    assert_int_equal(jnum(r.json, "forwards"), 1);
    assert_int_equal(jnum(r.json, "backwards"), 2);
    http_res_free(&r);
    char *path = strf("/sessions/%s", id);
    req(dmn, "DELETE", path, NULL, &r);
    expect_status(&r, 204);
    assert_true(r.has_session_id);
    assert_string_equal(r.session_id, id);
    http_res_free(&r);
    /* A header naming a deleted session: 404. */
    body = strf("{\"x\":%s}", xs);
    req_h(dmn, "POST", "/forward", body, hdrs, &r);
    expect_error(&r, 404, "session_not_found", NULL);
    http_res_free(&r);
    free(body);
    free(path);
    free(xs);
    free(ds);
    free(hdr);
    free(id);
}

static void test_get_fields_and_output(void **state)
{
    (void)state;
    const notebook *nb = notebook_get();
    char *id = nb_session(dmn, 1);
    http_res r;
    get_session(dmn, id, "", &r);
    expect_status(&r, 200);
    assert_string_equal(cJSON_GetStringValue(jget(r.json, "session")), id);
    assert_true(cJSON_IsObject(jget(r.json, "layer")));
    assert_null(cJSON_GetObjectItemCaseSensitive(jget(r.json, "layer"), "W"));
    expect_tensor(jget(r.json, "W"), &nb->W, TT_NESTED, 0, 0, "W nested");
    ttensor b;
    int64_t two = 2;
    tt_make(&b, 1, &two, B0);
    expect_tensor(jget(r.json, "b"), &b, TT_NESTED, 0, 0, "b nested");
    assert_false(cJSON_IsTrue(jget(r.json, "cached")));
    assert_true(cJSON_IsBool(jget(r.json, "cached")));
    assert_int_equal(jnum(r.json, "forwards"), 0);
    assert_int_equal(jnum(r.json, "backwards"), 0);
    assert_int_equal(jnum(r.json, "idle_timeout_s"), 300);
    http_res_free(&r);
    get_session(dmn, id, "?output=flat", &r);
    expect_status(&r, 200);
    expect_tensor(jget(r.json, "W"), &nb->W, TT_FLAT, 0, 0, "W flat");
    expect_tensor(jget(r.json, "b"), &b, TT_FLAT, 0, 0, "b flat");
    http_res_free(&r);
    get_session(dmn, id, "?output=base64", &r);
    expect_status(&r, 200);
    expect_tensor(jget(r.json, "W"), &nb->W, TT_BASE64, 64, 0, "W base64");
    expect_tensor(jget(r.json, "b"), &b, TT_BASE64, 64, 0, "b base64");
    http_res_free(&r);
    get_session(dmn, id, "?output=nested", &r);
    expect_status(&r, 200);
    expect_tensor(jget(r.json, "W"), &nb->W, TT_NESTED, 0, 0, "W ?output=nested");
    http_res_free(&r);
    tt_free(&b);
    free(id);

    /* No b when bias is off; a float32 layer answers base64 in float32. */
    char *Ws = nb_json(&nb->W, TT_NESTED);
    char *layer = strf("{\"W\":%s,\"bias\":false,\"dtype\":\"float32\"}", Ws);
    id = session_create(dmn, layer);
    get_session(dmn, id, "?output=base64", &r);
    expect_status(&r, 200);
    assert_null(cJSON_GetObjectItemCaseSensitive(r.json, "b"));
    expect_tensor(jget(r.json, "W"), &nb->W, TT_BASE64, 32, 0, "W base64 float32");
    assert_false(cJSON_IsTrue(jget(jget(r.json, "layer"), "bias")));
    assert_string_equal(cJSON_GetStringValue(jget(jget(r.json, "layer"), "dtype")), "float32");
    http_res_free(&r);
    free(layer);
    free(Ws);
    free(id);
}

static void test_delete_then_404(void **state)
{
    (void)state;
    const notebook *nb = notebook_get();
    char *id = nb_session(dmn, 0);
    forward_ok(dmn, id, &nb->x, "");
    char *path = strf("/sessions/%s", id);
    http_res r;
    req(dmn, "DELETE", path, NULL, &r);
    expect_status(&r, 204);
    assert_int_equal(r.len, 0);
    http_res_free(&r);
    req(dmn, "GET", path, NULL, &r);
    expect_error(&r, 404, "session_not_found", NULL);
    http_res_free(&r);
    backward(dmn, id, "", &r);
    expect_error(&r, 404, "session_not_found", NULL);
    http_res_free(&r);
    char *xs = nb_json(&nb->x, TT_NESTED);
    post_session(dmn, "/forward", id, "x", xs, "", &r);
    expect_error(&r, 404, "session_not_found", NULL);
    http_res_free(&r);
    req(dmn, "DELETE", path, NULL, &r);
    expect_error(&r, 404, "session_not_found", NULL);
    http_res_free(&r);
    free(xs);
    free(path);
    free(id);
}

static void test_never_issued_ids(void **state)
{
    (void)state;
    static const char *const ids[] = {"00000000000000000000000000000000",
                                      "0123456789abcdef0123456789abcdef", "nope"};
    const notebook *nb = notebook_get();
    char *xs = nb_json(&nb->x, TT_NESTED);
    for (size_t i = 0; i < 3; i++) {
        http_res r;
        get_session(dmn, ids[i], "", &r);
        expect_error(&r, 404, "session_not_found", NULL);
        http_res_free(&r);
        post_session(dmn, "/forward", ids[i], "x", xs, "", &r);
        expect_error(&r, 404, "session_not_found", NULL);
        http_res_free(&r);
        backward(dmn, ids[i], "", &r);
        expect_error(&r, 404, "session_not_found", NULL);
        http_res_free(&r);
        char *path = strf("/sessions/%s", ids[i]);
        req(dmn, "DELETE", path, NULL, &r);
        expect_error(&r, 404, "session_not_found", NULL);
        http_res_free(&r);
        free(path);
    }
    free(xs);
}

/* Ids are unguessable: long (>= 128 bits of text) and all distinct. */
static void test_ids_distinct(void **state)
{
    (void)state;
    enum { N = 24 };
    char *ids[N];
    for (int i = 0; i < N; i++) {
        ids[i] = nb_session(dmn, 0);
        assert_true(strlen(ids[i]) >= 22);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(ids[i], ids[j]);
    }
    for (int i = 0; i < N; i++) {
        char *path = strf("/sessions/%s", ids[i]);
        http_res r;
        req(dmn, "DELETE", path, NULL, &r);
        expect_status(&r, 204);
        http_res_free(&r);
        free(path);
        free(ids[i]);
    }
}

/* --idle-timeout 2: a session left alone answers 410; one used every 0.8 s stays alive
 * (every request naming it, GET included, counts as use). */
static void test_idle_expiry(void **state)
{
    (void)state;
    static const char *const args[] = {"--idle-timeout", "2", NULL};
    test_daemon *d = start_or_fail(args, NULL);
    char *idle = nb_session(d, 0), *used = nb_session(d, 0);
    http_res r;
    get_session(d, used, "", &r);
    assert_int_equal(jnum(r.json, "idle_timeout_s"), 2);
    http_res_free(&r);
    for (int i = 0; i < 4; i++) {
        sleep_ms(800);
        get_session(d, used, "", &r);
        expect_status(&r, 200);
        http_res_free(&r);
    }
    /* 3.2 s since `idle` was last used. */
    get_session(d, idle, "", &r);
    expect_error(&r, 410, "session_expired", NULL);
    http_res_free(&r);
    char *path = strf("/sessions/%s", idle);
    req(d, "DELETE", path, NULL, &r);
    expect_error(&r, 410, "session_expired", NULL);
    http_res_free(&r);
    backward(d, idle, "", &r);
    expect_error(&r, 410, "session_expired", NULL);
    http_res_free(&r);
    free(path);
    /* The used one still works, and the metrics counted an expiry. */
    forward_ok(d, used, &notebook_get()->x, "");
    req(d, "GET", "/metrics", NULL, &r);
    expect_status(&r, 200);
    const char *parts[] = {"expired", NULL};
    double expired = prom_sum(r.body, "convd_", parts);
    if (!(expired >= 1))
        fail_msg("no convd_*expired* metric counted the expiry:\n%s", r.body);
    http_res_free(&r);
    /* Never issued is still 404, not 410. */
    get_session(d, "ffffffffffffffffffffffffffffffff", "", &r);
    expect_error(&r, 404, "session_not_found", NULL);
    http_res_free(&r);
    free(idle);
    free(used);
    stop_expect_clean(d);
}

static int count_live(test_daemon *d, char **ids, int n)
{
    int live = 0;
    for (int i = 0; i < n; i++) {
        http_res r;
        get_session(d, ids[i], "", &r);
        live += r.status == 200;
        http_res_free(&r);
    }
    return live;
}

/* --max-sessions 3: a fourth session is 429 (none has been idle 60 s), by POST /sessions
 * and by an inline-layer forward; stateless work still runs; a failed inline forward
 * leaves no session behind; DELETE makes room. */
static void test_session_limit(void **state)
{
    (void)state;
    static const char *const args[] = {"--max-sessions", "3", NULL};
    test_daemon *d = start_or_fail(args, NULL);
    const notebook *nb = notebook_get();
    char *ids[3];
    ids[0] = nb_session(d, 0);
    ids[1] = nb_session(d, 0);
    /* Failed inline forwards (bad x, bad layer) must not take a slot. */
    char *Ws = nb_json(&nb->W, TT_NESTED), *xs = nb_json(&nb->x, TT_NESTED);
    http_res r;
    for (int i = 0; i < 3; i++) {
        char *body =
            strf("{\"layer\":{\"W\":%s},\"x\":[[[[1,2],[3,4]]]]}", Ws); /* smaller than k */
        req(d, "POST", "/forward", body, &r);
        expect_error(&r, 400, "shape_mismatch", NULL);
        http_res_free(&r);
        free(body);
    }
    ids[2] = nb_session(d, 0);
    char *layer = strf("{\"W\":%s}", Ws);
    req(d, "POST", "/sessions", layer, &r);
    expect_error(&r, 429, "too_many_sessions", "max_sessions");
    http_res_free(&r);
    char *body = strf("{\"layer\":{\"W\":%s},\"x\":%s}", Ws, xs);
    req(d, "POST", "/forward", body, &r);
    expect_error(&r, 429, "too_many_sessions", "max_sessions");
    http_res_free(&r);
    free(body);
    assert_int_equal(count_live(d, ids, 3), 3);
    /* Stateless backward creates no session, so it still works. */
    char *ds = nb_json(&nb->delta, TT_NESTED);
    body = strf("{\"layer\":{\"W\":%s},\"x\":%s,\"delta\":%s}", Ws, xs, ds);
    req(d, "POST", "/backward", body, &r);
    expect_status(&r, 200);
    http_res_free(&r);
    free(body);
    /* Existing sessions still serve. */
    forward_ok(d, ids[0], &nb->x, "");
    char *path = strf("/sessions/%s", ids[1]);
    req(d, "DELETE", path, NULL, &r);
    expect_status(&r, 204);
    http_res_free(&r);
    char *again = nb_session(d, 0);
    req(d, "POST", "/sessions", layer, &r);
    expect_error(&r, 429, "too_many_sessions", "max_sessions");
    http_res_free(&r);
    free(again);
    free(path);
    free(ds);
    free(layer);
    free(Ws);
    free(xs);
    for (int i = 0; i < 3; i++)
        free(ids[i]);
    stop_expect_clean(d);
}

/* Eviction needs a session idle for 60 s, so this costs 61 s: it runs only with
 * CONVD_SLOW_TESTS=1. --max-sessions 1: after 61 s, a new session evicts the idle one,
 * which then answers 410. */
static void test_eviction_slow(void **state)
{
    (void)state;
    const char *slow = getenv("CONVD_SLOW_TESTS");
    if (!slow || strcmp(slow, "1") != 0) {
        print_message("skipped: set CONVD_SLOW_TESTS=1 to run (waits 61 s)\n");
        skip();
    }
    static const char *const args[] = {"--max-sessions", "1", NULL};
    test_daemon *d = start_or_fail(args, NULL);
    char *a = nb_session(d, 0);
    http_res r;
    const notebook *nb = notebook_get();
    char *Ws = nb_json(&nb->W, TT_NESTED);
    char *layer = strf("{\"W\":%s}", Ws);
    free(Ws);
    req(d, "POST", "/sessions", layer, &r);
    expect_error(&r, 429, "too_many_sessions", "max_sessions");
    http_res_free(&r);
    sleep_ms(61000);
    char *b = nb_session(d, 0);
    get_session(d, a, "", &r);
    expect_error(&r, 410, "session_expired", NULL);
    http_res_free(&r);
    get_session(d, b, "", &r);
    expect_status(&r, 200);
    http_res_free(&r);
    req(d, "GET", "/metrics", NULL, &r);
    const char *parts[] = {"evicted", NULL};
    if (!(prom_sum(r.body, "convd_", parts) >= 1))
        fail_msg("no convd_*evicted* metric counted the eviction:\n%s", r.body);
    http_res_free(&r);
    free(layer);
    free(a);
    free(b);
    stop_expect_clean(d);
}

static const char *const daemon_args[] = {"--idle-timeout", "300", NULL};

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lr_step),
        cmocka_unit_test(test_need_subsets),
        cmocka_unit_test(test_cache_false),
        cmocka_unit_test(test_forward_replaces_cache),
        cmocka_unit_test(test_output_override),
        cmocka_unit_test(test_header_routing),
        cmocka_unit_test(test_get_fields_and_output),
        cmocka_unit_test(test_delete_then_404),
        cmocka_unit_test(test_never_issued_ids),
        cmocka_unit_test(test_ids_distinct),
        cmocka_unit_test(itest_daemon_exits_cleanly),
        cmocka_unit_test(test_idle_expiry),
        cmocka_unit_test(test_session_limit),
        cmocka_unit_test(test_eviction_slow),
    };
    return ITEST_SHARED_MAIN(tests, daemon_args, NULL, NULL);
}
