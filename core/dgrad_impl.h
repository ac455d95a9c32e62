/*
 * dgrad_impl.h — type template of dgrad.c (included once per dtype with T and SFX).
 * Generates flip_job, flip_part, cvd_dgrad_flip_f32/_f64 and cvd_dgrad_f32/_f64.
 */

/* Wt[c][f][q] = W_g[f][c][taps-1-q] for channels c0 .. c1-1: writes in order, reads a
 * row of taps from each filter. */
static void SFX(flip_range)(const cvd_geom *g, const T *W_g, T *Wt, int64_t c0, int64_t c1)
{
    const int64_t Fg = g->Fg, Cg = g->Cg, taps = g->kh * g->kw;
    for (int64_t c = c0; c < c1; c++)
        for (int64_t f = 0; f < Fg; f++)
            for (int64_t q = 0; q < taps; q++)
                Wt[(c * Fg + f) * taps + q] = W_g[(f * Cg + c) * taps + (taps - 1 - q)];
}

typedef struct SFX(flip_job) {
    const cvd_geom *g;
    const T *W;
    T *Wt;
} SFX(flip_job);

static void SFX(flip_part)(void *arg, int task, int ntasks)
{
    const SFX(flip_job) *j = arg;
    const int64_t Cg = j->g->Cg;
    SFX(flip_range)(j->g, j->W, j->Wt, Cg * task / ntasks, Cg * (task + 1) / ntasks);
}

void SFX(cvd_dgrad_flip)(const cvd_geom *g, const T *W, T *Wt, int nt)
{
    SFX(flip_job) j = {g, W, Wt};
    const int tasks = (int)(nt < g->Cg ? nt : g->Cg);
    cvd_parallel_run(tasks, tasks, SFX(flip_part), &j);
}

int SFX(cvd_dgrad)(const cvd_geom *g, const T *W, const T *delta, T *dx, T *ws, int64_t lo,
                   int64_t hi, int nt, int blocked, const T *pre)
{
    cvd_geom t, t1;
    cvd_dgrad_geom(g, &t);
    /* one group at a time for the blocked forward: the strides stay the layer's */
    t1 = t;
    t1.G = 1;
    const int64_t Fg = g->Fg, Cg = g->Cg;
    T *Wt = ws, *rest = ws + (((size_t)Fg * (size_t)g->K + 15) & ~(size_t)15);
    int finite = 1;
    for (int64_t grp = 0; grp < g->G; grp++) {
        const T *Wg = W + grp * Fg * g->K;
        if (blocked) { /* it blocks the weights flipped itself, straight from W */
            finite &= SFX(cvd_blocked_forward)(&t1, Wg, NULL, delta + grp * Fg * g->P,
                                               dx + grp * Cg * g->HW, ws, lo, hi, nt, 1,
                                               g->G == 1 ? pre : NULL);
            continue;
        }
        const T *Wf = g->G == 1 && pre ? pre : Wt;
        if (Wf == Wt)
            SFX(flip_range)(g, Wg, Wt, 0, Cg);
        for (int64_t n = lo; n < hi; n++)
            finite &= SFX(cvd_direct_forward)(&t, Wf, NULL, delta + (n * g->F + grp * Fg) * g->P,
                                              dx + (n * g->C + grp * Cg) * g->HW, rest, nt);
    }
    return finite;
}
