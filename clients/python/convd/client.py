"""convd.client: Client (the daemon) and Session (one layer on it), in NumPy terms.

Arrays go out as base64 (little-endian, dtype kept) and come back as new, writable
ndarrays the caller owns. Every error answer raises the `convd.errors` class of its code.
A Session names itself in the X-Session-Id header (so a router can send it to its node)
and never in the body. A Client holds one keep-alive connection and is not thread-safe:
use one per thread. Both are context managers (a Session deletes itself on exit).
"""
import json
import os
import urllib.parse

from . import _wire
from ._http import Transport
from .errors import Error, SessionExpired, SessionNotFound, error_class

DEFAULT_URL = "http://127.0.0.1:8080"
_GRADS = ("dx", "dW", "db")


def _need_list(need):
    if need is None:
        return None
    return [need] if isinstance(need, str) else list(need)


def _layer(layer, fields):
    """The layer description: `layer` (a dict) updated by keyword fields."""
    out = dict(layer or {})
    out.update(fields)
    if not out:
        raise ValueError("describe the layer: W=..., or in_channels=, out_channels=, "
                         "kernel_size=, ... (docs/api.md §2)")
    return out


class Client:
    """A connection to a convd daemon.

    url: default $CONVD_URL, else http://127.0.0.1:8080. api_key: sent as a Bearer token;
    default $CONVD_API_KEY. timeout: seconds for connecting and for each read.
    """

    def __init__(self, url=None, api_key=None, timeout=300.0):
        self._t = Transport(url or os.environ.get("CONVD_URL") or DEFAULT_URL, timeout)
        key = api_key if api_key is not None else os.environ.get("CONVD_API_KEY")
        self._auth = {"Authorization": f"Bearer {key}"} if key else {}

    @property
    def url(self):
        return self._t.url

    @property
    def connects(self):
        """TCP connections opened so far: stays 1 while keep-alive holds."""
        return self._t.connects

    def close(self):
        self._t.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __getstate__(self):
        # a copy (pickle, deepcopy) opens its own connection
        return {"url": self._t.url, "timeout": self._t.timeout, "auth": self._auth}

    def __setstate__(self, st):
        self._t = Transport(st["url"], st["timeout"])
        self._auth = st["auth"]

    def __repr__(self):
        return f"convd.Client({self.url!r})"

    def request(self, method, path, body=None, *, headers=None, query=None, raw=None):
        """One request; the decoded JSON answer (None for an empty one).

        body: a dict (ndarrays in it go as base64) or None; raw: bytes to send as they are
        instead. Raises the `convd.errors` class of an error answer.
        """
        return self._call(method, path, body, headers=headers, query=query, raw=raw)[0]

    def _call(self, method, path, body=None, *, headers=None, query=None, raw=None):
        """(answer, response headers) of one request."""
        if query:
            q = {k: v for k, v in query.items() if v is not None}
            if q:
                path += "?" + urllib.parse.urlencode(q)
        data = raw if raw is not None else (None if body is None else _wire.encode_body(body))
        hdrs = dict(self._auth)
        if headers:
            hdrs.update(headers)
        status, rh, payload = self._t.request(method, path, data, hdrs)
        if status >= 400:
            raise _error(status, rh, payload)
        ctype = rh.get("Content-Type", "")
        if not payload:
            return None, rh
        if "json" not in ctype:
            return payload.decode("utf-8", "replace"), rh
        return json.loads(payload), rh

    def health(self):
        """GET /healthz: {"status": "ok"} while the daemon serves."""
        return self.request("GET", "/healthz")

    def info(self):
        """GET /: the daemon's name, version and endpoints."""
        return self.request("GET", "/")

    def session(self, layer=None, **fields):
        """A new session (POST /sessions) for the layer described by `layer` and/or keyword
        fields as in docs/api.md §2 (W and b may be ndarrays)."""
        ans = self.request("POST", "/sessions", _layer(layer, fields))
        return Session(self, ans["session"], ans.get("layer"), ans.get("idle_timeout_s"))

    def attach(self, session_id):
        """A Session object for an existing session id (nothing is sent)."""
        return Session(self, session_id)

    def sessions(self, page_size=None):
        """Every session of this node (GET /sessions, following `next`): a list of dicts
        {"session", "layer", "cached", "forwards", "backwards", "idle_s"}."""
        out, after = [], None
        while True:
            ans = self.request("GET", "/sessions", query={"limit": page_size, "after": after})
            out.extend(ans["sessions"])
            after = ans.get("next")
            if not after:
                return out

    def forward(self, x, layer=None, **fields):
        """Stateless forward: y for x through the layer described (nothing stays behind: the
        session the daemon makes for it is deleted)."""
        ans, rh = self._call("POST", "/forward",
                             {"layer": _layer(layer, fields), "x": _wire.as_wire_array(x),
                              "cache": False})
        sid = rh.get("X-Session-Id") or ans.get("session")
        try:
            self.request("DELETE", f"/sessions/{sid}")
        except (SessionNotFound, SessionExpired):
            pass
        return _wire.decode_tensor(ans["y"])

    def backward(self, x, delta, layer=None, need=None, **fields):
        """Stateless backward: (dx, dW, db) for x and delta = dL/dy through the layer
        described; those not in `need` (or db without bias) are None."""
        body = {"layer": _layer(layer, fields), "x": _wire.as_wire_array(x),
                "delta": _wire.as_wire_array(delta), "need": _need_list(need)}
        ans = self.request("POST", "/backward", body)
        return _wire.decode_tensors(ans, _GRADS)


