"""Window partition and recomposed computing around a body network
(:mod:`pysnn_ref.functional.recompose`).
"""

from __future__ import annotations

from typing import Any

from .. import backend
from ..functional.recompose import recompose_backward, recompose_forward, region_threshold
from .module import Module

__all__ = ["WindowRecompose"]


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

    def children(self) -> list[Module]:
        """The body run on every window."""
        return [self.body]

    def _origins(self, L: int) -> tuple[int, tuple[tuple[int, int], ...]]:
        if L % 4 or L < 4:
            raise ValueError(f"WindowRecompose needs a square map with L divisible by 4, got L={L}")
        M = 3 * L // 4
        o = L - M
        return M, ((0, 0), (0, o), (o, 0), (o, o))

    def forward(self, x: Any) -> Any:
        if x.ndim < 3 or x.shape[-1] != x.shape[-2]:
            raise ValueError(f"x must end in a square (L, L) map, got shape {x.shape}")
        xp = backend.array_module(x)
        M, org = self._origins(x.shape[-1])
        self._x_shape, self._M = x.shape, M
        wins = [x[:, :, ..., r:r + M, c:c + M] for r, c in org]
        y = self.body(xp.concatenate(wins, axis=1))
        X = recompose_forward(*xp.split(y, 4, axis=1))
        return X if self.th_r is None else region_threshold(X, self.th_r)

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        xp = backend.array_module(dy)
        M, org = self._origins(self._x_shape[-1])
        db = self.body.backward(xp.concatenate(recompose_backward(dy, M), axis=1))
        dx = xp.zeros(self._x_shape, dtype=dy.dtype)
        for (r, c), g in zip(org, xp.split(db, 4, axis=1), strict=True):
            dx[:, :, ..., r:r + M, c:c + M] += g
        return dx

    def flow_begin(self, method: str, opts: dict) -> None:
        raise ValueError(f"WindowRecompose (model 'window') supports method 'bptt' only, "
                         f"got {method!r}")

    def __repr__(self) -> str:
        return f"WindowRecompose(body={self.body!r}, th_r={self.th_r})"
