/*
 * ttensor.c — JSON tensors, base64 and a naive convolution for the integration tests
 * (see ttensor.h). Deliberately simple and separate from server/codec.c, so the tests
 * check the daemon against an independent reading of the contract.
 */
#include "ttensor.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *why, size_t whylen, const char *fmt, ...)
{
    if (why && whylen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void tt_free(ttensor *t)
{
    free(t->data);
    memset(t, 0, sizeof *t);
}

void tt_shape_str(int rank, const int64_t *shape, char *out, size_t cap)
{
    size_t k = 0;
    k += (size_t)snprintf(out + k, cap - k, "(");
    for (int i = 0; i < rank && k < cap; i++)
        k += (size_t)snprintf(out + k, cap - k, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (k < cap)
        snprintf(out + k, cap - k, ")");
}

static int numel(int rank, const int64_t *shape, size_t *n)
{
    size_t p = 1;
    for (int i = 0; i < rank; i++) {
        if (shape[i] < 1 || shape[i] > (int64_t)1 << 32 || p > ((size_t)1 << 40))
            return -1;
        p *= (size_t)shape[i];
    }
    *n = p;
    return 0;
}

int tt_make(ttensor *t, int rank, const int64_t *shape, const double *values)
{
    memset(t, 0, sizeof *t);
    size_t n;
    if (rank < 1 || rank > TT_MAX_RANK || numel(rank, shape, &n) != 0)
        return -1;
    t->data = malloc(n * sizeof(double));
    if (!t->data)
        return -1;
    t->rank = rank;
    memcpy(t->shape, shape, (size_t)rank * sizeof shape[0]);
    t->n = n;
    if (values)
        memcpy(t->data, values, n * sizeof(double));
    return 0;
}

/* Checks a nested array at depth d against t->shape and appends its leaves. */
static int nested_walk(const cJSON *a, int d, ttensor *t, size_t *k, char *why, size_t wl)
{
    if (!cJSON_IsArray(a))
        return fail(why, wl, "nested tensor: expected an array at depth %d", d);
    if (cJSON_GetArraySize(a) != t->shape[d])
        return fail(why, wl, "nested tensor is ragged at depth %d (%d vs %lld)", d,
                    cJSON_GetArraySize(a), (long long)t->shape[d]);
    const cJSON *e;
    cJSON_ArrayForEach(e, a)
    {
        if (d == t->rank - 1) {
            if (!cJSON_IsNumber(e))
                return fail(why, wl, "nested tensor: non-number leaf");
            t->data[(*k)++] = e->valuedouble;
        } else if (nested_walk(e, d + 1, t, k, why, wl) != 0) {
            return -1;
        }
    }
    return 0;
}

static int read_shape(const cJSON *o, ttensor *t, char *why, size_t wl)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "shape");
    if (!cJSON_IsArray(s))
        return fail(why, wl, "tensor object has no \"shape\" array");
    int r = cJSON_GetArraySize(s);
    if (r < 1 || r > TT_MAX_RANK)
        return fail(why, wl, "tensor shape has rank %d", r);
    t->rank = r;
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, s)
    {
        if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble))
            return fail(why, wl, "tensor shape has a non-integer entry");
        t->shape[i++] = (int64_t)e->valuedouble;
    }
    if (numel(t->rank, t->shape, &t->n) != 0)
        return fail(why, wl, "tensor shape has a dim < 1");
    return 0;
}

