/*
 * xs_impl.h — template of the padded, phase-split copy of one image and group that the
 * own kernels read (direct.c, wgrad.c), included after simd.h. Generates direct_fill with
 * SFX (direct_fill_avx512_f32 ... direct_fill_avx2_f64). Layout: see direct.c.
 */

/* xs <- x_g [Cg, H, W] zero-padded and split by column phase (every element written). */
static SIMD_TARGET void SFX(direct_fill)(const cvd_geom *g, const T *x_g, T *xs, int64_t wq)
{
    const int64_t sw = g->sw, W = g->W;
    for (int64_t c = 0; c < g->Cg; c++) {
        for (int64_t ph = 0; ph < sw; ph++) {
            /* columns q of this phase that read x: pl <= q*sw + ph < pl + W */
            int64_t q0 = g->pl > ph ? (g->pl - ph + sw - 1) / sw : 0;
            int64_t q1 = (g->pl + W - ph + sw - 1) / sw;
            q0 = q0 < wq ? q0 : wq;
            q1 = q1 < wq ? q1 : wq;
            for (int64_t r = 0; r < g->Hp; r++) {
                T *d = xs + ((c * sw + ph) * g->Hp + r) * wq;
                const int64_t h = r - g->pt;
                if (h < 0 || h >= g->H || q1 <= q0) {
                    memset(d, 0, (size_t)wq * sizeof(T));
                    continue;
                }
                const T *s = x_g + (c * g->H + h) * W + q0 * sw + ph - g->pl;
                memset(d, 0, (size_t)q0 * sizeof(T));
                if (sw == 1) {
                    memcpy(d + q0, s, (size_t)(q1 - q0) * sizeof(T));
                } else if (sw == 2) {
                    /* s has avail elements left in its row; a vector step reads 2*VL */
                    const int64_t n = q1 - q0, avail = W - (q0 * 2 + ph - g->pl);
                    int64_t q = 0;
                    for (; 2 * (q + VL) <= avail && q + VL <= n; q += VL)
                        V_STORE(d + q0 + q, V_EVENS(V_LOAD(s + 2 * q), V_LOAD(s + 2 * q + VL)));
                    for (; q < n; q++)
                        d[q0 + q] = s[2 * q];
                } else {
                    for (int64_t q = 0; q < q1 - q0; q++)
                        d[q0 + q] = s[q * sw];
                }
                memset(d + q1, 0, (size_t)(wq - q1) * sizeof(T));
            }
        }
    }
}
