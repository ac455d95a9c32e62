/*
 * test_router.c — the route table: every endpoint's method and path, the captured {id},
 * 404 for unknown paths, 405 with the Allow list for known paths, HEAD wherever GET is,
 * and the auth/drain exemptions of /healthz, /readyz and /metrics. Also the Prometheus
 * rendering of recorded requests (metrics.c), which the router's endpoint labels feed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "../../server/api_openapi.h"
#include "../../server/router.h"

static void expect_route(const char *method, const char *path, api_handler h, metrics_endpoint ep)
{
    route_match m;
    assert_int_equal(router_match(method, path, &m), ROUTE_OK);
    assert_ptr_equal(m.handler, h);
    assert_int_equal(m.ep, ep);
}

static void test_every_endpoint_routes(void **state)
{
    (void)state;
    expect_route("GET", "/", api_root, METRICS_EP_ROOT);
    expect_route("GET", "/healthz", api_healthz, METRICS_EP_HEALTHZ);
    expect_route("GET", "/readyz", api_readyz, METRICS_EP_READYZ);
    expect_route("GET", "/metrics", api_metrics, METRICS_EP_METRICS);
    expect_route("POST", "/sessions", api_session_create, METRICS_EP_CREATE_SESSION);
    expect_route("GET", "/sessions/abc", api_session_get, METRICS_EP_GET_SESSION);
    expect_route("DELETE", "/sessions/abc", api_session_delete, METRICS_EP_DELETE_SESSION);
    expect_route("POST", "/forward", api_forward, METRICS_EP_FORWARD);
    expect_route("POST", "/backward", api_backward, METRICS_EP_BACKWARD);
    expect_route("GET", "/openapi.yaml", api_openapi, METRICS_EP_OPENAPI);
    expect_route("HEAD", "/healthz", api_healthz, METRICS_EP_HEALTHZ);
    expect_route("HEAD", "/sessions/abc", api_session_get, METRICS_EP_GET_SESSION);
    expect_route("GET", "/sessions", api_session_list, METRICS_EP_LIST_SESSIONS);
    expect_route("PATCH", "/sessions/abc", api_session_patch, METRICS_EP_PATCH_SESSION);
    expect_route("POST", "/sessions/n1.abc/forward", api_forward, METRICS_EP_FORWARD);
    expect_route("POST", "/sessions/abc/backward", api_backward, METRICS_EP_BACKWARD);
}

static void test_id_capture_and_flags(void **state)
{
    (void)state;
    route_match m;
    assert_int_equal(router_match("GET", "/sessions/0123abcd", &m), ROUTE_OK);
    assert_string_equal(m.id, "0123abcd");
    assert_false(m.has_body);
    assert_false(m.open);
    assert_int_equal(router_match("POST", "/sessions/n1.0123/backward", &m), ROUTE_OK);
    assert_string_equal(m.id, "n1.0123");
    assert_true(m.has_body);
    assert_int_equal(router_match("PATCH", "/sessions/0123", &m), ROUTE_OK);
    assert_true(m.has_body);
    assert_int_equal(router_match("POST", "/sessions/0123/forward/x", &m), ROUTE_NOT_FOUND);
    assert_int_equal(router_match("POST", "/sessions//forward", &m), ROUTE_NOT_FOUND);
    assert_int_equal(router_match("POST", "/forward", &m), ROUTE_OK);
    assert_true(m.has_body);
    assert_string_equal(m.id, "");
    assert_false(m.during_drain);
    assert_int_equal(router_match("GET", "/healthz", &m), ROUTE_OK);
    assert_true(m.open);
    assert_true(m.during_drain);
    assert_int_equal(router_match("GET", "/metrics", &m), ROUTE_OK);
    assert_false(m.open); /* metrics need the key when one is set */
    assert_true(m.during_drain);
    char longpath[300] = "/sessions/";
    memset(longpath + 10, 'a', 250);
    longpath[260] = '\0';
    assert_int_equal(router_match("GET", longpath, &m), ROUTE_OK);
    assert_int_equal(strlen(m.id), ROUTER_ID_MAX);
}

