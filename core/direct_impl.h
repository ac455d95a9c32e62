/*
 * direct_impl.h — template of the direct kernel, included by direct.c once per ISA and
 * dtype after simd.h and xs_impl.h. Generates, for SFX = _avx512_f32, _avx512_f64,
 * _avx2_f32, _avx2_f64: direct_mr_max, direct_seg, direct_tile, direct_tile_any,
 * direct_plane_any, direct_segs, direct_column, direct_rows, direct_part and direct_image
 * (direct_tile_avx512_f32 ... direct_image_avx2_f64). See direct.c.
 */

/* Tile heights for each width nv (index nv - 1): the MR*NV accumulators, NV x vectors and
 * one broadcast fit the ISA's vector registers. */
#if SIMD_WIDE
static const int SFX(direct_mr_max)[DIRECT_NV_MAX] = DIRECT_MR_MAX_WIDE;
#else
static const int SFX(direct_mr_max)[DIRECT_NV_MAX] = DIRECT_MR_MAX_NARROW;
#endif

/* Where the vectors of a flat tile (direct_rows) go in y: vector v's lanes of its first
 * row by m[0][v] at y + yo[0][v], those of the next row by m[1][v] at y + yo[1][v] (a row
 * at least a vector wide: two rows at most); junk columns and rows past the band in none. */
typedef struct SFX(direct_seg) {
    MASK m[2][DIRECT_NV_MAX];
    int64_t yo[2][DIRECT_NV_MAX];
} SFX(direct_seg);

/* One tile: filters 0 .. mr-1 of w (row stride K) times output vectors 0 .. nv-1, over kb
 * taps (offsets off), vector v read at xb + xo[v] and stored at y + yo[v] (filter rows ldy
 * apart). Modes: 0, one row, xo = yo = v*VL, the lanes of the last vector by `last`; 1,
 * output rows of nvr vectors stacked, xrow apart in xb and yrow in y, each row's last by
 * `last`; 2, the flat plane: xo = v*VL, stored by seg. The accumulators start from the
 * bias (b, or zero when b is NULL) on the first block of channels and from y on the
 * others; on the last block every stored value adds v*0 to *chk (NaN exactly when one is
 * not finite). mode, mr and nv are constants after inlining, so the accumulators live in
 * registers and the offsets fold into the loads' displacements. */
