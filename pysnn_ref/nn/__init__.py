"""Stateful layers and containers built on :mod:`pysnn_ref.functional`.

Every layer has parameters (:class:`~pysnn_ref.parameter.Parameter`, with ``.grad``), a train /
eval mode, and two ways to run, chosen by the training *method* (:mod:`pysnn_ref.methods`):

**BPTT** (``forward(x)`` / ``backward(dy)``): the whole time-major tensor ``(T, B, ...)`` goes
through each layer; each layer caches what its backward needs; spiking layers back-propagate
through time exactly (:func:`~pysnn_ref.functional.neuron.lif_backward`).

**Flows** (ASF, SSF: ``flow_begin`` / ``forward_chunk`` / ``flow_end`` / ``backward_flow``):
the input is streamed through the network a time chunk at a time; spiking layers keep only their
membrane and running sums (:class:`~pysnn_ref.functional.flows.FlowState`), weight layers only
the time-summed input.  The backward then runs **once**, on one ``(B, ...)`` gradient ``G``
that stands for every time step's gradient (all per-step input gradients are equal under
ASF/SSF: SSF Eq. 15, ASF Eqs. 10-11):

* Linear / Conv2d: ``dx = G W``, ``dW = G^T sum_t x[t]``, ``db = T sum G``;
* AvgPool / Flatten: their ordinary backward on ``G``;
* LIF / IF: ``G_in = G * dFO/dFI`` (the flow gain: SSF Eqs. 14/19, ASF scale factor S).

Two layers are not linear in time.  BatchNorm with batch statistics needs every step before
it can normalise, and its backward depends on x_hat[t].  The method streams it anyway, in L + 1
passes over the time chunks (L BN layers in training): statistics passes, then the normalised
pass.  Its backward stays collapsed because, for one ``G`` at every step, BN's input gradient is
affine in the step's input, ``dz[t] = a + c (z[t] - mean)``; the weight layer below turns that
into ``dW = wgrad(a, sum_t x[t]) + c A`` with ``A = sum_t wgrad(z[t] - mean, x[t])`` kept in the
forward (the "collapsed BN backward", :class:`BatchNorm`).  Where BN's input is not a weight layer
(or its gradient arrives per step) it falls back to a per-step backward: it keeps its per-step
input, turns ``G`` into a per-step gradient ``(T, B, ...)``, the weight layers between it and the
next spiking layer below keep their per-step inputs (:meth:`Sequential.plan_flow` decides which),
and the spiking layer below collapses the per-step gradient again by its flow weights (SSF:
lam^(T-t)-weighted mean; ASF: uniform mean) -- that memory grows with T.  MaxPool2d right above
a spiking layer collapses exactly through a flow-weighted map of the steps each input won (see
its docstring); elsewhere it falls back to the per-step backward too.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import backend
from .._check import check_choice, check_int
from ..functional import flows as F
from ..functional.batchnorm import (
    BatchNormCache,
    BatchNormFlowGrad,
    batch_statistics,
    batchnorm_backward,
    batchnorm_flow_backward,
    batchnorm_forward,
    batchnorm_normalize,
    chunk_moments,
    merge_moments,
)
from ..functional.conv import (
    Conv2dCache,
    conv2d_backward,
    conv2d_backward_time_sum,
    conv2d_forward,
)
from ..functional.linear import (
    LinearCache,
    is_time_broadcast,
    linear_backward,
    linear_backward_time_sum,
    linear_forward,
)
from ..functional.lstm import lstm_backward, lstm_forward, make_lstm_params
from ..functional.neuron import (
    LIFPoolCache,
    can_fuse_lif_avgpool,
    lif_avgpool_backward,
    lif_avgpool_forward_p,
    lif_backward,
    lif_forward_p,
    make_neuron_params,
)
from ..functional.pool import (
    avgpool2d_backward,
    avgpool2d_forward,
    maxpool2d_backward,
    maxpool2d_forward,
)
from ..functional.recompose import recompose_backward, recompose_forward, region_threshold
from ..functional.shape import add_backward, add_forward
from ..functional.surrogate import Surrogate
from ..parameter import Parameter

FLOW_METHODS = ("asf", "ssf")
#: :meth:`Sequential.plan_flow`: "below this layer is the network input" (no spiking layer)
FLOW_INPUT = "input"
ASF_VARIANTS = ("paper", "code")


def _is_static(x: Any) -> bool:
    """True for a time-broadcast input (direct encoding): the same tensor at every step."""
    return x.ndim >= 3 and x.shape[0] > 1 and x.strides[0] == 0


def _time_sum(x: Any) -> Any:
    """sum_t x[t] of a time-major chunk (cheap for a time-broadcast input)."""
    if _is_static(x):
        return x[0] * x.shape[0]
    return x.sum(axis=0)


def _channel_shape(ndim: int, axis: int) -> tuple[int, ...]:
    """Shape that broadcasts a per-channel (C,) vector along ``axis`` of an ``ndim`` array."""
    return tuple(-1 if i == axis else 1 for i in range(ndim))


def _weighted_time_mean(g: Any, w: float) -> Any:
    """sum_t w^(T-1-t) g[t] / sum_t w^(T-1-t): how a spiking layer collapses per-step gradients
    (SSF's dL/dFO, Sec. 3.3; uniform mean for w = 1, ASF)."""
    T = g.shape[0]
    if w == 1.0:
        return g.mean(axis=0)
    xp = backend.array_module(g)
    wt = xp.asarray(w ** np.arange(T - 1, -1, -1), dtype=g.dtype)
    return xp.tensordot(wt / wt.sum(), g, axes=(0, 0))


class Module:
    """Base class: parameters, train/eval mode, BPTT and flow-mode interfaces."""

    #: True for layers whose flow-mode backward must run per time step (see flow_out_per_step)
    per_step_backward = False

    def __init__(self) -> None:
        self.training = True
        self.keep_steps = False  # flow mode: keep per-step inputs (set by Sequential.plan_flow)

    # --- structure -----------------------------------------------------------------------
    def parameters(self) -> list[Parameter]:
        """Every trainable parameter of this module and its children."""
        return self.own_parameters() + [p for c in self.children() for p in c.parameters()]

    def children(self) -> list[Module]:
        return []

    def modules(self) -> list[Module]:
        out: list[Module] = [self]
        for c in self.children():
            out.extend(c.modules())
        return out

    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            m.training = mode
        return self

    def eval(self) -> Module:
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.zero_grad()

    def to(self, device: str, dtype: Any = None) -> Module:
        """Move every parameter and buffer to ``device`` ("cpu" or "gpu"), optionally casting."""
        be = backend.get_backend(device)
        for m in self.modules():
            for p in m.own_parameters():
                p.data = be.asarray(p.data, dtype=dtype or p.data.dtype)
                p.grad = be.xp.zeros_like(p.data)
            for name in m.buffer_names():
                buf = getattr(m, name)
                setattr(m, name, be.asarray(buf, dtype=dtype or buf.dtype))
        return self

    def own_parameters(self) -> list[Parameter]:
        return []

    def buffer_names(self) -> tuple[str, ...]:
        return ()

    # --- BPTT ----------------------------------------------------------------------------
    def forward(self, x: Any) -> Any:
        raise NotImplementedError

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        raise NotImplementedError

    def __call__(self, x: Any) -> Any:
        return self.forward(x)

    # --- flows ---------------------------------------------------------------------------
    def flow_begin(self, method: str, opts: dict) -> None:
        """Start a streamed forward pass (reset running state)."""

    def forward_chunk(self, x: Any) -> Any:
        """Stream one time chunk; stateless layers just run their forward."""
        return self.forward(x)

    def flow_end(self) -> None:
        """All chunks seen: finish the statistics the flow backward needs."""

    def backward_flow(self, g: Any, per_step: bool, T: int, need_dx: bool = True
                      ) -> tuple[Any, bool]:
        """Flow-mode backward.  ``g`` is a collapsed ``(B, ...)`` gradient (one for every time
        step) or, if ``per_step``, a ``(T, B, ...)`` one.  Returns the gradient below and whether
        it is per-step."""
        return self.backward(g, need_dx), per_step

    def flow_out_per_step(self, per_step: bool) -> bool:
        """Whether the gradient this layer passes down is per-step, given what it receives."""
        return per_step or self.per_step_backward

    def state_dict(self, prefix: str = "") -> dict[str, np.ndarray]:
        out = {}
        for i, c in enumerate(self.children()):
            out.update(c.state_dict(f"{prefix}{i}."))
        for p in self.own_parameters():
            out[prefix + p.name] = backend.to_numpy(p.data)
        for name in self.buffer_names():
            out[prefix + name] = backend.to_numpy(getattr(self, name))
        return out

    def load_state_dict(self, state: dict[str, np.ndarray], prefix: str = "") -> None:
        for i, c in enumerate(self.children()):
            c.load_state_dict(state, f"{prefix}{i}.")
        for p in self.own_parameters():
            key = prefix + p.name
            if key not in state:
                raise ValueError(f"state_dict is missing parameter {key!r}")
            if tuple(state[key].shape) != tuple(p.data.shape):
                raise ValueError(f"state_dict[{key!r}] must have shape {tuple(p.data.shape)}, "
                                 f"got {tuple(state[key].shape)}")
            xp = backend.array_module(p.data)
            p.data[...] = xp.asarray(state[key], dtype=p.data.dtype)
        for name in self.buffer_names():
            key = prefix + name
            if key in state:
                buf = getattr(self, name)
                buf[...] = backend.array_module(buf).asarray(state[key], dtype=buf.dtype)


class _WeightLayer(Module):
    """Shared flow-mode logic of Linear and Conv2d: keep sum_t x[t], or per-step x if asked.

    Under a streamed :class:`BatchNorm` (``_bn_above``, set by its plan) it also keeps
    ``A = sum_t wgrad(z[t] - mean, x[t])`` (z: this layer's output, mean: BN's batch mean), the
    one per-step product the collapsed BN backward needs.
    """

    _bn_above: BatchNorm | None = None

    def own_parameters(self) -> list[Parameter]:
        return [self.W] + ([self.b] if self.b is not None else [])

    def _accumulate(self, g: Any, dW: Any, db: Any) -> None:
        self.W.grad += dW
        if self.b is not None:
            self.b.grad += db

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
        self._A = None
        self._steps: list[Any] = []
        self._static: tuple[Any, Any] | None = None  # (input x[0], output) of a static input

    def forward_chunk(self, x: Any) -> Any:
        if self._stats_pass:
            return self._forward_chunk(x)
        if self.keep_steps:
            self._steps.append(x)
        s = _time_sum(x)
        self._x_sum = s if self._x_sum is None else self._x_sum + s
        z = self._forward_chunk(x)
        if self._bn_above is not None:  # A += sum_t wgrad(z[t] - mean, x[t]) over the chunk
            zc = z - self._bn_above.batch_mean.reshape(_channel_shape(z.ndim, 2))
            dA = self._bwd(zc, self._make_cache(x), False)[1]
            self._A = dA if self._A is None else self._A + dA
        return z

    def _forward_chunk(self, x: Any) -> Any:
        if _is_static(x):  # direct encoding: every chunk is the same tensor -> one GEMM
            xp = backend.array_module(x)
            if self._static is None or not xp.shares_memory(self._static[0], x[0]):
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
        c = g.c.reshape(_channel_shape(g.a.ndim, 1))
        return self._bwd(g.a + c * g.xc_flow, cache, True)[0]

    def backward_flow(self, g, per_step, T, need_dx=True):
        if isinstance(g, BatchNormFlowGrad):
            return self._backward_below_bn(g, T, need_dx), False
        if per_step:
            xp = backend.array_module(g)
            x = self._steps[0] if len(self._steps) == 1 else xp.concatenate(self._steps)
            self._steps = []
            dx, dW, db = self._bwd(g, self._make_cache(x), need_dx)
            self._accumulate(g, dW, db)
            return dx, True
        dx, dW, db = self._bwd(g, self._make_cache(self._x_sum), need_dx)
        self._accumulate(g, dW, None if db is None else db * T)
        return dx, False


class Linear(_WeightLayer):
    """Fully connected layer, y = x W^T + b, time folded into batch (one GEMM for all steps)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 rng: np.random.Generator | None = None, dtype: Any = np.float32) -> None:
        super().__init__()
        check_int("in_features", in_features)
        check_int("out_features", out_features)
        rng = rng or np.random.default_rng(0)
        std = math.sqrt(2.0 / in_features)  # Kaiming normal, fan-in
        self.W = Parameter("W", rng.normal(0, std, (out_features, in_features)).astype(dtype))
        self.b = Parameter("b", np.zeros(out_features, dtype)) if bias else None
        self.in_features, self.out_features = in_features, out_features

    def _fwd(self, x):
        return linear_forward(x, self.W.data, None if self.b is None else self.b.data)

    def _bwd(self, g, cache, need_dx):
        return linear_backward(g, cache, need_dx=need_dx)

    def _bwd_time_sum(self, ds, cache):
        return linear_backward_time_sum(ds, cache)

    def _make_cache(self, x):
        return LinearCache(x, self.W.data, self.b is not None)

    def forward(self, x):
        y, self._cache = self._fwd(x)
        return y

    def backward(self, dy, need_dx=True):
        dx, dW, db = self._bwd(dy, self._cache, need_dx)
        self._accumulate(dy, dW, db)
        self._cache = None
        return dx

    def __repr__(self) -> str:
        return f"Linear({self.in_features}, {self.out_features}, bias={self.b is not None})"


class Conv2d(_WeightLayer):
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

    def _fwd(self, x):
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

    def __repr__(self) -> str:
        ci, co, k = self.shape_args
        return f"Conv2d({ci}, {co}, {k}, stride={self.stride}, padding={self.padding})"


class BatchNorm(Module):
    """Batch normalisation over time x batch x space per channel (time folded into batch).

    ``alpha`` set -> tdBN (Dspike Eqs. 4-5): the normalised input is scaled by alpha * v_th.

    Flow mode (ASF/SSF), training: **two-pass streaming**.  :class:`~pysnn_ref.methods.Method`
    runs one *statistics pass* over the time chunks per BN layer, bottom to top: each pass ends
    at the first BN without statistics, which merges the chunks' moments in float64 (Chan's
    pairwise update, :func:`~pysnn_ref.functional.batchnorm.merge_moments`); then the normalised
    pass.  **Collapsed BN backward**: the gradient from above is one ``G`` for every step, so the
    input gradient is ``dz[t] = a + c (z[t] - mean)``
    (:func:`~pysnn_ref.functional.batchnorm.batchnorm_flow_backward`).  The normalised pass keeps
    ``sum_t (z[t] - mean)`` and, with the flow weights of the spiking layer below the weight
    layer under BN, the weighted mean ``zc_flow`` of ``z[t] - mean``; that weight layer keeps
    ``A`` (:class:`_WeightLayer`).  Nothing of length T is stored.  Fallback, when BN's input is
    not a weight layer with a spiking layer (through pooling/flatten) or the input below it, or
    the gradient arrives per step: the per-step backward on its kept per-step input (memory ~T).
    Eval mode (running statistics) is affine per channel: collapsed with ``c = 0``.
    """

    batch_mean: Any = None             # flow mode: this batch's mean (C,), None = not gathered
    _below_weight: Module | None = None  # set by Sequential.plan_flow (via pair_below)
    _below_lif: LIF | None = None
    _streamed = False

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5,
                 alpha: float | None = None, v_th: float = 1.0, dtype: Any = np.float32) -> None:
        super().__init__()
        check_int("num_features", num_features)
        self.gamma = Parameter("gamma", np.ones(num_features, dtype))
        self.beta = Parameter("beta", np.zeros(num_features, dtype))
        self.running_mean = np.zeros(num_features, dtype)
        self.running_var = np.ones(num_features, dtype)
        self.momentum, self.eps = momentum, eps
        self.scale = 1.0 if alpha is None else float(alpha) * float(v_th)
        self.tdbn = alpha is not None

    def own_parameters(self):
        return [self.gamma, self.beta]

    def buffer_names(self):
        return ("running_mean", "running_var")

    def forward(self, x):
        y, self._cache = batchnorm_forward(
            x, self.gamma.data, self.beta.data, self.running_mean, self.running_var,
            training=self.training, momentum=self.momentum, eps=self.eps, scale=self.scale,
            time_major=True)
        return y

    def backward(self, dy, need_dx=True):
        dx, dgamma, dbeta = batchnorm_backward(dy, self._cache)
        self.gamma.grad += dgamma
        self.beta.grad += dbeta
        self._cache = None
        return dx

    # flows
    def pair_below(self, layer: Module | None, below: Any) -> None:
        """Plan: ``layer`` is directly below this BN, ``below`` is what lies under ``layer``
        (a spiking layer, :data:`FLOW_INPUT`, or None if unknown; see plan_flow)."""
        ok = isinstance(layer, _WeightLayer) and below is not None
        self._below_weight = layer if ok else None
        self._below_lif = below if ok and isinstance(below, LIF) else None

    def flow_out_per_step(self, per_step: bool) -> bool:
        self._streamed = not per_step and (not self.training or self._below_weight is not None)
        if self._below_weight is not None:
            self._below_weight._bn_above = self if self._streamed and self.training else None
        return not self._streamed

    def flow_begin(self, method, opts):
        self._stats_pass = bool(opts.get("stats_pass", False))
        self._steps: list[Any] = []
        self._sum_xc = self._xc_flow = None
        self._n_steps = 0

    def forget_statistics(self) -> None:
        """A new batch: the next statistics pass gathers this layer's moments again."""
        self._moments = None
        self.batch_mean = None

    def freeze_statistics(self) -> None:
        """End of this layer's statistics pass: fix the batch mean and 1/sqrt(var + eps) and
        update the running statistics (once per forward, as in :func:`batchnorm_forward`)."""
        mean, inv_std = batch_statistics(self._moments, self.eps, self.running_mean,
                                         self.running_var, self.momentum)
        dtype = self.gamma.data.dtype
        self.batch_mean, self._inv_std = mean.astype(dtype), inv_std.astype(dtype)
        self._moments = None

    def _flow_statistics(self) -> tuple[Any, Any]:
        if self.training:
            return self.batch_mean, self._inv_std
        xp = backend.array_module(self.running_var)
        return self.running_mean, 1.0 / xp.sqrt(self.running_var + self.eps)

    def forward_chunk(self, x):
        if self.training and self.batch_mean is None:  # statistics pass: it ends here
            self._moments = merge_moments(self._moments, chunk_moments(x, 2))
            return None
        mean, inv_std = self._flow_statistics()
        y = batchnorm_normalize(x, mean, inv_std, self.gamma.data, self.beta.data, self.scale, 2)
        if self._stats_pass:
            return y
        if not self._streamed:
            self._steps.append(x)
            return y
        xc = x - mean.astype(x.dtype).reshape(_channel_shape(x.ndim, 2))
        s = xc.sum(axis=0)
        self._sum_xc = s if self._sum_xc is None else self._sum_xc + s
        if self._below_lif is not None:  # its flow weights w^(T-1-t), w = its state's decay
            self._flow_w = self._below_lif._state.w
            self._xc_flow = _decayed_sum(self._xc_flow, xc, self._flow_w)
        self._n_steps += x.shape[0]
        return y

    def backward_flow(self, g, per_step, T, need_dx=True):
        mean, inv_std = self._flow_statistics()
        if not self._streamed:  # per-step fallback: the ordinary backward on the kept steps
            xp = backend.array_module(g)
            x = self._steps[0] if len(self._steps) == 1 else xp.concatenate(self._steps)
            self._steps = []
            b = _channel_shape(x.ndim, 2)
            self._cache = BatchNormCache(x, mean.astype(x.dtype).reshape(b),
                                         inv_std.astype(x.dtype).reshape(b), self.gamma.data,
                                         self.scale, 2, self.training)
            if not per_step:  # one gradient for every step -> per-step (x_hat[t] differs)
                g = xp.broadcast_to(g, (T, *g.shape))
            return self.backward(g, need_dx), True
        a, c, dgamma, dbeta = batchnorm_flow_backward(g, self._sum_xc, T, inv_std,
                                                      self.gamma.data, self.scale, self.training)
        self.gamma.grad += dgamma
        self.beta.grad += dbeta
        self._sum_xc = None
        if not self.training:
            return a, False
        xc_flow = self._xc_flow
        if xc_flow is not None:
            w = self._flow_w
            norm = self._n_steps if w == 1.0 else (1.0 - w ** self._n_steps) / (1.0 - w)
            xc_flow = xc_flow / xc_flow.dtype.type(norm)
        self._xc_flow = None
        return BatchNormFlowGrad(a, c, xc_flow), False

    def __repr__(self) -> str:
        kind = f"tdBN(scale={self.scale:g})" if self.tdbn else "BN"
        return f"BatchNorm({self.gamma.data.shape[0]}, {kind})"


