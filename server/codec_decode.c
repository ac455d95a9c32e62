/*
 * codec_decode.c — JSON tensors into cvd_tensors (codec.h), in the contract's three forms.
 * Nested arrays are read straight from the tree (shape from the first path, then every row
 * checked against it, iteratively); flat {shape, data} likewise; base64 is decoded from
 * the body through codec_parse's markers, or taken over from prescan's segment. Sizes are
 * checked against max_elems before anything is allocated, every value is checked finite
 * in the wanted dtype, and on error the output tensor is left empty. The caller owns it.
 */
#include "codec.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "base64.h"
#include "codec_internal.h"
#include "jsontensor.h"
#include "numfmt.h"
#include "shape.h"

/* field followed by [i] for each of the n indices. */
static void fmt_path(char *out, size_t cap, const char *field, const int64_t *idx, int n)
{
    size_t len = (size_t)snprintf(out, cap, "%s", field);
    for (int i = 0; i < n && len < cap; i++)
        len += (size_t)snprintf(out + len, cap - len, "[%lld]", (long long)idx[i]);
}

static int too_large(apierr *e, const char *field, int64_t numel, int64_t max_elems,
                     const char *limit_setting)
{
    return apierr_set(e, APIERR_PAYLOAD_TOO_LARGE,
                      "%s has %lld elements, more than the %lld allowed; raise %s to send it",
                      field, (long long)numel, (long long)max_elems,
                      limit_setting ? limit_setting : "the limit");
}

static int alloc_checked(cvd_tensor *out, cvd_dtype dt, int rank, const int64_t *shape,
                         const char *field, int64_t max_elems, const char *limit_setting, apierr *e)
{
    int64_t numel;
    cvd_err ce = {{0}};
    cvd_status s = cvd_shape_numel(rank, shape, &numel, &ce);
    if (s == CVD_ERR_TOO_LARGE || (s == CVD_OK && max_elems > 0 && numel > max_elems)) {
        if (s != CVD_OK)
            return apierr_set(e, APIERR_PAYLOAD_TOO_LARGE,
                              "%s is too large: its element count overflows; raise %s or send "
                              "less",
                              field, limit_setting ? limit_setting : "the limit");
        return too_large(e, field, numel, max_elems, limit_setting);
    }
    if (s != CVD_OK)
        return apierr_set(e, APIERR_INVALID_TENSOR, "%s: %s", field, ce.msg);
    s = cvd_tensor_alloc(out, dt, rank, shape, &ce);
    if (s != CVD_OK)
        return apierr_from_cvd(e, s, &ce, 0);
    return 0;
}

/* Stores v as element i of t, or fails when v is not finite in t's dtype. */
static inline int store(cvd_tensor *t, int64_t i, double v)
{
    if (t->dtype == CVD_F64) {
        ((double *)t->data)[i] = v;
        return isfinite(v) ? 0 : -1;
    }
    float f = (float)v;
    ((float *)t->data)[i] = f;
    return isfinite(f) ? 0 : -1;
}