def _error(status, headers, payload):
    code, message = None, None
    try:
        err = json.loads(payload).get("error", {})
        code, message = err.get("code"), err.get("message")
    except (ValueError, AttributeError):
        pass
    if message is None:
        message = payload.decode("utf-8", "replace")[:300] or f"HTTP {status}"
    retry = headers.get("Retry-After")
    try:
        retry = float(retry) if retry is not None else None
    except ValueError:
        retry = None
    return error_class(code)(message, status=status, code=code, retry_after=retry)


class Session:
    """One layer living on the daemon: its weights, and the input of its last forward.

    id: the session id; layer: its description (normalised by the daemon when this object
    was created by Client.session, else as sent, or None when attached by id).
    """

    def __init__(self, client, session_id, layer=None, idle_timeout_s=None):
        self.client = client
        self.id = session_id
        self.layer = layer
        self.idle_timeout_s = idle_timeout_s
        self._hdr = {"X-Session-Id": session_id}

    def __repr__(self):
        return f"convd.Session({self.id!r})"

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            self.delete()
        except (SessionNotFound, SessionExpired):
            pass
        except Error:
            if exc_type is None:
                raise  # do not hide the exception that ended the block

    @property
    def dtype(self):
        """The layer's dtype ("float32"/"float64"), when known."""
        return (self.layer or {}).get("dtype")

    def _arr(self, a):
        return None if a is None else _wire.as_wire_array(a, self.dtype)

    def forward(self, x, cache=True, W=None, b=None):
        """y for x. cache=False keeps the cached input of the previous forward. W/b (either
        or both) replace the weights first, atomically with this forward."""
        body = {"x": self._arr(x), "W": self._arr(W), "b": self._arr(b)}
        if not cache:
            body["cache"] = False
        ans = self.client.request("POST", "/forward", body, headers=self._hdr)
        return _wire.decode_tensor(ans["y"])

    def backward(self, delta, need=None, lr=None):
        """(dx, dW, db) at the last cached forward for delta = dL/dy. need: the gradients to
        compute ("dx", "dW", "db"; default all the layer has); the others are None.
        lr: also apply one SGD step to the session's weights."""
        body = {"delta": self._arr(delta), "need": _need_list(need), "lr": lr}
        ans = self.client.request("POST", "/backward", body, headers=self._hdr)
        return _wire.decode_tensors(ans, _GRADS)

    def info(self):
        """GET /sessions/{id}: a dict with the layer, W and b (ndarrays), cached, forwards,
        backwards and idle_timeout_s."""
        ans = self.client.request("GET", f"/sessions/{self.id}", query={"output": "base64"},
                                  headers=self._hdr)
        for k in ("W", "b"):
            if k in ans:
                ans[k] = _wire.decode_tensor(ans[k])
        if self.layer is None:
            self.layer = ans.get("layer")
        return ans

    @property
    def weights(self):
        """(W, b) as ndarrays (b is None without bias)."""
        ans = self.info()
        return ans["W"], ans.get("b")

    def set_weights(self, W=None, b=None):
        """Replaces W and/or b (PATCH /sessions/{id})."""
        if W is None and b is None:
            raise ValueError("set_weights needs W, b or both")
        self.client.request("PATCH", f"/sessions/{self.id}",
                            {"W": self._arr(W), "b": self._arr(b)}, headers=self._hdr)

    def delete(self):
        """DELETE /sessions/{id}."""
        self.client.request("DELETE", f"/sessions/{self.id}", headers=self._hdr)
