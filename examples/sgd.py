#!/usr/bin/env python3
"""Train a convd layer by SGD over HTTP: fit it to a hidden "teacher" conv layer.

Usage: examples/sgd.py [URL]        (default: $CONVD_URL, else http://127.0.0.1:8080)

Needs only Python 3 and NumPy (Debian: apt-get install python3-numpy). The daemon does
every convolution and gradient; this script only draws data, computes the loss
L = mean((y - target)^2) and its gradient delta = dL/dy = 2 (y - target) / y.size, and
asks the daemon for one SGD step per batch with POST /backward {"lr": ...}.
"""
import json
import os
import sys
import urllib.error
import urllib.request

import numpy as np

URL = (sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CONVD_URL", "http://127.0.0.1:8080"))
URL = URL.rstrip("/")

N, C, F, H, W, K = 8, 3, 4, 8, 8, 3  # batch, in/out channels, image size, kernel
STEPS, LR = 20, 0.5


def call(method, path, body=None):
    """One request; returns the decoded JSON answer (None for 204), exits on an API error."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(URL + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
            return json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        err = json.loads(e.read() or b"{}").get("error", {})
        sys.exit(f"{method} {path}: HTTP {e.code} {err.get('code')}: {err.get('message')}")
    except urllib.error.URLError as e:
        sys.exit(f"cannot reach convd at {URL}: {e.reason} (start it with `make run`)")


def main():
    rng = np.random.default_rng(0)

    # The teacher holds the weights we want to recover; the student starts from
    # PyTorch's default initialisation and never sees them.
    W_true = rng.normal(0.0, 0.3, size=(F, C, K, K))
    b_true = rng.normal(0.0, 0.3, size=F)
    teacher = call("POST", "/sessions",
                   {"W": W_true.tolist(), "b": b_true.tolist(), "padding": 1})["session"]
    student = call("POST", "/sessions",
                   {"in_channels": C, "out_channels": F, "kernel_size": K, "padding": 1,
                    "init": {"scheme": "kaiming_uniform", "seed": 1}})["session"]

    losses = []
    for step in range(1, STEPS + 1):
        x = rng.normal(size=(N, C, H, W)).tolist()
        # cache: false -- the teacher never runs backward, so it need not keep x.
        target = np.array(call("POST", "/forward",
                               {"session": teacher, "x": x, "cache": False})["y"])
        y = np.array(call("POST", "/forward", {"session": student, "x": x})["y"])

        loss = float(np.mean((y - target) ** 2))
        delta = 2.0 * (y - target) / y.size
        # The first layer of a network needs no dx: ask only for dW and db.
        grads = call("POST", "/backward",
                     {"session": student, "delta": delta.tolist(), "lr": LR,
                      "need": ["dW", "db"]})
        gnorm = float(np.sqrt(np.sum(np.square(grads["dW"])) + np.sum(np.square(grads["db"]))))
        losses.append(loss)
        print(f"step {step:2d}  loss {loss:.6e}  |grad| {gnorm:.3e}")

    state = call("GET", f"/sessions/{student}")
    w_err = float(np.max(np.abs(np.array(state["W"]) - W_true)))
    b_err = float(np.max(np.abs(np.array(state["b"]) - b_true)))
    print(f"after {state['backwards']} SGD steps: max |W - W_true| = {w_err:.3e}, "
          f"max |b - b_true| = {b_err:.3e}")

    call("DELETE", f"/sessions/{student}")
    call("DELETE", f"/sessions/{teacher}")

    assert losses[-1] < losses[0] / 10, f"loss did not fall: {losses[0]:.3e} -> {losses[-1]:.3e}"
    print(f"ok: loss fell from {losses[0]:.3e} to {losses[-1]:.3e}")


if __name__ == "__main__":
    main()
