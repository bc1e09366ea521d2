"""Weight layers: :class:`Linear` and :class:`Conv2d` (:mod:`pysnn_ref.functional.linear`,
:mod:`pysnn_ref.functional.conv`) and their shared flow-mode logic (:class:`WeightLayer`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import backend
from .._check import check_fits_memory, check_int
from ..functional.batchnorm import BatchNormFlowGrad
from ..functional.conv import (
    Conv2dCache,
    conv2d_backward,
    conv2d_backward_time_sum,
    conv2d_forward,
    conv_out_size,
)
from ..functional.flows import decayed_sum, flow_norm, weighted_time_mean
from ..functional.linear import (
    LinearCache,
    is_time_broadcast,
    linear_backward,
    linear_backward_time_sum,
    linear_forward,
)
from ..parameter import Parameter
from .module import Module, channel_shape, is_static, time_sum

__all__ = ["WeightLayer", "Linear", "Conv2d"]


class WeightLayer(Module):
    """Shared flow-mode logic of Linear and Conv2d: keep sum_t x[t], or per-step x if asked.

    Under a streamed :class:`BatchNorm` (:meth:`stream_under`, called by its plan) it also keeps
    ``A = sum_t wgrad(z[t] - mean, x[t])`` (z: this layer's output, mean: BN's batch mean), the
    one per-step product the collapsed BN backward needs; the BN hands ``z[t] - mean`` back
    (:meth:`keep_bn_product`), as only it knows the mean (in the one-pass forward, after the
    weight layer's output is computed).
    """

    _bn_above: Module | None = None  # a BatchNorm
    _collapse_lif: Module | None = None  # a LIF: see collapse_into

    def own_parameters(self) -> list[Parameter]:
        """``[W]`` or ``[W, b]``."""
        return [self.W] + ([self.b] if self.b is not None else [])

    def stream_under(self, bn: Module | None) -> None:
        """Plan: ``bn`` (a BatchNorm in training, streamed) sits directly above this layer, so
        its flow pass keeps ``A`` for the collapsed BN backward; None: it does not."""
        self._bn_above = bn

    def collapse_into(self, lif: Module | None) -> None:
        """Plan (:meth:`Sequential.plan_flow`): ``lif`` is the spiking layer that collapses the
        gradient leaving this layer's input, reached through pooling / flatten only (linear and
        the same at every step), or None.  A per-step gradient arriving here (a per-step loss,
        the output layer) then leaves already collapsed by ``lif``'s flow weights: what ``lif``
        makes of the per-step one, without the ``(T, B, ...)`` gradients in between."""
        self._collapse_lif = lif

    def flow_out_per_step(self, per_step: bool) -> bool:
        return per_step and self._collapse_lif is None

    def _accumulate(self, g: Any, dW: Any, db: Any) -> None:
        self.W.grad += dW
        if self.b is not None:
            self.b.grad += db

    @property
    def kept_steps_nbytes(self) -> int:
        """Bytes of the per-step inputs ``x[t]`` this layer keeps for its flow backward: after
        a flow forward planned per step (``keep_steps``, e.g. the output layer under a per-step
        loss), ``T x`` one step's input; 0 on the collapsed path and after the backward."""
        return sum(int(x.nbytes) for x in getattr(self, "_steps", []))

    def has_static_input(self) -> bool:
        """BPTT, after ``forward``: was the input time-broadcast (direct encoding)?  Then the
        weight gradient reads only ``sum_t dout[t]`` (:meth:`backward_time_sum`)."""
        cache = getattr(self, "_cache", None)
        return cache is not None and is_time_broadcast(cache.x)

    def backward_time_sum(self, ds: Any) -> None:
        """BPTT with a static input: accumulate dW and db from ``ds = sum_t dout[t]`` alone
        (no input gradient: that needs each step's ``dout``)."""
        dW, db = self._bwd_time_sum(ds, self._cache)
        self._accumulate(ds, dW, db)
        self._cache = None

    def flow_begin(self, method: str, opts: dict) -> None:
        self._stats_pass = bool(opts.get("stats_pass", False))  # BN statistics: output only
        self._x_sum = None
        # DSR: keep the input's decayed sum sum_t w^(T-1-t) x[t] (the spike representation's
        # weights; functional/dsr.py), used as T times its weighted mean; 1: the plain sum
        self._x_decay = float(opts.get("x_decay", 1.0))
        self._A = self._pending_x = None
        self._steps: list[Any] = []
        self._static: tuple[Any, Any] | None = None  # (input x[0], output) of a static input

    def forward_chunk(self, x: Any) -> Any:
        if self._stats_pass:
            return self._forward_chunk(x)
        if self.keep_steps:
            self._steps.append(x)
        if self._x_decay != 1.0:
            self._x_sum = decayed_sum(self._x_sum, x, self._x_decay)
        else:
            s = time_sum(x)
            self._x_sum = s if self._x_sum is None else self._x_sum + s
        if self._bn_above is not None:  # A: when the BN above has centred z (keep_bn_product)
            self._pending_x = x
        return self._forward_chunk(x)

    def keep_bn_product(self, zc: Any) -> None:
        """The streamed BatchNorm above (:meth:`stream_under`) hands back this chunk's output
        centred by its batch mean, ``zc = z - mean``: ``A += sum_t wgrad(zc[t], x[t])`` over the
        chunk, ``x`` the chunk's input kept since :meth:`forward_chunk`.  BN knows its mean only
        after it has seen ``z`` in the one-pass forward, so ``A`` is formed here, not there."""
        x, self._pending_x = self._pending_x, None
        dA = self._bwd(zc, self._make_cache(x), False)[1]
        self._A = dA if self._A is None else self._A + dA

    def _forward_chunk(self, x: Any) -> Any:
        if is_static(x):  # direct encoding: every chunk is the same tensor -> one GEMM
            xp = backend.array_module(x)
            if self._static is None or not backend.same_view(self._static[0], x[0]):
                self._static = (x[0], self._fwd(x[:1])[0][0])
            return xp.broadcast_to(self._static[1], (x.shape[0], *self._static[1].shape))
        return self._fwd(x)[0]

    def _backward_below_bn(self, g: BatchNormFlowGrad, T: int, need_dx: bool) -> Any:
        """Collapsed backward under a streamed BatchNorm, where ``dz[t] = a + c (z[t] - mean)``::

            dW = sum_t wgrad(dz[t], x[t]) = wgrad(a, sum_t x[t]) + c A
            db = sum_t sum dz[t] = T sum a               (= 0: BN removes a bias before it)
            dx = W^T (a + c zc_flow)   (zc_flow: flow-weighted mean of z[t] - mean)

        ``dx`` is the collapsed gradient of the spiking layer below (its flow weights made
        ``zc_flow``); ``c`` scales the output channels (rows of W)."""
        cache = self._make_cache(self._x_sum)
        _, dW, _ = self._bwd(g.a, cache, False)
        dW = dW + g.c.reshape(-1, *(1,) * (dW.ndim - 1)) * self._A
        db = None
        if self.b is not None:
            db = T * g.a.sum(axis=tuple(i for i in range(g.a.ndim) if i != 1))
        self._accumulate(g, dW, db)
        self._A = None
        if not need_dx:
            return None
        if g.xc_flow is None:
            raise ValueError("need_dx: the input gradient of a weight layer under a streamed "
                             "BatchNorm at the network input differs per step; not available")
        c = g.c.reshape(channel_shape(g.a.ndim, 1))
        return self._bwd(g.a + c * g.xc_flow, cache, True)[0]

    def backward_flow(self, g: Any, per_step: bool, T: int, need_dx: bool = True
                      ) -> tuple[Any, bool]:
        if isinstance(g, BatchNormFlowGrad):
            return self._backward_below_bn(g, T, need_dx), False
        if per_step and self._collapse_lif is not None:
            return self._backward_steps_collapsed(g, need_dx), False
        if per_step:
            xp = backend.array_module(g)
            x = self._steps[0] if len(self._steps) == 1 else xp.concatenate(self._steps)
            self._steps = []
            dx, dW, db = self._bwd(g, self._make_cache(x), need_dx)
            self._accumulate(g, dW, db)
            return dx, True
        X = self._x_sum
        if self._x_decay != 1.0:  # T x weighted mean: g stands for every step's gradient
            X = X * X.dtype.type(T / flow_norm(self._x_decay, T))
        dx, dW, db = self._bwd(g, self._make_cache(X), need_dx)
        self._accumulate(g, dW, None if db is None else db * T)
        return dx, False


    def _backward_steps_collapsed(self, g: Any, need_dx: bool) -> Any:
        """Per-step ``g`` (T, B, ...) from above (a per-step loss), one collapsed gradient
        below: the exact ``dW = sum_t wgrad(g[t], x[t])`` and ``db = sum_t sum g[t]`` over the
        kept chunks (BPTT's; TET Eqs. 9-13 at the output layer), and ``dx`` = the input
        gradient of ``G``, the flow-weighted time mean of ``g`` by the spiking layer below
        (:meth:`collapse_into`; SSF Sec. 3.3) -- equal to that layer's collapse of the per-step
        ``dx``, since ``dx`` is linear in ``g`` and so are the pooling / flatten between."""
        xp, t0 = backend.array_module(g), 0
        for x in self._steps:
            gc = xp.ascontiguousarray(g[t0:t0 + x.shape[0]])
            _, dW, db = self._bwd(gc, self._make_cache(x), False)
            self._accumulate(gc, dW, db)
            t0 += x.shape[0]
        self._steps = []
        if not need_dx:
            return None
        G = weighted_time_mean(g, self._collapse_lif.flow_decay)
        return self._bwd(G, self._make_cache(self._x_sum), True)[0]


