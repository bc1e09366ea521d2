"""The numba.cuda kernels compile for real GPUs, and the CPU path survives numba.cuda.

No GPU is needed.  ``numba.cuda.compile_ptx`` runs Numba's typing and NVVM code generation for
a chosen compute capability; nvJitLink (which contains ptxas) then assembles that PTX into
machine code (SASS) for the same GPU.  Each public function of kernels/cuda.py is called with
float32 and float64 NumPy inputs while the launch is intercepted; the kernel and the Numba
types of the exact arguments the wrapper would launch with (a C-contiguous NumPy array types
the same as a C-contiguous CuPy array) are compiled for sm_80 (A100) and sm_90 (H100).

Needs numba-cuda with NVVM, NVRTC and nvJitLink (``pip install "numba-cuda[cu13]"``); skipped
with the reason otherwise.  What this cannot check: running the code, CuPy interop and timings
(see docs/gpu.md).
"""

import importlib.util
import os
import re
from types import SimpleNamespace

import numpy as np
import pytest

from pysnn_ref import backend
from pysnn_ref.gradcheck import rel_error
from pysnn_ref.kernels import cpu, reference

CCS = [(8, 0), (9, 0)]
DTYPES = ["float32", "float64"]


def _real_cuda_reason() -> str | None:
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return "NUMBA_ENABLE_CUDASIM=1: numba.cuda is the simulator, not the real CUDA target"
    if importlib.util.find_spec("numba_cuda") is None:
        return 'numba-cuda is not installed: pip install "numba-cuda[cu13]"'
    return None


_reason = _real_cuda_reason()
if _reason is not None:
    pytest.skip(_reason, allow_module_level=True)

from numba import cuda, typeof  # noqa: E402
from numba.core import types as numba_types  # noqa: E402
from numba.cuda import dispatcher as cuda_dispatcher  # noqa: E402

from pysnn_ref.kernels import cuda as ck  # noqa: E402
from pysnn_ref.kernels import cuda_family as cf  # noqa: E402


def _first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"


def _recorded_launches(monkeypatch, dtype):
    """Call every public wrapper with ``dtype`` inputs; return {kernel name: (kernel, args)}."""
    launches = {}

    def record(kernel, n, x, *args):
        assert n >= 1
        launches[kernel.py_func.__name__] = (kernel, args)

    monkeypatch.setattr(ck, "_launch", record)
    rng = np.random.default_rng(0)
    I = rng.normal(size=(3, 40)).astype(dtype)
    z = lambda: np.zeros(40, dtype=dtype)  # noqa: E731
    ck.surrogate_primitive(I, 1, 1.0)
    ck.surrogate_grad(I, 1, 1.0)
    ck.lif_forward(I, 0.5, 1.0, False, False, 1, 1.0)
    ck.lif_backward(I, I, 0.5, 1.0, False, False, False, 1, 1.0)
    ck.synaptic_forward(I, 0.7, 0.5, 1.0, False, False, 1, 1.0)
    ck.synaptic_backward(I, I, 0.7, 0.5, 1.0, False, False, False, 1, 1.0)
    ck.lif_forward_flows(I, z(), 0.5, 1.0, False, False, 1, 1.0, 0.5, z(), z(), z())
    ck.ssf_gain(I, I[:, :1], 1.0, False, 2.0)
    x = rng.normal(size=(2, 3, 7, 6)).astype(dtype)
    cols = ck.im2col(x, 3, 3, 1, 1)
    ck.col2im(cols, x.shape, 3, 3, 1, 1)
    out, idx = ck.maxpool2d_forward(x, 2, 2)
    ck.maxpool2d_backward(out, idx, x.shape, 2, 2)
    ck.launch_probe(np.zeros(4, dtype=np.int32))  # the start-up probe's kernel (no floats)
    _family_launches(monkeypatch, dtype, record)
    return launches


def _family_launches(monkeypatch, dtype, record):
    """The family's kernels (kernels/cuda_family.py) launched through ``record`` as well."""
    monkeypatch.setattr(cf, "launch", lambda kernel, n, x, *args: record(kernel, n, x, *args))
    rng = np.random.default_rng(1)
    I = rng.normal(size=(3, 40)).astype(dtype)
    z = lambda: np.zeros(40, dtype=dtype)  # noqa: E731
    cf.dsr_forward(I, z(), z(), 0.8, 1.0, 0.4)
    cf.dsr_backward(I, I[0], np.ones(3), np.zeros(3), 1.0)
    cf.online_forward(I, z(), z(), 0.7, 1.0, False, False, 1, 0.9)
    cf.online_backward(I, I, 1.0, 1, 0.9)
    cf.rate_forward(I, z(), z() + 1, z(), z(), 0.6, 1.0, False, False, False, 1, 1.0)


