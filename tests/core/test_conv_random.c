/*
 * test_conv_random.c — the fast paths (im2col + BLAS, chunked batches, 1x1 shortcut, the
 * own SIMD kernels: direct and channel-blocked forward, dgrad, wgrad) against the plain-loop
 * reference on 360 random layers (fixed seed), run once at each SIMD level the CPU has
 * (cvd_cpu_force_isa, down to none: BLAS only): groups, dilation, asymmetric stride and padding,
 * "same"/"valid", N > 1, both dtypes, random need masks, cached and explicit x, forced tiny chunks,
 * the shifted GEMM forced on stride-1 layers; larger layers split across threads (row bands; whole
 * images per thread with the rest split inside) and taking the shifted GEMM by default; then
 * finite-difference gradient checks.
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

#include "../../core/cvd_internal.h"
#include "ref_conv.h"
#include "tutil.h"

#define N_CONFIGS 360

typedef struct stats {
    int one_by_one, grouped, dilated, same, valid, asym_stride, multi_chunk, f32, stateless;
    int shifted, shifted_dilated, shifted_grouped, shifted_batch;
    int direct, direct_strided, direct_dilated, direct_grouped, dgrad, wgrad;
    int blocked_wgrad, blocked_wgrad_full;
    int blocked, blocked_strided, blocked_dilated, blocked_grouped, blocked_dgrad;
} stats;

static cvd_conv2d_params random_params(ref_rng *r, int iter)
{
    cvd_conv2d_params p = {0};
    p.dtype = (iter & 1) ? CVD_F32 : CVD_F64;
    p.groups = ref_int(r, 0, 2) == 0 ? ref_int(r, 2, 3) : 1;
    p.in_channels = p.groups * ref_int(r, 1, 3);
    p.out_channels = p.groups * ref_int(r, 1, 3);
    /* half the configs forced onto the blocked kernels get a whole block of filters and a
     * part one, at either vector width (the transposed squares of blocked_wgrad_impl.h) */
    if (iter % 20 == 14)
        p.out_channels = p.groups * 17;
    p.bias = (int)ref_int(r, 0, 1);
    if (iter % 6 == 0) { /* the 1x1 shortcut */
        p.kh = p.kw = p.sh = p.sw = p.dh = p.dw = 1;
        p.pad_mode = ref_int(r, 0, 1) ? CVD_PAD_VALID : CVD_PAD_EXPLICIT;
        return p;
    }
    p.kh = ref_int(r, 1, 4);
    p.kw = ref_int(r, 1, 4);
    p.dh = ref_int(r, 0, 2) == 0 ? ref_int(r, 2, 3) : 1;
    p.dw = ref_int(r, 0, 2) == 0 ? ref_int(r, 2, 3) : 1;
    switch (ref_int(r, 0, 5)) {
    case 0:
        p.pad_mode = CVD_PAD_SAME;
        p.sh = p.sw = 1;
        break;
    case 1:
        p.pad_mode = CVD_PAD_VALID;
        break;
    default:
        p.pad_mode = CVD_PAD_EXPLICIT;
        p.ph = ref_int(r, 0, 3);
        p.pw = ref_int(r, 0, 3);
        break;
    }
    if (p.pad_mode != CVD_PAD_SAME) {
        p.sh = ref_int(r, 1, 3);
        p.sw = ref_int(r, 1, 3);
    }
    return p;
}

static void expect_close(const char *what, int iter, const double *got, const double *want,
                         int64_t n, double rel)
{
    double err = ref_max_abs_diff(got, want, n), mx = ref_max_abs(want, n);
    if (!(err <= rel * (1 + mx))) {
        fprintf(stderr, "config %d: %s max|err| %g > %g\n", iter, what, err, rel * (1 + mx));
        fail();
    }
}

