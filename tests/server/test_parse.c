/*
 * test_parse.c — codec_parse: strict UTF-8 (RFC 3629) and JSON (RFC 8259) with byte
 * offsets in the message, what cJSON alone would accept (NaN, Infinity, '+1', '01', '1.',
 * '.5', hex), nesting limits, long numbers, byte order mark, and duplicate keys; long
 * base64 strings kept out of cJSON (jsoncheck_spans + markers): same values and the same
 * rejections at the same offsets as short ones, escapes, forged markers, many tensors.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/base64.h"
#include "../../server/codec.h"
#include "../../server/jsoncheck.h"

/* Parses text (len from strlen unless given) and expects failure with `code` and a
 * message containing each of the NULL-terminated `parts`. */
static void expect_fail_n(const char *text, size_t len, apierr_code code, const char *part1,
                          const char *part2)
{
    apierr e = {0};
    cJSON *root = codec_parse(text, len, &e);
    if (root) {
        cJSON_Delete(root);
        fail_msg("accepted: %.*s", (int)len, text);
    }
    if (e.code != code)
        fail_msg("'%.*s': code %s, want %s (%s)", (int)len, text, apierr_name(e.code),
                 apierr_name(code), e.msg);
    if (part1 && !strstr(e.msg, part1))
        fail_msg("'%.*s': message lacks '%s': %s", (int)len, text, part1, e.msg);
    if (part2 && !strstr(e.msg, part2))
        fail_msg("'%.*s': message lacks '%s': %s", (int)len, text, part2, e.msg);
}

static void expect_fail(const char *text, const char *part1, const char *part2)
{
    expect_fail_n(text, strlen(text), APIERR_INVALID_JSON, part1, part2);
}

static void expect_ok(const char *text)
{
    apierr e = {0};
    cJSON *root = codec_parse(text, strlen(text), &e);
    if (!root)
        fail_msg("rejected '%s': %s", text, e.msg);
    cJSON_Delete(root);
}

static void test_valid_documents(void **state)
{
    (void)state;
    expect_ok("{}");
    expect_ok("[]");
    expect_ok(" \t\r\n{\"a\": [1, -2.5e-3, 0, -0, 0.5, 1E+2, 3e4], \"b\": null} \n");
    expect_ok("\"\\u00e9\\ud834\\udd1e\\\"\\\\\\/\\b\\f\\n\\r\\t\"");
    expect_ok("\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9D\x84\x9E\"");
    expect_ok("true");
    expect_ok("-0.0e-0");
    expect_ok("\xEF\xBB\xBF{\"x\": 1}"); /* a UTF-8 byte order mark is skipped */
}

static void test_rejects_non_rfc8259_numbers(void **state)
{
    (void)state;
    expect_fail("NaN", "NaN and Infinity", "byte 0 (line 1, column 1)");
    expect_fail("[1, NaN]", "NaN and Infinity", "byte 4 ");
    expect_fail("[Infinity]", "NaN and Infinity", "byte 1 ");
    expect_fail("[-Infinity]", "NaN and Infinity", "byte 1 ");
    expect_fail("[nan]", "NaN and Infinity", "byte 1 ");
    expect_fail("[inf]", "NaN and Infinity", "byte 1 ");
    expect_fail("[+1]", "'+'", "byte 1 ");
    expect_fail("[01]", "leading zeros", "byte 1 ");
    expect_fail("[-01]", "leading zeros", "byte 1 ");
    expect_fail("[1.]", "decimal point", "byte 3 ");
    expect_fail("[.5]", "must start with a digit", "byte 1 ");
    expect_fail("[0x10]", "hexadecimal", "byte 1 ");
    expect_fail("[0x1p3]", "hexadecimal", NULL);
    expect_fail("[1e]", "exponent", "byte 3 ");
    expect_fail("[1e+]", "exponent", "byte 4 ");
    expect_fail("[-]", "'-' must be followed by a digit", "byte 2 ");
    expect_fail("[1.5.5]", "expected ',' or ']'", "byte 4 ");
    /* long numbers are valid JSON and read correctly (strtod rounds them) */
    const char *longnum = "[1.000000000000000000000000000000000000000000000000000000000000000000"
                          "0000000000000000000000000000000001, 2]";
    apierr e = {0};
    cJSON *root = codec_parse(longnum, strlen(longnum), &e);
    assert_non_null(root);
    assert_int_equal(cJSON_GetArraySize(root), 2);
    assert_true(root->child->valuedouble == 1.0);
    cJSON_Delete(root);
}

