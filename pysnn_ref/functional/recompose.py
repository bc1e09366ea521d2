"""Recomposed computing: Algorithm 1 of the window-partition supplement (Yao et al.).

The feature map (size L x L) is processed as four overlapping "dilated" windows of size
M = 3L/4: G1 top-left, G2 top-right, G3 bottom-left, G4 bottom-right (origins 0 and L - M).
Algorithm 1 puts them back ("Weighted-Condense") with the overlap of width w_o = 2M - L averaged::

    coverG1G2 = (G1[.., w_o/2 : 3w_o/2] + G2[.., 0 : w_o]) / 2          (along the width)
    G1G2      = cat(G1[.., 0 : w_o/2], coverG1G2, G2[.., w_o : 3w_o/2])
    (the same for G3G4; then G1G2 and G3G4 along the height -> G, L x L)

The two halvings make the weights 1 (one window), 1/2 (two) and 1/4 (the centre, all four):
``X = sum_k place_k(G_k) / count`` with count the number of windows covering a pixel.  Linear, so
the backward is its adjoint: ``dG_k = (dX / count)[window k]``.  "Region Threshold"
``X_l = [G > Th_R]`` (Th_R = 0.1 in the paper) turns the "median spikes" 0.25/0.5/0.75 back
into spikes; :func:`region_threshold` (its gradient is taken straight-through by the layer).

Shapes: any leading axes (T, B, C, ...) then (M, M) -> (L, L); NumPy/CuPy array code (the fast
path: 4 slice adds), tested equal to the loop reference of ``kernels.reference`` section 7.
"""

from __future__ import annotations

from typing import Any

from .. import backend

__all__ = ["recompose_sizes", "recompose_forward", "recompose_backward", "region_threshold"]


def recompose_sizes(M: int) -> tuple[int, int]:
    """(L, w_o) for a window size M: L = 4M/3, w_o = 2M - L.  M must be a positive multiple of 3."""
    if not isinstance(M, int) or M < 3 or M % 3:
        raise ValueError(f"window size M must be a positive multiple of 3 (M = 3L/4), got {M!r}")
    L = 4 * M // 3
    return L, 2 * M - L


def _coverage(xp: Any, M: int, dtype: Any) -> Any:
    L, _ = recompose_sizes(M)
    off = L - M
    c = xp.zeros((L, L), dtype=dtype)
    for r0 in (0, off):
        for c0 in (0, off):
            c[r0:r0 + M, c0:c0 + M] += 1
    return c


def recompose_forward(G1: Any, G2: Any, G3: Any, G4: Any) -> Any:
    """Algorithm 1 Weighted-Condense: four (..., M, M) windows -> the (..., L, L) map."""
    Gs = (G1, G2, G3, G4)
    for name, G in zip(("G1", "G2", "G3", "G4"), Gs, strict=True):
        if G.ndim < 2 or G.shape[-1] != G.shape[-2]:
            raise ValueError(f"{name} must end in a square (M, M) window, got shape {G.shape}")
        if G.shape != G1.shape:
            raise ValueError(f"{name} must have G1's shape {G1.shape}, got {G.shape}")
    M = G1.shape[-1]
    L, _ = recompose_sizes(M)
    off = L - M
    xp = backend.array_module(G1)
    X = xp.zeros(G1.shape[:-2] + (L, L), dtype=G1.dtype)
    for G, (r0, c0) in zip(Gs, ((0, 0), (0, off), (off, 0), (off, off)), strict=True):
        X[..., r0:r0 + M, c0:c0 + M] += G
    X /= _coverage(xp, M, G1.dtype)
    return X


def recompose_backward(dX: Any, M: int) -> tuple[Any, Any, Any, Any]:
    """The adjoint: (dG1, dG2, dG3, dG4) = windows of dX / coverage count."""
    L, _ = recompose_sizes(M)
    if dX.ndim < 2 or dX.shape[-2:] != (L, L):
        raise ValueError(f"dX must end in (L, L) = ({L}, {L}) for M = {M}, got {dX.shape}")
    xp = backend.array_module(dX)
    g = dX / _coverage(xp, M, dX.dtype)
    off = L - M
    return tuple(g[..., r0:r0 + M, c0:c0 + M].copy()
                 for r0, c0 in ((0, 0), (0, off), (off, 0), (off, off)))  # type: ignore[return-value]


def region_threshold(X: Any, th_r: float = 0.1) -> Any:
    """Region Threshold of Algorithm 1: ``[X > Th_R]`` (1.0 / 0.0, X's dtype)."""
    if not (0.0 <= th_r < 1.0):
        raise ValueError(f"th_r must be in [0, 1), got {th_r!r}")
    return (X > th_r).astype(X.dtype)
