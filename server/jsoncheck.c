/*
 * jsoncheck.c — one iterative pass over a request body: UTF-8 (RFC 3629) first, then the
 * JSON grammar of RFC 8259 with an explicit container stack, so nesting depth costs no C
 * stack and every error has an exact byte offset. Nothing is allocated; the grammar pass
 * only decides "valid or where it stops", cJSON builds the tree afterwards.
 */
#include "jsoncheck.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define JC_AVX2 1
#else
#define JC_AVX2 0
#endif

#if JC_AVX2
/* The long runs (a base64 tensor is one string of megabytes) are skipped 64 bytes a step
 * with AVX2 where the CPU has it: each of the two passes over a 8.6 MB body took ~0.3 ms
 * with SSE2. */
static atomic_int sse2_only;

static int jc_avx2(void)
{
    return !atomic_load_explicit(&sse2_only, memory_order_relaxed) &&
           __builtin_cpu_supports("avx2");
}

/* From i, the offset of the first 64-byte block with a byte >= 0x80 (or the last i at
 * which fewer than 64 bytes remain). */
__attribute__((target("avx2"))) static size_t ascii_run_avx2(const unsigned char *s, size_t i,
                                                             size_t len)
{
    while (i + 64 <= len) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(const void *)(s + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(const void *)(s + i + 32));
        if (_mm256_movemask_epi8(_mm256_or_si256(a, b)))
            break;
        i += 64;
    }
    return i;
}

/* From i, the offset of the first 64-byte block holding a quote, a backslash or a
 * control byte (or the last i at which fewer than 64 bytes remain). */
__attribute__((target("avx2"))) static size_t plain_run_avx2(const unsigned char *s, size_t i,
                                                             size_t len)
{
    const __m256i quote = _mm256_set1_epi8('"'), bslash = _mm256_set1_epi8('\\');
    const __m256i ctl = _mm256_set1_epi8(0x1F);
    while (i + 64 <= len) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(const void *)(s + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(const void *)(s + i + 32));
        __m256i ha = _mm256_or_si256(
            _mm256_or_si256(_mm256_cmpeq_epi8(a, quote), _mm256_cmpeq_epi8(a, bslash)),
            _mm256_cmpeq_epi8(_mm256_min_epu8(a, ctl), a));
        __m256i hb = _mm256_or_si256(
            _mm256_or_si256(_mm256_cmpeq_epi8(b, quote), _mm256_cmpeq_epi8(b, bslash)),
            _mm256_cmpeq_epi8(_mm256_min_epu8(b, ctl), b));
        if (_mm256_movemask_epi8(_mm256_or_si256(ha, hb)))
            break;
        i += 64;
    }
    return i;
}
#endif

/* Fills e with the reason and where: offset, line:column, and up to 16 bytes of text
 * from there, non-ASCII and control bytes as \xHH so the message is plain ASCII. */
