/*
 * test_codec.c — tensors through the codec: decode(encode(t)) == t bit for bit for every
 * form, dtype and rank 1-4; shape overrides on output; base64 dtype conversion; every
 * rejection with its API code and a message naming the element or field; the element
 * limit; and JSON string escaping.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/codec.h"

static uint64_t rng = 0x243F6A8885A308D3u;

static uint64_t next_u64(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1Du;
}

/* A finite random value: mostly "ordinary" numbers, sometimes arbitrary bit patterns. */
static double random_value(cvd_dtype dt)
{
    uint64_t u = next_u64();
    switch (u % 4) {
    case 0:
        return (double)(int)(u >> 40) - 8388608.0; /* integers */
    case 1:
        return ((double)(u >> 11) * 0x1p-53 - 0.5) * 4;
    default:
        if (dt == CVD_F32) {
            float f;
            uint32_t b = (uint32_t)(u >> 32);
            memcpy(&f, &b, 4);
            return isfinite(f) ? f : 1.5;
        } else {
            double d;
            memcpy(&d, &u, 8);
            return isfinite(d) ? d : -2.25;
        }
    }
}

static void fill_random(cvd_tensor *t)
{
    int64_t n = cvd_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        double v = random_value(t->dtype);
        if (t->dtype == CVD_F64)
            ((double *)t->data)[i] = v;
        else
            ((float *)t->data)[i] = (float)v;
    }
}

static cJSON *parse_or_fail(const char *text, size_t len)
{
    apierr e = {0};
    cJSON *root = codec_parse(text, len, &e);
    if (!root)
        fail_msg("encoder output does not parse: %s", e.msg);
    return root;
}

/* Encodes t in `form` with (rank, shape), parses the text, decodes it back. */
static void round_trip(const cvd_tensor *t, codec_form form)
{
    buf b;
    buf_init(&b);
    assert_int_equal(codec_tensor_encode(&b, t, t->rank, t->shape, form), 0);
    cJSON *root = parse_or_fail(b.data, b.len);
    cvd_tensor back;
    codec_form got;
    apierr e = {0};
    if (codec_tensor_decode(root, "x", t->dtype, 0, "max_x", &back, &got, &e) != 0)
        fail_msg("decode of own output failed: %s", e.msg);
    assert_int_equal(got, form);
    assert_int_equal(back.rank, t->rank);
    assert_memory_equal(back.shape, t->shape, sizeof t->shape);
    assert_int_equal(back.dtype, t->dtype);
    size_t bytes = (size_t)cvd_tensor_numel(t) * cvd_dtype_size(t->dtype);
    assert_memory_equal(back.data, t->data, bytes);
    cvd_tensor_release(&back);
    cJSON_Delete(root);
    buf_free(&b);
}

static void test_round_trip_all_forms(void **state)
{
    (void)state;
    static const int64_t shapes[][4] = {
        {7}, {1}, {3, 5}, {1, 1}, {2, 3, 4}, {4, 1, 2}, {2, 3, 4, 5}, {1, 1, 1, 1}, {3, 1, 2, 1},
    };
    static const int ranks[] = {1, 1, 2, 2, 3, 3, 4, 4, 4};
    cvd_dtype dts[] = {CVD_F64, CVD_F32};
    for (int d = 0; d < 2; d++) {
        for (size_t s = 0; s < sizeof ranks / sizeof ranks[0]; s++) {
            cvd_tensor t;
            assert_int_equal(cvd_tensor_alloc(&t, dts[d], ranks[s], shapes[s], NULL), CVD_OK);
            fill_random(&t);
            round_trip(&t, CODEC_NESTED);
            round_trip(&t, CODEC_FLAT);
            round_trip(&t, CODEC_BASE64);
            cvd_tensor_release(&t);
        }
    }
}

