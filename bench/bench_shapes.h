/*
 * bench_shapes.h — the benchmark's layer shapes (issue #2: N,C,H,W,F,k,stride,pad; issue
 * #14 added groups and dilation, 0 meaning 1), the
 * BENCH_SHAPES filter and the BENCH_THREADS / BENCH_REPS settings, shared by bench_core and
 * bench_peak (each a single-file program).
 */
#ifndef BENCH_SHAPES_H
#define BENCH_SHAPES_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct shape {
    const char *name;
    int64_t N, C, H, W, F, k, stride, pad;
    int64_t groups, dil; /* 0: 1 */
} shape;

static const shape shapes[] = {
    {"a_notebook", 1, 1, 4, 4, 2, 3, 1, 0},
    {"b_small", 8, 3, 32, 32, 16, 3, 1, 1},
    {"c_resnet_mid", 8, 64, 56, 56, 64, 3, 1, 1},
    {"d_resnet_deep", 8, 256, 14, 14, 256, 3, 1, 1},
    {"e_stem", 4, 3, 224, 224, 64, 7, 2, 3},
    {"f_pointwise", 8, 128, 28, 28, 256, 1, 1, 0},
    {"g_depthwise", 8, 128, 56, 56, 128, 3, 1, 1, 128, 1},
    {"h_strided", 8, 64, 56, 56, 128, 3, 2, 1},
    {"i_dilated", 8, 64, 56, 56, 64, 3, 1, 2, 1, 2},
    {"j_single224", 1, 64, 224, 224, 64, 3, 1, 1},
};

static inline int64_t shape_groups(const shape *s)
{
    return s->groups > 0 ? s->groups : 1;
}

static inline int64_t shape_dil(const shape *s)
{
    return s->dil > 0 ? s->dil : 1;
}

/* Output rows (and columns: the shapes are square). */
static inline int64_t shape_out(const shape *s)
{
    return (s->H + 2 * s->pad - shape_dil(s) * (s->k - 1) - 1) / s->stride + 1;
}

/* Whether name is in the comma-separated list (NULL or empty list: everything). */
static int selected(const char *list, const char *name)
{
    if (!list || !*list)
        return 1;
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && !strncmp(p, name, n))
            return 1;
        if (!end)
            break;
        p = end + 1;
    }
    return 0;
}

/* A positive count from the environment variable name, else dflt. */
static int env_count(const char *name, int dflt)
{
    const char *v = getenv(name);
    char *end;
    long n = v ? strtol(v, &end, 10) : 0;
    return v && *v && !*end && n > 0 && n <= 1 << 20 ? (int)n : dflt;
}

/* BENCH_THREADS, default the online cores. */
static int bench_threads(void)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return env_count("BENCH_THREADS", cores > 0 && cores <= 1 << 20 ? (int)cores : 1);
}

#endif /* BENCH_SHAPES_H */
