/*
 * ref_conv.c — the reference convolution for the core tests: seven nested loops straight
 * from the definition y[n,f,oh,ow] = b[f] + sum W[f,c,i,j] * x[n, g*Cg+c, oh*sh-pt+i*dh,
 * ow*sw-pl+j*dw] (zero outside), and its exact adjoints for dx, dW, db. Slow on purpose.
 */
#include "ref_conv.h"

#include <math.h>
#include <string.h>

int ref_geom_make(ref_geom *g, const cvd_conv2d_params *p, const int64_t x_shape[4])
{
    memset(g, 0, sizeof *g);
    g->N = x_shape[0];
    g->C = x_shape[1];
    g->H = x_shape[2];
    g->W = x_shape[3];
    g->F = p->out_channels;
    g->G = p->groups;
    g->kh = p->kh;
    g->kw = p->kw;
    g->sh = p->sh;
    g->sw = p->sw;
    g->dh = p->dh;
    g->dw = p->dw;
    if (p->pad_mode == CVD_PAD_EXPLICIT) {
        g->pt = g->pb = p->ph;
        g->pl = g->pr = p->pw;
    } else if (p->pad_mode == CVD_PAD_SAME) {
        int64_t th = p->dh * (p->kh - 1), tw = p->dw * (p->kw - 1);
        g->pt = th / 2;
        g->pb = th - th / 2;
        g->pl = tw / 2;
        g->pr = tw - tw / 2;
    }
    int64_t eh = g->H + g->pt + g->pb - g->dh * (g->kh - 1) - 1;
    int64_t ew = g->W + g->pl + g->pr - g->dw * (g->kw - 1) - 1;
    if (eh < 0 || ew < 0)
        return 0;
    g->OH = eh / g->sh + 1;
    g->OW = ew / g->sw + 1;
    return 1;
}

void ref_forward(const ref_geom *g, const double *x, const double *W, const double *b, double *y)
{
    const int64_t Cg = g->C / g->G, Fg = g->F / g->G;
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t f = 0; f < g->F; f++)
            for (int64_t oh = 0; oh < g->OH; oh++)
                for (int64_t ow = 0; ow < g->OW; ow++) {
                    double s = b ? b[f] : 0.0;
                    int64_t grp = f / Fg;
                    for (int64_t c = 0; c < Cg; c++)
                        for (int64_t i = 0; i < g->kh; i++)
                            for (int64_t j = 0; j < g->kw; j++) {
                                int64_t ih = oh * g->sh - g->pt + i * g->dh;
                                int64_t iw = ow * g->sw - g->pl + j * g->dw;
                                if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W)
                                    continue;
                                s += W[((f * Cg + c) * g->kh + i) * g->kw + j] *
                                     x[((n * g->C + grp * Cg + c) * g->H + ih) * g->W + iw];
                            }
                    y[((n * g->F + f) * g->OH + oh) * g->OW + ow] = s;
                }
}

void ref_backward(const ref_geom *g, const double *x, const double *W, const double *delta,
                  double *dx, double *dW, double *db)
{
    const int64_t Cg = g->C / g->G, Fg = g->F / g->G;
    if (dx)
        memset(dx, 0, (size_t)(g->N * g->C * g->H * g->W) * sizeof *dx);
    if (dW)
        memset(dW, 0, (size_t)(g->F * Cg * g->kh * g->kw) * sizeof *dW);
    if (db)
        memset(db, 0, (size_t)g->F * sizeof *db);
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t f = 0; f < g->F; f++)
            for (int64_t oh = 0; oh < g->OH; oh++)
                for (int64_t ow = 0; ow < g->OW; ow++) {
                    double d = delta[((n * g->F + f) * g->OH + oh) * g->OW + ow];
                    int64_t grp = f / Fg;
                    if (db)
                        db[f] += d;
                    for (int64_t c = 0; c < Cg; c++)
                        for (int64_t i = 0; i < g->kh; i++)
                            for (int64_t j = 0; j < g->kw; j++) {
                                int64_t ih = oh * g->sh - g->pt + i * g->dh;
                                int64_t iw = ow * g->sw - g->pl + j * g->dw;
                                if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W)
                                    continue;
                                int64_t wi = ((f * Cg + c) * g->kh + i) * g->kw + j;
                                int64_t xi = ((n * g->C + grp * Cg + c) * g->H + ih) * g->W + iw;
                                if (dW)
                                    dW[wi] += d * x[xi];
                                if (dx)
                                    dx[xi] += d * W[wi];
                            }
                }
}

static uint64_t next(ref_rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 2685821657736338717ull;
}

double ref_uniform(ref_rng *r)
{
    return (double)(next(r) >> 11) * 0x1.0p-52 - 1.0;
}

int64_t ref_int(ref_rng *r, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(next(r) % (uint64_t)(hi - lo + 1));
}

void ref_fill(ref_rng *r, double *a, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        a[i] = ref_uniform(r);
}

double ref_max_abs_diff(const double *a, const double *b, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        if (isnan(d))
            return INFINITY;
        if (d > m)
            m = d;
    }
    return m;
}

double ref_max_abs(const double *a, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        if (fabs(a[i]) > m)
            m = fabs(a[i]);
    return m;
}