static void test_round_trip_large(void **state)
{
    (void)state;
    /* larger than the encoder's and base64 decoder's chunks */
    int64_t shape[4] = {2, 3, 41, 43};
    cvd_dtype dts[] = {CVD_F64, CVD_F32};
    for (int d = 0; d < 2; d++) {
        cvd_tensor t;
        assert_int_equal(cvd_tensor_alloc(&t, dts[d], 4, shape, NULL), CVD_OK);
        fill_random(&t);
        round_trip(&t, CODEC_NESTED);
        round_trip(&t, CODEC_FLAT);
        round_trip(&t, CODEC_BASE64);
        cvd_tensor_release(&t);
    }
    int64_t flat[1] = {10007};
    cvd_tensor t;
    assert_int_equal(cvd_tensor_alloc(&t, CVD_F32, 1, flat, NULL), CVD_OK);
    fill_random(&t);
    round_trip(&t, CODEC_NESTED);
    round_trip(&t, CODEC_BASE64);
    cvd_tensor_release(&t);
}

static void encode_expect(const cvd_tensor *t, int rank, const int64_t *shape, codec_form form,
                          const char *want)
{
    buf b;
    buf_init(&b);
    assert_int_equal(codec_tensor_encode(&b, t, rank, shape, form), 0);
    assert_string_equal(b.data, want);
    buf_free(&b);
}

static void test_encode_exact_text(void **state)
{
    (void)state;
    int64_t shape[3] = {2, 1, 3};
    cvd_tensor t;
    assert_int_equal(cvd_tensor_alloc(&t, CVD_F32, 3, shape, NULL), CVD_OK);
    float v[6] = {0.1f, -4, 1e10f, 0.5f, -0.0f, 3};
    memcpy(t.data, v, sizeof v);
    encode_expect(&t, 3, shape, CODEC_NESTED, "[[[0.1,-4,10000000000]],[[0.5,-0,3]]]");
    encode_expect(&t, 0, NULL, CODEC_NESTED, "[[[0.1,-4,10000000000]],[[0.5,-0,3]]]");
    int64_t s2[2] = {2, 3};
    encode_expect(&t, 2, s2, CODEC_NESTED, "[[0.1,-4,10000000000],[0.5,-0,3]]");
    encode_expect(&t, 2, s2, CODEC_FLAT,
                  "{\"shape\":[2,3],\"data\":[0.1,-4,10000000000,0.5,-0,3]}");
    int64_t s1[1] = {6};
    encode_expect(&t, 1, s1, CODEC_NESTED, "[0.1,-4,10000000000,0.5,-0,3]");
    /* element counts must agree */
    int64_t bad[1] = {5};
    buf b;
    buf_init(&b);
    assert_int_equal(codec_tensor_encode(&b, &t, 1, bad, CODEC_NESTED), -1);
    assert_int_equal(b.oom, 0);
    buf_free(&b);
    cvd_tensor_release(&t);

    int64_t s3[1] = {2};
    assert_int_equal(cvd_tensor_alloc(&t, CVD_F64, 1, s3, NULL), CVD_OK);
    double d[2] = {1.0 / 3, 1e300};
    memcpy(t.data, d, sizeof d);
    encode_expect(&t, 1, s3, CODEC_NESTED, "[0.3333333333333333,1e+300]");
    /* 1.0 and 2.0 as little-endian doubles */
    d[0] = 1.0;
    d[1] = 2.0;
    memcpy(t.data, d, sizeof d);
    encode_expect(&t, 1, s3, CODEC_BASE64,
                  "{\"shape\":[2],\"dtype\":\"float64\",\"base64\":\"AAAAAAAA8D8AAAAAAAAAQA==\"}");
    cvd_tensor_release(&t);
}

/* Decodes text as tensor "x" into `want` and returns the status; *t must be released by
 * the caller when 0. */
static int decode_text(const char *text, cvd_dtype want, int64_t max, cvd_tensor *t, apierr *e)
{
    apierr pe = {0};
    cJSON *root = codec_parse(text, strlen(text), &pe);
    if (!root)
        fail_msg("test input does not parse: %s (%s)", text, pe.msg);
    int rc = codec_tensor_decode(root, "x", want, max, "max_tensor_elems", t, NULL, e);
    cJSON_Delete(root);
    return rc;
}

