/*
 * dgrad.c — backward-data (dx) of a stride-1 layer on the own direct kernel (direct.c):
 * dx[c, ih, iw] = sum over f, i, j of delta[f, ih + pt - i*dh, iw + pl - j*dw] *
 * W[f, c, i, j], which is the forward of delta, zero-padded by (kh-1)*dh - pt above and
 * (kh-1)*dh - pb below (the same across), through the weights flipped in both kernel axes
 * with filters and channels swapped: Wt[c, f, kh-1-i, kw-1-j] = W[f, c, i, j], stride 1,
 * the same dilation. cvd_dgrad_geom builds that transposed layer; the kernel is the
 * forward one, so dx is computed without col2im, without a GEMM and without scatter-adds.
 * Layers whose padding passes the dilated kernel (a pad > (k-1)*d) or with a stride keep
 * the im2col / shifted paths. Where the transposed layer pays for it (cvd_blocked_pays),
 * the channel-blocked forward (blocked.c) runs it instead of the direct kernel, blocking
 * the weights flipped as it reads them from W. Memory: the caller's workspace holds the
 * blocked kernel's workspace for the transposed layer, or Wt of one group and then the
 * direct kernel's.
 */
#include "cvd_internal.h"

int cvd_dgrad_geom(const cvd_geom *g, cvd_geom *t)
{
    const int64_t eh = (g->kh - 1) * g->dh, ew = (g->kw - 1) * g->dw;
    if (g->sh != 1 || g->sw != 1 || g->pt > eh || g->pb > eh || g->pl > ew || g->pr > ew)
        return 0;
    *t = *g;
    t->C = g->F, t->H = g->OH, t->W = g->OW;
    t->F = g->C, t->OH = g->H, t->OW = g->W;
    t->Cg = g->Fg, t->Fg = g->Cg;
    t->pt = eh - g->pt, t->pb = eh - g->pb, t->pl = ew - g->pl, t->pr = ew - g->pr;
    t->K = g->Fg * g->kh * g->kw;
    t->P = g->HW, t->HW = g->P;
    t->x_numel = g->y_numel, t->y_numel = g->x_numel;
    t->Hp = g->OH + t->pt + t->pb, t->Wp = g->OW + t->pl + t->pr;
    /* a 1x1 layer stays one (no pad, stride 1); the shifted path is never asked of t */
    t->cs = 0, t->shift_ok = 0, t->small_bands = 0;
    return 1;
}

/* Not on a 1x1 layer unless forced: dx is one GEMM there, which the flat direct kernel
 * did not beat in float64 (docs/kernels.md). Nor, unless forced, when the transposed
 * layer's padding is most of its input: it multiplies every dx pixel by all Fg*kh*kw
 * taps, H*W/(OH*OW) times the layer's own multiply-adds, nearly all of them zeros of
 * the padded delta. A 52x52 kernel over a 52x52 image (one output pixel) did 2704 times
 * the work, 61 ms instead of the GEMM path's tens of microseconds: a cheap request
 * could hold a thread for seconds. */
#define DGRAD_MAX_WASTE 2

int cvd_dgrad_pays(const cvd_geom *g, size_t elem_size, cvd_path want)
{
    cvd_geom t;
    const int lean = g->H * g->W <= DGRAD_MAX_WASTE * g->OH * g->OW;
    return (!g->is_1x1 || want == CVD_PATH_DIRECT) && (lean || want == CVD_PATH_DIRECT) &&
           cvd_dgrad_geom(g, &t) && cvd_direct_pays(&t, elem_size, want);
}

int cvd_dgrad_blocked(const cvd_geom *g, size_t elem_size, cvd_path want)
{
    cvd_geom t;
    return cvd_dgrad_geom(g, &t) && cvd_blocked_pays(&t, elem_size, want);
}

size_t cvd_dgrad_ws(const cvd_geom *g, size_t elem_size, int blocked)
{
    cvd_geom t;
    size_t w, all;
    if (!cvd_dgrad_geom(g, &t))
        return 0;
    if (blocked)
        return cvd_blocked_ws(&t, elem_size);
    const size_t kernel = cvd_direct_ws(&t, elem_size);
    /* Fg*K < 2^62 (cvd_geom_init): the flipped weights of one group */
    w = ((size_t)g->Fg * (size_t)g->K + 15) & ~(size_t)15;
    if (kernel == 0 || cvd_add_size(w, kernel, &all))
        return 0;
    return all;
}

#define T      float
#define SFX(n) n##_f32
#include "dgrad_impl.h"
#undef T
#undef SFX

#define T      double
#define SFX(n) n##_f64
#include "dgrad_impl.h"
#undef T
#undef SFX
