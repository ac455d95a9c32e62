#!/usr/bin/env python3
"""Train a convd layer by SGD over HTTP: fit it to a hidden "teacher" conv layer.

Usage: examples/sgd.py [URL]        (default: $CONVD_URL, else http://127.0.0.1:8080)

Needs Python 3 and NumPy (Debian: apt-get install python3-numpy) and the convd client,
from the source tree or installed (pip install ./clients/python). The daemon does every
convolution and gradient; this script only draws data, computes the loss
L = mean((y - target)^2) and its gradient delta = dL/dy = 2 (y - target) / y.size, and
asks the daemon for one SGD step per batch (backward with lr).
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "clients",
                                "python"))
import convd  # noqa: E402  (after the path to the source tree's client)

N, C, F, H, W, K = 8, 3, 4, 8, 8, 3  # batch, in/out channels, image size, kernel
STEPS, LR = 20, 0.5


def main():
    url = sys.argv[1] if len(sys.argv) > 1 else None
    rng = np.random.default_rng(0)
    client = convd.Client(url)

    # The teacher holds the weights we want to recover; the student starts from
    # PyTorch's default initialisation and never sees them.
    W_true = rng.normal(0.0, 0.3, size=(F, C, K, K))
    b_true = rng.normal(0.0, 0.3, size=F)
    try:
        teacher = client.session(W=W_true, b=b_true, padding=1)
    except convd.ConnectionFailed as e:
        sys.exit(str(e))
    with teacher, client.session(in_channels=C, out_channels=F, kernel_size=K, padding=1,
                                 init={"scheme": "kaiming_uniform", "seed": 1}) as student:
        losses = []
        for step in range(1, STEPS + 1):
            x = rng.normal(size=(N, C, H, W))
            # cache=False: the teacher never runs backward, so it need not keep x
            target = teacher.forward(x, cache=False)
            y = student.forward(x)
            loss = float(np.mean((y - target) ** 2))
            delta = 2.0 * (y - target) / y.size
            # the first layer of a network needs no dx: ask only for dW and db
            _, dW, db = student.backward(delta, need=["dW", "db"], lr=LR)
            gnorm = float(np.sqrt(np.sum(dW ** 2) + np.sum(db ** 2)))
            losses.append(loss)
            print(f"step {step:2d}  loss {loss:.6e}  |grad| {gnorm:.3e}")

        state = student.info()
        w_err = float(np.max(np.abs(state["W"] - W_true)))
        b_err = float(np.max(np.abs(state["b"] - b_true)))
        print(f"after {state['backwards']} SGD steps: max |W - W_true| = {w_err:.3e}, "
              f"max |b - b_true| = {b_err:.3e}")

    assert losses[-1] < losses[0] / 10, f"loss did not fall: {losses[0]:.3e} -> {losses[-1]:.3e}"
    print(f"ok: loss fell from {losses[0]:.3e} to {losses[-1]:.3e}")


if __name__ == "__main__":
    main()
