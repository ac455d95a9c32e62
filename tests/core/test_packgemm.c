/*
 * test_packgemm.c — the own GEMM (core/packgemm.c) against a plain triple loop in long
 * double, at each SIMD level the CPU has (cvd_cpu_force_isa, down to none: cblas): every
 * transpose pair, sizes that leave partial register tiles in rows and columns, sizes that
 * cross the step, row and column blocks, leading dimensions above the minimum, alpha and
 * beta (beta 0 must not read C: it starts as NaN there), and C outside the written block
 * left untouched. Also a GEMM on several threads at once (each has its own buffer), and
 * cvd_gemm_bias (the layer's fused epilogue: bias rows, C never read, the finiteness
 * answer, the streamed stores of a large aligned C) at each level.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/cvd_internal.h"

static double uniform(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) * 0x1.0p-53 * 2 - 1;
}

typedef struct gemm_case {
    int ta, tb, M, N, K;
    double alpha, beta;
    int bias;    /* cvd_gemm_bias: 1 with bias rows, 2 with NULL (ta, tb, alpha, beta unused) */
    int aligned; /* C 64-byte aligned with rows of whole 64-byte lines (streamed if large) */
} gemm_case;

/* The finiteness answer of the last cvd_gemm_bias that run_case made. */
static int last_finite;

/* Runs one case in dtype f32 (1) or f64 (0); returns the worst error relative to the sum
 * of |terms| per element, or INFINITY when C outside the block changed. */
static double run_case(const gemm_case *c, int f32, uint64_t seed)
{
    uint64_t rs = seed;
    const int pad = 3; /* leading dimensions above the minimum */
    const int ar = c->ta ? c->K : c->M, ac = c->ta ? c->M : c->K;
    const int br = c->tb ? c->N : c->K, bc = c->tb ? c->K : c->N;
    const int lda = ac + pad, ldb = bc + pad, ldc = c->aligned ? (c->N + 15) / 16 * 16 : c->N + pad;
    const size_t na = (size_t)ar * lda, nb = (size_t)br * ldb, nc = (size_t)c->M * ldc;
    double *A = malloc(na * sizeof *A), *B = malloc(nb * sizeof *B), *C = malloc(nc * sizeof *C);
    assert_non_null(A);
    assert_non_null(B);
    assert_non_null(C);
    for (size_t i = 0; i < na; i++)
        A[i] = uniform(&rs);
    for (size_t i = 0; i < nb; i++)
        B[i] = uniform(&rs);
    for (size_t i = 0; i < nc; i++)
        C[i] = (int)(i % (size_t)ldc) >= c->N ? 7.0 : c->beta == 0 || c->bias ? NAN : uniform(&rs);
    double bias[4096];
    assert_true(c->M <= 4096);
    for (int i = 0; i < c->M; i++)
        bias[i] = f32 ? (float)uniform(&rs) : uniform(&rs);
    if (f32) { /* the float32 run sees the same values, rounded */
        for (size_t i = 0; i < na; i++)
            A[i] = (float)A[i];
        for (size_t i = 0; i < nb; i++)
            B[i] = (float)B[i];
        for (size_t i = 0; i < nc; i++)
            C[i] = (float)C[i];
    }
    double *out = NULL;
    assert_int_equal(posix_memalign((void **)&out, 64, nc * sizeof *out), 0);
    const CBLAS_TRANSPOSE ta = c->ta ? CblasTrans : CblasNoTrans;
    const CBLAS_TRANSPOSE tb = c->tb ? CblasTrans : CblasNoTrans;
    if (f32) {
        float *a = malloc(na * sizeof *a), *b = malloc(nb * sizeof *b), *cc = NULL, fb[4096];
        assert_non_null(a);
        assert_non_null(b);
        assert_int_equal(posix_memalign((void **)&cc, 64, nc * sizeof *cc), 0);
        for (int i = 0; i < c->M; i++)
            fb[i] = (float)bias[i];
        for (size_t i = 0; i < na; i++)
            a[i] = (float)A[i];
        for (size_t i = 0; i < nb; i++)
            b[i] = (float)B[i];
        for (size_t i = 0; i < nc; i++)
            cc[i] = (float)C[i];
        if (c->bias)
            last_finite = cvd_gemm_bias_f32(c->M, c->N, c->K, a, lda, b, ldb,
                                            c->bias == 1 ? fb : NULL, cc, ldc);
        else
            cvd_gemm_f32(ta, tb, c->M, c->N, c->K, (float)c->alpha, a, lda, b, ldb, (float)c->beta,
                         cc, ldc);
        for (size_t i = 0; i < nc; i++)
            out[i] = cc[i];
        free(a), free(b), free(cc);
    } else {
        memcpy(out, C, nc * sizeof *out);
        if (c->bias)
            last_finite = cvd_gemm_bias_f64(c->M, c->N, c->K, A, lda, B, ldb,
                                            c->bias == 1 ? bias : NULL, out, ldc);
        else
            cvd_gemm_f64(ta, tb, c->M, c->N, c->K, c->alpha, A, lda, B, ldb, c->beta, out, ldc);
    }
    double worst = 0;
    for (int i = 0; i < c->M; i++) {
        for (int j = 0; j < ldc; j++) {
            const size_t at = (size_t)i * ldc + j;
            if (j >= c->N) {
                if (out[at] != 7.0)
                    worst = INFINITY;
                continue;
            }
            long double s = 0, mag = 0;
            for (int k = 0; k < c->K; k++) {
                const long double a = c->ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                const long double b = c->tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                s += a * b;
                mag += fabsl(a * b);
            }
            long double want = c->alpha * s, scale = fabsl(c->alpha) * mag;
            if (c->bias) {
                want = s + (c->bias == 1 ? bias[i] : 0);
                scale = mag + (c->bias == 1 ? fabsl((long double)bias[i]) : 0);
            } else if (c->beta != 0) {
                want += c->beta * C[at];
                scale += fabsl(c->beta * C[at]);
            }
            const double err = (double)(fabsl(out[at] - want) / (scale + 1e-300L));
            if (!(err <= worst)) /* NaN included */
                worst = isnan(err) ? INFINITY : err;
        }
    }
    free(A), free(B), free(C), free(out);
    return worst;
}

