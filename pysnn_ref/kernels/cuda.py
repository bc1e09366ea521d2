"""numba.cuda kernels: the computations of :mod:`pysnn_ref.kernels.reference`, on the GPU.

Same signatures and return values as the reference and CPU modules; tests assert equality
(float64, rel <= 1e-10) by running these kernels in numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``), and ``numba.cuda.compile_ptx`` proves they compile for real GPUs.

How the kernels are built (SpikingJelly's fused multi-step pattern,
github.com/fangwei123456/spikingjelly):

* Neuron tensors are ``(T, N)``. **One thread per neuron**; the whole time loop runs inside the
  thread with the membrane state in a register, so a T-step forward or backward is one launch,
  not T. Thread ``n`` reads column ``n`` of row ``t``, so the threads of a warp touch consecutive
  addresses at every step (coalesced).
* The backward recomputes the spike and the surrogate gradient from the stored pre-reset
  membrane ``u`` instead of storing them.
* The scalar surrogate formulas are not re-written here: the reference module's own
  ``surrogate_primitive_scalar``, ``surrogate_grad_scalar`` and ``heaviside`` are compiled with
  ``cuda.jit(device=True)`` (their float literals cast to the array dtype), so each formula has
  one definition for all three kernel sets.
* Launch configuration: :func:`launch_config`, one thread per independent item; every kernel
  bounds-checks its index and strides over the grid, so any ``n`` works.
* Kernels are compiled lazily for the argument types of the first call, so float32 and float64
  inputs each get their own machine code. Host wrappers cast the scalar parameters to the array
  dtype, so a float32 call gets float32 parameters. A float literal is float64 in Numba's
  typing, so the kernels with constants are built per dtype (:func:`_typed`) and write every
  constant as ``F(c)``; the reference's scalar surrogate formulas are re-compiled with their
  literals cast the same way (:func:`pysnn_ref.kernels.retype.retyped`). A float32 kernel does
  float32 maths only.

Arrays: the host wrappers take CuPy arrays on a real GPU -- passed straight to the kernels
(numba reads them through ``__cuda_array_interface__`` / DLPack, no host round trip) and launched
on CuPy's current stream -- and plain NumPy arrays under the simulator. Outputs are allocated with
the input's own array module (:func:`host_array_module`; kernels never import the
backend). The only CuPy-specific line is the stream lookup in :func:`_stream_for`.

Imported only when the GPU device is chosen (:mod:`pysnn_ref.backend`) or by the CUDA tests:
the CPU path never loads numba.cuda.

Sections: 1. surrogate functions; 2. LIF/IF neuron (BPTT); 2c. current-based (synaptic) LIF (its
kernels in :mod:`pysnn_ref.kernels.cuda_synaptic`); 3. LIF/IF streaming with spiking flows;
4. flow gains; 5. im2col / col2im; 6. pooling.
"""

from __future__ import annotations

import importlib
import os
import warnings
from types import SimpleNamespace
from typing import Any

import numpy as np
from numba import cuda

from . import reference as _ref
from .cuda_index import index_kernels
from .cuda_synaptic import synaptic_kernels
from .retype import retyped as _retyped

__all__ = ["PROVIDES", "LARGE_LAUNCH", "LARGE_PER_SM", "MAX_BLOCKS", "device_shape",
    "launch_config", "launch_probe", "launch",
    "host_array_module", "as_contiguous", "device_surrogates",
    "LOW_OCCUPANCY_BLOCKS", "SURROGATE_KINDS", "surrogate_primitive", "surrogate_grad",
    "lif_forward", "lif_forward_kernel", "lif_backward", "synaptic_forward", "synaptic_backward",
    "lif_forward_flows", "ssf_gain", "INDEX32_LIMIT", "im2col", "col2im", "maxpool2d_forward",
    "maxpool2d_backward"]

#: the fast paths of :data:`pysnn_ref.kernels.FAST_PATHS` this set has: none yet
PROVIDES: frozenset[str] = frozenset()

# --------------------------------------------------------------------------------------------
# 0. Launch configuration and the CuPy glue.
# --------------------------------------------------------------------------------------------

