/*
 * test_edge_framing.c — request smuggling, issue 13 item 2 (api.md §8.3): a request whose
 * framing is ambiguous gets one 400 invalid_argument and the connection is closed, so the
 * bytes behind it (here a pipelined GET /metrics) are never served. Each case runs over a
 * raw socket: one answer, then EOF. A well-framed pair on one connection shows the
 * pipelined request would be answered otherwise.
 */
#include "itest.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define NEXT "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

static const struct {
    const char *name, *head; /* head: request line and headers, then "\r\n" and the rest */
} bad[] = {
    {"Content-Length and Transfer-Encoding",
     "POST /forward HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n"
     "\r\n0\r\n\r\n"},
    {"Transfer-Encoding and Content-Length",
     "POST /forward HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n"
     "\r\n0\r\n\r\n"},
    {"two different Content-Lengths",
     "POST /forward HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 2\r\n\r\n{}   "},
    {"chunked with a space after it",
     "POST /forward HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked \r\n\r\n0\r\n\r\n"},
    {"space before the colon",
     "POST /forward HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"},
    {"unknown Transfer-Encoding",
     "POST /forward HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"},
    {"gzip, chunked",
     "POST /forward HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"},
    {"chunked twice",
     "POST /forward HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
     "chunked\r\n\r\n0\r\n\r\n"},
    {"HTTP/1.1 without Host", "GET /healthz HTTP/1.1\r\n\r\n"},
    {"two Hosts", "GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"},
};

/* Reads everything the daemon sends until EOF or 3 s pass; *eof says which. Caller frees. */
static char *read_all(int fd, int *eof)
{
    size_t len = 0, cap = 1 << 16;
    char *text = malloc(cap);
    assert_non_null(text);
    *eof = 0;
    double deadline = now_sec() + 3;
    while (now_sec() < deadline) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        if (cap - len < 4096) {
            cap *= 2;
            text = realloc(text, cap);
            assert_non_null(text);
        }
        ssize_t r = recv(fd, text + len, cap - len - 1, 0);
        if (r == 0 || (r < 0 && errno == ECONNRESET)) {
            *eof = 1;
            break;
        }
        if (r > 0)
            len += (size_t)r;
    }
    text[len] = '\0';
    return text;
}

/* How many answers text holds: status lines "HTTP/1.1 NNN " (an answer's body may end
 * right before the next one). */
static int answers(const char *text)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, "HTTP/1.1 ")) != NULL; p++)
        n += isdigit((unsigned char)p[9]) && isdigit((unsigned char)p[10]) &&
             isdigit((unsigned char)p[11]) && p[12] == ' ';
    return n;
}

/* Sends msg on a new connection and reads until EOF. */
static char *exchange(const char *msg, int *eof)
{
    int fd = raw_connect(daemon_port(dmn));
    assert_true(fd >= 0);
    assert_int_equal(raw_send(fd, msg, strlen(msg)), 0);
    char *text = read_all(fd, eof);
    close(fd);
    return text;
}

static void test_bad_framing_closes(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *msg = strf("%s%s", bad[i].head, NEXT);
        int eof;
        char *text = exchange(msg, &eof);
        free(msg);
        int n = answers(text);
        print_message("%s: %d answer(s), %s: %.12s\n", bad[i].name, n, eof ? "EOF" : "no EOF",
                      text);
        if (n != 1 || strncmp(text, "HTTP/1.1 400 ", 13) != 0 || !eof)
            fail_msg("%s: want one 400 and EOF, got %d answer(s)%s: %s", bad[i].name, n,
                     eof ? "" : " and no EOF", text);
        assert_non_null(strstr(text, "invalid_argument"));
        assert_non_null(strstr(text, "onnection: close"));
        assert_null(strstr(text, "convd_"));
        free(text);
    }
    /* the daemon is fine */
    http_res r;
    req(dmn, "GET", "/healthz", NULL, &r);
    expect_status(&r, 200);
    http_res_free(&r);
}

/* Control: well-framed requests pipelined on one connection are both answered, so the
 * cases above would have shown the second answer had the connection stayed open. */
static void test_good_framing_pipelines(void **state)
{
    (void)state;
    static const char *const good[] = {
        "POST /forward HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
        "POST /forward HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
        "Chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        "POST /forward HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
        "GET /healthz HTTP/1.0\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        int http10 = strstr(good[i], "HTTP/1.0") != NULL;
        char *msg =
            strf("%s%s", good[i],
                 http10 ? "" : "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        int eof;
        char *text = exchange(msg, &eof);
        free(msg);
        int want = http10 ? 1 : 2;
        if (answers(text) != want || !eof || (!http10 && !strstr(text, "convd_")))
            fail_msg("case %zu: want %d answers then EOF, got %d%s: %s", i, want, answers(text),
                     eof ? "" : " and no EOF", text);
        free(text);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_framing_closes),
        cmocka_unit_test(test_good_framing_pipelines),
        cmocka_unit_test(itest_daemon_exits_cleanly),
    };
    return ITEST_SHARED_MAIN(tests, NULL, NULL, NULL);
}
