"""``cupy.random`` of the fake: NumPy's legacy RandomState, results on the device."""

from __future__ import annotations

from typing import Any

import numpy as _np


class RandomState:
    """``cupy.random.RandomState(seed)``; the draws are NumPy's (not CuPy's) sequence."""

    def __init__(self, seed: Any = None) -> None:
        self._rs = _np.random.RandomState(seed)

    def random_sample(self, size: Any = None, dtype: Any = float) -> Any:
        from . import ndarray

        return ndarray._of(self._rs.random_sample(size).astype(dtype))

    def __getattr__(self, name: str) -> Any:
        from . import _wrap

        f = getattr(self._rs, name)
        return lambda *a, **k: _wrap(_np.asarray(f(*a, **k)))


def seed(s: Any = None) -> None:
    _np.random.seed(s)
