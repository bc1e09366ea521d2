"""Containers: :class:`Sequential` (drives BPTT and the flow-mode plan) and :class:`Residual`.
"""

from __future__ import annotations

import math
from typing import Any

from .. import backend
from ..functional.shape import add_backward, add_forward
from .module import FLOW_INPUT, Module
from .neurons import LIF
from .norm import BatchNorm
from .pool import AvgPool2d, Flatten, MaxPool2d
from .weight import WeightLayer

__all__ = ["Sequential", "Residual"]


def _sums_time(layer: Module, below: Module, below_needs_dx: bool) -> bool:
    """BPTT backward: may ``layer`` (a LIF) hand ``below`` only the time sum of its input
    gradient?  Yes when ``below`` is a weight layer whose forward input was time-broadcast and
    whose own input gradient is not wanted."""
    return (isinstance(layer, LIF) and isinstance(below, WeightLayer) and not below_needs_dx
            and below.has_static_input())


class Sequential(Module):
    """Layers applied in order; drives BPTT and flow-mode forward/backward.

    **Fusion plan** (BPTT): a :class:`LIF` directly followed by an :class:`AvgPool2d` runs the
    pooling itself, in one kernel (:meth:`LIF.forward_pooled`), when neither has forward hooks
    and ``fuse`` is on; :meth:`fusion_plan` lists those pairs.  The pool's backward is then
    skipped: the LIF takes the pooled gradient itself.
    """

    def __init__(self, *layers: Module, fuse: bool = True) -> None:
        super().__init__()
        if not layers:
            raise ValueError("layers must contain at least one layer")
        for i, la in enumerate(layers):
            if not isinstance(la, Module):
                raise TypeError(f"layers[{i}] must be a Module (a layer), got "
                                f"{type(la).__name__} {la!r}")
        self.layers = list(layers)
        self.fuse = fuse
        self._pooled_by_lif: set[int] = set()  # last forward: pools run inside the LIF below

    def children(self) -> list[Module]:
        """The layers, in order."""
        return self.layers

    def step_extent(self, shape: tuple[int, ...]) -> tuple[float, tuple[int, ...] | None]:
        """The layers' extents in order, each on the previous one's output."""
        big = float(math.prod(shape))
        for layer in self.layers:
            b, shape = layer.step_extent(shape)
            big = max(big, b)
            if shape is None:
                return math.inf, None
        return big, shape

    def fusion_plan(self) -> list[int]:
        """Indices ``i`` where ``layers[i]`` (a LIF) may run ``layers[i + 1]`` (an AvgPool2d)
        fused: no forward hook on either, and ``fuse`` on."""
        if not self.fuse:
            return []
        L = self.layers
        return [i for i in range(len(L) - 1) if isinstance(L[i], LIF)
                and isinstance(L[i + 1], AvgPool2d) and not L[i].forward_hooks
                and not L[i + 1].forward_hooks]

    def forward(self, x: Any) -> Any:
        plan, self._pooled_by_lif = set(self.fusion_plan()), set()
        i = 0
        while i < len(self.layers):
            layer = self.layers[i]
            if i in plan:
                pool = self.layers[i + 1]
                y = layer.forward_pooled(x, pool.k, pool.stride)
                if y is not None:  # the kernel applied: skip the pool (forward and backward)
                    self._pooled_by_lif.add(i + 1)
                    x, i = y, i + 2
                    continue
            x = layer(x)
            i += 1
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

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        needs = self._need_dx(need_dx)
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            if i in self._pooled_by_lif:  # the LIF below takes the pooled gradient itself
                continue
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
                layer.pair_below(under if isinstance(under, LIF) else None)
            if isinstance(layer, BatchNorm):
                layer.pair_below(self.layers[i - 1] if i > 0 else None,
                                 belows[i - 1] if i > 0 else None)
            if isinstance(layer, WeightLayer):  # a per-step gradient leaves it collapsed
                layer.collapse_into(belows[i] if isinstance(belows[i], LIF) else None)
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

    def flow_begin(self, method: str, opts: dict) -> None:
        for layer in self.layers:
            layer.flow_begin(method, opts)

    def forward_chunk(self, x: Any) -> Any:
        for layer in self.layers:
            x = layer.forward_chunk(x)
            if x is None:  # a BatchNorm statistics pass ended here
                return None
        return x

    def flow_end(self) -> None:
        for layer in self.layers:
            layer.flow_end()

    def backward_flow(self, g: Any, per_step: bool, T: int, need_dx: bool = True
                      ) -> tuple[Any, bool]:
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

    def children(self) -> list[Module]:
        """The main branch and, if any, the shortcut."""
        return [self.main] + ([self.shortcut] if self.shortcut is not None else [])

    def step_extent(self, shape: tuple[int, ...]) -> tuple[float, tuple[int, ...] | None]:
        """Both branches from the block input; the output has the main branch's shape."""
        b, out = self.main.step_extent(shape)
        bs = 0.0 if self.shortcut is None else self.shortcut.step_extent(shape)[0]
        return max(float(math.prod(shape)), b, bs), out

    def forward(self, x: Any) -> Any:
        a = self.main(x)
        b = x if self.shortcut is None else self.shortcut(x)
        y, self._cache = add_forward(a, b)
        return y

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        da, db = add_backward(dy, self._cache)
        dx = self.main.backward(da)
        return dx + (db if self.shortcut is None else self.shortcut.backward(db))

    def plan_flow(self, per_step: bool = False, below: Any = FLOW_INPUT) -> bool:
        """Plan the flow passes of both branches (see :meth:`Module.plan_flow`)."""
        pm = self.main.plan_flow(per_step, below)
        ps = per_step if self.shortcut is None else self.shortcut.plan_flow(per_step, below)
        return pm or ps

    def flow_begin(self, method: str, opts: dict) -> None:
        for c in self.children():
            c.flow_begin(method, opts)

    def forward_chunk(self, x: Any) -> Any:
        a = self.main.forward_chunk(x)
        if a is None:  # a BatchNorm statistics pass ended in main
            return None
        b = x if self.shortcut is None else self.shortcut.forward_chunk(x)
        return None if b is None else a + b

    def flow_end(self) -> None:
        for c in self.children():
            c.flow_end()

    def backward_flow(self, g: Any, per_step: bool, T: int, need_dx: bool = True
                      ) -> tuple[Any, bool]:
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
