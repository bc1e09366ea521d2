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

**Streamed statistics** (the flow methods, :mod:`pysnn_ref.methods`): the moments of a channel
are gathered a time chunk at a time as (count, mean, M2 = sum (x - mean)^2), summed in float64
(:func:`chunk_moments`, without a float64 copy of the chunk), and
merged with Chan, Golub & LeVeque's pairwise update (:func:`merge_moments`), so no tensor longer
than one chunk is needed; :func:`batchnorm_forward` computes the same moments of its whole input
as one chunk.  Then a second pass normalises (:func:`batchnorm_normalize`).

**Collapsed backward** (:func:`batchnorm_flow_backward`): under ASF/SSF the gradient arriving
from the spiking layer above is one ``G`` for every step (SSF Eq. 15, ASF Eqs. 10-11); so is
DSR's (Meng et al., CVPR 2022: dL/dI[t] = m G / T) for IF neurons or the authors' spread.  With
``dout[t] = G`` the training-mode dx above becomes affine in the step's own input::

    dx[t] = a + c (x[t] - mean),   a = gamma scale inv_std (G - mean_N G),
                                   c = -gamma scale inv_std^2 mean_{T,N}(G xn)

(N: the batch and spatial positions of a channel, mean over the T N values), so
``sum_t x[t] - T mean`` is all the backward needs of the forward (and c = 0 in eval mode).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import backend
from .._check import check_float_array, check_in_range, check_positive, check_same_shape

__all__ = ["BatchNormCache", "Moments", "chunk_moments", "merge_moments", "batch_statistics",
    "batchnorm_normalize", "batchnorm_forward", "batchnorm_backward", "BatchNormFlowGrad",
    "batchnorm_flow_backward"]


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


class Moments(NamedTuple):
    """Per-channel moments of the values seen so far, float64: ``n`` values, their ``mean``
    and ``M2`` = sum (x - mean)^2 (both (C,))."""

    n: int
    mean: Any
    M2: Any


def chunk_moments(x: Any, axis: int) -> Moments:
    """The :class:`Moments` of ``x`` per channel (``axis``), accumulated in float64 without a
    float64 copy of ``x`` (issue 22: the copy was twice a float32 activation tensor).

    ``mean = sum(x, dtype=float64) / n``; with the shift ``s = mean`` rounded to x's dtype,
    ``M2 = sum((x - s)^2, dtype=float64) - n (mean - s)^2`` (exact for any shift), so the only
    temporary is ``x - s`` in x's dtype.  For float64 x this is the two-pass formula as before;
    for float32 x each difference is rounded to float32 (M2 to about 1e-7 relative, the
    precision of the float32 activations it normalises)."""
    xp = backend.array_module(x)
    axes = _reduce_axes(x, axis)
    n = x.size // x.shape[axis]
    mean = x.sum(axis=axes, dtype=xp.float64) / n
    s = mean.astype(x.dtype)
    d = x - s.reshape(_bshape(x, axis))
    d *= d
    delta = mean - s
    return Moments(n, mean, d.sum(axis=axes, dtype=xp.float64) - n * (delta * delta))


def merge_moments(a: Moments | None, b: Moments) -> Moments:
    """Chan, Golub & LeVeque (1979) pairwise update: the moments of two disjoint sets of values
    from theirs: ``n = na + nb``, ``d = mean_b - mean_a``, ``mean = mean_a + d nb / n``,
    ``M2 = M2_a + M2_b + d^2 na nb / n``.  ``a = None`` is the empty set."""
    if a is None:
        return b
    n = a.n + b.n
    d = b.mean - a.mean
    return Moments(n, a.mean + d * (b.n / n), a.M2 + b.M2 + d * d * (a.n * b.n / n))


def batch_statistics(m: Moments, eps: float, running_mean: Any | None = None,
                     running_var: Any | None = None, momentum: float = 0.1
                     ) -> tuple[Any, Any]:
    """Batch ``mean`` and ``inv_std = 1/sqrt(var + eps)`` (biased var = M2/n, float64) from the
    moments; updates the running statistics in place (unbiased var, see the module docstring)."""
    if m.n < 2:
        raise ValueError(f"x must have more than one value per channel in training mode, got "
                         f"{m.n}")
    xp = backend.array_module(m.mean)
    var = m.M2 / m.n
    if running_mean is not None:
        running_mean *= 1.0 - momentum
        running_mean += (momentum * m.mean).astype(running_mean.dtype)
    if running_var is not None:
        running_var *= 1.0 - momentum
        running_var += (momentum * m.n / (m.n - 1) * var).astype(running_var.dtype)
    return m.mean, 1.0 / xp.sqrt(var + eps)


