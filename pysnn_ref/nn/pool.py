"""Pooling and flattening: :class:`AvgPool2d`, :class:`MaxPool2d` (with its flow-weighted
collapsed backward) and :class:`Flatten` (:mod:`pysnn_ref.functional.pool`,
:mod:`pysnn_ref.functional.shape`).
"""

from __future__ import annotations

import math
from typing import Any

from .. import backend
from .._check import check_int
from ..functional import flows as F
from ..functional.conv import conv_out_size
from ..functional.pool import (
    avgpool2d_backward,
    avgpool2d_forward,
    maxpool2d_backward,
    maxpool2d_forward,
)
from .module import Module
from .neurons import LIF

__all__ = ["AvgPool2d", "MaxPool2d", "Flatten"]


class AvgPool2d(Module):
    """Average pooling; collapsible (linear, weight-free)."""

    def __init__(self, kernel_size: int, stride: int | None = None) -> None:
        super().__init__()
        self.k = check_int("kernel_size", kernel_size)
        self.stride = stride

    def forward(self, x: Any) -> Any:
        y, self._cache = avgpool2d_forward(x, self.k, self.stride)
        return y

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        return avgpool2d_backward(dy, self._cache)

    def forward_chunk(self, x: Any) -> Any:
        self._sample_shape = tuple(x.shape[1:])
        return self.forward(x)

    def backward_flow(self, g: Any, per_step: bool, T: int, need_dx: bool = True
                      ) -> tuple[Any, bool]:
        # the pooling backward needs only the input's shape: a zero input of it, with all T
        # steps (per-step; the forward streamed chunks) or one step (collapsed)
        xp = backend.array_module(g)
        steps = g.shape[0] if per_step else 1
        _, cache = avgpool2d_forward(xp.zeros((steps, *self._sample_shape), g.dtype), self.k,
                                     self.stride)
        if per_step:
            return avgpool2d_backward(g, cache), True
        return avgpool2d_backward(g[None], cache)[0], False

    def step_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """(C, OH, OW) of a (C, H, W) input (window k, stride ``stride or k``)."""
        s = self.stride or self.k
        return (shape[0], *(conv_out_size(n, self.k, s, 0) for n in shape[1:]))

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

    def forward(self, x: Any) -> Any:
        y, self._cache = maxpool2d_forward(x, self.k, self.stride)
        return y

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        return maxpool2d_backward(dy, self._cache)

    def pair_below(self, lif: LIF | None) -> None:
        """Plan (:meth:`Sequential.plan_flow`): the spiking layer directly below, whose flow
        weights collapse this layer's per-step winners, or None."""
        self._below_lif = lif

    def flow_out_per_step(self, per_step: bool) -> bool:
        non_overlapping = (self.stride or self.k) == self.k
        self._count_mode = self._below_lif is not None and non_overlapping and not per_step
        return not self._count_mode

    def flow_begin(self, method: str, opts: dict) -> None:
        self._caches: list[Any] = []
        self._C = None
        self._steps = 0

    def forward_chunk(self, x: Any) -> Any:
        y, cache = maxpool2d_forward(x, self.k, self.stride)
        if not self._count_mode:
            self._caches.append((x.shape[0], cache))
            return y
        xp = backend.array_module(x)
        won = maxpool2d_backward(xp.ones(y.shape, x.dtype), cache)  # 1 where an input won
        self._C = F.decayed_sum(self._C, won, self._below_lif.flow_decay)
        self._steps += x.shape[0]
        return y

    def flow_end(self) -> None:
        if self._count_mode:
            norm = F.flow_norm(self._below_lif.flow_decay, self._steps)
            self._C = self._C / self._C.dtype.type(norm)

    def backward_flow(self, g: Any, per_step: bool, T: int, need_dx: bool = True
                      ) -> tuple[Any, bool]:
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

    def step_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """(C, OH, OW) of a (C, H, W) input (window k, stride ``stride or k``)."""
        s = self.stride or self.k
        return (shape[0], *(conv_out_size(n, self.k, s, 0) for n in shape[1:]))

    def __repr__(self) -> str:
        return f"MaxPool2d({self.k})"


class Flatten(Module):
    """Flatten every axis after (T, B) -- or after B for a collapsed flow gradient."""

    def forward(self, x: Any) -> Any:
        if getattr(x, "ndim", 0) < 3:
            raise ValueError(f"x must be a time-major array (T, B, ...) with at least 3 axes, "
                             f"got {type(x).__name__} of shape {getattr(x, 'shape', None)}")
        self._shape = x.shape[2:]
        return x.reshape(*x.shape[:2], -1)

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        return dy.reshape(*dy.shape[:2], *self._shape)

    def backward_flow(self, g: Any, per_step: bool, T: int, need_dx: bool = True
                      ) -> tuple[Any, bool]:
        lead = g.shape[:2] if per_step else g.shape[:1]
        return g.reshape(*lead, *self._shape), per_step

    def step_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Every axis in one."""
        return (int(math.prod(shape)),)

    def __repr__(self) -> str:
        return "Flatten()"
