/*
 * codec.h — JSON ⇄ convd values: tensors in the contract's three forms (nested, flat,
 * base64), the layer object, and shortest round-trip number printing.
 *
 * Parsing goes through cJSON_ParseWithLengthOpts (thread-safe, no global error pointer)
 * after a UTF-8 check; output is written straight into a buf, never through a cJSON tree.
 * Ownership: decoded tensors are allocated with cvd_tensor_alloc and owned by the caller
 * (cvd_tensor_release); a codec_layer owns its W/b (codec_layer_release). On any error the
 * outputs are left zeroed and nothing needs freeing.
 */
#ifndef SERVER_CODEC_H
#define SERVER_CODEC_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "../core/cvd.h"
#include "apierr.h"
#include "buf.h"

typedef enum { CODEC_NESTED = 0, CODEC_FLAT, CODEC_BASE64 } codec_form;

/* "nested"/"flat"/"base64" → form; -1 if s is none of them. */
int codec_form_parse(const char *s, codec_form *form);

/* Parses a request body: checks UTF-8, then JSON (RFC 8259; NaN/Infinity rejected, trailing
 * garbage rejected). Returns the tree (caller cJSON_Delete's it) or NULL with
 * invalid_json and a message saying where (byte offset) parsing stopped. */
cJSON *codec_parse(const char *body, size_t len, apierr *e);

/* Decodes the tensor at `node` (any of the three forms) into dtype `want`.
 * `field` names it in messages ("x", "delta", "layer.W"). Ranks 1..4 are accepted; the
 * caller checks rank for its use. A tensor with more than max_elems elements is
 * payload_too_large (checked before allocating; the message names `limit_setting`).
 * *form (may be NULL) receives the form it was sent in. 0 or -1 with e set
 * (invalid_tensor / payload_too_large). */
int codec_tensor_decode(const cJSON *node, const char *field, cvd_dtype want, int64_t max_elems,
                        const char *limit_setting, cvd_tensor *out, codec_form *form, apierr *e);

/* Appends the JSON value for t in `form`, printing `rank`/`shape` (which may differ from
 * t's own, e.g. dW sent back rank 3; the element count must match). shape NULL: t's shape.
 * Returns 0 or -1 (out of memory: b->oom). */
int codec_tensor_encode(buf *b, const cvd_tensor *t, int rank, const int64_t *shape,
                        codec_form form);

/* Shortest text that reads back (strtod / strtof) to exactly v; integers without a fraction
 * ("-4"); finite values only. Writes at most 32 bytes plus NUL into out; returns length. */
int codec_fmt_f64(char *out, double v);
int codec_fmt_f32(char *out, float v);

/* A layer as sent (spec/api.md §2), decoded and validated. */
typedef struct codec_layer {
    cvd_conv2d_params p;     /* complete: fields defaulted / taken from W */
    cvd_tensor W;            /* data in p.dtype; zeroed when not sent */
    int has_W;
    int W_rank;              /* rank W was sent with (3 or 4): dW and GET W use it */
    cvd_tensor b;            /* zeroed when not sent */
    int has_b;
    int b_rank;              /* 1 or 2 */
    cvd_init_scheme scheme;  /* from "init", default kaiming_uniform */
    uint64_t seed;           /* from "init.seed", or random when not given */
    int W_form;              /* codec_form W was sent in, -1 if not sent */
} codec_layer;

/* Decodes a layer object. Unknown fields, contradictions with W's shape, out-of-range
 * values, bad W/b shapes are invalid_layer naming the field; bad tensor encodings are
 * invalid_tensor. Tensors larger than max_elems → payload_too_large. A random seed is drawn
 * (getrandom) when "init" gives none. 0 or -1. */
int codec_layer_decode(const cJSON *node, int64_t max_elems, const char *limit_setting,
                       codec_layer *out, apierr *e);
void codec_layer_release(codec_layer *l);

/* Appends the normalised layer object: every field explicit (kernel_size, stride,
 * dilation as [h, w]; padding as [h, w] or "same"/"valid"), dtype, bias, and
 * "init": {"scheme", "seed"}; no W or b. */
int codec_layer_encode(buf *b, const cvd_conv2d_params *p, cvd_init_scheme scheme,
                       uint64_t seed);

/* Appends s as a JSON string literal (quotes and escapes included). */
int codec_string_encode(buf *b, const char *s);

#endif /* SERVER_CODEC_H */
