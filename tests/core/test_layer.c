/*
 * test_layer.c — layer state: deterministic init (splitmix64 known answer, kaiming bounds,
 * normal moments, float32 = rounded float64), the SGD step and its refusal on non-finite
 * results, non-finite forward/gradients, the input cache, memory_need, and threads.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/cvd_internal.h"
#include "ref_conv.h"
#include "tutil.h"

static cvd_conv2d *make(int64_t C, int64_t F, int64_t k, int64_t groups, int bias, cvd_dtype dt)
{
    cvd_conv2d_params p = {.in_channels = C,
                           .out_channels = F,
                           .groups = groups,
                           .kh = k,
                           .kw = k,
                           .sh = 1,
                           .sw = 1,
                           .dh = 1,
                           .dw = 1,
                           .pad_mode = CVD_PAD_EXPLICIT,
                           .ph = 1,
                           .pw = 1,
                           .bias = bias,
                           .dtype = dt};
    cvd_conv2d *l = NULL;
    cvd_err e;
    assert_int_equal(cvd_conv2d_create(&p, &l, &e), CVD_OK);
    return l;
}

static void test_rng_known_answer(void **state)
{
    (void)state;
    /* splitmix64's published first outputs for seed 0 (and the 53-bit uniform of it). */
    cvd_rng r;
    cvd_rng_seed(&r, 0);
    assert_true(cvd_rng_next(&r) == 0xe220a8397b1dcdafull);
    assert_true(cvd_rng_next(&r) == 0x6e789e6aa1b965f4ull);
    cvd_rng_seed(&r, 0);
    assert_true(cvd_rng_uniform(&r) == (double)(0xe220a8397b1dcdafull >> 11) * 0x1.0p-53);
    cvd_rng_seed(&r, 42);
    double z0, z1;
    for (int i = 0; i < 1000; i++) {
        double u = cvd_rng_uniform(&r);
        assert_true(u >= 0 && u < 1);
        cvd_rng_normal2(&r, &z0, &z1);
        assert_true(isfinite(z0) && isfinite(z1));
    }
}

static void test_init_kaiming(void **state)
{
    (void)state;
    cvd_err e;
    /* fan_in = C/g*kh*kw = 4/2*3*3 = 18 */
    cvd_conv2d *a = make(4, 6, 3, 2, 1, CVD_F64), *b = make(4, 6, 3, 2, 1, CVD_F64);
    cvd_conv2d *c = make(4, 6, 3, 2, 1, CVD_F32);
    assert_int_equal(cvd_conv2d_init(a, CVD_INIT_KAIMING_UNIFORM, 1234, &e), CVD_OK);
    assert_int_equal(cvd_conv2d_init(b, CVD_INIT_KAIMING_UNIFORM, 1234, &e), CVD_OK);
    assert_int_equal(cvd_conv2d_init(c, CVD_INIT_KAIMING_UNIFORM, 1234, &e), CVD_OK);
    const int64_t wn = 6 * 2 * 3 * 3;
    const double *wa = cvd_conv2d_weight(a)->data, *ba = cvd_conv2d_bias(a)->data;
    const float *wc = cvd_conv2d_weight(c)->data, *bc = cvd_conv2d_bias(c)->data;
    assert_memory_equal(wa, cvd_conv2d_weight(b)->data, (size_t)wn * sizeof(double));
    assert_memory_equal(ba, cvd_conv2d_bias(b)->data, 6 * sizeof(double));
    /* The documented order: W in C order, then b, from one stream. */
    const double bound = 1.0 / sqrt(18.0);
    cvd_rng r;
    cvd_rng_seed(&r, 1234);
    for (int64_t i = 0; i < wn; i++) {
        double want = -bound + 2 * bound * cvd_rng_uniform(&r);
        assert_true(wa[i] == want);
        assert_true(wc[i] == (float)want);
        assert_true(fabs(wa[i]) <= bound);
    }
    for (int i = 0; i < 6; i++) {
        double want = -bound + 2 * bound * cvd_rng_uniform(&r);
        assert_true(ba[i] == want && bc[i] == (float)want);
    }
    /* A different seed gives different weights. */
    assert_int_equal(cvd_conv2d_init(b, CVD_INIT_KAIMING_UNIFORM, 1235, &e), CVD_OK);
    assert_memory_not_equal(wa, cvd_conv2d_weight(b)->data, (size_t)wn * sizeof(double));
    cvd_conv2d_free(a), cvd_conv2d_free(b), cvd_conv2d_free(c);

    /* Over many draws the values fill (-bound, bound) with mean ~0 and var bound^2/3. */
    cvd_conv2d *big = make(64, 64, 3, 1, 1, CVD_F64);
    assert_int_equal(cvd_conv2d_init(big, CVD_INIT_KAIMING_UNIFORM, 99, &e), CVD_OK);
    const double *w = cvd_conv2d_weight(big)->data;
    const int64_t n = 64 * 64 * 9;
    const double bd = 1.0 / sqrt(64 * 9.0);
    double mx = 0, mean = 0, var = 0;
    for (int64_t i = 0; i < n; i++) {
        assert_true(w[i] >= -bd && w[i] < bd);
        mx = fmax(mx, fabs(w[i]));
        mean += w[i];
    }
    mean /= (double)n;
    for (int64_t i = 0; i < n; i++)
        var += (w[i] - mean) * (w[i] - mean);
    var /= (double)n;
    assert_true(mx > 0.999 * bd);
    assert_true(fabs(mean) < 0.02 * bd);
    assert_true(fabs(var / (bd * bd / 3) - 1) < 0.03);
    cvd_conv2d_free(big);
}

