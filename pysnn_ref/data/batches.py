"""Mini-batches and augmentation: :func:`iterate_minibatches` (one epoch's batches, shuffled by a
seeded generator) and :func:`augment_cifar` (random crop + horizontal flip).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from .. import backend
from .._check import check_float_array, check_int

__all__ = ["iterate_minibatches", "augment_cifar"]


def _as_rng(rng: Any) -> np.random.Generator:
    """A NumPy Generator from a Generator, an int seed, or None (fresh OS entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise ValueError(f"rng must be a numpy.random.Generator, an int seed or None, got {rng!r}")


# ----------------------------------------------------------------------------------------------
# batching and augmentation
# ----------------------------------------------------------------------------------------------

def iterate_minibatches(x: Any, y: Any, batch_size: int, shuffle: bool = True, rng: Any = None,
                        drop_last: bool = False) -> Iterator[tuple[Any, Any]]:
    """Yield ``(xb, yb)`` mini-batches that cover every sample once (per call = one epoch).

    With ``shuffle=True`` the order is ``rng.permutation(N)``; ``rng`` is a
    ``numpy.random.Generator`` (advanced by the call, so successive epochs differ), an int seed,
    or None (fresh OS entropy, not reproducible). With ``shuffle=False`` batches are slices
    (views) in order. The last, smaller batch is yielded unless ``drop_last``. ``x`` and ``y`` may
    be NumPy or CuPy arrays (the permutation is drawn on the host).
    """
    n = len(x)
    if len(y) != n:
        raise ValueError(f"y must have one label per sample of x ({n}), got {len(y)}")
    batch_size = check_int("batch_size", batch_size, minimum=1)
    order = _as_rng(rng).permutation(n) if shuffle else None

    def batches() -> Iterator[tuple[Any, Any]]:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            if drop_last and stop - start < batch_size:
                return
            if order is None:
                yield x[start:stop], y[start:stop]
            else:
                idx = order[start:stop]
                yield (x[backend.array_module(x).asarray(idx)],
                       y[backend.array_module(y).asarray(idx)])

    return batches()


def augment_cifar(xb: Any, rng: Any, pad: int = 4) -> Any:
    """Random crop with ``pad`` pixels of zero padding, then a random horizontal flip.

    The standard CIFAR augmentation used by ASF-BP and TET (torchvision ``RandomCrop(32,
    padding=4)`` + ``RandomHorizontalFlip()``): each image is zero-padded to ``H+2·pad``,
    a window of the original size is cut at a random offset in ``[0, 2·pad]²`` and flipped with
    probability 1/2. Offsets and flips are drawn from ``rng`` (a ``numpy.random.Generator`` or
    an int seed) on the host; the gather is one vectorised fancy-indexing operation on the
    batch's own device. Returns a new ``(B, C, H, W)`` array of the same dtype.
    """
    check_float_array("xb", xb, ndim=4)
    pad = check_int("pad", pad, minimum=0)
    rng = _as_rng(rng)
    xp = backend.array_module(xb)
    B, C, H, W = xb.shape
    oy = rng.integers(0, 2 * pad + 1, size=B)
    ox = rng.integers(0, 2 * pad + 1, size=B)
    flip = rng.random(B) < 0.5
    rows = oy[:, None] + np.arange(H)                          # (B, H) rows of the padded image
    cols = ox[:, None] + np.arange(W)                          # (B, W)
    cols = np.where(flip[:, None], cols[:, ::-1], cols)       # crop, then flip
    padded = xp.zeros((B, C, H + 2 * pad, W + 2 * pad), dtype=xb.dtype)
    padded[:, :, pad:pad + H, pad:pad + W] = xb
    b = xp.arange(B)[:, None, None, None]
    c = xp.arange(C)[None, :, None, None]
    return padded[b, c, xp.asarray(rows)[:, None, :, None], xp.asarray(cols)[:, None, None, :]]
