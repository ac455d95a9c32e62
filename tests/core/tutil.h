/*
 * tutil.h — small helpers shared by the core tests: make a cvd_tensor from doubles in
 * either dtype (float32 inputs are rounded from the doubles), and read one back as doubles.
 */
#ifndef TESTS_CORE_TUTIL_H
#define TESTS_CORE_TUTIL_H

#include "../../core/cvd.h"

/* A tensor of dtype dt and the given shape holding src (converted); src may be NULL to
 * leave it zero-filled. Aborts the test on allocation failure. */
cvd_tensor tu_tensor(cvd_dtype dt, int rank, const int64_t *shape, const double *src);

/* Copies t's elements into dst as doubles. */
void tu_to_double(const cvd_tensor *t, double *dst);

/* Rounds every element of a to float and back (the inputs a float32 layer really sees). */
void tu_round_f32(double *a, int64_t n);

#endif /* TESTS_CORE_TUTIL_H */