static void run_config(ref_rng *r, int iter, stats *st)
{
    cvd_conv2d_params p = random_params(r, iter);
    const cvd_dtype dt = p.dtype;
    ref_geom rg;
    int64_t xs[4] = {ref_int(r, 1, 4), p.in_channels, 0, 0};
    /* Input between "just fits the dilated kernel" and a few pixels more. */
    int64_t pt, pb, pl, pr;
    cvd_conv2d_padding(&p, &pt, &pb, &pl, &pr);
    int64_t min_h = p.dh * (p.kh - 1) + 1 - pt - pb, min_w = p.dw * (p.kw - 1) + 1 - pl - pr;
    xs[2] = (min_h < 1 ? 1 : min_h) + ref_int(r, 0, 6);
    xs[3] = (min_w < 1 ? 1 : min_w) + ref_int(r, 0, 6);
    assert_true(ref_geom_make(&rg, &p, xs));

    cvd_conv2d *l = NULL;
    cvd_err e;
    assert_int_equal(cvd_conv2d_create(&p, &l, &e), CVD_OK);
    int chunk = (int)ref_int(r, 0, 2);
    if (chunk == 1)
        cvd_conv2d_set_chunk_bytes(l, 1); /* one image per chunk */
    else if (chunk == 2)
        cvd_conv2d_set_chunk_bytes(
            l, (size_t)(ref_int(r, 2, 3) *
                        (p.in_channels / p.groups * p.kh * p.kw + p.out_channels / p.groups) *
                        rg.OH * rg.OW) *
                   cvd_dtype_size(dt));
    /* Three configs in five take the shifted-GEMM path wherever it applies (stride 1);
     * AUTO would never pick it for so few channels. One in five runs forward on the direct
     * kernel, which AUTO takes only from 12 output columns on, and one in ten on the
     * channel-blocked one, which AUTO takes only for a full block of channels. */
    if (iter % 5 < 3)
        cvd_conv2d_set_path(l, CVD_PATH_SHIFT);
    else if (iter % 5 == 3)
        cvd_conv2d_set_path(l, CVD_PATH_DIRECT);
    else if (iter % 10 == 4)
        cvd_conv2d_set_path(l, CVD_PATH_BLOCKED);

    const int64_t Cg = p.in_channels / p.groups;
    const int64_t ws[4] = {p.out_channels, Cg, p.kh, p.kw};
    const int64_t wn = ws[0] * ws[1] * ws[2] * ws[3];
    const int64_t xn = xs[0] * xs[1] * xs[2] * xs[3];
    const int64_t ys[4] = {xs[0], p.out_channels, rg.OH, rg.OW};
    const int64_t yn = ys[0] * ys[1] * ys[2] * ys[3];
    const int64_t F = p.out_channels;
    double *x = malloc((size_t)xn * sizeof *x), *W = malloc((size_t)wn * sizeof *W);
    double *b = malloc((size_t)F * sizeof *b), *delta = malloc((size_t)yn * sizeof *delta);
    double *y = malloc((size_t)yn * sizeof *y), *dx = malloc((size_t)xn * sizeof *dx);
    double *dW = malloc((size_t)wn * sizeof *dW), *db = malloc((size_t)F * sizeof *db);
    double *got = malloc((size_t)(xn + yn + wn + F) * sizeof *got);
    ref_fill(r, x, xn);
    ref_fill(r, W, wn);
    ref_fill(r, b, F);
    ref_fill(r, delta, yn);
    if (dt == CVD_F32) {
        tu_round_f32(x, xn);
        tu_round_f32(W, wn);
        tu_round_f32(b, F);
        tu_round_f32(delta, yn);
    }
    const double rel = dt == CVD_F32 ? 1e-4 : 1e-11;

    cvd_tensor tW = tu_tensor(dt, 4, ws, W);
    const int64_t bs[1] = {F};
    cvd_tensor tb = tu_tensor(dt, 1, bs, b);
    assert_int_equal(cvd_conv2d_set_weights(l, &tW, p.bias ? &tb : NULL, &e), CVD_OK);
    cvd_tensor tx = tu_tensor(dt, 4, xs, x);
    cvd_tensor ty = tu_tensor(dt, 4, ys, NULL);
    assert_int_equal(cvd_conv2d_forward(l, &tx, &ty, 0, &e), CVD_OK);
    ref_forward(&rg, x, W, p.bias ? b : NULL, y);
    tu_to_double(&ty, got);
    expect_close("y", iter, got, y, yn, rel);

    unsigned need = (unsigned)ref_int(r, 1, 7);
    if (!p.bias)
        need &= ~CVD_NEED_DB;
    if (!need)
        need = CVD_NEED_DX;
    int stateless = (int)ref_int(r, 0, 3) == 0;
    ref_backward(&rg, x, W, delta, dx, dW, db);
    cvd_tensor tdelta = tu_tensor(dt, 4, ys, delta);
    cvd_tensor tdx = tu_tensor(dt, 4, xs, NULL), tdW = tu_tensor(dt, 4, ws, NULL);
    cvd_tensor tdb = tu_tensor(dt, 1, bs, NULL);
    cvd_backward_opts o = {.need = need};
    assert_int_equal(cvd_conv2d_backward(l, stateless ? &tx : NULL, &tdelta, &o,
                                         (need & CVD_NEED_DX) ? &tdx : NULL,
                                         (need & CVD_NEED_DW) ? &tdW : NULL,
                                         (need & CVD_NEED_DB) ? &tdb : NULL, &e),
                     CVD_OK);
    if (need & CVD_NEED_DX) {
        tu_to_double(&tdx, got);
        expect_close("dx", iter, got, dx, xn, rel);
    }
    if (need & CVD_NEED_DW) {
        tu_to_double(&tdW, got);
        expect_close("dW", iter, got, dW, wn, rel);
    }
    if (need & CVD_NEED_DB) {
        tu_to_double(&tdb, got);
        expect_close("db", iter, got, db, F, rel);
    }

    cvd_geom g;
    assert_int_equal(cvd_geom_init(&g, &p, xs, "x", &e), CVD_OK);
    st->one_by_one += g.is_1x1;
    st->grouped += p.groups > 1;
    st->dilated += p.dh > 1 || p.dw > 1;
    st->same += p.pad_mode == CVD_PAD_SAME;
    st->valid += p.pad_mode == CVD_PAD_VALID;
    st->asym_stride += p.sh != p.sw;
    st->multi_chunk += xs[0] > 1 && chunk != 0 && !g.is_1x1;
    st->f32 += dt == CVD_F32;
    st->stateless += stateless;
    const int shifted = iter % 5 < 3 && g.shift_ok;
    st->shifted += shifted;
    st->shifted_dilated += shifted && (p.dh > 1 || p.dw > 1);
    st->shifted_grouped += shifted && p.groups > 1;
    st->shifted_batch += shifted && xs[0] > 1;
    st->direct += iter % 5 == 3;
    st->direct_strided += iter % 5 == 3 && (p.sh > 1 || p.sw > 1);
    st->direct_dilated += iter % 5 == 3 && (p.dh > 1 || p.dw > 1);
    st->direct_grouped += iter % 5 == 3 && p.groups > 1;
    const int blocked = iter % 10 == 4 && cvd_direct_available();
    st->blocked += blocked;
    st->blocked_strided += blocked && (p.sh > 1 || p.sw > 1);
    st->blocked_dilated += blocked && (p.dh > 1 || p.dw > 1);
    st->blocked_grouped += blocked && p.groups > 1;
    st->blocked_dgrad += blocked && (need & CVD_NEED_DX) &&
                         cvd_dgrad_pays(&g, cvd_dtype_size(dt), CVD_PATH_BLOCKED) &&
                         cvd_dgrad_blocked(&g, cvd_dtype_size(dt), CVD_PATH_BLOCKED);
    const int bwg = blocked && (need & CVD_NEED_DW);
    st->blocked_wgrad += bwg;
    st->blocked_wgrad_full += bwg && g.Fg >= 64 / (int64_t)cvd_dtype_size(dt);
    cvd_geom tg;
    st->wgrad += iter % 5 == 3 && (need & CVD_NEED_DW) && cvd_direct_available();
    st->dgrad +=
        iter % 5 == 3 && (need & CVD_NEED_DX) && cvd_direct_available() && cvd_dgrad_geom(&g, &tg);

    cvd_tensor *all[] = {&tW, &tb, &tx, &ty, &tdelta, &tdx, &tdW, &tdb};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        cvd_tensor_release(all[i]);
    free(x), free(W), free(b), free(delta), free(y), free(dx), free(dW), free(db), free(got);
    cvd_conv2d_free(l);
}

