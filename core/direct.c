/*
 * direct.c — forward convolution straight from the input, with no im2col and no GEMM
 * (and, through cvd_dgrad, backward-data as the forward of delta with the flipped,
 * transposed weights). Own SIMD code for AVX-512F and for AVX2 with FMA, one template
 * (direct_impl.h) with the vector width as a parameter, picked at run time by cvd_cpu_isa;
 * without either, cvd_direct_pays says no and the layer runs im2col + BLAS.
 *
 * Method. One image and group of x is copied once into xs, zero-padded and split by
 * column phase: xs[c][ph][r][q] = xpad[c][r][q*sw + ph] (Hp rows of Wq columns, see
 * cvd_direct_ws). Output pixels ow .. ow+VL-1 of row oh then read, for tap (c, i, j),
 *     xs[c][(j*dw) % sw][oh*sh + i*dh][ow + (j*dw)/sw ...]
 * which is contiguous whatever the stride and dilation. With stride 1 and rows of fewer
 * columns than whole vectors take (cvd_direct_plane), xs rows are the padded rows themselves
 * (Wq = Wp) and output (oh, ow) sits at q = oh*Wq + ow of that flat plane, reading tap
 * (c, i, j) at xs[c][0][0][q + i*dh*Wq + j*dw]: vectors run on across rows, the Wq - OW
 * junk columns a row are computed and never stored (masked stores, two rows a vector),
 * so resnet_mid's 56 columns take 58 lanes, not 64. A register tile of MR filters by
 * NV vectors of VL output pixels starts from the bias and takes the taps of a block of
 * channels in NV loads, MR broadcasts of W and MR*NV fused multiply-adds each, then is
 * stored (and reloaded for the next block). The filter tiles of one place (a stretch of
 * the flat plane, a row's vectors or stacked narrow rows) run innermost, so the x their
 * taps read stays in L1 across them; blocks of channels keep it within half of L1 (a deep
 * layer's 2304 taps would not fit). Each output is one sum
 * over the taps in (c, i, j) order, whatever the blocking and the thread count, so results
 * do not depend on scheduling; they do depend on the ISA only through where the fused
 * multiply-adds round, which is the same in both: each output is the same chain of FMAs.
 */
#include "cvd_internal.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define DIRECT_X86 1
#else
#define DIRECT_X86 0
#endif

/* Blocks from the cache sizes (cvd_cpu_l1d, cvd_cpu_l2): a tile's x (the rows its taps
 * read in a block of channels) at most half of L1, so it stays there across the filter
 * tiles of its place; a band of output rows reads at most an eighth of L2 of xs and y,
 * and a filter block's W rows take at most as much, so the band and the weights stay in
 * L2 while every filter block passes over the band. The W rows need not stay in L1: a
 * tile reads one element of each of its rows a tap, a cache line every 16 taps. */
#define DIRECT_L1_X_SHARE 2
#define DIRECT_LINE       64 /* bytes of a cache line on every x86-64 CPU */
#define DIRECT_L2_SHARE   8

int cvd_direct_available(void)
{
    return cvd_cpu_isa() != CVD_ISA_NONE;
}

