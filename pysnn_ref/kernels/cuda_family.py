"""numba.cuda kernels of the T-independent family (DSR, OTTT / SLTT, rate-based backprop).

The computations of :mod:`pysnn_ref.kernels.reference_family`, on the GPU, with the same
signatures and return values as it and :mod:`pysnn_ref.kernels.cpu_family`; the tests run them
in numba's CUDA simulator against the reference (``tests/test_cuda_family_sim.py``, float64 to
1e-10, float32 to float32 round-off) and compile them to PTX for a real GPU
(``tests/test_cuda_ptx.py``).

Built as :mod:`pysnn_ref.kernels.cuda` builds the BPTT kernels (SpikingJelly's fused multi-step
pattern): **one thread per neuron** with the time loop of the chunk inside it, the neuron's
state (membrane, trace, kappa, running sums) in registers, read once and written back once;
thread ``n`` reads column ``n`` of each time row, so a warp's loads are coalesced.  The neuron
step and surrogate-gradient formulas are the reference's scalars compiled once per dtype by
:func:`pysnn_ref.kernels.cuda.device_surrogates`; every constant is written ``F(c)`` in the
kernel factory :func:`_family_kernels`, so a float32 kernel does float32 maths only.  Launches
go through :func:`pysnn_ref.kernels.cuda.launch` (block size and grid from
:func:`pysnn_ref.kernels.cuda.launch_config`; every kernel is a grid-stride loop).

Sections: 1. DSR; 2. online neurons (OTTT, SLTT); 3. rate-based backpropagation.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
from numba import cuda

from .cuda import as_contiguous, device_surrogates, host_array_module, launch

__all__ = ["dsr_forward", "dsr_backward", "online_forward", "online_backward", "rate_forward"]


def _dsr_kernels(F: Any) -> dict[str, Any]:
    """Section 1: DSR (Meng et al., CVPR 2022), reference_family.dsr_forward / dsr_backward."""

    @cuda.jit
    def dsr_forward_kernel(I, v, sI, lam, v_th, alpha, o):
        """u = lam v + I[t]; o = v_th H(u - alpha v_th); v = u - o; sI = lam sI + I[t].
        I, o: (Tc, N); v, sI: (N,) in place. Launch: one thread per neuron."""
        Tc, N = I.shape
        fire = alpha * v_th
        for n in range(cuda.grid(1), N, cuda.gridsize(1)):  # grid-stride
            vn = v[n]
            si = sI[n]
            for t in range(Tc):
                i_t = I[t, n]
                u_t = lam * vn + i_t
                o_t = v_th if u_t >= fire else F(0.0)
                vn = u_t - o_t
                si = lam * si + i_t
                o[t, n] = o_t
            v[n] = vn
            sI[n] = si

    @cuda.jit
    def dsr_backward_kernel(do, Ibar, gw, c, v_th, dI, part):
        """G = sum_t gw[t] do[t]; dI[t] = 1[0 <= Ibar <= v_th] G c[t]; part[n] = G where
        Ibar > v_th (the threshold's gradient, summed by the host). Launch: one thread per
        neuron."""
        T, N = do.shape
        for n in range(cuda.grid(1), N, cuda.gridsize(1)):  # grid-stride
            G = F(0.0)
            for t in range(T):
                G += gw[t] * do[t, n]
            ib = Ibar[n]
            part[n] = G if ib > v_th else F(0.0)
            m = G if (ib >= F(0.0) and ib <= v_th) else F(0.0)
            for t in range(T):
                dI[t, n] = m * c[t]

    return {"dsr_forward_kernel": dsr_forward_kernel,
            "dsr_backward_kernel": dsr_backward_kernel}


def _online_kernels(F: Any, _step: Any, _grad: Any) -> dict[str, Any]:
    """Section 2: online neurons of OTTT (Xiao et al., NeurIPS 2022) and SLTT (Meng et al.,
    ICCV 2023), reference_family.online_forward / online_backward."""

    @cuda.jit
    def online_forward_kernel(I, v, tr, lam, v_th, soft, smooth, kind, a, o, u, a_hat):
        """The LIF step (u, o, reset) and OTTT's trace a_hat = lam a_hat + o when ``tr`` has N
        entries. I, o, u: (Tc, N); a_hat (Tc, N) or (Tc, 0); v, tr: (N,) in place."""
        Tc, N = I.shape
        trace = tr.shape[0] == N
        for n in range(cuda.grid(1), N, cuda.gridsize(1)):  # grid-stride
            vn = v[n]
            tn = tr[n] if trace else F(0.0)
            for t in range(Tc):
                u_t, o_t, vn = _step(vn, I[t, n], lam, v_th, soft, smooth, kind, a)
                u[t, n] = u_t
                o[t, n] = o_t
                if trace:
                    tn = lam * tn + o_t
                    a_hat[t, n] = tn
            v[n] = vn
            if trace:
                tr[n] = tn

    @cuda.jit
    def online_backward_kernel(do, u, v_th, kind, a, dI):
        """dI[i] = do[i] sigma'(u[i] - v_th), flat (T*N,): no recursion over time, one thread
        per element."""
        for i in range(cuda.grid(1), u.size, cuda.gridsize(1)):  # grid-stride
            dI[i] = do[i] * _grad(u[i] - v_th, kind, a)

    return {"online_forward_kernel": online_forward_kernel,
            "online_backward_kernel": online_backward_kernel}


def _rate_kernels(F: Any, _step: Any, _grad: Any) -> dict[str, Any]:
    """Section 3: rate-based backpropagation (Yu et al., NeurIPS 2024),
    reference_family.rate_forward."""

    @cuda.jit
    def rate_forward_kernel(I, v, kappa, sO, sE, lam, v_th, soft, smooth, detach_reset, kind,
                             a, o):
        """The LIF step, sO += o, sE += kappa sg, kappa = 1 + lam kappa rho (rho = dv/du).
        I, o: (Tc, N); v, kappa, sO, sE: (N,) in place. Launch: one thread per neuron."""
        Tc, N = I.shape
        for n in range(cuda.grid(1), N, cuda.gridsize(1)):  # grid-stride
            vn = v[n]
            kn = kappa[n]
            so = sO[n]
            se = sE[n]
            for t in range(Tc):
                u_t, o_t, vn = _step(vn, I[t, n], lam, v_th, soft, smooth, kind, a)
                sg = _grad(u_t - v_th, kind, a)
                so += o_t
                se += kn * sg
                if soft:
                    rho = F(1.0) if detach_reset else F(1.0) - v_th * sg
                else:
                    rho = (F(1.0) - o_t) if detach_reset else (F(1.0) - o_t) - u_t * sg
                kn = F(1.0) + lam * kn * rho
                o[t, n] = o_t
            v[n] = vn
            kappa[n] = kn
            sO[n] = so
            sE[n] = se

    return {"rate_forward_kernel": rate_forward_kernel}


_TYPED: dict[np.dtype, SimpleNamespace] = {}


def _family_kernels(dtype: Any) -> SimpleNamespace:
    """The kernels of sections 1-3 for float ``dtype`` (built on first use, then kept)."""
    dt = np.dtype(dtype)
    k = _TYPED.get(dt)
    if k is None:
        if dt.kind != "f":
            raise TypeError(f"the CUDA family kernels need a float array, got dtype {dt}")
        F = dt.type
        step, _, grad = device_surrogates(dt)
        k = SimpleNamespace(**_dsr_kernels(F), **_online_kernels(F, step, grad),
                            **_rate_kernels(F, step, grad))
        _TYPED[dt] = k
    return k


def _neurons(I: Any) -> int:
    """Threads of a (T, N) launch: N, or 0 (nothing to run) for an empty chunk."""
    return I.shape[1] if I.shape[0] else 0


# --------------------------------------------------------------------------------------------
# Host wrappers (signatures of reference_family)
# --------------------------------------------------------------------------------------------

def dsr_forward(I, v, sI, lam, v_th, alpha):
    """DSR neurons over a chunk; see :func:`pysnn_ref.kernels.reference_family.dsr_forward`."""
    xp = host_array_module(I)
    I = as_contiguous(xp, I)
    o = xp.empty_like(I)
    f = I.dtype.type
    launch(_family_kernels(I.dtype).dsr_forward_kernel, _neurons(I), I,
           I, v, sI, f(lam), f(v_th), f(alpha), o)
    return o


def dsr_backward(do, Ibar, gw, c, v_th):
    """``(dI, dv_th)``; see :func:`pysnn_ref.kernels.reference_family.dsr_backward`.  The
    threshold's gradient is summed over the neurons on the device and read as a float."""
    xp = host_array_module(Ibar)
    dt = Ibar.dtype
    do = as_contiguous(xp, do, dt)
    Ibar = as_contiguous(xp, Ibar)
    gw, c = as_contiguous(xp, xp.asarray(gw), dt), as_contiguous(xp, xp.asarray(c), dt)
    dI = xp.empty_like(do)
    part = xp.zeros(do.shape[1], dt)
    launch(_family_kernels(dt).dsr_backward_kernel, _neurons(do), do,
           do, Ibar, gw, c, dt.type(v_th), dI, part)
    return dI, float(part.sum(dtype=np.float64))


def online_forward(I, v, tr, lam, v_th, soft, smooth, kind, a):
    """``(o, u, a_hat)`` of one chunk; see
    :func:`pysnn_ref.kernels.reference_family.online_forward`."""
    xp = host_array_module(I)
    I = as_contiguous(xp, I)
    Tc, N = I.shape
    o, u = xp.empty_like(I), xp.empty_like(I)
    a_hat = xp.empty((Tc, N if tr.shape[0] == N else 0), I.dtype)
    f = I.dtype.type
    launch(_family_kernels(I.dtype).online_forward_kernel, _neurons(I), I,
           I, v, tr, f(lam), f(v_th), bool(soft), bool(smooth), int(kind), f(a), o, u, a_hat)
    return o, u, a_hat


def online_backward(do, u, v_th, kind, a):
    """``dI = do sigma'(u - v_th)``; see
    :func:`pysnn_ref.kernels.reference_family.online_backward`."""
    xp = host_array_module(u)
    u = as_contiguous(xp, u)
    do = as_contiguous(xp, do, u.dtype)
    dI = xp.empty(u.size, u.dtype)
    f = u.dtype.type
    launch(_family_kernels(u.dtype).online_backward_kernel, u.size, u,
           do.reshape(-1), u.reshape(-1), f(v_th), int(kind), f(a), dI)
    return dI.reshape(u.shape)


def rate_forward(I, v, kappa, sO, sE, lam, v_th, soft, smooth, detach_reset, kind, a):
    """Spikes of one chunk, rate / eligibility sums in place; see
    :func:`pysnn_ref.kernels.reference_family.rate_forward`."""
    xp = host_array_module(I)
    I = as_contiguous(xp, I)
    o = xp.empty_like(I)
    f = I.dtype.type
    launch(_family_kernels(I.dtype).rate_forward_kernel, _neurons(I), I,
           I, v, kappa, sO, sE, f(lam), f(v_th), bool(soft), bool(smooth), bool(detach_reset),
           int(kind), f(a), o)
    return o