static void test_rejects_bad_syntax_with_offsets(void **state)
{
    (void)state;
    expect_fail("", "empty", "end of the body");
    expect_fail("   ", "empty", NULL);
    expect_fail("[1, 2", "ends before", "end of the body");
    expect_fail("[1,]", "trailing", "byte 3 ");
    expect_fail("[1 2]", "expected ',' or ']'", "byte 3 ");
    expect_fail("{\"a\":1,}", "trailing comma", "byte 7 ");
    expect_fail("{\"a\" 1}", "expected ':'", "byte 5 ");
    expect_fail("{a:1}", "double quotes", "byte 1 ");
    expect_fail("['a']", "double quotes", "byte 1 ");
    expect_fail("[1] x", "after the JSON value", "byte 4 ");
    expect_fail("{} {}", "after the JSON value", "byte 3 ");
    expect_fail("[1]\n// c", "after the JSON value", "line 2, column 1");
    expect_fail("// c\n[1]", "comments", "byte 0 ");
    expect_fail("[tru]", "expected a value", "byte 1 ");
    expect_fail("[1}", "expected ',' or ']'", "byte 2 ");
    expect_fail("{\"a\":1]", "expected ',' or '}'", "byte 6 ");
    expect_fail("\"abc", "not closed", NULL);
    expect_fail("\"a\\x\"", "invalid escape", "byte 2 ");
    expect_fail("\"a\tb\"", "control character", "byte 2 ");
    expect_fail("\"\\u12G4\"", "4 hex digits", "byte 1 ");
    expect_fail("\"\\ud800\"", "high surrogate", "byte 1 ");
    expect_fail("\"\\udc00\"", "low surrogate", "byte 1 ");
    expect_fail("\"\\ud800\\u0041\"", "high surrogate", NULL);
    expect_fail("{\"x\":\n  [1,\n   2,,3]}", "line 3, column 6", "near ',3]}'");
    expect_fail_n("[1,\0 2]", 7, APIERR_INVALID_JSON, "expected a value", "near '\\x00 2]'");
}

static void test_rejects_bad_utf8(void **state)
{
    (void)state;
    expect_fail("\"\xC0\x80\"", "not valid UTF-8", "byte 0xC0 is an overlong encoding");
    expect_fail("\"\xE0\x80\x80\"", "overlong", "byte 2 ");
    expect_fail("\"\xF0\x80\x80\x80\"", "overlong", "byte 2 ");
    expect_fail("\"\xED\xA0\x80\"", "surrogate", "byte 2 ");
    expect_fail("\"\xF4\x90\x80\x80\"", "above U+10FFFF", "byte 2 ");
    expect_fail("\"\xF5\x80\x80\x80\"", "never occurs", "byte 1 ");
    expect_fail("[\"ok\", \"\x80\"]", "continuation byte", "byte 8 ");
    expect_fail("\"\xE2\x82\"", "cut short", "byte 3 ");
    expect_fail("\"\xE2\x82", "truncated", "end of the body");
    expect_fail("\"\xFF\"", "never occurs", NULL);
    /* the excerpt shows bytes, escaped, so the message itself is plain ASCII */
    expect_fail("\"\xC3\"", "cut short", "near '\"'");
}

