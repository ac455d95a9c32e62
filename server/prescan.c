/*
 * prescan.c — the upload-time base64 decoder of prescan.h. The lexer only tells strings
 * from the rest and remembers whether the last string was the key "base64"; everything it
 * misjudges (invalid JSON, a key that is not a tensor's) is caught by codec_parse, which
 * then puts the characters back.
 */
#include "prescan.h"

#include "base64.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* gcc 12 at -O2 vectorises only loops whose trip count needs no epilogue; the finiteness
 * scans over freshly decoded bytes need the full vectoriser. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif

enum { S_OUT, S_STR, S_ESC, S_FAST };

void prescan_init(prescan *p, size_t content_length)
{
    memset(p, 0, sizeof *p);
    p->on = content_length >= PRESCAN_MIN_BODY;
    p->room = content_length;
    p->min_chars = PRESCAN_MIN_CHARS;
}

static int is_b64(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

/* Looks for all-ones exponents (infinity, NaN) in the whole elements of d[from .. to)
 * (offsets from the segment's start, multiples of 8): as float32 pairs and as float64.
 * Adding one exponent step carries into an element's sign bit exactly when its exponent is
 * all ones (the float32 lanes cannot carry into each other), so the sums OR together and
 * vectorise. */
static void scan_words(prescan *p, const unsigned char *d, size_t from, size_t to)
{
    uint64_t acc32 = 0, acc64 = 0;
    for (size_t i = from; i < to; i += 8) {
        uint64_t v;
        memcpy(&v, d + i, 8);
        acc32 |= (v & 0x7f8000007f800000ull) + 0x0080000000800000ull;
        acc64 |= (v & 0x7ff0000000000000ull) + 0x0010000000000000ull;
    }
    p->cur.bad32 |= (acc32 & 0x8000000080000000ull) != 0;
    p->cur.bad64 |= (acc64 >> 63) != 0;
}

/* The whole elements of the current segment decoded since the last call; a float32
 * element left over past the last whole 8 bytes waits for the next call (or for the
 * codec, which checks every element the segment does not hold whole). */
static void check_new(prescan *p)
{
    const size_t to = p->cur.chars / 4 * 3 / 8 * 8;
    if (to > p->checked) {
        scan_words(p, p->cur.data, p->checked, to);
        p->checked = to;
    }
}

/* Room in the current segment for `chars` more characters' bytes. */
static int seg_room(prescan *p, buf *body, size_t chars)
{
    size_t need = (p->cur.chars + chars) / 4 * 3;
    if (need <= p->cur.cap)
        return 0;
    size_t cap = need > p->cur.cap * 2 ? need : p->cur.cap * 2;
    unsigned char *d = realloc(p->cur.data, cap);
    if (!d) {
        body->oom = 1;
        return -1;
    }
    p->cur.data = d;
    p->cur.cap = cap;
    return 0;
}

/* Takes base64 groups from s[0..len) into the current segment. *used: bytes consumed;
 * *ended: s[*used] is not a base64 character, so the run is over. */
static int take(prescan *p, buf *body, const unsigned char *s, size_t len, size_t *used, int *ended)
{
    size_t i = 0, bad_at;
    const char *why;
    *ended = 0;
    while (p->npend > 0 && p->npend < 4 && i < len) {
        if (!is_b64(s[i])) {
            *used = i;
            *ended = 1;
            return 0;
        }
        p->pend[p->npend++] = (char)s[i++];
    }
    if (p->npend == 4) {
        if (seg_room(p, body, 4) < 0)
            return -1;
        /* four alphabet characters always decode */
        base64_decode(p->cur.data + p->cur.chars / 4 * 3, p->pend, 4, 0, &bad_at, &why);
        p->cur.chars += 4;
        p->npend = 0;
        check_new(p);
    }
    const size_t whole = (len - i) / 4 * 4;
    size_t good = whole;
    if (whole) {
        if (seg_room(p, body, whole) < 0)
            return -1;
        /* groups before a bad character are written; bad_at is that character */
        if (base64_decode(p->cur.data + p->cur.chars / 4 * 3, (const char *)s + i, whole, 0,
                          &bad_at, &why) < 0)
            good = bad_at / 4 * 4;
        p->cur.chars += good;
        check_new(p);
    }
    i += good;
    while (i < len && p->npend < 4 && is_b64(s[i]))
        p->pend[p->npend++] = (char)s[i++];
    *used = i;
    *ended = i < len;
    return 0;
}

/* Appends the text of s's characters to b. 0 or -1 (out of memory, b->oom set). */
static int append_text(buf *b, const prescan_seg *s)
{
    if (!s->chars)
        return 0;
    if (buf_reserve(b, s->chars) < 0)
        return -1;
    prescan_seg_text(s, b->data + b->len);
    b->len += s->chars;
    b->data[b->len] = '\0';
    return 0;
}

/* Ends the current string's run: keeps it as a segment, or (too short, too many segments,
 * or `back`) puts its characters back into the body; then the pending characters. */
static int end_run(prescan *p, buf *body, int back)
{
    prescan_seg *c = &p->cur;
    if (!back && c->chars >= p->min_chars && p->nsegs < PRESCAN_MAX_SEGS) {
        p->segs[p->nsegs++] = *c;
    } else {
        if (append_text(body, c) < 0)
            return -1;
        free(c->data);
    }
    memset(c, 0, sizeof *c);
    p->checked = 0;
    int n = p->npend;
    p->npend = 0;
    return buf_append(body, p->pend, (size_t)n);
}

/* Lexes s[0..len) outside a run; returns how many bytes it consumed (all, or up to and
 * including the quote that opens a "base64" value, after which the state is S_FAST). */
static size_t lex(prescan *p, const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        if (p->state == S_OUT && !p->after_key && !p->want_value) {
            /* nothing but the next string can matter here */
            const unsigned char *q = memchr(s + i, '"', len - i);
            if (!q)
                return len;
            i = (size_t)(q - s);
        }
        const unsigned char c = s[i++];
        switch (p->state) {
        case S_OUT:
            if (c == '"') {
                if (p->want_value) {
                    p->want_value = 0;
                    p->state = S_FAST;
                    return i;
                }
                p->state = S_STR;
                p->klen = 0;
                p->after_key = 0;
            } else if (c == ':') {
                p->want_value = p->after_key;
                p->after_key = 0;
            } else if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
                p->after_key = p->want_value = 0;
            }
            break;
        case S_STR:
            if (c == '\\') {
                p->state = S_ESC;
                p->klen = -1;
            } else if (c == '"') {
                p->state = S_OUT;
                p->after_key = p->klen == 6 && !memcmp(p->key, "base64", 6);
            } else if (p->klen >= 0 && p->klen < 7) {
                p->key[p->klen++] = (char)c;
            }
            break;
        default: /* S_ESC: the escaped byte (for \u, the first hex digit) */
            p->state = S_STR;
            break;
        }
    }
    return len;
}

