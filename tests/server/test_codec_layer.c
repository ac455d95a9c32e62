/*
 * test_codec_layer.c — the layer object (server/codec_layer.c): the notebook's W-only
 * layer, the 40 PyTorch reference layers, defaults and random seeds, every contradiction
 * with W, missing and out-of-range fields, typos with suggestions, init rules, b rules,
 * and the normalised encoding (which decodes back to the same parameters).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/codec.h"

static cJSON *parse(const char *text)
{
    apierr e = {0};
    cJSON *root = codec_parse(text, strlen(text), &e);
    if (!root)
        fail_msg("test input does not parse: %s (%s)", text, e.msg);
    return root;
}

static void decode_ok(const char *text, codec_layer *l)
{
    cJSON *root = parse(text);
    apierr e = {0};
    if (codec_layer_decode(root, 0, "max_session_bytes", l, &e) != 0)
        fail_msg("rejected %s: %s: %s", text, apierr_name(e.code), e.msg);
    cJSON_Delete(root);
}

static void expect_reject(const char *text, apierr_code code, const char *part1, const char *part2)
{
    cJSON *root = parse(text);
    apierr e = {0};
    codec_layer l;
    int rc = codec_layer_decode(root, 0, "max_session_bytes", &l, &e);
    cJSON_Delete(root);
    if (rc == 0) {
        codec_layer_release(&l);
        fail_msg("accepted: %s", text);
    }
    assert_null(l.W.data);
    assert_null(l.b.data);
    if (e.code != code)
        fail_msg("%s: code %s, want %s (%s)", text, apierr_name(e.code), apierr_name(code), e.msg);
    if (part1 && !strstr(e.msg, part1))
        fail_msg("%s: message lacks '%s': %s", text, part1, e.msg);
    if (part2 && !strstr(e.msg, part2))
        fail_msg("%s: message lacks '%s': %s", text, part2, e.msg);
}

static void test_notebook_layer(void **state)
{
    (void)state;
    codec_layer l;
    decode_ok("{\"W\": [[[0,0,0],[0,1,0],[0,-1,0]], [[0,0,0],[0,-1,1],[0,0,0]]]}", &l);
    assert_int_equal(l.p.in_channels, 1);
    assert_int_equal(l.p.out_channels, 2);
    assert_int_equal(l.p.kh, 3);
    assert_int_equal(l.p.kw, 3);
    assert_int_equal(l.p.sh, 1);
    assert_int_equal(l.p.dw, 1);
    assert_int_equal(l.p.groups, 1);
    assert_int_equal(l.p.pad_mode, CVD_PAD_EXPLICIT);
    assert_int_equal(l.p.ph, 0);
    assert_int_equal(l.p.bias, 1);
    assert_int_equal(l.p.dtype, CVD_F64);
    assert_true(l.has_W);
    assert_int_equal(l.W_rank, 3);
    assert_int_equal(l.W_form, CODEC_NESTED);
    assert_false(l.has_b);
    assert_int_equal(l.scheme, CVD_INIT_ZEROS); /* b defaults to zeros when W is given */
    const double *W = l.W.data;
    assert_true(W[4] == 1 && W[7] == -1 && W[13] == -1 && W[14] == 1);
    codec_layer_release(&l);
    codec_layer_release(&l); /* releasing twice is harmless */
}

