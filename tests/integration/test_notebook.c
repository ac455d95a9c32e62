/*
 * test_notebook.c — the notebook case (tests/fixtures/notebook.json) through the daemon:
 * all three flows (POST /sessions then /forward + /backward; an inline-layer /forward then
 * /backward by session; a stateless /backward) crossed with every tensor form (nested, flat,
 * base64 float64, base64 float32 into a float64 layer), checking exact values and shapes:
 * y rank 4 like x, dx rank 4, dW rank 3 like the notebook's W, db (2). Also the shape rules
 * of spec §3 (rank-3 x, rank-4 W, b sent as (F,1)) and integer printing.
 */
#include "itest.h"

#include <stdlib.h>
#include <string.h>

/* The four ways a tensor is sent: nested, flat, base64 float64, base64 float32. */
enum { V_NESTED, V_FLAT, V_B64_64, V_B64_32, V_COUNT };
static const char *const vname[V_COUNT] = {"nested", "flat", "base64-f64", "base64-f32"};
static const tt_form vform[V_COUNT] = {TT_NESTED, TT_FLAT, TT_BASE64, TT_BASE64};

static char *send_as(const ttensor *t, int v)
{
    char *s = tt_json(t->data, t->rank, t->shape, vform[v], v == V_B64_32 ? 32 : 64, 1);
    assert_non_null(s);
    return s;
}

/* Checks a /forward answer: 200, y exact in the form of x, session in body and header. */
static void check_forward(const http_res *r, const char *id, int v)
{
    const notebook *nb = notebook_get();
    expect_status(r, 200);
    const cJSON *s = jget(r->json, "session");
    assert_true(cJSON_IsString(s));
    if (id)
        assert_string_equal(s->valuestring, id);
    assert_true(r->has_session_id);
    assert_string_equal(r->session_id, s->valuestring);
    expect_tensor(jget(r->json, "y"), &nb->y, vform[v], 64, 0, "y");
    if (vform[v] != TT_BASE64)
        assert_null(strchr(r->body, '.')); /* integers print without a fraction */
}

/* Checks dx, dW, db in the form of delta (and no "session" when stateless). */
static void check_grads(const http_res *r, const char *id, int v)
{
    const notebook *nb = notebook_get();
    expect_status(r, 200);
    if (id) {
        const cJSON *s = jget(r->json, "session");
        assert_true(cJSON_IsString(s));
        assert_string_equal(s->valuestring, id);
        assert_true(r->has_session_id);
        assert_string_equal(r->session_id, id);
    } else {
        assert_null(cJSON_GetObjectItemCaseSensitive(r->json, "session"));
        assert_false(r->has_session_id);
    }
    expect_tensor(jget(r->json, "dx"), &nb->dx, vform[v], 64, 0, "dx");
    expect_tensor(jget(r->json, "dW"), &nb->dW, vform[v], 64, 0, "dW");
    expect_tensor(jget(r->json, "db"), &nb->db, vform[v], 64, 0, "db");
    if (vform[v] != TT_BASE64)
        assert_null(strchr(r->body, '.'));
}

static void check_normalised_layer(const cJSON *layer)
{
    assert_true(cJSON_IsObject(layer));
    assert_int_equal(jnum(layer, "in_channels"), 1);
    assert_int_equal(jnum(layer, "out_channels"), 2);
    assert_int_equal(jnum(layer, "groups"), 1);
    const cJSON *k = jget(layer, "kernel_size");
    if (cJSON_IsArray(k)) {
        assert_int_equal(cJSON_GetArraySize(k), 2);
        assert_int_equal(cJSON_GetArrayItem(k, 0)->valuedouble, 3);
        assert_int_equal(cJSON_GetArrayItem(k, 1)->valuedouble, 3);
    } else {
        assert_int_equal(k->valuedouble, 3);
    }
    jget(layer, "stride");
    jget(layer, "padding");
    jget(layer, "dilation");
    assert_true(cJSON_IsTrue(jget(layer, "bias")));
    assert_string_equal(cJSON_GetStringValue(jget(layer, "dtype")), "float64");
    const cJSON *init = jget(layer, "init");
    /* the notebook sends W: no init ran, so no seed was used and none is reported */
    assert_string_equal(cJSON_GetStringValue(jget(init, "scheme")), "given");
    assert_null(cJSON_GetObjectItemCaseSensitive(init, "seed"));
    assert_null(cJSON_GetObjectItemCaseSensitive(layer, "W"));
    assert_null(cJSON_GetObjectItemCaseSensitive(layer, "b"));
}