static inline __attribute__((always_inline)) SIMD_TARGET void
SFX(direct_tile)(const int mr, const int nv, const int mode, MASK last, const SFX(direct_seg) * seg,
                 const T *xb, const int64_t *off, int64_t nvr, int64_t xrow, int64_t kb, const T *w,
                 int64_t K, const T *b, int first, int final, T *y, int64_t yrow, int64_t ldy,
                 VEC *chk)
{
    VEC acc[8][DIRECT_NV_MAX];
    int64_t xo[DIRECT_NV_MAX], yo[DIRECT_NV_MAX];
    int lastv[DIRECT_NV_MAX];
    _Pragma("GCC unroll 8") for (int v = 0, r = 0, c = 0; v < nv; v++)
    {
        xo[v] = mode == 1 ? r * xrow + c * VL : VL * v;
        yo[v] = mode == 1 ? r * yrow + c * VL : VL * v;
        lastv[v] = mode == 1 ? c == nvr - 1 : v == nv - 1;
        if (++c == nvr)
            c = 0, r++;
    }
    _Pragma("GCC unroll 8") for (int m = 0; m < mr; m++)
    {
        const VEC bias = b ? V_SET1(b[m]) : V_ZERO();
        const T *yr = y + m * ldy;
        _Pragma("GCC unroll 8") for (int v = 0; v < nv; v++)
        {
            if (first)
                acc[m][v] = bias;
            else if (mode == 2)
                acc[m][v] = V_MMERGE(V_MLOAD(yr + seg->yo[0][v], seg->m[0][v]), yr + seg->yo[1][v],
                                     seg->m[1][v]);
            else
                acc[m][v] = !lastv[v] ? V_LOAD(yr + yo[v]) : V_MLOAD(yr + yo[v], last);
        }
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
    VEC ck = zero; /* local: stores to y could alias *chk, which would go through memory */
    _Pragma("GCC unroll 8") for (int m = 0; m < mr; m++)
    {
        T *yr = y + m * ldy;
        _Pragma("GCC unroll 8") for (int v = 0; v < nv; v++)
        {
            if (mode == 2) {
                _Pragma("GCC unroll 2") for (int s = 0; s < 2; s++)
                {
                    V_MSTORE(yr + seg->yo[s][v], seg->m[s][v], acc[m][v]);
                    if (final)
                        ck = V_MADD(ck, seg->m[s][v], V_MUL(acc[m][v], zero));
                }
            } else if (!lastv[v]) {
                V_STORE(yr + yo[v], acc[m][v]);
                if (final)
                    ck = V_ADD(ck, V_MUL(acc[m][v], zero));
            } else {
                V_MSTORE(yr + yo[v], last, acc[m][v]);
                if (final)
                    ck = V_MADD(ck, last, V_MUL(acc[m][v], zero));
            }
        }
    }
    if (final)
        *chk = V_ADD(*chk, ck);
}

/* The tile for any mr <= direct_mr_max[nv - 1], nv <= DIRECT_NV_MAX, as constants: rows
 * (modes 0 and 1) in direct_tile_any, the plane (mode 2) in direct_plane_any. Apart,
 * because one function holding all three kept fewer W row pointers in registers (AVX2
 * resnet_mid spilled them in its inner loop, 8 % slower). */
#define DIRECT_MR4(nv) DIRECT_MR(1, nv) DIRECT_MR(2, nv) DIRECT_MR(3, nv) DIRECT_MR(4, nv)
#define DIRECT_MR6(nv) DIRECT_MR4(nv) DIRECT_MR(5, nv) DIRECT_MR(6, nv)
#define DIRECT_MR8(nv) DIRECT_MR6(nv) DIRECT_MR(7, nv) DIRECT_MR(8, nv)
#define DIRECT_NV(nv, cases)                                                                       \
    case nv:                                                                                       \
        switch (mr) {                                                                              \
            cases                                                                                  \
        }                                                                                          \
        break;
#if SIMD_WIDE
#define DIRECT_SWITCH DIRECT_SWITCH_WIDE
#else
#define DIRECT_SWITCH DIRECT_SWITCH_NARROW
#endif
#define DIRECT_MR(mr, nv)                                                                          \
    case mr:                                                                                       \
        if (nvr == (nv))                                                                           \
            SFX(direct_tile)                                                                       \
        (mr, nv, 0, last, seg, xb, off, nvr, xrow, kb, w, K, b, first, final, y, yrow, ldy, chk);  \
        else SFX(direct_tile)(mr, nv, 1, last, seg, xb, off, nvr, xrow, kb, w, K, b, first, final, \
                              y, yrow, ldy, chk);                                                  \
        break;
static SIMD_TARGET void SFX(direct_tile_any)(int mr, int nv, MASK last, const SFX(direct_seg) * seg,
                                             const T *xb, const int64_t *off, int64_t nvr,
                                             int64_t xrow, int64_t kb, const T *w, int64_t K,
                                             const T *b, int first, int final, T *y, int64_t yrow,
                                             int64_t ldy, VEC *chk)
{
    switch (nv) {
        DIRECT_SWITCH
    }
}
#undef DIRECT_MR
#define DIRECT_MR(mr, nv)                                                                          \
    case mr:                                                                                       \
        SFX(direct_tile)                                                                           \
        (mr, nv, 2, last, seg, xb, off, nvr, xrow, kb, w, K, b, first, final, y, yrow, ldy, chk);  \
        break;
static SIMD_TARGET void SFX(direct_plane_any)(int mr, int nv, MASK last,
                                              const SFX(direct_seg) * seg, const T *xb,
                                              const int64_t *off, int64_t nvr, int64_t xrow,
                                              int64_t kb, const T *w, int64_t K, const T *b,
                                              int first, int final, T *y, int64_t yrow, int64_t ldy,
                                              VEC *chk)
{
    switch (nv) {
        DIRECT_SWITCH
    }
}
#undef DIRECT_SWITCH
#undef DIRECT_NV
#undef DIRECT_MR
#undef DIRECT_MR4
#undef DIRECT_MR6
#undef DIRECT_MR8

/* seg for the nv vectors of the flat plane from q (row q / wq) in a band ending at row
 * rend: lanes in columns below OW of rows below rend. */
static SIMD_TARGET void SFX(direct_segs)(SFX(direct_seg) * seg, int nv, int64_t q, int64_t wq,
                                         int64_t OW, int64_t rend)
{
    int64_t r = q / wq;
    for (int v = 0; v < nv; v++, q += VL) {
        while ((r + 1) * wq <= q)
            r++;
        for (int s = 0; s < 2; s++) {
            /* lanes a .. b-1 are row r + s's columns 0 .. OW-1 */
            const int64_t a = (r + s) * wq - q, b = a + OW;
            const int64_t lo = a < 0 ? 0 : a > VL ? VL : a, hi = b < 0 ? 0 : b > VL ? VL : b;
            const int on = r + s < rend && hi > lo;
            seg->m[s][v] = V_RANGE(on ? lo : 0, on ? hi : 0);
            seg->yo[s][v] = q - (r + s) * (wq - OW);
        }
    }
}

/* Filters f0 .. f1-1 of one tile position in tiles of near-equal height (at most
 * direct_mr_max[nv - 1]); the other arguments as direct_tile's. */
static inline SIMD_TARGET void SFX(direct_column)(const direct_job *j, int64_t f0, int64_t f1,
                                                  int nv, MASK last, const SFX(direct_seg) * seg,
                                                  const T *xb, const int64_t *off, int64_t nvr,
                                                  int64_t xrow, int64_t kb, int64_t t0, int first,
                                                  int final, T *y, int64_t yrow, VEC *chk)
{
    const cvd_geom *g = j->g;
    const T *W = j->W, *b = j->b;
    const int64_t mrmax = SFX(direct_mr_max)[nv - 1], ntile = (f1 - f0 + mrmax - 1) / mrmax;
    for (int64_t ti = 0, f = f0; ti < ntile; ti++) {
        const int mr = (int)((f1 - f) / (ntile - ti));
        (seg ? SFX(direct_plane_any) : SFX(direct_tile_any))(
            mr, nv, last, seg, xb, off, nvr, xrow, kb, W + f * g->K + t0, g->K, b ? b + f : NULL,
            first, final, y + f * g->P, yrow, g->P, chk);
        f += mr;
    }
}

/* Output rows oh0 .. oh1-1 of one image and group; returns whether all of them are finite.
 * Bands of rb output rows (their xs rows stay in L2); in a band, blocks of cb channels
 * (a tile's x, kb taps by NV vectors, stays in L1 across the filter tiles of its place),
 * and in those blocks of fb filters (their W rows stay in L1). A place is a stretch of
 * the flat plane (j->flat), a row's vectors, or rows of few vectors stacked. */
static SIMD_TARGET int SFX(direct_rows)(const direct_job *j, int64_t oh0, int64_t oh1)
{
    const cvd_geom *g = j->g;
    const int64_t OW = g->OW, taps = g->kh * g->kw, wq = j->wq;
    const int64_t nvec = (OW + VL - 1) / VL, ntile = (nvec + DIRECT_NV_MAX - 1) / DIRECT_NV_MAX;
    const int64_t rb = direct_even(oh1 - oh0, j->rb), fb = j->fb, cb = j->cb, Fg = g->Fg;
    const T *xs = j->xs;
    T *y = j->y;
    VEC chk = V_ZERO();
    for (int64_t r0 = oh0; r0 < oh1; r0 += rb) {
        const int64_t r1 = r0 + rb < oh1 ? r0 + rb : oh1;
        for (int64_t c0 = 0; c0 < g->Cg; c0 += cb) {
            const int64_t t0 = c0 * taps, kb = (c0 + cb < g->Cg ? cb : g->Cg - c0) * taps;
            const int first = c0 == 0, final = c0 + cb >= g->Cg;
            const int64_t *off = j->off + t0;
            for (int64_t f0 = 0; f0 < Fg; f0 += fb) {
                const int64_t f1 = f0 + fb < Fg ? f0 + fb : Fg;
                if (j->flat) {
                    /* the band's flat stretch in places of near-equal width */
                    const int64_t qa = r0 * wq, qb = (r1 - 1) * wq + OW;
                    const int64_t nq = (qb - qa + VL - 1) / VL;
                    const int64_t np = (nq + DIRECT_NV_MAX - 1) / DIRECT_NV_MAX;
                    SFX(direct_seg) seg;
                    for (int64_t pi = 0, v0 = 0; pi < np; pi++) {
                        const int nv = (int)((nq - v0) / (np - pi));
                        const int64_t q = qa + VL * v0;
                        SFX(direct_segs)(&seg, nv, q, wq, OW, r1);
                        SFX(direct_column)
                        (j, f0, f1, nv, V_TAIL(VL), &seg, xs + q, off, nv, 0, kb, t0, first, final,
                         y, 0, &chk);
                        v0 += nv;
                    }
                } else if (2 * nvec <= DIRECT_NV_MAX) {
                    /* rows of few vectors: tiles of near-equal numbers of rows (at
                     * most rpt) stacked */
                    const int64_t rpt = DIRECT_NV_MAX / nvec, xrow = g->sh * wq;
                    const int64_t nt = (r1 - r0 + rpt - 1) / rpt;
                    const MASK last = V_TAIL(OW - VL * (nvec - 1));
                    for (int64_t ti = 0, oh = r0; ti < nt; ti++) {
                        const int64_t rows = (r1 - oh) / (nt - ti);
                        SFX(direct_column)
                        (j, f0, f1, (int)(rows * nvec), last, NULL, xs + oh * xrow, off, nvec, xrow,
                         kb, t0, first, final, y + oh * OW, OW, &chk);
                        oh += rows;
                    }
                } else {
                    for (int64_t oh = r0; oh < r1; oh++) {
                        /* the row's vectors in ntile tiles of near-equal width */
                        for (int64_t ti = 0, v0 = 0; ti < ntile; ti++) {
                            const int nv = (int)((nvec - v0) / (ntile - ti));
                            const int64_t rem = OW - VL * (v0 + nv - 1); /* lanes of the last */
                            SFX(direct_column)
                            (j, f0, f1, nv, V_TAIL(rem), NULL, xs + oh * g->sh * wq + VL * v0, off,
                             nv, 0, kb, t0, first, final, y + oh * OW + VL * v0, 0, &chk);
                            v0 += nv;
                        }
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
    direct_setup(&j, VL, (int64_t)sizeof(T), DIRECT_NV_MAX, SFX(direct_mr_max), ws);
    T *xs = (T *)(void *)j.xs;
    SFX(direct_fill)(g, x_g, xs, j.wq);
    if (j.flat) /* the last flat tile reads a vector past the plane */
        memset(xs + g->Cg * g->Hp * j.wq, 0, VL * sizeof(T));
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
