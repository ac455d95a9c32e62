/*
 * gemm_impl.h — type template of the im2col + BLAS path (included by conv2d_impl.h with T,
 * SFX and GEMM = cvd_gemm_f32/cvd_gemm_f64 defined). Generates, per dtype (_f32, _f64):
 * cols_job, cols_part, cols_run, band_job, band_part, band_cols, gemm_job, gemm_part,
 * gemm_run, gemm_split (GEMM_SPLIT), gemm_bias_split, kblock, emit, bias_fill,
 * block_nan_add, forward_run, backward_run. Arithmetic stays in T; cvd_geom guarantees every GEMM
 * argument fits in int.
 *
 * Per chunk of m images and per group g (K = Cg*kh*kw, P = OH*OW, col = [K, m*P]):
 *   forward   col = im2col(x_chunk,g);  stage[Fg, m*P] = W_g · col;  y[n,g] <- stage
 *   backward  dW_g (+)= delta_g · colᵀ (β=0 on the first chunk, 1 after);
 *             col = W_gᵀ · delta_g;  dx[n,g] = col2im(col)
 * With m == 1 the GEMMs read and write x, y, delta, dx in place (no staging; forward's
 * GEMM adds onto y pre-filled with the bias), in bands of output rows so that col
 * [K, rows*OW] stays in cache between im2col and its GEMM (on one thread, a band whose
 * col passes CVD_KBLOCK_BYTES goes in blocks of channels, K split); for a 1x1
 * kernel (stride 1, no pad) and m == 1, x[n,g] is its own col and nothing is copied (with
 * m > 1 its "im2col" is a plain row copy that buys one wide GEMM, which only pays on
 * small images: see cvd_geom_chunk). Each kernel takes a range of images and nt, the
 * threads it may use: 1 inside a task of a batch split by images, more when the GEMMs and
 * im2col of the images left over are split instead (pass_run in conv2d_impl.h).
 */

/* im2col / col2im of images n0 .. n0+m-1 of group grp, split into tasks: blocks of whole
 * channels when there are enough (each task then streams through its own rows of col),
 * else bands of image rows. */
typedef struct SFX(cols_job) {
    const cvd_geom *g;
    const T *x_src; /* im2col input (x), or NULL for col2im */
    T *x_dst;       /* col2im output (dx), or NULL for im2col */
    T *col;         /* [K, m*P] */
    int64_t n0, m, grp;
    int by_channel;
} SFX(cols_job);

static void SFX(cols_part)(void *arg, int task, int ntasks)
{
    const SFX(cols_job) *j = arg;
    const cvd_geom *g = j->g;
    const int64_t ldc = j->m * g->P, rows = j->x_src ? g->OH : g->H;
    int64_t c0 = 0, c1 = g->Cg, r0 = 0, r1 = rows;
    if (j->by_channel) {
        c0 = g->Cg * task / ntasks;
        c1 = g->Cg * (task + 1) / ntasks;
    } else {
        r0 = rows * task / ntasks;
        r1 = rows * (task + 1) / ntasks;
    }
    for (int64_t i = 0; i < j->m; i++) {
        const int64_t off = ((j->n0 + i) * g->C + j->grp * g->Cg) * g->HW;
        if (j->x_src)
            SFX(cvd_im2col_band)(g, j->x_src + off, j->col + i * g->P, ldc, c0, c1, r0, r1);
        else
            SFX(cvd_col2im_band)(g, j->col + i * g->P, ldc, j->x_dst + off, c0, c1, r0, r1);
    }
}

static void SFX(cols_run)(const cvd_geom *g, const T *x_src, T *x_dst, T *col, int64_t n0,
                          int64_t m, int64_t grp, int nt)
{
    const int threads = cvd_parallel_parts((size_t)(g->K * g->P * m), nt);
    /* Four tasks per thread balance a helper that starts late or runs slow. */
    const int64_t want = 4 * (int64_t)threads;
    const int64_t rows = x_src ? g->OH : g->H;
    const int by_channel = g->Cg >= want;
    const int64_t span = by_channel ? g->Cg : rows;
    SFX(cols_job) j = {g, x_src, x_dst, col, n0, m, grp, by_channel};
    cvd_parallel_run(threads, threads == 1 ? 1 : (int)(span < want ? span : want), SFX(cols_part),
                     &j);
}

/* im2col or col2im of one band of output rows oh0 .. oh1 of one image and group, nc
 * channels from the one x points at, col [nc*kh*kw, (oh1-oh0)*OW] holding just that band
 * and those channels, split across threads: im2col by output rows
 * (disjoint columns of col), col2im by the input rows the band reaches (disjoint rows of
 * x_dst, which the caller zeroed). */
