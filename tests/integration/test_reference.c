/*
 * test_reference.c — the 40 PyTorch float64 reference cases (tests/fixtures/
 * reference_cases.json: strides, paddings, dilations, groups, with and without bias)
 * through the daemon: the session flow with the flat form as given, and the stateless
 * backward. y, dx, dW, db must match within 1e-9 * (1 + max|expected|), in flat form and in
 * the shapes sent; cases without bias must answer no db.
 */
#include "itest.h"

#include <stdlib.h>
#include <string.h>

static test_daemon *dmn;
static cJSON *cases;

static void expect_close(const cJSON *got, const cJSON *want, const char *name, const char *what)
{
    ttensor w;
    tensor_read(want, &w, what);
    double tol = 1e-9 * (1 + tt_max_abs(&w));
    char label[96];
    snprintf(label, sizeof label, "%s %s", name, what);
    expect_tensor(got, &w, TT_FLAT, 0, tol, label);
    tt_free(&w);
}

static void check_grads(const http_res *r, const cJSON *c, const char *name)
{
    const cJSON *exp = jget(c, "expected");
    expect_status(r, 200);
    expect_close(jget(r->json, "dx"), jget(exp, "dx"), name, "dx");
    expect_close(jget(r->json, "dW"), jget(exp, "dW"), name, "dW");
    const cJSON *db = cJSON_GetObjectItemCaseSensitive(exp, "db");
    if (db)
        expect_close(jget(r->json, "db"), db, name, "db");
    else if (cJSON_GetObjectItemCaseSensitive(r->json, "db"))
        fail_msg("%s: bias is off but the answer has db", name);
}

static void test_reference_session_flow(void **state)
{
    (void)state;
    int n = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, jget(cases, "cases"))
    {
        const char *name = cJSON_GetStringValue(jget(c, "name"));
        char *layer = json_text(jget(c, "layer"));
        char *id = session_create(dmn, layer);
        char *x = json_text(jget(c, "x"));
        char *body = strf("{\"session\":\"%s\",\"x\":%s}", id, x);
        http_res r;
        req(dmn, "POST", "/forward", body, &r);
        expect_status(&r, 200);
        expect_close(jget(r.json, "y"), jget(jget(c, "expected"), "y"), name, "y");
        http_res_free(&r);
        free(body);
        char *delta = json_text(jget(c, "delta"));
        body = strf("{\"session\":\"%s\",\"delta\":%s}", id, delta);
        req(dmn, "POST", "/backward", body, &r);
        check_grads(&r, c, name);
        http_res_free(&r);
        free(body);
        char *path = strf("/sessions/%s", id);
        req(dmn, "DELETE", path, NULL, &r);
        expect_status(&r, 204);
        http_res_free(&r);
        free(path);
        free(delta);
        free(x);
        free(id);
        free(layer);
        n++;
    }
    assert_int_equal(n, 40);
}

static void test_reference_stateless(void **state)
{
    (void)state;
    int n = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, jget(cases, "cases"))
    {
        const char *name = cJSON_GetStringValue(jget(c, "name"));
        char *layer = json_text(jget(c, "layer"));
        char *x = json_text(jget(c, "x"));
        char *delta = json_text(jget(c, "delta"));
        char *body = strf("{\"layer\":%s,\"x\":%s,\"delta\":%s}", layer, x, delta);
        http_res r;
        req(dmn, "POST", "/backward", body, &r);
        check_grads(&r, c, name);
        assert_null(cJSON_GetObjectItemCaseSensitive(r.json, "session"));
        http_res_free(&r);
        free(body);
        free(delta);
        free(x);
        free(layer);
        n++;
    }
    assert_int_equal(n, 40);
}

/* The same cases sent nested answer nested, with the same numbers. */
static void test_reference_nested(void **state)
{
    (void)state;
    const cJSON *c;
    int i = 0;
    cJSON_ArrayForEach(c, jget(cases, "cases"))
    {
        if (i++ % 4 != 0)
            continue;
        const char *name = cJSON_GetStringValue(jget(c, "name"));
        ttensor x, y;
        tensor_read(jget(c, "x"), &x, "x");
        tensor_read(jget(jget(c, "expected"), "y"), &y, "expected y");
        char *xs = tt_json(x.data, x.rank, x.shape, TT_NESTED, 64, 1);
        char *layer = json_text(jget(c, "layer"));
        char *body = strf("{\"layer\":%s,\"x\":%s}", layer, xs);
        http_res r;
        req(dmn, "POST", "/forward", body, &r);
        expect_status(&r, 200);
        char label[64];
        snprintf(label, sizeof label, "%s nested y", name);
        expect_tensor(jget(r.json, "y"), &y, TT_NESTED, 0, 1e-9 * (1 + tt_max_abs(&y)), label);
        char *path = strf("/sessions/%s", cJSON_GetStringValue(jget(r.json, "session")));
        http_res_free(&r);
        req(dmn, "DELETE", path, NULL, &r);
        expect_status(&r, 204);
        http_res_free(&r);
        free(path);
        free(body);
        free(layer);
        free(xs);
        tt_free(&x);
        tt_free(&y);
    }
}

static void test_daemon_exits_cleanly(void **state)
{
    (void)state;
    test_daemon *d = dmn;
    dmn = NULL;
    stop_expect_clean(d);
}

static int setup(void **state)
{
    (void)state;
    cases = fixture_load("reference_cases.json");
    dmn = daemon_start(NULL, NULL);
    return dmn ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    daemon_kill(dmn);
    dmn = NULL;
    cJSON_Delete(cases);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_session_flow),
        cmocka_unit_test(test_reference_stateless),
        cmocka_unit_test(test_reference_nested),
        cmocka_unit_test(test_daemon_exits_cleanly),
    };
    return ITEST_MAIN(tests, setup, teardown);
}
