"""test_client.py: the convd package (Client, Session, errors) against the real daemon.

Every Client and Session method, every error class from a real error answer (one daemon
per setting that a code needs: API key, idle timeout, session limit, draining), arrays of
both dtypes round trip bit for bit, keep-alive reuse and reconnection, a Session used as
a context manager is deleted, and GET /openapi.yaml serves docs/openapi.yaml.
Gradients are checked against a direct NumPy convolution.
"""
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

import numpy as np

import convd
from daemon import TOP, Daemon, supports

D = None  # the shared daemon with default settings


def setUpModule():
    global D
    D = Daemon()


def tearDownModule():
    D.stop()


def conv_ref(x, W, b):
    """y, and the function delta -> (dx, dW, db), of a stride-1 unpadded convolution."""
    N, C, H, Wd = x.shape
    F, _, kh, kw = W.shape
    OH, OW = H - kh + 1, Wd - kw + 1
    y = np.zeros((N, F, OH, OW))
    for p in range(kh):
        for q in range(kw):
            y += np.einsum("fc,nchw->nfhw", W[:, :, p, q], x[:, :, p:p + OH, q:q + OW])
    y += b.reshape(1, F, 1, 1)

    def grads(d):
        dx, dW = np.zeros_like(x), np.zeros_like(W)
        for p in range(kh):
            for q in range(kw):
                dW[:, :, p, q] = np.einsum("nfhw,nchw->fc", d, x[:, :, p:p + OH, q:q + OW])
                dx[:, :, p:p + OH, q:q + OW] += np.einsum("fc,nfhw->nchw", W[:, :, p, q], d)
        return dx, dW, d.sum(axis=(0, 2, 3))

    return y, grads


def live_sessions(client):
    text = client.request("GET", "/metrics")
    return int(re.search(r"^convd_sessions_live (\d+)", text, re.M).group(1))


