"""Fully connected layer, ``y = x W^T + b``, with time folded into batch (one GEMM for all steps).

Forward (any leading dimensions; time-major ``(T, B, in)`` is just two of them)::

    out[..., j] = sum_i x[..., i] W[j, i] + b[j]

Backward, with the leading dimensions folded into M rows (x2 is (M, in), dout2 is (M, out))::

    dx = dout2 @ W          dW = dout2^T @ x2          db = sum over rows of dout2

These are the standard fully connected layer equations (CS231n); in the spiking papers they are
the synaptic current I = W o of every layer (SSF Eq. 6, ASF Eq. 3, TET Eq. 1). The three products
are BLAS GEMMs (on the CPU the rows of large ones split over the Numba threads,
:func:`pysnn_ref.kernels.cpu.matmul`); there is no loop kernel to write.

Static input (direct encoding): a time-broadcast input -- ``np.broadcast_to(x0, (T,) + x0.shape)``,
recognised by ``x.ndim >= 3`` and ``x.strides[0] == 0`` -- is the same at every step, so the
forward computes one GEMM on ``x[0]`` and returns a read-only broadcast view of it, and the
backward computes ``dW = (sum_t dout[t])^T @ x[0]``: B rows instead of T*B.

Uniform output gradient (a loss on the time-mean output, SDT): a time-broadcast ``dout`` is the
same ``d`` at every step, so ``dW = d^T @ (sum_t x[t])`` (B rows again) and ``dx = d @ W`` once,
passed down as a time-broadcast view.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import backend
from .._check import check_float_array, check_same_shape
from ..kernels import provides

__all__ = ["LinearCache", "is_time_broadcast", "linear_forward", "linear_backward",
    "linear_backward_time_sum"]


class LinearCache(NamedTuple):
    """What :func:`linear_backward` needs: the layer input, the weight and whether there is a bias.

    The flow methods (ASF/SSF) build one themselves with the time-summed input ``sum_t x[t]``.
    """

    x: Any
    W: Any
    has_bias: bool


def is_time_broadcast(x: Any) -> bool:
    """True for a time-broadcast input ``(T, B, ...)``: axis 0 has stride 0 (direct encoding)."""
    return x.ndim >= 3 and x.strides[0] == 0


def _check_params(x: Any, W: Any, b: Any) -> None:
    check_float_array("x", x, min_ndim=1)
    check_float_array("W", W, ndim=2)
    if W.dtype != x.dtype:
        raise ValueError(f"W must have the dtype of x ({x.dtype}), got {W.dtype}")
    if W.shape[1] != x.shape[-1]:
        raise ValueError(f"W must have shape (out_features, {x.shape[-1]}) to match the last axis "
                         f"of x (shape {tuple(x.shape)}), got {tuple(W.shape)}")
    if b is not None:
        check_float_array("b", b, ndim=1)
        check_same_shape("b", b, (W.shape[0],))
        if b.dtype != x.dtype:
            raise ValueError(f"b must have the dtype of x ({x.dtype}), got {b.dtype}")


def _gemm(a: Any, b: Any) -> Any:
    """``a @ b``; on the CPU through :func:`pysnn_ref.kernels.cpu.matmul` (rows over threads)."""
    K = backend.kernels_for(a)
    return K.matmul(a, b) if provides(K, "matmul") else a @ b


def _affine(x2: Any, W: Any, b: Any) -> Any:
    out = _gemm(x2, W.T)
    if b is not None:
        out += b
    return out


def linear_forward(x: Any, W: Any, b: Any | None) -> tuple[Any, LinearCache]:
    """Fully connected forward, ``out = x W^T + b``.

    Inputs:
      x: ``(..., in_features)`` float32/float64, any leading dimensions (e.g. time-major
        ``(T, B, in)``, folded into one GEMM). A time-broadcast input (``x.ndim >= 3`` and
        ``x.strides[0] == 0``) takes the static-input fast path: one GEMM on ``x[0]``, and the
        output is a **read-only** broadcast view ``(T, ...)`` -- consumers must not write into it.
      W: ``(out_features, in_features)``, same dtype as x.  b: ``(out_features,)`` or None.
    Returns:
      ``(out, cache)``: out ``(..., out_features)``; cache a :class:`LinearCache`.
    """
    _check_params(x, W, b)
    xp = backend.array_module(x)
    has_bias = b is not None
    if is_time_broadcast(x):
        x0 = x[0]
        out0 = _affine(x0.reshape(-1, x0.shape[-1]), W, b).reshape(*x0.shape[:-1], W.shape[0])
        return xp.broadcast_to(out0, (x.shape[0], *out0.shape)), LinearCache(x, W, has_bias)
    out = _affine(x.reshape(-1, x.shape[-1]), W, b)
    return out.reshape(*x.shape[:-1], W.shape[0]), LinearCache(x, W, has_bias)


def linear_backward(dout: Any, cache: LinearCache, need_dx: bool = True
                    ) -> tuple[Any | None, Any, Any | None]:
    """Gradients of :func:`linear_forward`: ``(dx, dW, db)``.

    ``dx = dout W`` (None if ``need_dx`` is False -- the first layer skips this GEMM),
    ``dW = dout^T x`` and ``db = sum dout`` over all leading dimensions (None without a bias).
    For a time-broadcast ``cache.x`` (static-input fast path), ``dW = (sum_t dout[t])^T x[0]``,
    one GEMM of B rows instead of T*B.  ``dx`` is always the exact per-element gradient with the
    shape of ``cache.x`` (per step it differs, ``dx[t] = dout[t] W``, so it is not a broadcast).
    """
    x, W, has_bias = cache
    check_float_array("dout", dout, min_ndim=1)
    check_same_shape("dout", dout, (*x.shape[:-1], W.shape[0]))
    if dout.dtype != x.dtype:
        dout = dout.astype(x.dtype)
    F = W.shape[0]
    if is_time_broadcast(dout) and not is_time_broadcast(x):
        return _backward_uniform_dout(dout, cache, need_dx)
    if is_time_broadcast(x):
        dW, db = linear_backward_time_sum(dout.sum(axis=0), cache)
    else:
        ds = dout.reshape(-1, F)
        dW = _gemm(ds.T, x.reshape(-1, x.shape[-1]))
        db = ds.sum(axis=0) if has_bias else None
    dx = None
    if need_dx:
        dx = _gemm(dout.reshape(-1, F), W).reshape(x.shape)
    return dx, dW, db


def _backward_uniform_dout(dout: Any, cache: LinearCache, need_dx: bool
                           ) -> tuple[Any | None, Any, Any | None]:
    """:func:`linear_backward` for a time-broadcast ``dout`` (a loss on the time-mean output,
    e.g. SDT: ``dout[t] = d`` at every step): ``dW = d^T (sum_t x[t])`` and ``db = T sum d``,
    one GEMM of B rows instead of T*B, and ``dx[t] = d W`` the same at every step, returned as
    a read-only time-broadcast view of one GEMM."""
    x, W, has_bias = cache
    xp = backend.array_module(x)
    T, F = x.shape[0], W.shape[0]
    d = dout[0].reshape(-1, F)
    dW = _gemm(d.T, x.sum(axis=0).reshape(-1, x.shape[-1]))
    db = d.sum(axis=0) * d.dtype.type(T) if has_bias else None
    dx = None
    if need_dx:
        dx = xp.broadcast_to(_gemm(d, W).reshape(x.shape[1:]), x.shape)
    return dx, dW, db


def linear_backward_time_sum(ds: Any, cache: LinearCache) -> tuple[Any, Any | None]:
    """``(dW, db)`` of a time-broadcast (static) input from ``ds = sum_t dout[t]`` alone:
    ``dW = ds^T x[0]``, ``db = sum of ds`` over its rows.  :func:`linear_backward` uses it; a
    caller that already has the time sum (``nn.Sequential`` from the spiking layer above, which
    then never forms the per-step ``dout``) calls it directly.  No ``dx``: that needs each step."""
    x, W, has_bias = cache
    if not is_time_broadcast(x):
        raise ValueError("cache.x must be a time-broadcast input (axis 0 of stride 0)")
    check_float_array("ds", ds, min_ndim=1)
    check_same_shape("ds", ds, (*x.shape[1:-1], W.shape[0]))
    ds2 = ds.reshape(-1, W.shape[0])
    dW = _gemm(ds2.T, x[0].reshape(-1, x.shape[-1]))
    return dW, (ds2.sum(axis=0) if has_bias else None)
