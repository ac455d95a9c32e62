/*
 * fuzz_layer.c — libFuzzer target for layer decoding and the core. Input: a layer object
 * (spec/api.md §2) as JSON. A layer that decodes must pass cvd_conv2d_params_check, survive
 * encode → decode with the same parameters, and build (create, init, set_weights). Then an
 * input shape is derived from the layer; if its memory and work are small, forward and
 * backward run and are checked against the plain-loop reference (tests/core/ref_conv.c)
 * within a rounding bound taken from the sum of |terms|, and backward from the cache must
 * equal backward from an explicit x bit for bit. Any failure aborts.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../core/cvd.h"
#include "../server/codec.h"
#include "../tests/core/ref_conv.h"

#define MAX_ELEMS   (1 << 18)  /* per decoded tensor */
#define MAX_WEIGHTS (1 << 18)  /* F * C/g * kh * kw */
#define MAX_NEED    (8u << 20) /* bytes for cvd_conv2d_memory_need */
#define MAX_WORK    2000000.0  /* multiply-adds of the reference */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static void fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_layer: %s\n%s\n", what, detail ? detail : "");
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    cvd_set_num_threads(1);
    return 0;
}

static int same_params(const cvd_conv2d_params *a, const cvd_conv2d_params *b)
{
    return a->in_channels == b->in_channels && a->out_channels == b->out_channels &&
           a->groups == b->groups && a->kh == b->kh && a->kw == b->kw && a->sh == b->sh &&
           a->sw == b->sw && a->dh == b->dh && a->dw == b->dw && a->pad_mode == b->pad_mode &&
           (a->pad_mode != CVD_PAD_EXPLICIT || (a->ph == b->ph && a->pw == b->pw)) &&
           a->bias == b->bias && a->dtype == b->dtype;
}

/* The normalised layer (no W, no b) must decode to the same parameters. */
static void check_encode(const codec_layer *cl)
{
    buf b;
    buf_init(&b);
    /* with W the layer reports {"scheme": "given"}, which needs W back: ask for zeros */
    if (codec_layer_encode(&b, &cl->p, cl->has_W ? (int)CVD_INIT_ZEROS : (int)cl->scheme,
                           cl->seed) != 0)
        fail("codec_layer_encode failed", NULL);
    apierr e = {0};
    cJSON *n = codec_parse(b.data, b.len, &e);
    if (!n)
        fail("the normalised layer does not parse", b.data);
    codec_layer again = {0};
    if (codec_layer_decode(n, MAX_ELEMS, "limit", &again, &e) != 0) {
        fprintf(stderr, "%s\n", b.data);
        fail("the normalised layer does not decode", e.msg);
    }
    if (!same_params(&cl->p, &again.p))
        fail("the normalised layer decodes to other parameters", b.data);
    if (!cl->has_W && (again.scheme != cl->scheme || again.seed != cl->seed))
        fail("the normalised layer lost its init scheme or seed", b.data);
    codec_layer_release(&again);
    cJSON_Delete(n);
    buf_free(&b);
}

static double *to_double(const cvd_tensor *t)
{
    int64_t n = cvd_tensor_numel(t);
    double *d = malloc((size_t)n * sizeof *d);
    if (!d)
        return NULL;
    for (int64_t i = 0; i < n; i++)
        d[i] = t->dtype == CVD_F64 ? ((const double *)t->data)[i] : ((const float *)t->data)[i];
    return d;
}

/* Random values in [-1, 1) stored in t's dtype, and the same values as doubles. */
static int fill_random(cvd_tensor *t, ref_rng *r, double **dbl)
{
    int64_t n = cvd_tensor_numel(t);
    *dbl = malloc((size_t)n * sizeof **dbl);
    if (!*dbl)
        return -1;
    for (int64_t i = 0; i < n; i++) {
        double v = ref_uniform(r);
        if (t->dtype == CVD_F64) {
            ((double *)t->data)[i] = v;
        } else {
            ((float *)t->data)[i] = (float)v;
            v = (float)v;
        }
        (*dbl)[i] = v;
    }
    return 0;
}