class ClientMethods(unittest.TestCase):
    def setUp(self):
        self.c = convd.Client(D.url)
        self.rng = np.random.default_rng(7)

    def tearDown(self):
        self.c.close()

    def test_health_and_info(self):
        self.assertEqual(self.c.health(), {"status": "ok"})
        info = self.c.info()
        self.assertEqual(info["name"], "convd")
        self.assertIn("POST /forward", info["endpoints"])
        self.assertEqual(self.c.url, D.url)

    def test_session_forward_backward_match_reference(self):
        x = self.rng.normal(size=(2, 3, 6, 5))
        W = self.rng.normal(size=(4, 3, 3, 2))
        b = self.rng.normal(size=4)
        y_ref, grads = conv_ref(x, W, b)
        with self.c.session(W=W, b=b) as s:
            self.assertEqual(s.layer["kernel_size"], [3, 2])
            self.assertEqual(s.dtype, "float64")
            self.assertGreater(s.idle_timeout_s, 0)
            y = s.forward(x)
            np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
            d = self.rng.normal(size=y.shape)
            dx, dW, db = s.backward(d)
            for got, want in zip((dx, dW, db), grads(d)):
                np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
            dx, dW, db = s.backward(d, need=["dW"])
            self.assertIsNone(dx)
            self.assertIsNone(db)
            np.testing.assert_allclose(dW, grads(d)[1], rtol=1e-12, atol=1e-12)
            info = s.info()
            self.assertEqual((info["forwards"], info["backwards"], info["cached"]), (1, 2, True))
            np.testing.assert_array_equal(info["W"], W)

    def test_sgd_step_with_lr(self):
        W = self.rng.normal(size=(2, 1, 3, 3))
        x = self.rng.normal(size=(1, 1, 5, 5))
        with self.c.session(W=W) as s:
            y = s.forward(x)
            _, dW, db = s.backward(np.ones_like(y), lr=0.5, need=["dW", "db"])
            W2, b2 = s.weights
            np.testing.assert_allclose(W2, W - 0.5 * dW, rtol=1e-15, atol=1e-15)
            np.testing.assert_allclose(b2, -0.5 * db, rtol=1e-15, atol=1e-15)

    def test_forward_without_cache_keeps_the_previous_one(self):
        with self.c.session(in_channels=1, out_channels=1, kernel_size=1, bias=False) as s:
            x1 = self.rng.normal(size=(1, 1, 3, 3))
            s.forward(x1)
            s.forward(self.rng.normal(size=(1, 1, 3, 3)), cache=False)
            _, dW, _ = s.backward(np.ones((1, 1, 3, 3)), need="dW")
            self.assertAlmostEqual(float(dW.sum()), float(x1.sum()), places=12)

    def test_stateless_forward_and_backward_leave_no_session(self):
        x = self.rng.normal(size=(1, 2, 4, 4))
        W = self.rng.normal(size=(3, 2, 2, 2))
        y_ref, grads = conv_ref(x, W, np.zeros(3))
        before = live_sessions(self.c)
        y = self.c.forward(x, W=W)
        np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
        d = self.rng.normal(size=y.shape)
        dx, dW, db = self.c.backward(x, d, layer={"W": W})
        for got, want in zip((dx, dW, db), grads(d)):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        dx, dW, db = self.c.backward(x, d, W=W, need=("dx",))
        self.assertIsNone(dW)
        self.assertEqual(live_sessions(self.c), before)

    def test_set_weights_and_forward_with_weights(self):
        W1 = self.rng.normal(size=(2, 2, 3, 3))
        W2, b2 = self.rng.normal(size=(2, 2, 3, 3)), self.rng.normal(size=2)
        x = self.rng.normal(size=(1, 2, 5, 5))
        with self.c.session(W=W1, b=np.zeros(2)) as s:
            s.set_weights(W=W2, b=b2)
            W, b = s.weights
            np.testing.assert_array_equal(W, W2)
            np.testing.assert_array_equal(b, b2)
            s.set_weights(b=np.zeros(2))
            np.testing.assert_array_equal(s.weights[1], np.zeros(2))
            y = s.forward(x, W=W1, b=b2)
            np.testing.assert_allclose(y, conv_ref(x, W1, b2)[0], rtol=1e-12, atol=1e-12)
            np.testing.assert_array_equal(s.weights[0], W1)
            with self.assertRaises(ValueError):
                s.set_weights()

    def test_sessions_lists_every_page(self):
        made = [self.c.session(in_channels=1, out_channels=1, kernel_size=1) for _ in range(3)]
        try:
            listed = self.c.sessions(page_size=2)
            ids = [e["session"] for e in listed]
            self.assertEqual(ids, sorted(ids))
            for s in made:
                self.assertIn(s.id, ids)
            entry = next(e for e in listed if e["session"] == made[0].id)
            self.assertEqual(entry["layer"]["out_channels"], 1)
            self.assertFalse(entry["cached"])
        finally:
            for s in made:
                s.delete()

    def test_attach_names_an_existing_session(self):
        with self.c.session(in_channels=1, out_channels=2, kernel_size=1) as s:
            other = convd.Client(D.url).attach(s.id)
            self.assertIsNone(other.layer)
            self.assertEqual(other.info()["session"], s.id)
            self.assertEqual(other.layer["out_channels"], 2)

    def test_context_manager_deletes(self):
        with self.c.session(in_channels=1, out_channels=1, kernel_size=1) as s:
            s.info()
        with self.assertRaises(convd.SessionNotFound):
            s.info()
        with self.assertRaises(KeyError):  # an exception in the block still deletes
            with self.c.session(in_channels=1, out_channels=1, kernel_size=1) as t:
                raise KeyError("boom")
        with self.assertRaises(convd.SessionNotFound):
            t.info()
        with self.c.session(in_channels=1, out_channels=1, kernel_size=1) as u:
            u.delete()  # deleted inside: the exit does not raise

    def test_request_escape_hatch(self):
        ans = self.c.request("POST", "/forward", {"layer": {"W": [[[[2.0]]]]}, "x": [[[[3.0]]]]})
        self.assertEqual(ans["y"], [[[[6]]]])
        self.c.request("DELETE", f"/sessions/{ans['session']}")


