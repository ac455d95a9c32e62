/*
 * conv2d_impl.h — type template of the layer's passes (included by conv2d.c once per
 * dtype with T, SFX and GEMM = cvd_gemm_f32/cvd_gemm_f64 defined): the finiteness checks,
 * db, the SGD step, and one pass over the batch on the core's threads, dispatching each
 * range of images to a path: the own SIMD kernels (direct.c forward, dgrad.c dx,
 * wgrad.c dW), the im2col + BLAS path (gemm_impl.h) or the shifted GEMM (shift_impl.h),
 * as cvd_plan_pass planned. Generates, per dtype (_f32, _f64): nan_add, nan_none,
 * all_finite, bias_grad, sgd_finite, sgd_apply, forward_direct, pass, pass_range,
 * pass_task, pass_pre, pass_run, pass_go, scan_job, scan_range, scan_part, par_finite, add_part,
 * par_add, bias_range, bias_job, bias_part (and the two paths' names). Inputs are validated
 * by conv2d.c.
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

/* all_finite on slices of a across the core's threads (an 8-image dx or a 256x256x3x3 dW
 * is megabytes: scanned on one thread while the other waits, it cost a few % of a
 * backward on two). */
typedef struct SFX(scan_job) {
    const T *a;
    T *dst;         /* par_add: the sum, added onto in task order */
    const T *parts; /* par_add: nparts arrays of n elements */
    int nparts;
    size_t n;
    int finite[CVD_MAX_PARTS];
} SFX(scan_job);

static void SFX(scan_range)(const SFX(scan_job) * j, int task, int ntasks, size_t *a, size_t *b)
{
    /* whole 64-byte lines per task */
    const size_t q = 64 / sizeof(T), lines = (j->n + q - 1) / q;
    *a = lines * (size_t)task / (size_t)ntasks * q;
    *b = lines * ((size_t)task + 1) / (size_t)ntasks * q;
    *b = *b < j->n ? *b : j->n;
    *a = *a < *b ? *a : *b;
}

static void SFX(scan_part)(void *arg, int task, int ntasks)
{
    SFX(scan_job) *j = arg;
    size_t a, b;
    SFX(scan_range)(j, task, ntasks, &a, &b);
    j->finite[task] = SFX(all_finite)(j->a + a, b - a);
}

static int SFX(par_finite)(const T *a, size_t n)
{
    SFX(scan_job) j = {.a = a, .n = n};
    const int tasks = cvd_parallel_parts(n, cvd_get_num_threads());
    cvd_parallel_run(tasks, tasks, SFX(scan_part), &j);
    int finite = 1;
    for (int t = 0; t < tasks; t++)
        finite &= j.finite[t];
    return finite;
}

/* dst += parts[0], then parts[1] ... on slices across the threads: each element gets the
 * same additions in the same order as on one thread. */
static void SFX(add_part)(void *arg, int task, int ntasks)
{
    SFX(scan_job) *j = arg;
    size_t a, b;
    SFX(scan_range)(j, task, ntasks, &a, &b);
    for (int t = 0; t < j->nparts; t++)
        for (size_t i = a; i < b; i++)
            j->dst[i] += j->parts[(size_t)t * j->n + i];
}

static void SFX(par_add)(T *dst, const T *parts, int nparts, size_t n)
{
    SFX(scan_job) j = {.dst = dst, .parts = parts, .nparts = nparts, .n = n};
    const int tasks = cvd_parallel_parts(n * (size_t)nparts, cvd_get_num_threads());
    cvd_parallel_run(tasks, tasks, SFX(add_part), &j);
}

#include "gemm_impl.h"
#include "shift_impl.h"

/* db[f] = sum over n and pixels of delta[n, f, :] for filters f0 .. f1-1. Sixteen running
 * sums per row so the adds vectorise (one serial sum costs an add latency per element);
 * still all in T. */
