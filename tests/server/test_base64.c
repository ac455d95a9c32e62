/*
 * test_base64.c — strict RFC 4648 base64 (server/base64.c): the §10 test vectors both
 * ways, random round trips of every length up to 300 bytes, chunked decoding, and every
 * rejection (length, padding placement, alphabet, non-zero padding bits); the table-driven
 * fast paths (each of the AVX-512 VBMI, AVX2 and portable loops, as far as the CPU has
 * them, chosen with base64_limit_simd) against a plain one-character-at-a-time reference on
 * random bytes, on texts with one character damaged anywhere, and with every byte value at
 * every offset of a text long enough for several vector steps of each width (same bytes,
 * same rejection, same offset).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../server/base64.h"

static const char *const VECTORS[][2] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};

static void test_rfc4648_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof VECTORS / sizeof VECTORS[0]; i++) {
        const char *raw = VECTORS[i][0], *text = VECTORS[i][1];
        char out[16] = {0};
        size_t n = strlen(raw);
        assert_int_equal(base64_encoded_len(n), strlen(text));
        base64_encode(out, raw, n);
        assert_string_equal(out, text);

        size_t dn, bad;
        const char *why;
        assert_int_equal(base64_decoded_len(text, strlen(text), &dn, &bad, &why), 0);
        assert_int_equal(dn, n);
        unsigned char back[16] = {0};
        assert_int_equal(base64_decode(back, text, strlen(text), 1, &bad, &why), 0);
        assert_memory_equal(back, raw, n);
    }
}

static void test_random_round_trips(void **state)
{
    (void)state;
    unsigned char raw[300], back[300];
    char text[404];
    uint32_t x = 12345;
    for (size_t n = 0; n <= sizeof raw; n++) {
        for (size_t i = 0; i < n; i++) {
            x = x * 1103515245u + 12345u;
            raw[i] = (unsigned char)(x >> 16);
        }
        size_t tl = base64_encoded_len(n);
        base64_encode(text, raw, n);
        size_t dn, bad;
        const char *why;
        assert_int_equal(base64_decoded_len(text, tl, &dn, &bad, &why), 0);
        assert_int_equal(dn, n);
        assert_int_equal(base64_decode(back, text, tl, 1, &bad, &why), 0);
        assert_memory_equal(back, raw, n);
        /* chunked: all but the last group, then the last group */
        if (tl >= 8) {
            assert_int_equal(base64_decode(back, text, tl - 4, 0, &bad, &why), 0);
            assert_int_equal(
                base64_decode(back + (tl - 4) / 4 * 3, text + tl - 4, 4, 1, &bad, &why), 0);
            assert_memory_equal(back, raw, n);
        }
    }
    assert_int_equal(base64_encoded_len(SIZE_MAX), 0);
}

static void expect_bad(const char *text, size_t want_at, const char *want_why)
{
    size_t dn, bad = 999;
    const char *why = NULL;
    unsigned char out[64];
    size_t len = strlen(text);
    int rc = base64_decoded_len(text, len, &dn, &bad, &why);
    if (rc == 0)
        rc = base64_decode(out, text, len, 1, &bad, &why);
    if (rc == 0)
        fail_msg("accepted '%s'", text);
    assert_int_equal(bad, want_at);
    if (!strstr(why, want_why))
        fail_msg("'%s': reason '%s' lacks '%s'", text, why, want_why);
}

static void test_rejections(void **state)
{
    (void)state;
    expect_bad("Zg=", 3, "multiple of 4");
    expect_bad("Zg", 2, "multiple of 4");
    expect_bad("Zm9vY", 5, "multiple of 4");
    expect_bad("Zh==", 3, "unused bits");
    expect_bad("Zm9=", 3, "unused bits");
    expect_bad("Z===", 1, "'=' padding may only end");
    expect_bad("====", 0, "'=' padding may only end");
    expect_bad("Zg==Zg==", 2, "'=' padding may only end");
    expect_bad("Zm=v", 2, "'=' padding may only end");
    expect_bad("Zm9-", 3, "URL-safe");
    expect_bad("Zm_v", 2, "URL-safe");
    expect_bad("Zm9v\nYmFy", 9, "multiple of 4");
    expect_bad("Zm9v\nYmF", 4, "whitespace");
    expect_bad("Zm9v YmF", 4, "whitespace");
    expect_bad("Zm9\xC3\xA9mFy", 3, "outside the base64 alphabet");
    expect_bad("Zm*v", 2, "outside the base64 alphabet");

    /* padding in a chunk that is not the last */
    size_t bad;
    const char *why;
    unsigned char out[8];
    assert_int_equal(base64_decode(out, "Zg==", 4, 0, &bad, &why), -1);
    assert_int_equal(bad, 2);
}

/* ---- a plain reference: one character at a time ---- */