class RoundTrip(unittest.TestCase):
    def setUp(self):
        self.c = convd.Client(D.url)

    def tearDown(self):
        self.c.close()

    def check_weights_round_trip(self, dtype, bits):
        info = np.finfo(dtype)
        special = np.array([0.0, -0.0, info.tiny, info.tiny / 4, -info.tiny / 2, info.max,
                            -info.max, info.eps, 1 / 3, -2.5], dtype=dtype)
        rng = np.random.default_rng(1)
        W = np.concatenate([special, rng.normal(size=54).astype(dtype)]).reshape(4, 2, 4, 2)
        b = rng.normal(size=4).astype(dtype)
        with self.c.session(W=W, b=b, dtype=dtype.__name__) as s:
            W2, b2 = s.weights
            self.assertEqual(W2.dtype, dtype)
            self.assertTrue(W2.flags.writeable)
            np.testing.assert_array_equal(W2.view(bits), W.view(bits))
            np.testing.assert_array_equal(b2.view(bits), b.view(bits))
            # y = 1 * x through a 1x1 identity: every value comes back as sent
            x = np.concatenate([special[np.abs(special) < info.max / 2],
                                rng.normal(size=56).astype(dtype)]).reshape(1, 1, 8, 8)
        with self.c.session(W=np.ones((1, 1, 1, 1), dtype=dtype), bias=False,
                            dtype=dtype.__name__) as s:
            y = s.forward(x)
            self.assertEqual(y.dtype, dtype)
            np.testing.assert_array_equal(y, x)

    def test_float32_bit_for_bit(self):
        self.check_weights_round_trip(np.float32, np.uint32)

    def test_float64_bit_for_bit(self):
        self.check_weights_round_trip(np.float64, np.uint64)

    def test_any_byte_order_and_layout_is_sent_little_endian(self):
        rng = np.random.default_rng(2)
        x = rng.normal(size=(1, 1, 4, 6))
        with self.c.session(W=np.ones((1, 1, 1, 1)), bias=False) as s:
            y_native = s.forward(x)
            y_big = s.forward(x.astype(">f8"))
            y_strided = s.forward(np.asfortranarray(x))
            y_ints = s.forward(np.arange(24).reshape(1, 1, 4, 6))
        np.testing.assert_array_equal(y_native, x)
        np.testing.assert_array_equal(y_big, x)
        np.testing.assert_array_equal(y_strided, x)
        np.testing.assert_array_equal(y_ints, np.arange(24.0).reshape(1, 1, 4, 6))

    def test_big_endian_bytes_get_a_byte_order_hint(self):
        # one value in ~2000 read the wrong way round is NaN or inf: 4096 make it certain
        x = np.random.default_rng(3).normal(size=(1, 1, 64, 64)).astype(">f8")
        wrong = {"shape": list(x.shape), "dtype": "float64",
                 "base64": base64.b64encode(x.tobytes()).decode()}
        with self.assertRaises(convd.InvalidTensor) as cm:
            self.c.request("POST", "/forward", {"layer": {"W": [[[[1.0]]]]}, "x": wrong})
        self.assertIn("(is the byte order little-endian?)", cm.exception.message)


class KeepAlive(unittest.TestCase):
    def test_one_connection_for_many_requests(self):
        c = convd.Client(D.url)
        c.health()
        port = c._t._conn.sock.getsockname()[1]
        with c.session(in_channels=1, out_channels=1, kernel_size=1) as s:
            for _ in range(10):
                s.forward(np.ones((1, 1, 2, 2)))
                s.backward(np.ones((1, 1, 2, 2)))
        with self.assertRaises(convd.SessionNotFound):  # an error answer keeps it open too
            s.info()
        c.health()
        self.assertEqual(c.connects, 1)
        self.assertEqual(c._t._conn.sock.getsockname()[1], port)
        c.close()

    def test_reconnects_after_the_daemon_closed_the_connection(self):
        d = Daemon()
        c = convd.Client(d.url)
        c.health()
        port = d.port
        d.stop()
        with self.assertRaises(convd.ConnectionFailed) as cm:
            c.health()
        self.assertIsInstance(cm.exception, ConnectionError)
        self.assertEqual(cm.exception.status, 0)
        d2 = Daemon(port=port)
        try:
            self.assertEqual(c.health(), {"status": "ok"})
            self.assertEqual(c.connects, 2)
        finally:
            d2.stop()


    def test_only_idempotent_requests_are_retried(self):
        """A stopped daemon times requests out: a GET is sent again on a fresh connection,
        a POST is not (the daemon may have applied it)."""
        d = Daemon()
        c = convd.Client(d.url, timeout=0.5)
        try:
            c.health()
            d.signal(signal.SIGSTOP)
            deadline = time.monotonic() + 5
            while d.state() != "T" and time.monotonic() < deadline:
                time.sleep(0.005)
            self.assertEqual(d.state(), "T")
            with self.assertRaises(convd.ConnectionFailed):
                c.health()
            self.assertEqual(c.connects, 2)
            with self.assertRaises(convd.ConnectionFailed) as cm:
                c.session(in_channels=1, out_channels=1, kernel_size=1)
            self.assertEqual(c.connects, 3)
            self.assertIn("not retried", cm.exception.message)
        finally:
            d.signal(signal.SIGCONT)
            d.stop()


