/*
 * wgrad_impl.h — template of the dW kernel, included by wgrad.c once per ISA and dtype
 * after simd.h and xs_impl.h. Generates, for SFX = _avx512_f32 ... _avx2_f64:
 * wgrad_tile, wgrad_ptile, wgrad_tile_any, wgrad_plane_any, wgrad_filters, wgrad_plane,
 * wgrad_part and wgrad_run
 * (wgrad_run_avx512_f32 ... wgrad_run_avx2_f64). See wgrad.c.
 */

/* One tile: dW rows of filters 0 .. mr-1 (d: their delta rows, P apart; dw: their dW
 * rows, K apart) at taps 0 .. nt-1 (offsets off) += the sums over output rows oh0 ..
 * oh1-1. mr and nt are constants after inlining. */
static inline __attribute__((always_inline)) SIMD_TARGET void
SFX(wgrad_tile)(const int mr, const int nt, const wgrad_job *j, const T *d, const int64_t *off,
                int64_t oh0, int64_t oh1, T *dw)
{
    const cvd_geom *g = j->g;
    const int64_t OW = g->OW, P = g->P, K = g->K, nfull = OW / VL, rem = OW - nfull * VL;
    const int64_t xrow = g->sh * j->wq;
    const MASK last = V_TAIL(rem > 0 ? rem : VL);
    const T *xs = j->xs;
    VEC acc[WGRAD_MR][WGRAD_NT];
    _Pragma("GCC unroll 8") for (int m = 0; m < mr; m++)
    {
        _Pragma("GCC unroll 8") for (int t = 0; t < nt; t++) acc[m][t] = V_ZERO();
    }
    for (int64_t oh = oh0; oh < oh1; oh++) {
        const T *dr = d + oh * OW, *xr = xs + oh * xrow;
        const T *xp[WGRAD_NT];
        _Pragma("GCC unroll 8") for (int t = 0; t < nt; t++) xp[t] = xr + off[t];
        for (int64_t q = 0; q < nfull * VL; q += VL) {
            VEC dv[WGRAD_MR];
            _Pragma("GCC unroll 8") for (int m = 0; m < mr; m++) dv[m] = V_LOAD(dr + m * P + q);
            _Pragma("GCC unroll 8") for (int t = 0; t < nt; t++)
            {
                const VEC xv = V_LOAD(xp[t] + q);
                _Pragma("GCC unroll 8") for (int m = 0; m < mr; m++) acc[m][t] =
                    V_FMA(dv[m], xv, acc[m][t]);
            }
        }
        if (rem) {
            const int64_t q = nfull * VL;
            VEC dv[WGRAD_MR];
            _Pragma("GCC unroll 8") for (int m = 0; m < mr; m++) dv[m] =
                V_MLOAD(dr + m * P + q, last);
            _Pragma("GCC unroll 8") for (int t = 0; t < nt; t++)
            {
                const VEC xv = V_MLOAD(xp[t] + q, last);
                _Pragma("GCC unroll 8") for (int m = 0; m < mr; m++) acc[m][t] =
                    V_FMA(dv[m], xv, acc[m][t]);
            }
        }
    }
    _Pragma("GCC unroll 8") for (int m = 0; m < mr; m++)
    {
        _Pragma("GCC unroll 8") for (int t = 0; t < nt; t++) dw[m * K + t] += V_HSUM(acc[m][t]);
    }
}

/* The tile on the padded plane: as wgrad_tile over vector steps s0 .. s1-1 of it (d: the
 * filters' rows of j->dp, pf apart), each step's lanes by its mask. */
static inline __attribute__((always_inline)) SIMD_TARGET void
SFX(wgrad_ptile)(const int mr, const int nt, const wgrad_job *j, const T *d, const int64_t *off,
                 int64_t s0, int64_t s1, T *dw)
{
    const int64_t pf = j->pf, K = j->g->K;
    const T *xs = j->xs;
    const MASK *masks = j->masks;
    VEC acc[WGRAD_MR][WGRAD_NT];
    const T *xp[WGRAD_NT];
    _Pragma("GCC unroll 8") for (int t = 0; t < nt; t++) xp[t] = xs + off[t];
    _Pragma("GCC unroll 8") for (int m = 0; m < mr; m++)
    {
        _Pragma("GCC unroll 8") for (int t = 0; t < nt; t++) acc[m][t] = V_ZERO();
    }
    for (int64_t s = s0; s < s1; s++) {
        const int64_t q = s * VL;
        MASK lanes;
        memcpy(&lanes, masks + s, sizeof lanes); /* the workspace keeps no alignment */
        VEC dv[WGRAD_MR];
        _Pragma("GCC unroll 8") for (int m = 0; m < mr; m++) dv[m] = V_LOAD(d + m * pf + q);
        _Pragma("GCC unroll 8") for (int t = 0; t < nt; t++)
        {
            const VEC xv = V_LOAD(xp[t] + q);
            _Pragma("GCC unroll 8") for (int m = 0; m < mr; m++) acc[m][t] =
                V_MFMA(dv[m], xv, acc[m][t], lanes);
        }
    }
    _Pragma("GCC unroll 8") for (int m = 0; m < mr; m++)
    {
        _Pragma("GCC unroll 8") for (int t = 0; t < nt; t++) dw[m * K + t] += V_HSUM(acc[m][t]);
    }
}

