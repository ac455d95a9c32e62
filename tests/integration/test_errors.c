/*
 * test_errors.c — every row of the error contract (spec §5) that a single request can
 * trigger on a default daemon: invalid_json, invalid_tensor, invalid_layer, shape_mismatch,
 * invalid_argument, 404, 405 (+ Allow), 409, 415. Each row checks the status, the code,
 * that the message names the field (and, for shapes, both shapes); after every row the
 * four fixture sessions are unchanged (W, b, cached, counters) and /healthz still answers.
 * Limits (413, 422, 429, 401, 503) live in test_limits.c, test_sessions.c, test_service.c
 * and test_lifecycle.c.
 */
#include "itest.h"

#include <stdlib.h>
#include <string.h>

/* $S: notebook session with b, forwarded and backwarded once; $T: notebook, bias off,
 * forwarded; $U: notebook, never forwarded; $F: float32 notebook, forwarded. $W, $X, $D:
 * the notebook's W, x, delta (nested). */
enum { SS, ST, SU, SF, NSESS };
static char *sid[NSESS];
static session_snap snaps[NSESS];

typedef struct row {
    const char *method, *path, *body;
    long status;
    const char *code;   /* "a|b": either is acceptable */
    const char *fields; /* the message names one of these ("a|b"); NULL: not checked */
    const char *shape;  /* the message shows this shape (spaces ignored) */
    const char *shape2;
    const char *hdr;   /* one extra request header */
    const char *allow; /* 405: Allow must list these methods ("A|B": all of them) */
    size_t len;        /* body length when it holds a NUL byte */
    int where;         /* invalid_json: the message says where (holds a digit) */
} row;

#define ROW(m, p, b, st, c, f)                                                                     \
    {                                                                                              \
        .method = m, .path = p, .body = b, .status = st, .code = c, .fields = f                    \
    }
#define FWD(b, c, f) ROW("POST", "/forward", b, 400, c, f)
#define BWD(b, c, f) ROW("POST", "/backward", b, 400, c, f)
#define NEW(b, c, f) ROW("POST", "/sessions", b, 400, c, f)
#define JSONERR(b)                                                                                 \
    {                                                                                              \
        .method = "POST", .path = "/forward", .body = b, .status = 400, .code = "invalid_json",    \
        .where = 1                                                                                 \
    }
#define NOTJSON(b)                                                                                 \
    {                                                                                              \
        .method = "POST", .path = "/forward", .body = b, .status = 400, .code = "invalid_json"     \
    }
#define NUL_BODY "{\"session\":\"$S\"\0,\"x\":1}"
#define X4(body) "{\"session\":\"$S\",\"x\":" body "}"
#define L(body)  "{\"in_channels\":1,\"out_channels\":2,\"kernel_size\":3," body "}"

