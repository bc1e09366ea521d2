"""Batch normalisation per channel, with time folded into batch; tdBN as a scale option.

For a time-major input (T, B, C, ...) the channel axis is 2 and the statistics of channel c are
taken over every time step, sample and spatial position (T x B x H x W values, M in all); for an
(N, C, ...) input (``time_major=False``) the channel axis is 1.  Training mode::

    mean = (1/M) sum x                   var = (1/M) sum (x - mean)^2        (biased)
    x_hat = scale * (x - mean) / sqrt(var + eps)
    y = gamma * x_hat + beta

``scale = 1`` is ordinary batch norm (Ioffe & Szegedy 2015).  ``scale = alpha * V_th`` is
threshold-dependent batch norm, tdBN (Zheng et al. 2021, as used by Dspike, Eqs. 4-5): the
pre-activations are normalised to N(0, (alpha V_th)^2) so that they match the firing threshold.
The running statistics are updated in place, as in PyTorch, with the *unbiased* variance::

    running_mean = (1 - momentum) running_mean + momentum mean
    running_var  = (1 - momentum) running_var  + momentum var * M / (M - 1)

Eval mode normalises with the running statistics; it is then a per-channel affine map, and its
backward is ``dx = dout * gamma * scale / sqrt(running_var + eps)``.

Training-mode backward, in the compact form of CS231n's "alt" derivation (xn = (x - mean) /
sqrt(var + eps), the unscaled normalised input; sums over the M values of a channel)::

    dbeta  = sum dout                    dgamma = sum dout * x_hat
    dx     = gamma * scale / (M sqrt(var + eps)) * (M dout - dbeta - xn * sum(dout * xn))
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import backend
from .._check import check_float_array, check_in_range, check_positive, check_same_shape


class BatchNormCache(NamedTuple):
    """What :func:`batchnorm_backward` needs.  ``x`` is the layer input; ``mean`` and
    ``inv_std`` = 1/sqrt(var + eps) are the statistics used (batch statistics in training,
    copies of the running ones in eval), shaped to broadcast against ``x``."""

    x: Any
    mean: Any
    inv_std: Any
    gamma: Any
    scale: float
    axis: int
    training: bool


def _bshape(x: Any, axis: int) -> tuple[int, ...]:
    """Shape that broadcasts a per-channel vector against x along ``axis``."""
    return tuple(x.shape[axis] if i == axis else 1 for i in range(x.ndim))


def _reduce_axes(x: Any, axis: int) -> tuple[int, ...]:
    return tuple(i for i in range(x.ndim) if i != axis)


def batchnorm_forward(x: Any, gamma: Any, beta: Any, running_mean: Any | None,
                      running_var: Any | None, *, training: bool, momentum: float = 0.1,
                      eps: float = 1e-5, scale: float = 1.0, time_major: bool = True
                      ) -> tuple[Any, BatchNormCache]:
    """Batch norm / tdBN forward.

    Inputs:
      x: time-major (T, B, C, ...) (``time_major=True``, channel axis 2) or (N, C, ...)
        (``time_major=False``, channel axis 1); float32/float64.
      gamma, beta: (C,) scale and shift, dtype of x.
      running_mean, running_var: (C,) running statistics, updated **in place** in training mode;
        may be None in training mode (then nothing is tracked), required in eval mode.
      training: batch statistics (True) or running statistics (False).
      momentum: in [0, 1], weight of the new batch in the running statistics.
      eps: > 0, added to the variance.  scale: > 0, tdBN's alpha * V_th (1 for plain BN).
    Returns:
      ``(y, cache)`` with y the shape of x.
    """
    axis = 2 if time_major else 1
    check_float_array("x", x, min_ndim=axis + 1)
    momentum = check_in_range("momentum", momentum, 0.0, 1.0, lo_open=False)
    eps = check_positive("eps", eps)
    scale = check_positive("scale", scale)
    C = x.shape[axis]
    for name, v in (("gamma", gamma), ("beta", beta)):
        check_float_array(name, v, ndim=1)
        check_same_shape(name, v, (C,))
    for name, v in (("running_mean", running_mean), ("running_var", running_var)):
        if v is None:
            if not training:
                raise ValueError(f"{name} is required in eval mode (training=False), got None")
            continue
        check_float_array(name, v, ndim=1)
        check_same_shape(name, v, (C,))
    xp = backend.array_module(x)
    bshape = _bshape(x, axis)
    if training:
        M = x.size // C
        if M < 2:
            raise ValueError("x must have more than one value per channel in training mode, got "
                             f"shape {tuple(x.shape)}")
        axes = _reduce_axes(x, axis)
        mean = x.mean(axis=axes)
        xc = x - mean.reshape(bshape)
        var = (xc * xc).mean(axis=axes)
        inv_std = 1.0 / xp.sqrt(var + eps)
        if running_mean is not None:
            running_mean *= 1.0 - momentum
            running_mean += momentum * mean.astype(running_mean.dtype)
        if running_var is not None:
            running_var *= 1.0 - momentum
            running_var += (momentum * M / (M - 1)) * var.astype(running_var.dtype)
        mean_b = mean.reshape(bshape)
    else:
        mean_b = xp.asarray(running_mean, dtype=x.dtype).reshape(bshape).copy()
        inv_std = 1.0 / xp.sqrt(xp.asarray(running_var, dtype=x.dtype) + eps)
        xc = x - mean_b
    inv_b = inv_std.reshape(bshape).astype(x.dtype, copy=False)
    g = (gamma * scale).astype(x.dtype, copy=False).reshape(bshape)
    y = xc  # x - mean is a fresh array: normalise it in place
    y *= inv_b * g
    y += beta.astype(x.dtype, copy=False).reshape(bshape)
    return y, BatchNormCache(x, mean_b.astype(x.dtype, copy=False), inv_b, gamma, scale, axis,
                             bool(training))


def batchnorm_backward(dout: Any, cache: BatchNormCache) -> tuple[Any, Any, Any]:
    """Gradients of :func:`batchnorm_forward`: ``(dx, dgamma, dbeta)``, dgamma and dbeta (C,)."""
    x, mean_b, inv_b, gamma, scale, axis, training = cache
    check_float_array("dout", dout)
    check_same_shape("dout", dout, tuple(x.shape))
    if dout.dtype != x.dtype:
        dout = dout.astype(x.dtype)
    axes = _reduce_axes(x, axis)
    bshape = _bshape(x, axis)
    xn = x - mean_b
    xn *= inv_b  # the unscaled normalised input; x_hat = scale * xn
    dbeta = dout.sum(axis=axes)
    s_dxn = (dout * xn).sum(axis=axes)  # sum(dout * xn)
    dgamma = (s_dxn * scale).astype(gamma.dtype, copy=False)
    g_inv = (gamma * scale).astype(x.dtype, copy=False).reshape(bshape) * inv_b
    if not training:
        return dout * g_inv, dgamma, dbeta.astype(gamma.dtype, copy=False)
    # dx = g inv_std / M (M dout - dbeta - xn sum(dout xn)), evaluated in place on xn
    M = x.size // x.shape[axis]
    xn *= (s_dxn / M).reshape(bshape)
    xn += (dbeta / M).reshape(bshape)
    dx = dout - xn
    dx *= g_inv
    return dx, dgamma, dbeta.astype(gamma.dtype, copy=False)