static void vabs(double *a, const double *src, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        a[i] = fabs(src[i]);
}

/* |got - ref| <= 4 eps (K + 2) bound, elementwise, where bound is the reference computed
 * with absolute values (so cancellation does not shrink the allowance). */
static void compare(const char *what, const cvd_tensor *got, const double *ref, const double *bound,
                    int64_t K, const char *layer)
{
    double eps = got->dtype == CVD_F64 ? DBL_EPSILON : FLT_EPSILON;
    double *g = to_double(got);
    if (!g)
        return;
    int64_t n = cvd_tensor_numel(got);
    for (int64_t i = 0; i < n; i++) {
        double tol = 4 * eps * (double)(K + 2) * bound[i] + DBL_MIN;
        if (!(fabs(g[i] - ref[i]) <= tol)) {
            fprintf(stderr, "%s[%lld] = %.17g, reference %.17g (tolerance %.3g)\n", what,
                    (long long)i, g[i], ref[i], tol);
            free(g);
            fail("the core disagrees with the reference", layer);
        }
    }
    free(g);
}

static int too_big(const double *bound, int64_t n, cvd_dtype dt)
{
    double lim = (dt == CVD_F64 ? DBL_MAX : FLT_MAX) / 4;
    for (int64_t i = 0; i < n; i++)
        if (!(bound[i] < lim))
            return 1;
    return 0;
}

typedef struct run {
    cvd_tensor x, y, delta, dx, dW, db, dx2, dW2, db2;
    double *xd, *Wd, *bd, *deltad, *ref, *bnd, *absx, *absW, *absd, *absb;
} run;

static void run_free(run *r)
{
    cvd_tensor *ts[] = {&r->x, &r->y, &r->delta, &r->dx, &r->dW, &r->db, &r->dx2, &r->dW2, &r->db2};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        cvd_tensor_release(ts[i]);
    double *ds[] = {r->xd,  r->Wd,   r->bd,   r->deltad, r->ref,
                    r->bnd, r->absx, r->absW, r->absd,   r->absb};
    for (size_t i = 0; i < sizeof ds / sizeof ds[0]; i++)
        free(ds[i]);
}

static int equal_bits(const cvd_tensor *a, const cvd_tensor *b)
{
    return memcmp(a->data, b->data, (size_t)cvd_tensor_numel(a) * cvd_dtype_size(a->dtype)) == 0;
}

