/*
 * client.h — HTTP requests to the daemon under test: libcurl for ordinary requests, and a
 * raw TCP socket for what curl will not send (a Content-Length with no body behind it, a
 * body sent slowly in pieces, a chunked body).
 * Ownership: an http_res owns its body and parsed JSON; http_res_free releases both.
 */
#ifndef ITEST_CLIENT_H
#define ITEST_CLIENT_H

#include <stddef.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

typedef struct http_res {
    long status; /* HTTP status; 0 when the transport failed (see curl_rc) */
    int curl_rc; /* CURLcode */
    char *body;  /* NUL-terminated; "" when empty */
    size_t len;
    size_t cap;  /* bytes allocated for body while it arrives */
    cJSON *json; /* body parsed as JSON, NULL if it is not JSON */
    int has_session_id;
    char session_id[192]; /* X-Session-Id */
    char location[256];
    char allow[128];
    char content_type[128];
    double seconds; /* wall time of the request */
} http_res;

/* One request. body NULL: no body (len ignored). headers: NULL-terminated "Name: value"
 * lines, may be NULL. When a body is sent without a Content-Type line in headers,
 * "Content-Type: application/json" is added; a line "Content-Type:" sends none at all.
 * handle: an easy handle to reuse (its connection is kept alive), or NULL for a fresh one.
 * Returns 0 when an HTTP answer arrived, -1 otherwise (r->curl_rc says why). */
int http_do(CURL *handle, const char *base, const char *method, const char *path, const char *body,
            size_t len, const char *const *headers, http_res *r);

void http_res_free(http_res *r);

/* From now on http_do trusts the PEM certificate(s) in path for https URLs (NULL: the
 * system's store again). */
void http_set_cainfo(const char *path);

/* A blocking TCP connection to 127.0.0.1:port; -1 on failure. */
int raw_connect(int port);
/* The same from the loopback address `from` ("127.0.0.2"; NULL: any). */
int raw_connect_from(int port, const char *from);
/* Writes all n bytes (MSG_NOSIGNAL). 0 or -1. */
int raw_send(int fd, const void *p, size_t n);
/* Reads one HTTP response (headers, then Content-Length bytes, or until EOF) within
 * timeout_ms. Returns the status code, or -1 on timeout/garbage. *out (may be NULL) gets
 * the raw text (caller frees). */
long raw_read_response(int fd, int timeout_ms, char **out);

#endif /* ITEST_CLIENT_H */