static void test_session_flow_all_forms(void **state)
{
    (void)state;
    const notebook *nb = notebook_get();
    for (int v = 0; v < V_COUNT; v++) {
        print_message("form %s\n", vname[v]);
        char *W = send_as(&nb->W, v), *x = send_as(&nb->x, v), *delta = send_as(&nb->delta, v);
        char *layer = strf("{\"W\":%s}", W);
        http_res r;
        req(dmn, "POST", "/sessions", layer, &r);
        expect_status(&r, 201);
        const char *id = cJSON_GetStringValue(jget(r.json, "session"));
        assert_non_null(id);
        char *sid = strdup(id);
        check_normalised_layer(jget(r.json, "layer"));
        assert_true(jnum(r.json, "idle_timeout_s") > 0);
        char *loc = strf("/sessions/%s", sid);
        assert_string_equal(r.location, loc);
        assert_string_equal(r.session_id, sid);
        http_res_free(&r);

        char *body = strf("{\"session\":\"%s\",\"x\":%s}", sid, x);
        req(dmn, "POST", "/forward", body, &r);
        check_forward(&r, sid, v);
        http_res_free(&r);
        free(body);

        body = strf("{\"session\":\"%s\",\"delta\":%s}", sid, delta);
        req(dmn, "POST", "/backward", body, &r);
        check_grads(&r, sid, v);
        http_res_free(&r);
        free(body);

        /* GET returns W as it was sent (rank 3) and b (F) zeros, nested by default. */
        req(dmn, "GET", loc, NULL, &r);
        expect_status(&r, 200);
        assert_string_equal(cJSON_GetStringValue(jget(r.json, "session")), sid);
        expect_tensor(jget(r.json, "W"), &nb->W, TT_NESTED, 0, 0, "GET W");
        ttensor zeros;
        int64_t two = 2;
        double z[2] = {0, 0};
        tt_make(&zeros, 1, &two, z);
        expect_tensor(jget(r.json, "b"), &zeros, TT_NESTED, 0, 0, "GET b");
        tt_free(&zeros);
        assert_true(cJSON_IsTrue(jget(r.json, "cached")));
        assert_int_equal(jnum(r.json, "forwards"), 1);
        assert_int_equal(jnum(r.json, "backwards"), 1);
        check_normalised_layer(jget(r.json, "layer"));
        http_res_free(&r);
        req(dmn, "DELETE", loc, NULL, &r);
        expect_status(&r, 204);
        http_res_free(&r);
        free(loc);
        free(sid);
        free(layer);
        free(W);
        free(x);
        free(delta);
    }
}

static void test_inline_layer_flow_all_forms(void **state)
{
    (void)state;
    const notebook *nb = notebook_get();
    for (int v = 0; v < V_COUNT; v++) {
        print_message("form %s\n", vname[v]);
        char *W = send_as(&nb->W, v), *x = send_as(&nb->x, v), *delta = send_as(&nb->delta, v);
        char *body = strf("{\"layer\":{\"W\":%s},\"x\":%s}", W, x);
        http_res r;
        req(dmn, "POST", "/forward", body, &r);
        check_forward(&r, NULL, v);
        char *sid = strdup(cJSON_GetStringValue(jget(r.json, "session")));
        http_res_free(&r);
        free(body);

        body = strf("{\"session\":\"%s\",\"delta\":%s}", sid, delta);
        req(dmn, "POST", "/backward", body, &r);
        check_grads(&r, sid, v);
        http_res_free(&r);
        free(body);

        /* A backward does not consume the cache: the same again. */
        body = strf("{\"session\":\"%s\",\"delta\":%s}", sid, delta);
        req(dmn, "POST", "/backward", body, &r);
        check_grads(&r, sid, v);
        http_res_free(&r);
        free(body);
        free(sid);
        free(W);
        free(x);
        free(delta);
    }
}

static void test_stateless_backward_all_forms(void **state)
{
    (void)state;
    const notebook *nb = notebook_get();
    for (int v = 0; v < V_COUNT; v++) {
        print_message("form %s\n", vname[v]);
        char *W = send_as(&nb->W, v), *x = send_as(&nb->x, v), *delta = send_as(&nb->delta, v);
        char *body = strf("{\"layer\":{\"W\":%s},\"x\":%s,\"delta\":%s}", W, x, delta);
        http_res r;
        req(dmn, "POST", "/backward", body, &r);
        check_grads(&r, NULL, v);
        http_res_free(&r);
        free(body);
        free(W);
        free(x);
        free(delta);
    }
}

