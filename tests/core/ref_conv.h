/*
 * ref_conv.h — test-only reference convolution: the definition written as plain loops in
 * double (forward, and backward from the chain rule), with its own padding resolution so
 * it checks the core rather than sharing its code. Also a tiny seeded generator for data.
 */
#ifndef TESTS_CORE_REF_CONV_H
#define TESTS_CORE_REF_CONV_H

#include "../../core/cvd.h"

#include <stdint.h>

typedef struct ref_geom {
    int64_t N, C, H, W, F, G, kh, kw, sh, sw, dh, dw;
    int64_t pt, pb, pl, pr;
    int64_t OH, OW;
} ref_geom;

/* Resolves padding and output size; returns 0 if the input is too small for the kernel. */
int ref_geom_make(ref_geom *g, const cvd_conv2d_params *p, const int64_t x_shape[4]);

/* y (N,F,OH,OW) = conv(x, W) + b (b may be NULL). */
void ref_forward(const ref_geom *g, const double *x, const double *W, const double *b, double *y);

/* dx (N,C,H,W), dW (F,C/G,kh,kw), db (F) for upstream delta (N,F,OH,OW). Any output may be
 * NULL. Each is overwritten. */
void ref_backward(const ref_geom *g, const double *x, const double *W, const double *delta,
                  double *dx, double *dW, double *db);

/* Deterministic test data (xorshift64*): uniform in [-1, 1) and integers in [lo, hi]. */
typedef struct ref_rng {
    uint64_t s;
} ref_rng;
double ref_uniform(ref_rng *r);
int64_t ref_int(ref_rng *r, int64_t lo, int64_t hi);
void ref_fill(ref_rng *r, double *a, int64_t n);

/* max |a - b| and max |b| over n elements. */
double ref_max_abs_diff(const double *a, const double *b, int64_t n);
double ref_max_abs(const double *a, int64_t n);

#endif /* TESTS_CORE_REF_CONV_H */
