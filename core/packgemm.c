/*
 * packgemm.c — the core's own GEMM: C = alpha·op(A)·op(B) + beta·C, row-major, with the
 * arguments of cblas_?gemm, on one thread. Every GEMM of the im2col, 1x1 and shifted paths
 * goes through cvd_gemm_f32/_f64 (gemm_impl.h); they run the packed micro-kernels below at
 * the SIMD level cvd_cpu_isa picked (AVX-512F or AVX2+FMA, one template, packgemm_impl.h)
 * and OpenBLAS's cblas_?gemm without one (CONVD_ISA=none, other CPUs), so no pass is held
 * to how the BLAS build sees the CPU (OPENBLAS_CORETYPE).
 *
 * Method (the BLIS loop nest): for each block of nc columns and kc steps, op(B) is packed
 * into panels of NR = PG_NV vectors of columns (kc×NR contiguous); op(A) is read in place,
 * a tile's MR rows as MR streams (or one, transposed), except a transposed A whose steps
 * are far apart, packed per block of mc rows into panels of MR rows (kc×MR contiguous);
 * K is cut into near-equal blocks of at most kc steps. A register tile of MR×NR
 * accumulators then takes kc steps of NR/VL vector loads, MR broadcasts and MR·NR/VL fused
 * multiply-adds. A panel of B stays in L1 while the panels of A stream past it from L2.
 * Blocks come from the cache sizes (cvd_cpu_l1d, cvd_cpu_l2), not from constants tuned to
 * one CPU: a B panel fills at most 2/3 of L1, the A block and the B block each half of L2.
 * Each C element is one chain of FMAs over a block of steps, added to C block by block in
 * step order: results depend on the blocking (the L1 size) and the ISA, never on threads.
 *
 * Memory: the packed blocks live in one buffer per thread (pthread key, freed when the
 * thread exits), grown to the largest block asked for: at most about the L2 size per
 * thread. If that allocation fails the call runs on cblas instead: no GEMM fails.
 */
#include "cvd_internal.h"

#include <pthread.h>
#include <stdlib.h>

/* Tile shapes: MR rows by NV vectors. 8x3 on 32 zmm (24 accumulators, 3 loads and 8
 * broadcasts a step) and 4x3 on 16 ymm; 8 and 4 divide the channel counts of most layers,
 * so M rarely leaves a partial tile. */
#define PG_NV        3
#define PG_MR_WIDE   8
#define PG_MR_NARROW 4

/* The longest step, in bytes, of a load stream an L1 stride prefetcher is known to follow
 * (Intel's IP-based one: 2 KB); a transposed A with longer steps is packed (pg_run). */
#define PG_STRIDE_MAX 2048

typedef struct pg_blocks {
    int64_t kc, mc, nc; /* steps, rows and columns per block */
} pg_blocks;

/* cvd_gemm_bias on cblas: the bias rows first, a GEMM adding onto them (beta = 1), then
 * a scan for values that are not finite (v*0 is NaN exactly for those). */
static int gemm_bias_blas_f32(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                              const float *bias, float *C, int ldc)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++)
            C[i * ldc + j] = bias ? bias[i] : 0;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1, A, lda, B, ldb, 1, C, ldc);
    float s = 0;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++)
            s += C[i * ldc + j] * 0;
    return s == s;
}

static int gemm_bias_blas_f64(int M, int N, int K, const double *A, int lda, const double *B,
                              int ldb, const double *bias, double *C, int ldc)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++)
            C[i * ldc + j] = bias ? bias[i] : 0;
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1, A, lda, B, ldb, 1, C, ldc);
    double s = 0;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++)
            s += C[i * ldc + j] * 0;
    return s == s;
}

#if defined(__x86_64__) && defined(__GNUC__)

/* The blocks for tiles of mr rows by nr columns of es-byte elements. */
static pg_blocks pg_blocks_for(int64_t mr, int64_t nr, int64_t es)
{
    const int64_t l1 = (int64_t)cvd_cpu_l1d(), l2 = (int64_t)cvd_cpu_l2();
    pg_blocks b;
    b.kc = l1 * 2 / 3 / (nr * es) / 8 * 8;
    b.kc = b.kc < 32 ? 32 : b.kc > 1024 ? 1024 : b.kc;
    b.mc = l2 / 2 / (b.kc * es) / mr * mr;
    b.mc = b.mc < mr ? mr : b.mc;
    b.nc = l2 / 2 / (b.kc * es) / nr * nr;
    b.nc = b.nc < nr ? nr : b.nc;
    return b;
}

static pthread_key_t pg_key;
static pthread_once_t pg_once = PTHREAD_ONCE_INIT;
static int pg_key_ok;

typedef struct pg_buf {
    size_t bytes;
    void *p;
} pg_buf;

static void pg_buf_free(void *arg)
{
    pg_buf *b = arg;
    free(b->p);
    free(b);
}

static void pg_key_init(void)
{
    pg_key_ok = pthread_key_create(&pg_key, pg_buf_free) == 0;
}

/* This thread's buffer of at least bytes (64-byte aligned), or NULL. */
static void *pg_buffer(size_t bytes)
{
    pthread_once(&pg_once, pg_key_init);
    if (!pg_key_ok)
        return NULL;
    pg_buf *b = pthread_getspecific(pg_key);
    if (b && b->bytes >= bytes)
        return b->p;
    if (!b) {
        b = calloc(1, sizeof *b);
        if (!b)
            return NULL;
        if (pthread_setspecific(pg_key, b)) {
            free(b);
            return NULL;
        }
    }
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes))
        return NULL;
    free(b->p);
    b->p = p;
    b->bytes = bytes;
    return p;
}

