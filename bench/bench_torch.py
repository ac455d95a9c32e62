"""bench_torch.py — PyTorch's Conv2d on bench_core's shapes, for comparison in the same run.

Prints one line per measurement in bench_core's form, with impl=torch:
  bench impl=torch shape=<name> dtype=<..> pass=<forward|backward> threads=<n> ms=<median>
  gflops=<value>
Forward is torch.nn.functional.conv2d (float32 through oneDNN, float64 through im2col +
BLAS); backward is aten's convolution_backward for dx, dW and db together, as bench_core
times them. Both under no_grad, after 50 warm-up calls or 2 s of them, whichever comes
first (bench_core warms alike): oneDNN's first ~50 calls of a shape run slower while it
settles, which is not the steady state a server sees. Env: BENCH_SHAPES, BENCH_THREADS
(default: all cores), BENCH_REPS (default 20), as for bench_core. Needs Debian's python3-torch (scripts/deps.sh torch).
"""

import os
import time

import torch

# name, N, C, H, W, F, k, stride, pad[, groups, dilation]: bench/bench_shapes.h
SHAPES = [
    ("a_notebook", 1, 1, 4, 4, 2, 3, 1, 0),
    ("b_small", 8, 3, 32, 32, 16, 3, 1, 1),
    ("c_resnet_mid", 8, 64, 56, 56, 64, 3, 1, 1),
    ("d_resnet_deep", 8, 256, 14, 14, 256, 3, 1, 1),
    ("e_stem", 4, 3, 224, 224, 64, 7, 2, 3),
    ("f_pointwise", 8, 128, 28, 28, 256, 1, 1, 0),
    ("g_depthwise", 8, 128, 56, 56, 128, 3, 1, 1, 128, 1),
    ("h_strided", 8, 64, 56, 56, 128, 3, 2, 1),
    ("i_dilated", 8, 64, 56, 56, 64, 3, 1, 2, 1, 2),
    ("j_single224", 1, 64, 224, 224, 64, 3, 1, 1),
]
WARMUP = 50
WARMUP_SECONDS = 2.0
TIMED_SECONDS = 5.0  # fewer timed runs past it (at least 3), as bench_core


def env_count(name, default):
    try:
        v = int(os.environ.get(name, ""))
        return v if v > 0 else default
    except ValueError:
        return default


def median_ms(fn, reps):
    end = time.perf_counter() + WARMUP_SECONDS
    for _ in range(WARMUP):
        fn()
        if time.perf_counter() > end:
            break
    times = []
    end = time.perf_counter() + TIMED_SECONDS
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if len(times) >= 3 and time.perf_counter() > end:
            break
    times.sort()
    return times[len(times) // 2] * 1e3


def main():
    threads = env_count("BENCH_THREADS", len(os.sched_getaffinity(0)))
    reps = env_count("BENCH_REPS", 20)
    wanted = [s for s in os.environ.get("BENCH_SHAPES", "").split(",") if s]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    print(f"# bench_torch: torch {torch.__version__}, {threads} thread(s), "
          f"{reps} timed runs (median)", flush=True)
    for name, n, c, h, w, f, k, s, p, *rest in SHAPES:
        if wanted and name not in wanted:
            continue
        grp, dil = rest if rest else (1, 1)
        oh, ow = (h + 2 * p - dil * (k - 1) - 1) // s + 1, (w + 2 * p - dil * (k - 1) - 1) // s + 1
        flops = 2.0 * n * f * oh * ow * (c // grp) * k * k
        for dname, dt in (("float32", torch.float32), ("float64", torch.float64)):
            x = torch.randn(n, c, h, w, dtype=dt)
            wt = torch.randn(f, c // grp, k, k, dtype=dt) / (c // grp * k * k) ** 0.5
            b = torch.randn(f, dtype=dt)
            with torch.no_grad():
                g = torch.randn(n, f, oh, ow, dtype=dt)

                def fwd():
                    return torch.nn.functional.conv2d(x, wt, b, s, p, dil, grp)

                def bwd():
                    return torch.ops.aten.convolution_backward(
                        g, x, wt, [f], [s, s], [p, p], [dil, dil], False, [0, 0], grp,
                        [True, True, True])

                for pname, fn, fl in (("forward", fwd, flops), ("backward", bwd, 2 * flops)):
                    ms = median_ms(fn, reps)
                    print(f"bench impl=torch shape={name} dtype={dname} pass={pname} "
                          f"threads={threads} ms={ms:.4f} gflops={fl / ms / 1e6:.2f}",
                          flush=True)


if __name__ == "__main__":
    main()
