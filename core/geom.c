/*
 * geom.c — every range and shape rule of a conv layer, checked once: layer parameters
 * (cvd_conv2d_params_check), padding resolution ("valid", "same", explicit), output shape,
 * and the resolved geometry (cvd_geom) plus batch-chunk size the kernels run on. After
 * cvd_geom_init succeeds, every GEMM dimension and leading dimension fits in int.
 */
#include "cvd_internal.h"

#include <limits.h>

static cvd_status check_dim(const char *field, int64_t v, int64_t min, cvd_err *err)
{
    if (v < min)
        return cvd_err_setf(err, CVD_ERR_INVALID, "%s is %lld; it must be >= %lld", field,
                            (long long)v, (long long)min);
    if (v > CVD_MAX_DIM)
        return cvd_err_setf(err, CVD_ERR_INVALID, "%s is %lld; it must be <= %lld", field,
                            (long long)v, (long long)CVD_MAX_DIM);
    return CVD_OK;
}

cvd_status cvd_conv2d_params_check(const cvd_conv2d_params *p, cvd_err *err)
{
    if (!p)
        return cvd_err_setf(err, CVD_ERR_INVALID, "layer parameters are missing (NULL)");
    if (cvd_dtype_size(p->dtype) == 0)
        return cvd_err_setf(err, CVD_ERR_INVALID, "dtype %d is unknown; use float32 or float64",
                            (int)p->dtype);
    const struct {
        const char *name;
        int64_t v, min;
    } fields[] = {
        {"in_channels", p->in_channels, 1},
        {"out_channels", p->out_channels, 1},
        {"groups", p->groups, 1},
        {"kernel_size[0]", p->kh, 1},
        {"kernel_size[1]", p->kw, 1},
        {"stride[0]", p->sh, 1},
        {"stride[1]", p->sw, 1},
        {"dilation[0]", p->dh, 1},
        {"dilation[1]", p->dw, 1},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        cvd_status s = check_dim(fields[i].name, fields[i].v, fields[i].min, err);
        if (s != CVD_OK)
            return s;
    }
    switch (p->pad_mode) {
    case CVD_PAD_EXPLICIT: {
        cvd_status s = check_dim("padding[0]", p->ph, 0, err);
        if (s == CVD_OK)
            s = check_dim("padding[1]", p->pw, 0, err);
        if (s != CVD_OK)
            return s;
        break;
    }
    case CVD_PAD_VALID:
        break;
    case CVD_PAD_SAME:
        if (p->sh != 1 || p->sw != 1)
            return cvd_err_setf(err, CVD_ERR_INVALID,
                                "padding \"same\" needs stride 1 but stride is [%lld, %lld]",
                                (long long)p->sh, (long long)p->sw);
        break;
    default:
        return cvd_err_setf(err, CVD_ERR_INVALID, "padding mode %d is unknown", (int)p->pad_mode);
    }
    if (p->in_channels % p->groups != 0)
        return cvd_err_setf(err, CVD_ERR_INVALID,
                            "in_channels=%lld is not divisible by groups=%lld",
                            (long long)p->in_channels, (long long)p->groups);
    if (p->out_channels % p->groups != 0)
        return cvd_err_setf(err, CVD_ERR_INVALID,
                            "out_channels=%lld is not divisible by groups=%lld",
                            (long long)p->out_channels, (long long)p->groups);
    /* K = C/g*kh*kw is a GEMM dimension and W holds F*K elements. */
    int64_t K, wn;
    size_t bytes;
    if (cvd_mul_i64(p->in_channels / p->groups, p->kh, &K) || cvd_mul_i64(K, p->kw, &K) ||
        K > INT_MAX)
        return cvd_err_setf(err, CVD_ERR_TOO_LARGE,
                            "in_channels/groups*kernel_size[0]*kernel_size[1] = %lld*%lld*%lld "
                            "exceeds %d",
                            (long long)(p->in_channels / p->groups), (long long)p->kh,
                            (long long)p->kw, INT_MAX);
    if (cvd_mul_i64(K, p->out_channels, &wn) || (uint64_t)wn > SIZE_MAX / sizeof(double) ||
        cvd_mul_size((size_t)wn, cvd_dtype_size(p->dtype), &bytes))
        return cvd_err_setf(err, CVD_ERR_TOO_LARGE,
                            "W would hold out_channels*%lld = %lld*%lld elements: too large",
                            (long long)K, (long long)p->out_channels, (long long)K);
    return CVD_OK;
}