static const row rows[] = {
    /* invalid_json: not UTF-8 JSON (RFC 8259), NaN/Infinity literals included */
    JSONERR("{\"session\":\"$S\",\"x\":"),
    JSONERR("{\"session\":\"$S\",\"x\":[[[[1,2,,3]]]]}"),
    JSONERR("{\"session\":\"$S\",\"x\":[[[[1,2,3]]]]"),
    NOTJSON("{\"session\":\"$S\",\"x\":NaN}"),
    NOTJSON("{\"session\":\"$S\",\"x\":[[[[NaN]]]]}"),
    NOTJSON("{\"session\":\"$S\",\"x\":[[[[Infinity]]]]}"),
    NOTJSON("{\"session\":\"$S\",\"x\":[[[[-Infinity]]]]}"),
    NOTJSON("{\"session\":\"$S\",\"x\":[[[[nan]]]]}"),
    NOTJSON("{\"session\":\"$S\",\"x\":[[[[0x10]]]]}"),
    NOTJSON("{\"session\":\"$S\",\"x\":[[[[01]]]]}"),
    NOTJSON("{\"session\":\"$S\",\"x\":[[[[+1]]]]}"),
    NOTJSON("{\"session\":\"$S\",\"x\":[[[[.5]]]]}"),
    NOTJSON("{\"session\":\"$S\",\"x\":[[[[1.]]]]}"),
    NOTJSON("{\"session\":\"$S\xff\",\"x\":$X}"),
    NOTJSON("{\"session\":\"\xc0\xaf\",\"x\":$X}"),
    NOTJSON("{\"session\":\"\xed\xa0\x80\",\"x\":$X}"),
    NOTJSON("{\"session\":\"\xf8\x88\x80\x80\x80\",\"x\":$X}"),
    NOTJSON("{\"session\":\"$S\",\"x\":$X,\"\xe2\x82\":1}"),
    NOTJSON(""),
    NOTJSON("   "),
    NOTJSON("{\"session\":\"$S\",\"x\":$X} x"),
    NOTJSON("{}{}"),
    NOTJSON("{'session':'$S'}"),
    NOTJSON("{\"session\":\"$S\",/*c*/\"x\":$X}"),
    NOTJSON("{\"session\":\"$S\",\"x\":$X,}"),
    NOTJSON("{\"session\":\"$S\"\"x\":$X}"),
    NOTJSON("{\"session\":\"a\tb\",\"x\":$X}"),
    NOTJSON("{\"session\":\"$S\",\"x\":[[[[tru]]]]}"),
    {.method = "POST",
     .path = "/forward",
     .body = NUL_BODY,
     .len = sizeof(NUL_BODY) - 1,
     .status = 400,
     .code = "invalid_json"},
    {.method = "POST",
     .path = "/sessions",
     .body = "{\"W\":[[[1]]]",
     .status = 400,
     .code = "invalid_json",
     .where = 1},
    {.method = "POST",
     .path = "/backward",
     .body = "{\"session\":\"$S\",\"delta\":[}",
     .status = 400,
     .code = "invalid_json",
     .where = 1},

    /* invalid_tensor: encodings */
    FWD(X4("[[[[1,2],[3]]]]"), "invalid_tensor", "x"),
    FWD(X4("[[[[1,2],[3,4]],[[5,6]]]]"), "invalid_tensor", "x"),
    FWD(X4("[[[[1,2],[3,[4]]]]]"), "invalid_tensor", "x"),
    FWD(X4("[]"), "invalid_tensor", "x"),
    FWD(X4("[[[[]]]]"), "invalid_tensor", "x"),
    FWD(X4("[[[[1]]],[]]"), "invalid_tensor", "x"),
    FWD(X4("[[[[[1]]]]]"), "invalid_tensor", "x"),
    FWD(X4("[[[[\"a\"]]]]"), "invalid_tensor", "x"),
    FWD(X4("[[[[true]]]]"), "invalid_tensor", "x"),
    FWD(X4("[[[[null]]]]"), "invalid_tensor", "x"),
    FWD(X4("[[[[{}]]]]"), "invalid_tensor", "x"),
    FWD(X4("\"abc\""), "invalid_tensor", "x"),
    FWD(X4("5"), "invalid_tensor", "x"),
    FWD(X4("true"), "invalid_tensor|invalid_argument", "x"),
    FWD(X4("[[[[1e400]]]]"), "invalid_tensor", "x"),
    FWD(X4("[[[[-1e400,1,2,3],[1,2,3,4],[1,2,3,4],[1,2,3,4]]]]"), "invalid_tensor", "x"),
    FWD(X4("{\"shape\":[1,1,2,2],\"data\":[1,2,3]}"), "invalid_tensor", "x"),
    FWD(X4("{\"shape\":[1,1,2,2],\"data\":[1,2,3,4,5]}"), "invalid_tensor", "x"),
    FWD(X4("{\"shape\":[1,1,0,2],\"data\":[]}"), "invalid_tensor", "x"),
    FWD(X4("{\"shape\":[1,1,-4,-4],\"data\":[1]}"), "invalid_tensor", "x"),
    FWD(X4("{\"shape\":[1,1,2.5,2],\"data\":[1,2,3,4,5]}"), "invalid_tensor", "x"),
    FWD(X4("{\"shape\":[],\"data\":[]}"), "invalid_tensor", "x"),
    FWD(X4("{\"shape\":[1,1,1,1,1],\"data\":[1]}"), "invalid_tensor", "x"),
    FWD(X4("{\"shape\":\"1,1,4,4\",\"data\":[1]}"), "invalid_tensor", "x"),
    FWD(X4("{\"data\":[1,2,3,4]}"), "invalid_tensor", "x|shape"),
    FWD(X4("{\"shape\":[1,1,2,2]}"), "invalid_tensor", "x|data"),
    FWD(X4("{\"shape\":[1,1,2,2],\"data\":[1,2,\"3\",4]}"), "invalid_tensor", "x"),
    FWD(X4("{\"shape\":[1,1,2,2],\"data\":[[1,2],[3,4]]}"), "invalid_tensor", "x"),
    FWD(X4("{\"shape\":[1,1,2,2],\"data\":[1,2,3,1e999]}"), "invalid_tensor", "x"),
    FWD(X4("{\"shape\":[1,1,1,1],\"data\":[1],\"foo\":1}"), "invalid_tensor|invalid_argument",
        "foo"),
    FWD(X4("{\"shape\":[1,1,1,1],\"base64\":\"!!!!!!!!!!!!\"}"), "invalid_tensor", "x"),
    FWD(X4("{\"shape\":[1,1,1,1],\"base64\":\"AAAAAAAA8D8\"}"), "invalid_tensor", "x"),
    FWD(X4("{\"shape\":[1,1,1,1],\"base64\":\"AAAAAAAA8D8===\"}"), "invalid_tensor", "x"),
    FWD(X4("{\"shape\":[1,1,1,1],\"base64\":\"AAAAAAA-8D8=\"}"), "invalid_tensor", "x"),
    FWD(X4("{\"shape\":[1,1,1,1],\"base64\":\"AAAA AAAA8D8=\"}"), "invalid_tensor", "x"),
    FWD(X4("{\"shape\":[1,1,2,2],\"base64\":\"AAAAAAAA8D8=\"}"), "invalid_tensor", "x"),
    FWD(X4("{\"shape\":[1,1,1,1],\"dtype\":\"float32\",\"base64\":\"AAAAAAAA8D8=\"}"),
        "invalid_tensor", "x"),
    FWD(X4("{\"shape\":[1,1,1,1],\"dtype\":\"int8\",\"base64\":\"AQ==\"}"), "invalid_tensor",
        "x|dtype"),
    FWD(X4("{\"shape\":[1,1,1,1],\"dtype\":\"float64\",\"base64\":\"AAAAAAAA+H8=\"}"),
        "invalid_tensor", "x"),
    FWD(X4("{\"shape\":[1,1,1,1],\"base64\":5}"), "invalid_tensor", "x|base64"),
    FWD("{\"session\":\"$F\",\"x\":[[[[1e39]]]]}", "invalid_tensor", "x"),
    FWD("{\"session\":\"$F\",\"x\":{\"shape\":[1,1,1,1],\"base64\":\"HUqc9IeCB0g=\",\"dtype\":"
        "\"float64\"}}",
        "invalid_tensor", "x"),
    BWD("{\"session\":\"$S\",\"delta\":[[[1,2],[3]]]}", "invalid_tensor", "delta"),
    BWD("{\"session\":\"$S\",\"delta\":[[[1e400,1],[1,1]],[[1,1],[1,1]]]}", "invalid_tensor",
        "delta"),
    BWD("{\"layer\":{\"W\":$W},\"x\":[[[[1,2],[3]]]],\"delta\":$D}", "invalid_tensor", "x"),
    NEW("{\"W\":[[[1,2],[3]]]}", "invalid_tensor", "W"),
    NEW("{\"W\":[[[1e400]]]}", "invalid_tensor", "W"),
    NEW("{\"W\":$W,\"b\":[1,\"2\"]}", "invalid_tensor", "b"),

    /* invalid_layer: missing, contradictory, out of range, W/b of the wrong shape */
    NEW("{}", "invalid_layer", "in_channels|out_channels|kernel_size|W"),
    NEW("{\"in_channels\":1,\"out_channels\":2}", "invalid_layer", "kernel_size"),
    NEW("{\"in_channels\":1,\"kernel_size\":3}", "invalid_layer", "out_channels"),
    NEW("{\"out_channels\":1,\"kernel_size\":3}", "invalid_layer", "in_channels"),
    NEW("{\"in_channels\":0,\"out_channels\":2,\"kernel_size\":3}", "invalid_layer", "in_channels"),
    NEW("{\"in_channels\":-1,\"out_channels\":2,\"kernel_size\":3}", "invalid_layer",
        "in_channels"),
    NEW("{\"in_channels\":1.5,\"out_channels\":2,\"kernel_size\":3}", "invalid_layer",
        "in_channels"),
    NEW("{\"in_channels\":\"1\",\"out_channels\":2,\"kernel_size\":3}", "invalid_layer",
        "in_channels"),
    NEW("{\"in_channels\":1,\"out_channels\":0,\"kernel_size\":3}", "invalid_layer",
        "out_channels"),
    NEW("{\"in_channels\":1,\"out_channels\":2,\"kernel_size\":0}", "invalid_layer", "kernel_size"),
    NEW("{\"in_channels\":1,\"out_channels\":2,\"kernel_size\":[3]}", "invalid_layer",
        "kernel_size"),
    NEW("{\"in_channels\":1,\"out_channels\":2,\"kernel_size\":[3,3,3]}", "invalid_layer",
        "kernel_size"),
    NEW("{\"in_channels\":1,\"out_channels\":2,\"kernel_size\":[0,3]}", "invalid_layer",
        "kernel_size"),
    NEW("{\"in_channels\":1,\"out_channels\":2,\"kernel_size\":\"3\"}", "invalid_layer",
        "kernel_size"),
    NEW("{\"in_channels\":1,\"out_channels\":2,\"kernel_size\":2.5}", "invalid_layer",
        "kernel_size"),
    NEW(L("\"stride\":0"), "invalid_layer", "stride"),
    NEW(L("\"stride\":[1,0]"), "invalid_layer", "stride"),
    NEW(L("\"stride\":-1"), "invalid_layer", "stride"),
    NEW(L("\"dilation\":0"), "invalid_layer", "dilation"),
    NEW(L("\"dilation\":[1,-2]"), "invalid_layer", "dilation"),
    NEW(L("\"padding\":-1"), "invalid_layer", "padding"),
    NEW(L("\"padding\":[1,-1]"), "invalid_layer", "padding"),
    NEW(L("\"padding\":\"full\""), "invalid_layer", "padding"),
    NEW(L("\"padding\":1.5"), "invalid_layer", "padding"),
    NEW(L("\"padding\":\"same\",\"stride\":2"), "invalid_layer", "padding|stride"),
    NEW(L("\"padding\":\"same\",\"stride\":[1,2]"), "invalid_layer", "padding|stride"),
    NEW(L("\"groups\":0"), "invalid_layer", "groups"),
    NEW("{\"in_channels\":3,\"out_channels\":2,\"kernel_size\":1,\"groups\":2}", "invalid_layer",
        "groups|in_channels"),
    NEW("{\"in_channels\":2,\"out_channels\":3,\"kernel_size\":1,\"groups\":2}", "invalid_layer",
        "groups|out_channels"),
    NEW(L("\"dtype\":\"float16\""), "invalid_layer", "dtype"),
    NEW(L("\"dtype\":64"), "invalid_layer", "dtype"),
    NEW(L("\"bias\":\"yes\""), "invalid_layer", "bias"),
    NEW(L("\"bias\":1"), "invalid_layer", "bias"),
    NEW("{\"in_channels\":2,\"W\":$W}", "invalid_layer", "in_channels|W"),
    NEW("{\"out_channels\":3,\"W\":$W}", "invalid_layer", "out_channels|W"),
    NEW("{\"kernel_size\":2,\"W\":$W}", "invalid_layer", "kernel_size|W"),
    NEW("{\"kernel_size\":[3,2],\"W\":$W}", "invalid_layer", "kernel_size|W"),
    NEW("{\"W\":[[1,2],[3,4]]}", "invalid_layer", "W"),
    NEW("{\"W\":[1,2]}", "invalid_layer", "W"),
    NEW("{\"in_channels\":2,\"out_channels\":2,\"kernel_size\":3,\"W\":$W}", "invalid_layer",
        "W|in_channels"),
    NEW("{\"in_channels\":2,\"W\":[[[[1]]],[[[2]]]]}", "invalid_layer", "W|in_channels"),
    NEW("{\"W\":$W,\"b\":[1,2,3]}", "invalid_layer", "b"),
    NEW("{\"W\":$W,\"b\":[[1,2],[3,4]]}", "invalid_layer", "b"),
    NEW("{\"W\":$W,\"b\":[[[1]],[[2]]]}", "invalid_layer", "b"),
    NEW("{\"W\":$W,\"b\":[1,2],\"bias\":false}", "invalid_layer", "b|bias"),
    NEW(L("\"init\":{\"scheme\":\"xavier\"}"), "invalid_layer", "scheme|init"),
    NEW(L("\"init\":{\"scheme\":\"zeros\",\"seed\":-1}"), "invalid_layer", "seed"),
    NEW(L("\"init\":{\"scheme\":\"zeros\",\"seed\":9007199254740992}"), "invalid_layer", "seed"),
    NEW(L("\"init\":{\"seed\":1.5}"), "invalid_layer", "seed"),
    NEW(L("\"init\":{\"seed\":\"1\"}"), "invalid_layer", "seed"),
    NEW(L("\"init\":\"zeros\""), "invalid_layer", "init"),
    FWD("{\"layer\":5,\"x\":$X}", "invalid_layer|invalid_argument", "layer"),
    FWD("{\"layer\":{\"W\":$W,\"b\":[1,2,3]},\"x\":$X}", "invalid_layer", "b"),

    /* shape_mismatch: a well-formed x or delta of the wrong shape */
    {.method = "POST",
     .path = "/forward",
     .status = 400,
     .code = "shape_mismatch",
     .fields = "x",
     .body = X4("[[[[1,2,3,4],[5,6,7,8],[9,10,11,12],[13,14,15,16]],"
                "[[1,2,3,4],[5,6,7,8],[9,10,11,12],[13,14,15,16]]]]"),
     .shape = "1,2,4,4"},
    {.method = "POST",
     .path = "/forward",
     .status = 400,
     .code = "shape_mismatch",
     .fields = "x",
     .body = X4("{\"shape\":[2,5,4],\"data\":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,"
                "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}"),
     .shape = "2,5,4"},
    FWD(X4("[[1,2,3,4],[5,6,7,8],[9,10,11,12],[13,14,15,16]]"), "shape_mismatch", "x"),
    FWD(X4("[1,2,3,4]"), "shape_mismatch", "x"),
    FWD(X4("[[[[1,2],[3,4]]]]"), "shape_mismatch", "x|kernel_size|kernel"),
    FWD(X4("[[[[1,2,3,4,5],[1,2,3,4,5]]]]"), "shape_mismatch", "x|kernel_size|kernel"),
    {.method = "POST",
     .path = "/backward",
     .status = 400,
     .code = "shape_mismatch",
     .fields = "delta",
     .body = "{\"session\":\"$S\",\"delta\":{\"shape\":[1,2,3,3],\"data\":[1,2,3,4,5,6,7,8,9,1,"
             "2,3,4,5,6,7,8,9]}}",
     .shape = "1,2,3,3",
     .shape2 = "1,2,2,2"},
    BWD("{\"session\":\"$S\",\"delta\":[[[1,2],[3,4]],[[1,2],[3,4]],[[1,2],[3,4]]]}",
        "shape_mismatch", "delta"),
    BWD("{\"session\":\"$S\",\"delta\":[[1,2],[3,4]]}", "shape_mismatch", "delta"),
    BWD("{\"session\":\"$S\",\"delta\":[[[[1,2],[3,4]],[[1,2],[3,4]]],[[[1,2],[3,4]],"
        "[[1,2],[3,4]]]]}",
        "shape_mismatch", "delta"),
    BWD("{\"layer\":{\"W\":$W},\"x\":$X,\"delta\":[[[1,2,3],[3,4,5]],[[1,2,3],[3,4,5]]]}",
        "shape_mismatch", "delta"),
    BWD("{\"layer\":{\"W\":$W},\"x\":[[[[1,2],[3,4]]]],\"delta\":$D}", "shape_mismatch",
        "x|kernel_size|kernel"),

    /* invalid_argument */
    FWD("[1,2]", "invalid_argument", NULL),
    FWD("\"str\"", "invalid_argument", NULL),
    FWD("42", "invalid_argument", NULL),
    FWD("null", "invalid_argument", NULL),
    FWD("true", "invalid_argument", NULL),
    BWD("[]", "invalid_argument", NULL),
    NEW("[]", "invalid_argument|invalid_layer", NULL),
    NEW("7", "invalid_argument|invalid_layer", NULL),
    FWD("{\"session\":\"$S\"}", "invalid_argument", "x"),
    BWD("{\"session\":\"$S\"}", "invalid_argument", "delta"),
    FWD("{\"x\":$X}", "invalid_argument", "session|layer"),
    BWD("{\"delta\":$D}", "invalid_argument", "session|layer"),
    BWD("{\"layer\":{\"W\":$W},\"x\":$X}", "invalid_argument", "delta"),
    BWD("{\"layer\":{\"W\":$W},\"delta\":$D}", "invalid_argument", "x"),
    FWD("{\"layer\":{\"W\":$W}}", "invalid_argument", "x"),
    FWD("{\"session\":\"$S\",\"x\":$X,\"strid\":1}", "invalid_argument", "strid"),
    BWD("{\"session\":\"$S\",\"delta\":$D,\"foo\":1}", "invalid_argument", "foo"),
    BWD("{\"session\":\"$S\",\"x\":$X,\"delta\":$D}", "invalid_argument", "x"),
    NEW("{\"W\":$W,\"strid\":1}", "invalid_argument", "strid"),
    NEW(L("\"strid\":2"), "invalid_argument", "strid"),
    NEW(L("\"init\":{\"scheme\":\"zeros\",\"sed\":1}"), "invalid_argument", "sed"),
    FWD("{\"layer\":{\"W\":$W,\"strid\":2},\"x\":$X}", "invalid_argument", "strid"),
    BWD("{\"layer\":{\"W\":$W,\"strid\":2},\"x\":$X,\"delta\":$D}", "invalid_argument", "strid"),
    FWD("{\"session\":\"$S\",\"layer\":{\"W\":$W},\"x\":$X}", "invalid_argument", "session|layer"),
    BWD("{\"session\":\"$S\",\"layer\":{\"W\":$W},\"x\":$X,\"delta\":$D}", "invalid_argument",
        "session|layer"),
    {.method = "POST",
     .path = "/forward",
     .body = "{\"session\":\"$S\",\"x\":$X}",
     .hdr = "X-Session-Id: $U",
     .status = 400,
     .code = "invalid_argument",
     .fields = "X-Session-Id|session"},
    {.method = "POST",
     .path = "/backward",
     .body = "{\"session\":\"$U\",\"delta\":$D}",
     .hdr = "X-Session-Id: $S",
     .status = 400,
     .code = "invalid_argument",
     .fields = "X-Session-Id|session"},
    {.method = "POST",
     .path = "/backward",
     .body = "{\"layer\":{\"W\":$W},\"x\":$X,\"delta\":$D}",
     .hdr = "X-Session-Id: $S",
     .status = 400,
     .code = "invalid_argument",
     .fields = "X-Session-Id|session|layer"},
    BWD("{\"session\":\"$S\",\"delta\":$D,\"lr\":-1}", "invalid_argument", "lr"),
    BWD("{\"session\":\"$S\",\"delta\":$D,\"lr\":\"x\"}", "invalid_argument", "lr"),
    BWD("{\"session\":\"$S\",\"delta\":$D,\"lr\":null}", "invalid_argument", "lr"),
    BWD("{\"session\":\"$S\",\"delta\":$D,\"lr\":[0.1]}", "invalid_argument", "lr"),
    BWD("{\"session\":\"$S\",\"delta\":$D,\"lr\":1e400}", "invalid_argument", "lr"),
    BWD("{\"session\":\"$S\",\"delta\":$D,\"lr\":-1e-300}", "invalid_argument", "lr"),
    BWD("{\"layer\":{\"W\":$W},\"x\":$X,\"delta\":$D,\"lr\":0.1}", "invalid_argument", "lr"),
    FWD("{\"session\":\"$S\",\"x\":$X,\"lr\":0.1}", "invalid_argument", "lr"),
    BWD("{\"session\":\"$S\",\"delta\":$D,\"need\":[]}", "invalid_argument", "need"),
    BWD("{\"session\":\"$S\",\"delta\":$D,\"need\":[\"dz\"]}", "invalid_argument", "need|dz"),
    BWD("{\"session\":\"$S\",\"delta\":$D,\"need\":[\"dx\",\"DW\"]}", "invalid_argument",
        "need|DW"),
    BWD("{\"session\":\"$S\",\"delta\":$D,\"need\":\"dx\"}", "invalid_argument", "need"),
    BWD("{\"session\":\"$S\",\"delta\":$D,\"need\":[1]}", "invalid_argument", "need"),
    BWD("{\"session\":\"$T\",\"delta\":$D,\"need\":[\"db\"]}", "invalid_argument", "need|db"),
    BWD("{\"session\":\"$T\",\"delta\":$D,\"need\":[\"dx\",\"db\"]}", "invalid_argument",
        "need|db"),
    BWD("{\"layer\":{\"W\":$W,\"bias\":false},\"x\":$X,\"delta\":$D,\"need\":[\"db\"]}",
        "invalid_argument", "need|db"),
    FWD("{\"session\":\"$S\",\"x\":$X,\"need\":[\"dx\"]}", "invalid_argument", "need"),
    FWD("{\"session\":\"$S\",\"x\":$X,\"cache\":\"no\"}", "invalid_argument", "cache"),
    FWD("{\"session\":\"$S\",\"x\":$X,\"cache\":0}", "invalid_argument", "cache"),
    BWD("{\"session\":\"$S\",\"delta\":$D,\"cache\":false}", "invalid_argument", "cache"),
    FWD("{\"session\":\"$S\",\"x\":$X,\"output\":\"xml\"}", "invalid_argument", "output"),
    FWD("{\"session\":\"$S\",\"x\":$X,\"output\":5}", "invalid_argument", "output"),
    BWD("{\"session\":\"$S\",\"delta\":$D,\"output\":\"NESTED\"}", "invalid_argument", "output"),
    FWD("{\"session\":5,\"x\":$X}", "invalid_argument", "session"),
    FWD("{\"session\":[\"$S\"],\"x\":$X}", "invalid_argument", "session"),
    ROW("GET", "/sessions/$S?output=xml", NULL, 400, "invalid_argument", "output"),

    /* 404 */
    ROW("GET", "/nope", NULL, 404, "not_found", NULL),
    ROW("POST", "/forwards", "{}", 404, "not_found", NULL),
    ROW("GET", "/forward/x", NULL, 404, "not_found", NULL),
    ROW("GET", "/sessions/$S/extra", NULL, 404, "not_found", NULL),
    ROW("GET", "/healthz/x", NULL, 404, "not_found", NULL),
    ROW("GET", "/sessions/abc", NULL, 404, "session_not_found", NULL),
    ROW("DELETE", "/sessions/abc", NULL, 404, "session_not_found", NULL),
    ROW("POST", "/forward", "{\"session\":\"abc\",\"x\":$X}", 404, "session_not_found", NULL),

    /* 409 */
    {.method = "POST",
     .path = "/backward",
     .body = "{\"session\":\"$U\",\"delta\":$D}",
     .status = 409,
     .code = "no_forward_cache",
     .fields = "forward"},

    /* 415: a body declared as something other than JSON */
    {.method = "POST",
     .path = "/forward",
     .body = "{\"session\":\"$S\",\"x\":$X}",
     .hdr = "Content-Type: text/plain",
     .status = 415,
     .code = "unsupported_media_type",
     .fields = "Content-Type|content-type|application/json"},
    {.method = "POST",
     .path = "/sessions",
     .body = "{\"W\":$W}",
     .hdr = "Content-Type: application/xml",
     .status = 415,
     .code = "unsupported_media_type",
     .fields = "Content-Type|content-type|application/json"},
    {.method = "POST",
     .path = "/backward",
     .body = "{\"session\":\"$S\",\"delta\":$D}",
     .hdr = "Content-Type: multipart/form-data; boundary=x",
     .status = 415,
     .code = "unsupported_media_type",
     .fields = "Content-Type|content-type|application/json"},
};