static void test_nesting_limit(void **state)
{
    (void)state;
    size_t n = 1000;
    char *text = malloc(2 * (n + 1) + 1);
    assert_non_null(text);
    memset(text, '[', n);
    memset(text + n, ']', n);
    text[2 * n] = '\0';
    expect_ok(text);
    memset(text, '[', n + 1);
    memset(text + n + 1, ']', n + 1);
    text[2 * n + 2] = '\0';
    expect_fail(text, "deeper than 1000", "byte 1000 ");
    /* deep and unterminated: no recursion, so no stack overflow */
    size_t big = 1 << 20;
    char *deep = malloc(big + 1);
    assert_non_null(deep);
    memset(deep, '[', big);
    deep[big] = '\0';
    expect_fail(deep, "deeper than 1000", NULL);
    free(deep);
    free(text);
}

static void test_duplicate_keys(void **state)
{
    (void)state;
    expect_fail_n("{\"x\": 1, \"x\": 2}", 16, APIERR_INVALID_ARGUMENT, "'x' appears twice", NULL);
    const char *nested = "{\"layer\": {\"stride\": 1, \"W\": [1], \"stride\": 2}}";
    expect_fail_n(nested, strlen(nested), APIERR_INVALID_ARGUMENT, "'stride'", NULL);
    const char *in_array = "[{\"a\":1},{\"b\":1,\"b\":2}]";
    expect_fail_n(in_array, strlen(in_array), APIERR_INVALID_ARGUMENT, "'b'", NULL);
    expect_ok("{\"a\": {\"a\": {\"a\": 1}}, \"b\": [{\"a\": 1}, {\"a\": 2}]}");

    /* a large object takes the sorted path */
    char big[4096];
    size_t n = (size_t)snprintf(big, sizeof big, "{");
    for (int i = 0; i < 200; i++)
        n += (size_t)snprintf(big + n, sizeof big - n, "%s\"k%d\":%d", i ? "," : "", i, i);
    snprintf(big + n, sizeof big - n, "}");
    expect_ok(big);
    snprintf(big + n, sizeof big - n, ",\"k17\":0}");
    expect_fail_n(big, strlen(big), APIERR_INVALID_ARGUMENT, "'k17' appears twice", NULL);
}

static void test_numbers_reach_the_tree(void **state)
{
    (void)state;
    apierr e = {0};
    const char *text = "[1e400, -1e400, 1e-400, 0.1, 9007199254740993]";
    cJSON *root = codec_parse(text, strlen(text), &e);
    assert_non_null(root);
    const cJSON *c = root->child;
    assert_true(c->valuedouble > 1e308); /* strtod overflow: inf, refused by tensor decode */
    c = c->next;
    assert_true(c->valuedouble < -1e308);
    c = c->next;
    assert_true(c->valuedouble == 0.0);
    c = c->next;
    assert_true(c->valuedouble == 0.1);
    c = c->next;
    assert_true(c->valuedouble == 9007199254740992.0);
    cJSON_Delete(root);
}

static void test_null_body(void **state)
{
    (void)state;
    apierr e = {0};
    assert_null(codec_parse(NULL, 5, &e));
    assert_int_equal(e.code, APIERR_INVALID_JSON);
    assert_non_null(strstr(e.msg, "empty"));
}

/* Runs a parsed body through every decoder the daemon uses, as the API would. */
static void decode_everything(const cJSON *root)
{
    for (const cJSON *c = root ? root->child : NULL; c; c = c->next) {
        apierr e = {0};
        if (c->string && !strcmp(c->string, "layer")) {
            codec_layer l;
            if (codec_layer_decode(c, 1 << 20, "max_session_bytes", &l, &e) == 0)
                codec_layer_release(&l);
            else
                assert_true(e.code != APIERR_NONE && e.msg[0]);
        } else {
            cvd_tensor t;
            if (codec_tensor_decode(c, c->string ? c->string : "x", CVD_F32, 1 << 20, "limit", &t,
                                    NULL, &e) == 0)
                cvd_tensor_release(&t);
            else
                assert_true(e.code != APIERR_NONE && e.msg[0]);
        }
    }
}

