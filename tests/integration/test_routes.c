/*
 * test_routes.c — the v1.1 API for routers and clients (docs/api.md §8.2) on a daemon with
 * node_name n1: ids NODE.hex; another node's id answers 421 wrong_node asking for the id in
 * X-Session-Id or the path; POST /sessions/{id}/forward|backward; GET /sessions paged in id
 * order; PATCH /sessions/{id}; W/b on a session forward, atomic with it; and the one rule
 * for unknown fields, with a suggestion, on every body.
 */
#include "itest.h"

#include <stdlib.h>
#include <string.h>

static char *tj(const ttensor *t)
{
    char *s = tt_json(t->data, t->rank, t->shape, TT_NESTED, 64, 1);
    assert_non_null(s);
    return s;
}

static char *nb_session(void)
{
    char *W = tj(&notebook_get()->W);
    char *layer = strf("{\"W\":%s}", W);
    char *id = session_create(dmn, layer);
    free(layer);
    free(W);
    return id;
}

static void test_ids_name_the_node(void **state)
{
    (void)state;
    char *id = nb_session();
    assert_int_equal(strlen(id), 3 + 32);
    assert_memory_equal(id, "n1.", 3);
    assert_int_equal(strspn(id + 3, "0123456789abcdef"), 32);
    free(id);
}

static void test_other_nodes_id_is_421(void **state)
{
    (void)state;
    char *x = tj(&notebook_get()->x);
    char *body = strf("{\"session\":\"n2.0123456789abcdef0123456789abcdef\",\"x\":%s}", x);
    http_res r;
    req(dmn, "POST", "/forward", body, &r);
    expect_error(&r, 421, "wrong_node", NULL);
    const char *msg =
        cJSON_GetObjectItem(cJSON_GetObjectItem(r.json, "error"), "message")->valuestring;
    assert_non_null(strstr(msg, "X-Session-Id"));
    assert_non_null(strstr(msg, "\"n2\""));
    http_res_free(&r);
    /* named in the header or the path, a router sent it to the wrong node: 421 too */
    static const char *const hdr[] = {"X-Session-Id: n2.0123456789abcdef0123456789abcdef", NULL};
    char *bare = strf("{\"x\":%s}", x);
    req_h(dmn, "POST", "/forward", bare, hdr, &r);
    expect_error(&r, 421, "wrong_node", NULL);
    http_res_free(&r);
    req(dmn, "GET", "/sessions/n2.0123456789abcdef0123456789abcdef", NULL, &r);
    expect_error(&r, 421, "wrong_node", NULL);
    http_res_free(&r);
    /* ours in shape, never issued: 404; not an id at all: 404 */
    req(dmn, "GET", "/sessions/n1.0123456789abcdef0123456789abcdef", NULL, &r);
    expect_error(&r, 404, "session_not_found", NULL);
    http_res_free(&r);
    req(dmn, "GET", "/sessions/n1.xyz", NULL, &r);
    expect_error(&r, 404, "session_not_found", NULL);
    http_res_free(&r);
    free(bare);
    free(body);
    free(x);
}

static void test_session_in_the_path(void **state)
{
    (void)state;
    const notebook *nb = notebook_get();
    char *id = nb_session();
    char *x = tj(&nb->x), *delta = tj(&nb->delta);
    char *fb = strf("{\"x\":%s}", x), *bb = strf("{\"delta\":%s}", delta);
    char *fp = strf("/sessions/%s/forward", id), *bp = strf("/sessions/%s/backward", id);
    http_res r;
    req(dmn, "POST", fp, fb, &r);
    expect_status(&r, 200);
    assert_string_equal(r.session_id, id);
    expect_tensor(jget(r.json, "y"), &nb->y, TT_NESTED, 0, 0, "y");
    http_res_free(&r);
    req(dmn, "POST", bp, bb, &r);
    expect_status(&r, 200);
    expect_tensor(jget(r.json, "dx"), &nb->dx, TT_NESTED, 0, 0, "dx");
    expect_tensor(jget(r.json, "dW"), &nb->dW, TT_NESTED, 0, 0, "dW");
    expect_tensor(jget(r.json, "db"), &nb->db, TT_NESTED, 0, 0, "db");
    http_res_free(&r);
    /* the path and the body naming different sessions */
    char *other = nb_session();
    char *both = strf("{\"session\":\"%s\",\"delta\":%s}", other, delta);
    req(dmn, "POST", bp, both, &r);
    expect_error(&r, 400, "invalid_argument", "session");
    http_res_free(&r);
    free(both);
    free(other);
    free(fp);
    free(bp);
    free(fb);
    free(bb);
    free(x);
    free(delta);
    free(id);
}

