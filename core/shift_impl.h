/*
 * shift_impl.h — type template of the shifted-GEMM path (stride 1; see cvd_path in
 * cvd_internal.h), included by conv2d_impl.h after gemm_impl.h (it uses GEMM_SPLIT and
 * bias_fill). Generates, per dtype (_f32, _f64): regroup, pad_in, shift_gemms,
 * forward_shift, regroup_dw, dw_gemms, backward_shift.
 *
 * Per image n and group grp, with xp [Cg, cs] the zero-padded x[n,grp] (channel stride
 * cs = Hp*Wp + (kw-1)*dw, so the slice a tap reads or writes never reaches the next
 * channel), yp [Fg, OH*Wp] and tap t = (i, j) at offset o_t = i*dh*Wp + j*dw:
 *   forward  yp  = sum_t Wr_t [Fg, Cg] · xp[:, o_t ..]           y[n,grp] <- yp + b
 *   dW       dWr_t (+)= yp · xp[:, o_t ..]ᵀ   with yp = delta[n,grp], garbage columns 0
 *   dx       dxp[:, o_t ..] += Wr_tᵀ · yp                       dx[n,grp] <- dxp
 * Wr_t [Fg, Cg] is W_g regrouped by tap. A garbage column of yp multiplies pixels that
 * wrap around from the next row; in dW and dx it is zero, so it adds nothing. */

/* Wr[t][f][c] = W_g[f][c][t]: W_g regrouped by tap. */
static void SFX(regroup)(const cvd_geom *g, const T *Wg, T *Wr)
{
    const int64_t taps = g->kh * g->kw, Fg = g->Fg, Cg = g->Cg;
    for (int64_t f = 0; f < Fg; f++)
        for (int64_t c = 0; c < Cg; c++)
            for (int64_t t = 0; t < taps; t++)
                Wr[(t * Fg + f) * Cg + c] = Wg[(f * Cg + c) * taps + t];
}

/* xp <- x_g [Cg, H, W] zero-padded (every element of xp is written). */
static void SFX(pad_in)(const cvd_geom *g, const T *x_g, T *xp)
{
    const int64_t W = g->W, Wp = g->Wp, tail = g->cs - (g->pt + g->H) * Wp;
    for (int64_t c = 0; c < g->Cg; c++) {
        T *d = xp + c * g->cs;
        const T *s = x_g + c * g->HW;
        memset(d, 0, (size_t)(g->pt * Wp + g->pl) * sizeof(T));
        d += g->pt * Wp + g->pl;
        for (int64_t h = 0; h < g->H; h++, d += Wp, s += W) {
            memcpy(d, s, (size_t)W * sizeof(T));
            memset(d + W, 0, (size_t)(h + 1 < g->H ? g->pr + g->pl : g->pr) * sizeof(T));
        }
        memset(d - g->pl, 0, (size_t)tail * sizeof(T));
    }
}

/* The kh*kw tap GEMMs of one image: dir 0 yp (+)= conv(xp) (beta0 0 overwrites, 1 adds
 * onto yp); dir 1 xp += conv_transpose(yp). Wr is W_g by tap. dW has its own GEMMs, one a
 * kernel row (dw_gemms). */
static void SFX(shift_gemms)(const cvd_geom *g, const T *Wr, T *xp, T *yp, int dir, T beta0, int nt)
{
    const int64_t Fg = g->Fg, Cg = g->Cg, Wp = g->Wp;
    const int n = (int)(g->OH * Wp), cs = (int)g->cs;
    for (int64_t i = 0, t = 0; i < g->kh; i++) {
        for (int64_t j = 0; j < g->kw; j++, t++) {
            const int64_t o = i * g->dh * Wp + j * g->dw;
            const T *A = Wr + t * Fg * Cg;
            if (dir == 0) /* y */
                GEMM_SPLIT(nt, CblasNoTrans, CblasNoTrans, (int)Fg, n, (int)Cg, 1, A, (int)Cg,
                           xp + o, cs, t ? 1 : beta0, yp, n);
            else /* dx */
                GEMM_SPLIT(nt, CblasTrans, CblasNoTrans, (int)Cg, n, (int)Fg, 1, A, (int)Cg, yp, n,
                           1, xp + o, cs);
        }
    }
}

/* y = conv(x, W) + b on the shifted path for images lo .. hi-1 on nt threads; returns
 * whether what it wrote is finite. */
static int SFX(forward_shift)(const cvd_geom *g, T *W, const T *b, const T *x, T *y, T *ws,
                              int64_t lo, int64_t hi, int nt)
{
    const int64_t Fg = g->Fg, Cg = g->Cg, Wp = g->Wp, OW = g->OW, P = g->P;
    T *xp = ws, *yp = xp + g->kw * Cg * g->cs, *Wr = yp + Fg * g->OH * Wp;
    T lane[NAN_LANES] = {0};
    for (int64_t grp = 0; grp < g->G; grp++) {
        const T *bg = b ? b + grp * Fg : NULL;
        SFX(regroup)(g, W + grp * Fg * g->K, Wr);
        for (int64_t n = lo; n < hi; n++) {
            SFX(pad_in)(g, x + (n * g->C + grp * Cg) * g->HW, xp);
            /* the first tap adds onto the bias (see bias_fill) */
            if (bg)
                SFX(bias_fill)(yp, Fg, g->OH * Wp, g->OH * Wp, bg);
            SFX(shift_gemms)(g, Wr, xp, yp, 0, bg ? 1 : 0, nt);
            T *yn = y + (n * g->F + grp * Fg) * P; /* [Fg, P] */
            for (int64_t f = 0; f < Fg; f++)
                for (int64_t oh = 0; oh < g->OH; oh++)
                    memcpy(yn + f * P + oh * OW, yp + (f * g->OH + oh) * Wp,
                           (size_t)OW * sizeof(T));
            SFX(nan_add)(lane, yn, Fg * P);
        }
    }
    return SFX(nan_none)(lane);
}

