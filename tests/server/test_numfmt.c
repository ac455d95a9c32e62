/*
 * test_numfmt.c — shortest round-trip number printing (server/numfmt.c): known values,
 * millions of random bit patterns read back bit-exactly with strtod/strtof, every binary
 * exponent at its edges, and, on a sample, no more significant digits than the shortest
 * "%.{p}g" that round-trips. Outputs are also checked to be valid JSON numbers.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/jsoncheck.h"
#include "../../server/numfmt.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint64_t next_u64(void)
{
    /* xorshift64*: deterministic, so a failure reproduces */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Du;
}

static double bits_f64(uint64_t u)
{
    double v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static float bits_f32(uint32_t u)
{
    float v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static void expect_f64(double v, const char *want)
{
    char out[NUMFMT_MAX];
    int n = numfmt_f64(out, v);
    assert_string_equal(out, want);
    assert_int_equal(n, (int)strlen(want));
}

static void expect_f32(float v, const char *want)
{
    char out[NUMFMT_MAX];
    int n = numfmt_f32(out, v);
    assert_string_equal(out, want);
    assert_int_equal(n, (int)strlen(want));
}

static void test_known_f64(void **state)
{
    (void)state;
    expect_f64(0.1, "0.1");
    expect_f64(1.0 / 3, "0.3333333333333333");
    expect_f64(2.0 / 3, "0.6666666666666666");
    expect_f64(5e-324, "5e-324");
    expect_f64(DBL_MAX, "1.7976931348623157e+308");
    expect_f64(-DBL_MAX, "-1.7976931348623157e+308");
    expect_f64(DBL_MIN, "2.2250738585072014e-308");
    expect_f64(0.0, "0");
    expect_f64(-0.0, "-0");
    expect_f64(-4.0, "-4");
    expect_f64(9007199254740992.0, "9007199254740992"); /* 2^53 */
    expect_f64(9007199254740991.0, "9007199254740991");
    expect_f64(1e21, "1e+21");
    expect_f64(1e20, "1e+20");
    expect_f64(1e15, "1000000000000000");
    expect_f64(123456789012345680.0, "1.2345678901234568e+17");
    expect_f64(1e23, "1e+23");
    expect_f64(0.3, "0.3");
    expect_f64(1.5, "1.5");
    expect_f64(-2.5e-7, "-2.5e-7");
    expect_f64(0.0001, "0.0001");
    expect_f64(0.00001, "1e-5");
    expect_f64(123.456, "123.456");
    expect_f64(1e300, "1e+300");
    expect_f64(104.0, "104");
    expect_f64(-234.0, "-234");
}

static void test_known_f32(void **state)
{
    (void)state;
    expect_f32(0.1f, "0.1");
    expect_f32(1.0f / 3, "0.33333334");
    expect_f32(FLT_TRUE_MIN, "1e-45");
    expect_f32(FLT_MIN, "1.1754944e-38");
    expect_f32(FLT_MAX, "3.4028235e+38");
    expect_f32(-0.0f, "-0");
    expect_f32(0.0f, "0");
    expect_f32(16777216.0f, "16777216"); /* 2^24 */
    expect_f32(16777215.0f, "16777215");
    expect_f32(1e10f, "10000000000");
    expect_f32(3.14159265f, "3.1415927");
    expect_f32(-4.0f, "-4");
    expect_f32(1.1f, "1.1");
    expect_f32(7.0e-26f, "7e-26");
}

static void test_non_finite_prints_null(void **state)
{
    (void)state;
    expect_f64(INFINITY, "null");
    expect_f64(NAN, "null");
    expect_f32(-INFINITY, "null");
}

/* The number of significant digits in a printed number (leading and trailing zeros of the
 * digit string don't count). */
static int sig_digits(const char *s)
{
    char d[40];
    int n = 0;
    for (const char *p = s; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9')
            d[n++] = *p;
    int a = 0, b = n;
    while (a < b && d[a] == '0')
        a++;
    while (b > a && d[b - 1] == '0')
        b--;
    return b > a ? b - a : 1;
}

static void check_f64(double v)
{
    char out[NUMFMT_MAX];
    int n = numfmt_f64(out, v);
    assert_true(n > 0 && n <= 24); /* "-2.2250738585072014e-308" */
    double r = strtod(out, NULL);
    if (memcmp(&r, &v, sizeof v) != 0)
        fail_msg("%a printed as %s reads back as %a", v, out, r);
}

static void check_f32(float v)
{
    char out[NUMFMT_MAX];
    int n = numfmt_f32(out, v);
    assert_true(n > 0 && n <= 17); /* "-1000000200000000" */
    float r = strtof(out, NULL);
    if (memcmp(&r, &v, sizeof v) != 0)
        fail_msg("%a printed as %s reads back as %a", (double)v, out, (double)r);
}

static void test_random_bits_round_trip(void **state)
{
    (void)state;
    for (int i = 0; i < 3000000; i++) {
        double v = bits_f64(next_u64());
        if (isfinite(v))
            check_f64(v);
        float f = bits_f32((uint32_t)next_u64());
        if (isfinite(f))
            check_f32(f);
    }
}

static void test_random_values_round_trip(void **state)
{
    (void)state;
    /* values as tensors hold them: uniform in [-1, 1), scaled, and small integers */
    for (int i = 0; i < 1000000; i++) {
        double u = (double)(next_u64() >> 11) * 0x1p-53 * 2 - 1;
        check_f64(u);
        check_f64(u * 1e6);
        check_f32((float)u);
        check_f32((float)(u * 1000));
        check_f64((double)(int64_t)(u * 1e6));
    }
}

static void test_exponent_edges(void **state)
{
    (void)state;
    /* Every binary exponent with the smallest, next, and largest significands: covers every
     * power-of-ten table entry used and the asymmetric interval at powers of two. */
    for (uint64_t e = 0; e < 2047; e++) {
        uint64_t m[] = {0, 1, 2, (UINT64_C(1) << 52) - 1, (UINT64_C(1) << 51)};
        for (int k = 0; k < 5; k++) {
            check_f64(bits_f64(e << 52 | m[k]));
            check_f64(-bits_f64(e << 52 | m[k]));
        }
    }
    for (uint32_t e = 0; e < 255; e++) {
        uint32_t m[] = {0, 1, 2, (1u << 23) - 1, 1u << 22};
        for (int k = 0; k < 5; k++)
            check_f32(bits_f32(e << 23 | m[k]));
    }
    for (int p = -324; p <= 308; p++) {
        char s[32];
        snprintf(s, sizeof s, "1e%d", p);
        check_f64(strtod(s, NULL));
        snprintf(s, sizeof s, "9.999999999999999e%d", p < 308 ? p : 307);
        check_f64(strtod(s, NULL));
    }
}

static void test_shortest_f64(void **state)
{
    (void)state;
    char out[NUMFMT_MAX], g[64];
    for (int i = 0; i < 100000; i++) {
        double v = bits_f64(next_u64());
        if (!isfinite(v) || v == 0)
            continue;
        numfmt_f64(out, v);
        int p = 1;
        for (; p < 17; p++) {
            snprintf(g, sizeof g, "%.*g", p, v);
            if (strtod(g, NULL) == v)
                break;
        }
        if (sig_digits(out) > p)
            fail_msg("%a printed as %s but %%.%dg gives %s", v, out, p, g);
    }
}

static void test_shortest_f32(void **state)
{
    (void)state;
    char out[NUMFMT_MAX], g[64];
    for (int i = 0; i < 100000; i++) {
        float v = bits_f32((uint32_t)next_u64());
        if (!isfinite(v) || v == 0)
            continue;
        numfmt_f32(out, v);
        int p = 1;
        for (; p < 9; p++) {
            snprintf(g, sizeof g, "%.*g", p, (double)v);
            if (strtof(g, NULL) == v)
                break;
        }
        if (sig_digits(out) > p)
            fail_msg("%a printed as %s but %%.%dg gives %s", (double)v, out, p, g);
    }
}

static void test_integers_have_no_fraction(void **state)
{
    (void)state;
    char out[NUMFMT_MAX];
    for (int i = 0; i < 100000; i++) {
        int64_t k = (int64_t)(next_u64() >> 11) - (INT64_C(1) << 52);
        numfmt_f64(out, (double)k);
        char want[32];
        snprintf(want, sizeof want, "%lld", (long long)k);
        assert_string_equal(out, want);
        int32_t k32 = (int32_t)(next_u64() % 33554432) - 16777216;
        numfmt_f32(out, (float)k32);
        if (k32 > -16777216 && k32 < 16777216) {
            snprintf(want, sizeof want, "%d", (int)k32);
            assert_string_equal(out, want);
        }
    }
}

static void test_outputs_are_json(void **state)
{
    (void)state;
    char out[NUMFMT_MAX];
    apierr e;
    for (int i = 0; i < 200000; i++) {
        double v = bits_f64(next_u64());
        if (!isfinite(v))
            continue;
        int n = numfmt_f64(out, v);
        if (jsoncheck(out, (size_t)n, &e) != 0)
            fail_msg("%s is not a JSON number: %s", out, e.msg);
        n = numfmt_f32(out, (float)v);
        if (isfinite((float)v) && jsoncheck(out, (size_t)n, &e) != 0)
            fail_msg("%s is not a JSON number: %s", out, e.msg);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_f64),
        cmocka_unit_test(test_known_f32),
        cmocka_unit_test(test_non_finite_prints_null),
        cmocka_unit_test(test_random_bits_round_trip),
        cmocka_unit_test(test_random_values_round_trip),
        cmocka_unit_test(test_exponent_edges),
        cmocka_unit_test(test_shortest_f64),
        cmocka_unit_test(test_shortest_f32),
        cmocka_unit_test(test_integers_have_no_fraction),
        cmocka_unit_test(test_outputs_are_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
