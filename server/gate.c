/*
 * gate.c — the checks that need no body (gate.h). Order and messages follow api.md §5:
 * a draining daemon refuses new work before anything else, then the API key, then the
 * route, then what the headers say about the body. A Content-Length over the limit is
 * refused here, so the body is never read.
 */
#include "gate.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Compares without an early exit, so response time says nothing about the key. */
static int key_matches(const char *sent, size_t sent_len, const char *key)
{
    size_t klen = strlen(key);
    unsigned char diff = (unsigned char)(sent_len != klen);
    for (size_t i = 0; i < klen; i++)
        diff |= (unsigned char)(key[i] ^ (i < sent_len ? sent[i] : 0));
    return diff == 0;
}

/* "Bearer <key>", spaces around the key ignored. */
static int authorized(const char *v, const char *key)
{
    if (!v || strncasecmp(v, "Bearer ", 7) != 0)
        return 0;
    v += 7;
    while (*v == ' ')
        v++;
    size_t len = strlen(v);
    while (len && v[len - 1] == ' ')
        len--;
    return key_matches(v, len, key);
}

int gate_json_content_type(const char *ct)
{
    if (!ct)
        return 1;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = strcspn(ct, ";");
    while (n && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    if (n == 0)
        return 1;
    static const char *const ok[] = {"application/json", "application/x-www-form-urlencoded"};
    for (size_t i = 0; i < 2; i++)
        if (strlen(ok[i]) == n && strncasecmp(ct, ok[i], n) == 0)
            return 1;
    return 0;
}

int gate_check(const srv_config *cfg, const gate_request *g, apierr *e)
{
    if (g->draining && !g->m->during_drain)
        return apierr_set(e, APIERR_SHUTTING_DOWN,
                          "convd is shutting down and takes no new work; retry on another "
                          "instance or after it restarts");
    if (cfg->api_key[0] && !g->m->open && !authorized(g->authorization, cfg->api_key))
        return apierr_set(e, APIERR_UNAUTHORIZED,
                          "this daemon requires an API key: send `Authorization: Bearer <key>`");
    if (g->rr == ROUTE_NOT_FOUND)
        return apierr_set(e, APIERR_NOT_FOUND, "no endpoint %.80s; GET / lists the endpoints",
                          g->path);
    if (g->rr == ROUTE_METHOD_NOT_ALLOWED)
        return apierr_set(e, APIERR_METHOD_NOT_ALLOWED, "%s is not allowed on %.80s; use %s",
                          g->method, g->path, g->m->allow);
    if (!g->m->has_body)
        return 0;
    if (!gate_json_content_type(g->content_type))
        return apierr_set(e, APIERR_UNSUPPORTED_MEDIA_TYPE,
                          "the body is declared as \"%.60s\"; send JSON with Content-Type: "
                          "application/json",
                          g->content_type);
    const char *cl = g->content_length;
    if (cl) {
        char *end;
        unsigned long long n = strtoull(cl, &end, 10);
        if (*cl >= '0' && *cl <= '9' && !*end && n > cfg->max_body_bytes)
            return apierr_set(e, APIERR_PAYLOAD_TOO_LARGE,
                              "the body is %llu bytes, over max_body_bytes = %llu; send a "
                              "smaller body (base64 tensors are about 3x smaller than JSON "
                              "numbers) or raise max_body_bytes",
                              n, (unsigned long long)cfg->max_body_bytes);
    }
    return 0;
}

/* A Content-Length is 1*DIGIT (RFC 9110 §8.6); a list ("5, 5") is refused too. */
static int is_length(const char *v)
{
    while (*v == ' ' || *v == '\t')
        v++;
    if (!isdigit((unsigned char)*v))
        return 0;
    while (isdigit((unsigned char)*v))
        v++;
    while (*v == ' ' || *v == '\t')
        v++;
    return *v == '\0';
}

/* Exactly "chunked" in any case: libmicrohttpd decodes nothing else as chunked (not even
 * with white space around it), and a body it would not decode has no known end. */
static int is_chunked(const char *v)
{
    return strcasecmp(v, "chunked") == 0;
}

int gate_frame_check(const gate_frame *f, apierr *e)
{
    static const char close_note[] = "; the connection is closed because where the next "
                                     "request would start is ambiguous";
    if (f->bad_name)
        return apierr_set(e, APIERR_INVALID_ARGUMENT,
                          "the header name \"%.60s\" contains white space; write `Name: value` "
                          "with no space before the colon%s",
                          f->bad_name, close_note);
    if (f->content_lengths && f->transfer_encodings)
        return apierr_set(e, APIERR_INVALID_ARGUMENT,
                          "the request has both Content-Length and Transfer-Encoding; send one "
                          "of them%s",
                          close_note);
    if (f->lengths_differ)
        return apierr_set(e, APIERR_INVALID_ARGUMENT,
                          "the request has Content-Length headers with different values; send "
                          "one%s",
                          close_note);
    if (f->content_lengths && !is_length(f->content_length))
        return apierr_set(e, APIERR_INVALID_ARGUMENT,
                          "Content-Length \"%.40s\" is not a byte count; send digits only%s",
                          f->content_length, close_note);
    if (f->transfer_encodings > 1 || (f->transfer_encodings && !is_chunked(f->transfer_encoding)))
        return apierr_set(e, APIERR_INVALID_ARGUMENT,
                          "Transfer-Encoding \"%.40s\" is not supported; send the body with a "
                          "Content-Length or as `Transfer-Encoding: chunked` alone%s",
                          f->transfer_encodings > 1 ? "(several lines)" : f->transfer_encoding,
                          close_note);
    if (f->http11 && f->hosts != 1)
        return apierr_set(e, APIERR_INVALID_ARGUMENT,
                          "an HTTP/1.1 request needs exactly one Host header (it has %d)%s",
                          f->hosts, close_note);
    return 0;
}
