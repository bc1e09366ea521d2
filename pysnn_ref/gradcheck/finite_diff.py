"""The two finite-difference primitives every gradient check uses (CS231n style, float64).

``numerical_gradient(f, x, df)`` perturbs each element of ``x`` by ``±h`` and returns
``Σ (f(x+h) − f(x−h)) · df / 2h`` -- the gradient of ``<f(x), df>`` with respect to ``x``,
which is exactly what a hand-written backward returns for upstream gradient ``df``.
``rel_error`` is the largest difference relative to the arrays' scale,
``max|a−b| / max(1e-8, max|a| + max|b|)``.

Imported by :mod:`pysnn_ref.gradcheck` (which also offers both names) and
:mod:`pysnn_ref.gradcheck.layers`; depends on nothing in the package.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["TOLERANCE", "rel_error", "numerical_gradient"]

#: the largest relative error a gradient check accepts (``python -m pysnn_ref.gradcheck``)
TOLERANCE = 1e-6


def rel_error(a: Any, b: Any) -> float:
    """Relative error of two arrays: ``max |a−b| / max(1e-8, max|a| + max|b|)``.

    CS231n divides elementwise (``|a_i−b_i| / (|a_i|+|b_i|)``), which makes a gradient element
    that is almost zero -- common behind a silent spiking neuron -- fail on finite-difference
    round-off alone (1e-10 absolute on a 1e-9 entry).  Dividing by the array's scale keeps the
    check as strict for the entries that matter and immune to that noise.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(1e-8, np.max(np.abs(a)) + np.max(np.abs(b))))


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
        old = flat[i].copy()  # a copy: indexing an element gives a 0-d VIEW in CuPy (issue 22)
        flat[i] = old + h
        fp = np.asarray(f(), dtype=np.float64)
        flat[i] = old - h
        fm = np.asarray(f(), dtype=np.float64)
        flat[i] = old
        diff = fp - fm
        gflat[i] = (diff if df is None else np.sum(diff * df)) / (2 * h)
    return grad