/* Forward and backward on x of shape xs, against the reference. */
static void exercise(cvd_conv2d *l, const int64_t xs[4], uint64_t seed, const char *layer)
{
    const cvd_conv2d_params *p = cvd_conv2d_get_params(l);
    int64_t ys[4];
    cvd_err ce;
    if (cvd_conv2d_output_shape(p, xs, ys, &ce) != CVD_OK)
        return;
    ref_geom g;
    if (!ref_geom_make(&g, p, xs) || g.OH != ys[2] || g.OW != ys[3])
        fail("output shape differs from the reference's", layer);
    int64_t K = p->in_channels / p->groups * p->kh * p->kw;
    double work = (double)ys[0] * ys[1] * ys[2] * ys[3] * (double)K;
    size_t need;
    if (cvd_conv2d_memory_need(p, xs, &need, &ce) != CVD_OK || need > MAX_NEED || work > MAX_WORK)
        return;

    run r = {0};
    ref_rng rng = {seed | 1};
    int64_t F = p->out_channels, nx = xs[0] * xs[1] * xs[2] * xs[3];
    int64_t ny = ys[0] * ys[1] * ys[2] * ys[3];
    const cvd_tensor *W = cvd_conv2d_weight(l), *b = cvd_conv2d_bias(l);
    int64_t nw = cvd_tensor_numel(W);
    if (cvd_tensor_alloc(&r.x, p->dtype, 4, xs, NULL) ||
        cvd_tensor_alloc(&r.y, p->dtype, 4, ys, NULL) ||
        cvd_tensor_alloc(&r.delta, p->dtype, 4, ys, NULL) ||
        cvd_tensor_alloc(&r.dx, p->dtype, 4, xs, NULL) ||
        cvd_tensor_alloc(&r.dW, p->dtype, 4, W->shape, NULL) ||
        cvd_tensor_alloc(&r.db, p->dtype, 1, &F, NULL) ||
        cvd_tensor_alloc(&r.dx2, p->dtype, 4, xs, NULL) ||
        cvd_tensor_alloc(&r.dW2, p->dtype, 4, W->shape, NULL) ||
        cvd_tensor_alloc(&r.db2, p->dtype, 1, &F, NULL))
        goto done;
    int64_t big = nx > ny ? nx : ny;
    big = big > nw ? big : nw;
    r.ref = malloc((size_t)big * sizeof(double));
    r.bnd = malloc((size_t)big * sizeof(double));
    r.absx = malloc((size_t)nx * sizeof(double));
    r.absW = malloc((size_t)nw * sizeof(double));
    r.absd = malloc((size_t)ny * sizeof(double));
    r.absb = malloc((size_t)F * sizeof(double));
    if (!r.ref || !r.bnd || !r.absx || !r.absW || !r.absd || !r.absb ||
        fill_random(&r.x, &rng, &r.xd) || fill_random(&r.delta, &rng, &r.deltad))
        goto done;
    r.Wd = to_double(W);
    r.bd = b ? to_double(b) : NULL;
    if (!r.Wd || (b && !r.bd))
        goto done;
    vabs(r.absx, r.xd, nx);
    vabs(r.absW, r.Wd, nw);
    vabs(r.absd, r.deltad, ny);
    if (b)
        vabs(r.absb, r.bd, F);

    cvd_status st = cvd_conv2d_forward(l, &r.x, &r.y, 0, &ce);
    ref_forward(&g, r.xd, r.Wd, r.bd, r.ref);
    ref_forward(&g, r.absx, r.absW, b ? r.absb : NULL, r.bnd);
    if (st == CVD_ERR_NONFINITE) {
        if (!too_big(r.bnd, ny, p->dtype))
            fail("forward reported a non-finite y the reference does not have", layer);
        goto done;
    }
    if (st != CVD_OK)
        fail("forward failed on a valid input", ce.msg);
    compare("y", &r.y, r.ref, r.bnd, K, layer);

    cvd_backward_opts o = {.need = CVD_NEED_DX | CVD_NEED_DW | (p->bias ? CVD_NEED_DB : 0)};
    cvd_tensor *db = p->bias ? &r.db : NULL, *db2 = p->bias ? &r.db2 : NULL;
    st = cvd_conv2d_backward(l, NULL, &r.delta, &o, &r.dx, &r.dW, db, &ce);
    if (st == CVD_ERR_NONFINITE) {
        ref_backward(&g, r.absx, r.absW, r.absd, r.bnd, NULL, NULL);
        if (!too_big(r.bnd, nx, p->dtype))
            fail("backward reported a non-finite dx the reference does not have", layer);
        goto done;
    }
    if (st != CVD_OK)
        fail("backward (cached x) failed on a valid input", ce.msg);
    if (cvd_conv2d_backward(l, &r.x, &r.delta, &o, &r.dx2, &r.dW2, db2, &ce) != CVD_OK)
        fail("backward (explicit x) failed where the cached one worked", ce.msg);
    if (!equal_bits(&r.dx, &r.dx2) || !equal_bits(&r.dW, &r.dW2) || (db && !equal_bits(db, db2)))
        fail("backward from the cache differs from backward with the same explicit x", layer);

    int64_t OHW = ys[0] * ys[2] * ys[3];
    ref_backward(&g, r.xd, r.Wd, r.deltad, r.ref, NULL, NULL);
    ref_backward(&g, r.absx, r.absW, r.absd, r.bnd, NULL, NULL);
    compare("dx", &r.dx, r.ref, r.bnd, p->out_channels / p->groups * p->kh * p->kw, layer);
    ref_backward(&g, r.xd, r.Wd, r.deltad, NULL, r.ref, NULL);
    ref_backward(&g, r.absx, r.absW, r.absd, NULL, r.bnd, NULL);
    compare("dW", &r.dW, r.ref, r.bnd, OHW, layer);
    if (db) {
        ref_backward(&g, r.xd, r.Wd, r.deltad, NULL, NULL, r.ref);
        ref_backward(&g, r.absx, r.absW, r.absd, NULL, NULL, r.bnd);
        compare("db", db, r.ref, r.bnd, OHW, layer);
    }
done:
    run_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apierr e = {0};
    cJSON *root = codec_parse((const char *)data, size, &e);
    if (!root)
        return 0;
    codec_layer cl = {0};
    cvd_conv2d *l = NULL;
    char *text = strndup((const char *)data, size); /* for messages */
    if (codec_layer_decode(root, MAX_ELEMS, "limit", &cl, &e) != 0) {
        if (e.code != APIERR_INVALID_ARGUMENT && e.code != APIERR_INVALID_LAYER &&
            e.code != APIERR_INVALID_TENSOR && e.code != APIERR_PAYLOAD_TOO_LARGE)
            fail("codec_layer_decode failed with an unexpected code", e.msg);
        if (cl.W.data || cl.b.data)
            fail("a failed layer decode left tensors behind", e.msg);
        goto done;
    }
    cvd_err ce = {{0}};
    if (cvd_conv2d_params_check(&cl.p, &ce) != CVD_OK)
        fail("a decoded layer fails cvd_conv2d_params_check", ce.msg);
    check_encode(&cl);

    double nw = (double)cl.p.out_channels * (double)(cl.p.in_channels / cl.p.groups) *
                (double)cl.p.kh * (double)cl.p.kw;
    if (nw > MAX_WEIGHTS)
        goto done;
    if (cvd_conv2d_create(&cl.p, &l, &ce) != CVD_OK)
        fail("cvd_conv2d_create refused a checked layer", ce.msg);
    if (cvd_conv2d_init(l, cl.scheme, cl.seed, &ce) != CVD_OK)
        fail("cvd_conv2d_init failed", ce.msg);
    if (cl.has_W && cvd_conv2d_set_weights(l, &cl.W, cl.has_b ? &cl.b : NULL, &ce) != CVD_OK)
        fail("set_weights refused W/b that codec_layer_decode accepted", ce.msg);
    if (!cl.has_W && cl.has_b) {
        const cvd_tensor *w = cvd_conv2d_weight(l);
        cvd_tensor copy = {0};
        if (cvd_tensor_alloc(&copy, w->dtype, w->rank, w->shape, &ce) != CVD_OK)
            goto done;
        memcpy(copy.data, w->data, (size_t)cvd_tensor_numel(w) * cvd_dtype_size(w->dtype));
        cvd_status st = cvd_conv2d_set_weights(l, &copy, &cl.b, &ce);
        cvd_tensor_release(&copy);
        if (st != CVD_OK)
            fail("set_weights refused a b that codec_layer_decode accepted", ce.msg);
    }

    /* An input just big enough for the (dilated) kernel, plus a little. */
    int64_t top, bottom, left, right;
    cvd_conv2d_padding(&cl.p, &top, &bottom, &left, &right);
    int64_t eh = cl.p.dh * (cl.p.kh - 1) + 1 - top - bottom;
    int64_t ew = cl.p.dw * (cl.p.kw - 1) + 1 - left - right;
    uint64_t h = cl.seed ^ (uint64_t)size * 0x9E3779B97F4A7C15ull;
    int64_t xs[4] = {1 + (int64_t)(h & 1), cl.p.in_channels,
                     (eh < 1 ? 1 : eh) + (int64_t)(h >> 1) % 3,
                     (ew < 1 ? 1 : ew) + (int64_t)(h >> 3) % 3};
    size_t need;
    cvd_status st = cvd_conv2d_memory_need(&cl.p, xs, &need, &ce);
    if (st != CVD_OK && st != CVD_ERR_TOO_LARGE)
        fail("memory_need failed on a valid input shape", ce.msg);
    if (st == CVD_OK)
        exercise(l, xs, h, text);
done:
    free(text);
    cvd_conv2d_free(l);
    codec_layer_release(&cl);
    cJSON_Delete(root);
    return 0;
}
