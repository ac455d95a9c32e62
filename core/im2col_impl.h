/*
 * im2col_impl.h — type template for im2col/col2im (included by im2col.c once per dtype
 * with T and SFX defined). Caffe's loop order: one row of col per (channel, kernel row,
 * kernel column), written front to back; padded input rows are written as zeros whole, and
 * within a row the valid output columns are computed once so the inner loop has no bounds
 * test (a memcpy when the stride is 1). The _band forms do a block of channels and rows so
 * callers can split one image across threads without two threads writing the same element.
 */

/* Output columns [lo, hi) of kernel column kj whose input column lies inside [0, W). */
static void SFX(col_range)(const cvd_geom *g, int64_t kj, int64_t *lo, int64_t *hi)
{
    int64_t iw0 = kj * g->dw - g->pl; /* input column of output column 0 */
    int64_t l = iw0 >= 0 ? 0 : (-iw0 + g->sw - 1) / g->sw;
    int64_t h = iw0 <= g->W - 1 ? (g->W - 1 - iw0) / g->sw + 1 : 0;
    if (l > g->OW)
        l = g->OW;
    if (h > g->OW)
        h = g->OW;
    if (h < l)
        h = l;
    *lo = l;
    *hi = h;
}

/* im2col of channels c0 .. c1, output rows oh0 .. oh1, where col's column 0 is the first
 * pixel of output row base (base 0: col spans the image; base oh0: col holds the band). */
static void SFX(im2col_core)(const cvd_geom *g, const T *x_g, T *col, int64_t ldc, int64_t c0,
                             int64_t c1, int64_t oh0, int64_t oh1, int64_t base)
{
    const int64_t OW = g->OW, H = g->H, W = g->W, sw = g->sw;
    /* col: [Cg*kh*kw, P] with row stride ldc, rows of channels c0 .. c1, columns
     * oh0*OW .. oh1*OW; x_g: [Cg, H, W] */
    for (int64_t c = c0; c < c1; c++) {
        const T *x_c = x_g + c * g->HW;
        for (int64_t ki = 0; ki < g->kh; ki++) {
            for (int64_t kj = 0; kj < g->kw; kj++) {
                int64_t lo, hi;
                SFX(col_range)(g, kj, &lo, &hi);
                const int64_t iw0 = kj * g->dw - g->pl;
                T *dst = col + ((c * g->kh + ki) * g->kw + kj) * ldc + (oh0 - base) * OW;
                int64_t ih = ki * g->dh - g->pt + oh0 * g->sh;
                for (int64_t oh = oh0; oh < oh1; oh++, ih += g->sh, dst += OW) {
                    if ((uint64_t)ih >= (uint64_t)H) {
                        memset(dst, 0, (size_t)OW * sizeof(T));
                        continue;
                    }
                    const T *src = x_c + ih * W;
                    for (int64_t ow = 0; ow < lo; ow++)
                        dst[ow] = 0;
                    if (sw == 1) {
                        memcpy(dst + lo, src + iw0 + lo, (size_t)(hi - lo) * sizeof(T));
                    } else {
                        for (int64_t ow = lo; ow < hi; ow++)
                            dst[ow] = src[iw0 + ow * sw];
                    }
                    for (int64_t ow = hi; ow < OW; ow++)
                        dst[ow] = 0;
                }
            }
        }
    }
}

void SFX(cvd_im2col_band)(const cvd_geom *g, const T *x_g, T *col, int64_t ldc, int64_t c0,
                          int64_t c1, int64_t oh0, int64_t oh1)
{
    SFX(im2col_core)(g, x_g, col, ldc, c0, c1, oh0, oh1, 0);
}

void SFX(cvd_im2col_rows)(const cvd_geom *g, const T *x_g, T *col, int64_t ldc, int64_t nc,
                          int64_t oh0, int64_t oh1)
{
    SFX(im2col_core)(g, x_g, col, ldc, 0, nc, oh0, oh1, oh0);
}

void SFX(cvd_col2im_rows)(const cvd_geom *g, const T *col, int64_t ldc, T *x_g, int64_t nc,
                          int64_t oh0, int64_t oh1, int64_t ih0, int64_t ih1)
{
    const int64_t OW = g->OW, W = g->W, sw = g->sw;
    for (int64_t c = 0; c < nc; c++) {
        T *x_c = x_g + c * g->HW;
        for (int64_t ki = 0; ki < g->kh; ki++) {
            for (int64_t kj = 0; kj < g->kw; kj++) {
                int64_t lo, hi;
                SFX(col_range)(g, kj, &lo, &hi);
                const int64_t iw0 = kj * g->dw - g->pl;
                const T *src = col + ((c * g->kh + ki) * g->kw + kj) * ldc;
                int64_t ih = ki * g->dh - g->pt + oh0 * g->sh;
                for (int64_t oh = oh0; oh < oh1; oh++, ih += g->sh, src += OW) {
                    if (ih < ih0 || ih >= ih1)
                        continue;
                    T *row = x_c + ih * W;
                    if (sw == 1) {
                        T *dst = row + iw0 + lo;
                        for (int64_t i = 0; i < hi - lo; i++)
                            dst[i] += src[lo + i];
                    } else {
                        for (int64_t ow = lo; ow < hi; ow++)
                            row[iw0 + ow * sw] += src[ow];
                    }
                }
            }
        }
    }
}

void SFX(cvd_col2im_band)(const cvd_geom *g, const T *col, int64_t ldc, T *x_g, int64_t c0,
                          int64_t c1, int64_t ih0, int64_t ih1)
{
    const int64_t OH = g->OH, OW = g->OW, W = g->W, sw = g->sw;
    for (int64_t c = c0; c < c1; c++)
        memset(x_g + c * g->HW + ih0 * W, 0, (size_t)((ih1 - ih0) * W) * sizeof(T));
    /* col: [Cg*kh*kw, P] with row stride ldc; x_g: [Cg, H, W], channels c0 .. c1, rows
     * ih0 .. ih1 */
    for (int64_t c = c0; c < c1; c++) {
        T *x_c = x_g + c * g->HW;
        for (int64_t ki = 0; ki < g->kh; ki++) {
            for (int64_t kj = 0; kj < g->kw; kj++) {
                int64_t lo, hi;
                SFX(col_range)(g, kj, &lo, &hi);
                const int64_t iw0 = kj * g->dw - g->pl;
                const T *src = col + ((c * g->kh + ki) * g->kw + kj) * ldc;
                int64_t ih = ki * g->dh - g->pt;
                for (int64_t oh = 0; oh < OH; oh++, ih += g->sh, src += OW) {
                    if (ih < ih0 || ih >= ih1)
                        continue;
                    T *row = x_c + ih * W;
                    if (sw == 1) {
                        T *dst = row + iw0 + lo;
                        for (int64_t i = 0; i < hi - lo; i++)
                            dst[i] += src[lo + i];
                    } else {
                        for (int64_t ow = lo; ow < hi; ow++)
                            row[iw0 + ow * sw] += src[ow];
                    }
                }
            }
        }
    }
}
