/*
 * blocked_impl.h — template of the channel-blocked forward, included by blocked.c once per
 * ISA and dtype after simd.h. Generates, for SFX = _avx512_f32, _avx512_f64, _avx2_f32,
 * _avx2_f64: blk_tile, blk_tile_any, blk_rows, blk_part, blk_fill, blk_weights, blk_wjob,
 * blk_wpart, blk_prep and blk_forward (blk_forward_avx512_f32 ... blk_forward_avx2_f64).
 * See blocked.c.
 */

/* One tile: filter blocks 0 .. nb-1 (yb blocks ybs apart, W blocks wfs apart) times output
 * pixels 0 .. ur-1 of one row (xb steps sxv apart: VL when s1), over steps k0 .. k1-1
 * (channel and tap: k = c*kh*kw + i*kw + j, read at xr + off[k]). The accumulators start
 * from the bias on the first block of channels and from yb on the others. nb, ur and s1
 * are constants after inlining. */
static inline __attribute__((always_inline)) SIMD_TARGET void
SFX(blk_tile)(const int nb, const int ur, const int s1, const blk_job *j, const T *xr, const T *wb,
              int64_t k0, int64_t k1, T *yb, const T *bias, int first)
{
    const int64_t wfs = j->wfs, ybs = j->ybs, sxv = s1 ? VL : j->g->sw * VL;
    const int64_t *off = j->off;
    VEC acc[BLK_NB_MAX][BLK_UR_MAX];
    _Pragma("GCC unroll 8") for (int n = 0; n < nb; n++)
    {
        _Pragma("GCC unroll 8") for (int u = 0; u < ur; u++) acc[n][u] =
            first ? V_LOAD(bias + n * VL) : V_LOAD(yb + n * ybs + u * VL);
    }
    const T *wp = wb + k0 * VL;
    for (int64_t k = k0; k < k1; k++, wp += VL) {
        const T *xp = xr + off[k];
        VEC w[BLK_NB_MAX];
        _Pragma("GCC unroll 8") for (int n = 0; n < nb; n++) w[n] = V_LOAD(wp + n * wfs);
        _Pragma("GCC unroll 8") for (int u = 0; u < ur; u++)
        {
            const VEC xv = V_SET1(xp[u * sxv]);
            _Pragma("GCC unroll 8") for (int n = 0; n < nb; n++) acc[n][u] =
                V_FMA(w[n], xv, acc[n][u]);
        }
    }
    _Pragma("GCC unroll 8") for (int n = 0; n < nb; n++)
    {
        _Pragma("GCC unroll 8") for (int u = 0; u < ur; u++)
            V_STORE(yb + n * ybs + u * VL, acc[n][u]);
    }
}

#define BLK_U(nb, ur)                                                                              \
    case ur:                                                                                       \
        if (s1)                                                                                    \
            SFX(blk_tile)(nb, ur, 1, j, xr, wb, k0, k1, yb, bias, first);                          \
        else                                                                                       \
            SFX(blk_tile)(nb, ur, 0, j, xr, wb, k0, k1, yb, bias, first);                          \
        break;
#define BLK_N(nb)                                                                                  \
    case nb:                                                                                       \
        switch (ur) {                                                                              \
            BLK_U(nb, 1) BLK_U(nb, 2) BLK_U(nb, 3) BLK_U(nb, 4) BLK_UR_WIDE(nb)                    \
        }                                                                                          \
        break;
#if SIMD_WIDE
#define BLK_UR_WIDE(nb) BLK_U(nb, 5) BLK_U(nb, 6)
#define BLK_SWITCH      BLK_N(1) BLK_N(2) BLK_N(3) BLK_N(4)
#else
#define BLK_UR_WIDE(nb)
#define BLK_SWITCH BLK_N(1) BLK_N(2) BLK_N(3)
#endif
/* The tile for any nb <= BLK_NB, ur <= BLK_UR as constants. */
static SIMD_TARGET void SFX(blk_tile_any)(int nb, int ur, int s1, const blk_job *j, const T *xr,
                                          const T *wb, int64_t k0, int64_t k1, T *yb, const T *bias,
                                          int first)
{
    switch (nb) {
        BLK_SWITCH
    }
}
#undef BLK_U
#undef BLK_N
#undef BLK_UR_WIDE
#undef BLK_SWITCH