static int fail_at(apierr *e, const char *body, size_t len, size_t off, const char *what,
                   const char *prefix)
{
    size_t line = 1, col = 1;
    for (size_t i = 0; i < off && i < len; i++) {
        if (body[i] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    char near[80];
    size_t n = 0;
    for (size_t i = off; i < len && i < off + 16 && n + 5 < sizeof near; i++) {
        unsigned char c = (unsigned char)body[i];
        if (c < 0x20 || c >= 0x7f || c == '\\')
            n += (size_t)snprintf(near + n, sizeof near - n, "\\x%02X", c);
        else
            near[n++] = (char)c;
    }
    near[n] = '\0';
    if (off >= len)
        return apierr_set(e, APIERR_INVALID_JSON,
                          "%s: %s; parsing stopped at the end of the body (byte %zu, line %zu, "
                          "column %zu)",
                          prefix, what, off, line, col);
    return apierr_set(e, APIERR_INVALID_JSON,
                      "%s: %s; parsing stopped at byte %zu (line %zu, column %zu) near '%s'",
                      prefix, what, off, line, col, near);
}

static int fail(apierr *e, const char *body, size_t len, size_t off, const char *what)
{
    return fail_at(e, body, len, off, what, "body is not valid JSON");
}

/* Offset of the first byte that breaks RFC 3629, or len if none. */
static size_t utf8_bad(const unsigned char *s, size_t len, const char **why)
{
    size_t i = 0;
    while (i < len) {
        /* ASCII runs dominate request bodies: skip them 64 (AVX2), 32 (SSE2) or 8 bytes at a
         * time. */
#if JC_AVX2
        if (jc_avx2())
            i = ascii_run_avx2(s, i, len);
#endif
#ifdef __SSE2__
        while (i + 32 <= len) {
            __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
            __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(s + i + 16));
            if (_mm_movemask_epi8(_mm_or_si128(a, b)))
                break;
            i += 32;
        }
#endif
        while (i + 8 <= len) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & UINT64_C(0x8080808080808080))
                break;
            i += 8;
        }
        if (i >= len)
            break;
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int n;
        unsigned lo = 0x80, hi = 0xBF; /* allowed range of the first continuation byte */
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            if (c == 0xE0)
                lo = 0xA0; /* overlong below U+0800 */
            else if (c == 0xED)
                hi = 0x9F; /* U+D800..DFFF are surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            if (c == 0xF0)
                lo = 0x90; /* overlong below U+10000 */
            else if (c == 0xF4)
                hi = 0x8F; /* above U+10FFFF */
        } else {
            *why = c < 0xC2 && c >= 0xC0 ? "an overlong encoding"
                   : c < 0xC0            ? "a continuation byte without a lead byte"
                                         : "a byte that never occurs in UTF-8";
            return i;
        }
        for (int k = 1; k <= n; k++) {
            if (i + (size_t)k >= len) {
                *why = "a truncated multi-byte sequence";
                return len;
            }
            unsigned b = s[i + (size_t)k];
            unsigned l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
            if (b < l || b > h) {
                *why = k == 1 && b >= 0x80 && b <= 0xBF
                           ? (c == 0xED ? "an encoded surrogate (U+D800..U+DFFF)"
                                        : (c == 0xF4 ? "a code point above U+10FFFF"
                                                     : "an overlong encoding"))
                           : "a multi-byte sequence cut short";
                return i + (size_t)k;
            }
        }
        i += (size_t)n + 1;
    }
    return len;
}

static int is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int hex4(const unsigned char *p, unsigned *v)
{
    unsigned x = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            d = (c | 0x20) - 'a' + 10;
        else
            return -1;
        x = x << 4 | d;
    }
    *v = x;
    return 0;
}

/* Scans a string whose opening quote is at *pos; leaves *pos after the closing quote.
 * The bytes are already valid UTF-8. */
static int scan_string(const unsigned char *s, size_t len, size_t *pos, int *escaped,
                       const char **why, size_t *at)
{
    size_t i = *pos + 1;
    *escaped = 0;
    for (;;) {
        /* Long strings (base64 tensors) are common: test 64 (AVX2), 32 (SSE2) or 8 bytes at
         * a time for a quote, a backslash or a control byte, then find which byte it is. */
#if JC_AVX2
        if (jc_avx2())
            i = plain_run_avx2(s, i, len);
#endif
#ifdef __SSE2__
        const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\');
        const __m128i ctl = _mm_set1_epi8(0x1F);
        while (i + 32 <= len) {
            __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
            __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(s + i + 16));
            __m128i ha =
                _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(a, quote), _mm_cmpeq_epi8(a, bslash)),
                             _mm_cmpeq_epi8(_mm_min_epu8(a, ctl), a));
            __m128i hb =
                _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(b, quote), _mm_cmpeq_epi8(b, bslash)),
                             _mm_cmpeq_epi8(_mm_min_epu8(b, ctl), b));
            if (_mm_movemask_epi8(_mm_or_si128(ha, hb)))
                break;
            i += 32;
        }
