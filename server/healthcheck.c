/*
 * healthcheck.c — a minimal HTTP client for the container health probe: parse an http:// or
 * https:// URL, resolve, connect with a deadline (non-blocking connect + poll), send a GET,
 * and read the status line. HTTPS goes through GnuTLS (which libmicrohttpd serves it with)
 * without checking the certificate: the probe sends no key and reads only a status from the
 * daemon it was pointed at. No redirects.
 */
#include "healthcheck.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

static int wait_fd(int fd, short ev, double deadline)
{
    double left = deadline - clock_mono();
    if (left <= 0)
        return -1;
    struct pollfd p = {.fd = fd, .events = ev};
    int r;
    do
        r = poll(&p, 1, (int)(left * 1000) + 1);
    while (r < 0 && errno == EINTR);
    return r == 1 ? 0 : -1;
}

/* One connection, plain or TLS (tls NULL: plain). */
typedef struct conn {
    int fd;
    gnutls_session_t tls;
    gnutls_certificate_credentials_t cred;
} conn;

/* Waits for the direction a TLS call that returned EAGAIN needs, or the plain one. */
static int wait_io(const conn *c, short plain, double deadline)
{
    short ev = plain;
    if (c->tls)
        ev = gnutls_record_get_direction(c->tls) ? POLLOUT : POLLIN;
    return wait_fd(c->fd, ev, deadline);
}

/* Starts TLS on c->fd (connected, non-blocking). 0, or -1 with err set. */
static int tls_start(conn *c, const char *host, double deadline, char *err, size_t n)
{
    int rc = gnutls_certificate_allocate_credentials(&c->cred);
    if (rc == 0)
        rc = gnutls_init(&c->tls, GNUTLS_CLIENT | GNUTLS_NONBLOCK);
    if (rc == 0)
        rc = gnutls_set_default_priority(c->tls);
    if (rc == 0)
        rc = gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, c->cred);
    if (rc == 0 && strspn(host, "0123456789.:abcdefABCDEF") != strlen(host))
        rc = gnutls_server_name_set(c->tls, GNUTLS_NAME_DNS, host, strlen(host));
    if (rc != 0) {
        snprintf(err, n, "TLS setup: %s", gnutls_strerror(rc));
        return -1;
    }
    gnutls_transport_set_int(c->tls, c->fd);
    do {
        rc = gnutls_handshake(c->tls);
    } while (rc < 0 && !gnutls_error_is_fatal(rc) && wait_io(c, POLLIN, deadline) == 0);
    if (rc < 0) {
        snprintf(err, n, "TLS handshake with %s failed: %s", host, gnutls_strerror(rc));
        return -1;
    }
    return 0;
}

static void conn_close(conn *c)
{
    if (c->tls)
        gnutls_deinit(c->tls);
    if (c->cred)
        gnutls_certificate_free_credentials(c->cred);
    close(c->fd);
}

/* send/recv on c: bytes moved, 0 at EOF, -1 on error; EAGAIN is waited out. */
static ssize_t conn_io(conn *c, int out, char *buf, size_t len, double deadline)
{
    for (;;) {
        ssize_t r;
        if (c->tls) {
            r = out ? gnutls_record_send(c->tls, buf, len) : gnutls_record_recv(c->tls, buf, len);
            if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
                if (wait_io(c, out ? POLLOUT : POLLIN, deadline))
                    return -1;
                continue;
            }
            return r < 0 ? -1 : r;
        }
        r = out ? send(c->fd, buf, len, MSG_NOSIGNAL) : recv(c->fd, buf, len, 0);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (wait_fd(c->fd, out ? POLLOUT : POLLIN, deadline))
                return -1;
            continue;
        }
        return r;
    }
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
    int tls = strncasecmp(url, "https://", 8) == 0;
    if (!tls && strncasecmp(url, "http://", 7) != 0) {
        snprintf(err, n, "healthcheck URL must start with http:// or https://, not \"%s\"", url);
        return -1;
    }
    const char *hp = url + (tls ? 8 : 7);
    size_t hp_len = strcspn(hp, "/?");
    const char *path = hp[hp_len] ? hp + hp_len : "/";
    char host[256], port[8];
    snprintf(port, sizeof port, "%s", tls ? "443" : "80");
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

    double deadline = clock_mono() + timeout_s;
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
    conn c = {.fd = fd};
    if (tls && tls_start(&c, host, deadline, err, n) != 0) {
        conn_close(&c);
        return -1;
    }
    char reqbuf[1024];
    int len = snprintf(reqbuf, sizeof reqbuf,
                       "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: convd-healthcheck\r\n"
                       "Connection: close\r\n\r\n",
                       path, hostport);
    if (len < 0 || (size_t)len >= sizeof reqbuf) {
        snprintf(err, n, "healthcheck URL too long");
        conn_close(&c);
        return -1;
    }
    for (int off = 0; off < len;) {
        ssize_t w = conn_io(&c, 1, reqbuf + off, (size_t)(len - off), deadline);
        if (w <= 0) {
            snprintf(err, n, "send to %s:%s failed: %s", host, port,
                     errno ? strerror(errno) : "timed out");
            conn_close(&c);
            return -1;
        }
        off += (int)w;
    }
    char resp[64];
    size_t got = 0;
    while (got < sizeof resp - 1) {
        ssize_t r = conn_io(&c, 0, resp + got, sizeof resp - 1 - got, deadline);
        if (r <= 0)
            break;
        got += (size_t)r;
        if (memchr(resp, '\n', got))
            break;
    }
    conn_close(&c);
    resp[got] = '\0';
    int status = healthcheck_status(resp);
    if (status < 0) {
        snprintf(err, n, "no HTTP answer from %s:%s within %g s", host, port, timeout_s);
        return -1;
    }
    return status;
}
