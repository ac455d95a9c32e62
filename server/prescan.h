/*
 * prescan.h — decodes the long base64 strings of a request body while the body arrives.
 *
 * A base64 tensor's text is most of a large request, and after the upload the daemon used
 * to copy it into the body buffer, scan it in the JSON check and decode it, one pass each.
 * prescan_feed takes the body chunk by chunk as libmicrohttpd hands it over: it follows the
 * JSON text just far enough to see strings and the key "base64", and when the value of
 * such a key starts, it decodes the string's whole groups of 4 base64 characters straight
 * from the chunk (while it is in cache) instead of appending them to the body. The body
 * keeps everything else, including the rest of each such string (its last 0-3 characters,
 * padding, or whatever ended the run of base64 characters). A segment records where the
 * characters were taken out, how many, and their bytes.
 *
 * Nothing here decides whether the body is valid: codec_parse_prescanned checks the kept
 * body as usual and, if anything does not fit (a parse error, a string that is not a
 * tensor's base64 after all), puts the characters back (prescan_restore) and parses the
 * whole text, so answers and error messages are exactly those of the plain path. Decoding
 * groups of 4 base64 characters is one-to-one, so putting them back gives the same text.
 *
 * Memory: a segment's bytes are malloc'd with room for the whole decoded string as the
 * Content-Length bounds it, so a tensor can take them over without a copy; untouched
 * capacity is never written. Owned by the prescan until prescan_take_bytes.
 */
#ifndef SERVER_PRESCAN_H
#define SERVER_PRESCAN_H

#include <stddef.h>

#include "buf.h"

/* Bodies shorter than this are not prescanned (the plain path costs little there). */
#define PRESCAN_MIN_BODY ((size_t)256 << 10)
/* A string with fewer base64 characters taken out than this is put back at its end. */
#define PRESCAN_MIN_CHARS ((size_t)64 << 10)
#define PRESCAN_MAX_SEGS  4

typedef struct prescan_seg {
    size_t off;          /* offset in the kept body where the characters were taken out */
    size_t chars;        /* how many (a multiple of 4) */
    unsigned char *data; /* their bytes: chars/4*3 of them; NULL once taken */
    size_t cap;          /* room in data for the whole string's bytes */
    /* whether some float32 / float64 element of data (counted from data[0]) within its
     * first chars/4*3/8*8 bytes has an all-ones exponent (infinity or NaN): the codec's
     * finiteness check, done while the bytes are hot */
    int bad32, bad64;
} prescan_seg;

typedef struct prescan {
    int on;
    int failed; /* an allocation failed: the body is lost, every later feed fails at once */
    int state;  /* lexer state (prescan.c) */
    int klen;   /* bytes of the current string so far (capped), or -1 when it has escapes */
    char key[8];
    int after_key;   /* the last string closed was exactly "base64" (no escapes) */
    int want_value;  /* ... and a ':' followed: the next string is its value */
    size_t room;     /* bytes the body may still bring (Content-Length minus what came) */
    prescan_seg cur; /* the string being taken out (state FAST) */
    size_t checked;  /* bytes of cur whose elements have been checked (a multiple of 8) */
    char pend[4];    /* characters of a group not yet complete */
    int npend;
    prescan_seg segs[PRESCAN_MAX_SEGS];
    int nsegs;
    size_t min_chars; /* PRESCAN_MIN_CHARS; fuzz_codec sets on and min_chars itself */
} prescan;

/* Starts a prescan of a body of content_length bytes (0 or below PRESCAN_MIN_BODY: off, so
 * prescan_feed only appends). */
void prescan_init(prescan *p, size_t content_length);
/* Appends data[0..n) to body, less the base64 characters it takes out. -1 when an
 * allocation failed, now or in an earlier call (body->oom is set; the body is then
 * unusable, as with buf_append, and later calls do nothing but return -1). */
int prescan_feed(prescan *p, buf *body, const char *data, size_t n);
/* The body is complete: a string still being taken out is put back. -1 on oom. */
int prescan_finish(prescan *p, buf *body);
/* The whole text: body with every segment's characters put back, into out (initialised
 * by the caller). -1 on oom. */
int prescan_restore(const prescan *p, const char *body, size_t len, buf *out);
/* The text of segment s's characters into out[0 .. s->chars) (out has that room). */
void prescan_seg_text(const prescan_seg *s, char *out);
void prescan_free(prescan *p);

#endif /* SERVER_PRESCAN_H */
