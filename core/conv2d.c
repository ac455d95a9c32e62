/*
 * conv2d.c — the layer object: create/free, init, set_weights, forward (with the input
 * cache), backward (with the optional SGD step) and memory accounting (the threads are
 * parallel.c's). Validation happens here and in geom.c; the passes in conv2d_impl.h (one body for
 * float32 and float64) assume valid input. Every failure leaves the layer as it was.
 *
 * Peak memory of a layer (cvd_conv2d_memory_need), es = bytes per element:
 *   sizeof(struct cvd_conv2d)
 *   + 2 * (F*(C/g)*kh*kw + (bias ? F : 0)) * es     W, b, and the same for SGD scratch
 *   + N*C*H*W * es                                  the cached forward input
 *   + ws * es                                       the workspace, where, with
 *     T = the thread count (cvd_set_num_threads) when N >= T > 1 and N*F*P*K >= 2^21,
 *     else 1 (cvd_plan_pass), and ws1 the larger of the plan below for N' = floor(N/T)
 *     images and, when the own SIMD kernels run (CONVD_ISA above none; forward's direct
 *     kernel and wgrad when rows of output vectors are at least 3/4 full, forward not on
 *     a 1x1 layer, wgrad from 64 vector steps an image), their
 *       K*8/es + (C/g)*sw*Hp*Wq,  Wq = OW rounded up to 64/es + (kw-1)*dw/sw
 *     (tap offsets and one padded image split by column phase; a 1x1 layer's image is one
 *     row of H*W pixels), and for dgrad (stride 1, pads within the dilated kernel) the
 *     same on the transposed layer (delta in, dx out) plus (F/g)*K rounded up to 16,
 *     or where the blocked kernels run instead (blocked.c, blocked_wgrad.c) their copies:
 *     K*8/es + F'*K + F' + C'*Hp*Wp + F'*P forward (C' = C/g and F' = F/g rounded up
 *     to whole 64-byte vectors) and K*8/es + F'*K + F'*P + (C/g)*Hp*Wp for dW,
 *     rounded up to a multiple of 16:
 *       ws = T*ws1 + (T-1)*F*K                      a slice per thread, a dW per extra one
 *     and the plan for N' images:
 *     on the shifted-GEMM path (stride 1, C/g >= 32, Wp*8 <= OW*9; cvd_geom_path):
 *       ws1 = kw*(C/g)*(Hp*Wp + (kw-1)*dw) + (F/g)*OH*Wp + 2*(F/g)*K
 *       (kw shifted copies of the padded x of one image and group for dW, the first also
 *       dx's padded image; y or delta with rows of Wp; W_g and dW_g by tap), with
 *       Hp = H + pad_top + pad_bottom, Wp = W + pad_left + pad_right;
 *     otherwise (im2col) the chunk workspace:
 *       ws1 = (K + F/g) * nb*P   when nb > 1        col [K, nb*P] + staging [F/g, nb*P]
 *       ws1 = K*rows*OW          when nb == 1       (0 on the 1x1 path: x is its own col)
 *     with K = (C/g)*kh*kw, P = OH*OW, per = (K + F/g)*P*es, and images per chunk
 *       nb = 1 for a 1x1 layer (stride 1, no pad) with P >= 512, or another with P >= 128,
 *       else nb = clamp(max(floor(8 MiB / per), ceil(2048 / P)), 1,
 *                       min(N', max(1, floor(32 MiB / per)), INT_MAX / P)),
 *     and, for one image, bands of output rows whose col fits B = 4 MiB (at least 768
 *     columns; backward with T > 1 runs 1 MiB bands inside that workspace):
 *       rows = clamp(max(floor(B / (K*OW*es)), ceil(768 / OW)), 1, OH).
 * So a thread's im2col workspace is at most max(32 MiB, K*768*es + K*OW*es); none of it
 * grows with N. 8 MiB keeps col in the last-level cache between im2col and the GEMM that
 * reads it; the 2048-column floor keeps the GEMMs of small images wide. The workspace is
 * kept across calls and only grows; replacing a cache of a different size briefly holds
 * both the old and the new copy.
 */
#include "cvd_internal.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* gcc 12 at -O2 vectorises only loops whose trip count needs no epilogue; the row loops
 * here (bias, finiteness, col2im accumulation) need the full vectoriser. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif

