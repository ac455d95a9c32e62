/*
 * blocked_wgrad.c — backward-weights (dW) on filter-blocked copies: vectors run across VL
 * filters and the accumulators sum over output pixels, so nothing is summed across lanes
 * and no lane is idle at a row's end (wgrad.c's vectors run along the rows). Own SIMD
 * code for AVX-512F and AVX2+FMA from one template (blocked_wgrad_impl.h), picked at run
 * time by cvd_cpu_isa.
 *
 * Method. Per image and group, delta_g is copied to db [Fg/VL][P][VL] (filter f in lane
 * f % VL, zeros past Fg) and x_g to xp [Cg][Hp][Wp] (zero-padded), where tap k = (c, i, j)
 * of output pixel (oh, ow) is xp[off[k] + oh*sh*Wp + ow*sw]. A register tile of NB filter
 * blocks by UR taps is loaded from dwb [Fg/VL][K][VL] and, for each pixel of a chunk,
 * loads NB delta vectors and broadcasts UR x values, NB*UR fused multiply-adds; then it
 * is stored back. A chunk's delta of NB blocks takes at most a quarter of L2, so it stays
 * there while every tile of taps passes over it. After the last image dwb is copied into
 * dW_g [Fg, K]. Any stride, dilation, padding and groups; 1x1 too.
 *
 * Each dW value is one FMA chain over the images, then the pixels in order: the chunks,
 * the tiles and the threads (which split the taps) only decide when it passes through
 * memory, which rounds nothing. So results depend on neither the cache sizes nor the
 * thread count, and are the same at either ISA.
 */
#include "cvd_internal.h"

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define BWG_X86 1
#else
#define BWG_X86 0
#endif

/* Tiles: NB filter blocks by UR taps; NB*UR accumulators, NB delta vectors and one
 * broadcast fit the registers: 4x6 on 32 zmm (29), 3x4 on 16 ymm (16). */
#define BWG_NB_MAX 4
#define BWG_UR_MAX 6
#define BWG_NB     (SIMD_WIDE ? 4 : 3)
#define BWG_UR     (SIMD_WIDE ? 6 : 4)

/* As the blocked forward: the filters fill at least 7/8 of their blocks' lanes. */
#define BWG_MIN_FILL_8THS 7

typedef struct bwg_job {
    const cvd_geom *g;
    const void *db, *xp;
    void *dwb;
    const int64_t *off; /* xp offset of each tap k = (c, i, j) */
    int64_t fbn, chunks;
} bwg_job;

size_t cvd_blocked_wgrad_ws(const cvd_geom *g, size_t elem_size)
{
    /* sized for 64-byte vectors, the widest: enough for either ISA */
    const size_t vl = 64 / elem_size;
    const size_t fl = ((size_t)g->Fg + vl - 1) / vl * vl;
    /* the K tap offsets first, in whole vectors */
    const size_t head = ((size_t)g->K * sizeof(int64_t) + 63) / 64 * vl;
    size_t dwb, db, xp, all, bytes;
    if (cvd_mul_size(fl, (size_t)g->K, &dwb) || cvd_mul_size(fl, (size_t)g->P, &db) ||
        cvd_mul_size((size_t)g->Cg, (size_t)g->Hp, &xp) || cvd_mul_size(xp, (size_t)g->Wp, &xp) ||
        cvd_add_size(dwb, db, &all) || cvd_add_size(all, xp, &all) ||
        cvd_add_size(all, head, &all) || cvd_mul_size(all, elem_size, &bytes))
        return 0;
    return all;
}

int cvd_blocked_wgrad_pays(const cvd_geom *g, size_t elem_size, cvd_path want)
{
    if (want == CVD_PATH_IM2COL || want == CVD_PATH_SHIFT || want == CVD_PATH_DIRECT ||
        cvd_cpu_isa() == CVD_ISA_NONE)
        return 0;
    const size_t ws = cvd_blocked_wgrad_ws(g, elem_size);
    if (ws == 0)
        return 0;
    if (want == CVD_PATH_BLOCKED)
        return 1;
    const int64_t vl = (cvd_cpu_isa() == CVD_ISA_AVX512 ? 64 : 32) / (int64_t)elem_size;
    const int64_t lanes = (g->Fg + vl - 1) / vl * vl;
    return !g->is_1x1 && 8 * g->Fg >= BWG_MIN_FILL_8THS * lanes &&
           ws <= CVD_DIRECT_MAX_WS / elem_size;
}

#if BWG_X86

#define SIMD_SEL 1
#include "simd.h"
#include "blocked_wgrad_impl.h"
#define SIMD_SEL 2
#include "simd.h"
#include "blocked_wgrad_impl.h"
#define SIMD_SEL 3
#include "simd.h"
#include "blocked_wgrad_impl.h"
#define SIMD_SEL 4
#include "simd.h"
#include "blocked_wgrad_impl.h"

void cvd_blocked_wgrad_f32(const cvd_geom *g, const float *x, const float *delta, float *dW,
                           float *ws, int64_t lo, int64_t hi, int nt)
{
    if (cvd_cpu_isa() == CVD_ISA_AVX512)
        bwg_run_avx512_f32(g, x, delta, dW, ws, lo, hi, nt);
    else
        bwg_run_avx2_f32(g, x, delta, dW, ws, lo, hi, nt);
}

void cvd_blocked_wgrad_f64(const cvd_geom *g, const double *x, const double *delta, double *dW,
                           double *ws, int64_t lo, int64_t hi, int nt)
{
    if (cvd_cpu_isa() == CVD_ISA_AVX512)
        bwg_run_avx512_f64(g, x, delta, dW, ws, lo, hi, nt);
    else
        bwg_run_avx2_f64(g, x, delta, dW, ws, lo, hi, nt);
}

#else

/* Never called: without x86-64 cvd_cpu_isa is CVD_ISA_NONE, so no plan takes this path. */
void cvd_blocked_wgrad_f32(const cvd_geom *g, const float *x, const float *delta, float *dW,
                           float *ws, int64_t lo, int64_t hi, int nt)
{
    (void)g, (void)x, (void)delta, (void)dW, (void)ws, (void)lo, (void)hi, (void)nt;
}

void cvd_blocked_wgrad_f64(const cvd_geom *g, const double *x, const double *delta, double *dW,
                           double *ws, int64_t lo, int64_t hi, int nt)
{
    (void)g, (void)x, (void)delta, (void)dW, (void)ws, (void)lo, (void)hi, (void)nt;
}

#endif
