/*
 * test_reference.c — the core against known answers: the notebook case (exact y, dx, dW,
 * db with W sent rank 3 and no b), and the 40 PyTorch reference cases in float64
 * (max|err| <= 1e-9*(1+max|expected|)) and float32 (inputs cast; <= 1e-4 relative).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "tutil.h"

static void test_notebook(void **state)
{
    (void)state;
    cJSON *root = fx_load("notebook.json");
    assert_non_null(root);
    fx_tensor x, W, delta, ey, edx, edW, edb;
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(root, "expected");
    assert_int_equal(fx_tensor_read(cJSON_GetObjectItemCaseSensitive(root, "x"), &x), 0);
    assert_int_equal(fx_tensor_read(cJSON_GetObjectItemCaseSensitive(root, "W"), &W), 0);
    assert_int_equal(fx_tensor_read(cJSON_GetObjectItemCaseSensitive(root, "delta"), &delta), 0);
    assert_int_equal(fx_tensor_read(cJSON_GetObjectItemCaseSensitive(exp, "y"), &ey), 0);
    assert_int_equal(fx_tensor_read(cJSON_GetObjectItemCaseSensitive(exp, "dx"), &edx), 0);
    assert_int_equal(fx_tensor_read(cJSON_GetObjectItemCaseSensitive(exp, "dW"), &edW), 0);
    assert_int_equal(fx_tensor_read(cJSON_GetObjectItemCaseSensitive(exp, "db"), &edb), 0);
    assert_int_equal(W.rank, 3); /* the notebook sends W as (F, kh, kw) */
    assert_int_equal(delta.rank, 3);

    for (int d = 0; d < 2; d++) {
        cvd_dtype dt = d ? CVD_F32 : CVD_F64;
        cvd_conv2d_params p = {.in_channels = 1,
                               .out_channels = W.shape[0],
                               .groups = 1,
                               .kh = W.shape[1],
                               .kw = W.shape[2],
                               .sh = 1,
                               .sw = 1,
                               .dh = 1,
                               .dw = 1,
                               .pad_mode = CVD_PAD_EXPLICIT,
                               .bias = 1,
                               .dtype = dt};
        cvd_conv2d *l = NULL;
        cvd_err e;
        assert_int_equal(cvd_conv2d_create(&p, &l, &e), CVD_OK);
        cvd_tensor tW = tu_tensor(dt, 3, W.shape, W.data);
        assert_int_equal(cvd_conv2d_set_weights(l, &tW, NULL, &e), CVD_OK);
        cvd_tensor tx = tu_tensor(dt, 4, x.shape, x.data);
        int64_t ys[4];
        assert_int_equal(cvd_conv2d_output_shape(&p, x.shape, ys, &e), CVD_OK);
        assert_memory_equal(ys, ey.shape, sizeof ys);
        cvd_tensor ty = tu_tensor(dt, 4, ys, NULL);
        assert_int_equal(cvd_conv2d_forward(l, &tx, &ty, 0, &e), CVD_OK);
        double got[64];
        tu_to_double(&ty, got);
        for (int64_t i = 0; i < ey.numel; i++)
            assert_true(got[i] == ey.data[i]);

        const int64_t ds[4] = {1, delta.shape[0], delta.shape[1], delta.shape[2]};
        cvd_tensor tdelta = tu_tensor(dt, 4, ds, delta.data);
        cvd_tensor tdx = tu_tensor(dt, 4, x.shape, NULL);
        cvd_tensor tdW = tu_tensor(dt, 3, W.shape, NULL); /* dW comes back shaped like W */
        const int64_t bs[1] = {W.shape[0]};
        cvd_tensor tdb = tu_tensor(dt, 1, bs, NULL);
        cvd_backward_opts o = {.need = CVD_NEED_ALL};
        assert_int_equal(cvd_conv2d_backward(l, NULL, &tdelta, &o, &tdx, &tdW, &tdb, &e), CVD_OK);
        tu_to_double(&tdx, got);
        for (int64_t i = 0; i < edx.numel; i++)
            assert_true(got[i] == edx.data[i]);
        tu_to_double(&tdW, got);
        for (int64_t i = 0; i < edW.numel; i++)
            assert_true(got[i] == edW.data[i]);
        tu_to_double(&tdb, got);
        for (int64_t i = 0; i < edb.numel; i++)
            assert_true(got[i] == edb.data[i]);
        cvd_tensor *all[] = {&tW, &tx, &ty, &tdelta, &tdx, &tdW, &tdb};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            cvd_tensor_release(all[i]);
        cvd_conv2d_free(l);
    }
    fx_tensor *fx[] = {&x, &W, &delta, &ey, &edx, &edW, &edb};
    for (size_t i = 0; i < sizeof fx / sizeof fx[0]; i++)
        fx_tensor_free(fx[i]);
    cJSON_Delete(root);
}