class AvgPool2d(Module):
    """Average pooling; collapsible (linear, weight-free)."""

    def __init__(self, kernel_size: int, stride: int | None = None) -> None:
        super().__init__()
        self.k = check_int("kernel_size", kernel_size)
        self.stride = stride
        self._fused_out: Any = None  # output of a fused LIF + pooling pass (see _link_fusable)

    def forward(self, x):
        if self._fused_out is not None and x is self._fused_out:  # the LIF below pooled already
            self._fused_out, self._cache = None, "fused"
            return x
        y, self._cache = avgpool2d_forward(x, self.k, self.stride)
        return y

    def backward(self, dy, need_dx=True):
        if self._cache == "fused":  # the LIF below takes the pooled gradient itself
            return dy
        return avgpool2d_backward(dy, self._cache)

    def forward_chunk(self, x):
        self._sample_shape = tuple(x.shape[1:])
        return self.forward(x)

    def backward_flow(self, g, per_step, T, need_dx=True):
        # the pooling backward needs only the input's shape: a zero input of it, with all T
        # steps (per-step; the forward streamed chunks) or one step (collapsed)
        xp = backend.array_module(g)
        steps = g.shape[0] if per_step else 1
        _, cache = avgpool2d_forward(xp.zeros((steps, *self._sample_shape), g.dtype), self.k,
                                     self.stride)
        if per_step:
            return avgpool2d_backward(g, cache), True
        return avgpool2d_backward(g[None], cache)[0], False

    def __repr__(self) -> str:
        return f"AvgPool2d({self.k})"