static double le_f64(const unsigned char *p)
{
    uint64_t u = 0;
    for (int i = 7; i >= 0; i--)
        u = (u << 8) | p[i];
    double v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static double le_f32(const unsigned char *p)
{
    uint32_t u = 0;
    for (int i = 3; i >= 0; i--)
        u = (u << 8) | p[i];
    float v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static int from_base64(const cJSON *o, ttensor *t, char *why, size_t wl)
{
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(o, "dtype");
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(o, "base64");
    if (!cJSON_IsString(b))
        return fail(why, wl, "\"base64\" is not a string");
    t->bits = 64;
    if (dt) {
        if (cJSON_IsString(dt) && strcmp(dt->valuestring, "float32") == 0)
            t->bits = 32;
        else if (!cJSON_IsString(dt) || strcmp(dt->valuestring, "float64") != 0)
            return fail(why, wl, "base64 tensor has a bad dtype");
    }
    unsigned char *raw = NULL;
    size_t rawlen = 0;
    if (b64_decode(b->valuestring, strlen(b->valuestring), &raw, &rawlen) != 0)
        return fail(why, wl, "\"base64\" is not valid padded standard base64");
    size_t esz = (size_t)t->bits / 8;
    if (rawlen != t->n * esz) {
        free(raw);
        return fail(why, wl, "base64 holds %zu bytes, shape needs %zu", rawlen, t->n * esz);
    }
    t->data = malloc(t->n * sizeof(double));
    if (!t->data) {
        free(raw);
        return fail(why, wl, "out of memory");
    }
    for (size_t i = 0; i < t->n; i++)
        t->data[i] = t->bits == 64 ? le_f64(raw + 8 * i) : le_f32(raw + 4 * i);
    free(raw);
    if (!dt)
        t->bits = 0;
    return 0;
}

int tt_from_json(const cJSON *node, ttensor *t, char *why, size_t wl)
{
    memset(t, 0, sizeof *t);
    if (!node)
        return fail(why, wl, "tensor is missing");
    if (cJSON_IsArray(node)) {
        t->form = TT_NESTED;
        const cJSON *a = node;
        while (cJSON_IsArray(a)) {
            if (t->rank == TT_MAX_RANK)
                return fail(why, wl, "nested tensor deeper than %d", TT_MAX_RANK);
            int n = cJSON_GetArraySize(a);
            if (n < 1)
                return fail(why, wl, "nested tensor has an empty array");
            t->shape[t->rank++] = n;
            a = a->child;
        }
        if (numel(t->rank, t->shape, &t->n) != 0 || !(t->data = malloc(t->n * sizeof(double))))
            return fail(why, wl, "nested tensor too big");
        size_t k = 0;
        if (nested_walk(node, 0, t, &k, why, wl) != 0) {
            tt_free(t);
            return -1;
        }
        return 0;
    }
    if (!cJSON_IsObject(node))
        return fail(why, wl, "tensor is neither an array nor an object");
    if (read_shape(node, t, why, wl) != 0)
        return -1;
    if (cJSON_GetObjectItemCaseSensitive(node, "base64")) {
        t->form = TT_BASE64;
        if (from_base64(node, t, why, wl) != 0) {
            tt_free(t);
            return -1;
        }
        return 0;
    }
    t->form = TT_FLAT;
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(node, "data");
    if (!cJSON_IsArray(d))
        return fail(why, wl, "flat tensor has no \"data\" array");
    if ((size_t)cJSON_GetArraySize(d) != t->n)
        return fail(why, wl, "flat tensor: len(data) %d != prod(shape) %zu", cJSON_GetArraySize(d),
                    t->n);
    t->data = malloc(t->n * sizeof(double));
    if (!t->data)
        return fail(why, wl, "out of memory");
    size_t k = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, d)
    {
        if (!cJSON_IsNumber(e)) {
            tt_free(t);
            return fail(why, wl, "flat tensor: non-number in data");
        }
        t->data[k++] = e->valuedouble;
    }
    return 0;
}

double tt_max_abs(const ttensor *t)
{
    double m = 0;
    for (size_t i = 0; i < t->n; i++)
        if (fabs(t->data[i]) > m)
            m = fabs(t->data[i]);
    return m;
}

int tt_compare(const ttensor *got, const ttensor *want, double tol, char *why, size_t wl)
{
    char gs[128], ws[128];
    tt_shape_str(got->rank, got->shape, gs, sizeof gs);
    tt_shape_str(want->rank, want->shape, ws, sizeof ws);
    if (strcmp(gs, ws) != 0)
        return fail(why, wl, "shape %s, expected %s", gs, ws);
    for (size_t i = 0; i < got->n; i++) {
        double g = got->data[i], w = want->data[i];
        if (!(fabs(g - w) <= tol))
            return fail(why, wl, "element %zu is %.17g, expected %.17g (tolerance %g)", i, g, w,
                        tol);
    }
    return 0;
}

/* A growable string for the writers. */
typedef struct sb {
    char *s;
    size_t len, cap;
    int oom;
} sb;

static void sb_add(sb *b, const char *p, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *q = realloc(b->s, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->s = q;
        b->cap = cap;
    }
    memcpy(b->s + b->len, p, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sb_puts(sb *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static void sb_num(sb *b, double v)
{
    char tmp[40];
    int n = snprintf(tmp, sizeof tmp, "%.17g", v);
    sb_add(b, tmp, (size_t)n);
}

static void nested_out(sb *b, const double *v, int rank, const int64_t *shape, int d, size_t *k)
{
    sb_puts(b, "[");
    for (int64_t i = 0; i < shape[d]; i++) {
        if (i)
            sb_puts(b, ",");
        if (d == rank - 1)
            sb_num(b, v[(*k)++]);
        else
            nested_out(b, v, rank, shape, d + 1, k);
    }
    sb_puts(b, "]");
}

static void shape_out(sb *b, int rank, const int64_t *shape)
{
    sb_puts(b, "\"shape\":[");
    for (int i = 0; i < rank; i++) {
        char tmp[32];
        int n = snprintf(tmp, sizeof tmp, i ? ",%lld" : "%lld", (long long)shape[i]);
        sb_add(b, tmp, (size_t)n);
    }
    sb_puts(b, "]");
}

char *tt_json(const double *v, int rank, const int64_t *shape, tt_form form, int bits,
              int with_dtype)
{
    sb b = {0};
    size_t n;
    if (numel(rank, shape, &n) != 0)
        return NULL;
    if (form == TT_NESTED) {
        size_t k = 0;
        nested_out(&b, v, rank, shape, 0, &k);
    } else if (form == TT_FLAT) {
        sb_puts(&b, "{");
        shape_out(&b, rank, shape);
        sb_puts(&b, ",\"data\":[");
        for (size_t i = 0; i < n; i++) {
            if (i)
                sb_puts(&b, ",");
            sb_num(&b, v[i]);
        }
        sb_puts(&b, "]}");
    } else {
        size_t esz = bits == 32 ? 4 : 8;
        unsigned char *raw = malloc(n * esz);
        char *text = malloc(4 * ((n * esz + 2) / 3) + 1);
        if (!raw || !text) {
            free(raw);
            free(text);
            free(b.s);
            return NULL;
        }
        for (size_t i = 0; i < n; i++) {
            uint64_t u;
            if (bits == 32) {
                float f = (float)v[i];
                uint32_t u32;
                memcpy(&u32, &f, sizeof u32);
                u = u32;
            } else {
                memcpy(&u, &v[i], sizeof u);
            }
            for (size_t j = 0; j < esz; j++)
                raw[i * esz + j] = (unsigned char)(u >> (8 * j));
        }
        b64_encode(raw, n * esz, text);
        sb_puts(&b, "{");
        shape_out(&b, rank, shape);
        if (with_dtype)
            sb_puts(&b, bits == 32 ? ",\"dtype\":\"float32\"" : ",\"dtype\":\"float64\"");
        sb_puts(&b, ",\"base64\":\"");
        sb_puts(&b, text);
        sb_puts(&b, "\"}");
        free(raw);
        free(text);
    }
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

static const char b64_alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t b64_encode(const unsigned char *in, size_t n, char *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[k++] = b64_alpha[(v >> 18) & 63];
        out[k++] = b64_alpha[(v >> 12) & 63];
        out[k++] = i + 1 < n ? b64_alpha[(v >> 6) & 63] : '=';
        out[k++] = i + 2 < n ? b64_alpha[v & 63] : '=';
    }
    out[k] = '\0';
    return k;
}

static int b64_val(char c)
{
    const char *p = c ? strchr(b64_alpha, c) : NULL;
    return p ? (int)(p - b64_alpha) : -1;
}

int b64_decode(const char *in, size_t n, unsigned char **out, size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    if (n % 4 != 0)
        return -1;
    unsigned char *o = malloc(n / 4 * 3 + 1);
    if (!o)
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < n; i += 4) {
        int last = i + 4 == n;
        int pad = (in[i + 3] == '=') + (in[i + 2] == '=' && in[i + 3] == '=');
        int v[4];
        for (int j = 0; j < 4; j++)
            v[j] = j >= 4 - pad ? 0 : b64_val(in[i + j]);
        if ((pad && !last) || v[0] < 0 || v[1] < 0 || v[2] < 0 || v[3] < 0) {
            free(o);
            return -1;
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        o[k++] = (unsigned char)(w >> 16);
        if (pad < 2)
            o[k++] = (unsigned char)(w >> 8);
        if (pad < 1)
            o[k++] = (unsigned char)w;
    }
    *out = o;
    *outlen = k;
    return 0;
}

void ref_conv_forward(const ref_conv *p, const double *x, int64_t N, int64_t H, int64_t W,
                      const double *w, const double *b, int64_t OH, int64_t OW, double *y)
{
    int64_t Cg = p->C / p->groups, Fg = p->F / p->groups;
    /* y[n][f][oh][ow] = b[f] + sum_{c,i,j} x[n][g*Cg+c][ih][iw] * w[f][c][i][j] */
    for (int64_t n = 0; n < N; n++)
        for (int64_t f = 0; f < p->F; f++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    double s = b ? b[f] : 0.0;
                    int64_t g = f / Fg;
                    for (int64_t c = 0; c < Cg; c++)
                        for (int64_t i = 0; i < p->kh; i++)
                            for (int64_t j = 0; j < p->kw; j++) {
                                int64_t ih = oh * p->sh - p->pt + i * p->dh;
                                int64_t iw = ow * p->sw - p->pl + j * p->dw;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W)
                                    continue;
                                s += x[((n * p->C + g * Cg + c) * H + ih) * W + iw] *
                                     w[((f * Cg + c) * p->kh + i) * p->kw + j];
                            }
                    y[((n * p->F + f) * OH + oh) * OW + ow] = s;
                }
}