/* Bytes of one vector at the ISA in use (64 at most: cvd_direct_ws sizes for that). */
static int64_t direct_vbytes(void)
{
    return cvd_cpu_isa() == CVD_ISA_AVX512 ? 64 : 32;
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

const cvd_geom *cvd_direct_flat(const cvd_geom *g, cvd_geom *flat)
{
    if (!g->is_1x1)
        return g;
    *flat = *g;
    flat->H = flat->OH = flat->Hp = 1;
    flat->W = flat->OW = flat->Wp = g->HW;
    return flat;
}

/* Whether the tiles run over the padded plane (direct_rows, wgrad.c): stride 1, rows at
 * least one vector wide (a vector then spans at most two rows), fewer lanes a row than
 * the row layout's whole vectors (resnet_mid's 58 against 64 in float32), and enough
 * multiply-adds an output (Fg*K) to pay for placing a tile's vectors across rows (a
 * depthwise layer's 9 do not). */
#define DIRECT_PLANE_MIN_MACS 64

int cvd_direct_plane(const cvd_geom *g, int64_t vl)
{
    return g->sh == 1 && g->sw == 1 && g->Wp >= vl && g->Wp < direct_lanes(g, vl) &&
           g->Fg * g->K >= DIRECT_PLANE_MIN_MACS;
}

int64_t cvd_direct_row_lanes(const cvd_geom *g, int64_t vl)
{
    return cvd_direct_plane(g, vl) ? g->Wp : direct_lanes(g, vl);
}

size_t cvd_direct_ws(const cvd_geom *g0, size_t elem_size)
{
    cvd_geom fl;
    const cvd_geom *g = cvd_direct_flat(g0, &fl);
    /* sized for 64-byte vectors, the widest: enough for either ISA and layout (the flat
     * plane's rows are at most the row layout's; its last tile reads a vector past it) */
    const int64_t vl = (int64_t)(64 / elem_size);
    size_t xs, plane, all, bytes;
    /* every factor is below 2^31 (cvd_geom_init): wq and K*8 cannot overflow */
    const size_t head = ((size_t)g->K * sizeof(int64_t) + elem_size - 1) / elem_size;
    if (cvd_mul_size((size_t)g->Cg, (size_t)g->sw, &xs) || cvd_mul_size(xs, (size_t)g->Hp, &xs) ||
        cvd_mul_size(xs, (size_t)direct_wq(g, vl), &xs) ||
        cvd_mul_size((size_t)g->Cg, (size_t)g->Hp, &plane) ||
        cvd_mul_size(plane, (size_t)g->Wp, &plane) || cvd_add_size(plane, (size_t)vl, &plane))
        return 0;
    if (cvd_add_size(xs > plane ? xs : plane, head, &all) || cvd_mul_size(all, elem_size, &bytes))
        return 0;
    return all;
}

int cvd_direct_pays(const cvd_geom *g0, size_t elem_size, cvd_path want)
{
    cvd_geom fl;
    const cvd_geom *g = cvd_direct_flat(g0, &fl);
    if (want == CVD_PATH_IM2COL || want == CVD_PATH_SHIFT || !cvd_direct_available())
        return 0;
    const size_t ws = cvd_direct_ws(g, elem_size);
    if (ws == 0)
        return 0;
    if (want == CVD_PATH_DIRECT)
        return 1;
    /* a row's vectors must be at least 3/4 full: resnet_deep's 14 columns (float32: 14 of
     * 16 lanes) pay, a 7x7 image (7 of 16) runs at half speed; a 1x1 layer is one row */
    const int64_t vl = direct_vbytes() / (int64_t)elem_size;
    return 4 * g->OW >= 3 * direct_lanes(g, vl) && ws <= CVD_DIRECT_MAX_WS / elem_size;
}

typedef struct direct_job {
    const cvd_geom *g;
    const void *W, *b; /* W_g [Fg, K], b_g [Fg] or NULL */
    void *y;           /* y of the image and group, [Fg, P] */
    const void *xs;
    const int64_t *off;     /* K tap offsets into xs */
    int64_t wq, rb, cb, fb; /* xs row length, rows per band, channels and filters per block */
    int flat;               /* tiles over the flat plane (direct_flat) */
    int finite[CVD_MAX_PARTS];
} direct_job;

/* Tap offsets into xs with rows of wq columns (layout: see the header). */
static void direct_offsets(const cvd_geom *g, int64_t wq, int64_t *off)
{
    for (int64_t c = 0; c < g->Cg; c++)
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t jj = 0; jj < g->kw; jj++) {
                const int64_t col = jj * g->dw;
                off[(c * g->kh + i) * g->kw + jj] =
                    ((c * g->sw + col % g->sw) * g->Hp + i * g->dh) * wq + col / g->sw;
            }
}

int64_t cvd_direct_taps(const cvd_geom *g, int64_t vl, int64_t *off)
{
    const int64_t wq = cvd_direct_plane(g, vl) ? g->Wp : direct_wq(g, vl);
    direct_offsets(g, wq, off);
    return wq;
}

/* n items in blocks of at most most, as few blocks as that allows, of near-equal size. */
static int64_t direct_even(int64_t n, int64_t most)
{
    const int64_t blocks = (n + most - 1) / most;
    return (n + blocks - 1) / blocks;
}

/* Fills j's tap offsets (at the head of ws), xs (after them), layout, row length and
 * blocks for vectors of vl elements of es bytes, tiles of at most nvmax vectors and
 * mrmax[nv - 1] filters for nv vectors. */
