"""Input validation shared by every public function: one clear ``ValueError`` naming the parameter.

Every check raises ``ValueError(f"{name} ...: expected ..., got ...")`` so a user sees which
argument was wrong and what was expected. The CLIs turn these into one line on stderr, exit 2.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from typing import Any

import numpy as np


def check_float_array(name: str, x: Any, ndim: int | None = None,
                      min_ndim: int | None = None) -> None:
    """``x`` must be a NumPy/CuPy float32 or float64 array of the given rank."""
    if not hasattr(x, "dtype") or not hasattr(x, "shape"):
        raise ValueError(f"{name} must be a float32 or float64 array, got {type(x).__name__}")
    if x.dtype not in (np.float32, np.float64):
        raise ValueError(f"{name} must have dtype float32 or float64, got {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(x.shape)}")
    if min_ndim is not None and x.ndim < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} dimensions, got shape {tuple(x.shape)}"
        )


def check_time_major(name: str, x: Any, min_ndim: int = 2) -> None:
    """``x`` must be a time-major float array ``(T, B, ...)`` with ``T >= 1``."""
    check_float_array(name, x, min_ndim=min_ndim)
    if x.shape[0] < 1:
        raise ValueError(f"{name} must have T >= 1 time steps (axis 0), got shape {tuple(x.shape)}")


def check_same_shape(name: str, x: Any, expected: tuple[int, ...]) -> None:
    """``x.shape`` must equal ``expected``."""
    if tuple(x.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}, got {tuple(x.shape)}")


def check_positive(name: str, v: Any) -> float:
    """``v`` must be a finite number > 0; returns it as ``float``."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number > 0, got {v!r}") from None
    if not np.isfinite(f) or f <= 0:
        raise ValueError(f"{name} must be a number > 0, got {v!r}")
    return f


def check_int(name: str, v: Any, minimum: int = 1) -> int:
    """``v`` must be an integer >= ``minimum``; returns it as ``int``."""
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def check_in_range(name: str, v: Any, lo: float, hi: float, lo_open: bool = True,
                   hi_open: bool = False) -> float:
    """``v`` must lie in the interval (lo, hi] (brackets set by ``lo_open``/``hi_open``)."""
    lb, rb = ("(" if lo_open else "["), (")" if hi_open else "]")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in {lb}{lo}, {hi}{rb}, got {v!r}") from None
    below = f <= lo if lo_open else f < lo
    above = f >= hi if hi_open else f > hi
    if not np.isfinite(f) or below or above:
        raise ValueError(f"{name} must be in {lb}{lo}, {hi}{rb}, got {v!r}")
    return f


def check_choice(name: str, v: Any, options: Iterable[str]) -> str:
    """``v`` must be one of ``options``."""
    opts = tuple(options)
    if v not in opts:
        raise ValueError(f"{name} must be one of {opts}, got {v!r}")
    return v


def not_a_regular_file(path: Any) -> str | None:
    """Why ``path`` is not a regular file that can be read (``None`` when it is one), decided
    by ``os.stat`` without opening it: a FIFO would block the reader forever, a device or a
    folder would be read as garbage.  The data readers call this before opening a file."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "file not found"
    except OSError as e:
        return e.strerror or type(e).__name__
    if stat.S_ISREG(mode):
        return None
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"))
    kind = next((k for test, k in kinds if test(mode)), "not a regular file")
    return f"{kind}, not a regular file (not opened)"


def machine_memory() -> int | None:
    """Bytes of physical memory of this machine (``None`` where it cannot be asked)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits_memory(name: str, nbytes: int, what: str) -> None:
    """``ValueError`` naming ``name`` when an array of ``nbytes`` bytes (``what``) would not fit
    in this machine's memory: refused with the estimate instead of a MemoryError traceback."""
    ram = machine_memory()
    if ram is not None and nbytes > ram:
        raise ValueError(f"{name}: {what} needs {nbytes / 2**30:.3g} GiB, more than this "
                         f"machine's {ram / 2**30:.3g} GiB of memory")
