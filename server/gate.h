/*
 * gate.h — the checks a request passes before its body is read, in the contract's order:
 * draining 503, API key 401, route 404/405, media type 415, declared Content-Length 413.
 * Free of libmicrohttpd (the caller looks the headers up), so the daemon and the request
 * fuzzer run the same code. Nothing here allocates or keeps a pointer.
 */
#ifndef SERVER_GATE_H
#define SERVER_GATE_H

#include "apierr.h"
#include "config.h"
#include "router.h"

typedef struct gate_request {
    const char *method, *path; /* as received (printable copies) */
    route_result rr;           /* router_match's verdict ... */
    const route_match *m;      /* ... and its match */
    int draining;              /* shutdown has begun */
    const char *authorization; /* header values, NULL when absent */
    const char *content_type;
    const char *content_length;
} gate_request;

/* 0: go on and read the body; -1: answer with e (already set). */
int gate_check(const srv_config *cfg, const gate_request *g, apierr *e);

/* The 415 rule: JSON (any parameters, any case), no Content-Type, or curl's default form
 * type are read as JSON. 1 when ct is acceptable. */
int gate_json_content_type(const char *ct);

#endif /* SERVER_GATE_H */