/* Rows r0 .. r1-1 of yb into y: y[f][p] = yb[f / VL][p][f % VL], VL pixels of a whole
 * block as one transposed square; the values stored are added to the finiteness sums chk
 * (vectors) and tail. */
static SIMD_TARGET void SFX(blk_store)(const blk_job *j, int64_t r0, int64_t r1, VEC *chk, T *tail)
{
    const cvd_geom *g = j->g;
    const int64_t P = g->P, p0 = r0 * g->OW, p1 = r1 * g->OW, fbn = j->fbn;
    const VEC zero = V_ZERO();
    const T *yb = j->yb;
    T *y = j->y;
    VEC ck = *chk; /* local: stores to y could alias *chk, which would go through memory */
    for (int64_t fb = 0; fb < fbn; fb++) {
        const int64_t lanes = g->Fg - fb * VL < VL ? g->Fg - fb * VL : VL;
        const T *src = yb + fb * P * VL;
        T *dst = y + fb * VL * P;
        int64_t p = p0;
        if (lanes == VL)
            for (; p + VL <= p1; p += VL) {
                for (int i = 0; i < VL; i++)
                    ck = V_ADD(ck, V_MUL(V_LOAD(src + (p + i) * VL), zero));
                V_TRSQ(src + p * VL, VL, dst + p, P);
            }
        for (int64_t l = 0; l < lanes; l++)
            for (int64_t q = p; q < p1; q++) {
                dst[l * P + q] = src[q * VL + l];
                *tail += dst[l * P + q] * 0;
            }
    }
    *chk = ck;
}

/* Output rows oh0 .. oh1-1 of the image, in bands whose rows of yb stay in L2: in a band,
 * blocks of BLK_NB filter blocks, chunks of cch channels (their weights stay in L2 while
 * every tile of the band passes), tiles of near-equal widths along each row; then the
 * band into y. Returns whether every value written is finite. */
static SIMD_TARGET int SFX(blk_rows)(const blk_job *j, int64_t oh0, int64_t oh1)
{
    const cvd_geom *g = j->g;
    const int64_t OW = g->OW, P = g->P, Wp = g->Wp, fbn = j->fbn, cch = j->cch;
    const int64_t taps = g->kh * g->kw, ntile = (OW + BLK_UR - 1) / BLK_UR;
    const T *xb = j->xb, *wb = j->wb, *bp = j->bp;
    T *yb = j->yb;
    const int s1 = g->sw == 1;
    VEC chk = V_ZERO();
    T tail = 0;
    for (int64_t r0 = oh0; r0 < oh1; r0 += j->band) {
        const int64_t r1 = r0 + j->band < oh1 ? r0 + j->band : oh1;
        for (int64_t fb = 0; fb < fbn; fb += BLK_NB) {
            const int nb = (int)(fbn - fb < BLK_NB ? fbn - fb : BLK_NB);
            for (int64_t c0 = 0; c0 < g->Cg; c0 += cch) {
                const int64_t c1 = c0 + cch < g->Cg ? c0 + cch : g->Cg;
                for (int64_t oh = r0; oh < r1; oh++)
                    for (int64_t ti = 0, ow = 0; ti < ntile; ti++) {
                        const int ur = (int)((OW - ow) / (ntile - ti));
                        SFX(blk_tile_any)
                        (nb, ur, s1, j, xb + (oh * g->sh * Wp + ow * g->sw) * VL, wb + fb * j->wfs,
                         c0 * taps, c1 * taps, yb + (fb * P + oh * OW + ow) * VL, bp + fb * VL,
                         c0 == 0);
                        ow += ur;
                    }
            }
        }
        SFX(blk_store)(j, r0, r1, &chk, &tail);
    }
    return V_UNORD(chk) == 0 && tail == tail;
}

static void SFX(blk_part)(void *arg, int task, int ntasks)
{
    blk_job *j = arg;
    const int64_t OH = j->g->OH;
    j->finite[task] = SFX(blk_rows)(j, OH * task / ntasks, OH * (task + 1) / ntasks);
}

/* xb[cb][r][q][l] = x_g[cb*VL + l] zero-padded at (r, q), zeros past Cg: a row of a
 * block at a time, transposed (V_TRBAND); or, when rows are not whole vectors wide and
 * the block is whole, VL pixels of the plane at a time (they may span rows) as one
 * transposed square, each pixel's vector then stored at its padded place. A 14-wide row
 * holds no 16 x 16 square: element by element, the copy was 4 % of resnet_deep's dx. */