static void test_mutated_bodies_never_crash(void **state)
{
    (void)state;
    static const char *const seeds[] = {
        ("{\"layer\": {\"W\": [[[0, 0, 0], [0, 1, 0], [0, -1, 0]], [[0, 0, 0], [0, -1, 1], "
         "[0, 0, 0]]], \"b\": [1, 2]}, \"x\": [[[[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], "
         "[13, 14, 15, 16]]]]}"),
        ("{\"layer\": {\"in_channels\": 1, \"out_channels\": 2, \"kernel_size\": [3, 3], "
         "\"padding\": \"same\", \"init\": {\"scheme\": \"normal\", \"seed\": 42}}, \"x\": "
         "{\"shape\": [1, 1, 2, 2], \"data\": [1.5, -2e-3, 3E+2, 0]}}"),
        ("{\"x\": {\"shape\": [2, 1], \"dtype\": \"float32\", \"base64\": \"AACAPwAAIMA=\"}, "
         "\"s\": \"caf\u00e9 \\ud834\\udd1e\\n\"}"),
    };
    uint64_t r = 0x6A09E667F3BCC909u;
    char text[512];
    int parsed = 0;
    for (int iter = 0; iter < 30000; iter++) {
        const char *seed = seeds[iter % 3];
        size_t len = strlen(seed);
        memcpy(text, seed, len + 1);
        int edits = 1 + (int)(r % 4);
        for (int k = 0; k < edits; k++) {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            size_t at = (size_t)(r >> 8) % len;
            static const char alphabet[] = "[]{},:\"0123456789-+.eE \\nulltrueNaN\x80\xC3\xFF";
            switch (r % 3) {
            case 0: /* replace a byte */
                text[at] = alphabet[(r >> 20) % (sizeof alphabet - 1)];
                break;
            case 1: /* delete a byte */
                memmove(text + at, text + at + 1, len - at);
                len--;
                break;
            default: /* duplicate a byte */
                if (len + 1 < sizeof text) {
                    memmove(text + at + 1, text + at, len - at + 1);
                    len++;
                }
                break;
            }
        }
        apierr e = {0};
        cJSON *root = codec_parse(text, len, &e);
        if (!root) {
            /* a body jsoncheck accepts must never fail inside cJSON */
            if (e.code != APIERR_INVALID_JSON && e.code != APIERR_INVALID_ARGUMENT)
                fail_msg("'%.*s': %s: %s", (int)len, text, apierr_name(e.code), e.msg);
            continue;
        }
        decode_everything(root);
        cJSON_Delete(root);
        parsed++;
    }
    /* the mutations must leave enough valid bodies to exercise the decoders */
    assert_true(parsed > 1000);
}

/* ---- long base64 strings ---- */

enum { BIG_N = 1000 }; /* floats: 5336 base64 characters, well over JSONCHECK_SPAN_MIN */

static void big_values(float *v)
{
    for (int i = 0; i < BIG_N; i++)
        v[i] = (float)(i % 97) * 0.25f - 7.5f;
}

/* A tensor object {"shape":[BIG_N],"dtype":"float32","base64":"..."} of big_values, with
 * key written as `key` (already JSON text); malloc'd. *text_at gets the string's offset. */
static char *big_tensor(const char *key, size_t *text_at)
{
    float v[BIG_N];
    big_values(v);
    size_t tl = base64_encoded_len(sizeof v);
    char *out = malloc(tl + 128);
    assert_non_null(out);
    int n = sprintf(out, "{\"shape\":[%d],\"dtype\":\"float32\",\"%s\":\"", BIG_N, key);
    *text_at = (size_t)n;
    base64_encode(out + n, v, sizeof v);
    strcpy(out + n + tl, "\"}");
    return out;
}

/* Parses body and decodes member `field` of the root (or the root when field is NULL);
 * returns 0 with *t set, or -1 with *e set. */
static int parse_decode(const char *body, size_t len, const char *field, cvd_tensor *t, apierr *e)
{
    cJSON *root = codec_parse(body, len, e);
    if (!root)
        return -1;
    const cJSON *n = field ? cJSON_GetObjectItemCaseSensitive(root, field) : root;
    int rc = codec_tensor_decode(n, field ? field : "x", CVD_F32, 0, "limit", t, NULL, e);
    cJSON_Delete(root);
    return rc;
}

