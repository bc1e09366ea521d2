"""The device seam: which array module (``xp``) and which kernel set a computation uses.

Two devices exist:

* ``"cpu"`` -- NumPy arrays; GEMMs through NumPy's BLAS; loops through the Numba kernels of
  :mod:`pysnn_ref.kernels.cpu` (or, for teaching and testing, the plain loops of
  :mod:`pysnn_ref.kernels.reference`, see :func:`use_cpu_kernels`).
* ``"gpu"`` -- CuPy arrays; GEMMs through cuBLAS; loops through the numba.cuda kernels of
  :mod:`pysnn_ref.kernels.cuda`.

Functional code never imports a kernel module itself. It asks for the module that belongs to its
input array::

    xp = array_module(x)      # numpy or cupy
    K = kernels_for(x)        # kernels.cpu / kernels.reference / kernels.cuda

CuPy and numba.cuda are imported only when the GPU is chosen (or a CuPy array is seen), so the
CPU path never needs them installed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from .errors import GPUUnavailableError

__all__ = ["DEVICES", "CPU_KERNEL_SETS", "Backend", "set_blas_threads", "GPU_INSTALL_HINT",
    "cpu_kernels_cached", "probe_gpu_random", "gpu_for_rank", "select_gpu", "get_backend",
    "is_gpu_array", "array_module", "kernels_for", "family_kernels_for", "backend_of", "to_numpy",
    "data_address", "same_view", "as_scalar", "host_scalars", "use_cpu_kernels"]

DEVICES = ("cpu", "gpu")
CPU_KERNEL_SETS = ("numba", "reference")

_cpu_kernel_set = "numba"
_gpu_backend: Backend | None = None
_blas_configured = False


@dataclass(frozen=True)
class Backend:
    """A device: its name, its array module and its kernel module."""

    name: str
    xp: ModuleType
    kernels: ModuleType

    def asarray(self, x: Any, dtype: Any = None) -> Any:
        """Move ``x`` to this device (one host-to-device copy on the GPU; a device array moved
        to the CPU is copied back with ``.get()``, as CuPy refuses ``numpy.asarray`` of one)."""
        if self.name == "cpu" and is_gpu_array(x):
            x = to_numpy(x)
        return self.xp.asarray(x, dtype=dtype)

    def to_numpy(self, x: Any) -> np.ndarray:
        """Bring ``x`` back to the host as a NumPy array."""
        return to_numpy(x)

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op on the CPU); benchmarks call it before timing."""
        if self.name == "gpu":
            self.xp.cuda.get_current_stream().synchronize()

    def mark(self) -> Any:
        """A point in time on this device's queue, for :meth:`elapsed`: the host clock on the
        CPU, a CUDA event recorded on the current stream on the GPU (no host sync)."""
        if self.name == "gpu":
            ev = self.xp.cuda.Event()
            ev.record()
            return ev
        return time.perf_counter()

    def elapsed(self, start: Any, end: Any) -> float:
        """Seconds of device work between two :meth:`mark` points (on the GPU this waits for
        ``end`` to be reached)."""
        if self.name == "gpu":
            end.synchronize()
            return self.xp.cuda.get_elapsed_time(start, end) / 1e3
        return end - start


def _openmp_started() -> bool:
    """Whether Numba's OpenMP threading layer is already running (its wait policy is then
    fixed for the life of the process)."""
    try:
        import numba
        from numba.np.ufunc import parallel as _parallel

        return bool(getattr(_parallel, "_is_initialized", False)) and \
            numba.threading_layer() == "omp"
    except (ImportError, ValueError):
        return False


def _openmp_wait_policy(blas_threads: int) -> None:
    """Make Numba's idle OpenMP workers sleep (``OMP_WAIT_POLICY=PASSIVE``) when BLAS runs more
    than one thread of its own; leave GNU OpenMP's default otherwise.

    The CPU kernels alternate with BLAS calls.  GNU OpenMP's default keeps an idle worker
    spinning for a while after each parallel region (then it sleeps).  With a multi-threaded
    BLAS that spinning worker steals a core from the BLAS call that runs next (measured on 2
    cores: im2col + GEMM 2.1 s instead of 0.3 s), so PASSIVE is set.  With one BLAS thread (the
    library's default, ``blas_threads == 1``) the BLAS call runs on the main thread and the
    spinning worker takes nothing from it, while a sleeping one must be woken by the kernel at
    every one of the step's ~100 parallel launches: measured on a 2-core Xeon (T = 20, B = 64),
    the MLP's bptt step 4.1-4.3 ms with the default against 5.6-5.7 ms with PASSIVE, so the
    default is kept.  The policy is read when the OpenMP runtime loads (Numba loads it at the
    first parallel launch); an explicit user setting always wins, and a call after the runtime
    started warns how to fix it.
    """
    import os

    if blas_threads == 1 or "OMP_WAIT_POLICY" in os.environ:
        return
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    if _openmp_started():
        import warnings

        warnings.warn("numba's OpenMP threads started before BLAS was given more than one "
                      "thread, so their busy-waiting will slow the BLAS calls between kernels; "
                      "set OMP_WAIT_POLICY=PASSIVE in the environment (or PYSNN_BLAS_THREADS "
                      "before importing pysnn_ref)", RuntimeWarning, stacklevel=3)


