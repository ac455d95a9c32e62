/*
 * test_prescan.c — prescan (base64 decoded while the body arrives) against the plain
 * path: for bodies fed in chunks of many sizes, the kept body with its segments put back
 * is the body, and codec_parse_prescanned + codec_tensor_decode give the same tensor bits,
 * or the same error code and message, as codec_parse of the whole text. Bodies: tensors of
 * both dtypes with 0, 1 or 2 padding characters, spaces around the colon, two tensors,
 * more long strings than segments, an escaped key, and bodies that must fail: a bad
 * character or an escape inside the string, a non-finite element, a wrong shape, a float64
 * tensor for a float32 layer (converted, not failed), an unknown field, a duplicate key,
 * a truncated body, a byte order mark.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/base64.h"
#include "../../server/codec.h"
#include "../../server/prescan.h"

/* The outcome of parsing a body and decoding its "x" (and "w", when present) as want. */
typedef struct outcome {
    apierr e;
    cvd_tensor x, w;
} outcome;

static void decode_fields(cJSON *root, cvd_dtype want, outcome *o)
{
    const char *const names[2] = {"x", "w"};
    cvd_tensor *dst[2] = {&o->x, &o->w};
    for (int k = 0; k < 2 && o->e.code == APIERR_NONE; k++) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(root, names[k]);
        if (n)
            codec_tensor_decode(n, names[k], want, 0, "max_elems", dst[k], NULL, &o->e);
    }
}

static void run_plain(const char *body, size_t len, cvd_dtype want, outcome *o)
{
    memset(o, 0, sizeof *o);
    cJSON *root = codec_parse(body, len, &o->e);
    if (root)
        decode_fields(root, want, o);
    cJSON_Delete(root);
}

/* Feeds body in chunks cycling through `sizes` (0-terminated), checks the kept body puts
 * back to body, then parses and decodes; returns how many segments prescan made. */
static int run_prescanned(const char *body, size_t len, const size_t *sizes, cvd_dtype want,
                          outcome *o)
{
    memset(o, 0, sizeof *o);
    prescan p;
    buf kept, back;
    buf_init(&kept);
    buf_init(&back);
    prescan_init(&p, len);
    for (size_t at = 0, k = 0; at < len; k = sizes[k + 1] ? k + 1 : 0) {
        size_t n = sizes[k] < len - at ? sizes[k] : len - at;
        assert_int_equal(prescan_feed(&p, &kept, body + at, n), 0);
        at += n;
    }
    assert_int_equal(prescan_finish(&p, &kept), 0);
    assert_int_equal(prescan_restore(&p, kept.data, kept.len, &back), 0);
    assert_int_equal(back.len, len);
    assert_memory_equal(back.data, body, len);
    const int segs = p.nsegs;
    cJSON *root = codec_parse_prescanned(kept.data, kept.len, &p, &o->e);
    if (root)
        decode_fields(root, want, o);
    cJSON_Delete(root);
    prescan_free(&p);
    buf_free(&kept);
    buf_free(&back);
    return segs;
}

static void same_tensor(const cvd_tensor *a, const cvd_tensor *b, const char *what)
{
    assert_int_equal(a->dtype, b->dtype);
    assert_int_equal(a->rank, b->rank);
    assert_memory_equal(a->shape, b->shape, sizeof a->shape);
    if (a->data || b->data) {
        assert_non_null(a->data);
        assert_non_null(b->data);
        if (memcmp(a->data, b->data, (size_t)cvd_tensor_numel(a) * cvd_dtype_size(a->dtype)))
            fail_msg("%s: the tensors differ", what);
    }
}

/* Both paths, under every chunking; returns the segments of the last run. */
static int check_same(const char *body, size_t len, cvd_dtype want, const char *what)
{
    static const size_t chunkings[][4] = {
        {1 << 30, 0}, {1, 0}, {3, 7, 0}, {4096, 0}, {5, 65536, 13, 0}};
    outcome plain, pre;
    run_plain(body, len, want, &plain);
    int segs = 0;
    for (size_t c = 0; c < sizeof chunkings / sizeof chunkings[0]; c++) {
        segs = run_prescanned(body, len, chunkings[c], want, &pre);
        if (plain.e.code != pre.e.code || strcmp(plain.e.msg, pre.e.msg))
            fail_msg("%s (chunking %zu): plain %s '%s', prescanned %s '%s'", what, c,
                     apierr_name(plain.e.code), plain.e.msg, apierr_name(pre.e.code), pre.e.msg);
        same_tensor(&plain.x, &pre.x, what);
        same_tensor(&plain.w, &pre.w, what);
        cvd_tensor_release(&pre.x);
        cvd_tensor_release(&pre.w);
    }
    cvd_tensor_release(&plain.x);
    cvd_tensor_release(&plain.w);
    return segs;
}

/* The base64 text of n elements of dtype dt (values i*0.25 - 3, element bad_at set to
 * infinity when >= 0), NUL-terminated, malloc'd. */
static char *b64_of(size_t n, cvd_dtype dt, long bad_at)
{
    const size_t es = cvd_dtype_size(dt);
    unsigned char *raw = malloc(n * es);
    for (size_t i = 0; i < n; i++) {
        double v = (double)i * 0.25 - 3;
        if ((long)i == bad_at)
            v = 1e308 * 10;
        if (dt == CVD_F32) {
            float f = (float)v;
            memcpy(raw + i * 4, &f, 4);
        } else {
            memcpy(raw + i * 8, &v, 8);
        }
    }
    char *t = malloc(base64_encoded_len(n * es) + 1);
    base64_encode(t, raw, n * es);
    t[base64_encoded_len(n * es)] = '\0';
    free(raw);
    return t;
}

