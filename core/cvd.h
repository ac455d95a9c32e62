/*
 * cvd.h — the convd core: a 2-D convolution layer (PyTorch nn.Conv2d semantics),
 * forward and backward, float32 and float64, im2col/col2im + GEMM on OpenBLAS.
 *
 * This is the only public header of core/. It has no HTTP or JSON dependency.
 *
 * Contract, for every function below:
 *  - A function that can fail returns a cvd_status and takes `cvd_err *err` last; `err` may
 *    be NULL. On failure err->msg names the field and, for shapes, expected vs actual.
 *  - A failed call changes nothing: no layer state, no cache, no weights.
 *  - Sizes are int64_t, byte counts size_t; every product of sizes is overflow-checked.
 *  - Ownership: `_create`/`_alloc` give the caller an owned object; `_free(NULL)` and
 *    `cvd_tensor_release` of a zeroed tensor are no-ops. A `const T *` argument is borrowed
 *    for the call only and never kept (forward copies x into the layer's cache).
 *  - Threads: one layer is used by one thread at a time; distinct layers may be used in
 *    parallel. Nothing here aborts or exits on bad input.
 */
#ifndef CVD_H
#define CVD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CVD_VERSION "1.0.0"

typedef enum {
    CVD_OK = 0,
    CVD_ERR_NOMEM,     /* an allocation failed */
    CVD_ERR_INVALID,   /* bad layer field or argument */
    CVD_ERR_SHAPE,     /* a well-formed tensor of the wrong shape, or input smaller than kernel */
    CVD_ERR_NO_CACHE,  /* backward without a cached forward input */
    CVD_ERR_NONFINITE, /* a result (y, a gradient, or an SGD step) is not finite */
    CVD_ERR_TOO_LARGE  /* a size product overflows, or exceeds a limit */
} cvd_status;

typedef struct cvd_err {
    char msg[320];
} cvd_err;

/* A short constant name for a status ("ok", "invalid", ...). Never NULL. */
const char *cvd_strerror(cvd_status s);

typedef enum { CVD_F32 = 1, CVD_F64 = 2 } cvd_dtype;

/* Bytes per element (4 or 8); 0 for an unknown dtype. */
size_t cvd_dtype_size(cvd_dtype dt);
/* "float32" / "float64"; NULL for an unknown dtype. */
const char *cvd_dtype_name(cvd_dtype dt);

#define CVD_MAX_RANK 4

/* A dense C-order tensor. Transparent so codecs can fill `data` directly. */
typedef struct cvd_tensor {
    cvd_dtype dtype;
    int rank;                    /* 1..4 */
    int64_t shape[CVD_MAX_RANK]; /* elements per dim, C order; unused dims are 0 */
    void *data;                  /* owned by whoever allocated it (see cvd_tensor_alloc) */
} cvd_tensor;

/* Product of the dims into *numel. CVD_ERR_INVALID if rank is out of 1..4 or a dim < 1,
 * CVD_ERR_TOO_LARGE if the product (or its byte size) overflows. */
cvd_status cvd_shape_numel(int rank, const int64_t *shape, int64_t *numel, cvd_err *err);

/* Allocates t->data (uninitialised) for the given dtype and shape and fills t.
 * The caller owns t->data and frees it with cvd_tensor_release. */
cvd_status cvd_tensor_alloc(cvd_tensor *t, cvd_dtype dt, int rank, const int64_t *shape,
                            cvd_err *err);
/* Frees t->data (if any) and zeroes t. */
void cvd_tensor_release(cvd_tensor *t);
/* Number of elements (the shape was validated when the tensor was made). */
int64_t cvd_tensor_numel(const cvd_tensor *t);

typedef enum {
    CVD_PAD_EXPLICIT = 0, /* pad_h / pad_w on both sides */
    CVD_PAD_VALID,        /* no padding */
    CVD_PAD_SAME          /* stride 1 only: total d*(k-1), top/left floor half, rest bottom/right */
} cvd_pad_mode;