class Linear(WeightLayer):
    """Fully connected layer, y = x W^T + b, time folded into batch (one GEMM for all steps)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 rng: np.random.Generator | None = None, dtype: Any = np.float32) -> None:
        super().__init__()
        check_int("in_features", in_features)
        check_int("out_features", out_features)
        check_fits_memory("in_features x out_features", in_features * out_features * 8,
                          f"a {out_features}x{in_features} weight (float64 at initialisation)")
        rng = rng or np.random.default_rng(0)
        std = math.sqrt(2.0 / in_features)  # Kaiming normal, fan-in
        self.W = Parameter("W", rng.normal(0, std, (out_features, in_features)).astype(dtype))
        self.b = Parameter("b", np.zeros(out_features, dtype)) if bias else None
        self.in_features, self.out_features = in_features, out_features

    def _fwd(self, x: Any) -> Any:
        return linear_forward(x, self.W.data, None if self.b is None else self.b.data)

    def _bwd(self, g, cache, need_dx):
        return linear_backward(g, cache, need_dx=need_dx)

    def _bwd_time_sum(self, ds, cache):
        return linear_backward_time_sum(ds, cache)

    def _make_cache(self, x):
        return LinearCache(x, self.W.data, self.b is not None)

    def forward(self, x: Any) -> Any:
        y, self._cache = self._fwd(x)
        return y

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        dx, dW, db = self._bwd(dy, self._cache, need_dx)
        self._accumulate(dy, dW, db)
        self._cache = None
        return dx

    def step_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The input's leading axes, then ``out_features``."""
        return (*shape[:-1], self.out_features)

    def __repr__(self) -> str:
        return f"Linear({self.in_features}, {self.out_features}, bias={self.b is not None})"