#: a 64-bit integer division or remainder (a ~70-instruction emulation on a GPU)
_DIV64 = re.compile(r"\b(?:div|rem)\.[su]64\b")
INDEX_KERNELS = ("_im2col_kernel", "_col2im_kernel", "_maxpool2d_forward_kernel",
                 "_maxpool2d_backward_kernel")


def _all_kernels():
    names = {name for name, v in vars(ck).items()
             if isinstance(v, cuda_dispatcher.CUDADispatcher)
             and not v.targetoptions.get("device")}
    family = vars(cf._family_kernels(np.float32))  # the factory's kernels, by name
    return names | set(family)


@pytest.fixture(scope="module")
def compiled():
    """{(cc, dtype, kernel name): (signature, ptx, return type)} for every kernel; compiled once."""
    def probe(x):
        x[0] = 1.0

    try:        # is the toolchain there? (a one-line kernel; our kernels are compiled below)
        cuda.compile_ptx(probe, (typeof(np.zeros(1)),), cc=(8, 0))
    except Exception as e:  # noqa: BLE001 - DynamicLibNotFoundError, NvvmSupportError, ...
        pytest.skip(f'cannot compile PTX here, install "numba-cuda[cu13]" ({_first_line(e)})')
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        for cc in CCS:
            # A kernel that calls a cuda.jit(device=True) function makes numba-cuda compile it
            # for get_current_device().compute_capability while typing the call, which needs a
            # driver.  Without a GPU we stand in a device of the compute capability compiled for.
            mp.setattr(cuda_dispatcher, "get_current_device",
                       lambda cc=cc: SimpleNamespace(compute_capability=cc))
            for dtype in DTYPES:
                for name, (kernel, args) in _recorded_launches(mp, dtype).items():
                    sig = tuple(typeof(a) for a in args)
                    ptx, restype = cuda.compile_ptx(kernel.py_func, sig, cc=cc)
                    out[cc, dtype, name] = (sig, ptx, restype)
    return out


@pytest.mark.parametrize("cc", CCS, ids=lambda cc: f"sm_{cc[0]}{cc[1]}")
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_kernel_compiles_to_ptx(compiled, cc, dtype):
    names = {name for (c, d, name) in compiled if (c, d) == (cc, dtype)}
    assert names == _all_kernels()                  # every kernel of the module was launched
    fp = "f32" if dtype == "float32" else "f64"
    for name in names - {"_probe_kernel"}:
        sig, ptx, restype = compiled[cc, dtype, name]
        # every float the wrapper passes (arrays and scalar parameters) has the input's dtype
        floats = [getattr(t, "dtype", t) for t in sig
                  if isinstance(getattr(t, "dtype", t), numba_types.Float)]
        assert floats and all(str(t) == dtype for t in floats), (name, sig)
        assert str(restype) == "none"
        assert f".target sm_{cc[0]}{cc[1]}" in ptx, name
        assert ".entry " in ptx and f"ld.global.{fp}" in ptx, name


#: a PTX instruction on float64 operands (arithmetic, compare, move, convert to/from f64)
_F64_OP = re.compile(r"^\s*(?:@%p\d+\s+)?[a-z]+(?:\.[a-z0-9]+)*\.f64\b", re.M)


def test_float32_kernels_do_float32_maths_only(compiled):
    # no silent float64: a float literal or math.pi in a float32 kernel would show up here
    # as cvt.f64.f32 / fma.rn.f64 / setp.*.f64 (kernels/cuda.py writes them as F(c))
    for (cc, dtype, name), (_, ptx, _) in compiled.items():
        ops = _F64_OP.findall(ptx)
        if dtype == "float32":
            assert ops == [], (cc, name, ops[:5])
        elif name.startswith(("_lif", "_synaptic")):  # the pattern finds float64 maths
            assert len(ops) > 10, (cc, name)


