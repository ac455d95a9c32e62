/*
 * codec_internal.h — what the codec_*.c files share and no other file includes: clipping a
 * client's text for a message, and reading a string node's bytes through the markers
 * codec_parse.c leaves in the tree in place of long base64 strings.
 */
#ifndef SERVER_CODEC_INTERNAL_H
#define SERVER_CODEC_INTERNAL_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "prescan.h"

/* Copies at most 48 bytes of s into out, cut at a UTF-8 boundary, with "..." when
 * shortened, so a client's 1 MB key cannot fill a message. */
void codec_clip(char out[64], const char *s);

/* The bytes of string node n of a codec_parse tree: its span in the body for a marker,
 * else its valuestring. For a prescanned string, *text is the rest of its text and its
 * segment is returned; otherwise NULL. Borrowed: valid while the tree and body live. */
prescan_seg *codec_string_bytes(const cJSON *n, const char **text, size_t *len);

/* 1 when string node n is the marker codec_parse left for a large nested array of numbers
 * (jsontensor.h), with *text and *len its text in the body (borrowed); else 0. */
int codec_array_text(const cJSON *n, const char **text, size_t *len);

#endif /* SERVER_CODEC_INTERNAL_H */
