/*
 * test_im2col.c — im2col against a direct gather (padding, stride, dilation, asymmetric
 * "same" padding, a row stride wider than one image), that it writes only its own block,
 * and that col2im is its adjoint: <im2col(x), c> == <x, col2im(c)>, zeroing garbage first.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/cvd_internal.h"
#include "ref_conv.h"

/* im2col / col2im of a whole image and group: the core's band forms over every channel
 * and row (the core itself only runs bands). */
static void cvd_im2col_f64(const cvd_geom *g, const double *x_g, double *col, int64_t ldc)
{
    cvd_im2col_band_f64(g, x_g, col, ldc, 0, g->Cg, 0, g->OH);
}

static void cvd_im2col_f32(const cvd_geom *g, const float *x_g, float *col, int64_t ldc)
{
    cvd_im2col_band_f32(g, x_g, col, ldc, 0, g->Cg, 0, g->OH);
}

static void cvd_col2im_f64(const cvd_geom *g, const double *col, int64_t ldc, double *x_g)
{
    cvd_col2im_band_f64(g, col, ldc, x_g, 0, g->Cg, 0, g->H);
}

static void cvd_col2im_f32(const cvd_geom *g, const float *col, int64_t ldc, float *x_g)
{
    cvd_col2im_band_f32(g, col, ldc, x_g, 0, g->Cg, 0, g->H);
}

static int random_geom(ref_rng *r, cvd_geom *g, cvd_conv2d_params *p)
{
    *p = (cvd_conv2d_params){.dtype = CVD_F64, .groups = 1, .out_channels = 1};
    p->in_channels = ref_int(r, 1, 3);
    p->kh = ref_int(r, 1, 4);
    p->kw = ref_int(r, 1, 4);
    p->dh = ref_int(r, 1, 3);
    p->dw = ref_int(r, 1, 3);
    if (ref_int(r, 0, 3) == 0) {
        p->pad_mode = CVD_PAD_SAME;
        p->sh = p->sw = 1;
    } else {
        p->pad_mode = CVD_PAD_EXPLICIT;
        p->ph = ref_int(r, 0, 3);
        p->pw = ref_int(r, 0, 3);
        p->sh = ref_int(r, 1, 3);
        p->sw = ref_int(r, 1, 3);
    }
    const int64_t xs[4] = {1, p->in_channels, ref_int(r, 1, 12), ref_int(r, 1, 12)};
    cvd_err e;
    return cvd_geom_init(g, p, xs, "x", &e) == CVD_OK;
}

static void test_im2col_gather(void **state)
{
    (void)state;
    ref_rng r = {0x1a2b3c};
    int checked = 0;
    for (int it = 0; it < 300; it++) {
        cvd_geom g;
        cvd_conv2d_params p;
        if (!random_geom(&r, &g, &p))
            continue;
        const int64_t ldc = g.P + ref_int(&r, 0, 5);
        double *x = malloc((size_t)(g.Cg * g.HW) * sizeof *x);
        double *col = malloc((size_t)(g.K * ldc) * sizeof *col);
        float *xf = malloc((size_t)(g.Cg * g.HW) * sizeof *xf);
        float *colf = malloc((size_t)(g.K * ldc) * sizeof *colf);
        ref_fill(&r, x, g.Cg * g.HW);
        for (int64_t i = 0; i < g.Cg * g.HW; i++)
            xf[i] = (float)x[i];
        for (int64_t i = 0; i < g.K * ldc; i++) {
            col[i] = 1234.5;
            colf[i] = 1234.5f;
        }
        cvd_im2col_f64(&g, x, col, ldc);
        cvd_im2col_f32(&g, xf, colf, ldc);
        for (int64_t c = 0; c < g.Cg; c++)
            for (int64_t i = 0; i < g.kh; i++)
                for (int64_t j = 0; j < g.kw; j++)
                    for (int64_t oh = 0; oh < g.OH; oh++)
                        for (int64_t ow = 0; ow < g.OW; ow++) {
                            int64_t ih = oh * g.sh - g.pt + i * g.dh;
                            int64_t iw = ow * g.sw - g.pl + j * g.dw;
                            int inside = ih >= 0 && ih < g.H && iw >= 0 && iw < g.W;
                            double want = inside ? x[(c * g.H + ih) * g.W + iw] : 0.0;
                            int64_t at = ((c * g.kh + i) * g.kw + j) * ldc + oh * g.OW + ow;
                            assert_true(col[at] == want);
                            assert_true(colf[at] == (float)want);
                        }
        for (int64_t k = 0; k < g.K; k++) /* columns past P belong to other images */
            for (int64_t q = g.P; q < ldc; q++) {
                assert_true(col[k * ldc + q] == 1234.5);
                assert_true(colf[k * ldc + q] == 1234.5f);
            }
        free(x), free(col), free(xf), free(colf);
        checked++;
    }
    assert_true(checked >= 150);
}