static int not_finite(apierr *e, const char *where, double v, cvd_dtype dt)
{
    char num[NUMFMT_MAX];
    if (isfinite(v))
        numfmt_f64(num, v);
    else
        snprintf(num, sizeof num, "%s", isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf"));
    return apierr_set(e, APIERR_INVALID_TENSOR,
                      "%s is %s, which is not a finite %s; values must be finite (largest: "
                      "%s)",
                      where, num, cvd_dtype_name(dt),
                      dt == CVD_F32 ? "3.4028235e+38" : "1.7976931348623157e+308");
}

static int decode_nested(const cJSON *node, const char *field, cvd_dtype want, int64_t max_elems,
                         const char *limit_setting, cvd_tensor *out, apierr *e)
{
    char path[160], first[160];
    int64_t shape[CVD_MAX_RANK], k[CVD_MAX_RANK] = {0};
    int rank = 0;

    /* The shape comes from the first element at every depth. node is an array (the caller
     * checked), so the loop runs at least once and rank ends >= 1. */
    const cJSON *n = node;
    do {
        fmt_path(path, sizeof path, field, k, rank);
        if (rank == CVD_MAX_RANK)
            return apierr_set(e, APIERR_INVALID_TENSOR,
                              "%s is nested deeper than %d levels (%s is an array); tensors "
                              "have rank 1 to 4",
                              field, CVD_MAX_RANK, path);
        if (!n->child)
            return apierr_set(e, APIERR_INVALID_TENSOR,
                              "%s is an empty array; every dimension must be >= 1", path);
        int64_t cnt = 0;
        for (const cJSON *c = n->child; c; c = c->next)
            cnt++;
        shape[rank++] = cnt;
        n = n->child;
    } while (cJSON_IsArray(n));
    if (alloc_checked(out, want, rank, shape, field, max_elems, limit_setting, e) < 0)
        return -1;

    /* cur[d]: the current element of the depth-d array (itself an array for d < rank-1). */
    const cJSON *cur[CVD_MAX_RANK];
    cur[0] = node->child;
    for (int d = 1; d < rank - 1; d++)
        cur[d] = cur[d - 1]->child;
    int64_t o = 0, row_len = shape[rank - 1];
    for (;;) {
        /* row: [shape[rank-1]] numbers */
        const cJSON *row = rank == 1 ? node : cur[rank - 2];
        int64_t j = 0;
        for (const cJSON *c = row->child; c; c = c->next, j++) {
            if (j == row_len || !cJSON_IsNumber(c)) {
                k[rank - 1] = j;
                fmt_path(path, sizeof path, field, k, j == row_len ? rank - 1 : rank);
                memset(k, 0, sizeof k);
                fmt_path(first, sizeof first, field, k, rank - 1);
                if (j == row_len)
                    goto ragged_row;
                if (cJSON_IsArray(c))
                    apierr_set(e, APIERR_INVALID_TENSOR,
                               "%s is an array, expected a number: %s is nested deeper than "
                               "its first element (%s holds numbers); %s must be rectangular",
                               path, field, first, field);
                else
                    apierr_set(e, APIERR_INVALID_TENSOR, "%s is %s, expected a number", path,
                               codec_json_type_name(c));
                goto fail;
            }
            if (store(out, o + j, c->valuedouble) < 0) {
                k[rank - 1] = j;
                fmt_path(path, sizeof path, field, k, rank);
                not_finite(e, path, c->valuedouble, want);
                goto fail;
            }
        }
        if (j != row_len) {
            fmt_path(path, sizeof path, field, k, rank - 1);
            memset(k, 0, sizeof k);
            fmt_path(first, sizeof first, field, k, rank - 1);
            goto ragged_row;
        }
        o += row_len;

        /* Advance to the next row: bump the deepest index that has room. */
        int d = rank - 2;
        for (; d >= 0; d--) {
            cur[d] = cur[d]->next;
            k[d]++;
            if (k[d] < shape[d]) {
                if (!cur[d])
                    goto ragged_level;
                break;
            }
            if (cur[d])
                goto ragged_level;
            k[d] = 0;
        }
        if (d < 0)
            break;
        /* Entering a new sub-array at depth d: it and its first descendants must be arrays
         * (their element counts are checked as they are walked). */
        for (int j2 = d; j2 <= rank - 2; j2++) {
            if (!cJSON_IsArray(cur[j2])) {
                fmt_path(path, sizeof path, field, k, j2 + 1);
                int64_t z[CVD_MAX_RANK] = {0};
                fmt_path(first, sizeof first, field, z, j2 + 1);
                apierr_set(e, APIERR_INVALID_TENSOR,
                           "%s is %s but %s is an array; %s must be rectangular", path,
                           codec_json_type_name(cur[j2]), first, field);
                goto fail;
            }
            if (j2 < rank - 2) {
                cur[j2 + 1] = cur[j2]->child;
                k[j2 + 1] = 0;
                if (!cur[j2 + 1]) {
                    d = j2 + 1;
                    goto ragged_level;
                }
            }
        }
        continue;

    ragged_level : {
        /* the array at depth d (path k[0..d)) has a different element count than shape[d] */
        /* d >= 1: depth 0 is the array the shape was counted on */
        int64_t cnt = cJSON_GetArraySize(cur[d - 1]);
        fmt_path(path, sizeof path, field, k, d);
        int64_t z[CVD_MAX_RANK] = {0};
        fmt_path(first, sizeof first, field, z, d);
        apierr_set(e, APIERR_INVALID_TENSOR,
                   "%s is ragged: %s has %lld elements but %s has %lld; send a rectangular array",
                   field, path, (long long)cnt, first, (long long)shape[d]);
        goto fail;
    }
    }
    return 0;

ragged_row : {
    const cJSON *row = rank == 1 ? node : cur[rank - 2];
    apierr_set(e, APIERR_INVALID_TENSOR,
               "%s is ragged: %s has %lld elements but %s has %lld; send a rectangular array",
               field, path, (long long)cJSON_GetArraySize(row), first, (long long)row_len);
}
fail:
    cvd_tensor_release(out);
    return -1;
}

/* A tensor object's "shape": 1..4 integers >= 1. */
static int read_shape(const cJSON *obj, const char *field, int *rank, int64_t *shape, apierr *e)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(obj, "shape");
    if (!s)
        return apierr_set(e, APIERR_INVALID_TENSOR,
                          "%s.shape is missing; flat and base64 tensors need \"shape\"", field);
    if (!cJSON_IsArray(s))
        return apierr_set(e, APIERR_INVALID_TENSOR,
                          "%s.shape is %s; send an array of 1 to 4 integers >= 1", field,
                          codec_json_type_name(s));
    int r = 0;
    for (const cJSON *c = s->child; c; c = c->next, r++) {
        if (r == CVD_MAX_RANK)
            return apierr_set(e, APIERR_INVALID_TENSOR,
                              "%s.shape has %d dimensions; tensors have rank 1 to 4", field,
                              cJSON_GetArraySize(s));
        double v = c->valuedouble;
        if (!cJSON_IsNumber(c))
            return apierr_set(e, APIERR_INVALID_TENSOR,
                              "%s.shape[%d] is %s; dimensions are integers >= 1", field, r,
                              codec_json_type_name(c));
        if (!(v >= 1 && v <= 9007199254740992.0) || v != floor(v)) {
            char num[NUMFMT_MAX];
            numfmt_f64(num, v);
            return apierr_set(e, APIERR_INVALID_TENSOR,
                              "%s.shape[%d] is %s; dimensions are integers >= 1", field, r, num);
        }
        shape[r] = (int64_t)v;
    }
    if (r == 0)
        return apierr_set(e, APIERR_INVALID_TENSOR,
                          "%s.shape is empty; tensors have rank 1 to 4 (a scalar is [1])", field);
    *rank = r;
    return 0;
}