/* The SIMD levels this CPU has, highest first, down to CVD_ISA_NONE (the im2col + BLAS
 * paths only); returns how many. Tests force each in turn (cvd_cpu_force_isa). */
static int isa_levels(cvd_isa out[3])
{
    int n = 0;
    for (int isa = (int)cvd_cpu_isa_max(); isa >= (int)CVD_ISA_NONE; isa--)
        out[n++] = (cvd_isa)isa;
    return n;
}

/* The 360 configurations at every SIMD level the CPU has, from the same seed. */
static void test_random_vs_reference(void **state)
{
    (void)state;
    const cvd_isa before = cvd_cpu_isa();
    cvd_isa isas[3];
    const int nisa = isa_levels(isas);
    for (int k = 0; k < nisa; k++) {
        assert_int_equal(cvd_cpu_force_isa(isas[k]), isas[k]);
        ref_rng r = {0x5eed5eed1234ull};
        stats st = {0};
        for (int i = 0; i < N_CONFIGS; i++)
            run_config(&r, i, &st);
        /* The generator must really cover each feature, or the test proves less than it says. */
        assert_true(st.one_by_one >= 30 && st.grouped >= 60 && st.dilated >= 60 && st.same >= 30);
        assert_true(st.valid >= 30 && st.asym_stride >= 60 && st.multi_chunk >= 60);
        assert_true(st.f32 == N_CONFIGS / 2 && st.stateless >= 40);
        assert_true(st.shifted >= 60 && st.shifted_dilated >= 15 && st.shifted_grouped >= 15);
        assert_true(st.shifted_batch >= 30);
        assert_true(st.direct >= 60 && st.direct_strided >= 20 && st.direct_dilated >= 15 &&
                    st.direct_grouped >= 15);
        /* dx and dW on the own kernels (dgrad.c, wgrad.c) wherever there are some */
        assert_true(isas[k] == CVD_ISA_NONE ? st.dgrad == 0 : st.dgrad >= 15);
        assert_true(isas[k] == CVD_ISA_NONE ? st.wgrad == 0 : st.wgrad >= 30);
        /* the channel-blocked forward (blocked.c), forced on one config in ten */
        assert_true(isas[k] == CVD_ISA_NONE ? st.blocked == 0 : st.blocked >= 30);
        assert_true(
            isas[k] == CVD_ISA_NONE ||
            (st.blocked_strided >= 10 && st.blocked_dilated >= 5 && st.blocked_grouped >= 5));
        /* and dW on the filter-blocked kernel (blocked_wgrad.c), some with whole blocks */
        assert_true(isas[k] == CVD_ISA_NONE ? st.blocked_wgrad == 0
                                            : st.blocked_wgrad >= 15 && st.blocked_wgrad_full >= 5);
    }
    cvd_cpu_force_isa(before);
}

/* t (as doubles, through scratch got) against the reference want, labelled "name (what)". */
static void close_to_reference(const char *name, const char *what, int idx, const cvd_tensor *t,
                               double *got, const double *want, int64_t n, double rel)
{
    char label[64];
    snprintf(label, sizeof label, "%s (%s)", name, what);
    tu_to_double(t, got);
    expect_close(label, idx, got, want, n, rel);
}

/* One layer on input shape xs against the reference: forward, then backward of the
 * gradients in need (0: every one the layer has, db only with a bias); init and seed set W
 * and b, budget > 0 forces chunks of that many bytes, path forces a path (AUTO: the
 * default). `what` labels failures. */
static void check_vs_reference(const cvd_conv2d_params *p, const int64_t xs[4], ref_rng *r,
                               cvd_init_scheme init, uint64_t seed, size_t budget, cvd_path path,
                               unsigned need, const char *what, int idx)
{
    const int d = p->dtype == CVD_F32;
    ref_geom rg;
    assert_true(ref_geom_make(&rg, p, xs));
    const int64_t ys[4] = {xs[0], p->out_channels, rg.OH, rg.OW};
    cvd_err e;
    cvd_conv2d *l;
    assert_int_equal(cvd_conv2d_create(p, &l, &e), CVD_OK);
    if (budget)
        cvd_conv2d_set_chunk_bytes(l, budget);
    cvd_conv2d_set_path(l, path);
    assert_int_equal(cvd_conv2d_init(l, init, seed, &e), CVD_OK);
    const int64_t xn = xs[0] * xs[1] * xs[2] * xs[3], yn = ys[0] * ys[1] * ys[2] * ys[3];
    const int64_t wn = cvd_tensor_numel(cvd_conv2d_weight(l)), F = p->out_channels;
    double *x = malloc((size_t)xn * sizeof *x), *delta = malloc((size_t)yn * sizeof *x);
    double *y = malloc((size_t)yn * sizeof *x), *dx = malloc((size_t)xn * sizeof *x);
    double *W = malloc((size_t)wn * sizeof *x), *dW = malloc((size_t)wn * sizeof *x);
    /* scratch for whichever of x, y and W is largest */
    double *got = malloc((size_t)(xn + yn + wn) * sizeof *x), *b = calloc((size_t)F, sizeof *x);
    double *db = malloc((size_t)F * sizeof *x);
    ref_fill(r, x, xn);
    ref_fill(r, delta, yn);
    if (d) {
        tu_round_f32(x, xn);
        tu_round_f32(delta, yn);
    }
    tu_to_double(cvd_conv2d_weight(l), W);
    if (p->bias)
        tu_to_double(cvd_conv2d_bias(l), b);
    const int64_t bs[1] = {F};
    cvd_tensor tx = tu_tensor(p->dtype, 4, xs, x), ty = tu_tensor(p->dtype, 4, ys, NULL);
    cvd_tensor td = tu_tensor(p->dtype, 4, ys, delta), tdx = tu_tensor(p->dtype, 4, xs, NULL);
    cvd_tensor tdW = tu_tensor(p->dtype, 4, cvd_conv2d_weight(l)->shape, NULL);
    cvd_tensor tdb = tu_tensor(p->dtype, 1, bs, NULL);
    if (cvd_conv2d_forward(l, &tx, &ty, 0, &e) != CVD_OK)
        fail_msg("%s forward: %s", what, e.msg);
    if (!need)
        need = p->bias ? CVD_NEED_ALL : CVD_NEED_DX | CVD_NEED_DW;
    const cvd_backward_opts o = {.need = need};
    assert_int_equal(cvd_conv2d_backward(l, NULL, &td, &o, (need & CVD_NEED_DX) ? &tdx : NULL,
                                         (need & CVD_NEED_DW) ? &tdW : NULL,
                                         (need & CVD_NEED_DB) ? &tdb : NULL, &e),
                     CVD_OK);
    ref_forward(&rg, x, W, p->bias ? b : NULL, y);
    ref_backward(&rg, x, W, delta, dx, dW, db);
    const double rel = d ? 1e-4 : 1e-11;
    close_to_reference("y", what, idx, &ty, got, y, yn, rel);
    if (need & CVD_NEED_DX)
        close_to_reference("dx", what, idx, &tdx, got, dx, xn, rel);
    if (need & CVD_NEED_DW)
        close_to_reference("dW", what, idx, &tdW, got, dW, wn, rel);
    if (need & CVD_NEED_DB)
        close_to_reference("db", what, idx, &tdb, got, db, F, rel);
    cvd_tensor *all[] = {&tx, &ty, &td, &tdx, &tdW, &tdb};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        cvd_tensor_release(all[i]);
    free(x), free(delta), free(y), free(dx), free(W), free(dW), free(got), free(b), free(db);
    cvd_conv2d_free(l);
}

