/*
 * base64.h — standard base64 (RFC 4648 §4: alphabet A-Z a-z 0-9 + /, '=' padding) in its
 * strict form: length a multiple of 4, padding only at the end, no whitespace or line
 * breaks, and the unused bits of the last group zero (so every byte string has exactly one
 * accepted text). No allocation: callers size the output with the *_len functions.
 */
#ifndef SERVER_BASE64_H
#define SERVER_BASE64_H

#include <stddef.h>

/* Characters base64_encode writes for n bytes (no NUL); 0 if that overflows size_t. */
size_t base64_encoded_len(size_t n);
/* Writes the base64 text of src[0..n) into out (base64_encoded_len(n) bytes, no NUL). */
void base64_encode(char *out, const void *src, size_t n);

/* Checks the text's shape (length a multiple of 4, padding) and gives the byte count it
 * decodes to. 0, or -1 with *bad_at = offset of the offending character and *why set.
 * Characters between the padding and the length are checked by base64_decode. */
int base64_decoded_len(const char *s, size_t len, size_t *n, size_t *bad_at, const char **why);

/* Decodes the chars s[0..len) (len a multiple of 4, validated by base64_decoded_len) into
 * out (exactly the count base64_decoded_len gave). 0, or -1 with *bad_at (offset in s)
 * and *why for a character outside the alphabet, misplaced '=', or non-zero padding bits.
 * out may be partly written on failure. A text may be decoded in consecutive chunks whose
 * lengths are multiples of 4; `last` says this chunk ends the text, the only place where
 * '=' padding may appear. */
int base64_decode(void *out, const char *s, size_t len, int last, size_t *bad_at, const char **why);

/* The widest vector loops base64 may use (where the CPU has them), for every thread: lets
 * tests and benchmarks check each narrower path on a machine that has the wider ones. */
enum base64_simd { BASE64_SIMD_BEST, BASE64_SIMD_AVX2, BASE64_SIMD_NONE };
void base64_limit_simd(enum base64_simd level);

#endif /* SERVER_BASE64_H */
