/*
 * router.h — the static route table: method + path → handler, endpoint label and the
 * {id} captured from /sessions/{id}; an unknown path is 404 not_found, a known path with
 * another method 405 method_not_allowed with its Allow list. HEAD is served wherever GET is.
 */
#ifndef SERVER_ROUTER_H
#define SERVER_ROUTER_H

#include "api.h"
#include "metrics.h"

typedef enum { ROUTE_OK = 0, ROUTE_NOT_FOUND, ROUTE_METHOD_NOT_ALLOWED } route_result;

#define ROUTER_ID_MAX 80 /* longer ids are cut (and then match no session) */

typedef struct route_match {
    api_handler handler;
    metrics_endpoint ep; /* METRICS_EP_OTHER when nothing matched */
    int has_body;        /* the method carries a request body (POST) */
    int open;            /* no API key needed (/healthz, /readyz) */
    int during_drain;    /* still served while draining (/healthz, /readyz, /metrics) */
    char id[ROUTER_ID_MAX + 1];
    char allow[48]; /* for 405: "GET, HEAD, DELETE" */
} route_match;

/* Matches method and path (no query string). Fills m in every case (ep, allow). */
route_result router_match(const char *method, const char *path, route_match *m);

/* The table, for documentation checks: route i's method and its path as an OpenAPI
 * template ("/sessions/{id}") in path[cap]. 0, or -1 past the end or when cap is short. */
size_t router_count(void);
int router_route(size_t i, const char **method, char *path, size_t cap);

#endif /* SERVER_ROUTER_H */
