/*
 * jsoncheck.h — strict validation of a request body before cJSON sees it: UTF-8 per
 * RFC 3629 (no overlongs, surrogates or code points above U+10FFFF), then JSON text per
 * RFC 8259 (no NaN/Infinity, '+1', '01', '1.', '.5', hex, single quotes, trailing commas,
 * comments, or data after the value), nesting at most JSONCHECK_MAX_DEPTH. cJSON accepts
 * some of those and its error pointer is a global; this pass gives exact byte offsets.
 * A leading UTF-8 byte order mark is allowed (RFC 8259 §8.1) and skipped.
 */
#ifndef SERVER_JSONCHECK_H
#define SERVER_JSONCHECK_H

#include <stddef.h>

#include "apierr.h"

/* cJSON's own limit (CJSON_NESTING_LIMIT): deeper text would be refused by it anyway. */
#define JSONCHECK_MAX_DEPTH 1000
/* 0 when body[0..len) is one valid JSON value surrounded by optional whitespace;
 * otherwise -1 with e = invalid_json: the reason, the byte offset, line and column
 * (1-based, in bytes) and a printable excerpt of the text there. */
int jsoncheck(const char *body, size_t len, apierr *e);

/* A string value inside a body: its bytes between the quotes, body[off .. off+len). */
typedef struct jsoncheck_span {
    size_t off, len;
} jsoncheck_span;

/* The shortest string jsoncheck_spans reports: long enough that skipping cJSON's copy pays. */
#define JSONCHECK_SPAN_MIN 1024

/* jsoncheck, also recording (in body order, up to `max`) the strings that are the value of
 * a key written exactly "base64", contain no escape and are at least JSONCHECK_SPAN_MIN
 * bytes long: base64 tensors, which codec_parse keeps out of cJSON. *nspans gets the count
 * (0 on failure); spans and nspans may be NULL when max is 0. */
int jsoncheck_spans(const char *body, size_t len, jsoncheck_span *spans, size_t max, size_t *nspans,
                    apierr *e);
/* jsoncheck_spans with the shortest string reported set to min_len (0: every such string). */
int jsoncheck_spans_min(const char *body, size_t len, jsoncheck_span *spans, size_t max,
                        size_t *nspans, size_t min_len, apierr *e);

/* Turns the AVX2 loops off (on = 1) or back on, for every thread: lets tests check the
 * SSE2 and portable loops on a machine that has AVX2. */
void jsoncheck_force_sse2(int on);

#endif /* SERVER_JSONCHECK_H */
