/*
 * bench_peak.c — the ceilings bench_core's figures should be read against, measured in the
 * same run on the same machine (a shared VM's speed drifts by tens of percent):
 *   bench peak=fma dtype=<..> threads=<n> gflops=<v>
 *     independent vector FMAs on every thread (AVX-512 where the CPU has it and CONVD_ISA
 *     does not ask for less, else AVX2):
 *     what the cores can do at all;
 *   bench peak=gemm shape=<name> dtype=<..> m=<F/g> n=<N*OH*OW> k=<C/g*kh*kw> threads=<n>
 * ms=<median> gflops=<v> the GEMM im2col + GEMM needs for the whole batch (operands already laid
 * out, no im2col), its columns split across the threads, each block one single-threaded OpenBLAS
 * GEMM as the core runs them: what an im2col method can reach through this BLAS; bench
 * peak=gemm_openblas ... the same GEMM as one call on OpenBLAS's own threads (how the core ran
 * before it split work itself); bench peak=gemm_own ... the first again on the core's own GEMM
 * (packgemm.c, at the SIMD level CONVD_ISA leaves). Env: BENCH_SHAPES, BENCH_THREADS, BENCH_REPS as
 * for bench_core. Not part of the core: it calls CBLAS and the core's internal GEMM directly.
 */
#include "../core/cvd_internal.h"
#include "bench_shapes.h"
#include "bench_time.h"

#include <cblas.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__) && defined(__GNUC__)
enum { FMA_ITERS = 100000000 };

typedef struct fma_job {
    int wide; /* 1: zmm (AVX-512), 0: ymm (AVX2) */
    int dbl;
} fma_job;

/* 12 independent accumulators hide the FMA latency; written in asm so the compiler can
 * neither drop nor spill them. */
#define FMA12(op, r)                                                                               \
    op " %%" r "14,%%" r "15,%%" r "0\n\t" op " %%" r "14,%%" r "15,%%" r "1\n\t" op " %%" r       \
       "14,%%" r "15,%%" r "2\n\t" op " %%" r "14,%%" r "15,%%" r "3\n\t" op " %%" r "14,%%" r     \
       "15,%%" r "4\n\t" op " %%" r "14,%%" r "15,%%" r "5\n\t" op " %%" r "14,%%" r "15,%%" r     \
       "6\n\t" op " %%" r "14,%%" r "15,%%" r "7\n\t" op " %%" r "14,%%" r "15,%%" r "8\n\t" op    \
       " %%" r "14,%%" r "15,%%" r "9\n\t" op " %%" r "14,%%" r "15,%%" r "10\n\t" op " %%" r      \
       "14,%%" r "15,%%" r "11\n\t"
#define FMA_LOOP(op, r)                                                                            \
    __asm__ volatile("1:\n\t" FMA12(op, r) "dec %0\n\tjnz 1b\n"                                    \
                     : "+r"(n)                                                                     \
                     :                                                                             \
                     : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",     \
                       "xmm9", "xmm10", "xmm11", "cc")

static void *fma_worker(void *arg)
{
    const fma_job *j = arg;
    long n = FMA_ITERS;
    if (j->wide && !j->dbl)
        FMA_LOOP("vfmadd231ps", "zmm");
    else if (j->wide)
        FMA_LOOP("vfmadd231pd", "zmm");
    else if (!j->dbl)
        FMA_LOOP("vfmadd231ps", "ymm");
    else
        FMA_LOOP("vfmadd231pd", "ymm");
    return NULL;
}

static void fma_peak(int threads)
{
    __builtin_cpu_init();
    /* CONVD_ISA=avx2 (or none) measures the AVX2 peak, the one the core's kernels then
     * have */
    const char *isa = getenv("CONVD_ISA");
    int wide = __builtin_cpu_supports("avx512f") && !(isa && strcmp(isa, "avx512") != 0);
    if (!wide && !__builtin_cpu_supports("fma")) {
        fprintf(stderr, "# bench_peak: no FMA unit: skipping the FMA peak\n");
        return;
    }
    for (int dbl = 0; dbl < 2; dbl++) {
        fma_job j = {.wide = wide, .dbl = dbl};
        pthread_t th[64];
        int started = 0;
        double t0 = now_ms();
        for (int i = 1; i < threads && i < 64; i++)
            if (pthread_create(&th[started], NULL, fma_worker, &j) == 0)
                started++;
        fma_worker(&j);
        for (int i = 0; i < started; i++)
            pthread_join(th[i], NULL);
        double dt = (now_ms() - t0) / 1e3;
        double lanes = (wide ? 64 : 32) / (dbl ? 8.0 : 4.0);
        double flops = (double)(started + 1) * FMA_ITERS * 12 * lanes * 2;
        printf("bench peak=fma dtype=%s threads=%d gflops=%.1f\n", dbl ? "float64" : "float32",
               started + 1, flops / dt / 1e9);
        fflush(stdout);
    }
}
#else
static void fma_peak(int threads)
{
    (void)threads;
    fprintf(stderr, "# bench_peak: the FMA peak is measured on x86-64 only\n");
}
#endif

typedef struct gemm_job {
    int dbl, own, M, N, K, parts;
    const void *a, *b;
    void *c;
} gemm_job;

/* Column block t of C = A·B on one thread (blocks on multiples of 16 columns), on the
 * core's own GEMM (own) or on OpenBLAS. */
static void gemm_block(const gemm_job *j, int t)
{
    int n0 = (int)((int64_t)j->N * t / j->parts) & ~15;
    int n1 = t + 1 == j->parts ? j->N : (int)((int64_t)j->N * (t + 1) / j->parts) & ~15;
    size_t es = j->dbl ? sizeof(double) : sizeof(float);
    const char *b = (const char *)j->b + (size_t)n0 * es;
    char *c = (char *)j->c + (size_t)n0 * es;
    if (j->own && j->dbl)
        cvd_gemm_f64(CblasNoTrans, CblasNoTrans, j->M, n1 - n0, j->K, 1, j->a, j->K,
                     (const double *)(const void *)b, j->N, 0, (double *)(void *)c, j->N);
    else if (j->own)
        cvd_gemm_f32(CblasNoTrans, CblasNoTrans, j->M, n1 - n0, j->K, 1, j->a, j->K,
                     (const float *)(const void *)b, j->N, 0, (float *)(void *)c, j->N);
    else if (j->dbl)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, j->M, n1 - n0, j->K, 1, j->a, j->K,
                    (const double *)(const void *)b, j->N, 0, (double *)(void *)c, j->N);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, j->M, n1 - n0, j->K, 1, j->a, j->K,
                    (const float *)(const void *)b, j->N, 0, (float *)(void *)c, j->N);
}

