/*
 * api_util.h — the pieces every endpoint handler is built from (api_util.c). Internal to
 * the api_*.c files. Functions that can fail return 0 or -1 with the apierr set; tensors
 * and layers they allocate belong to the caller.
 */
#ifndef SERVER_API_UTIL_H
#define SERVER_API_UTIL_H

#include <stdint.h>

#include "api.h"
#include "codec.h"
#include "shape.h"

/* The setting that 413s of tensors and layers name. */
#define LIMIT "max_session_bytes"


/* The body as a JSON object (invalid_json / invalid_argument otherwise); NULL on error. */
cJSON *api_parse_object(api_req *r);
/* The session a request names: in the path, the X-Session-Id header or the body's
 * "session" (all given must agree); *id NULL when none. */
int api_session_id(const cJSON *root, const api_req *r, const char **id, apierr *e);
/* The top-level "output" override: *form -1 when absent, else a codec_form. */
int api_output_form(const cJSON *root, int *form, apierr *e);
void api_note_session(api_req *r, const char *id);

/* The most elements of dtype one tensor may have under max_session_bytes. */
int64_t api_max_elems(const api_ctx *ctx, cvd_dtype dt);
/* 413 (naming max_session_bytes) when running p on x_shape would need more than it. */
int api_check_memory(const api_ctx *ctx, const cvd_conv2d_params *p, const int64_t xs[4],
                     apierr *e);
/* The same from x's node before its data is decoded (an absurd shape fails fast). */
int api_precheck_x(const api_ctx *ctx, const cvd_conv2d_params *p, const cJSON *xn, apierr *e);
/* x as (N, C, H, W); delta as y's (N, F, OH, OW); the error of an x that does not fit. */
int api_x_as4(const cvd_tensor *x, cvd_tensor *x4, apierr *e);
int api_x_shape_error(apierr *e, cvd_status st, const cvd_err *ce, const cvd_tensor *x);
int api_delta_as4(const cvd_tensor *d, const int64_t ys[4], int from_session, cvd_tensor *d4,
                  apierr *e);

int api_decode_layer(const api_ctx *ctx, const cJSON *node, codec_layer *cl, apierr *e);
int api_build_layer(const api_ctx *ctx, const codec_layer *cl, cvd_conv2d **out, apierr *e);
/* Gives l to a new session s with what cl says of W, b and init. */
void api_fill_session(session *s, cvd_conv2d *l, const codec_layer *cl);
/* W's shape in the rank it was sent with: (F, kh, kw) for rank 3. */
void api_weight_shape(const cvd_tensor *W, int W_rank, int64_t out[4]);

/* A session's weights as they were, to put back when a change cannot be stored. */
typedef struct api_weights {
    cvd_tensor W, b; /* b.data NULL without bias */
    int W_rank, b_rank;
} api_weights;

int api_weights_save(const session *s, api_weights *w, apierr *e);
/* Replaces W and/or b (either node may be NULL) from request tensors, validated like a
 * layer's; the previous weights go to *old (the caller restores or releases them). */
int api_weights_apply(const api_ctx *ctx, session *s, const cJSON *Wn, const cJSON *bn,
                      api_weights *old, apierr *e);
void api_weights_restore(session *s, api_weights *w);
void api_weights_release(api_weights *w);

/* JSON writers: `"k":` (with a leading comma unless first), `{"session":"id"`, numbers. */
void api_key(buf *b, const char *k, int first);
void api_put_session_field(buf *b, const char *id);
void api_put_number(buf *b, double v);
void api_encode_layer(buf *b, const session *s);
void api_encode_idle_timeout(buf *b, const api_ctx *ctx);

/* Edge hook: charges n bytes (for `what`) to the memory budget before they are allocated;
 * -1 with 503 out_of_memory in e when the budget cannot take them. */
int api_budget_charge(uint64_t n, const char *what, apierr *e);

#endif /* SERVER_API_UTIL_H */