class MaxPool2d(Module):
    """Max pooling.

    Flow mode: which input wins a window depends on t, so in general the backward runs per step
    and the per-step winners are kept.  In the usual order, conv -> LIF -> MaxPool (with
    non-overlapping windows), the spiking layer below collapses those per-step gradients again
    by its flow weights, and the composition is exact and cheap: ``dx = upsample(G) * C``, where
    ``C`` is the flow-weighted fraction of the steps in which each input won its window
    (w^(T-1-t)-weighted, w = lam for SSF, 1 for ASF) -- one (B, C, H, W) map accumulated during
    the forward, so nothing of length T is kept.  :meth:`Sequential.plan_flow` picks the mode.
    """

    def __init__(self, kernel_size: int, stride: int | None = None) -> None:
        super().__init__()
        self.k = check_int("kernel_size", kernel_size)
        self.stride = stride
        self._below_lif: LIF | None = None  # set by Sequential.plan_flow
        self._count_mode = False

    def forward(self, x):
        y, self._cache = maxpool2d_forward(x, self.k, self.stride)
        return y

    def backward(self, dy, need_dx=True):
        return maxpool2d_backward(dy, self._cache)

    def flow_out_per_step(self, per_step: bool) -> bool:
        non_overlapping = (self.stride or self.k) == self.k
        self._count_mode = self._below_lif is not None and non_overlapping and not per_step
        return not self._count_mode

    def flow_begin(self, method, opts):
        self._caches: list[Any] = []
        self._C = None
        self._steps = 0

    def forward_chunk(self, x):
        y, cache = maxpool2d_forward(x, self.k, self.stride)
        if not self._count_mode:
            self._caches.append((x.shape[0], cache))
            return y
        xp = backend.array_module(x)
        won = maxpool2d_backward(xp.ones(y.shape, x.dtype), cache)  # 1 where an input won
        self._C = _decayed_sum(self._C, won, self._below_lif._state.w)
        self._steps += x.shape[0]
        return y

    def flow_end(self):
        if self._count_mode:
            w = self._below_lif._w
            norm = self._steps if w == 1.0 else (1.0 - w ** self._steps) / (1.0 - w)
            self._C = self._C / self._C.dtype.type(norm)

    def backward_flow(self, g, per_step, T, need_dx=True):
        xp = backend.array_module(g)
        if self._count_mode:
            up = xp.repeat(xp.repeat(g, self.k, axis=-1), self.k, axis=-2)
            H, W = self._C.shape[-2:]
            if up.shape[-2:] != (H, W):  # trailing rows/columns no window covers get 0
                full = xp.zeros(self._C.shape, g.dtype)
                full[..., :up.shape[-2], :up.shape[-1]] = up
                up = full
            return up * self._C, False
        outs, t0 = [], 0
        for Tc, cache in self._caches:
            gc = g[t0:t0 + Tc] if per_step else xp.broadcast_to(g, (Tc, *g.shape))
            outs.append(maxpool2d_backward(xp.ascontiguousarray(gc), cache))
            t0 += Tc
        self._caches = []
        return (outs[0] if len(outs) == 1 else xp.concatenate(outs)), True

    def __repr__(self) -> str:
        return f"MaxPool2d({self.k})"