static void expect_big_values(const cvd_tensor *t)
{
    float v[BIG_N];
    big_values(v);
    assert_int_equal(t->rank, 1);
    assert_int_equal(t->shape[0], BIG_N);
    assert_memory_equal(t->data, v, sizeof v);
}

static void expect_big_decodes(const char *body, size_t len)
{
    cvd_tensor t;
    apierr e = {0};
    if (parse_decode(body, len, NULL, &t, &e) != 0)
        fail_msg("rejected: %s", e.msg);
    expect_big_values(&t);
    cvd_tensor_release(&t);
}

static void expect_big_rejected(const char *body, apierr_code code, const char *part1,
                                const char *part2)
{
    cvd_tensor t = {0};
    apierr e = {0};
    if (parse_decode(body, strlen(body), NULL, &t, &e) == 0) {
        cvd_tensor_release(&t);
        fail_msg("accepted a damaged big tensor (want '%s')", part1);
    }
    if (e.code != code)
        fail_msg("code %s, want %s (%s)", apierr_name(e.code), apierr_name(code), e.msg);
    if (part1 && !strstr(e.msg, part1))
        fail_msg("message lacks '%s': %s", part1, e.msg);
    if (part2 && !strstr(e.msg, part2))
        fail_msg("message lacks '%s': %s", part2, e.msg);
    assert_null(t.data);
}

static void test_big_base64_strings(void **state)
{
    (void)state;
    size_t at;
    char *body = big_tensor("base64", &at);
    size_t len = strlen(body);

    /* the span is found, and the tensor decodes through it */
    jsoncheck_span sp[2];
    size_t ns = 9;
    apierr e = {0};
    assert_int_equal(jsoncheck_spans(body, len, sp, 2, &ns, &e), 0);
    assert_int_equal(ns, 1);
    assert_int_equal(sp[0].off, at);
    assert_int_equal(sp[0].len, len - at - 2);
    expect_big_decodes(body, len);

    /* behind a byte order mark */
    char *bom = malloc(len + 4);
    assert_non_null(bom);
    memcpy(bom, "\xEF\xBB\xBF", 3);
    memcpy(bom + 3, body, len + 1);
    expect_big_decodes(bom, len + 3);
    free(bom);

    /* one character as a \u escape: not a span (cJSON decodes it), same values */
    char *esc = malloc(len + 8);
    assert_non_null(esc);
    size_t k = at + 1000;
    memcpy(esc, body, k);
    sprintf(esc + k, "\\u%04x", (unsigned char)body[k]);
    strcpy(esc + k + 6, body + k + 1);
    assert_int_equal(jsoncheck_spans(esc, strlen(esc), sp, 2, &ns, &e), 0);
    assert_int_equal(ns, 0);
    expect_big_decodes(esc, strlen(esc));
    free(esc);

    /* the key spelt with escapes: not a span either, same values */
    size_t kat;
    char *ekey = big_tensor("base\\u0036\\u0034", &kat);
    assert_int_equal(jsoncheck_spans(ekey, strlen(ekey), sp, 2, &ns, &e), 0);
    assert_int_equal(ns, 0);
    expect_big_decodes(ekey, strlen(ekey));
    free(ekey);

    /* rejections inside a span: the same messages and character offsets as without one */
    char keep = body[at + 2001];
    body[at + 2001] = '*';
    expect_big_rejected(body, APIERR_INVALID_TENSOR, "outside the base64 alphabet",
                        "(character 2001)");
    body[at + 2001] = '-';
    expect_big_rejected(body, APIERR_INVALID_TENSOR, "URL-safe", "(character 2001)");
    body[at + 2001] = keep;
    body[at + 100] = '=';
    expect_big_rejected(body, APIERR_INVALID_TENSOR, "padding may only end", "(character 100)");
    free(body);

    /* a non-finite value is named by index */
    float v[BIG_N];
    big_values(v);
    v[517] = 1.0f / 0.0f;
    char *inf = malloc(base64_encoded_len(sizeof v) + 128);
    assert_non_null(inf);
    int n = sprintf(inf, "{\"shape\":[%d],\"dtype\":\"float32\",\"base64\":\"", BIG_N);
    base64_encode(inf + n, v, sizeof v);
    strcpy(inf + n + base64_encoded_len(sizeof v), "\"}");
    expect_big_rejected(inf, APIERR_INVALID_TENSOR, "x[517] is inf", NULL);
    /* the length check: one group short */
    strcpy(inf + n + base64_encoded_len(sizeof v) - 4, "\"}");
    expect_big_rejected(inf, APIERR_INVALID_TENSOR, "decodes to 3999 bytes", "needs 4000");
    /* a JSON error after a span is found at its byte offset */
    size_t il = strlen(inf);
    strcpy(inf + il - 1, ",}");
    expect_fail_n(inf, il + 1, APIERR_INVALID_JSON, "trailing comma", NULL);
    free(inf);
}

