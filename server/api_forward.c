/*
 * api_forward.c — POST /forward and POST /sessions/{id}/forward: y for x, on a session's
 * layer (W and b given with the request replace the session's first, atomically with the
 * forward) or on an inline layer that becomes a new session once its forward succeeded.
 * The session's cached x is replaced unless "cache": false.
 */
#include <string.h>

#include "api_util.h"
#include "clock.h"

static const char *const fwd_fields[] = {"session", "layer", "x", "cache",
                                         "output",  "W",     "b", NULL};

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
    int new_weights = 0;
    api_weights old = {{0}};
    cJSON *root = api_parse_object(r);
    if (!root)
        return -1;
    if (codec_check_fields(root, fwd_fields, "the /forward body", e) ||
        api_session_id(root, r, &id, e) || api_output_form(root, &out_form, e))
        goto done;
    const cJSON *Wn = cJSON_GetObjectItemCaseSensitive(root, "W");
    const cJSON *bn = cJSON_GetObjectItemCaseSensitive(root, "b");
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
    if (ln && (Wn || bn)) {
        apierr_set(e, APIERR_INVALID_ARGUMENT,
                   "W and b at the top level replace a session's weights; to create a session "
                   "with given weights, put W and b inside layer");
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
        if (api_decode_layer(ctx, ln, &cl, e) || api_precheck_x(ctx, &cl.p, xn, e) ||
            api_build_layer(ctx, &cl, &l, e))
            goto done;
        run = l;
    } else {
        api_note_session(r, id);
        if (session_acquire(ctx->store, id, &s, e))
            goto done;
        api_note_session(r, s->id);
        run = s->layer;
        if (api_precheck_x(ctx, cvd_conv2d_get_params(run), xn, e))
            goto done;
        /* W and b go in first, so this forward runs on them; any failure below puts the old
         * ones back */
        if ((Wn || bn) && api_weights_apply(ctx, s, Wn, bn, &old, e))
            goto done;
        new_weights = Wn || bn;
    }
    const cvd_conv2d_params *p = cvd_conv2d_get_params(run);
    if (codec_tensor_decode(xn, "x", p->dtype, api_max_elems(ctx, p->dtype), LIMIT, &x, &x_form, e))
        goto done;
    cvd_tensor x4;
    int64_t ys[4];
    cvd_err ce = {{0}};
    if (api_x_as4(&x, &x4, e))
        goto done;
    cvd_status st = cvd_conv2d_output_shape(p, x4.shape, ys, &ce);
    if (st != CVD_OK) {
        api_x_shape_error(e, st, &ce, &x);
        goto done;
    }
    if (api_check_memory(ctx, p, x4.shape, e))
        goto done;
    st = cvd_tensor_alloc(&y, p->dtype, 4, ys, &ce);
    double t0 = clock_mono();
    if (st == CVD_OK)
        st = cvd_conv2d_forward(run, &x4, &y, keep_cache ? 0 : CVD_FWD_NO_CACHE, &ce);
    metrics_compute(clock_mono() - t0);
    if (st != CVD_OK) {
        apierr_from_cvd(e, st, &ce, 0);
        goto done;
    }
    int created = 0;
    if (ln) {
        if (session_create(ctx->store, &s, e))
            goto done;
        api_fill_session(s, l, &cl);
        l = NULL;
        created = 1;
    }
    s->forwards++;
    if (keep_cache)
        s->x_rank = x.rank;
    unsigned save = (created ? SESSION_SAVE_NEW : 0) | (new_weights ? SESSION_SAVE_WEIGHTS : 0) |
                    (keep_cache ? SESSION_SAVE_INPUT : 0);
    if (session_persist(ctx->store, s, save, e)) {
        if (created) {
            session_discard(ctx->store, s);
            s = NULL;
        } else {
            s->forwards--;
        }
        goto done;
    }
    api_note_session(r, s->id);
    char sid[SESSION_ID_MAX + 1];
    memcpy(sid, s->id, sizeof sid);
    if (new_weights)
        api_weights_release(&old);
    new_weights = 0;
    session_release(ctx->store, s);
    s = NULL;

    buf *b = &r->out;
    api_put_session_field(b, sid);
    api_key(b, "y", 0);
    /* y comes back with x's rank: (F, OH, OW) when x was (C, H, W) */
    codec_tensor_encode(b, &y, x.rank, x.rank == 3 ? ys + 1 : ys,
                        out_form >= 0 ? (codec_form)out_form : x_form);
    buf_putc(b, '}');
    r->status = 200;
    rc = 0;
done:
    if (new_weights)
        api_weights_restore(s, &old);
    if (s)
        session_release(ctx->store, s);
    cvd_tensor_release(&x);
    cvd_tensor_release(&y);
    cvd_conv2d_free(l);
    codec_layer_release(&cl);
    cJSON_Delete(root);
    return rc;
}
