/*
 * test_abuse.c — bad clients must never crash, hang or leak the daemon (spec §5, last line):
 * bodies abandoned half way, answers never read, garbage bytes instead of HTTP, very long
 * paths, deep JSON nesting, odd string escapes in ids, many idle connections, more
 * connections from one address than it may hold. After each,
 * a normal request still works; the daemon exits 0 at the end (under ASan that also means
 * LeakSanitizer found nothing).
 */
#include "itest.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void still_serves(void)
{
    const notebook *nb = notebook_get();
    char *W = tt_json(nb->W.data, nb->W.rank, nb->W.shape, TT_NESTED, 64, 1);
    char *x = tt_json(nb->x.data, nb->x.rank, nb->x.shape, TT_NESTED, 64, 1);
    char *body = strf("{\"layer\":{\"W\":%s},\"x\":%s}", W, x);
    http_res r;
    req(dmn, "POST", "/forward", body, &r);
    expect_status(&r, 200);
    expect_tensor(jget(r.json, "y"), &nb->y, TT_NESTED, 0, 0, "y");
    http_res_free(&r);
    free(body);
    free(W);
    free(x);
}

static void send_and_close(const char *text, size_t n, int read_first)
{
    int fd = raw_connect(daemon_port(dmn));
    assert_true(fd >= 0);
    raw_send(fd, text, n); /* may fail once the daemon hangs up: that is fine */
    if (read_first)
        raw_read_response(fd, 500, NULL);
    close(fd);
}

