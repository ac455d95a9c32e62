/*
 * numfmt.h — shortest round-trip decimal printing of float and double (Schubfach).
 * The text reads back (strtod / strtof) to exactly the same value, has no more
 * significant digits than any other text that does, and is valid JSON. Integers print
 * without a fraction ("-4"), -0.0 prints "-0". No allocation, no locale, thread-safe.
 */
#ifndef SERVER_NUMFMT_H
#define SERVER_NUMFMT_H

/* Bytes numfmt_* may write, NUL included. The longest outputs are 24 characters for
 * a double ("-2.2250738585072014e-308") and 17 for a float ("-1000000200000000"). */
#define NUMFMT_MAX 32

/* Writes v into out (at least NUMFMT_MAX bytes), NUL-terminated; returns the length.
 * Non-finite values (which the core never returns) print as "null" so output stays
 * valid JSON. */
int numfmt_f64(char *out, double v);
int numfmt_f32(char *out, float v);

#endif /* SERVER_NUMFMT_H */
