/*
 * direct_impl.h — type template of the direct forward kernel (included by direct.c once
 * per dtype with T, SFX, VL, VEC, MASK and the V_* intrinsics defined). See direct.c.
 */

/* xs <- x_g [Cg, H, W] zero-padded and split by column phase (every element written). */
static DIRECT_TARGET void SFX(direct_fill)(const cvd_geom *g, const T *x_g, T *xs, int64_t wq)
{
    const int64_t sw = g->sw, W = g->W;
    for (int64_t c = 0; c < g->Cg; c++) {
        for (int64_t ph = 0; ph < sw; ph++) {
            /* columns q of this phase that read x: pl <= q*sw + ph < pl + W */
            int64_t q0 = g->pl > ph ? (g->pl - ph + sw - 1) / sw : 0;
            int64_t q1 = (g->pl + W - ph + sw - 1) / sw;
            q0 = q0 < wq ? q0 : wq;
            q1 = q1 < wq ? q1 : wq;
            for (int64_t r = 0; r < g->Hp; r++) {
                T *d = xs + ((c * sw + ph) * g->Hp + r) * wq;
                const int64_t h = r - g->pt;
                if (h < 0 || h >= g->H || q1 <= q0) {
                    memset(d, 0, (size_t)wq * sizeof(T));
                    continue;
                }
                const T *s = x_g + (c * g->H + h) * W + q0 * sw + ph - g->pl;
                memset(d, 0, (size_t)q0 * sizeof(T));
                if (sw == 1) {
                    memcpy(d + q0, s, (size_t)(q1 - q0) * sizeof(T));
                } else if (sw == 2) {
                    /* s has avail elements left in its row; a vector step reads 2*VL */
                    const int64_t n = q1 - q0, avail = W - (q0 * 2 + ph - g->pl);
                    int64_t q = 0;
                    for (; 2 * (q + VL) <= avail && q + VL <= n; q += VL)
                        V_STORE(d + q0 + q, V_EVENS(V_LOAD(s + 2 * q), V_LOAD(s + 2 * q + VL)));
                    for (; q < n; q++)
                        d[q0 + q] = s[2 * q];
                } else {
                    for (int64_t q = 0; q < q1 - q0; q++)
                        d[q0 + q] = s[q * sw];
                }
                memset(d + q1, 0, (size_t)(wq - q1) * sizeof(T));
            }
        }
    }
}

/* One tile: filters 0 .. mr-1 of w (row stride K) times output vectors 0 .. nv-1 at xb,
 * stored at y (row stride ldy), the last vector's lanes by `last`; adds v*0 of every
 * stored value to *chk (NaN exactly when one is not finite). mr and nv are constants
 * after inlining, so the accumulators live in registers. */
static inline __attribute__((always_inline)) DIRECT_TARGET void
SFX(direct_tile)(const int mr, const int nv, MASK last, const T *xb, const int64_t *off, int64_t K,
                 const T *w, const T *b, T *y, int64_t ldy, VEC *chk)
{
    VEC acc[8][DIRECT_NV_MAX];
    _Pragma("GCC unroll 8") for (int m = 0; m < mr; m++)
    {
        const VEC bias = b ? V_SET1(b[m]) : V_ZERO();
        _Pragma("GCC unroll 8") for (int v = 0; v < nv; v++) acc[m][v] = bias;
    }
    for (int64_t t = 0; t < K; t++) {
        const T *xp = xb + off[t];
        VEC xv[DIRECT_NV_MAX];
        _Pragma("GCC unroll 8") for (int v = 0; v < nv; v++) xv[v] = V_LOAD(xp + VL * v);
        _Pragma("GCC unroll 8") for (int m = 0; m < mr; m++)
        {
            const VEC wv = V_SET1(w[m * K + t]);
            _Pragma("GCC unroll 8") for (int v = 0; v < nv; v++) acc[m][v] =
                V_FMA(wv, xv[v], acc[m][v]);
        }
    }
    const VEC zero = V_ZERO();
    _Pragma("GCC unroll 8") for (int m = 0; m < mr; m++)
    {
        T *yr = y + m * ldy;
        _Pragma("GCC unroll 8") for (int v = 0; v + 1 < nv; v++)
        {
            V_STORE(yr + VL * v, acc[m][v]);
            *chk = V_ADD(*chk, V_MUL(acc[m][v], zero));
        }
        V_MSTORE(yr + VL * (nv - 1), last, acc[m][nv - 1]);
        *chk = V_MADD(*chk, last, *chk, V_MUL(acc[m][nv - 1], zero));
    }
}

/* The tile for any mr <= direct_mr_max[nv - 1], nv <= DIRECT_NV_MAX, as constants. */
#define DIRECT_MR(mr, nv)                                                                          \
    case mr:                                                                                       \
        SFX(direct_tile)(mr, nv, last, xb, off, K, w, b, y, ldy, chk);                             \
        break;
#define DIRECT_NV(nv, ...)                                                                         \
    case nv:                                                                                       \
        switch (mr) {                                                                              \
            __VA_ARGS__                                                                            \
        }                                                                                          \
        break;
