"""A NumPy-backed stand-in for CuPy, for tests only (never part of the package).

Put ``tests/fakecupy`` first on ``PYTHONPATH`` and set ``NUMBA_ENABLE_CUDASIM=1``: then
``import cupy`` finds this module, ``backend.get_backend("gpu")`` accepts it, and the library's
GPU path (CuPy arrays, numba.cuda kernels) runs on the CPU -- the kernels in numba's CUDA
simulator, everything else through NumPy.

What it models:

* :class:`ndarray` wraps a NumPy array and is *not* a NumPy array (its type lives in module
  ``cupy``, so ``backend.is_gpu_array`` routes it to the GPU path).  As in CuPy, arithmetic
  with a host ``numpy.ndarray`` raises ``TypeError``, and so does ``numpy.asarray(device)``.
* Every device->host transfer is counted: ``.get()``, ``cupy.asnumpy``, ``float()``, ``int()``,
  ``bool()``, ``.item()``, ``.tolist()``, ``__array__`` and ``__index__`` of its arrays.
  :func:`transfers` returns the count, :func:`reset_transfers` zeroes it, :func:`transfer_log`
  says where each one came from (file:line of the caller).
* Reductions and scalar indexing return 0-d device arrays, as CuPy does.
* Under the simulator, an :class:`ndarray` passed to a numba.cuda kernel is handed to the
  kernel as the same memory (no copy), so in-place kernel writes land in the array.
* ``cupy.cuda``: ``Device().synchronize()``, ``get_current_stream()`` (ptr 0 = the null
  stream), ``MemoryHook``; :func:`get_default_memory_pool` with ``used_bytes``,
  ``total_bytes`` (high-water mark since the last ``free_all_blocks``) and ``free_all_blocks``.
* ``cupy.random.RandomState`` (NumPy's legacy generator, results on the device).

Strict where CuPy is stricter than NumPy (issue 22):

* **Only CuPy's names.** An attribute of the module, of an array, of ``cupy.random`` or of a
  ``RandomState`` that the real CuPy 14 lacks raises ``AttributeError``, and so does a keyword
  argument its function does not take (``TypeError``).  The list is ``_cupy_names.py``,
  generated once from the real package by ``tests/fakecupy/gen_names.py`` (its docstring says
  how to regenerate it).  Arrays have no ``__index__`` (CuPy's have none: ``range(n_dev)``
  fails); ``int()`` of a 0-d array is a counted transfer.
* **An element is a view.** ``a[i]`` (integer indexing down to one element) returns a 0-d
  array that *shares memory* with ``a``, as CuPy's does -- NumPy returns a copied scalar, so
  ``old = a[i]; a[i] = old + h`` changes ``old`` here and in CuPy, not in NumPy.
* **Calls that synchronise in CuPy are counted as transfers**: ``shares_memory`` (CuPy's exact
  check gathers and sorts the element addresses and ends in ``bool(...)``), ``nonzero``,
  ``flatnonzero``, ``argwhere``, one-argument ``where``, ``unique``, ``bincount``,
  ``compress``, ``extract``, ``histogram``, ``repeat`` with an array of repeats and boolean-mask
  indexing (the output size must be read first).
* **Missing CUDA libraries**: ``FAKECUPY_MISSING=cublas,curand,nvrtc`` (any of them) makes the
  stand-in behave like a CuPy whose wheel cannot find that library: ``cublas`` -- the cuBLAS
  handle and the GEMMs (``matmul``, ``dot``, ``tensordot``, ``einsum``, ``@``) raise CuPy's
  ``ImportError: libcublas.so.12: cannot open shared object file``; ``curand`` -- creating a
  ``cupy.random.RandomState``; ``nvrtc`` -- the first elementwise kernel (any arithmetic).
"""

from __future__ import annotations

import os
import sys
import traceback
import weakref
from types import ModuleType
from typing import Any

import numpy as _np

from . import _cupy_names as _names

__version__ = "0.0-fake"
_host = _np.ndarray

_LIBS = {"cublas": "libcublas.so.12", "curand": "libcurand.so.10", "nvrtc": "libnvrtc.so.12"}


def missing() -> frozenset[str]:
    """The CUDA libraries this stand-in pretends it cannot load (``FAKECUPY_MISSING``, read at
    each call)."""
    return frozenset(s.strip() for s in os.environ.get("FAKECUPY_MISSING", "").split(",")
                     if s.strip())
def _need(lib: str) -> None:
    """Raise what CuPy raises when ``lib`` cannot be loaded (``FAKECUPY_MISSING``)."""
    if lib in missing():
        raise ImportError(f"{_LIBS[lib]}: cannot open shared object file: No such file or "
                          "directory")