static void test_list_is_paged_in_id_order(void **state)
{
    (void)state;
    http_res r;
    req(dmn, "GET", "/sessions?limit=1000", NULL, &r);
    expect_status(&r, 200);
    int before = cJSON_GetArraySize(jget(r.json, "sessions"));
    http_res_free(&r);
    for (int i = 0; i < 5; i++)
        free(nb_session());
    int total = before + 5, seen = 0;
    char last[128] = "";
    char *path = strf("/sessions?limit=2");
    for (int page = 0; page < total; page++) {
        req(dmn, "GET", path, NULL, &r);
        expect_status(&r, 200);
        const cJSON *list = jget(r.json, "sessions");
        const cJSON *s;
        cJSON_ArrayForEach(s, list)
        {
            const char *id = jget(s, "session")->valuestring;
            assert_true(strcmp(id, last) > 0);
            snprintf(last, sizeof last, "%s", id);
            assert_non_null(cJSON_GetObjectItem(jget(s, "layer"), "kernel_size"));
            assert_true(cJSON_IsBool(jget(s, "cached")));
            jnum(s, "forwards");
            jnum(s, "backwards");
            assert_true(jnum(s, "idle_s") >= 0);
            seen++;
        }
        const cJSON *next = jget(r.json, "next");
        free(path);
        path = NULL;
        if (cJSON_IsNull(next)) {
            http_res_free(&r);
            break;
        }
        assert_int_equal(cJSON_GetArraySize(list), 2);
        assert_string_equal(next->valuestring, last);
        path = strf("/sessions?limit=2&after=%s", next->valuestring);
        http_res_free(&r);
    }
    free(path);
    assert_int_equal(seen, total);
    static const char *const bad[] = {"/sessions?limit=0", "/sessions?limit=x",
                                      "/sessions?limit=1001"};
    for (int i = 0; i < 3; i++) {
        req(dmn, "GET", bad[i], NULL, &r);
        expect_error(&r, 400, "invalid_argument", "limit");
        http_res_free(&r);
    }
}

