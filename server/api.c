/*
 * api.c — the endpoint handlers of spec/api.md §4. Each one is the same pipeline:
 * parse the body (codec) → check its fields → find or build the layer (session store) →
 * check shapes and the memory limit before anything big is allocated → run the core →
 * encode the answer. Every check runs before the core call that could change a session,
 * and the core itself changes nothing on failure, so bad input never alters a session.
 * Answers are encoded after the session is released, so its lock covers only the compute.
 */
#include "api.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "metrics.h"

#define LIMIT "max_session_bytes"

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void shape_str(char *out, size_t n, int rank, const int64_t *shape)
{
    size_t len = 0;
    out[0] = '\0';
    len += (size_t)snprintf(out, n, "(");
    for (int i = 0; i < rank && len < n; i++)
        len += (size_t)snprintf(out + len, n - len, i ? ",%" PRId64 : "%" PRId64, shape[i]);
    if (len < n)
        snprintf(out + len, n - len, ")");
}

static void put_number(buf *b, double v)
{
    char num[40];
    codec_fmt_f64(num, v);
    buf_puts(b, num);
}

/* Remembers which session the answer concerns (X-Session-Id), if id looks like one of ours. */
static void note_session(api_req *r, const char *id)
{
    if (!id || strlen(id) != SESSION_ID_LEN)
        return;
    for (const char *c = id; *c; c++)
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f') || (*c >= 'A' && *c <= 'F')))
            return;
    memcpy(r->session, id, SESSION_ID_LEN + 1);
}

static cJSON *parse_object(api_req *r)
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

/* Unknown or repeated top-level fields are errors, so a typo never passes silently. */
static int check_fields(const cJSON *obj, const char *const *allowed, int n, const char *where,
                        const char *list, apierr *e)
{
    unsigned seen = 0;
    for (const cJSON *c = obj->child; c; c = c->next) {
        int k = 0;
        while (k < n && strcmp(c->string, allowed[k]) != 0)
            k++;
        if (k == n)
            return apierr_set(e, APIERR_INVALID_ARGUMENT,
                              "unknown field \"%.64s\" in the %s body; allowed fields: %s",
                              c->string, where, list);
        if (seen & (1u << k))
            return apierr_set(e, APIERR_INVALID_ARGUMENT,
                              "field \"%s\" appears twice in the %s body; send it once", allowed[k],
                              where);
        seen |= 1u << k;
    }
    return 0;
}

/* The session id from the body or the X-Session-Id header (NULL if neither). */
static int session_id_of(const cJSON *root, const api_req *r, const char **id, apierr *e)
{
    *id = NULL;
    const cJSON *sn = cJSON_GetObjectItemCaseSensitive(root, "session");
    const char *hdr = r->hdr_session && *r->hdr_session ? r->hdr_session : NULL;
    if (sn && !cJSON_IsString(sn))
        return apierr_set(e, APIERR_INVALID_ARGUMENT,
                          "session must be a string: the id that POST /sessions returned");
    const char *body = sn ? sn->valuestring : NULL;
    if (body && hdr && strcmp(body, hdr) != 0)
        return apierr_set(e, APIERR_INVALID_ARGUMENT,
                          "the X-Session-Id header (%.40s) and the body's session (%.40s) "
                          "differ; send the id once, or the same id in both",
                          hdr, body);
    *id = body ? body : hdr;
    return 0;
}

static int output_form(const cJSON *root, int *form, apierr *e)
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

static int64_t max_elems(const api_ctx *ctx, cvd_dtype dt)
{
    size_t sz = cvd_dtype_size(dt);
    uint64_t n = ctx->cfg->max_session_bytes / (sz ? sz : 8);
    return n > INT64_MAX ? INT64_MAX : (int64_t)n;
}

/* Refuses (413, naming max_session_bytes) a forward/backward whose memory would exceed the
 * per-session limit; runs before anything of that size is allocated. */
