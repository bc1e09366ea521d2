"""Section 1 -- surrogate functions, compiled from the reference module's scalar definitions in
the array's dtype (float32 / float64 twins through :mod:`pysnn_ref.kernels.retype`).

The Numba-level helpers the other CPU kernels call -- :func:`primitive_t`, :func:`grad_t`,
:func:`heaviside_t`, :func:`spike_t` (the reference scalar in the dtype of ``x``) and
:func:`make_twins` / :func:`twin` -- are this module's public interface to its siblings.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from .. import reference as _ref
from ..retype import retyped

__all__ = ["SURROGATE_KINDS", "make_twins", "twin", "primitive_t", "grad_t", "heaviside_t",
    "spike_t", "surrogate_primitive", "surrogate_grad"]

# --------------------------------------------------------------------------------------------
# 1. Surrogate functions (compiled from the reference module's scalar definitions).
# --------------------------------------------------------------------------------------------

# A float literal is float64 in Numba's typing, so the reference's formulas compiled as they are
# would run a float32 kernel's surrogate in float64 (a conversion per operand, scalar float64
# division, loops that vectorise poorly).  Each formula is therefore compiled twice, with its
# literals in float32 and in float64 (kernels/retype.py, the CUDA kernels' way), and the twin is
# picked at compile time by the type of x: a float32 kernel does float32 maths.  Measured: the
# time-summed LIF backward over 16 M float32 neuron-steps 10.1 -> 6.8 ms.

SURROGATE_KINDS = _ref.SURROGATE_KINDS
_TWINS: dict = {}


def make_twins(name, **callees):
    """Compile-time twins of reference scalar ``name``: its float32 and float64 retyped copies
    (``callees``: the compiled stand-ins of the reference scalars it calls)."""
    fn = getattr(_ref, name)
    _TWINS[name] = (retyped(fn, np.float32, **callees), retyped(fn, np.float64, **callees))


def twin(name, x):
    """The twin of reference formula ``name`` for a scalar of Numba type ``x``."""
    return _TWINS[name][0] if x == types.float32 else _TWINS[name][1]


for _name in ("surrogate_primitive_scalar", "surrogate_grad_scalar", "heaviside"):
    make_twins(_name)


def primitive_t(x, kind, a):
    """reference.surrogate_primitive_scalar in the dtype of x (in Numba code; see above)."""
    return _ref.surrogate_primitive_scalar(x, kind, a)


def grad_t(x, kind, a):
    """reference.surrogate_grad_scalar in the dtype of x (in Numba code; see above)."""
    return _ref.surrogate_grad_scalar(x, kind, a)


def heaviside_t(x):
    """reference.heaviside in the dtype of x (in Numba code; see above)."""
    return _ref.heaviside(x)


overload(primitive_t)(lambda x, kind, a: twin("surrogate_primitive_scalar", x))
overload(grad_t)(lambda x, kind, a: twin("surrogate_grad_scalar", x))
overload(heaviside_t)(lambda x: twin("heaviside", x))


@njit(cache=True, inline="always")
def spike_t(x, smooth, kind, a):
    if smooth:
        return primitive_t(x, kind, a)
    return heaviside_t(x)


@njit(cache=True, parallel=True)
def _surrogate_primitive_flat(x, kind, a, out):
    for i in prange(x.size):
        out[i] = primitive_t(x[i], kind, a)


@njit(cache=True, parallel=True)
def _surrogate_grad_flat(x, kind, a, out):
    for i in prange(x.size):
        out[i] = grad_t(x[i], kind, a)


def surrogate_primitive(x, kind, a):
    """Elementwise surrogate primitive over an array (see the reference module)."""
    xf = np.ascontiguousarray(x).reshape(-1)
    out = np.empty_like(xf)
    _surrogate_primitive_flat(xf, kind, x.dtype.type(a), out)
    return out.reshape(x.shape)


def surrogate_grad(x, kind, a):
    """Elementwise surrogate gradient over an array (see the reference module)."""
    xf = np.ascontiguousarray(x).reshape(-1)
    out = np.empty_like(xf)
    _surrogate_grad_flat(xf, kind, x.dtype.type(a), out)
    return out.reshape(x.shape)

