/*
 * codec_fields.c — field names and values in messages (codec.h): the unknown-field check
 * every object of a request goes through, the "did you mean" suggestion it makes (typo
 * distance, case, the names people bring from PyTorch), and the words a message uses for
 * a JSON value's type. Nothing here allocates; client text is clipped before it is quoted.
 */
#include "codec.h"

#include <stdio.h>
#include <string.h>

#include "codec_internal.h"

const char *codec_json_type_name(const cJSON *n)
{
    if (!n)
        return "missing";
    if (cJSON_IsNumber(n))
        return "a number";
    if (cJSON_IsString(n))
        return "a string";
    if (cJSON_IsBool(n))
        return "a boolean";
    if (cJSON_IsNull(n))
        return "null";
    if (cJSON_IsArray(n))
        return "an array";
    if (cJSON_IsObject(n))
        return "an object";
    return "an unknown value";
}

void codec_clip(char out[64], const char *s)
{
    size_t n = strlen(s);
    if (n <= 48) {
        memcpy(out, s, n + 1);
        return;
    }
    n = 48;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    snprintf(out, 64, "%.*s...", (int)n, s);
}

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* Case-insensitive optimal-string-alignment distance (Levenshtein plus transpositions),
 * for keys of at most 32 bytes; larger inputs count as far. */
static int edit_distance(const char *a, const char *b)
{
    size_t n = strlen(a), m = strlen(b);
    if (n > 32 || m > 32)
        return 99;
    int d[33][33];
    for (size_t i = 0; i <= n; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= m; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= n; i++) {
        for (size_t j = 1; j <= m; j++) {
            int cost = lower(a[i - 1]) != lower(b[j - 1]);
            int v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v)
                v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < v)
                v = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) &&
                lower(a[i - 2]) == lower(b[j - 1]) && d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    }
    return d[n][m];
}

/* Names people reach for that are spelt differently here (PyTorch attribute names, ...). */
static const char *alias_of(const char *key)
{
    static const char *const pairs[][2] = {
        {"weight", "W"},
        {"weights", "W"},
        {"bias_values", "b"},
        {"kernel", "kernel_size"},
        {"in_chans", "in_channels"},
        {"out_chans", "out_channels"},
        {"padding_mode", "padding"},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++)
        if (!strcmp(key, pairs[i][0]))
            return pairs[i][1];
    return NULL;
}

const char *codec_suggest(const char *key, const char *const *known)
{
    const char *alias = alias_of(key);
    const char *best = NULL;
    int best_d = 99;
    size_t kl = strlen(key);
    for (size_t i = 0; known[i]; i++) {
        if (alias && !strcmp(alias, known[i]))
            return known[i];
        int d = edit_distance(key, known[i]);
        /* a prefix of a long name ("kern" for "kernel_size") also counts as close */
        if (kl >= 3 && !strncmp(key, known[i], kl) && d > 2)
            d = 2;
        if (d < best_d) {
            best_d = d;
            best = known[i];
        }
    }
    int limit = kl <= 3 ? 1 : (kl <= 6 ? 2 : 3);
    return best_d <= limit ? best : NULL;
}

int codec_check_fields(const cJSON *obj, const char *const *known, const char *where, apierr *e)
{
    for (const cJSON *c = obj ? obj->child : NULL; c; c = c->next) {
        const char *k = c->string ? c->string : "";
        size_t i = 0;
        while (known[i] && strcmp(k, known[i]) != 0)
            i++;
        if (known[i])
            continue;
        char kc[64];
        codec_clip(kc, k);
        const char *s = codec_suggest(k, known);
        if (s)
            return apierr_set(e, APIERR_INVALID_ARGUMENT,
                              "unknown field '%s' in %s (did you mean '%s'?)", kc, where, s);
        char list[256];
        size_t n = 0;
        list[0] = '\0';
        for (size_t j = 0; known[j] && n + 1 < sizeof list; j++)
            n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", j ? ", " : "", known[j]);
        return apierr_set(e, APIERR_INVALID_ARGUMENT, "unknown field '%s' in %s; known fields: %s",
                          kc, where, list);
    }
    return 0;
}