def _decayed_sum(acc: Any, x: Any, w: float) -> Any:
    """Continue ``acc = sum_t w^(T-1-t) x[t]`` over one more time chunk ``x`` (Tc, ...)."""
    xp = backend.array_module(x)
    Tc = x.shape[0]
    wt = xp.asarray(w ** np.arange(Tc - 1, -1, -1), dtype=x.dtype)
    s = xp.tensordot(wt, x, axes=(0, 0))
    return s if acc is None else acc * x.dtype.type(w ** Tc) + s


class Flatten(Module):
    """Flatten every axis after (T, B) -- or after B for a collapsed flow gradient."""

    def forward(self, x):
        self._shape = x.shape[2:]
        return x.reshape(*x.shape[:2], -1)

    def backward(self, dy, need_dx=True):
        return dy.reshape(*dy.shape[:2], *self._shape)

    def backward_flow(self, g, per_step, T, need_dx=True):
        lead = g.shape[:2] if per_step else g.shape[:1]
        return g.reshape(*lead, *self._shape), per_step

    def __repr__(self) -> str:
        return "Flatten()"


class LIF(Module):
    """LIF spiking neurons (IF for ``lam=1``): SSF Eqs. 6-7 (hard reset), 16-17 (soft reset).

    BPTT: exact backward through time.  Flow mode: keeps a :class:`FlowState` (membrane and
    running sums) and back-propagates through the flow gain (ASF scale factor or SSF mapping).
    """

    def __init__(self, lam: float = 0.5, v_th: float = 1.0, reset: str = "hard",
                 surrogate: str | Surrogate = "triangle", detach_reset: bool = False,
                 smooth: bool = False) -> None:
        super().__init__()
        self.p = make_neuron_params(lam=lam, v_th=v_th, reset=reset, surrogate=surrogate,
                                    smooth=smooth, detach_reset=detach_reset)
        # ASF scale factor state (ASF Eq. 12), one scalar per layer
        self.S = 1.0
        self.update_S = True
        self._asf_tot = [0.0, 0.0, 0.0]  # sum FO, sum FI, sum |FI| since the last refresh
        self._rate: Any = 0.0       # mean spikes per neuron per step, last forward (on device)

    @property
    def firing_rate(self) -> float:
        """Mean spikes per neuron per time step in the last forward pass (SSF: lam-weighted)."""
        return float(self._rate)

    def set_surrogate(self, surrogate: Surrogate) -> None:
        self.p = make_neuron_params(lam=self.p.lam, v_th=self.p.v_th, reset=self.p.reset,
                                    surrogate=surrogate, smooth=self.p.smooth,
                                    detach_reset=self.p.detach_reset)

    # BPTT
    def forward(self, x):
        pool, self._pool_next = getattr(self, "_pool_next", None), None
        if pool is not None and can_fuse_lif_avgpool(x, pool.k, pool.stride):
            # LIF + the AvgPool2d above in one kernel: the spikes are pooled in the kernel and
            # never stored; the pool layer passes this output (and later its gradient) through
            y, self._cache = lif_avgpool_forward_p(x, self.p, pool.k)
            self._rate = self._cache.spikes / x.size
            pool._fused_out = y
            return y
        o, self._cache = lif_forward_p(x, self.p)
        self._rate = o.mean()  # stays on the device until read: no sync inside a step
        return o

    def backward(self, dy, need_dx=True, time_sum=False):
        """dL/dI from dL/do (or dL/d(pooled spikes) when fused with the pooling above); with
        ``time_sum``, its sum over the steps (for a weight layer below with a static input)."""
        if isinstance(self._cache, LIFPoolCache):
            dI = lif_avgpool_backward(dy, self._cache, time_sum=time_sum)
        else:
            dI = lif_backward(dy, self._cache, time_sum=time_sum)
        self._cache = None
        return dI

    # flows
    def flow_begin(self, method, opts):
        self._method = method
        self._opts = opts
        self._state = None

    def forward_chunk(self, x):
        if self._state is None:
            self._dtype = x.dtype
            xp = backend.array_module(x)
            w = self.p.lam if self._method == "ssf" else 1.0
            self._state = F.FlowState.zeros(tuple(x.shape[1:]), x.dtype, xp, w)
        return F.lif_forward_flows(x, self._state, self.p)

    def flow_end(self):
        st = self._state
        self._rate = st.sO.mean() / st.norm()  # lam-weighted under SSF
        if self._method == "ssf":
            self._gain = F.ssf_gain(st, self.p, self._opts.get("r_granularity", "neuron"),
                                    self._opts.get("r_max", 2.0)).astype(self._dtype)
        else:
            FI, FO = st.sI, st.sO  # accumulated (w = 1) sums, ASF Eq. 7
            variant = self._opts.get("asf_variant", "paper")
            if self.training and self.update_S:
                if variant == "paper":  # on the GPU the sums and S stay on the device
                    self._asf_tot[0] += backend.as_scalar(FO.sum())
                    self._asf_tot[1] += backend.as_scalar(FI.sum())
                    self._asf_tot[2] += backend.as_scalar(abs(FI).sum())
                    sFO, sFI, sabs = self._asf_tot
                    self.S = F.asf_scale_paper(sFO, sFI, previous=self.S, sum_abs_FI=sabs)
                else:
                    self.S = F.asf_scale_code(FO, FI, previous=self.S)
            S = self.S.astype(self._dtype) if backend.is_gpu_array(self.S) else \
                self._dtype.type(self.S)
            self._gain = (FI > 0).astype(self._dtype) * S if variant == "code" else S
        self._w = st.w
        self._state = None  # nothing of the forward is kept but the gain

    @property
    def flow_gain(self) -> Any:
        """dFO/dFI of the last flow-mode forward pass: the ASF scale factor (times the mask of
        the "code" variant) or the SSF mapping's slope, per neuron and sample."""
        return self._gain

    def asf_refresh(self) -> None:
        """Start a new gathering period for the paper's scale factor (ASF Alg. 1)."""
        self._asf_tot = [0.0, 0.0, 0.0]

    def backward_flow(self, g, per_step, T, need_dx=True):
        if per_step:
            g = _weighted_time_mean(g, self._w)
        return g * self._gain, False

    def flow_out_per_step(self, per_step: bool) -> bool:
        return False

    def __repr__(self) -> str:
        p = self.p
        kind = "IF" if p.lam == 1.0 else f"LIF(lam={p.lam:g}"
        kind = kind + ("(" if p.lam == 1.0 else ", ")
        return f"{kind}v_th={p.v_th:g}, reset={p.reset}, surrogate={p.surrogate})"