static SIMD_TARGET void SFX(blk_fill)(const cvd_geom *g, const T *x_g, T *xb)
{
    const int64_t cbn = (g->Cg + VL - 1) / VL, Wp = g->Wp, W = g->W, rowv = Wp * VL;
    const int64_t HW = g->HW;
    const size_t es = sizeof(T);
    for (int64_t cb = 0; cb < cbn; cb++) {
        const int64_t lanes = g->Cg - cb * VL < VL ? g->Cg - cb * VL : VL;
        const int plane = lanes == VL && W % VL != 0;
        T *blk = xb + cb * g->Hp * rowv;
        const T *src = x_g + cb * VL * HW;
        memset(blk, 0, (size_t)(g->pt * rowv) * es);
        memset(blk + (g->pt + g->H) * rowv, 0, (size_t)((g->Hp - g->pt - g->H) * rowv) * es);
        for (int64_t h = 0; h < g->H; h++) {
            T *row = blk + (g->pt + h) * rowv, *d = row + g->pl * VL;
            memset(row, 0, (size_t)(g->pl * VL) * es);
            memset(row + (g->pl + W) * VL, 0, (size_t)((Wp - g->pl - W) * VL) * es);
            if (!plane)
                V_TRBAND(src + h * W, HW, lanes, W, d, VL);
        }
        if (!plane)
            continue;
        T sq[VL * VL] __attribute__((aligned(64)));
        int64_t p = 0;
        for (; p + VL <= HW; p += VL) {
            V_TRSQ(src + p, HW, sq, VL);
            for (int64_t i = 0, h = p / W, w = p % W; i < VL; i++, w++) {
                if (w == W)
                    h++, w = 0;
                V_STORE(blk + ((g->pt + h) * Wp + g->pl + w) * VL, V_LOAD(sq + i * VL));
            }
        }
        for (; p < HW; p++)
            for (int64_t l = 0; l < VL; l++)
                blk[((g->pt + p / W) * Wp + g->pl + p % W) * VL + l] = src[l * HW + p];
    }
}

/* wb[fb][k][l] = W_g[fb*VL + l][k] and bp[fb*VL + l] = b_g[fb*VL + l], zeros past Fg.
 * With flip, W_g is the group's weights of the layer g is the backward-data of, and
 * W_g[f][k] above is read as W_g[c][f][taps-1-q] for k = (c, q): per filter block, a
 * VL x taps slab of each of its channels (in L1 after its first row), written out
 * taps x VL in order. */
static SIMD_TARGET void SFX(blk_weights)(const cvd_geom *g, const T *W_g, const T *b_g, T *wb,
                                         T *bp, int flip, int64_t fb0, int64_t fb1)
{
    const int64_t K = g->K, taps = g->kh * g->kw;
    /* flipped: channel by channel, so W is read in order (block by block, each block's
     * slab is VL*taps values past the last); a block at a time read slabs Fg*taps apart
     * and waited on memory for each (6 % of resnet_deep's dx) */
    for (int64_t c = 0; flip && c < g->Cg; c++)
        for (int64_t fb = fb0; fb < fb1; fb++) {
            const int64_t lanes = g->Fg - fb * VL < VL ? g->Fg - fb * VL : VL;
            const T *src = W_g + (c * g->Fg + fb * VL) * taps;
            T *dst = wb + (fb * K + c * taps) * VL;
            for (int64_t q = 0; q < taps; q++)
                for (int64_t l = 0; l < VL; l++)
                    dst[q * VL + l] = l < lanes ? src[l * taps + taps - 1 - q] : 0;
        }
    for (int64_t fb = fb0; fb < fb1; fb++) {
        const int64_t lanes = g->Fg - fb * VL < VL ? g->Fg - fb * VL : VL;
        if (!flip)
            V_TRBAND(W_g + fb * VL * K, K, lanes, K, wb + fb * K * VL, VL);
        for (int64_t l = 0; l < VL; l++)
            bp[fb * VL + l] = l < lanes && b_g ? b_g[fb * VL + l] : 0;
    }
}

/* Filter blocks of one task's share into wb and bp (blk_prep). */
typedef struct SFX(blk_wjob) {
    const cvd_geom *g;
    const T *W, *b;
    T *wb;
    int flip;
} SFX(blk_wjob);

