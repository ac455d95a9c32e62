#!/usr/bin/env python3
"""seeds.py — regenerates the seed corpora fuzz/corpus/<target>/ from the fixtures
(tests/fixtures: the notebook and a few reference cases, in all three tensor forms) plus
hand-written error cases (invalid JSON, ragged, bad base64, unknown fields, ...).
Run from the repository root: python3 fuzz/seeds.py. Seeds are small on purpose."""
import base64
import json
import os
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")
OUT = os.path.join(ROOT, "fuzz", "corpus")


def dump(v):
    return json.dumps(v, separators=(",", ":"))


def flat(shape, data):
    return {"shape": shape, "data": data}


def b64(shape, data, dtype="float64"):
    fmt = "<%d%s" % (len(data), "d" if dtype == "float64" else "f")
    return {"shape": shape, "dtype": dtype, "base64": base64.b64encode(struct.pack(fmt, *data)).decode()}


def nest(shape, data):
    if len(shape) == 1:
        return list(data)
    step = len(data) // shape[0]
    return [nest(shape[1:], data[i * step:(i + 1) * step]) for i in range(shape[0])]


def flatten(v):
    if isinstance(v, list):
        out = []
        for e in v:
            out.extend(flatten(e))
        return out
    return [v]


def shape_of(v):
    s = []
    while isinstance(v, list):
        s.append(len(v))
        v = v[0]
    return s


def write(target, name, text):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "w" if isinstance(text, str) else "wb") as f:
        f.write(text)