static const gemm_case cases[] = {
    /* one tile, partial tiles in each direction, the 1x1 layers' shapes */
    {0, 0, 8, 48, 16, 1, 0},
    {0, 0, 1, 1, 1, 1, 0},
    {0, 0, 7, 47, 5, 1, 0},
    {0, 0, 9, 49, 33, 1, 1},
    {1, 0, 13, 100, 31, 1, 0},
    {0, 1, 17, 23, 70, 1, 1},
    {1, 1, 5, 130, 9, 0.5, -2},
    {0, 0, 64, 196, 128, 1, 0},
    {1, 0, 128, 196, 64, 1, 0},
    {0, 1, 64, 128, 196, 1, 1},
    {0, 0, 3, 5, 1000, 2, 0},
    {1, 1, 33, 65, 257, -1, 0.25},
    /* past the step block (kc <= 1024), and wide enough to cross the column block */
    {0, 0, 20, 70, 1500, 1, 1},
    {0, 1, 12, 40, 2100, 1, 0},
    {0, 0, 16, 3000, 300, 1, 0.5},
    {1, 0, 300, 2200, 200, 1, 0},
    {0, 0, 1100, 24, 100, 1, 0},
    /* a transposed A with steps over PG_STRIDE_MAX bytes apart: packed, a partial last
     * panel of rows, with B plain and transposed, and C kept (beta) */
    {1, 0, 700, 100, 50, 1, 1},
    {1, 1, 613, 75, 45, 0.5, -1},
    {1, 0, 2304, 196, 256, 1, 0},
    /* cvd_gemm_bias: partial tiles, one tile, steps past the block (the bias with the
     * first, the check with the last), no bias, and C aligned: small (cached stores) and
     * larger than half of any L2 up to 2.4 MB in float32 (streamed) */
    {0, 0, 7, 47, 5, 1, 0, 1, 0},
    {0, 0, 8, 48, 16, 1, 0, 1, 0},
    {0, 0, 33, 100, 1500, 1, 0, 1, 0},
    {0, 0, 9, 49, 33, 1, 0, 2, 0},
    {0, 0, 64, 196, 128, 1, 0, 1, 1},
    {0, 0, 300, 1024, 64, 1, 0, 1, 1},
    {0, 0, 301, 1000, 40, 1, 0, 2, 1},
};

static void check_all(int f32)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const double err = run_case(&cases[i], f32, 0x243f6a8885a308d3ull + i);
        /* a K-term dot product rounds by at most ~K ulps relative to the sum of |terms| */
        const double tol = (f32 ? 0x1p-24 : 0x1p-53) * (cases[i].K + 4) * 2;
        if (!(err <= tol))
            fail_msg("case %zu (%s, ta %d tb %d M %d N %d K %d): error %g > %g", i,
                     f32 ? "f32" : "f64", cases[i].ta, cases[i].tb, cases[i].M, cases[i].N,
                     cases[i].K, err, tol);
        if (cases[i].bias && !last_finite)
            fail_msg("case %zu (%s): cvd_gemm_bias called a finite C not finite", i,
                     f32 ? "f32" : "f64");
    }
}