#: threads per block for small and large launches (multiples of the 32-thread warp)
TPB_SMALL, TPB_LARGE = 128, 256
#: 256-thread blocks from ``SMs x LARGE_PER_SM`` threads on (135,168 on an H100's 132 SMs)
LARGE_PER_SM = 1024
#: the large-launch threshold where the device cannot be read (the simulator): an H100's
LARGE_LAUNCH = 132 * LARGE_PER_SM
#: at most this many blocks per launch: every kernel is a grid-stride loop, so a capped grid
#: still covers every item (each thread takes items i, i + gridsize, ...).  The environment
#: variable ``PYSNN_CUDA_MAX_BLOCKS`` overrides it when this module is imported (the
#: end-to-end tests set 1: numba's simulator pays per block, so one block runs ~8x faster)
MAX_BLOCKS = int(os.environ.get("PYSNN_CUDA_MAX_BLOCKS", 1 << 14))

_DEVICE: list[tuple[int, int, int]] = []


def device_shape() -> tuple[int, int, int]:
    """``(SMs, warp size, max threads per block)`` of the current device, read once (driver
    attributes ``MULTIPROCESSOR_COUNT``, ``WARP_SIZE``, ``MAX_THREADS_PER_BLOCK``, no
    transfer); an H100's ``(132, 32, 1024)`` where they cannot be read (the simulator)."""
    if not _DEVICE:
        try:
            d = cuda.get_current_device()
            _DEVICE.append((int(d.MULTIPROCESSOR_COUNT), int(d.WARP_SIZE),
                            int(d.MAX_THREADS_PER_BLOCK)))
        except Exception:  # noqa: BLE001 - the simulator, or no driver: the stand-in shape
            _DEVICE.append((LARGE_LAUNCH // LARGE_PER_SM, 32, 1024))
    return _DEVICE[0]


def launch_config(n: int, max_blocks: int | None = None) -> tuple[int, int]:
    """``(blocks, threads_per_block)`` for ``n`` independent threads (n >= 1), from the device
    (:func:`device_shape`): 128 threads per block below ``SMs x`` :data:`LARGE_PER_SM` threads,
    256 from there on, at most the device's maximum and ``n`` rounded up to the warp size;
    ``ceil(n / threads_per_block)`` blocks, at most ``max_blocks`` (default :data:`MAX_BLOCKS`;
    the kernels stride over the grid).  A reasoned default, not a measured optimum: the
    reasoning is in docs/gpu.md ("Launch configuration")."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    sms, warp, max_tpb = device_shape()
    tpb = min(TPB_LARGE if n >= sms * LARGE_PER_SM else TPB_SMALL, max_tpb)
    tpb = min(tpb, warp * ((n + warp - 1) // warp))
    cap = MAX_BLOCKS if max_blocks is None else max_blocks
    if cap < 1:
        raise ValueError(f"max_blocks must be >= 1, got {cap}")
    return min((n + tpb - 1) // tpb, cap), tpb


def _is_gpu_array(x: Any) -> bool:
    """True for a CuPy array (by type name, so CuPy need not be importable)."""
    return type(x).__module__.startswith("cupy")


def host_array_module(x: Any) -> Any:
    """``cupy`` for a CuPy array, else ``numpy``: the kernels' own look-up, so that this module
    never imports :mod:`pysnn_ref.backend` (the layers stack downwards only)."""
    if _is_gpu_array(x):
        import cupy

        return cupy
    return np


def _stream_for(x: Any) -> Any:
    """CuPy's current stream for a CuPy array (the kernel is ordered with the CuPy work around
    it); numba's default stream otherwise (the simulator's NumPy arrays, CuPy's null stream)."""
    if _is_gpu_array(x):
        ptr = host_array_module(x).cuda.get_current_stream().ptr
        if ptr:
            return cuda.external_stream(ptr)
    return 0


def as_contiguous(xp: Any, x: Any, dtype: Any = None) -> Any:
    """``x`` C-contiguous (of ``dtype``), copied only when needed or when it is a read-only
    NumPy array (``broadcast_to``): the simulator writes a kernel's NumPy arguments back."""
    x = xp.ascontiguousarray(x, dtype=dtype)
    if xp is np and not x.flags.writeable:
        x = x.copy()
    return x


@cuda.jit
def _probe_kernel(out):
    """out[i] = i + 1: the start-up probe's one launch (backend._probe_gpu)."""
    i = cuda.grid(1)
    if i < out.size:
        out[i] = i + 1


def launch_probe(out: Any) -> Any:
    """Launch the one-line probe kernel on the int32 array ``out`` (it writes 1, 2, ...);
    returns ``out``.  Compiling and launching it needs what every kernel needs (NVVM, the
    driver's PTX JIT)."""
    _launch(_probe_kernel, out.size, out, out)
    return out


def _performance_warnings() -> tuple[type, ...]:
    """numba's NumbaPerformanceWarning classes (numba-cuda has its own, not a subclass)."""
    classes = []
    for mod in ("numba.core.errors", "numba.cuda.core.errors"):
        try:
            classes.append(importlib.import_module(mod).NumbaPerformanceWarning)
        except (ImportError, AttributeError):
            pass
    return tuple(classes)


#: numba-cuda warns "Grid size N will likely result in GPU under-utilization" below this many
#: blocks; a small layer's launch is small on purpose, so the library silences that warning
#: for its own launches of fewer blocks (and only while configuring them: nothing global)
LOW_OCCUPANCY_BLOCKS = 128
_PERF_WARNINGS = _performance_warnings()


def _launch(kernel: Any, n: int, x: Any, *args: Any) -> None:
    """Launch ``kernel`` with one thread per item for ``n`` items (nothing to do for n == 0)."""
    if n == 0:
        return
    blocks, tpb = launch_config(n)
    if blocks < LOW_OCCUPANCY_BLOCKS:
        with warnings.catch_warnings():
            for w in _PERF_WARNINGS:
                warnings.simplefilter("ignore", w)
            configured = kernel[blocks, tpb, _stream_for(x)]
    else:
        configured = kernel[blocks, tpb, _stream_for(x)]
    configured(*args)


def launch(kernel: Any, n: int, x: Any, *args: Any) -> None:
    """Launch ``kernel`` over ``n`` items on the stream of array ``x`` (:func:`launch_config`,
    the library's launch rule): the sibling kernel modules' (kernels/cuda_family.py) entry."""
    _launch(kernel, n, x, *args)


def device_surrogates(dtype: Any) -> tuple[Any, Any, Any]:
    """``(step, spike, grad)``: the device functions of section 1 in float ``dtype`` --
    ``step(v, I_t, lam, v_th, soft, smooth, kind, a) -> (u_t, o_t, v_t)`` (the neuron's step),
    ``spike(x, smooth, kind, a)`` (Heaviside or the primitive) and ``grad(x, kind, a)``, the
    reference's scalar formulas compiled once for every CUDA kernel module."""
    k = _typed(dtype)
    return k.step, k.spike, k.grad


# --------------------------------------------------------------------------------------------
# 1-4. Kernels with floating-point literals, built once per float dtype.
#    A float literal is float64 in Numba's typing, so ``1.0 - o`` with a float32 ``o`` would be
#    computed in float64.  These kernels therefore write every constant as ``F(c)``, F the
#    dtype's scalar type (np.float32 or np.float64), and are built by the factories below for
#    each dtype (:func:`_typed`); the reference module's scalar surrogate formulas are
#    re-compiled the same way (:func:`pysnn_ref.kernels.retype.retyped`: every float literal
#    c becomes F(c), math.pi becomes F(math.pi)), so they keep ONE definition and a float32
#    kernel does float32 maths only (tests/test_cuda_ptx.py: no f64 instruction in its PTX).
#    math.exp / tanh / atan of a float32 are the float32 libdevice functions.
# --------------------------------------------------------------------------------------------


def _surrogate_kernels(F: Any) -> dict[str, Any]:
    """Section 1: the surrogate formulas of reference.py in dtype ``F``; elementwise kernels."""
    _primitive = cuda.jit(device=True)(_retyped(_ref.surrogate_primitive_scalar, F))
    _grad = cuda.jit(device=True)(_retyped(_ref.surrogate_grad_scalar, F))
    _heaviside = cuda.jit(device=True)(_retyped(_ref.heaviside, F))

    @cuda.jit(device=True)
    def _spike(x, smooth, kind, a):
        """reference.spike_scalar: Heaviside, or the surrogate's primitive in smooth mode."""
        if smooth:
            return _primitive(x, kind, a)
        return _heaviside(x)

    # the neuron's step and its BPTT adjoint: the reference's scalar functions, compiled
    _step = cuda.jit(device=True)(_retyped(_ref.membrane_step_scalar, F, spike_scalar=_spike))
    _adjoint = cuda.jit(device=True)(_retyped(_ref.membrane_adjoint_scalar, F,
                                              surrogate_grad_scalar=_grad, spike_scalar=_spike))

    @cuda.jit
    def _surrogate_primitive_kernel(x, kind, a, out):
        """out[i] = primitive(x[i]); x, out flat (n,). Launch: launch_config(n), grid-stride."""
        for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):  # grid-stride
            out[i] = _primitive(x[i], kind, a)

    @cuda.jit
    def _surrogate_grad_kernel(x, kind, a, out):
        """out[i] = surrogate'(x[i]); x, out flat (n,). Launch: launch_config(n), grid-stride."""
        for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):  # grid-stride
            out[i] = _grad(x[i], kind, a)

    return {"spike": _spike, "grad": _grad, "primitive": _primitive, "step": _step,
            "adjoint": _adjoint,
            "_surrogate_primitive_kernel": _surrogate_primitive_kernel,
            "_surrogate_grad_kernel": _surrogate_grad_kernel}


