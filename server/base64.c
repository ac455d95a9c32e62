/*
 * base64.c — strict RFC 4648 base64 (base64.h). On x86-64 CPUs with AVX-512 VBMI (checked
 * at run time) the bulk of a text goes 64 characters <-> 48 bytes per step (Muła and
 * Lemire, "Base64 encoding and decoding at almost the speed of a memory copy", 2019: one
 * two-table byte permute maps and validates 64 characters; encoding picks the 6-bit fields
 * with a multishift). With AVX2 only, 32 characters <-> 24 bytes per step (Muła and Lemire,
 * "Faster Base64 Encoding and Decoding Using AVX2 Instructions", 2018: pshufb lookups that
 * both map and validate, multiply-adds that pack the bits). Otherwise, and for what the
 * vector loops leave, decoding ORs four per-position tables whose entries are pre-shifted
 * into the output bytes and carry a "bad" bit, so a group costs four lookups and one branch
 * per two groups; encoding writes 16 characters from 12 bytes with a 12-bit -> 2-character
 * table. Tails, padding and errors take a plain per-group path. A vector step that meets a
 * bad character stops, and the scalar code finds and names it.
 */
#include "base64.h"

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define B64_AVX2        1
#define B64_VBMI_TARGET __attribute__((target("avx512f,avx512bw,avx512vbmi")))
#else
#define B64_AVX2 0
#endif

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

static atomic_int simd_limit; /* enum base64_simd */

void base64_limit_simd(enum base64_simd level)
{
    atomic_store_explicit(&simd_limit, (int)level, memory_order_relaxed);
}

#if B64_AVX2
static int limit(void)
{
    return atomic_load_explicit(&simd_limit, memory_order_relaxed);
}

static int use_vbmi(void)
{
    return limit() == BASE64_SIMD_BEST && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vbmi");
}

static int use_avx2(void)
{
    return limit() <= BASE64_SIMD_AVX2 && __builtin_cpu_supports("avx2");
}

/* 48 bytes -> 64 characters per step; a step loads 64 bytes, hence i + 64 <= n. Each 3
 * bytes a b c become the 32-bit word b a c b, in which the four 6-bit fields start at bits
 * 10, 4, 22 and 16: the multishift takes them out (with two stray high bits that the
 * alphabet permute ignores). */
B64_VBMI_TARGET static size_t encode_vbmi(char *out, const unsigned char *p, size_t n)
{
    const __m512i spread =
        _mm512_setr_epi32(0x01020001, 0x04050304, 0x07080607, 0x0a0b090a, 0x0d0e0c0d, 0x10110f10,
                          0x13141213, 0x16171516, 0x191a1819, 0x1c1d1b1c, 0x1f201e1f, 0x22232122,
                          0x25262425, 0x28292728, 0x2b2c2a2b, 0x2e2f2d2e);
    const __m512i shifts = _mm512_set1_epi64(0x3036242a1016040all);
    const __m512i abc = _mm512_loadu_si512((const void *)ALPHABET);
    size_t i = 0;
    for (; i + 64 <= n; i += 48) {
        __m512i v = _mm512_permutexvar_epi8(spread, _mm512_loadu_si512((const void *)(p + i)));
        v = _mm512_permutexvar_epi8(_mm512_multishift_epi64_epi8(shifts, v), abc);
        _mm512_storeu_si512((void *)out, v);
        out += 64;
    }
    return i;
}

/* PACK48[j]: the byte of the multiply-adds' 32-bit words that is decoded byte j (each
 * word holds its group's 24 bits, first byte highest). */
#define PACK_ENTRY(j) (char)((j) < 48 ? (j) / 3 * 4 + 2 - (j) % 3 : 0),
static const char PACK48[64] = {R64(PACK_ENTRY, 0)};

/* 64 characters -> 48 bytes per step, storing 64 bytes: i + 88 <= full leaves 24 more
 * characters, whose 18 bytes cover the 16 stored past the step's 48. VALUE's first half
 * is the permute's table: 0xFF, outside the alphabet, and characters from 128 on both have
 * the high bit set. Returns the characters consumed; stops before a step with a character
 * outside the alphabet ('=' included). */
B64_VBMI_TARGET static size_t decode_vbmi(unsigned char *o, const unsigned char *t, size_t full)
{
    const __m512i lo = _mm512_loadu_si512((const void *)VALUE);
    const __m512i hi = _mm512_loadu_si512((const void *)(VALUE + 64));
    const __m512i pack = _mm512_loadu_si512((const void *)PACK48);
    size_t i = 0;
    for (; i + 88 <= full; i += 64) {
        __m512i in = _mm512_loadu_si512((const void *)(t + i));
        __m512i v = _mm512_permutex2var_epi8(lo, in, hi);
        if (_mm512_movepi8_mask(_mm512_or_si512(v, in)))
            break;
        v = _mm512_maddubs_epi16(v, _mm512_set1_epi32(0x01400140));
        v = _mm512_madd_epi16(v, _mm512_set1_epi32(0x00011000));
        _mm512_storeu_si512((void *)o, _mm512_permutexvar_epi8(pack, v));
        o += 48;
    }
    return i;
}

/* 24 bytes -> 32 characters per step. Each 128-bit lane loads 16 bytes of which it uses
 * 12 (the high lane starts 12 bytes in), so a step reads 28 bytes: i + 28 <= n. */