/* A long string with one special byte at every offset across several 64-byte blocks, with
 * the AVX2 loops and without: a control byte, a byte UTF-8 never uses and a quote are
 * found at their exact offset; an escape and a two-byte character are accepted. */
static void test_special_byte_at_every_offset(void **state)
{
    (void)state;
    enum { LEN = 300 };
    char doc[LEN + 3], want[32];
    for (int mode = 0; mode < 2; mode++) {
        jsoncheck_force_sse2(mode);
        for (size_t p = 1; p + 1 < LEN; p++) {
            memset(doc, 'A', LEN);
            doc[0] = doc[LEN - 1] = '"';
            doc[LEN] = 0;
            doc[p] = 0x01;
            snprintf(want, sizeof want, "byte %zu ", p);
            expect_fail(doc, "control character", want);
            doc[p] = (char)0xFF;
            expect_fail(doc, "never occurs", want);
            doc[p] = '"';
            snprintf(want, sizeof want, "byte %zu ", p + 1);
            expect_fail(doc, NULL, want);
            doc[p] = '\\';
            doc[p + 1] = 'n';
            if (p + 2 < LEN)
                expect_ok(doc);
            doc[p] = (char)0xC3;
            doc[p + 1] = (char)0xA9;
            if (p + 2 < LEN)
                expect_ok(doc);
        }
    }
    jsoncheck_force_sse2(0);
}

/* The vectorised finiteness check names the first bad element wherever it sits. */
static void test_non_finite_at_every_index(void **state)
{
    (void)state;
    enum { N = 37 };
    unsigned char raw[N * 8];
    char body[1024];
    for (int dt = 0; dt < 2; dt++) {
        size_t es = dt ? 8 : 4;
        for (int bad = 0; bad < N; bad++) {
            for (int i = 0; i < N; i++) {
                if (dt) {
                    double d = i == bad ? (i % 2 ? INFINITY : NAN) : i * 0.5;
                    memcpy(raw + (size_t)i * es, &d, es);
                } else {
                    float f = i == bad ? (i % 2 ? INFINITY : NAN) : (float)i * 0.5f;
                    memcpy(raw + (size_t)i * es, &f, es);
                }
            }
            int n = sprintf(body, "{\"shape\":[%d],\"dtype\":\"%s\",\"base64\":\"", N,
                            dt ? "float64" : "float32");
            base64_encode(body + n, raw, N * es);
            strcpy(body + n + base64_encoded_len(N * es), "\"}");
            char want[32];
            snprintf(want, sizeof want, "x[%d] is %s", bad, bad % 2 ? "inf" : "nan");
            expect_big_rejected(body, APIERR_INVALID_TENSOR, want, NULL);
        }
    }
}

/* A marker is "\xFF" + 32 hex digits: a client cannot send the byte 0xFF (not UTF-8), and
 * the escape \u00ff decodes to two bytes, so marker-like text is only ever base64 text. */
