"""Time the spiking LSTM layer's forward + backward with its three cell implementations.

    python benchmarks/lstm_cell_speed.py [--T 8] [--B 64] [--D 8] [--H 128] [--dtype float32]

Prints the best of several runs of ``lstm_forward`` + ``lstm_backward`` (pysnn_ref.functional.lstm)
with the fused Numba cell kernel (``kernels.cpu``), with the array-code cell (what the GPU path
runs; here on NumPy) and with the reference loops (``kernels.reference``).  Figures in
docs/seeds.md (section "Spiking LSTM").
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from pysnn_ref import backend
from pysnn_ref.functional.lstm import lstm_backward, lstm_forward, make_lstm_params
from pysnn_ref.kernels import cpu


def best_ms(f, n: int) -> float:
    f()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return min(ts) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for k, v in (("T", 8), ("B", 64), ("D", 8), ("H", 128)):
        ap.add_argument(f"--{k}", type=int, default=v)
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    dt = np.dtype(a.dtype)
    x = rng.normal(size=(a.T, a.B, a.D)).astype(dt)
    W_x = rng.normal(0, 0.5, (4 * a.H, a.D)).astype(dt)
    W_h = rng.normal(0, 0.1, (4 * a.H, a.H)).astype(dt)
    b = np.zeros(4 * a.H, dt)
    dS = rng.normal(size=(a.T, a.B, a.H)).astype(dt)
    p = make_lstm_params(0.5)

    def step() -> None:
        lstm_backward(dS, lstm_forward(x, W_x, W_h, b, p)[1])

    t_numba = best_ms(step, 20)
    with backend.use_cpu_kernels("reference"):
        t_ref = best_ms(step, 2)
    fwd, bwd = cpu.lstm_cell_forward, cpu.lstm_cell_backward
    del cpu.lstm_cell_forward, cpu.lstm_cell_backward  # lstm_forward falls back to array code
    try:
        t_array = best_ms(step, 20)
    finally:
        cpu.lstm_cell_forward, cpu.lstm_cell_backward = fwd, bwd
    print(f"T={a.T} B={a.B} D={a.D} H={a.H} {a.dtype} forward+backward: numba {t_numba:.2f} ms, "
          f"array code {t_array:.2f} ms, reference loops {t_ref:.0f} ms")


if __name__ == "__main__":
    main()
