/*
 * direct.c — forward convolution straight from the input, with no im2col and no GEMM,
 * for layers where im2col + GEMM is weak: few input channels per group, as in a
 * network's first layer (the stem: 3 channels, 7x7, stride 2). x86-64 with AVX-512F only,
 * checked at run time; elsewhere cvd_direct_pays says no and the layer runs im2col.
 *
 * Method. One image and group of x is copied once into xs, zero-padded and split by
 * column phase: xs[c][ph][r][q] = xpad[c][r][q*sw + ph] (Hp rows of Wq columns, see
 * cvd_direct_ws). Output pixels ow .. ow+VL-1 of row oh then read, for tap (c, i, j),
 *     xs[c][(j*dw) % sw][oh*sh + i*dh][ow + (j*dw)/sw ...]
 * which is contiguous whatever the stride and dilation. A register tile of MR filters by
 * NV vectors of VL output pixels starts from the bias and takes K = Cg*kh*kw steps of NV
 * loads, MR broadcasts of W and MR*NV fused multiply-adds, then is stored once. Tiles run
 * filter block innermost, so the x a tile reads (K taps x NV vectors, 21 KB on the stem)
 * stays in L1 for every filter block of that row. Each output is one sum over the taps in
 * (c, i, j) order, so results do not depend on the thread count.
 *
 * Measured on 2 Zen 4 cores (stem, float32 forward): 136-145 GFLOP/s through im2col +
 * OpenBLAS, about 200 this way.
 */
#include "cvd_internal.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define DIRECT_X86 1
#else
#define DIRECT_X86 0
#endif

/* Output vectors per tile at most (NV), and filters per tile for each NV (index nv - 1):
 * the MR*NV accumulators, NV x vectors and one broadcast fit the 32 zmm registers. Of the
 * tiles that fit, 6x4 and 8x3 (the stem's 7 vectors a row as 4 + 3) ran 2-4 % faster
 * than 3x7 and 5x5. */
#define DIRECT_NV_MAX 4
static const int direct_mr_max[DIRECT_NV_MAX] = {8, 8, 8, 6};
/* A band of output rows reads about this much of xs, so it stays in L2 while every
 * filter block passes over it; a filter block's W rows take about this much, so they
 * stay in L1 (at least 8 filters). Both measured on the stem: +5-8 % over whole rows and
 * all 64 filters. */
#define CVD_DIRECT_BAND_BYTES   ((size_t)128 << 10)
#define CVD_DIRECT_WBLOCK_BYTES ((size_t)8 << 10)

