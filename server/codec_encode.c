/*
 * codec_encode.c — cvd_tensors and strings into JSON text (codec.h), written straight into
 * a buf through numfmt (shortest round-trip numbers) and base64; no cJSON tree is built
 * for output. On out of memory the buf is marked (b->oom) and the call returns -1.
 */
#include "codec.h"

#include <string.h>

#include "base64.h"
#include "numfmt.h"

int codec_form_parse(const char *s, codec_form *form)
{
    static const char *const names[] = {"nested", "flat", "base64"};
    for (int i = 0; i < 3; i++) {
        if (s && !strcmp(s, names[i])) {
            *form = (codec_form)i;
            return 0;
        }
    }
    return -1;
}

int codec_fmt_f64(char *out, double v)
{
    return numfmt_f64(out, v);
}

int codec_fmt_f32(char *out, float v)
{
    return numfmt_f32(out, v);
}

/* Appends n numbers of t starting at element `at`, comma-separated, in chunks so the
 * buffer grows by bounded steps. Each number is written in place (at most NUMFMT_MAX-1
 * characters plus a comma). */
static int put_numbers(buf *b, const cvd_tensor *t, int64_t at, int64_t n)
{
    enum { CHUNK = 4096 };
    /* longest number + comma: "-2.2250738585072014e-308", "-1000000200000000" */
    const size_t per = t->dtype == CVD_F64 ? 25 : 18;
    while (n > 0) {
        int64_t m = n < CHUNK ? n : CHUNK;
        if (buf_reserve(b, (size_t)m * per + 1) < 0)
            return -1;
        char *p = b->data + b->len;
        if (t->dtype == CVD_F64) {
            const double *x = (const double *)t->data + at;
            for (int64_t i = 0; i < m; i++) {
                p += numfmt_f64(p, x[i]);
                *p++ = ',';
            }
        } else {
            const float *x = (const float *)t->data + at;
            for (int64_t i = 0; i < m; i++) {
                p += numfmt_f32(p, x[i]);
                *p++ = ',';
            }
        }
        n -= m;
        at += m;
        if (n == 0)
            p--; /* no comma after the last number */
        *p = '\0';
        b->len = (size_t)(p - b->data);
    }
    return 0;
}

static void put_shape(buf *b, int rank, const int64_t *shape)
{
    buf_puts(b, "\"shape\":[");
    for (int i = 0; i < rank; i++)
        buf_printf(b, "%s%lld", i ? "," : "", (long long)shape[i]);
    buf_putc(b, ']');
}

static int put_base64(buf *b, const cvd_tensor *t, int64_t numel)
{
    size_t es = cvd_dtype_size(t->dtype);
    size_t nbytes = (size_t)numel * es;
    size_t chars = base64_encoded_len(nbytes);
    if ((nbytes && !chars) || buf_reserve(b, chars) < 0) {
        b->oom = 1;
        return -1;
    }
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    /* The wire format is little-endian: swap chunk by chunk. */
    unsigned char chunk[3072];
    const unsigned char *src = t->data;
    for (size_t off = 0; off < nbytes; off += sizeof chunk) {
        size_t n = nbytes - off < sizeof chunk ? nbytes - off : sizeof chunk;
        for (size_t i = 0; i < n; i += es)
            for (size_t x = 0; x < es; x++)
                chunk[i + x] = src[off + i + es - 1 - x];
        base64_encode(b->data + b->len, chunk, n);
        b->len += base64_encoded_len(n);
    }
#else
    base64_encode(b->data + b->len, t->data, nbytes);
    b->len += chars;
#endif
    b->data[b->len] = '\0';
    return 0;
}

int codec_tensor_encode(buf *b, const cvd_tensor *t, int rank, const int64_t *shape,
                        codec_form form)
{
    if (!shape) {
        rank = t->rank;
        shape = t->shape;
    }
    int64_t numel;
    if (cvd_shape_numel(rank, shape, &numel, NULL) != CVD_OK || numel != cvd_tensor_numel(t) ||
        cvd_dtype_size(t->dtype) == 0)
        return -1;

    if (form == CODEC_FLAT) {
        buf_putc(b, '{');
        put_shape(b, rank, shape);
        buf_puts(b, ",\"data\":[");
        put_numbers(b, t, 0, numel);
        buf_puts(b, "]}");
    } else if (form == CODEC_BASE64) {
        buf_putc(b, '{');
        put_shape(b, rank, shape);
        buf_printf(b, ",\"dtype\":\"%s\",\"base64\":\"", cvd_dtype_name(t->dtype));
        put_base64(b, t, numel);
        buf_puts(b, "\"}");
    } else {
        /* Open every level, write a row, then close as many levels as wrap and reopen. */
        int64_t idx[CVD_MAX_RANK] = {0};
        int64_t row = shape[rank - 1], at = 0;
        for (int d = 0; d < rank; d++)
            buf_putc(b, '[');
        for (;;) {
            put_numbers(b, t, at, row);
            at += row;
            buf_putc(b, ']');
            int d = rank - 2;
            for (; d >= 0; d--) {
                if (++idx[d] < shape[d])
                    break;
                idx[d] = 0;
                buf_putc(b, ']');
            }
            if (d < 0 || b->oom)
                break;
            buf_putc(b, ',');
            for (int j = d + 1; j < rank; j++)
                buf_putc(b, '[');
        }
    }
    return b->oom ? -1 : 0;
}

int codec_string_encode(buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    buf_putc(b, '"');
    while (*p) {
        /* Copy the longest run that needs no escaping in one append. */
        const unsigned char *q = p;
        while (*q >= 0x20 && *q < 0x80 && *q != '"' && *q != '\\')
            q++;
        if (q > p) {
            buf_append(b, p, (size_t)(q - p));
            p = q;
            continue;
        }
        unsigned char c = *p;
        if (c >= 0x80) {
            /* Pass well-formed UTF-8 through; anything else (a message cut mid-character)
             * becomes U+FFFD so the output stays valid JSON. */
            int n = c >= 0xF0 && c <= 0xF4   ? 3
                    : c >= 0xE0 && c <= 0xEF ? 2
                    : c >= 0xC2 && c <= 0xDF ? 1
                                             : -1;
            int ok = n > 0;
            for (int k = 1; ok && k <= n; k++)
                ok = (p[k] & 0xC0) == 0x80;
            if (ok && n == 2)
                ok = !(c == 0xE0 && p[1] < 0xA0) && !(c == 0xED && p[1] > 0x9F);
            if (ok && n == 3)
                ok = !(c == 0xF0 && p[1] < 0x90) && !(c == 0xF4 && p[1] > 0x8F);
            if (ok) {
                buf_append(b, p, (size_t)n + 1);
                p += n + 1;
            } else {
                buf_puts(b, "\\ufffd");
                p++;
            }
            continue;
        }
        char esc[7] = {'\\', 0, 0, 0, 0, 0, 0};
        switch (c) {
        case '"':
        case '\\':
            esc[1] = (char)c;
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            break;
        }
        buf_puts(b, esc);
        p++;
    }
    buf_putc(b, '"');
    return b->oom ? -1 : 0;
}
