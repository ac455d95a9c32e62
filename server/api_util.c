/*
 * api_util.c — what the endpoint handlers share: reading the body and the session id,
 * the memory checks that run before anything large is allocated, building a layer from
 * its description, reshaping x and delta, replacing a session's weights atomically, and
 * the small writers of the answers' JSON.
 */
#include "api_util.h"
#include "budget.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

void api_put_number(buf *b, double v)
{
    char num[40];
    codec_fmt_f64(num, v);
    buf_puts(b, num);
}

/* Remembers which session the answer concerns (X-Session-Id), if id looks like one. */
void api_note_session(api_req *r, const char *id)
{
    if (!id || !*id || strlen(id) > SESSION_ID_MAX ||
        id[strspn(id, "abcdefghijklmnopqrstuvwxyz0123456789-.ABCDEF")] != '\0')
        return;
    memcpy(r->session, id, strlen(id) + 1);
}

cJSON *api_parse_object(api_req *r)
{
    cJSON *root = codec_parse_prescanned(r->body ? r->body : "", r->body_len, r->pre, &r->err);
    if (root && !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        apierr_set(&r->err, APIERR_INVALID_ARGUMENT,
                   "the request body must be a JSON object ({...})");
        return NULL;
    }
    return root;
}

int api_session_id(const cJSON *root, const api_req *r, const char **id, apierr *e)
{
    *id = NULL;
    const cJSON *sn = cJSON_GetObjectItemCaseSensitive(root, "session");
    if (sn && !cJSON_IsString(sn))
        return apierr_set(e, APIERR_INVALID_ARGUMENT,
                          "session must be a string: the id that POST /sessions returned");
    const char *src[3][2] = {{r->id, "the path's id"},
                             {r->hdr_session, "the X-Session-Id header"},
                             {sn ? sn->valuestring : NULL, "the body's session"}};
    int from = -1;
    for (int i = 0; i < 3; i++) {
        const char *v = src[i][0];
        if (!v || !*v)
            continue;
        if (from >= 0 && strcmp(v, *id) != 0)
            return apierr_set(e, APIERR_INVALID_ARGUMENT,
                              "%s (%.80s) and %s (%.80s) differ; send the id once, or the same id "
                              "in both",
                              src[from][1], *id, src[i][1], v);
        if (from < 0) {
            *id = v;
            from = i;
        }
    }
    return 0;
}

int api_output_form(const cJSON *root, int *form, apierr *e)
{
    *form = -1;
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, "output");
    if (!o)
        return 0;
    codec_form f;
    if (!cJSON_IsString(o) || codec_form_parse(o->valuestring, &f) != 0)
        return apierr_set(e, APIERR_INVALID_ARGUMENT,
                          "output must be \"nested\", \"flat\" or \"base64\"");
    *form = (int)f;
    return 0;
}

int64_t api_max_elems(const api_ctx *ctx, cvd_dtype dt)
{
    size_t sz = cvd_dtype_size(dt);
    uint64_t n = ctx->cfg->max_session_bytes / (sz ? sz : 8);
    return n > INT64_MAX ? INT64_MAX : (int64_t)n;
}

/* Refuses (413, naming max_session_bytes) a forward/backward whose memory would exceed the
 * per-session limit; runs before anything of that size is allocated. */
int api_check_memory(const api_ctx *ctx, const cvd_conv2d_params *p, const int64_t xs[4], apierr *e)
{
    size_t need = 0;
    cvd_err ce = {{0}};
    cvd_status s = cvd_conv2d_memory_need(p, xs, &need, &ce);
    char shape[SHAPE_STR_MAX];
    shape_format(shape, sizeof shape, 4, xs);
    if (s == CVD_ERR_TOO_LARGE)
        return apierr_set(e, APIERR_PAYLOAD_TOO_LARGE,
                          "an input of shape %s needs more memory than can be counted; the "
                          "limit is " LIMIT " = %" PRIu64 " bytes; send a smaller input",
                          shape, ctx->cfg->max_session_bytes);
    if (s != CVD_OK)
        return apierr_from_cvd(e, s, &ce, 0);
    if (need > ctx->cfg->max_session_bytes)
        return apierr_set(e, APIERR_PAYLOAD_TOO_LARGE,
                          "an input of shape %s needs %zu bytes for weights, cached input and "
                          "workspace, over " LIMIT " = %" PRIu64
                          "; send a smaller batch or raise " LIMIT,
                          shape, need, ctx->cfg->max_session_bytes);
    return api_budget_charge(need, "this input's cached copy and workspace", e);
}

/* Best-effort shape of a tensor node without decoding its data (nested: the first element
 * at each depth; flat/base64: "shape"). 0 if it found a plausible rank-3/4 shape. */