struct cvd_conv2d {
    cvd_conv2d_params p;
    size_t es;         /* bytes per element */
    int64_t wn;        /* F*(C/g)*kh*kw */
    void *W, *b;       /* [F, C/g, kh, kw], [F] (NULL without bias) */
    cvd_tensor Wt, bt; /* borrowed views of W and b */
    void *gW, *gb;     /* SGD scratch for gradients the caller did not ask for (lazy) */
    void *cache;       /* copy of the last forward input, cache_numel elements */
    int64_t cache_numel;
    int64_t cache_shape[4];
    int has_cache;
    void *ws; /* chunk workspace, ws_elems elements, grow-only */
    size_t ws_elems;
    size_t chunk_bytes; /* 0: default chunk policy; else a test's hard budget */
    cvd_path path;      /* CVD_PATH_AUTO but in tests */
};

#define T         float
#define SFX(n)    n##_f32
#define GEMM      cvd_gemm_f32
#define GEMM_BIAS cvd_gemm_bias_f32
#include "conv2d_impl.h"
#undef T
#undef SFX
#undef GEMM
#undef GEMM_BIAS

#define T         double
#define SFX(n)    n##_f64
#define GEMM      cvd_gemm_f64
#define GEMM_BIAS cvd_gemm_bias_f64
#include "conv2d_impl.h"
#undef T
#undef SFX
#undef GEMM
#undef GEMM_BIAS