void cvd_conv2d_padding(const cvd_conv2d_params *p, int64_t *top, int64_t *bottom, int64_t *left,
                        int64_t *right)
{
    int64_t t = 0, b = 0, l = 0, r = 0;
    if (p->pad_mode == CVD_PAD_EXPLICIT) {
        t = b = p->ph;
        l = r = p->pw;
    } else if (p->pad_mode == CVD_PAD_SAME) {
        /* As PyTorch: the total is d*(k-1); the odd element goes bottom/right. */
        int64_t th = p->dh * (p->kh - 1), tw = p->dw * (p->kw - 1);
        t = th / 2;
        b = th - t;
        l = tw / 2;
        r = tw - l;
    }
    if (top)
        *top = t;
    if (bottom)
        *bottom = b;
    if (left)
        *left = l;
    if (right)
        *right = r;
}

cvd_status cvd_geom_init(cvd_geom *g, const cvd_conv2d_params *p, const int64_t x_shape[4],
                         const char *what, cvd_err *err)
{
    static const char *const dim_names[4] = {"N", "C", "H", "W"};
    for (int i = 0; i < 4; i++) {
        if (x_shape[i] < 1)
            return cvd_err_setf(err, CVD_ERR_INVALID,
                                "%s has %s = %lld; every dim of (N,C,H,W) must be >= 1", what,
                                dim_names[i], (long long)x_shape[i]);
        if (x_shape[i] > CVD_MAX_DIM)
            return cvd_err_setf(err, CVD_ERR_TOO_LARGE, "%s has %s = %lld; the limit is %lld", what,
                                dim_names[i], (long long)x_shape[i], (long long)CVD_MAX_DIM);
    }
    g->N = x_shape[0];
    g->C = x_shape[1];
    g->H = x_shape[2];
    g->W = x_shape[3];
    if (g->C != p->in_channels)
        return cvd_err_setf(err, CVD_ERR_SHAPE,
                            "%s has %lld channels but the layer has in_channels=%lld; "
                            "send %s shaped (N,%lld,H,W)",
                            what, (long long)g->C, (long long)p->in_channels, what,
                            (long long)p->in_channels);
    g->F = p->out_channels;
    g->G = p->groups;
    g->Cg = g->C / g->G;
    g->Fg = g->F / g->G;
    g->kh = p->kh;
    g->kw = p->kw;
    g->sh = p->sh;
    g->sw = p->sw;
    g->dh = p->dh;
    g->dw = p->dw;
    cvd_conv2d_padding(p, &g->pt, &g->pb, &g->pl, &g->pr);
    /* All terms are below 2^31 (params_check), so these sums cannot overflow. */
    int64_t ext_h = g->dh * (g->kh - 1) + 1, ext_w = g->dw * (g->kw - 1) + 1;
    int64_t in_h = g->H + g->pt + g->pb, in_w = g->W + g->pl + g->pr;
    if (in_h < ext_h || in_w < ext_w)
        return cvd_err_setf(err, CVD_ERR_SHAPE,
                            "%s is %lldx%lld (H x W), %lldx%lld with padding, but the dilated "
                            "kernel spans %lldx%lld; send a larger input or less dilation",
                            what, (long long)g->H, (long long)g->W, (long long)in_h,
                            (long long)in_w, (long long)ext_h, (long long)ext_w);
    g->OH = (in_h - ext_h) / g->sh + 1;
    g->OW = (in_w - ext_w) / g->sw + 1;
    g->K = g->Cg * g->kh * g->kw; /* < 2^31: checked by params_check */
    if (cvd_mul_i64(g->OH, g->OW, &g->P) || g->P > INT_MAX)
        return cvd_err_setf(err, CVD_ERR_TOO_LARGE,
                            "the output of %s has %lldx%lld pixels per image; the limit is %d",
                            what, (long long)g->OH, (long long)g->OW, INT_MAX);
    if (cvd_mul_i64(g->H, g->W, &g->HW) || g->HW > INT_MAX)
        return cvd_err_setf(err, CVD_ERR_TOO_LARGE,
                            "%s has %lldx%lld pixels per image; the limit is %d", what,
                            (long long)g->H, (long long)g->W, INT_MAX);
    if (cvd_mul_i64(g->N, g->C, &g->x_numel) || cvd_mul_i64(g->x_numel, g->HW, &g->x_numel) ||
        (uint64_t)g->x_numel > SIZE_MAX / sizeof(double))
        return cvd_err_setf(err, CVD_ERR_TOO_LARGE,
                            "%s of shape (%lld,%lld,%lld,%lld) is too large", what, (long long)g->N,
                            (long long)g->C, (long long)g->H, (long long)g->W);
    if (cvd_mul_i64(g->N, g->F, &g->y_numel) || cvd_mul_i64(g->y_numel, g->P, &g->y_numel) ||
        (uint64_t)g->y_numel > SIZE_MAX / sizeof(double))
        return cvd_err_setf(err, CVD_ERR_TOO_LARGE,
                            "the output (%lld,%lld,%lld,%lld) for %s is too large", (long long)g->N,
                            (long long)g->F, (long long)g->OH, (long long)g->OW, what);
    g->is_1x1 = g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->pt == 0 && g->pb == 0 &&
                g->pl == 0 && g->pr == 0;
    /* The shifted path's GEMMs: N = OH*Wp <= Hp*Wp, leading dimensions cs and OH*Wp. */
    g->Hp = in_h;
    g->Wp = in_w;
    g->cs = 0;
    g->shift_ok = 0;
    g->small_bands = 0;
    int64_t hw;
    if (g->sh == 1 && g->sw == 1 && !cvd_mul_i64(in_h, in_w, &hw) &&
        hw <= INT_MAX - g->dw * (g->kw - 1)) {
        g->cs = hw + g->dw * (g->kw - 1);
        g->shift_ok = 1;
    }
    return CVD_OK;
}

