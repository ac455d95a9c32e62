/*
 * codec_parse.c — request bodies into cJSON trees (codec.h). A body is validated by
 * jsoncheck (UTF-8, strict RFC 8259) before cJSON builds the tree, and checked for
 * duplicate keys after. Long base64 strings are not copied into the tree: cJSON parses a
 * copy of the body in which each is replaced by a pointer marker, so the tree borrows the
 * body (and a prescanned body's segments) until it is deleted. The caller owns the tree.
 */
#include "codec.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec_internal.h"
#include "jsoncheck.h"
#include "jsontensor.h"

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
 * length as 16 hex digits each, and codec_string_bytes reads the span through it. cJSON
 * would otherwise copy the string byte by byte (most of a base64 request's parse time). No
 * client string can hold the byte 0xFF (jsoncheck admits only valid UTF-8, and escapes
 * decode to valid UTF-8), so every marker in a tree from codec_parse was put there by
 * codec_parse. */
#define MARK_LEN  33
#define MAX_SPANS 16
/* Large nested arrays of numbers (jsontensor.h) get a marker too, as a JSON string in place
 * of the whole array: '"', "\xFD", address and length, '"'. */
#define MAX_ARRAYS 4

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

int codec_array_text(const cJSON *n, const char **text, size_t *len)
{
    const char *v = cJSON_IsString(n) ? n->valuestring : NULL;
    if (!v || (unsigned char)v[0] != 0xFD || strlen(v) != MARK_LEN)
        return 0;
    *text = (const char *)(uintptr_t)get_hex64(v + 1);
    *len = (size_t)get_hex64(v + 17);
    return 1;
}

/* A string whose leading base64 groups prescan took out (codec_parse_prescanned) has a
 * marker of its own: "\xFE", then the address and length of the rest of its text in the
 * body and the address of its prescan segment, 16 hex digits each. */
#define MARK2_LEN 49

prescan_seg *codec_string_bytes(const cJSON *n, const char **text, size_t *len)
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
                        prescan_seg *const *seg, const unsigned char *array, size_t n,
                        size_t *out_len)
{
    size_t cut = 0;
    for (size_t k = 0; k < n; k++)
        cut += sp[k].len;
    size_t total = len - from - cut + n * (MARK2_LEN + 2); /* spans never exceed the body */
    char *text = malloc(total + 1);
    if (!text)
        return NULL;
    char *o = text;
    size_t at = from;
    for (size_t k = 0; k < n; k++) {
        memcpy(o, body + at, sp[k].off - at);
        o += sp[k].off - at;
        if (array && array[k])
            *o++ = '"';
        *o++ = (char)(array && array[k] ? 0xFD : seg && seg[k] ? 0xFE : 0xFF);
        put_hex64(o, (uint64_t)(uintptr_t)(body + sp[k].off));
        put_hex64(o + 16, (uint64_t)sp[k].len);
        o += 32;
        if (seg && seg[k]) {
            put_hex64(o, (uint64_t)(uintptr_t)seg[k]);
            o += 16;
        }
        if (array && array[k])
            *o++ = '"';
        at = sp[k].off + sp[k].len;
    }
    memcpy(o, body + at, len - at);
    o += len - at;
    *o = '\0';
    *out_len = (size_t)(o - text);
    return text;
}

/* Offset `off` of the marked text (which starts at body offset `from`) in the body. */
static size_t unmark_offset(size_t off, size_t from, const jsoncheck_span *sp,
                            const unsigned char *array, size_t n)
{
    size_t shrunk = 0; /* bytes the markers before this point saved (spans are longer) */
    for (size_t k = 0; k < n; k++) {
        size_t mark_at = sp[k].off - from - shrunk, mlen = MARK_LEN + (array[k] ? 2 : 0);
        if (off <= mark_at)
            break;
        if (off < mark_at + mlen)
            return sp[k].off;
        shrunk += sp[k].len - mlen;
    }
    return from + off + shrunk;
}

/* codec_parse, marking at most max_spans long base64 strings (0: none, the tree holds
 * copies of everything). */
static cJSON *parse_text(const char *body, size_t len, size_t max_spans, apierr *e)
{
    jsoncheck_span strs[MAX_SPANS], arrs[MAX_ARRAYS], spans[MAX_SPANS + MAX_ARRAYS];
    unsigned char array[MAX_SPANS + MAX_ARRAYS];
    size_t nstrs = 0;
    if (jsoncheck_spans(body, len, strs, max_spans, &nstrs, e) < 0)
        return NULL;
    size_t narrs = max_spans ? jsontensor_spans(body, len, arrs, MAX_ARRAYS, JSONTENSOR_MIN) : 0;
    /* both lists in body order, merged (an array of numbers holds no string) */
    size_t nspans = 0;
    for (size_t a = 0, b = 0; a < nstrs || b < narrs; nspans++) {
        int take_arr = b < narrs && (a == nstrs || arrs[b].off < strs[a].off);
        spans[nspans] = take_arr ? arrs[b++] : strs[a++];
        array[nspans] = (unsigned char)take_arr;
    }
    size_t skip = len >= 3 && !memcmp(body, "\xEF\xBB\xBF", 3) ? 3 : 0;
    const char *end = NULL;
    cJSON *root;
    size_t stop = 0;
    if (nspans) {
        size_t tlen;
        char *text = mark_spans(body, skip, len, spans, NULL, array, nspans, &tlen);
        if (!text) {
            apierr_set(e, APIERR_INTERNAL, "out of memory while parsing a %zu-byte body", len);
            return NULL;
        }
        root = cJSON_ParseWithLengthOpts(text, tlen, &end, 0);
        if (!root && end)
            stop = unmark_offset((size_t)(end - text), skip, spans, array, nspans);
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
        codec_clip(kc, dup);
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
        char *text = mark_spans(body, skip, len, spans, seg, NULL, n, &tlen);
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
