"""compare.py — convd's core against PyTorch 1.13 in the same run (`make bench-compare`).

Usage: compare.py BENCH_CORE_BIN [ROUNDS] [BENCH_PEAK_BIN]
Runs ROUNDS rounds (default 3, `make bench-compare` passes COMPARE_ROUNDS = 5): in each,
bench_peak's FMA loop (given), then shape by shape bench_core and bench_torch.py, the
side that goes first alternating by round. The VM's speed drifts by 5-10 % between
minutes and some whole minutes run at half speed, so the two sides' timings of one
shape are taken seconds apart, never a whole suite apart, and neither side gets the
quiet minutes alone. Keeps each side's best median per shape, dtype and pass and the
best FMA peak, and prints
  compare shape=<..> dtype=<..> pass=<..> convd_gflops=<..> torch_gflops=<..> ratio=<..>
  [peak=<fraction of the FMA peak>] target=<ratio wanted> met=<yes|no|n/a>
then `N met, M not met`. Targets (issue #14) on shapes c-f: float32 at least PyTorch
(oneDNN), float64 at least 2x; with CONVD_ISA=avx2 (run PyTorch with
ONEDNN_MAX_CPU_ISA=AVX2 alike) 0.9x in both dtypes (PyTorch's float64 is OpenBLAS's, at
whatever level OpenBLAS picks: oneDNN has none); resnet_mid and resnet_deep float32 at
least 75 % of the FMA peak (with the peak measured; at avx2 the share of bench_peak's
AVX2 figure is printed, not a target). Shapes g-j (depthwise, strided, dilated, one
224x224 image) are reported with no target (n/a). Both sides' forward keeps nothing for
backward (PyTorch under no_grad, convd with CVD_FWD_NO_CACHE); convd's forward_cached,
which also copies x into the layer's cache as the daemon does, is printed against
PyTorch's same forward with no target (PyTorch's autograd would keep x by reference,
copying nothing). Exit status 0 even when a target is missed: this is a measurement.
Env: BENCH_THREADS, BENCH_REPS as for bench_core; CONVD_ISA; COMPARE_SHAPES=a,b to run
fewer shapes (default c-j).
"""

import os
import re
import subprocess
import sys

TARGETED = ["c_resnet_mid", "d_resnet_deep", "e_stem", "f_pointwise"]
REPORTED = ["g_depthwise", "h_strided", "i_dilated", "j_single224"]
LINE = re.compile(r"^bench (?:impl=torch )?shape=(\S+) dtype=(\S+) pass=(\S+) .*gflops=([0-9.]+)")
PEAK = re.compile(r"^bench peak=fma dtype=float32 .*gflops=([0-9.]+)")
PEAK_SHARE = 0.75
PEAK_SHAPES = ("c_resnet_mid", "d_resnet_deep")
# a forced AVX2 level: its goal is 0.9x in both dtypes, with the peak share printed only
AVX2 = os.environ.get("CONVD_ISA") == "avx2"


def target(shape, dtype):
    """The ratio wanted for one shape and dtype, or None (reported only)."""
    if shape not in TARGETED:
        return None
    if AVX2:
        return 0.9
    return 2.0 if dtype == "float64" else 1.0


def run(cmd, best, shapes):
    env = dict(os.environ, BENCH_SHAPES=",".join(shapes))
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        m = LINE.match(line)
        if m:
            key = m.group(1, 2, 3)
            best[key] = max(best.get(key, 0.0), float(m.group(4)))
        m = PEAK.match(line)
        if m:
            best["peak"] = max(best.get("peak", 0.0), float(m.group(1)))


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: compare.py BENCH_CORE_BIN [ROUNDS] [BENCH_PEAK_BIN]")
    core = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    peak_bin = sys.argv[3] if len(sys.argv) > 3 else None
    here = os.path.dirname(os.path.abspath(__file__))
    shapes = [s for s in os.environ.get("COMPARE_SHAPES", "").split(",") if s]
    shapes = shapes or TARGETED + REPORTED
    ours, theirs = {}, {}
    for r in range(rounds):
        print(f"# round {r + 1} of {rounds}", flush=True)
        if peak_bin:
            # the FMA loop only: a shape name bench_peak has, its GEMM is cheap
            run([peak_bin], ours, ["a_notebook"])
        sides = [([core], ours), ([sys.executable, os.path.join(here, "bench_torch.py")], theirs)]
        for shape in shapes:
            for cmd, best in sides if r % 2 == 0 else sides[::-1]:
                run(cmd, best, [shape])
    peak = ours.get("peak")
    if peak:
        print(f"# FMA peak float32 (bench_peak, best of {rounds}): {peak:.1f} GFLOP/s")
    met = missed = 0
    for shape in shapes:
        for dtype in ("float32", "float64"):
            for pname in ("forward", "forward_cached", "backward"):
                key = (shape, dtype, pname)
                # PyTorch keeps x by reference: its forward is the cached one's reference
                tkey = (shape, dtype, "forward") if pname == "forward_cached" else key
                if key not in ours or tkey not in theirs:
                    continue
                want = None if pname == "forward_cached" else target(shape, dtype)
                ratio = ours[key] / theirs[tkey]
                ok = want is None or ratio >= want
                extra = ""
                if peak and dtype == "float32" and shape in PEAK_SHAPES and want is not None:
                    share = ours[key] / peak
                    # the share is of the machine's own peak, not of a forced level's
                    ok = ok and (share >= PEAK_SHARE or AVX2)
                    extra = f" peak={share:.2f}"
                verdict = "n/a" if want is None else "yes" if ok else "no"
                if want is not None:
                    met += ok
                    missed += not ok
                print(f"compare shape={shape} dtype={dtype} pass={pname} "
                      f"convd_gflops={ours[key]:.1f} torch_gflops={theirs[tkey]:.1f} "
                      f"ratio={ratio:.2f}{extra} target="
                      f"{'none' if want is None else '>=' + str(want)} met={verdict}")
    print(f"{met} met, {missed} not met")


if __name__ == "__main__":
    main()
