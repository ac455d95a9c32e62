/*
 * conv2d_impl.h — type template of the conv kernels (included by conv2d.c once per dtype
 * with T, SFX and GEMM = cblas_sgemm/cblas_dgemm defined). Arithmetic stays in T.
 * Inputs are validated by conv2d.c; cvd_geom guarantees every GEMM argument fits in int.
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
 * im2col of the images left over are split instead (pass_run, at the end).
 */

/* Finiteness checks: v*0 is 0 for every finite v and NaN for an infinity or a NaN, so a
 * sum of v*0 is NaN exactly when some v is not finite. NAN_LANES independent sums vectorise
 * without -ffast-math (nothing is reassociated), cheaper than max-reducing exponent
 * bits, which SSE2 cannot do in 32- or 64-bit lanes. A caller keeps T lane[NAN_LANES]
 * zeroed, adds blocks with nan_add, and asks nan_none at the end. */
#ifndef NAN_LANES
#define NAN_LANES 16
#endif

static inline void SFX(nan_add)(T *lane, const T *a, int64_t n)
{
    int64_t i = 0;
    for (; i + NAN_LANES <= n; i += NAN_LANES)
        for (int j = 0; j < NAN_LANES; j++)
            lane[j] += a[i + j] * 0;
    for (; i < n; i++)
        lane[0] += a[i] * 0;
}

static inline int SFX(nan_none)(const T *lane)
{
    T s = 0;
    for (int j = 0; j < NAN_LANES; j++)
        s += lane[j];
    return s == s;
}

static int SFX(all_finite)(const T *a, size_t n)
{
    T lane[NAN_LANES] = {0};
    SFX(nan_add)(lane, a, (int64_t)n);
    return SFX(nan_none)(lane);
}

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
 * columns, or of rows when it has more rows than columns, each one GEMM on one OpenBLAS
 * thread (see parallel.c). Block edges fall on multiples of 16 elements, which keeps
 * the threads' blocks on separate cache lines when C's rows are aligned (most are not
 * exactly, so at worst two threads share a line at an edge). A GEMM under CVD_GEMM_SPLIT_MIN
 * multiply-adds, or too narrow to cut, runs whole: a thread start would cost more than it saves. */
/* The wrapper's name, so calls read (and clang-format) as plain calls. */
#define GEMM_SPLIT SFX(gemm_split)

typedef struct SFX(gemm_job) {
    CBLAS_TRANSPOSE ta, tb;
    int M, N, K, lda, ldb, ldc, by_cols;
    T alpha, beta;
    const T *A, *B;
    T *C;
} SFX(gemm_job);

static void SFX(gemm_part)(void *arg, int task, int ntasks)
{
    const SFX(gemm_job) *j = arg;
    const int64_t span = j->by_cols ? j->N : j->M;
    const int a = (int)(span * task / ntasks) & ~15;
    const int b = task == ntasks - 1 ? (int)span : (int)(span * (task + 1) / ntasks) & ~15;
    if (b <= a)
        return;
    if (j->by_cols)
        GEMM(CblasRowMajor, j->ta, j->tb, j->M, b - a, j->K, j->alpha, j->A, j->lda,
             j->tb == CblasNoTrans ? j->B + a : j->B + (int64_t)a * j->ldb, j->ldb, j->beta,
             j->C + a, j->ldc);
    else
        GEMM(CblasRowMajor, j->ta, j->tb, b - a, j->N, j->K, j->alpha,
             j->ta == CblasNoTrans ? j->A + (int64_t)a * j->lda : j->A + a, j->lda, j->B, j->ldb,
             j->beta, j->C + (int64_t)a * j->ldc, j->ldc);
}