/* Layers wide enough that the default policy takes the shifted GEMM (asymmetric and "same"
 * padding, dilation, groups, N > 1, several BLAS threads), against the reference. */
static void test_shift_default(void **state)
{
    (void)state;
    const cvd_conv2d_params cases[] = {
        {.in_channels = 64,
         .out_channels = 6,
         .groups = 2,
         .kh = 3,
         .kw = 2,
         .sh = 1,
         .sw = 1,
         .dh = 2,
         .dw = 1,
         .pad_mode = CVD_PAD_SAME,
         .bias = 1},
        {.in_channels = 32,
         .out_channels = 5,
         .groups = 1,
         .kh = 2,
         .kw = 3,
         .sh = 1,
         .sw = 1,
         .dh = 1,
         .dw = 2,
         .pad_mode = CVD_PAD_EXPLICIT,
         .ph = 0,
         .pw = 1,
         .bias = 0},
    };
    const int before = cvd_get_num_threads();
    cvd_set_num_threads(2);
    ref_rng r = {0x541f7};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int d = 0; d < 2; d++) {
            cvd_conv2d_params p = cases[c];
            p.dtype = d ? CVD_F32 : CVD_F64;
            const int64_t xs[4] = {3, p.in_channels, 9, 40};
            cvd_geom g;
            cvd_err e;
            assert_int_equal(cvd_geom_init(&g, &p, xs, "x", &e), CVD_OK);
            int shifted;
            int64_t nb;
            size_t ws;
            assert_int_equal(cvd_geom_path(&g, cvd_dtype_size(p.dtype), 0, CVD_PATH_AUTO, &shifted,
                                           &nb, &ws, &e),
                             CVD_OK);
            assert_true(shifted);
            assert_int_equal(ws, (size_t)(g.kw * g.Cg * (g.Hp * g.Wp + g.dw * (g.kw - 1)) +
                                          g.Fg * g.OH * g.Wp + 2 * g.Fg * g.K));
            check_vs_reference(&p, xs, &r, CVD_INIT_KAIMING_UNIFORM, 5 + c, 0, CVD_PATH_SHIFT, 0,
                               "shifted", (int)c);
        }
    }
    cvd_set_num_threads(before);
}

/* Layers big enough that im2col/col2im split images into row bands across threads
 * (CVD_PARALLEL_MIN_WORK; as many parts as BLAS threads, 3 asked), against the reference:
 * chunks of three images, then one image alone, which goes by bands of output rows whose
 * im2col is split across threads too (the first case). */
static void test_parallel_bands(void **state)
{
    (void)state;
    const cvd_conv2d_params cases[] = {
        {.in_channels = 4,
         .out_channels = 3,
         .groups = 1,
         .kh = 3,
         .kw = 3,
         .sh = 1,
         .sw = 1,
         .dh = 2,
         .dw = 2,
         .pad_mode = CVD_PAD_SAME,
         .bias = 1},
        {.in_channels = 6,
         .out_channels = 4,
         .groups = 2,
         .kh = 5,
         .kw = 4,
         .sh = 2,
         .sw = 3,
         .dh = 1,
         .dw = 1,
         .pad_mode = CVD_PAD_EXPLICIT,
         .ph = 2,
         .pw = 1,
         .bias = 0},
    };
    const int before = cvd_get_num_threads();
    cvd_set_num_threads(3);
    ref_rng r = {0xba4d5};
    for (int run = 0; run < 8; run++) {
        const size_t c = (size_t)run % 2;
        const int d = run / 2 % 2, single = run / 4;
        cvd_conv2d_params p = cases[c];
        p.dtype = d ? CVD_F32 : CVD_F64;
        const int64_t xs[4] = {single ? 1 : 3, p.in_channels, 131, 121};
        cvd_geom g;
        cvd_err e;
        assert_int_equal(cvd_geom_init(&g, &p, xs, "x", &e), CVD_OK);
        int64_t nb;
        size_t ws;
        /* Chunks of all three images; each im2col/col2im call spans a chunk: K*P*nb
         * elements. One image: bands of rows, each im2col K*rows*OW elements. */
        const size_t budget =
            single ? 0 : (size_t)((g.K + g.Fg) * g.P * 3) * cvd_dtype_size(p.dtype);
        assert_int_equal(cvd_geom_chunk(&g, cvd_dtype_size(p.dtype), budget, &nb, &ws, &e), CVD_OK);
        assert_int_equal(nb, single ? 1 : 3);
        const int64_t rows = cvd_geom_band_rows(&g, cvd_dtype_size(p.dtype), 0);
        if (!single)
            assert_int_equal(cvd_parallel_parts((size_t)(g.K * g.P * nb), cvd_get_num_threads()),
                             cvd_get_num_threads());
        else if (c == 0)
            assert_int_equal(cvd_parallel_parts((size_t)(g.K * rows * g.OW), cvd_get_num_threads()),
                             cvd_get_num_threads());
        check_vs_reference(&p, xs, &r, CVD_INIT_NORMAL, 11, budget, CVD_PATH_IM2COL, 0, "bands",
                           (int)c);
    }
    cvd_set_num_threads(before);
}

