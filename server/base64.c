/*
 * base64.c — strict RFC 4648 base64 (base64.h). Decoding maps each character through a
 * 256-entry table (0xFF: not in the alphabet) and OR-accumulates the table values of a
 * whole group, so the common case takes one branch per 4 characters.
 */
#include "base64.h"

#include <stdint.h>

static const char ALPHABET[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

#define X 0xFF
static const unsigned char VALUE[256] = {
    /* clang-format off */
     X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
     X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
     X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X, 62,  X,  X,  X, 63,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61,  X,  X,  X,  X,  X,  X,
     X,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11, 12, 13, 14,
    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,  X,  X,  X,  X,  X,
     X, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
    41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51,  X,  X,  X,  X,  X,
     X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
     X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
     X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
     X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
     X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
     X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
     X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
     X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    /* clang-format on */
};
#undef X

size_t base64_encoded_len(size_t n)
{
    size_t groups = n / 3 + (n % 3 != 0);
    if (groups > SIZE_MAX / 4)
        return 0;
    return groups * 4;
}

void base64_encode(char *out, const void *src, size_t n)
{
    const unsigned char *p = src;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[0] = ALPHABET[v >> 18];
        out[1] = ALPHABET[(v >> 12) & 63];
        out[2] = ALPHABET[(v >> 6) & 63];
        out[3] = ALPHABET[v & 63];
        out += 4;
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[0] = ALPHABET[v >> 18];
        out[1] = ALPHABET[(v >> 12) & 63];
        out[2] = '=';
        out[3] = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[0] = ALPHABET[v >> 18];
        out[1] = ALPHABET[(v >> 12) & 63];
        out[2] = ALPHABET[(v >> 6) & 63];
        out[3] = '=';
    }
}

int base64_decoded_len(const char *s, size_t len, size_t *n, size_t *bad_at, const char **why)
{
    if (len % 4 != 0) {
        *bad_at = len;
        *why = "its length is not a multiple of 4 (standard base64 is padded with '=')";
        return -1;
    }
    size_t pad = 0;
    if (len >= 1 && s[len - 1] == '=')
        pad = len >= 2 && s[len - 2] == '=' ? 2 : 1;
    *n = len / 4 * 3 - pad;
    return 0;
}

/* The first offending character of a group that failed the fast check. */
static int group_error(const unsigned char *g, size_t off, int last, size_t *bad_at,
                       const char **why)
{
    int pad = last && g[3] == '=' ? (g[2] == '=' ? 2 : 1) : 0;
    for (int k = 0; k < 4 - pad; k++) {
        if (VALUE[g[k]] == 0xFF) {
            *bad_at = off + (size_t)k;
            *why = g[k] == '=' ? "'=' padding may only end the text"
                   : g[k] == '-' || g[k] == '_'
                       ? "it uses the URL-safe alphabet ('-', '_'); use standard base64 ('+', '/')"
                   : g[k] == '\n' || g[k] == '\r' || g[k] == ' '
                       ? "it contains whitespace or line breaks"
                       : "it contains a character outside the base64 alphabet";
            return -1;
        }
    }
    *bad_at = off + 3;
    *why = "the unused bits before the '=' padding are not zero";
    return -1;
}

int base64_decode(void *out, const char *s, size_t len, int last, size_t *bad_at, const char **why)
{
    const unsigned char *t = (const unsigned char *)s;
    unsigned char *o = out;
    size_t full = last && len >= 4 && t[len - 1] == '=' ? len - 4 : len;
    for (size_t i = 0; i < full; i += 4) {
        unsigned a = VALUE[t[i]], b = VALUE[t[i + 1]], c = VALUE[t[i + 2]], d = VALUE[t[i + 3]];
        if ((a | b | c | d) & 0x80)
            return group_error(t + i, i, 0, bad_at, why);
        uint32_t v = a << 18 | b << 12 | c << 6 | d;
        o[0] = (unsigned char)(v >> 16);
        o[1] = (unsigned char)(v >> 8);
        o[2] = (unsigned char)v;
        o += 3;
    }
    if (full == len)
        return 0;
    const unsigned char *g = t + full;
    unsigned a = VALUE[g[0]], b = VALUE[g[1]];
    if ((a | b) & 0x80)
        return group_error(g, full, 1, bad_at, why);
    if (g[2] == '=') {
        if (b & 0x0F)
            return group_error(g, full, 1, bad_at, why);
        o[0] = (unsigned char)(a << 2 | b >> 4);
        return 0;
    }
    unsigned c = VALUE[g[2]];
    if ((c & 0x80) || (c & 0x03))
        return group_error(g, full, 1, bad_at, why);
    uint32_t v = a << 18 | b << 12 | c << 6;
    o[0] = (unsigned char)(v >> 16);
    o[1] = (unsigned char)(v >> 8);
    return 0;
}
