/*
 * dgrad_impl.h — type template of dgrad.c (included once per dtype with T and SFX).
 * Generates cvd_dgrad_f32 and cvd_dgrad_f64.
 */

void SFX(cvd_dgrad)(const cvd_geom *g, const T *W, const T *delta, T *dx, T *ws, int64_t lo,
                    int64_t hi, int nt, int blocked, const T *pre)
{
    cvd_geom t, t1;
    cvd_dgrad_geom(g, &t);
    /* one group at a time for the blocked forward: the strides stay the layer's */
    t1 = t;
    t1.G = 1;
    const int64_t Fg = g->Fg, Cg = g->Cg, kh = g->kh, kw = g->kw, taps = kh * kw;
    T *Wt = ws, *rest = ws + (((size_t)Fg * (size_t)g->K + 15) & ~(size_t)15);
    for (int64_t grp = 0; grp < g->G; grp++) {
        const T *Wg = W + grp * Fg * g->K;
        if (blocked) { /* it blocks the weights flipped itself, straight from W */
            SFX(cvd_blocked_forward)
            (&t1, Wg, NULL, delta + grp * Fg * g->P, dx + grp * Cg * g->HW, ws, lo, hi, nt, 1,
             g->G == 1 ? pre : NULL);
            continue;
        }
        for (int64_t c = 0; c < Cg; c++)
            for (int64_t f = 0; f < Fg; f++)
                for (int64_t q = 0; q < taps; q++)
                    Wt[(c * Fg + f) * taps + q] = Wg[(f * Cg + c) * taps + (taps - 1 - q)];
        for (int64_t n = lo; n < hi; n++)
            SFX(cvd_direct_forward)
        (&t, Wt, NULL, delta + (n * g->F + grp * Fg) * g->P, dx + (n * g->C + grp * Cg) * g->HW,
         rest, nt);
    }
}
