/*
 * codec.c — request bodies in, tensors and strings out (codec.h). A body is validated by
 * jsoncheck (UTF-8, strict RFC 8259) before cJSON builds the tree, and checked for
 * duplicate keys after. Tensors are read straight from the tree into a cvd_tensor (shape
 * from the first path, then every row checked against it, iteratively) and written
 * straight into a buf through numfmt and base64; no cJSON tree is built for output.
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
#include "prescan.h"
#include "jsoncheck.h"
#include "numfmt.h"

int codec_form_parse(const char *s, codec_form *form)
{
    static const char *const names[] = {"nested", "flat", "base64"};
    for (int i = 0; i < 3; i++) {
        if (s && !strcmp(s, names[i])) {
            *form = (codec_form)i;
            return 0;
        }
    }
    return -1;
}

const char *codec_json_type_name(const cJSON *n)
{
    if (!n)
        return "missing";
    if (cJSON_IsNumber(n))
        return "a number";
    if (cJSON_IsString(n))
        return "a string";
    if (cJSON_IsBool(n))
        return "a boolean";
    if (cJSON_IsNull(n))
        return "null";
    if (cJSON_IsArray(n))
        return "an array";
    if (cJSON_IsObject(n))
        return "an object";
    return "an unknown value";
}

/* ---- field names: clipping, suggestions, unknown-field checks ---- */

/* Copies at most 48 bytes of s, cut at a UTF-8 boundary, with "..." when shortened, so a
 * client's 1 MB key cannot fill a message. */
static void clip(char out[64], const char *s)
{
    size_t n = strlen(s);
    if (n <= 48) {
        memcpy(out, s, n + 1);
        return;
    }
    n = 48;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    snprintf(out, 64, "%.*s...", (int)n, s);
}

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* Case-insensitive optimal-string-alignment distance (Levenshtein plus transpositions),
 * for keys of at most 32 bytes; larger inputs count as far. */
static int edit_distance(const char *a, const char *b)
{
    size_t n = strlen(a), m = strlen(b);
    if (n > 32 || m > 32)
        return 99;
    int d[33][33];
    for (size_t i = 0; i <= n; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= m; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= n; i++) {
        for (size_t j = 1; j <= m; j++) {
            int cost = lower(a[i - 1]) != lower(b[j - 1]);
            int v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v)
                v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < v)
                v = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) &&
                lower(a[i - 2]) == lower(b[j - 1]) && d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    }
    return d[n][m];
}

/* Names people reach for that are spelt differently here (PyTorch attribute names, ...). */
static const char *alias_of(const char *key)
{
    static const char *const pairs[][2] = {
        {"weight", "W"},
        {"weights", "W"},
        {"bias_values", "b"},
        {"kernel", "kernel_size"},
        {"in_chans", "in_channels"},
        {"out_chans", "out_channels"},
        {"padding_mode", "padding"},
        {"input", "x"},
        {"grad", "delta"},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++)
        if (!strcmp(key, pairs[i][0]))
            return pairs[i][1];
    return NULL;
}

const char *codec_suggest(const char *key, const char *const *known)
{
    const char *alias = alias_of(key);
    const char *best = NULL;
    int best_d = 99;
    size_t kl = strlen(key);
    for (size_t i = 0; known[i]; i++) {
        if (alias && !strcmp(alias, known[i]))
            return known[i];
        int d = edit_distance(key, known[i]);
        /* a prefix of a long name ("kern" for "kernel_size") also counts as close */
        if (kl >= 3 && !strncmp(key, known[i], kl) && d > 2)
            d = 2;
        if (d < best_d) {
            best_d = d;
            best = known[i];
        }
    }
    int limit = kl <= 3 ? 1 : (kl <= 6 ? 2 : 3);
    return best_d <= limit ? best : NULL;
}