int64_t cvd_geom_band_rows(const cvd_geom *g, size_t elem_size, size_t budget)
{
    const size_t row = (size_t)g->K * (size_t)g->OW * elem_size; /* <= K*P*es: no overflow */
    const size_t bytes = budget ? budget : g->small_bands ? CVD_BAND_SPLIT_BYTES : CVD_BAND_BYTES;
    int64_t rows = (int64_t)(bytes / row);
    if (!budget && rows * g->OW < CVD_BAND_MIN_COLS)
        rows = (CVD_BAND_MIN_COLS + g->OW - 1) / g->OW;
    return rows < 1 ? 1 : rows > g->OH ? g->OH : rows;
}

cvd_status cvd_geom_chunk(const cvd_geom *g, size_t elem_size, size_t budget, int64_t *nb,
                          size_t *ws_elems, cvd_err *err)
{
    size_t per_image, col1, ws, bytes;
    if (cvd_mul_size((size_t)g->K, (size_t)g->P, &col1) ||
        cvd_mul_size((size_t)(g->K + g->Fg), (size_t)g->P, &per_image) ||
        cvd_mul_size(per_image, elem_size, &per_image))
        return cvd_err_setf(err, CVD_ERR_TOO_LARGE,
                            "the im2col workspace (%lld x %lld per image) is too large",
                            (long long)g->K, (long long)g->P);
    int64_t n;
    if (budget) {
        n = (int64_t)(budget / per_image);
    } else if (g->P >= (g->is_1x1 ? CVD_1X1_DIRECT_COLS : CVD_DIRECT_COLS)) {
        n = 1;
    } else {
        /* Enough images for a cache-sized col, or failing that for a GEMM wide enough to
         * run near OpenBLAS's best, but never over the hard cap. */
        int64_t fit = (int64_t)(CVD_CHUNK_BYTES / per_image);
        int64_t wide = (CVD_CHUNK_MIN_COLS + g->P - 1) / g->P;
        int64_t cap = (int64_t)(CVD_CHUNK_MAX_BYTES / per_image);
        n = fit > wide ? fit : wide;
        if (n > cap)
            n = cap;
    }
    if (n > g->N)
        n = g->N;
    if (n > INT_MAX / g->P)
        n = INT_MAX / g->P;
    if (n < 1)
        n = 1;
    if (n == 1) {
        /* one 1x1 image is its own col: no workspace; else a band of output rows */
        ws = g->is_1x1 ? 0
                       : (size_t)g->K * (size_t)(cvd_geom_band_rows(g, elem_size, budget) * g->OW);
    } else if (cvd_mul_size((size_t)(g->K + g->Fg), (size_t)(n * g->P), &ws) ||
               cvd_mul_size(ws, elem_size, &bytes)) {
        return cvd_err_setf(err, CVD_ERR_TOO_LARGE, "the im2col workspace is too large");
    }
    *nb = n;
    *ws_elems = ws;
    return CVD_OK;
}

