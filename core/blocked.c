/*
 * blocked.c — the forward on channel-blocked copies (oneDNN's layout, made per pass):
 * vectors run across VL filters, not across output columns, so no load is unaligned and
 * no lane is idle at a row's end. Own SIMD code for AVX-512F and AVX2+FMA from one
 * template (blocked_impl.h), picked at run time by cvd_cpu_isa.
 *
 * Method. Per pass and group, W_g is copied to wb [Fg/VL][K][VL] (filter f in lane
 * f % VL, zeros past Fg) and the bias to bp; per image, x_g to xb [Cg/VL][Hp][Wp][VL]
 * (zero-padded; channel c in lane c % VL). A register tile of NB filter blocks by UR
 * output pixels of one row starts from the bias, and for each channel and tap loads NB
 * weight vectors (aligned) and broadcasts UR input values, NB*UR fused multiply-adds; it
 * is stored to yb [Fg/VL][P][VL] and reloaded for the next chunk of channels (a chunk's
 * weights of NB blocks take at most a quarter of L2, so they stream from there while
 * every tile of a band of rows passes). At the end yb is copied into y [Fg, P], and
 * checked for finiteness on the way. Any stride, dilation and padding; one row of pixels per tile.
 *
 * Each output is one FMA chain from the bias over the channels and taps in (c, i, j)
 * order, as in the direct kernel (direct.c): both give the same bits, at either ISA.
 * Threads split the output rows; results do not depend on scheduling.
 */
#include "cvd_internal.h"

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define BLK_X86 1
#else
#define BLK_X86 0
#endif

/* Tiles: NB filter blocks by UR pixels; NB*UR accumulators, NB weight vectors and one
 * broadcast fit the registers: 4x6 on 32 zmm (29), 3x4 on 16 ymm (16). */
#define BLK_NB_MAX 4
#define BLK_UR_MAX 6
#define BLK_NB     (SIMD_WIDE ? 4 : 3)
#define BLK_UR     (SIMD_WIDE ? 6 : 4)

/* A layer takes the blocked forward (AUTO) when it has a whole block of channels, its
 * filters fill the lanes of their blocks (at least 7/8 of them) and the workspace stays
 * under CVD_DIRECT_MAX_WS: a depthwise layer's one filter a group would leave 15 of 16
 * lanes idle, and the stem's 3 channels lost to the direct kernel. On AVX2 the 3x4 tile
 * (12 accumulators) is slower than the direct kernel's wherever that fills its lanes
 * (resnet_mid 1-2 %), so there it also needs the direct kernel to leave at least 1/8 of
 * its lanes idle: resnet_deep's 14 columns in 16 (blocked 8-9 % faster, forward and dx),
 * the strided layer's 28 in 32 (20 %). docs/kernels.md. */
#define BLK_MIN_FILL_8THS 7

typedef struct blk_job {
    const cvd_geom *g;
    const void *wb, *bp, *xb;
    void *yb, *y;
    const int64_t *off; /* xb offset of each step k = (c, i, j) */
    int64_t fbn, wfs, ybs, cch, band;
    int finite[CVD_MAX_PARTS];
} blk_job;

size_t cvd_blocked_ws(const cvd_geom *g, size_t elem_size)
{
    /* sized for 64-byte vectors, the widest: enough for either ISA */
    const size_t vl = 64 / elem_size;
    const size_t fl = ((size_t)g->Fg + vl - 1) / vl * vl, cl = ((size_t)g->Cg + vl - 1) / vl * vl;
    /* the K step offsets first, in whole vectors */
    const size_t head = ((size_t)g->K * sizeof(int64_t) + 63) / 64 * vl;
    size_t wb, xb, yb, all, bytes;
    if (cvd_mul_size(fl, (size_t)g->K, &wb) || cvd_mul_size(cl, (size_t)g->Hp, &xb) ||
        cvd_mul_size(xb, (size_t)g->Wp, &xb) || cvd_mul_size(fl, (size_t)g->P, &yb) ||
        cvd_add_size(wb, fl, &all) || cvd_add_size(all, xb, &all) || cvd_add_size(all, yb, &all) ||
        cvd_add_size(all, head, &all) || cvd_mul_size(all, elem_size, &bytes))
        return 0;
    return all;
}

size_t cvd_blocked_wsize(const cvd_geom *g, size_t elem_size)
{
    const size_t vl = 64 / elem_size, fl = ((size_t)g->Fg + vl - 1) / vl * vl;
    size_t wb, all;
    if (cvd_mul_size(fl, (size_t)g->K, &wb) || cvd_add_size(wb, fl, &all))
        return 0;
    return all;
}