def _lif_kernels(F: Any, _step: Any, _adjoint: Any) -> dict[str, Any]:
    """Section 2: LIF / IF neuron, BPTT -- one thread per neuron, the time loop inside it."""

    @cuda.jit
    def _lif_forward_kernel(I, lam, v_th, soft, smooth, kind, a, o, u):
        """SSF Eqs. 6-7 / 16-17 (reference.membrane_step_scalar) for neuron n = thread index,
        t = 0..T-1 in registers.

        I, o, u: (T, N). Launch: launch_config(N) -- one thread per neuron, one launch for all T.
        """
        T, N = I.shape
        for n in range(cuda.grid(1), N, cuda.gridsize(1)):  # grid-stride
            v = F(0.0)
            for t in range(T):
                u_t, o_t, v = _step(v, I[t, n], lam, v_th, soft, smooth, kind, a)
                u[t, n] = u_t
                o[t, n] = o_t

    @cuda.jit
    def _lif_backward_kernel(do, u, lam, v_th, soft, smooth, detach_reset, kind, a, dI):
        """Exact BPTT (reference.lif_backward) for neuron n = thread index, t = T-1..0.

        dL/du[t+1] is carried in a register; o[t] and sigma'(u[t] - v_th) are recomputed from u
        (reference.membrane_adjoint_scalar).  do, u, dI: (T, N). Launch: launch_config(N) --
        one thread per neuron, one launch for all T.
        """
        T, N = u.shape
        for n in range(cuda.grid(1), N, cuda.gridsize(1)):  # grid-stride
            du_next = F(0.0)
            for t in range(T - 1, -1, -1):
                du_next = _adjoint(do[t, n], u[t, n], du_next, lam, v_th, soft, smooth,
                                   detach_reset, kind, a)
                dI[t, n] = du_next

    return {"_lif_forward_kernel": _lif_forward_kernel,
            "_lif_backward_kernel": _lif_backward_kernel}


