/*
 * gate.h — the checks a request passes before its body is read: first its framing (400,
 * api.md §8.3), then in the contract's order draining 503, API key 401, route 404/405,
 * media type 415, declared Content-Length 413.
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

/* What the framing headers of a request say (RFC 9112 §6.3), collected by the caller from
 * every header line, duplicates included. */
typedef struct gate_frame {
    int http11;                    /* HTTP/1.1 (or later): Host is required */
    int hosts;                     /* Host lines */
    int content_lengths;           /* Content-Length lines */
    int lengths_differ;            /* ... whose values are not all the same text */
    const char *content_length;    /* the first one's value */
    int transfer_encodings;        /* Transfer-Encoding lines */
    const char *transfer_encoding; /* the first one's value */
    const char *bad_name;          /* a header name with a space or tab in it, or NULL */
} gate_frame;

/* The framing check, before everything else: a request whose body length is ambiguous
 * (Content-Length and Transfer-Encoding, Content-Lengths that differ or are not a number,
 * a Transfer-Encoding other than one "chunked", a header name with white space in it) or
 * an HTTP/1.1 request without exactly one Host. 0: well framed; -1: answer 400 with e and
 * close the connection, because where the next request starts is unknown. */
int gate_frame_check(const gate_frame *f, apierr *e);

/* 0: go on and read the body; -1: answer with e (already set). */
int gate_check(const srv_config *cfg, const gate_request *g, apierr *e);

/* The 415 rule: JSON (any parameters, any case), no Content-Type, or curl's default form
 * type are read as JSON. 1 when ct is acceptable. */
int gate_json_content_type(const char *ct);

#endif /* SERVER_GATE_H */