typedef struct SFX(band_job) {
    const cvd_geom *g;
    const T *x_src; /* im2col input, or NULL for col2im */
    T *x_dst;       /* col2im output, or NULL for im2col */
    T *col;
    int64_t nc, oh0, oh1, lo, hi; /* the rows split: output rows (im2col), input rows (col2im) */
} SFX(band_job);

static void SFX(band_part)(void *arg, int task, int ntasks)
{
    const SFX(band_job) *j = arg;
    const int64_t a = j->lo + (j->hi - j->lo) * task / ntasks;
    const int64_t b = j->lo + (j->hi - j->lo) * (task + 1) / ntasks;
    const int64_t cols = (j->oh1 - j->oh0) * j->g->OW;
    if (j->x_src)
        SFX(cvd_im2col_rows)(j->g, j->x_src, j->col + (a - j->oh0) * j->g->OW, cols, j->nc, a, b);
    else
        SFX(cvd_col2im_rows)(j->g, j->col, cols, j->x_dst, j->nc, j->oh0, j->oh1, a, b);
}

static void SFX(band_cols)(const cvd_geom *g, const T *x_src, T *x_dst, T *col, int64_t nc,
                           int64_t oh0, int64_t oh1, int nt)
{
    SFX(band_job) j = {g, x_src, x_dst, col, nc, oh0, oh1, oh0, oh1};
    if (!x_src) {
        /* the input rows this band's windows reach, clipped to the image */
        const int64_t lo = oh0 * g->sh - g->pt;
        const int64_t hi = (oh1 - 1) * g->sh - g->pt + (g->kh - 1) * g->dh + 1;
        j.lo = lo < 0 ? 0 : lo;
        j.hi = hi > g->H ? g->H : hi;
        if (j.hi <= j.lo)
            return;
    }
    const int threads = cvd_parallel_parts((size_t)(nc * g->kh * g->kw * (oh1 - oh0) * g->OW), nt);
    const int64_t want = 2 * (int64_t)threads, span = j.hi - j.lo;
    cvd_parallel_run(threads, threads == 1 ? 1 : (int)(span < want ? span : want), SFX(band_part),
                     &j);
}

/* C = alpha·op(A)·op(B) + beta·C (row-major) on nt threads: C is cut into nt blocks of
 * columns, or of rows when it has more rows than columns, each one GEMM on its thread.
 * Block edges fall on multiples of 48 columns or 16 rows (whole panels and tiles of
 * packgemm.c), which keeps the threads' blocks on separate cache lines when C's rows are
 * aligned (most are not exactly, so at worst two threads share a line at an edge). A GEMM
 * under CVD_GEMM_SPLIT_MIN multiply-adds, or too narrow to cut, runs whole: a thread start
 * would cost more than it saves. */
/* The wrapper's name, so calls read (and clang-format) as plain calls. */
#define GEMM_SPLIT SFX(gemm_split)

typedef struct SFX(gemm_job) {
    CBLAS_TRANSPOSE ta, tb;
    int M, N, K, lda, ldb, ldc, by_cols;
    T alpha, beta;
    const T *A, *B;
    T *C;
    const T *bias;             /* with fused: GEMM_BIAS's rows (or NULL) */
    int fused;                 /* GEMM_BIAS instead of GEMM (no transposes, alpha 1) */
    int finite[CVD_MAX_PARTS]; /* with fused: each task's result */
} SFX(gemm_job);

static void SFX(gemm_part)(void *arg, int task, int ntasks)
{
    SFX(gemm_job) *j = arg;
    const int64_t span = j->by_cols ? j->N : j->M;
    /* columns in whole panels of the own GEMM (48 is a multiple of each ISA's and dtype's
     * panel width), rows in whole register tiles (16 of 8 or 4) */
    const int64_t q = j->by_cols ? 48 : 16;
    const int a = (int)(span * task / ntasks / q * q);
    const int b = task == ntasks - 1 ? (int)span : (int)(span * (task + 1) / ntasks / q * q);
    if (b <= a)
        return;
    if (j->fused) {
        const int64_t r = j->by_cols ? 0 : a, col = j->by_cols ? a : 0;
        j->finite[task] = GEMM_BIAS(j->by_cols ? j->M : b - a, j->by_cols ? b - a : j->N, j->K,
                                    j->A + r * j->lda, j->lda, j->B + col, j->ldb,
                                    j->bias ? j->bias + r : NULL, j->C + r * j->ldc + col, j->ldc);
        return;
    }
    if (j->by_cols)
        GEMM(j->ta, j->tb, j->M, b - a, j->K, j->alpha, j->A, j->lda,
             j->tb == CblasNoTrans ? j->B + a : j->B + (int64_t)a * j->ldb, j->ldb, j->beta,
             j->C + a, j->ldc);
    else
        GEMM(j->ta, j->tb, b - a, j->N, j->K, j->alpha,
             j->ta == CblasNoTrans ? j->A + (int64_t)a * j->lda : j->A + a, j->lda, j->B, j->ldb,
             j->beta, j->C + (int64_t)a * j->ldc, j->ldc);
}