static void shape_str(char *buf, size_t len, int rank, const int64_t *shape)
{
    size_t off = 0;
    off += (size_t)snprintf(buf + off, len - off, "(");
    for (int i = 0; i < rank && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (off < len)
        snprintf(buf + off, len - off, ")");
}

cvd_status cvd_conv2d_memory_need(const cvd_conv2d_params *p, const int64_t x_shape[4],
                                  size_t *bytes, cvd_err *err)
{
    cvd_geom g = {0};
    cvd_status s = cvd_conv2d_params_check(p, err);
    if (s == CVD_OK)
        s = cvd_geom_init(&g, p, x_shape, "x", err);
    if (s != CVD_OK)
        return s;
    size_t es = cvd_dtype_size(p->dtype), params, total, tmp;
    cvd_plan r;
    s = cvd_plan_pass(&g, es, 0, CVD_PATH_AUTO, cvd_get_num_threads(), &r, err);
    if (s != CVD_OK)
        return s;
    /* wn fits: params_check verified F*K*8 fits size_t; x_numel likewise in geom_init. */
    params = (size_t)(g.F * g.K) + (p->bias ? (size_t)g.F : 0);
    if (cvd_mul_size(params, 2 * es, &total) || cvd_mul_size((size_t)g.x_numel, es, &tmp) ||
        cvd_add_size(total, tmp, &total) || cvd_mul_size(r.ws_elems, es, &tmp) ||
        cvd_add_size(total, tmp, &total) || cvd_add_size(total, sizeof(struct cvd_conv2d), &total))
        return cvd_err_setf(err, CVD_ERR_TOO_LARGE,
                            "the memory a layer needs for x of shape (%lld,%lld,%lld,%lld) "
                            "overflows",
                            (long long)g.N, (long long)g.C, (long long)g.H, (long long)g.W);
    *bytes = total;
    return CVD_OK;
}

cvd_status cvd_conv2d_create(const cvd_conv2d_params *p, cvd_conv2d **out, cvd_err *err)
{
    cvd_status s = cvd_conv2d_params_check(p, err);
    if (s != CVD_OK)
        return s;
    if (!out)
        return cvd_err_setf(err, CVD_ERR_INVALID, "out is NULL");
    /* Fits: params_check verified F*K*8 fits size_t. */
    const int64_t wn = p->out_channels * (p->in_channels / p->groups) * p->kh * p->kw;
    cvd_conv2d *l = calloc(1, sizeof *l);
    if (!l)
        goto nomem;
    l->p = *p;
    l->p.bias = p->bias ? 1 : 0;
    l->es = cvd_dtype_size(p->dtype);
    l->wn = wn;
    l->W = calloc((size_t)l->wn, l->es);
    if (!l->W)
        goto nomem;
    if (l->p.bias) {
        l->b = calloc((size_t)p->out_channels, l->es);
        if (!l->b)
            goto nomem;
    }
    l->Wt = (cvd_tensor){.dtype = p->dtype,
                         .rank = 4,
                         .shape = {p->out_channels, p->in_channels / p->groups, p->kh, p->kw},
                         .data = l->W};
    l->bt = (cvd_tensor){.dtype = p->dtype, .rank = 1, .shape = {p->out_channels}, .data = l->b};
    *out = l;
    return CVD_OK;
nomem:
    cvd_conv2d_free(l);
    return cvd_err_setf(err, CVD_ERR_NOMEM, "cannot allocate a layer with %lld weights",
                        (long long)wn);
}

void cvd_conv2d_free(cvd_conv2d *l)
{
    if (!l)
        return;
    free(l->W);
    free(l->b);
    free(l->gW);
    free(l->gb);
    free(l->cache);
    free(l->ws);
    free(l);
}

const cvd_conv2d_params *cvd_conv2d_get_params(const cvd_conv2d *l)
{
    return &l->p;
}

const cvd_tensor *cvd_conv2d_weight(const cvd_conv2d *l)
{
    return &l->Wt;
}

const cvd_tensor *cvd_conv2d_bias(const cvd_conv2d *l)
{
    return l->b ? &l->bt : NULL;
}

int cvd_conv2d_has_cache(const cvd_conv2d *l, int64_t x_shape[4])
{
    if (!l->has_cache)
        return 0;
    if (x_shape)
        memcpy(x_shape, l->cache_shape, sizeof l->cache_shape);
    return 1;
}

static cvd_status check_input(const cvd_conv2d *l, const cvd_tensor *x, const char *name,
                              cvd_geom *g, cvd_err *err);

size_t cvd_conv2d_bytes(const cvd_conv2d *l)
{
    size_t f = (size_t)l->p.out_channels;
    return sizeof *l + ((size_t)l->wn * (1 + (l->gW != NULL)) + (l->b ? f : 0) + (l->gb ? f : 0) +
                        (l->cache ? (size_t)l->cache_numel : 0) + l->ws_elems) *
                           l->es;
}

void cvd_conv2d_trim(cvd_conv2d *l)
{
    free(l->ws);
    free(l->gW);
    free(l->gb);
    l->ws = l->gW = l->gb = NULL;
    l->ws_elems = 0;
}

cvd_status cvd_conv2d_set_cache(cvd_conv2d *l, const cvd_tensor *x, cvd_err *err)
{
    cvd_geom g = {0};
    cvd_status s = check_input(l, x, "x", &g, err);
    if (s != CVD_OK)
        return s;
    /* check_input admits no empty tensor; the 1 keeps malloc(0) out of every path */
    const size_t bytes = (size_t)g.x_numel * l->es;
    void *fresh = malloc(bytes ? bytes : 1);
    if (!fresh)
        return cvd_err_setf(err, CVD_ERR_NOMEM, "cannot allocate the cache for x (%lld elements)",
                            (long long)g.x_numel);
    memcpy(fresh, x->data, bytes);
    free(l->cache);
    l->cache = fresh;
    l->cache_numel = g.x_numel;
    memcpy(l->cache_shape, x->shape, sizeof l->cache_shape);
    l->has_cache = 1;
    return CVD_OK;
}

const void *cvd_conv2d_cache_data(const cvd_conv2d *l)
{
    return l->has_cache ? l->cache : NULL;
}

void cvd_conv2d_set_chunk_bytes(cvd_conv2d *l, size_t bytes)
{
    l->chunk_bytes = bytes;
}

void cvd_conv2d_set_path(cvd_conv2d *l, cvd_path path)
{
    l->path = path;
}

static void store(cvd_dtype dt, void *a, int64_t i, double v)
{
    if (dt == CVD_F32)
        ((float *)a)[i] = (float)v;
    else
        ((double *)a)[i] = v;
}

static double load(cvd_dtype dt, const void *a, int64_t i)
{
    return dt == CVD_F32 ? (double)((const float *)a)[i] : ((const double *)a)[i];
}

/*
 * Generation order (the contract behind "same seed, same weights"): one splitmix64 stream
 * seeded with `seed`; u = (next >> 11) * 2^-53.
 *  kaiming_uniform: bound = 1/sqrt(fan_in), fan_in = (C/g)*kh*kw. W[i] = -bound + 2*bound*u
 *    for i = 0 .. numel(W)-1 in C order (F, C/g, kh, kw), then b[f] the same way for
 *    f = 0 .. F-1 continuing the same stream. Computed in double, then rounded to dtype.
 *  normal: W in C order from Box-Muller pairs: draws u1, u2 give z0 (cos) for W[2j] and
 *    z1 (sin) for W[2j+1]; an odd last element uses z0 and drops z1. b = 0.
 *  zeros: W = 0, b = 0; the seed is unused.
 */
cvd_status cvd_conv2d_init(cvd_conv2d *l, cvd_init_scheme scheme, uint64_t seed, cvd_err *err)
{
    if (!l)
        return cvd_err_setf(err, CVD_ERR_INVALID, "layer is NULL");
    const cvd_dtype dt = l->p.dtype;
    const int64_t F = l->p.out_channels;
    cvd_rng r;
    cvd_rng_seed(&r, seed);
    switch (scheme) {
    case CVD_INIT_KAIMING_UNIFORM: {
        const int64_t fan_in = l->wn / F; /* exact: wn = F * fan_in */
        double bound = 1.0 / sqrt((double)fan_in);
        for (int64_t i = 0; i < l->wn; i++)
            store(dt, l->W, i, -bound + 2.0 * bound * cvd_rng_uniform(&r));
        for (int64_t f = 0; l->b && f < F; f++)
            store(dt, l->b, f, -bound + 2.0 * bound * cvd_rng_uniform(&r));
        return CVD_OK;
    }
    case CVD_INIT_NORMAL:
        for (int64_t i = 0; i < l->wn; i += 2) {
            double z0, z1;
            cvd_rng_normal2(&r, &z0, &z1);
            store(dt, l->W, i, z0);
            if (i + 1 < l->wn)
                store(dt, l->W, i + 1, z1);
        }
        if (l->b)
            memset(l->b, 0, (size_t)F * l->es);
        return CVD_OK;
    case CVD_INIT_ZEROS:
        memset(l->W, 0, (size_t)l->wn * l->es);
        if (l->b)
            memset(l->b, 0, (size_t)F * l->es);
        return CVD_OK;
    }
    return cvd_err_setf(err, CVD_ERR_INVALID,
                        "init scheme %d is unknown; use kaiming_uniform, normal or zeros",
                        (int)scheme);
}

/* Whether t is a usable tensor of a known dtype with a valid shape; names it in errors. */
static cvd_status check_tensor(const cvd_tensor *t, const char *name, cvd_err *err)
{
    if (!t || !t->data)
        return cvd_err_setf(err, CVD_ERR_INVALID, "%s is missing (NULL)", name);
    if (cvd_dtype_size(t->dtype) == 0)
        return cvd_err_setf(err, CVD_ERR_INVALID, "%s has an unknown dtype %d", name,
                            (int)t->dtype);
    int64_t n;
    cvd_err e2;
    cvd_status s = cvd_shape_numel(t->rank, t->shape, &n, &e2);
    if (s != CVD_OK)
        return cvd_err_setf(err, s, "%s: %s", name, e2.msg);
    return CVD_OK;
}

/* The shapes W (or dW) may take: (F, C/g, kh, kw), or (F, kh, kw) when C/g == 1. */
static cvd_status check_w_shape(const cvd_conv2d *l, const cvd_tensor *t, const char *name,
                                cvd_err *err)
{
    const int64_t *ws = l->Wt.shape;
    int ok = (t->rank == 4 && t->shape[0] == ws[0] && t->shape[1] == ws[1] &&
              t->shape[2] == ws[2] && t->shape[3] == ws[3]) ||
             (t->rank == 3 && ws[1] == 1 && t->shape[0] == ws[0] && t->shape[1] == ws[2] &&
              t->shape[2] == ws[3]);
    if (ok)
        return CVD_OK;
    char got[96], want[96];
    shape_str(got, sizeof got, t->rank, t->shape);
    shape_str(want, sizeof want, 4, ws);
    return cvd_err_setf(err, CVD_ERR_INVALID,
                        "%s has shape %s but the layer needs (F,C/groups,kh,kw) = %s%s", name, got,
                        want, ws[1] == 1 ? " or (F,kh,kw)" : "");
}

/* The shapes b (or db) may take: (F) or (F, 1). */
static cvd_status check_b_shape(const cvd_conv2d *l, const cvd_tensor *t, const char *name,
                                cvd_err *err)
{
    const int64_t F = l->p.out_channels;
    if ((t->rank == 1 && t->shape[0] == F) ||
        (t->rank == 2 && t->shape[0] == F && t->shape[1] == 1))
        return CVD_OK;
    char got[96];
    shape_str(got, sizeof got, t->rank, t->shape);
    return cvd_err_setf(err, CVD_ERR_INVALID,
                        "%s has shape %s but the layer needs (%lld) or (%lld,1)", name, got,
                        (long long)F, (long long)F);
}

/* Whether every element of src, converted to dtype dt, is finite. */
static int converts_finite(const cvd_tensor *src, int64_t n, cvd_dtype dt)
{
    for (int64_t i = 0; i < n; i++) {
        double v = load(src->dtype, src->data, i);
        if (dt == CVD_F32 ? !isfinite((float)v) : !isfinite(v))
            return 0;
    }
    return 1;
}

static void convert_into(void *dst, cvd_dtype dt, const cvd_tensor *src, int64_t n)
{
    if (src->dtype == dt) {
        memcpy(dst, src->data, (size_t)n * cvd_dtype_size(dt));
        return;
    }
    for (int64_t i = 0; i < n; i++)
        store(dt, dst, i, load(src->dtype, src->data, i));
}

cvd_status cvd_conv2d_set_weights(cvd_conv2d *l, const cvd_tensor *W, const cvd_tensor *b,
                                  cvd_err *err)
{
    if (!l)
        return cvd_err_setf(err, CVD_ERR_INVALID, "layer is NULL");
    const cvd_dtype dt = l->p.dtype;
    cvd_status s = check_tensor(W, "W", err);
    if (s == CVD_OK)
        s = check_w_shape(l, W, "W", err);
    if (s != CVD_OK)
        return s;
    if (!converts_finite(W, l->wn, dt))
        return cvd_err_setf(err, CVD_ERR_INVALID, "W has a value that is not finite in %s",
                            cvd_dtype_name(dt));
    if (b) {
        if (!l->p.bias)
            return cvd_err_setf(err, CVD_ERR_INVALID,
                                "b was given but the layer has bias=false; leave b out");
        s = check_tensor(b, "b", err);
        if (s == CVD_OK)
            s = check_b_shape(l, b, "b", err);
        if (s != CVD_OK)
            return s;
        if (!converts_finite(b, l->p.out_channels, dt))
            return cvd_err_setf(err, CVD_ERR_INVALID, "b has a value that is not finite in %s",
                                cvd_dtype_name(dt));
    }
    convert_into(l->W, dt, W, l->wn);
    if (b)
        convert_into(l->b, dt, b, l->p.out_channels);
    return CVD_OK;
}

/* A rank-4 input of the layer's dtype; its geometry goes to g. */
static cvd_status check_input(const cvd_conv2d *l, const cvd_tensor *x, const char *name,
                              cvd_geom *g, cvd_err *err)
{
    cvd_status s = check_tensor(x, name, err);
    if (s != CVD_OK)
        return s;
    if (x->dtype != l->p.dtype)
        return cvd_err_setf(err, CVD_ERR_INVALID, "%s is %s but the layer is %s", name,
                            cvd_dtype_name(x->dtype), cvd_dtype_name(l->p.dtype));
    if (x->rank != 4) {
        char got[96];
        shape_str(got, sizeof got, x->rank, x->shape);
        return cvd_err_setf(err, CVD_ERR_SHAPE,
                            "%s has shape %s but must be rank 4; send %s shaped (N,%lld,H,W)", name,
                            got, name, (long long)l->p.in_channels);
    }
    return cvd_geom_init(g, &l->p, x->shape, name, err);
}

/* t must be a tensor of the layer's dtype with exactly the given rank-4 shape. */
static cvd_status check_exact(const cvd_conv2d *l, const cvd_tensor *t, const char *name,
                              const int64_t want[4], const char *what, cvd_err *err)
{
    cvd_status s = check_tensor(t, name, err);
    if (s != CVD_OK)
        return s;
    if (t->dtype != l->p.dtype)
        return cvd_err_setf(err, CVD_ERR_INVALID, "%s is %s but the layer is %s", name,
                            cvd_dtype_name(t->dtype), cvd_dtype_name(l->p.dtype));
    if (t->rank == 4 && !memcmp(t->shape, want, 4 * sizeof *want))
        return CVD_OK;
    char got[96], exp[96];
    shape_str(got, sizeof got, t->rank, t->shape);
    shape_str(exp, sizeof exp, 4, want);
    return cvd_err_setf(err, CVD_ERR_SHAPE, "%s has shape %s but %s has shape %s", name, got, what,
                        exp);
}

/* memcpy split across threads: copying a large x into the cache is memory-bound, and a
 * single core does not saturate the memory bus. */
typedef struct copy_job {
    char *dst;
    const char *src;
    size_t bytes;
} copy_job;

static void copy_part(void *arg, int task, int ntasks)
{
    const copy_job *j = arg;
    size_t a = j->bytes / (size_t)ntasks * (size_t)task;
    size_t b = task == ntasks - 1 ? j->bytes : j->bytes / (size_t)ntasks * (size_t)(task + 1);
    memcpy(j->dst + a, j->src + a, b - a);
}

static void parallel_copy(void *dst, const void *src, size_t bytes)
{
    copy_job j = {dst, src, bytes};
    int threads = cvd_parallel_parts(bytes / sizeof(float), cvd_get_num_threads());
    cvd_parallel_run(threads, threads, copy_part, &j);
}

/* Grows the workspace to at least `elems` elements (contents not kept). 64-byte aligned,
 * as the own kernels' vectors and the per-thread slices (multiples of 16 elements) are:
 * malloc's 16 would split every vector load of a blocked copy across two cache lines. */
static cvd_status ensure_ws(cvd_conv2d *l, size_t elems, cvd_err *err)
{
    if (elems <= l->ws_elems)
        return CVD_OK;
    void *p = NULL;
    if (posix_memalign(&p, 64, elems * l->es))
        p = NULL;
    if (!p)
        return cvd_err_setf(err, CVD_ERR_NOMEM, "cannot allocate a %zu-byte workspace",
                            elems * l->es);
    free(l->ws);
    l->ws = p;
    l->ws_elems = elems;
    return CVD_OK;
}

static cvd_status prepare_ws(cvd_conv2d *l, const cvd_geom *g, cvd_plan *r, cvd_err *err)
{
    cvd_status s = cvd_plan_pass(g, l->es, l->chunk_bytes, l->path, cvd_get_num_threads(), r, err);
    if (s == CVD_OK)
        s = ensure_ws(l, r->ws_elems, err);
    return s;
}

cvd_status cvd_conv2d_forward(cvd_conv2d *l, const cvd_tensor *x, cvd_tensor *y, unsigned flags,
                              cvd_err *err)
{
    if (!l)
        return cvd_err_setf(err, CVD_ERR_INVALID, "layer is NULL");
    if (flags & ~CVD_FWD_NO_CACHE)
        return cvd_err_setf(err, CVD_ERR_INVALID, "forward flags 0x%x are unknown", flags);
    cvd_geom g = {0};
    cvd_status s = check_input(l, x, "x", &g, err);
    if (s != CVD_OK)
        return s;
    const int64_t y_shape[4] = {g.N, g.F, g.OH, g.OW};
    s = check_exact(l, y, "y", y_shape, "the output for x", err);
    if (s != CVD_OK)
        return s;
    cvd_plan r;
    s = prepare_ws(l, &g, &r, err);
    if (s != CVD_OK)
        return s;
    /* A cache of a different size is allocated up front so a failure costs nothing. */
    const int caching = !(flags & CVD_FWD_NO_CACHE);
    void *fresh = NULL;
    if (caching && (!l->cache || l->cache_numel != g.x_numel)) {
        /* x_numel >= 1; as in cvd_tensor_alloc, the analyzer takes a failed check_input for a
         * success (it cannot see that cvd_err_setf returns its non-OK status). */
        /* NOLINTNEXTLINE(clang-analyzer-optin.portability.UnixAPI) */
        fresh = malloc((size_t)g.x_numel * l->es);
        if (!fresh)
            return cvd_err_setf(err, CVD_ERR_NOMEM,
                                "cannot allocate the cache for x (%lld "
                                "elements)",
                                (long long)g.x_numel);
    }
    const int finite =
        l->p.dtype == CVD_F32
            ? pass_go_f32(&g, &r, l->ws, l->W, l->b, x->data, NULL, y->data, NULL, NULL)
            : pass_go_f64(&g, &r, l->ws, l->W, l->b, x->data, NULL, y->data, NULL, NULL);
    if (!finite) {
        free(fresh);
        return cvd_err_setf(err, CVD_ERR_NONFINITE,
                            "y has a value that is not finite (overflow in %s); the cache "
                            "and weights are unchanged",
                            cvd_dtype_name(l->p.dtype));
    }
    if (fresh) {
        free(l->cache);
        l->cache = fresh;
        l->cache_numel = g.x_numel;
    }
    if (caching) {
        parallel_copy(l->cache, x->data, (size_t)g.x_numel * l->es);
        memcpy(l->cache_shape, x->shape, sizeof l->cache_shape);
        l->has_cache = 1;
    }
    return CVD_OK;
}

static cvd_status check_opts(const cvd_conv2d *l, const cvd_backward_opts *o, cvd_err *err)
{
    if (!o)
        return cvd_err_setf(err, CVD_ERR_INVALID, "backward options are missing (NULL)");
    if (o->need == 0 || (o->need & ~CVD_NEED_ALL))
        return cvd_err_setf(err, CVD_ERR_INVALID,
                            "need is 0x%x; it must be a non-empty mix of dx, dW, db", o->need);
    if ((o->need & CVD_NEED_DB) && !l->p.bias)
        return cvd_err_setf(err, CVD_ERR_INVALID, "need asks for db but the layer has bias=false");
    if (o->sgd && !(isfinite(o->lr) && o->lr >= 0))
        return cvd_err_setf(err, CVD_ERR_INVALID, "lr is %g; it must be finite and >= 0", o->lr);
    return CVD_OK;
}

/* Lazily allocates the scratch an SGD step needs for gradients the caller did not ask
 * for. Kept for the layer's lifetime (counted in memory_need). */
static cvd_status ensure_sgd_scratch(cvd_conv2d *l, int want_w, int want_b, cvd_err *err)
{
    if (want_w && !l->gW) {
        l->gW = malloc((size_t)l->wn * l->es);
        if (!l->gW)
            return cvd_err_setf(err, CVD_ERR_NOMEM, "cannot allocate the SGD scratch for dW");
    }
    if (want_b && !l->gb) {
        l->gb = malloc((size_t)l->p.out_channels * l->es);
        if (!l->gb)
            return cvd_err_setf(err, CVD_ERR_NOMEM, "cannot allocate the SGD scratch for db");
    }
    return CVD_OK;
}

cvd_status cvd_conv2d_backward(cvd_conv2d *l, const cvd_tensor *x, const cvd_tensor *delta,
                               const cvd_backward_opts *opts, cvd_tensor *dx, cvd_tensor *dW,
                               cvd_tensor *db, cvd_err *err)
{
    if (!l)
        return cvd_err_setf(err, CVD_ERR_INVALID, "layer is NULL");
    cvd_status s = check_opts(l, opts, err);
    if (s != CVD_OK)
        return s;
    cvd_tensor cached;
    if (!x) {
        if (!l->has_cache)
            return cvd_err_setf(err, CVD_ERR_NO_CACHE,
                                "no forward input is cached; run forward first or send x");
        cached = (cvd_tensor){.dtype = l->p.dtype, .rank = 4, .data = l->cache};
        memcpy(cached.shape, l->cache_shape, sizeof cached.shape);
        x = &cached;
    }
    cvd_geom g = {0};
    s = check_input(l, x, "x", &g, err);
    if (s != CVD_OK)
        return s;
    const int64_t y_shape[4] = {g.N, g.F, g.OH, g.OW};
    s = check_exact(l, delta, "delta", y_shape, "the output y of this x", err);
    if (s != CVD_OK)
        return s;
    const unsigned need = opts->need;
    if (need & CVD_NEED_DX)
        s = check_exact(l, dx, "dx", x->shape, "x", err);
    if (s == CVD_OK && (need & CVD_NEED_DW)) {
        s = check_tensor(dW, "dW", err);
        if (s == CVD_OK && dW->dtype != l->p.dtype)
            s = cvd_err_setf(err, CVD_ERR_INVALID, "dW is %s but the layer is %s",
                             cvd_dtype_name(dW->dtype), cvd_dtype_name(l->p.dtype));
        if (s == CVD_OK)
            s = check_w_shape(l, dW, "dW", err);
    }
    if (s == CVD_OK && (need & CVD_NEED_DB)) {
        s = check_tensor(db, "db", err);
        if (s == CVD_OK && db->dtype != l->p.dtype)
            s = cvd_err_setf(err, CVD_ERR_INVALID, "db is %s but the layer is %s",
                             cvd_dtype_name(db->dtype), cvd_dtype_name(l->p.dtype));
        if (s == CVD_OK)
            s = check_b_shape(l, db, "db", err);
    }
    if (s != CVD_OK)
        return s;
    const int sgd = opts->sgd != 0;
    const int do_dw = (need & CVD_NEED_DW) || sgd;
    const int do_db = (need & CVD_NEED_DB) || (sgd && l->p.bias);
    cvd_plan r = {0};
    if ((need & CVD_NEED_DX) || do_dw)
        s = prepare_ws(l, &g, &r, err);
    if (s == CVD_OK && sgd)
        s = ensure_sgd_scratch(l, !(need & CVD_NEED_DW), do_db && !(need & CVD_NEED_DB), err);
    if (s != CVD_OK)
        return s;
    void *gx = (need & CVD_NEED_DX) ? dx->data : NULL;
    void *gw = !do_dw ? NULL : (need & CVD_NEED_DW) ? dW->data : l->gW;
    void *gb = !do_db ? NULL : (need & CVD_NEED_DB) ? db->data : l->gb;
    /* dgrad checks dx as its kernels store it; the GEMM paths leave it to the scan */
    int finite = 1, dx_finite = 1;
    if (l->p.dtype == CVD_F32) {
        if (gb)
            bias_grad_f32(&g, delta->data, gb);
        if (gx || gw)
            dx_finite = pass_go_f32(&g, &r, l->ws, l->W, NULL, x->data, delta->data, NULL, gx, gw);
        finite = (!gx || (r.dgrad ? dx_finite : par_finite_f32(gx, (size_t)g.x_numel))) &&
                 (!gw || par_finite_f32(gw, (size_t)l->wn)) &&
                 (!gb || all_finite_f32(gb, (size_t)g.F));
        if (finite && sgd)
            finite = sgd_finite_f32(l->W, gw, (size_t)l->wn, opts->lr) &&
                     (!gb || sgd_finite_f32(l->b, gb, (size_t)g.F, opts->lr));
    } else {
        if (gb)
            bias_grad_f64(&g, delta->data, gb);
        if (gx || gw)
            dx_finite = pass_go_f64(&g, &r, l->ws, l->W, NULL, x->data, delta->data, NULL, gx, gw);
        finite = (!gx || (r.dgrad ? dx_finite : par_finite_f64(gx, (size_t)g.x_numel))) &&
                 (!gw || par_finite_f64(gw, (size_t)l->wn)) &&
                 (!gb || all_finite_f64(gb, (size_t)g.F));
        if (finite && sgd)
            finite = sgd_finite_f64(l->W, gw, (size_t)l->wn, opts->lr) &&
                     (!gb || sgd_finite_f64(l->b, gb, (size_t)g.F, opts->lr));
    }
    if (!finite)
        return cvd_err_setf(err, CVD_ERR_NONFINITE,
                            sgd ? "a gradient or the SGD step is not finite (overflow in %s); "
                                  "W and b are unchanged"
                                : "a gradient is not finite (overflow in %s)",
                            cvd_dtype_name(l->p.dtype));
    if (sgd) {
        if (l->p.dtype == CVD_F32) {
            sgd_apply_f32(l->W, gw, (size_t)l->wn, opts->lr);
            if (gb)
                sgd_apply_f32(l->b, gb, (size_t)g.F, opts->lr);
        } else {
            sgd_apply_f64(l->W, gw, (size_t)l->wn, opts->lr);
            if (gb)
                sgd_apply_f64(l->b, gb, (size_t)g.F, opts->lr);
        }
    }
    return CVD_OK;
}
