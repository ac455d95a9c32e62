/*
 * bench_core.c — times the core's forward and backward (dx + dW + db) on fixed layer
 * shapes in float32 and float64, and prints one line per measurement:
 *   bench shape=<name> dtype=<..> pass=<forward|backward> threads=<n> ms=<median> gflops=<v>
 * (median of BENCH_REPS timed runs, default 10, after one warm-up). Env: BENCH_SHAPES=a,b
 * picks shapes (default all), BENCH_THREADS=n (default: online cores). Notes go to stderr.
 */
#include "../core/cvd.h"
#include "bench_shapes.h"
#include "bench_time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void fill(cvd_tensor *t)
{
    uint64_t s = 0x9e3779b97f4a7c15ull;
    int64_t n = cvd_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        double v = (double)(s >> 11) * 0x1.0p-53 * 2 - 1;
        if (t->dtype == CVD_F32)
            ((float *)t->data)[i] = (float)v;
        else
            ((double *)t->data)[i] = v;
    }
}

/* Runs one shape in one dtype; returns 0 on success. */
static int run(const shape *s, cvd_dtype dt, int threads, int reps)
{
    cvd_conv2d_params p = {.in_channels = s->C,
                           .out_channels = s->F,
                           .groups = 1,
                           .kh = s->k,
                           .kw = s->k,
                           .sh = s->stride,
                           .sw = s->stride,
                           .dh = 1,
                           .dw = 1,
                           .pad_mode = CVD_PAD_EXPLICIT,
                           .ph = s->pad,
                           .pw = s->pad,
                           .bias = 1,
                           .dtype = dt};
    const int64_t xs[4] = {s->N, s->C, s->H, s->W}, bs[1] = {s->F};
    int64_t ys[4];
    cvd_err e;
    cvd_conv2d *l = NULL;
    cvd_tensor x = {0}, y = {0}, delta = {0}, dx = {0}, dW = {0}, db = {0};
    double *times = malloc((size_t)reps * sizeof *times);
    int rc = -1;
    if (!times || cvd_conv2d_output_shape(&p, xs, ys, &e) != CVD_OK ||
        cvd_conv2d_create(&p, &l, &e) != CVD_OK ||
        cvd_conv2d_init(l, CVD_INIT_KAIMING_UNIFORM, 1, &e) != CVD_OK ||
        cvd_tensor_alloc(&x, dt, 4, xs, &e) != CVD_OK ||
        cvd_tensor_alloc(&y, dt, 4, ys, &e) != CVD_OK ||
        cvd_tensor_alloc(&delta, dt, 4, ys, &e) != CVD_OK ||
        cvd_tensor_alloc(&dx, dt, 4, xs, &e) != CVD_OK ||
        cvd_tensor_alloc(&dW, dt, 4, cvd_conv2d_weight(l)->shape, &e) != CVD_OK ||
        cvd_tensor_alloc(&db, dt, 1, bs, &e) != CVD_OK) {
        fprintf(stderr, "bench %s: setup failed: %s\n", s->name, e.msg);
        goto done;
    }
    fill(&x);
    fill(&delta);
    const double flops = 2.0 * (double)(s->N * s->F * ys[2] * ys[3]) * (double)(s->C * s->k * s->k);
    const cvd_backward_opts o = {.need = CVD_NEED_ALL};
    for (int pass = 0; pass < 2; pass++) {
        for (int r = -1; r < reps; r++) { /* r == -1 is the warm-up */
            double t0 = now_ms();
            cvd_status st = pass == 0 ? cvd_conv2d_forward(l, &x, &y, 0, &e)
                                      : cvd_conv2d_backward(l, NULL, &delta, &o, &dx, &dW, &db, &e);
            double t1 = now_ms();
            if (st != CVD_OK) {
                fprintf(stderr, "bench %s: %s\n", s->name, e.msg);
                goto done;
            }
            if (r >= 0)
                times[r] = t1 - t0;
        }
        qsort(times, (size_t)reps, sizeof *times, cmp_double);
        double ms = reps % 2 ? times[reps / 2] : (times[reps / 2 - 1] + times[reps / 2]) / 2;
        double f = pass == 0 ? flops : 2 * flops;
        printf("bench shape=%s dtype=%s pass=%s threads=%d ms=%.4f gflops=%.2f\n", s->name,
               cvd_dtype_name(dt), pass == 0 ? "forward" : "backward", threads, ms, f / (ms * 1e6));
        fflush(stdout);
    }
    rc = 0;
done:
    cvd_tensor_release(&x), cvd_tensor_release(&y), cvd_tensor_release(&delta);
    cvd_tensor_release(&dx), cvd_tensor_release(&dW), cvd_tensor_release(&db);
    cvd_conv2d_free(l);
    free(times);
    return rc;
}

int main(void)
{
    const char *list = getenv("BENCH_SHAPES");
    int threads = bench_threads(), reps = env_count("BENCH_REPS", 10);
    cvd_set_num_threads(threads);
    const char *ct = getenv("OPENBLAS_CORETYPE");
    fprintf(stderr, "# bench_core: %d thread(s), %d timed runs (median), OPENBLAS_CORETYPE=%s\n",
            threads, reps, ct ? ct : "(unset)");
    int failed = 0, ran = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        if (!selected(list, shapes[i].name))
            continue;
        ran++;
        failed |= run(&shapes[i], CVD_F32, threads, reps);
        failed |= run(&shapes[i], CVD_F64, threads, reps);
    }
    if (!ran)
        fprintf(stderr, "bench_core: BENCH_SHAPES=%s matches no shape\n", list);
    return failed || !ran;
}
