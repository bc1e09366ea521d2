"""numba.cuda kernels (kernels/cuda.py) vs the reference kernels, run by numba's CUDA simulator.

Runs only in a process where ``NUMBA_ENABLE_CUDASIM=1`` was set before numba was imported; the
default suite runs this file that way through tests/test_cuda_runner.py.  By hand::

    NUMBA_ENABLE_CUDASIM=1 .venv/bin/python -m pytest -q -m cudasim tests/test_cuda_sim.py

The simulator runs every CUDA thread as Python code (about 15 s for 64,000 threads x 20 steps),
so the sizes here are tiny: N <= 300 neurons, T <= 6.  They are chosen so that the grids have
partial last blocks (N not a multiple of the block size) and several blocks.
"""

import os

import numpy as np
import pytest

pytestmark = pytest.mark.cudasim


def _simulator_reason() -> str | None:
    """None if the numba.cuda simulator is active in this process, else why it is not."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        return ("needs the numba.cuda simulator: run with NUMBA_ENABLE_CUDASIM=1 set before numba "
                "is imported (tests/test_cuda_runner.py does this in a subprocess)")
    import numba

    if not numba.config.ENABLE_CUDASIM:
        return ("NUMBA_ENABLE_CUDASIM=1 was set after numba was imported, so numba.cuda is the "
                "real target; set it in the environment of a fresh process")
    try:
        from numba import cuda  # noqa: F401
    except ImportError as e:
        return f"numba.cuda cannot be imported ({e}); pip install numba-cuda"
    from pysnn_ref.kernels import cuda as ck

    if type(ck._lif_forward_kernel).__name__ != "FakeCUDAKernel":
        return "numba.cuda was imported before NUMBA_ENABLE_CUDASIM=1 took effect"
    return None


_reason = _simulator_reason()
if _reason is not None:
    pytest.skip(_reason, allow_module_level=True)

from pysnn_ref import backend  # noqa: E402
from pysnn_ref.functional import flows as F  # noqa: E402
from pysnn_ref.functional import neuron as FN  # noqa: E402
from pysnn_ref.functional import synaptic as FS  # noqa: E402
from pysnn_ref.gradcheck import rel_error  # noqa: E402
from pysnn_ref.kernels import cuda as ck  # noqa: E402
from pysnn_ref.kernels import reference  # noqa: E402

TOL = 1e-10
KINDS = sorted(reference.SURROGATE_KINDS.values())


def _edge_inputs(rng, T=5, N=70, v_th=1.0):
    """Random currents plus the edge cases, one neuron (column) each."""
    I = rng.normal(0.5, 1.0, (T, N))
    I[:, 0] = -1.0           # silent: never fires
    I[:, 1] = 50.0           # saturated: fires every step
    I[:, 2] = v_th           # exactly at threshold every step: H(0) = 1, fires every step
    I[:, 3] = 0.0            # zero input
    I[:, 4] = 0.0
    I[0, 4] = v_th           # at threshold at t = 0 only
    I[:, 5] = 0.5 * v_th     # reaches the threshold exactly at t = 1 when lam = 1
    return I


# ------------------------------------------------------------------------------------------
# launch configuration
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 31, 32, 33, 127, 128, 129, 300, 2**17 - 1, 2**17, 10**6 + 3])
def test_launch_config_covers_n_with_warp_multiple_blocks(n):
    blocks, tpb = ck.launch_config(n)
    assert tpb % 32 == 0 and 32 <= tpb <= 256
    assert blocks * tpb >= n > (blocks - 1) * tpb      # enough threads, no empty block
    with pytest.raises(ValueError, match="n"):
        ck.launch_config(0)


# ------------------------------------------------------------------------------------------
# 1. surrogates
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_surrogates_equal_reference(kind):
    a = 0.8
    special = [0.0, a / 2, -a / 2, a, -a, 0.5, -0.5, 1.0, -1.0, 3.0, -3.0]
    x = np.concatenate([np.linspace(-2.2, 2.2, 88), special]).reshape(9, 11)   # 99 elements
    for f in ("surrogate_primitive", "surrogate_grad"):
        r = getattr(reference, f)(x, kind, a)
        g = getattr(ck, f)(x, kind, a)
        assert g.shape == x.shape and g.dtype == np.float64
        assert rel_error(r, g) <= TOL, f
        # float32 in, float32 out, the same values up to float32 rounding
        x32 = x.astype(np.float32)
        g32 = getattr(ck, f)(x32, kind, a)
        assert g32.dtype == np.float32
        assert rel_error(getattr(reference, f)(x32.astype(np.float64), kind, a), g32) <= 1e-5


def test_surrogate_empty_input():
    x = np.zeros((0, 3))
    assert ck.surrogate_grad(x, 2, 1.0).shape == (0, 3)


# ------------------------------------------------------------------------------------------
# 2. LIF / IF forward and exact BPTT backward
# ------------------------------------------------------------------------------------------

CONFIGS = [(soft, smooth, kind) for soft in (False, True) for smooth in (False, True)
           for kind in KINDS]


@pytest.mark.parametrize("soft,smooth,kind", CONFIGS)
@pytest.mark.parametrize("lam", [0.6, 1.0])
def test_lif_forward_backward_equal_reference(soft, smooth, kind, lam):
    rng = np.random.default_rng(kind + 10 * soft + 100 * smooth)
    I = _edge_inputs(rng)                    # N = 70: one 96-thread block, 26 threads idle
    a = 0.9
    o_r, u_r = reference.lif_forward(I, lam, 1.0, soft, smooth, kind, a)
    o_g, u_g = ck.lif_forward(I, lam, 1.0, soft, smooth, kind, a)
    assert rel_error(o_r, o_g) <= TOL and rel_error(u_r, u_g) <= TOL
    do = rng.normal(size=I.shape)
    for detach in (False, True):
        d_r = reference.lif_backward(do, u_r, lam, 1.0, soft, smooth, detach, kind, a)
        d_g = ck.lif_backward(do, u_g, lam, 1.0, soft, smooth, detach, kind, a)
        assert rel_error(d_r, d_g) <= TOL, f"detach_reset={detach}"


def test_edge_neurons_spike_as_expected():
    I = _edge_inputs(np.random.default_rng(0))
    o, _ = ck.lif_forward(I, 1.0, 1.0, False, False, 1, 1.0)
    assert o[:, 0].sum() == 0                        # silent
    assert o[:, 1].all() and o[:, 2].all()           # saturated; exactly at threshold
    assert o[0, 4] == 1.0 and o[1:, 4].sum() == 0    # at threshold at t = 0 only
    assert o[0, 5] == 0.0 and o[1, 5] == 1.0         # IF integrates 0.5 + 0.5 = v_th at t = 1


@pytest.mark.parametrize("soft", [False, True])
def test_T1(soft):
    rng = np.random.default_rng(5)
    I = _edge_inputs(rng, T=1, N=70)
    do = rng.normal(size=I.shape)
    o_r, u_r = reference.lif_forward(I, 0.7, 1.0, soft, False, 1, 1.0)
    o_g, u_g = ck.lif_forward(I, 0.7, 1.0, soft, False, 1, 1.0)
    assert rel_error(o_r, o_g) <= TOL and rel_error(u_r, u_g) <= TOL
    assert np.array_equal(u_g, I)                    # u[0] = I[0]
    d_r = reference.lif_backward(do, u_r, 0.7, 1.0, soft, False, False, 1, 1.0)
    d_g = ck.lif_backward(do, u_g, 0.7, 1.0, soft, False, False, 1, 1.0)
    assert rel_error(d_r, d_g) <= TOL


@pytest.mark.parametrize("N", [1, 33, 257])
def test_odd_sizes(N):
    # 1 neuron: a single 32-thread block; 33: one 64-thread block; 257: three 128-thread blocks
    # with 127 idle threads in the last one -- the simulator raises on any out-of-bounds access
    rng = np.random.default_rng(N)
    I = rng.normal(0.6, 1.0, (3, N))
    o_r, u_r = reference.lif_forward(I, 0.8, 1.0, False, False, 2, 2.0)
    o_g, u_g = ck.lif_forward(I, 0.8, 1.0, False, False, 2, 2.0)
    assert rel_error(o_r, o_g) <= TOL and rel_error(u_r, u_g) <= TOL
    d_r = reference.lif_backward(I, u_r, 0.8, 1.0, False, False, False, 2, 2.0)
    d_g = ck.lif_backward(I, u_g, 0.8, 1.0, False, False, False, 2, 2.0)
    assert rel_error(d_r, d_g) <= TOL


def test_non_contiguous_inputs_and_v_th_not_one():
    rng = np.random.default_rng(7)
    I = np.asfortranarray(rng.normal(0.4, 1.0, (4, 45)))
    do = rng.normal(size=(45, 4)).T                  # a transposed view
    o_r, u_r = reference.lif_forward(I, 0.5, 0.7, True, True, 4, 3.0)
    o_g, u_g = ck.lif_forward(I, 0.5, 0.7, True, True, 4, 3.0)
    assert rel_error(o_r, o_g) <= TOL and rel_error(u_r, u_g) <= TOL
    d_r = reference.lif_backward(do, u_r, 0.5, 0.7, True, True, False, 4, 3.0)
    d_g = ck.lif_backward(do, np.asfortranarray(u_g), 0.5, 0.7, True, True, False, 4, 3.0)
    assert rel_error(d_r, d_g) <= TOL


def test_float32_in_float32_out_close_to_float64():
    rng = np.random.default_rng(3)
    I = rng.normal(0.5, 1.0, (6, 96))
    o64, u64 = ck.lif_forward(I, 0.5, 0.8, False, False, 2, 2.0)
    o32, u32 = ck.lif_forward(I.astype(np.float32), 0.5, 0.8, False, False, 2, 2.0)
    assert o32.dtype == np.float32 and u32.dtype == np.float32
    assert (o32 != o64).mean() < 0.02
    d32 = ck.lif_backward(np.ones_like(o32), u32, 0.5, 0.8, False, False, False, 2, 2.0)
    assert d32.dtype == np.float32 and np.isfinite(d32).all()
    # with identical spike trains, the float32 result is the float64 one up to rounding
    same = (o32 == o64).all(axis=0)
    d64 = ck.lif_backward(np.ones_like(o64), u64, 0.5, 0.8, False, False, False, 2, 2.0)
    assert same.sum() > 48 and rel_error(d64[:, same], d32[:, same]) <= 1e-4


# ------------------------------------------------------------------------------------------
# 2c. current-based (synaptic) LIF: forward and the two-adjoint BPTT backward
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("soft,smooth,kind", CONFIGS)
def test_synaptic_forward_backward_equal_reference(soft, smooth, kind, alpha=0.6, lam=0.8):
    rng = np.random.default_rng(kind + 10 * soft + 100 * smooth)
    I = _edge_inputs(rng)                    # N = 70: one 96-thread block, 26 threads idle
    a = 0.9
    o_r, u_r = reference.synaptic_forward(I, alpha, lam, 1.0, soft, smooth, kind, a)
    o_g, u_g = ck.synaptic_forward(I, alpha, lam, 1.0, soft, smooth, kind, a)
    assert 0 < o_r.mean() < 1
    assert rel_error(o_r, o_g) <= TOL and rel_error(u_r, u_g) <= TOL
    do = rng.normal(size=I.shape)
    for detach in (False, True):
        d_r = reference.synaptic_backward(do, u_r, alpha, lam, 1.0, soft, smooth, detach, kind, a)
        d_g = ck.synaptic_backward(do, u_g, alpha, lam, 1.0, soft, smooth, detach, kind, a)
        assert rel_error(d_r, d_g) <= TOL, f"detach_reset={detach}"


@pytest.mark.parametrize("N", [1, 257])
def test_synaptic_odd_sizes_T1_and_float32(N):
    rng = np.random.default_rng(N)
    for T, alpha, lam in ((1, 0.5, 0.8), (4, 0.5, 0.8), (4, 1.0, 1.0)):
        I = rng.normal(0.3, 1.0, (T, N))
        o_r, u_r = reference.synaptic_forward(I, alpha, lam, 1.0, False, False, 2, 2.0)
        o_g, u_g = ck.synaptic_forward(I, alpha, lam, 1.0, False, False, 2, 2.0)
        assert rel_error(o_r, o_g) <= TOL and rel_error(u_r, u_g) <= TOL
        d_r = reference.synaptic_backward(I, u_r, alpha, lam, 1.0, False, False, False, 2, 2.0)
        d_g = ck.synaptic_backward(I, u_g, alpha, lam, 1.0, False, False, False, 2, 2.0)
        assert rel_error(d_r, d_g) <= TOL
    o32, u32 = ck.synaptic_forward(I.astype(np.float32), 0.5, 0.8, 1.0, True, False, 2, 2.0)
    o64, u64 = ck.synaptic_forward(I, 0.5, 0.8, 1.0, True, False, 2, 2.0)
    assert o32.dtype == u32.dtype == np.float32 and (o32 != o64).mean() < 0.02
    d32 = ck.synaptic_backward(np.ones_like(o32), u32, 0.5, 0.8, 1.0, True, False, False, 2, 2.0)
    assert d32.dtype == np.float32 and np.isfinite(d32).all()


def test_synaptic_functional_layer_on_cuda_kernels(monkeypatch):
    rng = np.random.default_rng(2)
    I = rng.normal(0.3, 1.0, (4, 3, 5, 7))
    kw = dict(alpha=0.7, lam=0.6, v_th=1.0, reset="soft", surrogate="atan")
    o_c, cache_c = FS.synaptic_forward(I, **kw)
    dI_c = FS.synaptic_backward(np.ones_like(o_c), cache_c)
    monkeypatch.setattr(backend, "kernels_for", lambda x: ck)
    o_g, cache_g = FS.synaptic_forward(I, **kw)
    dI_g = FS.synaptic_backward(np.ones_like(o_g), cache_g)
    assert o_g.shape == I.shape and rel_error(o_c, o_g) <= TOL and rel_error(dI_c, dI_g) <= TOL


def _bare_float_literals(tree) -> list[int]:
    """Line numbers of float literals that are not the argument of a call F(c) / _F(c)."""
    import ast

    wrapped = {id(n.args[0]) for n in ast.walk(tree) if isinstance(n, ast.Call)
               and isinstance(n.func, ast.Name) and n.func.id in ("F", "_F") and n.args}
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Constant)
            and type(n.value) is float and id(n) not in wrapped]


def test_float32_kernels_write_every_float_constant_in_the_array_dtype():
    # a bare literal such as 1.0 - o is float64 in Numba's typing and would pull a float32
    # kernel into float64 maths; tests/test_cuda_ptx.py checks the compiled PTX itself
    import ast
    import inspect
    import textwrap

    from pysnn_ref.kernels.retype import retyped_tree

    k32 = ck._typed(np.float32)
    kernels = [v for v in vars(k32).values() if hasattr(v, "py_func")
               and v.py_func.__name__.endswith("_kernel")]
    assert len(kernels) == 8
    for k in kernels:
        tree = ast.parse(textwrap.dedent(inspect.getsource(k.py_func)))
        assert _bare_float_literals(tree) == [], k.py_func.__name__
    for fn in (reference.surrogate_primitive_scalar, reference.surrogate_grad_scalar,
               reference.heaviside):
        tree = retyped_tree(fn)
        assert _bare_float_literals(tree) == [], fn.__name__
        assert "math.pi" not in ast.unparse(tree).replace("_F(math.pi)", "")
    assert ck._typed(np.float64) is ck._typed("float64")
    with pytest.raises(TypeError, match="float"):
        ck._typed(np.int32)


@pytest.mark.parametrize("kind", KINDS)
def test_float32_surrogates_equal_float64_to_float32_precision(kind):
    # the retyped formulas in float32 equal the float64 ones to float32 precision (x keeps
    # away from the breakpoints +-a/2, +-a, +-1/2, where rounding x may change the branch)
    x = np.linspace(-1.3, 1.3, 53) + 0.0123
    for name in ("surrogate_primitive", "surrogate_grad"):
        g64 = getattr(ck, name)(x, kind, 1.7)
        g32 = getattr(ck, name)(x.astype(np.float32), kind, 1.7)
        assert g32.dtype == np.float32
        assert rel_error(g64, g32) <= 1e-6, (name, kind)


# ------------------------------------------------------------------------------------------
# 3. streaming with spiking flows
# ------------------------------------------------------------------------------------------

def _stream(mod, I, chunks, lam, soft, smooth, kind, w, base_shape):
    """Stream I through ``mod.lif_forward_flows`` in chunks; state arrays are reshaped views."""
    N = I.shape[1]
    state = [np.zeros(base_shape) for _ in range(4)]       # v, sI, sO, sOU as (B, n) arrays
    views = [s.reshape(N) for s in state]                  # views, updated in place
    outs, t0 = [], 0
    for c in chunks:
        outs.append(mod.lif_forward_flows(I[t0:t0 + c], *views[:1], lam, 1.0, soft, smooth,
                                          kind, 1.2, w, *views[1:]))
        t0 += c
    assert t0 == I.shape[0]
    return np.concatenate(outs), [s.reshape(N) for s in state]


@pytest.mark.parametrize("chunks", [(6,), (4, 2), (1, 1, 1, 1, 1, 1)])
@pytest.mark.parametrize("soft,smooth,w", [(False, False, 0.7), (True, False, 1.0),
                                           (False, True, 0.7)])
def test_flows_streamed_in_chunks_equal_reference(chunks, soft, smooth, w):
    rng = np.random.default_rng(len(chunks))
    I = _edge_inputs(rng, T=6, N=140)
    lam, kind = 0.7, 1
    o_full, _ = reference.lif_forward(I, lam, 1.0, soft, smooth, kind, 1.2)
    o_r, s_r = _stream(reference, I, chunks, lam, soft, smooth, kind, w, (2, 70))
    o_g, s_g = _stream(ck, I, chunks, lam, soft, smooth, kind, w, (2, 70))
    assert rel_error(o_full, o_g) <= TOL and rel_error(o_r, o_g) <= TOL
    for name, x, y in zip(("v", "sI", "sO", "sOU"), s_r, s_g, strict=True):
        assert rel_error(x, y) <= TOL, name
    wt = w ** np.arange(I.shape[0] - 1, -1, -1)[:, None]
    assert np.allclose(s_g[1], (wt * I).sum(0)) and np.allclose(s_g[2], (wt * o_full).sum(0))


# ------------------------------------------------------------------------------------------
# 4. SSF flow gain
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("soft", [False, True])
def test_ssf_gain_equal_reference(soft):
    rng = np.random.default_rng(11)
    v_th, r_max = 0.8, 2.0
    FI = rng.normal(0.3, 0.5, (3, 37))
    FI[0, :6] = [0.0, -0.1, v_th, v_th - 1e-12, 1e-12, 2 * v_th]
    R = rng.uniform(0.5, 3.0, (3, 37))
    R[1, :3] = [r_max, r_max + 1e-12, 1.0]
    for Rx in (R, R[:, :1], 1.5):                   # full, broadcast per row, scalar
        r = reference.ssf_gain(FI, np.broadcast_to(Rx, FI.shape), v_th, soft, r_max)
        g = ck.ssf_gain(FI, Rx, v_th, soft, r_max)
        assert g.shape == FI.shape and rel_error(r, g) <= TOL
    assert ck.ssf_gain(FI.astype(np.float32), R, v_th, soft, r_max).dtype == np.float32


# ------------------------------------------------------------------------------------------
# The functional layers run unchanged on these kernels (the seam the GPU path goes through).
# ------------------------------------------------------------------------------------------

def test_functional_layers_on_cuda_kernels(monkeypatch):
    rng = np.random.default_rng(2)
    I = rng.normal(0.5, 1.0, (4, 3, 5, 7))            # (T, B, C, L): 105 neurons
    kw = dict(lam=0.6, v_th=1.0, reset="hard", surrogate="triangle")
    o_c, cache_c = FN.lif_forward(I, **kw)
    dI_c = FN.lif_backward(np.ones_like(o_c), cache_c)
    p = cache_c.p
    st_c = F.FlowState.zeros(I.shape[1:], I.dtype, np, w=0.6)
    os_c = [F.lif_forward_flows(I[t0:t0 + 2], st_c, p) for t0 in (0, 2)]
    gain_c = F.ssf_gain(st_c, p)

    monkeypatch.setattr(backend, "kernels_for", lambda x: ck)
    o_g, cache_g = FN.lif_forward(I, **kw)
    dI_g = FN.lif_backward(np.ones_like(o_g), cache_g)
    st_g = F.FlowState.zeros(I.shape[1:], I.dtype, np, w=0.6)
    os_g = [F.lif_forward_flows(I[t0:t0 + 2], st_g, p) for t0 in (0, 2)]
    gain_g = F.ssf_gain(st_g, p)

    assert o_g.shape == I.shape and rel_error(o_c, o_g) <= TOL and rel_error(dI_c, dI_g) <= TOL
    assert rel_error(np.concatenate(os_c), np.concatenate(os_g)) <= TOL
    for name in ("v", "sI", "sO", "sOU"):             # the layer's state was updated in place
        assert rel_error(getattr(st_c, name), getattr(st_g, name)) <= TOL, name
    assert rel_error(gain_c, gain_g) <= TOL


# ------------------------------------------------------------------------------------------
# 5. im2col / col2im
# ------------------------------------------------------------------------------------------

CONV_GEOMETRIES = [(3, 3, 1, 1), (3, 2, 2, 0), (1, 1, 1, 0), (5, 5, 2, 2), (2, 3, 3, 1)]


@pytest.mark.parametrize("KH,KW,stride,pad", CONV_GEOMETRIES)
def test_im2col_col2im_equal_reference(KH, KW, stride, pad):
    rng = np.random.default_rng(KH + 10 * KW + 100 * stride + 1000 * pad)
    x = rng.normal(size=(2, 2, 7, 6))                # odd H, W: floor mode drops a border
    cols_r = reference.im2col(x, KH, KW, stride, pad)
    cols_g = ck.im2col(x, KH, KW, stride, pad)
    assert cols_g.shape == cols_r.shape and np.array_equal(cols_r, cols_g)
    c = rng.normal(size=cols_r.shape)
    dx_r = reference.col2im(c, x.shape, KH, KW, stride, pad)
    dx_g = ck.col2im(c, x.shape, KH, KW, stride, pad)
    assert dx_g.shape == x.shape and rel_error(dx_r, dx_g) <= TOL
    # col2im is the adjoint of im2col: <im2col(x), c> = <x, col2im(c)>
    assert abs((cols_g * c).sum() - (x * dx_g).sum()) <= 1e-12 * np.abs(cols_g * c).sum()


def test_im2col_col2im_float32_and_non_contiguous():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(6, 7, 2, 3)).astype(np.float32).transpose(2, 3, 0, 1)  # a view
    cols = ck.im2col(x, 3, 3, 1, 1)
    assert cols.dtype == np.float32 and np.array_equal(cols, reference.im2col(x, 3, 3, 1, 1))
    dx = ck.col2im(cols, x.shape, 3, 3, 1, 1)
    assert dx.dtype == np.float32
    assert rel_error(reference.col2im(cols, x.shape, 3, 3, 1, 1), dx) <= 1e-6


# ------------------------------------------------------------------------------------------
# 6. max pooling
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("k,stride", [(2, 2), (3, 2), (3, 1), (2, 3)])
def test_maxpool_equal_reference_with_ties(k, stride):
    rng = np.random.default_rng(k + 10 * stride)
    x = rng.integers(0, 3, size=(2, 3, 7, 6)).astype(np.float64)   # many tied maxima
    x[0, 0] = 1.0                                                   # a constant plane
    out_r, idx_r = reference.maxpool2d_forward(x, k, stride)
    out_g, idx_g = ck.maxpool2d_forward(x, k, stride)
    assert idx_g.dtype == np.int32 and out_g.dtype == x.dtype
    assert np.array_equal(out_r, out_g) and np.array_equal(idx_r, idx_g)   # first max wins
    dout = rng.normal(size=out_r.shape)
    dx_r = reference.maxpool2d_backward(dout, idx_r, x.shape, k, stride)
    dx_g = ck.maxpool2d_backward(dout, idx_g, x.shape, k, stride)
    assert dx_g.shape == x.shape and rel_error(dx_r, dx_g) <= TOL
    assert abs(dx_g.sum() - dout.sum()) <= 1e-12 * np.abs(dout).sum()      # nothing lost


def test_maxpool_float32():
    x = np.random.default_rng(4).normal(size=(1, 2, 5, 5)).astype(np.float32)
    out, idx = ck.maxpool2d_forward(x, 2, 2)
    assert out.dtype == np.float32 and out.shape == (1, 2, 2, 2)
    dx = ck.maxpool2d_backward(np.ones_like(out), idx, x.shape, 2, 2)
    assert dx.dtype == np.float32 and dx.sum() == out.size and dx[:, :, 4, :].sum() == 0


def test_functional_conv_on_cuda_kernels(monkeypatch):
    from pysnn_ref.functional import conv as FC

    rng = np.random.default_rng(12)
    x = rng.normal(size=(2, 1, 2, 6, 5))               # (T, B, C, H, W)
    W = rng.normal(size=(3, 2, 3, 3))
    b = rng.normal(size=3)
    out_c, cache_c = FC.conv2d_forward(x, W, b, stride=2, padding=1)
    grads_c = FC.conv2d_backward(np.ones_like(out_c), cache_c)
    monkeypatch.setattr(backend, "kernels_for", lambda a: ck)
    out_g, cache_g = FC.conv2d_forward(x, W, b, stride=2, padding=1)
    grads_g = FC.conv2d_backward(np.ones_like(out_g), cache_g)
    assert rel_error(out_c, out_g) <= TOL
    assert len(grads_c) == len(grads_g) == 3
    for gc, gg in zip(grads_c, grads_g, strict=True):
        assert rel_error(gc, gg) <= TOL


# ------------------------------------------------------------------------------------------
# grid-stride loops: a grid of fewer threads than items still covers every item
# ------------------------------------------------------------------------------------------

def test_launch_config_reads_the_device(monkeypatch):
    """The block size follows the device's shape (SMs, warp, max threads per block): 256 from
    SMs x 1024 threads on, 128 below, capped by the device's maximum; the simulator has no
    device, so the stand-in is an H100's."""
    assert ck.device_shape() == (132, 32, 1024)
    monkeypatch.setattr(ck, "device_shape", lambda: (10, 32, 1024))
    assert ck.launch_config(10 * 1024 - 1)[1] == 128 and ck.launch_config(10 * 1024)[1] == 256
    monkeypatch.setattr(ck, "device_shape", lambda: (10, 16, 64))
    assert ck.launch_config(10**6)[1] == 64 and ck.launch_config(20) == (1, 32)


