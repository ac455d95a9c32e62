/*
 * apierr.c — the contract's error table (docs/api.md §5): HTTP status and code string per
 * apierr_code, message formatting, and the mapping from core statuses to API codes.
 * Messages are truncated to fit apierr.msg; formatting never allocates.
 */
#include "apierr.h"

#include <stdio.h>
#include <string.h>

static const struct {
    int status;
    const char *name;
} TABLE[APIERR_COUNT_] = {
    [APIERR_NONE] = {200, ""},
    [APIERR_INVALID_JSON] = {400, "invalid_json"},
    [APIERR_INVALID_TENSOR] = {400, "invalid_tensor"},
    [APIERR_INVALID_LAYER] = {400, "invalid_layer"},
    [APIERR_SHAPE_MISMATCH] = {400, "shape_mismatch"},
    [APIERR_INVALID_ARGUMENT] = {400, "invalid_argument"},
    [APIERR_UNAUTHORIZED] = {401, "unauthorized"},
    [APIERR_NOT_FOUND] = {404, "not_found"},
    [APIERR_SESSION_NOT_FOUND] = {404, "session_not_found"},
    [APIERR_METHOD_NOT_ALLOWED] = {405, "method_not_allowed"},
    [APIERR_NO_FORWARD_CACHE] = {409, "no_forward_cache"},
    [APIERR_SESSION_EXPIRED] = {410, "session_expired"},
    [APIERR_PAYLOAD_TOO_LARGE] = {413, "payload_too_large"},
    [APIERR_UNSUPPORTED_MEDIA_TYPE] = {415, "unsupported_media_type"},
    [APIERR_WRONG_NODE] = {421, "wrong_node"},
    [APIERR_NON_FINITE_RESULT] = {422, "non_finite_result"},
    [APIERR_TOO_MANY_SESSIONS] = {429, "too_many_sessions"},
    [APIERR_INTERNAL] = {500, "internal"},
    [APIERR_SHUTTING_DOWN] = {503, "shutting_down"},
    [APIERR_OUT_OF_MEMORY] = {503, "out_of_memory"},
};

static int valid(apierr_code c)
{
    return (int)c >= 0 && c < APIERR_COUNT_;
}

int apierr_status(apierr_code c)
{
    return valid(c) ? TABLE[c].status : 500;
}

const char *apierr_name(apierr_code c)
{
    return valid(c) ? TABLE[c].name : "internal";
}

int apierr_vset(apierr *e, apierr_code c, const char *fmt, va_list ap)
{
    if (!e)
        return -1;
    e->code = c;
    if (vsnprintf(e->msg, sizeof e->msg, fmt, ap) < 0)
        e->msg[0] = '\0';
    return -1;
}

int apierr_set(apierr *e, apierr_code c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    apierr_vset(e, c, fmt, ap);
    va_end(ap);
    return -1;
}

int apierr_from_cvd(apierr *e, cvd_status s, const cvd_err *ce, int layer_context)
{
    apierr_code c;
    switch (s) {
    case CVD_ERR_INVALID:
        c = layer_context ? APIERR_INVALID_LAYER : APIERR_INVALID_ARGUMENT;
        break;
    case CVD_ERR_SHAPE:
        c = layer_context ? APIERR_INVALID_LAYER : APIERR_SHAPE_MISMATCH;
        break;
    case CVD_ERR_NO_CACHE:
        c = APIERR_NO_FORWARD_CACHE;
        break;
    case CVD_ERR_NONFINITE:
        c = APIERR_NON_FINITE_RESULT;
        break;
    case CVD_ERR_TOO_LARGE:
        c = APIERR_PAYLOAD_TOO_LARGE;
        break;
    default: /* CVD_ERR_NOMEM, and CVD_OK passed by mistake */
        c = APIERR_INTERNAL;
        break;
    }
    const char *msg = ce && ce->msg[0] ? ce->msg : cvd_strerror(s);
    if (c == APIERR_INTERNAL && s == CVD_ERR_NOMEM)
        return apierr_set(e, c, "out of memory: %s", msg);
    return apierr_set(e, c, "%s", msg);
}