static int peek_shape(const cJSON *n, int64_t s4[4])
{
    int64_t dims[CVD_MAX_RANK + 1];
    int rank = 0;
    if (cJSON_IsObject(n)) {
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(n, "shape");
        if (!cJSON_IsArray(s))
            return -1;
        for (const cJSON *d = s->child; d; d = d->next) {
            if (rank == CVD_MAX_RANK || !cJSON_IsNumber(d) || !(d->valuedouble >= 1) ||
                d->valuedouble > 9e15 || d->valuedouble != floor(d->valuedouble))
                return -1;
            dims[rank++] = (int64_t)d->valuedouble;
        }
    } else {
        while (cJSON_IsArray(n)) {
            if (rank == CVD_MAX_RANK)
                return -1;
            int64_t k = 0;
            for (const cJSON *c = n->child; c; c = c->next)
                k++;
            if (k == 0)
                return -1;
            dims[rank++] = k;
            n = n->child;
        }
    }
    if (rank == 4) {
        memcpy(s4, dims, sizeof(int64_t) * 4);
        return 0;
    }
    if (rank == 3) {
        s4[0] = 1;
        memcpy(s4 + 1, dims, sizeof(int64_t) * 3);
        return 0;
    }
    return -1;
}

/* A 413 for an absurd x before its data is decoded; other problems surface later. */
int api_precheck_x(const api_ctx *ctx, const cvd_conv2d_params *p, const cJSON *xn, apierr *e)
{
    int64_t s4[4];
    size_t need;
    if (peek_shape(xn, s4) != 0)
        return 0;
    cvd_status s = cvd_conv2d_memory_need(p, s4, &need, NULL);
    if (s == CVD_ERR_TOO_LARGE || (s == CVD_OK && need > ctx->cfg->max_session_bytes))
        return api_check_memory(ctx, p, s4, e);
    return 0;
}

/* x as (N, C, H, W): rank 4 as is, rank 3 as N = 1. */
int api_x_as4(const cvd_tensor *x, cvd_tensor *x4, apierr *e)
{
    *x4 = *x;
    if (x->rank == 4)
        return 0;
    if (x->rank == 3) {
        x4->rank = 4;
        x4->shape[0] = 1;
        memcpy(x4->shape + 1, x->shape, sizeof(int64_t) * 3);
        return 0;
    }
    char shape[SHAPE_STR_MAX];
    shape_format(shape, sizeof shape, x->rank, x->shape);
    return apierr_set(e, APIERR_SHAPE_MISMATCH,
                      "x has shape %s (rank %d); send x as (N, C, H, W), or (C, H, W) for N = 1",
                      shape, x->rank);
}

/* A failed cvd_conv2d_output_shape for x, with x's shape as sent put in front. */
int api_x_shape_error(apierr *e, cvd_status st, const cvd_err *ce, const cvd_tensor *x)
{
    if (st != CVD_ERR_SHAPE)
        return apierr_from_cvd(e, st, ce, 0);
    char shape[SHAPE_STR_MAX];
    shape_format(shape, sizeof shape, x->rank, x->shape);
    return apierr_set(e, APIERR_SHAPE_MISMATCH, "x of shape %s does not fit the layer: %s", shape,
                      ce->msg);
}

/* delta as (N, F, OH, OW), which must equal y's shape; rank 3 is accepted for N = 1. */
int api_delta_as4(const cvd_tensor *d, const int64_t ys[4], int from_session, cvd_tensor *d4,
                  apierr *e)
{
    *d4 = *d;
    if (d->rank == 3) {
        d4->rank = 4;
        d4->shape[0] = 1;
        memcpy(d4->shape + 1, d->shape, sizeof(int64_t) * 3);
    }
    if (d4->rank == 4 && memcmp(d4->shape, ys, sizeof(int64_t) * 4) == 0)
        return 0;
    char ds[SHAPE_STR_MAX], yss[SHAPE_STR_MAX];
    shape_format(ds, sizeof ds, d->rank, d->shape);
    shape_format(yss, sizeof yss, 4, ys);
    if (from_session)
        return apierr_set(e, APIERR_SHAPE_MISMATCH,
                          "delta has shape %s but the last forward produced y of shape %s; send "
                          "a delta shaped like y",
                          ds, yss);
    return apierr_set(e, APIERR_SHAPE_MISMATCH,
                      "delta has shape %s but y for this x and layer has shape %s; send a delta "
                      "shaped like y",
                      ds, yss);
}

/* --- edge hook (budget.h): the memory budget, charged before allocating; the charge
 * belongs to the request and is released when it ends (the session store then accounts
 * for what a session keeps). --- */