static void expect_reject(const char *text, cvd_dtype want, apierr_code code, const char *part1,
                          const char *part2)
{
    cvd_tensor t;
    apierr e = {0};
    if (decode_text(text, want, 0, &t, &e) == 0) {
        cvd_tensor_release(&t);
        fail_msg("accepted: %s", text);
    }
    assert_null(t.data);
    if (e.code != code)
        fail_msg("%s: code %s, want %s (%s)", text, apierr_name(e.code), apierr_name(code), e.msg);
    if (part1 && !strstr(e.msg, part1))
        fail_msg("%s: message lacks '%s': %s", text, part1, e.msg);
    if (part2 && !strstr(e.msg, part2))
        fail_msg("%s: message lacks '%s': %s", text, part2, e.msg);
}

static void test_decode_nested_values(void **state)
{
    (void)state;
    cvd_tensor t;
    apierr e = {0};
    assert_int_equal(decode_text("[[1, 2.5], [-3, 1e-3]]", CVD_F64, 0, &t, &e), 0);
    assert_int_equal(t.rank, 2);
    assert_int_equal(t.shape[0], 2);
    assert_int_equal(t.shape[1], 2);
    double *d = t.data;
    assert_true(d[0] == 1 && d[1] == 2.5 && d[2] == -3 && d[3] == 1e-3);
    cvd_tensor_release(&t);

    assert_int_equal(decode_text("[[[[0.1]]]]", CVD_F32, 0, &t, &e), 0);
    assert_int_equal(t.rank, 4);
    assert_true(((float *)t.data)[0] == 0.1f);
    cvd_tensor_release(&t);

    /* float32 accepts values that round to FLT_MAX, and underflow to 0 */
    assert_int_equal(decode_text("[3.4028235e38, 1e-50, -1e-46]", CVD_F32, 0, &t, &e), 0);
    assert_true(((float *)t.data)[0] == 3.4028235e38f);
    assert_true(((float *)t.data)[1] == 0.0f);
    cvd_tensor_release(&t);
}