/* 405 with an Allow header listing the methods the path supports. */
static const row rows405[] = {
    {.method = "GET", .path = "/forward", .allow = "POST"},
    {.method = "GET", .path = "/backward", .allow = "POST"},
    {.method = "DELETE", .path = "/forward", .allow = "POST"},
    {.method = "PUT", .path = "/sessions", .allow = "POST|GET"},
    {.method = "PUT", .path = "/sessions/$S", .allow = "GET|DELETE|PATCH"},
    {.method = "POST", .path = "/sessions/$S", .body = "{}", .allow = "GET|DELETE|PATCH"},
    {.method = "GET", .path = "/sessions/$S/forward", .allow = "POST"},
    {.method = "PATCH", .path = "/sessions/$S/backward", .body = "{}", .allow = "POST"},
    {.method = "DELETE", .path = "/healthz", .allow = "GET"},
    {.method = "POST", .path = "/readyz", .body = "{}", .allow = "GET"},
    {.method = "POST", .path = "/metrics", .body = "{}", .allow = "GET"},
    {.method = "DELETE", .path = "/", .allow = "GET"},
};

/* Replaces $S $T $U $F (session ids) and $W $X $D (notebook tensors) in t. */
static char *subst(const char *t, size_t len, size_t *out_len)
{
    const notebook *nb = notebook_get();
    char *W = tt_json(nb->W.data, nb->W.rank, nb->W.shape, TT_NESTED, 64, 1);
    char *X = tt_json(nb->x.data, nb->x.rank, nb->x.shape, TT_NESTED, 64, 1);
    char *D = tt_json(nb->delta.data, nb->delta.rank, nb->delta.shape, TT_NESTED, 64, 1);
    size_t cap = len + 4096;
    char *o = malloc(cap);
    assert_non_null(o);
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        const char *rep = NULL;
        if (t[i] == '$' && i + 1 < len) {
            switch (t[i + 1]) {
            case 'S':
                rep = sid[SS];
                break;
            case 'T':
                rep = sid[ST];
                break;
            case 'U':
                rep = sid[SU];
                break;
            case 'F':
                rep = sid[SF];
                break;
            case 'W':
                rep = W;
                break;
            case 'X':
                rep = X;
                break;
            case 'D':
                rep = D;
                break;
            default:
                break;
            }
        }
        if (rep) {
            size_t n = strlen(rep);
            assert_true(k + n < cap);
            memcpy(o + k, rep, n);
            k += n;
            i++;
        } else {
            assert_true(k + 1 < cap);
            o[k++] = t[i];
        }
    }
    o[k] = '\0';
    *out_len = k;
    free(W);
    free(X);
    free(D);
    return o;
}