/* The direct forward kernel (direct.c) on layers that reach each of its parts: tiles of
 * 1 to 4 vectors and several tiles a row, filter tails of every tile height, filter blocks
 * and bands of rows, strides 2 and 3 (phases), asymmetric stride, dilation and padding,
 * groups, blocks of channels on narrow and wide rows, the flat plane (stride 1, a row
 * of outputs and its junk columns in fewer lanes than whole vectors: tiles across rows,
 * bands ending inside a tile, channel blocks, dilation), rows split across threads (one
 * image) and images split across threads (three), with and without bias, against the
 * reference, at every SIMD level the CPU has (test_direct_tiles). */
static void tiles_at_isa(cvd_path path)
{
    typedef struct direct_case {
        int64_t C, F, G, kh, kw, sh, sw, dh, dw, ph, pw, H, W;
    } direct_case;
    const direct_case cases[] = {
        {3, 20, 1, 7, 7, 2, 2, 1, 1, 3, 3, 70, 70},   /* the stem's kind, 35 columns */
        {16, 19, 1, 5, 3, 2, 1, 1, 2, 2, 1, 40, 150}, /* 148 columns, filter blocks, bands */
        {8, 12, 4, 3, 3, 1, 1, 2, 2, 2, 2, 20, 33},   /* groups of 2 channels, dilation */
        {4, 9, 1, 4, 4, 3, 3, 1, 1, 1, 1, 50, 100},   /* stride 3: three phases */
        {2, 5, 1, 3, 3, 1, 1, 1, 1, 0, 0, 6, 6},      /* 4 columns: one part vector */
        {5, 17, 1, 1, 2, 1, 2, 1, 3, 0, 4, 9, 131},   /* a 1x2 kernel, wide pad on the right */
        {72, 13, 1, 3, 3, 1, 1, 1, 1, 1, 1, 14, 14},  /* narrow rows, blocks of channels */
        {48, 20, 2, 3, 3, 1, 1, 1, 1, 1, 1, 9, 61},   /* wide rows, blocks of channels, groups */
        {40, 21, 1, 1, 1, 1, 1, 1, 1, 0, 0, 13, 29},  /* 1x1: one flat row of 377 pixels */
        {20, 14, 1, 3, 3, 1, 1, 1, 1, 1, 1, 11, 37},  /* the flat plane: 39 of 40 or 48 lanes */
        {96, 10, 1, 3, 3, 1, 1, 1, 1, 1, 1, 7, 37},   /* flat, blocks of channels */
        {16, 9, 1, 3, 3, 1, 1, 2, 2, 2, 1, 12, 45},   /* flat, dilation, 43 of 47 columns */
        {40, 30, 1, 3, 3, 1, 1, 1, 1, 1, 1, 8, 400},  /* blocked: bands of rows */
        {256, 20, 1, 5, 5, 1, 1, 1, 1, 2, 2, 6, 9},   /* blocked: chunks of channels (weights
                                                          past a quarter of any L2 to 2 MiB,
                                                          past half of any L1 on AVX2) */
        {24, 80, 1, 3, 3, 1, 1, 1, 1, 1, 1, 12, 41},  /* blocked dW: 5 or 10 filter blocks,
                                                          492 pixels (a part square) */
        {4, 16, 1, 3, 3, 1, 1, 1, 1, 1, 1, 80, 80},   /* blocked dW: chunks of pixels (delta
                                                          past a quarter of any L2 to 2 MiB) */
    };
    const int before = cvd_get_num_threads();
    cvd_set_num_threads(2);
    ref_rng r = {0xd12ec7};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int run = 0; run < 4; run++) {
            const direct_case *dc = &cases[c];
            const cvd_conv2d_params p = {.in_channels = dc->C,
                                         .out_channels = dc->F,
                                         .groups = dc->G,
                                         .kh = dc->kh,
                                         .kw = dc->kw,
                                         .sh = dc->sh,
                                         .sw = dc->sw,
                                         .dh = dc->dh,
                                         .dw = dc->dw,
                                         .pad_mode = CVD_PAD_EXPLICIT,
                                         .ph = dc->ph,
                                         .pw = dc->pw,
                                         .bias = run != 1,
                                         .dtype = run % 2 ? CVD_F32 : CVD_F64};
            const int64_t xs[4] = {run < 2 ? 1 : 3, dc->C, dc->H, dc->W};
            cvd_geom g;
            cvd_err e;
            assert_int_equal(cvd_geom_init(&g, &p, xs, "x", &e), CVD_OK);
            cvd_plan pl;
            assert_int_equal(cvd_plan_pass(&g, cvd_dtype_size(p.dtype), 0, path, 2, &pl, &e),
                             CVD_OK);
            assert_true(path == CVD_PATH_BLOCKED ? pl.blocked && pl.wgrad == 2 : pl.direct);
            check_vs_reference(&p, xs, &r, CVD_INIT_KAIMING_UNIFORM, 7 + c, 0, path, 0,
                               path == CVD_PATH_BLOCKED ? "blocked" : "direct", (int)c);
        }
    }
    cvd_set_num_threads(before);
}

