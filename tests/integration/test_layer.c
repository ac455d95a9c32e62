/*
 * test_layer.c — the layer object (spec §2) and number printing (spec §1) through the
 * daemon: init schemes (zeros, seeded kaiming_uniform within PyTorch's bound, normal with
 * zero bias, random seeds reported and reproducible), the normalised layer echoed by POST
 * /sessions, "same" (asymmetric, as PyTorch) and "valid" padding, scalar vs [h, w] fields
 * checked against a naive convolution, and shortest round-trip printing in both dtypes.
 */
#include "itest.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* POST /sessions, then GET ?output=flat: the created layer echo and W, b. */
static void create_and_get(const char *layer, cJSON **created, ttensor *W, ttensor *b)
{
    http_res r;
    req(dmn, "POST", "/sessions", layer, &r);
    expect_status(&r, 201);
    const char *id = cJSON_GetStringValue(jget(r.json, "session"));
    char *path = strf("/sessions/%s?output=flat", id);
    *created = cJSON_Duplicate(jget(r.json, "layer"), 1);
    http_res_free(&r);
    req(dmn, "GET", path, NULL, &r);
    expect_status(&r, 200);
    tensor_read(jget(r.json, "W"), W, "W");
    const cJSON *bn = cJSON_GetObjectItemCaseSensitive(r.json, "b");
    if (b)
        tensor_read(bn, b, "b");
    http_res_free(&r);
    req(dmn, "DELETE", path, NULL, &r);
    http_res_free(&r);
    free(path);
}

static double seed_of(const cJSON *layer)
{
    return jnum(jget(layer, "init"), "seed");
}

static const char *scheme_of(const cJSON *layer)
{
    return cJSON_GetStringValue(jget(jget(layer, "init"), "scheme"));
}

static void expect_shape(const ttensor *t, int rank, int64_t a, int64_t b, int64_t c, int64_t d)
{
    int64_t s[4] = {a, b, c, d};
    char got[96], want[96];
    tt_shape_str(t->rank, t->shape, got, sizeof got);
    tt_shape_str(rank, s, want, sizeof want);
    assert_string_equal(got, want);
}

static void test_init_zeros(void **state)
{
    (void)state;
    cJSON *L;
    ttensor W, b;
    create_and_get("{\"in_channels\":2,\"out_channels\":3,\"kernel_size\":[2,3],"
                   "\"init\":{\"scheme\":\"zeros\"}}",
                   &L, &W, &b);
    assert_string_equal(scheme_of(L), "zeros");
    seed_of(L);
    expect_shape(&W, 4, 3, 2, 2, 3);
    expect_shape(&b, 1, 3, 0, 0, 0);
    assert_true(tt_max_abs(&W) == 0 && tt_max_abs(&b) == 0);
    tt_free(&W);
    tt_free(&b);
    cJSON_Delete(L);
}

static void test_init_kaiming_seeded(void **state)
{
    (void)state;
    const char *layer = "{\"in_channels\":4,\"out_channels\":8,\"kernel_size\":3,"
                        "\"init\":{\"scheme\":\"kaiming_uniform\",\"seed\":42}}";
    cJSON *L1, *L2, *L3;
    ttensor W1, b1, W2, b2, W3, b3;
    create_and_get(layer, &L1, &W1, &b1);
    create_and_get(layer, &L2, &W2, &b2);
    create_and_get("{\"in_channels\":4,\"out_channels\":8,\"kernel_size\":3,"
                   "\"init\":{\"scheme\":\"kaiming_uniform\",\"seed\":43}}",
                   &L3, &W3, &b3);
    assert_int_equal(seed_of(L1), 42);
    assert_string_equal(scheme_of(L1), "kaiming_uniform");
    expect_shape(&W1, 4, 8, 4, 3, 3);
    char why[256];
    if (tt_compare(&W1, &W2, 0, why, sizeof why) != 0 || tt_compare(&b1, &b2, 0, why, 256) != 0)
        fail_msg("same seed, different weights: %s", why);
    assert_true(tt_compare(&W1, &W3, 0, why, sizeof why) != 0);
    /* PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for W and b, fan_in = 4*3*3. */
    double bound = 1 / sqrt(36.0);
    assert_true(tt_max_abs(&W1) <= bound);
    assert_true(tt_max_abs(&W1) > 0.8 * bound);
    assert_true(tt_max_abs(&b1) <= bound);
    assert_true(tt_max_abs(&b1) > 0);
    ttensor *all[] = {&W1, &b1, &W2, &b2, &W3, &b3};
    for (size_t i = 0; i < 6; i++)
        tt_free(all[i]);
    cJSON_Delete(L1);
    cJSON_Delete(L2);
    cJSON_Delete(L3);
}