/* Runs j on nt threads as the comment above says (on the calling thread when it is not
 * worth a split); returns whether every task's fused GEMM found C finite (1 unfused). */
static int SFX(gemm_run)(int nt, SFX(gemm_job) * j)
{
    const int span = j->by_cols ? j->N : j->M;
    const int tasks =
        nt > 1 && (int64_t)j->M * j->N * j->K >= CVD_GEMM_SPLIT_MIN && span >= 32 * nt ? nt : 1;
    for (int t = 0; t < tasks; t++)
        j->finite[t] = 1;
    if (tasks == 1)
        SFX(gemm_part)(j, 0, 1);
    else
        cvd_parallel_run(tasks, tasks, SFX(gemm_part), j);
    int finite = 1;
    for (int t = 0; t < tasks; t++)
        finite &= j->finite[t];
    return finite;
}

static void GEMM_SPLIT(int nt, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, T alpha,
                       const T *A, int lda, const T *B, int ldb, T beta, T *C, int ldc)
{
    SFX(gemm_job) j = {ta, tb, M, N, K, lda, ldb, ldc, N >= M, alpha, beta, A, B, C};
    SFX(gemm_run)(nt, &j);
}

/* GEMM_BIAS (C = A·B + bias rows, returns whether C is finite) split as GEMM_SPLIT. */
static int SFX(gemm_bias_split)(int nt, int M, int N, int K, const T *A, int lda, const T *B,
                                int ldb, const T *bias, T *C, int ldc)
{
    SFX(gemm_job) j = {CblasNoTrans, CblasNoTrans, M, N, K, lda, ldb, ldc, N >= M, 1, 0, A, B, C};
    j.bias = bias;
    j.fused = 1;
    return SFX(gemm_run)(nt, &j);
}

/* Channels per block for one band of cols output pixels (see CVD_KBLOCK_BYTES): Cg (no
 * blocks) when the band's col fits or when nt > 1 threads share the band (they split its
 * columns instead). */
static int64_t SFX(kblock)(const cvd_geom *g, int64_t cols, int nt)
{
    const int64_t per = g->kh * g->kw * cols * (int64_t)sizeof(T); /* col bytes per channel */
    const int64_t cb = (int64_t)CVD_KBLOCK_BYTES / per;
    if (nt > 1 || cb >= g->Cg)
        return g->Cg;
    return cb < 1 ? 1 : cb;
}

/* Moves the GEMM result of images n0 .. n0+m-1, group grp (bias included), into y while
 * it is still in cache, adding it to the finiteness sums. src rows: filter f of image i
 * at src + i*img_ld + f*row_ld. */
static void SFX(emit)(const cvd_geom *g, const T *src, int64_t row_ld, int64_t img_ld, T *y,
                      int64_t n0, int64_t m, int64_t grp, T *lane)
{
    for (int64_t i = 0; i < m; i++) {
        for (int64_t f = 0; f < g->Fg; f++) {
            T *d = y + ((n0 + i) * g->F + grp * g->Fg + f) * g->P;
            memcpy(d, src + i * img_ld + f * row_ld, (size_t)g->P * sizeof(T));
            SFX(nan_add)(lane, d, g->P);
        }
    }
}

/* Sets each row f of the block [Fg, cols] (row stride ld) to the bias b[f], for a GEMM
 * that then adds W·col with beta = 1: y is written once fewer than by GEMM (beta = 0,
 * which OpenBLAS runs as a separate zeroing pass) followed by a bias pass. */
static void SFX(bias_fill)(T *y, int64_t Fg, int64_t cols, int64_t ld, const T *b)
{
    for (int64_t f = 0; f < Fg; f++) {
        T *d = y + f * ld;
        const T bf = b[f];
        for (int64_t q = 0; q < cols; q++)
            d[q] = bf;
    }
}

/* Adds the block [Fg, cols] (row stride ld) to the finiteness sums. */
static void SFX(block_nan_add)(T *lane, const T *y, int64_t Fg, int64_t cols, int64_t ld)
{
    for (int64_t f = 0; f < Fg; f++)
        SFX(nan_add)(lane, y + f * ld, cols);
}