def _check_keywords(table: dict, owner: str, name: str, kw: dict) -> None:
    """``TypeError`` for a keyword that the real CuPy's ``owner.name`` does not take."""
    allowed = table.get(name)
    bad = [k for k in kw if allowed is not None and k not in allowed]
    if bad:
        raise TypeError(f"fake cupy: {owner}.{name}() got keyword(s) {bad} that CuPy "
                        f"{_names.VERSION} does not take (it takes {list(allowed)})")


def _no_such(owner: str, name: str) -> AttributeError:
    return AttributeError(f"fake cupy: {owner} has no attribute {name!r} in the real CuPy "
                          f"{_names.VERSION} (tests/fakecupy/cupy/_cupy_names.py)")


# -----------------------------------------------------------------------------------------
# transfer counting
# -----------------------------------------------------------------------------------------

_count = {"d2h": 0, "h2d": 0}
_log: list[str] = []


def _where() -> str:
    """file:line of the first caller outside this package."""
    for fr in reversed(traceback.extract_stack()[:-2]):
        if "fakecupy" not in fr.filename:
            return f"{fr.filename}:{fr.lineno} ({fr.name})"
    return "?"


def _d2h(what: str) -> None:
    _count["d2h"] += 1
    if len(_log) < 1000:
        _log.append(f"{what} at {_where()}")


def transfers(kind: str = "d2h") -> int:
    """How many device->host (``"d2h"``) or host->device (``"h2d"``) transfers so far."""
    return _count[kind]


def reset_transfers() -> None:
    """Zero the transfer counts and the log."""
    _count["d2h"] = _count["h2d"] = 0
    _log.clear()


def transfer_log() -> list[str]:
    """Where each device->host transfer since the last reset came from (at most 1000)."""
    return list(_log)


# -----------------------------------------------------------------------------------------
# the memory pool: bytes of the live device buffers
# -----------------------------------------------------------------------------------------

class MemoryPool:
    """``cupy.get_default_memory_pool()``: bytes held by live device arrays that own memory."""

    def __init__(self) -> None:
        self._used = 0
        self._total = 0

    def _alloc(self, n: int) -> None:
        self._used += n
        self._total = max(self._total, self._used)
        for h in list(cuda._hooks):
            h.malloc_postprocess(device_id=0, size=n, mem_size=n, mem_ptr=0, pmem_id=0)

    def _free(self, n: int) -> None:
        self._used -= n
        for h in list(cuda._hooks):
            h.free_postprocess(device_id=0, mem_size=n, mem_ptr=0, pmem_id=0)

    def used_bytes(self) -> int:
        return self._used

    def total_bytes(self) -> int:
        return self._total

    def free_bytes(self) -> int:
        return self._total - self._used

    def free_all_blocks(self) -> None:
        self._total = self._used

    def n_free_blocks(self) -> int:
        return 0


_pool = MemoryPool()


def get_default_memory_pool() -> MemoryPool:
    return _pool


class _PinnedPool:
    def free_all_blocks(self) -> None:
        pass

    def n_free_blocks(self) -> int:
        return 0


def get_default_pinned_memory_pool() -> _PinnedPool:
    return _PinnedPool()


# -----------------------------------------------------------------------------------------
# the array
# -----------------------------------------------------------------------------------------