/* b given without W: b as sent, W by init; W given without b: b zeros. (W with init is
 * refused by this daemon, its documented choice; the spec is silent.) */
/* A layer built from W reports init {"scheme":"given"}; the GET's layer plus its W and b
 * can be sent back as they are and make an identical layer. */
static void test_W_given_round_trips(void **state)
{
    (void)state;
    cJSON *L;
    ttensor W, b;
    create_and_get("{\"W\":{\"shape\":[2,1,2,2],\"data\":[1,2,3,4,5,6,7,8]},"
                   "\"b\":[0.5,-0.25]}",
                   &L, &W, &b);
    assert_string_equal(scheme_of(L), "given");
    assert_null(cJSON_GetObjectItemCaseSensitive(jget(L, "init"), "seed"));
    cJSON *again = cJSON_Duplicate(L, 1);
    cJSON_AddItemToObject(again, "W",
                          cJSON_Parse("{\"shape\":[2,1,2,2],\"data\":[1,2,3,4,5,6,7,8]}"));
    cJSON_AddItemToObject(again, "b", cJSON_Parse("[0.5,-0.25]"));
    char *body = json_text(again);
    cJSON *L2;
    ttensor W2, b2;
    create_and_get(body, &L2, &W2, &b2);
    char why[256];
    assert_int_equal(tt_compare(&W2, &W, 0, why, sizeof why), 0);
    assert_int_equal(tt_compare(&b2, &b, 0, why, sizeof why), 0);
    assert_string_equal(scheme_of(L2), "given");
    free(body);
    cJSON_Delete(again);
    cJSON_Delete(L);
    cJSON_Delete(L2);
    tt_free(&W);
    tt_free(&b);
    tt_free(&W2);
    tt_free(&b2);
}

static void test_b_without_W(void **state)
{
    (void)state;
    cJSON *L;
    ttensor W, b;
    create_and_get("{\"in_channels\":1,\"out_channels\":2,\"kernel_size\":2,\"b\":[1.5,-2],"
                   "\"init\":{\"scheme\":\"normal\",\"seed\":3}}",
                   &L, &W, &b);
    expect_shape(&W, 4, 2, 1, 2, 2);
    assert_true(tt_max_abs(&W) > 0);
    assert_int_equal(b.n, 2);
    assert_true(b.data[0] == 1.5 && b.data[1] == -2);
    tt_free(&W);
    tt_free(&b);
    cJSON_Delete(L);
    create_and_get("{\"W\":[[[[1,2],[3,4]]]]}", &L, &W, &b);
    assert_true(W.n == 4 && W.data[0] == 1 && W.data[3] == 4);
    assert_true(b.n == 1 && b.data[0] == 0);
    tt_free(&W);
    tt_free(&b);
    cJSON_Delete(L);
}

static void test_init_random_seed_reported(void **state)
{
    (void)state;
    cJSON *L1, *L2, *L3;
    ttensor W1, W2, W3;
    const char *layer = "{\"in_channels\":1,\"out_channels\":4,\"kernel_size\":3}";
    create_and_get(layer, &L1, &W1, NULL);
    create_and_get(layer, &L2, &W2, NULL);
    assert_string_equal(scheme_of(L1), "kaiming_uniform");
    double s1 = seed_of(L1), s2 = seed_of(L2);
    assert_true(s1 >= 0 && s1 < 9007199254740992.0 && s1 == floor(s1));
    assert_true(s1 != s2);
    char *again = strf("{\"in_channels\":1,\"out_channels\":4,\"kernel_size\":3,"
                       "\"init\":{\"seed\":%.0f}}",
                       s1);
    create_and_get(again, &L3, &W3, NULL);
    assert_true(seed_of(L3) == s1);
    char why[256];
    if (tt_compare(&W3, &W1, 0, why, sizeof why) != 0)
        fail_msg("the reported seed does not reproduce the weights: %s", why);
    free(again);
    tt_free(&W1);
    tt_free(&W2);
    tt_free(&W3);
    cJSON_Delete(L1);
    cJSON_Delete(L2);
    cJSON_Delete(L3);
}

