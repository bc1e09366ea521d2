"""Spike-element-wise residual blocks (:class:`SEWResidual`) and the zero padding that SEW-ResNet's
stem max pooling needs (:class:`ZeroPad2d`).

Fang et al., "Deep Residual Learning in Spiking Neural Networks", NeurIPS 2021 (arXiv
2102.04159), Sec. 3.2, Eq. 5 and Table 1; authors' code ``fangwei123456/Spike-Element-Wise-ResNet``
``imagenet/sew_resnet.py`` (``BasicBlock``).
"""

from __future__ import annotations

from typing import Any

from .. import backend
from .._check import check_choice, check_int
from ..functional.sew import CONNECT_FUNCTIONS, sew_connect_backward, sew_connect_forward
from .containers import Residual, Sequential
from .module import Module

__all__ = ["SEWResidual", "ZeroPad2d"]


class SEWResidual(Residual):
    """SEW block: ``O[t] = g(A[t], S[t])`` with ``A = main(x)`` and ``S = shortcut(x)``
    (``S = x`` if ``shortcut`` is None), Fang et al. NeurIPS 2021, Eq. 5.

    ``main`` and ``shortcut`` must each end in a spiking layer (``A = SN(BN(conv(SN(BN(conv
    (S))))))``, ``S = SN(BN(conv1x1(x)))`` when downsampling): SEW joins *spikes*, unlike
    :class:`Residual`, which adds membrane inputs and fires after the sum.  No spiking layer
    follows the block.  ``g`` (:data:`~pysnn_ref.functional.sew.CONNECT_FUNCTIONS`):

    * ``"ADD"``: ``O = A + S`` (counts in {0, 1, 2});
    * ``"AND"``: ``O = A * S``;  ``"IAND"``: ``O = (1 - A) * S`` (spikes again).

    **BPTT**: ``(dA, dS)`` from :func:`~pysnn_ref.functional.sew.sew_connect_backward`, then the
    two branches' backward; exact (finite differences in smooth mode, tests/test_sew.py).

    **Flows (ASF, SSF): ADD only.**  ADD is linear, so the block's flow ``sum_t O[t] =
    sum_t A[t] + sum_t S[t]`` (and its lam-weighted SSF form) is the sum of the branches'
    flows: the equivalent rate network adds the two rates, and the flow backward is
    :class:`Residual`'s (one collapsed gradient into each branch).  AND and IAND multiply two
    spike trains: the rate of ``A[t] S[t]`` is not a function of the two branches' rates (it
    depends on when the spikes coincide), so there is no equivalent rate network for the flow
    gradient to be the exact gradient of; ``flow_begin`` refuses them (ValueError) and
    :attr:`bptt_only_reason` says why.
    """

    def __init__(self, main: Sequential, shortcut: Sequential | None = None,
                 g: str = "ADD") -> None:
        super().__init__(main, shortcut)
        self.g = check_choice("g", g, CONNECT_FUNCTIONS)

    @property
    def bptt_only_reason(self) -> str | None:
        """Why this block cannot train by a flow method (None for ADD)."""
        if self.g == "ADD":
            return None
        return (f"SEW connect function {self.g} multiplies two spike trains: the rate of the "
                "product is not a function of the rates, so it has no flow form; use method "
                "'bptt' or g='ADD'")

    def forward(self, x: Any) -> Any:
        A = self.main(x)
        S = x if self.shortcut is None else self.shortcut(x)
        O, self._cache = sew_connect_forward(A, S, self.g)
        return O

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        dA, dS = sew_connect_backward(dy, self._cache)
        dx = self.main.backward(dA)
        return dx + (dS if self.shortcut is None else self.shortcut.backward(dS))

    def flow_begin(self, method: str, opts: dict[str, Any]) -> None:
        reason = self.bptt_only_reason
        if reason is not None:
            raise ValueError(f"method {method!r} cannot train this block: {reason}")
        super().flow_begin(method, opts)

    def __repr__(self) -> str:
        return (f"SEWResidual(g={self.g!r}, main={self.main!r}, "
                f"shortcut={self.shortcut!r})")


class ZeroPad2d(Module):
    """Pad the last two axes with ``p`` zeros on each side (PyTorch ``MaxPool2d(3, 2,
    padding=1)`` pads with -inf; on spikes (>= 0) zeros give the same maximum).  Backward:
    the gradient's interior."""

    def __init__(self, p: int) -> None:
        super().__init__()
        self.p = check_int("p", p)

    def forward(self, x: Any) -> Any:
        xp = backend.array_module(x)
        p = self.p
        return xp.pad(x, [(0, 0)] * (x.ndim - 2) + [(p, p), (p, p)])

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        p = self.p
        return dy[..., p:dy.shape[-2] - p, p:dy.shape[-1] - p]

    def step_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """H and W grown by 2p."""
        return (*shape[:-2], *(n + 2 * self.p for n in shape[-2:]))

    def __repr__(self) -> str:
        return f"ZeroPad2d({self.p})"