static void test_reject_nested(void **state)
{
    (void)state;
    expect_reject("[[1, 2], [3, 4, 5]]", CVD_F64, APIERR_INVALID_TENSOR,
                  "x is ragged: x[1] has 3 elements but x[0] has 2", NULL);
    expect_reject("[[1, 2, 3], [4, 5]]", CVD_F64, APIERR_INVALID_TENSOR,
                  "x[1] has 2 elements but x[0] has 3", NULL);
    expect_reject("[[[1, 2], [3, 4]], [[5, 6]]]", CVD_F64, APIERR_INVALID_TENSOR,
                  "x[1] has 1 elements but x[0] has 2", NULL);
    expect_reject("[[[1, 2], [3, 4]], [[5, 6], [7]]]", CVD_F64, APIERR_INVALID_TENSOR,
                  "x[1][1] has 1 elements but x[0][0] has 2", NULL);
    expect_reject("[[[1, 2], [3, 4]], [[5, 6], []]]", CVD_F64, APIERR_INVALID_TENSOR,
                  "x[1][1] has 0 elements", NULL);
    expect_reject("[[[1, 2], [3, 4]], [[5, 6], [7, 8]], [[9, 10], [11, 12], [13, 14]]]", CVD_F64,
                  APIERR_INVALID_TENSOR, "x[2] has 3 elements but x[0] has 2", NULL);
    expect_reject("[[[1, 2]], [[3, 4]], []]", CVD_F64, APIERR_INVALID_TENSOR, "x[2] has 0 elements",
                  NULL);
    expect_reject("[[1, 2], 3]", CVD_F64, APIERR_INVALID_TENSOR,
                  "x[1] is a number but x[0] is an array", NULL);
    expect_reject("[[1, 2], [3, [4]]]", CVD_F64, APIERR_INVALID_TENSOR,
                  "x[1][1] is an array, expected a number", NULL);
    expect_reject("[]", CVD_F64, APIERR_INVALID_TENSOR, "x is an empty array", NULL);
    expect_reject("[[]]", CVD_F64, APIERR_INVALID_TENSOR, "x[0] is an empty array", NULL);
    expect_reject("[[[[[1]]]]]", CVD_F64, APIERR_INVALID_TENSOR, "rank 1 to 4",
                  "x[0][0][0][0] is an array");
    expect_reject("[[[0, 1, \"2\"]]]", CVD_F64, APIERR_INVALID_TENSOR,
                  "x[0][0][2] is a string, expected a number", NULL);
    expect_reject("[[1, 2], [3, true]]", CVD_F64, APIERR_INVALID_TENSOR,
                  "x[1][1] is a boolean, expected a number", NULL);
    expect_reject("[null]", CVD_F64, APIERR_INVALID_TENSOR, "x[0] is null", NULL);
    expect_reject("[{\"a\": 1}]", CVD_F64, APIERR_INVALID_TENSOR, "x[0] is an object", NULL);
    expect_reject("[1, 2, 1e400]", CVD_F64, APIERR_INVALID_TENSOR, "x[2] is inf",
                  "not a finite float64");
    expect_reject("[[1, -1e400]]", CVD_F32, APIERR_INVALID_TENSOR, "x[0][1] is -inf", NULL);
    expect_reject("[[1], [1e39]]", CVD_F32, APIERR_INVALID_TENSOR, "x[1][0] is 1e+39",
                  "not a finite float32");
    /* byte order is a base64 matter: a nested tensor's message does not raise it */
    cvd_tensor t;
    apierr e = {0};
    assert_int_not_equal(decode_text("[1e39]", CVD_F32, 0, &t, &e), 0);
    assert_null(strstr(e.msg, "byte order"));
    expect_reject("\"abc\"", CVD_F64, APIERR_INVALID_TENSOR, "x is a string", NULL);
    expect_reject("3", CVD_F64, APIERR_INVALID_TENSOR, "x is a number", NULL);
}

static void test_decode_flat(void **state)
{
    (void)state;
    cvd_tensor t;
    apierr e = {0};
    assert_int_equal(
        decode_text("{\"shape\": [1, 2, 1, 2], \"data\": [1, 2, 3, 4]}", CVD_F32, 0, &t, &e), 0);
    assert_int_equal(t.rank, 4);
    assert_int_equal(t.shape[3], 2);
    assert_true(((float *)t.data)[3] == 4.0f);
    cvd_tensor_release(&t);
    assert_int_equal(decode_text("{\"data\": [5], \"shape\": [1.0]}", CVD_F64, 0, &t, &e), 0);
    cvd_tensor_release(&t);
}