/* The tile, tail and block edge cases above on the direct kernel (direct.c) and on the
 * channel-blocked one (blocked.c: partial filter blocks, partial tiles of a row, chunks of
 * channels, bands of rows, strides, dilation, groups, a 1x1), at every SIMD level. */
static void tiles_each_isa(cvd_path path)
{
    if (!cvd_direct_available())
        skip();
    const cvd_isa before = cvd_cpu_isa();
    cvd_isa isas[3];
    const int nisa = isa_levels(isas);
    for (int k = 0; k < nisa && isas[k] != CVD_ISA_NONE; k++) {
        assert_int_equal(cvd_cpu_force_isa(isas[k]), isas[k]);
        tiles_at_isa(path);
    }
    cvd_cpu_force_isa(before);
}

static void test_direct_tiles(void **state)
{
    (void)state;
    tiles_each_isa(CVD_PATH_DIRECT);
}

static void test_blocked_tiles(void **state)
{
    (void)state;
    tiles_each_isa(CVD_PATH_BLOCKED);
}

/* Which forward AUTO plans on the layer shapes behind blocked.c's choice, at every SIMD
 * level: resnet_deep (14 columns, 2/16 of the direct kernel's lanes idle at any width)
 * and a stride-2 layer of 13 columns (3/16) take the blocked kernel on AVX2 as on AVX-512;
 * resnet_mid (56 columns, whole AVX2 vectors) takes it on AVX-512 only; the stem's 3
 * channels never; none without a SIMD level. */
static void test_blocked_choice(void **state)
{
    (void)state;
    typedef struct choice {
        int64_t C, F, k, s, HW;
        int avx512, avx2;
    } choice;
    const choice cases[] = {
        {256, 256, 3, 1, 14, 1, 1}, /* resnet_deep */
        {64, 128, 3, 2, 26, 1, 1},  /* strided: 13 output columns */
        {64, 64, 3, 1, 56, 1, 0},   /* resnet_mid */
        {3, 64, 7, 2, 224, 0, 0},   /* the stem */
    };
    const cvd_isa before = cvd_cpu_isa();
    cvd_isa isas[3];
    const int nisa = isa_levels(isas);
    for (int k = 0; k < nisa; k++) {
        assert_int_equal(cvd_cpu_force_isa(isas[k]), isas[k]);
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
            for (int f32 = 0; f32 < 2; f32++) {
                const choice *ch = &cases[c];
                const cvd_conv2d_params p = {.in_channels = ch->C,
                                             .out_channels = ch->F,
                                             .groups = 1,
                                             .kh = ch->k,
                                             .kw = ch->k,
                                             .sh = ch->s,
                                             .sw = ch->s,
                                             .dh = 1,
                                             .dw = 1,
                                             .pad_mode = CVD_PAD_EXPLICIT,
                                             .ph = ch->k / 2,
                                             .pw = ch->k / 2,
                                             .bias = 1,
                                             .dtype = f32 ? CVD_F32 : CVD_F64};
                const int64_t xs[4] = {8, ch->C, ch->HW, ch->HW};
                cvd_geom g;
                cvd_err e;
                assert_int_equal(cvd_geom_init(&g, &p, xs, "x", &e), CVD_OK);
                cvd_plan pl;
                assert_int_equal(
                    cvd_plan_pass(&g, cvd_dtype_size(p.dtype), 0, CVD_PATH_AUTO, 2, &pl, &e),
                    CVD_OK);
                const int want = isas[k] == CVD_ISA_AVX512 ? ch->avx512
                                 : isas[k] == CVD_ISA_AVX2 ? ch->avx2
                                                           : 0;
                if (pl.blocked != want)
                    fail_msg("case %zu f32 %d at %s: blocked %d, want %d", c, f32,
                             cvd_cpu_isa_name(isas[k]), pl.blocked, want);
            }
    }
    cvd_cpu_force_isa(before);
}

/* dW on the padded plane (wgrad.c) leaves the junk columns' lanes out of its sums: an
 * infinite x in the last column, which tap column 0 never reads in a valid pair (pad 1),
 * must not reach dW there as 0*inf, at every SIMD level and in both dtypes. */
static void test_wgrad_plane_junk(void **state)
{
    (void)state;
    if (!cvd_direct_available())
        skip();
    const cvd_isa before = cvd_cpu_isa();
    cvd_isa isas[3];
    const int nisa = isa_levels(isas);
    const int64_t C = 8, F = 8, H = 4, W = 37, xs[4] = {1, C, H, W}, ys[4] = {1, F, H, W};
    double x[8 * 4 * 37], delta[8 * 4 * 37], dW[8 * 8 * 9];
    ref_rng r = {0x1a2b3c};
    for (int k = 0; k < nisa && isas[k] != CVD_ISA_NONE; k++) {
        assert_int_equal(cvd_cpu_force_isa(isas[k]), isas[k]);
        for (int d = 0; d < 2; d++) {
            const cvd_conv2d_params p = {.in_channels = C,
                                         .out_channels = F,
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
                                         .dtype = d ? CVD_F32 : CVD_F64};
            cvd_conv2d *l;
            cvd_err e;
            assert_int_equal(cvd_conv2d_create(&p, &l, &e), CVD_OK);
            cvd_conv2d_set_path(l, CVD_PATH_DIRECT);
            ref_fill(&r, x, C * H * W);
            ref_fill(&r, delta, F * H * W);
            x[(0 * H + 1) * W + W - 1] = INFINITY; /* channel 0, row 1, last column */
            cvd_tensor tx = tu_tensor(p.dtype, 4, xs, x), td = tu_tensor(p.dtype, 4, ys, delta);
            cvd_tensor tdW = tu_tensor(p.dtype, 4, cvd_conv2d_weight(l)->shape, NULL);
            const cvd_backward_opts o = {.need = CVD_NEED_DW};
            /* reported as not finite; dW holds the sums all the same */
            assert_int_equal(cvd_conv2d_backward(l, &tx, &td, &o, NULL, &tdW, NULL, &e),
                             CVD_ERR_NONFINITE);
            tu_to_double(&tdW, dW);
            /* tap (1, 2) reads it at output (1, W-1): the infinity does count there */
            for (int64_t f = 0; f < F; f++) {
                for (int64_t i = 0; i < 3; i++)
                    assert_true(isfinite(dW[((f * C + 0) * 3 + i) * 3 + 0]));
                assert_false(isfinite(dW[((f * C + 0) * 3 + 1) * 3 + 2]));
            }
            cvd_tensor_release(&tx), cvd_tensor_release(&td), cvd_tensor_release(&tdW);
            cvd_conv2d_free(l);
        }
    }
    cvd_cpu_force_isa(before);
}

