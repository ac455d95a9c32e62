/*
 * cvd_internal.h — private helpers shared by the core's modules (never installed, never
 * included by server/): the error formatter, checked arithmetic, the resolved geometry of
 * one layer on one input (cvd_geom) and how a pass over it is planned, the own SIMD
 * kernels' entry points (direct, dgrad, wgrad, cpu), the im2col/col2im kernels, the init
 * PRNG, and test-only knobs (batch-chunk size, path, SIMD level). Tests may include it; the daemon
 * must not.
 */
#ifndef CVD_INTERNAL_H
#define CVD_INTERNAL_H

#include "cvd.h"

#include <cblas.h>

#include <stdio.h>
#include <stdlib.h>

/* Largest value any single dimension, kernel, stride, pad or dilation may take. Keeping
 * every dim below 2^31 means sums like H + pt + pb can never overflow int64, and it is
 * also the bound BLAS's int arguments impose on M, N, K and the leading dimensions. */
#define CVD_MAX_DIM INT32_MAX

/* The batch is processed in chunks of nb images; a chunk's workspace is col [K, nb*P] plus
 * the output/delta staging [F/g, nb*P]. By default nb is what fits CVD_CHUNK_BYTES (so col
 * stays in the last-level cache between im2col and the GEMM reading it), raised if needed
 * to give the GEMM CVD_CHUNK_MIN_COLS columns, but never over CVD_CHUNK_MAX_BYTES. */
#define CVD_CHUNK_BYTES     ((size_t)8 << 20)
#define CVD_CHUNK_MAX_BYTES ((size_t)32 << 20)
#define CVD_CHUNK_MIN_COLS  2048
/* A 1x1 layer (stride 1, no pad) whose images have at least this many pixels runs image
 * by image on x, y, delta and dx in place: its GEMMs are wide enough, and copying images
 * into a wide chunk costs more than it buys. */
#define CVD_1X1_DIRECT_COLS 512
/* Any other layer whose images have at least this many output pixels also runs image by
 * image (bands of output rows, in place): its GEMMs run on one thread each (see
 * parallel.c), where a few hundred columns are wide enough, and a chunk would cost a copy
 * of y or delta through the staging buffer (measurements: docs/kernels.md). */
#define CVD_DIRECT_COLS 128

/* Formats err->msg (truncated to fit); err may be NULL. Returns s so a caller can write
 * `return cvd_err_setf(err, CVD_ERR_SHAPE, "...")`. */