static void test_init_normal(void **state)
{
    (void)state;
    cJSON *L;
    ttensor W, b;
    create_and_get("{\"in_channels\":4,\"out_channels\":8,\"kernel_size\":3,"
                   "\"init\":{\"scheme\":\"normal\",\"seed\":7}}",
                   &L, &W, &b);
    assert_string_equal(scheme_of(L), "normal");
    assert_int_equal(seed_of(L), 7);
    assert_true(tt_max_abs(&b) == 0);
    double sum = 0, sq = 0;
    for (size_t i = 0; i < W.n; i++) {
        sum += W.data[i];
        sq += W.data[i] * W.data[i];
    }
    double mean = sum / W.n, sd = sqrt(sq / W.n - mean * mean);
    print_message("normal: mean %.3f sd %.3f over %zu\n", mean, sd, W.n);
    assert_true(fabs(mean) < 0.25);
    assert_true(sd > 0.75 && sd < 1.25);
    tt_free(&W);
    tt_free(&b);
    cJSON_Delete(L);
    /* The extreme seeds are accepted. */
    static const char *const seeds[] = {"0", "9007199254740991"};
    for (int i = 0; i < 2; i++) {
        char *layer = strf("{\"in_channels\":1,\"out_channels\":1,\"kernel_size\":1,"
                           "\"init\":{\"scheme\":\"normal\",\"seed\":%s}}",
                           seeds[i]);
        create_and_get(layer, &L, &W, NULL);
        assert_true(seed_of(L) == strtod(seeds[i], NULL));
        tt_free(&W);
        cJSON_Delete(L);
        free(layer);
    }
}

/* node is h (int) or [h, w] */
static void expect_pair(const cJSON *layer, const char *key, int h, int w)
{
    const cJSON *n = jget(layer, key);
    if (cJSON_IsNumber(n) && h == w && n->valuedouble == h)
        return;
    if (cJSON_IsArray(n) && cJSON_GetArraySize(n) == 2 &&
        cJSON_GetArrayItem(n, 0)->valuedouble == h && cJSON_GetArrayItem(n, 1)->valuedouble == w)
        return;
    char *t = json_text(layer);
    fail_msg("%s should be [%d,%d] in %s", key, h, w, t);
}

static void test_normalised_layer(void **state)
{
    (void)state;
    cJSON *L;
    ttensor W;
    create_and_get("{\"in_channels\":2,\"out_channels\":4,\"kernel_size\":3,\"stride\":2,"
                   "\"padding\":1,\"dilation\":2,\"groups\":2,\"bias\":false,"
                   "\"dtype\":\"float32\",\"init\":{\"scheme\":\"zeros\",\"seed\":5}}",
                   &L, &W, NULL);
    assert_int_equal(jnum(L, "in_channels"), 2);
    assert_int_equal(jnum(L, "out_channels"), 4);
    assert_int_equal(jnum(L, "groups"), 2);
    expect_pair(L, "kernel_size", 3, 3);
    expect_pair(L, "stride", 2, 2);
    expect_pair(L, "padding", 1, 1);
    expect_pair(L, "dilation", 2, 2);
    assert_true(cJSON_IsFalse(jget(L, "bias")));
    assert_string_equal(cJSON_GetStringValue(jget(L, "dtype")), "float32");
    assert_string_equal(scheme_of(L), "zeros");
    assert_int_equal(seed_of(L), 5);
    expect_shape(&W, 4, 4, 1, 3, 3);
    tt_free(&W);
    cJSON_Delete(L);
    create_and_get("{\"in_channels\":1,\"out_channels\":1,\"kernel_size\":[1,2],"
                   "\"stride\":[3,1],\"padding\":\"valid\",\"dilation\":[1,4]}",
                   &L, &W, NULL);
    expect_pair(L, "kernel_size", 1, 2);
    expect_pair(L, "stride", 3, 1);
    expect_pair(L, "dilation", 1, 4);
    const cJSON *p = jget(L, "padding");
    if (!(cJSON_IsString(p) && strcmp(p->valuestring, "valid") == 0))
        expect_pair(L, "padding", 0, 0);
    assert_true(cJSON_IsTrue(jget(L, "bias")));
    assert_string_equal(cJSON_GetStringValue(jget(L, "dtype")), "float64");
    tt_free(&W);
    cJSON_Delete(L);
}

