/*
 * shape.c — shapes as text for messages (shape.h). Writes only into the caller's buffer.
 */
#include "shape.h"

#include <stdio.h>

void shape_format(char *out, size_t cap, int rank, const int64_t *shape)
{
    size_t n = (size_t)snprintf(out, cap, "(");
    for (int i = 0; i < rank && n < cap; i++)
        n += (size_t)snprintf(out + n, cap - n, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (n < cap)
        snprintf(out + n, cap - n, ")");
}