/* Sends a row's request; the answer goes to r. */
static void send_row(const row *w, http_res *r)
{
    size_t plen, blen = 0, hlen;
    char *path = subst(w->path, strlen(w->path), &plen);
    char *body = w->body ? subst(w->body, w->len ? w->len : strlen(w->body), &blen) : NULL;
    char *hdr = w->hdr ? subst(w->hdr, strlen(w->hdr), &hlen) : NULL;
    const char *hdrs[] = {hdr, NULL};
    if (http_do(NULL, daemon_url(dmn), w->method, path, body, blen, hdr ? hdrs : NULL, r) != 0)
        fail_msg("%s %s: no answer (curl %d)", w->method, path, r->curl_rc);
    free(path);
    free(body);
    free(hdr);
}

/* Nothing changed and the daemon still serves. */
static void after_row(void)
{
    for (int i = 0; i < NSESS; i++)
        snap_expect_same(dmn, sid[i], &snaps[i]);
    http_res r;
    req(dmn, "GET", "/healthz", NULL, &r);
    expect_status(&r, 200);
    http_res_free(&r);
}

/* Every row runs; each failure is printed, and the test fails once at the end. */
static int bad;

static void row_failed(size_t i, const row *w, const char *why)
{
    print_error("row %zu: %s %s %.200s\n    %s\n", i, w->method, w->path, w->body ? w->body : "",
                why);
    bad++;
}