/* Runs x through a layer with W given and compares y with the naive convolution. */
static void check_against_ref(const char *opts, const ref_conv *g, int64_t N, int64_t H, int64_t Wd,
                              int64_t OH, int64_t OW)
{
    int64_t ws[4] = {g->F, g->C / g->groups, g->kh, g->kw}, xs[4] = {N, g->C, H, Wd};
    int64_t ys[4] = {N, g->F, OH, OW};
    ttensor W, x, y;
    tt_make(&W, 4, ws, NULL);
    tt_make(&x, 4, xs, NULL);
    tt_make(&y, 4, ys, NULL);
    for (size_t i = 0; i < W.n; i++)
        W.data[i] = (double)((i * 7) % 11) - 5;
    for (size_t i = 0; i < x.n; i++)
        x.data[i] = (double)((i * 5) % 13) - 6;
    ref_conv_forward(g, x.data, N, H, Wd, W.data, NULL, OH, OW, y.data);
    char *Wj = tt_json(W.data, 4, ws, TT_FLAT, 64, 1), *xj = tt_json(x.data, 4, xs, TT_FLAT, 64, 1);
    char *body = strf("{\"layer\":{%s,\"W\":%s},\"x\":%s}", opts, Wj, xj);
    http_res r;
    req(dmn, "POST", "/forward", body, &r);
    expect_status(&r, 200);
    expect_tensor(jget(r.json, "y"), &y, TT_FLAT, 0, 0, opts);
    http_res_free(&r);
    free(body);
    free(Wj);
    free(xj);
    tt_free(&W);
    tt_free(&x);
    tt_free(&y);
}

static void test_padding_same_and_valid(void **state)
{
    (void)state;
    /* "same", kernel (4,3), dilation (1,2): total padding (3, 4); top 1 / bottom 2,
     * left 2 / right 2 (PyTorch puts the odd one at the bottom/right). */
    ref_conv g = {.C = 2,
                  .F = 3,
                  .groups = 1,
                  .kh = 4,
                  .kw = 3,
                  .sh = 1,
                  .sw = 1,
                  .dh = 1,
                  .dw = 2,
                  .pt = 1,
                  .pl = 2};
    check_against_ref("\"padding\":\"same\",\"dilation\":[1,2],\"bias\":false", &g, 2, 5, 6, 5, 6);
    ref_conv g2 = {.C = 1,
                   .F = 2,
                   .groups = 1,
                   .kh = 2,
                   .kw = 2,
                   .sh = 1,
                   .sw = 1,
                   .dh = 1,
                   .dw = 1,
                   .pt = 0,
                   .pl = 0};
    check_against_ref("\"padding\":\"same\",\"bias\":false", &g2, 1, 3, 4, 3, 4);
    check_against_ref("\"padding\":\"valid\",\"bias\":false", &g2, 1, 3, 4, 2, 3);
    /* Scalars mean [h, h]: stride 2, padding 1, dilation 2, groups 2. */
    ref_conv g3 = {.C = 4,
                   .F = 2,
                   .groups = 2,
                   .kh = 2,
                   .kw = 2,
                   .sh = 2,
                   .sw = 2,
                   .dh = 2,
                   .dw = 2,
                   .pt = 1,
                   .pl = 1};
    check_against_ref("\"stride\":2,\"padding\":1,\"dilation\":2,\"groups\":2,\"bias\":false", &g3,
                      1, 6, 7, 3, 4);
}

/* A rank-3 W (F, kh, kw) is accepted whenever C/groups == 1: depthwise, groups = C. */
static void test_rank3_W_depthwise(void **state)
{
    (void)state;
    ref_conv g = {
        .C = 2, .F = 4, .groups = 2, .kh = 2, .kw = 2, .sh = 1, .sw = 1, .dh = 1, .dw = 1};
    int64_t ws3[3] = {4, 2, 2}, xs[4] = {1, 2, 3, 3}, ys[4] = {1, 4, 2, 2};
    double wv[16], xv[18];
    for (int i = 0; i < 16; i++)
        wv[i] = i - 7;
    for (int i = 0; i < 18; i++)
        xv[i] = (i * 5) % 7;
    ttensor y;
    tt_make(&y, 4, ys, NULL);
    ref_conv_forward(&g, xv, 1, 3, 3, wv, NULL, 2, 2, y.data);
    char *Wj = tt_json(wv, 3, ws3, TT_NESTED, 64, 1), *xj = tt_json(xv, 4, xs, TT_NESTED, 64, 1);
    char *body = strf("{\"layer\":{\"in_channels\":2,\"groups\":2,\"bias\":false,\"W\":%s},"
                      "\"x\":%s}",
                      Wj, xj);
    http_res r;
    req(dmn, "POST", "/forward", body, &r);
    expect_status(&r, 200);
    expect_tensor(jget(r.json, "y"), &y, TT_NESTED, 0, 0, "depthwise y");
    char *path = strf("/sessions/%s", cJSON_GetStringValue(jget(r.json, "session")));
    http_res_free(&r);
    req(dmn, "GET", path, NULL, &r);
    expect_status(&r, 200);
    ttensor W;
    tensor_read(jget(r.json, "W"), &W, "W");
    assert_int_equal(W.rank, 3); /* returned as it was sent */
    tt_free(&W);
    http_res_free(&r);
    free(path);
    free(body);
    free(Wj);
    free(xj);
    tt_free(&y);
}