static void test_reference_layers(void **state)
{
    (void)state;
    const char *dir = getenv("CONVD_FIXTURES");
    char path[1024];
    snprintf(path, sizeof path, "%s/reference_cases.json", dir && *dir ? dir : "tests/fixtures");
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)len + 1);
    assert_non_null(text);
    assert_int_equal(fread(text, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    apierr e = {0};
    cJSON *root = codec_parse(text, (size_t)len, &e);
    free(text);
    assert_non_null(root);
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(root, "cases");
    assert_true(cJSON_GetArraySize(cases) >= 40);
    for (const cJSON *c = cases->child; c; c = c->next) {
        const cJSON *L = cJSON_GetObjectItemCaseSensitive(c, "layer");
        codec_layer l;
        if (codec_layer_decode(L, 0, "max_session_bytes", &l, &e) != 0)
            fail_msg("%s: %s", cJSON_GetObjectItemCaseSensitive(c, "name")->valuestring, e.msg);
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(L, "kernel_size");
        assert_int_equal(l.p.in_channels,
                         cJSON_GetObjectItemCaseSensitive(L, "in_channels")->valueint);
        assert_int_equal(l.p.out_channels,
                         cJSON_GetObjectItemCaseSensitive(L, "out_channels")->valueint);
        assert_int_equal(l.p.kh, k->child->valueint);
        assert_int_equal(l.p.kw, k->child->next->valueint);
        assert_int_equal(l.p.groups, cJSON_GetObjectItemCaseSensitive(L, "groups")->valueint);
        assert_int_equal(l.p.bias, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(L, "bias")));
        assert_int_equal(l.has_b, l.p.bias);
        assert_int_equal(l.W_rank, 4);
        assert_int_equal(l.W_form, CODEC_FLAT);
        const cJSON *data =
            cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(L, "W"), "data");
        int64_t i = 0;
        for (const cJSON *d = data->child; d; d = d->next, i++)
            assert_true(((double *)l.W.data)[i] == d->valuedouble);
        assert_int_equal(i, cvd_tensor_numel(&l.W));

        /* the normalised form decodes back to the same parameters */
        buf b;
        buf_init(&b);
        assert_int_equal(codec_layer_encode(&b, &l.p, CODEC_INIT_GIVEN, 0), 0);
        cJSON *again = parse(b.data);
        cJSON_AddItemReferenceToObject(again, "W", cJSON_GetObjectItemCaseSensitive(L, "W"));
        codec_layer l2;
        if (codec_layer_decode(again, 0, "max_session_bytes", &l2, &e) != 0)
            fail_msg("normalised %s does not decode: %s", b.data, e.msg);
        assert_memory_equal(&l.p, &l2.p, sizeof l.p);
        codec_layer_release(&l2);
        cJSON_Delete(again);
        buf_free(&b);
        codec_layer_release(&l);
    }
    cJSON_Delete(root);
}