/* The exact example of spec §7, as text, including the numbers' printed form. */
static void test_spec_example_text(void **state)
{
    (void)state;
    http_res r;
    req(dmn, "POST", "/forward",
        "{\"layer\":{\"W\":[[[0,0,0],[0,1,0],[0,-1,0]],[[0,0,0],[0,-1,1],[0,0,0]]]},"
        "\"x\":[[[[1,2,3,4],[5,6,7,8],[9,10,11,12],[13,14,15,16]]]]}",
        &r);
    expect_status(&r, 200);
    char *y = raw_member(r.body, "y");
    assert_string_equal(y, "[[[[-4,-4],[-4,-4]],[[1,1],[1,1]]]]");
    free(y);
    assert_non_null(strstr(r.body, "-4")); /* not -4.0 */
    assert_null(strstr(r.body, "-4.0"));
    char *body = strf("{\"session\":\"%s\",\"delta\":[[[-4,-4],[10,11]],[[1,-7],[1,-11]]]}",
                      cJSON_GetStringValue(jget(r.json, "session")));
    http_res_free(&r);
    req(dmn, "POST", "/backward", body, &r);
    free(body);
    expect_status(&r, 200);
    char *t = raw_member(r.body, "dx");
    assert_string_equal(t, "[[[[0,0,0,0],[0,-5,4,-7],[0,13,27,-11],[0,-10,-11,0]]]]");
    free(t);
    t = raw_member(r.body, "dW");
    assert_string_equal(t, "[[[104,117,130],[156,169,182],[208,221,234]],[[-74,-90,-106],"
                           "[-138,-154,-170],[-202,-218,-234]]]");
    free(t);
    t = raw_member(r.body, "db");
    assert_string_equal(t, "[13,-16]");
    free(t);
    assert_null(strchr(r.body, '.'));
    http_res_free(&r);
}

/* Mixed forms in one session: x flat, delta base64 → grads base64; x nested, delta flat. */
static void test_mixed_forms(void **state)
{
    (void)state;
    const notebook *nb = notebook_get();
    char *W = send_as(&nb->W, V_NESTED);
    char *layer = strf("{\"W\":%s}", W);
    char *id = session_create(dmn, layer);
    char *x = send_as(&nb->x, V_FLAT), *delta = send_as(&nb->delta, V_B64_64);
    char *body = strf("{\"session\":\"%s\",\"x\":%s}", id, x);
    http_res r;
    req(dmn, "POST", "/forward", body, &r);
    check_forward(&r, id, V_FLAT);
    http_res_free(&r);
    free(body);
    body = strf("{\"session\":\"%s\",\"delta\":%s}", id, delta);
    req(dmn, "POST", "/backward", body, &r);
    check_grads(&r, id, V_B64_64);
    http_res_free(&r);
    free(body);
    /* base64 without "dtype": the layer's (float64) applies. */
    free(delta);
    delta = tt_json(nb->delta.data, nb->delta.rank, nb->delta.shape, TT_BASE64, 64, 0);
    body = strf("{\"session\":\"%s\",\"delta\":%s}", id, delta);
    req(dmn, "POST", "/backward", body, &r);
    check_grads(&r, id, V_B64_64);
    http_res_free(&r);
    free(body);
    free(delta);
    free(x);
    free(id);
    free(layer);
    free(W);
}

/* Spec §3: x rank 3 means N = 1 and y, dx come back rank 3; W rank 4 gives dW rank 4;
 * b sent (F,1) gives db (F,1) and GET b (F,1). */