/* cvd_gemm_bias answers 0 when one value of C is not finite: a single element that
 * overflows (inside a whole register tile, or in the last, partial one), a NaN bias (one
 * row), or all of C overflowing (float32); and 1 when the infinities lie only in the
 * unread padding of A and B. */
static void check_bias_finite(int f32)
{
    enum { M = 19, N = 53, K = 40, LD = 64 };
    static double A[M * LD], B[K * LD], C[M * LD], bias[M];
    static float a[M * LD], b[K * LD], c[M * LD], fb[M];
    for (int t = 0; t < 6; t++) {
        for (int i = 0; i < M * LD; i++)
            A[i] = (i % LD) < K ? 0.5 : INFINITY;
        for (int i = 0; i < K * LD; i++)
            B[i] = (i % LD) < N ? 0.25 : INFINITY;
        for (int i = 0; i < M; i++)
            bias[i] = 1;
        const int col = t & 1 ? N - 1 : 17, row = t & 1 ? M - 1 : 3;
        if (t / 2 == 1) { /* C[row][col] alone overflows */
            const double big = f32 ? 3e38 : 1e300;
            A[row * LD + 5] = big, B[5 * LD + col] = big;
            for (int j = 0; j < N; j++)
                B[5 * LD + j] = j == col ? big : 0;
            for (int i = 0; i < M; i++)
                A[i * LD + 5] = i == row ? big : 0;
        }
        if (t / 2 == 2)
            bias[row] = f32 ? (double)NAN : 1e308 * 10;
        for (int i = 0; i < M * LD; i++)
            a[i] = (float)A[i], c[i] = 0;
        for (int i = 0; i < K * LD; i++)
            b[i] = (float)B[i];
        for (int i = 0; i < M; i++)
            fb[i] = (float)bias[i], C[i] = 0;
        const int got = f32 ? cvd_gemm_bias_f32(M, N, K, a, LD, b, LD, fb, c, LD)
                            : cvd_gemm_bias_f64(M, N, K, A, LD, B, LD, bias, C, LD);
        if (got != (t / 2 == 0))
            fail_msg("%s case %d: cvd_gemm_bias answered %d", f32 ? "f32" : "f64", t, got);
    }
    /* float32 overflow from finite operands */
    for (int i = 0; i < M * LD; i++)
        a[i] = 3e19f;
    for (int i = 0; i < K * LD; i++)
        b[i] = 3e19f;
    assert_int_equal(cvd_gemm_bias_f32(M, N, K, a, LD, b, LD, NULL, c, LD), 0);
}

static void test_gemm_each_isa(void **state)
{
    (void)state;
    const cvd_isa top = cvd_cpu_isa_max();
    for (int isa = (int)top; isa >= (int)CVD_ISA_NONE; isa--) {
        assert_int_equal(cvd_cpu_force_isa((cvd_isa)isa), isa);
        check_all(1);
        check_all(0);
        check_bias_finite(1);
        check_bias_finite(0);
    }
    cvd_cpu_force_isa(top);
}

typedef struct thread_arg {
    uint64_t seed;
    double err;
} thread_arg;

static void *thread_main(void *p)
{
    thread_arg *a = p;
    const gemm_case c = {0, 1, 40, 300, 600, 1, 0};
    a->err = 0;
    for (int r = 0; r < 3; r++) {
        const double e = run_case(&c, r & 1, a->seed + (uint64_t)r);
        a->err = e > a->err ? e : a->err;
    }
    return NULL;
}

/* Threads each pack into their own buffer (a shared one would mix their blocks). */
static void test_gemm_threads(void **state)
{
    (void)state;
    pthread_t th[4];
    thread_arg args[4];
    const gemm_case c = {0, 1, 40, 300, 600, 1, 0};
    assert_true(run_case(&c, 0, 1) < 1e-12);
    for (int i = 0; i < 4; i++) {
        args[i].seed = 100 + (uint64_t)i * 10;
        assert_int_equal(pthread_create(&th[i], NULL, thread_main, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_true(args[i].err < 1e-5);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_each_isa),
        cmocka_unit_test(test_gemm_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