static void test_defaults_and_seed(void **state)
{
    (void)state;
    codec_layer a, b;
    decode_ok("{\"in_channels\": 3, \"out_channels\": 8, \"kernel_size\": 3}", &a);
    decode_ok("{\"in_channels\": 3, \"out_channels\": 8, \"kernel_size\": 3}", &b);
    assert_int_equal(a.p.in_channels, 3);
    assert_int_equal(a.p.out_channels, 8);
    assert_int_equal(a.p.kh, 3);
    assert_int_equal(a.p.kw, 3);
    assert_int_equal(a.p.sh, 1);
    assert_int_equal(a.p.sw, 1);
    assert_int_equal(a.p.dh, 1);
    assert_int_equal(a.p.ph, 0);
    assert_int_equal(a.p.groups, 1);
    assert_int_equal(a.p.bias, 1);
    assert_int_equal(a.p.dtype, CVD_F64);
    assert_false(a.has_W);
    assert_false(a.has_b);
    assert_int_equal(a.W_form, -1);
    assert_int_equal(a.scheme, CVD_INIT_KAIMING_UNIFORM);
    assert_true(a.seed < (UINT64_C(1) << 53));
    assert_true(a.seed != b.seed); /* 53 random bits: equal with probability 2^-53 */

    codec_layer l;
    decode_ok("{\"in_channels\": 4, \"out_channels\": 6, \"kernel_size\": [3, 5], \"stride\": [2, "
              "1], \"padding\": [1, 2], \"dilation\": 2, \"groups\": 2, \"bias\": false, "
              "\"dtype\": \"float32\", \"init\": {\"scheme\": \"normal\", \"seed\": 42}}",
              &l);
    assert_int_equal(l.p.kh, 3);
    assert_int_equal(l.p.kw, 5);
    assert_int_equal(l.p.sh, 2);
    assert_int_equal(l.p.sw, 1);
    assert_int_equal(l.p.ph, 1);
    assert_int_equal(l.p.pw, 2);
    assert_int_equal(l.p.dh, 2);
    assert_int_equal(l.p.dw, 2);
    assert_int_equal(l.p.groups, 2);
    assert_int_equal(l.p.bias, 0);
    assert_int_equal(l.p.dtype, CVD_F32);
    assert_int_equal(l.scheme, CVD_INIT_NORMAL);
    assert_int_equal(l.seed, 42);

    buf out;
    buf_init(&out);
    assert_int_equal(codec_layer_encode(&out, &l.p, l.scheme, l.seed), 0);
    assert_string_equal(out.data,
                        "{\"in_channels\":4,\"out_channels\":6,\"kernel_size\":[3,5],"
                        "\"stride\":[2,1],\"padding\":[1,2],\"dilation\":[2,2],\"groups\":2,"
                        "\"bias\":false,\"dtype\":\"float32\","
                        "\"init\":{\"scheme\":\"normal\",\"seed\":42}}");
    /* and it decodes back to the same layer */
    codec_layer l2;
    decode_ok(out.data, &l2);
    assert_memory_equal(&l.p, &l2.p, sizeof l.p);
    assert_int_equal(l2.seed, 42);
    buf_free(&out);

    decode_ok("{\"in_channels\": 1, \"out_channels\": 1, \"kernel_size\": 3, \"padding\": "
              "\"same\", \"init\": {\"seed\": 9007199254740991}}",
              &a);
    assert_int_equal(a.p.pad_mode, CVD_PAD_SAME);
    assert_int_equal(a.seed, UINT64_C(9007199254740991));
    assert_int_equal(a.scheme, CVD_INIT_KAIMING_UNIFORM);
    buf_init(&out);
    codec_layer_encode(&out, &a.p, CVD_INIT_ZEROS, 7);
    assert_non_null(strstr(out.data, "\"padding\":\"same\""));
    assert_non_null(strstr(out.data, "\"init\":{\"scheme\":\"zeros\",\"seed\":7}"));
    buf_free(&out);
    decode_ok("{\"in_channels\": 1, \"out_channels\": 1, \"kernel_size\": 3, \"padding\": "
              "\"valid\", \"init\": {\"scheme\": \"zeros\"}}",
              &a);
    assert_int_equal(a.p.pad_mode, CVD_PAD_VALID);
    assert_int_equal(a.scheme, CVD_INIT_ZEROS);
    buf_init(&out);
    codec_layer_encode(&out, &a.p, a.scheme, a.seed);
    assert_non_null(strstr(out.data, "\"padding\":\"valid\""));
    buf_free(&out);
    codec_layer_release(&a);
    codec_layer_release(&b);
    codec_layer_release(&l);
    codec_layer_release(&l2);
}

