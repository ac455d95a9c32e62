/*
 * fixture.c — reads the JSON fixtures for the core tests. Tensors come either flat
 * ({"shape": [...], "data": [...]}) or nested (rectangular arrays, rank = depth).
 */
#include "fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cJSON *fx_load(const char *name)
{
    const char *dir = getenv("CONVD_FIXTURES");
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir && *dir ? dir : "tests/fixtures", name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *text = NULL;
    long len = -1;
    if (fseek(f, 0, SEEK_END) == 0)
        len = ftell(f);
    if (len >= 0 && fseek(f, 0, SEEK_SET) == 0)
        text = malloc((size_t)len + 1);
    cJSON *root = NULL;
    if (text && fread(text, 1, (size_t)len, f) == (size_t)len) {
        text[len] = '\0';
        root = cJSON_ParseWithLength(text, (size_t)len);
    }
    free(text);
    fclose(f);
    return root;
}

static int nested_shape(const cJSON *node, fx_tensor *t)
{
    t->rank = 0;
    while (cJSON_IsArray(node)) {
        if (t->rank == 4 || cJSON_GetArraySize(node) < 1)
            return -1;
        t->shape[t->rank++] = cJSON_GetArraySize(node);
        node = node->child;
    }
    return t->rank > 0 && cJSON_IsNumber(node) ? 0 : -1;
}

static int nested_fill(const cJSON *node, const fx_tensor *t, int depth, int64_t *pos)
{
    if (depth == t->rank) {
        if (!cJSON_IsNumber(node))
            return -1;
        t->data[(*pos)++] = node->valuedouble;
        return 0;
    }
    if (!cJSON_IsArray(node) || cJSON_GetArraySize(node) != t->shape[depth])
        return -1;
    for (const cJSON *c = node->child; c; c = c->next)
        if (nested_fill(c, t, depth + 1, pos))
            return -1;
    return 0;
}

int fx_tensor_read(const cJSON *node, fx_tensor *t)
{
    memset(t, 0, sizeof *t);
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(node, "shape");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(node, "data");
    if (cJSON_IsArray(shape) && cJSON_IsArray(data)) {
        t->numel = 1;
        for (const cJSON *d = shape->child; d; d = d->next) {
            if (t->rank == 4 || !cJSON_IsNumber(d))
                return -1;
            t->shape[t->rank++] = (int64_t)d->valuedouble;
            t->numel *= (int64_t)d->valuedouble;
        }
        if (t->rank == 0 || cJSON_GetArraySize(data) != t->numel)
            return -1;
        t->data = malloc((size_t)t->numel * sizeof *t->data);
        int64_t i = 0;
        for (const cJSON *d = data->child; d; d = d->next)
            t->data[i++] = d->valuedouble;
        return 0;
    }
    if (nested_shape(node, t))
        return -1;
    t->numel = 1;
    for (int i = 0; i < t->rank; i++)
        t->numel *= t->shape[i];
    t->data = malloc((size_t)t->numel * sizeof *t->data);
    int64_t pos = 0;
    if (nested_fill(node, t, 0, &pos) || pos != t->numel) {
        fx_tensor_free(t);
        return -1;
    }
    return 0;
}

void fx_tensor_free(fx_tensor *t)
{
    free(t->data);
    memset(t, 0, sizeof *t);
}
