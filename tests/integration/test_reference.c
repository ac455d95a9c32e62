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

static cJSON *cases;

/* Non-fatal checks: every case runs and every mismatch is printed, then the test fails
 * once at the end with the count. */
static int bad;

static void check_close(const cJSON *got, const cJSON *want, const char *name, const char *what)
{
    ttensor w, g;
    char why[512];
    tensor_read(want, &w, what);
    double tol = 1e-9 * (1 + tt_max_abs(&w));
    if (tt_from_json(got, &g, why, sizeof why) != 0) {
        print_error("%s %s: %s\n", name, what, why);
        bad++;
    } else {
        if (g.form != TT_FLAT) {
            print_error("%s %s: not in flat form\n", name, what);
            bad++;
        } else if (tt_compare(&g, &w, tol, why, sizeof why) != 0) {
            print_error("%s %s: %s\n", name, what, why);
            bad++;
        }
        tt_free(&g);
    }
    tt_free(&w);
}

static int check_ok(const http_res *r, const char *name, const char *what)
{
    if (r->status == 200)
        return 1;
    print_error("%s %s: HTTP %ld %s\n", name, what, r->status, r->body);
    bad++;
    return 0;
}

static void check_grads(const http_res *r, const cJSON *c, const char *name)
{
    const cJSON *exp = jget(c, "expected");
    if (!check_ok(r, name, "backward"))
        return;
    check_close(cJSON_GetObjectItemCaseSensitive(r->json, "dx"), jget(exp, "dx"), name, "dx");
    check_close(cJSON_GetObjectItemCaseSensitive(r->json, "dW"), jget(exp, "dW"), name, "dW");
    const cJSON *db = cJSON_GetObjectItemCaseSensitive(exp, "db");
    if (db) {
        check_close(cJSON_GetObjectItemCaseSensitive(r->json, "db"), db, name, "db");
    } else if (cJSON_GetObjectItemCaseSensitive(r->json, "db")) {
        print_error("%s: bias is off but the answer has db\n", name);
        bad++;
    }
}

static void test_reference_session_flow(void **state)
{
    (void)state;
    int n = 0;
    bad = 0;
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
        if (check_ok(&r, name, "forward"))
            check_close(cJSON_GetObjectItemCaseSensitive(r.json, "y"),
                        jget(jget(c, "expected"), "y"), name, "y");
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
    if (bad)
        fail_msg("%d mismatches over the 40 cases", bad);
}

static void test_reference_stateless(void **state)
{
    (void)state;
    int n = 0;
    bad = 0;
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
    if (bad)
        fail_msg("%d mismatches over the 40 cases", bad);
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

static int load_cases(void **state)
{
    (void)state;
    cases = fixture_load("reference_cases.json");
    return cases ? 0 : -1;
}

static int free_cases(void **state)
{
    (void)state;
    cJSON_Delete(cases);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_session_flow),
        cmocka_unit_test(test_reference_stateless),
        cmocka_unit_test(test_reference_nested),
        cmocka_unit_test(itest_daemon_exits_cleanly),
    };
    return ITEST_SHARED_MAIN(tests, NULL, load_cases, free_cases);
}
