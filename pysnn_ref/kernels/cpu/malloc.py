"""glibc's malloc thresholds for the training step's allocation pattern: :func:`tune_malloc`.

Called explicitly, once, by :mod:`pysnn_ref.backend` when the CPU kernels are first used
(never at import): :func:`tune_malloc_once`; :func:`malloc_tuned` says whether it applied.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["tune_malloc", "tune_malloc_once", "malloc_tuned"]

#: glibc's ``mallopt`` parameters (<malloc.h>) and the values :func:`tune_malloc` sets
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES, TRIM_THRESHOLD_BYTES = 32 << 20, 256 << 20


def tune_malloc() -> bool:
    """Keep freed arrays of up to 32 MiB on glibc's heap for the next training step.

    A step allocates and frees the same arrays every time.  glibc's default adapts its two
    thresholds as blocks are freed (the mmap threshold rises to the last freed mapped block, up to
    32 MiB, and the heap is trimmed once 2x that is free at its top), so with the allocation
    pattern of a step, or of two methods timed in turn, the heap is given back and every new array
    starts again with page faults and the kernel zeroing each 4 KiB page.  Fixed thresholds stop
    that: blocks up to ``MMAP_THRESHOLD_BYTES`` (glibc's own adaptive maximum) come from the heap,
    and it is trimmed only above ``TRIM_THRESHOLD_BYTES`` free.  Measured (2-core Xeon, T = 20,
    B = 64, bptt and ssf timed in turn): the MLP's bptt step 6.9 -> 4.2 ms, the conv net's 110-116
    -> 95-98 ms; peak resident memory of ``bench --vs-torch`` at T = 40 1.83 -> 2.01 GB.

    On by default; ``PYSNN_MALLOC=default`` (read when it runs) leaves glibc alone.
    (An earlier setting, ``M_MMAP_MAX = 0``, put blocks of every size on the heap: with PyTorch in
    the same process it fragmented to 14.6 GB resident and was dropped; a 128 MiB threshold
    measured no faster than 32 MiB.)  glibc only; returns whether it was applied."""
    if os.environ.get("PYSNN_MALLOC", "bounded") == "default" \
            or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and \
            bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    except (OSError, AttributeError):
        return False


_tuned: list[bool] = []  # [whether tune_malloc applied], once it has run


def tune_malloc_once() -> bool:
    """:func:`tune_malloc` the first time it is called in this process; afterwards its result."""
    if not _tuned:
        _tuned.append(tune_malloc())
    return _tuned[0]


def malloc_tuned() -> bool | None:
    """Whether :func:`tune_malloc_once` applied the thresholds (None: it has not run yet)."""
    return _tuned[0] if _tuned else None
