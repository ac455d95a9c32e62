/*
 * base64.c — strict RFC 4648 base64 (base64.h). Decoding ORs four per-position tables whose
 * entries are pre-shifted into the output bytes and carry a "bad" bit, so a group costs four
 * lookups and one branch per two groups; encoding writes 16 characters from 12 bytes with
 * a 12-bit -> 2-character table. Tails, padding and errors take a plain per-group path.
 */
#include "base64.h"

#include <stdint.h>
#include <string.h>

/* Compile-time tables (no init race between threads): the value of each alphabet
 * character, and the character of each 6-bit value. */
#define B64V(c)                                                                                    \
    ((c) >= 'A' && (c) <= 'Z'   ? (c) - 'A'                                                        \
     : (c) >= 'a' && (c) <= 'z' ? (c) - 'a' + 26                                                   \
     : (c) >= '0' && (c) <= '9' ? (c) - '0' + 52                                                   \
     : (c) == '+'               ? 62                                                               \
     : (c) == '/'               ? 63                                                               \
                                : 0xFF)
#define B64C(i)                                                                                    \
    ((i) < 26    ? 'A' + (i)                                                                       \
     : (i) < 52  ? 'a' + (i)-26                                                                    \
     : (i) < 62  ? '0' + (i)-52                                                                    \
     : (i) == 62 ? '+'                                                                             \
                 : '/')

#define R4(f, n)    f(n) f((n) + 1) f((n) + 2) f((n) + 3)
#define R16(f, n)   R4(f, n) R4(f, (n) + 4) R4(f, (n) + 8) R4(f, (n) + 12)
#define R64(f, n)   R16(f, n) R16(f, (n) + 16) R16(f, (n) + 32) R16(f, (n) + 48)
#define R256(f, n)  R64(f, n) R64(f, (n) + 64) R64(f, (n) + 128) R64(f, (n) + 192)
#define R1024(f, n) R256(f, n) R256(f, (n) + 256) R256(f, (n) + 512) R256(f, (n) + 768)
#define R4096(f, n) R1024(f, n) R1024(f, (n) + 1024) R1024(f, (n) + 2048) R1024(f, (n) + 3072)

static const char ALPHABET[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

#define VAL_ENTRY(c) (unsigned char)B64V(c),
static const unsigned char VALUE[256] = {R256(VAL_ENTRY, 0)};

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define B64_LITTLE_ENDIAN 0
#else
#define B64_LITTLE_ENDIAN 1
#endif

#if B64_LITTLE_ENDIAN
/* D0..D3: a character's 6 bits already placed where they land in the 3 decoded bytes, read
 * as a little-endian 32-bit word; BAD sets bit 24, which no valid group reaches, so one OR
 * of four lookups both assembles the bytes and flags any invalid character. */
#define BAD         0x01000000u
#define D0_ENTRY(c) (B64V(c) == 0xFF ? BAD : (uint32_t)B64V(c) << 2),
#define D1_ENTRY(c)                                                                                \
    (B64V(c) == 0xFF ? BAD : (uint32_t)B64V(c) >> 4 | ((uint32_t)B64V(c) & 0x0F) << 12),
#define D2_ENTRY(c)                                                                                \
    (B64V(c) == 0xFF ? BAD : ((uint32_t)B64V(c) >> 2) << 8 | ((uint32_t)B64V(c) & 0x03) << 22),
#define D3_ENTRY(c) (B64V(c) == 0xFF ? BAD : (uint32_t)B64V(c) << 16),
static const uint32_t D0[256] = {R256(D0_ENTRY, 0)};
static const uint32_t D1[256] = {R256(D1_ENTRY, 0)};
static const uint32_t D2[256] = {R256(D2_ENTRY, 0)};
static const uint32_t D3[256] = {R256(D3_ENTRY, 0)};

/* PAIR[v]: the two characters of a 12-bit value, first character in the low byte. */
#define PAIR_ENTRY(i) (uint16_t)(B64C((i) >> 6) | B64C((i)&63) << 8),
static const uint16_t PAIR[4096] = {R4096(PAIR_ENTRY, 0)};
#endif

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
#if B64_LITTLE_ENDIAN
    /* 12 bytes -> 16 characters per step: a big-endian 64-bit read puts 6 bytes' 48 bits in
     * order at the top (the 2 bytes below are read but not used, hence i + 14 <= n), and
     * each 12 bits are one PAIR lookup. */
    for (; i + 14 <= n; i += 12) {
        uint64_t a, b;
        memcpy(&a, p + i, 8);
        memcpy(&b, p + i + 6, 8);
        a = __builtin_bswap64(a);
        b = __builtin_bswap64(b);
        uint64_t x = (uint64_t)PAIR[a >> 52] | (uint64_t)PAIR[(a >> 40) & 0xFFF] << 16 |
                     (uint64_t)PAIR[(a >> 28) & 0xFFF] << 32 |
                     (uint64_t)PAIR[(a >> 16) & 0xFFF] << 48;
        uint64_t y = (uint64_t)PAIR[b >> 52] | (uint64_t)PAIR[(b >> 40) & 0xFFF] << 16 |
                     (uint64_t)PAIR[(b >> 28) & 0xFFF] << 32 |
                     (uint64_t)PAIR[(b >> 16) & 0xFFF] << 48;
        memcpy(out, &x, 8);
        memcpy(out + 8, &y, 8);
        out += 16;
    }
#endif
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
    size_t i = 0;
#if B64_LITTLE_ENDIAN
    /* Two groups per step, each stored as 4 bytes whose 4th the next group overwrites: so
     * a step needs one more group after it inside `full` (which keeps the store in out).
     * A step with a bad character leaves it to the loop below, which says where. */
    for (; i + 12 <= full; i += 8) {
        uint32_t x = D0[t[i]] | D1[t[i + 1]] | D2[t[i + 2]] | D3[t[i + 3]];
        uint32_t y = D0[t[i + 4]] | D1[t[i + 5]] | D2[t[i + 6]] | D3[t[i + 7]];
        if ((x | y) & BAD)
            break;
        memcpy(o, &x, 4);
        memcpy(o + 3, &y, 4);
        o += 6;
    }
#endif
    for (; i < full; i += 4) {
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
