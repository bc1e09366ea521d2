"""The base class of every layer: :class:`Module` (parameters, train / eval mode, the BPTT and
flow-mode interfaces, ``state_dict``) and the helpers the layers share.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import backend
from .._check import check_choice
from ..errors import BackwardBeforeForwardError
from ..functional.linear import is_time_broadcast
from ..parameter import Parameter

__all__ = ["FLOW_METHODS", "FLOW_INPUT", "ASF_VARIANTS", "is_static", "time_sum", "channel_shape",
    "HookHandle", "ForwardHook", "Module", "SpikingModule", "check_method"]

#: methods run in flow mode (streamed chunks, one collapsed backward): ASF, SSF and, from the
#: T-independent family, DSR and rate-based BP (their neuron rules: functional/dsr.py, rate.py)
FLOW_METHODS = ("asf", "ssf", "dsr", "rate")
#: :meth:`Sequential.plan_flow`: "below this layer is the network input" (no spiking layer)
FLOW_INPUT = "input"
ASF_VARIANTS = ("paper", "code")


def is_static(x: Any) -> bool:
    """True for a time-broadcast input (direct encoding) of more than one step: the same tensor
    at every step (:func:`~pysnn_ref.functional.linear.is_time_broadcast`)."""
    return x.shape[0] > 1 and is_time_broadcast(x)


def time_sum(x: Any) -> Any:
    """sum_t x[t] of a time-major chunk (cheap for a time-broadcast input)."""
    if is_static(x):
        return x[0] * x.shape[0]
    return x.sum(axis=0)


def channel_shape(ndim: int, axis: int) -> tuple[int, ...]:
    """Shape that broadcasts a per-channel (C,) vector along ``axis`` of an ``ndim`` array."""
    return tuple(-1 if i == axis else 1 for i in range(ndim))



class HookHandle:
    """What :meth:`Module.register_forward_hook` returns: ``remove()`` takes the hook off."""

    def __init__(self, module: Module, hook: ForwardHook) -> None:
        self.module, self.hook = module, hook

    def remove(self) -> None:
        """Detach the hook from its module (idempotent)."""
        self.module.forward_hooks = tuple(h for h in self.module.forward_hooks
                                          if h is not self.hook)


#: ``hook(module, x, y)``: called after a BPTT forward ``y = module(x)``; returns nothing
ForwardHook = Callable[["Module", Any, Any], None]


class Module:
    """Base class: parameters, train/eval mode, BPTT and flow-mode interfaces.

    **Forward hooks** (the public way to observe a layer; nothing replaces ``forward``):
    ``module.register_forward_hook(hook)`` makes every BPTT forward through ``module(x)`` --
    containers call their layers that way -- call ``hook(module, x, y)`` with the layer's input
    and output.  Energy counting (:mod:`pysnn_ref.energy`), the PyTorch baseline's spike
    comparison (:mod:`pysnn_ref.bench.torch_ref`) and :class:`~pysnn_ref.nn.SpikeMonitor` use
    them.  A spiking layer with a hook is never fused with the pooling above it (the hook sees
    its spikes).
    """

    #: True for layers whose flow-mode backward must run per time step (see flow_out_per_step)
    per_step_backward = False
    #: the forward hooks, in the order they run (:meth:`register_forward_hook`)
    forward_hooks: tuple[ForwardHook, ...] = ()

    def __init__(self) -> None:
        self.training = True
        self.keep_steps = False  # flow mode: keep per-step inputs (set by Sequential.plan_flow)

    #: what a forward leaves for the backward (read before any forward: a clear error)
    FORWARD_STATE = ("_cache", "_caches", "_shape", "_x_sum")

    def __getattr__(self, name: str) -> Any:
        """Only reached for attributes that do not exist: the forward state asked for before any
        forward (``backward`` first) is a ValueError naming the layer, not an AttributeError."""
        if name in Module.FORWARD_STATE:
            raise BackwardBeforeForwardError(
                f"{type(self).__name__}.backward needs the state of a forward pass ({name}); "
                "call forward (or the method's forward) first")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def register_forward_hook(self, hook: ForwardHook) -> HookHandle:
        """Call ``hook(self, x, y)`` after every BPTT forward ``y = self(x)`` (see the class
        docstring); ``handle.remove()`` undoes it."""
        self.forward_hooks = (*self.forward_hooks, hook)
        return HookHandle(self, hook)

    # --- structure -----------------------------------------------------------------------
    def parameters(self) -> list[Parameter]:
        """Every trainable parameter of this module and its children."""
        return self.own_parameters() + [p for c in self.children() for p in c.parameters()]

    def children(self) -> list[Module]:
        """The direct sub-modules (none for a leaf layer)."""
        return []

    def step_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of one sample's output at one step for an input of ``shape`` (no batch,
        no time axis): a leaf keeps it unless it says otherwise (Conv2d, Linear, pooling,
        Flatten, padding); a container without its own rule returns None (unknown)."""
        return None if self.children() else tuple(shape)

    def step_extent(self, shape: tuple[int, ...]) -> tuple[float, tuple[int, ...] | None]:
        """``(largest, out)``: the largest per-sample activation (elements of one step) of this
        module and the layers in it, its input included, and its output shape -- the one-pass
        memory estimate of the flow methods (:meth:`pysnn_ref.methods.Method.time_chunk_for`).
        ``inf`` where a shape is unknown."""
        out = self.step_shape(shape)
        if out is None:
            return math.inf, None
        return float(max(math.prod(shape), math.prod(out))), out

    def modules(self) -> list[Module]:
        """This module and every module below it, parents first."""
        out: list[Module] = [self]
        for c in self.children():
            out.extend(c.modules())
        return out

    def named_children(self, prefix: str = "") -> list[tuple[str, Module]]:
        """``(prefix + index, child)`` for each child: the one naming rule of layers -- a
        layer's name is its index path in the nested containers (``"2"``, ``"4.0.2"``), as in
        :meth:`state_dict`, :meth:`named_parameters` and the training log's firing rates."""
        return [(f"{prefix}{i}", c) for i, c in enumerate(self.children())]

    def named_modules(self, prefix: str = "") -> list[tuple[str, Module]]:
        """``(index path, module)`` of every module below this one, parents first."""
        out: list[tuple[str, Module]] = []
        for path, c in self.named_children(prefix):
            out.append((path, c))
            out.extend(c.named_modules(path + "."))
        return out

    def named_parameters(self, prefix: str = "") -> dict[str, Parameter]:
        """``{"<index path>.<name>": Parameter}`` for every parameter (the keys of
        :meth:`state_dict` that are parameters, in the same order)."""
        out: dict[str, Parameter] = {}
        for path, c in self.named_children(prefix):
            out.update(c.named_parameters(path + "."))
        for p in self.own_parameters():
            out[prefix + p.name] = p
        return out

    def train(self, mode: bool = True) -> Module:
        """Training mode (BatchNorm uses batch statistics); returns the module."""
        for m in self.modules():
            m.training = mode
        return self

    def eval(self) -> Module:
        """Evaluation mode (BatchNorm uses its running statistics); returns the module."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Set every parameter's gradient buffer to zero."""
        for p in self.parameters():
            p.zero_grad()

    def to(self, device: str, dtype: Any = None) -> Module:
        """Move every parameter and buffer to ``device`` ("cpu" or "gpu"), optionally casting."""
        if dtype is not None and np.dtype(dtype) not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64 (or None to keep it), got "
                             f"{np.dtype(dtype)}")
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
        """The parameters of this layer itself (not of its sub-modules)."""
        return []

    def buffer_names(self) -> tuple[str, ...]:
        """Names of the non-trainable arrays saved in the state dict (e.g. BN statistics)."""
        return ()

    # --- BPTT ----------------------------------------------------------------------------
    def forward(self, x: Any) -> Any:
        """Run the layer on a time-major input ``x`` (``(T, B, ...)``) and keep what its
        backward needs (the cache of its functional pair); returns the output, ``(T, B, ...)``.
        Call the module (``layer(x)``) to run its forward hooks too."""
        raise NotImplementedError

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        """Back-propagate ``dy`` = dL/d(output) through the last forward: add the parameters'
        gradients into their ``grad`` buffers and return dL/d(input) (``None`` when
        ``need_dx`` is False: the layer below wants no gradient, e.g. the first layer)."""
        raise NotImplementedError

    def __call__(self, x: Any) -> Any:
        """BPTT forward, then the forward hooks."""
        y = self.forward(x)
        for hook in self.forward_hooks:
            hook(self, x, y)
        return y

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
        """Parameters and buffers by full name (``"1.W"``), as host NumPy copies."""
        out = {}
        for path, c in self.named_children(prefix):
            out.update(c.state_dict(path + "."))
        for p in self.own_parameters():
            out[prefix + p.name] = backend.to_numpy(p.data)
        for name in self.buffer_names():
            out[prefix + name] = backend.to_numpy(getattr(self, name))
        return out

    def load_state_dict(self, state: dict[str, np.ndarray], prefix: str = "") -> None:
        """Copy arrays by full name into the parameters and buffers (shapes must match)."""
        for path, c in self.named_children(prefix):
            c.load_state_dict(state, path + ".")
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



def check_method(method: str) -> str:
    """``method`` must be "bptt" or one of :data:`FLOW_METHODS`."""
    return check_choice("method", method, ("bptt",) + FLOW_METHODS)


class SpikingModule(Module):
    """A layer of spiking neurons (LIF/IF, SynapticLIF, SpikingLSTM): the firing rate of its
    last forward pass, kept in ``_rate`` by the subclass's forward."""

    _rate: Any = 0.0  # mean spikes per neuron per step, last forward (on the device)

    @property
    def firing_rate(self) -> float:
        """Mean spikes per neuron per time step in the last forward pass (LIF under SSF:
        lam-weighted)."""
        return float(self._rate)

    @property
    def spike_rate(self) -> Any:
        """:attr:`firing_rate` where it was computed: a device scalar on the GPU (reading it
        there is a host sync, which the training loop does once per read-out)."""
        return self._rate
