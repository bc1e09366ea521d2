"""Kernel-level timings behind docs/benchmarks.md "Levers tried" (issue 14).

``python -m pysnn_ref.bench.kernels`` prints, for the conv net's two LIF + 2x2 average-pooling
layers at T = 20, batch 64 (float32, hard reset, triangle surrogate), the best of 15 calls of

* the separate kernels (``lif_forward`` then ``avgpool2d_forward``; ``avgpool2d_backward`` then
  ``lif_backward``) against the fused ones (``lif_avgpool_forward`` / ``lif_avgpool_backward``);
* the backward summed over the steps (what a first layer with a static input needs): the fused
  backward then ``.sum(axis=0)``, against ``lif_avgpool_backward_time_sum``;
* allocating + filling a fresh 64 MB array against filling a reused one (the page faults of a
  fresh mapping; :func:`pysnn_ref.kernels.cpu.tune_malloc` keeps arrays of up to 32 MiB on the
  heap, and whether it is applied is printed);
* the conv net's Conv2d 16->32 (3x3, padding 1, 1280 images of 14x14): the fused im2col + GEMM
  kernels (``conv2d_forward_images`` / ``conv2d_backward_images``) against their three GEMMs
  alone, the same per-image ``np.dot`` calls on columns computed beforehand: read from memory
  (the whole column tensor, 144 MB), and kept in cache (one column buffer per thread, as the
  fused kernels have it) -- the GEMM bound;
* the floor of the 784-800-10 MLP's BPTT step at T = 20 (direct encoding): the products and the
  update that any implementation of that step computes -- the 784->800 layer's forward and
  weight-gradient GEMMs (once: the input is the same at every step), the 800->10 layer's three
  GEMMs over the T*B rows of spikes, and the SGD update of the 636,010 parameters -- through the
  library's own ``matmul`` and ``sgd_update``, each the best of 15; and the floor of our step with
  SDT's uniform output gradient (functional/linear.py): the 800->10 layer's weight and input
  gradients over B rows (and the spikes' time sum) instead of T*B.  At T = 4, 20 and 80.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from numba import get_num_threads, njit, prange

from ..kernels import cpu

__all__ = ["best_ms", "main"]


def best_ms(f: Callable[[], object], n: int = 15) -> float:
    """Best of ``n`` calls of ``f`` after one warm-up call, in ms."""
    f()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return min(ts) * 1e3


def _lif_pool_rows(T: int, B: int, C: int, H: int, W: int) -> list[str]:
    rng = np.random.default_rng(0)
    N = B * C * H * W
    I = rng.normal(0.8, 1.0, (T, N)).astype(np.float32)
    o, u = cpu.lif_forward(I, 0.5, 1.0, False, False, 0, 1.0)
    dp = rng.normal(size=(T, N // 4)).astype(np.float32)

    def fwd_sep():
        o, _ = cpu.lif_forward(I, 0.5, 1.0, False, False, 0, 1.0)
        cpu.avgpool2d_forward(o.reshape(T * B, C, H, W), 2, 2)

    def bwd_sep():
        do = cpu.avgpool2d_backward(dp.reshape(T * B, C, H // 2, W // 2), (T * B, C, H, W), 2, 2)
        cpu.lif_backward(do.reshape(T, -1), u, 0.5, 1.0, False, False, False, 0, 1.0)

    fwd = (best_ms(fwd_sep),
           best_ms(lambda: cpu.lif_avgpool_forward(I, 0.5, 1.0, False, False, 0, 1.0, H, W, 2)))
    bwd = (best_ms(bwd_sep),
           best_ms(lambda: cpu.lif_avgpool_backward(dp, u, 0.5, 1.0, False, False, False, 0, 1.0,
                                                    H, W, 2)))
    fused_sum = best_ms(lambda: cpu.lif_avgpool_backward(dp, u, 0.5, 1.0, False, False, False,
                                                         0, 1.0, H, W, 2).sum(axis=0))
    time_sum = best_ms(lambda: cpu.lif_avgpool_backward_time_sum(dp, u, 0.5, 1.0, False, False,
                                                                 False, 0, 1.0, H, W, 2))
    name = f"LIF + AvgPool2d {C}x{H}x{W}"
    return [f"{name} forward:  separate {fwd[0]:7.2f} ms   fused {fwd[1]:7.2f} ms",
            f"{name} backward: separate {bwd[0]:7.2f} ms   fused {bwd[1]:7.2f} ms",
            f"{name} backward summed over T: fused + sum {fused_sum:7.2f} ms   "
            f"time-sum kernel {time_sum:7.2f} ms"]


@njit(cache=True, parallel=True)
def _three_gemms(cols, W2, W2T, d, dT, nth, out, dcols, dW2T, cached):
    """out[n] = W2 cols[n]; dcols[n] = W2^T d[n]; dW2T[t] += cols[n] d[n]^T (per thread t).
    ``cached``: thread t uses one column buffer ``cols[t]`` and ``dcols[t]`` for all its images
    (in cache, as the fused kernels' per-image columns are) instead of reading ``cols[n]``."""
    N = d.shape[0]
    for t in prange(nth):
        part = np.empty(dW2T.shape[1:], dtype=cols.dtype)
        dW2T[t][:] = 0
        lo, hi = cpu.thread_block(t, N, nth)
        for n in range(lo, hi):
            c = cols[t] if cached else cols[n]
            np.dot(W2, c, out[n])
            np.dot(W2T, d[n], dcols[t] if cached else dcols[n])
            np.dot(c, dT[n], part)
            dW2T[t] += part


def _conv_rows(N: int = 1280) -> list[str]:
    rng = np.random.default_rng(0)
    x = (rng.random((N, 16, 14, 14)) < 0.3).astype(np.float32)
    W = rng.normal(size=(32, 16, 3, 3)).astype(np.float32)
    d = rng.normal(size=(N, 32, 14, 14)).astype(np.float32)
    fwd = best_ms(lambda: cpu.conv2d_forward_images(x, W, None, 1, 1))
    bwd = best_ms(lambda: cpu.conv2d_backward_images(d, x, W, x.shape, 1, 1, True, True))
    cols = cpu.im2col(x, 3, 3, 1, 1)
    W2 = np.ascontiguousarray(W.reshape(32, -1))
    d3 = d.reshape(N, 32, -1)
    dT = np.ascontiguousarray(d3.transpose(0, 2, 1))
    nth = get_num_threads()
    out, dcols = np.empty_like(d3), np.empty_like(cols)
    dW2T = np.empty((nth, W2.shape[1], 32), np.float32)
    W2T = np.ascontiguousarray(W2.T)
    gemms = best_ms(lambda: _three_gemms(cols, W2, W2T, d3, dT, nth, out, dcols, dW2T, False))
    cached = best_ms(lambda: _three_gemms(cols, W2, W2T, d3, dT, nth, out, dcols, dW2T, True))
    return [f"Conv2d 16->32 ({N} images 14x14, {nth} threads): fused forward {fwd:.2f} ms + "
            f"backward {bwd:.2f} ms = {fwd + bwd:.2f} ms; its three GEMMs alone {gemms:.2f} ms "
            f"(columns read from memory), {cached:.2f} ms (columns in cache, as in the fused "
            "kernels)"]


def _mlp_floor_row(T: int = 20, B: int = 64) -> str:
    rng = np.random.default_rng(0)
    x = rng.random((B, 784), dtype=np.float32)
    W1, W2 = rng.normal(size=(800, 784)).astype(np.float32), rng.normal(size=(10, 800)).astype(
        np.float32)
    dI = rng.normal(size=(B, 800)).astype(np.float32)  # sum_t dL/dI[t] of the hidden layer
    o = (rng.random((T, B, 800)) < 0.2).astype(np.float32)  # the hidden spikes
    o2 = o.reshape(T * B, 800)
    dy = rng.normal(size=(T * B, 10)).astype(np.float32)
    d = dy[:B]  # SDT: the same dL/dy[t] at every step
    first = best_ms(lambda: cpu.matmul(x, W1.T)) + best_ms(lambda: cpu.matmul(dI.T, x))
    fwd2 = best_ms(lambda: cpu.matmul(o2, W2.T))
    second = fwd2 + best_ms(lambda: cpu.matmul(dy.T, o2)) + best_ms(lambda: cpu.matmul(dy, W2))
    uniform = (fwd2 + best_ms(lambda: cpu.matmul(d.T, o.sum(axis=0)))
               + best_ms(lambda: cpu.matmul(d, W2)))
    params = [np.zeros_like(a) for a in (W1, W2)] + [np.zeros(800, np.float32),
                                                      np.zeros(10, np.float32)]
    bufs = [np.zeros_like(a) for a in params]
    sgd = best_ms(lambda: [cpu.sgd_update(q, q, b, 0.01, 0.9, 0.0, False, False)
                           for q, b in zip(params, bufs, strict=True)])
    return (f"MLP 784-800-10 bptt step floor (T={T} B={B}): 784->800 forward + weight-gradient "
            f"GEMMs {first:.2f} ms + 800->10 GEMMs over {T * B} rows {second:.2f} ms + SGD "
            f"update {sgd:.2f} ms = {first + second + sgd:.2f} ms; with SDT's uniform dL/dy "
            f"(forward over {T * B} rows, dW and dx over {B}, the spikes summed over t) "
            f"{uniform:.2f} ms: {first + uniform + sgd:.2f} ms")


def main() -> int:
    """``python -m pysnn_ref.bench.kernels``: print the kernel timings and floors."""
    print(f"T=20 B=64 float32; tune_malloc applied: {cpu.tune_malloc_once()}")
    for C, H in ((16, 28), (32, 14)):
        for line in _lif_pool_rows(20, 64, C, H, H):
            print(line)
    a = np.empty((20, 802816), np.float32)
    reused = best_ms(lambda: a.fill(1))
    fresh = best_ms(lambda: np.empty((20, 802816), np.float32).fill(1))
    print(f"64 MB array: fill reused {reused:.2f} ms, np.empty + fill {fresh:.2f} ms")
    cpu.limit_numba_blas()
    for line in _conv_rows():
        print(line)
    for T in (4, 20, 80):
        print(_mlp_floor_row(T))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