/* y for x through a 1x1 layer with weight w, printed as text. */
static char *y_text(const char *dtype, const char *w, const char *x)
{
    char *body =
        strf("{\"layer\":{\"W\":[[[[%s]]]],\"bias\":false,\"dtype\":\"%s\"},\"x\":[[[[%s]]]]}", w,
             dtype, x);
    http_res r;
    req(dmn, "POST", "/forward", body, &r);
    expect_status(&r, 200);
    /* The answer's own text: cJSON would reprint numbers with 15 digits. */
    char *t = raw_member(r.body, "y");
    assert_non_null(t);
    http_res_free(&r);
    free(body);
    return t;
}

static void test_number_printing(void **state)
{
    (void)state;
    static const struct {
        const char *dtype, *w, *x, *y;
    } exact[] = {
        {"float32", "1", "0.1", "[[[[0.1]]]]"},
        {"float32", "3", "0.1", "[[[[0.3]]]]"},
        {"float32", "1", "0.3333333333333333", "[[[[0.33333334]]]]"},
        {"float64", "3", "0.1", "[[[[0.30000000000000004]]]]"},
        {"float64", "1", "0.1", "[[[[0.1]]]]"},
        {"float64", "-4", "1", "[[[[-4]]]]"},
        {"float64", "1", "123456", "[[[[123456]]]]"},
        {"float32", "1", "-4", "[[[[-4]]]]"},
    };
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++) {
        char *t = y_text(exact[i].dtype, exact[i].w, exact[i].x);
        print_message("%s %s*%s -> %s\n", exact[i].dtype, exact[i].w, exact[i].x, t);
        assert_string_equal(t, exact[i].y);
        free(t);
    }
    /* Round trip: whatever the text, it parses back to the identical value. */
    static const double f64[] = {1e-300,    5e-324,  1.2345678901234567e300, 2.5e-8,
                                 0.1 + 0.2, 1.0 / 3, 9007199254740993.0,     -7.25e17};
    for (size_t i = 0; i < sizeof f64 / sizeof f64[0]; i++) {
        char x[40];
        snprintf(x, sizeof x, "%.17g", f64[i]);
        char *t = y_text("float64", "1", x);
        cJSON *j = cJSON_Parse(t);
        double v = cJSON_GetArrayItem(
                       cJSON_GetArrayItem(cJSON_GetArrayItem(cJSON_GetArrayItem(j, 0), 0), 0), 0)
                       ->valuedouble;
        if (v != f64[i] || strlen(t) > 8 + 24)
            fail_msg("float64 %.17g printed as %s", f64[i], t);
        cJSON_Delete(j);
        free(t);
    }
    static const float f32[] = {1e-45f, 3.4028235e38f, 16777217.0f, 0.2f, 1.0f / 3, 6.1e-5f};
    for (size_t i = 0; i < sizeof f32 / sizeof f32[0]; i++) {
        char x[40];
        snprintf(x, sizeof x, "%.9g", (double)f32[i]);
        char *t = y_text("float32", "1", x);
        double v = strtod(t + 4, NULL);
        if ((float)v != f32[i] || strlen(t) > 8 + 15)
            fail_msg("float32 %.9g printed as %s (not shortest, or not the value)", (double)f32[i],
                     t);
        free(t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_zeros),
        cmocka_unit_test(test_init_kaiming_seeded),
        cmocka_unit_test(test_init_random_seed_reported),
        cmocka_unit_test(test_b_without_W),
        cmocka_unit_test(test_W_given_round_trips),
        cmocka_unit_test(test_init_normal),
        cmocka_unit_test(test_normalised_layer),
        cmocka_unit_test(test_padding_same_and_valid),
        cmocka_unit_test(test_rank3_W_depthwise),
        cmocka_unit_test(test_number_printing),
        cmocka_unit_test(itest_daemon_exits_cleanly),
    };
    return ITEST_SHARED_MAIN(tests, NULL, NULL, NULL);
}
