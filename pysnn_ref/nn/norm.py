"""Batch normalisation and tdBN (:mod:`pysnn_ref.functional.batchnorm`), with its streamed
two-pass flow mode and the collapsed BN backward.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import backend
from .._check import check_int
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
from ..parameter import Parameter
from .module import Module, channel_shape
from .neurons import LIF
from .weight import WeightLayer

__all__ = ["BatchNorm"]


class BatchNorm(Module):
    """Batch normalisation over time x batch x space per channel (time folded into batch).

    ``alpha`` set -> tdBN (Dspike Eqs. 4-5): the normalised input is scaled by alpha * v_th.

    Flow mode (ASF/SSF), training: **two-pass streaming**.  :class:`~pysnn_ref.methods.Method`
    runs one *statistics pass* over the time chunks per BN layer, bottom to top: each pass ends
    at the first BN without statistics, which merges the chunks' moments in float64 (Chan's
    pairwise update, :func:`~pysnn_ref.functional.batchnorm.merge_moments`); then the normalised
    pass.  **One pass** when a chunk holds all T steps (``stats_in_chunk`` in the flow options,
    set by the Method): the statistics come from the chunk itself (the same float64 moments,
    the running statistics updated once), then it is normalised in the same call.
    **Collapsed BN backward**: the gradient from above is one ``G`` for every step, so the
    input gradient is ``dz[t] = a + c (z[t] - mean)``
    (:func:`~pysnn_ref.functional.batchnorm.batchnorm_flow_backward`).  The normalised pass keeps
    ``sum_t (z[t] - mean)`` and, with the flow weights of the spiking layer below the weight
    layer under BN, the weighted mean ``zc_flow`` of ``z[t] - mean``; it hands ``z[t] - mean``
    to that weight layer, which keeps ``A`` (:meth:`WeightLayer.keep_bn_product`: the mean is
    known only here, in one-pass mode after the weight layer's forward).  Nothing of length T
    is stored.  Fallback, when BN's input is
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

    def own_parameters(self) -> list[Parameter]:
        """``[gamma, beta]``."""
        return [self.gamma, self.beta]

    def buffer_names(self) -> tuple[str, ...]:
        """``running_mean`` and ``running_var``."""
        return ("running_mean", "running_var")

    def forward(self, x: Any) -> Any:
        y, self._cache = batchnorm_forward(
            x, self.gamma.data, self.beta.data, self.running_mean, self.running_var,
            training=self.training, momentum=self.momentum, eps=self.eps, scale=self.scale,
            time_major=True)
        return y

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        dx, dgamma, dbeta = batchnorm_backward(dy, self._cache)
        self.gamma.grad += dgamma
        self.beta.grad += dbeta
        self._cache = None
        return dx

    # flows
    def pair_below(self, layer: Module | None, below: Any) -> None:
        """Plan: ``layer`` is directly below this BN, ``below`` is what lies under ``layer``
        (a spiking layer, :data:`FLOW_INPUT`, or None if unknown; see plan_flow)."""
        ok = isinstance(layer, WeightLayer) and below is not None
        self._below_weight = layer if ok else None
        self._below_lif = below if ok and isinstance(below, LIF) else None

    def flow_out_per_step(self, per_step: bool) -> bool:
        self._streamed = not per_step and (not self.training or self._below_weight is not None)
        if self._below_weight is not None:
            self._below_weight.stream_under(self if self._streamed and self.training else None)
        return not self._streamed

    def flow_begin(self, method: str, opts: dict) -> None:
        self._stats_pass = bool(opts.get("stats_pass", False))
        # one-pass forward: the chunk holds all ``time_steps`` steps, the statistics come from it
        self._stats_in_chunk = bool(opts.get("stats_in_chunk", False))
        self._time_steps = int(opts.get("time_steps", 0))
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

    def forward_chunk(self, x: Any) -> Any:
        if self.training and self.batch_mean is None:
            if not self._stats_in_chunk:  # statistics pass: it ends here
                self._moments = merge_moments(self._moments, chunk_moments(x, 2))
                return None
            if x.shape[0] != self._time_steps:
                raise ValueError(f"stats_in_chunk: the chunk must hold all T = "
                                 f"{self._time_steps} steps, got {x.shape[0]}")
            self._moments = chunk_moments(x, 2)  # one pass: all T steps are here
            self.freeze_statistics()
        mean, inv_std = self._flow_statistics()
        y = batchnorm_normalize(x, mean, inv_std, self.gamma.data, self.beta.data, self.scale, 2)
        if self._stats_pass:
            return y
        if not self._streamed:
            self._steps.append(x)
            return y
        xc = x - mean.astype(x.dtype).reshape(channel_shape(x.ndim, 2))
        if self.training:  # the weight layer below: A += sum_t wgrad(xc[t], its input[t])
            self._below_weight.keep_bn_product(xc)
        s = xc.sum(axis=0)
        self._sum_xc = s if self._sum_xc is None else self._sum_xc + s
        if self._below_lif is not None:  # its flow weights w^(T-1-t), w = its state's decay
            self._flow_w = self._below_lif.flow_decay
            self._xc_flow = F.decayed_sum(self._xc_flow, xc, self._flow_w)
        self._n_steps += x.shape[0]
        return y

    def backward_flow(self, g: Any, per_step: bool, T: int, need_dx: bool = True
                      ) -> tuple[Any, bool]:
        mean, inv_std = self._flow_statistics()
        if not self._streamed:  # per-step fallback: the ordinary backward on the kept steps
            xp = backend.array_module(g)
            x = self._steps[0] if len(self._steps) == 1 else xp.concatenate(self._steps)
            self._steps = []
            b = channel_shape(x.ndim, 2)
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
            norm = F.flow_norm(self._flow_w, self._n_steps)
            xc_flow = xc_flow / xc_flow.dtype.type(norm)
        self._xc_flow = None
        return BatchNormFlowGrad(a, c, xc_flow), False

    def __repr__(self) -> str:
        kind = f"tdBN(scale={self.scale:g})" if self.tdbn else "BN"
        return f"BatchNorm({self.gamma.data.shape[0]}, {kind})"