def _env_blas_threads() -> int:
    """``PYSNN_BLAS_THREADS`` (default 1; 0 = leave BLAS alone) as an int."""
    import os

    env = os.environ.get("PYSNN_BLAS_THREADS", "1")
    try:
        return int(env)
    except ValueError:
        raise ValueError(f"PYSNN_BLAS_THREADS must be an integer, got {env!r}") from None


with contextlib.suppress(ValueError):  # a bad value is reported at the first CPU kernel use
    _openmp_wait_policy(_env_blas_threads())


def set_blas_threads(n: int) -> None:
    """Limit NumPy's BLAS (OpenBLAS/MKL) to ``n`` threads, through threadpoolctl.

    The CPU path alternates BLAS GEMMs with Numba's parallel kernels.  When both keep their own
    thread pools busy on a small machine they fight for the cores: measured here (2 cores),
    small GEMMs ran up to 100x slower and a whole training run 1.6-5x slower with the default
    BLAS threads.  The library therefore sets one BLAS thread the first time a CPU kernel is
    used (the second BLAS thread adds under 10 % to a large GEMM on these machines); set the
    environment variable ``PYSNN_BLAS_THREADS`` (0 = leave BLAS alone) or call this to change it.
    """
    global _blas_configured
    _blas_configured = True
    _openmp_wait_policy(n)
    if n <= 0:
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return
    threadpool_limits(limits=int(n), user_api="blas")


def _configure_cpu_threads() -> None:
    if not _blas_configured:
        set_blas_threads(_env_blas_threads())


def _cpu_kernels() -> ModuleType:
    _configure_cpu_threads()
    if _cpu_kernel_set == "reference":
        from .kernels import reference

        return reference
    from .kernels import cpu

    cpu.tune_malloc_once()  # glibc's malloc thresholds, once per process (kernels/cpu/malloc.py)
    return cpu


#: how to get the GPU stack (the package is not on the package index: install the checkout)
GPU_INSTALL_HINT = 'install the GPU extra from the repository checkout: pip install -e ".[gpu]"'


def cpu_kernels_cached() -> bool:
    """Whether Numba's on-disk cache already holds compiled CPU kernels (``cache=True`` writes
    ``*.nbi`` index files into ``kernels/cpu/__pycache__``). False on a first run, which then
    spends about half a minute compiling: callers say so instead of showing a slow first epoch
    without a word. Read from the file system only (nothing is imported or compiled)."""
    cache = Path(__file__).resolve().parent / "kernels" / "cpu" / "__pycache__"
    return cache.is_dir() and any(cache.glob("*.nbi"))


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".strip()


def _probe(what: str, call: Any) -> Any:
    """Run ``call()``; any failure becomes one :class:`GPUUnavailableError` line naming
    ``what`` (the library), the error's first line and the install hint."""
    try:
        return call()
    except Exception as e:  # noqa: BLE001 - ImportError, CUDARuntimeError, CudaSupportError ...
        raise GPUUnavailableError(f"device 'gpu': {what} does not work ({_first_line(e)}); "
                                  f"{GPU_INSTALL_HINT}") from None


def _probe_gpu(cupy: ModuleType, cuda_kernels: ModuleType) -> None:
    """The start-up probe of ``--device gpu``: everything every GPU run loads, tried once.

    * cuBLAS -- a handle (loads ``libcublas``; every Linear and Conv2d GEMM needs it);
    * NVRTC -- one CuPy elementwise kernel (CuPy compiles its kernels at run time);
    * numba.cuda -- one launch of a one-line kernel, then a stream synchronisation (NVVM, the
      driver's PTX JIT); nothing is read back, so the probe adds no device->host transfer.

    Without this a missing library shows up as an ``ImportError`` in the middle of the first
    step (issue 22: ``cupy-cuda12x`` without its CUDA library wheels brings no cuBLAS).
    cuRAND is probed by :func:`probe_gpu_random`, only for runs that draw random numbers.
    """
    _probe("cuBLAS (libcublas.so.12)", lambda: cupy.cuda.device.get_cublas_handle())
    _probe("NVRTC (libnvrtc.so.12, CuPy's run-time kernel compiler)",
           lambda: cupy.zeros(1, dtype=np.float32) + np.float32(1))
    def launch() -> None:
        cuda_kernels.launch_probe(cupy.zeros(4, dtype=np.int32))
        cupy.cuda.get_current_stream().synchronize()  # a failed launch raises here at the latest

    _probe("numba.cuda (a kernel launch: NVVM and the driver)", launch)