static void test_W_and_b_forms(void **state)
{
    (void)state;
    codec_layer l;
    /* W rank 4, base64 float32 into a float64 layer; b (F, 1) flat */
    decode_ok("{\"W\": {\"shape\": [2, 1, 1, 1], \"dtype\": \"float32\", \"base64\": "
              "\"AACAPwAAIMA=\"}, \"b\": {\"shape\": [2, 1], \"data\": [0.5, -1]}}",
              &l);
    assert_int_equal(l.p.in_channels, 1);
    assert_int_equal(l.p.out_channels, 2);
    assert_int_equal(l.p.kh, 1);
    assert_int_equal(l.W_rank, 4);
    assert_int_equal(l.W_form, CODEC_BASE64);
    assert_true(((double *)l.W.data)[1] == -2.5);
    assert_true(l.has_b);
    assert_int_equal(l.b_rank, 2);
    assert_true(((double *)l.b.data)[1] == -1);
    codec_layer_release(&l);

    /* groups: W (F, C/g, kh, kw) gives in_channels = groups * C/g */
    decode_ok("{\"groups\": 2, \"W\": {\"shape\": [4, 3, 1, 2], \"data\": [1, 2, 3, 4, 5, 6, "
              "7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24]}, "
              "\"dtype\": \"float32\"}",
              &l);
    assert_int_equal(l.p.in_channels, 6);
    assert_int_equal(l.p.out_channels, 4);
    assert_int_equal(l.p.kw, 2);
    assert_int_equal(l.W.dtype, CVD_F32);
    codec_layer_release(&l);

    /* rank-3 W with depthwise groups: C/g = 1 */
    decode_ok("{\"groups\": 2, \"in_channels\": 2, \"W\": [[[1]], [[2]]]}", &l);
    assert_int_equal(l.p.in_channels, 2);
    assert_int_equal(l.W_rank, 3);
    codec_layer_release(&l);

    /* b without W: kept, the init draws W */
    decode_ok("{\"in_channels\": 1, \"out_channels\": 2, \"kernel_size\": 1, \"b\": [1, 2], "
              "\"init\": {\"seed\": 3}}",
              &l);
    assert_false(l.has_W);
    assert_true(l.has_b);
    assert_int_equal(l.b_rank, 1);
    assert_int_equal(l.seed, 3);
    codec_layer_release(&l);

    /* init {"scheme": "given"} is accepted together with W (round trip of a GET) */
    decode_ok("{\"W\": [[[1]]], \"init\": {\"scheme\": \"given\"}}", &l);
    assert_int_equal(l.scheme, CVD_INIT_ZEROS);
    codec_layer_release(&l);
}

static void test_contradictions_with_W(void **state)
{
    (void)state;
    const char *W = "{\"shape\": [2, 1, 5, 5], \"data\": [0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,"
                    "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}";
    char text[512];
    snprintf(text, sizeof text, "{\"kernel_size\": [3, 3], \"W\": %s}", W);
    expect_reject(text, APIERR_INVALID_LAYER, "kernel_size is [3,3] but W has shape (2,1,5,5)",
                  NULL);
    snprintf(text, sizeof text, "{\"kernel_size\": 5, \"out_channels\": 3, \"W\": %s}", W);
    expect_reject(text, APIERR_INVALID_LAYER, "out_channels is 3 but W has shape (2,1,5,5)", NULL);
    snprintf(text, sizeof text, "{\"in_channels\": 3, \"W\": %s}", W);
    expect_reject(text, APIERR_INVALID_LAYER, "in_channels is 3 but W has shape (2,1,5,5)",
                  "in_channels 1 with groups 1");
    expect_reject("{\"in_channels\": 3, \"W\": [[[1]]]}", APIERR_INVALID_LAYER,
                  "in_channels is 3 but W has shape (1,1,1)", "rank-3 W");
    expect_reject("{\"W\": [[1, 2], [3, 4]]}", APIERR_INVALID_LAYER, "W has shape (2,2)",
                  "(out_channels, in_channels/groups, kh, kw)");
    expect_reject("{\"W\": [1, 2]}", APIERR_INVALID_LAYER, "W has shape (2)", NULL);
    expect_reject("{\"W\": [[[1, 2]], [[3]]]}", APIERR_INVALID_TENSOR, "layer.W is ragged", NULL);
    expect_reject("{\"W\": [[[1, \"x\"]]]}", APIERR_INVALID_TENSOR, "layer.W[0][0][1]", NULL);
    expect_reject("{\"W\": [[[1e39]]], \"dtype\": \"float32\"}", APIERR_INVALID_TENSOR,
                  "layer.W[0][0][0]", "float32");
    expect_reject("{\"W\": [[[1]]], \"b\": [1, 2]}", APIERR_INVALID_LAYER,
                  "b has shape (2) but out_channels is 1", "(1) or (1,1)");
    expect_reject("{\"W\": [[[1]], [[1]]], \"b\": [[1, 2]]}", APIERR_INVALID_LAYER,
                  "b has shape (1,2)", NULL);
    expect_reject("{\"W\": [[[1]]], \"b\": [[[1]]]}", APIERR_INVALID_LAYER, "b has shape (1,1,1)",
                  NULL);
    expect_reject("{\"W\": [[[1]]], \"bias\": false, \"b\": [1]}", APIERR_INVALID_LAYER,
                  "b is given but bias is false", NULL);
    expect_reject("{\"W\": [[[1]]], \"init\": {\"scheme\": \"normal\", \"seed\": 1}}",
                  APIERR_INVALID_LAYER, "init and W are mutually exclusive", NULL);
    expect_reject("{\"W\": [[[1]]], \"init\": {\"scheme\": \"given\", \"seed\": 1}}",
                  APIERR_INVALID_LAYER, "mutually exclusive", NULL);
    expect_reject("{\"in_channels\": 4, \"groups\": 2, \"W\": [[[1]], [[1]]]}",
                  APIERR_INVALID_LAYER, "in_channels is 4", "rank-3 W");
}

