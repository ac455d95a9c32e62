/*
 * fuzz_codec.c — libFuzzer target for the value codec. Input: any bytes, read as a JSON
 * body. Whatever codec_parse accepts is decoded as a tensor in both dtypes; every tensor
 * that decodes is encoded in all three forms (and once more flattened to rank 1), parsed
 * and decoded again, and must come back with the same shape and the same values (the
 * contract's shortest round-trip printing). The same bytes but the first are also fed
 * through prescan (in chunks of 1-17 bytes, keeping strings of 0, 4 or 8 characters: the
 * first byte picks) and must give what the plain path gives: the same error code and
 * message, or the same tensors bit for bit. Any difference aborts, as does any sanitizer
 * report. Sizes are capped so the fuzzer explores the logic, not the allocator.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../core/cvd.h"
#include "../server/codec.h"
#include "../server/prescan.h"

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

/* Decodes root's members (root itself when it is not an object) as dt until one fails:
 * the tensors into t (up to 8), the first error into e. */
static int decode_all(const cJSON *root, cvd_dtype dt, cvd_tensor *t, apierr *e)
{
    int n = 0;
    const cJSON *c = cJSON_IsObject(root) ? root->child : root;
    for (; c && n < 8; c = cJSON_IsObject(root) ? c->next : NULL) {
        if (codec_tensor_decode(c, "t", dt, MAX_ELEMS, "max", &t[n], NULL, e) < 0)
            break;
        n++;
    }
    return n;
}

/* One path's outcome: parse (plain, or prescanned with p), then decode_all. */
static int outcome(const char *body, size_t len, prescan *p, cvd_dtype dt, cvd_tensor *t,
                   apierr *e)
{
    cJSON *root = p ? codec_parse_prescanned(body, len, p, e) : codec_parse(body, len, e);
    int n = root ? decode_all(root, dt, t, e) : 0;
    cJSON_Delete(root);
    return n;
}

static void check_prescan(const uint8_t *data, size_t size)
{
    if (size < 1)
        return;
    const size_t chunk = 1 + data[0] % 17, min_chars = (size_t)(data[0] / 17 % 3) * 4;
    const char *body = (const char *)data + 1;
    const size_t len = size - 1;
    for (int d = 0; d < 2; d++) {
        const cvd_dtype dt = d ? CVD_F32 : CVD_F64;
        prescan p;
        buf kept, back;
        buf_init(&kept);
        buf_init(&back);
        prescan_init(&p, len); /* then on for any body, and short strings too */
        p.on = 1;
        p.min_chars = min_chars;
        for (size_t at = 0; at < len; at += chunk)
            if (prescan_feed(&p, &kept, body + at, len - at < chunk ? len - at : chunk) < 0)
                fail("prescan_feed failed", NULL);
        if (prescan_finish(&p, &kept) < 0 || prescan_restore(&p, kept.data, kept.len, &back) < 0)
            fail("prescan_finish or prescan_restore failed", NULL);
        if (back.len != len || (len && memcmp(back.data, body, len)))
            fail("prescan_restore did not give the body back", NULL);
        cvd_tensor a[8], b[8];
        apierr ea = {0}, eb = {0};
        const int na = outcome(body, len, NULL, dt, a, &ea);
        const int nb = outcome(kept.data, kept.len, &p, dt, b, &eb);
        if (ea.code != eb.code || strcmp(ea.msg, eb.msg))
            fail("prescan changed the answer", eb.msg);
        if (na != nb)
            fail("prescan changed how many tensors decode", NULL);
        for (int i = 0; i < na; i++) {
            const size_t bytes = (size_t)cvd_tensor_numel(&a[i]) * cvd_dtype_size(a[i].dtype);
            if (a[i].dtype != b[i].dtype || a[i].rank != b[i].rank ||
                memcmp(a[i].shape, b[i].shape, sizeof a[i].shape) ||
                memcmp(a[i].data, b[i].data, bytes))
                fail("prescan changed a tensor", NULL);
            cvd_tensor_release(&a[i]);
            cvd_tensor_release(&b[i]);
        }
        prescan_free(&p);
        buf_free(&kept);
        buf_free(&back);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_prescan(data, size);
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
