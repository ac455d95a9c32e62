/*
 * test_validate.c — every rejection path of the core: status names and dtype facts,
 * padding resolution, parameter checks, tensor shapes, forward/backward/set_weights
 * argument errors. Each rejection must return its status, name the field in the message,
 * and change nothing (weights, bias, cache).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/cvd.h"
#include "tutil.h"

static void expect_err(cvd_status got, cvd_status want, const cvd_err *e, const char *needle)
{
    if (got != want || !strstr(e->msg, needle)) {
        print_error("status %d (want %d), message \"%s\" (want it to name \"%s\")\n", got, want,
                    e->msg, needle);
        fail();
    }
}

static void test_strerror_and_dtype(void **state)
{
    (void)state;
    const cvd_status all[] = {CVD_OK,           CVD_ERR_NOMEM,     CVD_ERR_INVALID,  CVD_ERR_SHAPE,
                              CVD_ERR_NO_CACHE, CVD_ERR_NONFINITE, CVD_ERR_TOO_LARGE};
    const size_t n = sizeof all / sizeof all[0];
    for (size_t i = 0; i < n; i++) {
        assert_non_null(cvd_strerror(all[i]));
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(cvd_strerror(all[i]), cvd_strerror(all[j]));
    }
    assert_string_equal(cvd_strerror(CVD_OK), "ok");
    assert_non_null(cvd_strerror((cvd_status)99));
    assert_int_equal(cvd_dtype_size(CVD_F32), 4);
    assert_int_equal(cvd_dtype_size(CVD_F64), 8);
    assert_int_equal(cvd_dtype_size((cvd_dtype)0), 0);
    assert_string_equal(cvd_dtype_name(CVD_F32), "float32");
    assert_string_equal(cvd_dtype_name(CVD_F64), "float64");
    assert_null(cvd_dtype_name((cvd_dtype)3));
}

static void test_padding(void **state)
{
    (void)state;
    cvd_conv2d_params p = {.kh = 3, .kw = 4, .dh = 1, .dw = 1, .ph = 2, .pw = 5};
    int64_t t, b, l, r;
    p.pad_mode = CVD_PAD_EXPLICIT;
    cvd_conv2d_padding(&p, &t, &b, &l, &r);
    assert_true(t == 2 && b == 2 && l == 5 && r == 5);
    p.pad_mode = CVD_PAD_VALID;
    cvd_conv2d_padding(&p, &t, &b, &l, &r);
    assert_true(t == 0 && b == 0 && l == 0 && r == 0);
    /* same: total d*(k-1); the odd one goes bottom/right (kw=4: 1 left, 2 right). */
    p.pad_mode = CVD_PAD_SAME;
    cvd_conv2d_padding(&p, &t, &b, &l, &r);
    assert_true(t == 1 && b == 1 && l == 1 && r == 2);
    p.dh = 3; /* total 6 */
    p.dw = 3; /* total 9 */
    cvd_conv2d_padding(&p, &t, &b, &l, &r);
    assert_true(t == 3 && b == 3 && l == 4 && r == 5);
    cvd_conv2d_padding(&p, NULL, &b, NULL, NULL); /* outputs are optional */
    assert_int_equal(b, 3);
    /* "same" keeps the size; the output shape agrees. */
    p = (cvd_conv2d_params){.in_channels = 2,
                            .out_channels = 1,
                            .groups = 1,
                            .kh = 4,
                            .kw = 5,
                            .sh = 1,
                            .sw = 1,
                            .dh = 2,
                            .dw = 1,
                            .pad_mode = CVD_PAD_SAME,
                            .dtype = CVD_F64};
    const int64_t xs[4] = {3, 2, 7, 9};
    int64_t ys[4];
    cvd_err e;
    assert_int_equal(cvd_conv2d_output_shape(&p, xs, ys, &e), CVD_OK);
    assert_true(ys[0] == 3 && ys[1] == 1 && ys[2] == 7 && ys[3] == 9);
}

static cvd_conv2d_params base_params(void)
{
    return (cvd_conv2d_params){.in_channels = 2,
                               .out_channels = 4,
                               .groups = 2,
                               .kh = 3,
                               .kw = 2,
                               .sh = 1,
                               .sw = 1,
                               .dh = 1,
                               .dw = 1,
                               .pad_mode = CVD_PAD_EXPLICIT,
                               .ph = 1,
                               .pw = 0,
                               .bias = 1,
                               .dtype = CVD_F64};
}

