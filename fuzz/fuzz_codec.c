/*
 * fuzz_codec.c — libFuzzer target for the value codec. Input: any bytes, read as a JSON
 * body. Whatever codec_parse accepts is decoded as a tensor in both dtypes; every tensor
 * that decodes is encoded in all three forms (and once more flattened to rank 1), parsed
 * and decoded again, and must come back with the same shape and the same values (the
 * contract's shortest round-trip printing). Any difference aborts, as does any sanitizer
 * report. Sizes are capped so the fuzzer explores the logic, not the allocator.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../core/cvd.h"
#include "../server/codec.h"

#define MAX_ELEMS (1 << 16)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_codec: %s\n%s\n", what, detail ? detail : "");
    abort();
}

/* Same dtype, same values (== so -0 and 0 agree), read with the given shape. */
static void expect_same(const cvd_tensor *a, const cvd_tensor *b, int rank, const int64_t *shape,
                        const char *text)
{
    if (b->dtype != a->dtype || b->rank != rank ||
        memcmp(b->shape, shape, sizeof(int64_t) * (size_t)rank) != 0)
        fail("round trip changed the dtype or shape", text);
    int64_t n = cvd_tensor_numel(a);
    for (int64_t i = 0; i < n; i++) {
        int same = a->dtype == CVD_F64
                       ? ((const double *)a->data)[i] == ((const double *)b->data)[i]
                       : ((const float *)a->data)[i] == ((const float *)b->data)[i];
        if (!same)
            fail("round trip changed a value", text);
    }
}

/* Encodes t as (rank, shape) in `form`, decodes that again and compares. */
static void round_trip(const cvd_tensor *t, int rank, const int64_t *shape, codec_form form)
{
    buf b;
    buf_init(&b);
    if (codec_tensor_encode(&b, t, rank, shape, form) != 0)
        fail("codec_tensor_encode failed on a decoded tensor", NULL);
    apierr e = {0};
    cJSON *again = codec_parse(b.data, b.len, &e);
    if (!again)
        fail("the encoder's output does not parse", e.msg);
    cvd_tensor u = {0};
    codec_form got;
    if (codec_tensor_decode(again, "t", t->dtype, MAX_ELEMS, "limit", &u, &got, &e) != 0) {
        fprintf(stderr, "%s\n", b.data);
        fail("the encoder's output does not decode", e.msg);
    }
    if (got != form)
        fail("decoded in another form than encoded", b.data);
    expect_same(t, &u, rank, shape, b.data);
    cvd_tensor_release(&u);
    cJSON_Delete(again);
    buf_free(&b);
}

static void check_tensor(const cJSON *node, cvd_dtype dt)
{
    cvd_tensor t = {0};
    apierr e = {0};
    codec_form form;
    if (codec_tensor_decode(node, "t", dt, MAX_ELEMS, "limit", &t, &form, &e) != 0) {
        if (e.code == APIERR_NONE || e.msg[0] == '\0')
            fail("a failed decode carries no error", NULL);
        if (t.data || t.rank)
            fail("a failed decode left output behind", e.msg);
        return;
    }
    if (t.rank < 1 || t.rank > CVD_MAX_RANK || t.dtype != dt || !t.data)
        fail("a decoded tensor is malformed", NULL);
    for (int f = CODEC_NESTED; f <= CODEC_BASE64; f++)
        round_trip(&t, t.rank, t.shape, (codec_form)f);
    int64_t flat = cvd_tensor_numel(&t);
    round_trip(&t, 1, &flat, CODEC_NESTED);
    cvd_tensor_release(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apierr e = {0};
    cJSON *root = codec_parse((const char *)data, size, &e);
    if (!root) {
        if (e.code != APIERR_INVALID_JSON && e.code != APIERR_INVALID_ARGUMENT &&
            e.code != APIERR_INTERNAL)
            fail("codec_parse failed with an unexpected code", e.msg);
        return 0;
    }
    check_tensor(root, CVD_F64);
    check_tensor(root, CVD_F32);
    /* a request's tensors sit one level down ({"x": ...}): try each member too */
    if (cJSON_IsObject(root))
        for (const cJSON *c = root->child; c; c = c->next) {
            check_tensor(c, CVD_F64);
            check_tensor(c, CVD_F32);
        }
    cJSON_Delete(root);
    return 0;
}