static const char *const FLAT_FIELDS[] = {"shape", "data", NULL};
static const char *const B64_FIELDS[] = {"shape", "dtype", "base64", NULL};
static const char FLAT_WHAT[] = "a flat tensor: shape, data";
static const char B64_WHAT[] = "a base64 tensor: shape, dtype, base64";

/* Checks the fields of a {shape, ...} tensor object against `known` (messages say the
 * object is `what`), then reads its shape. */
static int read_object_shape(const cJSON *node, const char *field, const char *const *known,
                             const char *what, int *rank, int64_t *shape, apierr *e)
{
    char where[96];
    snprintf(where, sizeof where, "%s (%s)", field, what);
    if (codec_check_fields(node, known, where, e) < 0)
        return -1;
    return read_shape(node, field, rank, shape, e);
}

static int decode_flat(const cJSON *node, const char *field, cvd_dtype want, int64_t max_elems,
                       const char *limit_setting, cvd_tensor *out, apierr *e)
{
    if (cJSON_GetObjectItemCaseSensitive(node, "dtype"))
        return apierr_set(e, APIERR_INVALID_ARGUMENT,
                          "%s has a \"dtype\" field, which only the base64 form takes; a flat "
                          "tensor is {\"shape\": [...], \"data\": [...]}",
                          field);
    int rank = 0;
    int64_t shape[CVD_MAX_RANK];
    if (read_object_shape(node, field, FLAT_FIELDS, FLAT_WHAT, &rank, shape, e) < 0)
        return -1;
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(node, "data");
    if (!cJSON_IsArray(data))
        return apierr_set(e, APIERR_INVALID_TENSOR,
                          "%s.data is %s; send the elements as one flat array of numbers", field,
                          codec_json_type_name(data));
    int64_t cnt = 0, numel;
    for (const cJSON *c = data->child; c; c = c->next)
        cnt++;
    /* The length check comes first: it needs no allocation, whatever shape claims. */
    if (cvd_shape_numel(rank, shape, &numel, NULL) == CVD_OK && cnt != numel) {
        char sh[96];
        shape_format(sh, sizeof sh, rank, shape);
        return apierr_set(e, APIERR_INVALID_TENSOR,
                          "%s.data has %lld numbers but %s.shape %s needs %lld", field,
                          (long long)cnt, field, sh, (long long)numel);
    }
    if (alloc_checked(out, want, rank, shape, field, max_elems, limit_setting, e) < 0)
        return -1;
    int64_t i = 0;
    for (const cJSON *c = data->child; c; c = c->next, i++) {
        char path[128];
        if (!cJSON_IsNumber(c)) {
            snprintf(path, sizeof path, "%s.data[%lld]", field, (long long)i);
            cvd_tensor_release(out);
            return apierr_set(e, APIERR_INVALID_TENSOR, "%s is %s, expected a number", path,
                              codec_json_type_name(c));
        }
        if (store(out, i, c->valuedouble) < 0) {
            snprintf(path, sizeof path, "%s.data[%lld]", field, (long long)i);
            double v = c->valuedouble;
            cvd_tensor_release(out);
            return not_finite(e, path, v, want);
        }
    }
    return 0;
}