static void test_params_check(void **state)
{
    (void)state;
    cvd_err e;
    cvd_conv2d_params p = base_params();
    assert_int_equal(cvd_conv2d_params_check(&p, &e), CVD_OK);
    assert_int_equal(cvd_conv2d_params_check(&p, NULL), CVD_OK);
    struct {
        cvd_conv2d_params p;
        cvd_status s;
        const char *field;
    } bad[16];
    size_t n = 0;
#define BAD(stmt, st, fld)                                                                         \
    do {                                                                                           \
        bad[n].p = base_params();                                                                  \
        cvd_conv2d_params *q = &bad[n].p;                                                          \
        stmt;                                                                                      \
        bad[n].s = st;                                                                             \
        bad[n++].field = fld;                                                                      \
    } while (0)
    BAD(q->in_channels = 0, CVD_ERR_INVALID, "in_channels");
    BAD(q->out_channels = -3, CVD_ERR_INVALID, "out_channels");
    BAD(q->groups = 0, CVD_ERR_INVALID, "groups");
    BAD(q->kh = 0, CVD_ERR_INVALID, "kernel_size[0]");
    BAD(q->kw = (int64_t)1 << 40, CVD_ERR_INVALID, "kernel_size[1]");
    BAD(q->sh = 0, CVD_ERR_INVALID, "stride[0]");
    BAD(q->sw = -1, CVD_ERR_INVALID, "stride[1]");
    BAD(q->dh = 0, CVD_ERR_INVALID, "dilation[0]");
    BAD(q->dw = 0, CVD_ERR_INVALID, "dilation[1]");
    BAD(q->ph = -1, CVD_ERR_INVALID, "padding[0]");
    BAD(q->pw = (int64_t)1 << 35, CVD_ERR_INVALID, "padding[1]");
    BAD((q->pad_mode = CVD_PAD_SAME, q->sh = 2), CVD_ERR_INVALID, "same");
    BAD(q->pad_mode = (cvd_pad_mode)7, CVD_ERR_INVALID, "padding");
    BAD(q->dtype = (cvd_dtype)5, CVD_ERR_INVALID, "dtype");
    BAD(q->in_channels = 3, CVD_ERR_INVALID, "in_channels=3 is not divisible by groups=2");
    BAD((q->in_channels = (int64_t)1 << 30, q->groups = 1, q->kh = q->kw = 64), CVD_ERR_TOO_LARGE,
        "in_channels");
#undef BAD
    for (size_t i = 0; i < n; i++) {
        cvd_conv2d *l = NULL;
        expect_err(cvd_conv2d_params_check(&bad[i].p, &e), bad[i].s, &e, bad[i].field);
        expect_err(cvd_conv2d_create(&bad[i].p, &l, &e), bad[i].s, &e, bad[i].field);
        assert_null(l);
    }
    p = base_params();
    p.out_channels = 3;
    expect_err(cvd_conv2d_params_check(&p, &e), CVD_ERR_INVALID, &e, "out_channels");
    expect_err(cvd_conv2d_params_check(NULL, &e), CVD_ERR_INVALID, &e, "NULL");
    p = base_params();
    expect_err(cvd_conv2d_create(&p, NULL, &e), CVD_ERR_INVALID, &e, "out");
}