/* y = conv(x, W) + b for images lo .. hi-1 on nt threads; returns whether every element
 * written is finite. */
static int SFX(forward_run)(const cvd_geom *g, const T *W, const T *b, const T *x, T *y, int64_t nb,
                            int64_t rows, T *ws, int64_t lo, int64_t hi, int nt)
{
    const int64_t K = g->K, P = g->P, Fg = g->Fg, Cg = g->Cg, C = g->C, F = g->F, HW = g->HW;
    T lane[NAN_LANES] = {0};
    int finite = 1;
    for (int64_t n0 = lo; n0 < hi; n0 += nb) {
        const int64_t m = nb < hi - n0 ? nb : hi - n0;
        const int ldc = (int)(m * P);
        for (int64_t grp = 0; grp < g->G; grp++) {
            const T *Wg = W + grp * Fg * K;      /* [Fg, K] */
            T *yg = y + (n0 * F + grp * Fg) * P; /* [Fg, P] of image n0 */
            const T *bg = b ? b + grp * Fg : NULL;
            if (g->is_1x1 && m == 1) {
                /* y[n,g]: [Fg, P] = b_g + W_g [Fg, Cg] · x[n,g] [Cg, P], the bias and the
                 * finiteness check in the GEMM's tiles: y is written once, never read back
                 * (a float64 y of 256x28x28 passes L2; a bias pass before and a scan after
                 * cost a fifth of the layer) */
                finite &=
                    SFX(gemm_bias_split)(nt, (int)Fg, (int)P, (int)Cg, Wg, (int)K,
                                         x + (n0 * C + grp * Cg) * HW, (int)P, bg, yg, (int)P);
            } else if (m == 1) {
                /* Bands of output rows: col [K, rows*OW] stays in cache for the GEMM, which
                 * adds into y in place; the finiteness scan follows while y is still cached. */
                const T *xg = x + (n0 * C + grp * Cg) * HW;
                for (int64_t oh0 = 0; oh0 < g->OH; oh0 += rows) {
                    const int64_t oh1 = oh0 + rows < g->OH ? oh0 + rows : g->OH;
                    const int64_t cols = (oh1 - oh0) * g->OW;
                    T *yb = yg + oh0 * g->OW; /* [Fg, cols], row stride P */
                    const int64_t cb = SFX(kblock)(g, cols, nt), taps = g->kh * g->kw;
                    if (cb >= Cg) {
                        /* one GEMM over all of K: bias and check in its tiles, as above */
                        SFX(band_cols)(g, xg, NULL, ws, Cg, oh0, oh1, nt);
                        finite &= SFX(gemm_bias_split)(nt, (int)Fg, (int)cols, (int)K, Wg, (int)K,
                                                       ws, (int)cols, bg, yb, (int)P);
                        continue;
                    }
                    if (bg)
                        SFX(bias_fill)(yb, Fg, cols, P, bg);
                    for (int64_t c0 = 0; c0 < Cg; c0 += cb) {
                        /* y += W[:, block] · col(block), K split by channel blocks */
                        const int64_t nc = cb < Cg - c0 ? cb : Cg - c0;
                        SFX(band_cols)(g, xg + c0 * HW, NULL, ws, nc, oh0, oh1, nt);
                        GEMM_SPLIT(nt, CblasNoTrans, CblasNoTrans, (int)Fg, (int)cols,
                                   (int)(nc * taps), 1, Wg + c0 * taps, (int)K, ws, (int)cols,
                                   (bg || c0) ? 1 : 0, yb, (int)P);
                    }
                    SFX(block_nan_add)(lane, yb, Fg, cols, P);
                }
            } else {
                T *col = ws, *stage = ws + K * nb * P; /* [K, m*P], [Fg, m*P] */
                SFX(cols_run)(g, x, NULL, col, n0, m, grp, nt);
                if (bg)
                    SFX(bias_fill)(stage, Fg, ldc, ldc, bg);
                GEMM_SPLIT(nt, CblasNoTrans, CblasNoTrans, (int)Fg, ldc, (int)K, 1, Wg, (int)K, col,
                           ldc, bg ? 1 : 0, stage, ldc);
                SFX(emit)(g, stage, ldc, P, y, n0, m, grp, lane);
            }
        }
    }
    return finite && SFX(nan_none)(lane);
}

/* dx and/or dW (either may be NULL) of images lo .. hi-1 on nt threads, for delta at input
 * x: dW is overwritten with the sum over those images. db is done by bias_grad. */