/* Converts raw little-endian bytes of dtype `src` (n elements) into t's elements
 * [at, at+n), checking each is finite in t's dtype. Returns the index of the first
 * non-finite element, or -1. */
static int64_t convert_le(cvd_tensor *t, int64_t at, const unsigned char *raw, int64_t n,
                          cvd_dtype src, double *bad_value)
{
    size_t es = cvd_dtype_size(src);
    for (int64_t i = 0; i < n; i++) {
        unsigned char b[8];
        memcpy(b, raw + (size_t)i * es, es);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        for (size_t x = 0; x < es / 2; x++) {
            unsigned char tmp = b[x];
            b[x] = b[es - 1 - x];
            b[es - 1 - x] = tmp;
        }
#endif
        double v;
        if (src == CVD_F64) {
            memcpy(&v, b, 8);
        } else {
            float f;
            memcpy(&f, b, 4);
            v = f;
        }
        if (store(t, at + i, v) < 0) {
            *bad_value = v;
            return at + i;
        }
    }
    return -1;
}

/* Index of the first non-finite element of the n values at p (of dtype dt), or -1.
 * Exponent bits all ones means inf or nan; a branch-free OR over blocks keeps the common,
 * all-finite case fast. */
static int64_t first_non_finite(const void *p, int64_t n, cvd_dtype dt)
{
    for (int64_t i = 0; i < n; i += 256) {
        int64_t m = n - i < 256 ? n - i : 256;
        /* Adding one exponent step carries into the sign bit exactly when the exponent is
         * all ones: an OR of those sums vectorises. */
        int bad;
        if (dt == CVD_F64) {
            const unsigned char *q = (const unsigned char *)p + (size_t)i * 8;
            uint64_t acc = 0;
            int64_t j = 0;
#ifdef __SSE2__
            const __m128i mask = _mm_set1_epi64x(0x7FF0000000000000LL);
            const __m128i step = _mm_set1_epi64x(0x0010000000000000LL);
            __m128i va = _mm_setzero_si128();
            for (; j + 2 <= m; j += 2) {
                __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(q + (size_t)j * 8));
                va = _mm_or_si128(va, _mm_add_epi64(_mm_and_si128(v, mask), step));
            }
            acc = (uint64_t)(_mm_movemask_pd(_mm_castsi128_pd(va)) != 0) << 63;
#endif
            for (; j < m; j++) {
                uint64_t u;
                memcpy(&u, q + (size_t)j * 8, 8);
                acc |= (u & UINT64_C(0x7FF0000000000000)) + UINT64_C(0x0010000000000000);
            }
            bad = (acc >> 63) != 0;
        } else {
            const unsigned char *q = (const unsigned char *)p + (size_t)i * 4;
            uint32_t acc = 0;
            int64_t j = 0;
#ifdef __SSE2__
            const __m128i mask = _mm_set1_epi32(0x7F800000), step = _mm_set1_epi32(0x00800000);
            __m128i va = _mm_setzero_si128(), vb = _mm_setzero_si128();
            for (; j + 8 <= m; j += 8) {
                __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(q + (size_t)j * 4));
                __m128i w =
                    _mm_loadu_si128((const __m128i *)(const void *)(q + (size_t)j * 4 + 16));
                va = _mm_or_si128(va, _mm_add_epi32(_mm_and_si128(v, mask), step));
                vb = _mm_or_si128(vb, _mm_add_epi32(_mm_and_si128(w, mask), step));
            }
            acc = (uint32_t)(_mm_movemask_ps(_mm_castsi128_ps(_mm_or_si128(va, vb))) != 0) << 31;
#endif
            for (; j < m; j++) {
                uint32_t u;
                memcpy(&u, q + (size_t)j * 4, 4);
                acc |= (u & 0x7F800000u) + 0x00800000u;
            }
            bad = (acc >> 31) != 0;
        }
        if (!bad)
            continue;
        for (int64_t j = i; j < i + m; j++) {
            double v = dt == CVD_F64 ? ((const double *)p)[j] : ((const float *)p)[j];
            if (!isfinite(v))
                return j;
        }
    }
    return -1;
}

