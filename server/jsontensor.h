/*
 * jsontensor.h — nested-JSON tensors read straight from the body text, without a cJSON
 * tree (a tree of nested numbers costs ~38 bytes per byte of text; this costs the tensor).
 *
 * codec_parse finds (jsontensor_spans) the nested arrays of numbers that are the value of
 * a key "x" or "delta" and at least JSONTENSOR_MIN bytes long, and leaves a marker string in
 * the tree in their place; codec_tensor_decode reads such a marker's text with
 * jsontensor_shape and jsontensor_next. Anything these do not accept (ragged, empty,
 * too deep) is decoded the ordinary way from a tree of that text alone, so answers and
 * messages are those of the plain path. The text was checked as JSON (jsoncheck) before.
 * Nothing here allocates or keeps a pointer.
 */
#ifndef SERVER_JSONTENSOR_H
#define SERVER_JSONTENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "../core/cvd.h"
#include "jsoncheck.h"

/* Arrays shorter than this keep going through cJSON (its cost is small there). */
#define JSONTENSOR_MIN ((size_t)64 << 10)

/* In body order, up to max: each array of numbers (nested, only numbers, brackets, commas
 * and white space) that is the value of a key written exactly "x" or "delta" and is at
 * least min_len bytes: body[off .. off+len) from its '[' to its ']'. The body must be valid
 * JSON. Returns the count. */
size_t jsontensor_spans(const char *body, size_t len, jsoncheck_span *spans, size_t max,
                        size_t min_len);

/* The shape of the rectangular nested array text[0 .. len): 0 with *rank (1..CVD_MAX_RANK)
 * and shape set, or -1 when it is ragged, empty, deeper than CVD_MAX_RANK or mixes arrays
 * and numbers at one depth. */
int jsontensor_shape(const char *text, size_t len, int *rank, int64_t shape[CVD_MAX_RANK]);

/* The next number of the array text from *p (before end), as strtod reads it; advances *p
 * past it. -1 when there is none. */
int jsontensor_next(const char **p, const char *end, double *v);

#endif /* SERVER_JSONTENSOR_H */
