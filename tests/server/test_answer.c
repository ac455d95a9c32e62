/*
 * test_answer.c — answers whose base64 tensors are encoded block by block (answer.c):
 * read in blocks of 1 to 65537 bytes and from arbitrary offsets, an answer with holes made
 * by codec_tensor_encode_hole gives exactly the text codec_tensor_encode writes, for
 * tensors whose byte counts leave 0, 1 and 2 bytes in the last base64 group, one to three
 * holes, and text before, between and after them.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "../../server/answer.h"
#include "../../server/codec.h"

/* A float32 tensor of n elements with varied bit patterns. */
static cvd_tensor tensor_of(int64_t n, uint32_t seed)
{
    cvd_tensor t;
    assert_int_equal(cvd_tensor_alloc(&t, CVD_F32, 1, &n, NULL), CVD_OK);
    float *f = t.data;
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        f[i] = (float)(seed >> 8) / 65536.0f - 128.0f;
    }
    return t;
}

/* The same answer twice: `want` fully encoded, and as an answer with holes. */
static answer *make_both(const int64_t *counts, int n, buf *want)
{
    buf text;
    buf_init(&text);
    buf_init(want);
    codec_hole holes[ANSWER_MAX_HOLES];
    buf_puts(&text, "{\"session\":\"abc\"");
    buf_puts(want, "{\"session\":\"abc\"");
    for (int k = 0; k < n; k++) {
        cvd_tensor a = tensor_of(counts[k], (uint32_t)k + 1),
                   b = tensor_of(counts[k], (uint32_t)k + 1);
        buf_printf(&text, ",\"t%d\":", k);
        buf_printf(want, ",\"t%d\":", k);
        assert_int_equal(codec_tensor_encode_hole(&text, &a, 0, NULL, &holes[k]), 0);
        assert_null(a.data);
        assert_int_equal(codec_tensor_encode(want, &b, 0, NULL, CODEC_BASE64), 0);
        cvd_tensor_release(&b);
    }
    buf_puts(&text, "}");
    buf_puts(want, "}");
    size_t len;
    char *t = buf_steal(&text, &len);
    answer *ans = answer_new(t, len, holes, n);
    assert_non_null(ans);
    assert_int_equal(answer_size(ans), want->len);
    return ans;
}

static void test_blocks_give_the_encoded_text(void **state)
{
    (void)state;
    static const int64_t counts[][3] = {{3000}, {3001}, {3002}, {1, 2, 3}, {70000, 5, 70001}};
    static const int nholes[] = {1, 1, 1, 3, 3};
    static const size_t blocks[] = {1, 2, 3, 4, 5, 7, 64, 4095, 65537};
    char *got = malloc(1 << 20);
    for (size_t c = 0; c < sizeof nholes / sizeof nholes[0]; c++) {
        buf want;
        answer *a = make_both(counts[c], nholes[c], &want);
        for (size_t b = 0; b < sizeof blocks / sizeof blocks[0]; b++) {
            size_t at = 0, n;
            while ((n = answer_read(a, at, got + at, blocks[b])) > 0) {
                assert_true(n <= blocks[b]);
                at += n;
            }
            assert_int_equal(at, want.len);
            if (memcmp(got, want.data, want.len))
                fail_msg("case %zu, blocks of %zu: the answer differs", c, blocks[b]);
        }
        /* reads from arbitrary offsets, as a resumed send would ask */
        uint32_t r = 7;
        for (int i = 0; i < 200; i++) {
            r = r * 1664525u + 1013904223u;
            const size_t pos = r % want.len, max = 1 + (r >> 16) % 97;
            const size_t n = answer_read(a, pos, got, max);
            assert_int_equal(n, want.len - pos < max ? want.len - pos : max);
            assert_memory_equal(got, want.data + pos, n);
        }
        assert_int_equal(answer_read(a, want.len, got, 10), 0);
        answer_free(a);
        buf_free(&want);
    }
    free(got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocks_give_the_encoded_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