/* An int or an [h, w] pair from a layer field. */
static void pair(const cJSON *layer, const char *name, int64_t *h, int64_t *w)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(layer, name);
    assert_non_null(v);
    if (cJSON_IsNumber(v)) {
        *h = *w = (int64_t)v->valuedouble;
        return;
    }
    assert_true(cJSON_IsArray(v) && cJSON_GetArraySize(v) == 2);
    *h = (int64_t)cJSON_GetArrayItem(v, 0)->valuedouble;
    *w = (int64_t)cJSON_GetArrayItem(v, 1)->valuedouble;
}

static void check_close(const char *what, const char *name, const double *got,
                        const fx_tensor *want, double rel)
{
    double err = 0, mx = 0;
    for (int64_t i = 0; i < want->numel; i++) {
        double d = got[i] - want->data[i];
        d = d < 0 ? -d : d;
        if (d != d || d > err)
            err = d != d ? 1e300 : d;
        double a = want->data[i] < 0 ? -want->data[i] : want->data[i];
        if (a > mx)
            mx = a;
    }
    if (!(err <= rel * (1 + mx))) {
        fprintf(stderr, "%s %s: max|err| %g > %g\n", name, what, err, rel * (1 + mx));
        fail();
    }
}

/* Runs one reference case in dtype dt; returns nothing, fails the test on a mismatch. */
static void run_case(const cJSON *c, cvd_dtype dt, double rel)
{
    const char *name = cJSON_GetObjectItemCaseSensitive(c, "name")->valuestring;
    const cJSON *L = cJSON_GetObjectItemCaseSensitive(c, "layer");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(c, "expected");
    cvd_conv2d_params p = {.dtype = dt, .pad_mode = CVD_PAD_EXPLICIT};
    p.in_channels = (int64_t)cJSON_GetObjectItemCaseSensitive(L, "in_channels")->valuedouble;
    p.out_channels = (int64_t)cJSON_GetObjectItemCaseSensitive(L, "out_channels")->valuedouble;
    p.groups = (int64_t)cJSON_GetObjectItemCaseSensitive(L, "groups")->valuedouble;
    p.bias = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(L, "bias"));
    pair(L, "kernel_size", &p.kh, &p.kw);
    pair(L, "stride", &p.sh, &p.sw);
    pair(L, "dilation", &p.dh, &p.dw);
    pair(L, "padding", &p.ph, &p.pw);

    fx_tensor W, b = {0}, x, delta, ey, edx, edW, edb = {0};
    assert_int_equal(fx_tensor_read(cJSON_GetObjectItemCaseSensitive(L, "W"), &W), 0);
    if (p.bias) {
        assert_int_equal(fx_tensor_read(cJSON_GetObjectItemCaseSensitive(L, "b"), &b), 0);
        assert_int_equal(fx_tensor_read(cJSON_GetObjectItemCaseSensitive(exp, "db"), &edb), 0);
    }
    assert_int_equal(fx_tensor_read(cJSON_GetObjectItemCaseSensitive(c, "x"), &x), 0);
    assert_int_equal(fx_tensor_read(cJSON_GetObjectItemCaseSensitive(c, "delta"), &delta), 0);
    assert_int_equal(fx_tensor_read(cJSON_GetObjectItemCaseSensitive(exp, "y"), &ey), 0);
    assert_int_equal(fx_tensor_read(cJSON_GetObjectItemCaseSensitive(exp, "dx"), &edx), 0);
    assert_int_equal(fx_tensor_read(cJSON_GetObjectItemCaseSensitive(exp, "dW"), &edW), 0);

    cvd_conv2d *l = NULL;
    cvd_err e;
    assert_int_equal(cvd_conv2d_create(&p, &l, &e), CVD_OK);
    cvd_tensor tW = tu_tensor(dt, W.rank, W.shape, W.data);
    cvd_tensor tb = p.bias ? tu_tensor(dt, b.rank, b.shape, b.data) : (cvd_tensor){0};
    assert_int_equal(cvd_conv2d_set_weights(l, &tW, p.bias ? &tb : NULL, &e), CVD_OK);
    cvd_tensor tx = tu_tensor(dt, 4, x.shape, x.data);
    cvd_tensor ty = tu_tensor(dt, 4, ey.shape, NULL);
    if (cvd_conv2d_forward(l, &tx, &ty, 0, &e) != CVD_OK) {
        fprintf(stderr, "%s: forward failed: %s\n", name, e.msg);
        fail();
    }
    double *got = malloc((size_t)(x.numel + ey.numel + W.numel) * sizeof *got);
    tu_to_double(&ty, got);
    check_close("y", name, got, &ey, rel);

    cvd_tensor tdelta = tu_tensor(dt, 4, delta.shape, delta.data);
    cvd_tensor tdx = tu_tensor(dt, 4, x.shape, NULL);
    cvd_tensor tdW = tu_tensor(dt, W.rank, W.shape, NULL);
    const int64_t bs[1] = {p.out_channels};
    cvd_tensor tdb = p.bias ? tu_tensor(dt, 1, bs, NULL) : (cvd_tensor){0};
    cvd_backward_opts o = {.need = CVD_NEED_DX | CVD_NEED_DW | (p.bias ? CVD_NEED_DB : 0)};
    assert_int_equal(
        cvd_conv2d_backward(l, NULL, &tdelta, &o, &tdx, &tdW, p.bias ? &tdb : NULL, &e), CVD_OK);
    tu_to_double(&tdx, got);
    check_close("dx", name, got, &edx, rel);
    tu_to_double(&tdW, got);
    check_close("dW", name, got, &edW, rel);
    if (p.bias) {
        tu_to_double(&tdb, got);
        check_close("db", name, got, &edb, rel);
    }
    free(got);
    cvd_tensor *all[] = {&tW, &tb, &tx, &ty, &tdelta, &tdx, &tdW, &tdb};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        cvd_tensor_release(all[i]);
    fx_tensor *fx[] = {&W, &b, &x, &delta, &ey, &edx, &edW, &edb};
    for (size_t i = 0; i < sizeof fx / sizeof fx[0]; i++)
        fx_tensor_free(fx[i]);
    cvd_conv2d_free(l);
}

static void run_all(cvd_dtype dt, double rel)
{
    cJSON *root = fx_load("reference_cases.json");
    assert_non_null(root);
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(root, "cases");
    assert_int_equal(cJSON_GetArraySize(cases), 40);
    int n = 0;
    for (const cJSON *c = cases->child; c; c = c->next, n++)
        run_case(c, dt, rel);
    assert_int_equal(n, 40);
    cJSON_Delete(root);
}

static void test_reference_f64(void **state)
{
    (void)state;
    run_all(CVD_F64, 1e-9);
}

static void test_reference_f32(void **state)
{
    (void)state;
    run_all(CVD_F32, 1e-4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_notebook),
        cmocka_unit_test(test_reference_f64),
        cmocka_unit_test(test_reference_f32),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
