"""test_torch.py: convd.torch.RemoteConv2d against torch.nn.Conv2d, on the real daemon.

The twin: a small CNN on scikit-learn's bundled digits with nn.Conv2d, the same CNN with
RemoteConv2d loaded from its state_dict, 40 steps of SGD with momentum: the losses agree
at every step (float64 within 1e-9 relative, float32 within 1e-4). A grouped, strided,
dilated, bias-free layer's y, dx and dW equal nn.Conv2d's; gradcheck on a tiny float64
layer; and the module's contract: same initialisation and state_dict as nn.Conv2d,
weights sent only when they changed, no-grad forwards that keep the daemon's cache, one
module applied twice in a graph, dtype changes, close(). And both examples run.
"""
import copy
import os
import re
import subprocess
import sys
import time
import unittest

import numpy as np
import torch
from torch import nn

import convd
from convd.torch import RemoteConv2d, _RemoteConv2dFn
from daemon import TOP, Daemon

D = None


def setUpModule():
    global D
    D = Daemon()
    torch.set_num_threads(1)  # the daemon gets the cores; torch's side is tiny here


def tearDownModule():
    D.stop()


def digits(dtype):
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.data / 16.0, dtype=dtype).reshape(-1, 1, 8, 8)
    return x, torch.tensor(d.target)


def cnn(conv, dtype, **kw):
    return nn.Sequential(conv(1, 8, 3, padding=1, dtype=dtype, **kw), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 4 * 4, 10, dtype=dtype))


class Twin(unittest.TestCase):
    def run_twin(self, dtype, rtol):
        torch.manual_seed(0)
        ref = cnn(nn.Conv2d, dtype)
        remote = cnn(RemoteConv2d, dtype, url=D.url)
        remote.load_state_dict(ref.state_dict())
        x, t = digits(dtype)
        opts = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in (ref, remote)]
        loss_fn = nn.CrossEntropyLoss()
        worst = 0.0
        for step in range(40):
            i = torch.arange(step * 32, step * 32 + 32) % len(x)
            losses = []
            for m, opt in zip((ref, remote), opts):
                opt.zero_grad()
                loss = loss_fn(m(x[i]), t[i])
                loss.backward()
                opt.step()
                losses.append(loss.item())
            rel = abs(losses[0] - losses[1]) / abs(losses[0])
            worst = max(worst, rel)
            self.assertLessEqual(rel, rtol, f"step {step}: losses {losses[0]!r} (nn.Conv2d) vs "
                                            f"{losses[1]!r} (RemoteConv2d)")
        self.assertLess(losses[0], 1.0)  # it learned: the comparison is not of two constants
        self.assertEqual(remote[0].session.info()["forwards"], 40)
        remote[0].close()
        return worst

    def test_float64_losses_agree_to_1e9(self):
        self.run_twin(torch.float64, 1e-9)

    def test_float32_losses_agree_to_1e4(self):
        self.run_twin(torch.float32, 1e-4)


class Layer(unittest.TestCase):
    def pair(self, *args, dtype=torch.float64, **kw):
        torch.manual_seed(1)
        ref = nn.Conv2d(*args, dtype=dtype, **kw)
        remote = RemoteConv2d(*args, dtype=dtype, url=D.url, **kw)
        self.addCleanup(remote.close)
        remote.load_state_dict(ref.state_dict())
        return ref, remote

    def compare(self, ref, remote, x, tol):
        xs = [x.clone().requires_grad_(True) for _ in range(2)]
        ys = [m(xi) for m, xi in zip((ref, remote), xs)]
        torch.testing.assert_close(ys[1], ys[0], rtol=tol, atol=tol)
        g = torch.randn_like(ys[0])
        grads = [torch.autograd.grad(y, (xi, m.weight), g) for y, xi, m in
                 zip(ys, xs, (ref, remote))]
        for a, b in zip(grads[1], grads[0]):
            torch.testing.assert_close(a, b, rtol=tol, atol=tol)

    def test_grouped_strided_dilated_bias_free(self):
        for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
            ref, remote = self.pair(4, 6, (3, 2), stride=(2, 1), padding=(2, 1), dilation=(2, 3),
                                    groups=2, bias=False, dtype=dtype)
            self.assertIsNone(remote.bias)
            torch.manual_seed(2)
            self.compare(ref, remote, torch.randn(3, 4, 11, 9, dtype=dtype), tol)

    def test_padding_same_and_unbatched_input(self):
        ref, remote = self.pair(2, 3, 3, padding="same", dilation=2)
        torch.manual_seed(3)
        self.compare(ref, remote, torch.randn(2, 7, 6, dtype=torch.float64), 1e-12)

    def test_gradcheck_input(self):
        _, remote = self.pair(2, 3, 3, padding=1)
        x = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
        self.assertTrue(torch.autograd.gradcheck(remote, (x,)))

    def test_gradcheck_input_weight_bias(self):
        _, remote = self.pair(2, 3, 2, stride=2, padding=1)
        x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
        w = remote.weight.detach().clone().requires_grad_(True)
        b = remote.bias.detach().clone().requires_grad_(True)
        self.assertTrue(torch.autograd.gradcheck(
            lambda x, w, b: _RemoteConv2dFn.apply(x, w, b, remote), (x, w, b)))