/* The tiles for any mr <= WGRAD_MR, nt <= WGRAD_NT as constants: rows in wgrad_tile_any,
 * the plane in wgrad_plane_any (apart, as direct_impl.h's: one function for both kept
 * fewer pointers in registers). */
#define WGRAD_M(mr)                                                                                \
    case mr:                                                                                       \
        switch (nt) {                                                                              \
            WGRAD_T(mr, 1) WGRAD_T(mr, 2) WGRAD_T(mr, 3) WGRAD_T(mr, 4) WGRAD_NT_WIDE(mr)          \
        }                                                                                          \
        break;
#if SIMD_WIDE
#define WGRAD_NT_WIDE(mr) WGRAD_T(mr, 5) WGRAD_T(mr, 6)
#define WGRAD_SWITCH      WGRAD_M(1) WGRAD_M(2) WGRAD_M(3) WGRAD_M(4)
#else
#define WGRAD_NT_WIDE(mr)
#define WGRAD_SWITCH WGRAD_M(1) WGRAD_M(2) WGRAD_M(3)
#endif
#define WGRAD_T(mr, nt)                                                                            \
    case nt:                                                                                       \
        SFX(wgrad_tile)(mr, nt, j, d, off, oh0, oh1, dw);                                          \
        break;
static SIMD_TARGET void SFX(wgrad_tile_any)(int mr, int nt, const wgrad_job *j, const T *d,
                                            const int64_t *off, int64_t oh0, int64_t oh1, T *dw)
{
    switch (mr) {
        WGRAD_SWITCH
    }
}
#undef WGRAD_T
#define WGRAD_T(mr, nt)                                                                            \
    case nt:                                                                                       \
        SFX(wgrad_ptile)(mr, nt, j, d, off, oh0, oh1, dw);                                         \
        break;
static SIMD_TARGET void SFX(wgrad_plane_any)(int mr, int nt, const wgrad_job *j, const T *d,
                                             const int64_t *off, int64_t oh0, int64_t oh1, T *dw)
{
    switch (mr) {
        WGRAD_SWITCH
    }
}
#undef WGRAD_T
#undef WGRAD_M
#undef WGRAD_NT_WIDE
#undef WGRAD_SWITCH

/* Filters f0 .. f1-1 of the image and group, every tap: chunks of rc output rows (or
 * vector steps of the plane), in them tiles of filters (outer: their delta rows stay in
 * L1) by taps. */
static SIMD_TARGET void SFX(wgrad_filters)(const wgrad_job *j, int64_t f0, int64_t f1)
{
    const cvd_geom *g = j->g;
    const T *delta = j->plane ? j->dp : j->delta;
    const int64_t n = j->plane ? j->nvs : g->OH, ld = j->plane ? j->pf : g->P;
    T *dW = j->dW;
    for (int64_t a = 0; a < n; a += j->rc) {
        const int64_t b = a + j->rc < n ? a + j->rc : n;
        for (int64_t f = f0; f < f1; f += WGRAD_MR) {
            const int mr = (int)(f1 - f < WGRAD_MR ? f1 - f : WGRAD_MR);
            for (int64_t t = 0; t < g->K; t += WGRAD_NT) {
                const int nt = (int)(g->K - t < WGRAD_NT ? g->K - t : WGRAD_NT);
                (j->plane ? SFX(wgrad_plane_any) : SFX(wgrad_tile_any))(
                    mr, nt, j, delta + f * ld, j->off + t, a, b, dW + f * g->K + t);
            }
        }
    }
}

