/*
 * test_edge_drain.c — graceful stop, issue 13 item 5 (api.md §8.3). Requests already sent
 * on open keep-alive connections when SIGTERM comes are served (200, not 503); an idle
 * keep-alive connection is closed at once; and a body trickled below body_min_rate does not hold
 * shutdown for the drain timeout.
 */
#include "itest.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

enum { CONNS = 12 };

/* Reads one answer on fd: everything until its Content-Length is complete, EOF, a reset, or
 * 5 s. Its status when the whole answer came, else -1. *out gets the text (caller frees). */
static long read_answer(int fd, char **out)
{
    size_t len = 0, cap = 1 << 16;
    char *text = calloc(1, cap);
    assert_non_null(text);
    long status = -1;
    double deadline = now_sec() + 5;
    while (now_sec() < deadline && len + 1 < cap) {
        const char *end = strstr(text, "\r\n\r\n"), *cl = strcasestr(text, "Content-Length:");
        if (end && cl && cl < end && len >= (size_t)(end + 4 - text) + strtoul(cl + 15, NULL, 10)) {
            status = strtol(text + 9, NULL, 10);
            break;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        ssize_t r = recv(fd, text + len, cap - len - 1, 0);
        if (r <= 0)
            deadline = 0; /* one more look at what came */
        else
            len += (size_t)r;
    }
    *out = text;
    return status;
}

static char *notebook_request(void)
{
    const notebook *nb = notebook_get();
    char *W = tt_json(nb->W.data, nb->W.rank, nb->W.shape, TT_NESTED, 64, 1);
    char *x = tt_json(nb->x.data, nb->x.rank, nb->x.shape, TT_NESTED, 64, 1);
    char *body = strf("{\"layer\":{\"W\":%s},\"x\":%s}", W, x);
    char *msg = strf("POST /forward HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     strlen(body), body);
    free(W);
    free(x);
    free(body);
    return msg;
}

static void test_requests_sent_before_sigterm_are_served(void **state)
{
    (void)state;
    static const char *const args[] = {"--drain-timeout", "10", NULL};
    test_daemon *d = start_or_fail(args, NULL);
    char *msg = notebook_request();
    int fds[CONNS];
    /* open keep-alive connections, each with one request answered */
    for (int i = 0; i < CONNS; i++) {
        fds[i] = raw_connect(daemon_port(d));
        assert_true(fds[i] >= 0);
        assert_int_equal(raw_send(fds[i], msg, strlen(msg)), 0);
        assert_int_equal(raw_read_response(fds[i], 5000, NULL), 200);
    }
    int idle = raw_connect(daemon_port(d));
    assert_true(idle >= 0);
    static const char get[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(raw_send(idle, get, sizeof get - 1), 0);
    assert_int_equal(raw_read_response(idle, 5000, NULL), 200);
    /* a second request on each, then SIGTERM once they have arrived: the promise is for
     * requests whose headers the daemon had, and on a loaded machine the last send can
     * still sit in the socket when a signal sent at once lands (seen under ASan in CI) */
    for (int i = 0; i < CONNS; i++)
        assert_int_equal(raw_send(fds[i], msg, strlen(msg)), 0);
    poll(NULL, 0, 300);
    daemon_signal(d, SIGTERM);
    int ok = 0;
    for (int i = 0; i < CONNS; i++) {
        char *text = NULL;
        double t = now_sec();
        long st = read_answer(fds[i], &text);
        t = now_sec() - t;
        if (st == 200) {
            ok++;
        } else {
            print_message("connection %d: %ld after %.3f s [%s]\n", i, st, t, text ? text : "");
        }
        free(text);
        close(fds[i]);
    }
    print_message("%d of %d requests sent before SIGTERM answered 200\n", ok, CONNS);
    assert_int_equal(ok, CONNS);
    /* the idle connection was closed by the drain */
    struct pollfd p = {.fd = idle, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 2000), 1);
    char ch;
    assert_true(recv(idle, &ch, 1, 0) <= 0);
    close(idle);
    free(msg);
    assert_true(daemon_wait(d, 5000) != -1);
    assert_int_equal(daemon_stop(d), 0);
}

static void test_trickling_upload_does_not_hold_shutdown(void **state)
{
    (void)state;
    static const char *const args[] = {"--drain-timeout", "10", NULL};
    test_daemon *d = start_or_fail(args, NULL);
    int fd = raw_connect(daemon_port(d));
    assert_true(fd >= 0);
    static const char head[] = "POST /forward HTTP/1.1\r\nHost: x\r\nContent-Type: "
                               "application/json\r\nContent-Length: 100000\r\n\r\n{\"x\":[";
    assert_int_equal(raw_send(fd, head, sizeof head - 1), 0);
    for (int i = 0; i < 5; i++) { /* 20 B/s for half a second */
        assert_int_equal(raw_send(fd, "1,", 2), 0);
        sleep_ms(100);
    }
    double t0 = now_sec();
    daemon_signal(d, SIGTERM);
    int st = daemon_wait(d, 8000);
    double dt = now_sec() - t0;
    print_message("exited %.2f s after SIGTERM with a trickling upload (drain timeout 10 s)\n", dt);
    assert_true(st != -1);
    assert_int_equal(daemon_stop(d), 0);
    assert_true(dt < 3);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_requests_sent_before_sigterm_are_served),
        cmocka_unit_test(test_trickling_upload_does_not_hold_shutdown),
    };
    return ITEST_MAIN(tests, NULL, NULL);
}