_gpu_random_ok = False


def probe_gpu_random() -> None:
    """Probe cuRAND (``libcurand``) once: the device Poisson encoder draws through it.

    Raises :class:`GPUUnavailableError` (one line: the library and the install hint)."""
    global _gpu_random_ok
    if _gpu_random_ok:
        return
    cupy = _load_gpu().xp
    _probe("cuRAND (libcurand.so.10, the Poisson encoder's random numbers)",
           lambda: cupy.random.RandomState(0).random_sample(size=(1,), dtype=np.float32))
    _gpu_random_ok = True


def _load_gpu() -> Backend:
    """Import CuPy and numba.cuda, check that a device is usable and probe what every GPU run
    loads (:func:`_probe_gpu`); one clear error if not."""
    global _gpu_backend
    if _gpu_backend is not None:
        return _gpu_backend
    hint = GPU_INSTALL_HINT
    try:
        import cupy
    except ImportError:
        raise GPUUnavailableError(
            f"device 'gpu' needs CuPy, which is not installed; {hint}") from None
    try:
        usable = bool(cupy.is_available())
    except Exception:  # noqa: BLE001 - any CuPy failure means the same thing to the user
        usable = False
    if not usable:
        raise GPUUnavailableError(
            "device 'gpu' needs a usable NVIDIA GPU, but CuPy finds none (no driver or no device); "
            "use --device cpu"
        )
    try:
        from numba import cuda
    except ImportError:
        raise GPUUnavailableError(
            f"device 'gpu' needs numba-cuda, which is not installed; {hint}") from None
    try:
        ok = bool(cuda.is_available())
    except Exception:  # noqa: BLE001 - CudaSupportError and friends
        ok = False
    if not ok:
        raise GPUUnavailableError(
            "device 'gpu': numba.cuda cannot reach the CUDA driver; check the NVIDIA driver, "
            f"or {hint}"
        )
    cuda_kernels = _probe("numba.cuda (the kernel module)", _import_cuda_kernels)
    _probe_gpu(cupy, cuda_kernels)
    _gpu_backend = Backend("gpu", cupy, cuda_kernels)
    return _gpu_backend


def _import_cuda_kernels() -> ModuleType:
    from .kernels import cuda as cuda_kernels

    return cuda_kernels


def gpu_for_rank(local_rank: int, n_devices: int) -> int:
    """The GPU of the ``local_rank``-th process on a machine with ``n_devices`` visible GPUs:
    ``local_rank % n_devices`` (one GPU per rank; with ``CUDA_VISIBLE_DEVICES`` set per rank
    by the launcher, each rank sees one GPU and takes it)."""
    if n_devices < 1:
        raise ValueError(f"n_devices must be >= 1, got {n_devices}")
    if local_rank < 0:
        raise ValueError(f"local_rank must be >= 0, got {local_rank}")
    return local_rank % n_devices


def select_gpu(local_rank: int) -> int:
    """Make GPU :func:`gpu_for_rank` current for CuPy and numba.cuda in this process, before
    anything touches the device (``--distributed``: otherwise every rank runs on GPU 0).
    Returns the device id.  Raises :class:`GPUUnavailableError` without a usable GPU."""
    try:
        import cupy

        n = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as e:  # noqa: BLE001 - ImportError, CUDARuntimeError
        raise GPUUnavailableError(f"device 'gpu': no GPU to select ({_first_line(e)}); "
                                  f"{GPU_INSTALL_HINT}") from None
    dev = gpu_for_rank(local_rank, n)
    cupy.cuda.Device(dev).use()
    from numba import cuda

    cuda.select_device(dev)
    return dev


def get_backend(device: str = "cpu", *, need_random: bool = False) -> Backend:
    """Return the :class:`Backend` for ``device`` ("cpu" or "gpu").

    Raises ``ValueError`` for an unknown name and :class:`GPUUnavailableError` when the GPU is
    asked for but is not usable, or lacks a library the run needs (probed at the first call:
    cuBLAS, NVRTC, a numba.cuda launch; cuRAND too with ``need_random``, for a Poisson input).
    """
    if device == "cpu":
        return Backend("cpu", np, _cpu_kernels())
    if device == "gpu":
        be = _load_gpu()
        if need_random:
            probe_gpu_random()
        return be
    raise ValueError(f"device must be one of {DEVICES}, got {device!r}")