static int decode_prescanned(prescan_seg *seg, const char *tail, size_t tlen, cvd_dtype want,
                             cvd_dtype src, int rank, const int64_t *shape, int64_t max_elems,
                             cvd_tensor *out);
static int decode_b64_text(const char *text, size_t tlen, const char *field, cvd_dtype src,
                           cvd_dtype want, int rank, const int64_t *shape, int64_t max_elems,
                           const char *limit_setting, cvd_tensor *out, apierr *e);

static int decode_base64(const cJSON *node, const char *field, cvd_dtype want, int64_t max_elems,
                         const char *limit_setting, cvd_tensor *out, apierr *e)
{
    int rank = 0;
    int64_t shape[CVD_MAX_RANK];
    if (read_object_shape(node, field, B64_FIELDS, B64_WHAT, &rank, shape, e) < 0)
        return -1;
    cvd_dtype src = want;
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(node, "dtype");
    if (dt) {
        if (cJSON_IsString(dt) && !strcmp(dt->valuestring, "float32")) {
            src = CVD_F32;
        } else if (cJSON_IsString(dt) && !strcmp(dt->valuestring, "float64")) {
            src = CVD_F64;
        } else {
            char got[64];
            codec_clip(got, cJSON_IsString(dt) ? dt->valuestring : codec_json_type_name(dt));
            return apierr_set(e, APIERR_INVALID_TENSOR,
                              "%s.dtype must be \"float32\" or \"float64\", got %s%s%s", field,
                              cJSON_IsString(dt) ? "\"" : "", got, cJSON_IsString(dt) ? "\"" : "");
        }
    }
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(node, "base64");
    if (!cJSON_IsString(s))
        return apierr_set(e, APIERR_INVALID_TENSOR,
                          "%s.base64 is %s; send the raw little-endian bytes as a base64 string",
                          field, codec_json_type_name(s));
    const char *text;
    size_t tlen;
    prescan_seg *seg = codec_string_bytes(s, &text, &tlen);
    if (seg) {
        if (!seg->data)
            return apierr_set(e, APIERR_INTERNAL, "%s.base64 was decoded twice", field);
        if (decode_prescanned(seg, text, tlen, want, src, rank, shape, max_elems, out) == 0)
            return 0;
        /* not the plain case: the whole text, so every message is the plain path's */
        char *whole = malloc(seg->chars + tlen + 1);
        if (!whole)
            return apierr_set(e, APIERR_INTERNAL, "out of memory decoding %s", field);
        prescan_seg_text(seg, whole);
        memcpy(whole + seg->chars, text, tlen);
        int ret = decode_b64_text(whole, seg->chars + tlen, field, src, want, rank, shape,
                                  max_elems, limit_setting, out, e);
        free(whole);
        return ret;
    }
    return decode_b64_text(text, tlen, field, src, want, rank, shape, max_elems, limit_setting, out,
                           e);
}

/* A base64 string whose leading groups prescan decoded while the body arrived (seg), the
 * rest of its text tail[0..tlen): in the plain case (the bytes need no conversion, the rest
 * is valid, the sizes agree and every element is finite) the tensor takes seg's buffer,
 * the rest decoded after seg's bytes, and this returns 0; otherwise 1 and nothing changed
 * that the plain path reads (it re-encodes seg's characters, which are untouched). */
static int decode_prescanned(prescan_seg *seg, const char *tail, size_t tlen, cvd_dtype want,
                             cvd_dtype src, int rank, const int64_t *shape, int64_t max_elems,
                             cvd_tensor *out)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return 1;
