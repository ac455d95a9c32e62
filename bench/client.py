#!/usr/bin/env python3
"""client.py: what the Python client costs over the raw HTTP calls (run by `make bench-http`).

Usage: bench/client.py CONVD_BIN

One forward+backward of an 8x64x56x56 float32 batch through a 64-filter 3x3 pad-1 layer,
timed two ways against the same daemon, same session, alternating rep by rep:
  - client: convd.torch.RemoteConv2d (y = m(x); y.backward(g), dx, dW, db all asked for),
  - raw: the same two requests by hand (http.client on one keep-alive connection, bodies
    written with json + base64, answers decoded with json + base64 into NumPy),
and prints `bench client=remote_conv2d shape=c_resnet_mid client_ms=<median>
raw_ms=<median> ratio=<client/raw> min_ratio=<of the fastest reps>` (the issue's goal:
ratio <= 1.05; min_ratio is the steadier figure on a busy machine). BENCH_REPS sets the
repetitions (default 7, after one warm-up of each).
"""
import base64
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "clients", "python"))
from convd.torch import RemoteConv2d  # noqa: E402

N, C, H, W, F, K = 8, 64, 56, 56, 64, 3


def start(binary):
    p = subprocess.Popen([binary, "--port", "0", "--log-level", "warn", "--state-dir="],
                         stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    line = p.stderr.readline().decode()
    while line and "listening on" not in line:
        line = p.stderr.readline().decode()
    m = re.search(r"listening on (\S+):(\d+)", line)
    if not m:
        p.kill()
        sys.exit(f"client.py: {binary} did not start")
    return p, m.group(1), int(m.group(2))


def tensor(a):
    return {"shape": list(a.shape), "dtype": "float32",
            "base64": base64.b64encode(np.ascontiguousarray(a, "<f4").tobytes()).decode()}


def array(t):
    return np.frombuffer(base64.b64decode(t["base64"]), "<f4").reshape(t["shape"])


def raw_pair(conn, sid, x, g):
    """The two requests RemoteConv2d makes, written by hand."""
    hdr = {"Content-Type": "application/json", "X-Session-Id": sid}
    out = []
    for path, body in (("/forward", {"x": tensor(x)}), ("/backward", {"delta": tensor(g)})):
        conn.request("POST", path, json.dumps(body).encode(), hdr)
        r = conn.getresponse()
        ans = json.loads(r.read())
        if r.status != 200:
            sys.exit(f"client.py: {path}: {ans}")
        out.append({k: array(v) for k, v in ans.items() if k != "session"})
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: bench/client.py CONVD_BIN")
    torch.set_num_threads(1)
    reps = int(os.environ.get("BENCH_REPS", "7"))
    proc, host, port = start(sys.argv[1])
    try:
        torch.manual_seed(0)
        m = RemoteConv2d(C, F, K, padding=1, url=f"http://{host}:{port}")
        x = torch.randn(N, C, H, W, requires_grad=True)
        g = torch.randn(N, F, H, W)
        conn = http.client.HTTPConnection(host, port, timeout=300)

        def client_step():
            x.grad, m.weight.grad, m.bias.grad = None, None, None
            m(x).backward(g)

        client_step()  # makes the session
        sid = m.session.id
        xn, gn = x.detach().numpy(), g.numpy()
        raw_pair(conn, sid, xn, gn)
        times = {"client": [], "raw": []}
        for _ in range(reps):
            for name, fn in (("client", client_step), ("raw", lambda: raw_pair(conn, sid, xn, gn))):
                t0 = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - t0) * 1e3)
        c, r = statistics.median(times["client"]), statistics.median(times["raw"])
        cmin, rmin = min(times["client"]), min(times["raw"])
        print(f"bench client=remote_conv2d shape=c_resnet_mid client_ms={c:.1f} raw_ms={r:.1f} "
              f"ratio={c / r:.3f} min_ratio={cmin / rmin:.3f}")
        m.close()
        conn.close()
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    main()