def _flow_kernels(F: Any, _step: Any) -> dict[str, Any]:
    """Section 3: LIF / IF streaming over a time chunk with spiking-flow accumulators."""

    @cuda.jit
    def _lif_forward_flows_kernel(I, v, lam, v_th, soft, smooth, kind, a, w, sI, sO, sOU, o):
        """reference.lif_forward_flows for neuron n = thread index over the chunk's Tc steps.

        The state v[n] and the three flow sums are read once into registers, updated every step
        (ASF Eq. 7 with w = 1, SSF Sec. 3.3 with w = lam) and written back once.
        I, o: (Tc, N); v, sI, sO, sOU: (N,). Launch: launch_config(N), one thread per neuron.
        """
        Tc, N = I.shape
        for n in range(cuda.grid(1), N, cuda.gridsize(1)):  # grid-stride
            vn = v[n]
            si = sI[n]
            so = sO[n]
            sou = sOU[n]
            for t in range(Tc):
                i_t = I[t, n]
                u_t, o_t, vn = _step(vn, i_t, lam, v_th, soft, smooth, kind, a)
                si = w * si + i_t
                so = w * so + o_t
                sou = w * sou + o_t * u_t
                o[t, n] = o_t
            v[n] = vn
            sI[n] = si
            sO[n] = so
            sOU[n] = sou

    return {"_lif_forward_flows_kernel": _lif_forward_flows_kernel}


