/*
 * bench_codec.c — throughput of the server's value codec on one 8x64x56x56 tensor of
 * uniform random values in [-1, 1): nested JSON encoding (float64 and float32), nested
 * decoding (parse + tensor), base64 encoding and decoding. Prints one line per case:
 *   bench codec=<case> MBps=<JSON megabytes per second> ms=<median milliseconds>
 * MB are 10^6 bytes of JSON text (written for encoders, read for decoders).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../server/codec.h"
#include "bench_time.h"

#define RUNS 7

static void report(const char *name, size_t bytes, double *ms)
{
    qsort(ms, RUNS, sizeof *ms, cmp_double);
    double med = ms[RUNS / 2];
    printf("bench codec=%s MBps=%.1f ms=%.2f\n", name, bytes / 1e6 / (med / 1e3), med);
    fflush(stdout);
}

static int fill(cvd_tensor *t, cvd_dtype dt)
{
    const int64_t shape[4] = {8, 64, 56, 56};
    if (cvd_tensor_alloc(t, dt, 4, shape, NULL) != CVD_OK)
        return -1;
    uint64_t s = 0x853C49E6748FEA9Bu;
    int64_t n = cvd_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005u + 1442695040888963407u;
        double v = (double)(s >> 11) * 0x1p-52 - 1.0;
        if (dt == CVD_F64)
            ((double *)t->data)[i] = v;
        else
            ((float *)t->data)[i] = (float)v;
    }
    return 0;
}

/* Encodes t RUNS times in `form`; leaves the last output in *out. */
static int bench_encode(const char *name, const cvd_tensor *t, codec_form form, buf *out)
{
    double ms[RUNS];
    for (int r = 0; r < RUNS; r++) {
        buf_free(out);
        buf_init(out);
        double t0 = now_ms();
        if (codec_tensor_encode(out, t, 0, NULL, form) != 0)
            return -1;
        ms[r] = now_ms() - t0;
    }
    report(name, out->len, ms);
    return 0;
}

static int bench_decode(const char *name, const buf *text, cvd_dtype dt)
{
    double ms[RUNS];
    for (int r = 0; r < RUNS; r++) {
        apierr e = {0};
        cvd_tensor back;
        double t0 = now_ms();
        cJSON *root = codec_parse(text->data, text->len, &e);
        if (!root || codec_tensor_decode(root, "x", dt, 0, "none", &back, NULL, &e) != 0) {
            fprintf(stderr, "bench_codec: %s: %s\n", name, e.msg);
            cJSON_Delete(root);
            return -1;
        }
        cJSON_Delete(root);
        ms[r] = now_ms() - t0;
        cvd_tensor_release(&back);
    }
    report(name, text->len, ms);
    return 0;
}

int main(void)
{
    cvd_tensor t64, t32;
    buf nested64, nested32, b64;
    buf_init(&nested64);
    buf_init(&nested32);
    buf_init(&b64);
    if (fill(&t64, CVD_F64) || fill(&t32, CVD_F32)) {
        fprintf(stderr, "bench_codec: out of memory\n");
        return 1;
    }
    int rc = bench_encode("encode_nested_f64", &t64, CODEC_NESTED, &nested64) ||
             bench_encode("encode_nested_f32", &t32, CODEC_NESTED, &nested32) ||
             bench_decode("decode_nested_f64", &nested64, CVD_F64) ||
             bench_encode("encode_base64_f32", &t32, CODEC_BASE64, &b64) ||
             bench_decode("decode_base64_f32", &b64, CVD_F32);
    buf_free(&nested64);
    buf_free(&nested32);
    buf_free(&b64);
    cvd_tensor_release(&t64);
    cvd_tensor_release(&t32);
    return rc ? 1 : 0;
}