static void test_reject_flat(void **state)
{
    (void)state;
    expect_reject("{\"shape\": [2], \"data\": [1, 2], \"extra\": 1}", CVD_F64,
                  APIERR_INVALID_ARGUMENT, "unknown field 'extra' in x", NULL);
    expect_reject("{\"shape\": [2], \"data\": [1, 2], \"shpe\": 1}", CVD_F64,
                  APIERR_INVALID_ARGUMENT, "did you mean 'shape'", NULL);
    expect_reject("{\"shape\": [2], \"data\": [1, 2], \"dtype\": \"float32\"}", CVD_F64,
                  APIERR_INVALID_ARGUMENT, "only the base64 form", NULL);
    expect_reject("{\"data\": [1, 2]}", CVD_F64, APIERR_INVALID_TENSOR, "x.shape is missing", NULL);
    expect_reject("{\"shape\": 2, \"data\": [1, 2]}", CVD_F64, APIERR_INVALID_TENSOR,
                  "x.shape is a number", NULL);
    expect_reject("{\"shape\": [2.5], \"data\": [1, 2]}", CVD_F64, APIERR_INVALID_TENSOR,
                  "x.shape[0] is 2.5", NULL);
    expect_reject("{\"shape\": [2, -1], \"data\": [1, 2]}", CVD_F64, APIERR_INVALID_TENSOR,
                  "x.shape[1] is -1", NULL);
    expect_reject("{\"shape\": [0], \"data\": []}", CVD_F64, APIERR_INVALID_TENSOR,
                  "x.shape[0] is 0", NULL);
    expect_reject("{\"shape\": [1e30], \"data\": [1]}", CVD_F64, APIERR_INVALID_TENSOR,
                  "x.shape[0] is 1e+30", NULL);
    expect_reject("{\"shape\": [\"2\"], \"data\": [1, 2]}", CVD_F64, APIERR_INVALID_TENSOR,
                  "x.shape[0] is a string", NULL);
    expect_reject("{\"shape\": [], \"data\": [1]}", CVD_F64, APIERR_INVALID_TENSOR,
                  "x.shape is empty", NULL);
    expect_reject("{\"shape\": [1, 1, 1, 1, 1], \"data\": [1]}", CVD_F64, APIERR_INVALID_TENSOR,
                  "x.shape has 5 dimensions", NULL);
    expect_reject("{\"shape\": [2, 3], \"data\": [1, 2, 3, 4, 5]}", CVD_F64, APIERR_INVALID_TENSOR,
                  "x.data has 5 numbers but x.shape (2,3) needs 6", NULL);
    expect_reject("{\"shape\": [2], \"data\": [[1], [2]]}", CVD_F64, APIERR_INVALID_TENSOR,
                  "x.data[0] is an array, expected a number", NULL);
    expect_reject("{\"shape\": [2], \"data\": [1, null]}", CVD_F64, APIERR_INVALID_TENSOR,
                  "x.data[1] is null", NULL);
    expect_reject("{\"shape\": [2], \"data\": \"1,2\"}", CVD_F64, APIERR_INVALID_TENSOR,
                  "x.data is a string", NULL);
    expect_reject("{\"shape\": [1], \"data\": [1e39]}", CVD_F32, APIERR_INVALID_TENSOR,
                  "x.data[0] is 1e+39", "float32");
    expect_reject("{\"shape\": [1], \"data\": [1], \"base64\": \"AAAA\"}", CVD_F64,
                  APIERR_INVALID_TENSOR, "both \"data\" and \"base64\"", NULL);
    expect_reject("{\"shape\": [1]}", CVD_F64, APIERR_INVALID_TENSOR,
                  "without \"data\" or \"base64\"", NULL);
}

static void test_base64_dtype_conversion(void **state)
{
    (void)state;
    cvd_tensor t;
    apierr e = {0};
    /* float32 1.0, -2.5 little-endian: 0000803F 000020C0 */
    const char *f32 = "{\"shape\": [2], \"dtype\": \"float32\", \"base64\": \"AACAPwAAIMA=\"}";
    assert_int_equal(decode_text(f32, CVD_F64, 0, &t, &e), 0);
    assert_int_equal(t.dtype, CVD_F64);
    assert_true(((double *)t.data)[0] == 1.0 && ((double *)t.data)[1] == -2.5);
    cvd_tensor_release(&t);
    assert_int_equal(decode_text(f32, CVD_F32, 0, &t, &e), 0);
    assert_true(((float *)t.data)[0] == 1.0f && ((float *)t.data)[1] == -2.5f);
    cvd_tensor_release(&t);
    /* dtype defaults to the wanted one: 8 bytes = 2 floats or 1 double */
    const char *nodt = "{\"shape\": [2], \"base64\": \"AACAPwAAIMA=\"}";
    assert_int_equal(decode_text(nodt, CVD_F32, 0, &t, &e), 0);
    cvd_tensor_release(&t);
    expect_reject(nodt, CVD_F64, APIERR_INVALID_TENSOR,
                  "decodes to 8 bytes but shape (2) in float64 needs 16", NULL);

    /* float64 1.0, 2.0 into a float32 tensor */
    const char *f64 =
        "{\"shape\": [2], \"dtype\": \"float64\", \"base64\": \"AAAAAAAA8D8AAAAAAAAAQA==\"}";
    assert_int_equal(decode_text(f64, CVD_F32, 0, &t, &e), 0);
    assert_true(((float *)t.data)[0] == 1.0f && ((float *)t.data)[1] == 2.0f);
    cvd_tensor_release(&t);

    /* 1e39 as float64 does not fit float32 */
    double big = 1e39;
    unsigned char raw[8];
    memcpy(raw, &big, 8);
    cvd_tensor src = {.dtype = CVD_F64, .rank = 1, .shape = {1}, .data = &big};
    buf b;
    buf_init(&b);
    assert_int_equal(codec_tensor_encode(&b, &src, 0, NULL, CODEC_BASE64), 0);
    expect_reject(b.data, CVD_F32, APIERR_INVALID_TENSOR, "x[0] is 1e+39", "not a finite float32");
    /* a base64 tensor's non-finite value hints at byte order */
    expect_reject(b.data, CVD_F32, APIERR_INVALID_TENSOR,
                  "(largest: 3.4028235e+38) (is the byte "
                  "order little-endian?)",
                  NULL);
    buf_free(&b);
}