static int check_memory(const api_ctx *ctx, const cvd_conv2d_params *p, const int64_t xs[4],
                        apierr *e)
{
    size_t need = 0;
    cvd_err ce = {{0}};
    cvd_status s = cvd_conv2d_memory_need(p, xs, &need, &ce);
    char sh[96];
    shape_str(sh, sizeof sh, 4, xs);
    if (s == CVD_ERR_TOO_LARGE)
        return apierr_set(e, APIERR_PAYLOAD_TOO_LARGE,
                          "an input of shape %s needs more memory than can be counted; the "
                          "limit is " LIMIT " = %" PRIu64 " bytes; send a smaller input",
                          sh, ctx->cfg->max_session_bytes);
    if (s != CVD_OK)
        return apierr_from_cvd(e, s, &ce, 0);
    if (need > ctx->cfg->max_session_bytes)
        return apierr_set(e, APIERR_PAYLOAD_TOO_LARGE,
                          "an input of shape %s needs %zu bytes for weights, cached input and "
                          "workspace, over " LIMIT " = %" PRIu64
                          "; send a smaller batch or raise " LIMIT,
                          sh, need, ctx->cfg->max_session_bytes);
    return 0;
}

/* Best-effort shape of a tensor node without decoding its data (nested: the first element
 * at each depth; flat/base64: "shape"). 0 if it found a plausible rank-3/4 shape. */
static int peek_shape(const cJSON *n, int64_t s4[4])
{
    int64_t sh[CVD_MAX_RANK + 1];
    int rank = 0;
    if (cJSON_IsObject(n)) {
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(n, "shape");
        if (!cJSON_IsArray(s))
            return -1;
        for (const cJSON *d = s->child; d; d = d->next) {
            if (rank == CVD_MAX_RANK || !cJSON_IsNumber(d) || !(d->valuedouble >= 1) ||
                d->valuedouble > 9e15 || d->valuedouble != floor(d->valuedouble))
                return -1;
            sh[rank++] = (int64_t)d->valuedouble;
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
            sh[rank++] = k;
            n = n->child;
        }
    }
    if (rank == 4) {
        memcpy(s4, sh, sizeof(int64_t) * 4);
        return 0;
    }
    if (rank == 3) {
        s4[0] = 1;
        memcpy(s4 + 1, sh, sizeof(int64_t) * 3);
        return 0;
    }
    return -1;
}

/* A 413 for an absurd x before its data is decoded; other problems surface later. */
static int precheck_x(const api_ctx *ctx, const cvd_conv2d_params *p, const cJSON *xn, apierr *e)
{
    int64_t s4[4];
    size_t need;
    if (peek_shape(xn, s4) != 0)
        return 0;
    cvd_status s = cvd_conv2d_memory_need(p, s4, &need, NULL);
    if (s == CVD_ERR_TOO_LARGE || (s == CVD_OK && need > ctx->cfg->max_session_bytes))
        return check_memory(ctx, p, s4, e);
    return 0;
}

/* x as (N, C, H, W): rank 4 as is, rank 3 as N = 1. */
static int x_as4(const cvd_tensor *x, cvd_tensor *x4, apierr *e)
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
    char sh[96];
    shape_str(sh, sizeof sh, x->rank, x->shape);
    return apierr_set(e, APIERR_SHAPE_MISMATCH,
                      "x has shape %s (rank %d); send x as (N, C, H, W), or (C, H, W) for N = 1",
                      sh, x->rank);
}

/* A failed cvd_conv2d_output_shape for x, with x's shape as sent put in front. */
static int x_shape_error(apierr *e, cvd_status st, const cvd_err *ce, const cvd_tensor *x)
{
    if (st != CVD_ERR_SHAPE)
        return apierr_from_cvd(e, st, ce, 0);
    char sh[96];
    shape_str(sh, sizeof sh, x->rank, x->shape);
    return apierr_set(e, APIERR_SHAPE_MISMATCH, "x of shape %s does not fit the layer: %s", sh,
                      ce->msg);
}