int api_budget_charge(uint64_t n, const char *what, apierr *e)
{
    if (budget_charge(n) == 0)
        return 0;
    return apierr_set(e, APIERR_OUT_OF_MEMORY,
                      "%s need %" PRIu64 " bytes, more than convd's memory budget has free "
                      "(max_memory_bytes = %" PRIu64 ", %" PRIu64 " in use); retry in a "
                      "moment, or free sessions",
                      what, n, budget_limit(), budget_used());
}

/* Bytes of weights plus their gradients (or SGD scratch), before the layer is allocated. */
static int check_weight_memory(const api_ctx *ctx, const cvd_conv2d_params *p, apierr *e)
{
    uint64_t n = 0, cg = p->groups > 0 ? (uint64_t)(p->in_channels / p->groups) : 0;
    int over = p->out_channels < 0 || p->kh < 0 || p->kw < 0 ||
               __builtin_mul_overflow((uint64_t)p->out_channels, cg, &n) ||
               __builtin_mul_overflow(n, (uint64_t)p->kh, &n) ||
               __builtin_mul_overflow(n, (uint64_t)p->kw, &n) ||
               __builtin_add_overflow(n, (uint64_t)p->out_channels, &n) ||
               __builtin_mul_overflow(n, (uint64_t)cvd_dtype_size(p->dtype) * 2, &n);
    if (over || n > ctx->cfg->max_session_bytes)
        return apierr_set(
            e, APIERR_PAYLOAD_TOO_LARGE,
            "the layer's weights and their gradients need %s%" PRIu64 " bytes, over " LIMIT
            " = %" PRIu64 "; use fewer channels or a smaller kernel, or raise " LIMIT,
            over ? "more than " : "", over ? UINT64_MAX : n, ctx->cfg->max_session_bytes);
    return api_budget_charge(n, "the layer's weights and their gradients", e);
}

/* A layer from its decoded description: W and b as sent, else from init. */
int api_build_layer(const api_ctx *ctx, const codec_layer *cl, cvd_conv2d **out, apierr *e)
{
    *out = NULL;
    if (check_weight_memory(ctx, &cl->p, e))
        return -1;
    cvd_err ce = {{0}};
    cvd_conv2d *l = NULL;
    cvd_status s = cvd_conv2d_create(&cl->p, &l, &ce);
    if (s != CVD_OK)
        return apierr_from_cvd(e, s, &ce, 1);
    if (cl->has_W) {
        s = cvd_conv2d_set_weights(l, &cl->W, cl->has_b ? &cl->b : NULL, &ce);
    } else {
        s = cvd_conv2d_init(l, cl->scheme, cl->seed, &ce);
        if (s == CVD_OK && cl->has_b) {
            /* b sent without W: keep the generated W, take b */
            const cvd_tensor *w = cvd_conv2d_weight(l);
            cvd_tensor copy = {0};
            s = cvd_tensor_alloc(&copy, w->dtype, w->rank, w->shape, &ce);
            if (s == CVD_OK) {
                memcpy(copy.data, w->data, (size_t)cvd_tensor_numel(w) * cvd_dtype_size(w->dtype));
                s = cvd_conv2d_set_weights(l, &copy, &cl->b, &ce);
            }
            cvd_tensor_release(&copy);
        }
    }
    if (s != CVD_OK) {
        cvd_conv2d_free(l);
        return apierr_from_cvd(e, s, &ce, 1);
    }
    *out = l;
    return 0;
}

int api_decode_layer(const api_ctx *ctx, const cJSON *node, codec_layer *cl, apierr *e)
{
    /* float32 is the smallest dtype: a bound before the layer's dtype is known */
    return codec_layer_decode(node, api_max_elems(ctx, CVD_F32), LIMIT, cl, e);
}

void api_fill_session(session *s, cvd_conv2d *l, const codec_layer *cl)
{
    s->layer = l;
    s->W_rank = cl->has_W ? cl->W_rank : 4;
    s->b_rank = cl->has_b ? cl->b_rank : 1;
    s->scheme = cl->has_W ? CODEC_INIT_GIVEN : (int)cl->scheme;
    s->seed = cl->seed;
    s->x_rank = 0;
}

/* W's shape (F, C/g, kh, kw) in the rank it was sent with: (F, kh, kw) for rank 3. */
void api_weight_shape(const cvd_tensor *W, int W_rank, int64_t out[4])
{
    if (W_rank == 3) {
        out[0] = W->shape[0];
        out[1] = W->shape[2];
        out[2] = W->shape[3];
    } else {
        memcpy(out, W->shape, sizeof(int64_t) * 4);
    }
}