class ErrorClasses(unittest.TestCase):
    """Each class from a real answer of the daemon: status, code and message."""

    def setUp(self):
        self.c = convd.Client(D.url)

    def tearDown(self):
        self.c.close()

    def expect(self, cls, status, fn, *args, **kw):
        with self.assertRaises(cls) as cm:
            fn(*args, **kw)
        e = cm.exception
        self.assertIs(type(e), cls)
        self.assertIsInstance(e, convd.Error)
        self.assertEqual(e.status, status)
        self.assertEqual(e.code, cls.code)
        self.assertTrue(e.message)
        self.assertIn(cls.code, str(e))
        return e

    def test_invalid_json(self):
        e = self.expect(convd.InvalidJSON, 400, self.c.request, "POST", "/forward",
                        raw=b'{"x": [1,')
        self.assertIn("JSON", e.message)

    def test_invalid_tensor(self):
        x = np.ones((1, 1, 3, 3))
        x[0, 0, 1, 1] = np.nan
        self.expect(convd.InvalidTensor, 400, self.c.forward, x, W=np.ones((1, 1, 1, 1)))

    def test_invalid_layer(self):
        e = self.expect(convd.InvalidLayer, 400, self.c.session, in_channels=3, out_channels=4,
                        kernel_size=3, groups=2)
        self.assertIn("groups", e.message)

    def test_shape_mismatch(self):
        with self.c.session(in_channels=3, out_channels=2, kernel_size=3) as s:
            e = self.expect(convd.ShapeMismatch, 400, s.forward, np.ones((1, 2, 5, 5)))
            self.assertIn("(1,2,5,5)", e.message)

    def test_invalid_argument(self):
        with self.c.session(in_channels=1, out_channels=1, kernel_size=1) as s:
            s.forward(np.ones((1, 1, 2, 2)))
            self.expect(convd.InvalidArgument, 400, s.backward, np.ones((1, 1, 2, 2)),
                        need=["dq"])

    def test_not_found(self):
        self.expect(convd.NotFound, 404, self.c.request, "GET", "/nope")

    def test_session_not_found(self):
        self.expect(convd.SessionNotFound, 404, self.c.attach("0" * 32).info)

    def test_method_not_allowed(self):
        self.expect(convd.MethodNotAllowed, 405, self.c.request, "PUT", "/forward", {})

    def test_no_forward_cache(self):
        with self.c.session(in_channels=1, out_channels=1, kernel_size=1) as s:
            self.expect(convd.NoForwardCache, 409, s.backward, np.ones((1, 1, 2, 2)))

    def test_payload_too_large(self):
        e = self.expect(convd.PayloadTooLarge, 413, self.c.session, in_channels=20000,
                        out_channels=20000, kernel_size=3)
        self.assertIn("max_session_bytes", e.message)

    def test_unsupported_media_type(self):
        self.expect(convd.UnsupportedMediaType, 415, self.c.request, "POST", "/sessions",
                    {"W": [[[[1.0]]]]}, headers={"Content-Type": "text/plain"})

    def test_non_finite_result(self):
        big = np.full((1, 1, 2, 2), 3e38, dtype=np.float32)
        with self.c.session(W=big, bias=False, dtype="float32") as s:
            self.expect(convd.NonFiniteResult, 422, s.forward, big)

    def test_unauthorized_and_api_key(self):
        d = Daemon("--api-key", "sesame")
        try:
            self.expect(convd.Unauthorized, 401, convd.Client(d.url).info)
            self.expect(convd.Unauthorized, 401, convd.Client(d.url, api_key="nope").info)
            self.assertEqual(convd.Client(d.url).health(), {"status": "ok"})  # open
            self.assertEqual(convd.Client(d.url, api_key="sesame").info()["name"], "convd")
        finally:
            d.stop()

    def test_session_expired(self):
        d = Daemon("--idle-timeout", "0.3")
        try:
            c = convd.Client(d.url)
            s = c.session(in_channels=1, out_channels=1, kernel_size=1)
            time.sleep(0.6)
            self.expect(convd.SessionExpired, 410, s.info)
        finally:
            d.stop()

    def test_too_many_sessions(self):
        d = Daemon("--max-sessions", "1")
        try:
            c = convd.Client(d.url)
            c.session(in_channels=1, out_channels=1, kernel_size=1)
            e = self.expect(convd.TooManySessions, 429, c.session, in_channels=1,
                            out_channels=1, kernel_size=1)
            self.assertIn("max_sessions", e.message)
        finally:
            d.stop()

    def test_shutting_down(self):
        d = Daemon("--drain-timeout", "10")
        c = convd.Client(d.url)
        c.health()  # the connection is open before the drain starts
        # a request in flight (headers sent, body half) keeps the daemon draining
        body = json.dumps({"layer": {"W": [[[[1.0]]]]}, "x": [[[[1.0]]]]}).encode()
        raw = socket.create_connection((d.host, d.port), timeout=10)
        try:
            raw.sendall(b"POST /forward HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n" % len(body) + body[:10])
            time.sleep(0.2)
            d.signal(signal.SIGTERM)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    c.request("GET", "/readyz")
                    time.sleep(0.01)
                except convd.Error as e:
                    self.assertEqual(e.status, 503)
                    break
            self.expect(convd.ShuttingDown, 503, c.session, in_channels=1, out_channels=1,
                        kernel_size=1)
            raw.sendall(body[10:])
            self.assertTrue(raw.recv(64).startswith(b"HTTP/1.1 200"))
        finally:
            raw.close()
            self.assertEqual(d.wait(15), 0)
            d.stop()

    def test_wrong_node(self):
        if not supports("--node-name"):
            self.skipTest("this convd has no --node-name yet (contract §8.2)")
        d = Daemon("--node-name", "alpha")
        try:
            c = convd.Client(d.url)
            with c.session(in_channels=1, out_channels=1, kernel_size=1) as s:
                self.assertTrue(s.id.startswith("alpha."))
                c.request("GET", f"/sessions/{s.id}")
                e = self.expect(convd.WrongNode, 421, c.request, "POST", "/forward",
                                {"session": "beta." + "0" * 32, "x": np.ones((1, 1, 1, 1))})
                self.assertIn("beta", e.message)
        finally:
            d.stop()

    def test_unknown_code_is_the_base_class(self):
        self.assertIs(convd.error_class("teapot"), convd.Error)
        self.assertIs(convd.error_class("session_expired"), convd.SessionExpired)