static void SFX(blk_wpart)(void *arg, int task, int ntasks)
{
    const SFX(blk_wjob) *j = arg;
    const int64_t fbn = (j->g->Fg + VL - 1) / VL;
    SFX(blk_weights)
    (j->g, j->W, j->b, j->wb, j->wb + fbn * VL * j->g->K, j->flip, fbn * task / ntasks,
     fbn * (task + 1) / ntasks);
}

/* The blocked weights and bias of a one-group layer into wb (blk_weights' layout, the
 * bias after the weights), filter blocks split across nt threads. */
static SIMD_TARGET void SFX(blk_prep)(const cvd_geom *g, const T *W, const T *b, T *wb, int flip,
                                      int nt)
{
    const int64_t fbn = (g->Fg + VL - 1) / VL;
    SFX(blk_wjob) j = {g, W, b, wb, flip};
    const int tasks = (int)(nt < fbn ? nt : fbn);
    cvd_parallel_run(tasks, tasks, SFX(blk_wpart), &j);
}

static SIMD_TARGET int SFX(blk_forward)(const cvd_geom *g, const T *W, const T *b, const T *x, T *y,
                                        T *ws, int64_t lo, int64_t hi, int nt, int flip,
                                        const T *pre)
{
    const int64_t fbn = (g->Fg + VL - 1) / VL, cbn = (g->Cg + VL - 1) / VL;
    blk_job j = {.g = g, .fbn = fbn};
    int64_t *off = (int64_t *)(void *)ws;
    ws += (g->K * (int64_t)sizeof(int64_t) + (int64_t)sizeof(T) * VL - 1) /
          ((int64_t)sizeof(T) * VL) * VL;
    for (int64_t c = 0; c < g->Cg; c++)
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t jj = 0; jj < g->kw; jj++)
                off[(c * g->kh + i) * g->kw + jj] =
                    c / VL * g->Hp * g->Wp * VL + c % VL + (i * g->dh * g->Wp + jj * g->dw) * VL;
    j.off = off;
    T *wb = ws, *bp = wb + fbn * VL * g->K, *xb = bp + fbn * VL,
      *yb = xb + cbn * VL * g->Hp * g->Wp;
    j.wb = pre ? pre : wb, j.bp = pre ? pre + fbn * VL * g->K : bp, j.xb = xb, j.yb = yb;
    j.wfs = g->K * VL;
    j.ybs = g->P * VL;
    /* a tile's weights of one chunk of channels take at most a quarter of L2 on AVX-512:
     * they stream from there in order, and fewer chunks send the accumulators through yb
     * fewer times (half of L1 ran 3-8 % slower on every blocked bench shape). The AVX2
     * tile, whose 16 registers all hold accumulators, weights or the broadcast, ran 4-5 %
     * faster on resnet_deep (level on resnet_mid) with them in half of L1. */
    const int64_t wbudget = SIMD_WIDE ? (int64_t)cvd_cpu_l2() / 4 : (int64_t)cvd_cpu_l1d() / 2;
    const int64_t cch = wbudget / (BLK_NB * g->kh * g->kw * VL * (int64_t)sizeof(T));
    j.cch = cch < 1 ? 1 : cch;
    /* a band's rows of yb take at most a quarter of L2 */
    const int64_t band = (int64_t)cvd_cpu_l2() / 4 / (fbn * VL * g->OW * (int64_t)sizeof(T));
    j.band = band < 1 ? 1 : band;
    int tasks = nt < g->OH ? nt : (int)g->OH;
    tasks = tasks > CVD_MAX_PARTS ? CVD_MAX_PARTS : tasks < 1 ? 1 : tasks;
    int finite = 1;
    for (int64_t grp = 0; grp < g->G; grp++) {
        if (!pre)
            SFX(blk_weights)
        (g, W + grp * g->Fg * g->K, b ? b + grp * g->Fg : NULL, wb, bp, flip, 0, fbn);
        for (int64_t n = lo; n < hi; n++) {
            SFX(blk_fill)(g, x + (n * g->C + grp * g->Cg) * g->HW, xb);
            j.y = y + (n * g->F + grp * g->Fg) * g->P;
            if (tasks == 1) {
                finite &= SFX(blk_rows)(&j, 0, g->OH);
                continue;
            }
            cvd_parallel_run(tasks, tasks, SFX(blk_part), &j);
            for (int t = 0; t < tasks; t++)
                finite &= j.finite[t];
        }
    }
    return finite;
}