#endif
    const size_t es = cvd_dtype_size(src), have = seg->chars / 4 * 3;
    size_t tn, bad_at;
    const char *why;
    int64_t numel;
    if (src != want || (es == 4 ? seg->bad32 : seg->bad64) ||
        base64_decoded_len(tail, tlen, &tn, &bad_at, &why) < 0 ||
        cvd_shape_numel(rank, shape, &numel, NULL) != CVD_OK ||
        (max_elems > 0 && numel > max_elems) || (uint64_t)numel > SIZE_MAX / es ||
        (size_t)numel * es != have + tn || have + tn > seg->cap)
        return 1;
    if (tlen && base64_decode(seg->data + have, tail, tlen, 1, &bad_at, &why) < 0)
        return 1;
    /* prescan checked the elements in the first have/8*8 bytes; the rest reach past them */
    const int64_t from = (int64_t)(have / 8 * 8 / es);
    if (first_non_finite(seg->data + (size_t)from * es, numel - from, src) >= 0)
        return 1;
    memset(out, 0, sizeof *out);
    out->dtype = want;
    out->rank = rank;
    memcpy(out->shape, shape, (size_t)rank * sizeof *shape);
    out->data = seg->data;
    seg->data = NULL;
    return 0;
}

/* The plain path of decode_base64: the text of the base64 string. */
static int decode_b64_text(const char *text, size_t tlen, const char *field, cvd_dtype src,
                           cvd_dtype want, int rank, const int64_t *shape, int64_t max_elems,
                           const char *limit_setting, cvd_tensor *out, apierr *e)
{
    size_t nbytes, bad_at;
    const char *why;
    if (base64_decoded_len(text, tlen, &nbytes, &bad_at, &why) < 0)
        return apierr_set(e, APIERR_INVALID_TENSOR,
                          "%s.base64 is not valid base64: %s (%zu characters)", field, why, tlen);

    int64_t numel;
    cvd_err ce = {{0}};
    cvd_status st = cvd_shape_numel(rank, shape, &numel, &ce);
    size_t es = cvd_dtype_size(src);
    if (st != CVD_OK || (uint64_t)numel > SIZE_MAX / es || (size_t)numel * es != nbytes) {
        char sh[96];
        shape_format(sh, sizeof sh, rank, shape);
        if (st == CVD_OK)
            return apierr_set(e, APIERR_INVALID_TENSOR,
                              "%s.base64 decodes to %zu bytes but shape %s in %s needs %llu "
                              "(%lld elements x %zu bytes)",
                              field, nbytes, sh, cvd_dtype_name(src),
                              (unsigned long long)numel * es, (long long)numel, es);
        return apierr_set(e, APIERR_PAYLOAD_TOO_LARGE, "%s.shape %s is too large: %s", field, sh,
                          ce.msg);
    }
    if (alloc_checked(out, want, rank, shape, field, max_elems, limit_setting, e) < 0)
        return -1;

        /* Decode in chunks of 4096 characters = 3072 bytes, a whole number of elements of
         * either size, checking (and converting) each chunk while it is in cache. When the
         * bytes need no conversion they are decoded straight into the tensor. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    const int direct = 0;
#else
    const int direct = src == want;
#endif
    unsigned char chunk[3072];
    size_t pos = 0;
    int64_t at = 0;
    while (pos < tlen) {
        size_t clen = tlen - pos < 4096 ? tlen - pos : 4096;
        size_t cbytes = clen / 4 * 3;
        if (pos + clen == tlen)
            cbytes = nbytes - (size_t)at * es;
        unsigned char *dst = direct ? (unsigned char *)out->data + (size_t)at * es : chunk;
        if (base64_decode(dst, text + pos, clen, pos + clen == tlen, &bad_at, &why) < 0) {
            cvd_tensor_release(out);
            return apierr_set(e, APIERR_INVALID_TENSOR,
                              "%s.base64 is not valid base64: %s (character %zu)", field, why,
                              pos + bad_at);
        }
        int64_t n = (int64_t)(cbytes / es);
        double bad_value = 0;
        int64_t bad;
        if (direct) {
            bad = first_non_finite(dst, n, src);
            if (bad >= 0) {
                if (src == CVD_F64) {
                    double v;
                    memcpy(&v, (const char *)dst + (size_t)bad * sizeof v, sizeof v);
                    bad_value = v;
                } else {
                    float v;
                    memcpy(&v, (const char *)dst + (size_t)bad * sizeof v, sizeof v);
                    bad_value = v;
                }
                bad += at;
            }
        } else {
            bad = convert_le(out, at, chunk, n, src, &bad_value);
        }
        if (bad >= 0) {
            char path[160];
            int64_t idx[CVD_MAX_RANK], r = bad;
            for (int d = rank - 1; d >= 0; d--) {
                idx[d] = r % shape[d];
                r /= shape[d];
            }
            fmt_path(path, sizeof path, field, idx, rank);
            cvd_tensor_release(out);
            /* big-endian bytes read as little-endian look like this: say so */
            not_finite(e, path, bad_value, want);
            if (e)
                strncat(e->msg, " (is the byte order little-endian?)",
                        sizeof e->msg - strlen(e->msg) - 1);
            return -1;
        }
        at += n;
        pos += clen;
    }
    return 0;
}

