/*
 * buf.c — growable byte buffer (buf.h). Capacity grows geometrically (x1.5, at least what
 * is asked), every size computation is overflow-checked, and a failed append leaves the
 * contents untouched and sets the sticky `oom` flag. data is always NUL-terminated.
 */
#include "buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->oom = 0;
}

void buf_free(buf *b)
{
    free(b->data);
    buf_init(b);
}

int buf_reserve(buf *b, size_t extra)
{
    size_t need;
    if (__builtin_add_overflow(b->len, extra, &need) || need == SIZE_MAX) {
        b->oom = 1;
        return -1;
    }
    need += 1; /* the NUL */
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap < 64 ? 64 : b->cap;
    while (cap < need) {
        size_t grown = cap + cap / 2;
        cap = grown <= cap ? need : grown; /* on overflow, ask for exactly what is needed */
    }
    char *p = realloc(b->data, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    if (!b->data)
        p[0] = '\0';
    b->data = p;
    b->cap = cap;
    return 0;
}

int buf_presize(buf *b, size_t extra)
{
    size_t need;
    if (__builtin_add_overflow(b->len, extra, &need) || need == SIZE_MAX)
        return -1;
    need += 1;
    if (need <= b->cap)
        return 0;
    char *p = realloc(b->data, need);
    if (!p)
        return -1;
    if (!b->data)
        p[0] = '\0';
    b->data = p;
    b->cap = need;
    return 0;
}

int buf_append(buf *b, const void *p, size_t n)
{
    if (buf_reserve(b, n) < 0)
        return -1;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int buf_puts(buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_putc(buf *b, char c)
{
    return buf_append(b, &c, 1);
}

int buf_printf(buf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return -1;
    }
    if ((size_t)n < sizeof small)
        return buf_append(b, small, (size_t)n);
    if (buf_reserve(b, (size_t)n) < 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

char *buf_steal(buf *b, size_t *len)
{
    if (b->oom) {
        buf_free(b);
        if (len)
            *len = 0;
        return NULL;
    }
    if (!b->data && buf_reserve(b, 0) < 0) {
        if (len)
            *len = 0;
        return NULL;
    }
    char *p = b->data;
    if (len)
        *len = b->len;
    buf_init(b);
    return p;
}