int codec_check_fields(const cJSON *obj, const char *const *known, const char *where, apierr *e)
{
    for (const cJSON *c = obj ? obj->child : NULL; c; c = c->next) {
        const char *k = c->string ? c->string : "";
        size_t i = 0;
        while (known[i] && strcmp(k, known[i]) != 0)
            i++;
        if (known[i])
            continue;
        char kc[64];
        clip(kc, k);
        const char *s = codec_suggest(k, known);
        if (s)
            return apierr_set(e, APIERR_INVALID_ARGUMENT,
                              "unknown field '%s' in %s (did you mean '%s'?)", kc, where, s);
        char list[256];
        size_t n = 0;
        list[0] = '\0';
        for (size_t j = 0; known[j] && n + 1 < sizeof list; j++)
            n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", j ? ", " : "", known[j]);
        return apierr_set(e, APIERR_INVALID_ARGUMENT, "unknown field '%s' in %s; known fields: %s",
                          kc, where, list);
    }
    return 0;
}

/* ---- parsing ---- */

static int cmp_keys(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first key that appears twice in one object of the tree, via *dup; -1 on OOM. */
static int find_duplicate_key(const cJSON *root, const char **dup)
{
    const cJSON *stack[JSONCHECK_MAX_DEPTH + 1];
    int sp = 0;
    const cJSON *n = root;
    *dup = NULL;
    while (n) {
        if (cJSON_IsObject(n) && n->child && n->child->next) {
            size_t m = 0;
            for (const cJSON *c = n->child; c; c = c->next)
                m++;
            if (m <= 16) {
                for (const cJSON *a = n->child; a; a = a->next)
                    for (const cJSON *b = a->next; b; b = b->next)
                        if (!strcmp(a->string, b->string)) {
                            *dup = a->string;
                            return 0;
                        }
            } else {
                /* Large objects: sort the keys, so a hostile body cannot make this O(m^2). */
                const char **keys = malloc(m * sizeof *keys);
                if (!keys)
                    return -1;
                size_t i = 0;
                for (const cJSON *c = n->child; c; c = c->next)
                    keys[i++] = c->string;
                qsort(keys, m, sizeof *keys, cmp_keys);
                for (i = 1; i < m && !*dup; i++)
                    if (!strcmp(keys[i - 1], keys[i]))
                        *dup = keys[i];
                free(keys);
                if (*dup)
                    return 0;
            }
        }
        if ((cJSON_IsObject(n) || cJSON_IsArray(n)) && n->child && sp <= JSONCHECK_MAX_DEPTH) {
            stack[sp++] = n->next;
            n = n->child;
            continue;
        }
        n = n->next;
        while (!n && sp > 0)
            n = stack[--sp];
    }
    return 0;
}

/* Long base64 strings stay in the body: cJSON parses a copy of the rest of the body in which
 * each span from jsoncheck_spans is replaced by a marker, "\xFF" then the span's address and
 * length as 16 hex digits each, and decode_base64 reads the span through it. cJSON would
 * otherwise copy the string byte by byte (most of a base64 request's parse time). No client
 * string can hold the byte 0xFF (jsoncheck admits only valid UTF-8, and escapes decode to
 * valid UTF-8), so every marker in a tree from codec_parse was put there by codec_parse. */
#define MARK_LEN  33
#define MAX_SPANS 16

static void put_hex64(char *out, uint64_t v)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, v >>= 4)
        out[i] = hex[v & 15];
}

static uint64_t get_hex64(const char *v)
{
    uint64_t a = 0;
    for (int i = 0; i < 16; i++)
        a = a << 4 | (uint64_t)(v[i] <= '9' ? v[i] - '0' : v[i] - 'a' + 10);
    return a;
}

/* A string whose leading base64 groups prescan took out (codec_parse_prescanned) has a
 * marker of its own: "\xFE", then the address and length of the rest of its text in the
 * body and the address of its prescan segment, 16 hex digits each. */
#define MARK2_LEN 49

/* The bytes of a string node: its span in the body for a marker, else valuestring; for a
 * prescanned string, the rest of its text, and its segment is returned (else NULL). */