static void test_reject_base64(void **state)
{
    (void)state;
    expect_reject("{\"shape\": [1], \"dtype\": \"int32\", \"base64\": \"AAAAAA==\"}", CVD_F32,
                  APIERR_INVALID_TENSOR, "x.dtype must be \"float32\" or \"float64\"", "\"int32\"");
    expect_reject("{\"shape\": [1], \"dtype\": 32, \"base64\": \"AAAAAA==\"}", CVD_F32,
                  APIERR_INVALID_TENSOR, "got a number", NULL);
    expect_reject("{\"shape\": [1], \"base64\": 5}", CVD_F32, APIERR_INVALID_TENSOR,
                  "x.base64 is a number", NULL);
    expect_reject("{\"shape\": [1], \"base64\": \"AACAPw=\"}", CVD_F32, APIERR_INVALID_TENSOR,
                  "not a multiple of 4", NULL);
    expect_reject("{\"shape\": [1], \"base64\": \"AACAPw\"}", CVD_F32, APIERR_INVALID_TENSOR,
                  "not a multiple of 4", NULL);
    expect_reject("{\"shape\": [2], \"base64\": \"AACA-wAAIMA=\"}", CVD_F32, APIERR_INVALID_TENSOR,
                  "URL-safe", "character 4");
    expect_reject("{\"shape\": [2], \"base64\": \"AACA\\nPwAAIMA=\"}", CVD_F32,
                  APIERR_INVALID_TENSOR, NULL, NULL);
    expect_reject("{\"shape\": [2], \"base64\": \"AACAPwAAIMB=\"}", CVD_F32, APIERR_INVALID_TENSOR,
                  "unused bits", NULL);
    expect_reject("{\"shape\": [2], \"base64\": \"AAC=PwAAIMA=\"}", CVD_F32, APIERR_INVALID_TENSOR,
                  "'=' padding may only end the text", NULL);
    expect_reject("{\"shape\": [3], \"base64\": \"AACAPwAAIMA=\"}", CVD_F32, APIERR_INVALID_TENSOR,
                  "decodes to 8 bytes but shape (3) in float32 needs 12", NULL);
    expect_reject("{\"shape\": [1], \"base64\": \"\"}", CVD_F32, APIERR_INVALID_TENSOR,
                  "decodes to 0 bytes", NULL);
    expect_reject("{\"shape\": [2], \"base64\": \"AACAPwAAIMA=\", \"data\": [1, 2]}", CVD_F32,
                  APIERR_INVALID_TENSOR, "both", NULL);
    expect_reject("{\"shape\": [2], \"base64\": \"AACAPwAAIMA=\", \"order\": \"C\"}", CVD_F32,
                  APIERR_INVALID_ARGUMENT, "unknown field 'order' in x", NULL);
    /* NaN and infinity bit patterns: 0000C07F is NaN, 0000807F is +inf */
    expect_reject("{\"shape\": [1, 2], \"base64\": \"AACAPwAAwH8=\"}", CVD_F32,
                  APIERR_INVALID_TENSOR, "x[0][1] is nan", NULL);
    expect_reject("{\"shape\": [2], \"base64\": \"AACAfwAAIMA=\"}", CVD_F64, APIERR_INVALID_TENSOR,
                  "decodes to 8 bytes", NULL);
    expect_reject("{\"shape\": [2], \"dtype\": \"float32\", \"base64\": \"AACAfwAAIMA=\"}", CVD_F64,
                  APIERR_INVALID_TENSOR, "x[0] is inf", NULL);
}