/* A large nested array kept out of the tree (jsontensor.h): its numbers go straight into
 * the tensor. Whatever the fast path does not take is decoded from a tree of that text
 * alone, so the answer and message are the plain path's. */
static int decode_marked(const char *text, size_t len, const char *field, cvd_dtype want,
                         int64_t max_elems, const char *limit_setting, cvd_tensor *out, apierr *e)
{
    int rank;
    int64_t shape[CVD_MAX_RANK];
    if (jsontensor_shape(text, len, &rank, shape) == 0) {
        if (alloc_checked(out, want, rank, shape, field, max_elems, limit_setting, e) < 0)
            return -1;
        const char *p = text, *end = text + len;
        int64_t i = 0, n = cvd_tensor_numel(out);
        double v;
        while (i < n && jsontensor_next(&p, end, &v) == 0 && store(out, i, v) == 0)
            i++;
        if (i == n)
            return 0;
        cvd_tensor_release(out); /* a number not finite in `want`: the plain path says so */
    }
    cJSON *tree = cJSON_ParseWithLength(text, len);
    if (!tree)
        return apierr_set(e, APIERR_INTERNAL, "out of memory decoding %s", field);
    int rc = decode_nested(tree, field, want, max_elems, limit_setting, out, e);
    cJSON_Delete(tree);
    return rc;
}

int codec_tensor_decode(const cJSON *node, const char *field, cvd_dtype want, int64_t max_elems,
                        const char *limit_setting, cvd_tensor *out, codec_form *form, apierr *e)
{
    memset(out, 0, sizeof *out);
    if (cvd_dtype_size(want) == 0)
        return apierr_set(e, APIERR_INTERNAL, "%s: unknown dtype %d", field, (int)want);
    const char *text;
    size_t len;
    if (codec_array_text(node, &text, &len)) {
        if (form)
            *form = CODEC_NESTED;
        return decode_marked(text, len, field, want, max_elems, limit_setting, out, e);
    }
    if (cJSON_IsArray(node)) {
        if (form)
            *form = CODEC_NESTED;
        return decode_nested(node, field, want, max_elems, limit_setting, out, e);
    }
    if (cJSON_IsObject(node)) {
        int has_data = cJSON_GetObjectItemCaseSensitive(node, "data") != NULL;
        int has_b64 = cJSON_GetObjectItemCaseSensitive(node, "base64") != NULL;
        if (has_data && has_b64)
            return apierr_set(e, APIERR_INVALID_TENSOR,
                              "%s has both \"data\" and \"base64\"; send one of them", field);
        if (has_data) {
            if (form)
                *form = CODEC_FLAT;
            return decode_flat(node, field, want, max_elems, limit_setting, out, e);
        }
        if (has_b64) {
            if (form)
                *form = CODEC_BASE64;
            return decode_base64(node, field, want, max_elems, limit_setting, out, e);
        }
        return apierr_set(e, APIERR_INVALID_TENSOR,
                          "%s is an object without \"data\" or \"base64\"; send a nested array, "
                          "{\"shape\", \"data\"} or {\"shape\", \"dtype\", \"base64\"}",
                          field);
    }
    return apierr_set(e, APIERR_INVALID_TENSOR,
                      "%s is %s; send a nested array of numbers, {\"shape\", \"data\"} or "
                      "{\"shape\", \"dtype\", \"base64\"}",
                      field, codec_json_type_name(node));
}
