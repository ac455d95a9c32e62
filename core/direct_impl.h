/*
 * direct_impl.h — template of the direct kernel, included by direct.c once per ISA and
 * dtype after simd.h and xs_impl.h. Generates, for SFX = _avx512_f32, _avx512_f64,
 * _avx2_f32, _avx2_f64: direct_mr_max, direct_tile, direct_tile_any, direct_rows,
 * direct_part and direct_image (direct_tile_avx512_f32 ... direct_image_avx2_f64).
 * See direct.c.
 */

/* Tile heights for each width nv (index nv - 1): the MR*NV accumulators, NV x vectors and
 * one broadcast fit the ISA's vector registers. */
#if SIMD_WIDE
static const int SFX(direct_mr_max)[DIRECT_NV_MAX] = DIRECT_MR_MAX_WIDE;
#else
static const int SFX(direct_mr_max)[DIRECT_NV_MAX] = DIRECT_MR_MAX_NARROW;
#endif

/* One tile: filters 0 .. mr-1 of w (row stride K) times output vectors 0 .. nv-1 in rows
 * of nvr vectors (nvr == nv: one row; less: output rows stacked, xrow apart in xb and yrow
 * in y), vector c of a row read at xb + c*VL and stored at y + c*VL (filter rows ldy
 * apart), over kb taps (offsets off); the lanes of a row's last vector by `last`. The accumulators
 * start from the bias (b, or zero when b is NULL) on the first block of channels and from y on the
 * others; on the last block every stored value adds v*0 to *chk (NaN exactly when one is not
 * finite). mr and nv are constants after inlining, so the accumulators live in registers. */
static inline __attribute__((always_inline)) SIMD_TARGET void
SFX(direct_tile)(const int mr, const int nv, const int stacked, MASK last, const T *xb,
                 const int64_t *off, int64_t nvr, int64_t xrow, int64_t kb, const T *w, int64_t K,
                 const T *b, int first, int final, T *y, int64_t yrow, int64_t ldy, VEC *chk)
{
    VEC acc[8][DIRECT_NV_MAX];
    int64_t xo[DIRECT_NV_MAX], yo[DIRECT_NV_MAX];
    int lastv[DIRECT_NV_MAX];
    /* one row (stacked 0, a constant): offsets fold into the loads' displacements */
    _Pragma("GCC unroll 8") for (int v = 0, r = 0, c = 0; v < nv; v++)
    {
        xo[v] = stacked ? r * xrow + c * VL : VL * v;
        yo[v] = stacked ? r * yrow + c * VL : VL * v;
        lastv[v] = stacked ? c == nvr - 1 : v == nv - 1;
        if (++c == nvr)
            c = 0, r++;
    }
    _Pragma("GCC unroll 8") for (int m = 0; m < mr; m++)
    {
        const VEC bias = b ? V_SET1(b[m]) : V_ZERO();
        _Pragma("GCC unroll 8") for (int v = 0; v < nv; v++) acc[m][v] =
            first       ? bias
            : !lastv[v] ? V_LOAD(y + m * ldy + yo[v])
                        : V_MLOAD(y + m * ldy + yo[v], last);
    }
    for (int64_t t = 0; t < kb; t++) {
        const T *xp = xb + off[t];
        VEC xv[DIRECT_NV_MAX];
        _Pragma("GCC unroll 8") for (int v = 0; v < nv; v++) xv[v] = V_LOAD(xp + xo[v]);
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
        _Pragma("GCC unroll 8") for (int v = 0; v < nv; v++)
        {
            if (!lastv[v]) {
                V_STORE(yr + yo[v], acc[m][v]);
                if (final)
                    *chk = V_ADD(*chk, V_MUL(acc[m][v], zero));
            } else {
                V_MSTORE(yr + yo[v], last, acc[m][v]);
                if (final)
                    *chk = V_MADD(*chk, last, V_MUL(acc[m][v], zero));
            }
        }
    }
}

/* The tile for any mr <= direct_mr_max[nv - 1], nv <= DIRECT_NV_MAX, as constants. */
#define DIRECT_MR(mr, nv)                                                                          \
    case mr:                                                                                       \
        if (nvr == nv)                                                                             \
            SFX(direct_tile)                                                                       \
        (mr, nv, 0, last, xb, off, nvr, xrow, kb, w, K, b, first, final, y, yrow, ldy, chk);       \
        else SFX(direct_tile)(mr, nv, 1, last, xb, off, nvr, xrow, kb, w, K, b, first, final, y,   \
                              yrow, ldy, chk);                                                     \
        break;
#define DIRECT_MR4(nv) DIRECT_MR(1, nv) DIRECT_MR(2, nv) DIRECT_MR(3, nv) DIRECT_MR(4, nv)
#define DIRECT_MR6(nv) DIRECT_MR4(nv) DIRECT_MR(5, nv) DIRECT_MR(6, nv)
#define DIRECT_MR8(nv) DIRECT_MR6(nv) DIRECT_MR(7, nv) DIRECT_MR(8, nv)
#define DIRECT_NV(nv, cases)                                                                       \
    case nv:                                                                                       \
        switch (mr) {                                                                              \
            cases                                                                                  \
        }                                                                                          \
        break;
