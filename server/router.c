/*
 * router.c — a table of {method, pattern, handler} in the style of the MHD examples'
 * pages[]. Patterns are literal paths, or a prefix ending in "/" followed by one
 * non-empty segment captured as {id} and an optional literal suffix (/sessions/{id}/forward). The table also carries each route's metrics label
 * and its auth/drain exemptions, so http.c needs no per-path logic of its own.
 */
#include "router.h"

#include <stdio.h>
#include <string.h>

#include "api_openapi.h"

typedef struct route {
    const char *method;
    const char *path; /* literal, or a prefix when `capture` */
    int capture;      /* path + one segment (→ m->id) + suffix */
    const char *suffix;
    api_handler handler;
    metrics_endpoint ep;
    int open, during_drain;
} route;

static const route routes[] = {
    {"GET", "/", 0, "", api_root, METRICS_EP_ROOT, 0, 0},
    {"GET", "/healthz", 0, "", api_healthz, METRICS_EP_HEALTHZ, 1, 1},
    {"GET", "/readyz", 0, "", api_readyz, METRICS_EP_READYZ, 1, 1},
    {"GET", "/metrics", 0, "", api_metrics, METRICS_EP_METRICS, 0, 1},
    {"GET", "/openapi.yaml", 0, "", api_openapi, METRICS_EP_OPENAPI, 0, 0},
    {"POST", "/sessions", 0, "", api_session_create, METRICS_EP_CREATE_SESSION, 0, 0},
    {"GET", "/sessions", 0, "", api_session_list, METRICS_EP_LIST_SESSIONS, 0, 0},
    {"GET", "/sessions/", 1, "", api_session_get, METRICS_EP_GET_SESSION, 0, 0},
    {"DELETE", "/sessions/", 1, "", api_session_delete, METRICS_EP_DELETE_SESSION, 0, 0},
    {"PATCH", "/sessions/", 1, "", api_session_patch, METRICS_EP_PATCH_SESSION, 0, 0},
    {"POST", "/sessions/", 1, "/forward", api_forward, METRICS_EP_FORWARD, 0, 0},
    {"POST", "/sessions/", 1, "/backward", api_backward, METRICS_EP_BACKWARD, 0, 0},
    {"POST", "/forward", 0, "", api_forward, METRICS_EP_FORWARD, 0, 0},
    {"POST", "/backward", 0, "", api_backward, METRICS_EP_BACKWARD, 0, 0},
};
#define NROUTES (sizeof routes / sizeof routes[0])

static int path_matches(const route *r, const char *path, const char **seg)
{
    if (!r->capture)
        return strcmp(path, r->path) == 0;
    size_t n = strlen(r->path);
    if (strncmp(path, r->path, n) != 0)
        return 0;
    const char *s = path + n;
    size_t len = strcspn(s, "/");
    if (len == 0 || strcmp(s + len, r->suffix) != 0)
        return 0;
    *seg = s;
    return 1;
}

static void allow_add(char *allow, size_t cap, const char *method)
{
    if (strstr(allow, method))
        return;
    size_t len = strlen(allow);
    size_t need = strlen(method) + (len ? 2 : 0);
    if (len + need + 1 > cap)
        return;
    if (len)
        strcat(allow, ", ");
    strcat(allow, method);
}

route_result router_match(const char *method, const char *path, route_match *m)
{
    memset(m, 0, sizeof *m);
    m->ep = METRICS_EP_OTHER;
    int is_head = strcmp(method, "HEAD") == 0;
    int path_known = 0;
    for (size_t i = 0; i < NROUTES; i++) {
        const route *r = &routes[i];
        const char *seg = NULL;
        if (!path_matches(r, path, &seg))
            continue;
        path_known = 1;
        allow_add(m->allow, sizeof m->allow, r->method);
        if (strcmp(r->method, "GET") == 0)
            allow_add(m->allow, sizeof m->allow, "HEAD");
        if (m->handler)
            continue; /* keep collecting Allow */
        if (strcmp(method, r->method) == 0 || (is_head && strcmp(r->method, "GET") == 0)) {
            m->handler = r->handler;
            m->ep = r->ep;
            m->has_body = strcmp(r->method, "POST") == 0 || strcmp(r->method, "PATCH") == 0;
            m->open = r->open;
            m->during_drain = r->during_drain;
            if (seg) {
                size_t n = strcspn(seg, "/");
                if (n > ROUTER_ID_MAX)
                    n = ROUTER_ID_MAX;
                memcpy(m->id, seg, n);
                m->id[n] = '\0';
            }
        }
    }
    if (m->handler)
        return ROUTE_OK;
    if (!path_known)
        return ROUTE_NOT_FOUND;
    /* a known path: its exemptions hold for any method (a POST /healthz is still open) */
    for (size_t i = 0; i < NROUTES; i++) {
        const char *seg = NULL;
        if (path_matches(&routes[i], path, &seg)) {
            m->ep = routes[i].ep;
            m->open = routes[i].open;
            m->during_drain = routes[i].during_drain;
            break;
        }
    }
    return ROUTE_METHOD_NOT_ALLOWED;
}

size_t router_count(void)
{
    return NROUTES;
}

int router_route(size_t i, const char **method, char *path, size_t cap)
{
    if (i >= NROUTES)
        return -1;
    *method = routes[i].method;
    int n = snprintf(path, cap, "%s%s%s", routes[i].path, routes[i].capture ? "{id}" : "",
                     routes[i].suffix);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}
