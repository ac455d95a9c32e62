/*
 * test_edge_slow.c — slow clients, issue 13 item 3 (api.md §8.3), with deadlines made
 * short by flags so the test takes seconds. Slow clients from several loopback addresses
 * (127.0.0.2 ...) take every connection (max_connections 4) by trickling their headers a
 * byte at a time: a newcomer is locked out at first, and served once header_timeout has
 * closed them. A body trickled below body_min_rate is closed once header_timeout has
 * passed; an idle keep-alive connection is closed after connection_timeout.
 */
#include "itest.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { SLOW = 4 };

/* 1 when the peer closed fd (EOF or reset), 0 when it is still open (nothing to read). */
static int peer_closed(int fd)
{
    char tmp[512];
    for (;;) {
        ssize_t r = recv(fd, tmp, sizeof tmp, MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            return 1;
        if (r < 0)
            return 0;
    }
}

/* A GET /healthz from 127.0.0.1 on a new connection: its status, or -1 (closed unanswered,
 * or no answer within wait_ms: at the connection limit, it waits in the listen backlog). */
static long newcomer(test_daemon *d, int wait_ms)
{
    int fd = raw_connect(daemon_port(d));
    if (fd < 0)
        return -1;
    static const char get[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    long st = raw_send(fd, get, sizeof get - 1) == 0 ? raw_read_response(fd, wait_ms, NULL) : -1;
    close(fd);
    return st;
}

static void test_slow_headers_lose_their_connections(void **state)
{
    (void)state;
    static const char *const args[] = {"--threads",
                                       "1",
                                       "--max-connections",
                                       "4",
                                       "--header-timeout",
                                       "1",
                                       "--max-connections-per-ip",
                                       "0",
                                       NULL};
    test_daemon *d = start_or_fail(args, NULL);
    static const char *const from[SLOW] = {"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"};
    static const char head[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    int fds[SLOW];
    double t0 = now_sec();
    for (int i = 0; i < SLOW; i++) {
        fds[i] = raw_connect_from(daemon_port(d), from[i]);
        assert_true(fds[i] >= 0);
        assert_int_equal(raw_send(fds[i], head, sizeof head - 1), 0);
    }
    sleep_ms(100); /* accepted */
    long first = newcomer(d, 300);
    print_message("newcomer while %d slow clients hold every connection: %ld\n", SLOW, first);
    assert_int_equal(first, -1);

    /* trickle a byte every 100 ms until the daemon closes each, at most 5 s */
    double closed_at[SLOW] = {0};
    int open = SLOW;
    while (open && now_sec() - t0 < 5) {
        for (int i = 0; i < SLOW; i++) {
            if (closed_at[i] > 0)
                continue;
            if (peer_closed(fds[i]) || send(fds[i], "a", 1, MSG_NOSIGNAL) != 1) {
                closed_at[i] = now_sec() - t0;
                open--;
            }
        }
        sleep_ms(100);
    }
    for (int i = 0; i < SLOW; i++) {
        print_message("slow client %s closed after %.2f s\n", from[i], closed_at[i]);
        if (closed_at[i] == 0)
            fail_msg("slow client %s still open after 5 s of trickled headers", from[i]);
        assert_true(closed_at[i] > 0.8); /* not before header_timeout */
        close(fds[i]);
    }
    long later = -1;
    for (int tries = 0; tries < 20 && later != 200; tries++) {
        later = newcomer(d, 1000);
        if (later != 200)
            sleep_ms(100);
    }
    assert_int_equal(later, 200);
    stop_expect_clean(d);
}

static void test_slow_body_is_closed(void **state)
{
    (void)state;
    static const char *const args[] = {"--header-timeout", "1", "--body-min-rate", "1000", NULL};
    test_daemon *d = start_or_fail(args, NULL);
    int fd = raw_connect_from(daemon_port(d), "127.0.0.6");
    assert_true(fd >= 0);
    static const char head[] = "POST /forward HTTP/1.1\r\nHost: x\r\nContent-Type: "
                               "application/json\r\nContent-Length: 100000\r\n\r\n{\"x\":[";
    assert_int_equal(raw_send(fd, head, sizeof head - 1), 0);
    double t0 = now_sec(), closed = 0;
    while (now_sec() - t0 < 5) {
        /* 10 bytes every 100 ms: 100 B/s, a tenth of the minimum */
        if (peer_closed(fd) || send(fd, "1,1,1,1,1,", 10, MSG_NOSIGNAL) != 10) {
            closed = now_sec() - t0;
            break;
        }
        sleep_ms(100);
    }
    close(fd);
    print_message("body at 100 B/s closed after %.2f s\n", closed);
    assert_true(closed > 0.8 && closed < 3);
    http_res r;
    req(d, "GET", "/healthz", NULL, &r);
    expect_status(&r, 200);
    http_res_free(&r);
    stop_expect_clean(d);
}

static void test_idle_keepalive_is_closed(void **state)
{
    (void)state;
    static const char *const args[] = {"--connection-timeout", "1", NULL};
    test_daemon *d = start_or_fail(args, NULL);
    int fd = raw_connect(daemon_port(d));
    assert_true(fd >= 0);
    static const char get[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(raw_send(fd, get, sizeof get - 1), 0);
    assert_int_equal(raw_read_response(fd, 2000, NULL), 200);
    double t0 = now_sec(), closed = 0;
    while (now_sec() - t0 < 5) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) > 0 && peer_closed(fd)) {
            closed = now_sec() - t0;
            break;
        }
    }
    close(fd);
    print_message("idle keep-alive connection closed after %.2f s\n", closed);
    assert_true(closed > 0.5 && closed < 3.5);
    stop_expect_clean(d);
}

/* The settings are checked like every other. */
static void test_settings_refuse_bad_values(void **state)
{
    (void)state;
    static const char *const bad[][3] = {
        {"--header-timeout", "0", NULL},
        {"--body-min-rate", "-1", NULL},
        {"--connection-timeout", "x", NULL},
        {"--max-connections", "0", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *out = NULL;
        int rc = daemon_run_cli(bad[i], NULL, 5000, &out);
        print_message("%s %s -> %d\n", bad[i][0], bad[i][1], rc);
        assert_int_equal(rc, 2);
        assert_non_null(strstr(out, bad[i][0] + 2));
        free(out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slow_headers_lose_their_connections),
        cmocka_unit_test(test_slow_body_is_closed),
        cmocka_unit_test(test_idle_keepalive_is_closed),
        cmocka_unit_test(test_settings_refuse_bad_values),
    };
    return ITEST_MAIN(tests, NULL, NULL);
}