static void test_forged_markers_are_text(void **state)
{
    (void)state;
    static float target[4] = {1, 2, 3, 4};
    char hex[64];
    snprintf(hex, sizeof hex, "%016llx%016llx", (unsigned long long)(uintptr_t)target, 12ULL);
    char body[256];
    snprintf(body, sizeof body, "{\"shape\":[3],\"dtype\":\"float32\",\"base64\":\"\\u00ff%s\"}",
             hex);
    expect_big_rejected(body, APIERR_INVALID_TENSOR, "not valid base64", NULL);
    snprintf(body, sizeof body, "{\"shape\":[3],\"dtype\":\"float32\",\"base64\":\"\xFF%s\"}", hex);
    expect_big_rejected(body, APIERR_INVALID_JSON, "not valid UTF-8", "0xFF");
}

/* Bodies with more long strings than codec_parse marks, and long strings that are not
 * base64 values (kept as cJSON strings, byte for byte). */
static void test_many_and_other_long_strings(void **state)
{
    (void)state;
    size_t at;
    char *one = big_tensor("base64", &at);
    size_t ol = strlen(one);
    enum { M = 20 };
    char *body = malloc(M * (ol + 16) + 8192);
    assert_non_null(body);
    size_t n = 0;
    body[n++] = '{';
    for (int i = 0; i < M; i++)
        n += (size_t)sprintf(body + n, "\"t%d\":%s,", i, one);
    /* a long session-like string and a long string in an array under a "base64" key */
    n += (size_t)sprintf(body + n, "\"s\":\"");
    memset(body + n, 'a', 3000);
    n += 3000;
    n += (size_t)sprintf(body + n, "\",\"base64\":[\"");
    memcpy(body + n, one + at, 2000);
    n += 2000;
    n += (size_t)sprintf(body + n, "\"]}");
    free(one);

    jsoncheck_span sp[4];
    size_t ns;
    apierr e = {0};
    assert_int_equal(jsoncheck_spans(body, n, sp, 4, &ns, &e), 0);
    assert_int_equal(ns, 4); /* capped at max */
    assert_int_equal(jsoncheck_spans(body, n, NULL, 0, &ns, &e), 0);
    assert_int_equal(ns, 0);

    cJSON *root = codec_parse(body, n, &e);
    if (!root)
        fail_msg("rejected: %s", e.msg);
    for (int i = 0; i < M; i++) {
        char name[8];
        snprintf(name, sizeof name, "t%d", i);
        cvd_tensor t;
        const cJSON *node = cJSON_GetObjectItemCaseSensitive(root, name);
        if (codec_tensor_decode(node, name, CVD_F32, 0, "limit", &t, NULL, &e) != 0)
            fail_msg("%s: %s", name, e.msg);
        expect_big_values(&t);
        cvd_tensor_release(&t);
    }
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "s");
    assert_true(cJSON_IsString(s));
    assert_int_equal(strlen(s->valuestring), 3000);
    assert_int_equal(strspn(s->valuestring, "a"), 3000);
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "base64");
    assert_true(cJSON_IsString(arr->child));
    assert_int_equal(strlen(arr->child->valuestring), 2000);
    cJSON_Delete(root);
    free(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_documents),
        cmocka_unit_test(test_rejects_non_rfc8259_numbers),
        cmocka_unit_test(test_rejects_bad_syntax_with_offsets),
        cmocka_unit_test(test_rejects_bad_utf8),
        cmocka_unit_test(test_nesting_limit),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_numbers_reach_the_tree),
        cmocka_unit_test(test_null_body),
        cmocka_unit_test(test_mutated_bodies_never_crash),
        cmocka_unit_test(test_big_base64_strings),
        cmocka_unit_test(test_forged_markers_are_text),
        cmocka_unit_test(test_non_finite_at_every_index),
        cmocka_unit_test(test_special_byte_at_every_offset),
        cmocka_unit_test(test_many_and_other_long_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