/* Batches split by images across threads (cvd_plan_pass): every path — bands of rows,
 * bands in blocks of channels, chunks of small images (also chunks of 2 then 1 inside a
 * task of 3 images), 1x1, shifted — with groups, 2 and 3 threads, and images left over that are
 * split inside; forward, then all gradients, dx alone, or dW alone (dW sums per-task partials),
 * against the reference, with the plan checked to split. */
static void test_split_images(void **state)
{
    (void)state;
    typedef struct split_case {
        int64_t C, F, G, k, pad, H, W;
        int want_shift;
        int64_t chunk; /* images per chunk forced through the budget, or 0 */
        cvd_path path; /* forced: forward would take the direct kernel on most of them */
    } split_case;
    const split_case cases[] = {
        /* bands of output rows, P >= CVD_DIRECT_COLS */
        {6, 8, 2, 3, 1, 50, 47, 0, 0, CVD_PATH_IM2COL},
        {64, 64, 2, 3, 0, 10, 12, 0, 0, CVD_PATH_IM2COL}, /* chunks of small images */
        /* chunks of 2, then one image, in each task */
        {64, 64, 2, 3, 0, 10, 12, 0, 2, CVD_PATH_IM2COL},
        {48, 34, 2, 1, 0, 24, 24, 0, 0, CVD_PATH_IM2COL}, /* 1x1, in place */
        {64, 16, 2, 3, 1, 16, 18, 1, 0, CVD_PATH_SHIFT},  /* shifted GEMM */
        /* bands done in blocks of channels (CVD_KBLOCK_BYTES) */
        {64, 8, 1, 5, 2, 20, 20, 0, 0, CVD_PATH_IM2COL},
        /* the direct kernel forward (the default here), bands of rows backward */
        {6, 8, 2, 3, 1, 50, 47, 0, 0, CVD_PATH_AUTO},
        /* 1x1 on the own kernels (forced): one flat row of pixels a image */
        {48, 34, 2, 1, 0, 24, 24, 0, 0, CVD_PATH_DIRECT},
    };
    const unsigned needs[3] = {CVD_NEED_ALL, CVD_NEED_DX, CVD_NEED_DW};
    const int before = cvd_get_num_threads();
    ref_rng r = {0x5b1175};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int run = 0; run < 6; run++) {
            const split_case *sc = &cases[c];
            const int threads = 2 + run % 2, d = run / 2 % 2;
            cvd_set_num_threads(threads);
            const cvd_conv2d_params p = {.in_channels = sc->C,
                                         .out_channels = sc->F,
                                         .groups = sc->G,
                                         .kh = sc->k,
                                         .kw = sc->k,
                                         .sh = 1,
                                         .sw = 1,
                                         .dh = 1,
                                         .dw = 1,
                                         .pad_mode = CVD_PAD_EXPLICIT,
                                         .ph = sc->pad,
                                         .pw = sc->pad,
                                         .bias = 1,
                                         .dtype = d ? CVD_F32 : CVD_F64};
            /* 2 threads: 5 images = 2 per task + 1 split; 3 threads: 8 = 2 per task + 2
             * split; with forced chunks 3 per task (7 and 10). Each pass has more than
             * CVD_GEMM_SPLIT_MIN multiply-adds. */
            const int64_t n = sc->chunk ? (threads == 2 ? 7 : 10) : (threads == 2 ? 5 : 8);
            const int64_t xs[4] = {n, sc->C, sc->H, sc->W};
            cvd_geom g;
            cvd_err e;
            assert_int_equal(cvd_geom_init(&g, &p, xs, "x", &e), CVD_OK);
            const size_t es = cvd_dtype_size(p.dtype);
            const size_t budget = (size_t)(sc->chunk * (g.K + g.Fg) * g.P) * es;
            cvd_plan pl;
            assert_int_equal(cvd_plan_pass(&g, es, budget, sc->path, threads, &pl, &e), CVD_OK);
            assert_int_equal(pl.direct, c >= 6 && cvd_direct_available());
            assert_int_equal(pl.dgrad, c >= 6 && cvd_direct_available());
            assert_true(pl.rows[1] <= pl.rows[0]);
            assert_int_equal(pl.tasks, threads);
            assert_int_equal(pl.shifted, sc->want_shift);
            if (sc->chunk)
                assert_int_equal(pl.nb, sc->chunk);
            else
                assert_true(c == 1 ? pl.nb > 1 : pl.nb == 1);
            if (c == 5) /* a band's col is over the block size: a task does it in blocks */
                assert_true((size_t)(g.K * pl.rows[1] * g.OW) * es > CVD_KBLOCK_BYTES);
            check_vs_reference(&p, xs, &r, CVD_INIT_KAIMING_UNIFORM, 3 + c, budget, sc->path,
                               needs[run / 2], "split", (int)c);
        }
    }
    cvd_set_num_threads(before);
}

/* L = sum(y * delta) for the layer's current weights at input x. */
static double loss(cvd_conv2d *l, const cvd_tensor *x, cvd_tensor *y, const double *delta)
{
    cvd_err e;
    assert_int_equal(cvd_conv2d_forward(l, x, y, CVD_FWD_NO_CACHE, &e), CVD_OK);
    const double *yv = y->data;
    double s = 0;
    for (int64_t i = 0; i < cvd_tensor_numel(y); i++)
        s += yv[i] * delta[i];
    return s;
}