def is_gpu_array(x: Any) -> bool:
    """True for a CuPy array (checked by type name, so CuPy need not be importable)."""
    return type(x).__module__.startswith("cupy")


def array_module(x: Any) -> ModuleType:
    """``numpy`` for NumPy arrays, ``cupy`` for CuPy arrays."""
    if is_gpu_array(x):
        return _load_gpu().xp
    return np


def kernels_for(x: Any) -> ModuleType:
    """The kernel module that operates on arrays like ``x``."""
    if is_gpu_array(x):
        return _load_gpu().kernels
    return _cpu_kernels()


def family_kernels_for(x: Any) -> ModuleType:
    """The kernel module of the T-independent family (DSR, OTTT / SLTT, rate-based backprop) for
    arrays like ``x``: :mod:`pysnn_ref.kernels.cpu_family` (Numba), or
    :mod:`pysnn_ref.kernels.reference_family` under ``use_cpu_kernels("reference")``; for a
    GPU array :mod:`pysnn_ref.kernels.cuda_family` (numba.cuda)."""
    if is_gpu_array(x):
        _load_gpu()  # the GPU probes (one clear error if something is missing)
        from .kernels import cuda_family

        return cuda_family
    _configure_cpu_threads()
    if _cpu_kernel_set == "reference":
        from .kernels import reference_family

        return reference_family
    from .kernels import cpu_family

    return cpu_family


def backend_of(x: Any) -> Backend:
    """The :class:`Backend` an array lives on."""
    return get_backend("gpu" if is_gpu_array(x) else "cpu")


def to_numpy(x: Any) -> np.ndarray:
    """A host copy of ``x`` (``x`` itself if it is already a NumPy array)."""
    if is_gpu_array(x):
        return x.get()
    return np.asarray(x)


def data_address(x: Any) -> int:
    """The address of ``x``'s first element, read on the host (no device sync): NumPy's
    ``__array_interface__`` data pointer, CuPy's ``x.data.ptr``."""
    if is_gpu_array(x):
        return int(x.data.ptr)
    return int(np.asarray(x).__array_interface__["data"][0])


def same_view(a: Any, b: Any) -> bool:
    """True when ``a`` and ``b`` are views of the same elements: same device, start address,
    shape, strides and dtype.

    A host-side check in place of ``xp.shares_memory``: CuPy's exact ``shares_memory`` builds
    and sorts an array of every element's address on the device and ends in ``bool(...)``, a
    device->host sync per call (issue 22).  Stricter than sharing memory -- two different
    views of one buffer are not the same view -- which is what a cache keyed on its input
    needs."""
    return (is_gpu_array(a) == is_gpu_array(b) and a.shape == b.shape
            and a.strides == b.strides and a.dtype == b.dtype
            and data_address(a) == data_address(b))


def as_scalar(x: Any) -> Any:
    """A reduction's result as a float64 scalar where it lives: a Python ``float`` for a host
    value, a 0-d float64 array for a device value (no device->host sync; ``float()`` of it
    reads it when the value is needed on the host)."""
    if is_gpu_array(x):
        return x.astype(np.float64)
    return float(x)


def host_scalars(values: Sequence[Any]) -> np.ndarray:
    """The scalars ``values`` as a float64 host vector, with one device->host transfer for all
    of those that live on the device (0-d CuPy arrays are stacked on the device first).

    Host numbers (Python or NumPy scalars) are taken as they are, so on the CPU this costs
    nothing.  The training loop keeps its per-batch sums on the device and reads them here,
    once per read-out instead of once per batch.
    """
    out = np.empty(len(values), dtype=np.float64)
    dev = [i for i, v in enumerate(values) if is_gpu_array(v)]
    for i, v in enumerate(values):
        if i not in dev:
            out[i] = float(v)
    if dev:
        xp = array_module(values[dev[0]])
        out[dev] = to_numpy(xp.stack([values[i].astype(np.float64).reshape(()) for i in dev]))
    return out


@contextlib.contextmanager
def use_cpu_kernels(name: str) -> Iterator[None]:
    """Run CPU computations with the ``"numba"`` (default) or ``"reference"`` kernels.

    The reference kernels are the plain NumPy loops that read like the equations; they are slow
    and meant for reading, teaching and testing::

        with use_cpu_kernels("reference"):
            o, cache = lif_forward(I, lam=0.5, v_th=1.0)
    """
    global _cpu_kernel_set
    if name not in CPU_KERNEL_SETS:
        raise ValueError(f"kernels must be one of {CPU_KERNEL_SETS}, got {name!r}")
    old, _cpu_kernel_set = _cpu_kernel_set, name
    try:
        yield
    finally:
        _cpu_kernel_set = old
