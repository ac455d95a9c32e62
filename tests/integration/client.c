/*
 * client.c — libcurl and raw-socket HTTP for the integration tests (see client.h).
 * Headers of interest are captured from the final response only: a new status line
 * (after a 100 Continue, say) clears what an earlier one left.
 */
#include "client.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    http_res *r = arg;
    size_t add = size * n;
    if (r->len + add + 1 > r->cap) {
        /* doubling: a 22 MB answer in 16 KB pieces would otherwise be copied ~1,400 times
         * (minutes under ASan, whose realloc maps fresh memory each time) */
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + add + 1)
            cap *= 2;
        char *q = realloc(r->body, cap);
        if (!q)
            return 0;
        r->body = q;
        r->cap = cap;
    }
    memcpy(r->body + r->len, p, add);
    r->len += add;
    r->body[r->len] = '\0';
    return add;
}

/* Copies the value of "Name: value\r\n" into dst when the name matches. */
static void grab(const char *line, size_t n, const char *name, char *dst, size_t cap, int *seen)
{
    size_t k = strlen(name);
    if (n <= k || strncasecmp(line, name, k) != 0 || line[k] != ':')
        return;
    const char *v = line + k + 1;
    const char *end = line + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    size_t len = (size_t)(end - v);
    if (len >= cap)
        len = cap - 1;
    memcpy(dst, v, len);
    dst[len] = '\0';
    if (seen)
        *seen = 1;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    http_res *r = arg;
    size_t len = size * n;
    if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {
        r->has_session_id = 0;
        r->session_id[0] = r->location[0] = r->allow[0] = r->content_type[0] = '\0';
    }
    grab(p, len, "X-Session-Id", r->session_id, sizeof r->session_id, &r->has_session_id);
    grab(p, len, "Location", r->location, sizeof r->location, NULL);
    grab(p, len, "Allow", r->allow, sizeof r->allow, NULL);
    grab(p, len, "Content-Type", r->content_type, sizeof r->content_type, NULL);
    return len;
}

static char cainfo[1024]; /* http_set_cainfo */

void http_set_cainfo(const char *path)
{
    snprintf(cainfo, sizeof cainfo, "%s", path ? path : "");
}

int http_do(CURL *handle, const char *base, const char *method, const char *path, const char *body,
            size_t len, const char *const *headers, http_res *r)
{
    memset(r, 0, sizeof *r);
    CURL *h = handle ? handle : curl_easy_init();
    if (!h) {
        r->curl_rc = CURLE_FAILED_INIT;
        r->body = strdup("");
        return -1;
    }
    if (handle)
        curl_easy_reset(h);
    char url[2048];
    snprintf(url, sizeof url, "%s%s", base, path);
    struct curl_slist *hl = NULL;
    int has_ct = 0;
    for (size_t i = 0; headers && headers[i]; i++) {
        if (strncasecmp(headers[i], "Content-Type:", 13) == 0)
            has_ct = 1;
        hl = curl_slist_append(hl, headers[i]);
    }
    if (body && !has_ct)
        hl = curl_slist_append(hl, "Content-Type: application/json");
    hl = curl_slist_append(hl, "Expect:");
    curl_easy_setopt(h, CURLOPT_URL, url);
    if (cainfo[0])
        curl_easy_setopt(h, CURLOPT_CAINFO, cainfo);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    } else if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    }
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    double t0 = now_s();
    CURLcode rc = curl_easy_perform(h);
    r->seconds = now_s() - t0;
    r->curl_rc = (int)rc;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hl);
    if (!handle)
        curl_easy_cleanup(h);
    if (!r->body)
        r->body = strdup("");
    if (r->body && r->len > 0)
        r->json = cJSON_ParseWithLength(r->body, r->len);
    return r->status > 0 ? 0 : -1;
}

void http_res_free(http_res *r)
{
    cJSON_Delete(r->json);
    free(r->body);
    memset(r, 0, sizeof *r);
}

int raw_connect(int port)
{
    return raw_connect_from(port, NULL);
}

int raw_connect_from(int port, const char *from)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in src = {.sin_family = AF_INET};
    if (from && (inet_pton(AF_INET, from, &src.sin_addr) != 1 ||
                 bind(fd, (struct sockaddr *)&src, sizeof src) != 0)) {
        close(fd);
        return -1;
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int raw_send(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Content-Length of a header block, or -1 when absent. */
static long header_length(const char *hdr, size_t n)
{
    for (const char *p = hdr; p && p < hdr + n; p = memchr(p, '\n', (size_t)(hdr + n - p))) {
        if (*p == '\n')
            p++;
        if (strncasecmp(p, "Content-Length:", 15) == 0)
            return strtol(p + 15, NULL, 10);
    }
    return -1;
}

long raw_read_response(int fd, int timeout_ms, char **out)
{
    char *text = NULL;
    size_t len = 0, cap = 0, hlen = 0;
    long cl = -1, status = -1;
    double deadline = now_s() + timeout_ms / 1e3;
    for (;;) {
        if (!hlen && text) {
            /* Found once: rescanning a 16 MB body after every read would be quadratic. */
            const char *end = strstr(text, "\r\n\r\n");
            if (end) {
                hlen = (size_t)(end - text) + 4;
                cl = header_length(text, hlen);
            }
        }
        if (hlen && cl >= 0 && len >= hlen + (size_t)cl)
            break;
        int left = (int)((deadline - now_s()) * 1e3);
        if (left <= 0)
            goto done;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int pr = poll(&pfd, 1, left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            goto done;
        if (len + 65536 + 1 > cap) {
            size_t ncap = cap ? cap * 2 : 65536 * 2;
            char *p = realloc(text, ncap);
            if (!p)
                goto done;
            text = p;
            cap = ncap;
        }
        ssize_t r = recv(fd, text + len, 65536, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
        text[len] = '\0';
    }
    if (text && strncmp(text, "HTTP/1.", 7) == 0 && len > 12 && isdigit((unsigned char)text[9]))
        status = strtol(text + 9, NULL, 10);
done:
    if (out)
        *out = text ? text : strdup("");
    else
        free(text);
    return status;
}