static void test_init_normal_zeros(void **state)
{
    (void)state;
    cvd_err e;
    cvd_conv2d *l = make(32, 64, 5, 1, 1, CVD_F64); /* 51200 weights (even) */
    cvd_conv2d *odd = make(1, 1, 3, 1, 1, CVD_F32); /* 9 weights (odd) */
    assert_int_equal(cvd_conv2d_init(l, CVD_INIT_NORMAL, 7, &e), CVD_OK);
    const double *w = cvd_conv2d_weight(l)->data, *b = cvd_conv2d_bias(l)->data;
    const int64_t n = 64 * 32 * 25;
    double mean = 0, var = 0;
    for (int64_t i = 0; i < n; i++)
        mean += w[i];
    mean /= (double)n;
    for (int64_t i = 0; i < n; i++)
        var += (w[i] - mean) * (w[i] - mean);
    var /= (double)n;
    assert_true(fabs(mean) < 0.02);
    assert_true(fabs(var - 1) < 0.03);
    for (int i = 0; i < 64; i++)
        assert_true(b[i] == 0);
    /* Box-Muller pairs: cos then sin; an odd tail uses the cos draw. */
    assert_int_equal(cvd_conv2d_init(odd, CVD_INIT_NORMAL, 7, &e), CVD_OK);
    cvd_rng r;
    cvd_rng_seed(&r, 7);
    const float *wo = cvd_conv2d_weight(odd)->data;
    for (int i = 0; i < 9; i += 2) {
        double z0, z1;
        cvd_rng_normal2(&r, &z0, &z1);
        assert_true(wo[i] == (float)z0 && (i + 1 >= 9 || wo[i + 1] == (float)z1));
        assert_true(w[i] == z0 && w[i + 1] == z1); /* the same seed and order in float64 */
    }
    assert_int_equal(cvd_conv2d_init(l, CVD_INIT_ZEROS, 7, &e), CVD_OK);
    for (int64_t i = 0; i < n; i++)
        assert_true(w[i] == 0);
    /* An unknown scheme changes nothing. */
    assert_int_equal(cvd_conv2d_init(odd, CVD_INIT_KAIMING_UNIFORM, 5, &e), CVD_OK);
    float keep[9];
    memcpy(keep, wo, sizeof keep);
    assert_int_equal(cvd_conv2d_init(odd, (cvd_init_scheme)9, 5, &e), CVD_ERR_INVALID);
    assert_non_null(strstr(e.msg, "scheme"));
    assert_memory_equal(keep, wo, sizeof keep);
    cvd_conv2d_free(l), cvd_conv2d_free(odd);
}

static void test_sgd_step(void **state)
{
    (void)state;
    for (int d = 0; d < 2; d++) {
        const cvd_dtype dt = d ? CVD_F32 : CVD_F64;
        cvd_err e;
        cvd_conv2d *l = make(2, 3, 3, 1, 1, dt);
        assert_int_equal(cvd_conv2d_init(l, CVD_INIT_KAIMING_UNIFORM, 5, &e), CVD_OK);
        const int64_t xs[4] = {2, 2, 4, 5}, ys[4] = {2, 3, 4, 5}, bs[1] = {3};
        ref_rng r = {77};
        double xv[80], dv[120], W0[54], b0[3], gW[54], gb[3], W1[54], b1[3];
        ref_fill(&r, xv, 80);
        ref_fill(&r, dv, 120);
        cvd_tensor x = tu_tensor(dt, 4, xs, xv), y = tu_tensor(dt, 4, ys, NULL);
        cvd_tensor delta = tu_tensor(dt, 4, ys, dv), dx = tu_tensor(dt, 4, xs, NULL);
        cvd_tensor dW = tu_tensor(dt, 4, cvd_conv2d_weight(l)->shape, NULL);
        cvd_tensor db = tu_tensor(dt, 1, bs, NULL);
        assert_int_equal(cvd_conv2d_forward(l, &x, &y, 0, &e), CVD_OK);
        tu_to_double(cvd_conv2d_weight(l), W0);
        tu_to_double(cvd_conv2d_bias(l), b0);
        cvd_backward_opts o = {.need = CVD_NEED_ALL};
        assert_int_equal(cvd_conv2d_backward(l, NULL, &delta, &o, &dx, &dW, &db, &e), CVD_OK);
        tu_to_double(&dW, gW);
        tu_to_double(&db, gb);
        /* Only dx asked for, yet the step updates both W and b (from internal scratch). */
        const double lr = 0.125;
        o = (cvd_backward_opts){.need = CVD_NEED_DX, .sgd = 1, .lr = lr};
        assert_int_equal(cvd_conv2d_backward(l, NULL, &delta, &o, &dx, NULL, NULL, &e), CVD_OK);
        tu_to_double(cvd_conv2d_weight(l), W1);
        tu_to_double(cvd_conv2d_bias(l), b1);
        const double tol = d ? 1e-6 : 1e-14;
        for (int i = 0; i < 54; i++)
            assert_true(fabs(W1[i] - (W0[i] - lr * gW[i])) <= tol);
        for (int i = 0; i < 3; i++)
            assert_true(fabs(b1[i] - (b0[i] - lr * gb[i])) <= tol);
        /* dx was computed with the weights before the step. */
        double dx_after[80], dx_ref[80], Wd[54];
        tu_to_double(&dx, dx_after);
        ref_geom g;
        cvd_conv2d_params p = *cvd_conv2d_get_params(l);
        assert_true(ref_geom_make(&g, &p, xs));
        memcpy(Wd, W0, sizeof Wd);
        double xr[80], dr[120];
        tu_to_double(&x, xr);
        tu_to_double(&delta, dr);
        ref_backward(&g, xr, Wd, dr, dx_ref, NULL, NULL);
        assert_true(ref_max_abs_diff(dx_after, dx_ref, 80) <= (d ? 1e-4 : 1e-12));
        /* With the gradients requested, they come back and the step uses them. */
        o = (cvd_backward_opts){.need = CVD_NEED_DW | CVD_NEED_DB, .sgd = 1, .lr = 0};
        assert_int_equal(cvd_conv2d_backward(l, NULL, &delta, &o, NULL, &dW, &db, &e), CVD_OK);
        tu_to_double(cvd_conv2d_weight(l), W0);
        assert_memory_equal(W0, W1, sizeof W0); /* lr 0: no change */

        /* A step that overflows is refused, and W and b stay as they were. */
        o = (cvd_backward_opts){.need = CVD_NEED_DW, .sgd = 1, .lr = d ? 1e38 : 1e308};
        double big[120];
        for (int i = 0; i < 120; i++)
            big[i] = 100.0;
        cvd_tensor bigd = tu_tensor(dt, 4, ys, big);
        assert_int_equal(cvd_conv2d_backward(l, NULL, &bigd, &o, NULL, &dW, NULL, &e),
                         CVD_ERR_NONFINITE);
        assert_non_null(strstr(e.msg, "unchanged"));
        tu_to_double(cvd_conv2d_weight(l), W0);
        tu_to_double(cvd_conv2d_bias(l), b0);
        assert_memory_equal(W0, W1, sizeof W0);
        assert_memory_equal(b0, b1, sizeof b0);
        cvd_tensor *all[] = {&x, &y, &delta, &dx, &dW, &db, &bigd};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            cvd_tensor_release(all[i]);
        cvd_conv2d_free(l);
    }
}