static void SFX(bias_range)(const cvd_geom *g, const T *delta, T *db, int64_t f0, int64_t f1)
{
    for (int64_t f = f0; f < f1; f++)
        db[f] = 0;
    for (int64_t n = 0; n < g->N; n++) {
        for (int64_t f = f0; f < f1; f++) {
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

typedef struct SFX(bias_job) {
    const cvd_geom *g;
    const T *delta;
    T *db;
} SFX(bias_job);

static void SFX(bias_part)(void *arg, int task, int ntasks)
{
    const SFX(bias_job) *j = arg;
    const int64_t F = j->g->F;
    SFX(bias_range)(j->g, j->delta, j->db, F * task / ntasks, F * (task + 1) / ntasks);
}

/* db of all filters, split by filters across the threads (each sum stays whole). */
static void SFX(bias_grad)(const cvd_geom *g, const T *delta, T *db)
{
    SFX(bias_job) j = {g, delta, db};
    int tasks = cvd_parallel_parts((size_t)g->y_numel, cvd_get_num_threads());
    tasks = (int64_t)tasks < g->F ? tasks : (int)g->F;
    cvd_parallel_run(tasks, tasks, SFX(bias_part), &j);
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
    int shifted, direct, blocked, dgrad, wgrad, tasks;
    T *ws; /* tasks slices of ws_one elements */
    size_t ws_one;
    T *parts;     /* tasks-1 partial dW of F*K elements */
    T *shared;    /* ws_shared elements for the blocked weights of all tasks, or NULL */
    const T *pre; /* the blocked weights once written there, else NULL */
    int64_t q;
    int finite[CVD_MAX_PARTS];
} SFX(pass);

/* Images lo .. hi-1 of the pass on nt threads with workspace ws, dW into dW; returns
 * whether y, or in backward dx when dgrad made it, is all finite (1 otherwise). */
static int SFX(pass_range)(const SFX(pass) * p, int64_t lo, int64_t hi, int nt, T *ws, T *dW)
{
    const cvd_geom *g = p->g;
    if (p->y && p->blocked)
        return SFX(cvd_blocked_forward)(g, p->W, p->b, p->x, p->y, ws, lo, hi, nt, 0, p->pre);
    if (p->y && p->direct)
        return SFX(forward_direct)(g, p->W, p->b, p->x, p->y, ws, lo, hi, nt);
    if (p->y)
        return p->shifted
                   ? SFX(forward_shift)(g, p->W, p->b, p->x, p->y, ws, lo, hi, nt)
                   : SFX(forward_run)(g, p->W, p->b, p->x, p->y, p->nb, p->rows, ws, lo, hi, nt);
    T *dx = p->dx;
    int finite = 1;
    if (dx && p->dgrad) {
        finite = SFX(cvd_dgrad)(g, p->W, p->delta, dx, ws, lo, hi, nt, p->dgrad == 2, p->pre);
        dx = NULL;
    }
    if (dW && p->wgrad) {
        if (p->wgrad == 2)
            SFX(cvd_blocked_wgrad)(g, p->x, p->delta, dW, ws, lo, hi, nt);
        else
            SFX(cvd_wgrad)(g, p->x, p->delta, dW, ws, lo, hi, nt);
        dW = NULL;
    }
    if (!dx && !dW)
        return finite;
    if (p->shifted)
        SFX(backward_shift)(g, p->W, p->x, p->delta, dx, dW, ws, lo, hi, nt);
    else
        SFX(backward_run)(g, p->W, p->x, p->delta, dx, dW, p->nb, p->rows, ws, lo, hi, nt);
    return finite;
}

static void SFX(pass_task)(void *arg, int t, int ntasks)
{
    SFX(pass) *p = arg;
    const int64_t lo = p->q * t / ntasks, hi = p->q * (t + 1) / ntasks;
    T *dW = p->dW && t ? p->parts + (t - 1) * p->g->F * p->g->K : p->dW;
    T *ws = p->ws ? p->ws + (size_t)t * p->ws_one : NULL;
    p->finite[t] = SFX(pass_range)(p, lo, hi, 1, ws, dW);
}

/* The weights the tasks' kernel reads, written once into p->shared by all the threads
 * (cvd_plan's ws_shared), or NULL when there is no room or the kernel reads W itself: each
 * task making them for itself did that work once a task, and its copy (2.4 MB in float32
 * for 256x256x3x3) passed L2. */
static const T *SFX(pass_pre)(const SFX(pass) * p)
{
    const cvd_geom *g = p->g;
    cvd_geom tg;
    if (!p->shared || (p->y ? !p->blocked : !p->dx || !p->dgrad))
        return NULL;
    if (p->y)
        SFX(cvd_blocked_weights)(g, p->W, p->b, p->shared, 0, p->tasks);
    else if (p->dgrad == 2 && cvd_dgrad_geom(g, &tg))
        SFX(cvd_blocked_weights)(&tg, p->W, NULL, p->shared, 1, p->tasks);
    else
        SFX(cvd_dgrad_flip)(g, p->W, p->shared, p->tasks);
    return p->shared;
}

/* Runs the pass; returns whether everything forward wrote, or dgrad's dx, is finite (as
 * pass_range). */
static int SFX(pass_run)(SFX(pass) * p)
{
    const cvd_geom *g = p->g;
    const int64_t wn = g->F * g->K;
    int finite = 1;
    int64_t done = 0;
    if (p->tasks > 1) {
        p->q = g->N - g->N % p->tasks;
        p->pre = SFX(pass_pre)(p);
        cvd_parallel_run(p->tasks, p->tasks, SFX(pass_task), p);
        for (int t = 0; t < p->tasks; t++)
            finite &= p->finite[t];
        if (p->dW)
            SFX(par_add)(p->dW, p->parts, p->tasks - 1, (size_t)wn);
        done = p->q;
    }
    if (done < g->N) {
        T *dW = p->dW && done ? p->parts : p->dW;
        /* the images left run with the blocked weights as they did, already written */
        finite &= SFX(pass_range)(p, done, g->N, cvd_get_num_threads(), p->ws, dW);
        if (p->dW && done)
            SFX(par_add)(p->dW, p->parts, 1, (size_t)wn);
    }
    return finite;
}

/* Forward (y non-NULL) or backward over g as planned in r; ws holds the whole workspace.
 * Returns as pass_range. */
static int SFX(pass_go)(const cvd_geom *g, const cvd_plan *r, void *ws, void *W, const void *b,
                        const void *x, const void *delta, void *y, void *dx, void *dW)
{
    SFX(pass) p = {.g = g};
    p.W = W, p.b = b, p.x = x, p.delta = delta;
    p.y = y, p.dx = dx, p.dW = dW;
    p.nb = r->nb, p.rows = r->rows[y ? 0 : 1], p.shifted = r->shifted, p.tasks = r->tasks;
    p.direct = r->direct;
    p.blocked = r->blocked;
    p.dgrad = r->dgrad;
    p.wgrad = r->wgrad;
    p.ws = ws, p.ws_one = r->ws_one;
    /* no workspace at all (one 1x1 image): no pointer arithmetic on NULL */
    p.parts = ws ? (T *)ws + (size_t)r->tasks * r->ws_one : NULL;
    p.shared = ws && r->ws_shared ? (T *)ws + (r->ws_elems - r->ws_shared) : NULL;
    return SFX(pass_run)(&p);
}

#undef GEMM_SPLIT