/* A layer's hyper-parameters. Value type: fill with designated initialisers. */
typedef struct cvd_conv2d_params {
    int64_t in_channels;  /* C */
    int64_t out_channels; /* F */
    int64_t groups;       /* C and F both divisible by groups */
    int64_t kh, kw;       /* kernel */
    int64_t sh, sw;       /* stride */
    int64_t dh, dw;       /* dilation */
    cvd_pad_mode pad_mode;
    int64_t ph, pw; /* used with CVD_PAD_EXPLICIT only */
    int bias;       /* 0: no b, no db */
    cvd_dtype dtype;
} cvd_conv2d_params;

/* Checks every field (>= 1 where a size, pad >= 0, divisibility, "same" only with stride 1,
 * dtype known, every size <= 2^31-1). CVD_ERR_INVALID with a message naming the field;
 * CVD_ERR_TOO_LARGE if C/groups*kh*kw exceeds INT_MAX (a BLAS dimension) or W's size
 * overflows. */
cvd_status cvd_conv2d_params_check(const cvd_conv2d_params *p, cvd_err *err);

/* The padding actually applied on each side (resolves VALID and SAME). */
void cvd_conv2d_padding(const cvd_conv2d_params *p, int64_t *top, int64_t *bottom, int64_t *left,
                        int64_t *right);

/* Output shape (N, F, OH, OW) for an input (N, C, H, W). CVD_ERR_SHAPE if C does not match
 * in_channels or the input is smaller than the dilated kernel; CVD_ERR_INVALID for dims < 1;
 * CVD_ERR_TOO_LARGE for a dim over 2^31-1, H*W or OH*OW over INT_MAX, or sizes that overflow. */
cvd_status cvd_conv2d_output_shape(const cvd_conv2d_params *p, const int64_t x_shape[4],
                                   int64_t y_shape[4], cvd_err *err);

/* Peak bytes a layer needs to run forward+backward on an input of shape x_shape:
 * weights and bias (and the same again for gradients/SGD scratch), the cached input,
 * and the core's workspace (see conv2d.c for the formula). The caller's own x, y,
 * delta and gradient tensors are not included. The daemon checks this against its
 * per-session limit before anything is allocated. */
cvd_status cvd_conv2d_memory_need(const cvd_conv2d_params *p, const int64_t x_shape[4],
                                  size_t *bytes, cvd_err *err);

typedef struct cvd_conv2d cvd_conv2d; /* opaque: params, W, b, cached x, workspace */

/* Creates a layer with W = 0 and b = 0. Checks p (as cvd_conv2d_params_check). */
cvd_status cvd_conv2d_create(const cvd_conv2d_params *p, cvd_conv2d **out, cvd_err *err);
void cvd_conv2d_free(cvd_conv2d *l);

const cvd_conv2d_params *cvd_conv2d_get_params(const cvd_conv2d *l);

typedef enum {
    CVD_INIT_KAIMING_UNIFORM = 0, /* PyTorch default: W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
    CVD_INIT_NORMAL,              /* W ~ N(0, 1) (the notebook's randn), b = 0 */
    CVD_INIT_ZEROS
} cvd_init_scheme;

/* Fills W and b deterministically from seed (splitmix64 + Box-Muller; identical on every
 * machine). CVD_ERR_INVALID for an unknown scheme. */
cvd_status cvd_conv2d_init(cvd_conv2d *l, cvd_init_scheme scheme, uint64_t seed, cvd_err *err);

/* Copies W (and b, if non-NULL; NULL leaves b as is) into the layer, converting dtype.
 * W may have any rank whose element count is F*(C/groups)*kh*kw and whose shape is
 * (F, C/g, kh, kw), or (F, kh, kw) when C/g == 1; b must have F elements, shape (F) or
 * (F, 1). Values must be finite. CVD_ERR_INVALID (naming "W" or "b") otherwise; a b on
 * a layer without bias is CVD_ERR_INVALID. */
cvd_status cvd_conv2d_set_weights(cvd_conv2d *l, const cvd_tensor *W, const cvd_tensor *b,
                                  cvd_err *err);

/* Borrowed views of the layer's weights: W is (F, C/g, kh, kw), b is (F) or NULL without
 * bias. Valid until the layer is freed; contents change with set_weights/init/SGD. */
const cvd_tensor *cvd_conv2d_weight(const cvd_conv2d *l);
const cvd_tensor *cvd_conv2d_bias(const cvd_conv2d *l);

