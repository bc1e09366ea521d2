"""``cupy.cuda`` of the fake: devices, streams, memory hooks -- all synchronous no-ops."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

_hooks: list[MemoryHook] = []


class Device:
    """The one fake device (id 0)."""

    def __init__(self, device: int = 0) -> None:
        self.id = int(device)
        self.compute_capability = "90"

    def synchronize(self) -> None:
        pass

    def use(self) -> None:
        pass

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    @property
    def mem_info(self) -> tuple[int, int]:
        return (1 << 34, 1 << 34)


class Stream:
    """A stream; ``ptr`` 0 is the null stream (numba's default stream)."""

    def __init__(self, null: bool = False, non_blocking: bool = False, ptr: int = 0) -> None:
        self.ptr = 0

    def synchronize(self) -> None:
        pass

    def use(self) -> Stream:
        return self

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


_null = Stream(null=True)


def get_current_stream() -> Stream:
    return _null


class Event:
    """Records the host clock (the fake runs everything synchronously)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        self.t = 0.0

    def record(self, stream: Any = None) -> None:
        self.t = time.perf_counter()

    def synchronize(self) -> None:
        pass


def get_elapsed_time(start: Event, end: Event) -> float:
    """Milliseconds between two recorded events, as CuPy's."""
    return (end.t - start.t) * 1e3


class MemoryPointer:
    """``ndarray.data``: only ``ptr`` (the host address of the NumPy buffer)."""

    def __init__(self, a: Any) -> None:
        self.ptr = int(a.__array_interface__["data"][0])


class MemoryHook:
    """Base of CuPy memory hooks: ``with hook:`` installs it; the fake pool calls
    ``malloc_postprocess(mem_size=...)`` / ``free_postprocess(mem_size=...)``."""

    name = "MemoryHook"

    def __enter__(self) -> MemoryHook:
        _hooks.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        _hooks.remove(self)

    def malloc_postprocess(self, **kw: Any) -> None:
        pass

    def free_postprocess(self, **kw: Any) -> None:
        pass


class _Runtime:
    @staticmethod
    def getDeviceCount() -> int:  # noqa: N802 - CuPy's name
        return 1

    @staticmethod
    def getDeviceProperties(device: int) -> dict[str, Any]:  # noqa: N802 - CuPy's name
        return {"name": b"fakecupy (NumPy + numba CUDA simulator)", "totalGlobalMem": 1 << 34,
                "major": 9, "minor": 0}

    @staticmethod
    def runtimeGetVersion() -> int:  # noqa: N802 - CuPy's name
        return 12000


runtime = _Runtime()


def _get_cublas_handle() -> int:
    """``cupy.cuda.device.get_cublas_handle()``: loads cuBLAS (``FAKECUPY_MISSING=cublas``
    makes it fail as CuPy does without the library) and returns a handle."""
    from . import _need

    _need("cublas")
    return 1


#: ``cupy.cuda.device`` (only what the library uses)
device = SimpleNamespace(get_cublas_handle=_get_cublas_handle, Device=Device)
