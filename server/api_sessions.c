/*
 * api_sessions.c — the /sessions endpoints: create (POST), list (GET /sessions, paged by
 * id), read (GET /sessions/{id}), replace the weights (PATCH) and delete. A change is
 * stored (session_persist) before it is answered; when storing fails, the session is put
 * back as it was and the answer is 500.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_util.h"

#define LIST_DEFAULT 100
#define LIST_MAX     1000

int api_session_create(const api_ctx *ctx, api_req *r)
{
    codec_layer cl = {0};
    cvd_conv2d *l = NULL;
    session *s = NULL;
    cJSON *root = api_parse_object(r);
    if (!root)
        return -1;
    int rc = -1;
    if (api_decode_layer(ctx, root, &cl, &r->err) || api_build_layer(ctx, &cl, &l, &r->err) ||
        session_create(ctx->store, &s, &r->err))
        goto done;
    api_fill_session(s, l, &cl);
    l = NULL;
    if (session_persist(ctx->store, s, SESSION_SAVE_NEW, &r->err)) {
        session_discard(ctx->store, s);
        goto done;
    }
    api_note_session(r, s->id);
    snprintf(r->location, sizeof r->location, "/sessions/%s", s->id);
    api_put_session_field(&r->out, s->id);
    api_encode_layer(&r->out, s);
    api_encode_idle_timeout(&r->out, ctx);
    buf_putc(&r->out, '}');
    session_release(ctx->store, s);
    r->status = 201;
    rc = 0;
done:
    cvd_conv2d_free(l);
    codec_layer_release(&cl);
    cJSON_Delete(root);
    return rc;
}

/* "cached", "forwards", "backwards" and "idle_timeout_s" of GET and PATCH. */
static void encode_state(buf *b, const api_ctx *ctx, const session *s)
{
    buf_printf(b, ",\"cached\":%s,\"forwards\":%" PRIu64 ",\"backwards\":%" PRIu64,
               cvd_conv2d_has_cache(s->layer, NULL) ? "true" : "false", s->forwards, s->backwards);
    api_encode_idle_timeout(b, ctx);
    buf_putc(b, '}');
}

int api_session_get(const api_ctx *ctx, api_req *r)
{
    codec_form form = CODEC_NESTED;
    if (r->q_output && codec_form_parse(r->q_output, &form) != 0)
        return apierr_set(&r->err, APIERR_INVALID_ARGUMENT,
                          "?output= must be nested, flat or base64, not \"%.32s\"", r->q_output);
    api_note_session(r, r->id);
    session *s;
    if (session_acquire(ctx->store, r->id, &s, &r->err))
        return -1;
    buf *b = &r->out;
    api_put_session_field(b, s->id);
    api_encode_layer(b, s);
    const cvd_tensor *W = cvd_conv2d_weight(s->layer);
    int64_t ws[4];
    api_weight_shape(W, s->W_rank, ws);
    api_key(b, "W", 0);
    codec_tensor_encode(b, W, s->W_rank, ws, form);
    const cvd_tensor *bias = cvd_conv2d_bias(s->layer);
    if (bias) {
        int64_t bs[2] = {bias->shape[0], 1}; /* (F) or (F, 1), as b was sent */
        api_key(b, "b", 0);
        codec_tensor_encode(b, bias, s->b_rank, bs, form);
    }
    encode_state(b, ctx, s);
    session_release(ctx->store, s);
    r->status = 200;
    return 0;
}

int api_session_delete(const api_ctx *ctx, api_req *r)
{
    api_note_session(r, r->id);
    if (session_delete(ctx->store, r->id, &r->err))
        return -1;
    r->status = 204;
    return 0;
}

static const char *const patch_fields[] = {"W", "b", NULL};

/* PATCH answers like GET without W and b: the weights are what the client just sent. */
int api_session_patch(const api_ctx *ctx, api_req *r)
{
    apierr *e = &r->err;
    api_note_session(r, r->id);
    cJSON *root = api_parse_object(r);
    if (!root)
        return -1;
    int rc = -1;
    session *s = NULL;
    api_weights old = {{0}};
    const cJSON *Wn = cJSON_GetObjectItemCaseSensitive(root, "W");
    const cJSON *bn = cJSON_GetObjectItemCaseSensitive(root, "b");
    if (codec_check_fields(root, patch_fields, "the PATCH /sessions/{id} body", e))
        goto done;
    if (!Wn && !bn) {
        apierr_set(e, APIERR_INVALID_ARGUMENT,
                   "send W, b or both: the weights to put in place of the session's");
        goto done;
    }
    if (session_acquire(ctx->store, r->id, &s, e) || api_weights_apply(ctx, s, Wn, bn, &old, e))
        goto done;
    if (session_persist(ctx->store, s, SESSION_SAVE_WEIGHTS, e)) {
        api_weights_restore(s, &old);
        goto done;
    }
    api_weights_release(&old);
    api_put_session_field(&r->out, s->id);
    api_encode_layer(&r->out, s);
    encode_state(&r->out, ctx, s);
    r->status = 200;
    rc = 0;
done:
    session_release(ctx->store, s);
    cJSON_Delete(root);
    return rc;
}

int api_session_list(const api_ctx *ctx, api_req *r)
{
    size_t limit = LIST_DEFAULT;
    if (r->q_limit) {
        char *end;
        long v = strtol(r->q_limit, &end, 10);
        if (!*r->q_limit || *end || v < 1 || v > LIST_MAX)
            return apierr_set(&r->err, APIERR_INVALID_ARGUMENT,
                              "?limit= must be an integer from 1 to %d, not \"%.32s\"", LIST_MAX,
                              r->q_limit);
        limit = (size_t)v;
    }
    session_info *v;
    size_t n;
    int more;
    if (session_list(ctx->store, r->q_after, limit, &v, &n, &more))
        return apierr_set(&r->err, APIERR_INTERNAL, "out of memory listing sessions");
    buf *b = &r->out;
    buf_puts(b, "{\"sessions\":[");
    for (size_t i = 0; i < n; i++) {
        buf_puts(b, i ? ",{\"session\":" : "{\"session\":");
        codec_string_encode(b, v[i].id);
        api_key(b, "layer", 0);
        codec_layer_encode(b, &v[i].p, v[i].scheme, v[i].seed);
        buf_printf(b, ",\"cached\":%s,\"forwards\":%" PRIu64 ",\"backwards\":%" PRIu64,
                   v[i].cached ? "true" : "false", v[i].forwards, v[i].backwards);
        api_key(b, "idle_s", 0);
        api_put_number(b, v[i].idle_s);
        buf_putc(b, '}');
    }
    buf_puts(b, "],\"next\":");
    if (more)
        codec_string_encode(b, v[n - 1].id);
    else
        buf_puts(b, "null");
    buf_putc(b, '}');
    free(v);
    r->status = 200;
    return 0;
}