class Conv2d(WeightLayer):
    """2-D convolution (NCHW), im2col + one GEMM over all time steps."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True, rng: np.random.Generator | None = None,
                 dtype: Any = np.float32) -> None:
        super().__init__()
        check_int("in_channels", in_channels)
        check_int("out_channels", out_channels)
        check_int("kernel_size", kernel_size)
        check_int("stride", stride)
        check_int("padding", padding, minimum=0)
        rng = rng or np.random.default_rng(0)
        fan_in = in_channels * kernel_size * kernel_size
        w = rng.normal(0, math.sqrt(2.0 / fan_in),
                       (out_channels, in_channels, kernel_size, kernel_size))
        self.W = Parameter("W", w.astype(dtype))
        self.b = Parameter("b", np.zeros(out_channels, dtype)) if bias else None
        self.stride, self.padding = stride, padding
        self.shape_args = (in_channels, out_channels, kernel_size)

    def _fwd(self, x: Any) -> Any:
        return conv2d_forward(x, self.W.data, None if self.b is None else self.b.data,
                              stride=self.stride, padding=self.padding)

    def _bwd(self, g, cache, need_dx):
        return conv2d_backward(g, cache, need_dx=need_dx)

    def _bwd_time_sum(self, ds, cache):
        return conv2d_backward_time_sum(ds, cache)

    def _make_cache(self, x):
        return Conv2dCache(x, self.W.data, self.b is not None, self.stride, self.padding)

    forward = Linear.forward
    backward = Linear.backward

    def step_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """(C_out, OH, OW) of a (C_in, H, W) input."""
        co, k = self.W.data.shape[0], self.W.data.shape[-1]
        return (co, *(conv_out_size(n, k, self.stride, self.padding) for n in shape[1:]))

    def __repr__(self) -> str:
        ci, co, k = self.shape_args
        return f"Conv2d({ci}, {co}, {k}, stride={self.stride}, padding={self.padding})"