static void test_col2im_adjoint(void **state)
{
    (void)state;
    ref_rng r = {0xad101};
    int checked = 0;
    for (int it = 0; it < 300; it++) {
        cvd_geom g;
        cvd_conv2d_params p;
        if (!random_geom(&r, &g, &p))
            continue;
        const int64_t ldc = g.P + ref_int(&r, 0, 3), xn = g.Cg * g.HW;
        double *x = malloc((size_t)xn * sizeof *x), *back = malloc((size_t)xn * sizeof *back);
        double *col = malloc((size_t)(g.K * ldc) * sizeof *col);
        double *c = malloc((size_t)(g.K * ldc) * sizeof *c);
        float *cf = malloc((size_t)(g.K * ldc) * sizeof *cf), *backf = malloc((size_t)xn * 4);
        ref_fill(&r, x, xn);
        ref_fill(&r, c, g.K * ldc);
        for (int64_t i = 0; i < g.K * ldc; i++)
            cf[i] = (float)c[i];
        for (int64_t i = 0; i < xn; i++) { /* garbage col2im must overwrite, not add to */
            back[i] = NAN;
            backf[i] = NAN;
        }
        cvd_im2col_f64(&g, x, col, ldc);
        cvd_col2im_f64(&g, c, ldc, back);
        cvd_col2im_f32(&g, cf, ldc, backf);
        double lhs = 0, rhs = 0, scale = 0;
        for (int64_t k = 0; k < g.K; k++)
            for (int64_t q = 0; q < g.P; q++) {
                lhs += col[k * ldc + q] * c[k * ldc + q];
                scale += fabs(col[k * ldc + q] * c[k * ldc + q]);
            }
        for (int64_t i = 0; i < xn; i++) {
            rhs += x[i] * back[i];
            assert_true(fabs(backf[i] - back[i]) <= 1e-5 * (1 + fabs(back[i])));
        }
        assert_true(fabs(lhs - rhs) <= 1e-12 * (1 + scale));
        free(x), free(back), free(col), free(c), free(cf), free(backf);
        checked++;
    }
    assert_true(checked >= 150);
}

/* Row bands or channel blocks (as threads use them) put together give exactly the
 * whole-image result. */
static void test_bands_compose(void **state)
{
    (void)state;
    ref_rng r = {0xb0b};
    int checked = 0;
    for (int it = 0; it < 200; it++) {
        cvd_geom g;
        cvd_conv2d_params p;
        if (!random_geom(&r, &g, &p))
            continue;
        const int64_t xn = g.Cg * g.HW, cn = g.K * g.P;
        double *x = malloc((size_t)xn * sizeof *x), *c = malloc((size_t)cn * sizeof *c);
        double *col1 = malloc((size_t)cn * sizeof *c), *col2 = malloc((size_t)cn * sizeof *c);
        double *x1 = malloc((size_t)xn * sizeof *x), *x2 = malloc((size_t)xn * sizeof *x);
        ref_fill(&r, x, xn);
        ref_fill(&r, c, cn);
        cvd_im2col_f64(&g, x, col1, g.P);
        cvd_col2im_f64(&g, c, g.P, x1);
        /* Row bands, then channel blocks (as the threads of cols_run use them). */
        const int parts = (int)ref_int(&r, 2, 5);
        for (int k = 0; k < parts; k++) {
            cvd_im2col_band_f64(&g, x, col2, g.P, 0, g.Cg, g.OH * k / parts,
                                g.OH * (k + 1) / parts);
            cvd_col2im_band_f64(&g, c, g.P, x2, 0, g.Cg, g.H * k / parts, g.H * (k + 1) / parts);
        }
        assert_memory_equal(col1, col2, (size_t)cn * sizeof *c);
        assert_memory_equal(x1, x2, (size_t)xn * sizeof *x);
        memset(col2, 0, (size_t)cn * sizeof *c);
        for (int k = 0; k < parts; k++) {
            int64_t c0 = g.Cg * k / parts, c1 = g.Cg * (k + 1) / parts;
            cvd_im2col_band_f64(&g, x, col2, g.P, c0, c1, 0, g.OH);
            cvd_col2im_band_f64(&g, c, g.P, x2, c0, c1, 0, g.H);
        }
        assert_memory_equal(col1, col2, (size_t)cn * sizeof *c);
        assert_memory_equal(x1, x2, (size_t)xn * sizeof *x);
        free(x), free(c), free(col1), free(col2), free(x1), free(x2);
        checked++;
    }
    assert_true(checked >= 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_im2col_gather),
        cmocka_unit_test(test_col2im_adjoint),
        cmocka_unit_test(test_bands_compose),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