/* Whether a forward input is cached, and its shape (when cached). */
int cvd_conv2d_has_cache(const cvd_conv2d *l, int64_t x_shape[4]);

/* The cached input's elements (C order, the layer's dtype, the shape has_cache gives), or
 * NULL when nothing is cached. Borrowed: valid until the next forward, set_cache or free. */
const void *cvd_conv2d_cache_data(const cvd_conv2d *l);

/* Bytes the layer holds now: itself, W, b, the cached input, workspace and SGD scratch. */
size_t cvd_conv2d_bytes(const cvd_conv2d *l);

/* Frees the workspace and SGD scratch (they are allocated again by the next call that
 * needs them): what an idle layer keeps is then W, b and the cached input. */
void cvd_conv2d_trim(cvd_conv2d *l);

/* Puts x (rank 4, the layer's dtype, C = in_channels, at least the kernel's size) into the
 * cache as a forward would, without computing y: restores a cache saved elsewhere. */
cvd_status cvd_conv2d_set_cache(cvd_conv2d *l, const cvd_tensor *x, cvd_err *err);

#define CVD_FWD_NO_CACHE 1u /* leave the cache as it is */

/* y = conv(x, W) + b. x is rank 4 (N, C, H, W) in the layer's dtype; y must be allocated by
 * the caller with the shape from cvd_conv2d_output_shape and the layer's dtype. Unless
 * CVD_FWD_NO_CACHE, x is copied into the layer's cache, but only once y is known to be
 * finite (CVD_ERR_NONFINITE otherwise; y's contents are then unspecified). */
cvd_status cvd_conv2d_forward(cvd_conv2d *l, const cvd_tensor *x, cvd_tensor *y, unsigned flags,
                              cvd_err *err);

#define CVD_NEED_DX  1u
#define CVD_NEED_DW  2u
#define CVD_NEED_DB  4u
#define CVD_NEED_ALL (CVD_NEED_DX | CVD_NEED_DW | CVD_NEED_DB)

typedef struct cvd_backward_opts {
    unsigned need; /* CVD_NEED_* mask, non-zero; DB needs bias */
    int sgd;       /* 1: after computing, W -= lr*dW, b -= lr*db (both, whatever `need`) */
    double lr;     /* finite, >= 0; used when sgd */
} cvd_backward_opts;

/* Gradients of the layer at input x (or, when x is NULL, at the cached forward input)
 * for upstream gradient delta (N, F, OH, OW), using the layer's current W.
 * dx (N, C, H, W), dW (F, C/g, kh, kw), db (F) are caller-allocated in the layer's dtype;
 * each may be NULL when not in opts->need and must be non-NULL when it is. dW and db may
 * also take the other shapes set_weights accepts ((F, kh, kw) when C/g == 1; (F, 1)).
 * Errors: CVD_ERR_NO_CACHE (x NULL and nothing cached), CVD_ERR_SHAPE (delta not y's shape,
 * dx not x's), CVD_ERR_INVALID (bad opts, a missing output, a wrong dtype, dW/db of a wrong
 * shape), CVD_ERR_NONFINITE (a gradient or the SGD result is not finite: W and b are left as
 * they were). */
cvd_status cvd_conv2d_backward(cvd_conv2d *l, const cvd_tensor *x, const cvd_tensor *delta,
                               const cvd_backward_opts *opts, cvd_tensor *dx, cvd_tensor *dW,
                               cvd_tensor *db, cvd_err *err);

/* Threads one forward or backward may use (clamped to 1 .. 64; default, until set: the
 * CPUs in the process's affinity mask). The core splits the work across its own threads and calls
 * OpenBLAS with one thread each (it sets OpenBLAS's count to 1); helper threads come from one
 * process-wide budget of n-1, so layers used from several threads at once share the cores.
 * Results may depend on n (dW sums per-thread partials; how GEMMs are cut) but never on
 * scheduling. Process-wide;
 * call once at start-up, before other threads run: it also shortens how long OpenBLAS's
 * idle threads spin (OPENBLAS_THREAD_TIMEOUT=16 unless the environment sets it; see
 * parallel.c), which needs setenv. */
void cvd_set_num_threads(int n);
int cvd_get_num_threads(void);

#ifdef __cplusplus
}
#endif

#endif /* CVD_H */
