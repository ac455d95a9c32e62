#!/usr/bin/env python3
"""Train a small CNN on scikit-learn's bundled 8x8 digits, its first layer on convd.

Usage: examples/digits.py [URL]     (default: $CONVD_URL, else http://127.0.0.1:8080)

Needs Debian's python3-torch and python3-sklearn (the digits ship with scikit-learn:
nothing is downloaded) and the convd client (source tree or pip install ./clients/python).
RemoteConv2d is a drop-in for nn.Conv2d: the rest is plain PyTorch, and its forward and
backward run on the daemon. Prints the loss per epoch and the test accuracy.
"""
import os
import sys

import torch
from sklearn.datasets import load_digits
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "clients",
                                "python"))
from convd.torch import RemoteConv2d  # noqa: E402  (after the path to the client)

EPOCHS, BATCH = 8, 64


def main():
    url = sys.argv[1] if len(sys.argv) > 1 else None
    torch.manual_seed(0)
    d = load_digits()
    x = torch.tensor(d.data / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    t = torch.tensor(d.target)
    perm = torch.randperm(len(x))
    train, test = perm[:1400], perm[1400:]

    model = nn.Sequential(
        RemoteConv2d(1, 16, 3, padding=1, url=url),  # on convd
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 10),
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    for epoch in range(1, EPOCHS + 1):
        model.train()
        total = 0.0
        order = train[torch.randperm(len(train))]
        for i in range(0, len(order), BATCH):
            idx = order[i:i + BATCH]
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), t[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        print(f"epoch {epoch}  loss {total / len(train):.4f}")

    model.eval()
    with torch.no_grad():
        acc = (model(x[test]).argmax(1) == t[test]).float().mean().item()
    print(f"test accuracy: {acc:.3f} on {len(test)} digits")
    model[0].close()


if __name__ == "__main__":
    main()