def batchnorm_normalize(x: Any, mean: Any, inv_std: Any, gamma: Any, beta: Any, scale: float,
                        axis: int) -> Any:
    """``y = gamma scale (x - mean) inv_std + beta`` per channel (``axis``), in x's dtype."""
    bshape = _bshape(x, axis)
    y = x - mean.astype(x.dtype, copy=False).reshape(bshape)  # a fresh array: finish in place
    y *= (inv_std * (gamma * scale)).astype(x.dtype, copy=False).reshape(bshape)
    y += beta.astype(x.dtype, copy=False).reshape(bshape)
    return y


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
    if training:
        if x.size // C < 2:
            raise ValueError("x must have more than one value per channel in training mode, got "
                             f"shape {tuple(x.shape)}")
        mean, inv_std = batch_statistics(chunk_moments(x, axis), eps, running_mean,
                                         running_var, momentum)
    else:
        mean = xp.asarray(running_mean, dtype=x.dtype).copy()
        inv_std = 1.0 / xp.sqrt(xp.asarray(running_var, dtype=x.dtype) + eps)
    y = batchnorm_normalize(x, mean, inv_std, gamma, beta, scale, axis)
    bshape = _bshape(x, axis)
    return y, BatchNormCache(x, mean.astype(x.dtype).reshape(bshape),
                             inv_std.astype(x.dtype).reshape(bshape), gamma, scale, axis,
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


class BatchNormFlowGrad(NamedTuple):
    """The collapsed BN backward's gradient at the layer input (see the module docstring):
    ``dx[t] = a + c (x[t] - mean)`` -- ``a`` (B, C, ...), ``c`` per channel shaped to broadcast
    against ``a``.  ``xc_flow``: the flow-weighted mean of ``x[t] - mean`` (weights of the spiking
    layer below), or None; ``a + c xc_flow`` is then the collapsed gradient that layer sees."""

    a: Any
    c: Any
    xc_flow: Any | None


def batchnorm_flow_backward(G: Any, sum_xc: Any, T: int, inv_std: Any, gamma: Any,
                            scale: float, training: bool) -> tuple[Any, Any, Any, Any]:
    """BN / tdBN backward for a gradient ``G`` (B, C, ...) that is the same at every step.

    ``sum_xc`` = sum_t (x[t] - mean) (B, C, ...), ``inv_std`` (C,) the statistics used.
    The training-mode formulas of the module docstring with ``dout[t] = G``, the sums over t
    done in the forward (xn[t] = (x[t] - mean) inv_std, N = B x spatial, M = T N)::

        dbeta  = T sum_N G                 dgamma = scale inv_std sum_N G sum_xc
        a = gamma scale inv_std (G - mean_N G)     c = -gamma scale inv_std^2 dgamma/(scale M)

    so that ``dx[t] = a + c (x[t] - mean)``.  Eval mode (running statistics): ``a = gamma scale
    inv_std G``, ``c = 0``.  Returns ``(a, c, dgamma, dbeta)``, c (C,).
    """
    check_float_array("G", G, min_ndim=2)
    check_same_shape("sum_xc", sum_xc, tuple(G.shape))
    bshape = _bshape(G, 1)
    axes = _reduce_axes(G, 1)
    g_inv = (gamma * scale * inv_std).astype(G.dtype, copy=False)
    s_G = G.sum(axis=axes)
    s_Gxn = (G * sum_xc).sum(axis=axes) * inv_std.astype(G.dtype, copy=False)  # sum G sum_t xn
    dbeta = (T * s_G).astype(gamma.dtype, copy=False)
    dgamma = (scale * s_Gxn).astype(gamma.dtype, copy=False)
    if not training:
        return G * g_inv.reshape(bshape), G.dtype.type(0) * g_inv, dgamma, dbeta
    N = G.size // G.shape[1]
    a = G - (s_G / N).reshape(bshape)
    a *= g_inv.reshape(bshape)
    c = -g_inv * inv_std.astype(G.dtype, copy=False) * s_Gxn / (T * N)
    return a, c, dgamma, dbeta
