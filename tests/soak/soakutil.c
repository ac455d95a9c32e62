/*
 * soakutil.c — the helpers of soakutil.h: a monotonic clock, VmRSS from /proc/PID/status,
 * tensors read from nested arrays or {"shape","data"} objects, and the notebook fixture.
 */
#include "soakutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double soak_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

long soak_rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static long walk(const cJSON *n, double *out, long cap, long at)
{
    if (cJSON_IsNumber(n)) {
        if (at >= cap)
            return -1;
        out[at] = n->valuedouble;
        return at + 1;
    }
    if (!cJSON_IsArray(n))
        return -1;
    for (const cJSON *c = n->child; c; c = c->next) {
        at = walk(c, out, cap, at);
        if (at < 0)
            return -1;
    }
    return at;
}

long soak_tensor(const cJSON *node, double *out, long cap)
{
    if (cJSON_IsObject(node))
        node = cJSON_GetObjectItemCaseSensitive(node, "data");
    if (!cJSON_IsArray(node))
        return -1;
    return walk(node, out, cap, 0);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    if (s)
        s[n] = '\0';
    fclose(f);
    return s;
}

static int expect(const cJSON *root, const char *name, double *out, long n)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "expected");
    return soak_tensor(cJSON_GetObjectItemCaseSensitive(e, name), out, n) == n ? 0 : -1;
}

int soak_notebook_load(const char *dir, soak_notebook *nb)
{
    memset(nb, 0, sizeof *nb);
    char path[1024];
    snprintf(path, sizeof path, "%s/notebook.json", dir);
    char *text = slurp(path);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!root) {
        fprintf(stderr, "soak: cannot read %s\n", path);
        return -1;
    }
    nb->W = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(root, "W"));
    nb->x = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(root, "x"));
    nb->delta = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(root, "delta"));
    int bad = !nb->W || !nb->x || !nb->delta || expect(root, "y", nb->y, 8) ||
              expect(root, "dx", nb->dx, 16) || expect(root, "dW", nb->dW, 18) ||
              expect(root, "db", nb->db, 2);
    cJSON_Delete(root);
    if (bad) {
        fprintf(stderr, "soak: %s does not hold the notebook case\n", path);
        soak_notebook_free(nb);
        return -1;
    }
    return 0;
}

void soak_notebook_free(soak_notebook *nb)
{
    cJSON_free(nb->W);
    cJSON_free(nb->x);
    cJSON_free(nb->delta);
    memset(nb, 0, sizeof *nb);
}

int soak_equal(const double *a, const double *want, long n)
{
    for (long i = 0; i < n; i++)
        if (a[i] != want[i])
            return 0;
    return 1;
}
