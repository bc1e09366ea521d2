"""Convolution forward + backward speed: pysnn_ref (Numba + BLAS), its reference loops, PyTorch.

The case is a 16 -> 32 channel 3x3 convolution with padding 1 on (N, 16, 28, 28) float32 -- a
VGG/SNN-5 layer on MNIST-sized maps with time folded into batch (N = T*B, e.g. 10 x 128).

    python benchmarks/bench_conv.py                      # N = 1280, torch if importable
    python benchmarks/bench_conv.py --torch-python /tmp/torchvenv/bin/python

PyTorch is never a dependency of pysnn_ref: it is imported here if present, or run in a
subprocess with another interpreter (``--torch-python``).  The reference kernels (plain Python
loops) are timed on a few images only (``--ref-n``) and compared with ours on the same images.
Each figure is the best of ``--rounds`` x ``--repeat`` runs, ours and torch alternating round by
round (the machine may be shared; best-of is the least noisy estimate of what the code costs).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np

TORCH_SNIPPET = r"""
import json, sys, time
import torch
N, C, H, F, k, p, rep, threads = (int(a) for a in sys.argv[1:9])
torch.set_num_threads(threads)
g = torch.Generator().manual_seed(0)
x = torch.randn(N, C, H, H, generator=g, requires_grad=True)
conv = torch.nn.Conv2d(C, F, k, padding=p)
dy = torch.randn(N, F, H + 2 * p - k + 1, H + 2 * p - k + 1, generator=g)
fw, tot = [], []
for _ in range(rep + 1):
    x.grad = None
    conv.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    y = conv(x)
    t1 = time.perf_counter()
    y.backward(dy)
    t2 = time.perf_counter()
    fw.append(t1 - t0)
    tot.append(t2 - t0)
print(json.dumps({"version": torch.__version__, "fwd": min(fw[1:]), "total": min(tot[1:])}))
"""


def best_of(f: Callable[[], object], repeat: int) -> float:
    f()  # warm-up (JIT compile / cache load, allocator)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


def time_ours(N: int, C: int, H: int, F: int, k: int, p: int, repeat: int,
              kernels: str = "numba") -> tuple[float, float]:
    """(forward, forward + backward) seconds, best of ``repeat``."""
    from pysnn_ref import backend
    from pysnn_ref.functional.conv import conv2d_backward, conv2d_forward

    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, H), dtype=np.float32)
    W = (rng.standard_normal((F, C, k, k), dtype=np.float32) * 0.1).astype(np.float32)
    b = np.zeros(F, np.float32)
    OH = H + 2 * p - k + 1
    dy = rng.standard_normal((N, F, OH, OH), dtype=np.float32)
    with backend.use_cpu_kernels(kernels):
        fwd = best_of(lambda: conv2d_forward(x, W, b, 1, p), repeat)

        def both() -> None:
            _, cache = conv2d_forward(x, W, b, 1, p)
            conv2d_backward(dy, cache)

        tot = best_of(both, repeat)
    return fwd, tot


def time_torch(args: argparse.Namespace, threads: int) -> dict | None:
    argv = [str(v) for v in (args.n, args.c, args.h, args.f, args.k, args.p, args.repeat, threads)]
    try:
        import torch  # noqa: F401  (only to see whether it is importable here)

        python = sys.executable
    except ImportError:
        python = args.torch_python
    if not python:
        return None
    r = subprocess.run([python, "-c", TORCH_SNIPPET, *argv], capture_output=True, text=True,
                       check=False)
    if r.returncode != 0:
        print(f"torch run failed: {r.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1280, help="images (T*B), default 1280")
    ap.add_argument("--c", type=int, default=16, help="input channels")
    ap.add_argument("--f", type=int, default=32, help="output channels")
    ap.add_argument("--h", type=int, default=28, help="height = width")
    ap.add_argument("--k", type=int, default=3, help="kernel size")
    ap.add_argument("--p", type=int, default=1, help="padding")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per round (best of)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of ours / torch")
    ap.add_argument("--ref-n", type=int, default=2, help="images for the reference loops")
    ap.add_argument("--torch-python", default=None,
                    help="interpreter with torch installed, if torch is not importable here")
    args = ap.parse_args()

    import numba

    from pysnn_ref.kernels import cpu  # noqa: F401 - before numba starts its threads (see cpu.py)

    threads = numba.get_num_threads()
    shape = f"({args.n}, {args.c}, {args.h}, {args.h}) float32, {args.c}->{args.f} " \
            f"{args.k}x{args.k} pad {args.p}, {threads} threads"
    print(f"conv2d forward + backward on {shape}")
    # ours and torch alternate, round by round, so that load from other processes hits both
    ours, theirs = [], []
    for _ in range(args.rounds):
        ours.append(time_ours(args.n, args.c, args.h, args.f, args.k, args.p, args.repeat))
        r = time_torch(args, threads)
        if r is not None:
            theirs.append(r)
    fwd, tot = min(o[0] for o in ours), min(o[1] for o in ours)
    print(f"  pysnn_ref (numba + BLAS):   forward {fwd:7.3f} s   forward+backward {tot:7.3f} s")
    t = None
    if theirs:
        t = {"version": theirs[0]["version"], "fwd": min(r["fwd"] for r in theirs),
             "total": min(r["total"] for r in theirs)}
    if t is not None:
        print(f"  torch {t['version']:<20} forward {t['fwd']:7.3f} s   "
              f"forward+backward {t['total']:7.3f} s")
        print(f"  ratio pysnn_ref / torch:    forward {fwd / t['fwd']:7.2f}     "
              f"forward+backward {tot / t['total']:7.2f}")
    else:
        print("  torch: not importable here (pass --torch-python)")
    n = args.ref_n
    rf, rt = time_ours(n, args.c, args.h, args.f, args.k, args.p, 1, kernels="reference")
    of, ot = time_ours(n, args.c, args.h, args.f, args.k, args.p, args.repeat)
    print(f"reference loops on {n} images: forward+backward {rt:.3f} s "
          f"(numba path on the same: {ot * 1e3:.2f} ms, {rt / ot:.0f}x faster)")


if __name__ == "__main__":
    main()
