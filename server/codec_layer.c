/*
 * codec_layer.c — the layer object of docs/api.md §2 in and out (codec.h). Decoding checks
 * field names first (unknown → invalid_argument), then reads dtype (it decides how W and b
 * are decoded), W, and every scalar field, filling what is absent from W's shape or the
 * defaults and refusing what contradicts W; cvd_conv2d_params_check has the last word on
 * ranges. Encoding writes the normalised form a client can send back.
 */
#include "codec.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "numfmt.h"
#include "shape.h"

static const char *const LAYER_FIELDS[] = {
    "in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups",
    "bias",        "dtype",        "W",           "b",      "init",    NULL};
static const char *const INIT_FIELDS[] = {"scheme", "seed", NULL};

#define INT_FIELD_MAX 2147483647.0

/* A short rendering of a JSON value for messages: 1.5, "3", true, an array of 3, ... */
static void describe(char out[80], const cJSON *n)
{
    if (cJSON_IsNumber(n)) {
        numfmt_f64(out, n->valuedouble);
    } else if (cJSON_IsString(n)) {
        size_t len = strlen(n->valuestring);
        if (len > 40)
            len = 40;
        while (len > 0 && len < strlen(n->valuestring) &&
               ((unsigned char)n->valuestring[len] & 0xC0) == 0x80)
            len--;
        snprintf(out, 80, "\"%.*s%s\"", (int)len, n->valuestring,
                 len < strlen(n->valuestring) ? "..." : "");
    } else if (cJSON_IsBool(n)) {
        snprintf(out, 80, "%s", cJSON_IsTrue(n) ? "true" : "false");
    } else if (cJSON_IsArray(n)) {
        snprintf(out, 80, "an array of %d", cJSON_GetArraySize(n));
    } else {
        snprintf(out, 80, "%s", codec_json_type_name(n));
    }
}

/* An integer in [min, INT_FIELD_MAX]; 1 ok, 0 not an integer, -1 out of range. */
static int as_int(const cJSON *n, double min, int64_t *v)
{
    if (!cJSON_IsNumber(n) || n->valuedouble != floor(n->valuedouble))
        return 0;
    if (n->valuedouble < min || n->valuedouble > INT_FIELD_MAX)
        return -1;
    *v = (int64_t)n->valuedouble;
    return 1;
}

static int bad_int(apierr *e, const char *name, const cJSON *n, double min, int pair)
{
    char got[80];
    describe(got, n);
    return apierr_set(e, APIERR_INVALID_LAYER, "%s must be an integer >= %d%s, got %s", name,
                      (int)min, pair ? " or [h, w]" : "", got);
}

static int read_int(const cJSON *obj, const char *name, double min, int64_t *v, int *given,
                    apierr *e)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(obj, name);
    *given = n != NULL;
    if (!n)
        return 0;
    if (as_int(n, min, v) != 1)
        return bad_int(e, name, n, min, 0);
    return 0;
}

/* An int (both sides) or [h, w]. */
static int read_pair(const cJSON *obj, const char *name, double min, int64_t hw[2], int *given,
                     apierr *e)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(obj, name);
    *given = n != NULL;
    if (!n)
        return 0;
    if (cJSON_IsArray(n)) {
        if (cJSON_GetArraySize(n) != 2) {
            char got[80];
            describe(got, n);
            return apierr_set(e, APIERR_INVALID_LAYER,
                              "%s must be an integer or [h, w] (2 integers), got %s", name, got);
        }
        const cJSON *a = n->child, *b = a->next;
        char el[64];
        snprintf(el, sizeof el, "%s[0]", name);
        if (as_int(a, min, &hw[0]) != 1)
            return bad_int(e, el, a, min, 0);
        snprintf(el, sizeof el, "%s[1]", name);
        if (as_int(b, min, &hw[1]) != 1)
            return bad_int(e, el, b, min, 0);
        return 0;
    }
    if (as_int(n, min, &hw[0]) != 1)
        return bad_int(e, name, n, min, 1);
    hw[1] = hw[0];
    return 0;
}