def _unwrap(x: Any, *, host_ok: bool = False) -> Any:
    """The NumPy array inside ``x`` (recursively in lists and tuples); a host ndarray raises
    ``TypeError`` unless ``host_ok`` (CuPy does not mix host and device arrays)."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, _host) and not host_ok:
        raise TypeError(f"fake cupy: a numpy.ndarray {x.shape} where a cupy array is needed "
                        "(real CuPy refuses implicit host->device conversion; use cupy.asarray)")
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v, host_ok=host_ok) for v in x)
    return x


def _wrap(x: Any) -> Any:
    """NumPy results as device arrays (scalars as 0-d arrays); everything else as it is."""
    if isinstance(x, _host):
        return ndarray._of(x)
    if isinstance(x, _np.generic) and not isinstance(x, (_np.str_, _np.bytes_, _np.void)):
        return ndarray._of(_np.asarray(x))
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    if isinstance(x, list):
        return [_wrap(v) for v in x]
    return x


def _owner(a: _host) -> _host:
    while isinstance(a.base, _host):
        a = a.base
    return a


class ndarray:  # noqa: N801 - CuPy's name
    """A device array: a NumPy array that only leaves the 'device' through counted calls."""

    __array_priority__ = 100
    __array_ufunc__ = None      # NumPy defers binary operators to us (and we refuse host arrays)
    _owned: dict[int, Any] = {}

    def __init__(self, shape: Any, dtype: Any = float, order: str = "C") -> None:
        self._a = _np.empty(shape, dtype=dtype, order=order)
        self._track()

    @classmethod
    def _of(cls, a: _host) -> ndarray:
        obj = cls.__new__(cls)
        obj._a = a
        obj._track()
        return obj

    def _track(self) -> None:
        """Count the bytes of a newly seen buffer in the memory pool until it is freed."""
        own = _owner(self._a)
        key = id(own)
        if key in ndarray._owned:
            return
        n = int(own.nbytes)
        _pool._alloc(n)

        def gone(key: int = key, n: int = n) -> None:
            ndarray._owned.pop(key, None)
            _pool._free(n)

        ndarray._owned[key] = weakref.finalize(own, gone)

    # --- counted device->host transfers ------------------------------------------------
    def get(self, stream: Any = None, order: str = "C", out: Any = None) -> _host:
        _d2h("ndarray.get()")
        if out is not None:
            out[...] = self._a
            return out
        return _np.array(self._a, order=order, copy=True)

    def __float__(self) -> float:
        _d2h("float(ndarray)")
        return float(self._a)

    def __int__(self) -> int:
        _d2h("int(ndarray)")
        return int(self._a)

    def __bool__(self) -> bool:
        _d2h("bool(ndarray)")
        return bool(self._a)

    def __complex__(self) -> complex:
        _d2h("complex(ndarray)")
        return complex(self._a)

    def item(self, *args: Any) -> Any:
        _d2h("ndarray.item()")
        return self._a.item(*args)

    def tolist(self) -> Any:
        _d2h("ndarray.tolist()")
        return self._a.tolist()

    def __array__(self, dtype: Any = None, copy: Any = None) -> _host:
        _d2h("numpy.asarray(ndarray)")
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use "
                        "`.get()` to construct a NumPy array explicitly.")

    # --- numba simulator: the kernel gets this very memory ------------------------------
    def to_device(self, retr: list, stream: Any = 0) -> Any:
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

        return FakeCUDAArray(self._a)

    # --- attributes that stay on the device ---------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: ndarray._of(self._a.T))
    real = property(lambda self: ndarray._of(self._a.real))
    base = property(lambda self: None if self._a.base is None else ndarray._of(self._a.base))
    device = property(lambda self: cuda.Device(0))

    @property
    def data(self) -> Any:
        return cuda.MemoryPointer(self._a)

    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self):
        for i in range(len(self._a)):
            yield self[i]

    def __repr__(self) -> str:
        return f"cupy.ndarray(shape={self._a.shape}, dtype={self._a.dtype})"

    __str__ = __repr__

    def __getitem__(self, key: Any) -> ndarray:
        _count_mask(key)
        k = _unwrap(key, host_ok=True)
        r = self._a[k]
        if isinstance(r, _np.generic):  # one element: CuPy gives a 0-d VIEW, NumPy a copy
            r = self._a[(*(k if isinstance(k, tuple) else (k,)), Ellipsis)]
        return _wrap(r)

    def __setitem__(self, key: Any, value: Any) -> None:
        _count_mask(key)
        self._a[_unwrap(key, host_ok=True)] = _unwrap(value)

    def __matmul__(self, other: Any) -> Any:
        _need("cublas")
        return _wrap(self._a @ _unwrap(other))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name not in _names.NDARRAY:
            raise _no_such("cupy.ndarray", name)
        attr = getattr(self._a, name)
        if callable(attr):
            def method(*args: Any, **kw: Any) -> Any:
                _check_keywords(_names.NDARRAY, "cupy.ndarray", name, kw)
                if name == "nonzero" or (name == "repeat" and args
                                         and isinstance(args[0], ndarray)):
                    _d2h(f"ndarray.{name}()")
                return _wrap(attr(*_unwrap(args), **{k: _unwrap(v) for k, v in kw.items()}))

            method.__name__ = name
            return method
        return _wrap(attr)

    def __copy__(self) -> ndarray:
        return ndarray._of(self._a.copy())

    def __deepcopy__(self, memo: Any) -> ndarray:
        return ndarray._of(self._a.copy())

    def __reduce__(self) -> Any:
        raise TypeError("fake cupy arrays are not picklable (real CuPy would copy to host)")


def _binary(name: str) -> None:
    op = getattr(_host, name)

    def f(self: ndarray, other: Any) -> Any:
        _need("cublas" if "matmul" in name else "nvrtc")
        r = op(self._a, _unwrap(other))
        return r if r is NotImplemented else _wrap(r)

    f.__name__ = name
    setattr(ndarray, name, f)


def _inplace(name: str) -> None:
    op = getattr(_host, name)

    def f(self: ndarray, other: Any) -> ndarray:
        _need("cublas" if "matmul" in name else "nvrtc")
        op(self._a, _unwrap(other))
        return self

    f.__name__ = name
    setattr(ndarray, name, f)


def _unary(name: str) -> None:
    op = getattr(_host, name)

    def f(self: ndarray) -> ndarray:
        _need("nvrtc")
        return _wrap(op(self._a))

    f.__name__ = name
    setattr(ndarray, name, f)


def _count_mask(key: Any) -> None:
    """Boolean-mask indexing syncs in CuPy (the output size is read first): count it."""
    keys = key if isinstance(key, tuple) else (key,)
    if any(isinstance(k, ndarray) and k.dtype == _np.bool_ for k in keys):
        _d2h("boolean-mask indexing")


for _n in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "and", "or",
           "xor", "lshift", "rshift"):
    _binary(f"__{_n}__")
    _binary(f"__r{_n}__")
    _inplace(f"__i{_n}__")
_binary("__rmatmul__")
for _n in ("lt", "le", "eq", "ne", "gt", "ge"):
    _binary(f"__{_n}__")
for _n in ("neg", "pos", "abs", "invert"):
    _unary(f"__{_n}__")
ndarray.__hash__ = None  # type: ignore[assignment]

try:  # numba's simulator hands ArgHint arguments to kernels through to_device (no copy)
    from numba.cuda.args import ArgHint as _ArgHint

    _ArgHint.register(ndarray)
except (ImportError, AttributeError):  # numba without its cuda package; numba-cuda's ArgHint
    pass                               # is no ABC (its simulator is not what the tests use)


# -----------------------------------------------------------------------------------------
# module-level functions
# -----------------------------------------------------------------------------------------

from . import cuda, random  # noqa: E402, F401  (submodules, as in CuPy)


def is_available() -> bool:
    return True


def asarray(a: Any, dtype: Any = None, order: Any = None, **kw: Any) -> ndarray:
    """Host data -> device (counted as host->device); a device array stays (cast if asked)."""
    _check_keywords(_names.MODULE, "cupy", "asarray", kw)
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == _np.dtype(dtype) else \
            ndarray._of(a._a.astype(dtype))
    _count["h2d"] += 1
    return ndarray._of(_np.array(a, dtype=dtype, order=order or "K", copy=True))


def array(a: Any, dtype: Any = None, copy: bool = True, order: str = "K", **kw: Any) -> ndarray:
    _check_keywords(_names.MODULE, "cupy", "array", kw)
    if isinstance(a, ndarray):
        return ndarray._of(_np.array(a._a, dtype=dtype, copy=copy, order=order))
    _count["h2d"] += 1
    return ndarray._of(_np.array(_unwrap(a, host_ok=True), dtype=dtype, order=order,
                                 copy=True))


def ascontiguousarray(a: Any, dtype: Any = None) -> ndarray:
    if not isinstance(a, ndarray):
        a = asarray(a)
    return ndarray._of(_np.ascontiguousarray(a._a, dtype=dtype))


def asnumpy(a: Any, stream: Any = None, order: str = "C", out: Any = None) -> _host:
    if isinstance(a, ndarray):
        return a.get(order=order, out=out)
    return _np.asarray(a, order=order)


def get_array_module(*args: Any) -> ModuleType:
    return sys.modules[__name__] if any(isinstance(a, ndarray) for a in args) else _np


def fuse(*args: Any, **kw: Any) -> Any:
    if args and callable(args[0]):
        return args[0]
    return lambda f: f


#: functions that synchronise with the device in CuPy (they read a size or a flag on the host)
SYNCING = frozenset({"shares_memory", "nonzero", "flatnonzero", "argwhere", "unique",
                     "bincount", "compress", "extract", "histogram"})
#: the GEMMs that go through cuBLAS
GEMMS = frozenset({"matmul", "dot", "tensordot", "einsum", "inner", "vdot", "outer"})


def __getattr__(name: str) -> Any:
    """Every other name that the real CuPy has is NumPy's, run on the arrays inside (results
    back on the device); a name CuPy lacks raises ``AttributeError``."""
    if name not in _names.MODULE or name.startswith("__"):
        raise _no_such("module 'cupy'", name)
    attr = getattr(_np, name)
    if isinstance(attr, (type, ModuleType)) or not callable(attr):
        return attr

    def fn(*args: Any, **kw: Any) -> Any:
        _check_keywords(_names.MODULE, "cupy", name, kw)
        if name in GEMMS:
            _need("cublas")
        elif isinstance(attr, _np.ufunc):
            _need("nvrtc")
        if name in SYNCING or (name == "where" and len(args) + len(kw) == 1) or \
                (name == "repeat" and len(args) > 1 and isinstance(args[1], ndarray)):
            _d2h(f"cupy.{name}()")
        return _wrap(attr(*_unwrap(args), **{k: _unwrap(v) for k, v in kw.items()}))

    fn.__name__ = name
    globals()[name] = fn
    return fn