static void test_base64_padding_inside_long_text(void **state)
{
    (void)state;
    /* '=' at the end of a 4096-character decoding chunk that is not the last one */
    size_t n = 8192;
    char *text = malloc(n + 64);
    assert_non_null(text);
    int k = snprintf(text, 64, "{\"shape\": [1536], \"base64\": \"");
    memset(text + k, 'A', n);
    text[k + 4095] = '=';
    strcpy(text + k + n, "\"}");
    expect_reject(text, CVD_F32, APIERR_INVALID_TENSOR, "'=' padding may only end", NULL);
    text[k + 4095] = 'A';
    cvd_tensor t;
    apierr e = {0};
    assert_int_equal(decode_text(text, CVD_F32, 0, &t, &e), 0);
    cvd_tensor_release(&t);
    free(text);
}

static void test_element_limit(void **state)
{
    (void)state;
    const char *texts[] = {
        "[[1, 2, 3], [4, 5, 6]]",
        "{\"shape\": [2, 3], \"data\": [1, 2, 3, 4, 5, 6]}",
        "{\"shape\": [2, 3], \"base64\": \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}",
    };
    for (int i = 0; i < 3; i++) {
        cvd_tensor t;
        apierr e = {0};
        assert_int_equal(decode_text(texts[i], CVD_F32, 5, &t, &e), -1);
        assert_int_equal(e.code, APIERR_PAYLOAD_TOO_LARGE);
        assert_non_null(strstr(e.msg, "max_tensor_elems"));
        assert_non_null(strstr(e.msg, "6 elements"));
        assert_null(t.data);
        assert_int_equal(decode_text(texts[i], CVD_F32, 6, &t, &e), 0);
        cvd_tensor_release(&t);
    }
    /* a huge declared shape is refused before any allocation */
    expect_reject("{\"shape\": [1000000, 1000000, 1000000], \"data\": [1]}", CVD_F64,
                  APIERR_INVALID_TENSOR, "x.data has 1 numbers", NULL);
    cvd_tensor t;
    apierr e = {0};
    expect_reject("{\"shape\": [1000000, 1000000, 1000000], \"base64\": \"AAAA\"}", CVD_F64,
                  APIERR_INVALID_TENSOR, "decodes to 3 bytes", NULL);
    assert_int_equal(decode_text("{\"shape\": [9007199254740992, 9007199254740992], "
                                 "\"base64\": \"AAAA\"}",
                                 CVD_F64, 0, &t, &e),
                     -1);
    assert_int_equal(e.code, APIERR_PAYLOAD_TOO_LARGE);
}

static void expect_json_string(const char *in, const char *want)
{
    buf b;
    buf_init(&b);
    assert_int_equal(codec_string_encode(&b, in), 0);
    assert_string_equal(b.data, want);
    apierr e = {0};
    cJSON *root = codec_parse(b.data, b.len, &e);
    if (!root)
        fail_msg("%s is not JSON: %s", b.data, e.msg);
    cJSON_Delete(root);
    buf_free(&b);
}