static int read_padding(const cJSON *obj, cvd_conv2d_params *p, apierr *e)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(obj, "padding");
    p->pad_mode = CVD_PAD_EXPLICIT;
    p->ph = p->pw = 0;
    if (!n)
        return 0;
    if (cJSON_IsString(n)) {
        if (!strcmp(n->valuestring, "valid")) {
            p->pad_mode = CVD_PAD_VALID;
            return 0;
        }
        if (!strcmp(n->valuestring, "same")) {
            p->pad_mode = CVD_PAD_SAME;
            return 0;
        }
        char got[80];
        describe(got, n);
        return apierr_set(e, APIERR_INVALID_LAYER,
                          "padding must be an integer >= 0, [h, w], \"valid\" or \"same\", got %s",
                          got);
    }
    int64_t hw[2] = {0, 0};
    int given;
    if (read_pair(obj, "padding", 0, hw, &given, e) < 0) {
        if (!cJSON_IsArray(n)) {
            char got[80];
            describe(got, n);
            apierr_set(e, APIERR_INVALID_LAYER,
                       "padding must be an integer >= 0, [h, w], \"valid\" or \"same\", got %s",
                       got);
        }
        return -1;
    }
    p->ph = hw[0];
    p->pw = hw[1];
    return 0;
}

static int read_init(const cJSON *obj, codec_layer *l, apierr *e)
{
    const cJSON *init = cJSON_GetObjectItemCaseSensitive(obj, "init");
    l->scheme = CVD_INIT_KAIMING_UNIFORM;
    if (init && !cJSON_IsObject(init)) {
        char got[80];
        describe(got, init);
        return apierr_set(e, APIERR_INVALID_LAYER,
                          "init must be an object {\"scheme\": ..., \"seed\": ...}, got %s", got);
    }
    if (init && codec_check_fields(init, INIT_FIELDS, "layer.init", e) < 0)
        return -1;
    const cJSON *scheme = init ? cJSON_GetObjectItemCaseSensitive(init, "scheme") : NULL;
    const cJSON *seed = init ? cJSON_GetObjectItemCaseSensitive(init, "seed") : NULL;
    int given = 0;
    if (scheme) {
        static const char *const names[] = {"kaiming_uniform", "normal", "zeros", "given"};
        int i = 0;
        while (i < 4 && !(cJSON_IsString(scheme) && !strcmp(scheme->valuestring, names[i])))
            i++;
        if (i == 4) {
            char got[80];
            describe(got, scheme);
            return apierr_set(e, APIERR_INVALID_LAYER,
                              "init.scheme must be \"kaiming_uniform\", \"normal\" or \"zeros\", "
                              "got %s",
                              got);
        }
        given = i == 3;
        if (!given)
            l->scheme = (cvd_init_scheme)i;
    }
    if (l->has_W) {
        if (init && (!given || seed))
            return apierr_set(e, APIERR_INVALID_LAYER,
                              "init and W are mutually exclusive: W sets the weights (and b is "
                              "zeros unless sent); drop init or W");
        l->scheme = CVD_INIT_ZEROS;
        l->seed = 0;
        return 0;
    }
    if (given)
        return apierr_set(e, APIERR_INVALID_LAYER,
                          "init.scheme \"given\" means the weights are sent as W, but there is "
                          "no W; send W or choose \"kaiming_uniform\", \"normal\" or \"zeros\"");
    if (seed) {
        if (!cJSON_IsNumber(seed) || seed->valuedouble != floor(seed->valuedouble) ||
            seed->valuedouble < 0 || seed->valuedouble >= 9007199254740992.0) {
            char got[80];
            describe(got, seed);
            return apierr_set(e, APIERR_INVALID_LAYER,
                              "init.seed must be an integer in [0, 2^53), got %s", got);
        }
        l->seed = (uint64_t)seed->valuedouble;
        return 0;
    }
    uint64_t r;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
        return apierr_set(e, APIERR_INTERNAL, "cannot draw a random init seed (getrandom)");
    l->seed = r & ((UINT64_C(1) << 53) - 1);
    return 0;
}

