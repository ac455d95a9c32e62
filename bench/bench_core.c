/*
 * bench_core.c — times the core's forward and backward (dx + dW + db) on fixed layer
 * shapes in float32 and float64, and prints one line per measurement:
 *   bench shape=<name> dtype=<..> pass=<forward|forward_cached|backward> threads=<n>
 *         ms=<median> gflops=<v>
 * forward keeps nothing (CVD_FWD_NO_CACHE), as PyTorch's forward under no_grad, which
 * bench_torch.py times; forward_cached also copies x into the layer's cache, as a training
 * step and the daemon's /forward do (PyTorch's autograd keeps a reference instead), and
 * backward then reads that cache
 * (median of BENCH_REPS timed runs, default 10, fewer if they pass 5 s but at least 3,
 * after warm-up calls: BENCH_WARMUP_MAX,
 * default 50, or 2 s of them if that comes first, as bench_torch.py warms oneDNN, whose
 * first ~50 calls run slower). Env: BENCH_SHAPES=a,b
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
static int run(const shape *s, cvd_dtype dt, int threads, int reps, int warmup)
{
    cvd_conv2d_params p = {.in_channels = s->C,
                           .out_channels = s->F,
                           .groups = shape_groups(s),
                           .kh = s->k,
                           .kw = s->k,
                           .sh = s->stride,
                           .sw = s->stride,
                           .dh = shape_dil(s),
                           .dw = shape_dil(s),
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
    const double flops = 2.0 * (double)(s->N * s->F * ys[2] * ys[3]) *
                         (double)(s->C / shape_groups(s) * s->k * s->k);
    const cvd_backward_opts o = {.need = CVD_NEED_ALL};
    static const char *const names[3] = {"forward", "forward_cached", "backward"};
    for (int pass = 0; pass < 3; pass++) {
        const double warm_end = now_ms() + 2000;
        double time_end = 0;
        int timed = 0;
        for (int r = -warmup; r < reps; r++) { /* r < 0: warm-up */
            if (r < 0 && now_ms() > warm_end)
                r = -1;
            if (r == 0)
                time_end = now_ms() + 5000;
            else if (r >= 3 && now_ms() > time_end)
                break;
            double t0 = now_ms();
            cvd_status st =
                pass < 2 ? cvd_conv2d_forward(l, &x, &y, pass == 0 ? CVD_FWD_NO_CACHE : 0, &e)
                         : cvd_conv2d_backward(l, NULL, &delta, &o, &dx, &dW, &db, &e);
            double t1 = now_ms();
            if (st != CVD_OK) {
                fprintf(stderr, "bench %s: %s\n", s->name, e.msg);
                goto done;
            }
            if (r >= 0)
                times[timed++] = t1 - t0;
        }
        qsort(times, (size_t)timed, sizeof *times, cmp_double);
        double ms = timed % 2 ? times[timed / 2] : (times[timed / 2 - 1] + times[timed / 2]) / 2;
        double f = pass < 2 ? flops : 2 * flops;
        printf("bench shape=%s dtype=%s pass=%s threads=%d ms=%.4f gflops=%.2f\n", s->name,
               cvd_dtype_name(dt), names[pass], threads, ms, f / (ms * 1e6));
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
    int warmup = env_count("BENCH_WARMUP_MAX", 50);
    cvd_set_num_threads(threads);
    const char *ct = getenv("OPENBLAS_CORETYPE");
    const char *isa = getenv("CONVD_ISA");
    fprintf(stderr,
            "# bench_core: %d thread(s), %d timed runs (median), OPENBLAS_CORETYPE=%s, "
            "CONVD_ISA=%s\n",
            threads, reps, ct ? ct : "(unset)", isa ? isa : "(unset)");
    int failed = 0, ran = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        if (!selected(list, shapes[i].name))
            continue;
        ran++;
        failed |= run(&shapes[i], CVD_F32, threads, reps, warmup);
        failed |= run(&shapes[i], CVD_F64, threads, reps, warmup);
    }
    if (!ran)
        fprintf(stderr, "bench_core: BENCH_SHAPES=%s matches no shape\n", list);
    return failed || !ran;
}
