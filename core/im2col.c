/*
 * im2col.c — im2col/col2im for float32 and float64 from one template (im2col_impl.h).
 * im2col overwrites its [K, P] block of col; col2im zeroes its image first, then
 * accumulates (it is the exact adjoint of im2col).
 */
#include "cvd_internal.h"

#include <string.h>

#define T      float
#define SFX(n) n##_f32
#include "im2col_impl.h"
#undef T
#undef SFX

#define T      double
#define SFX(n) n##_f64
#include "im2col_impl.h"
#undef T
#undef SFX