int cvd_blocked_pays(const cvd_geom *g, size_t elem_size, cvd_path want)
{
    if (want == CVD_PATH_IM2COL || want == CVD_PATH_SHIFT || want == CVD_PATH_DIRECT ||
        cvd_cpu_isa() == CVD_ISA_NONE)
        return 0;
    const size_t ws = cvd_blocked_ws(g, elem_size);
    if (ws == 0)
        return 0;
    if (want == CVD_PATH_BLOCKED)
        return 1;
    const int wide = cvd_cpu_isa() == CVD_ISA_AVX512;
    const int64_t vl = (wide ? 64 : 32) / (int64_t)elem_size;
    const int64_t lanes = (g->Fg + vl - 1) / vl * vl;
    if (!wide && 8 * g->OW > BLK_MIN_FILL_8THS * cvd_direct_row_lanes(g, vl))
        return 0;
    return !g->is_1x1 && g->Cg >= vl && 8 * g->Fg >= BLK_MIN_FILL_8THS * lanes &&
           ws <= CVD_DIRECT_MAX_WS / elem_size;
}

#if BLK_X86

#define SIMD_SEL 1
#include "simd.h"
#include "blocked_impl.h"
#define SIMD_SEL 2
#include "simd.h"
#include "blocked_impl.h"
#define SIMD_SEL 3
#include "simd.h"
#include "blocked_impl.h"
#define SIMD_SEL 4
#include "simd.h"
#include "blocked_impl.h"

int cvd_blocked_forward_f32(const cvd_geom *g, const float *W, const float *b, const float *x,
                            float *y, float *ws, int64_t lo, int64_t hi, int nt, int flip,
                            const float *pre)
{
    if (cvd_cpu_isa() == CVD_ISA_AVX512)
        return blk_forward_avx512_f32(g, W, b, x, y, ws, lo, hi, nt, flip, pre);
    return blk_forward_avx2_f32(g, W, b, x, y, ws, lo, hi, nt, flip, pre);
}

void cvd_blocked_weights_f32(const cvd_geom *g, const float *W, const float *b, float *out,
                             int flip, int nt)
{
    if (cvd_cpu_isa() == CVD_ISA_AVX512)
        blk_prep_avx512_f32(g, W, b, out, flip, nt);
    else
        blk_prep_avx2_f32(g, W, b, out, flip, nt);
}

int cvd_blocked_forward_f64(const cvd_geom *g, const double *W, const double *b, const double *x,
                            double *y, double *ws, int64_t lo, int64_t hi, int nt, int flip,
                            const double *pre)
{
    if (cvd_cpu_isa() == CVD_ISA_AVX512)
        return blk_forward_avx512_f64(g, W, b, x, y, ws, lo, hi, nt, flip, pre);
    return blk_forward_avx2_f64(g, W, b, x, y, ws, lo, hi, nt, flip, pre);
}

void cvd_blocked_weights_f64(const cvd_geom *g, const double *W, const double *b, double *out,
                             int flip, int nt)
{
    if (cvd_cpu_isa() == CVD_ISA_AVX512)
        blk_prep_avx512_f64(g, W, b, out, flip, nt);
    else
        blk_prep_avx2_f64(g, W, b, out, flip, nt);
}

#else

/* Never called: without x86-64 cvd_cpu_isa is CVD_ISA_NONE, so no plan takes this path. */
int cvd_blocked_forward_f32(const cvd_geom *g, const float *W, const float *b, const float *x,
                            float *y, float *ws, int64_t lo, int64_t hi, int nt, int flip,
                            const float *pre)
{
    (void)g, (void)W, (void)b, (void)x, (void)y, (void)ws, (void)lo, (void)hi, (void)nt, (void)flip;
    (void)pre;
    return 0;
}

void cvd_blocked_weights_f32(const cvd_geom *g, const float *W, const float *b, float *out,
                             int flip, int nt)
{
    (void)g, (void)W, (void)b, (void)out, (void)flip, (void)nt;
}

int cvd_blocked_forward_f64(const cvd_geom *g, const double *W, const double *b, const double *x,
                            double *y, double *ws, int64_t lo, int64_t hi, int nt, int flip,
                            const double *pre)
{
    (void)g, (void)W, (void)b, (void)x, (void)y, (void)ws, (void)lo, (void)hi, (void)nt, (void)flip;
    (void)pre;
    return 0;
}

void cvd_blocked_weights_f64(const cvd_geom *g, const double *W, const double *b, double *out,
                             int flip, int nt)
{
    (void)g, (void)W, (void)b, (void)out, (void)flip, (void)nt;
}

#endif