#endif
        while (i + 8 <= len) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            const uint64_t ones = UINT64_C(0x0101010101010101), high = ones * 0x80;
            uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
            uint64_t hit = ((q - ones) & ~q) | ((b - ones) & ~b) | ((w - ones * 0x20) & ~w);
            if (hit & high)
                break;
            i += 8;
        }
        while (i < len && s[i] != '"' && s[i] != '\\' && s[i] >= 0x20)
            i++;
        if (i >= len) {
            *why = "a string is not closed (missing '\"')";
            *at = len;
            return -1;
        }
        if (s[i] == '"') {
            *pos = i + 1;
            return 0;
        }
        if (s[i] < 0x20) {
            *why = "a control character inside a string must be escaped (\\n, \\t, \\u00XX)";
            *at = i;
            return -1;
        }
        /* a backslash */
        *escaped = 1;
        if (i + 1 >= len) {
            *why = "a string ends inside an escape";
            *at = len;
            return -1;
        }
        unsigned char c = s[i + 1];
        if (strchr("\"\\/bfnrt", c) && c != '\0') {
            i += 2;
            continue;
        }
        if (c != 'u') {
            *why = "invalid escape in a string (allowed: \\\" \\\\ \\/ \\b \\f \\n \\r \\t "
                   "\\uXXXX)";
            *at = i;
            return -1;
        }
        unsigned u;
        if (i + 6 > len || hex4(s + i + 2, &u) < 0) {
            *why = "\\u must be followed by 4 hex digits";
            *at = i;
            return -1;
        }
        if (u >= 0xDC00 && u <= 0xDFFF) {
            *why = "\\u escape is an unpaired low surrogate";
            *at = i;
            return -1;
        }
        if (u >= 0xD800 && u <= 0xDBFF) {
            unsigned u2;
            if (i + 12 > len || s[i + 6] != '\\' || s[i + 7] != 'u' || hex4(s + i + 8, &u2) < 0 ||
                u2 < 0xDC00 || u2 > 0xDFFF) {
                *why = "\\u escape is a high surrogate not followed by a low one";
                *at = i;
                return -1;
            }
            i += 12;
        } else {
            i += 6;
        }
    }
}

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* Scans a number starting at *pos ('-' or a digit). */
static int scan_number(const unsigned char *s, size_t len, size_t *pos, const char **why,
                       size_t *at)
{
    size_t start = *pos, i = *pos;
    if (s[i] == '-') {
        i++;
        if (i < len && (s[i] == 'I' || s[i] == 'i' || s[i] == 'N' || s[i] == 'n')) {
            *why = "NaN and Infinity are not JSON numbers; values must be finite";
            *at = start;
            return -1;
        }
        if (i >= len || !is_digit(s[i])) {
            *why = "'-' must be followed by a digit";
            *at = i;
            return -1;
        }
    }
    if (s[i] == '0') {
        i++;
        if (i < len && is_digit(s[i])) {
            *why = "numbers must not have leading zeros";
            *at = start;
            return -1;
        }
        if (i < len && (s[i] == 'x' || s[i] == 'X')) {
            *why = "hexadecimal numbers are not JSON";
            *at = start;
            return -1;
        }
    } else {
        while (i < len && is_digit(s[i]))
            i++;
    }
    if (i < len && s[i] == '.') {
        i++;
        if (i >= len || !is_digit(s[i])) {
            *why = "a digit must follow the decimal point";
            *at = i;
            return -1;
        }
        while (i < len && is_digit(s[i]))
            i++;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= len || !is_digit(s[i])) {
            *why = "an exponent needs digits";
            *at = i;
            return -1;
        }
        while (i < len && is_digit(s[i]))
            i++;
    }
    *pos = i;
    return 0;
}

/* What a byte that cannot start a value probably is, for the message. */
static const char *bad_value_reason(unsigned char c)
{
    switch (c) {
    case 'N':
    case 'n':
    case 'I':
    case 'i':
        return "NaN and Infinity are not JSON numbers; values must be finite";
    case '+':
        return "a number must not start with '+'";
    case '.':
        return "a number must start with a digit ('0.5', not '.5')";
    case '\'':
        return "strings take double quotes";
    case '/':
        return "comments are not JSON";
    case ']':
    case '}':
    case ',':
        return "expected a value (a trailing or doubled comma?)";
    default:
        return "expected a value (object, array, string, number, true, false or null)";
    }
}

enum state {
    ST_VALUE,          /* a value must come */
    ST_VALUE_OR_CLOSE, /* just after '[' */
    ST_KEY,            /* after ',' in an object */
    ST_KEY_OR_CLOSE,   /* just after '{' */
    ST_COLON,          /* after a key */
    ST_COMMA_OR_CLOSE, /* after a value inside a container */
    ST_DONE            /* the top-level value is complete */
};

int jsoncheck(const char *body, size_t len, apierr *e)
{
    return jsoncheck_spans(body, len, NULL, 0, NULL, e);
}

int jsoncheck_spans(const char *body, size_t len, jsoncheck_span *spans, size_t max, size_t *nspans,
                    apierr *e)
{
    return jsoncheck_spans_min(body, len, spans, max, nspans, JSONCHECK_SPAN_MIN, e);
}