int cvd_direct_available(void)
{
#if DIRECT_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

/* The output columns rounded up to whole vectors of vl elements. */
static int64_t direct_lanes(const cvd_geom *g, int64_t vl)
{
    return (g->OW + vl - 1) / vl * vl;
}

/* Columns of an xs row: the lanes plus the furthest tap's shift, so a tile never needs a
 * bounds check. */
static int64_t direct_wq(const cvd_geom *g, int64_t vl)
{
    return direct_lanes(g, vl) + (g->kw - 1) * g->dw / g->sw;
}

size_t cvd_direct_ws(const cvd_geom *g, size_t elem_size)
{
    const int64_t vl = (int64_t)(64 / elem_size);
    size_t xs, all, bytes;
    /* every factor is below 2^31 (cvd_geom_init): wq and K*8 cannot overflow */
    const size_t head = ((size_t)g->K * sizeof(int64_t) + elem_size - 1) / elem_size;
    if (cvd_mul_size((size_t)g->Cg, (size_t)g->sw, &xs) || cvd_mul_size(xs, (size_t)g->Hp, &xs) ||
        cvd_mul_size(xs, (size_t)direct_wq(g, vl), &xs) || cvd_add_size(xs, head, &all) ||
        cvd_mul_size(all, elem_size, &bytes))
        return 0;
    return all;
}

int cvd_direct_pays(const cvd_geom *g, size_t elem_size, cvd_path want)
{
    if (want == CVD_PATH_IM2COL || want == CVD_PATH_SHIFT || !cvd_direct_available())
        return 0;
    const size_t ws = cvd_direct_ws(g, elem_size);
    if (ws == 0)
        return 0;
    if (want == CVD_PATH_DIRECT)
        return 1;
    /* a row's vectors must be at least 3/4 full: resnet_deep's 14 columns (float32: 14 of
     * 16 lanes) pay, a 7x7 image (7 of 16) runs at half speed; a 1x1 layer is one GEMM */
    return !g->is_1x1 && 4 * g->OW >= 3 * direct_lanes(g, (int64_t)(64 / elem_size)) &&
           ws <= CVD_DIRECT_MAX_WS / elem_size;
}

#if DIRECT_X86

#define DIRECT_TARGET __attribute__((target("avx512f")))

typedef struct direct_job {
    const cvd_geom *g;
    const void *W, *b; /* W_g [Fg, K], b_g [Fg] or NULL */
    void *y;           /* y of the image and group, [Fg, P] */
    const void *xs;
    const int64_t *off; /* K tap offsets into xs */
    int64_t wq, rb, fb; /* xs row length, rows per band, filters per block */
    int finite[CVD_MAX_PARTS];
} direct_job;

#define T          float
#define SFX(n)     n##_f32
#define VL         16
#define VEC        __m512
#define MASK       __mmask16
#define V_LOAD     _mm512_loadu_ps
#define V_SET1     _mm512_set1_ps
#define V_ZERO     _mm512_setzero_ps
#define V_FMA      _mm512_fmadd_ps
#define V_MUL      _mm512_mul_ps
#define V_ADD      _mm512_add_ps
#define V_MADD     _mm512_mask_add_ps
#define V_STORE    _mm512_storeu_ps
#define V_MSTORE   _mm512_mask_storeu_ps
#define V_UNORD(v) _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q)
#define V_EVENS(a, b)                                                                              \
    _mm512_permutex2var_ps(                                                                        \
        a, _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), b)
#include "direct_impl.h"
#undef T
#undef SFX
#undef VL
#undef VEC
#undef MASK
#undef V_LOAD
#undef V_SET1
#undef V_ZERO
#undef V_FMA
#undef V_MUL
#undef V_ADD
#undef V_MADD
#undef V_STORE
#undef V_MSTORE
#undef V_UNORD
#undef V_EVENS

#define T             double
#define SFX(n)        n##_f64
#define VL            8
#define VEC           __m512d
#define MASK          __mmask8
#define V_LOAD        _mm512_loadu_pd
#define V_SET1        _mm512_set1_pd
#define V_ZERO        _mm512_setzero_pd
#define V_FMA         _mm512_fmadd_pd
#define V_MUL         _mm512_mul_pd
#define V_ADD         _mm512_add_pd
#define V_MADD        _mm512_mask_add_pd
#define V_STORE       _mm512_storeu_pd
#define V_MSTORE      _mm512_mask_storeu_pd
#define V_UNORD(v)    _mm512_cmp_pd_mask(v, v, _CMP_UNORD_Q)
#define V_EVENS(a, b) _mm512_permutex2var_pd(a, _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14), b)
#include "direct_impl.h"

#else

/* Never called: cvd_direct_pays is 0 without AVX-512, so no plan takes this path. */
int cvd_direct_forward_f32(const cvd_geom *g, const float *W_g, const float *b_g, const float *x_g,
                           float *y_g, float *ws, int nt)
{
    (void)g, (void)W_g, (void)b_g, (void)x_g, (void)y_g, (void)ws, (void)nt;
    return 0;
}

int cvd_direct_forward_f64(const cvd_geom *g, const double *W_g, const double *b_g,
                           const double *x_g, double *y_g, double *ws, int nt)
{
    (void)g, (void)W_g, (void)b_g, (void)x_g, (void)y_g, (void)ws, (void)nt;
    return 0;
}

#endif