/* Formats a body into a malloc'd buffer. */
static char *body_of(size_t *len, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *body_of(size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *b = malloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(b, (size_t)n + 1, fmt, ap);
    va_end(ap);
    *len = (size_t)n;
    return b;
}

/* Valid tensors: the same bits as the plain path, with the base64 taken out. Element
 * counts give 0, 1 and 2 padding characters in both dtypes. */
static void test_tensors_same_as_plain(void **state)
{
    (void)state;
    const size_t counts[] = {60000, 60001, 60002, 30001};
    for (int d = 0; d < 2; d++) {
        const cvd_dtype dt = d ? CVD_F64 : CVD_F32;
        for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
            char *t = b64_of(counts[c], dt, -1);
            size_t len;
            char *body =
                body_of(&len, "{\"x\": {\"shape\": [%zu], \"dtype\": \"%s\", \"base64\" : \"%s\"}}",
                        counts[c], cvd_dtype_name(dt), t);
            if (len >= PRESCAN_MIN_BODY)
                assert_int_equal(check_same(body, len, dt, "tensor"), 1);
            else
                check_same(body, len, dt, "small tensor");
            free(body);
            free(t);
        }
    }
    /* two tensors; a key escaped (not taken out: no segment for it) */
    char *t = b64_of(70000, CVD_F32, -1);
    size_t len;
    char *body = body_of(&len,
                         "{\"w\":{\"shape\":[70000],\"base64\":\"%s\"},\"x\":{\"shape\":[70000],"
                         "\"base64\":\"%s\"}}",
                         t, t);
    assert_int_equal(check_same(body, len, CVD_F32, "two tensors"), 2);
    free(body);
    body = body_of(&len, "{\"x\":{\"shape\":[70000],\"base\\u0036\\u0034\":\"%s\"}}", t);
    assert_int_equal(check_same(body, len, CVD_F32, "escaped key"), 0);
    free(body);
    /* a byte order mark */
    body = body_of(&len, "\xEF\xBB\xBF{\"x\":{\"shape\":[70000],\"base64\":\"%s\"}}", t);
    assert_int_equal(check_same(body, len, CVD_F32, "byte order mark"), 1);
    free(body);
    free(t);
}

/* Bodies that fail, or take another path, give the plain path's answer exactly. */
static void test_failures_same_as_plain(void **state)
{
    (void)state;
    char *t = b64_of(80000, CVD_F32, -1);
    const size_t tl = strlen(t);
    size_t len;
    char *body;
    /* a bad character, then an escape, in the middle of the string */
    const char *const cuts[] = {"-", "\\/", " ", "=", "\xC3\xA9"};
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        body = body_of(&len, "{\"x\":{\"shape\":[80000],\"base64\":\"%.*s%s%s\"}}", (int)(tl / 2),
                       t, cuts[k], t + tl / 2);
        check_same(body, len, CVD_F32, "a character in the middle");
        free(body);
    }
    /* a wrong shape; float64 data for a float32 layer; a float64 tensor read as float32 */
    body = body_of(&len, "{\"x\":{\"shape\":[79999],\"base64\":\"%s\"}}", t);
    check_same(body, len, CVD_F32, "wrong shape");
    free(body);
    char *t64 = b64_of(40000, CVD_F64, -1);
    body =
        body_of(&len, "{\"x\":{\"shape\":[40000],\"dtype\":\"float64\",\"base64\":\"%s\"}}", t64);
    check_same(body, len, CVD_F32, "converted");
    check_same(body, len, CVD_F64, "float64");
    free(body);
    free(t64);
    /* a non-finite element inside what prescan decodes, and in the last group */
    const long bads[] = {5, 40000, 79999};
    for (size_t k = 0; k < sizeof bads / sizeof bads[0]; k++) {
        char *tb = b64_of(80000, CVD_F32, bads[k]);
        body = body_of(&len, "{\"x\":{\"shape\":[80000],\"base64\":\"%s\"}}", tb);
        check_same(body, len, CVD_F32, "not finite");
        free(body);
        free(tb);
    }
    /* an unknown field holding the string; a duplicate key; a body cut inside the string */
    body = body_of(&len, "{\"x\":{\"shape\":[80000],\"base64\":\"%s\"},\"base64\":\"%s\"}", t, t);
    check_same(body, len, CVD_F32, "unknown field");
    free(body);
    body = body_of(&len, "{\"x\":{\"shape\":[80000],\"base64\":\"%s\",\"base64\":\"AAAA\"}}", t);
    check_same(body, len, CVD_F32, "duplicate key");
    free(body);
    body = body_of(&len, "{\"x\":{\"shape\":[80000],\"base64\":\"%s", t);
    check_same(body, len, CVD_F32, "truncated");
    free(body);
    /* more long strings than segments: the rest stay in the body */
    body = body_of(&len,
                   "{\"a\":[{\"base64\":\"%s\"},{\"base64\":\"%s\"},{\"base64\":\"%s\"},"
                   "{\"base64\":\"%s\"},{\"base64\":\"%s\"}],\"x\":{\"shape\":[80000],"
                   "\"base64\":\"%s\"}}",
                   t, t, t, t, t, t);
    assert_int_equal(check_same(body, len, CVD_F32, "many strings"), PRESCAN_MAX_SEGS);
    free(body);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tensors_same_as_plain),
        cmocka_unit_test(test_failures_same_as_plain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
