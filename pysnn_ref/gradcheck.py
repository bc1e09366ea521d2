"""Finite-difference gradient checking (CS231n style), in float64.

``numerical_gradient(f, x, df)`` perturbs each element of ``x`` by ``±h`` and returns
``Σ (f(x+h) − f(x−h)) · df / 2h`` -- the gradient of ``<f(x), df>`` with respect to ``x``,
which is exactly what a hand-written backward returns for upstream gradient ``df``.
``rel_error`` is the max relative error ``|a−b| / max(1e-8, |a|+|b|)``.

Spikes are step functions, so spiking layers are checked in *smooth mode* (the forward spike
is the surrogate's primitive), where the hand-written BPTT backward is the exact gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def rel_error(a: Any, b: Any) -> float:
    """Max relative error between two arrays: ``max |a−b| / max(1e-8, |a|+|b|)``."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def numerical_gradient(f: Callable[[], Any], x: np.ndarray, df: Any = None,
                       h: float = 1e-6) -> np.ndarray:
    """Central finite-difference gradient of ``<f(), df>`` with respect to ``x`` (in place).

    ``f`` takes no argument and reads ``x`` (which is perturbed in place and restored). If ``df``
    is None, ``f`` must return a scalar.
    """
    if x.dtype != np.float64:
        raise ValueError(f"x must be float64 for a finite-difference check, got {x.dtype}")
    grad = np.zeros_like(x)
    flat = x.reshape(-1)
    gflat = grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        fp = np.asarray(f(), dtype=np.float64)
        flat[i] = old - h
        fm = np.asarray(f(), dtype=np.float64)
        flat[i] = old
        diff = fp - fm
        gflat[i] = (diff if df is None else np.sum(diff * df)) / (2 * h)
    return grad


# --------------------------------------------------------------------------------------------
# Neuron checks: every reset x surrogate x (lam < 1, lam = 1), smooth mode, float64.
# --------------------------------------------------------------------------------------------

def check_neuron(reset: str, surrogate: str, lam: float, *, T: int = 5, shape: tuple = (3, 4),
                 v_th: float = 1.0, detach_reset: bool = False, seed: int = 0) -> float:
    """Max relative error between :func:`lif_backward` and finite differences of the smooth
    forward, for a loss ``sum(o * G)`` with random G."""
    from .functional.neuron import lif_backward, lif_forward

    rng = np.random.default_rng(seed)
    I = rng.normal(0.6, 0.8, size=(T, *shape))
    G = rng.normal(size=(T, *shape))
    kw = dict(lam=lam, v_th=v_th, reset=reset, surrogate=surrogate, smooth=True,
              detach_reset=detach_reset)
    o, cache = lif_forward(I, **kw)
    dI = lif_backward(G, cache)
    num = numerical_gradient(lambda: lif_forward(I, **kw)[0], I, G)
    return rel_error(dI, num)


def neuron_gradcheck_cases() -> list[tuple[str, str, float]]:
    """(case, parameter, max rel. error) for every neuron configuration."""
    from .functional.surrogate import SURROGATE_KINDS

    rows = []
    for reset in ("hard", "soft"):
        for sg in SURROGATE_KINDS:
            for lam in (0.8, 1.0):
                name = f"{'LIF' if lam < 1 else 'IF'} reset={reset} surrogate={sg} lam={lam}"
                rows.append((name, "I", check_neuron(reset, sg, lam)))
    return rows