def test_index_kernels_divide_in_32_bits(compiled):
    # issue 22: im2col / col2im / max pooling had 11 / 17 / 6 + 10 64-bit div/rem in their PTX
    for (cc, dtype, name), (sig, ptx, _) in compiled.items():
        if name in INDEX_KERNELS:
            assert "uint32" in str(sig), (name, sig)
            assert _DIV64.findall(ptx) == [], (cc, dtype, name, _DIV64.findall(ptx))
            assert re.search(r"\b(?:div|rem)\.u32\b", ptx), (cc, dtype, name)


def test_index_kernels_of_huge_arrays_use_64_bit_indices(compiled, monkeypatch):
    # from INDEX32_LIMIT elements on the wrappers launch the same kernels built for uint64
    monkeypatch.setattr(cuda_dispatcher, "get_current_device",
                        lambda: SimpleNamespace(compute_capability=(9, 0)))
    monkeypatch.setattr(ck, "INDEX32_LIMIT", 1)
    launches = _recorded_launches(monkeypatch, "float32")
    for name in INDEX_KERNELS:
        kernel, args = launches[name]
        sig = tuple(typeof(a) for a in args)
        assert "uint64" in str(sig) and "uint32" not in str(sig), (name, sig)
        ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=(9, 0))
        assert ".target sm_90" in ptx and _DIV64.findall(ptx), name


def _assemble(ptx: str, cc: tuple[int, int]) -> str:
    """PTX -> SASS with nvJitLink; returns its verbose log (registers, spills)."""
    from cuda.bindings import nvjitlink

    h = nvjitlink.create(2, [f"-arch=sm_{cc[0]}{cc[1]}", "-verbose"])
    try:
        data = ptx.encode()
        nvjitlink.add_data(h, nvjitlink.InputType.PTX, data, len(data), "kernel")
        nvjitlink.complete(h)
        assert nvjitlink.get_linked_cubin_size(h) > 0
        log = bytearray(nvjitlink.get_info_log_size(h))
        nvjitlink.get_info_log(h, log)
        return log.decode(errors="replace")
    finally:
        nvjitlink.destroy(h)


def test_every_kernel_assembles_to_sass_without_spills(compiled):
    try:
        from cuda.bindings import nvjitlink

        nvjitlink.version()
    except Exception as e:  # noqa: BLE001 - no cuda-bindings, or no libnvJitLink
        pytest.skip(f'nvJitLink is not usable, install "numba-cuda[cu13]" ({_first_line(e)})')
    for (cc, dtype, name), (_, ptx, _) in compiled.items():
        log = _assemble(ptx, cc)
        regs = re.search(r"Used (\d+) registers", log)
        assert regs and int(regs.group(1)) <= 128, (cc, dtype, name, log)
        assert "0 bytes spill stores, 0 bytes spill loads" in log, (cc, dtype, name, log)


def test_flows_kernel_compiles_for_strided_state(compiled, monkeypatch):
    # lif_forward_flows updates v, sI, sO, sOU in place and so passes views as they are
    monkeypatch.setattr(cuda_dispatcher, "get_current_device",
                        lambda: SimpleNamespace(compute_capability=(9, 0)))
    kernel, args = _recorded_launches(monkeypatch, "float32")["_lif_forward_flows_kernel"]
    strided = np.zeros(80, dtype=np.float32)[::2]
    sig = tuple(typeof(strided) if getattr(a, "ndim", 0) == 1 else typeof(a) for a in args)
    assert typeof(strided).layout == "A"
    ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=(9, 0))
    assert ".target sm_90" in ptx


def test_cpu_path_unaffected_by_real_numba_cuda():
    # numba.cuda (the real target, no driver here) and kernels/cuda.py are imported in this
    # process; the CPU kernels and the device seam must behave as before.
    assert type(ck._lif_forward_kernel).__name__ == "CUDADispatcher"
    rng = np.random.default_rng(1)
    I = rng.normal(0.5, 1.0, (5, 33))
    o_r, u_r = reference.lif_forward(I, 0.7, 1.0, False, False, 2, 1.0)
    o_c, u_c = cpu.lif_forward(I, 0.7, 1.0, False, False, 2, 1.0)
    assert rel_error(o_r, o_c) <= 1e-10 and rel_error(u_r, u_c) <= 1e-10
    assert backend.kernels_for(I) is cpu and backend.array_module(I) is np
    if not cuda.is_available():                     # no driver: one clear error, no crash
        with pytest.raises(backend.GPUUnavailableError):
            backend.get_backend("gpu")
