/*
 * ttensor.h — the tests' own view of the contract's tensors, written independently of the
 * server's codec: read a JSON tensor in any of the three forms (nested, flat, base64) into
 * float64 values plus shape; write one in any form for a request body; strict RFC 4648
 * base64; and a naive direct convolution (7 nested loops) to compute expected values.
 * Ownership: a ttensor owns `data` (tt_free); the tt_json_* writers return malloc'd text.
 */
#ifndef ITEST_TTENSOR_H
#define ITEST_TTENSOR_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

typedef enum { TT_NESTED = 0, TT_FLAT, TT_BASE64 } tt_form;

#define TT_MAX_RANK 8

typedef struct ttensor {
    int rank;
    int64_t shape[TT_MAX_RANK];
    size_t n;     /* element count */
    double *data; /* C order */
    tt_form form; /* the form it was read in */
    int bits;     /* base64: 32 or 64 ("dtype"), 0 when dtype was absent; else 0 */
} ttensor;

/* Reads node as a tensor. 0, or -1 with the reason in why (a test failure message). */
int tt_from_json(const cJSON *node, ttensor *t, char *why, size_t whylen);
/* Copies of values/shape into a fresh ttensor (form nested). */
int tt_make(ttensor *t, int rank, const int64_t *shape, const double *values);
void tt_free(ttensor *t);

/* Shape as "(1,2,3)" into out. */
void tt_shape_str(int rank, const int64_t *shape, char *out, size_t cap);
/* Shapes equal and every |got - want| <= tol. 0, or -1 with why. */
int tt_compare(const ttensor *got, const ttensor *want, double tol, char *why, size_t whylen);
double tt_max_abs(const ttensor *t);

/* Request-body text for values in a form. bits (base64 only): 32 or 64; with_dtype 0 leaves
 * "dtype" out (the layer's dtype applies). Numbers print with %.17g (exact round trip). */
char *tt_json(const double *v, int rank, const int64_t *shape, tt_form form, int bits,
              int with_dtype);

/* Standard base64 with padding; out needs 4*((n+2)/3)+1 bytes. Returns the length. */
size_t b64_encode(const unsigned char *in, size_t n, char *out);
/* Strict decode (standard alphabet, length a multiple of 4, '=' only at the end).
 * 0 with *out malloc'd (caller frees), or -1. */
int b64_decode(const char *in, size_t n, unsigned char **out, size_t *outlen);

/* Geometry for the naive convolution; padding pt/pl is the top/left padding actually
 * applied (the bottom/right side only matters through OH/OW). */
typedef struct ref_conv {
    int64_t C, F, groups;
    int64_t kh, kw, sh, sw, dh, dw, pt, pl;
} ref_conv;

/* y (N, F, OH, OW) = conv(x (N, C, H, W), w (F, C/groups, kh, kw)) + b (F, or NULL). */
void ref_conv_forward(const ref_conv *p, const double *x, int64_t N, int64_t H, int64_t W,
                      const double *w, const double *b, int64_t OH, int64_t OW, double *y);

#endif /* ITEST_TTENSOR_H */