def _gain_kernels(F: Any) -> dict[str, Any]:
    """Section 4: the SSF flow gain (SSF Eqs. 14, 19)."""

    @cuda.jit
    def _ssf_gain_kernel(FI, R, v_th, soft, r_max, gain):
        """gain[i] = dFO/dFI (reference.ssf_gain); FI, R, gain flat (n,).

        Launch: launch_config(n), one thread per element.
        """
        for i in range(cuda.grid(1), FI.size, cuda.gridsize(1)):  # grid-stride
            fi = FI[i]
            if soft:
                gain[i] = F(1.0) / v_th if (fi > F(0.0) and fi < v_th) else F(0.0)
            else:
                r = R[i]
                gain[i] = F(1.0) / (r * v_th) if (fi > F(0.0) and r <= r_max) else F(0.0)

    return {"_ssf_gain_kernel": _ssf_gain_kernel}


_TYPED: dict[np.dtype, SimpleNamespace] = {}


def _typed(dtype: Any) -> SimpleNamespace:
    """The kernels of sections 1-4 for float ``dtype`` (built on first use, then kept):
    attributes named like the kernels, plus the device functions ``spike``, ``grad``,
    ``primitive``."""
    dt = np.dtype(dtype)
    k = _TYPED.get(dt)
    if k is None:
        if dt.kind != "f":
            raise TypeError(f"the CUDA neuron kernels need a float array, got dtype {dt}")
        F = dt.type
        sur = _surrogate_kernels(F)
        k = SimpleNamespace(**sur, **_lif_kernels(F, sur["step"], sur["adjoint"]),
                            **synaptic_kernels(F, sur["step"], sur["adjoint"]),
                            **_flow_kernels(F, sur["step"]), **_gain_kernels(F))
        _TYPED[dt] = k
    return k


# the float64 kernels under their own names (what tutorials/18 shows and launches)
_K64 = _typed(np.float64)
_typed(np.float32)
_surrogate_primitive_kernel = _K64._surrogate_primitive_kernel
_surrogate_grad_kernel = _K64._surrogate_grad_kernel
_lif_forward_kernel = _K64._lif_forward_kernel
_lif_backward_kernel = _K64._lif_backward_kernel
_synaptic_forward_kernel = _K64._synaptic_forward_kernel
_synaptic_backward_kernel = _K64._synaptic_backward_kernel
_lif_forward_flows_kernel = _K64._lif_forward_flows_kernel
_ssf_gain_kernel = _K64._ssf_gain_kernel
SURROGATE_KINDS = _ref.SURROGATE_KINDS


def lif_forward_kernel() -> Any:
    """The float64 LIF forward kernel itself (SSF Eqs. 6-7 / 16-17), to launch by hand as
    ``lif_forward_kernel()[blocks, threads](I, lam, v_th, soft, smooth, kind, a, o, u)``: one
    thread per neuron, a grid-stride loop over the N neurons, the time loop in registers
    (:func:`lif_forward` launches it with :func:`launch_config`; tutorial chapter 18 launches it
    with a single 32-thread block and shows its source, ``.py_func``)."""
    return _K64._lif_forward_kernel


def _elementwise(name: str, x: Any, kind: int, a: float) -> Any:
    xp = host_array_module(x)
    xf = as_contiguous(xp, x).reshape(-1)
    out = xp.empty_like(xf)
    _launch(getattr(_typed(xf.dtype), name), xf.size, x, xf, int(kind), xf.dtype.type(a), out)
    return out.reshape(x.shape)


def surrogate_primitive(x, kind, a):
    """Elementwise surrogate primitive over an array (see the reference module)."""
    return _elementwise("_surrogate_primitive_kernel", x, kind, a)


def surrogate_grad(x, kind, a):
    """Elementwise surrogate gradient over an array (see the reference module)."""
    return _elementwise("_surrogate_grad_kernel", x, kind, a)