static void test_nonfinite(void **state)
{
    (void)state;
    cvd_err e;
    cvd_conv2d *l = make(1, 1, 3, 1, 1, CVD_F32);
    const int64_t xs[4] = {1, 1, 3, 3}, ys[4] = {1, 1, 3, 3}, ws[4] = {1, 1, 3, 3};
    double ones[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1}, huge[9];
    for (int i = 0; i < 9; i++)
        huge[i] = 3e38;
    cvd_tensor x = tu_tensor(CVD_F32, 4, xs, ones), y = tu_tensor(CVD_F32, 4, ys, NULL);
    cvd_tensor xh = tu_tensor(CVD_F32, 4, xs, huge), W = tu_tensor(CVD_F32, 4, ws, ones);
    assert_int_equal(cvd_conv2d_set_weights(l, &W, NULL, &e), CVD_OK);
    /* A forward that overflows fails and does not replace the cache. */
    assert_int_equal(cvd_conv2d_forward(l, &xh, &y, 0, &e), CVD_ERR_NONFINITE);
    assert_non_null(strstr(e.msg, "y"));
    assert_int_equal(cvd_conv2d_has_cache(l, NULL), 0);
    assert_int_equal(cvd_conv2d_forward(l, &x, &y, 0, &e), CVD_OK);
    assert_int_equal(((float *)y.data)[4], 9.0f);
    assert_int_equal(cvd_conv2d_forward(l, &xh, &y, 0, &e), CVD_ERR_NONFINITE);
    /* The cache still holds x (ones): dW = sum over the window of delta*x. */
    cvd_tensor delta = tu_tensor(CVD_F32, 4, ys, ones), dW = tu_tensor(CVD_F32, 4, ws, NULL);
    cvd_backward_opts o = {.need = CVD_NEED_DW};
    assert_int_equal(cvd_conv2d_backward(l, NULL, &delta, &o, NULL, &dW, NULL, &e), CVD_OK);
    assert_true(((float *)dW.data)[4] == 9.0f && ((float *)dW.data)[0] == 4.0f);
    /* Gradients that overflow are an error even without an SGD step. */
    cvd_tensor dh = tu_tensor(CVD_F32, 4, ys, huge), dx = tu_tensor(CVD_F32, 4, xs, NULL);
    o.need = CVD_NEED_DX;
    assert_int_equal(cvd_conv2d_backward(l, NULL, &dh, &o, &dx, NULL, NULL, &e), CVD_ERR_NONFINITE);
    o.need = CVD_NEED_DB;
    assert_int_equal(cvd_conv2d_backward(l, NULL, &dh, &o, NULL, NULL, &dx, &e),
                     CVD_ERR_INVALID); /* dx is not a valid db */
    const int64_t bs[1] = {1};
    cvd_tensor db = tu_tensor(CVD_F32, 1, bs, NULL);
    assert_int_equal(cvd_conv2d_backward(l, NULL, &dh, &o, NULL, NULL, &db, &e), CVD_ERR_NONFINITE);
    cvd_tensor *all[] = {&x, &y, &xh, &W, &delta, &dW, &dh, &dx, &db};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        cvd_tensor_release(all[i]);
    cvd_conv2d_free(l);
}

static void test_cache(void **state)
{
    (void)state;
    cvd_err e;
    cvd_conv2d *l = make(2, 2, 3, 1, 0, CVD_F64);
    assert_int_equal(cvd_conv2d_init(l, CVD_INIT_NORMAL, 1, &e), CVD_OK);
    int64_t cs[4];
    assert_int_equal(cvd_conv2d_has_cache(l, cs), 0);
    const int64_t xs1[4] = {1, 2, 3, 3}, xs2[4] = {2, 2, 4, 6};
    const int64_t ys1[4] = {1, 2, 3, 3}, ys2[4] = {2, 2, 4, 6};
    ref_rng r = {5};
    double v[96];
    ref_fill(&r, v, 96);
    cvd_tensor x1 = tu_tensor(CVD_F64, 4, xs1, v), y1 = tu_tensor(CVD_F64, 4, ys1, NULL);
    cvd_tensor x2 = tu_tensor(CVD_F64, 4, xs2, v), y2 = tu_tensor(CVD_F64, 4, ys2, NULL);
    assert_int_equal(cvd_conv2d_forward(l, &x1, &y1, CVD_FWD_NO_CACHE, &e), CVD_OK);
    assert_int_equal(cvd_conv2d_has_cache(l, cs), 0);
    assert_int_equal(cvd_conv2d_forward(l, &x1, &y1, 0, &e), CVD_OK);
    assert_int_equal(cvd_conv2d_has_cache(l, cs), 1);
    assert_memory_equal(cs, xs1, sizeof cs);
    assert_int_equal(cvd_conv2d_forward(l, &x2, &y2, 0, &e), CVD_OK);
    assert_int_equal(cvd_conv2d_has_cache(l, cs), 1);
    assert_memory_equal(cs, xs2, sizeof cs);
    /* The cache is a copy: changing the caller's x afterwards does not affect backward. */
    cvd_tensor delta = tu_tensor(CVD_F64, 4, ys2, v),
               dWa = tu_tensor(CVD_F64, 4, cvd_conv2d_weight(l)->shape, NULL);
    cvd_tensor dWb = tu_tensor(CVD_F64, 4, cvd_conv2d_weight(l)->shape, NULL);
    cvd_backward_opts o = {.need = CVD_NEED_DW};
    assert_int_equal(cvd_conv2d_backward(l, NULL, &delta, &o, NULL, &dWa, NULL, &e), CVD_OK);
    assert_int_equal(cvd_conv2d_backward(l, &x2, &delta, &o, NULL, &dWb, NULL, &e), CVD_OK);
    assert_memory_equal(dWa.data, dWb.data, 2 * 2 * 9 * sizeof(double));
    memset(x2.data, 0, 96 * sizeof(double));
    assert_int_equal(cvd_conv2d_backward(l, NULL, &delta, &o, NULL, &dWb, NULL, &e), CVD_OK);
    assert_memory_equal(dWa.data, dWb.data, 2 * 2 * 9 * sizeof(double));
    cvd_tensor *all[] = {&x1, &y1, &x2, &y2, &delta, &dWa, &dWb};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        cvd_tensor_release(all[i]);
    cvd_conv2d_free(l);
}