def _sums_time(layer: Module, below: Module, below_needs_dx: bool) -> bool:
    """BPTT backward: may ``layer`` (a LIF) hand ``below`` only the time sum of its input
    gradient?  Yes when ``below`` is a weight layer whose forward input was time-broadcast and
    whose own input gradient is not wanted."""
    return (isinstance(layer, LIF) and isinstance(below, _WeightLayer) and not below_needs_dx
            and below.has_static_input() and "backward" not in vars(layer))


def _link_fusable(layers: list[Module]) -> None:
    """BPTT forward: tell every LIF directly followed by an AvgPool2d that it may run the pooling
    itself (one fused kernel, :func:`~pysnn_ref.functional.neuron.lif_avgpool_forward_p`, when
    :func:`~pysnn_ref.functional.neuron.can_fuse_lif_avgpool` allows).  Layers whose ``forward``
    has been wrapped on the instance (spike recorders) are left alone.  The link is used once."""
    for a, b in zip(layers, layers[1:], strict=False):
        if isinstance(a, LIF) and isinstance(b, AvgPool2d) and "forward" not in vars(a) \
                and "forward" not in vars(b):
            a._pool_next = b


def IF(v_th: float = 1.0, reset: str = "hard", surrogate: str | Surrogate = "triangle",
       detach_reset: bool = False, smooth: bool = False) -> LIF:
    """Integrate-and-fire neurons: LIF with ``lam = 1`` (ASF Eq. 3)."""
    return LIF(1.0, v_th, reset, surrogate, detach_reset, smooth)


