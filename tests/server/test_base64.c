/*
 * test_base64.c — strict RFC 4648 base64 (server/base64.c): the §10 test vectors both
 * ways, random round trips of every length up to 300 bytes, chunked decoding, and every
 * rejection (length, padding placement, alphabet, non-zero padding bits).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4648_vectors),
        cmocka_unit_test(test_random_round_trips),
        cmocka_unit_test(test_rejections),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