static void test_memory_need(void **state)
{
    (void)state;
    cvd_err e;
    cvd_conv2d_params p = {.in_channels = 16,
                           .out_channels = 32,
                           .groups = 1,
                           .kh = 3,
                           .kw = 3,
                           .sh = 1,
                           .sw = 1,
                           .dh = 1,
                           .dw = 1,
                           .pad_mode = CVD_PAD_SAME,
                           .bias = 1,
                           .dtype = CVD_F32};
    size_t prev = 0, bytes;
    const int before = cvd_get_num_threads();
    /* Monotone in N; once each thread's chunk size is saturated, each image adds exactly
     * its cache. With two threads the workspace is two chunks and a second dW. */
    const int64_t K = 16 * 9, P = 8 * 8; /* small images go in chunks of nb */
    assert_true(P < CVD_DIRECT_COLS);
    const int64_t nb = (int64_t)(CVD_CHUNK_BYTES / ((size_t)(K + 32) * P * 4));
    assert_true(nb >= 2);
    const int64_t many[4] = {100000, 16, 8, 8};
    const size_t cache = (size_t)100000 * 16 * 8 * 8 * 4;
    for (int threads = 2; threads >= 1; threads--) {
        cvd_set_num_threads(threads);
        prev = 0;
        for (int64_t N = 1; N <= threads * nb + 3; N++) {
            const int64_t xs[4] = {N, 16, 8, 8};
            assert_int_equal(cvd_conv2d_memory_need(&p, xs, &bytes, &e), CVD_OK);
            assert_true(bytes > prev);
            if (N > threads * nb)
                assert_true(bytes - prev == 16 * 8 * 8 * 4);
            prev = bytes;
        }
        /* The workspace stays bounded: a huge batch costs its cache and not much more. */
        assert_int_equal(cvd_conv2d_memory_need(&p, many, &bytes, &e), CVD_OK);
        assert_true(bytes > cache &&
                    bytes - cache <= (size_t)threads * CVD_CHUNK_BYTES + (1u << 20));
        if (threads == 2)
            assert_true(bytes - cache > 2 * ((size_t)nb * (K + 32) * P * 4) + 32 * K * 4);
    }
    /* Float64 doubles the cache (the workspace budget stays); a bigger image needs more. */
    p.dtype = CVD_F64;
    assert_int_equal(cvd_conv2d_memory_need(&p, many, &bytes, &e), CVD_OK);
    assert_true(bytes > 2 * cache && bytes - 2 * cache <= CVD_CHUNK_BYTES + (1u << 20));
    const int64_t img1[4] = {1, 16, 64, 64}, img2[4] = {1, 16, 65, 64};
    size_t n1, n2;
    assert_int_equal(cvd_conv2d_memory_need(&p, img1, &n1, &e), CVD_OK);
    assert_int_equal(cvd_conv2d_memory_need(&p, img2, &n2, &e), CVD_OK);
    assert_true(n2 > n1);
    /* Exact for one 1x1 image on BLAS alone (no workspace): weights twice, bias twice,
     * cache, header. The own kernels add a workspace that grows with the image (dx by
     * dgrad copies delta). */
    cvd_conv2d_params q = p;
    q.kh = q.kw = 1;
    q.pad_mode = CVD_PAD_VALID;
    const int64_t xa[4] = {1, 16, 8, 8}, xb[4] = {1, 16, 16, 16};
    const cvd_isa isa = cvd_cpu_isa();
    cvd_cpu_force_isa(CVD_ISA_NONE);
    assert_int_equal(cvd_conv2d_memory_need(&q, xa, &n1, &e), CVD_OK);
    assert_int_equal(cvd_conv2d_memory_need(&q, xb, &n2, &e), CVD_OK);
    assert_int_equal(n2 - n1, 16 * (256 - 64) * 8);
    assert_true(n1 >= (size_t)(2 * (32 * 16 + 32) * 8 + 16 * 64 * 8));
    cvd_cpu_force_isa(isa);
    assert_int_equal(cvd_conv2d_memory_need(&q, xa, &n1, &e), CVD_OK);
    assert_int_equal(cvd_conv2d_memory_need(&q, xb, &n2, &e), CVD_OK);
    assert_true(n2 - n1 >= 16 * (256 - 64) * 8);
    /* Refusals: dims 2^40, and dims that fit alone but overflow together. */
    const int64_t d40[4] = {(int64_t)1 << 40, 16, 64, 64};
    assert_int_equal(cvd_conv2d_memory_need(&p, d40, &bytes, &e), CVD_ERR_TOO_LARGE);
    assert_non_null(strstr(e.msg, "N"));
    const int64_t prod[4] = {INT32_MAX, 16, 32768, 32768};
    assert_int_equal(cvd_conv2d_memory_need(&p, prod, &bytes, &e), CVD_ERR_TOO_LARGE);
    const int64_t chan[4] = {1, 15, 64, 64};
    assert_int_equal(cvd_conv2d_memory_need(&p, chan, &bytes, &e), CVD_ERR_SHAPE);
    p.groups = 0;
    assert_int_equal(cvd_conv2d_memory_need(&p, img1, &bytes, &e), CVD_ERR_INVALID);
    cvd_set_num_threads(before);
}

