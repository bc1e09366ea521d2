"""The online methods OTTT and SLTT / SLTT-K as a :class:`~pysnn_ref.methods.Method`: every
time step forwarded and back-propagated on its own (:mod:`pysnn_ref.functional.online`), the
method owning its per-step training loop (:meth:`OnlineMethod.train_step`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from .. import backend
from .._check import check_choice, check_int
from ..functional.conv import conv2d_backward, conv2d_forward
from ..functional.linear import linear_backward, linear_forward
from ..functional.online import OnlineState, online_backward, online_forward, sample_steps
from ..functional.pool import avgpool2d_backward, avgpool2d_forward
from ..nn import LIF, AvgPool2d, Conv2d, Flatten, Linear, Module, Sequential
from .base import ONLINE, OTTT_UPDATES, SUMMARY, Method, StepTimes

__all__ = ["OnlineMethod"]

def _weight_forward(layer: Module, x: Any) -> tuple[Any, Any]:
    """``(z, cache)`` of a Linear or Conv2d layer on ``x``, through its functional pair."""
    b = None if layer.b is None else layer.b.data
    if isinstance(layer, Conv2d):
        return conv2d_forward(x, layer.W.data, b, stride=layer.stride, padding=layer.padding)
    return linear_forward(x, layer.W.data, b)


def _weight_backward(layer: Module, g: Any, cache: Any, need_dx: bool) -> Any:
    """Accumulate the layer's dW, db from ``g`` and ``cache``; returns dx (None if not asked)."""
    bwd = conv2d_backward if isinstance(layer, Conv2d) else linear_backward
    dx, dW, db = bwd(g, cache, need_dx=need_dx)
    layer.W.grad += dW
    if layer.b is not None:
        layer.b.grad += db
    return dx