static DIRECT_TARGET void SFX(direct_tile_any)(int mr, int nv, MASK last, const T *xb,
                                               const int64_t *off, int64_t K, const T *w,
                                               const T *b, T *y, int64_t ldy, VEC *chk)
{
    switch (nv) {
        DIRECT_NV(1, DIRECT_MR(1, 1) DIRECT_MR(2, 1) DIRECT_MR(3, 1) DIRECT_MR(4, 1) DIRECT_MR(5, 1)
                         DIRECT_MR(6, 1) DIRECT_MR(7, 1) DIRECT_MR(8, 1))
        DIRECT_NV(2, DIRECT_MR(1, 2) DIRECT_MR(2, 2) DIRECT_MR(3, 2) DIRECT_MR(4, 2) DIRECT_MR(5, 2)
                         DIRECT_MR(6, 2) DIRECT_MR(7, 2) DIRECT_MR(8, 2))
        DIRECT_NV(3, DIRECT_MR(1, 3) DIRECT_MR(2, 3) DIRECT_MR(3, 3) DIRECT_MR(4, 3) DIRECT_MR(5, 3)
                         DIRECT_MR(6, 3) DIRECT_MR(7, 3) DIRECT_MR(8, 3))
        DIRECT_NV(4, DIRECT_MR(1, 4) DIRECT_MR(2, 4) DIRECT_MR(3, 4) DIRECT_MR(4, 4) DIRECT_MR(5, 4)
                         DIRECT_MR(6, 4))
    }
}
#undef DIRECT_MR
#undef DIRECT_NV

/* Output rows oh0 .. oh1-1 of one image and group; returns whether all of them are finite.
 * Bands of rb output rows (their xs rows stay in L2), and in a band blocks of fb filters
 * (their W rows stay in L1) over every row and tile of the band. */
static DIRECT_TARGET int SFX(direct_rows)(const direct_job *j, int64_t oh0, int64_t oh1)
{
    const cvd_geom *g = j->g;
    const int64_t K = g->K, OW = g->OW, P = g->P, Fg = g->Fg;
    const int64_t nvec = (OW + VL - 1) / VL, ntile = (nvec + DIRECT_NV_MAX - 1) / DIRECT_NV_MAX;
    const int64_t rb = j->rb, fb = j->fb;
    const T *W = j->W, *b = j->b, *xs = j->xs;
    T *y = j->y;
    VEC chk = V_ZERO();
    for (int64_t r0 = oh0; r0 < oh1; r0 += rb) {
        const int64_t r1 = r0 + rb < oh1 ? r0 + rb : oh1;
        for (int64_t f0 = 0; f0 < Fg; f0 += fb) {
            const int64_t f1 = f0 + fb < Fg ? f0 + fb : Fg;
            for (int64_t oh = r0; oh < r1; oh++) {
                /* the row's vectors in ntile tiles of near-equal width */
                for (int64_t ti = 0, v0 = 0; ti < ntile; ti++) {
                    const int nv = (int)((nvec - v0) / (ntile - ti));
                    const int64_t rem = OW - VL * (v0 + nv - 1); /* lanes of the last vector */
                    const MASK last = (MASK)(rem >= VL ? ~0u : (1u << rem) - 1);
                    const int mrmax = direct_mr_max[nv - 1];
                    const T *xb = xs + oh * g->sh * j->wq + VL * v0;
                    for (int64_t f = f0; f < f1; f += mrmax) {
                        const int mr = (int)(f1 - f < mrmax ? f1 - f : mrmax);
                        SFX(direct_tile_any)
                        (mr, nv, last, xb, j->off, K, W + f * K, b ? b + f : NULL,
                         y + f * P + oh * OW + VL * v0, P, &chk);
                    }
                    v0 += nv;
                }
            }
        }
    }
    return V_UNORD(chk) == 0;
}

static void SFX(direct_part)(void *arg, int task, int ntasks)
{
    direct_job *j = arg;
    const int64_t OH = j->g->OH;
    j->finite[task] = SFX(direct_rows)(j, OH * task / ntasks, OH * (task + 1) / ntasks);
}

int SFX(cvd_direct_forward)(const cvd_geom *g, const T *W_g, const T *b_g, const T *x_g, T *y_g,
                            T *ws, int nt)
{
    const int64_t wq = direct_wq(g, VL);
    int64_t *off = (int64_t *)(void *)ws;
    T *xs = ws + (g->K * (int64_t)sizeof(int64_t) + (int64_t)sizeof(T) - 1) / (int64_t)sizeof(T);
    for (int64_t c = 0; c < g->Cg; c++)
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t jj = 0; jj < g->kw; jj++) {
                const int64_t col = jj * g->dw;
                off[(c * g->kh + i) * g->kw + jj] =
                    ((c * g->sw + col % g->sw) * g->Hp + i * g->dh) * wq + col / g->sw;
            }
    SFX(direct_fill)(g, x_g, xs, wq);
    direct_job j = {.g = g, .W = W_g, .b = b_g, .y = y_g, .xs = xs, .off = off, .wq = wq};
    /* the xs rows one output row reads beyond the previous one, and one filter's W */
    const int64_t row_bytes = g->Cg * g->sw * g->sh * wq * (int64_t)sizeof(T);
    const int64_t w_bytes = g->K * (int64_t)sizeof(T);
    j.rb = (int64_t)CVD_DIRECT_BAND_BYTES / row_bytes;
    j.rb = j.rb < 1 ? 1 : j.rb;
    j.fb = (int64_t)CVD_DIRECT_WBLOCK_BYTES / w_bytes / 4 * 4; /* 12: tiles of 6+6 or 8+4 */
    j.fb = j.fb < 8 ? 8 : j.fb;
    int tasks = nt < g->OH ? nt : (int)g->OH;
    if (tasks > CVD_MAX_PARTS)
        tasks = CVD_MAX_PARTS;
    if (tasks <= 1)
        return SFX(direct_rows)(&j, 0, g->OH);
    cvd_parallel_run(tasks, tasks, SFX(direct_part), &j);
    int finite = 1;
    for (int t = 0; t < tasks; t++)
        finite &= j.finite[t];
    return finite;
}
