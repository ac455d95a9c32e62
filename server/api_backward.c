/*
 * api_backward.c — POST /backward and POST /sessions/{id}/backward: dx, dW, db for delta,
 * at a session's cached x and current W (with "lr", one SGD step on the session's weights,
 * stored before it is answered) or stateless from a layer, x and delta. "need" picks the
 * gradients to compute.
 */
#include <math.h>
#include <string.h>

#include "api_util.h"
#include "clock.h"

static const char *const bwd_fields[] = {"session", "layer", "x",      "delta",
                                         "lr",      "need",  "output", NULL};

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
    double t0 = clock_mono();
    if (st == CVD_OK)
        st = cvd_conv2d_backward(l, x4, d4, o, (o->need & CVD_NEED_DX) ? &g->dx : NULL,
                                 (o->need & CVD_NEED_DW) ? &g->dW : NULL,
                                 (o->need & CVD_NEED_DB) ? &g->db : NULL, &ce);
    metrics_compute(clock_mono() - t0);
    if (st != CVD_OK)
        return apierr_from_cvd(e, st, &ce, 0);
    return 0;
}

static void encode_grads(buf *b, const grads *g, unsigned need, int x_rank, int W_rank, int b_rank,
                         codec_form form, int first)
{
    if (need & CVD_NEED_DX) {
        api_key(b, "dx", first);
        first = 0;
        codec_tensor_encode(b, &g->dx, x_rank, x_rank == 3 ? g->dx.shape + 1 : g->dx.shape, form);
    }
    if (need & CVD_NEED_DW) {
        int64_t ws[4];
        api_weight_shape(&g->dW, W_rank, ws);
        api_key(b, "dW", first);
        first = 0;
        codec_tensor_encode(b, &g->dW, W_rank, ws, form);
    }
    if (need & CVD_NEED_DB) {
        int64_t bs[2] = {g->db.shape[0], 1};
        api_key(b, "db", first);
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
    api_note_session(r, id);
    if (session_acquire(ctx->store, id, &s, e))
        return -1;
    api_note_session(r, s->id);
    int rc = -1, stepped = 0;
    api_weights old = {{0}};
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
        if (s->restored && s->forwards > 0)
            apierr_set(e, APIERR_NO_FORWARD_CACHE,
                       "session %s has no cached forward: the daemon restarted since its last "
                       "forward, and forward inputs are not stored (persist_inputs = false); "
                       "POST /forward with this session again, then /backward",
                       s->id);
        else
            apierr_set(e, APIERR_NO_FORWARD_CACHE,
                       "session %s has no cached forward: POST /forward with this session "
                       "(without \"cache\": false) before /backward",
                       s->id);
        goto done;
    }
    cvd_status st = cvd_conv2d_output_shape(p, xs, ys, &ce);
    if (st != CVD_OK) {
        apierr_from_cvd(e, st, &ce, 0);
        goto done;
    }
    if (api_check_memory(ctx, p, xs, e) ||
        codec_tensor_decode(dn, "delta", p->dtype, api_max_elems(ctx, p->dtype), LIMIT, &delta,
                            &d_form, e) ||
        api_delta_as4(&delta, ys, 1, &d4, e) || (o.sgd && api_weights_save(s, &old, e)))
        goto done;
    stepped = o.sgd;
    if (run_backward(s->layer, NULL, xs, &d4, &o, &g, e))
        goto done;
    s->backwards++;
    /* an SGD step is acknowledged only once it is stored; else W and b go back */
    if (o.sgd && session_persist(ctx->store, s, SESSION_SAVE_WEIGHTS, e)) {
        s->backwards--;
        goto done;
    }
    stepped = 0;
    api_weights_release(&old);
    session_release(ctx->store, s);
    s = NULL;

    api_put_session_field(&r->out, r->session);
    encode_grads(&r->out, &g, o.need, x_rank ? x_rank : 4, W_rank, b_rank,
                 out_form >= 0 ? (codec_form)out_form : d_form, 0);
    r->status = 200;
    rc = 0;
done:
    if (stepped)
        api_weights_restore(s, &old);
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
    if (api_decode_layer(ctx, ln, &cl, e))
        goto done;
    if (need_for(asked->need, &cl.p, &o.need, e))
        goto done;
    if (api_precheck_x(ctx, &cl.p, xn, e) || api_build_layer(ctx, &cl, &l, e))
        goto done;
    const cvd_conv2d_params *p = cvd_conv2d_get_params(l);
    if (codec_tensor_decode(xn, "x", p->dtype, api_max_elems(ctx, p->dtype), LIMIT, &x, &x_form,
                            e) ||
        api_x_as4(&x, &x4, e))
        goto done;
    cvd_status st = cvd_conv2d_output_shape(p, x4.shape, ys, &ce);
    if (st != CVD_OK) {
        api_x_shape_error(e, st, &ce, &x);
        goto done;
    }
    if (api_check_memory(ctx, p, x4.shape, e) ||
        codec_tensor_decode(dn, "delta", p->dtype, api_max_elems(ctx, p->dtype), LIMIT, &delta,
                            &d_form, e) ||
        api_delta_as4(&delta, ys, 0, &d4, e) || run_backward(l, &x4, x4.shape, &d4, &o, &g, e))
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
    cJSON *root = api_parse_object(r);
    if (!root)
        return -1;
    if (codec_check_fields(root, bwd_fields, "the /backward body", e) ||
        api_session_id(root, r, &id, e) || api_output_form(root, &out_form, e) ||
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