static void SFX(backward_run)(const cvd_geom *g, const T *W, const T *x, const T *delta, T *dx,
                              T *dW, int64_t nb, int64_t rows, T *ws, int64_t lo, int64_t hi,
                              int nt)
{
    const int64_t K = g->K, P = g->P, Fg = g->Fg, Cg = g->Cg, C = g->C, F = g->F, HW = g->HW;
    for (int64_t n0 = lo; n0 < hi; n0 += nb) {
        const int64_t m = nb < hi - n0 ? nb : hi - n0;
        const int ldc = (int)(m * P);
        const T beta = n0 == lo ? 0 : 1; /* dW accumulates over chunks, never pre-zeroed */
        for (int64_t grp = 0; grp < g->G; grp++) {
            const T *Wg = W + grp * Fg * K;
            T *dWg = dW ? dW + grp * Fg * K : NULL;
            if (g->is_1x1 && m == 1) {
                const T *xg = x + (n0 * C + grp * Cg) * HW;    /* [Cg, P] */
                const T *dg = delta + (n0 * F + grp * Fg) * P; /* [Fg, P] */
                if (dWg)
                    GEMM_SPLIT(nt, CblasNoTrans, CblasTrans, (int)Fg, (int)Cg, (int)P, 1, dg,
                               (int)P, xg, (int)P, beta, dWg, (int)K);
                if (dx)
                    GEMM_SPLIT(nt, CblasTrans, CblasNoTrans, (int)Cg, (int)P, (int)Fg, 1, Wg,
                               (int)K, dg, (int)P, 0, dx + (n0 * C + grp * Cg) * HW, (int)P);
                continue;
            }
            if (m == 1) {
                /* Bands of output rows as in forward; dx is zeroed once, then accumulated. */
                const T *xg = x + (n0 * C + grp * Cg) * HW, *dg = delta + (n0 * F + grp * Fg) * P;
                T *dxg = dx ? dx + (n0 * C + grp * Cg) * HW : NULL;
                if (dxg)
                    memset(dxg, 0, (size_t)(Cg * HW) * sizeof(T));
                for (int64_t oh0 = 0; oh0 < g->OH; oh0 += rows) {
                    const int64_t oh1 = oh0 + rows < g->OH ? oh0 + rows : g->OH;
                    const int cols = (int)((oh1 - oh0) * g->OW);
                    const T *dband = dg + oh0 * g->OW; /* [Fg, cols], row stride P */
                    const int64_t cb = SFX(kblock)(g, cols, nt), taps = g->kh * g->kw;
                    const T bw = oh0 ? 1 : beta;
                    for (int64_t c0 = 0; c0 < Cg; c0 += cb) {
                        /* by channel blocks: dW[:, block] and dx[block] are disjoint */
                        const int64_t nc = cb < Cg - c0 ? cb : Cg - c0, kb = nc * taps;
                        if (dWg) {
                            SFX(band_cols)(g, xg + c0 * HW, NULL, ws, nc, oh0, oh1, nt);
                            GEMM_SPLIT(nt, CblasNoTrans, CblasTrans, (int)Fg, (int)kb, cols, 1,
                                       dband, (int)P, ws, cols, bw, dWg + c0 * taps, (int)K);
                        }
                        if (dxg) {
                            GEMM_SPLIT(nt, CblasTrans, CblasNoTrans, (int)kb, cols, (int)Fg, 1,
                                       Wg + c0 * taps, (int)K, dband, (int)P, 0, ws, cols);
                            SFX(band_cols)(g, NULL, dxg + c0 * HW, ws, nc, oh0, oh1, nt);
                        }
                    }
                }
                continue;
            }
            T *col = ws, *stage = ws + K * nb * P; /* [K, m*P], [Fg, m*P] */
            for (int64_t i = 0; i < m; i++)
                for (int64_t f = 0; f < Fg; f++)
                    memcpy(stage + f * ldc + i * P, delta + ((n0 + i) * F + grp * Fg + f) * P,
                           (size_t)P * sizeof(T));
            const T *dg = stage; /* delta of the chunk and group: [Fg, m*P] */
            if (dWg) {
                SFX(cols_run)(g, x, NULL, col, n0, m, grp, nt);
                GEMM_SPLIT(nt, CblasNoTrans, CblasTrans, (int)Fg, (int)K, ldc, 1, dg, ldc, col, ldc,
                           beta, dWg, (int)K);
            }
            if (dx) {
                GEMM_SPLIT(nt, CblasTrans, CblasNoTrans, (int)K, ldc, (int)Fg, 1, Wg, (int)K, dg,
                           ldc, 0, col, ldc);
                SFX(cols_run)(g, NULL, dx, col, n0, m, grp, nt);
            }
        }
    }
}