def test_launch_config_caps_the_grid():
    assert ck.launch_config(10**9)[0] == ck.MAX_BLOCKS
    assert ck.launch_config(10**6, max_blocks=3) == (3, 256)
    with pytest.raises(ValueError, match="max_blocks"):
        ck.launch_config(10, max_blocks=0)


@pytest.mark.parametrize("case", ["lif", "synaptic", "flows", "im2col", "maxpool", "surrogate",
                                  "gain"])
def test_every_kernel_strides_over_a_capped_grid(case, monkeypatch):
    """With one block of 32 threads for hundreds of items, each thread must take items
    i, i + 32, ...: the results equal those of a grid with a thread per item."""
    rng = np.random.default_rng(7)
    full = {}

    def run():
        if case == "lif":
            I = rng_I.copy()
            o, u = ck.lif_forward(I, 0.8, 1.0, False, False, 1, 1.0)
            return [o, u, ck.lif_backward(np.ones_like(I), u, 0.8, 1.0, False, False, False,
                                          1, 1.0)]
        if case == "synaptic":
            I = rng_I.copy()
            o, u = ck.synaptic_forward(I, 0.6, 0.8, 1.0, False, False, 1, 1.0)
            return [o, u, ck.synaptic_backward(np.ones_like(I), u, 0.6, 0.8, 1.0, False, False,
                                               False, 1, 1.0)]
        if case == "flows":
            st = [np.zeros(rng_I.shape[1]) for _ in range(4)]
            o = ck.lif_forward_flows(rng_I.copy(), *st[:1], 0.8, 1.0, False, False, 1, 1.0,
                                     0.8, *st[1:])
            return [o, *st]
        if case == "im2col":
            cols = ck.im2col(x4, 3, 3, 1, 1)
            return [cols, ck.col2im(cols, x4.shape, 3, 3, 1, 1)]
        if case == "maxpool":
            return list(ck.maxpool2d_forward(x4, 2, 2))
        if case == "surrogate":
            return [ck.surrogate_grad(rng_I, 1, 1.0), ck.surrogate_primitive(rng_I, 1, 1.0)]
        return [ck.ssf_gain(np.abs(rng_I) - 0.2, np.abs(rng_I) + 0.5, 1.0, False, 2.0)]

    rng_I = rng.normal(0.6, 1.0, (3, 200))
    x4 = rng.normal(size=(2, 2, 6, 6))
    full = run()
    monkeypatch.setattr(ck, "MAX_BLOCKS", 1)
    monkeypatch.setattr(ck, "TPB_SMALL", 32)
    assert ck.launch_config(rng_I.size) == (1, 32)
    capped = run()
    for a, b in zip(full, capped, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
