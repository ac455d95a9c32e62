/*
 * test_jsontensor.c — the nested-array scanner (server/jsontensor.c): which arrays are
 * spans (values of "x"/"delta" only, numbers only, long enough; brackets inside strings
 * and keys that merely contain "x" do not count), shapes of rectangular arrays, refusals
 * of ragged, empty, too deep or mixed ones, and the numbers read back in order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../server/jsontensor.h"

static size_t spans_of(const char *body, jsoncheck_span *sp, size_t max)
{
    return jsontensor_spans(body, strlen(body), sp, max, 1);
}

static void test_spans(void **state)
{
    (void)state;
    jsoncheck_span sp[4];
    const char *b = "{\"s\":\"\\\"x\\\":[1,2]\",\"xx\":[1,2],\"x\" : [[1, 2],[3,4]],"
                    "\"delta\":[1,\"a\"],\"layer\":{\"W\":[1]},\"delta\":[5e-1,-2]}";
    size_t n = spans_of(b, sp, 4);
    assert_int_equal(n, 2);
    assert_memory_equal(b + sp[0].off, "[[1, 2],[3,4]]", sp[0].len);
    assert_int_equal(sp[0].len, strlen("[[1, 2],[3,4]]"));
    assert_memory_equal(b + sp[1].off, "[5e-1,-2]", sp[1].len);
    /* too short for the minimum: none */
    assert_int_equal(jsontensor_spans(b, strlen(b), sp, 4, 100), 0);
}

static void test_shapes(void **state)
{
    (void)state;
    int rank;
    int64_t sh[CVD_MAX_RANK];
    const char *ok = "[[[1,2,3],[4,5,6]]]";
    assert_int_equal(jsontensor_shape(ok, strlen(ok), &rank, sh), 0);
    assert_int_equal(rank, 3);
    assert_int_equal(sh[0], 1);
    assert_int_equal(sh[1], 2);
    assert_int_equal(sh[2], 3);
    static const char *const bad[] = {
        "[[1,2],[3]]", "[[1],2]", "[1,[2]]", "[]", "[[]]", "[[[[[1]]]]]", "[[1,2],[3,4,5]]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(jsontensor_shape(bad[i], strlen(bad[i]), &rank, sh), -1);
}

static void test_numbers(void **state)
{
    (void)state;
    const char *t = "[[ -1.5e2 , 0.25],\n[3,4E-1]]", *p = t, *end = t + strlen(t);
    const double want[] = {-150, 0.25, 3, 0.4};
    double v;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(jsontensor_next(&p, end, &v), 0);
        assert_true(v == want[i]);
    }
    assert_int_equal(jsontensor_next(&p, end, &v), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spans),
        cmocka_unit_test(test_shapes),
        cmocka_unit_test(test_numbers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