/* After a failed allocation the segment being filled may have no room (or no data) for
 * what the next chunk brings, so nothing is taken in any more. */
static int fail(prescan *p, buf *body)
{
    p->failed = 1;
    body->oom = 1;
    return -1;
}

int prescan_feed(prescan *p, buf *body, const char *data, size_t n)
{
    if (p->failed)
        return fail(p, body);
    if (!p->on)
        return buf_append(body, data, n);
    const unsigned char *s = (const unsigned char *)data;
    p->room = p->room > n ? p->room - n : 0;
    size_t i = 0;
    while (i < n) {
        if (p->state == S_FAST) {
            size_t used;
            int ended;
            if (take(p, body, s + i, n - i, &used, &ended) < 0)
                return fail(p, body);
            i += used;
            if (ended) {
                if (end_run(p, body, 0) < 0)
                    return fail(p, body);
                p->state = S_STR; /* the rest of the string is lexed as one */
                p->klen = 7;      /* and can never be a key */
            }
            continue;
        }
        size_t used = lex(p, s + i, n - i);
        if (buf_append(body, s + i, used) < 0)
            return fail(p, body);
        i += used;
        if (p->state == S_FAST) {
            /* a run starts at the kept body's end; room for all the body may still bring */
            const size_t cap = (n - i + p->room) / 4 * 3 + 3;
            p->cur.off = body->len;
            p->cur.data = malloc(cap);
            if (!p->cur.data)
                return fail(p, body);
            p->cur.cap = cap;
        }
    }
    return 0;
}

int prescan_finish(prescan *p, buf *body)
{
    if (p->failed)
        return -1;
    if (p->state != S_FAST)
        return 0;
    p->state = S_STR;
    return end_run(p, body, 1);
}

void prescan_seg_text(const prescan_seg *s, char *out)
{
    base64_encode(out, s->data, s->chars / 4 * 3);
}

int prescan_restore(const prescan *p, const char *body, size_t len, buf *out)
{
    size_t at = 0;
    if (!body) /* nothing was kept: an empty body */
        body = "";
    for (int k = 0; k < p->nsegs; k++) {
        const prescan_seg *s = &p->segs[k];
        if (!s->data || s->off > len || buf_append(out, body + at, s->off - at) < 0 ||
            append_text(out, s) < 0)
            return -1;
        at = s->off;
    }
    return buf_append(out, body + at, len - at);
}

void prescan_free(prescan *p)
{
    for (int k = 0; k < p->nsegs; k++)
        free(p->segs[k].data);
    free(p->cur.data);
    memset(p, 0, sizeof *p);
}