static void test_chunk_choice(void **state)
{
    (void)state;
    cvd_err e;
    cvd_conv2d_params p = {.in_channels = 4,
                           .out_channels = 8,
                           .groups = 2,
                           .kh = 3,
                           .kw = 3,
                           .sh = 1,
                           .sw = 1,
                           .dh = 1,
                           .dw = 1,
                           .pad_mode = CVD_PAD_VALID,
                           .dtype = CVD_F64};
    const int64_t xs[4] = {10, 4, 12, 12};
    cvd_geom g;
    assert_int_equal(cvd_geom_init(&g, &p, xs, "x", &e), CVD_OK);
    assert_true(g.K == 18 && g.P == 100 && g.Fg == 4 && !g.is_1x1);
    int64_t nb;
    size_t ws;
    const size_t per = (size_t)(18 + 4) * 100 * 8;
    assert_int_equal(cvd_geom_chunk(&g, 8, 3 * per + 7, &nb, &ws, &e), CVD_OK);
    assert_true(nb == 3 && ws == (size_t)(18 + 4) * 300);
    assert_int_equal(cvd_geom_chunk(&g, 8, 1, &nb, &ws, &e), CVD_OK);
    assert_true(nb == 1 && ws == 18 * 10); /* one image: no staging, col of one output row */
    assert_int_equal(cvd_geom_chunk(&g, 8, (size_t)1 << 40, &nb, &ws, &e), CVD_OK);
    assert_int_equal(nb, 10); /* never more than N */
    /* Default policy: what fits 8 MiB (here the whole batch). */
    assert_int_equal(cvd_geom_chunk(&g, 8, 0, &nb, &ws, &e), CVD_OK);
    assert_true(nb == 10 && ws == (size_t)(18 + 4) * 1000);
    /* An image too big for 8 MiB on a small output: widened towards 2048 columns, but
     * capped at 32 MiB (per image (9216+64)*100*8 bytes: 4 images). */
    cvd_conv2d_params big = p;
    big.in_channels = 1024;
    big.groups = 1;
    big.out_channels = 64;
    const int64_t xb[4] = {10, 1024, 12, 12};
    assert_int_equal(cvd_geom_init(&g, &big, xb, "x", &e), CVD_OK);
    assert_int_equal(cvd_geom_chunk(&g, 8, 0, &nb, &ws, &e), CVD_OK);
    assert_true(nb == 4 && ws == (size_t)(9216 + 64) * 400);
    assert_int_equal(cvd_geom_chunk(&g, 4, 0, &nb, &ws, &e), CVD_OK);
    assert_int_equal(nb, 9); /* float32: floor(32 MiB / 3.7 MB) */
    /* One big image: col holds a band of output rows, ~4 MiB but >= 768 columns. */
    const int64_t xw[4] = {1, 1024, 40, 40};
    assert_int_equal(cvd_geom_init(&g, &big, xw, "x", &e), CVD_OK);
    assert_int_equal(cvd_geom_chunk(&g, 8, 0, &nb, &ws, &e), CVD_OK);
    assert_int_equal(cvd_geom_band_rows(&g, 8, 0), 21); /* ceil(768 / 38) */
    assert_true(nb == 1 && ws == (size_t)9216 * 21 * 38);
    big.in_channels = 2;
    const int64_t xn[4] = {1, 2, 40, 40};
    assert_int_equal(cvd_geom_init(&g, &big, xn, "x", &e), CVD_OK);
    assert_int_equal(cvd_geom_band_rows(&g, 8, 0), 38); /* 18*38*8 bytes a row: all fit */
    assert_int_equal(cvd_geom_band_rows(&g, 8, 18 * 38 * 8 * 3 + 5), 3);
    /* 1x1: a single image is its own col; small ones are gathered into one wide GEMM... */
    p.kh = p.kw = 1;
    const int64_t x1[4] = {10, 4, 12, 12};
    assert_int_equal(cvd_geom_init(&g, &p, x1, "x", &e), CVD_OK);
    assert_true(g.is_1x1);
    assert_int_equal(cvd_geom_chunk(&g, 8, 1, &nb, &ws, &e), CVD_OK);
    assert_true(nb == 1 && ws == 0);
    assert_int_equal(cvd_geom_chunk(&g, 8, 0, &nb, &ws, &e), CVD_OK);
    assert_true(nb == 10 && ws == (size_t)(2 + 4) * 1440);
    /* ...but from 512 pixels on, image by image in place, with no workspace at all. */
    const int64_t x2[4] = {10, 4, 16, 32};
    assert_int_equal(cvd_geom_init(&g, &p, x2, "x", &e), CVD_OK);
    assert_int_equal(cvd_geom_chunk(&g, 8, 0, &nb, &ws, &e), CVD_OK);
    assert_true(nb == 1 && ws == 0);
    /* A padded or strided 1x1 is not the shortcut. */
    p.sh = 2;
    assert_int_equal(cvd_geom_init(&g, &p, x1, "x", &e), CVD_OK);
    assert_false(g.is_1x1);
}

/* dx takes the direct kernel only where the transposed layer's padding is not most of its
 * input: a 52x52 kernel over a 52x52 image (one output pixel) would multiply 2704 times
 * the layer's work, nearly all by zeros, so it keeps the GEMM path unless forced; a
 * resnet 3x3 layer takes it wherever the SIMD kernels run. */