static void test_missing_and_range(void **state)
{
    (void)state;
    expect_reject("{}", APIERR_INVALID_LAYER, "out_channels is missing", "or W");
    expect_reject("{\"out_channels\": 2, \"kernel_size\": 3}", APIERR_INVALID_LAYER,
                  "in_channels is missing", NULL);
    expect_reject("{\"in_channels\": 1, \"out_channels\": 2}", APIERR_INVALID_LAYER,
                  "kernel_size is missing", NULL);
    const char *base = "\"in_channels\": 2, \"out_channels\": 2, \"kernel_size\": 3";
    static const struct {
        const char *extra;
        const char *part;
    } cases[] = {
        {"\"stride\": 1.5", "stride must be an integer >= 1 or [h, w], got 1.5"},
        {"\"stride\": 0", "stride must be an integer >= 1 or [h, w], got 0"},
        {"\"stride\": true", "got true"},
        {"\"stride\": \"3\"", "got \"3\""},
        {"\"stride\": [1, 2, 3]", "stride must be an integer or [h, w] (2 integers), got an "
                                  "array of 3"},
        {"\"stride\": [1]", "array of 1"},
        {"\"stride\": [1, 0]", "stride[1] must be an integer >= 1, got 0"},
        {"\"dilation\": -1", "dilation must be an integer >= 1"},
        {"\"padding\": -1", "padding must be an integer >= 0, [h, w], \"valid\" or \"same\", "
                            "got -1"},
        {"\"padding\": [0, -2]", "padding[1] must be an integer >= 0, got -2"},
        {"\"padding\": \"full\"", "got \"full\""},
        {"\"padding\": \"SAME\"", "got \"SAME\""},
        {"\"padding\": \"same\", \"stride\": 2", "padding \"same\" needs stride 1"},
        {"\"groups\": 0", "groups must be an integer >= 1, got 0"},
        {"\"groups\": 3", "divisible by groups (3)"},
        {"\"bias\": 1", "bias must be true or false, got 1"},
        {"\"bias\": [0.5, 0.5]", "send bias values as \"b\""},
        {"\"dtype\": \"double\"", "dtype must be \"float32\" or \"float64\", got \"double\""},
        {"\"dtype\": 64", "got 64"},
        {"\"init\": 42", "init must be an object"},
        {"\"init\": {\"scheme\": \"xavier\"}", "init.scheme must be"},
        {"\"init\": {\"seed\": -1}", "init.seed must be an integer in [0, 2^53), got -1"},
        {"\"init\": {\"seed\": 1.5}", "got 1.5"},
        {"\"init\": {\"seed\": 9007199254740992}", "got 9007199254740992"},
        {"\"init\": {\"seed\": \"7\"}", "got \"7\""},
        {"\"init\": {\"scheme\": \"given\"}", "there is no W"},
        {"\"kernel_size\": 1e30", NULL},
        {"\"b\": [1, 2, 3]", "b has shape (3) but out_channels is 2"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[512];
        /* a later duplicate of kernel_size is not possible in JSON we accept: replace it */
        if (!strncmp(cases[i].extra, "\"kernel_size\"", 13))
            snprintf(text, sizeof text, "{\"in_channels\": 2, \"out_channels\": 2, %s}",
                     cases[i].extra);
        else
            snprintf(text, sizeof text, "{%s, %s}", base, cases[i].extra);
        expect_reject(text, APIERR_INVALID_LAYER, cases[i].part, NULL);
    }
    expect_reject("[1, 2]", APIERR_INVALID_LAYER, "layer must be an object", NULL);
    expect_reject("\"conv\"", APIERR_INVALID_LAYER, "layer must be an object", NULL);
}

static void test_unknown_fields_suggest(void **state)
{
    (void)state;
    static const struct {
        const char *key;
        const char *want;
    } typos[] = {
        {"strid", "did you mean 'stride'"},
        {"Stride", "did you mean 'stride'"},
        {"strides", "did you mean 'stride'"},
        {"kernel", "did you mean 'kernel_size'"},
        {"kernel_szie", "did you mean 'kernel_size'"},
        {"in_channel", "did you mean 'in_channels'"},
        {"out_chanels", "did you mean 'out_channels'"},
        {"weight", "did you mean 'W'"},
        {"w", "did you mean 'W'"},
        {"B", "did you mean 'b'"},
        {"padd", "did you mean 'padding'"},
        {"dialation", "did you mean 'dilation'"},
        {"activation", "known fields: in_channels, out_channels"},
    };
    for (size_t i = 0; i < sizeof typos / sizeof typos[0]; i++) {
        char text[256];
        snprintf(text, sizeof text,
                 "{\"in_channels\": 1, \"out_channels\": 1, \"kernel_size\": 1, \"%s\": 1}",
                 typos[i].key);
        char head[96];
        snprintf(head, sizeof head, "unknown field '%s' in layer", typos[i].key);
        expect_reject(text, APIERR_INVALID_ARGUMENT, head, typos[i].want);
    }
    expect_reject("{\"in_channels\": 1, \"out_channels\": 1, \"kernel_size\": 1, \"init\": "
                  "{\"sed\": 1}}",
                  APIERR_INVALID_ARGUMENT, "unknown field 'sed' in layer.init",
                  "did you mean 'seed'");
    /* unknown fields are reported before anything else is judged */
    expect_reject("{\"strid\": 2}", APIERR_INVALID_ARGUMENT, "strid", NULL);
    /* a very long key is clipped in the message */
    char text[400];
    char key[201];
    memset(key, 'k', 200);
    key[200] = '\0';
    snprintf(text, sizeof text, "{\"%s\": 1}", key);
    expect_reject(text, APIERR_INVALID_ARGUMENT, "kkkkkkkk...' in layer", NULL);
}

static void test_element_limit(void **state)
{
    (void)state;
    cJSON *root = parse("{\"W\": [[[1, 2], [3, 4]]], \"b\": [1]}");
    apierr e = {0};
    codec_layer l;
    assert_int_equal(codec_layer_decode(root, 3, "max_session_bytes", &l, &e), -1);
    assert_int_equal(e.code, APIERR_PAYLOAD_TOO_LARGE);
    assert_non_null(strstr(e.msg, "layer.W has 4 elements"));
    assert_non_null(strstr(e.msg, "max_session_bytes"));
    assert_int_equal(codec_layer_decode(root, 4, "max_session_bytes", &l, &e), 0);
    codec_layer_release(&l);
    cJSON_Delete(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_notebook_layer),         cmocka_unit_test(test_reference_layers),
        cmocka_unit_test(test_defaults_and_seed),      cmocka_unit_test(test_W_and_b_forms),
        cmocka_unit_test(test_contradictions_with_W),  cmocka_unit_test(test_missing_and_range),
        cmocka_unit_test(test_unknown_fields_suggest), cmocka_unit_test(test_element_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