/* Nothing changed and the daemon still serves; re-snapshots after a change so one bad row
 * does not fail all that follow. */
static void after_row_nf(size_t i, const row *w)
{
    for (int k = 0; k < NSESS; k++) {
        if (!snap_same(dmn, sid[k], &snaps[k])) {
            row_failed(i, w, "a session changed (see above)");
            snap_free(&snaps[k]);
            snap_take(dmn, sid[k], &snaps[k]);
        }
    }
    http_res r;
    req(dmn, "GET", "/healthz", NULL, &r);
    expect_status(&r, 200);
    http_res_free(&r);
}

static void test_error_rows(void **state)
{
    (void)state;
    bad = 0;
    size_t n = sizeof rows / sizeof rows[0];
    for (size_t i = 0; i < n; i++) {
        const row *w = &rows[i];
        http_res r;
        char why[1600];
        send_row(w, &r);
        const char *msg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(r.json, "error"), "message"));
        if (error_check(&r, w->status, w->code, w->fields, why, sizeof why) != 0) {
            row_failed(i, w, why);
        } else if (w->where && !strpbrk(msg, "0123456789")) {
            snprintf(why, sizeof why, "no position in the invalid_json message: %s", msg);
            row_failed(i, w, why);
        } else if ((w->shape && !msg_has_shape(msg, w->shape)) ||
                   (w->shape2 && !msg_has_shape(msg, w->shape2))) {
            snprintf(why, sizeof why, "message lacks shape %s / %s: %s", w->shape,
                     w->shape2 ? w->shape2 : "-", msg);
            row_failed(i, w, why);
        }
        http_res_free(&r);
        after_row_nf(i, w);
    }
    print_message("%zu error rows, %d failed\n", n, bad);
    if (bad)
        fail_msg("%d of %zu error rows failed", bad, n);
}