/* dW_g[f][c][i*kw + j] = dWr[i][f][j*Cg + c]: dW by kernel row, as dW_gemms writes it. */
static void SFX(regroup_dw)(const cvd_geom *g, T *dWg, const T *dWr)
{
    const int64_t kh = g->kh, kw = g->kw, Fg = g->Fg, Cg = g->Cg;
    for (int64_t f = 0; f < Fg; f++)
        for (int64_t c = 0; c < Cg; c++)
            for (int64_t i = 0; i < kh; i++)
                for (int64_t j = 0; j < kw; j++)
                    dWg[(f * Cg + c) * kh * kw + i * kw + j] =
                        dWr[((i * Fg + f) * kw + j) * Cg + c];
}

/* dW of one image with one GEMM per kernel row instead of one per tap: xp holds kw copies
 * of the padded image, copy j shifted left by j*dw ([kw*Cg, cs]; copy 0 is pad_in's), so
 * the taps (i, 0 .. kw-1) read rows of one matrix at offset i*dh*Wp and
 *   dWr[i] [Fg, kw*Cg] (+)= yp [Fg, n] · xp3[:, i*dh*Wp ..]ᵀ.
 * One GEMM kw times wider runs faster than kw thin ones (and splits better across
 * threads when the image is not split by images). Each copy
 * needs Hp*Wp elements (the last tap row reads up to Hp*Wp - 1), inside cs. */
static void SFX(dw_gemms)(const cvd_geom *g, T *dWr, T *xp, const T *yp, T beta0, int nt)
{
    const int64_t Fg = g->Fg, Cg = g->Cg, Wp = g->Wp, cs = g->cs, kw = g->kw;
    const int n = (int)(g->OH * Wp), nc = (int)(kw * Cg);
    for (int64_t j = 1; j < kw; j++)
        for (int64_t c = 0; c < Cg; c++)
            memcpy(xp + (j * Cg + c) * cs, xp + c * cs + j * g->dw,
                   (size_t)(g->Hp * Wp) * sizeof(T));
    for (int64_t i = 0; i < g->kh; i++)
        GEMM_SPLIT(nt, CblasNoTrans, CblasTrans, (int)Fg, nc, n, 1, yp, n, xp + i * g->dh * Wp,
                   (int)cs, beta0, dWr + i * Fg * nc, nc);
}

/* dx and/or dW (either may be NULL) on the shifted path for images lo .. hi-1 on nt
 * threads (dW overwritten with their sum); db is done by bias_grad. */
static void SFX(backward_shift)(const cvd_geom *g, T *W, const T *x, const T *delta, T *dx, T *dW,
                                T *ws, int64_t lo, int64_t hi, int nt)
{
    const int64_t Fg = g->Fg, Cg = g->Cg, Wp = g->Wp, OW = g->OW, P = g->P;
    T *xp = ws, *yp = xp + g->kw * Cg * g->cs, *Wr = yp + Fg * g->OH * Wp, *dWr = Wr + Fg * g->K;
    for (int64_t grp = 0; grp < g->G; grp++) {
        if (dx)
            SFX(regroup)(g, W + grp * Fg * g->K, Wr);
        for (int64_t n = lo; n < hi; n++) {
            for (int64_t f = 0; f < Fg; f++) {
                const T *s = delta + (n * g->F + grp * Fg + f) * P;
                T *d = yp + f * g->OH * Wp;
                for (int64_t oh = 0; oh < g->OH; oh++, d += Wp, s += OW) {
                    memcpy(d, s, (size_t)OW * sizeof(T));
                    memset(d + OW, 0, (size_t)(Wp - OW) * sizeof(T));
                }
            }
            if (dW) {
                SFX(pad_in)(g, x + (n * g->C + grp * Cg) * g->HW, xp);
                SFX(dw_gemms)(g, dWr, xp, yp, n > lo ? 1 : 0, nt);
            }
            if (dx) {
                memset(xp, 0, (size_t)(Cg * g->cs) * sizeof(T));
                SFX(shift_gemms)(g, Wr, xp, yp, 1, 0, nt);
                for (int64_t c = 0; c < Cg; c++) {
                    T *d = dx + (n * g->C + grp * Cg + c) * g->HW;
                    const T *s = xp + c * g->cs + g->pt * Wp + g->pl;
                    for (int64_t h = 0; h < g->H; h++, d += g->W, s += Wp)
                        memcpy(d, s, (size_t)g->W * sizeof(T));
                }
            }
        }
        if (dW)
            SFX(regroup_dw)(g, dW + grp * Fg * g->K, dWr);
    }
}
