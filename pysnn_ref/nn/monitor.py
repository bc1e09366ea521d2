"""Observing a network without changing it: :class:`SpikeMonitor` records the spikes of its
spiking layers through forward hooks (:meth:`Module.register_forward_hook`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import backend
from .module import HookHandle, Module
from .neurons import LIF

__all__ = ["SpikeMonitor"]


class SpikeMonitor:
    """Record each spiking layer's output spikes ``o`` (``(T, B, ...)``, host copies) in every
    BPTT forward while the monitor is active, in the order the layers run::

        with SpikeMonitor(net) as mon:
            net.forward(x)
        mon.spikes   # [o of the first LIF, o of the second, ...]

    The recorded layers are not fused with the pooling above them (a hooked layer never is), so
    the spikes are the layer's own output.
    """

    def __init__(self, net: Module) -> None:
        self.layers = [m for m in net.modules() if isinstance(m, LIF)]
        self.spikes: list[np.ndarray] = []
        self._handles: list[HookHandle] = []

    def _record(self, module: Module, x: Any, y: Any) -> None:
        self.spikes.append(backend.to_numpy(y))

    def __enter__(self) -> SpikeMonitor:
        self._handles = [m.register_forward_hook(self._record) for m in self.layers]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
