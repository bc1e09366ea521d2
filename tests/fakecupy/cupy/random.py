"""``cupy.random`` of the fake: NumPy's legacy RandomState, results on the device."""

from __future__ import annotations

from typing import Any

import numpy as _np


class RandomState:
    """``cupy.random.RandomState(seed)``; the draws are NumPy's (not CuPy's) sequence."""

    def __init__(self, seed: Any = None) -> None:
        from . import _need

        _need("curand")  # CuPy creates a cuRAND generator here
        self._rs = _np.random.RandomState(seed)

    def random_sample(self, size: Any = None, dtype: Any = float) -> Any:
        from . import ndarray

        return ndarray._of(self._rs.random_sample(size).astype(dtype))

    def __getattr__(self, name: str) -> Any:
        from . import _check_keywords, _names, _no_such, _wrap

        if name.startswith("_") or name not in _names.RANDOM_STATE:
            raise _no_such("cupy.random.RandomState", name)
        f = getattr(self._rs, name)

        def method(*a: Any, **k: Any) -> Any:
            _check_keywords(_names.RANDOM_STATE, "cupy.random.RandomState", name, k)
            return _wrap(_np.asarray(f(*a, **k)))

        return method


def seed(s: Any = None) -> None:
    _np.random.seed(s)