/* Whether the shifted GEMM beats im2col for g (on OpenBLAS 0.3.21): its GEMMs have K = Cg, too thin
 * below 32 channels, and do Wp/OW of the useful work, so wide padding on a narrow image loses what
 * skipping im2col saves. */
static int shift_pays(const cvd_geom *g)
{
    return !g->is_1x1 && g->Cg >= 32 && g->Wp * 8 <= g->OW * 9;
}

cvd_status cvd_geom_path(const cvd_geom *g, size_t elem_size, size_t budget, cvd_path want,
                         int *shifted, int64_t *nb, size_t *ws_elems, cvd_err *err)
{
    *shifted = g->shift_ok && (want == CVD_PATH_SHIFT || (want == CVD_PATH_AUTO && shift_pays(g)));
    if (!*shifted)
        return cvd_geom_chunk(g, elem_size, budget, nb, ws_elems, err);
    size_t xp, yp, wr, ws, bytes;
    if (cvd_mul_size((size_t)g->Cg, (size_t)g->cs, &xp) || cvd_mul_size(xp, (size_t)g->kw, &xp) ||
        cvd_mul_size((size_t)g->Fg, (size_t)(g->OH * g->Wp), &yp) ||
        cvd_mul_size((size_t)g->Fg, (size_t)g->K, &wr) || cvd_mul_size(wr, 2, &wr) ||
        cvd_add_size(xp, yp, &ws) || cvd_add_size(ws, wr, &ws) ||
        cvd_mul_size(ws, elem_size, &bytes))
        return cvd_err_setf(err, CVD_ERR_TOO_LARGE,
                            "the padded-input workspace (%lld channels of %lldx%lld) is too large",
                            (long long)g->Cg, (long long)g->Hp, (long long)g->Wp);
    *nb = 1;
    *ws_elems = ws;
    return CVD_OK;
}