class OnlineMethod(Method):
    """OTTT and SLTT: every time step is forwarded and back-propagated on its own, right after
    its loss, with each neuron's past (membrane v[t-1], reset included) a constant -- BPTT's
    recurrence with every term through v[t-1] dropped (:mod:`pysnn_ref.functional.online`).

    * ``"ottt"`` -- "Online Training Through Time for Spiking Neural Networks" (Xiao et al.,
      NeurIPS 2022, arXiv 2210.04195; authors' code GitHub ``pkuxmq/OTTT-SNN``): each weight
      layer fed by spiking neurons takes its weight gradient through their presynaptic trace
      ``a_hat[t] = lam a_hat[t-1] + o[t]`` (carried through average pooling and flattening,
      which are linear); the first layer (input) and the readout as in the code.
      ``ottt_update``: ``"A"`` sums the per-step gradients and steps the optimizer once per batch
      (OTTT_A), ``"O"`` steps it after every time step (OTTT_O).
    * ``"sltt"`` -- "Towards Memory- and Time-Efficient Backpropagation for Training Spiking
      Neural Networks" (Meng et al., ICCV 2023, arXiv 2302.14311; GitHub ``qymeng94/SLTT``): the
      ordinary weight gradient through o[t].  ``sltt_k``: SLTT-K, only K steps drawn without
      replacement per batch (seeded by ``seed`` and the epoch) get a loss gradient and a
      backward; the others run forward only.

    The loss of a step is ``loss(y[t]) / T`` (the loss of the one-step output; with the TET loss
    the sum over the steps is exactly TET's loss of the whole output).  **Forward keeps**, in
    :meth:`train_step`, each neuron's v (and a_hat) between steps and one step's caches:
    memory independent of T.  :meth:`forward` + :meth:`backward` (the API of every method: bench,
    gradcheck) keep every step's caches and back-propagate each ``dy[t]`` on its own -- the same
    gradient as the summed per-step backward, memory ~ T.

    Networks: a :class:`~pysnn_ref.nn.Sequential` of Linear, Conv2d, LIF/IF, AvgPool2d and
    Flatten (the MLP, LeNet); no BatchNorm, max pooling, residual blocks or LSTM.
    """

    def __init__(self, name: str, *, ottt_update: str | None = None, sltt_k: int | None = None,
                 seed: int = 0, time_chunk: int | None = None) -> None:
        self.name = check_choice("method", name, ONLINE)
        if time_chunk is not None:
            raise ValueError(f"time_chunk does not apply to method {name!r}: it streams one "
                             "time step at a time")
        if ottt_update is not None and name != "ottt":
            raise ValueError(f"ottt_update only applies to method 'ottt', not {name!r}")
        if sltt_k is not None and name != "sltt":
            raise ValueError(f"sltt_k only applies to method 'sltt', not {name!r}")
        self.ottt_update = check_choice("ottt_update", ottt_update or "A", OTTT_UPDATES) \
            if name == "ottt" else None
        self.sltt_k = None if sltt_k is None else check_int("sltt_k", sltt_k)
        self.seed = check_int("seed", seed, minimum=0)
        self.time_chunk = None
        self.opts: dict[str, Any] = {}
        self._rng = np.random.default_rng([self.seed, 0])
        self._layers: list[Module] = []
        self._rates: list[Any] = []
        self._steps: list[list[Any]] = []      # forward(): every step's caches for backward()
        self._T = 0

    @property
    def is_flow(self) -> bool:
        """False: the online methods run the time steps one by one, not as flows."""
        return False

    @property
    def traced(self) -> bool:
        """Whether weight gradients go through the presynaptic trace (OTTT) or the spikes."""
        return self.name == "ottt"

    def check_network(self, net: Module) -> None:
        """Only a flat Sequential of Linear, Conv2d, LIF/IF, AvgPool2d and Flatten."""
        ok = (Linear, Conv2d, LIF, AvgPool2d, Flatten)
        layers = net.children() if isinstance(net, Sequential) else [net]
        for m in layers:
            if not isinstance(m, ok):
                raise ValueError(f"method {self.name!r} cannot train a network with "
                                 f"{type(m).__name__}: it runs Sequential networks of Linear, "
                                 "Conv2d, LIF/IF, AvgPool2d and Flatten (e.g. the mlp, lenet)")
        if not any(isinstance(m, LIF) for m in layers):
            raise ValueError("net must contain at least one LIF/IF layer")
        self._layers = list(layers)

    def begin_epoch(self, net: Module, epoch: int) -> None:
        """SLTT-K: the epoch's stream of sampled steps (resuming at ``epoch`` draws the same)."""
        self._rng = np.random.default_rng([self.seed, int(epoch)])

    def describe(self) -> str:
        """:data:`SUMMARY` with the variant: OTTT_A / OTTT_O, SLTT-K."""
        if self.name == "ottt":
            how = ("one optimizer step per batch on the summed gradient" if self.ottt_update
                   == "A" else "an optimizer step after every time step")
            return f"OTTT_{self.ottt_update}: {SUMMARY['ottt']}; {how}"
        if self.sltt_k is not None:
            return f"SLTT-K, K={self.sltt_k}: {SUMMARY['sltt']}; K sampled steps per batch"
        return f"SLTT: {SUMMARY['sltt']}"

    def spike_rates(self, layers: list[Module]) -> list[Any]:
        """Each spiking layer's mean spike rate over the last forward's steps."""
        return list(self._rates) if len(self._rates) == len(layers) else \
            [0.0 for _ in layers]

    # ---- one time step ---------------------------------------------------------------------
    def _step_forward(self, x: Any, states: dict[int, OnlineState], spikes: list[Any]
                      ) -> tuple[Any, list[Any]]:
        """Forward of one step ``x`` (1, B, ...) through every layer; the step's caches (a
        weight layer's input replaced by the trace of the neurons feeding it, for OTTT)."""
        h, trace, caches, k = x, None, [], 0
        xp = backend.array_module(x)
        for i, layer in enumerate(self._layers):
            if isinstance(layer, LIF):
                if i not in states:
                    states[i] = OnlineState.zeros(tuple(h.shape[1:]), h.dtype, xp,
                                                  trace=self.traced)
                h, trace, cache, _ = online_forward(h, layer.p, states[i])
                spikes[k] = spikes[k] + h.mean()
                k += 1
            elif isinstance(layer, (Linear, Conv2d)):
                z, cache = _weight_forward(layer, h)
                if trace is not None:   # OTTT: the value W o[t] + b, the gradient W a_hat[t]
                    cache = type(cache)(trace, *cache[1:])
                h, trace = z, None
            elif isinstance(layer, AvgPool2d):
                h, cache = avgpool2d_forward(h, layer.k, layer.stride)
                if trace is not None:
                    trace = avgpool2d_forward(trace, layer.k, layer.stride)[0]
            else:   # Flatten
                cache = h.shape
                h = h.reshape(*h.shape[:2], -1)
                trace = None if trace is None else trace.reshape(*trace.shape[:2], -1)
            caches.append(cache)
        return h, caches

    def _step_backward(self, dy: Any, caches: list[Any]) -> None:
        """Backward of one step from its output gradient ``dy`` (1, B, classes): weight
        gradients accumulated; no recursion into earlier steps."""
        first = next(i for i, m in enumerate(self._layers) if isinstance(m, (Linear, Conv2d)))
        g = dy
        for i in range(len(self._layers) - 1, first - 1, -1):
            layer, cache = self._layers[i], caches[i]
            if isinstance(layer, LIF):
                g = online_backward(g, cache)
            elif isinstance(layer, (Linear, Conv2d)):
                g = _weight_backward(layer, g, cache, need_dx=i > first)
            elif isinstance(layer, AvgPool2d):
                g = avgpool2d_backward(g, cache)
            else:
                g = g.reshape(cache)

    def _chunks(self, x: Any, T: int, encoder: Any) -> Iterator[Any]:
        if encoder is None:
            T = x.shape[0] if T is None else T
            if T != x.shape[0]:
                raise ValueError(f"T must equal x.shape[0] = {x.shape[0]}, got {T}")
            return (x[t:t + 1] for t in range(T))
        if T is None:
            raise ValueError("T is required with an encoder")
        return encoder.chunks(x, check_int("T", T), 1)

    def _finish_rates(self, spikes: list[Any], T: int) -> None:
        self._rates = [s / T for s in spikes]

    # ---- the Method API ----------------------------------------------------------------------
    def forward(self, net: Module, x: Any, T: int | None = None, encoder: Any = None) -> Any:
        """The output ``(T, B, classes)``, one step at a time; in training mode every step's
        caches are kept for :meth:`backward` (memory ~ T; :meth:`train_step` keeps one)."""
        if not self._layers:
            self.check_network(net)
        states: dict[int, OnlineState] = {}
        spikes: list[Any] = [0.0] * sum(isinstance(m, LIF) for m in self._layers)
        ys, self._steps = [], []
        for xt in self._chunks(x, T, encoder):
            y, caches = self._step_forward(xt, states, spikes)
            ys.append(y)
            if net.training:
                self._steps.append(caches)
        self._T = len(ys)
        self._finish_rates(spikes, len(ys))
        xp = backend.array_module(ys[0])
        return ys[0] if len(ys) == 1 else xp.concatenate(ys)

    def backward(self, net: Module, dy: Any) -> None:
        """Each step's gradient ``dy[t]`` back-propagated through that step alone (SLTT-K: only
        the steps sampled for this batch) -- the summed per-step gradient."""
        if not self._steps:
            raise ValueError(f"method {self.name!r}: backward needs a forward in training mode "
                             "first")
        if dy.shape[0] != len(self._steps):
            raise ValueError(f"dy must have {len(self._steps)} steps, got {dy.shape[0]}")
        for t in self.sampled_steps(len(self._steps)):
            self._step_backward(dy[t:t + 1], self._steps[t])
        self._steps = []

    def sampled_steps(self, T: int) -> list[int]:
        """The steps that get a backward: all, or SLTT-K's K (``sltt_k`` >= T: all)."""
        if self.sltt_k is None or self.sltt_k >= T:
            return list(range(T))
        return [int(t) for t in sample_steps(T, self.sltt_k, self._rng)]

    def train_step(self, net: Module, x: Any, labels: Any, T: int, encoder: Any,
                   loss_fwd: Any, loss_bwd: Any, update: Any, mark: Any
                   ) -> tuple[Any, Any, StepTimes]:
        """Online training of one mini-batch: for t = 1..T, forward step t, its loss
        ``loss_fwd(y[t], labels) / T`` and (if t is sampled) its backward; ``update`` (all-reduce,
        NaN check, optimizer step) after every step (OTTT_O, gradients zeroed after it) or
        once at the end (OTTT_A, SLTT).  Only one step's caches exist at a time."""
        if not self._layers:
            self.check_network(net)
        sampled = set(self.sampled_steps(T))
        online = self.ottt_update == "O"
        states: dict[int, OnlineState] = {}
        spikes: list[Any] = [0.0] * sum(isinstance(m, LIF) for m in self._layers)
        times, ys, total = StepTimes(), [], 0.0
        for t, xt in enumerate(self._chunks(x, T, encoder)):
            m0 = mark()
            y, caches = self._step_forward(xt, states, spikes)
            value, cache = loss_fwd(y, labels)
            m1 = mark()
            times.forward.append((m0, m1))
            ys.append(y)
            total = total + value / T
            if t not in sampled:
                continue
            dy = loss_bwd(cache)
            self._step_backward(dy * dy.dtype.type(1.0 / T), caches)
            times.backward.append((m1, mark()))
            if online:
                update(value / T)
                net.zero_grad()
        self._finish_rates(spikes, len(ys))
        if not online:
            total = update(total)
        xp = backend.array_module(ys[0])
        return total, (ys[0] if len(ys) == 1 else xp.concatenate(ys)), times

    def __repr__(self) -> str:
        opt = f", ottt_update={self.ottt_update!r}" if self.name == "ottt" else (
            f", sltt_k={self.sltt_k}" if self.sltt_k is not None else "")
        return f"OnlineMethod({self.name!r}{opt})"