/* delta as (N, F, OH, OW), which must equal y's shape; rank 3 is accepted for N = 1. */
static int delta_as4(const cvd_tensor *d, const int64_t ys[4], int from_session, cvd_tensor *d4,
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
    char ds[96], yss[96];
    shape_str(ds, sizeof ds, d->rank, d->shape);
    shape_str(yss, sizeof yss, 4, ys);
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
    return 0;
}

/* A layer from its decoded description: W and b as sent, else from init. */
static int build_layer(const api_ctx *ctx, const codec_layer *cl, cvd_conv2d **out, apierr *e)
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

static int decode_layer(const api_ctx *ctx, const cJSON *node, codec_layer *cl, apierr *e)
{
    /* float32 is the smallest dtype: a bound before the layer's dtype is known */
    return codec_layer_decode(node, max_elems(ctx, CVD_F32), LIMIT, cl, e);
}

static void fill_session(session *s, cvd_conv2d *l, const codec_layer *cl)
{
    s->layer = l;
    s->W_rank = cl->has_W ? cl->W_rank : 4;
    s->b_rank = cl->has_b ? cl->b_rank : 1;
    s->scheme = cl->has_W ? CODEC_INIT_GIVEN : (int)cl->scheme;
    s->seed = cl->seed;
    s->x_rank = 0;
}

/* W's shape (F, C/g, kh, kw) in the rank it was sent with: (F, kh, kw) for rank 3. */
static void weight_shape(const cvd_tensor *W, int W_rank, int64_t out[4])
{
    if (W_rank == 3) {
        out[0] = W->shape[0];
        out[1] = W->shape[2];
        out[2] = W->shape[3];
    } else {
        memcpy(out, W->shape, sizeof(int64_t) * 4);
    }
}

static void key(buf *b, const char *k, int first)
{
    buf_printf(b, first ? "\"%s\":" : ",\"%s\":", k);
}

static void put_session_field(buf *b, const char *id)
{
    buf_puts(b, "{\"session\":");
    codec_string_encode(b, id);
}

/* ---- small endpoints ---- */

int api_root(const api_ctx *ctx, api_req *r)
{
    (void)ctx;
    buf_puts(&r->out, "{\"name\":\"convd\",\"version\":\"" CVD_VERSION "\",\"endpoints\":["
                      "\"GET /\",\"GET /healthz\",\"GET /readyz\",\"GET /metrics\","
                      "\"POST /sessions\",\"GET /sessions/{id}\",\"DELETE /sessions/{id}\","
                      "\"POST /forward\",\"POST /backward\"]}");
    r->status = 200;
    return 0;
}

int api_healthz(const api_ctx *ctx, api_req *r)
{
    (void)ctx;
    buf_puts(&r->out, "{\"status\":\"ok\"}");
    r->status = 200;
    return 0;
}

int api_readyz(const api_ctx *ctx, api_req *r)
{
    int draining = ctx->draining && atomic_load(ctx->draining);
    buf_puts(&r->out, draining ? "{\"status\":\"draining\"}" : "{\"status\":\"ready\"}");
    r->status = draining ? 503 : 200;
    return 0;
}

int api_metrics(const api_ctx *ctx, api_req *r)
{
    metrics_sessions ms;
    session_store_stats(ctx->store, &ms);
    metrics_render(&r->out, &ms);
    r->content_type = "text/plain; version=0.0.4; charset=utf-8";
    r->status = 200;
    return 0;
}

/* ---- sessions ---- */

static void encode_layer(buf *b, const session *s)
{
    key(b, "layer", 0);
    codec_layer_encode(b, cvd_conv2d_get_params(s->layer), s->scheme, s->seed);
}

static void encode_idle_timeout(buf *b, const api_ctx *ctx)
{
    key(b, "idle_timeout_s", 0);
    put_number(b, session_store_idle_timeout(ctx->store));
}

