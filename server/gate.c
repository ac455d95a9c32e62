/*
 * gate.c — the checks that need no body (gate.h). Order and messages follow api.md §5:
 * a draining daemon refuses new work before anything else, then the API key, then the
 * route, then what the headers say about the body. A Content-Length over the limit is
 * refused here, so the body is never read.
 */
#include "gate.h"

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