def main():
    nb = json.load(open(os.path.join(FIX, "notebook.json")))
    ref = json.load(open(os.path.join(FIX, "reference_cases.json")))["cases"]
    small = [c for c in ref if len(c["x"]["data"]) <= 120][:6]

    # ---- fuzz_codec: tensors in every form, and broken ones
    tensors = {"nb_x": nb["x"], "nb_W": nb["W"], "nb_delta": nb["delta"]}
    for c in small[:3]:
        tensors[c["name"] + "_x"] = nest(c["x"]["shape"], c["x"]["data"])
    for name, t in tensors.items():
        sh, data = shape_of(t), flatten(t)
        write("fuzz_codec", name + "_nested", dump(t))
        write("fuzz_codec", name + "_flat", dump(flat(sh, data)))
        write("fuzz_codec", name + "_b64_f64", dump(b64(sh, data)))
        write("fuzz_codec", name + "_b64_f32", dump(b64(sh, data, "float32")))
    codec_bad = {
        "ragged": "[[1,2],[3]]",
        "empty": "[]",
        "empty_inner": "[[]]",
        "rank5": "[[[[[1]]]]]",
        "string_elem": '[1,"2"]',
        "nan_literal": "[NaN]",
        "inf_literal": "[Infinity]",
        "too_big_f32": "[1e39]",
        "too_big_f64": "[1e400]",
        "denormal": "[4.9e-324, 1e-45, -0.0, 0.1, 3.4028235e38]",
        "flat_len": '{"shape":[2,2],"data":[1,2,3]}',
        "flat_zero_dim": '{"shape":[0],"data":[]}',
        "flat_neg": '{"shape":[-1],"data":[1]}',
        "flat_frac": '{"shape":[1.5],"data":[1]}',
        "flat_unknown": '{"shape":[1],"data":[1],"dtpye":"float32"}',
        "b64_pad": '{"shape":[1],"dtype":"float64","base64":"AAAAAAAA8D8"}',
        "b64_alpha": '{"shape":[1],"dtype":"float32","base64":"AAC-_w=="}',
        "b64_len": '{"shape":[2],"dtype":"float32","base64":"AACAPw=="}',
        "b64_dtype": '{"shape":[1],"dtype":"int8","base64":"AA=="}',
        "b64_inf": '{"shape":[1],"dtype":"float32","base64":"AACAfw=="}',
        "both": '{"shape":[1],"data":[1],"base64":"AACAPw=="}',
        "bad_utf8": b'["\xff"]',
        "bom": "\ufeff[1]",
        "trailing": "[1] x",
        "dup_key": '{"shape":[1],"shape":[1],"data":[1]}',
        "deep": "[" * 200 + "]" * 200,
        "obj_x": '{"x":[[1,2],[3,4]],"delta":{"shape":[2],"data":[5,6]}}',
        "big_int": "[123456789012345678901234567890, -9007199254740993]",
        "exp": "[1E+2, 1e-7, -0, 0.000001, 100000000000000000000]",
    }
    for name, text in codec_bad.items():
        write("fuzz_codec", "err_" + name, text)

    # ---- fuzz_layer: the notebook layer and reference layers, plus broken ones
    write("fuzz_layer", "nb_W", dump({"W": nb["W"]}))
    write("fuzz_layer", "nb_W_f32", dump({"W": nb["W"], "dtype": "float32", "bias": False}))
    for c in small:
        L = dict(c["layer"])
        write("fuzz_layer", c["name"] + "_flat", dump(L))
        L2 = dict(L)
        L2["W"] = b64(L["W"]["shape"], L["W"]["data"], "float32")
        L2["dtype"] = "float32"
        if "b" in L2:
            L2["b"] = nest(L["b"]["shape"], L["b"]["data"])
        write("fuzz_layer", c["name"] + "_b64", dump(L2))
    layer_more = {
        "init_kaiming": '{"in_channels":3,"out_channels":4,"kernel_size":3,"init":{"scheme":"kaiming_uniform","seed":42}}',
        "init_normal": '{"in_channels":2,"out_channels":2,"kernel_size":[2,3],"stride":[2,1],"padding":"same","init":{"scheme":"normal","seed":7}}',
        "init_zeros": '{"in_channels":4,"out_channels":2,"kernel_size":1,"groups":2,"dilation":2,"padding":"valid","init":{"scheme":"zeros","seed":0}}',
        "same_dil": '{"in_channels":1,"out_channels":1,"kernel_size":4,"dilation":[2,3],"padding":"same","dtype":"float32"}',
        "b_only": '{"in_channels":1,"out_channels":2,"kernel_size":2,"b":[1,2]}',
        "given": '{"W":[[[1]]],"init":{"scheme":"given"}}',
        "typo": '{"W":[[[1]]],"strid":2}',
        "contradict": '{"W":[[[1,2]]],"kernel_size":3}',
        "same_stride": '{"in_channels":1,"out_channels":1,"kernel_size":3,"stride":2,"padding":"same"}',
        "groups_bad": '{"in_channels":3,"out_channels":2,"kernel_size":1,"groups":2}',
        "b_shape": '{"W":[[[1]]],"b":[1,2]}',
        "b_nobias": '{"W":[[[1]]],"b":[1],"bias":false}',
        "neg_pad": '{"in_channels":1,"out_channels":1,"kernel_size":1,"padding":-1}',
        "huge": '{"in_channels":100000,"out_channels":100000,"kernel_size":1000}',
        "seed_big": '{"in_channels":1,"out_channels":1,"kernel_size":1,"init":{"scheme":"normal","seed":9007199254740992}}',
        "not_object": "[1,2,3]",
        "pad_pair": '{"in_channels":2,"out_channels":2,"kernel_size":[1,3],"padding":[2,0],"stride":[1,3]}',
    }
    for name, text in layer_more.items():
        write("fuzz_layer", name, text)

    # ---- fuzz_request: request sequences ("%%" separates requests; @S@ = last session)
    J = "Content-Type: application/json\n"
    nb_fwd = dump({"layer": {"W": nb["W"]}, "x": nb["x"]})
    nb_bwd = dump({"session": "@S@", "delta": nb["delta"]})
    reqs = {
        "notebook": "POST /forward\n%s\n%s\n%%%%\nPOST /backward\n%s\n%s\n%%%%\nGET /sessions/@S@\n\n%%%%\nDELETE /sessions/@S@\n\n" % (J, nb_fwd, J, nb_bwd),
        "create_fwd_sgd": "POST /sessions\n\n" + dump({"W": nb["W"], "b": [0.5, -1]}) +
        "\n%%\nPOST /forward\nX-Session-Id: @S@\n\n" + dump({"x": {"shape": [1, 1, 4, 4], "data": list(range(16))}, "output": "base64"}) +
        "\n%%\nPOST /backward\n\n" + dump({"session": "@S@", "delta": nb["delta"], "lr": 0.1, "need": ["dW", "db"]}) +
        "\n%%\nGET /sessions/@S@?output=flat\n\n",
        "stateless": "POST /backward\n%s\n%s" % (J, dump({"layer": {"W": nb["W"]}, "x": nb["x"], "delta": nb["delta"], "output": "flat"})),
        "no_cache": "POST /sessions\n\n" + dump({"in_channels": 1, "out_channels": 1, "kernel_size": 1}) +
        "\n%%\nPOST /backward\n\n" + dump({"session": "@S@", "delta": [[[1]]]}) +
        "\n%%\nPOST /forward\n\n" + dump({"session": "@S@", "x": [[[1]]], "cache": False}),
        "wrong_delta": "POST /forward\n\n" + nb_fwd + "\n%%\nPOST /backward\n\n" + dump({"session": "@S@", "delta": [[[1, 2, 3]]]}),
        "nonfinite_sgd": "POST /forward\n\n" + dump({"layer": {"W": [[[1e308]]], "bias": False}, "x": [[[1]]]}) +
        "\n%%\nPOST /backward\n\n" + dump({"session": "@S@", "delta": [[[1e308]]], "lr": 1e308}),
        "health": "GET /healthz\n\n%%\nGET /readyz\nX-Fuzz: drain\n\n%%\nGET /metrics\n\n%%\nGET /\n\n%%\nHEAD /healthz\n\n",
        "auth": "POST /sessions\nX-Fuzz: auth\nAuthorization: Bearer fuzzkey\n\n{\"W\":[[[1]]]}\n%%\nGET /sessions/@S@\nX-Fuzz: auth\n\n",
        "drain": "POST /forward\nX-Fuzz: drain\n\n" + nb_fwd,
        "errors": "POST /forward\nContent-Type: text/plain\n\n{}\n%%\nPOST /forward\nContent-Length: 99999999\n\n{}\n%%\nPUT /forward\n\n\n%%\nGET /nope\n\n\n%%\nGET /sessions/0123456789abcdef0123456789abcdef\n\n%%\nDELETE /sessions/zz\n\n",
        "bad_bodies": "POST /forward\n\n[1]\n%%\nPOST /forward\n\n{\"sesion\":\"x\"}\n%%\nPOST /forward\n\n{\"x\":[[[1]]\n%%\nPOST /backward\n\n{\"layer\":{\"W\":[[[1]]]},\"x\":[[[1]]],\"delta\":[[[1]]],\"lr\":1}\n%%\nPOST /backward\n\n{\"session\":\"a\",\"layer\":{},\"delta\":[1]}\n",
        "hdr_mismatch": "POST /sessions\n\n{\"W\":[[[2]]]}\n%%\nPOST /forward\nX-Session-Id: 00000000000000000000000000000000\n\n{\"session\":\"@S@\",\"x\":[[[1]]]}\n",
        "need": "POST /forward\n\n" + nb_fwd + "\n%%\nPOST /backward\n\n" + dump({"session": "@S@", "delta": nb["delta"], "need": ["dx", "dx"]}) +
        "\n%%\nPOST /backward\n\n" + dump({"session": "@S@", "delta": nb["delta"], "need": []}) +
        "\n%%\nPOST /backward\n\n" + dump({"session": "@S@", "delta": nb["delta"], "need": ["db"]}),
        "evict": "POST /sessions\nX-Fuzz: small\n\n{\"W\":[[[1]]]}\n%%\nGET /sessions/@S@\n\n%%\n"
        "POST /sessions\n\n{\"W\":[[[2]]]}\n%%\nPOST /forward\n\n" + nb_fwd +
        "\n%%\nPOST /forward\n\n{\"layer\":{\"W\":[[[3]]]},\"x\":[[[1,2]]]}\n",
        "too_large": "POST /forward\n\n" + dump({"layer": {"in_channels": 1, "out_channels": 1, "kernel_size": 1}, "x": {"shape": [100000, 1, 1000, 1000], "dtype": "float32", "base64": "AAAA"}}),
    }
    for c in small[:3]:
        L = dict(c["layer"])
        body = {"layer": L, "x": c["x"], "delta": c["delta"]}
        reqs["ref_" + c["name"]] = "POST /backward\n\n" + dump(body)
    for name, text in reqs.items():
        write("fuzz_request", name, text)


if __name__ == "__main__":
    main()
