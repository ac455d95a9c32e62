/*
 * jsontensor.c — the nested-array scanner of jsontensor.h. The span finder follows strings
 * (so brackets inside them do not count) and remembers the last key; an array that is the
 * value of "x" or "delta" is a candidate until a byte other than a number's, a bracket, a
 * comma or white space shows up in it.
 */
#include "jsontensor.h"

#include <stdlib.h>
#include <string.h>

static int numeric_byte(unsigned char c)
{
    return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' ||
           c == ',' || c == '[' || c == ']' || c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The end of the string whose opening quote is at s[i] (the index of its closing quote). */
static size_t string_end(const char *s, size_t len, size_t i)
{
    for (i++; i < len; i++) {
        if (s[i] == '\\')
            i++;
        else if (s[i] == '"')
            return i;
    }
    return len;
}

/* From the '[' at s[i], the index of its matching ']' when everything in between is
 * numeric; else the index of the first byte that is not (the scan goes on from there). */
static size_t numeric_array_end(const char *s, size_t len, size_t i, int *numeric)
{
    int depth = 0;
    *numeric = 0;
    for (; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!numeric_byte(c))
            return i;
        if (c == '[')
            depth++;
        else if (c == ']' && --depth == 0) {
            *numeric = 1;
            return i;
        }
    }
    return len;
}

size_t jsontensor_spans(const char *s, size_t len, jsoncheck_span *spans, size_t max,
                        size_t min_len)
{
    size_t n = 0, i = 0;
    int tensor_key = 0; /* the last string was "x" or "delta" and a ':' followed */
    while (i < len && n < max) {
        char c = s[i];
        if (c == '"') {
            size_t e = string_end(s, len, i);
            size_t k = i + 1, kl = e - k;
            int named = (kl == 1 && s[k] == 'x') || (kl == 5 && !memcmp(s + k, "delta", 5));
            i = e + 1;
            while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
                i++;
            tensor_key = named && i < len && s[i] == ':';
            if (tensor_key)
                i++;
            continue;
        }
        if (c == '[' && tensor_key) {
            int numeric;
            size_t e = numeric_array_end(s, len, i, &numeric);
            if (numeric && e + 1 - i >= min_len) {
                spans[n].off = i;
                spans[n++].len = e + 1 - i;
            }
            i = numeric ? e + 1 : e;
            tensor_key = 0;
            continue;
        }
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            tensor_key = 0;
        i++;
    }
    return n;
}

int jsontensor_shape(const char *s, size_t len, int *rank, int64_t shape[CVD_MAX_RANK])
{
    int64_t count[CVD_MAX_RANK + 1] = {0};
    int depth = 0, r = -1; /* r: the depth at which numbers sit, once seen */
    int seen[CVD_MAX_RANK] = {0};
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '[') {
            if (depth >= CVD_MAX_RANK || (r >= 0 && depth >= r))
                return -1;
            if (depth > 0)
                count[depth - 1]++;
            count[depth++] = 0;
        } else if (c == ']') {
            if (depth <= 0 || count[depth - 1] == 0)
                return -1; /* empty */
            depth--;
            if (!seen[depth]) {
                seen[depth] = 1;
                shape[depth] = count[depth];
            } else if (shape[depth] != count[depth]) {
                return -1; /* ragged */
            }
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            if (r < 0)
                r = depth;
            if (depth != r)
                return -1; /* a number where an array was, or deeper */
            count[depth - 1]++;
            while (i + 1 < len && s[i + 1] != ',' && s[i + 1] != ']' && s[i + 1] != ' ' &&
                   s[i + 1] != '\t' && s[i + 1] != '\n' && s[i + 1] != '\r')
                i++;
        }
    }
    if (depth != 0 || r < 1)
        return -1;
    *rank = r;
    return 0;
}

int jsontensor_next(const char **p, const char *end, double *v)
{
    const char *s = *p;
    while (s < end && (*s == '[' || *s == ']' || *s == ',' || *s == ' ' || *s == '\t' ||
                       *s == '\n' || *s == '\r'))
        s++;
    if (s >= end)
        return -1;
    char *stop;
    *v = strtod(s, &stop);
    if (stop == s)
        return -1;
    *p = stop;
    return 0;
}