static int decode_layer(const cJSON *obj, int64_t max_elems, const char *limit_setting,
                        codec_layer *l, apierr *e)
{
    cvd_conv2d_params *p = &l->p;
    char ws[96], want[160];

    /* dtype first: it decides how W and b are decoded */
    p->dtype = CVD_F64;
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(obj, "dtype");
    if (dt) {
        if (cJSON_IsString(dt) && !strcmp(dt->valuestring, "float32")) {
            p->dtype = CVD_F32;
        } else if (!(cJSON_IsString(dt) && !strcmp(dt->valuestring, "float64"))) {
            char got[80];
            describe(got, dt);
            return apierr_set(e, APIERR_INVALID_LAYER,
                              "dtype must be \"float32\" or \"float64\", got %s", got);
        }
    }

    const cJSON *bias = cJSON_GetObjectItemCaseSensitive(obj, "bias");
    p->bias = 1;
    if (bias) {
        if (!cJSON_IsBool(bias)) {
            char got[80];
            describe(got, bias);
            return apierr_set(
                e, APIERR_INVALID_LAYER, "bias must be true or false, got %s%s", got,
                cJSON_IsArray(bias) || cJSON_IsObject(bias) ? " (send bias values as \"b\")" : "");
        }
        p->bias = cJSON_IsTrue(bias);
    }

    int given;
    p->groups = 1;
    if (read_int(obj, "groups", 1, &p->groups, &given, e) < 0)
        return -1;

    const cJSON *Wn = cJSON_GetObjectItemCaseSensitive(obj, "W");
    l->W_form = -1;
    if (Wn) {
        codec_form form;
        if (codec_tensor_decode(Wn, "layer.W", p->dtype, max_elems, limit_setting, &l->W, &form,
                                e) < 0)
            return -1;
        l->has_W = 1;
        l->W_form = (int)form;
        l->W_rank = l->W.rank;
        shape_format(ws, sizeof ws, l->W.rank, l->W.shape);
        if (l->W.rank != 3 && l->W.rank != 4)
            return apierr_set(e, APIERR_INVALID_LAYER,
                              "W has shape %s; send W as (out_channels, in_channels/groups, kh, "
                              "kw), or (out_channels, kh, kw) when in_channels/groups is 1",
                              ws);
    }
    const cvd_tensor *W = &l->W;
    int r4 = W->rank == 4;

    /* out_channels = W's dim 0 */
    if (read_int(obj, "out_channels", 1, &p->out_channels, &given, e) < 0)
        return -1;
    if (l->has_W) {
        if (given && p->out_channels != W->shape[0])
            return apierr_set(e, APIERR_INVALID_LAYER,
                              "out_channels is %lld but W has shape %s (out_channels %lld); drop "
                              "out_channels or fix W",
                              (long long)p->out_channels, ws, (long long)W->shape[0]);
        p->out_channels = W->shape[0];
    } else if (!given) {
        return apierr_set(e, APIERR_INVALID_LAYER,
                          "out_channels is missing; give out_channels, or W (its shape sets it)");
    }

    /* in_channels = groups * W's dim 1 (1 for a rank-3 W) */
    if (read_int(obj, "in_channels", 1, &p->in_channels, &given, e) < 0)
        return -1;
    if (l->has_W) {
        const int64_t cg = r4 ? W->shape[1] : 1, in = cg * p->groups;
        if (given && p->in_channels != in) {
            if (r4)
                snprintf(want, sizeof want, "in_channels %lld with groups %lld", (long long)in,
                         (long long)p->groups);
            else
                snprintf(want, sizeof want,
                         "a rank-3 W means in_channels/groups = 1, so in_channels %lld; send W "
                         "as (out_channels, in_channels/groups, kh, kw)",
                         (long long)p->groups);
            return apierr_set(e, APIERR_INVALID_LAYER,
                              "in_channels is %lld but W has shape %s (%s)",
                              (long long)p->in_channels, ws, want);
        }
        p->in_channels = in;
    } else if (!given) {
        return apierr_set(e, APIERR_INVALID_LAYER,
                          "in_channels is missing; give in_channels, or W (its shape sets it)");
    }

    int64_t k[2] = {0, 0};
    if (read_pair(obj, "kernel_size", 1, k, &given, e) < 0)
        return -1;
    if (l->has_W) {
        int64_t kh = W->shape[r4 ? 2 : 1], kw = W->shape[r4 ? 3 : 2];
        if (given && (k[0] != kh || k[1] != kw))
            return apierr_set(e, APIERR_INVALID_LAYER,
                              "kernel_size is [%lld,%lld] but W has shape %s (kernel [%lld,%lld]); "
                              "drop kernel_size or fix W",
                              (long long)k[0], (long long)k[1], ws, (long long)kh, (long long)kw);
        k[0] = kh;
        k[1] = kw;
    } else if (!given) {
        return apierr_set(e, APIERR_INVALID_LAYER,
                          "kernel_size is missing; give kernel_size, or W (its shape sets it)");
    }
    p->kh = k[0];
    p->kw = k[1];

    int64_t s[2] = {1, 1}, d[2] = {1, 1};
    if (read_pair(obj, "stride", 1, s, &given, e) < 0 ||
        read_pair(obj, "dilation", 1, d, &given, e) < 0 || read_padding(obj, p, e) < 0)
        return -1;
    p->sh = s[0];
    p->sw = s[1];
    p->dh = d[0];
    p->dw = d[1];
    if (p->pad_mode == CVD_PAD_SAME && (p->sh != 1 || p->sw != 1))
        return apierr_set(e, APIERR_INVALID_LAYER,
                          "padding \"same\" needs stride 1 (as in PyTorch), but stride is "
                          "[%lld,%lld]; use stride 1 or explicit padding",
                          (long long)p->sh, (long long)p->sw);
    if (p->in_channels % p->groups || p->out_channels % p->groups)
        return apierr_set(e, APIERR_INVALID_LAYER,
                          "in_channels (%lld) and out_channels (%lld) must both be divisible by "
                          "groups (%lld)",
                          (long long)p->in_channels, (long long)p->out_channels,
                          (long long)p->groups);
    if (l->has_W && !r4 && p->in_channels / p->groups != 1)
        return apierr_set(e, APIERR_INVALID_LAYER,
                          "W has shape %s (rank 3) but in_channels/groups is %lld; send W as "
                          "(out_channels, in_channels/groups, kh, kw)",
                          ws, (long long)(p->in_channels / p->groups));

    const cJSON *bn = cJSON_GetObjectItemCaseSensitive(obj, "b");
    if (bn) {
        if (!p->bias)
            return apierr_set(e, APIERR_INVALID_LAYER,
                              "b is given but bias is false; drop b or set bias to true");
        if (codec_tensor_decode(bn, "layer.b", p->dtype, max_elems, limit_setting, &l->b, NULL, e) <
            0)
            return -1;
        l->has_b = 1;
        l->b_rank = l->b.rank;
        const cvd_tensor *b = &l->b;
        if (!((b->rank == 1 && b->shape[0] == p->out_channels) ||
              (b->rank == 2 && b->shape[0] == p->out_channels && b->shape[1] == 1))) {
            char bs[96];
            shape_format(bs, sizeof bs, b->rank, b->shape);
            return apierr_set(e, APIERR_INVALID_LAYER,
                              "b has shape %s but out_channels is %lld; send b of shape (%lld) "
                              "or (%lld,1)",
                              bs, (long long)p->out_channels, (long long)p->out_channels,
                              (long long)p->out_channels);
        }
    }

    if (read_init(obj, l, e) < 0)
        return -1;

    cvd_err ce = {{0}};
    cvd_status st = cvd_conv2d_params_check(p, &ce);
    if (st != CVD_OK)
        return apierr_from_cvd(e, st, &ce, 1);
    return 0;
}