static void test_output_shape(void **state)
{
    (void)state;
    cvd_conv2d_params p = base_params();
    cvd_err e;
    int64_t ys[4];
    const int64_t ok[4] = {2, 2, 5, 4};
    assert_int_equal(cvd_conv2d_output_shape(&p, ok, ys, &e), CVD_OK);
    assert_true(ys[0] == 2 && ys[1] == 4 && ys[2] == 5 && ys[3] == 3);
    const int64_t chan[4] = {2, 3, 5, 4};
    expect_err(cvd_conv2d_output_shape(&p, chan, ys, &e), CVD_ERR_SHAPE, &e,
               "x has 3 channels but the layer has in_channels=2; send x shaped (N,2,H,W)");
    const int64_t small[4] = {1, 2, 5, 1}; /* kw=2 needs W >= 2 with no padding */
    expect_err(cvd_conv2d_output_shape(&p, small, ys, &e), CVD_ERR_SHAPE, &e, "kernel");
    p.dh = 4; /* dilated kernel 9 tall; with padding 1+1 an input of 6 is too small */
    const int64_t short_x[4] = {1, 2, 6, 4};
    expect_err(cvd_conv2d_output_shape(&p, short_x, ys, &e), CVD_ERR_SHAPE, &e, "9x2");
    const int64_t fits[4] = {1, 2, 7, 4};
    assert_int_equal(cvd_conv2d_output_shape(&p, fits, ys, &e), CVD_OK);
    assert_int_equal(ys[2], 1);
    p = base_params();
    const int64_t zero[4] = {0, 2, 5, 4};
    expect_err(cvd_conv2d_output_shape(&p, zero, ys, &e), CVD_ERR_INVALID, &e, "N = 0");
    const int64_t huge[4] = {1, 2, (int64_t)1 << 40, 4};
    expect_err(cvd_conv2d_output_shape(&p, huge, ys, &e), CVD_ERR_TOO_LARGE, &e, "H");
    /* Each dim fits but one image's pixels overflow BLAS's int. */
    const int64_t wide[4] = {1, 2, 1 << 20, 1 << 20};
    expect_err(cvd_conv2d_output_shape(&p, wide, ys, &e), CVD_ERR_TOO_LARGE, &e, "pixels");
}

static void test_tensor_basics(void **state)
{
    (void)state;
    cvd_err e;
    int64_t n;
    const int64_t s3[3] = {2, 3, 4};
    assert_int_equal(cvd_shape_numel(3, s3, &n, &e), CVD_OK);
    assert_int_equal(n, 24);
    expect_err(cvd_shape_numel(0, s3, &n, &e), CVD_ERR_INVALID, &e, "rank");
    expect_err(cvd_shape_numel(5, s3, &n, &e), CVD_ERR_INVALID, &e, "rank");
    const int64_t zero[2] = {2, 0};
    expect_err(cvd_shape_numel(2, zero, &n, &e), CVD_ERR_INVALID, &e, "dim 1");
    const int64_t big[3] = {(int64_t)1 << 40, (int64_t)1 << 30, 2};
    expect_err(cvd_shape_numel(3, big, &n, &e), CVD_ERR_TOO_LARGE, &e, "overflow");
    const int64_t bytes[2] = {(int64_t)1 << 31, (int64_t)1 << 31}; /* 2^62 elements */
    expect_err(cvd_shape_numel(2, bytes, &n, &e), CVD_ERR_TOO_LARGE, &e, "too large");
    cvd_tensor t;
    assert_int_equal(cvd_tensor_alloc(&t, CVD_F32, 3, s3, &e), CVD_OK);
    assert_true(t.rank == 3 && t.dtype == CVD_F32 && t.shape[3] == 0 && t.data);
    assert_int_equal(cvd_tensor_numel(&t), 24);
    cvd_tensor_release(&t);
    assert_null(t.data);
    cvd_tensor_release(&t); /* twice is harmless */
    cvd_tensor_release(NULL);
    assert_int_equal(cvd_tensor_numel(&t), 0);
    expect_err(cvd_tensor_alloc(&t, (cvd_dtype)9, 3, s3, &e), CVD_ERR_INVALID, &e, "dtype");
    cvd_conv2d_free(NULL);
}

/* A layer with weights, bias and a cached forward input, plus a snapshot to compare. */
typedef struct fixture {
    cvd_conv2d *l;
    cvd_tensor x, y, delta, dx, dW, db;
    double W0[64], b0[8], dW0[64];
} fixture;

static void snapshot_dw(fixture *f, double *out)
{
    cvd_err e;
    cvd_backward_opts o = {.need = CVD_NEED_DW};
    assert_int_equal(cvd_conv2d_backward(f->l, NULL, &f->delta, &o, NULL, &f->dW, NULL, &e),
                     CVD_OK);
    tu_to_double(&f->dW, out);
}