typedef struct block_arg {
    const gemm_job *j;
    int t;
} block_arg;

static void *block_thread(void *p)
{
    const block_arg *a = p;
    gemm_block(a->j, a->t);
    return NULL;
}

/* One GEMM: split over `parts` threads of single-threaded OpenBLAS, or (parts == 0) one
 * call on OpenBLAS's own threads. */
static void gemm_once(gemm_job *j, int threads)
{
    if (j->parts == 0) {
        openblas_set_num_threads(threads);
        j->parts = 1;
        gemm_block(j, 0);
        j->parts = 0;
        openblas_set_num_threads(1);
        return;
    }
    pthread_t th[64];
    block_arg args[64];
    int started = 0;
    for (int t = 1; t < j->parts && t < 64; t++) {
        args[t] = (block_arg){j, t};
        if (pthread_create(&th[started], NULL, block_thread, &args[t]) != 0) {
            gemm_block(j, t);
            continue;
        }
        started++;
    }
    gemm_block(j, 0);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
}

/* mode 2: the own GEMM split as the core splits it; 1: OpenBLAS split alike; 0: one call
 * on OpenBLAS's threads. */
static int gemm_peak(const shape *s, int dbl, int threads, int reps, int mode)
{
    int64_t OH = shape_out(s), OW = OH;
    /* one group's GEMM (a depthwise layer's is a 1 x P x 9 sliver) */
    int M = (int)(s->F / shape_groups(s)), N = (int)(s->N * OH * OW),
        K = (int)(s->C / shape_groups(s) * s->k * s->k);
    size_t es = dbl ? sizeof(double) : sizeof(float);
    size_t na = (size_t)M * K, nb = (size_t)K * N, nc = (size_t)M * N;
    char *buf = calloc(na + nb + nc, es);
    double *times = malloc((size_t)reps * sizeof *times);
    if (!buf || !times) {
        fprintf(stderr, "bench_peak %s: out of memory\n", s->name);
        free(buf);
        free(times);
        return -1;
    }
    for (size_t i = 0; i < na + nb; i++) { /* values that stay normal numbers */
        double v = (double)(i % 17) / 17 - 0.5;
        if (dbl)
            ((double *)(void *)buf)[i] = v;
        else
            ((float *)(void *)buf)[i] = (float)v;
    }
    /* as in the core, a GEMM too small to pay for a thread start runs on one */
    const int parts = (int64_t)M * N * K < ((int64_t)1 << 21) ? 1 : threads;
    gemm_job j = {dbl,           mode == 2,           M, N, K, mode ? parts : 0, buf,
                  buf + na * es, buf + (na + nb) * es};
    for (int r = -1; r < reps; r++) {
        double t0 = now_ms();
        gemm_once(&j, threads);
        if (r >= 0)
            times[r] = (now_ms() - t0) / 1e3;
    }
    qsort(times, (size_t)reps, sizeof *times, cmp_double);
    double sec = reps % 2 ? times[reps / 2] : (times[reps / 2 - 1] + times[reps / 2]) / 2;
    printf("bench peak=%s shape=%s dtype=%s m=%d n=%d k=%d threads=%d ms=%.4f gflops=%.2f\n",
           mode == 2 ? "gemm_own"
           : mode    ? "gemm"
                     : "gemm_openblas",
           s->name, dbl ? "float64" : "float32", M, N, K, threads, sec * 1e3,
           2.0 * M * N * K / sec / 1e9);
    fflush(stdout);
    free(buf);
    free(times);
    return 0;
}

int main(void)
{
    const char *list = getenv("BENCH_SHAPES");
    int threads = bench_threads(), reps = env_count("BENCH_REPS", 10);
    cvd_set_num_threads(threads); /* the same OpenBLAS set-up as the core's: one thread */
    fma_peak(threads);
    int failed = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        if (!selected(list, shapes[i].name))
            continue;
        for (int dbl = 0; dbl < 2; dbl++)
            for (int mode = 2; mode >= 0; mode--)
                failed |= gemm_peak(&shapes[i], dbl, threads, reps, mode);
    }
    return failed != 0;
}
