/*
 * wgrad.c — backward-weights (dW) on the own SIMD code, for AVX-512F and AVX2+FMA from
 * one template (wgrad_impl.h), picked at run time by cvd_cpu_isa; without either,
 * cvd_wgrad_pays says no and dW runs through im2col / shifted GEMMs on BLAS.
 *
 * Method. Per image and group, x is copied into the direct kernel's xs (padded, split by
 * column phase; see direct.c), where tap t of output pixels ow .. ow+VL-1 of row oh is
 * the contiguous xs[off[t] + oh*sh*Wq + ow ...]. Then
 *     dW[f][t] += sum over oh, ow of delta[f][oh*OW + ow] * xs[off[t] + oh*sh*Wq + ow]
 * in register tiles of MR filters by NT taps, one vector accumulator each, over a chunk
 * of output rows: a step loads MR vectors of delta and NT of x and does MR*NT fused
 * multiply-adds; the chunk's delta rows of a filter tile stay in L1 while every tap tile
 * passes over them; the accumulators are summed across lanes into dW at the chunk's end.
 * Lanes past OW are loaded as zeros (both operands), so padding never adds anything.
 * Where the direct kernel runs on the padded plane (cvd_direct_plane), delta is first
 * copied onto it too (rows Wp apart) and the steps run over the plane's vectors across
 * rows, q = oh*Wp + ow, chunks of them rather than of rows; each step's lanes in the
 * Wp - OW junk columns are left out of the sums by a mask (an x there may be anything,
 * even infinite), so resnet_mid's rows take 58 lanes, not 64, and no tail step a row.
 * Threads split the filters of an image (disjoint rows of dW). The order of every sum
 * is fixed by the shapes, the ISA and the L1 size, never by the threads' schedule.
 */
#include "cvd_internal.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define WGRAD_X86 1
#else
#define WGRAD_X86 0
#endif

/* A tile sums its accumulators across lanes once per chunk of rows of one image, so an
 * image must give it enough vector steps (rows times vectors a row) to pay for that
 * (docs/kernels.md: resnet_deep's 14 steps lose to BLAS, resnet_mid's 224 do not). */
#define WGRAD_MIN_STEPS 64

int cvd_wgrad_pays(const cvd_geom *g0, size_t elem_size, cvd_path want)
{
    cvd_geom fl;
    const cvd_geom *g = cvd_direct_flat(g0, &fl);
    /* a 1x1 layer's dW is one GEMM, which wgrad did not beat in float64 (docs/kernels.md) */
    if ((g0->is_1x1 && want != CVD_PATH_DIRECT) || !cvd_direct_pays(g, elem_size, want) ||
        cvd_wgrad_ws(g0, elem_size) == 0)
        return 0;
    const int64_t vl = (cvd_cpu_isa() == CVD_ISA_AVX512 ? 64 : 32) / (int64_t)elem_size;
    return want == CVD_PATH_DIRECT || g->OH * ((g->OW + vl - 1) / vl) >= WGRAD_MIN_STEPS;
}

/* Sized for any ISA (the plan may be made at another level than the run): delta on the
 * plane [Fg, OH*Wp + a vector] and a lane mask a vector step, at most 32 bytes for 4
 * lanes (AVX2 float64), after cvd_direct_ws. */
size_t cvd_wgrad_ws(const cvd_geom *g0, size_t elem_size)
{
    cvd_geom fl;
    const cvd_geom *g = cvd_direct_flat(g0, &fl);
    const size_t direct = cvd_direct_ws(g0, elem_size);
    size_t plane, dp, masks, all, bytes;
    if (direct == 0 || g->sh != 1 || g->sw != 1)
        return direct;
    if (cvd_mul_size((size_t)g->OH, (size_t)g->Wp, &plane) ||
        cvd_add_size(plane, 64 / elem_size, &dp) || cvd_mul_size(dp, (size_t)g->Fg, &dp) ||
        cvd_mul_size(plane, 8, &masks) || cvd_add_size(masks, 64 + elem_size, &masks) ||
        cvd_add_size(direct, dp, &all) || cvd_add_size(all, masks / elem_size, &all) ||
        cvd_mul_size(all, elem_size, &bytes))
        return 0;
    return all;
}

#if WGRAD_X86

/* Tile: MR filters by NT taps. The MR*NT accumulators, MR delta vectors and one x vector
 * fit 32 zmm (4x6: 29) or 16 ymm (3x4: 16). */
#define WGRAD_MR (SIMD_WIDE ? 4 : 3)
#define WGRAD_NT (SIMD_WIDE ? 6 : 4)

typedef struct wgrad_job {
    const cvd_geom *g;
    const void *delta; /* delta of the image and group, [Fg, P] */
    void *dW;          /* dW_g [Fg, K], accumulated */
    const void *xs;
    const int64_t *off;
    int64_t wq, rc;    /* xs row length, output rows (vector steps on the plane) per chunk */
    int plane;         /* on the padded plane (cvd_direct_plane): */
    const void *dp;    /* delta of the image and group there, [Fg, pf] */
    const void *masks; /* the lanes in columns 0 .. OW-1 of each vector step, nvs of them */
    int64_t pf, nvs;
} wgrad_job;

#define SIMD_SEL 1
#include "simd.h"
#include "xs_impl.h"
#include "wgrad_impl.h"
#define SIMD_SEL 2
#include "simd.h"
#include "xs_impl.h"
#include "wgrad_impl.h"
#define SIMD_SEL 3
#include "simd.h"
#include "xs_impl.h"
#include "wgrad_impl.h"
#define SIMD_SEL 4
#include "simd.h"
#include "xs_impl.h"
#include "wgrad_impl.h"

void cvd_wgrad_f32(const cvd_geom *g, const float *x, const float *delta, float *dW, float *ws,
                   int64_t lo, int64_t hi, int nt)
{
    cvd_geom fl;
    if (cvd_cpu_isa() == CVD_ISA_AVX512)
        wgrad_run_avx512_f32(cvd_direct_flat(g, &fl), x, delta, dW, ws, lo, hi, nt);
    else
        wgrad_run_avx2_f32(cvd_direct_flat(g, &fl), x, delta, dW, ws, lo, hi, nt);
}

void cvd_wgrad_f64(const cvd_geom *g, const double *x, const double *delta, double *dW, double *ws,
                   int64_t lo, int64_t hi, int nt)
{
    cvd_geom fl;
    if (cvd_cpu_isa() == CVD_ISA_AVX512)
        wgrad_run_avx512_f64(cvd_direct_flat(g, &fl), x, delta, dW, ws, lo, hi, nt);
    else
        wgrad_run_avx2_f64(cvd_direct_flat(g, &fl), x, delta, dW, ws, lo, hi, nt);
}

#else

/* Never called: without x86-64 cvd_cpu_isa is CVD_ISA_NONE, so no plan takes this path. */
void cvd_wgrad_f32(const cvd_geom *g, const float *x, const float *delta, float *dW, float *ws,
                   int64_t lo, int64_t hi, int nt)
{
    (void)g, (void)x, (void)delta, (void)dW, (void)ws, (void)lo, (void)hi, (void)nt;
}

void cvd_wgrad_f64(const cvd_geom *g, const double *x, const double *delta, double *dW, double *ws,
                   int64_t lo, int64_t hi, int nt)
{
    (void)g, (void)x, (void)delta, (void)dW, (void)ws, (void)lo, (void)hi, (void)nt;
}

#endif
