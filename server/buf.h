/*
 * buf.h — a growable byte buffer (sds-like) for request bodies and JSON output.
 * The buffer owns `data`; buf_free releases it, buf_steal hands it to the caller.
 * Appends never read past what they are given; on allocation failure they return -1,
 * set `oom` and leave the contents as they were, so a writer can append freely and
 * check once at the end.
 */
#ifndef SERVER_BUF_H
#define SERVER_BUF_H

#include <stddef.h>

typedef struct buf {
    char *data; /* NUL-terminated when non-NULL (the NUL is not counted in len) */
    size_t len;
    size_t cap;
    int oom; /* sticky: an append failed */
} buf;

void buf_init(buf *b);
void buf_free(buf *b);
/* Makes room for `extra` more bytes (+ NUL). 0 or -1 (and oom set). */
int buf_reserve(buf *b, size_t extra);
/* Best effort: grows the capacity to exactly `extra` more bytes (+ NUL) when it is smaller,
 * so a buffer whose final size is known is allocated once. On failure nothing changes and
 * oom stays clear (appends then grow as usual). 0 or -1. */
int buf_presize(buf *b, size_t extra);
int buf_append(buf *b, const void *p, size_t n);
int buf_puts(buf *b, const char *s);
int buf_putc(buf *b, char c);
int buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Returns data (caller frees with free()) and resets b; *len gets the length.
 * Returns a valid empty string for an empty buffer, NULL only on oom. */
char *buf_steal(buf *b, size_t *len);

#endif /* SERVER_BUF_H */
