/*
 * rng.c — the deterministic stream behind cvd_conv2d_init: splitmix64 (Steele, Lea and
 * Flood; the reference constants), uniform doubles from its top 53 bits, and Box-Muller
 * normals. Integer-only up to the uniforms, so a seed gives the same bits everywhere;
 * the normals also depend on libm's log/sqrt/cos/sin (glibc's are used on Debian).
 */
#include "cvd_internal.h"

#include <math.h>

void cvd_rng_seed(cvd_rng *r, uint64_t seed)
{
    r->state = seed;
}

uint64_t cvd_rng_next(cvd_rng *r)
{
    uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double cvd_rng_uniform(cvd_rng *r)
{
    return (double)(cvd_rng_next(r) >> 11) * 0x1.0p-53;
}

void cvd_rng_normal2(cvd_rng *r, double *z0, double *z1)
{
    /* u1 in (0, 1] so the log is finite; u2 in [0, 1). */
    double u1 = 1.0 - cvd_rng_uniform(r);
    double u2 = cvd_rng_uniform(r);
    double radius = sqrt(-2.0 * log(u1));
    double theta = 2.0 * 3.14159265358979323846 * u2;
    *z0 = radius * cos(theta);
    *z1 = radius * sin(theta);
}
