/*
 * test_buf.c — the growable buffer (server/buf.c) and the error vocabulary
 * (server/apierr.c): appends, printf of any length, steal, overflowing reservations that
 * fail cleanly, the status/code table against the contract, and core-status mapping.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "../../server/apierr.h"
#include "../../server/buf.h"

static void test_append_and_steal(void **state)
{
    (void)state;
    buf b;
    buf_init(&b);
    assert_int_equal(buf_puts(&b, "ab"), 0);
    assert_int_equal(buf_putc(&b, 'c'), 0);
    assert_int_equal(buf_append(&b, "de\0f", 4), 0);
    assert_int_equal(b.len, 7);
    assert_memory_equal(b.data, "abcde\0f", 8); /* NUL-terminated after len */
    assert_int_equal(buf_printf(&b, "[%d:%s]", 42, "x"), 0);
    assert_int_equal(b.len, 13);
    assert_string_equal(b.data + 7, "[42:x]");

    /* longer than printf's stack buffer */
    char big[1000];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(buf_printf(&b, "<%s>", big), 0);
    assert_int_equal(b.len, 13 + 1001);
    assert_int_equal(b.data[b.len - 1], '>');
    assert_int_equal(b.data[b.len], '\0');

    size_t len = 0;
    char *p = buf_steal(&b, &len);
    assert_non_null(p);
    assert_int_equal(len, 1014);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    free(p);

    /* stealing an empty buffer gives a valid empty string */
    p = buf_steal(&b, &len);
    assert_non_null(p);
    assert_string_equal(p, "");
    assert_int_equal(len, 0);
    free(p);
    buf_free(&b);
}

static void test_growth(void **state)
{
    (void)state;
    buf b;
    buf_init(&b);
    for (int i = 0; i < 100000; i++)
        assert_int_equal(buf_putc(&b, (char)('a' + i % 26)), 0);
    assert_int_equal(b.len, 100000);
    assert_true(b.cap > b.len);
    assert_int_equal(b.data[99999], 'a' + 99999 % 26);
    buf_free(&b);
    assert_null(b.data);
    buf_free(&b); /* freeing twice is harmless */
}

/* buf_presize allocates exactly once for a known size, and failing leaves no oom behind. */
static void test_presize(void **state)
{
    (void)state;
    buf b;
    buf_init(&b);
    assert_int_equal(buf_presize(&b, 1000), 0);
    assert_int_equal(b.cap, 1001);
    assert_string_equal(b.data, "");
    char *before = b.data;
    char chunk[100];
    memset(chunk, 'x', sizeof chunk);
    for (int i = 0; i < 10; i++)
        assert_int_equal(buf_append(&b, chunk, sizeof chunk), 0);
    assert_ptr_equal(b.data, before); /* no reallocation */
    assert_int_equal(b.len, 1000);
    assert_int_equal(buf_presize(&b, 0), 0); /* already room: nothing changes */
    assert_int_equal(b.cap, 1001);
    assert_int_equal(buf_presize(&b, SIZE_MAX - 10), -1);
    assert_int_equal(b.oom, 0);
    assert_int_equal(buf_append(&b, "y", 1), 0); /* still usable, grows as usual */
    assert_int_equal(b.len, 1001);
    assert_int_equal(b.data[1000], 'y');
    assert_int_equal(b.data[1001], '\0');
    buf_free(&b);
}

static void test_overflow_fails_cleanly(void **state)
{
    (void)state;
    buf b;
    buf_init(&b);
    assert_int_equal(buf_puts(&b, "keep"), 0);
    assert_int_equal(buf_reserve(&b, SIZE_MAX), -1);
    assert_int_equal(b.oom, 1);
    assert_int_equal(buf_reserve(&b, SIZE_MAX - 4), -1);
    assert_int_equal(buf_append(&b, "x", SIZE_MAX - 2), -1);
    assert_string_equal(b.data, "keep");
    assert_int_equal(b.len, 4);
    /* oom is sticky: steal refuses and frees */
    size_t len = 99;
    assert_null(buf_steal(&b, &len));
    assert_int_equal(len, 0);
    assert_null(b.data);
    buf_free(&b);
}

