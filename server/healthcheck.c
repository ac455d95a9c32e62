/*
 * healthcheck.c — a minimal HTTP client for the container health probe: parse an http://
 * URL, resolve, connect with a deadline (non-blocking connect + poll), send a GET, and read
 * the status line. No TLS, no redirects: it only ever talks to the daemon itself.
 */
#include "healthcheck.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int wait_fd(int fd, short ev, double deadline)
{
    double left = deadline - mono();
    if (left <= 0)
        return -1;
    struct pollfd p = {.fd = fd, .events = ev};
    int r;
    do
        r = poll(&p, 1, (int)(left * 1000) + 1);
    while (r < 0 && errno == EINTR);
    return r == 1 ? 0 : -1;
}

/* A run of 1+ ASCII digits at p followed by `after`: the byte past `after`, or NULL. */
static const char *digits_then(const char *p, char after)
{
    size_t n = strspn(p, "0123456789");
    return n > 0 && p[n] == after ? p + n + 1 : NULL;
}

int healthcheck_status(const char *resp)
{
    /* HTTP/x.y SP 3DIGIT (RFC 9112 §4). Exactly three digits, so an odd peer's long number
     * is rejected rather than overflowing an int. */
    const char *p = strncmp(resp, "HTTP/", 5) == 0 ? digits_then(resp + 5, '.') : NULL;
    if (p)
        p = digits_then(p, ' ');
    if (!p || strspn(p, "0123456789") != 3)
        return -1;
    return (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
}

int healthcheck_get(const char *url, double timeout_s, char *err, size_t n)
{
    if (strncasecmp(url, "http://", 7) != 0) {
        snprintf(err, n, "healthcheck URL must start with http://, not \"%s\"", url);
        return -1;
    }
    const char *hp = url + 7;
    size_t hp_len = strcspn(hp, "/?");
    const char *path = hp[hp_len] ? hp + hp_len : "/";
    char host[256], port[8] = "80";
    if (hp_len == 0 || hp_len >= sizeof host) {
        snprintf(err, n, "healthcheck URL has no host or a host too long: \"%s\"", url);
        return -1;
    }
    char hostport[256];
    memcpy(hostport, hp, hp_len);
    hostport[hp_len] = '\0';
    char *colon;
    if (hostport[0] == '[') {
        char *close = strchr(hostport, ']');
        if (!close) {
            snprintf(err, n, "healthcheck URL has an unclosed [ in \"%s\"", url);
            return -1;
        }
        *close = '\0';
        snprintf(host, sizeof host, "%s", hostport + 1);
        colon = close[1] == ':' ? close + 1 : NULL;
    } else {
        colon = strrchr(hostport, ':');
        if (colon)
            *colon = '\0';
        snprintf(host, sizeof host, "%s", hostport);
    }
    if (colon) {
        char *end;
        long p = strtol(colon + 1, &end, 10);
        if (*end || p < 1 || p > 65535) {
            snprintf(err, n, "healthcheck URL has a bad port in \"%s\"", url);
            return -1;
        }
        snprintf(port, sizeof port, "%ld", p);
    }

    double deadline = mono() + timeout_s;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, n, "cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(err, n, "socket: %s", strerror(errno));
        freeaddrinfo(res);
        return -1;
    }
    rc = connect(fd, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if ((rc < 0 && errno != EINPROGRESS) ||
        (rc < 0 && (wait_fd(fd, POLLOUT, deadline) ||
                    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) || soerr))) {
        snprintf(err, n, "cannot connect to %s:%s: %s", host, port,
                 strerror(soerr   ? soerr
                          : errno ? errno
                                  : ETIMEDOUT));
        close(fd);
        return -1;
    }
    char reqbuf[1024];
    int len = snprintf(reqbuf, sizeof reqbuf,
                       "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: convd-healthcheck\r\n"
                       "Connection: close\r\n\r\n",
                       path, hostport);
    if (len < 0 || (size_t)len >= sizeof reqbuf) {
        snprintf(err, n, "healthcheck URL too long");
        close(fd);
        return -1;
    }
    for (int off = 0; off < len;) {
        ssize_t w = send(fd, reqbuf + off, (size_t)(len - off), MSG_NOSIGNAL);
        if (w < 0 && errno == EAGAIN && wait_fd(fd, POLLOUT, deadline) == 0)
            continue;
        if (w <= 0) {
            snprintf(err, n, "send to %s:%s failed: %s", host, port, strerror(errno));
            close(fd);
            return -1;
        }
        off += (int)w;
    }
    char resp[64];
    size_t got = 0;
    while (got < sizeof resp - 1) {
        ssize_t r = recv(fd, resp + got, sizeof resp - 1 - got, 0);
        if (r < 0 && errno == EAGAIN && wait_fd(fd, POLLIN, deadline) == 0)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
        if (memchr(resp, '\n', got))
            break;
    }
    close(fd);
    resp[got] = '\0';
    int status = healthcheck_status(resp);
    if (status < 0) {
        snprintf(err, n, "no HTTP answer from %s:%s within %g s", host, port, timeout_s);
        return -1;
    }
    return status;
}
