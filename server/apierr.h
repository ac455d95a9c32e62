/*
 * apierr.h — the API's error vocabulary: one enum value per row of the contract's error
 * table (docs/api.md §5), its HTTP status and its "code" string, and a small value type
 * carrying a code plus a user-facing message. Every server module reports failures in it;
 * http.c turns it into {"error": {"code", "message"}}.
 */
#ifndef SERVER_APIERR_H
#define SERVER_APIERR_H

#include <stdarg.h>

#include "../core/cvd.h"

typedef enum {
    APIERR_NONE = 0,
    APIERR_INVALID_JSON,           /* 400 invalid_json */
    APIERR_INVALID_TENSOR,         /* 400 invalid_tensor */
    APIERR_INVALID_LAYER,          /* 400 invalid_layer */
    APIERR_SHAPE_MISMATCH,         /* 400 shape_mismatch */
    APIERR_INVALID_ARGUMENT,       /* 400 invalid_argument */
    APIERR_UNAUTHORIZED,           /* 401 unauthorized */
    APIERR_NOT_FOUND,              /* 404 not_found */
    APIERR_SESSION_NOT_FOUND,      /* 404 session_not_found */
    APIERR_METHOD_NOT_ALLOWED,     /* 405 method_not_allowed */
    APIERR_NO_FORWARD_CACHE,       /* 409 no_forward_cache */
    APIERR_SESSION_EXPIRED,        /* 410 session_expired */
    APIERR_PAYLOAD_TOO_LARGE,      /* 413 payload_too_large */
    APIERR_UNSUPPORTED_MEDIA_TYPE, /* 415 unsupported_media_type */
    APIERR_WRONG_NODE,             /* 421 wrong_node */
    APIERR_NON_FINITE_RESULT,      /* 422 non_finite_result */
    APIERR_TOO_MANY_SESSIONS,      /* 429 too_many_sessions */
    APIERR_INTERNAL,               /* 500 internal (out of memory and our own bugs) */
    APIERR_SHUTTING_DOWN,          /* 503 shutting_down */
    APIERR_OUT_OF_MEMORY,          /* 503 out_of_memory (with Retry-After) */
    APIERR_COUNT_
} apierr_code;

typedef struct apierr {
    apierr_code code;
    char msg[512];
} apierr;

/* HTTP status of a code (200 for APIERR_NONE). */
int apierr_status(apierr_code c);
/* The contract's code string ("invalid_json", ...); "" for APIERR_NONE. */
const char *apierr_name(apierr_code c);

/* Sets e->code and formats e->msg (truncated to fit). e may be NULL. Returns -1 so a caller
 * can write `return apierr_set(e, ...);`. */
int apierr_set(apierr *e, apierr_code c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int apierr_vset(apierr *e, apierr_code c, const char *fmt, va_list ap);

/* Maps a core status to the API code a failure of that kind gets in the context of
 * `layer_context` (1: building a layer → invalid_layer; 0: running it → shape_mismatch etc.),
 * and copies the core's message. Returns -1. */
int apierr_from_cvd(apierr *e, cvd_status s, const cvd_err *ce, int layer_context);

#endif /* SERVER_APIERR_H */