static void test_abandoned_bodies(void **state)
{
    (void)state;
    const char *head = "POST /forward HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       "Content-Length: 100000\r\n\r\n{\"layer\":{\"W\":[[[[1]]]]},\"x\":[[[[";
    for (int i = 0; i < 20; i++)
        send_and_close(head, strlen(head), 0);
    /* A chunked body cut off in the middle of a chunk. */
    const char *chunked = "POST /backward HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "100\r\n{\"layer\":";
    for (int i = 0; i < 20; i++)
        send_and_close(chunked, strlen(chunked), 0);
    still_serves();
}

/* Requests whose answers are never read: the daemon must not block on them. */
static void test_answers_never_read(void **state)
{
    (void)state;
    int64_t shape[4] = {1, 1, 300, 300};
    ttensor x;
    tt_make(&x, 4, shape, NULL);
    for (size_t i = 0; i < x.n; i++)
        x.data[i] = (double)(i % 10);
    char *xs = tt_json(x.data, 4, shape, TT_BASE64, 64, 1);
    char *body =
        strf("{\"layer\":{\"in_channels\":1,\"out_channels\":8,\"kernel_size\":1,"
             "\"init\":{\"scheme\":\"normal\",\"seed\":1}},\"x\":%s,\"output\":\"nested\"}",
             xs);
    char *text = strf("POST /forward HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\n\r\n%s",
                      strlen(body), body);
    int fds[8];
    for (int i = 0; i < 8; i++) {
        fds[i] = raw_connect(daemon_port(dmn));
        assert_true(fds[i] >= 0);
        assert_int_equal(raw_send(fds[i], text, strlen(text)), 0);
    }
    still_serves();
    for (int i = 0; i < 8; i++)
        close(fds[i]);
    still_serves();
    free(text);
    free(body);
    free(xs);
    tt_free(&x);
}

static void test_garbage_and_odd_requests(void **state)
{
    (void)state;
    static const char garbage[] = "\x00\x01\x02GARBAGE \xff\xfe\r\n\r\n";
    send_and_close(garbage, sizeof garbage - 1, 1);
    static const char *const odd[] = {
        "GET / HTTP/9.9\r\n\r\n",
        "POST /forward HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        "POST /forward HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        "POST /forward HTTP/1.1\r\nContent-Length: 10\r\nContent-Length: 20\r\n\r\n{}",
        ("POST /forward HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
         "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    };
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++)
        send_and_close(odd[i], strlen(odd[i]), 1);
    char *longpath = malloc(20000);
    assert_non_null(longpath);
    memset(longpath, 'a', 19999);
    longpath[0] = '/';
    longpath[19999] = '\0';
    http_res r;
    if (http_do(NULL, daemon_url(dmn), "GET", longpath, NULL, 0, NULL, &r) == 0)
        assert_true(r.status >= 400 && r.status < 500);
    http_res_free(&r);
    free(longpath);
    req(dmn, "GET", "/sessions/%00%ff..%2f", NULL, &r);
    assert_true(r.status == 404 || r.status == 400);
    http_res_free(&r);
    req(dmn, "POST", "/forward", "{\"session\":\"\\u0000abc\",\"x\":[[[[1]]]]}", &r);
    assert_true(r.status == 404 || r.status == 400);
    http_res_free(&r);
    req(dmn, "POST", "/forward", "{\"session\":\"\\ud800\",\"x\":[[[[1]]]]}", &r);
    assert_true(r.status == 404 || r.status == 400);
    http_res_free(&r);
    still_serves();
}

static void test_deep_nesting(void **state)
{
    (void)state;
    size_t depth = 200000;
    char *body = malloc(2 * depth + 64);
    assert_non_null(body);
    size_t k = (size_t)sprintf(body, "{\"layer\":{\"W\":[[[[1]]]]},\"x\":");
    memset(body + k, '[', depth);
    k += depth;
    body[k++] = '1';
    memset(body + k, ']', depth);
    k += depth;
    body[k++] = '}';
    body[k] = '\0';
    http_res r;
    req(dmn, "POST", "/forward", body, &r);
    expect_error(&r, 400, "invalid_json|invalid_tensor", NULL);
    assert_true(r.seconds < 2);
    http_res_free(&r);
    free(body);
    still_serves();
}

static void test_many_idle_connections(void **state)
{
    (void)state;
    enum { IDLE = 64 };
    int fds[IDLE];
    for (int i = 0; i < IDLE; i++) {
        fds[i] = raw_connect(daemon_port(dmn));
        assert_true(fds[i] >= 0);
        if (i % 2)
            raw_send(fds[i], "GET /healthz HTTP/1.1\r\n", 23); /* headers never finished */
    }
    still_serves();
    for (int i = 0; i < IDLE; i++)
        close(fds[i]);
    still_serves();
}

/* One address holds at most max_connections_per_ip connections (3 here): a fourth is
 * closed at once, without an answer, and a freed slot serves again. */
static void test_connections_per_address(void **state)
{
    (void)state;
    static const char *const args[] = {"--max-connections-per-ip", "3", NULL};
    test_daemon *d = start_or_fail(args, NULL);
    int fds[3];
    for (int i = 0; i < 3; i++) {
        fds[i] = raw_connect(daemon_port(d));
        assert_true(fds[i] >= 0);
        raw_send(fds[i], "GET /healthz HTTP/1.1\r\n", 23); /* headers never finished */
    }
    sleep_ms(200); /* the daemon has accepted all three */
    http_res r;
    if (http_do(NULL, daemon_url(d), "GET", "/healthz", NULL, 0, NULL, &r) == 0)
        fail_msg("a 4th connection from one address was served (HTTP %ld)", r.status);
    http_res_free(&r);
    close(fds[0]);
    sleep_ms(200);
    req(d, "GET", "/healthz", NULL, &r);
    expect_status(&r, 200);
    http_res_free(&r);
    close(fds[1]);
    close(fds[2]);
    stop_expect_clean(d);
}

/* Clients that vanish mid-body are not "in flight": SIGTERM right after them must not wait
 * out the drain timeout (10 s here). */
static void test_vanished_clients_do_not_hold_the_drain(void **state)
{
    (void)state;
    static const char *const args[] = {"--drain-timeout", "10", NULL};
    test_daemon *d = start_or_fail(args, NULL);
    const char *head = "POST /forward HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       "Content-Length: 100000\r\n\r\n{\"layer\":";
    for (int i = 0; i < 3; i++) {
        int fd = raw_connect(daemon_port(d));
        assert_true(fd >= 0);
        raw_send(fd, head, strlen(head));
        close(fd);
    }
    sleep_ms(300);
    http_res r;
    req(d, "GET", "/healthz", NULL, &r);
    expect_status(&r, 200);
    http_res_free(&r);
    double t0 = now_sec();
    daemon_signal(d, SIGTERM);
    int ws = daemon_wait(d, 12000);
    double dt = now_sec() - t0;
    print_message("exit %d after %.3f s\n", ws, dt);
    char *log = daemon_log(d);
    daemon_kill(d);
    int bad = ws != 0 || dt > 3;
    if (bad)
        print_error("wait status %d after %.1f s: the daemon waited for clients that had "
                    "already disconnected; its log:\n%s\n",
                    ws, dt, log);
    free(log);
    if (bad)
        fail();
}

/* Nothing should be in flight at the end; a short drain bounds the damage if it is. */
static const char *const daemon_args[] = {"--drain-timeout", "2", NULL};

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_abandoned_bodies),
        cmocka_unit_test(test_answers_never_read),
        cmocka_unit_test(test_garbage_and_odd_requests),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_many_idle_connections),
        cmocka_unit_test(itest_daemon_exits_cleanly),
        cmocka_unit_test(test_vanished_clients_do_not_hold_the_drain),
        cmocka_unit_test(test_connections_per_address),
    };
    return ITEST_SHARED_MAIN(tests, daemon_args, NULL, NULL);
}