class Sequential(Module):
    """Layers applied in order; drives BPTT and flow-mode forward/backward."""

    def __init__(self, *layers: Module) -> None:
        super().__init__()
        if not layers:
            raise ValueError("layers must contain at least one layer")
        self.layers = list(layers)

    def children(self):
        return self.layers

    def forward(self, x):
        _link_fusable(self.layers)
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def _need_dx(self, need_dx: bool) -> list[bool]:
        """Per layer: must it compute its input gradient?  Only if a layer below it has
        parameters (or the caller wants the input gradient) -- an input layer skips its dx GEMM
        even behind a Flatten."""
        need, out = need_dx, []
        for layer in self.layers:
            out.append(need)
            need = need or bool(layer.parameters())
        return out

    def backward(self, dy, need_dx=True):
        needs = self._need_dx(need_dx)
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            if i > 0 and _sums_time(layer, self.layers[i - 1], needs[i - 1]):
                # the weight layer below reads only sum_t of this gradient (static input):
                # the spiking layer hands over that sum and never forms the per-step tensor
                self.layers[i - 1].backward_time_sum(layer.backward(dy, time_sum=True))
                return None  # nothing below needs a gradient (needs[i - 1] is False)
            dy = layer.backward(dy, needs[i])
            if dy is None:
                return None
        return dy

    # flows
    def plan_flow(self, per_step: bool = False, below: Any = FLOW_INPUT) -> bool:
        """Decide, from the top down, which layers must keep per-step inputs in flow mode.

        ``per_step`` says whether the gradient arriving at the top is per-step; ``below`` is the
        spiking layer that collapses the gradient leaving the bottom (:data:`FLOW_INPUT` at the
        network input, None if unknown).  Returns whether the gradient leaving the bottom is."""
        belows = self._flow_belows(below)
        for i, layer in enumerate(self.layers):
            if isinstance(layer, MaxPool2d):
                under = self.layers[i - 1] if i > 0 else None
                layer._below_lif = under if isinstance(under, LIF) else None
            if isinstance(layer, BatchNorm):
                layer.pair_below(self.layers[i - 1] if i > 0 else None,
                                 belows[i - 1] if i > 0 else None)
        for layer, under in zip(reversed(self.layers), reversed(belows), strict=True):
            if isinstance(layer, (Sequential, Residual)):
                per_step = layer.plan_flow(per_step, under)
                continue
            layer.keep_steps = per_step
            per_step = layer.flow_out_per_step(per_step)
        return per_step

    def _flow_belows(self, below: Any) -> list[Any]:
        """Per layer: the spiking layer that collapses the gradient leaving its input (reached
        through pooling / flatten only), :data:`FLOW_INPUT`, or None (unknown)."""
        out = []
        for layer in self.layers:
            out.append(below)
            if isinstance(layer, LIF):
                below = layer
            elif not isinstance(layer, (AvgPool2d, Flatten)):
                below = None
        return out

    def flow_begin(self, method, opts):
        for layer in self.layers:
            layer.flow_begin(method, opts)

    def forward_chunk(self, x):
        for layer in self.layers:
            x = layer.forward_chunk(x)
            if x is None:  # a BatchNorm statistics pass ended here
                return None
        return x

    def flow_end(self):
        for layer in self.layers:
            layer.flow_end()

    def backward_flow(self, g, per_step, T, need_dx=True):
        for layer, need in zip(reversed(self.layers), reversed(self._need_dx(need_dx)),
                               strict=True):
            g, per_step = layer.backward_flow(g, per_step, T, need)
            if g is None:
                return None, per_step
        return g, per_step

    def __repr__(self) -> str:
        inner = "\n".join("  " + repr(m).replace("\n", "\n  ") for m in self.layers)
        return f"Sequential(\n{inner}\n)"