static void fixture_make(fixture *f, cvd_dtype dt)
{
    memset(f, 0, sizeof *f);
    cvd_conv2d_params p = base_params();
    p.dtype = dt;
    cvd_err e;
    assert_int_equal(cvd_conv2d_create(&p, &f->l, &e), CVD_OK);
    assert_int_equal(cvd_conv2d_init(f->l, CVD_INIT_KAIMING_UNIFORM, 3, &e), CVD_OK);
    const int64_t xs[4] = {2, 2, 5, 4}, ys[4] = {2, 4, 5, 3}, bs[1] = {4};
    double xv[80], dv[120];
    for (int i = 0; i < 80; i++)
        xv[i] = (i % 7) - 3;
    for (int i = 0; i < 120; i++)
        dv[i] = (i % 5) - 2;
    f->x = tu_tensor(dt, 4, xs, xv);
    f->y = tu_tensor(dt, 4, ys, NULL);
    f->delta = tu_tensor(dt, 4, ys, dv);
    f->dx = tu_tensor(dt, 4, xs, NULL);
    f->dW = tu_tensor(dt, 4, cvd_conv2d_weight(f->l)->shape, NULL);
    f->db = tu_tensor(dt, 1, bs, NULL);
    assert_int_equal(cvd_conv2d_forward(f->l, &f->x, &f->y, 0, &e), CVD_OK);
    tu_to_double(cvd_conv2d_weight(f->l), f->W0);
    tu_to_double(cvd_conv2d_bias(f->l), f->b0);
    snapshot_dw(f, f->dW0);
}

/* Weights, bias and cache (shape and contents, through dW) are as fixture_make left them. */
static void fixture_unchanged(fixture *f)
{
    double now[64];
    tu_to_double(cvd_conv2d_weight(f->l), now);
    assert_memory_equal(now, f->W0, 16 * sizeof(double));
    tu_to_double(cvd_conv2d_bias(f->l), now);
    assert_memory_equal(now, f->b0, 4 * sizeof(double));
    int64_t cs[4];
    assert_int_equal(cvd_conv2d_has_cache(f->l, cs), 1);
    assert_memory_equal(cs, f->x.shape, sizeof cs);
    snapshot_dw(f, now);
    assert_memory_equal(now, f->dW0, 16 * sizeof(double));
}

static void fixture_free(fixture *f)
{
    cvd_tensor *all[] = {&f->x, &f->y, &f->delta, &f->dx, &f->dW, &f->db};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        cvd_tensor_release(all[i]);
    cvd_conv2d_free(f->l);
}

static void test_forward_rejections(void **state)
{
    (void)state;
    for (int d = 0; d < 2; d++) {
        cvd_dtype dt = d ? CVD_F32 : CVD_F64, other = d ? CVD_F64 : CVD_F32;
        fixture f;
        fixture_make(&f, dt);
        cvd_err e;
        const int64_t xs[4] = {1, 2, 5, 4}, ys[4] = {1, 4, 5, 3};
        cvd_tensor x = tu_tensor(dt, 4, xs, NULL), y = tu_tensor(dt, 4, ys, NULL);
        cvd_tensor xo = tu_tensor(other, 4, xs, NULL), yo = tu_tensor(other, 4, ys, NULL);
        const int64_t x3s[3] = {2, 5, 4}, xcs[4] = {1, 3, 5, 4}, xsm[4] = {1, 2, 5, 1};
        cvd_tensor x3 = tu_tensor(dt, 3, x3s, NULL), xc = tu_tensor(dt, 4, xcs, NULL);
        cvd_tensor xsmall = tu_tensor(dt, 4, xsm, NULL);
        const int64_t ybs[4] = {1, 4, 5, 2};
        cvd_tensor ybad = tu_tensor(dt, 4, ybs, NULL);
        cvd_tensor nodata = x;
        nodata.data = NULL;

        expect_err(cvd_conv2d_forward(f.l, NULL, &y, 0, &e), CVD_ERR_INVALID, &e, "x");
        expect_err(cvd_conv2d_forward(f.l, &nodata, &y, 0, &e), CVD_ERR_INVALID, &e, "x");
        expect_err(cvd_conv2d_forward(f.l, &x, NULL, 0, &e), CVD_ERR_INVALID, &e, "y");
        expect_err(cvd_conv2d_forward(f.l, &xo, &y, 0, &e), CVD_ERR_INVALID, &e, "x is");
        expect_err(cvd_conv2d_forward(f.l, &x, &yo, 0, &e), CVD_ERR_INVALID, &e, "y is");
        expect_err(cvd_conv2d_forward(f.l, &x3, &y, 0, &e), CVD_ERR_SHAPE, &e, "rank 4");
        expect_err(cvd_conv2d_forward(f.l, &xc, &y, 0, &e), CVD_ERR_SHAPE, &e,
                   "x has 3 channels but the layer has in_channels=2");
        expect_err(cvd_conv2d_forward(f.l, &xsmall, &y, 0, &e), CVD_ERR_SHAPE, &e, "kernel");
        expect_err(cvd_conv2d_forward(f.l, &x, &ybad, 0, &e), CVD_ERR_SHAPE, &e,
                   "y has shape (1,4,5,2) but the output for x has shape (1,4,5,3)");
        expect_err(cvd_conv2d_forward(f.l, &x, &y, 8u, &e), CVD_ERR_INVALID, &e, "flags");
        fixture_unchanged(&f);
        /* A successful forward that asks not to cache leaves the cache too. */
        assert_int_equal(cvd_conv2d_forward(f.l, &x, &y, CVD_FWD_NO_CACHE, &e), CVD_OK);
        fixture_unchanged(&f);
        cvd_tensor *all[] = {&x, &y, &xo, &yo, &x3, &xc, &xsmall, &ybad};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            cvd_tensor_release(all[i]);
        fixture_free(&f);
    }
}

