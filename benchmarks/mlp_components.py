"""The pieces of the 784-800-10 MLP's BPTT step (T = 20, batch 64, direct input), each alone.

    python benchmarks/mlp_components.py [--rounds 40]          # NUMBA_NUM_THREADS=1/2 to vary

Min and median of ``--rounds`` interleaved calls (ms) of: the LIF forward (static current) and
its time-summed backward, ``o.mean()`` over the spikes (the firing rate nn.LIF used to take
after every forward), the count the LIF kernel now keeps instead (``lif_forward_count``), the
step's five GEMMs through ``kernels.cpu.matmul`` and the bias sum of the 800->10 layer.
Behind docs/benchmarks.md, "Issue 28", item 1.  The library's thread policy (one BLAS thread
per Numba thread) is applied first.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numba
import numpy as np

from pysnn_ref import backend
from pysnn_ref.kernels import cpu


def components(T: int = 20, B: int = 64, F: int = 800) -> dict:
    """name -> zero-argument callable, on the MLP's shapes."""
    rng = np.random.default_rng(0)
    I0 = rng.normal(0.6, 1, (1, B * F)).astype(np.float32)
    Ib = np.broadcast_to(I0, (T, B * F))
    o, u = cpu.lif_forward(Ib, 0.5, 1.0, False, False, 1, 1.0)
    o2 = o.reshape(T * B, F)
    W2 = rng.normal(size=(10, F)).astype(np.float32)
    dy = rng.normal(size=(T * B, 10)).astype(np.float32)
    x0 = rng.random((B, 784), dtype=np.float32)
    W1 = rng.normal(size=(F, 784)).astype(np.float32)
    ds = rng.normal(size=(B, F)).astype(np.float32)
    do = rng.normal(size=(T, B * F)).astype(np.float32)
    return {
        "lif_forward": lambda: cpu.lif_forward(Ib, 0.5, 1.0, False, False, 1, 1.0),
        "lif_forward_count": lambda: cpu.lif_forward_count(Ib, 0.5, 1.0, False, False, 1, 1.0),
        "o.mean()": lambda: o.mean(),
        "lif_backward_time_sum": lambda: cpu.lif_backward_time_sum(
            do, u, 0.5, 1.0, False, False, False, 1, 1.0),
        "fc1 forward x0 W1^T": lambda: cpu.matmul(x0, W1.T),
        "fc1 dW ds^T x0": lambda: cpu.matmul(ds.T, x0),
        "fc2 forward o W2^T": lambda: cpu.matmul(o2, W2.T),
        "fc2 dx dy W2": lambda: cpu.matmul(dy, W2),
        "fc2 dW dy^T o": lambda: cpu.matmul(dy.T, o2),
        "fc2 db sum": lambda: dy.sum(axis=0),
    }


def main() -> int:
    """Print min / median ms of each component (interleaved rounds)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=40)
    args = ap.parse_args()
    backend.get_backend("cpu")  # the thread policy: 1 BLAS thread
    fs = components()
    for f in fs.values():
        f()
    ts: dict[str, list[float]] = {k: [] for k in fs}
    for _ in range(args.rounds):
        for k, f in fs.items():
            t0 = time.perf_counter()
            f()
            ts[k].append(time.perf_counter() - t0)
    print(f"numba threads {numba.get_num_threads()}, rounds {args.rounds}")
    for k, v in ts.items():
        print(f"{k:24s} min {min(v) * 1e3:7.3f} ms   median {statistics.median(v) * 1e3:7.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
