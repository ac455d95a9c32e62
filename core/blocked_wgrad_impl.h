/*
 * blocked_wgrad_impl.h — template of the filter-blocked dW, included by blocked_wgrad.c once
 * per ISA and dtype after simd.h. Generates, for SFX = _avx512_f32, _avx512_f64, _avx2_f32,
 * _avx2_f64: bwg_tile, bwg_tile_any, bwg_taps, bwg_part, bwg_delta, bwg_pad, bwg_out and
 * bwg_run (bwg_run_avx512_f32 ... bwg_run_avx2_f64). See blocked_wgrad.c.
 */

/* One tile: dwb blocks 0 .. nb-1 of filters (K*VL apart) at taps 0 .. ur-1 (x offsets
 * off) += the sums over output pixels p0 .. p1-1 (db: the blocks' delta, P*VL apart).
 * nb and ur are constants after inlining. */
static inline __attribute__((always_inline)) SIMD_TARGET void
SFX(bwg_tile)(const int nb, const int ur, const bwg_job *j, const T *db, const int64_t *off,
              int64_t p0, int64_t p1, T *dw)
{
    const cvd_geom *g = j->g;
    const int64_t OW = g->OW, dbs = g->P * VL, dws = g->K * VL, sw = g->sw;
    const int64_t xrow = g->sh * g->Wp;
    VEC acc[BWG_NB_MAX][BWG_UR_MAX];
    _Pragma("GCC unroll 8") for (int n = 0; n < nb; n++)
    {
        _Pragma("GCC unroll 8") for (int u = 0; u < ur; u++) acc[n][u] =
            V_LOAD(dw + n * dws + u * VL);
    }
    int64_t oh = p0 / OW, ow = p0 - oh * OW;
    for (int64_t p = p0; p < p1; oh++, ow = 0) {
        const int64_t e = p + (OW - ow) < p1 ? p + (OW - ow) : p1;
        const T *xr = (const T *)j->xp + oh * xrow + ow * sw;
        const T *xq[BWG_UR_MAX];
        _Pragma("GCC unroll 8") for (int u = 0; u < ur; u++) xq[u] = xr + off[u];
        for (const T *d = db + p * VL; p < e; p++, d += VL) {
            VEC dv[BWG_NB_MAX];
            _Pragma("GCC unroll 8") for (int n = 0; n < nb; n++) dv[n] = V_LOAD(d + n * dbs);
            _Pragma("GCC unroll 8") for (int u = 0; u < ur; u++)
            {
                const VEC xv = V_SET1(*xq[u]);
                xq[u] += sw;
                _Pragma("GCC unroll 8") for (int n = 0; n < nb; n++) acc[n][u] =
                    V_FMA(dv[n], xv, acc[n][u]);
            }
        }
    }
    _Pragma("GCC unroll 8") for (int n = 0; n < nb; n++)
    {
        _Pragma("GCC unroll 8") for (int u = 0; u < ur; u++)
            V_STORE(dw + n * dws + u * VL, acc[n][u]);
    }
}

#define BWG_U(nb, ur)                                                                              \
    case ur:                                                                                       \
        SFX(bwg_tile)(nb, ur, j, db, off, p0, p1, dw);                                             \
        break;
#define BWG_N(nb)                                                                                  \
    case nb:                                                                                       \
        switch (ur) {                                                                              \
            BWG_U(nb, 1) BWG_U(nb, 2) BWG_U(nb, 3) BWG_U(nb, 4) BWG_UR_WIDE(nb)                    \
        }                                                                                          \
        break;
#if SIMD_WIDE
#define BWG_UR_WIDE(nb) BWG_U(nb, 5) BWG_U(nb, 6)
#define BWG_SWITCH      BWG_N(1) BWG_N(2) BWG_N(3) BWG_N(4)
#else
#define BWG_UR_WIDE(nb)
#define BWG_SWITCH BWG_N(1) BWG_N(2) BWG_N(3)
#endif
/* The tile for any nb <= BWG_NB, ur <= BWG_UR as constants. */
static SIMD_TARGET void SFX(bwg_tile_any)(int nb, int ur, const bwg_job *j, const T *db,
                                          const int64_t *off, int64_t p0, int64_t p1, T *dw)
{
    switch (nb) {
        BWG_SWITCH
    }
}
#undef BWG_U
#undef BWG_N
#undef BWG_UR_WIDE
#undef BWG_SWITCH

/* Taps k0 .. k1-1 of every filter block for the image in j: blocks of BWG_NB filter
 * blocks, in them chunks of pixels whose delta stays in L2 while every tile of taps
 * passes over it. */
static SIMD_TARGET void SFX(bwg_taps)(const bwg_job *j, int64_t k0, int64_t k1)
{
    const cvd_geom *g = j->g;
    const int64_t P = g->P, K = g->K;
    const T *db = j->db;
    T *dwb = j->dwb;
    for (int64_t fb = 0; fb < j->fbn; fb += BWG_NB) {
        const int nb = (int)(j->fbn - fb < BWG_NB ? j->fbn - fb : BWG_NB);
        for (int64_t c = 0, p0 = 0; c < j->chunks; c++) {
            const int64_t p1 = P * (c + 1) / j->chunks;
            for (int64_t k = k0; k < k1; k += BWG_UR) {
                const int ur = (int)(k1 - k < BWG_UR ? k1 - k : BWG_UR);
                SFX(bwg_tile_any)
                (nb, ur, j, db + fb * P * VL, j->off + k, p0, p1, dwb + (fb * K + k) * VL);
            }
            p0 = p1;
        }
    }
}