static SIMD_TARGET void SFX(direct_tile_any)(int mr, int nv, MASK last, const T *xb,
                                             const int64_t *off, int64_t nvr, int64_t xrow,
                                             int64_t kb, const T *w, int64_t K, const T *b,
                                             int first, int final, T *y, int64_t yrow, int64_t ldy,
                                             VEC *chk)
{
    switch (nv) {
#if SIMD_WIDE
        DIRECT_SWITCH_WIDE
#else
        DIRECT_SWITCH_NARROW
#endif
    }
}
#undef DIRECT_NV
#undef DIRECT_MR
#undef DIRECT_MR4
#undef DIRECT_MR6
#undef DIRECT_MR8

/* Output rows oh0 .. oh1-1 of one image and group; returns whether all of them are finite.
 * Bands of rb output rows (their xs rows stay in L2); in a band, blocks of cb channels
 * (a tile's x, kb taps by NV vectors, stays in L1 across the filter tiles of its row),
 * and in those blocks of fb filters (their W rows stay in L1). */
static SIMD_TARGET int SFX(direct_rows)(const direct_job *j, int64_t oh0, int64_t oh1)
{
    const cvd_geom *g = j->g;
    const int64_t K = g->K, OW = g->OW, P = g->P, Fg = g->Fg, taps = g->kh * g->kw;
    const int64_t nvec = (OW + VL - 1) / VL, ntile = (nvec + DIRECT_NV_MAX - 1) / DIRECT_NV_MAX;
    const int64_t rb = j->rb, fb = j->fb, cb = j->cb;
    const T *W = j->W, *b = j->b, *xs = j->xs;
    T *y = j->y;
    VEC chk = V_ZERO();
    for (int64_t r0 = oh0; r0 < oh1; r0 += rb) {
        const int64_t r1 = r0 + rb < oh1 ? r0 + rb : oh1;
        for (int64_t c0 = 0; c0 < g->Cg; c0 += cb) {
            const int64_t t0 = c0 * taps, kb = (c0 + cb < g->Cg ? cb : g->Cg - c0) * taps;
            const int first = c0 == 0, final = c0 + cb >= g->Cg;
            for (int64_t f0 = 0; f0 < Fg; f0 += fb) {
                const int64_t f1 = f0 + fb < Fg ? f0 + fb : Fg;
                if (2 * nvec <= DIRECT_NV_MAX) {
                    /* rows of few vectors: tiles of rpt rows stacked */
                    const int64_t rpt = DIRECT_NV_MAX / nvec, xrow = g->sh * j->wq;
                    const MASK last = V_TAIL(OW - VL * (nvec - 1));
                    for (int64_t oh = r0; oh < r1; oh += rpt) {
                        const int nv = (int)((r1 - oh < rpt ? r1 - oh : rpt) * nvec);
                        const int mrmax = SFX(direct_mr_max)[nv - 1];
                        for (int64_t f = f0; f < f1; f += mrmax) {
                            const int mr = (int)(f1 - f < mrmax ? f1 - f : mrmax);
                            SFX(direct_tile_any)
                            (mr, nv, last, xs + oh * xrow, j->off + t0, nvec, xrow, kb,
                             W + f * K + t0, K, b ? b + f : NULL, first, final, y + f * P + oh * OW,
                             OW, P, &chk);
                        }
                    }
                    continue;
                }
                for (int64_t oh = r0; oh < r1; oh++) {
                    /* the row's vectors in ntile tiles of near-equal width */
                    for (int64_t ti = 0, v0 = 0; ti < ntile; ti++) {
                        const int nv = (int)((nvec - v0) / (ntile - ti));
                        const int64_t rem = OW - VL * (v0 + nv - 1); /* lanes of the last */
                        const MASK last = V_TAIL(rem);
                        const int mrmax = SFX(direct_mr_max)[nv - 1];
                        const T *xb = xs + oh * g->sh * j->wq + VL * v0;
                        for (int64_t f = f0; f < f1; f += mrmax) {
                            const int mr = (int)(f1 - f < mrmax ? f1 - f : mrmax);
                            SFX(direct_tile_any)
                            (mr, nv, last, xb, j->off + t0, nv, 0, kb, W + f * K + t0, K,
                             b ? b + f : NULL, first, final, y + f * P + oh * OW + VL * v0, 0, P,
                             &chk);
                        }
                        v0 += nv;
                    }
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

static int SFX(direct_image)(const cvd_geom *g, const T *W_g, const T *b_g, const T *x_g, T *y_g,
                             T *ws, int nt)
{
    direct_job j = {.g = g, .W = W_g, .b = b_g, .y = y_g};
    direct_setup(&j, VL, (int64_t)sizeof(T), DIRECT_NV_MAX, ws);
    SFX(direct_fill)(g, x_g, (T *)(void *)j.xs, j.wq);
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