static void test_contract_table(void **state)
{
    (void)state;
    static const struct {
        apierr_code c;
        int status;
        const char *name;
    } want[] = {
        {APIERR_NONE, 200, ""},
        {APIERR_INVALID_JSON, 400, "invalid_json"},
        {APIERR_INVALID_TENSOR, 400, "invalid_tensor"},
        {APIERR_INVALID_LAYER, 400, "invalid_layer"},
        {APIERR_SHAPE_MISMATCH, 400, "shape_mismatch"},
        {APIERR_INVALID_ARGUMENT, 400, "invalid_argument"},
        {APIERR_UNAUTHORIZED, 401, "unauthorized"},
        {APIERR_NOT_FOUND, 404, "not_found"},
        {APIERR_SESSION_NOT_FOUND, 404, "session_not_found"},
        {APIERR_METHOD_NOT_ALLOWED, 405, "method_not_allowed"},
        {APIERR_NO_FORWARD_CACHE, 409, "no_forward_cache"},
        {APIERR_SESSION_EXPIRED, 410, "session_expired"},
        {APIERR_PAYLOAD_TOO_LARGE, 413, "payload_too_large"},
        {APIERR_UNSUPPORTED_MEDIA_TYPE, 415, "unsupported_media_type"},
        {APIERR_WRONG_NODE, 421, "wrong_node"},
        {APIERR_NON_FINITE_RESULT, 422, "non_finite_result"},
        {APIERR_TOO_MANY_SESSIONS, 429, "too_many_sessions"},
        {APIERR_INTERNAL, 500, "internal"},
        {APIERR_SHUTTING_DOWN, 503, "shutting_down"},
        {APIERR_OUT_OF_MEMORY, 503, "out_of_memory"},
    };
    assert_int_equal(sizeof want / sizeof want[0], APIERR_COUNT_);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        assert_int_equal(apierr_status(want[i].c), want[i].status);
        assert_string_equal(apierr_name(want[i].c), want[i].name);
    }
    assert_int_equal(apierr_status(APIERR_COUNT_), 500);
    assert_string_equal(apierr_name((apierr_code)-1), "internal");
}

static void test_set_and_truncate(void **state)
{
    (void)state;
    apierr e = {0};
    assert_int_equal(apierr_set(&e, APIERR_INVALID_LAYER, "stride is %d", 0), -1);
    assert_int_equal(e.code, APIERR_INVALID_LAYER);
    assert_string_equal(e.msg, "stride is 0");
    char longer[2000];
    memset(longer, 'm', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    apierr_set(&e, APIERR_INVALID_ARGUMENT, "%s", longer);
    assert_int_equal(strlen(e.msg), sizeof e.msg - 1);
    assert_int_equal(apierr_set(NULL, APIERR_INTERNAL, "ignored"), -1);
}

static void test_from_cvd(void **state)
{
    (void)state;
    static const struct {
        cvd_status s;
        int layer;
        apierr_code want;
    } map[] = {
        {CVD_ERR_INVALID, 1, APIERR_INVALID_LAYER},
        {CVD_ERR_SHAPE, 1, APIERR_INVALID_LAYER},
        {CVD_ERR_INVALID, 0, APIERR_INVALID_ARGUMENT},
        {CVD_ERR_SHAPE, 0, APIERR_SHAPE_MISMATCH},
        {CVD_ERR_NO_CACHE, 0, APIERR_NO_FORWARD_CACHE},
        {CVD_ERR_NONFINITE, 0, APIERR_NON_FINITE_RESULT},
        {CVD_ERR_TOO_LARGE, 0, APIERR_PAYLOAD_TOO_LARGE},
        {CVD_ERR_TOO_LARGE, 1, APIERR_PAYLOAD_TOO_LARGE},
        {CVD_ERR_NOMEM, 0, APIERR_INTERNAL},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        cvd_err ce;
        strcpy(ce.msg, "x has shape (1,2) but y (3)");
        apierr e = {0};
        assert_int_equal(apierr_from_cvd(&e, map[i].s, &ce, map[i].layer), -1);
        assert_int_equal(e.code, map[i].want);
        assert_non_null(strstr(e.msg, "x has shape (1,2) but y (3)"));
    }
    /* without a core message, the status name stands in */
    apierr e = {0};
    apierr_from_cvd(&e, CVD_ERR_NOMEM, NULL, 0);
    assert_int_equal(e.code, APIERR_INTERNAL);
    assert_non_null(strstr(e.msg, "out of memory"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_and_steal), cmocka_unit_test(test_growth),
        cmocka_unit_test(test_presize),          cmocka_unit_test(test_overflow_fails_cleanly),
        cmocka_unit_test(test_contract_table),   cmocka_unit_test(test_set_and_truncate),
        cmocka_unit_test(test_from_cvd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
