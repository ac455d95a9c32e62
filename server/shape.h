/*
 * shape.h — a tensor shape as text for messages, "(1,2,3,3)": one helper, so every error
 * message writes shapes the same way.
 */
#ifndef SERVER_SHAPE_H
#define SERVER_SHAPE_H

#include <stddef.h>
#include <stdint.h>

/* Enough for four dimensions of any int64 value: "(" + 4 × 20 digits + 3 commas + ")". */
#define SHAPE_STR_MAX 88

/* Writes "(d0,d1,...)" for the first `rank` dims into out (cap bytes, always
 * NUL-terminated when cap > 0; cut short, without the ")", when it does not fit). */
void shape_format(char *out, size_t cap, int rank, const int64_t *shape);

#endif /* SERVER_SHAPE_H */