static prescan_seg *string_bytes(const cJSON *n, const char **text, size_t *len)
{
    const char *v = n->valuestring;
    if ((unsigned char)v[0] == 0xFE && strlen(v) == MARK2_LEN) {
        *text = (const char *)(uintptr_t)get_hex64(v + 1);
        *len = (size_t)get_hex64(v + 17);
        return (prescan_seg *)(uintptr_t)get_hex64(v + 33);
    }
    if ((unsigned char)v[0] == 0xFF && strlen(v) == MARK_LEN) {
        *text = (const char *)(uintptr_t)get_hex64(v + 1);
        *len = (size_t)get_hex64(v + 17);
        return NULL;
    }
    *text = v;
    *len = strlen(v);
    return NULL;
}

/* The body with every span replaced by its marker (malloc'd, NUL-terminated), or NULL;
 * a span with a segment (seg[k] non-NULL, seg may be NULL) gets a MARK2_LEN marker. */
static char *mark_spans(const char *body, size_t from, size_t len, const jsoncheck_span *sp,
                        prescan_seg *const *seg, size_t n, size_t *out_len)
{
    size_t cut = 0;
    for (size_t k = 0; k < n; k++)
        cut += sp[k].len;
    size_t total = len - from - cut + n * MARK2_LEN; /* spans never exceed the body */
    char *text = malloc(total + 1);
    if (!text)
        return NULL;
    char *o = text;
    size_t at = from;
    for (size_t k = 0; k < n; k++) {
        memcpy(o, body + at, sp[k].off - at);
        o += sp[k].off - at;
        *o++ = (char)(seg && seg[k] ? 0xFE : 0xFF);
        put_hex64(o, (uint64_t)(uintptr_t)(body + sp[k].off));
        put_hex64(o + 16, (uint64_t)sp[k].len);
        o += 32;
        if (seg && seg[k]) {
            put_hex64(o, (uint64_t)(uintptr_t)seg[k]);
            o += 16;
        }
        at = sp[k].off + sp[k].len;
    }
    memcpy(o, body + at, len - at);
    o += len - at;
    *o = '\0';
    *out_len = (size_t)(o - text);
    return text;
}

/* Offset `off` of the marked text (which starts at body offset `from`) in the body. */
static size_t unmark_offset(size_t off, size_t from, const jsoncheck_span *sp, size_t n)
{
    size_t shrunk = 0; /* bytes the markers before this point saved (spans are > MARK_LEN) */
    for (size_t k = 0; k < n; k++) {
        size_t mark_at = sp[k].off - from - shrunk;
        if (off <= mark_at)
            break;
        if (off < mark_at + MARK_LEN)
            return sp[k].off;
        shrunk += sp[k].len - MARK_LEN;
    }
    return from + off + shrunk;
}

/* codec_parse, marking at most max_spans long base64 strings (0: none, the tree holds
 * copies of everything). */