static void test_patch_replaces_weights(void **state)
{
    (void)state;
    char *id = nb_session();
    char *path = strf("/sessions/%s", id);
    http_res r;
    req(dmn, "PATCH", path, "{\"W\":[[[[1,2],[3,4]]],[[[5,6],[7,8]]]]}", &r);
    expect_error(&r, 400, "invalid_layer", "W");
    http_res_free(&r);
    session_snap before;
    snap_take(dmn, id, &before);
    static const char *const bad[][2] = {
        {"{}", "invalid_argument"},           {"{\"W\":[[[1]]],\"b\":[1,2]}", "invalid_layer"},
        {"{\"b\":[1,2,3]}", "invalid_layer"}, {"{\"b\":[1e999,2]}", "invalid_tensor|invalid_json"},
        {"{\"Wt\":[1]}", "invalid_argument"}, {"[]", "invalid_argument"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        req(dmn, "PATCH", path, bad[i][0], &r);
        expect_error(&r, 400, bad[i][1], NULL);
        http_res_free(&r);
        snap_expect_same(dmn, id, &before);
    }
    req(dmn, "PATCH", path,
        "{\"W\":[[[0,0,0],[0,2,0],[0,0,0]],[[0,0,0],[0,0,0],[0,0,1]]],"
        "\"b\":[[1],[-1]]}",
        &r);
    expect_status(&r, 200);
    assert_string_equal(r.session_id, id);
    assert_non_null(jget(r.json, "layer"));
    http_res_free(&r);
    req(dmn, "GET", path, NULL, &r);
    expect_status(&r, 200);
    char *W = raw_member(r.body, "W"), *b = raw_member(r.body, "b");
    assert_string_equal(W, "[[[0,0,0],[0,2,0],[0,0,0]],[[0,0,0],[0,0,0],[0,0,1]]]");
    assert_string_equal(b, "[[1],[-1]]");
    free(W);
    free(b);
    http_res_free(&r);
    snap_free(&before);
    /* no bias: b is refused */
    char *nobias = session_create(dmn, "{\"in_channels\":1,\"out_channels\":1,\"kernel_size\":1,"
                                       "\"bias\":false}");
    char *np = strf("/sessions/%s", nobias);
    req(dmn, "PATCH", np, "{\"b\":[1]}", &r);
    expect_error(&r, 400, "invalid_layer", "b");
    http_res_free(&r);
    free(np);
    free(nobias);
    free(path);
    free(id);
}

static void test_weights_on_a_forward(void **state)
{
    (void)state;
    const notebook *nb = notebook_get();
    char *id = session_create(dmn, "{\"in_channels\":1,\"out_channels\":2,\"kernel_size\":3,"
                                   "\"init\":{\"scheme\":\"normal\",\"seed\":3}}");
    char *W = tj(&nb->W), *x = tj(&nb->x);
    char *fp = strf("/sessions/%s/forward", id);
    session_snap before;
    snap_take(dmn, id, &before);
    /* a forward that fails leaves the old weights */
    char *bad = strf("{\"W\":%s,\"b\":[0,0],\"x\":[[[1,2],[3,4]]]}", W);
    http_res r;
    req(dmn, "POST", fp, bad, &r);
    expect_error(&r, 400, "shape_mismatch", NULL);
    http_res_free(&r);
    snap_expect_same(dmn, id, &before);
    /* the notebook's W and zero b: the notebook's y */
    char *good = strf("{\"W\":%s,\"b\":[0,0],\"x\":%s}", W, x);
    req(dmn, "POST", fp, good, &r);
    expect_status(&r, 200);
    expect_tensor(jget(r.json, "y"), &nb->y, TT_NESTED, 0, 0, "y");
    http_res_free(&r);
    char *gp = strf("/sessions/%s", id);
    req(dmn, "GET", gp, NULL, &r);
    expect_tensor(jget(r.json, "W"), &nb->W, TT_NESTED, 0, 0, "W");
    http_res_free(&r);
    /* W next to an inline layer is ambiguous */
    char *inl = strf("{\"layer\":{\"W\":%s},\"W\":%s,\"x\":%s}", W, W, x);
    req(dmn, "POST", "/forward", inl, &r);
    expect_error(&r, 400, "invalid_argument", "W|layer");
    http_res_free(&r);
    snap_free(&before);
    free(inl);
    free(gp);
    free(good);
    free(bad);
    free(fp);
    free(W);
    free(x);
    free(id);
}

static void test_unknown_fields_suggest(void **state)
{
    (void)state;
    char *x = tj(&notebook_get()->x);
    char *id = nb_session();
    static const char *const tmpl[][3] = {
        {"/forward", "{\"sesion\":\"%s\",\"x\":%s}", "session"},
        {"/backward", "{\"session\":\"%s\",\"delt\":%s}", "delta"},
        {"/forward", "{\"session\":\"%s\",\"x\":%s,\"cahce\":true}", "cache"},
    };
    for (size_t i = 0; i < sizeof tmpl / sizeof tmpl[0]; i++) {
        char *body = strf(tmpl[i][1], id, x);
        http_res r;
        req(dmn, "POST", tmpl[i][0], body, &r);
        expect_error(&r, 400, "invalid_argument", NULL);
        char *want = strf("did you mean '%s'", tmpl[i][2]);
        assert_non_null(strstr(r.body, want));
        free(want);
        http_res_free(&r);
        free(body);
    }
    free(id);
    free(x);
}

int main(void)
{
    static const char *const args[] = {"--node-name", "n1", NULL};
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids_name_the_node),
        cmocka_unit_test(test_other_nodes_id_is_421),
        cmocka_unit_test(test_session_in_the_path),
        cmocka_unit_test(test_list_is_paged_in_id_order),
        cmocka_unit_test(test_patch_replaces_weights),
        cmocka_unit_test(test_weights_on_a_forward),
        cmocka_unit_test(test_unknown_fields_suggest),
        cmocka_unit_test(itest_daemon_exits_cleanly),
    };
    return ITEST_SHARED_MAIN(tests, args, NULL, NULL);
}