cvd_status cvd_plan_pass(const cvd_geom *g, size_t elem_size, size_t budget, cvd_path want,
                         int nthreads, cvd_plan *plan, cvd_err *err)
{
    /* in double: N*F*P*K may overflow int64, and only its size matters here */
    const double work = (double)g->y_numel * (double)g->K;
    const int t =
        nthreads > 1 && g->N >= nthreads && work >= (double)CVD_GEMM_SPLIT_MIN ? nthreads : 1;
    cvd_geom share = *g;
    share.N = g->N / t;
    size_t one = 0, all, parts;
    int shifted = 0;
    int64_t nb = 1;
    cvd_status s = cvd_geom_path(&share, elem_size, budget, want, &shifted, &nb, &one, err);
    if (s != CVD_OK)
        return s;
    /* Forward takes the blocked kernel where it pays, else the direct one. A 1x1 layer
     * forward stays one GEMM unless forced: the direct kernel on its flat row ran slower
     * than it (docs/kernels.md); its dx and dW do not. */
    const int blocked = cvd_blocked_pays(&share, elem_size, want);
    const size_t blocked_ws = blocked ? cvd_blocked_ws(&share, elem_size) : 0;
    if (blocked_ws > one)
        one = blocked_ws;
    const int direct = !blocked && (!g->is_1x1 || want == CVD_PATH_DIRECT) &&
                       cvd_direct_pays(&share, elem_size, want);
    const size_t direct_ws = direct ? cvd_direct_ws(&share, elem_size) : 0;
    if (direct_ws > one)
        one = direct_ws;
    const int wgrad = cvd_blocked_wgrad_pays(&share, elem_size, want)
                          ? 2
                          : cvd_wgrad_pays(&share, elem_size, want);
    const size_t wgrad_ws = wgrad == 2 ? cvd_blocked_wgrad_ws(&share, elem_size)
                            : wgrad    ? cvd_wgrad_ws(&share, elem_size)
                                       : 0;
    if (wgrad_ws > one)
        one = wgrad_ws;
    const int dgrad = cvd_dgrad_pays(&share, elem_size, want);
    const int dgrad_blocked = dgrad && cvd_dgrad_blocked(&share, elem_size, want);
    const size_t dgrad_ws = dgrad ? cvd_dgrad_ws(&share, elem_size, dgrad_blocked) : 0;
    if (dgrad_ws > one)
        one = dgrad_ws;
    /* the weights forward's blocked kernel or dgrad reads, made once for all the tasks,
     * not once in each (pass_pre in conv2d_impl.h) */
    size_t shared = 0;
    cvd_geom tg;
    if (t > 1 && g->G == 1) {
        const size_t fwd = blocked ? cvd_blocked_wsize(&share, elem_size) : 0;
        size_t dxw = 0;
        if (dgrad_blocked && cvd_dgrad_geom(&share, &tg))
            dxw = cvd_blocked_wsize(&tg, elem_size);
        else if (dgrad) /* the flipped weights; F*K < 2^62 (cvd_geom_init) */
            dxw = (size_t)(g->F * g->K);
        shared = fwd > dxw ? fwd : dxw;
    }
    if (cvd_add_size(one, 15, &one) || cvd_mul_size(one & ~(size_t)15, (size_t)t, &all) ||
        cvd_mul_size((size_t)(g->F * g->K), (size_t)(t - 1), &parts) ||
        cvd_add_size(all, parts, &all) || cvd_add_size(all, shared, &all) ||
        cvd_mul_size(all, elem_size, &parts))
        return cvd_err_setf(err, CVD_ERR_TOO_LARGE, "the workspace of %d threads is too large", t);
    plan->tasks = t;
    plan->shifted = shifted;
    plan->direct = direct;
    plan->blocked = blocked;
    plan->dgrad = dgrad + dgrad_blocked;
    plan->wgrad = wgrad;
    plan->nb = nb;
    plan->rows[0] = cvd_geom_band_rows(&share, elem_size, budget);
    share.small_bands = t > 1;
    plan->rows[1] = cvd_geom_band_rows(&share, elem_size, budget);
    plan->ws_one = one & ~(size_t)15;
    plan->ws_shared = shared;
    plan->ws_elems = all;
    return CVD_OK;
}

cvd_status cvd_conv2d_output_shape(const cvd_conv2d_params *p, const int64_t x_shape[4],
                                   int64_t y_shape[4], cvd_err *err)
{
    cvd_geom g = {0};
    cvd_status s = cvd_conv2d_params_check(p, err);
    if (s == CVD_OK)
        s = cvd_geom_init(&g, p, x_shape, "x", err);
    if (s != CVD_OK)
        return s;
    y_shape[0] = g.N;
    y_shape[1] = g.F;
    y_shape[2] = g.OH;
    y_shape[3] = g.OW;
    return CVD_OK;
}