static cJSON *parse_text(const char *body, size_t len, size_t max_spans, apierr *e)
{
    jsoncheck_span spans[MAX_SPANS];
    size_t nspans = 0;
    if (jsoncheck_spans(body, len, spans, max_spans, &nspans, e) < 0)
        return NULL;
    size_t skip = len >= 3 && !memcmp(body, "\xEF\xBB\xBF", 3) ? 3 : 0;
    const char *end = NULL;
    cJSON *root;
    size_t stop = 0;
    if (nspans) {
        size_t tlen;
        char *text = mark_spans(body, skip, len, spans, NULL, nspans, &tlen);
        if (!text) {
            apierr_set(e, APIERR_INTERNAL, "out of memory while parsing a %zu-byte body", len);
            return NULL;
        }
        root = cJSON_ParseWithLengthOpts(text, tlen, &end, 0);
        if (!root && end)
            stop = unmark_offset((size_t)(end - text), skip, spans, nspans);
        free(text);
    } else {
        root = cJSON_ParseWithLengthOpts(body + skip, len - skip, &end, 0);
        if (!root && end)
            stop = (size_t)(end - body);
    }
    if (!root) {
        /* The text is valid JSON, so cJSON has run out of memory (or hit a limit of its own). */
        apierr_set(e, APIERR_INTERNAL,
                   "could not build the JSON tree of a %zu-byte body (stopped at byte %zu): out "
                   "of memory",
                   len, stop);
        return NULL;
    }
    const char *dup;
    if (find_duplicate_key(root, &dup) < 0) {
        apierr_set(e, APIERR_INTERNAL, "out of memory while checking the body's keys");
        cJSON_Delete(root);
        return NULL;
    }
    if (dup) {
        char kc[64];
        clip(kc, dup);
        apierr_set(e, APIERR_INVALID_ARGUMENT,
                   "field '%s' appears twice in one object; send each field once", kc);
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

cJSON *codec_parse(const char *body, size_t len, apierr *e)
{
    if (!body) {
        body = "";
        len = 0;
    }
    return parse_text(body, len, MAX_SPANS, e);
}

cJSON *codec_parse_prescanned(const char *body, size_t len, prescan *p, apierr *e)
{
    if (!p || !p->nsegs || !body)
        return codec_parse(body, len, e);
    /* Fast: every segment is the rest of a string the check reports as a "base64" value
     * without escapes; those strings get segment markers, other long ones the usual ones. */
    jsoncheck_span all[MAX_SPANS], spans[MAX_SPANS];
    prescan_seg *seg[MAX_SPANS];
    size_t nall = 0, n = 0;
    int matched = 0;
    apierr quiet;
    if (jsoncheck_spans_min(body, len, all, MAX_SPANS, &nall, 0, &quiet) == 0) {
        for (size_t k = 0; k < nall; k++) {
            prescan_seg *sg = NULL;
            for (int j = 0; j < p->nsegs; j++)
                if (p->segs[j].off == all[k].off && p->segs[j].data)
                    sg = &p->segs[j];
            if (!sg && all[k].len < JSONCHECK_SPAN_MIN)
                continue;
            matched += sg != NULL;
            spans[n] = all[k];
            seg[n++] = sg;
        }
    }
    if (matched == p->nsegs) {
        const size_t skip = len >= 3 && !memcmp(body, "\xEF\xBB\xBF", 3) ? 3 : 0;
        size_t tlen;
        char *text = mark_spans(body, skip, len, spans, seg, n, &tlen);
        cJSON *root = text ? cJSON_ParseWithLengthOpts(text, tlen, NULL, 0) : NULL;
        free(text);
        const char *dup = NULL;
        if (root && find_duplicate_key(root, &dup) == 0 && !dup)
            return root;
        cJSON_Delete(root);
    }
    /* Anything else: the whole text, parsed as it would have been without prescan (its
     * long strings copied into the tree, since the text is gone when this returns). */
    buf whole;
    buf_init(&whole);
    if (prescan_restore(p, body, len, &whole) < 0) {
        buf_free(&whole);
        apierr_set(e, APIERR_INTERNAL, "out of memory while parsing a %zu-byte body", len);
        return NULL;
    }
    cJSON *root = parse_text(whole.data, whole.len, 0, e);
    buf_free(&whole);
    return root;
}

/* ---- tensor decoding ---- */

static void fmt_shape(char *out, size_t cap, int rank, const int64_t *shape)
{
    size_t n = (size_t)snprintf(out, cap, "(");
    for (int i = 0; i < rank && n < cap; i++)
        n += (size_t)snprintf(out + n, cap - n, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (n < cap)
        snprintf(out + n, cap - n, ")");
}

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

static int decode_flat(const cJSON *node, const char *field, cvd_dtype want, int64_t max_elems,
                       const char *limit_setting, cvd_tensor *out, apierr *e)
{
    if (cJSON_GetObjectItemCaseSensitive(node, "dtype"))
        return apierr_set(e, APIERR_INVALID_ARGUMENT,
                          "%s has a \"dtype\" field, which only the base64 form takes; a flat "
                          "tensor is {\"shape\": [...], \"data\": [...]}",
                          field);
    char where[96];
    snprintf(where, sizeof where, "%s (a flat tensor: shape, data)", field);
    if (codec_check_fields(node, FLAT_FIELDS, where, e) < 0)
        return -1;
    int rank = 0;
    int64_t shape[CVD_MAX_RANK];
    if (read_shape(node, field, &rank, shape, e) < 0)
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
        fmt_shape(sh, sizeof sh, rank, shape);
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
    char where[96];
    snprintf(where, sizeof where, "%s (a base64 tensor: shape, dtype, base64)", field);
    if (codec_check_fields(node, B64_FIELDS, where, e) < 0)
        return -1;
    int rank = 0;
    int64_t shape[CVD_MAX_RANK];
    if (read_shape(node, field, &rank, shape, e) < 0)
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
            clip(got, cJSON_IsString(dt) ? dt->valuestring : codec_json_type_name(dt));
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
    prescan_seg *seg = string_bytes(s, &text, &tlen);
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
        fmt_shape(sh, sizeof sh, rank, shape);
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

int codec_tensor_decode(const cJSON *node, const char *field, cvd_dtype want, int64_t max_elems,
                        const char *limit_setting, cvd_tensor *out, codec_form *form, apierr *e)
{
    memset(out, 0, sizeof *out);
    if (cvd_dtype_size(want) == 0)
        return apierr_set(e, APIERR_INTERNAL, "%s: unknown dtype %d", field, (int)want);
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

/* ---- encoding ---- */

int codec_fmt_f64(char *out, double v)
{
    return numfmt_f64(out, v);
}

int codec_fmt_f32(char *out, float v)
{
    return numfmt_f32(out, v);
}

/* Appends n numbers of t starting at element `at`, comma-separated, in chunks so the
 * buffer grows by bounded steps. Each number is written in place (at most NUMFMT_MAX-1
 * characters plus a comma). */
static int put_numbers(buf *b, const cvd_tensor *t, int64_t at, int64_t n)
{
    enum { CHUNK = 4096 };
    /* longest number + comma: "-2.2250738585072014e-308", "-1000000200000000" */
    const size_t per = t->dtype == CVD_F64 ? 25 : 18;
    while (n > 0) {
        int64_t m = n < CHUNK ? n : CHUNK;
        if (buf_reserve(b, (size_t)m * per + 1) < 0)
            return -1;
        char *p = b->data + b->len;
        if (t->dtype == CVD_F64) {
            const double *x = (const double *)t->data + at;
            for (int64_t i = 0; i < m; i++) {
                p += numfmt_f64(p, x[i]);
                *p++ = ',';
            }
        } else {
            const float *x = (const float *)t->data + at;
            for (int64_t i = 0; i < m; i++) {
                p += numfmt_f32(p, x[i]);
                *p++ = ',';
            }
        }
        n -= m;
        at += m;
        if (n == 0)
            p--; /* no comma after the last number */
        *p = '\0';
        b->len = (size_t)(p - b->data);
    }
    return 0;
}

static void put_shape(buf *b, int rank, const int64_t *shape)
{
    buf_puts(b, "\"shape\":[");
    for (int i = 0; i < rank; i++)
        buf_printf(b, "%s%lld", i ? "," : "", (long long)shape[i]);
    buf_putc(b, ']');
}

static int put_base64(buf *b, const cvd_tensor *t, int64_t numel)
{
    size_t es = cvd_dtype_size(t->dtype);
    size_t nbytes = (size_t)numel * es;
    size_t chars = base64_encoded_len(nbytes);
    if ((nbytes && !chars) || buf_reserve(b, chars) < 0) {
        b->oom = 1;
        return -1;
    }
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    /* The wire format is little-endian: swap chunk by chunk. */
    unsigned char chunk[3072];
    const unsigned char *src = t->data;
    for (size_t off = 0; off < nbytes; off += sizeof chunk) {
        size_t n = nbytes - off < sizeof chunk ? nbytes - off : sizeof chunk;
        for (size_t i = 0; i < n; i += es)
            for (size_t x = 0; x < es; x++)
                chunk[i + x] = src[off + i + es - 1 - x];
        base64_encode(b->data + b->len, chunk, n);
        b->len += base64_encoded_len(n);
    }
#else
    base64_encode(b->data + b->len, t->data, nbytes);
    b->len += chars;
#endif
    b->data[b->len] = '\0';
    return 0;
}

int codec_tensor_encode(buf *b, const cvd_tensor *t, int rank, const int64_t *shape,
                        codec_form form)
{
    if (!shape) {
        rank = t->rank;
        shape = t->shape;
    }
    int64_t numel;
    if (cvd_shape_numel(rank, shape, &numel, NULL) != CVD_OK || numel != cvd_tensor_numel(t) ||
        cvd_dtype_size(t->dtype) == 0)
        return -1;

    if (form == CODEC_FLAT) {
        buf_putc(b, '{');
        put_shape(b, rank, shape);
        buf_puts(b, ",\"data\":[");
        put_numbers(b, t, 0, numel);
        buf_puts(b, "]}");
    } else if (form == CODEC_BASE64) {
        buf_putc(b, '{');
        put_shape(b, rank, shape);
        buf_printf(b, ",\"dtype\":\"%s\",\"base64\":\"", cvd_dtype_name(t->dtype));
        put_base64(b, t, numel);
        buf_puts(b, "\"}");
    } else {
        /* Open every level, write a row, then close as many levels as wrap and reopen. */
        int64_t idx[CVD_MAX_RANK] = {0};
        int64_t row = shape[rank - 1], at = 0;
        for (int d = 0; d < rank; d++)
            buf_putc(b, '[');
        for (;;) {
            put_numbers(b, t, at, row);
            at += row;
            buf_putc(b, ']');
            int d = rank - 2;
            for (; d >= 0; d--) {
                if (++idx[d] < shape[d])
                    break;
                idx[d] = 0;
                buf_putc(b, ']');
            }
            if (d < 0 || b->oom)
                break;
            buf_putc(b, ',');
            for (int j = d + 1; j < rank; j++)
                buf_putc(b, '[');
        }
    }
    return b->oom ? -1 : 0;
}

int codec_string_encode(buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    buf_putc(b, '"');
    while (*p) {
        /* Copy the longest run that needs no escaping in one append. */
        const unsigned char *q = p;
        while (*q >= 0x20 && *q < 0x80 && *q != '"' && *q != '\\')
            q++;
        if (q > p) {
            buf_append(b, p, (size_t)(q - p));
            p = q;
            continue;
        }
        unsigned char c = *p;
        if (c >= 0x80) {
            /* Pass well-formed UTF-8 through; anything else (a message cut mid-character)
             * becomes U+FFFD so the output stays valid JSON. */
            int n = c >= 0xF0 && c <= 0xF4   ? 3
                    : c >= 0xE0 && c <= 0xEF ? 2
                    : c >= 0xC2 && c <= 0xDF ? 1
                                             : -1;
            int ok = n > 0;
            for (int k = 1; ok && k <= n; k++)
                ok = (p[k] & 0xC0) == 0x80;
            if (ok && n == 2)
                ok = !(c == 0xE0 && p[1] < 0xA0) && !(c == 0xED && p[1] > 0x9F);
            if (ok && n == 3)
                ok = !(c == 0xF0 && p[1] < 0x90) && !(c == 0xF4 && p[1] > 0x8F);
            if (ok) {
                buf_append(b, p, (size_t)n + 1);
                p += n + 1;
            } else {
                buf_puts(b, "\\ufffd");
                p++;
            }
            continue;
        }
        char esc[7] = {'\\', 0, 0, 0, 0, 0, 0};
        switch (c) {
        case '"':
        case '\\':
            esc[1] = (char)c;
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            break;
        }
        buf_puts(b, esc);
        p++;
    }
    buf_putc(b, '"');
    return b->oom ? -1 : 0;
}