static void SFX(bwg_part)(void *arg, int task, int ntasks)
{
    const bwg_job *j = arg;
    /* whole tiles of taps per task */
    const int64_t K = j->g->K, tiles = (K + BWG_UR - 1) / BWG_UR;
    const int64_t a = tiles * task / ntasks * BWG_UR, b = tiles * (task + 1) / ntasks * BWG_UR;
    SFX(bwg_taps)(j, a, b < K ? b : K);
}

/* db[fb][p][l] = delta_g[fb*VL + l][p], zeros past Fg. */
static SIMD_TARGET void SFX(bwg_delta)(const cvd_geom *g, const T *delta_g, T *db)
{
    const int64_t P = g->P, fbn = (g->Fg + VL - 1) / VL;
    for (int64_t fb = 0; fb < fbn; fb++) {
        const int64_t lanes = g->Fg - fb * VL < VL ? g->Fg - fb * VL : VL;
        V_TRBAND(delta_g + fb * VL * P, P, lanes, P, db + fb * P * VL, VL);
    }
}

/* xp[c][r][q] = x_g[c] zero-padded at (r, q). */
static SIMD_TARGET void SFX(bwg_pad)(const cvd_geom *g, const T *x_g, T *xp)
{
    const int64_t Hp = g->Hp, Wp = g->Wp, W = g->W;
    const size_t es = sizeof(T);
    for (int64_t c = 0; c < g->Cg; c++) {
        T *pl = xp + c * Hp * Wp;
        memset(pl, 0, (size_t)(g->pt * Wp) * es);
        memset(pl + (g->pt + g->H) * Wp, 0, (size_t)((Hp - g->pt - g->H) * Wp) * es);
        for (int64_t h = 0; h < g->H; h++) {
            T *row = pl + (g->pt + h) * Wp;
            memset(row, 0, (size_t)g->pl * es);
            memcpy(row + g->pl, x_g + c * g->HW + h * W, (size_t)W * es);
            memset(row + g->pl + W, 0, (size_t)(Wp - g->pl - W) * es);
        }
    }
}

/* dW_g[f][k] = dwb[f / VL][k][f % VL]: VL steps at a time as transposed squares
 * (V_TRBAND), the last steps (fewer than VL) element by element, as V_TRBAND would write
 * VL of them and run into the next filter's row. */
static SIMD_TARGET void SFX(bwg_out)(const cvd_geom *g, const T *dwb, T *dW_g)
{
    const int64_t K = g->K, fbn = (g->Fg + VL - 1) / VL;
    for (int64_t fb = 0; fb < fbn; fb++) {
        const int64_t nf = g->Fg - fb * VL < VL ? g->Fg - fb * VL : VL;
        const T *s = dwb + fb * K * VL;
        T *d = dW_g + fb * VL * K;
        int64_t k0 = 0;
        for (; k0 + VL <= K; k0 += VL)
            V_TRBAND(s + k0 * VL, VL, VL, nf, d + k0, K);
        for (int64_t f = 0; f < nf; f++)
            for (int64_t k = k0; k < K; k++)
                d[f * K + k] = s[k * VL + f];
    }
}

static SIMD_TARGET void SFX(bwg_run)(const cvd_geom *g, const T *x, const T *delta, T *dW, T *ws,
                                     int64_t lo, int64_t hi, int nt)
{
    const int64_t fbn = (g->Fg + VL - 1) / VL, es = (int64_t)sizeof(T);
    bwg_job j = {.g = g, .fbn = fbn};
    int64_t *off = (int64_t *)(void *)ws;
    ws += (g->K * (int64_t)sizeof(int64_t) + es * VL - 1) / (es * VL) * VL;
    for (int64_t c = 0; c < g->Cg; c++)
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t jj = 0; jj < g->kw; jj++)
                off[(c * g->kh + i) * g->kw + jj] = (c * g->Hp + i * g->dh) * g->Wp + jj * g->dw;
    j.off = off;
    T *dwb = ws, *db = dwb + fbn * VL * g->K, *xp = db + fbn * VL * g->P;
    j.dwb = dwb, j.db = db, j.xp = xp;
    /* a tile's delta of one chunk of pixels takes at most a quarter of L2 (half of L1, as
     * first written, ran 2-8 % slower: the accumulators went through dwb more often) */
    const int64_t pch = (int64_t)cvd_cpu_l2() / 4 / (BWG_NB * VL * es);
    j.chunks = (g->P + pch - 1) / (pch < 1 ? 1 : pch);
    const int64_t tiles = (g->K + BWG_UR - 1) / BWG_UR;
    int tasks = nt < tiles ? nt : (int)tiles;
    tasks = tasks > CVD_MAX_PARTS ? CVD_MAX_PARTS : tasks < 1 ? 1 : tasks;
    for (int64_t grp = 0; grp < g->G; grp++) {
        memset(dwb, 0, (size_t)(fbn * VL * g->K) * sizeof(T));
        for (int64_t n = lo; n < hi; n++) {
            SFX(bwg_pad)(g, x + (n * g->C + grp * g->Cg) * g->HW, xp);
            SFX(bwg_delta)(g, delta + (n * g->F + grp * g->Fg) * g->P, db);
            if (tasks == 1)
                SFX(bwg_taps)(&j, 0, g->K);
            else
                cvd_parallel_run(tasks, tasks, SFX(bwg_part), &j);
        }
        SFX(bwg_out)(g, dwb, dW + grp * g->Fg * g->K);
    }
}