static void GEMM_SPLIT(int nt, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, T alpha,
                       const T *A, int lda, const T *B, int ldb, T beta, T *C, int ldc)
{
    const int by_cols = N >= M, span = by_cols ? N : M;
    if (nt > 1 && (int64_t)M * N * K >= CVD_GEMM_SPLIT_MIN && span >= 32 * nt) {
        SFX(gemm_job) j = {ta, tb, M, N, K, lda, ldb, ldc, by_cols, alpha, beta, A, B, C};
        cvd_parallel_run(nt, nt, SFX(gemm_part), &j);
        return;
    }
    GEMM(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
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
    for (int64_t n0 = lo; n0 < hi; n0 += nb) {
        const int64_t m = nb < hi - n0 ? nb : hi - n0;
        const int ldc = (int)(m * P);
        for (int64_t grp = 0; grp < g->G; grp++) {
            const T *Wg = W + grp * Fg * K;      /* [Fg, K] */
            T *yg = y + (n0 * F + grp * Fg) * P; /* [Fg, P] of image n0 */
            const T *bg = b ? b + grp * Fg : NULL;
            if (g->is_1x1 && m == 1) {
                /* y[n,g]: [Fg, P] = b_g + W_g [Fg, Cg] · x[n,g] [Cg, P] */
                if (bg)
                    SFX(bias_fill)(yg, Fg, P, P, bg);
                GEMM_SPLIT(nt, CblasNoTrans, CblasNoTrans, (int)Fg, (int)P, (int)Cg, 1, Wg, (int)K,
                           x + (n0 * C + grp * Cg) * HW, (int)P, bg ? 1 : 0, yg, (int)P);
                SFX(block_nan_add)(lane, yg, Fg, P, P);
            } else if (m == 1) {
                /* Bands of output rows: col [K, rows*OW] stays in cache for the GEMM, which
                 * adds into y in place; the finiteness scan follows while y is still cached. */
                const T *xg = x + (n0 * C + grp * Cg) * HW;
                for (int64_t oh0 = 0; oh0 < g->OH; oh0 += rows) {
                    const int64_t oh1 = oh0 + rows < g->OH ? oh0 + rows : g->OH;
                    const int64_t cols = (oh1 - oh0) * g->OW;
                    T *yb = yg + oh0 * g->OW; /* [Fg, cols], row stride P */
                    const int64_t cb = SFX(kblock)(g, cols, nt), taps = g->kh * g->kw;
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
    return SFX(nan_none)(lane);
}

/* db[f] = sum over n and pixels of delta[n, f, :]. Sixteen running sums per row so the
 * adds vectorise (one serial sum costs an add latency per element); still all in T. */
static void SFX(bias_grad)(const cvd_geom *g, const T *delta, T *db)
{
    for (int64_t f = 0; f < g->F; f++)
        db[f] = 0;
    for (int64_t n = 0; n < g->N; n++) {
        for (int64_t f = 0; f < g->F; f++) {
            const T *row = delta + (n * g->F + f) * g->P;
            T lane[16] = {0};
            int64_t p = 0;
            for (; p + 16 <= g->P; p += 16)
                for (int j = 0; j < 16; j++)
                    lane[j] += row[p + j];
            T s = 0;
            for (; p < g->P; p++)
                s += row[p];
            for (int w = 8; w >= 1; w /= 2)
                for (int j = 0; j < w; j++)
                    lane[j] += lane[j + w];
            db[f] += lane[0] + s;
        }
    }
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

/* Whether W - lr*dW is finite everywhere (nothing is written). */
static int SFX(sgd_finite)(const T *W, const T *dW, size_t n, double lr)
{
    const T a = (T)lr;
    T lane[NAN_LANES] = {0};
    size_t i = 0;
    for (; i + NAN_LANES <= n; i += NAN_LANES)
        for (int j = 0; j < NAN_LANES; j++)
            lane[j] += (W[i + j] - a * dW[i + j]) * 0;
    for (; i < n; i++)
        lane[0] += (W[i] - a * dW[i]) * 0;
    return SFX(nan_none)(lane);
}

static void SFX(sgd_apply)(T *W, const T *dW, size_t n, double lr)
{
    const T a = (T)lr;
    for (size_t i = 0; i < n; i++)
        W[i] = W[i] - a * dW[i];
}

/* ---- Shifted GEMM (stride 1; see cvd_path in cvd_internal.h) -------------------------
 * Per image n and group grp, with xp [Cg, cs] the zero-padded x[n,grp] (channel stride
 * cs = Hp*Wp + (kw-1)*dw, so the slice a tap reads or writes never reaches the next
 * channel), yp [Fg, OH*Wp] and tap t = (i, j) at offset o_t = i*dh*Wp + j*dw:
 *   forward  yp  = sum_t Wr_t [Fg, Cg] · xp[:, o_t ..]           y[n,grp] <- yp + b
 *   dW       dWr_t (+)= yp · xp[:, o_t ..]ᵀ   with yp = delta[n,grp], garbage columns 0
 *   dx       dxp[:, o_t ..] += Wr_tᵀ · yp                       dx[n,grp] <- dxp
 * Wr_t [Fg, Cg] is W_g regrouped by tap. A garbage column of yp multiplies pixels that
 * wrap around from the next row; in dW and dx it is zero, so it adds nothing. */

/* Wr[t][f][c] = W_g[f][c][t]: W_g regrouped by tap. */
static void SFX(regroup)(const cvd_geom *g, const T *Wg, T *Wr)
{
    const int64_t taps = g->kh * g->kw, Fg = g->Fg, Cg = g->Cg;
    for (int64_t f = 0; f < Fg; f++)
        for (int64_t c = 0; c < Cg; c++)
            for (int64_t t = 0; t < taps; t++)
                Wr[(t * Fg + f) * Cg + c] = Wg[(f * Cg + c) * taps + t];
}

/* xp <- x_g [Cg, H, W] zero-padded (every element of xp is written). */
static void SFX(pad_in)(const cvd_geom *g, const T *x_g, T *xp)
{
    const int64_t W = g->W, Wp = g->Wp, tail = g->cs - (g->pt + g->H) * Wp;
    for (int64_t c = 0; c < g->Cg; c++) {
        T *d = xp + c * g->cs;
        const T *s = x_g + c * g->HW;
        memset(d, 0, (size_t)(g->pt * Wp + g->pl) * sizeof(T));
        d += g->pt * Wp + g->pl;
        for (int64_t h = 0; h < g->H; h++, d += Wp, s += W) {
            memcpy(d, s, (size_t)W * sizeof(T));
            memset(d + W, 0, (size_t)(h + 1 < g->H ? g->pr + g->pl : g->pr) * sizeof(T));
        }
        memset(d - g->pl, 0, (size_t)tail * sizeof(T));
    }
}

/* The kh*kw tap GEMMs of one image: dir 0 yp (+)= conv(xp) (beta0 0 overwrites, 1 adds
 * onto yp); dir 1 xp += conv_transpose(yp). Wr is W_g by tap. dW has its own GEMMs, one a
 * kernel row (dw_gemms). */
static void SFX(shift_gemms)(const cvd_geom *g, const T *Wr, T *xp, T *yp, int dir, T beta0, int nt)
{
    const int64_t Fg = g->Fg, Cg = g->Cg, Wp = g->Wp;
    const int n = (int)(g->OH * Wp), cs = (int)g->cs;
    for (int64_t i = 0, t = 0; i < g->kh; i++) {
        for (int64_t j = 0; j < g->kw; j++, t++) {
            const int64_t o = i * g->dh * Wp + j * g->dw;
            const T *A = Wr + t * Fg * Cg;
            if (dir == 0) /* y */
                GEMM_SPLIT(nt, CblasNoTrans, CblasNoTrans, (int)Fg, n, (int)Cg, 1, A, (int)Cg,
                           xp + o, cs, t ? 1 : beta0, yp, n);
            else /* dx */
                GEMM_SPLIT(nt, CblasTrans, CblasNoTrans, (int)Cg, n, (int)Fg, 1, A, (int)Cg, yp, n,
                           1, xp + o, cs);
        }
    }
}

/* y = conv(x, W) + b on the shifted path for images lo .. hi-1 on nt threads; returns
 * whether what it wrote is finite. */
static int SFX(forward_shift)(const cvd_geom *g, T *W, const T *b, const T *x, T *y, T *ws,
                              int64_t lo, int64_t hi, int nt)
{
    const int64_t Fg = g->Fg, Cg = g->Cg, Wp = g->Wp, OW = g->OW, P = g->P;
    T *xp = ws, *yp = xp + g->kw * Cg * g->cs, *Wr = yp + Fg * g->OH * Wp;
    T lane[NAN_LANES] = {0};
    for (int64_t grp = 0; grp < g->G; grp++) {
        const T *bg = b ? b + grp * Fg : NULL;
        SFX(regroup)(g, W + grp * Fg * g->K, Wr);
        for (int64_t n = lo; n < hi; n++) {
            SFX(pad_in)(g, x + (n * g->C + grp * Cg) * g->HW, xp);
            /* the first tap adds onto the bias (see bias_fill) */
            if (bg)
                SFX(bias_fill)(yp, Fg, g->OH * Wp, g->OH * Wp, bg);
            SFX(shift_gemms)(g, Wr, xp, yp, 0, bg ? 1 : 0, nt);
            T *yn = y + (n * g->F + grp * Fg) * P; /* [Fg, P] */
            for (int64_t f = 0; f < Fg; f++)
                for (int64_t oh = 0; oh < g->OH; oh++)
                    memcpy(yn + f * P + oh * OW, yp + (f * g->OH + oh) * Wp,
                           (size_t)OW * sizeof(T));
            SFX(nan_add)(lane, yn, Fg * P);
        }
    }
    return SFX(nan_none)(lane);
}

/* dW_g[f][c][i*kw + j] = dWr[i][f][j*Cg + c]: dW by kernel row, as dW_gemms writes it. */
static void SFX(regroup_dw)(const cvd_geom *g, T *dWg, const T *dWr)
{
    const int64_t kh = g->kh, kw = g->kw, Fg = g->Fg, Cg = g->Cg;
    for (int64_t f = 0; f < Fg; f++)
        for (int64_t c = 0; c < Cg; c++)
            for (int64_t i = 0; i < kh; i++)
                for (int64_t j = 0; j < kw; j++)
                    dWg[(f * Cg + c) * kh * kw + i * kw + j] =
                        dWr[((i * Fg + f) * kw + j) * Cg + c];
}

/* dW of one image with one GEMM per kernel row instead of one per tap: xp holds kw copies
 * of the padded image, copy j shifted left by j*dw ([kw*Cg, cs]; copy 0 is pad_in's), so
 * the taps (i, 0 .. kw-1) read rows of one matrix at offset i*dh*Wp and
 *   dWr[i] [Fg, kw*Cg] (+)= yp [Fg, n] · xp3[:, i*dh*Wp ..]ᵀ.
 * One GEMM kw times wider runs faster than kw thin ones (and splits better across
 * threads when the image is not split by images). Each copy
 * needs Hp*Wp elements (the last tap row reads up to Hp*Wp - 1), inside cs. */
static void SFX(dw_gemms)(const cvd_geom *g, T *dWr, T *xp, const T *yp, T beta0, int nt)
{
    const int64_t Fg = g->Fg, Cg = g->Cg, Wp = g->Wp, cs = g->cs, kw = g->kw;
    const int n = (int)(g->OH * Wp), nc = (int)(kw * Cg);
    for (int64_t j = 1; j < kw; j++)
        for (int64_t c = 0; c < Cg; c++)
            memcpy(xp + (j * Cg + c) * cs, xp + c * cs + j * g->dw,
                   (size_t)(g->Hp * Wp) * sizeof(T));
    for (int64_t i = 0; i < g->kh; i++)
        GEMM_SPLIT(nt, CblasNoTrans, CblasTrans, (int)Fg, nc, n, 1, yp, n, xp + i * g->dh * Wp,
                   (int)cs, beta0, dWr + i * Fg * nc, nc);
}

/* dx and/or dW (either may be NULL) on the shifted path for images lo .. hi-1 on nt
 * threads (dW overwritten with their sum); db is done by bias_grad. */
static void SFX(backward_shift)(const cvd_geom *g, T *W, const T *x, const T *delta, T *dx, T *dW,
                                T *ws, int64_t lo, int64_t hi, int nt)
{
    const int64_t Fg = g->Fg, Cg = g->Cg, Wp = g->Wp, OW = g->OW, P = g->P;
    T *xp = ws, *yp = xp + g->kw * Cg * g->cs, *Wr = yp + Fg * g->OH * Wp, *dWr = Wr + Fg * g->K;
    for (int64_t grp = 0; grp < g->G; grp++) {
        if (dx)
            SFX(regroup)(g, W + grp * Fg * g->K, Wr);
        for (int64_t n = lo; n < hi; n++) {
            for (int64_t f = 0; f < Fg; f++) {
                const T *s = delta + (n * g->F + grp * Fg + f) * P;
                T *d = yp + f * g->OH * Wp;
                for (int64_t oh = 0; oh < g->OH; oh++, d += Wp, s += OW) {
                    memcpy(d, s, (size_t)OW * sizeof(T));
                    memset(d + OW, 0, (size_t)(Wp - OW) * sizeof(T));
                }
            }
            if (dW) {
                SFX(pad_in)(g, x + (n * g->C + grp * Cg) * g->HW, xp);
                SFX(dw_gemms)(g, dWr, xp, yp, n > lo ? 1 : 0, nt);
            }
            if (dx) {
                memset(xp, 0, (size_t)(Cg * g->cs) * sizeof(T));
                SFX(shift_gemms)(g, Wr, xp, yp, 1, 0, nt);
                for (int64_t c = 0; c < Cg; c++) {
                    T *d = dx + (n * g->C + grp * Cg + c) * g->HW;
                    const T *s = xp + c * g->cs + g->pt * Wp + g->pl;
                    for (int64_t h = 0; h < g->H; h++, d += g->W, s += Wp)
                        memcpy(d, s, (size_t)g->W * sizeof(T));
                }
            }
        }
        if (dW)
            SFX(regroup_dw)(g, dW + grp * Fg * g->K, dWr);
    }
}

/* y = conv(x, W) + b by the direct kernel (direct.c) for images lo .. hi-1 on nt threads;
 * returns whether what it wrote is finite. */
static int SFX(forward_direct)(const cvd_geom *g, const T *W, const T *b, const T *x, T *y, T *ws,
                               int64_t lo, int64_t hi, int nt)
{
    int finite = 1;
    for (int64_t n = lo; n < hi; n++)
        for (int64_t grp = 0; grp < g->G; grp++)
            finite &= SFX(cvd_direct_forward)(g, W + grp * g->Fg * g->K, b ? b + grp * g->Fg : NULL,
                                              x + (n * g->C + grp * g->Cg) * g->HW,
                                              y + (n * g->F + grp * g->Fg) * g->P, ws, nt);
    return finite;
}

/* ---- One pass over the batch on the core's threads (see parallel.c) ------------------
 * With tasks > 1 (cvd_plan_pass), task t takes images q*t/tasks .. q*(t+1)/tasks - 1 of
 * the first q = N - N % tasks whole, on one thread: its own workspace slice, GEMMs on one
 * OpenBLAS thread, and in backward dW into its own partial (task 0 writes dW itself); the
 * partials are then added to dW in task order, so the result depends on the thread count
 * but not on scheduling. The N % tasks images left (all of them when tasks == 1) follow
 * with each GEMM and im2col split across the threads instead. */
typedef struct SFX(pass) {
    const cvd_geom *g;
    T *W;
    const T *b, *x, *delta;
    T *y;       /* forward: the output; NULL in backward */
    T *dx, *dW; /* backward: the gradients wanted (either may be NULL) */
    int64_t nb, rows;
    int shifted, direct, dgrad, wgrad, tasks;
    T *ws; /* tasks slices of ws_one elements */
    size_t ws_one;
    T *parts; /* tasks-1 partial dW of F*K elements */
    int64_t q;
    int finite[CVD_MAX_PARTS];
} SFX(pass);

/* Images lo .. hi-1 of the pass on nt threads with workspace ws, dW into dW. */
static int SFX(pass_range)(const SFX(pass) * p, int64_t lo, int64_t hi, int nt, T *ws, T *dW)
{
    const cvd_geom *g = p->g;
    if (p->y && p->direct)
        return SFX(forward_direct)(g, p->W, p->b, p->x, p->y, ws, lo, hi, nt);
    if (p->y)
        return p->shifted
                   ? SFX(forward_shift)(g, p->W, p->b, p->x, p->y, ws, lo, hi, nt)
                   : SFX(forward_run)(g, p->W, p->b, p->x, p->y, p->nb, p->rows, ws, lo, hi, nt);
    T *dx = p->dx;
    if (dx && p->dgrad) {
        SFX(cvd_dgrad)(g, p->W, p->delta, dx, ws, lo, hi, nt);
        dx = NULL;
    }
    if (dW && p->wgrad) {
        SFX(cvd_wgrad)(g, p->x, p->delta, dW, ws, lo, hi, nt);
        dW = NULL;
    }
    if (!dx && !dW)
        return 1;
    if (p->shifted)
        SFX(backward_shift)(g, p->W, p->x, p->delta, dx, dW, ws, lo, hi, nt);
    else
        SFX(backward_run)(g, p->W, p->x, p->delta, dx, dW, p->nb, p->rows, ws, lo, hi, nt);
    return 1;
}

static void SFX(pass_task)(void *arg, int t, int ntasks)
{
    SFX(pass) *p = arg;
    const int64_t lo = p->q * t / ntasks, hi = p->q * (t + 1) / ntasks;
    T *dW = p->dW && t ? p->parts + (t - 1) * p->g->F * p->g->K : p->dW;
    T *ws = p->ws ? p->ws + (size_t)t * p->ws_one : NULL;
    p->finite[t] = SFX(pass_range)(p, lo, hi, 1, ws, dW);
}

static void SFX(add_into)(T *dst, const T *src, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        dst[i] += src[i];
}

/* Runs the pass; returns whether everything forward wrote is finite (1 in backward). */
static int SFX(pass_run)(SFX(pass) * p)
{
    const cvd_geom *g = p->g;
    const int64_t wn = g->F * g->K;
    int finite = 1;
    int64_t done = 0;
    if (p->tasks > 1) {
        p->q = g->N - g->N % p->tasks;
        cvd_parallel_run(p->tasks, p->tasks, SFX(pass_task), p);
        for (int t = 0; t < p->tasks; t++) {
            finite &= p->finite[t];
            if (p->dW && t)
                SFX(add_into)(p->dW, p->parts + (t - 1) * wn, wn);
        }
        done = p->q;
    }
    if (done < g->N) {
        T *dW = p->dW && done ? p->parts : p->dW;
        finite &= SFX(pass_range)(p, done, g->N, cvd_get_num_threads(), p->ws, dW);
        if (p->dW && done)
            SFX(add_into)(p->dW, p->parts, wn);
    }
    return finite;
}

/* Forward (y non-NULL) or backward over g as planned in r; ws holds the whole workspace. */
static int SFX(pass_go)(const cvd_geom *g, const cvd_plan *r, void *ws, void *W, const void *b,
                        const void *x, const void *delta, void *y, void *dx, void *dW)
{
    SFX(pass) p = {.g = g};
    p.W = W, p.b = b, p.x = x, p.delta = delta;
    p.y = y, p.dx = dx, p.dW = dW;
    p.nb = r->nb, p.rows = r->rows[y ? 0 : 1], p.shifted = r->shifted, p.tasks = r->tasks;
    p.direct = r->direct;
    p.dgrad = r->dgrad;
    p.wgrad = r->wgrad;
    p.ws = ws, p.ws_one = r->ws_one;
    /* no workspace at all (one 1x1 image): no pointer arithmetic on NULL */
    p.parts = ws ? (T *)ws + (size_t)r->tasks * r->ws_one : NULL;
    return SFX(pass_run)(&p);
}

#undef GEMM_SPLIT