static void test_string_encode(void **state)
{
    (void)state;
    expect_json_string("plain", "\"plain\"");
    expect_json_string("", "\"\"");
    expect_json_string("a\"b\\c/d", "\"a\\\"b\\\\c/d\"");
    expect_json_string("\n\r\t\b\f", "\"\\n\\r\\t\\b\\f\"");
    expect_json_string("\x01\x1f\x7f", "\"\\u0001\\u001f\x7f\"");
    expect_json_string("caf\xC3\xA9 \xF0\x9D\x84\x9E", "\"caf\xC3\xA9 \xF0\x9D\x84\x9E\"");
    /* a message cut inside a character, and other invalid UTF-8, becomes U+FFFD */
    expect_json_string("ab\xC3", "\"ab\\ufffd\"");
    expect_json_string("\xED\xA0\x80x", "\"\\ufffd\\ufffd\\ufffdx\"");
    expect_json_string("\xC0\xAF", "\"\\ufffd\\ufffd\"");
    /* lead bytes 0xF5..0xFF start no character, however many continuation bytes follow */
    expect_json_string("\xF5\x80\x80", "\"\\ufffd\\ufffd\\ufffd\"");
    expect_json_string("\xFF\x80\x80x", "\"\\ufffd\\ufffd\\ufffdx\"");
}

static void test_form_parse(void **state)
{
    (void)state;
    codec_form f;
    assert_int_equal(codec_form_parse("nested", &f), 0);
    assert_int_equal(f, CODEC_NESTED);
    assert_int_equal(codec_form_parse("flat", &f), 0);
    assert_int_equal(f, CODEC_FLAT);
    assert_int_equal(codec_form_parse("base64", &f), 0);
    assert_int_equal(f, CODEC_BASE64);
    assert_int_equal(codec_form_parse("Flat", &f), -1);
    assert_int_equal(codec_form_parse(NULL, &f), -1);
}

static void test_check_fields(void **state)
{
    (void)state;
    static const char *const known[] = {"session", "layer", "x", "cache", "output", NULL};
    apierr e = {0};
    cJSON *root = codec_parse("{\"x\": 1, \"sesion\": 2}", 21, &e);
    assert_non_null(root);
    assert_int_equal(codec_check_fields(root, known, "the /forward body", &e), -1);
    assert_int_equal(e.code, APIERR_INVALID_ARGUMENT);
    assert_string_equal(e.msg,
                        "unknown field 'sesion' in the /forward body (did you mean 'session'?)");
    cJSON_Delete(root);
    root = codec_parse("{\"zzzzzz\": 2}", 13, &e);
    assert_int_equal(codec_check_fields(root, known, "the /forward body", &e), -1);
    assert_non_null(strstr(e.msg, "known fields: session, layer, x, cache, output"));
    cJSON_Delete(root);
    root = codec_parse("{\"Output\": 2}", 13, &e);
    assert_int_equal(codec_check_fields(root, known, "the /forward body", &e), -1);
    assert_string_equal(e.msg,
                        "unknown field 'Output' in the /forward body (did you mean 'output'?)");
    cJSON_Delete(root);
    root = codec_parse("{\"x\": 2, \"cache\": false}", 24, &e);
    assert_int_equal(codec_check_fields(root, known, "the /forward body", &e), 0);
    cJSON_Delete(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_all_forms),
        cmocka_unit_test(test_round_trip_large),
        cmocka_unit_test(test_encode_exact_text),
        cmocka_unit_test(test_decode_nested_values),
        cmocka_unit_test(test_reject_nested),
        cmocka_unit_test(test_decode_flat),
        cmocka_unit_test(test_reject_flat),
        cmocka_unit_test(test_base64_dtype_conversion),
        cmocka_unit_test(test_reject_base64),
        cmocka_unit_test(test_base64_padding_inside_long_text),
        cmocka_unit_test(test_element_limit),
        cmocka_unit_test(test_string_encode),
        cmocka_unit_test(test_form_parse),
        cmocka_unit_test(test_check_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