static void test_unknown_paths_are_404(void **state)
{
    (void)state;
    static const char *const paths[] = {"/nope",    "/sessions/", "/sessions/a/b", "/forward/",
                                        "/Forward", "",           "/healthz/x",    "//"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        route_match m;
        assert_int_equal(router_match("GET", paths[i], &m), ROUTE_NOT_FOUND);
        assert_null(m.handler);
        assert_int_equal(m.ep, METRICS_EP_OTHER);
    }
}

static void expect_405(const char *method, const char *path, const char *allow)
{
    route_match m;
    assert_int_equal(router_match(method, path, &m), ROUTE_METHOD_NOT_ALLOWED);
    assert_null(m.handler);
    assert_string_equal(m.allow, allow);
}

static void test_wrong_method_is_405_with_allow(void **state)
{
    (void)state;
    expect_405("GET", "/forward", "POST");
    expect_405("PUT", "/backward", "POST");
    expect_405("POST", "/sessions/abc", "GET, HEAD, DELETE, PATCH");
    expect_405("GET", "/sessions/abc/forward", "POST");
    expect_405("PUT", "/sessions", "POST, GET, HEAD");
    expect_405("POST", "/healthz", "GET, HEAD");
    expect_405("DELETE", "/", "GET, HEAD");
    route_match m;
    assert_int_equal(router_match("POST", "/readyz", &m), ROUTE_METHOD_NOT_ALLOWED);
    assert_true(m.open); /* exemptions follow the path */
    assert_int_equal(m.ep, METRICS_EP_READYZ);
}

static void test_metrics_render(void **state)
{
    (void)state;
    metrics_request(METRICS_EP_FORWARD, 200, 0.0003, 100, 50);
    metrics_request(METRICS_EP_FORWARD, 200, 0.002, 10, 5);
    metrics_request(METRICS_EP_BACKWARD, 409, 20.0, 1, 2);
    metrics_request(METRICS_EP_OTHER, 418, 0.1, 0, 0);
    metrics_compute(0.25);
    metrics_sessions ms = {.live = 3, .created = 5, .expired = 1, .evicted = 0, .deleted = 1};
    buf b;
    buf_init(&b);
    assert_int_equal(metrics_render(&b, &ms), 0);
    static const char *const must[] = {
        "# TYPE convd_requests_total counter\n",
        "convd_requests_total{endpoint=\"forward\",status=\"200\"} 2\n",
        "convd_requests_total{endpoint=\"backward\",status=\"409\"} 1\n",
        "convd_requests_total{endpoint=\"other\",status=\"other\"} 1\n",
        "# TYPE convd_request_duration_seconds histogram\n",
        "convd_request_duration_seconds_bucket{endpoint=\"forward\",le=\"0.0005\"} 1\n",
        "convd_request_duration_seconds_bucket{endpoint=\"forward\",le=\"0.0025\"} 2\n",
        "convd_request_duration_seconds_bucket{endpoint=\"backward\",le=\"10\"} 0\n",
        "convd_request_duration_seconds_bucket{endpoint=\"backward\",le=\"+Inf\"} 1\n",
        "convd_request_duration_seconds_count{endpoint=\"forward\"} 2\n",
        "convd_sessions_live 3\n",
        "convd_sessions_created_total 5\n",
        "convd_sessions_deleted_total 1\n",
        "convd_bytes_in_total 111\n",
        "convd_bytes_out_total 57\n",
        "convd_compute_seconds_total 0.25",
        "# HELP convd_sessions_evicted_total ",
    };
    for (size_t i = 0; i < sizeof must / sizeof must[0]; i++)
        if (!strstr(b.data, must[i]))
            fail_msg("metrics lack \"%s\" in:\n%s", must[i], b.data);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_endpoint_routes),
        cmocka_unit_test(test_id_capture_and_flags),
        cmocka_unit_test(test_unknown_paths_are_404),
        cmocka_unit_test(test_wrong_method_is_405_with_allow),
        cmocka_unit_test(test_metrics_render),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