static void test_dgrad_padding_waste(void **state)
{
    (void)state;
    cvd_err e;
    cvd_conv2d_params p = {.in_channels = 1,
                           .out_channels = 64,
                           .groups = 1,
                           .kh = 52,
                           .kw = 52,
                           .sh = 1,
                           .sw = 1,
                           .dh = 1,
                           .dw = 1,
                           .pad_mode = CVD_PAD_VALID,
                           .dtype = CVD_F32};
    const int64_t xs[4] = {1, 1, 52, 52};
    cvd_geom g;
    assert_int_equal(cvd_geom_init(&g, &p, xs, "x", &e), CVD_OK);
    assert_true(g.OH == 1 && g.OW == 1);
    assert_false(cvd_dgrad_pays(&g, 4, CVD_PATH_AUTO));
    assert_int_equal(cvd_dgrad_pays(&g, 4, CVD_PATH_DIRECT), cvd_direct_available());
    cvd_conv2d_params r = p;
    r.in_channels = r.out_channels = 256;
    r.kh = r.kw = 3;
    r.pad_mode = CVD_PAD_EXPLICIT;
    r.ph = r.pw = 1;
    const int64_t xr[4] = {8, 256, 14, 14};
    assert_int_equal(cvd_geom_init(&g, &r, xr, "x", &e), CVD_OK);
    assert_int_equal(cvd_dgrad_pays(&g, 4, CVD_PATH_AUTO), cvd_direct_available());
}

/* A y that overflows is caught on every forward path (1x1 in place, bands of rows, chunks
 * of images, shifted GEMMs, the direct kernel) in both dtypes, when the overflow lands at
 * the very last element of y (the tail of the finiteness sums) or the first, and the cache
 * is left alone. */
static void test_nonfinite_every_path(void **state)
{
    (void)state;
    static const struct {
        int64_t C, k, pad, N, H;
        cvd_path path;
    } cases[] = {
        {3, 1, 0, 2, 24, CVD_PATH_AUTO},   /* 1x1, image by image in place (P >= 512) */
        {3, 3, 1, 1, 40, CVD_PATH_IM2COL}, /* one image: bands of output rows */
        {3, 3, 1, 3, 10, CVD_PATH_AUTO},   /* several small images: one chunk */
        {32, 3, 1, 2, 12, CVD_PATH_SHIFT}, /* shifted GEMMs */
        {3, 3, 1, 1, 40, CVD_PATH_AUTO},   /* the direct kernel, last in a part vector */
        {3, 3, 1, 2, 17, CVD_PATH_DIRECT}, /* the same on two images, one lane in the last */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int d = 0; d < 2; d++) {
            const cvd_dtype dt = d ? CVD_F64 : CVD_F32;
            cvd_conv2d_params p = {.in_channels = cases[c].C,
                                   .out_channels = 5,
                                   .groups = 1,
                                   .kh = cases[c].k,
                                   .kw = cases[c].k,
                                   .sh = 1,
                                   .sw = 1,
                                   .dh = 1,
                                   .dw = 1,
                                   .pad_mode = CVD_PAD_EXPLICIT,
                                   .ph = cases[c].pad,
                                   .pw = cases[c].pad,
                                   .bias = 1,
                                   .dtype = dt};
            cvd_conv2d *l;
            cvd_err e;
            assert_int_equal(cvd_conv2d_create(&p, &l, &e), CVD_OK);
            cvd_conv2d_set_path(l, cases[c].path);
            const int64_t k = cases[c].k, C = cases[c].C;
            const int64_t ws[4] = {5, C, k, k}, bs[1] = {5};
            const int64_t xs[4] = {cases[c].N, C, cases[c].H, cases[c].H};
            const int64_t wn = 5 * C * k * k, xn = xs[0] * C * xs[2] * xs[3];
            double *wv = malloc((size_t)wn * sizeof *wv), *xv = malloc((size_t)xn * sizeof *xv);
            double bv[5] = {0.5, 0.5, 0.5, 0.5, 0.5};
            for (int64_t i = 0; i < wn; i++)
                wv[i] = 10;
            for (int64_t i = 0; i < xn; i++)
                xv[i] = 1;
            cvd_tensor W = tu_tensor(dt, 4, ws, wv), b = tu_tensor(dt, 1, bs, bv);
            assert_int_equal(cvd_conv2d_set_weights(l, &W, &b, &e), CVD_OK);
            int64_t ys[4];
            assert_int_equal(cvd_conv2d_output_shape(&p, xs, ys, &e), CVD_OK);
            cvd_tensor x = tu_tensor(dt, 4, xs, xv), y = tu_tensor(dt, 4, ys, NULL);
            assert_int_equal(cvd_conv2d_forward(l, &x, &y, 0, &e), CVD_OK);
            xv[xn - 1] = d ? 1e308 : 3e38; /* times 10 overflows */
            cvd_tensor xh = tu_tensor(dt, 4, xs, xv);
            if (cvd_conv2d_forward(l, &xh, &y, 0, &e) != CVD_ERR_NONFINITE)
                fail_msg("case %zu %s: an overflowing y was accepted", c, cvd_dtype_name(dt));
            /* and at the very first (a full vector on the direct kernel) */
            xv[xn - 1] = 1;
            xv[0] = d ? 1e308 : 3e38;
            cvd_tensor xf = tu_tensor(dt, 4, xs, xv);
            if (cvd_conv2d_forward(l, &xf, &y, 0, &e) != CVD_ERR_NONFINITE)
                fail_msg("case %zu %s: an overflowing y[0] was accepted", c, cvd_dtype_name(dt));
            int64_t cached[4];
            assert_int_equal(cvd_conv2d_has_cache(l, cached), 1);
            cvd_tensor *all[] = {&W, &b, &x, &y, &xh, &xf};
            for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
                cvd_tensor_release(all[i]);
            free(wv);
            free(xv);
            cvd_conv2d_free(l);
        }
    }
}