class ModuleContract(unittest.TestCase):
    def test_same_initialisation_and_state_dict_as_conv2d(self):
        torch.manual_seed(5)
        ref = nn.Conv2d(3, 4, 3, stride=2, groups=1)
        torch.manual_seed(5)
        remote = RemoteConv2d(3, 4, 3, stride=2, url=D.url)
        self.assertEqual(list(remote.state_dict()), list(ref.state_dict()))
        for k, v in ref.state_dict().items():
            self.assertTrue(torch.equal(remote.state_dict()[k], v), k)
        self.assertEqual(remote.weight.dtype, torch.float32)
        nobias = RemoteConv2d(3, 4, 3, bias=False, url=D.url)
        self.assertEqual(list(nobias.state_dict()), ["weight"])
        ref2 = nn.Conv2d(3, 4, 3, bias=False)
        ref2.load_state_dict(nobias.state_dict())
        self.assertIn("kernel_size=(3, 3)", repr(remote))
        with self.assertRaises(ValueError):
            RemoteConv2d(3, 4, 3, padding_mode="reflect", url=D.url)

    def test_weights_sent_only_when_changed(self):
        remote = RemoteConv2d(2, 2, 3, dtype=torch.float64, url=D.url)
        self.addCleanup(remote.close)
        x = torch.randn(1, 2, 5, 5, dtype=torch.float64)
        remote(x)
        sent = []
        forward = remote.session.forward

        def spy(*a, **kw):
            sent.append((kw.get("W") is not None, kw.get("b") is not None))
            return forward(*a, **kw)

        remote.session.forward = spy
        remote(x)
        with torch.no_grad():
            remote.bias.add_(1.0)
        remote(x)
        with torch.no_grad():
            remote.weight.mul_(2.0)
        y = remote(x)
        remote(x)
        self.assertEqual(sent, [(False, False), (False, True), (True, False), (False, False)])
        ref = nn.Conv2d(2, 2, 3, dtype=torch.float64)
        ref.load_state_dict(remote.state_dict())
        torch.testing.assert_close(y, ref(x), rtol=1e-12, atol=1e-12)
        W, b = remote.session.weights
        np.testing.assert_array_equal(W, remote.weight.detach().numpy())

    def test_no_grad_forward_keeps_the_cache_and_reuse_in_one_graph(self):
        torch.manual_seed(6)
        ref = nn.Conv2d(2, 2, 3, padding=1, dtype=torch.float64)
        remote = RemoteConv2d(2, 2, 3, padding=1, dtype=torch.float64, url=D.url)
        self.addCleanup(remote.close)
        remote.load_state_dict(ref.state_dict())
        x1, x2 = (torch.randn(1, 2, 4, 4, dtype=torch.float64) for _ in range(2))
        # y from x1, an eval forward of x2, then backward: must be x1's gradient
        y = remote(x1)
        with torch.no_grad():
            remote(x2)
        self.assertEqual(remote.session.info()["forwards"], 2)
        y.sum().backward()
        (ref(x1).sum()).backward()
        torch.testing.assert_close(remote.weight.grad, ref.weight.grad, rtol=1e-12, atol=1e-12)
        # the same module twice in one graph (the first backward is no longer cached)
        remote.zero_grad()
        ref.zero_grad()
        (remote(remote(x1)) * x2).sum().backward()
        (ref(ref(x1)) * x2).sum().backward()
        torch.testing.assert_close(remote.weight.grad, ref.weight.grad, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(remote.bias.grad, ref.bias.grad, rtol=1e-12, atol=1e-12)

    def test_first_layer_asks_no_dx(self):
        remote = RemoteConv2d(1, 2, 3, url=D.url)
        self.addCleanup(remote.close)
        backward = None
        calls = []
        remote(torch.randn(1, 1, 4, 4))
        backward = remote.session.backward

        def spy(delta, need=None, lr=None):
            calls.append(sorted(need))
            return backward(delta, need=need, lr=lr)

        remote.session.backward = spy
        remote(torch.randn(1, 1, 4, 4)).sum().backward()
        self.assertEqual(calls, [["dW", "db"]])

    def test_dtype_change_makes_a_new_layer_and_close_deletes(self):
        remote = RemoteConv2d(1, 1, 1, url=D.url)
        remote(torch.ones(1, 1, 2, 2))
        first = remote.session
        self.assertEqual(first.dtype, "float32")
        remote.double()
        y = remote(torch.ones(1, 1, 2, 2, dtype=torch.float64))
        self.assertEqual(y.dtype, torch.float64)
        self.assertEqual(remote.session.dtype, "float64")
        with self.assertRaises(convd.SessionNotFound):
            first.info()
        second = remote.session
        remote.close()
        self.assertIsNone(remote.session)
        with self.assertRaises(convd.SessionNotFound):
            second.info()
        with self.assertRaises(RuntimeError):
            remote(torch.ones(1, 1, 2, 2))  # float32 input, float64 weights: as nn.Conv2d

    def test_survives_an_expired_session(self):
        d = Daemon("--idle-timeout", "0.3")
        self.addCleanup(d.stop)
        torch.manual_seed(8)
        ref = nn.Conv2d(1, 2, 3, dtype=torch.float64)
        remote = RemoteConv2d(1, 2, 3, dtype=torch.float64, url=d.url)
        remote.load_state_dict(ref.state_dict())
        x = torch.randn(1, 1, 5, 5, dtype=torch.float64)
        y = remote(x)
        first = remote.session.id
        time.sleep(0.6)
        y.sum().backward()  # the cache is gone with the session: sent again, statelessly
        ref(x).sum().backward()
        torch.testing.assert_close(remote.weight.grad, ref.weight.grad, rtol=1e-12, atol=1e-12)
        with torch.no_grad():
            remote.weight.add_(0.5)
            ref.weight.add_(0.5)
        time.sleep(0.6)
        torch.testing.assert_close(remote(x), ref(x), rtol=1e-12, atol=1e-12)
        self.assertNotEqual(remote.session.id, first)
        remote.close()

    def test_deepcopy_gets_its_own_session(self):
        remote = RemoteConv2d(1, 1, 1, url=D.url)
        self.addCleanup(remote.close)
        remote(torch.ones(1, 1, 2, 2))
        twin = copy.deepcopy(remote)
        self.addCleanup(twin.close)
        self.assertIsNone(twin.session)
        twin(torch.ones(1, 1, 2, 2))
        self.assertNotEqual(twin.session.id, remote.session.id)


class Examples(unittest.TestCase):
    def run_example(self, name):
        env = dict(os.environ, OMP_NUM_THREADS="1")
        r = subprocess.run([sys.executable, os.path.join(TOP, "examples", name), D.url],
                           capture_output=True, text=True, timeout=300, env=env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r.stdout

    def test_sgd_example_recovers_the_teacher(self):
        self.assertIn("ok: loss fell", self.run_example("sgd.py"))

    def test_digits_example_learns(self):
        out = self.run_example("digits.py")
        acc = float(re.search(r"test accuracy: ([0-9.]+)", out).group(1))
        self.assertGreaterEqual(acc, 0.9, out)


if __name__ == "__main__":
    unittest.main()