cvd_status cvd_err_setf(cvd_err *err, cvd_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* a*b into *out; 1 on overflow (or a negative operand), 0 otherwise. */
static inline int cvd_mul_i64(int64_t a, int64_t b, int64_t *out)
{
    if (a < 0 || b < 0)
        return 1;
    return __builtin_mul_overflow(a, b, out);
}

static inline int cvd_mul_size(size_t a, size_t b, size_t *out)
{
    return __builtin_mul_overflow(a, b, out);
}

static inline int cvd_add_size(size_t a, size_t b, size_t *out)
{
    return __builtin_add_overflow(a, b, out);
}

/* One layer applied to one input shape, everything resolved and validated once. Every
 * GEMM dimension and leading dimension derived from it fits in int (checked by
 * cvd_geom_init), so kernels cast without further checks. */
typedef struct cvd_geom {
    int64_t N, C, H, W; /* input x: (N, C, H, W) */
    int64_t F, OH, OW;  /* output y: (N, F, OH, OW) */
    int64_t G, Cg, Fg;  /* groups; channels and filters per group */
    int64_t kh, kw, sh, sw, dh, dw;
    int64_t pt, pb, pl, pr;   /* padding actually applied: top, bottom, left, right */
    int64_t K;                /* Cg*kh*kw: rows of col, columns of W_g */
    int64_t P;                /* OH*OW: output pixels per image */
    int64_t HW;               /* H*W */
    int64_t x_numel, y_numel; /* N*C*H*W, N*F*P */
    int is_1x1;               /* 1x1 kernel, stride 1, no pad, no dilation: col == x */
    int64_t Hp, Wp;           /* padded input: H + pt + pb, W + pl + pr */
    int64_t cs;               /* shifted path: channel stride of padded x, Hp*Wp + (kw-1)*dw */
    int shift_ok;             /* stride 1 and every shifted-path GEMM dimension fits int */
    int small_bands;          /* bands of CVD_BAND_SPLIT_BYTES (cvd_plan_pass, backward) */
} cvd_geom;

/* Fills g for params p (already checked) and input x_shape (N, C, H, W). CVD_ERR_INVALID
 * for a dim < 1, CVD_ERR_TOO_LARGE for a dim over CVD_MAX_DIM or a product that overflows
 * or does not fit BLAS's int, CVD_ERR_SHAPE for a channel mismatch or an input smaller than
 * the dilated kernel. `what` names the tensor in messages ("x"). */
cvd_status cvd_geom_init(cvd_geom *g, const cvd_conv2d_params *p, const int64_t x_shape[4],
                         const char *what, cvd_err *err);

/* How a layer computes: im2col + one GEMM per chunk, or (stride 1 only) the shifted GEMM:
 * x is zero-padded once into xp [Cg, cs], and each kernel tap t = (i, j) is one GEMM with
 * K = Cg over the contiguous slice xp + i*dh*Wp + j*dw (row stride cs), whose output rows
 * have Wp columns, the last Wp-OW of them garbage and dropped. No im2col, no col2im, a
 * workspace of one padded image; the price is Wp/OW more GEMM columns and K = Cg. */
typedef enum {
    CVD_PATH_AUTO = 0,
    CVD_PATH_IM2COL,
    CVD_PATH_SHIFT,
    CVD_PATH_DIRECT,
    CVD_PATH_BLOCKED
} cvd_path;

/* The path for g (AUTO: shifted when shift_ok and it pays, see geom.c) and its workspace:
 * for im2col, nb and ws_elems as cvd_geom_chunk; for shifted, nb = 1 and
 *   ws_elems = kw*Cg*cs (xp and, for dW, kw-1 copies shifted by j*dw; xp is also dx's
 *              padded image) + Fg*OH*Wp (y or delta with rows of Wp)
 *            + 2*Fg*K (W_g and dW_g regrouped by tap: [kh*kw, Fg, Cg]).
 * CVD_PATH_SHIFT on a layer that is not shift_ok falls back to im2col. */
cvd_status cvd_geom_path(const cvd_geom *g, size_t elem_size, size_t budget, cvd_path want,
                         int *shifted, int64_t *nb, size_t *ws_elems, cvd_err *err);

/* The direct forward (direct.c): register tiles (AVX-512F or AVX2+FMA, cvd_cpu_isa)
 * reading a zero-padded, phase-split copy of one image and group, no im2col and no GEMM.
 * cvd_direct_available: whether the SIMD level in use has the kernels (not none).
 * cvd_direct_ws: the workspace elements of one image and group (the K tap offsets, then
 * xs [Cg, sw, Hp, Wq] with Wq = OW rounded up to whole 64-byte vectors + (kw-1)*dw/sw,
 * or the padded plane and a vector), 0 if that overflows. cvd_direct_pays: whether a pass takes it
 * (want CVD_PATH_DIRECT: whenever the CPU can; IM2COL or SHIFT: never; AUTO: when every row of
 * output vectors is at least 3/4 full and the workspace is at most CVD_DIRECT_MAX_WS bytes).
 * cvd_direct_forward: y_g [Fg, P] of one image and group (bias b_g or NULL) on nt threads
 * (by output rows); returns whether every value written is finite. */
#define CVD_DIRECT_MAX_WS ((size_t)64 << 20)
int cvd_direct_available(void);
size_t cvd_direct_ws(const cvd_geom *g, size_t elem_size);
int cvd_direct_pays(const cvd_geom *g, size_t elem_size, cvd_path want);
/* The channel-blocked forward (blocked.c): W, x and y copied per pass into blocks of VL
 * channels or filters, register tiles of filter blocks by output pixels. cvd_blocked_ws:
 * the workspace elements of one task (the blocked weights and bias of one group, then xb
 * and yb of one image), 0 if that overflows. cvd_blocked_pays: whether a forward takes it
 * (want CVD_PATH_BLOCKED: whenever the CPU can; IM2COL, SHIFT or DIRECT: never; AUTO:
 * on AVX-512 only, not 1x1, a whole block of channels, filters filling at least 7/8 of their
 * blocks' lanes, the workspace at most CVD_DIRECT_MAX_WS bytes). cvd_blocked_forward: y of images
 * lo .. hi-1, every group, (bias b or NULL) on nt threads (by output rows); returns whether every
 * value written is finite. With flip, g is the transposed layer of a backward-data
 * (cvd_dgrad_geom) and W the layer's own weights, read flipped and transposed as they are
 * blocked (Wt[c][f][taps-1-q] = W[f][c][q]) with no copy between. */
size_t cvd_blocked_ws(const cvd_geom *g, size_t elem_size);
int cvd_blocked_pays(const cvd_geom *g, size_t elem_size, cvd_path want);
int cvd_blocked_forward_f32(const cvd_geom *g, const float *W, const float *b, const float *x,
                            float *y, float *ws, int64_t lo, int64_t hi, int nt, int flip,
                            const float *pre);
int cvd_blocked_forward_f64(const cvd_geom *g, const double *W, const double *b, const double *x,
                            double *y, double *ws, int64_t lo, int64_t hi, int nt, int flip,
                            const double *pre);
/* The blocked weights once for the tasks of a pass that all run the blocked forward of a
 * one-group layer g (each would block them itself, from memory, for its own share of the
 * images): cvd_blocked_weights writes them, flipped as above with flip, and the bias (b
 * or NULL) to out, on nt threads; out holds cvd_blocked_wsize elements (0 on overflow).
 * cvd_blocked_forward with pre = out then reads them instead of W and b. */
size_t cvd_blocked_wsize(const cvd_geom *g, size_t elem_size);
void cvd_blocked_weights_f32(const cvd_geom *g, const float *W, const float *b, float *out,
                             int flip, int nt);
void cvd_blocked_weights_f64(const cvd_geom *g, const double *W, const double *b, double *out,
                             int flip, int nt);
/* g itself, or for a 1x1 layer (stride 1, no pad) the same layer on images of one row of
 * H*W pixels, which the own kernels run as one long row (full vectors, no tails but the
 * last) in flat; direct.c and wgrad.c apply it at their entry points. */
const cvd_geom *cvd_direct_flat(const cvd_geom *g, cvd_geom *flat);
/* Whether the kernels run g over its padded plane (stride 1, rows of Wp >= vl columns
 * taking fewer lanes than whole vectors of vl elements, Fg*K >= 64): output (oh, ow) at
 * q = oh*Wp + ow, xs [Cg, Hp, Wp] and a vector of zeros after it (direct.c). */
int cvd_direct_plane(const cvd_geom *g, int64_t vl);
/* The lanes the direct kernel computes a row of output, of which OW are stored: Wp on the
 * plane, else OW rounded up to whole vectors of vl (direct.c, for blocked.c's choice). */
int64_t cvd_direct_row_lanes(const cvd_geom *g, int64_t vl);
/* The tap offsets into xs (off[K]) for vectors of vl elements; returns the xs row length
 * (Wp on the plane) (direct.c, for wgrad.c). */
int64_t cvd_direct_taps(const cvd_geom *g, int64_t vl, int64_t *off);
int cvd_direct_forward_f32(const cvd_geom *g, const float *W_g, const float *b_g, const float *x_g,
                           float *y_g, float *ws, int nt);
int cvd_direct_forward_f64(const cvd_geom *g, const double *W_g, const double *b_g,
                           const double *x_g, double *y_g, double *ws, int nt);

/* Backward-data of a stride-1 layer as the forward of delta (dgrad.c), on the direct
 * kernel or the channel-blocked one. cvd_dgrad_geom: the transposed layer t (delta in, dx
 * out, weights flipped and transposed), 0 when g has a stride or a pad past its dilated
 * kernel. cvd_dgrad_pays: whether backward takes it (as cvd_direct_pays on t; see
 * dgrad.c); cvd_dgrad_blocked: whether then on the blocked forward (cvd_blocked_pays on
 * t). cvd_dgrad_ws: the workspace of one task (cvd_blocked_ws of t, or one group's
 * flipped weights and cvd_direct_ws of t), 0 when not applicable or on overflow. cvd_dgrad:
 * dx of images lo .. hi-1 (every element written) on nt threads, returning whether it is
 * all finite (the kernels check it as they store, so dx needs no scan after); pre, the weights of a
 * one-group layer already made for all tasks (blocked: cvd_blocked_weights of t with flip,
 * else cvd_dgrad_flip), or NULL. cvd_dgrad_flip: Wt of a one-group layer (Wt[c][f][q] =
 * W[f][c][taps-1-q], F*K elements) on nt threads. */
int cvd_dgrad_geom(const cvd_geom *g, cvd_geom *t);
int cvd_dgrad_pays(const cvd_geom *g, size_t elem_size, cvd_path want);
int cvd_dgrad_blocked(const cvd_geom *g, size_t elem_size, cvd_path want);
size_t cvd_dgrad_ws(const cvd_geom *g, size_t elem_size, int blocked);
int cvd_dgrad_f32(const cvd_geom *g, const float *W, const float *delta, float *dx, float *ws,
                  int64_t lo, int64_t hi, int nt, int blocked, const float *pre);
int cvd_dgrad_f64(const cvd_geom *g, const double *W, const double *delta, double *dx, double *ws,
                  int64_t lo, int64_t hi, int nt, int blocked, const double *pre);
void cvd_dgrad_flip_f32(const cvd_geom *g, const float *W, float *Wt, int nt);
void cvd_dgrad_flip_f64(const cvd_geom *g, const double *W, double *Wt, int nt);

/* Backward-weights on filter-blocked copies (blocked_wgrad.c): register tiles of filter
 * blocks by taps summing over the output pixels. cvd_blocked_wgrad_ws: the workspace of
 * one task (tap offsets, the blocked dW of one group, delta of one image in blocks and x
 * of one image padded), 0 on overflow. cvd_blocked_wgrad_pays: whether backward takes it
 * (forced by CVD_PATH_BLOCKED; AUTO: own kernels available, the filters filling at least
 * 7/8 of their blocks' lanes, the workspace at most CVD_DIRECT_MAX_WS bytes).
 * cvd_blocked_wgrad: dW (overwritten) of images lo .. hi-1 on nt threads. */
size_t cvd_blocked_wgrad_ws(const cvd_geom *g, size_t elem_size);
int cvd_blocked_wgrad_pays(const cvd_geom *g, size_t elem_size, cvd_path want);
void cvd_blocked_wgrad_f32(const cvd_geom *g, const float *x, const float *delta, float *dW,
                           float *ws, int64_t lo, int64_t hi, int nt);
void cvd_blocked_wgrad_f64(const cvd_geom *g, const double *x, const double *delta, double *dW,
                           double *ws, int64_t lo, int64_t hi, int nt);

/* Backward-weights on the own SIMD code (wgrad.c): dW as a blocked reduction over the
 * images and output pixels with register tiles of filters by taps, reading the direct
 * kernel's xs. cvd_wgrad_pays: whether backward takes it (as cvd_direct_pays);
 * cvd_wgrad_ws: its workspace (cvd_direct_ws, and on a stride-1 layer room for delta on
 * the padded plane and its lane masks), 0 on overflow. cvd_wgrad: dW (overwritten) of
 * images lo .. hi-1 on nt threads. */
int cvd_wgrad_pays(const cvd_geom *g, size_t elem_size, cvd_path want);
size_t cvd_wgrad_ws(const cvd_geom *g, size_t elem_size);
void cvd_wgrad_f32(const cvd_geom *g, const float *x, const float *delta, float *dW, float *ws,
                   int64_t lo, int64_t hi, int nt);
void cvd_wgrad_f64(const cvd_geom *g, const double *x, const double *delta, double *dW, double *ws,
                   int64_t lo, int64_t hi, int nt);

/* The own GEMM (packgemm.c): C = alpha·op(A)·op(B) + beta·C, row-major, with
 * cblas_?gemm's arguments, on the calling thread only. Runs packed AVX-512F/AVX2 register
 * tiles at cvd_cpu_isa's level and cblas_?gemm at CVD_ISA_NONE (or if its per-thread
 * packing buffer, about the L2 size, cannot be allocated): it never fails. */
void cvd_gemm_f32(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha,
                  const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);
void cvd_gemm_f64(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, double alpha,
                  const double *A, int lda, const double *B, int ldb, double beta, double *C,
                  int ldc);

/* The same with the layer's epilogue fused: C = A·B + bias[i] on row i (no transposes,
 * bias NULL for none, C not read) on the calling thread; returns whether every value of
 * C is finite, checked as each register tile is stored, so C is written once and never
 * read back (on cblas: bias rows, a GEMM adding onto them, then a scan). */
int cvd_gemm_bias_f32(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                      const float *bias, float *C, int ldc);
int cvd_gemm_bias_f64(int M, int N, int K, const double *A, int lda, const double *B, int ldb,
                      const double *bias, double *C, int ldc);

/* The SIMD level the own kernels use (cpu.c): what CPUID reports, lowered by
 * CONVD_ISA=avx512|avx2|none in the environment (read once; an unknown value is ignored)
 * and by cvd_cpu_force_isa (tests), never above the CPU. cvd_cpu_force_isa returns the
 * level set (isa, or the CPU's if that is lower). Cache sizes in bytes from sysconf, with
 * a default where the C library does not know them. */
typedef enum { CVD_ISA_NONE = 0, CVD_ISA_AVX2 = 1, CVD_ISA_AVX512 = 2 } cvd_isa;
cvd_isa cvd_cpu_isa(void);
cvd_isa cvd_cpu_isa_max(void);
cvd_isa cvd_cpu_force_isa(cvd_isa isa);
const char *cvd_cpu_isa_name(cvd_isa isa);
size_t cvd_cpu_l1d(void);
size_t cvd_cpu_l2(void);

/* Images per chunk (at least 1, at most N, and small enough that nb*P fits in int) and the
 * workspace elements that chunk needs: col [K, nb*P] plus, when nb > 1, the staging
 * buffer [Fg, nb*P]; 0 for a single 1x1 image (x is its col). budget 0 is the default
 * policy above (1 for a 1x1 layer of at least CVD_1X1_DIRECT_COLS pixels, or another of at
 * least CVD_DIRECT_COLS); a non-zero budget is a
 * hard byte limit (tests use it to force chunks). Fails (TOO_LARGE) only if a product overflows. */
cvd_status cvd_geom_chunk(const cvd_geom *g, size_t elem_size, size_t budget, int64_t *nb,
                          size_t *ws_elems, cvd_err *err);

/* The same on a block: channels c0 .. c1-1 of the group and, for im2col, output rows
 * oh0 .. oh1-1 (columns oh0*OW .. oh1*OW of the block), for col2im input rows ih0 .. ih1-1
 * (zeroed, then accumulated). Disjoint blocks touch disjoint memory, so they may run on
 * different threads. */
void cvd_im2col_band_f32(const cvd_geom *g, const float *x_g, float *col, int64_t ldc, int64_t c0,
                         int64_t c1, int64_t oh0, int64_t oh1);
void cvd_im2col_band_f64(const cvd_geom *g, const double *x_g, double *col, int64_t ldc, int64_t c0,
                         int64_t c1, int64_t oh0, int64_t oh1);
void cvd_col2im_band_f32(const cvd_geom *g, const float *col, int64_t ldc, float *x_g, int64_t c0,
                         int64_t c1, int64_t ih0, int64_t ih1);
void cvd_col2im_band_f64(const cvd_geom *g, const double *col, int64_t ldc, double *x_g, int64_t c0,
                         int64_t c1, int64_t ih0, int64_t ih1);

/* A band of output rows oh0 .. oh1 of the first nc channels of x_g (all Cg, or a block
 * whose first channel the caller points x_g at), with col holding just that band and
 * those channels (column 0 = first pixel of row oh0, row 0 = x_g's first channel):
 * im2col overwrites col [nc*kh*kw, (oh1-oh0)*OW]; col2im_rows accumulates it into input
 * rows ih0 .. ih1-1 of x_g (0 <= ih0 <= ih1 <= H; rows outside are skipped, so threads can
 * take disjoint ranges) without zeroing anything (the caller zeroes x_g once). */
void cvd_im2col_rows_f32(const cvd_geom *g, const float *x_g, float *col, int64_t ldc, int64_t nc,
                         int64_t oh0, int64_t oh1);
void cvd_im2col_rows_f64(const cvd_geom *g, const double *x_g, double *col, int64_t ldc, int64_t nc,
                         int64_t oh0, int64_t oh1);
void cvd_col2im_rows_f32(const cvd_geom *g, const float *col, int64_t ldc, float *x_g, int64_t nc,
                         int64_t oh0, int64_t oh1, int64_t ih0, int64_t ih1);
void cvd_col2im_rows_f64(const cvd_geom *g, const double *col, int64_t ldc, double *x_g, int64_t nc,
                         int64_t oh0, int64_t oh1, int64_t ih0, int64_t ih1);
/* A band whose col would pass this many bytes is done in blocks of channels when it runs
 * on one thread (a task of a batch split by images): the block's col stays in the 1 MiB
 * L2 between im2col (or the GEMM that writes it) and the GEMM (or col2im) that reads it. */
#define CVD_KBLOCK_BYTES ((size_t)1 << 20)

/* Output rows per band when a chunk is one image (nb == 1): col [K, rows*OW] should stay
 * in the cache between im2col and the GEMM (CVD_BAND_BYTES), but give the GEMM at least
 * CVD_BAND_MIN_COLS columns; a non-zero budget (tests) is a hard byte limit instead.
 * 4 MiB rather than the 1 MiB that fits L2: fewer, wider GEMMs, with col still in the L3,
 * won on the stem (docs/kernels.md). */
#define CVD_BAND_BYTES ((size_t)4 << 20)
/* In backward inside a task of a batch split by images (g->small_bands) a band runs on
 * one thread, and a band col the size of the 1 MiB L2 does better there; forward keeps
 * 4 MiB bands (fewer, wider GEMMs). */
#define CVD_BAND_SPLIT_BYTES ((size_t)1 << 20)
#define CVD_BAND_MIN_COLS    768
int64_t cvd_geom_band_rows(const cvd_geom *g, size_t elem_size, size_t budget);

/* Fork-join: runs fn(arg, t, ntasks) once for every t in 0 .. ntasks-1, on the caller and
 * up to nthreads-1 pooled helper threads, which take tasks as they free up. Helpers
 * come from one process-wide budget of cvd_get_num_threads()-1 (see parallel.c). */
#define CVD_MAX_PARTS 64
typedef void (*cvd_task_fn)(void *arg, int task, int ntasks);
void cvd_parallel_run(int nthreads, int ntasks, cvd_task_fn fn, void *arg);

/* How many threads a memory-bound loop over `work` elements should use when nt are free:
 * 1 below CVD_PARALLEL_MIN_WORK (a thread start costs more), else nt. */
#define CVD_PARALLEL_MIN_WORK ((size_t)1 << 18)
int cvd_parallel_parts(size_t work, int nt);

/* A GEMM of fewer multiply-adds than this runs on one thread even when more are free;
 * a pass of fewer (N*F*P*K in all) is not split by images. About 40 us of work on one
 * core, where starting and joining a thread costs 10-20 us. */
#define CVD_GEMM_SPLIT_MIN ((int64_t)1 << 21)

/* How a pass over g runs on nthreads (cvd_plan_pass): tasks = nthreads when N >= nthreads
 * > 1 and the pass has at least CVD_GEMM_SPLIT_MIN multiply-adds, else 1 (see
 * conv2d_impl.h); the path and nb planned (cvd_geom_path) for a task's share of
 * floor(N/tasks) images; blocked and direct, whether forward takes the channel-blocked
 * kernel (cvd_blocked_pays) or else the direct one (cvd_direct_pays, not on a 1x1 layer
 * unless forced) instead; dgrad and wgrad, whether backward computes dx and dW on the own
 * kernels (cvd_dgrad_pays, cvd_wgrad_pays) instead of the planned path, dgrad 2 when dx
 * takes the blocked forward (cvd_dgrad_blocked), 1 the direct one; ws_one, the largest of that
 * plan's and the own kernels' workspaces, rounded up to 16 elements (a slice per task); rows, the
 * band rows of that plan for forward and backward (rows[1] <= rows[0]: smaller bands in backward
 * when tasks > 1, see CVD_BAND_SPLIT_BYTES); ws_shared, with tasks > 1 on a one-group
 * layer whose forward takes the blocked kernel or whose dx takes dgrad, room for the
 * weights that kernel reads, made once for all the tasks (cvd_blocked_weights or
 * cvd_dgrad_flip), else 0; and ws_elems, the whole
 * workspace: tasks*ws_one + (tasks-1)*F*K (each task after the first sums its dW apart)
 * + ws_shared, in that order. */
typedef struct cvd_plan {
    int tasks, shifted, direct, blocked, dgrad, wgrad;
    int64_t nb, rows[2];
    size_t ws_one, ws_shared, ws_elems;
} cvd_plan;
cvd_status cvd_plan_pass(const cvd_geom *g, size_t elem_size, size_t budget, cvd_path want,
                         int nthreads, cvd_plan *plan, cvd_err *err);

/* OpenBLAS extensions: Debian's cblas.h declares them, other CBLAS headers may not. */
void openblas_set_num_threads(int num_threads);

/* Deterministic init stream: splitmix64 and the doubles drawn from it (see rng.c). */
typedef struct cvd_rng {
    uint64_t state;
} cvd_rng;
void cvd_rng_seed(cvd_rng *r, uint64_t seed);
uint64_t cvd_rng_next(cvd_rng *r);
/* Uniform in [0, 1): the top 53 bits of the next output times 2^-53. */
double cvd_rng_uniform(cvd_rng *r);
/* Two independent N(0, 1) draws from two uniforms (Box-Muller). */
void cvd_rng_normal2(cvd_rng *r, double *z0, double *z1);

/* Test-only: gives one layer a hard workspace budget (bytes; 0 restores the default
 * policy), so tests can force many small chunks. The daemon never calls it. */
void cvd_conv2d_set_chunk_bytes(cvd_conv2d *l, size_t bytes);
/* Test-only: forces a path (CVD_PATH_AUTO restores the default choice). */
void cvd_conv2d_set_path(cvd_conv2d *l, cvd_path path);

#endif /* CVD_INTERNAL_H */
