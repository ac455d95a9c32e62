/*
 * answer.h — an answer body whose large base64 tensors are encoded while it is sent.
 *
 * api.c leaves the base64 text of big tensors out of an answer's JSON (codec_hole: where it
 * belongs, and the tensor's bytes). http.c hands the answer to libmicrohttpd as a callback
 * response, and answer_read produces each block as it is asked for: text copied, base64
 * encoded straight into the block. Encoding then overlaps the client's reading of the
 * previous block instead of preceding the whole send. The bytes produced are exactly the
 * text with every hole's base64 in place (what codec_tensor_encode would have written).
 * An answer owns its text and the holes' data; answer_free releases them.
 */
#ifndef SERVER_ANSWER_H
#define SERVER_ANSWER_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"

#define ANSWER_MAX_HOLES 4

typedef struct answer answer;

/* Takes text (malloc'd, len bytes) and the n holes (at most ANSWER_MAX_HOLES, in order of
 * off, every off <= len; their data is taken too). NULL when out of memory or n is too
 * large (nothing is taken then). */
answer *answer_new(char *text, size_t len, const codec_hole *holes, int n);
/* Total bytes of the answer. */
size_t answer_size(const answer *a);
/* Writes up to max bytes of the answer from offset pos into out; returns how many (0 at
 * the end). Any pos and max work; a block that splits a base64 group is handled. */
size_t answer_read(const answer *a, uint64_t pos, char *out, size_t max);
void answer_free(void *a);

#endif /* SERVER_ANSWER_H */
