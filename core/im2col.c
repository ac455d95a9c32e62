/*
 * im2col.c — im2col/col2im for float32 and float64 from one template (im2col_impl.h).
 * im2col overwrites its [K, P] block of col; col2im zeroes its image first, then
 * accumulates (it is the exact adjoint of im2col).
 */
#include "cvd_internal.h"

#include <string.h>

/* gcc 12 at -O2 vectorises only loops whose trip count needs no epilogue; col2im's row
 * accumulation (and the strided gathers) need the full vectoriser: 3x faster. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif

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