int api_session_create(const api_ctx *ctx, api_req *r)
{
    codec_layer cl = {0};
    cvd_conv2d *l = NULL;
    session *s = NULL;
    cJSON *root = parse_object(r);
    if (!root)
        return -1;
    int rc = -1;
    if (decode_layer(ctx, root, &cl, &r->err) || build_layer(ctx, &cl, &l, &r->err) ||
        session_create(ctx->store, &s, &r->err))
        goto done;
    fill_session(s, l, &cl);
    l = NULL;
    note_session(r, s->id);
    snprintf(r->location, sizeof r->location, "/sessions/%s", s->id);
    put_session_field(&r->out, s->id);
    encode_layer(&r->out, s);
    encode_idle_timeout(&r->out, ctx);
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

int api_session_get(const api_ctx *ctx, api_req *r)
{
    codec_form form = CODEC_NESTED;
    if (r->q_output && codec_form_parse(r->q_output, &form) != 0)
        return apierr_set(&r->err, APIERR_INVALID_ARGUMENT,
                          "?output= must be nested, flat or base64, not \"%.32s\"", r->q_output);
    note_session(r, r->id);
    session *s;
    if (session_acquire(ctx->store, r->id, &s, &r->err))
        return -1;
    buf *b = &r->out;
    put_session_field(b, s->id);
    encode_layer(b, s);
    const cvd_tensor *W = cvd_conv2d_weight(s->layer);
    int64_t ws[4];
    weight_shape(W, s->W_rank, ws);
    key(b, "W", 0);
    codec_tensor_encode(b, W, s->W_rank, ws, form);
    const cvd_tensor *bias = cvd_conv2d_bias(s->layer);
    if (bias) {
        int64_t bs[2] = {bias->shape[0], 1}; /* (F) or (F, 1), as b was sent */
        key(b, "b", 0);
        codec_tensor_encode(b, bias, s->b_rank, bs, form);
    }
    int64_t xs[4];
    buf_printf(b, ",\"cached\":%s,\"forwards\":%" PRIu64 ",\"backwards\":%" PRIu64,
               cvd_conv2d_has_cache(s->layer, xs) ? "true" : "false", s->forwards, s->backwards);
    encode_idle_timeout(b, ctx);
    buf_putc(b, '}');
    session_release(ctx->store, s);
    r->status = 200;
    return 0;
}

int api_session_delete(const api_ctx *ctx, api_req *r)
{
    note_session(r, r->id);
    if (session_delete(ctx->store, r->id, &r->err))
        return -1;
    r->status = 204;
    return 0;
}

/* ---- forward ---- */

static const char *const fwd_fields[] = {"session", "layer", "x", "cache", "output"};

int api_forward(const api_ctx *ctx, api_req *r)
{
    apierr *e = &r->err;
    codec_layer cl = {0};
    cvd_conv2d *l = NULL;
    session *s = NULL;
    int rc = -1, out_form;
    cvd_tensor x = {0}, y = {0};
    codec_form x_form = CODEC_NESTED;
    const char *id;
    cJSON *root = parse_object(r);
    if (!root)
        return -1;
    if (check_fields(root, fwd_fields, 5, "/forward", "session, layer, x, cache, output", e) ||
        session_id_of(root, r, &id, e) || output_form(root, &out_form, e))
        goto done;
    const cJSON *ln = cJSON_GetObjectItemCaseSensitive(root, "layer");
    const cJSON *xn = cJSON_GetObjectItemCaseSensitive(root, "x");
    const cJSON *cn = cJSON_GetObjectItemCaseSensitive(root, "cache");
    if (id && ln) {
        apierr_set(e, APIERR_INVALID_ARGUMENT,
                   "send either session (to use a session) or layer (to create one), not both");
        goto done;
    }
    if (!id && !ln) {
        apierr_set(e, APIERR_INVALID_ARGUMENT,
                   "send either session or layer: session is an id from POST /sessions, layer "
                   "describes a layer to create a session from");
        goto done;
    }
    if (!xn) {
        apierr_set(e, APIERR_INVALID_ARGUMENT,
                   "x is missing: send the input as x, shaped (N, C, H, W) or (C, H, W)");
        goto done;
    }
    if (cn && !cJSON_IsBool(cn)) {
        apierr_set(e, APIERR_INVALID_ARGUMENT, "cache must be true or false");
        goto done;
    }
    int keep_cache = !cn || cJSON_IsTrue(cn);

    /* An inline layer is built and run before its session exists, so a request that fails
     * (bad x, too big, non-finite y) never takes a session slot nor evicts an idle one. */
    cvd_conv2d *run;
    if (ln) {
        if (decode_layer(ctx, ln, &cl, e) || precheck_x(ctx, &cl.p, xn, e) ||
            build_layer(ctx, &cl, &l, e))
            goto done;
        run = l;
    } else {
        note_session(r, id);
        if (session_acquire(ctx->store, id, &s, e))
            goto done;
        note_session(r, s->id);
        run = s->layer;
        if (precheck_x(ctx, cvd_conv2d_get_params(run), xn, e))
            goto done;
    }
    const cvd_conv2d_params *p = cvd_conv2d_get_params(run);
    if (codec_tensor_decode(xn, "x", p->dtype, max_elems(ctx, p->dtype), LIMIT, &x, &x_form, e))
        goto done;
    cvd_tensor x4;
    int64_t ys[4];
    cvd_err ce = {{0}};
    if (x_as4(&x, &x4, e))
        goto done;
    cvd_status st = cvd_conv2d_output_shape(p, x4.shape, ys, &ce);
    if (st != CVD_OK) {
        x_shape_error(e, st, &ce, &x);
        goto done;
    }
    if (check_memory(ctx, p, x4.shape, e))
        goto done;
    st = cvd_tensor_alloc(&y, p->dtype, 4, ys, &ce);
    double t0 = mono();
    if (st == CVD_OK)
        st = cvd_conv2d_forward(run, &x4, &y, keep_cache ? 0 : CVD_FWD_NO_CACHE, &ce);
    metrics_compute(mono() - t0);
    if (st != CVD_OK) {
        apierr_from_cvd(e, st, &ce, 0);
        goto done;
    }
    if (ln) {
        if (session_create(ctx->store, &s, e))
            goto done;
        fill_session(s, l, &cl);
        l = NULL;
        note_session(r, s->id);
    }
    s->forwards++;
    if (keep_cache)
        s->x_rank = x.rank;
    char sid[SESSION_ID_LEN + 1];
    memcpy(sid, s->id, sizeof sid);
    session_release(ctx->store, s);
    s = NULL;

    buf *b = &r->out;
    put_session_field(b, sid);
    key(b, "y", 0);
    /* y comes back with x's rank: (F, OH, OW) when x was (C, H, W) */
    codec_tensor_encode(b, &y, x.rank, x.rank == 3 ? ys + 1 : ys,
                        out_form >= 0 ? (codec_form)out_form : x_form);
    buf_putc(b, '}');
    r->status = 200;
    rc = 0;
done:
    if (s)
        session_release(ctx->store, s);
    cvd_tensor_release(&x);
    cvd_tensor_release(&y);
    cvd_conv2d_free(l);
    codec_layer_release(&cl);
    cJSON_Delete(root);
    return rc;
}

/* ---- backward ---- */

static const char *const bwd_fields[] = {"session", "layer", "x", "delta", "lr", "need", "output"};

/* *need = the mask asked for, or 0 when need is absent (all the layer has: see need_for). */
static int parse_need(const cJSON *n, unsigned *need, apierr *e)
{
    *need = 0;
    if (!n)
        return 0;
    if (!cJSON_IsArray(n))
        return apierr_set(e, APIERR_INVALID_ARGUMENT,
                          "need must be a list of gradient names, e.g. [\"dW\", \"db\"]");
    static const char *const names[] = {"dx", "dW", "db"};
    static const unsigned bits[] = {CVD_NEED_DX, CVD_NEED_DW, CVD_NEED_DB};
    unsigned m = 0;
    for (const cJSON *c = n->child; c; c = c->next) {
        int k = 0;
        while (k < 3 && !(cJSON_IsString(c) && strcmp(c->valuestring, names[k]) == 0))
            k++;
        if (k == 3)
            return apierr_set(
                e, APIERR_INVALID_ARGUMENT, "need may list only \"dx\", \"dW\" and \"db\"%s%.32s%s",
                cJSON_IsString(c) ? ", not \"" : "", cJSON_IsString(c) ? c->valuestring : "",
                cJSON_IsString(c) ? "\"" : "");
        if (m & bits[k])
            return apierr_set(e, APIERR_INVALID_ARGUMENT, "need lists \"%s\" twice", names[k]);
        m |= bits[k];
    }
    if (!m)
        return apierr_set(e, APIERR_INVALID_ARGUMENT,
                          "need is empty: list at least one of \"dx\", \"dW\", \"db\" (or leave "
                          "need out to get all three)");
    *need = m;
    return 0;
}

/* The gradients to compute: those asked for (db only with a bias), or by default all the
 * layer has (no db without a bias). */
static int need_for(unsigned asked, const cvd_conv2d_params *p, unsigned *need, apierr *e)
{
    if (!asked) {
        *need = p->bias ? CVD_NEED_ALL : (CVD_NEED_DX | CVD_NEED_DW);
        return 0;
    }
    if ((asked & CVD_NEED_DB) && !p->bias)
        return apierr_set(e, APIERR_INVALID_ARGUMENT,
                          "need asks for db but the layer has no bias (bias: false); leave db out");
    *need = asked;
    return 0;
}

typedef struct grads {
    cvd_tensor dx, dW, db;
} grads;

static void grads_release(grads *g)
{
    cvd_tensor_release(&g->dx);
    cvd_tensor_release(&g->dW);
    cvd_tensor_release(&g->db);
}

/* Runs the backward into freshly allocated gradients (only those in need). */
static int run_backward(cvd_conv2d *l, const cvd_tensor *x4, const int64_t xs[4],
                        const cvd_tensor *d4, const cvd_backward_opts *o, grads *g, apierr *e)
{
    const cvd_conv2d_params *p = cvd_conv2d_get_params(l);
    cvd_err ce = {{0}};
    cvd_status st = CVD_OK;
    const cvd_tensor *W = cvd_conv2d_weight(l);
    if (o->need & CVD_NEED_DX)
        st = cvd_tensor_alloc(&g->dx, p->dtype, 4, xs, &ce);
    if (st == CVD_OK && (o->need & CVD_NEED_DW))
        st = cvd_tensor_alloc(&g->dW, p->dtype, 4, W->shape, &ce);
    if (st == CVD_OK && (o->need & CVD_NEED_DB))
        st = cvd_tensor_alloc(&g->db, p->dtype, 1, &p->out_channels, &ce);
    double t0 = mono();
    if (st == CVD_OK)
        st = cvd_conv2d_backward(l, x4, d4, o, (o->need & CVD_NEED_DX) ? &g->dx : NULL,
                                 (o->need & CVD_NEED_DW) ? &g->dW : NULL,
                                 (o->need & CVD_NEED_DB) ? &g->db : NULL, &ce);
    metrics_compute(mono() - t0);
    if (st != CVD_OK)
        return apierr_from_cvd(e, st, &ce, 0);
    return 0;
}

static void encode_grads(buf *b, const grads *g, unsigned need, int x_rank, int W_rank, int b_rank,
                         codec_form form, int first)
{
    if (need & CVD_NEED_DX) {
        key(b, "dx", first);
        first = 0;
        codec_tensor_encode(b, &g->dx, x_rank, x_rank == 3 ? g->dx.shape + 1 : g->dx.shape, form);
    }
    if (need & CVD_NEED_DW) {
        int64_t ws[4];
        weight_shape(&g->dW, W_rank, ws);
        key(b, "dW", first);
        first = 0;
        codec_tensor_encode(b, &g->dW, W_rank, ws, form);
    }
    if (need & CVD_NEED_DB) {
        int64_t bs[2] = {g->db.shape[0], 1};
        key(b, "db", first);
        codec_tensor_encode(b, &g->db, b_rank, bs, form);
    }
    buf_putc(b, '}');
}

static int backward_session(const api_ctx *ctx, api_req *r, const cJSON *root, const char *id,
                            const cvd_backward_opts *asked, int out_form)
{
    cvd_backward_opts o = *asked;
    apierr *e = &r->err;
    const cJSON *dn = cJSON_GetObjectItemCaseSensitive(root, "delta");
    if (cJSON_GetObjectItemCaseSensitive(root, "x"))
        return apierr_set(e, APIERR_INVALID_ARGUMENT,
                          "x is not used with a session: /backward takes x from the session's "
                          "last forward; send x to /forward first, or send layer, x and delta "
                          "for a stateless backward");
    session *s;
    note_session(r, id);
    if (session_acquire(ctx->store, id, &s, e))
        return -1;
    int rc = -1;
    cvd_tensor delta = {0}, d4;
    codec_form d_form = CODEC_NESTED;
    grads g = {{0}};
    int64_t xs[4], ys[4];
    int x_rank = s->x_rank, W_rank = s->W_rank, b_rank = s->b_rank;
    const cvd_conv2d_params *p = cvd_conv2d_get_params(s->layer);
    cvd_err ce = {{0}};
    if (need_for(asked->need, p, &o.need, e))
        goto done;
    if (!cvd_conv2d_has_cache(s->layer, xs)) {
        apierr_set(e, APIERR_NO_FORWARD_CACHE,
                   "session %s has no cached forward: POST /forward with this session (without "
                   "\"cache\": false) before /backward",
                   s->id);
        goto done;
    }
    cvd_status st = cvd_conv2d_output_shape(p, xs, ys, &ce);
    if (st != CVD_OK) {
        apierr_from_cvd(e, st, &ce, 0);
        goto done;
    }
    if (check_memory(ctx, p, xs, e) ||
        codec_tensor_decode(dn, "delta", p->dtype, max_elems(ctx, p->dtype), LIMIT, &delta, &d_form,
                            e) ||
        delta_as4(&delta, ys, 1, &d4, e) || run_backward(s->layer, NULL, xs, &d4, &o, &g, e))
        goto done;
    s->backwards++;
    session_release(ctx->store, s);
    s = NULL;

    put_session_field(&r->out, r->session);
    encode_grads(&r->out, &g, o.need, x_rank ? x_rank : 4, W_rank, b_rank,
                 out_form >= 0 ? (codec_form)out_form : d_form, 0);
    r->status = 200;
    rc = 0;
done:
    session_release(ctx->store, s);
    cvd_tensor_release(&delta);
    grads_release(&g);
    return rc;
}

static int backward_stateless(const api_ctx *ctx, api_req *r, const cJSON *root,
                              const cvd_backward_opts *asked, int out_form)
{
    cvd_backward_opts o = *asked;
    apierr *e = &r->err;
    const cJSON *ln = cJSON_GetObjectItemCaseSensitive(root, "layer");
    const cJSON *xn = cJSON_GetObjectItemCaseSensitive(root, "x");
    const cJSON *dn = cJSON_GetObjectItemCaseSensitive(root, "delta");
    if (!xn)
        return apierr_set(e, APIERR_INVALID_ARGUMENT,
                          "x is missing: a stateless /backward needs layer, x and delta (or "
                          "send session and delta after a forward)");
    codec_layer cl = {0};
    cvd_conv2d *l = NULL;
    cvd_tensor x = {0}, x4, delta = {0}, d4;
    codec_form x_form, d_form = CODEC_NESTED;
    grads g = {{0}};
    int64_t ys[4];
    cvd_err ce = {{0}};
    int rc = -1;
    if (decode_layer(ctx, ln, &cl, e))
        goto done;
    if (need_for(asked->need, &cl.p, &o.need, e))
        goto done;
    if (precheck_x(ctx, &cl.p, xn, e) || build_layer(ctx, &cl, &l, e))
        goto done;
    const cvd_conv2d_params *p = cvd_conv2d_get_params(l);
    if (codec_tensor_decode(xn, "x", p->dtype, max_elems(ctx, p->dtype), LIMIT, &x, &x_form, e) ||
        x_as4(&x, &x4, e))
        goto done;
    cvd_status st = cvd_conv2d_output_shape(p, x4.shape, ys, &ce);
    if (st != CVD_OK) {
        x_shape_error(e, st, &ce, &x);
        goto done;
    }
    if (check_memory(ctx, p, x4.shape, e) ||
        codec_tensor_decode(dn, "delta", p->dtype, max_elems(ctx, p->dtype), LIMIT, &delta, &d_form,
                            e) ||
        delta_as4(&delta, ys, 0, &d4, e) || run_backward(l, &x4, x4.shape, &d4, &o, &g, e))
        goto done;
    buf_putc(&r->out, '{');
    encode_grads(&r->out, &g, o.need, x.rank, cl.has_W ? cl.W_rank : 4, cl.has_b ? cl.b_rank : 1,
                 out_form >= 0 ? (codec_form)out_form : d_form, 1);
    r->status = 200;
    rc = 0;
done:
    cvd_tensor_release(&x);
    cvd_tensor_release(&delta);
    grads_release(&g);
    cvd_conv2d_free(l);
    codec_layer_release(&cl);
    return rc;
}

int api_backward(const api_ctx *ctx, api_req *r)
{
    apierr *e = &r->err;
    const char *id;
    int out_form, rc = -1;
    cvd_backward_opts o = {0};
    cJSON *root = parse_object(r);
    if (!root)
        return -1;
    if (check_fields(root, bwd_fields, 7, "/backward", "session, layer, x, delta, lr, need, output",
                     e) ||
        session_id_of(root, r, &id, e) || output_form(root, &out_form, e) ||
        parse_need(cJSON_GetObjectItemCaseSensitive(root, "need"), &o.need, e))
        goto done;
    const cJSON *ln = cJSON_GetObjectItemCaseSensitive(root, "layer");
    const cJSON *lr = cJSON_GetObjectItemCaseSensitive(root, "lr");
    if (id && ln) {
        apierr_set(e, APIERR_INVALID_ARGUMENT,
                   "send either session (gradients at its last forward) or layer with x "
                   "(stateless), not both");
        goto done;
    }
    if (!id && !ln) {
        apierr_set(e, APIERR_INVALID_ARGUMENT,
                   "send either session (an id from POST /sessions, after a forward) or layer "
                   "and x for a stateless backward");
        goto done;
    }
    if (lr) {
        if (!cJSON_IsNumber(lr) || !isfinite(lr->valuedouble) || lr->valuedouble < 0) {
            apierr_set(e, APIERR_INVALID_ARGUMENT,
                       "lr must be a finite number >= 0 (the SGD step size)");
            goto done;
        }
        if (ln) {
            apierr_set(e, APIERR_INVALID_ARGUMENT,
                       "lr updates a session's weights, and a stateless backward (layer, x, "
                       "delta) has none: create a session, or leave lr out");
            goto done;
        }
        o.sgd = 1;
        o.lr = lr->valuedouble;
    }
    if (!cJSON_GetObjectItemCaseSensitive(root, "delta")) {
        apierr_set(e, APIERR_INVALID_ARGUMENT,
                   "delta is missing: send the gradient of the loss with respect to y, shaped "
                   "like y");
        goto done;
    }
    rc = id ? backward_session(ctx, r, root, id, &o, out_form)
            : backward_stateless(ctx, r, root, &o, out_form);
done:
    cJSON_Delete(root);
    return rc;
}

int api_error_body(buf *b, const apierr *e)
{
    buf_printf(b, "{\"error\":{\"code\":\"%s\",\"message\":", apierr_name(e->code));
    codec_string_encode(b, e->msg);
    buf_puts(b, "}}");
    return b->oom ? -1 : 0;
}
