/*
 * wgrad_impl.h — template of the dW kernel, included by wgrad.c once per ISA and dtype
 * after simd.h and xs_impl.h. Generates, for SFX = _avx512_f32 ... _avx2_f64:
 * wgrad_tile, wgrad_tile_any, wgrad_filters, wgrad_part and wgrad_run
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

#define WGRAD_T(mr, nt)                                                                            \
    case nt:                                                                                       \
        SFX(wgrad_tile)(mr, nt, j, d, off, oh0, oh1, dw);                                          \
        break;
#define WGRAD_M(mr)                                                                                \
    case mr:                                                                                       \
        switch (nt) {                                                                              \
            WGRAD_T(mr, 1) WGRAD_T(mr, 2) WGRAD_T(mr, 3) WGRAD_T(mr, 4) WGRAD_NT_WIDE(mr)          \
        }                                                                                          \
        break;
#if SIMD_WIDE
#define WGRAD_NT_WIDE(mr) WGRAD_T(mr, 5) WGRAD_T(mr, 6)
#else
#define WGRAD_NT_WIDE(mr)
#endif
static SIMD_TARGET void SFX(wgrad_tile_any)(int mr, int nt, const wgrad_job *j, const T *d,
                                            const int64_t *off, int64_t oh0, int64_t oh1, T *dw)
{
    switch (mr) {
        WGRAD_M(1)
        WGRAD_M(2)
        WGRAD_M(3)
#if SIMD_WIDE
        WGRAD_M(4)
#endif
    }
}
#undef WGRAD_T
#undef WGRAD_M
#undef WGRAD_NT_WIDE

/* Filters f0 .. f1-1 of the image and group, every tap: chunks of rc output rows, in
 * them tiles of filters (outer: their delta rows stay in L1) by taps. */
static SIMD_TARGET void SFX(wgrad_filters)(const wgrad_job *j, int64_t f0, int64_t f1)
{
    const cvd_geom *g = j->g;
    const T *delta = j->delta;
    T *dW = j->dW;
    for (int64_t oh0 = 0; oh0 < g->OH; oh0 += j->rc) {
        const int64_t oh1 = oh0 + j->rc < g->OH ? oh0 + j->rc : g->OH;
        for (int64_t f = f0; f < f1; f += WGRAD_MR) {
            const int mr = (int)(f1 - f < WGRAD_MR ? f1 - f : WGRAD_MR);
            for (int64_t t = 0; t < g->K; t += WGRAD_NT) {
                const int nt = (int)(g->K - t < WGRAD_NT ? g->K - t : WGRAD_NT);
                SFX(wgrad_tile_any)
                (mr, nt, j, delta + f * g->P, j->off + t, oh0, oh1, dW + f * g->K + t);
            }
        }
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
    /* a filter tile's delta rows of a chunk take at most half of L1 */
    j.rc = (int64_t)cvd_cpu_l1d() / 2 / (WGRAD_MR * g->OW * es);
    j.rc = j.rc < 1 ? 1 : j.rc;
    const int64_t tiles = (g->Fg + WGRAD_MR - 1) / WGRAD_MR;
    int tasks = nt < tiles ? nt : (int)tiles;
    tasks = tasks > CVD_MAX_PARTS ? CVD_MAX_PARTS : tasks;
    memset(dW, 0, (size_t)(g->F * g->K) * sizeof(T));
    for (int64_t n = lo; n < hi; n++)
        for (int64_t grp = 0; grp < g->G; grp++) {
            SFX(direct_fill)(g, x + (n * g->C + grp * g->Cg) * g->HW, xs, j.wq);
            j.delta = delta + (n * g->F + grp * g->Fg) * g->P;
            j.dW = dW + grp * g->Fg * g->K;
            if (tasks <= 1)
                SFX(wgrad_filters)(&j, 0, g->Fg);
            else
                cvd_parallel_run(tasks, tasks, SFX(wgrad_part), &j);
        }
}