class Residual(Module):
    """Spiking residual block body: ``main(x) + shortcut(x)`` (identity shortcut if None).

    Put a spiking layer after it (``Sequential(Residual(...), LIF())``) for the usual
    "add, then fire" block of spiking ResNets.
    """

    def __init__(self, main: Sequential, shortcut: Sequential | None = None) -> None:
        super().__init__()
        self.main = main
        self.shortcut = shortcut

    def children(self):
        return [self.main] + ([self.shortcut] if self.shortcut is not None else [])

    def forward(self, x):
        a = self.main.forward(x)
        b = x if self.shortcut is None else self.shortcut.forward(x)
        y, self._cache = add_forward(a, b)
        return y

    def backward(self, dy, need_dx=True):
        da, db = add_backward(dy, self._cache)
        dx = self.main.backward(da)
        return dx + (db if self.shortcut is None else self.shortcut.backward(db))

    def plan_flow(self, per_step: bool = False, below: Any = FLOW_INPUT) -> bool:
        pm = self.main.plan_flow(per_step, below)
        ps = per_step if self.shortcut is None else self.shortcut.plan_flow(per_step, below)
        return pm or ps

    def flow_begin(self, method, opts):
        for c in self.children():
            c.flow_begin(method, opts)

    def forward_chunk(self, x):
        a = self.main.forward_chunk(x)
        if a is None:  # a BatchNorm statistics pass ended in main
            return None
        b = x if self.shortcut is None else self.shortcut.forward_chunk(x)
        return None if b is None else a + b

    def flow_end(self):
        for c in self.children():
            c.flow_end()

    def backward_flow(self, g, per_step, T, need_dx=True):
        ga, pa = self.main.backward_flow(g, per_step, T)
        if self.shortcut is None:
            gb, pb = g, per_step
        else:
            gb, pb = self.shortcut.backward_flow(g, per_step, T)
        if pa == pb:
            return ga + gb, pa
        xp = backend.array_module(ga)
        full, coll = (ga, gb) if pa else (gb, ga)
        return full + xp.broadcast_to(coll, full.shape), True

    def __repr__(self) -> str:
        return f"Residual(main={self.main!r}, shortcut={self.shortcut!r})"


def spiking_layers(net: Module) -> list[LIF]:
    """All LIF/IF layers of a network, bottom to top."""
    return [m for m in net.modules() if isinstance(m, LIF)]


def check_method(method: str) -> str:
    """``method`` must be "bptt", "asf" or "ssf"."""
    return check_choice("method", method, ("bptt",) + FLOW_METHODS)