class Install(unittest.TestCase):
    def test_pip_install_offline_in_a_venv(self):
        """pip install ./clients/python with no index and no build isolation (the system's
        setuptools), then use it from outside the source tree."""
        with tempfile.TemporaryDirectory() as tmp:
            src = shutil.copytree(os.path.join(TOP, "clients", "python"),
                                  os.path.join(tmp, "src"),
                                  ignore=shutil.ignore_patterns("build", "*.egg-info",
                                                                "__pycache__"))
            venv = os.path.join(tmp, "venv")
            py = os.path.join(venv, "bin", "python")
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            env["PIP_NO_INDEX"] = "1"
            subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv],
                           check=True, capture_output=True, timeout=120)
            r = subprocess.run([py, "-m", "pip", "install", "--no-build-isolation",
                                "--no-index", "--no-cache-dir", src],
                               capture_output=True, text=True, timeout=300, env=env)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            r = subprocess.run([py, "-c", "import convd, sys; c = convd.Client(sys.argv[1]); "
                                "print(convd.__file__, c.health()['status'])", D.url],
                               capture_output=True, text=True, timeout=60, env=env, cwd=tmp)
            self.assertEqual(r.returncode, 0, r.stderr)
            path, status = r.stdout.split()
            self.assertTrue(path.startswith(venv), path)
            self.assertEqual(status, "ok")


class OpenAPI(unittest.TestCase):
    def test_served_document_is_docs_openapi_yaml(self):
        with open(os.path.join(TOP, "docs", "openapi.yaml"), encoding="utf-8") as f:
            doc = f.read()
        c = convd.Client(D.url)
        self.assertEqual(c.request("GET", "/openapi.yaml"), doc)

    def test_document_parses_and_every_ref_resolves(self):
        import yaml
        with open(os.path.join(TOP, "docs", "openapi.yaml"), encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        self.assertEqual(doc["openapi"], "3.1.0")
        refs = []

        def walk(o):
            if isinstance(o, dict):
                refs.extend(v for k, v in o.items() if k == "$ref")
                for v in o.values():
                    walk(v)
            elif isinstance(o, list):
                for v in o:
                    walk(v)

        walk(doc)
        self.assertGreater(len(refs), 50)
        for r in refs:
            node = doc
            for part in r.removeprefix("#/").split("/"):
                self.assertIn(part, node, f"unresolved $ref {r}")
                node = node[part]
        codes = {c.code for c in vars(convd).values()
                 if isinstance(c, type) and issubclass(c, convd.Error) and c.code}
        enum = set(doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]
                   ["code"]["enum"])
        self.assertEqual(codes - {"connection_failed"}, enum)
        for path, ops in doc["paths"].items():
            for method, op in ops.items():
                if method != "parameters":
                    self.assertIn("responses", op, f"{method} {path}")


if __name__ == "__main__":
    unittest.main()