def lif_forward(I, lam, v_th, soft, smooth, kind, a):
    """LIF forward, ``(o, u)``; see :func:`pysnn_ref.kernels.reference.lif_forward`."""
    xp = host_array_module(I)
    I = as_contiguous(xp, I)
    o = xp.empty_like(I)
    u = xp.empty_like(I)
    f = I.dtype.type
    _launch(_typed(I.dtype)._lif_forward_kernel, I.shape[1] if I.shape[0] else 0, I,
            I, f(lam), f(v_th), bool(soft), bool(smooth), int(kind), f(a), o, u)
    return o, u


def lif_backward(do, u, lam, v_th, soft, smooth, detach_reset, kind, a):
    """Exact BPTT, ``dI``; see :func:`pysnn_ref.kernels.reference.lif_backward`."""
    xp = host_array_module(u)
    u = as_contiguous(xp, u)
    do = as_contiguous(xp, do, u.dtype)
    dI = xp.empty_like(u)
    f = u.dtype.type
    _launch(_typed(u.dtype)._lif_backward_kernel, u.shape[1] if u.shape[0] else 0, u,
            do, u, f(lam), f(v_th), bool(soft), bool(smooth), bool(detach_reset), int(kind),
            f(a), dI)
    return dI


def synaptic_forward(I, alpha, lam, v_th, soft, smooth, kind, a):
    """Current-based LIF forward, ``(o, u)``; see the reference module's ``synaptic_forward``."""
    xp = host_array_module(I)
    I = as_contiguous(xp, I)
    o = xp.empty_like(I)
    u = xp.empty_like(I)
    f = I.dtype.type
    _launch(_typed(I.dtype)._synaptic_forward_kernel, I.shape[1] if I.shape[0] else 0, I,
            I, f(alpha), f(lam), f(v_th), bool(soft), bool(smooth), int(kind), f(a), o, u)
    return o, u


def synaptic_backward(do, u, alpha, lam, v_th, soft, smooth, detach_reset, kind, a):
    """Exact BPTT with two adjoints, ``dI``; see the reference module's ``synaptic_backward``."""
    xp = host_array_module(u)
    u = as_contiguous(xp, u)
    do = as_contiguous(xp, do, u.dtype)
    dI = xp.empty_like(u)
    f = u.dtype.type
    _launch(_typed(u.dtype)._synaptic_backward_kernel, u.shape[1] if u.shape[0] else 0, u,
            do, u, f(alpha), f(lam), f(v_th), bool(soft), bool(smooth), bool(detach_reset),
            int(kind), f(a), dI)
    return dI


def lif_forward_flows(I, v, lam, v_th, soft, smooth, kind, a, w, sI, sO, sOU):
    """Streamed LIF chunk with flow sums; see the reference module.  Returns ``o``.

    ``v``, ``sI``, ``sO``, ``sOU`` are updated in place (they are passed to the kernel as they
    are, never copied, so they may be views).
    """
    xp = host_array_module(I)
    I = as_contiguous(xp, I)
    o = xp.empty_like(I)
    f = I.dtype.type
    _launch(_typed(I.dtype)._lif_forward_flows_kernel, I.shape[1] if I.shape[0] else 0, I,
            I, v, f(lam), f(v_th), bool(soft), bool(smooth), int(kind), f(a), f(w),
            sI, sO, sOU, o)
    return o


def ssf_gain(FI, R, v_th, soft, r_max):
    """SSF dFO/dFI; see :func:`pysnn_ref.kernels.reference.ssf_gain`."""
    xp = host_array_module(FI)
    FIf = as_contiguous(xp, FI).reshape(-1)
    Rf = as_contiguous(xp, xp.broadcast_to(xp.asarray(R, dtype=FI.dtype), FI.shape)).reshape(-1)
    gain = xp.empty_like(FIf)
    f = FI.dtype.type
    _launch(_typed(FI.dtype)._ssf_gain_kernel, FIf.size, FI, FIf, Rf, f(v_th), bool(soft),
            f(r_max), gain)
    return gain.reshape(FI.shape)


# --------------------------------------------------------------------------------------------
# 5-6. The index kernels' host wrappers: im2col / col2im and max pooling (reference module,
#    sections 5-6).  How the kernels are laid out, and why their index arithmetic is unsigned and
#    32-bit where sizes allow: :mod:`pysnn_ref.kernels.cuda_index`.
# --------------------------------------------------------------------------------------------

#: from this many elements on, an index kernel computes its indices in 64 bits
INDEX32_LIMIT = 1 << 31


