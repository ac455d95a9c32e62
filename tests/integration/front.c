/*
 * front.c — requests through a router, and routable ids (see front.h).
 */
#include "front.h"

#include <string.h>

#include "itest.h"

void front_do(const char *base, const char *method, const char *path, const char *body,
              const char *sid, http_res *r)
{
    char hdr[160];
    const char *hdrs[] = {hdr, NULL};
    snprintf(hdr, sizeof hdr, "X-Session-Id: %s", sid ? sid : "");
    if (http_do(NULL, base, method, path, body, body ? strlen(body) : 0, sid ? hdrs : NULL, r) != 0)
        fail_msg("%s %s%s: no answer (curl %d)", method, base, path, r->curl_rc);
}

void front_id_node(const char *id, char *name, size_t n)
{
    const char *dot = strchr(id, '.');
    if (!dot || dot == id || (size_t)(dot - id) >= n || strlen(dot + 1) != 32 ||
        strspn(dot + 1, "0123456789abcdef") != 32 ||
        strspn(id, "abcdefghijklmnopqrstuvwxyz0123456789-") != (size_t)(dot - id))
        fail_msg("session id '%s' is not NODE.<32 lowercase hex>", id);
    memcpy(name, id, (size_t)(dot - id));
    name[dot - id] = '\0';
}
