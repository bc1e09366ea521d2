"""2-D average and max pooling, NCHW or time-major (T, B, C, H, W) (time folded into batch).

Windows are ``kernel_size`` x ``kernel_size``, moved by ``stride`` (default: ``kernel_size``), no
padding; OH = floor((H - k) / stride) + 1, so trailing rows/columns that do not fill a window are
dropped (PyTorch's default).  The pooling layers of the papers' networks: average pooling in
ASF's LeNet/VGG-7 and TET's SNN-5/VGGSNN (spikes stay linear in the rate), max pooling in SSF.

Average pooling (linear, weight-free)::

    out[.., oh, ow] = (1/k^2) sum_{kh, kw} x[.., oh*s + kh, ow*s + kw]
    dx[.., oh*s + kh, ow*s + kw] += dout[.., oh, ow] / k^2

written with array operations only (k^2 strided slice sums; a ``repeat`` for the backward of
non-overlapping windows), so it runs unchanged on NumPy and CuPy; these are the reference.  On
the CPU the Numba kernels ``avgpool2d_forward`` / ``avgpool2d_backward`` of
:mod:`pysnn_ref.kernels.cpu` do the same sums in the same order in one parallel pass (tested
bit-equal to the array code, which ``use_cpu_kernels("reference")`` selects).

Max pooling routes the gradient to the window's maximum::

    out[.., oh, ow] = x[.., i*],  i* = argmax over the window      dx[.., i*] += dout[.., oh, ow]

through the ``maxpool2d_forward`` / ``maxpool2d_backward`` kernels, which keep the int32 argmax
(flat index in the (H, W) plane) in the cache.  Ties: the first maximum in row-major window order
wins, so exactly one input per window receives the gradient (PyTorch picks one too).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import backend
from .._check import check_float_array, check_int, check_same_shape
from ..kernels import provides
from ..kernels.reference import conv_out_size

__all__ = ["AvgPoolCache", "MaxPoolCache", "avgpool2d_forward", "avgpool2d_backward",
    "maxpool2d_forward", "maxpool2d_backward"]


class AvgPoolCache(NamedTuple):
    """What :func:`avgpool2d_backward` needs: the input shape and the window."""

    x_shape: tuple
    kernel_size: int
    stride: int


class MaxPoolCache(NamedTuple):
    """What :func:`maxpool2d_backward` needs: the argmax of every window (int32, flat index in
    the (H, W) plane, shape of the output), the input shape and the window."""

    idx: Any
    x_shape: tuple
    kernel_size: int
    stride: int


def _check(x: Any, kernel_size: Any, stride: Any) -> tuple[int, int, int, int]:
    """Validate; returns (k, s, OH, OW)."""
    check_float_array("x", x)
    if x.ndim not in (4, 5):
        raise ValueError("x must be (N, C, H, W) or time-major (T, B, C, H, W), got shape "
                         f"{tuple(x.shape)}")
    k = check_int("kernel_size", kernel_size)
    s = k if stride is None else check_int("stride", stride)
    H, W = x.shape[-2:]
    if k > H or k > W:
        raise ValueError(f"kernel_size must be <= the input's height and width {H}x{W}, got {k}")
    return k, s, conv_out_size(H, k, s, 0), conv_out_size(W, k, s, 0)


def _check_dout(dout: Any, shape: tuple) -> None:
    check_float_array("dout", dout)
    check_same_shape("dout", dout, shape)


def avgpool2d_forward(x: Any, kernel_size: int, stride: int | None = None
                      ) -> tuple[Any, AvgPoolCache]:
    """k x k average pooling over the last two axes of x (N, C, H, W) or (T, B, C, H, W).

    ``stride`` defaults to ``kernel_size``.  Returns ``(out, cache)``.
    """
    k, s, OH, OW = _check(x, kernel_size, stride)
    cache = AvgPoolCache(tuple(x.shape), k, s)
    K = backend.kernels_for(x)
    if provides(K, "avgpool2d_forward"):  # Numba: one parallel pass, equal to the sums below
        out = K.avgpool2d_forward(x.reshape(-1, *x.shape[-3:]), k, s)
        return out.reshape(*x.shape[:-2], OH, OW), cache
    # the sum of the k*k strided slices x[..., kh::s, kw::s]: k*k plain strided adds (a
    # reshape + mean over the tiny window axes was 10x slower in NumPy)
    out = None
    for kh in range(k):
        for kw in range(k):
            window = x[..., kh:kh + s * (OH - 1) + 1:s, kw:kw + s * (OW - 1) + 1:s]
            if out is None:
                out = window.copy()
            else:
                out += window
    out *= x.dtype.type(1.0 / (k * k))
    return out, cache


def avgpool2d_backward(dout: Any, cache: AvgPoolCache) -> Any:
    """Gradient of :func:`avgpool2d_forward`: each input gets dout / k^2 from every window that
    contains it (inputs in dropped trailing rows/columns get 0).  Returns dx."""
    x_shape, k, s = cache
    H, W = x_shape[-2:]
    OH, OW = conv_out_size(H, k, s, 0), conv_out_size(W, k, s, 0)
    lead = x_shape[:-2]
    _check_dout(dout, (*lead, OH, OW))
    xp = backend.array_module(dout)
    K = backend.kernels_for(dout)
    if provides(K, "avgpool2d_backward"):  # Numba: one parallel pass, equal to the adds below
        d4 = dout.reshape(-1, *dout.shape[-3:])
        return K.avgpool2d_backward(d4, (d4.shape[0], *x_shape[-3:]), k, s).reshape(x_shape)
    g = dout * dout.dtype.type(1.0 / (k * k))
    if s == k and OH * k == H and OW * k == W:  # non-overlapping, exact fit: repeat each value
        return xp.repeat(xp.repeat(g, k, axis=-1), k, axis=-2)
    dx = xp.zeros(x_shape, dtype=dout.dtype)
    for kh in range(k):
        for kw in range(k):
            dx[..., kh:kh + s * (OH - 1) + 1:s, kw:kw + s * (OW - 1) + 1:s] += g
    return dx


def maxpool2d_forward(x: Any, kernel_size: int, stride: int | None = None
                      ) -> tuple[Any, MaxPoolCache]:
    """k x k max pooling over the last two axes of x (N, C, H, W) or (T, B, C, H, W).

    ``stride`` defaults to ``kernel_size``.  Returns ``(out, cache)``; the cache holds the
    argmax indices (first maximum wins on ties), not the input.
    """
    k, s, _, _ = _check(x, kernel_size, stride)
    xp = backend.array_module(x)
    K = backend.kernels_for(x)
    x4 = xp.ascontiguousarray(x.reshape(-1, *x.shape[-3:]))
    out, idx = K.maxpool2d_forward(x4, k, s)
    out = out.reshape(*x.shape[:-2], *out.shape[-2:])
    return out, MaxPoolCache(idx, tuple(x.shape), k, s)


def maxpool2d_backward(dout: Any, cache: MaxPoolCache) -> Any:
    """Gradient of :func:`maxpool2d_forward`: ``dout`` goes to each window's maximum (gradients
    of overlapping windows add up).  Returns dx with the input's shape."""
    idx, x_shape, k, s = cache
    _check_dout(dout, (*x_shape[:-2], *idx.shape[-2:]))
    xp = backend.array_module(dout)
    K = backend.kernels_for(dout)
    d4 = xp.ascontiguousarray(dout.reshape(idx.shape))
    x4_shape = (idx.shape[0], *x_shape[-3:])
    return K.maxpool2d_backward(d4, idx, x4_shape, k, s).reshape(x_shape)