int codec_layer_decode(const cJSON *node, int64_t max_elems, const char *limit_setting,
                       codec_layer *out, apierr *e)
{
    memset(out, 0, sizeof *out);
    out->W_form = -1;
    if (!cJSON_IsObject(node)) {
        char got[80];
        describe(got, node);
        return apierr_set(e, APIERR_INVALID_LAYER,
                          "layer must be an object such as {\"in_channels\": 1, \"out_channels\": "
                          "2, \"kernel_size\": 3}, got %s",
                          got);
    }
    if (codec_check_fields(node, LAYER_FIELDS, "layer", e) < 0)
        return -1;
    if (decode_layer(node, max_elems, limit_setting, out, e) < 0) {
        codec_layer_release(out);
        return -1;
    }
    return 0;
}

void codec_layer_release(codec_layer *l)
{
    if (!l)
        return;
    cvd_tensor_release(&l->W);
    cvd_tensor_release(&l->b);
    memset(l, 0, sizeof *l);
    l->W_form = -1;
}

int codec_layer_encode(buf *b, const cvd_conv2d_params *p, int scheme, uint64_t seed)
{
    static const char *const schemes[] = {"kaiming_uniform", "normal", "zeros"};
    buf_printf(b,
               "{\"in_channels\":%lld,\"out_channels\":%lld,\"kernel_size\":[%lld,%lld],"
               "\"stride\":[%lld,%lld],\"padding\":",
               (long long)p->in_channels, (long long)p->out_channels, (long long)p->kh,
               (long long)p->kw, (long long)p->sh, (long long)p->sw);
    if (p->pad_mode == CVD_PAD_SAME)
        buf_puts(b, "\"same\"");
    else if (p->pad_mode == CVD_PAD_VALID)
        buf_puts(b, "\"valid\"");
    else
        buf_printf(b, "[%lld,%lld]", (long long)p->ph, (long long)p->pw);
    buf_printf(b, ",\"dilation\":[%lld,%lld],\"groups\":%lld,\"bias\":%s,\"dtype\":\"%s\",",
               (long long)p->dh, (long long)p->dw, (long long)p->groups, p->bias ? "true" : "false",
               p->dtype == CVD_F32 ? "float32" : "float64");
    if (scheme >= 0 && scheme < 3)
        buf_printf(b, "\"init\":{\"scheme\":\"%s\",\"seed\":%llu}}", schemes[scheme],
                   (unsigned long long)seed);
    else
        buf_puts(b, "\"init\":{\"scheme\":\"given\"}}");
    return b->oom ? -1 : 0;
}