__attribute__((target("avx2"))) static size_t encode_avx2(char *out, const unsigned char *p,
                                                          size_t n)
{
    const __m256i shuf = _mm256_setr_epi8(1, 0, 2, 1, 4, 3, 5, 4, 7, 6, 8, 7, 10, 9, 11, 10, 1, 0,
                                          2, 1, 4, 3, 5, 4, 7, 6, 8, 7, 10, 9, 11, 10);
    /* the offset from a 6-bit value v to its character, indexed by max(v - 51, 0), or 13
     * when v < 26: 'a'..'z', then '0'..'9', '+', '/', then 'A'..'Z' */
    const __m256i offs =
        _mm256_setr_epi8('a' - 26, '0' - 52, '0' - 52, '0' - 52, '0' - 52, '0' - 52, '0' - 52,
                         '0' - 52, '0' - 52, '0' - 52, '0' - 52, '+' - 62, '/' - 63, 'A', 0, 0,
                         'a' - 26, '0' - 52, '0' - 52, '0' - 52, '0' - 52, '0' - 52, '0' - 52,
                         '0' - 52, '0' - 52, '0' - 52, '0' - 52, '+' - 62, '/' - 63, 'A', 0, 0);
    size_t i = 0;
    for (; i + 28 <= n; i += 24) {
        __m256i in = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)(p + i))),
            _mm_loadu_si128((const __m128i *)(const void *)(p + i + 12)), 1);
        in = _mm256_shuffle_epi8(in, shuf);
        __m256i t0 = _mm256_and_si256(in, _mm256_set1_epi32(0x0fc0fc00));
        __m256i t1 = _mm256_mulhi_epu16(t0, _mm256_set1_epi32(0x04000040));
        __m256i t2 = _mm256_and_si256(in, _mm256_set1_epi32(0x003f03f0));
        __m256i t3 = _mm256_mullo_epi16(t2, _mm256_set1_epi32(0x01000010));
        __m256i idx = _mm256_or_si256(t1, t3);
        __m256i r = _mm256_subs_epu8(idx, _mm256_set1_epi8(51));
        __m256i lt26 = _mm256_cmpgt_epi8(_mm256_set1_epi8(26), idx);
        r = _mm256_or_si256(r, _mm256_and_si256(lt26, _mm256_set1_epi8(13)));
        r = _mm256_add_epi8(_mm256_shuffle_epi8(offs, r), idx);
        _mm256_storeu_si256((__m256i *)(void *)out, r);
        out += 32;
    }
    return i;
}

/* 32 characters -> 24 bytes per step, storing 32 bytes: the caller keeps 8 bytes of room
 * after the step's output. Returns the characters consumed; stops before a step with a
 * character outside the alphabet ('=' included). */
__attribute__((target("avx2"))) static size_t decode_avx2(unsigned char *o, const unsigned char *t,
                                                          size_t full)
{
    const __m256i lut_lo =
        _mm256_setr_epi8(0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x13, 0x1A,
                         0x1B, 0x1B, 0x1B, 0x1A, 0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
                         0x11, 0x11, 0x13, 0x1A, 0x1B, 0x1B, 0x1B, 0x1A);
    const __m256i lut_hi =
        _mm256_setr_epi8(0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08, 0x10, 0x10, 0x10, 0x10,
                         0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08,
                         0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10);
    const __m256i lut_roll =
        _mm256_setr_epi8(0, 16, 19, 4, -65, -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 19, 4,
                         -65, -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m256i pack = _mm256_setr_epi8(2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1, 2,
                                          1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1);
    const __m256i m2f = _mm256_set1_epi8(0x2f);
    size_t i = 0;
    /* i + 44 <= full: after these 32 characters come at least 12 more, whose 9 bytes cover
     * the 8 stored past this step's 24 */
    for (; i + 44 <= full; i += 32) {
        __m256i in = _mm256_loadu_si256((const __m256i *)(const void *)(t + i));
        __m256i hi = _mm256_and_si256(_mm256_srli_epi32(in, 4), m2f);
        __m256i lo = _mm256_and_si256(in, m2f);
        if (!_mm256_testz_si256(_mm256_shuffle_epi8(lut_lo, lo), _mm256_shuffle_epi8(lut_hi, hi)))
            break;
        __m256i roll =
            _mm256_shuffle_epi8(lut_roll, _mm256_add_epi8(_mm256_cmpeq_epi8(in, m2f), hi));
        __m256i v = _mm256_add_epi8(in, roll);
        v = _mm256_maddubs_epi16(v, _mm256_set1_epi32(0x01400140));
        v = _mm256_madd_epi16(v, _mm256_set1_epi32(0x00011000));
        v = _mm256_shuffle_epi8(v, pack);
        v = _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 1, 2, 4, 5, 6, 7, 7));
        _mm256_storeu_si256((__m256i *)(void *)o, v);
        o += 24;
    }
    return i;
}
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
#if B64_AVX2
    if (use_vbmi()) {
        i = encode_vbmi(out, p, n);
        out += i / 3 * 4;
    }
    if (use_avx2()) {
        size_t k = encode_avx2(out, p + i, n - i);
        i += k;
        out += k / 3 * 4;
    }
#endif
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
#if B64_AVX2
    if (use_vbmi()) {
        i = decode_vbmi(o, t, full);
        o += i / 4 * 3;
    }
    if (use_avx2()) {
        size_t k = decode_avx2(o, t + i, full - i);
        i += k;
        o += k / 4 * 3;
    }
#endif
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