/* Elements of the buffer pg_run needs for blocks bk: one packed block of B, then one of A
 * (mc rounded up to whole panels). */
static size_t pg_buffer_elems(const pg_blocks *bk, int64_t mr)
{
    return (size_t)(bk->kc * bk->nc + bk->kc * ((bk->mc + mr - 1) / mr * mr));
}

#define SIMD_SEL 1
#include "simd.h"
#include "packgemm_impl.h"
#define SIMD_SEL 2
#include "simd.h"
#include "packgemm_impl.h"
#define SIMD_SEL 3
#include "simd.h"
#include "packgemm_impl.h"
#define SIMD_SEL 4
#include "simd.h"
#include "packgemm_impl.h"

/* The blocks and this thread's buffer for a GEMM of es-byte elements at the SIMD level in
 * use; returns the buffer, or NULL when the own kernels do not run it (no SIMD level, an
 * empty product, or no memory): cblas does. */
static void *pg_prepare(int M, int N, int K, size_t es, int *wide, pg_blocks *bk)
{
    const cvd_isa isa = cvd_cpu_isa();
    if (isa == CVD_ISA_NONE || M <= 0 || N <= 0 || K <= 0)
        return NULL;
    *wide = isa == CVD_ISA_AVX512;
    const int64_t vl = (*wide ? 64 : 32) / (int64_t)es;
    const int64_t mr = *wide ? PG_MR_WIDE : PG_MR_NARROW;
    *bk = pg_blocks_for(mr, PG_NV * vl, (int64_t)es);
    return pg_buffer(pg_buffer_elems(bk, mr) * es);
}

void cvd_gemm_f32(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha,
                  const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    int wide = 0;
    pg_blocks bk;
    float *buf = pg_prepare(M, N, K, sizeof(float), &wide, &bk);
    if (!buf)
        cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    else if (wide)
        pg_run_avx512_f32(&bk, ta == CblasTrans, tb == CblasTrans, M, N, K, alpha, A, lda, B, ldb,
                          beta, C, ldc, buf, NULL, 0);
    else
        pg_run_avx2_f32(&bk, ta == CblasTrans, tb == CblasTrans, M, N, K, alpha, A, lda, B, ldb,
                        beta, C, ldc, buf, NULL, 0);
}

int cvd_gemm_bias_f32(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                      const float *bias, float *C, int ldc)
{
    int wide = 0;
    pg_blocks bk;
    float *buf = pg_prepare(M, N, K, sizeof(float), &wide, &bk);
    if (!buf)
        return gemm_bias_blas_f32(M, N, K, A, lda, B, ldb, bias, C, ldc);
    if (wide)
        return pg_run_avx512_f32(&bk, 0, 0, M, N, K, 1, A, lda, B, ldb, 0, C, ldc, buf, bias, 1);
    return pg_run_avx2_f32(&bk, 0, 0, M, N, K, 1, A, lda, B, ldb, 0, C, ldc, buf, bias, 1);
}

void cvd_gemm_f64(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, double alpha,
                  const double *A, int lda, const double *B, int ldb, double beta, double *C,
                  int ldc)
{
    int wide = 0;
    pg_blocks bk;
    double *buf = pg_prepare(M, N, K, sizeof(double), &wide, &bk);
    if (!buf)
        cblas_dgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    else if (wide)
        pg_run_avx512_f64(&bk, ta == CblasTrans, tb == CblasTrans, M, N, K, alpha, A, lda, B, ldb,
                          beta, C, ldc, buf, NULL, 0);
    else
        pg_run_avx2_f64(&bk, ta == CblasTrans, tb == CblasTrans, M, N, K, alpha, A, lda, B, ldb,
                        beta, C, ldc, buf, NULL, 0);
}

int cvd_gemm_bias_f64(int M, int N, int K, const double *A, int lda, const double *B, int ldb,
                      const double *bias, double *C, int ldc)
{
    int wide = 0;
    pg_blocks bk;
    double *buf = pg_prepare(M, N, K, sizeof(double), &wide, &bk);
    if (!buf)
        return gemm_bias_blas_f64(M, N, K, A, lda, B, ldb, bias, C, ldc);
    if (wide)
        return pg_run_avx512_f64(&bk, 0, 0, M, N, K, 1, A, lda, B, ldb, 0, C, ldc, buf, bias, 1);
    return pg_run_avx2_f64(&bk, 0, 0, M, N, K, 1, A, lda, B, ldb, 0, C, ldc, buf, bias, 1);
}

#else

void cvd_gemm_f32(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha,
                  const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void cvd_gemm_f64(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, double alpha,
                  const double *A, int lda, const double *B, int ldb, double beta, double *C,
                  int ldc)
{
    cblas_dgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

int cvd_gemm_bias_f32(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                      const float *bias, float *C, int ldc)
{
    return gemm_bias_blas_f32(M, N, K, A, lda, B, ldb, bias, C, ldc);
}

int cvd_gemm_bias_f64(int M, int N, int K, const double *A, int lda, const double *B, int ldb,
                      const double *bias, double *C, int ldc)
{
    return gemm_bias_blas_f64(M, N, K, A, lda, B, ldb, bias, C, ldc);
}

#endif
