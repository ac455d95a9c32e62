/*
 * codec.h — JSON ⇄ convd values: tensors in the contract's three forms (nested, flat,
 * base64), the layer object, and shortest round-trip number printing.
 *
 * Parsing goes through cJSON_ParseWithLengthOpts (thread-safe, no global error pointer)
 * after jsoncheck.h's strict UTF-8 + RFC 8259 pass, which gives the error offsets; output
 * is written straight into a buf (numbers via numfmt.h), never through a cJSON tree.
 * Ownership: decoded tensors are allocated with cvd_tensor_alloc and owned by the caller
 * (cvd_tensor_release); a codec_layer owns its W/b (codec_layer_release). On any error the
 * outputs are left zeroed and nothing needs freeing.
 * One header, one file per job: codec_parse.c (bodies into trees), codec_fields.c
 * (unknown fields, suggestions), codec_decode.c and codec_encode.c (tensors in and out),
 * codec_layer.c (the layer object).
 */
#ifndef SERVER_CODEC_H
#define SERVER_CODEC_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "../core/cvd.h"
#include "apierr.h"
#include "buf.h"
#include "prescan.h"

typedef enum { CODEC_NESTED = 0, CODEC_FLAT, CODEC_BASE64 } codec_form;

/* "nested"/"flat"/"base64" → form; -1 if s is none of them. */
int codec_form_parse(const char *s, codec_form *form);

/* Parses a request body: checks UTF-8, then JSON (RFC 8259; NaN/Infinity rejected, trailing
 * garbage rejected; a leading UTF-8 byte order mark is skipped). Returns the tree (caller
 * cJSON_Delete's it) or NULL with invalid_json and a message saying where (byte offset,
 * line, column) parsing stopped. A key that appears twice in one object is
 * invalid_argument naming it (a client never means that). Out of memory: internal.
 * Long base64 strings (see jsoncheck_spans) are not copied into the tree: their nodes hold a
 * marker that codec_tensor_decode reads the bytes through, so `body` must stay alive and
 * unchanged until the tree is deleted, and such a node's valuestring is not the text. */
cJSON *codec_parse(const char *body, size_t len, apierr *e);

/* codec_parse for a body that came through prescan_feed (p may be NULL: codec_parse): the
 * same tree, answer and messages as codec_parse of the whole text (prescan_restore). Its
 * prescanned strings' nodes read their bytes through the segments, so p (and body) must
 * stay alive until the tree is deleted; decoding such a node hands the segment's buffer to
 * the tensor, so each is decoded once (a second time is internal). */
cJSON *codec_parse_prescanned(const char *body, size_t len, prescan *p, apierr *e);

/* "a number", "a string", "a boolean", "null", "an array", "an object"; "missing" for NULL. */
const char *codec_json_type_name(const cJSON *n);

/* Fails with invalid_argument "unknown field 'strid' in <where> (did you mean 'stride'?)"
 * (or the list of known fields when nothing is close) if obj has a key not in `known`
 * (NULL-terminated). For every object of a request body: the spec allows no unknown
 * fields anywhere. 0 or -1. */
int codec_check_fields(const cJSON *obj, const char *const *known, const char *where, apierr *e);
/* The entry of `known` closest to key (typo distance, case, common aliases such as
 * "weight" for "W"), or NULL when none is close. */
const char *codec_suggest(const char *key, const char *const *known);

/* Decodes the tensor at `node` (any of the three forms; a node of a codec_parse tree) into
 * dtype `want`.
 * `field` names it in messages ("x", "delta", "layer.W"). Ranks 1..4 are accepted; the
 * caller checks rank for its use. A tensor with more than max_elems elements (max_elems
 * <= 0: no limit) is payload_too_large (checked before allocating; the message names
 * `limit_setting`). *form (may be NULL) receives the form it was sent in. 0 or -1 with e
 * set: invalid_tensor (ragged, empty, non-numeric, rank > 4, bad base64, wrong length,
 * not finite in `want`), invalid_argument (an unknown key in a flat/base64 object),
 * payload_too_large, internal (out of memory).
 * Numbers: JSON numbers arrive as doubles (cJSON's strtod); a float32 tensor takes
 * (float)double. That double rounding can differ from rounding the decimal text straight
 * to float only for a decimal within ~2^-53 (relative) of a midpoint between two floats,
 * which no float printed by a float32 library (shortest or %.9g) is. */
