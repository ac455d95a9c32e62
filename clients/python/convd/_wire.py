"""convd._wire: NumPy arrays to and from the contract's tensor forms, and request bodies.

Arrays always travel in the base64 form (docs/api.md §1): raw little-endian float32 or
float64 bytes in C order. float32 arrays stay float32, every other real dtype becomes
float64 (integers up to 2**53 exactly), so nothing is rounded behind the caller's back.
A body is written as bytes with the base64 text spliced in directly: the large strings
are never decoded to `str` nor escaped by `json`. Decoded arrays are new, writable and in
native byte order; the caller owns them.
"""
import binascii
import json

import numpy as np

_LE = {np.dtype(np.float32): np.dtype("<f4"), np.dtype(np.float64): np.dtype("<f8")}
_NAMES = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}
_FROM_NAME = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}


def as_wire_array(a, dtype=None):
    """a as a C-ordered float32/float64 array (no copy when it already is one).

    dtype: "float32"/"float64" to convert to (the layer's), else float32 stays and every
    other real dtype becomes float64.
    """
    a = np.asarray(a)
    if a.dtype.kind not in "fiub":
        raise TypeError(f"convd sends real numbers only, not an array of dtype {a.dtype}")
    if dtype is not None:
        want = _FROM_NAME[dtype]
    elif a.dtype.kind == "f" and a.dtype.itemsize == 4:
        want = np.dtype(np.float32)
    else:
        want = np.dtype(np.float64)
    return np.ascontiguousarray(a, dtype=want)


def encode_tensor(a, dtype=None):
    """The base64 form of a, as JSON bytes."""
    a = as_wire_array(a, dtype)
    if a.ndim == 0:
        raise ValueError("a tensor needs at least one dimension; got a scalar")
    le = a.astype(_LE[a.dtype], copy=False)
    head = '{"shape":%s,"dtype":"%s","base64":"' % (json.dumps(list(a.shape)), _NAMES[a.dtype])
    return b"".join((head.encode(), binascii.b2a_base64(le.data, newline=False), b'"}'))


def _write(v, out):
    if isinstance(v, dict):
        out.append(b"{")
        first = True
        for k, item in v.items():
            if item is None:
                continue
            out.append((b"" if first else b",") + json.dumps(k).encode() + b":")
            first = False
            _write(item, out)
        out.append(b"}")
    elif isinstance(v, np.ndarray):
        out.append(encode_tensor(v))
    elif isinstance(v, (list, tuple)) and any(isinstance(i, (dict, np.ndarray)) for i in v):
        out.append(b"[")
        for i, item in enumerate(v):
            out.append(b"," if i else b"")
            _write(item, out)
        out.append(b"]")
    else:
        out.append(json.dumps(v, allow_nan=False).encode())


def encode_body(obj):
    """obj (a dict whose values may hold ndarrays) as a JSON body; None values are left out.
    Lists of plain numbers are sent as they are; arrays go as base64."""
    out = []
    _write(obj, out)
    return b"".join(out)


def decode_tensor(t):
    """An ndarray from any of the contract's three forms (nested lists, flat, base64)."""
    if isinstance(t, list):
        return np.array(t, dtype=np.float64)
    if not isinstance(t, dict) or "shape" not in t:
        raise ValueError(f"not a tensor: {str(t)[:80]}")
    shape = tuple(t["shape"])
    if "base64" in t:
        dt = _FROM_NAME[t.get("dtype", "float64")]
        raw = binascii.a2b_base64(t["base64"])
        le = np.frombuffer(raw, dtype=_LE[dt])
        # one copy: writable, native byte order
        return le.astype(dt, copy=True).reshape(shape)
    return np.array(t["data"], dtype=np.float64).reshape(shape)


def decode_tensors(answer, names):
    """The named tensors of an answer as arrays (None for those absent)."""
    return tuple(decode_tensor(answer[n]) if n in answer else None for n in names)