/* j->dp <- delta of the image and group on the plane, zeros in the junk columns and the
 * tail; j->masks <- the lanes of each vector step in columns 0 .. OW-1. */
static SIMD_TARGET void SFX(wgrad_plane)(const wgrad_job *j, const T *delta, int masks)
{
    const cvd_geom *g = j->g;
    const int64_t wq = j->wq, OW = g->OW;
    T *dp = (T *)(void *)j->dp;
    for (int64_t f = 0; f < g->Fg; f++) {
        T *d = dp + f * j->pf;
        for (int64_t r = 0; r < g->OH; r++) {
            memcpy(d + r * wq, delta + f * g->P + r * OW, (size_t)OW * sizeof(T));
            memset(d + r * wq + OW, 0, (size_t)(wq - OW) * sizeof(T));
        }
        memset(d + g->OH * wq, 0, (size_t)(j->pf - g->OH * wq) * sizeof(T));
    }
    if (!masks)
        return;
    MASK *mk = (MASK *)(void *)j->masks;
    for (int64_t s = 0; s < j->nvs; s++) {
        /* lanes a .. b-1 of step s are row r's columns 0 .. OW-1, and so for the next row */
        const int64_t q = s * VL, r = q / wq;
        MASK m = V_RANGE(0, 0);
        for (int64_t k = r; k <= r + 1 && k < g->OH; k++) {
            const int64_t a = k * wq - q, b = a + OW;
            const int64_t lo = a < 0 ? 0 : a > VL ? VL : a, hi = b < 0 ? 0 : b > VL ? VL : b;
            if (hi > lo)
                m = V_MOR(m, V_RANGE(lo, hi));
        }
        memcpy(mk + s, &m, sizeof m);
    }
}

static void SFX(wgrad_part)(void *arg, int task, int ntasks)
{
    const wgrad_job *j = arg;
    /* whole tiles of filters per task */
    const int64_t tiles = (j->g->Fg + WGRAD_MR - 1) / WGRAD_MR;
    const int64_t a = tiles * task / ntasks * WGRAD_MR, b = tiles * (task + 1) / ntasks * WGRAD_MR;
    SFX(wgrad_filters)(j, a, b < j->g->Fg ? b : j->g->Fg);
}

static void SFX(wgrad_run)(const cvd_geom *g, const T *x, const T *delta, T *dW, T *ws, int64_t lo,
                           int64_t hi, int nt)
{
    const int64_t es = (int64_t)sizeof(T);
    int64_t *off = (int64_t *)(void *)ws;
    T *xs = ws + (g->K * (int64_t)sizeof(int64_t) + es - 1) / es;
    wgrad_job j = {.g = g, .xs = xs, .off = off};
    j.wq = cvd_direct_taps(g, VL, off);
    j.plane = cvd_direct_plane(g, VL);
    /* a filter tile's delta rows of a chunk take at most half of L1 */
    j.rc = (int64_t)cvd_cpu_l1d() / 2 / (WGRAD_MR * (j.plane ? VL : g->OW) * es);
    j.rc = j.rc < 1 ? 1 : j.rc;
    if (j.plane) {
        j.nvs = (g->OH * j.wq + VL - 1) / VL;
        j.pf = j.nvs * VL;
        j.dp = ws + cvd_direct_ws(g, sizeof(T));
        j.masks = (const T *)j.dp + g->Fg * j.pf;
    }
    const int64_t tiles = (g->Fg + WGRAD_MR - 1) / WGRAD_MR;
    int tasks = nt < tiles ? nt : (int)tiles;
    tasks = tasks > CVD_MAX_PARTS ? CVD_MAX_PARTS : tasks;
    memset(dW, 0, (size_t)(g->F * g->K) * sizeof(T));
    for (int64_t n = lo; n < hi; n++)
        for (int64_t grp = 0; grp < g->G; grp++) {
            SFX(direct_fill)(g, x + (n * g->C + grp * g->Cg) * g->HW, xs, j.wq);
            j.delta = delta + (n * g->F + grp * g->Fg) * g->P;
            if (j.plane) { /* the last steps read a vector past the plane */
                memset(xs + g->Cg * g->Hp * j.wq, 0, VL * sizeof(T));
                SFX(wgrad_plane)(&j, j.delta, n == lo && grp == 0);
            }
            j.dW = dW + grp * g->Fg * g->K;
            if (tasks <= 1)
                SFX(wgrad_filters)(&j, 0, g->Fg);
            else
                cvd_parallel_run(tasks, tasks, SFX(wgrad_part), &j);
        }
}