int codec_tensor_decode(const cJSON *node, const char *field, cvd_dtype want, int64_t max_elems,
                        const char *limit_setting, cvd_tensor *out, codec_form *form, apierr *e);

/* Appends the JSON value for t in `form`, printing `rank`/`shape` (which may differ from
 * t's own, e.g. dW sent back rank 3; the element count must match). shape NULL: t's rank
 * and shape. base64 output carries t's dtype. Returns 0, or -1 when out of memory
 * (b->oom set) or when the element counts differ (a caller bug; b->oom not set). */
int codec_tensor_encode(buf *b, const cvd_tensor *t, int rank, const int64_t *shape,
                        codec_form form);

/* Shortest text that reads back (strtod / strtof) to exactly v; integers without a fraction
 * ("-4"), -0.0 as "-0"; Python's repr layout (1e-05 → "1e-5", 1e16 → "1e+16"). out needs
 * 32 bytes (NUMFMT_MAX); returns the length. Non-finite values print "null". */
int codec_fmt_f64(char *out, double v);
int codec_fmt_f32(char *out, float v);

/* A layer as sent (docs/api.md §2), decoded and validated.
 * How to build it: cvd_conv2d_create(&p), cvd_conv2d_init(scheme, seed), then, if has_W,
 * set W (and b if has_b); if only has_b, set b over the init's b. With W, `scheme` is
 * CVD_INIT_ZEROS and seed 0, so the init gives the spec's zero b when b is not sent. */
typedef struct codec_layer {
    cvd_conv2d_params p; /* complete: fields defaulted / taken from W */
    cvd_tensor W;        /* data in p.dtype, as sent (rank 3 or 4); zeroed when not sent */
    int has_W;
    int W_rank;   /* rank W was sent with (3 or 4): dW and GET W use it */
    cvd_tensor b; /* data in p.dtype, as sent (rank 1 or 2); zeroed when not sent */
    int has_b;
    int b_rank;             /* 1 or 2 */
    cvd_init_scheme scheme; /* from "init", default kaiming_uniform; zeros with W */
    uint64_t seed;          /* from "init.seed", or random (53 bits) when not given */
    int W_form;             /* codec_form W was sent in, -1 if not sent */
} codec_layer;

/* Decodes a layer object. Unknown fields (also in "init") are invalid_argument naming the
 * field, with a suggestion for typos. Missing, contradictory (vs W's shape) or out-of-range
 * fields and W/b of the wrong rank or shape are invalid_layer naming the field; bad tensor
 * encodings are invalid_tensor. Tensors larger than max_elems → payload_too_large. A
 * random seed is drawn (getrandom) when "init" gives none. "init" together with W is
 * invalid_layer, except {"scheme": "given"} (what codec_layer_encode reports for a layer
 * built from W, so a GET's layer plus its W can be sent back). 0 or -1; on failure `out`
 * holds nothing to release. */
int codec_layer_decode(const cJSON *node, int64_t max_elems, const char *limit_setting,
                       codec_layer *out, apierr *e);
void codec_layer_release(codec_layer *l);

/* `scheme` value for a layer whose weights came from W: "init": {"scheme": "given"}. */
#define CODEC_INIT_GIVEN (-1)

/* Appends the normalised layer object: every field explicit (kernel_size, stride,
 * dilation as [h, w]; padding as [h, w] or "same"/"valid"), groups, bias, dtype, and
 * "init": {"scheme", "seed"}, or {"scheme": "given"} when scheme is CODEC_INIT_GIVEN
 * (pass `l.has_W ? CODEC_INIT_GIVEN : (int)l.scheme`); no W or b. 0 or -1 (oom). */
int codec_layer_encode(buf *b, const cvd_conv2d_params *p, int scheme, uint64_t seed);

/* Appends s as a JSON string literal: quotes, \" \\ \b \f \n \r \t, other control
 * characters as \u00XX; valid UTF-8 passes through, invalid bytes (a message truncated
 * inside a character) become \ufffd, so the output is always valid JSON. 0 or -1 (oom). */
int codec_string_encode(buf *b, const char *s);

#endif /* SERVER_CODEC_H */