/* Central differences on every element of a; compares with the analytic gradient. */
static void fd_check(cvd_conv2d *l, cvd_tensor *x, cvd_tensor *y, const double *delta, double *a,
                     int64_t n, const double *grad, const cvd_tensor *W, const cvd_tensor *b,
                     const char *what)
{
    const double h = 1e-5;
    cvd_err e;
    for (int64_t i = 0; i < n; i++) {
        double keep = a[i];
        a[i] = keep + h;
        if (W)
            assert_int_equal(cvd_conv2d_set_weights(l, W, b, &e), CVD_OK);
        double lp = loss(l, x, y, delta);
        a[i] = keep - h;
        if (W)
            assert_int_equal(cvd_conv2d_set_weights(l, W, b, &e), CVD_OK);
        double lm = loss(l, x, y, delta);
        a[i] = keep;
        double fd = (lp - lm) / (2 * h);
        if (!(fabs(fd - grad[i]) <= 1e-6 * (1 + fabs(grad[i])))) {
            fprintf(stderr, "%s[%lld]: finite difference %.12g vs analytic %.12g\n", what,
                    (long long)i, fd, grad[i]);
            fail();
        }
    }
    if (W)
        assert_int_equal(cvd_conv2d_set_weights(l, W, b, &e), CVD_OK);
}

static void test_finite_differences(void **state)
{
    (void)state;
    ref_rng r = {0xfd0001ull};
    const cvd_conv2d_params cases[] = {
        {.in_channels = 2,
         .out_channels = 3,
         .groups = 1,
         .kh = 3,
         .kw = 2,
         .sh = 1,
         .sw = 2,
         .dh = 1,
         .dw = 1,
         .pad_mode = CVD_PAD_EXPLICIT,
         .ph = 1,
         .pw = 0,
         .bias = 1},
        {.in_channels = 4,
         .out_channels = 2,
         .groups = 2,
         .kh = 2,
         .kw = 2,
         .sh = 2,
         .sw = 1,
         .dh = 2,
         .dw = 1,
         .pad_mode = CVD_PAD_EXPLICIT,
         .ph = 1,
         .pw = 2,
         .bias = 1},
        {.in_channels = 1,
         .out_channels = 2,
         .groups = 1,
         .kh = 4,
         .kw = 3,
         .sh = 1,
         .sw = 1,
         .dh = 1,
         .dw = 2,
         .pad_mode = CVD_PAD_SAME,
         .bias = 0},
        {.in_channels = 3,
         .out_channels = 3,
         .groups = 3,
         .kh = 1,
         .kw = 1,
         .sh = 1,
         .sw = 1,
         .dh = 1,
         .dw = 1,
         .pad_mode = CVD_PAD_VALID,
         .bias = 1},
        {.in_channels = 2,
         .out_channels = 2,
         .groups = 1,
         .kh = 3,
         .kw = 3,
         .sh = 3,
         .sw = 2,
         .dh = 1,
         .dw = 1,
         .pad_mode = CVD_PAD_EXPLICIT,
         .ph = 2,
         .pw = 1,
         .bias = 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        cvd_conv2d_params p = cases[c];
        p.dtype = CVD_F64;
        const int64_t xs[4] = {2, p.in_channels, 5, 6};
        int64_t ys[4];
        cvd_err e;
        assert_int_equal(cvd_conv2d_output_shape(&p, xs, ys, &e), CVD_OK);
        cvd_conv2d *l;
        assert_int_equal(cvd_conv2d_create(&p, &l, &e), CVD_OK);
        assert_int_equal(cvd_conv2d_init(l, CVD_INIT_NORMAL, 7 + c, &e), CVD_OK);
        cvd_tensor W =
            tu_tensor(CVD_F64, 4, cvd_conv2d_weight(l)->shape, cvd_conv2d_weight(l)->data);
        const int64_t bs[1] = {p.out_channels};
        cvd_tensor b = tu_tensor(CVD_F64, 1, bs, NULL);
        ref_fill(&r, b.data, p.out_channels);
        assert_int_equal(cvd_conv2d_set_weights(l, &W, p.bias ? &b : NULL, &e), CVD_OK);
        cvd_tensor x = tu_tensor(CVD_F64, 4, xs, NULL), y = tu_tensor(CVD_F64, 4, ys, NULL);
        ref_fill(&r, x.data, cvd_tensor_numel(&x));
        cvd_tensor delta = tu_tensor(CVD_F64, 4, ys, NULL);
        ref_fill(&r, delta.data, cvd_tensor_numel(&delta));
        cvd_tensor dx = tu_tensor(CVD_F64, 4, xs, NULL);
        cvd_tensor dW = tu_tensor(CVD_F64, 4, W.shape, NULL);
        cvd_tensor db = tu_tensor(CVD_F64, 1, bs, NULL);
        cvd_backward_opts o = {.need = p.bias ? CVD_NEED_ALL : CVD_NEED_DX | CVD_NEED_DW};
        assert_int_equal(cvd_conv2d_backward(l, &x, &delta, &o, &dx, &dW, p.bias ? &db : NULL, &e),
                         CVD_OK);
        fd_check(l, &x, &y, delta.data, x.data, cvd_tensor_numel(&x), dx.data, NULL, NULL, "dx");
        fd_check(l, &x, &y, delta.data, W.data, cvd_tensor_numel(&W), dW.data, &W,
                 p.bias ? &b : NULL, "dW");
        if (p.bias)
            fd_check(l, &x, &y, delta.data, b.data, p.out_channels, db.data, &W, &b, "db");
        cvd_tensor *all[] = {&W, &b, &x, &y, &delta, &dx, &dW, &db};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            cvd_tensor_release(all[i]);
        cvd_conv2d_free(l);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_vs_reference), cmocka_unit_test(test_parallel_bands),
        cmocka_unit_test(test_split_images),        cmocka_unit_test(test_direct_tiles),
        cmocka_unit_test(test_blocked_tiles),       cmocka_unit_test(test_wgrad_plane_junk),
        cmocka_unit_test(test_shift_default),       cmocka_unit_test(test_finite_differences),
        cmocka_unit_test(test_blocked_choice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