/* Whether the comma-separated Allow value lists method m. */
static int allows(const char *allow, const char *m)
{
    size_t n = strlen(m);
    for (const char *p = allow; (p = strstr(p, m)) != NULL; p += n) {
        int before = p == allow || p[-1] == ' ' || p[-1] == ',';
        int after = p[n] == '\0' || p[n] == ',' || p[n] == ' ';
        if (before && after)
            return 1;
    }
    return 0;
}

static void test_method_not_allowed(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof rows405 / sizeof rows405[0]; i++) {
        const row *w = &rows405[i];
        print_message("%s %s\n", w->method, w->path);
        http_res r;
        send_row(w, &r);
        expect_error(&r, 405, "method_not_allowed", NULL);
        char want[64];
        snprintf(want, sizeof want, "%s", w->allow);
        for (char *tok = strtok(want, "|"); tok; tok = strtok(NULL, "|"))
            if (!allows(r.allow, tok))
                fail_msg("%s %s: Allow '%s' does not list %s", w->method, w->path, r.allow, tok);
        http_res_free(&r);
        after_row();
    }
}

/* No Content-Type, curl's default form type, and JSON with a charset are all read as JSON. */
static void test_content_types_accepted(void **state)
{
    (void)state;
    static const char *const types[] = {
        "Content-Type:", "Content-Type: application/x-www-form-urlencoded",
        "Content-Type: application/json; charset=utf-8", "Content-Type: application/json"};
    const notebook *nb = notebook_get();
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        print_message("%s\n", types[i]);
        row w = {.method = "POST",
                 .path = "/backward",
                 .body = "{\"layer\":{\"W\":$W},\"x\":$X,\"delta\":$D}",
                 .hdr = types[i]};
        http_res r;
        send_row(&w, &r);
        expect_status(&r, 200);
        expect_tensor(jget(r.json, "dW"), &nb->dW, TT_NESTED, 0, 0, "dW");
        http_res_free(&r);
    }
    after_row();
}