static const char REF_ALPHABET[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int ref_value(unsigned char c)
{
    const char *p = c ? strchr(REF_ALPHABET, c) : NULL;
    return p ? (int)(p - REF_ALPHABET) : -1;
}

static void ref_encode(char *out, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        *out++ = REF_ALPHABET[v >> 18];
        *out++ = REF_ALPHABET[(v >> 12) & 63];
        *out++ = i + 1 < n ? REF_ALPHABET[(v >> 6) & 63] : '=';
        *out++ = i + 2 < n ? REF_ALPHABET[v & 63] : '=';
    }
}

/* Offset of the first character the strict decoder must refuse, or -1 (len % 4 == 0). */
static long ref_first_bad(const char *t, size_t len)
{
    size_t pad = len >= 1 && t[len - 1] == '=' ? (len >= 2 && t[len - 2] == '=' ? 2 : 1) : 0;
    for (size_t i = 0; i < len - pad; i++)
        if (ref_value((unsigned char)t[i]) < 0)
            return (long)i;
    if (pad == 1 && (ref_value((unsigned char)t[len - 2]) & 3))
        return (long)len - 1;
    if (pad == 2 && (ref_value((unsigned char)t[len - 3]) & 15))
        return (long)len - 1;
    return -1;
}

static size_t ref_decode(unsigned char *out, const char *t, size_t len)
{
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len && t[i] != '='; i++) {
        acc = acc << 6 | (uint32_t)ref_value((unsigned char)t[i]);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    return n;
}

static void fast_paths_match_reference(void)
{
    unsigned char raw[301], back[312], want[312];
    char text[410], ref[410];
    uint64_t x = 0x9E3779B97F4A7C15u;
    for (int iter = 0; iter < 20000; iter++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t n = (size_t)(x % (iter % 2 ? 101 : 301));
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            raw[i] = (unsigned char)x;
        }
        size_t tl = base64_encoded_len(n);
        memset(text, 0, sizeof text);
        base64_encode(text, raw, n);
        ref_encode(ref, raw, n);
        assert_memory_equal(text, ref, tl);
        assert_int_equal(text[tl], '\0'); /* nothing written past the text */

        /* damage one character (sometimes), then decode both ways */
        if (tl && iter % 3) {
            static const char pool[] = "=-_ \n*A/+\xC3\xFF";
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            text[(x >> 8) % tl] = pool[x % (sizeof pool - 1)];
        }
        size_t dn, bad = 0;
        const char *why = NULL;
        assert_int_equal(base64_decoded_len(text, tl, &dn, &bad, &why), 0);
        long ref_bad = ref_first_bad(text, tl);
        memset(back, 0xAA, sizeof back);
        int rc = base64_decode(back, text, tl, 1, &bad, &why);
        if (ref_bad >= 0) {
            if (rc == 0)
                fail_msg("accepted '%.*s' (bad at %ld)", (int)tl, text, ref_bad);
            assert_int_equal(bad, (size_t)ref_bad);
            continue;
        }
        assert_int_equal(rc, 0);
        assert_int_equal(ref_decode(want, text, tl), dn);
        assert_memory_equal(back, want, dn);
        for (size_t i = dn; i < sizeof back; i++)
            assert_int_equal(back[i], 0xAA); /* nothing written past the bytes */
    }
}

static void test_fast_paths_match_reference(void **state)
{
    (void)state;
    for (int level = BASE64_SIMD_BEST; level <= BASE64_SIMD_NONE; level++) {
        base64_limit_simd((enum base64_simd)level);
        fast_paths_match_reference();
    }
    base64_limit_simd(BASE64_SIMD_BEST);
}

/* Each of the 256 byte values at each offset of a 256-character text (three 64-character
 * VBMI steps, then one AVX2 step and scalar groups; with AVX2 alone, seven 32-character
 * steps): accepted and decoded, or refused at that offset, exactly as the reference. */
static void test_every_byte_at_every_offset(void **state)
{
    (void)state;
    enum { N = 192 };
    unsigned char raw[N], back[N + 8], want[N + 8];
    char text[4 * N / 3];
    for (size_t i = 0; i < N; i++)
        raw[i] = (unsigned char)(i * 101 + 7);
    base64_encode(text, raw, N);
    for (int level = BASE64_SIMD_BEST; level <= BASE64_SIMD_NONE; level++) {
        base64_limit_simd((enum base64_simd)level);
        for (size_t k = 0; k < sizeof text; k++) {
            char keep = text[k];
            for (int c = 0; c < 256; c++) {
                text[k] = (char)c;
                long ref_bad = ref_first_bad(text, sizeof text);
                size_t bad = 0;
                const char *why = NULL;
                int rc = base64_decode(back, text, sizeof text, 1, &bad, &why);
                if (ref_bad >= 0) {
                    if (rc == 0)
                        fail_msg("byte %d at %zu accepted (level %d)", c, k, level);
                    assert_int_equal(bad, (size_t)ref_bad);
                    continue;
                }
                if (rc != 0)
                    fail_msg("byte %d at %zu refused (level %d)", c, k, level);
                size_t dn = ref_decode(want, text, sizeof text);
                assert_memory_equal(back, want, dn);
            }
            text[k] = keep;
        }
    }
    base64_limit_simd(BASE64_SIMD_BEST);
}