class WindowRecompose(Module):
    """Window partition and recomposed computing (window-partition supplement, Algorithm 1).

    The (T, B, C, L, L) map is cut into four overlapping M x M windows (M = 3L/4; origins 0 and
    L - M), ``body`` runs on them with shared weights (stacked along the batch axis), and
    :func:`~pysnn_ref.functional.recompose.recompose_forward` condenses the four results back to
    L x L, overlaps averaged.  ``th_r`` (paper: 0.1) applies the Region Threshold
    ``[X > th_r]``; its gradient is taken straight through (identity), ``th_r=None`` skips it.
    Backward: recompose adjoint -> body -> the partition's adjoint (window gradients summed
    into place).  BPTT only: the flow methods raise ValueError.
    """

    def __init__(self, body: Module, th_r: float | None = 0.1) -> None:
        super().__init__()
        if th_r is not None and not (0.0 <= th_r < 1.0):
            raise ValueError(f"th_r must be None or in [0, 1), got {th_r!r}")
        self.body = body
        self.th_r = th_r

    def children(self):
        return [self.body]

    def _origins(self, L: int) -> tuple[int, tuple[tuple[int, int], ...]]:
        if L % 4 or L < 4:
            raise ValueError(f"WindowRecompose needs a square map with L divisible by 4, got L={L}")
        M = 3 * L // 4
        o = L - M
        return M, ((0, 0), (0, o), (o, 0), (o, o))

    def forward(self, x):
        if x.ndim < 3 or x.shape[-1] != x.shape[-2]:
            raise ValueError(f"x must end in a square (L, L) map, got shape {x.shape}")
        xp = backend.array_module(x)
        M, org = self._origins(x.shape[-1])
        self._x_shape, self._M = x.shape, M
        wins = [x[:, :, ..., r:r + M, c:c + M] for r, c in org]
        y = self.body.forward(xp.concatenate(wins, axis=1))
        X = recompose_forward(*xp.split(y, 4, axis=1))
        return X if self.th_r is None else region_threshold(X, self.th_r)

    def backward(self, dy, need_dx=True):
        xp = backend.array_module(dy)
        M, org = self._origins(self._x_shape[-1])
        db = self.body.backward(xp.concatenate(recompose_backward(dy, M), axis=1))
        dx = xp.zeros(self._x_shape, dtype=dy.dtype)
        for (r, c), g in zip(org, xp.split(db, 4, axis=1), strict=True):
            dx[:, :, ..., r:r + M, c:c + M] += g
        return dx

    def flow_begin(self, method, opts):
        raise ValueError(f"WindowRecompose (model 'window') supports method 'bptt' only, "
                         f"got {method!r}")

    def __repr__(self) -> str:
        return f"WindowRecompose(body={self.body!r}, th_r={self.th_r})"


class SpikingLSTM(Module):
    """Spiking LSTM layer (the LSNN of the window-partition supplement, Sec. 3.1 Eq. 1):
    (T, B, in_features) -> spikes (T, B, hidden).  Equations (L1)-(L4) and the BPTT backward
    (B1)-(B4) are in :mod:`pysnn_ref.functional.lstm`; the gates are analog, the hidden output
    ``s[t] = H(o tanh(c) - v_th)`` is a spike and is what the recurrence feeds back.

    Parameters ``W_x`` (4H, in), ``W_h`` (4H, H), ``b`` (4H,), gate order (i, f, g, o).
    Initialisation: ``W_h`` and ``b`` as PyTorch's ``nn.LSTM`` (uniform in +-1/sqrt(H)), the
    forget-gate bias at 1 (Gers et al. 2000: the cell starts by remembering), ``W_x`` Kaiming
    normal (std sqrt(2/in), as :class:`Linear`) -- with PyTorch's small uniform ``W_x`` the
    membrane o tanh(c) starts far below threshold and no neuron fires (measured on
    digits-rows: rate 0.000 vs 0.06 at init).  ``v_th`` in (0, 1).

    BPTT only (``bptt_only``): the flow methods' equivalence (ASF Eqs. 9-11, SSF Eq. 15) needs
    a neuron whose output rate is a function of its time-summed input; the gated cell's output
    depends on the order of its inputs in time (c[t] = f c[t-1] + i g is not a function of
    sum_t x[t]), so it has no equivalent rate network, and :meth:`Method.check_network`
    refuses "asf"/"ssf" for it.
    """

    bptt_only = True

    def __init__(self, in_features: int, hidden: int, v_th: float = 0.5,
                 surrogate: str | Surrogate = "triangle", smooth: bool = False,
                 rng: np.random.Generator | None = None, dtype: Any = np.float32) -> None:
        super().__init__()
        check_int("in_features", in_features)
        check_int("hidden", hidden)
        self.p = make_lstm_params(v_th, surrogate, smooth)
        rng = rng or np.random.default_rng(0)
        k = 1.0 / math.sqrt(hidden)
        std = math.sqrt(2.0 / in_features)  # Kaiming normal, fan-in, as Linear
        self.W_x = Parameter("W_x", rng.normal(0, std, (4 * hidden, in_features)).astype(dtype))
        self.W_h = Parameter("W_h", rng.uniform(-k, k, (4 * hidden, hidden)).astype(dtype))
        b = rng.uniform(-k, k, 4 * hidden)
        b[hidden:2 * hidden] = 1.0
        self.b = Parameter("b", b.astype(dtype))
        self.in_features, self.hidden = in_features, hidden
        self._rate: Any = 0.0

    def own_parameters(self) -> list[Parameter]:
        return [self.W_x, self.W_h, self.b]

    @property
    def firing_rate(self) -> float:
        """Mean spikes per neuron per time step in the last forward pass."""
        return float(self._rate)

    def forward(self, x):
        s, self._cache = lstm_forward(x, self.W_x.data, self.W_h.data, self.b.data, self.p)
        self._rate = s.mean()
        return s

    def backward(self, dy, need_dx=True):
        dx, dW_x, dW_h, db = lstm_backward(dy, self._cache, need_dx)
        self.W_x.grad += dW_x
        self.W_h.grad += dW_h
        self.b.grad += db
        self._cache = None
        return dx

    def flow_begin(self, method, opts):
        raise ValueError(f"SpikingLSTM (model 'lstm') supports method 'bptt' only, got "
                         f"{method!r}")

    def __repr__(self) -> str:
        return (f"SpikingLSTM({self.in_features}, {self.hidden}, v_th={self.p.v_th:g}, "
                f"surrogate={self.p.surrogate})")