static void test_backward_rejections(void **state)
{
    (void)state;
    for (int d = 0; d < 2; d++) {
        cvd_dtype dt = d ? CVD_F32 : CVD_F64, other = d ? CVD_F64 : CVD_F32;
        fixture f;
        fixture_make(&f, dt);
        cvd_err e;
        cvd_backward_opts all = {.need = CVD_NEED_ALL}, o;
        const int64_t ys[4] = {2, 4, 5, 2}, xs[4] = {2, 2, 5, 3}, ws[4] = {4, 1, 3, 3};
        const int64_t bs2[2] = {4, 2}, bs1[1] = {4};
        cvd_tensor dbad = tu_tensor(dt, 4, ys, NULL), dxbad = tu_tensor(dt, 4, xs, NULL);
        cvd_tensor dWbad = tu_tensor(dt, 4, ws, NULL), dbbad = tu_tensor(dt, 2, bs2, NULL);
        cvd_tensor dxo = tu_tensor(other, 4, f.x.shape, NULL);
        cvd_tensor dWo = tu_tensor(other, 4, f.dW.shape, NULL);
        cvd_tensor dbo = tu_tensor(other, 1, bs1, NULL);
        cvd_tensor deltao = tu_tensor(other, 4, f.delta.shape, NULL);
        cvd_tensor *dx = &f.dx, *dW = &f.dW, *db = &f.db;

        expect_err(cvd_conv2d_backward(f.l, NULL, &f.delta, NULL, dx, dW, db, &e), CVD_ERR_INVALID,
                   &e, "options");
        o = (cvd_backward_opts){.need = 0};
        expect_err(cvd_conv2d_backward(f.l, NULL, &f.delta, &o, dx, dW, db, &e), CVD_ERR_INVALID,
                   &e, "need");
        o = (cvd_backward_opts){.need = 8};
        expect_err(cvd_conv2d_backward(f.l, NULL, &f.delta, &o, dx, dW, db, &e), CVD_ERR_INVALID,
                   &e, "need");
        const double bad_lr[] = {-1.0, NAN, INFINITY};
        for (int i = 0; i < 3; i++) {
            o = (cvd_backward_opts){.need = CVD_NEED_ALL, .sgd = 1, .lr = bad_lr[i]};
            expect_err(cvd_conv2d_backward(f.l, NULL, &f.delta, &o, dx, dW, db, &e),
                       CVD_ERR_INVALID, &e, "lr");
        }
        expect_err(cvd_conv2d_backward(f.l, NULL, NULL, &all, dx, dW, db, &e), CVD_ERR_INVALID, &e,
                   "delta");
        expect_err(cvd_conv2d_backward(f.l, NULL, &deltao, &all, dx, dW, db, &e), CVD_ERR_INVALID,
                   &e, "delta is");
        expect_err(cvd_conv2d_backward(f.l, NULL, &dbad, &all, dx, dW, db, &e), CVD_ERR_SHAPE, &e,
                   "delta has shape (2,4,5,2) but the output y of this x has shape (2,4,5,3)");
        expect_err(cvd_conv2d_backward(f.l, NULL, &f.delta, &all, NULL, dW, db, &e),
                   CVD_ERR_INVALID, &e, "dx");
        expect_err(cvd_conv2d_backward(f.l, NULL, &f.delta, &all, &dxbad, dW, db, &e),
                   CVD_ERR_SHAPE, &e, "dx has shape (2,2,5,3) but x has shape (2,2,5,4)");
        expect_err(cvd_conv2d_backward(f.l, NULL, &f.delta, &all, &dxo, dW, db, &e),
                   CVD_ERR_INVALID, &e, "dx is");
        expect_err(cvd_conv2d_backward(f.l, NULL, &f.delta, &all, dx, NULL, db, &e),
                   CVD_ERR_INVALID, &e, "dW");
        expect_err(cvd_conv2d_backward(f.l, NULL, &f.delta, &all, dx, &dWbad, db, &e),
                   CVD_ERR_INVALID, &e, "dW has shape (4,1,3,3)");
        expect_err(cvd_conv2d_backward(f.l, NULL, &f.delta, &all, dx, &dWo, db, &e),
                   CVD_ERR_INVALID, &e, "dW is");
        expect_err(cvd_conv2d_backward(f.l, NULL, &f.delta, &all, dx, dW, NULL, &e),
                   CVD_ERR_INVALID, &e, "db");
        expect_err(cvd_conv2d_backward(f.l, NULL, &f.delta, &all, dx, dW, &dbbad, &e),
                   CVD_ERR_INVALID, &e, "db has shape (4,2)");
        expect_err(cvd_conv2d_backward(f.l, NULL, &f.delta, &all, dx, dW, &dbo, &e),
                   CVD_ERR_INVALID, &e, "db is");
        /* An explicit x is checked like a forward input. */
        const int64_t xcs[4] = {2, 3, 5, 4};
        cvd_tensor xc = tu_tensor(dt, 4, xcs, NULL);
        expect_err(cvd_conv2d_backward(f.l, &xc, &f.delta, &all, dx, dW, db, &e), CVD_ERR_SHAPE, &e,
                   "x has 3 channels");
        /* The same with an SGD step requested: still nothing changes. */
        o = (cvd_backward_opts){.need = CVD_NEED_ALL, .sgd = 1, .lr = 0.5};
        expect_err(cvd_conv2d_backward(f.l, NULL, &dbad, &o, dx, dW, db, &e), CVD_ERR_SHAPE, &e,
                   "delta");
        fixture_unchanged(&f);

        /* No bias: db cannot be asked for; a fresh layer has no cache. */
        cvd_conv2d_params p = base_params();
        p.bias = 0;
        p.dtype = dt;
        cvd_conv2d *l;
        assert_int_equal(cvd_conv2d_create(&p, &l, &e), CVD_OK);
        assert_null(cvd_conv2d_bias(l));
        assert_int_equal(cvd_conv2d_has_cache(l, NULL), 0);
        expect_err(cvd_conv2d_backward(l, &f.x, &f.delta, &all, dx, dW, db, &e), CVD_ERR_INVALID,
                   &e, "bias=false");
        o = (cvd_backward_opts){.need = CVD_NEED_DX};
        expect_err(cvd_conv2d_backward(l, NULL, &f.delta, &o, dx, NULL, NULL, &e), CVD_ERR_NO_CACHE,
                   &e, "forward");
        assert_int_equal(cvd_conv2d_backward(l, &f.x, &f.delta, &o, dx, NULL, NULL, &e), CVD_OK);
        assert_int_equal(cvd_conv2d_has_cache(l, NULL), 0); /* stateless use caches nothing */
        cvd_conv2d_free(l);
        cvd_tensor *rel[] = {&dbad, &dxbad, &dWbad, &dbbad, &dxo, &dWo, &dbo, &deltao, &xc};
        for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++)
            cvd_tensor_release(rel[i]);
        fixture_free(&f);
    }
}