_INDEX = {np.dtype(np.uint32): SimpleNamespace(**index_kernels(np.uint32)),
          np.dtype(np.uint64): SimpleNamespace(**index_kernels(np.uint64))}
# the 32-bit kernels under their own names (what the tests and tutorials launch)
_im2col_kernel = _INDEX[np.dtype(np.uint32)].im2col_kernel
_col2im_kernel = _INDEX[np.dtype(np.uint32)].col2im_kernel
_maxpool2d_forward_kernel = _INDEX[np.dtype(np.uint32)].maxpool2d_forward_kernel
_maxpool2d_backward_kernel = _INDEX[np.dtype(np.uint32)].maxpool2d_backward_kernel


def _index_type(*arrays: Any) -> Any:
    """np.uint32 when every array has fewer than :data:`INDEX32_LIMIT` elements, else
    np.uint64 (the index type of the kernels of sections 5-6)."""
    return np.uint32 if max(int(a.size) for a in arrays) < INDEX32_LIMIT else np.uint64


def _ints(U: Any, *values: int) -> list[Any]:
    """``values`` as scalars of the index type ``U`` (so the kernel is typed with U)."""
    return [U(int(v)) for v in values]


def im2col(x, KH, KW, stride, pad):
    """x (N, C, H, W) -> cols (N, C*KH*KW, OH*OW); see the reference module's ``im2col``."""
    xp = host_array_module(x)
    x = as_contiguous(xp, x)
    N, C, H, W = x.shape
    OH = _ref.conv_out_size(H, KH, stride, pad)
    OW = _ref.conv_out_size(W, KW, stride, pad)
    cols = xp.empty((N, C * KH * KW, OH * OW), dtype=x.dtype)
    U = _index_type(x, cols)
    k = _INDEX[np.dtype(U)].im2col_kernel
    _launch(k, cols.size, x, x, *_ints(U, C, H, W, KH, KW, stride, pad, OW, C * KH * KW,
                                       OH * OW, cols.size), cols)
    return cols


def col2im(cols, x_shape, KH, KW, stride, pad):
    """The adjoint of :func:`im2col`, dx with shape ``x_shape``; see the reference module."""
    xp = host_array_module(cols)
    cols = as_contiguous(xp, cols)
    dx = xp.empty(tuple(int(s) for s in x_shape), dtype=cols.dtype)
    _, C, H, W = dx.shape
    OH = _ref.conv_out_size(H, KH, stride, pad)
    OW = _ref.conv_out_size(W, KW, stride, pad)
    U = _index_type(cols, dx)
    k = _INDEX[np.dtype(U)].col2im_kernel
    _launch(k, dx.size, cols, cols, *_ints(U, C, H, W, KH, KW, stride, pad, OH, OW, dx.size),
            cols.dtype.type(0), dx)
    return dx


def maxpool2d_forward(x, k, stride):
    """``(out, idx)`` of k x k max pooling; see the reference module's ``maxpool2d_forward``."""
    xp = host_array_module(x)
    x = as_contiguous(xp, x)
    N, C, H, W = x.shape
    OH = _ref.conv_out_size(H, k, stride, 0)
    OW = _ref.conv_out_size(W, k, stride, 0)
    out = xp.empty((N, C, OH, OW), dtype=x.dtype)
    idx = xp.empty((N, C, OH, OW), dtype=np.int32)
    U = _index_type(x, out)
    kern = _INDEX[np.dtype(U)].maxpool2d_forward_kernel
    _launch(kern, out.size, x, x, *_ints(U, C, W, k, stride, OH, OW, out.size), out, idx)
    return out, idx


def maxpool2d_backward(dout, idx, x_shape, k, stride):
    """Route ``dout`` to the window maxima; see the reference module."""
    xp = host_array_module(dout)
    dout = as_contiguous(xp, dout)
    idx = as_contiguous(xp, idx, np.int32)
    dx = xp.empty(tuple(int(s) for s in x_shape), dtype=dout.dtype)
    _, C, H, W = dx.shape
    OH, OW = dout.shape[2:]
    U = _index_type(dout, dx)
    kern = _INDEX[np.dtype(U)].maxpool2d_backward_kernel
    _launch(kern, dx.size, dout, dout, idx, *_ints(U, C, H, W, k, stride, OH, OW, dx.size),
            dout.dtype.type(0), dx)
    return dx