/* A dx that overflows is caught on every backward-data path: dgrad on the direct kernel
 * and on the channel-blocked one (tasks of whole images and the images left over, one
 * group and two), and col2im on the GEMM, at every SIMD level and in both dtypes, at the
 * first element of dx and at the last. dgrad checks dx as it stores it (no scan after);
 * a finite delta on the same layer is accepted. */
static void test_nonfinite_dx_every_path(void **state)
{
    (void)state;
    static const struct {
        int64_t C, F, G, N, H;
        cvd_path path;
    } cases[] = {
        {3, 5, 1, 2, 17, CVD_PATH_DIRECT},    /* dgrad, direct kernel */
        {32, 32, 1, 3, 14, CVD_PATH_BLOCKED}, /* dgrad, blocked: 2 tasks and one image left */
        {64, 32, 2, 2, 9, CVD_PATH_BLOCKED},  /* dgrad, blocked, two groups */
        {4, 6, 1, 2, 11, CVD_PATH_IM2COL},    /* col2im, then the scan */
    };
    const int threads = cvd_get_num_threads();
    const cvd_isa before = cvd_cpu_isa();
    cvd_set_num_threads(2);
    for (int isa = (int)cvd_cpu_isa_max(); isa >= (int)CVD_ISA_NONE; isa--) {
        assert_int_equal(cvd_cpu_force_isa((cvd_isa)isa), (cvd_isa)isa);
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
            for (int d = 0; d < 2; d++) {
                const cvd_dtype dt = d ? CVD_F64 : CVD_F32;
                const int64_t C = cases[c].C, F = cases[c].F, G = cases[c].G, N = cases[c].N,
                              H = cases[c].H;
                cvd_conv2d *l = make(C, F, 3, G, 0, dt);
                cvd_err e;
                cvd_conv2d_set_path(l, cases[c].path);
                const int64_t ws[4] = {F, C / G, 3, 3}, xs[4] = {N, C, H, H}, ys[4] = {N, F, H, H};
                const int64_t wn = F * (C / G) * 9, xn = N * C * H * H, yn = N * F * H * H;
                double *wv = malloc((size_t)wn * sizeof *wv), *xv = malloc((size_t)xn * sizeof *xv),
                       *dv = malloc((size_t)yn * sizeof *dv);
                for (int64_t i = 0; i < wn; i++)
                    wv[i] = 10;
                for (int64_t i = 0; i < xn; i++)
                    xv[i] = 1;
                for (int64_t i = 0; i < yn; i++)
                    dv[i] = 1;
                cvd_tensor W = tu_tensor(dt, 4, ws, wv), x = tu_tensor(dt, 4, xs, xv),
                           dx = tu_tensor(dt, 4, xs, NULL);
                assert_int_equal(cvd_conv2d_set_weights(l, &W, NULL, &e), CVD_OK);
                const cvd_backward_opts o = {.need = CVD_NEED_DX};
                cvd_tensor ok = tu_tensor(dt, 4, ys, dv);
                if (cvd_conv2d_backward(l, &x, &ok, &o, &dx, NULL, NULL, &e) != CVD_OK)
                    fail_msg("case %zu %s at %s: a finite delta was refused: %s", c,
                             cvd_dtype_name(dt), cvd_cpu_isa_name((cvd_isa)isa), e.msg);
                for (int end = 0; end < 2; end++) {
                    dv[end ? yn - 1 : 0] = d ? 1e308 : 3e38; /* times 10 overflows */
                    cvd_tensor big = tu_tensor(dt, 4, ys, dv);
                    if (cvd_conv2d_backward(l, &x, &big, &o, &dx, NULL, NULL, &e) !=
                        CVD_ERR_NONFINITE)
                        fail_msg("case %zu %s at %s: an overflowing dx (%s) was accepted", c,
                                 cvd_dtype_name(dt), cvd_cpu_isa_name((cvd_isa)isa),
                                 end ? "last" : "first");
                    dv[end ? yn - 1 : 0] = 1;
                    cvd_tensor_release(&big);
                }
                cvd_tensor *all[] = {&W, &x, &dx, &ok};
                for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
                    cvd_tensor_release(all[i]);
                free(wv), free(xv), free(dv);
                cvd_conv2d_free(l);
            }
    }
    cvd_cpu_force_isa(before);
    cvd_set_num_threads(threads);
}

static void test_threads(void **state)
{
    (void)state;
    int before = cvd_get_num_threads();
    assert_true(before >= 1);
    cvd_set_num_threads(1);
    assert_int_equal(cvd_get_num_threads(), 1);
    cvd_set_num_threads(0); /* clamped to 1 */
    assert_int_equal(cvd_get_num_threads(), 1);
    cvd_set_num_threads(before);
    assert_int_equal(cvd_get_num_threads(), before);
}

/* OpenBLAS's exponent of its idle spin, as it read it (0: its default). */
int openblas_thread_timeout(void);

static int spin_given; /* OPENBLAS_THREAD_TIMEOUT was set when the process started */

/* cvd_set_num_threads shortens OpenBLAS's idle spin to 2^16 cycles unless the environment
 * already chose a value, and OpenBLAS takes it; a GEMM afterwards still works. */
static void test_blas_spin(void **state)
{
    (void)state;
    int before = cvd_get_num_threads();
    cvd_set_num_threads(before);
    if (spin_given) {
        skip(); /* the caller's setting stands; nothing of ours to check */
        return;
    }
    assert_string_equal(getenv("OPENBLAS_THREAD_TIMEOUT"), "16");
    assert_int_equal(openblas_thread_timeout(), 16);
    assert_int_equal(cvd_get_num_threads(), before);
    setenv("OPENBLAS_THREAD_TIMEOUT", "20", 1);
    cvd_set_num_threads(before);
    assert_string_equal(getenv("OPENBLAS_THREAD_TIMEOUT"), "20"); /* kept */
    assert_int_equal(openblas_thread_timeout(), 16);              /* not re-read */
    unsetenv("OPENBLAS_THREAD_TIMEOUT");
    cvd_set_num_threads(before);
    assert_string_equal(getenv("OPENBLAS_THREAD_TIMEOUT"), "16");
    float a[4] = {1, 2, 3, 4}, c[4];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 2, 2, 2, 1, a, 2, a, 2, 0, c, 2);
    assert_true(c[0] == 7 && c[1] == 10 && c[2] == 15 && c[3] == 22);
}