static void test_set_weights_rejections(void **state)
{
    (void)state;
    fixture f;
    fixture_make(&f, CVD_F32);
    cvd_err e;
    const int64_t ws[4] = {4, 1, 3, 2}, w3[3] = {4, 3, 2}, wbad[4] = {4, 2, 3, 1};
    const int64_t bs[1] = {4}, bs2[2] = {4, 1}, bbad[1] = {3};
    double wv[24], bv[4] = {1, 2, 3, 4};
    for (int i = 0; i < 24; i++)
        wv[i] = 0.25 * i;
    cvd_tensor W = tu_tensor(CVD_F64, 4, ws, wv), Wr3 = tu_tensor(CVD_F64, 3, w3, wv);
    cvd_tensor Wbad = tu_tensor(CVD_F64, 4, wbad, wv), b = tu_tensor(CVD_F64, 1, bs, bv);
    cvd_tensor b2 = tu_tensor(CVD_F32, 2, bs2, bv), bb = tu_tensor(CVD_F64, 1, bbad, bv);
    cvd_tensor Winf = tu_tensor(CVD_F64, 4, ws, wv), binf = tu_tensor(CVD_F64, 1, bs, bv);
    ((double *)Winf.data)[5] = 1e300; /* finite in float64, not in the layer's float32 */
    ((double *)binf.data)[2] = NAN;
    cvd_tensor Wdt = W;
    Wdt.dtype = (cvd_dtype)0;

    expect_err(cvd_conv2d_set_weights(f.l, NULL, &b, &e), CVD_ERR_INVALID, &e, "W");
    expect_err(cvd_conv2d_set_weights(f.l, &Wbad, &b, &e), CVD_ERR_INVALID, &e,
               "W has shape (4,2,3,1) but the layer needs (F,C/groups,kh,kw) = (4,1,3,2)");
    expect_err(cvd_conv2d_set_weights(f.l, &Wdt, &b, &e), CVD_ERR_INVALID, &e, "W has an unknown");
    expect_err(cvd_conv2d_set_weights(f.l, &Winf, &b, &e), CVD_ERR_INVALID, &e, "not finite");
    /* A good W with a bad b: W must not be half-applied. */
    expect_err(cvd_conv2d_set_weights(f.l, &W, &bb, &e), CVD_ERR_INVALID, &e, "b has shape (3)");
    expect_err(cvd_conv2d_set_weights(f.l, &W, &binf, &e), CVD_ERR_INVALID, &e, "b has a value");
    fixture_unchanged(&f);

    /* Accepted forms: rank 3 when C/g == 1, b as (F, 1), other dtype converted. */
    assert_int_equal(cvd_conv2d_set_weights(f.l, &Wr3, &b2, &e), CVD_OK);
    double got[24];
    tu_to_double(cvd_conv2d_weight(f.l), got);
    assert_memory_equal(got, wv, sizeof wv);
    tu_to_double(cvd_conv2d_bias(f.l), got);
    assert_memory_equal(got, bv, sizeof bv);
    /* b NULL leaves b as it is. */
    assert_int_equal(cvd_conv2d_set_weights(f.l, &W, NULL, &e), CVD_OK);
    tu_to_double(cvd_conv2d_bias(f.l), got);
    assert_memory_equal(got, bv, sizeof bv);

    /* Rank 3 is refused when C/g > 1; b is refused on a layer without bias. */
    cvd_conv2d_params p = base_params();
    p.groups = 1;
    p.bias = 0;
    cvd_conv2d *l;
    assert_int_equal(cvd_conv2d_create(&p, &l, &e), CVD_OK);
    const int64_t w3b[3] = {4, 3, 2}, w4b[4] = {4, 2, 3, 2};
    double wv2[48] = {0};
    cvd_tensor W3b = tu_tensor(CVD_F64, 3, w3b, wv2), W4b = tu_tensor(CVD_F64, 4, w4b, wv2);
    expect_err(cvd_conv2d_set_weights(l, &W3b, NULL, &e), CVD_ERR_INVALID, &e,
               "W has shape (4,3,2)");
    expect_err(cvd_conv2d_set_weights(l, &W4b, &b, &e), CVD_ERR_INVALID, &e, "bias=false");
    assert_int_equal(cvd_conv2d_set_weights(l, &W4b, NULL, &e), CVD_OK);
    cvd_conv2d_free(l);
    cvd_tensor *rel[] = {&W, &Wr3, &Wbad, &b, &b2, &bb, &Winf, &binf, &W3b, &W4b};
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++)
        cvd_tensor_release(rel[i]);
    fixture_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror_and_dtype),  cmocka_unit_test(test_padding),
        cmocka_unit_test(test_params_check),        cmocka_unit_test(test_output_shape),
        cmocka_unit_test(test_tensor_basics),       cmocka_unit_test(test_forward_rejections),
        cmocka_unit_test(test_backward_rejections), cmocka_unit_test(test_set_weights_rejections),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
