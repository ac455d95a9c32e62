/*
 * tutil.c — tensor helpers for the core tests (see tutil.h).
 */
#include "tutil.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

cvd_tensor tu_tensor(cvd_dtype dt, int rank, const int64_t *shape, const double *src)
{
    cvd_tensor t;
    cvd_err e;
    assert_int_equal(cvd_tensor_alloc(&t, dt, rank, shape, &e), CVD_OK);
    int64_t n = cvd_tensor_numel(&t);
    for (int64_t i = 0; i < n; i++) {
        double v = src ? src[i] : 0.0;
        if (dt == CVD_F32)
            ((float *)t.data)[i] = (float)v;
        else
            ((double *)t.data)[i] = v;
    }
    return t;
}

void tu_to_double(const cvd_tensor *t, double *dst)
{
    int64_t n = cvd_tensor_numel(t);
    for (int64_t i = 0; i < n; i++)
        dst[i] = t->dtype == CVD_F32 ? (double)((const float *)t->data)[i]
                                     : ((const double *)t->data)[i];
}

void tu_round_f32(double *a, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        a[i] = (double)(float)a[i];
}