int jsoncheck_spans_min(const char *body, size_t len, jsoncheck_span *spans, size_t max,
                        size_t *nspans, size_t min_len, apierr *e)
{
    size_t n_found = 0;
    if (nspans)
        *nspans = 0;
    const unsigned char *s = (const unsigned char *)body;
    const char *why = NULL;
    size_t bad = utf8_bad(s, len, &why);
    if (bad < len || why) {
        char what[96];
        if (bad < len)
            snprintf(what, sizeof what, "byte 0x%02X is %s", s[bad], why);
        else
            snprintf(what, sizeof what, "the body ends in %s", why);
        return fail_at(e, body, len, bad, what, "body is not valid UTF-8");
    }

    unsigned char stack[JSONCHECK_MAX_DEPTH]; /* '[' or '{' per open container */
    int depth = 0;
    enum state st = ST_VALUE;
    size_t at = 0;
    int escaped, b64_key = 0; /* b64_key: the value about to come is that of a "base64" key */
    /* RFC 8259 §8.1 lets a parser ignore a byte order mark; some Windows tools write one. */
    size_t i = len >= 3 && !memcmp(s, "\xEF\xBB\xBF", 3) ? 3 : 0;

    for (;;) {
        while (i < len && is_ws(s[i]))
            i++;
        if (i >= len) {
            if (st == ST_DONE) {
                if (nspans)
                    *nspans = n_found;
                return 0;
            }
            return fail(e, body, len, len,
                        st == ST_VALUE && depth == 0
                            ? "the body is empty (or only whitespace); send a JSON object"
                            : "the body ends before the JSON value is complete");
        }
        unsigned char c = s[i];
        switch (st) {
        case ST_VALUE_OR_CLOSE:
            if (c == ']') {
                i++;
                depth--;
                break;
            }
            /* fall through */
        case ST_VALUE: {
            int is_b64 = b64_key;
            b64_key = 0;
            if (c == '{' || c == '[') {
                if (depth >= JSONCHECK_MAX_DEPTH)
                    return fail(e, body, len, i, "arrays and objects nest deeper than 1000");
                stack[depth++] = c;
                i++;
                st = c == '{' ? ST_KEY_OR_CLOSE : ST_VALUE_OR_CLOSE;
                continue;
            }
            if (c == '"') {
                size_t start = i + 1;
                if (scan_string(s, len, &i, &escaped, &why, &at) < 0)
                    return fail(e, body, len, at, why);
                if (is_b64 && !escaped && i - 1 - start >= min_len && n_found < max) {
                    spans[n_found].off = start;
                    spans[n_found].len = i - 1 - start;
                    n_found++;
                }
            } else if (c == '-' || is_digit(c)) {
                if (scan_number(s, len, &i, &why, &at) < 0)
                    return fail(e, body, len, at, why);
            } else if ((c == 't' && len - i >= 4 && !memcmp(s + i, "true", 4)) ||
                       (c == 'n' && len - i >= 4 && !memcmp(s + i, "null", 4))) {
                i += 4;
            } else if (c == 'f' && len - i >= 5 && !memcmp(s + i, "false", 5)) {
                i += 5;
            } else {
                return fail(e, body, len, i, bad_value_reason(c));
            }
            break;
        }
        case ST_KEY_OR_CLOSE:
            if (c == '}') {
                i++;
                depth--;
                break;
            }
            /* fall through */
        case ST_KEY:
            if (c != '"')
                return fail(e, body, len, i,
                            c == '}' ? "expected a key after ',' (a trailing comma?)"
                                     : "expected a key in double quotes");
            size_t key_at = i;
            if (scan_string(s, len, &i, &escaped, &why, &at) < 0)
                return fail(e, body, len, at, why);
            b64_key = i - key_at == 8 && !memcmp(s + key_at, "\"base64\"", 8);
            st = ST_COLON;
            continue;
        case ST_COLON:
            if (c != ':')
                return fail(e, body, len, i, "expected ':' after a key");
            i++;
            st = ST_VALUE;
            continue;
        case ST_COMMA_OR_CLOSE:
            if (c == ',') {
                i++;
                st = stack[depth - 1] == '[' ? ST_VALUE : ST_KEY;
                continue;
            }
            if ((c == ']' && stack[depth - 1] == '[') || (c == '}' && stack[depth - 1] == '{')) {
                i++;
                depth--;
                break;
            }
            return fail(e, body, len, i,
                        stack[depth - 1] == '[' ? "expected ',' or ']' after an array element"
                                                : "expected ',' or '}' after an object member");
        case ST_DONE:
            return fail(e, body, len, i, "unexpected data after the JSON value");
        }
        /* a value (scalar or container) just ended */
        st = depth == 0 ? ST_DONE : ST_COMMA_OR_CLOSE;
    }
}

void jsoncheck_force_sse2(int on)
{
#if JC_AVX2
    atomic_store_explicit(&sse2_only, on, memory_order_relaxed);
#else
    (void)on;
#endif
}