static void test_shapes_follow_inputs(void **state)
{
    (void)state;
    const notebook *nb = notebook_get();
    ttensor x3, W4, y3, dx3, dW4, b21, db21;
    int64_t sx3[3] = {1, 4, 4}, sW4[4] = {2, 1, 3, 3}, sy3[3] = {2, 2, 2}, s21[2] = {2, 1};
    double bv[2] = {0.5, -0.25};
    tt_make(&x3, 3, sx3, nb->x.data);
    tt_make(&W4, 4, sW4, nb->W.data);
    tt_make(&y3, 3, sy3, nb->y.data);
    tt_make(&dx3, 3, sx3, nb->dx.data);
    tt_make(&dW4, 4, sW4, nb->dW.data);
    tt_make(&b21, 2, s21, bv);
    tt_make(&db21, 2, s21, nb->db.data);
    for (size_t i = 0; i < y3.n; i++)
        y3.data[i] += bv[i / 4];
    char *xs = send_as(&x3, V_NESTED), *Ws = send_as(&W4, V_NESTED), *bs = send_as(&b21, 0);
    char *ds = send_as(&nb->delta, V_NESTED);
    char *layer = strf("{\"W\":%s,\"b\":%s}", Ws, bs);
    char *id = session_create(dmn, layer);
    char *body = strf("{\"session\":\"%s\",\"x\":%s}", id, xs);
    http_res r;
    req(dmn, "POST", "/forward", body, &r);
    expect_status(&r, 200);
    expect_tensor(jget(r.json, "y"), &y3, TT_NESTED, 0, 0, "y (rank 3)");
    http_res_free(&r);
    free(body);
    body = strf("{\"session\":\"%s\",\"delta\":%s}", id, ds);
    req(dmn, "POST", "/backward", body, &r);
    expect_status(&r, 200);
    expect_tensor(jget(r.json, "dx"), &dx3, TT_NESTED, 0, 0, "dx (rank 3 like x)");
    expect_tensor(jget(r.json, "dW"), &dW4, TT_NESTED, 0, 0, "dW (rank 4 like W)");
    expect_tensor(jget(r.json, "db"), &db21, TT_NESTED, 0, 0, "db ((F,1) like b)");
    http_res_free(&r);
    free(body);
    char *path = strf("/sessions/%s", id);
    req(dmn, "GET", path, NULL, &r);
    expect_status(&r, 200);
    expect_tensor(jget(r.json, "W"), &W4, TT_NESTED, 0, 0, "GET W (rank 4)");
    expect_tensor(jget(r.json, "b"), &b21, TT_NESTED, 0, 0, "GET b ((F,1))");
    http_res_free(&r);
    free(path);
    /* delta rank 4 with the same values is fine too. */
    int64_t sd4[4] = {1, 2, 2, 2};
    ttensor d4;
    tt_make(&d4, 4, sd4, nb->delta.data);
    char *d4s = send_as(&d4, V_FLAT);
    body = strf("{\"layer\":{\"W\":%s},\"x\":%s,\"delta\":%s}", Ws, xs, d4s);
    req(dmn, "POST", "/backward", body, &r);
    expect_status(&r, 200);
    expect_tensor(jget(r.json, "dx"), &dx3, TT_FLAT, 0, 0, "stateless dx (rank 3 like x)");
    expect_tensor(jget(r.json, "dW"), &dW4, TT_FLAT, 0, 0, "stateless dW");
    expect_tensor(jget(r.json, "db"), &nb->db, TT_FLAT, 0, 0, "stateless db (F)");
    http_res_free(&r);
    free(body);
    free(d4s);
    tt_free(&d4);
    free(id);
    free(layer);
    free(xs);
    free(Ws);
    free(bs);
    free(ds);
    ttensor *all[] = {&x3, &W4, &y3, &dx3, &dW4, &b21, &db21};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tt_free(all[i]);
}

/* The notebook as a float32 layer: exact integers, base64 answers in float32. */
static void test_float32_layer(void **state)
{
    (void)state;
    const notebook *nb = notebook_get();
    char *W = send_as(&nb->W, V_NESTED);
    for (int v = 0; v < V_COUNT; v++) {
        char *x = send_as(&nb->x, v), *delta = send_as(&nb->delta, v);
        char *body =
            strf("{\"layer\":{\"dtype\":\"float32\",\"W\":%s},\"x\":%s,\"delta\":%s}", W, x, delta);
        http_res r;
        req(dmn, "POST", "/backward", body, &r);
        expect_status(&r, 200);
        expect_tensor(jget(r.json, "dx"), &nb->dx, vform[v], 32, 0, "dx f32");
        expect_tensor(jget(r.json, "dW"), &nb->dW, vform[v], 32, 0, "dW f32");
        expect_tensor(jget(r.json, "db"), &nb->db, vform[v], 32, 0, "db f32");
        http_res_free(&r);
        free(body);
        free(x);
        free(delta);
    }
    /* base64 without "dtype" on a float32 layer is read as float32 bytes. */
    char *x = tt_json(nb->x.data, nb->x.rank, nb->x.shape, TT_BASE64, 32, 0);
    char *body = strf("{\"layer\":{\"dtype\":\"float32\",\"W\":%s},\"x\":%s}", W, x);
    http_res r;
    req(dmn, "POST", "/forward", body, &r);
    expect_status(&r, 200);
    expect_tensor(jget(r.json, "y"), &nb->y, TT_BASE64, 32, 0, "y f32 (x without dtype)");
    http_res_free(&r);
    free(body);
    free(x);
    free(W);
}

static const char *const daemon_args[] = {"--idle-timeout", "300", NULL};

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_example_text),
        cmocka_unit_test(test_session_flow_all_forms),
        cmocka_unit_test(test_inline_layer_flow_all_forms),
        cmocka_unit_test(test_stateless_backward_all_forms),
        cmocka_unit_test(test_mixed_forms),
        cmocka_unit_test(test_shapes_follow_inputs),
        cmocka_unit_test(test_float32_layer),
        cmocka_unit_test(itest_daemon_exits_cleanly),
    };
    return ITEST_SHARED_MAIN(tests, daemon_args, NULL, NULL);
}