/* Error answers that concern a session carry its X-Session-Id. */
static void test_error_carries_session_header(void **state)
{
    (void)state;
    row w = {.method = "POST", .path = "/backward", .body = "{\"session\":\"$U\",\"delta\":$D}"};
    http_res r;
    send_row(&w, &r);
    expect_error(&r, 409, "no_forward_cache", NULL);
    assert_true(r.has_session_id);
    assert_string_equal(r.session_id, sid[SU]);
    http_res_free(&r);
}

static int make_fixture_sessions(void **state)
{
    (void)state;
    const notebook *nb = notebook_get();
    char *W = tt_json(nb->W.data, nb->W.rank, nb->W.shape, TT_NESTED, 64, 1);
    char *X = tt_json(nb->x.data, nb->x.rank, nb->x.shape, TT_NESTED, 64, 1);
    char *D = tt_json(nb->delta.data, nb->delta.rank, nb->delta.shape, TT_NESTED, 64, 1);
    const char *layers[NSESS] = {"{\"W\":%s,\"b\":[0.5,-0.25]}", "{\"W\":%s,\"bias\":false}",
                                 "{\"W\":%s}", "{\"W\":%s,\"dtype\":\"float32\"}"};
    for (int i = 0; i < NSESS; i++) {
        char *layer = strf(layers[i], W);
        sid[i] = session_create(dmn, layer);
        free(layer);
        http_res r;
        if (i != SU) {
            char *body = strf("{\"session\":\"%s\",\"x\":%s}", sid[i], X);
            req(dmn, "POST", "/forward", body, &r);
            expect_status(&r, 200);
            http_res_free(&r);
            free(body);
        }
        if (i == SS) {
            char *body = strf("{\"session\":\"%s\",\"delta\":%s}", sid[i], D);
            req(dmn, "POST", "/backward", body, &r);
            expect_status(&r, 200);
            http_res_free(&r);
            free(body);
        }
        snap_take(dmn, sid[i], &snaps[i]);
    }
    free(W);
    free(X);
    free(D);
    return 0;
}

static int free_fixture_sessions(void **state)
{
    (void)state;
    for (int i = 0; i < NSESS; i++) {
        free(sid[i]);
        snap_free(&snaps[i]);
    }
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_rows),
        cmocka_unit_test(test_method_not_allowed),
        cmocka_unit_test(test_content_types_accepted),
        cmocka_unit_test(test_error_carries_session_header),
        cmocka_unit_test(itest_daemon_exits_cleanly),
    };
    return ITEST_SHARED_MAIN(tests, NULL, make_fixture_sessions, free_fixture_sessions);
}
