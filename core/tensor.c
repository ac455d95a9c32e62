/*
 * tensor.c — dense C-order tensors: checked element counts, allocation and release.
 * A tensor's data belongs to whoever called cvd_tensor_alloc; cvd_tensor_release frees it
 * and zeroes the struct, so releasing twice (or releasing a zeroed tensor) is harmless.
 */
#include "cvd_internal.h"

#include <string.h>

cvd_status cvd_shape_numel(int rank, const int64_t *shape, int64_t *numel, cvd_err *err)
{
    if (rank < 1 || rank > CVD_MAX_RANK)
        return cvd_err_setf(err, CVD_ERR_INVALID, "tensor rank %d is out of range 1..%d", rank,
                            CVD_MAX_RANK);
    int64_t n = 1;
    for (int i = 0; i < rank; i++) {
        if (shape[i] < 1)
            return cvd_err_setf(err, CVD_ERR_INVALID,
                                "tensor dim %d is %lld; every dim must be >= 1", i,
                                (long long)shape[i]);
        if (cvd_mul_i64(n, shape[i], &n))
            return cvd_err_setf(err, CVD_ERR_TOO_LARGE,
                                "tensor element count overflows (dim %d is %lld)", i,
                                (long long)shape[i]);
    }
    /* The byte size of the largest dtype must fit size_t too. */
    size_t bytes;
    if ((uint64_t)n > SIZE_MAX || cvd_mul_size((size_t)n, sizeof(double), &bytes))
        return cvd_err_setf(err, CVD_ERR_TOO_LARGE, "tensor of %lld elements is too large",
                            (long long)n);
    *numel = n;
    return CVD_OK;
}

cvd_status cvd_tensor_alloc(cvd_tensor *t, cvd_dtype dt, int rank, const int64_t *shape,
                            cvd_err *err)
{
    size_t es = cvd_dtype_size(dt);
    if (es == 0)
        return cvd_err_setf(err, CVD_ERR_INVALID, "unknown dtype %d", (int)dt);
    int64_t n = 0;
    cvd_status s = cvd_shape_numel(rank, shape, &n, err);
    if (s != CVD_OK)
        return s;
    /* 64-byte aligned, as a whole vector, so the kernels may store y past the caches.
     * n >= 1: the analyzer cannot see that cvd_err_setf (variadic, so never inlined by it)
     * returns its non-OK status, and follows a failed cvd_shape_numel as if it succeeded. */
    void *data = NULL;
    /* NOLINTNEXTLINE(clang-analyzer-optin.portability.UnixAPI) */
    if (posix_memalign(&data, 64, (size_t)n * es))
        data = NULL;
    if (!data)
        return cvd_err_setf(err, CVD_ERR_NOMEM, "cannot allocate a tensor of %lld elements",
                            (long long)n);
    memset(t, 0, sizeof *t);
    t->dtype = dt;
    t->rank = rank;
    memcpy(t->shape, shape, (size_t)rank * sizeof *shape);
    t->data = data;
    return CVD_OK;
}

void cvd_tensor_release(cvd_tensor *t)
{
    if (!t)
        return;
    free(t->data);
    memset(t, 0, sizeof *t);
}

int64_t cvd_tensor_numel(const cvd_tensor *t)
{
    if (t->rank < 1 || t->rank > CVD_MAX_RANK)
        return 0;
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++)
        n *= t->shape[i];
    return n;
}
