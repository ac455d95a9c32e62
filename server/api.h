/*
 * api.h — one handler per endpoint of docs/api.md §4 and §8.2 (api_misc.c, api_sessions.c,
 * api_forward.c, api_backward.c; what they share is in api_util.h). A handler reads an api_req (body,
 * captured id, headers already pulled out by http.c) and fills its answer: status, JSON
 * body, X-Session-Id / Location, or an apierr. No MHD here: handlers are plain functions
 * of their inputs, so http.c owns the wire and api.c owns the contract.
 */
#ifndef SERVER_API_H
#define SERVER_API_H

#include <stdatomic.h>
#include <stddef.h>

#include "apierr.h"
#include "buf.h"
#include "prescan.h"
#include "config.h"
#include "session.h"

/* What every handler may use; shared by all threads, read-only after startup. */
typedef struct api_ctx {
    session_store *store;
    const srv_config *cfg;
    const atomic_int *draining; /* non-zero once shutdown has begun */
} api_ctx;

typedef struct api_req {
    /* in (borrowed for the call) */
    const char *id;          /* {id} captured from /sessions/{id}, else NULL */
    const char *hdr_session; /* X-Session-Id header, else NULL */
    const char *q_output;    /* ?output= on GET /sessions/{id}, else NULL */
    const char *q_limit;     /* ?limit= and ?after= on GET /sessions, else NULL */
    const char *q_after;
    const char *body;        /* NUL-terminated; may be NULL when empty */
    size_t body_len;
    prescan *pre; /* body's prescan (http.c), or NULL: see codec_parse_prescanned */
    /* out */
    int status;                         /* set on success */
    buf out;                            /* the answer's body (owned; http.c sends or frees it) */
    const char *content_type;           /* NULL: application/json */
    char session[SESSION_ID_MAX + 1];   /* "" or the session the answer concerns */
    char location[SESSION_ID_MAX + 16]; /* "" or the Location of a created session */
    apierr err;                         /* err.code != APIERR_NONE: answer with this error */
} api_req;

/* Every handler returns 0 (answer in status/out) or -1 (answer with err). */
typedef int (*api_handler)(const api_ctx *ctx, api_req *r);

int api_root(const api_ctx *ctx, api_req *r);
int api_healthz(const api_ctx *ctx, api_req *r);
int api_readyz(const api_ctx *ctx, api_req *r);
int api_metrics(const api_ctx *ctx, api_req *r);
int api_session_create(const api_ctx *ctx, api_req *r);
int api_session_get(const api_ctx *ctx, api_req *r);
int api_session_delete(const api_ctx *ctx, api_req *r);
int api_session_patch(const api_ctx *ctx, api_req *r);
int api_session_list(const api_ctx *ctx, api_req *r);
int api_forward(const api_ctx *ctx, api_req *r);
int api_backward(const api_ctx *ctx, api_req *r);

/* Appends {"error":{"code":..,"message":..}} for e to b. 0 or -1 (out of memory). */
int api_error_body(buf *b, const apierr *e);

#endif /* SERVER_API_H */
