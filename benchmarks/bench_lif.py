"""LIF layer forward + backward speed: Numba kernels, the NumPy reference loops, PyTorch.

The case is one LIF layer (lam = 0.5, v_th = 1, hard reset, triangle surrogate) on input
currents of shape (T=20, B=64, 800) float32 -- the hidden layer of the 784-800-10 MLP.

    python benchmarks/bench_lif.py
    python benchmarks/bench_lif.py --torch-python /tmp/torchvenv/bin/python

The reference kernels (plain Python loops, the teaching text) are timed on ``--ref-neurons``
neurons and scaled linearly to the full layer (their cost is exactly linear in the number of
neurons: one independent loop per neuron).  PyTorch runs the same recurrence with autograd and a
custom surrogate (``torch.autograd.Function``), in a subprocess with another interpreter if it
is not importable here; it is never a dependency of pysnn_ref.  Figures are best-of runs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np
from bench_conv import best_of  # same folder: the one best-of timer of the benchmark scripts

TORCH_SNIPPET = r"""
import json, sys, time
import torch
T, B, N, rep, threads = (int(a) for a in sys.argv[1:6])
torch.set_num_threads(threads)

class Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x >= 0).to(x.dtype)
    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.clamp(1.0 - x.abs(), min=0.0)   # triangle, gamma = 1

g = torch.Generator().manual_seed(0)
I = (torch.randn(T, B, N, generator=g) * 0.8 + 0.6).requires_grad_(True)
G = torch.randn(T, B, N, generator=g)
best = float("inf")
for _ in range(rep + 1):
    I.grad = None
    t0 = time.perf_counter()
    v = torch.zeros(B, N)
    outs = []
    for t in range(T):
        u = 0.5 * v + I[t]
        o = Spike.apply(u - 1.0)
        v = u * (1.0 - o)
        outs.append(o)
    torch.stack(outs).backward(G)
    best = min(best, time.perf_counter() - t0)
print(json.dumps({"fwd_bwd_s": best, "torch": torch.__version__}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--neurons", type=int, default=800)
    ap.add_argument("--ref-neurons", type=int, default=2000,
                    help="neurons (batch x features) the reference loops are timed on")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--torch-python", default=None,
                    help="an interpreter with torch, if torch is not importable here")
    args = ap.parse_args()

    from pysnn_ref import backend
    from pysnn_ref.kernels import cpu, reference

    backend.kernels_for(np.zeros(1))  # the library's thread policy
    import numba

    T, B, N = args.T, args.batch, args.neurons
    rng = np.random.default_rng(0)
    I = (rng.normal(0.6, 0.8, (T, B * N))).astype(np.float32)
    G = rng.normal(size=I.shape).astype(np.float32)
    kind = reference.SURROGATE_KINDS["triangle"]

    def numba_path() -> None:
        o, u = cpu.lif_forward(I, 0.5, 1.0, False, False, kind, 1.0)
        cpu.lif_backward(G, u, 0.5, 1.0, False, False, False, kind, 1.0)

    t_numba = best_of(numba_path, args.repeat)
    n_ref = min(args.ref_neurons, B * N)
    Ir, Gr = I[:, :n_ref], G[:, :n_ref]

    def ref_path() -> None:
        o, u = reference.lif_forward(Ir, 0.5, 1.0, False, False, kind, 1.0)
        reference.lif_backward(Gr, u, 0.5, 1.0, False, False, False, kind, 1.0)

    t_ref = best_of(ref_path, 2) * (B * N) / n_ref
    print(f"LIF forward+backward, (T={T}, B={B}, {N}) float32, "
          f"{numba.get_num_threads()} Numba threads")
    print(f"  numba kernels      {t_numba * 1e3:9.2f} ms")
    print(f"  NumPy reference    {t_ref * 1e3:9.2f} ms  (timed on {n_ref} neurons, scaled)"
          f"  -> numba is {t_ref / t_numba:.0f}x faster")
    torch_res = None
    cmd = [args.torch_python] if args.torch_python else None
    if cmd is None:
        try:
            import torch  # noqa: F401

            cmd = [sys.executable]
        except ImportError:
            pass
    if cmd is not None:
        out = subprocess.run(cmd + ["-c", TORCH_SNIPPET, str(T), str(B), str(N),
                                    str(args.repeat), str(numba.get_num_threads())],
                             capture_output=True, text=True, check=True)
        torch_res = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  PyTorch {torch_res['torch']:10s} {torch_res['fwd_bwd_s'] * 1e3:9.2f} ms"
              f"  -> numba / torch time ratio {t_numba / torch_res['fwd_bwd_s']:.2f}")
    else:
        print("  PyTorch: not importable here (pass --torch-python)")


if __name__ == "__main__":
    main()