/* A long text (the fast loops' steady state) with a bad character at every position in
 * turn: the offset is exact wherever it falls in a two-group step. */
static void test_long_text_rejections_at_every_offset(void **state)
{
    (void)state;
    enum { N = 300 };
    unsigned char raw[N], back[N];
    char text[4 * N / 3 + 4];
    for (size_t i = 0; i < N; i++)
        raw[i] = (unsigned char)(i * 37 + 11);
    size_t tl = base64_encoded_len(N);
    base64_encode(text, raw, N);
    size_t bad;
    const char *why;
    for (int level = BASE64_SIMD_BEST; level <= BASE64_SIMD_NONE; level++) {
        base64_limit_simd((enum base64_simd)level);
        assert_int_equal(base64_decode(back, text, tl, 1, &bad, &why), 0);
        assert_memory_equal(back, raw, N);
        for (size_t k = 0; k < tl; k++) {
            char keep = text[k];
            text[k] = '*';
            bad = 0;
            assert_int_equal(base64_decode(back, text, tl, 1, &bad, &why), -1);
            assert_int_equal(bad, k);
            assert_non_null(strstr(why, "outside the base64 alphabet"));
            text[k] = keep;
        }
    }
    base64_limit_simd(BASE64_SIMD_BEST);
}

/* One readable and writable page followed by a PROT_NONE one; returns the first byte of
 * the guard page, so a buffer placed to end there faults on any access past its end. */
static unsigned char *guarded_page_end(size_t page)
{
    unsigned char *m =
        mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    assert_int_equal(mprotect(m + page, page, PROT_NONE), 0);
    return m + page;
}

/* Every length up to 1000 bytes at each SIMD width, with each input and each output ending
 * exactly at a guard page: whole encode, whole decode, and decode in two chunks (the first
 * not `last`, as prescan feeds them). The other tests' buffers are larger than their texts,
 * so a vector loop reading or writing past its buffer would pass there and faults here. */
static void test_buffers_end_at_a_guard_page(void **state)
{
    (void)state;
    enum { MAX = 1000 };
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    assert_true(page >= 4 * MAX / 3 + 4);
    unsigned char *in_end = guarded_page_end(page), *out_end = guarded_page_end(page);
    unsigned char raw[MAX], back[MAX];
    char text[4 * MAX / 3 + 4];
    for (size_t i = 0; i < MAX; i++)
        raw[i] = (unsigned char)(i * 73 + 5);
    size_t bad;
    const char *why;
    for (int level = BASE64_SIMD_BEST; level <= BASE64_SIMD_NONE; level++) {
        base64_limit_simd((enum base64_simd)level);
        for (size_t n = 0; n <= MAX; n++) {
            const size_t tl = base64_encoded_len(n);
            ref_encode(text, raw, n);

            memcpy(in_end - n, raw, n);
            base64_encode((char *)out_end - tl, in_end - n, n);
            assert_memory_equal(out_end - tl, text, tl);

            memcpy(in_end - tl, text, tl);
            assert_int_equal(base64_decode(out_end - n, (char *)in_end - tl, tl, 1, &bad, &why), 0);
            assert_memory_equal(out_end - n, raw, n);

            /* chars and decoded bytes of the two chunks */
            const size_t first = tl / 8 * 4, rest = tl - first;
            const size_t head = first / 4 * 3, tail = n - head;
            memcpy(in_end - first, text, first);
            assert_int_equal(
                base64_decode(out_end - head, (char *)in_end - first, first, 0, &bad, &why), 0);
            memcpy(back, out_end - head, head);
            memcpy(in_end - rest, text + first, rest);
            assert_int_equal(
                base64_decode(out_end - tail, (char *)in_end - rest, rest, 1, &bad, &why), 0);
            memcpy(back + head, out_end - tail, tail);
            assert_memory_equal(back, raw, n);
        }
    }
    base64_limit_simd(BASE64_SIMD_BEST);
    munmap(in_end - page, 2 * page);
    munmap(out_end - page, 2 * page);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4648_vectors),
        cmocka_unit_test(test_random_round_trips),
        cmocka_unit_test(test_rejections),
        cmocka_unit_test(test_fast_paths_match_reference),
        cmocka_unit_test(test_long_text_rejections_at_every_offset),
        cmocka_unit_test(test_every_byte_at_every_offset),
        cmocka_unit_test(test_buffers_end_at_a_guard_page),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