static void direct_setup(direct_job *j, int64_t vl, int64_t es, int64_t nvmax, const int *mrmax,
                         void *ws)
{
    const cvd_geom *g = j->g;
    const int64_t taps = g->kh * g->kw, ew = (g->kw - 1) * g->dw;
    int64_t *off = ws;
    j->flat = cvd_direct_plane(g, vl);
    j->wq = j->flat ? g->Wp : direct_wq(g, vl);
    direct_offsets(g, j->wq, off);
    j->off = off;
    j->xs = (char *)ws + (g->K * (int64_t)sizeof(int64_t) + es - 1) / es * es;
    const int64_t wq = j->wq, l1 = (int64_t)cvd_cpu_l1d(), l2 = (int64_t)cvd_cpu_l2();
    /* the bytes of one channel a tile reads: kh row pieces (the plane's may overlap: then
     * one span), or the rows of a row tile (stacked rows share theirs) in every phase,
     * each piece in whole cache lines and one more for where it starts */
    const int64_t nvec = (g->OW + vl - 1) / vl;
    int64_t pieces, piece, nv;
    if (j->flat) {
        nv = nvmax;
        piece = nvmax * vl + ew;
        const int64_t span = (g->kh - 1) * g->dh * wq + piece;
        pieces = g->kh * piece < span ? g->kh : 1;
        piece = pieces == 1 ? span : piece;
    } else {
        const int64_t rpt = 2 * nvec <= nvmax ? nvmax / nvec : 1;
        const int64_t rows = (rpt - 1) * g->sh + (g->kh - 1) * g->dh + 1;
        nv = rpt > 1 ? rpt * nvec : nvec < nvmax ? nvec : nvmax;
        const int64_t cols = nv / rpt * vl + ew / g->sw;
        pieces = (rows < rpt * g->kh ? rows : rpt * g->kh) * g->sw;
        piece = cols < wq ? cols : wq;
    }
    const int64_t chan = pieces * ((piece * es + DIRECT_LINE - 1) / DIRECT_LINE + 1) * DIRECT_LINE;
    const int64_t cb = l1 / DIRECT_L1_X_SHARE / chan;
    j->cb = direct_even(g->Cg, cb < 1 ? 1 : cb);
    const int64_t kb = j->cb * taps;
    /* the xs rows one output row reads beyond the previous one, in one block of channels,
     * and, when there are several blocks, the row of y each of them reads and writes */
    const int64_t y_row = j->cb < g->Cg ? g->Fg * g->OW : 0;
    const int64_t row_bytes = (j->cb * g->sw * g->sh * wq + y_row) * es;
    j->rb = l2 / DIRECT_L2_SHARE / row_bytes;
    j->rb = j->rb < 1 ? 1 : j->rb;
    /* whole tiles of the tallest height */
    const int64_t mr = mrmax[nv - 1], fb = l2 / DIRECT_L2_SHARE / (kb * es) / mr * mr;
    j->fb = direct_even(g->Fg, fb < mr ? mr : fb);
}

#if DIRECT_X86

/* Tile shapes (NV vectors at most, and MR filters for each NV): the MR*NV accumulators, NV
 * x vectors and one broadcast fit the registers, 32 zmm or 16 ymm; of those that fit 32,
 * 6x4 and 8x3 (the stem's 7 vectors a row as 4 + 3) load the fewest operands per FMA. */
#define DIRECT_NV_MAX (SIMD_WIDE ? 4 : 3)
#define DIRECT_MR_MAX_WIDE                                                                         \
    {                                                                                              \
        8, 8, 8, 6                                                                                 \
    }
#define DIRECT_MR_MAX_NARROW                                                                       \
    {                                                                                              \
        8, 6, 4                                                                                    \
    }
#define DIRECT_SWITCH_WIDE                                                                         \
    DIRECT_NV(1, DIRECT_MR8(1))                                                                    \
    DIRECT_NV(2, DIRECT_MR8(2)) DIRECT_NV(3, DIRECT_MR8(3)) DIRECT_NV(4, DIRECT_MR6(4))
#define DIRECT_SWITCH_NARROW                                                                       \
    DIRECT_NV(1, DIRECT_MR8(1)) DIRECT_NV(2, DIRECT_MR6(2)) DIRECT_NV(3, DIRECT_MR4(3))

#define SIMD_SEL 1
#include "simd.h"
#include "xs_impl.h"
#include "direct_impl.h"
#define SIMD_SEL 2
#include "simd.h"
#include "xs_impl.h"
#include "direct_impl.h"
#define SIMD_SEL 3
#include "simd.h"
#include "xs_impl.h"
#include "direct_impl.h"
#define SIMD_SEL 4
#include "simd.h"
#include "xs_impl.h"
#include "direct_impl.h"

int cvd_direct_forward_f32(const cvd_geom *g0, const float *W_g, const float *b_g, const float *x_g,
                           float *y_g, float *ws, int nt)
{
    cvd_geom fl;
    const cvd_geom *g = cvd_direct_flat(g0, &fl);
    if (cvd_cpu_isa() == CVD_ISA_AVX512)
        return direct_image_avx512_f32(g, W_g, b_g, x_g, y_g, ws, nt);
    return direct_image_avx2_f32(g, W_g, b_g, x_g, y_g, ws, nt);
}

int cvd_direct_forward_f64(const cvd_geom *g0, const double *W_g, const double *b_g,
                           const double *x_g, double *y_g, double *ws, int nt)
{
    cvd_geom fl;
    const cvd_geom *g = cvd_direct_flat(g0, &fl);
    if (cvd_cpu_isa() == CVD_ISA_AVX512)
        return direct_image_avx512_f64(g, W_g, b_g, x_g, y_g, ws, nt);
    return direct_image_avx2_f64(g, W_g, b_g, x_g, y_g, ws, nt);
}

#else

/* Never called: without x86-64 cvd_cpu_isa is CVD_ISA_NONE, so no plan takes this path. */
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