/* Two layers used from two threads at once, each call free to use 2 BLAS threads (the
 * daemon's default on this machine), give bit-for-bit what the same calls give one at a
 * time: OpenBLAS and the core's own helper threads share nothing between layers. */
typedef struct job {
    cvd_conv2d *l;
    cvd_tensor x, y, delta, dx, dW, db;
    int rounds;
    cvd_status st;
} job;

static void *run_job(void *arg)
{
    job *j = arg;
    const cvd_backward_opts o = {.need = CVD_NEED_ALL};
    for (int r = 0; r < j->rounds && j->st == CVD_OK; r++) {
        j->st = cvd_conv2d_forward(j->l, &j->x, &j->y, 0, NULL);
        if (j->st == CVD_OK)
            j->st = cvd_conv2d_backward(j->l, NULL, &j->delta, &o, &j->dx, &j->dW, &j->db, NULL);
    }
    return NULL;
}

static void job_make(job *j, cvd_dtype dt, uint64_t seed)
{
    const cvd_conv2d_params p = {.in_channels = 32,
                                 .out_channels = 32,
                                 .groups = 1,
                                 .kh = 3,
                                 .kw = 3,
                                 .sh = 1,
                                 .sw = 1,
                                 .dh = 1,
                                 .dw = 1,
                                 .pad_mode = CVD_PAD_EXPLICIT,
                                 .ph = 1,
                                 .pw = 1,
                                 .bias = 1,
                                 .dtype = dt};
    const int64_t xs[4] = {4, 32, 28, 28}, ws[4] = {32, 32, 3, 3}, bs[1] = {32};
    int64_t ys[4];
    assert_int_equal(cvd_conv2d_output_shape(&p, xs, ys, NULL), CVD_OK);
    memset(j, 0, sizeof *j);
    assert_int_equal(cvd_conv2d_create(&p, &j->l, NULL), CVD_OK);
    assert_int_equal(cvd_conv2d_init(j->l, CVD_INIT_KAIMING_UNIFORM, seed, NULL), CVD_OK);
    int64_t nx = 4 * 32 * 28 * 28, ny = ys[0] * ys[1] * ys[2] * ys[3];
    double *v = malloc((size_t)(nx > ny ? nx : ny) * sizeof *v);
    assert_non_null(v);
    for (int64_t i = 0; i < nx; i++)
        v[i] = sin((double)(i + 1) * (double)(seed + 1) * 0.001);
    j->x = tu_tensor(dt, 4, xs, v);
    for (int64_t i = 0; i < ny; i++)
        v[i] = cos((double)(i + 1) * (double)(seed + 3) * 0.002);
    j->delta = tu_tensor(dt, 4, ys, v);
    free(v);
    j->y = tu_tensor(dt, 4, ys, NULL);
    j->dx = tu_tensor(dt, 4, xs, NULL);
    j->dW = tu_tensor(dt, 4, ws, NULL);
    j->db = tu_tensor(dt, 1, bs, NULL);
    j->rounds = 3;
}

static void job_free(job *j)
{
    cvd_conv2d_free(j->l);
    cvd_tensor *t[] = {&j->x, &j->y, &j->delta, &j->dx, &j->dW, &j->db};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        cvd_tensor_release(t[i]);
}

static void expect_same_bits(const cvd_tensor *a, const cvd_tensor *b)
{
    size_t n = (size_t)cvd_tensor_numel(a) * cvd_dtype_size(a->dtype);
    assert_int_equal(cvd_tensor_numel(a), cvd_tensor_numel(b));
    assert_memory_equal(a->data, b->data, n);
}

static void test_layers_in_parallel(void **state)
{
    (void)state;
    int before = cvd_get_num_threads();
    cvd_set_num_threads(2);
    for (int d = 0; d < 2; d++) {
        cvd_dtype dt = d ? CVD_F64 : CVD_F32;
        job alone[2], together[2];
        for (int k = 0; k < 2; k++) {
            job_make(&alone[k], dt, 11 + (uint64_t)k);
            job_make(&together[k], dt, 11 + (uint64_t)k);
            run_job(&alone[k]);
            assert_int_equal(alone[k].st, CVD_OK);
        }
        pthread_t th[2];
        for (int k = 0; k < 2; k++)
            assert_int_equal(pthread_create(&th[k], NULL, run_job, &together[k]), 0);
        for (int k = 0; k < 2; k++)
            assert_int_equal(pthread_join(th[k], NULL), 0);
        for (int k = 0; k < 2; k++) {
            assert_int_equal(together[k].st, CVD_OK);
            expect_same_bits(&together[k].y, &alone[k].y);
            expect_same_bits(&together[k].dx, &alone[k].dx);
            expect_same_bits(&together[k].dW, &alone[k].dW);
            expect_same_bits(&together[k].db, &alone[k].db);
            job_free(&alone[k]);
            job_free(&together[k]);
        }
    }
    cvd_set_num_threads(before);
}

int main(void)
{
    spin_given = getenv("OPENBLAS_THREAD_TIMEOUT") != NULL;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rng_known_answer),
        cmocka_unit_test(test_init_kaiming),
        cmocka_unit_test(test_init_normal_zeros),
        cmocka_unit_test(test_sgd_step),
        cmocka_unit_test(test_nonfinite),
        cmocka_unit_test(test_cache),
        cmocka_unit_test(test_nonfinite_every_path),
        cmocka_unit_test(test_nonfinite_dx_every_path),
        cmocka_unit_test(test_memory_need),
        cmocka_unit_test(test_chunk_choice),
        cmocka_unit_test(test_dgrad_padding_waste),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_layers_in_parallel),
        cmocka_unit_test(test_blas_spin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