void api_key(buf *b, const char *k, int first)
{
    buf_printf(b, first ? "\"%s\":" : ",\"%s\":", k);
}

void api_put_session_field(buf *b, const char *id)
{
    buf_puts(b, "{\"session\":");
    codec_string_encode(b, id);
}

void api_encode_layer(buf *b, const session *s)
{
    api_key(b, "layer", 0);
    codec_layer_encode(b, cvd_conv2d_get_params(s->layer), s->scheme, s->seed);
}

void api_encode_idle_timeout(buf *b, const api_ctx *ctx)
{
    api_key(b, "idle_timeout_s", 0);
    api_put_number(b, session_store_idle_timeout(ctx->store));
}

int api_error_body(buf *b, const apierr *e)
{
    buf_printf(b, "{\"error\":{\"code\":\"%s\",\"message\":", apierr_name(e->code));
    codec_string_encode(b, e->msg);
    buf_puts(b, "}}");
    return b->oom ? -1 : 0;
}

void api_weights_release(api_weights *w)
{
    cvd_tensor_release(&w->W);
    cvd_tensor_release(&w->b);
}

int api_weights_save(const session *s, api_weights *w, apierr *e)
{
    *w = (api_weights){.W_rank = s->W_rank, .b_rank = s->b_rank};
    const cvd_tensor *src[2] = {cvd_conv2d_weight(s->layer), cvd_conv2d_bias(s->layer)};
    cvd_tensor *dst[2] = {&w->W, &w->b};
    for (int i = 0; i < 2; i++) {
        if (!src[i])
            continue;
        cvd_err ce = {{0}};
        if (cvd_tensor_alloc(dst[i], src[i]->dtype, src[i]->rank, src[i]->shape, &ce) != CVD_OK) {
            api_weights_release(w);
            return apierr_set(e, APIERR_INTERNAL, "out of memory keeping the weights: %s", ce.msg);
        }
        memcpy(dst[i]->data, src[i]->data,
               (size_t)cvd_tensor_numel(src[i]) * cvd_dtype_size(src[i]->dtype));
    }
    return 0;
}

void api_weights_restore(session *s, api_weights *w)
{
    /* the same shapes and finite values the layer had: this cannot fail */
    cvd_conv2d_set_weights(s->layer, &w->W, w->b.data ? &w->b : NULL, NULL);
    s->W_rank = w->W_rank;
    s->b_rank = w->b_rank;
    api_weights_release(w);
}

int api_weights_apply(const api_ctx *ctx, session *s, const cJSON *Wn, const cJSON *bn,
                      api_weights *old, apierr *e)
{
    const cvd_conv2d_params *p = cvd_conv2d_get_params(s->layer);
    cvd_tensor W = {0}, b = {0};
    codec_form f;
    int rc = -1;
    if (Wn &&
        codec_tensor_decode(Wn, "W", p->dtype, api_max_elems(ctx, p->dtype), LIMIT, &W, &f, e))
        goto done;
    if (bn &&
        codec_tensor_decode(bn, "b", p->dtype, api_max_elems(ctx, p->dtype), LIMIT, &b, &f, e))
        goto done;
    if (Wn && W.rank != 4 && !(W.rank == 3 && p->in_channels / p->groups == 1)) {
        apierr_set(e, APIERR_INVALID_LAYER,
                   "W has rank %d; send W shaped (F, C/groups, kh, kw) = (%" PRId64 ", %" PRId64
                   ", %" PRId64 ", %" PRId64 ")%s",
                   W.rank, p->out_channels, p->in_channels / p->groups, p->kh, p->kw,
                   p->in_channels / p->groups == 1 ? ", or (F, kh, kw)" : "");
        goto done;
    }
    if (bn && b.rank > 2) {
        apierr_set(e, APIERR_INVALID_LAYER,
                   "b has rank %d; send b shaped (%" PRId64 ") or (%" PRId64 ", 1)", b.rank,
                   p->out_channels, p->out_channels);
        goto done;
    }
    if (api_weights_save(s, old, e))
        goto done;
    cvd_err ce = {{0}};
    cvd_status st = CVD_OK;
    if (Wn)
        st = cvd_conv2d_set_weights(s->layer, &W, bn ? &b : NULL, &ce);
    else
        st = cvd_conv2d_set_weights(s->layer, &old->W, &b, &ce);
    if (st != CVD_OK) {
        api_weights_release(old);
        apierr_from_cvd(e, st, &ce, 1);
        goto done;
    }
    if (Wn)
        s->W_rank = W.rank;
    if (bn)
        s->b_rank = b.rank;
    rc = 0;
done:
    cvd_tensor_release(&W);
    cvd_tensor_release(&b);
    return rc;
}
