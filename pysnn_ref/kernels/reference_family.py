"""Reference kernels of the T-independent family: DSR, OTTT / SLTT and rate-based backprop.

The teaching text for these methods, as :mod:`pysnn_ref.kernels.reference` is for BPTT and the
flows: plain loops, one neuron at a time, one step at a time.  :mod:`pysnn_ref.kernels.cpu_family`
(Numba) implements the same signatures and is tested equal to this module
(``tests/test_family_kernels.py``).  The scalar formulas (spike, surrogate gradient) are the
reference module's own.

Conventions as in the reference module: neuron tensors are ``(T, N)``, time by neurons; the
state carried from one time chunk to the next is ``(N,)`` arrays updated in place, so a caller
may stream the steps a chunk at a time (one step for the online methods) and keep nothing of
length T.  Surrogates are ``(kind, a)``.

Sections: 1. DSR (Meng et al., CVPR 2022); 2. online neurons of OTTT (Xiao et al., NeurIPS 2022)
and SLTT (Meng et al., ICCV 2023); 3. rate-based backpropagation (Yu et al., NeurIPS 2024).
"""

from __future__ import annotations

import numpy as np

from .reference import membrane_step_scalar, surrogate_grad_scalar

__all__ = ["dsr_forward", "dsr_backward", "online_forward", "online_backward", "rate_forward"]

# --------------------------------------------------------------------------------------------
# 1. DSR: "Training High-Performance Low-Latency Spiking Neural Networks by Differentiation on
#    Spike Representation" (Meng et al., CVPR 2022, arXiv 2205.00459).
# --------------------------------------------------------------------------------------------


def dsr_forward(I, v, sI, lam, v_th, alpha):
    """DSR neurons over one chunk ``I`` (Tc, N), state ``v`` and ``sI`` (N,) updated in place.

    u[t] = lam v[t-1] + I[t]                      (IF: lam = 1)
    o[t] = v_th H(u[t] - alpha v_th)              spikes of amplitude v_th; alpha < 1 fires early
    v[t] = u[t] - o[t]                            (soft reset: subtract the spike)
    sI  <- lam sI + I[t]                          so sI = sum_t lam^(T-1-t) I[t] after T steps

    Returns the spikes ``o`` (Tc, N).  sI / sum_t lam^t is the weighted mean input Ibar_w the
    backward needs; nothing else is kept.
    """
    Tc, N = I.shape
    o = np.empty_like(I)
    for n in range(N):
        vn = v[n]
        for t in range(Tc):
            u_t = lam * vn + I[t, n]
            o_t = v_th if u_t >= alpha * v_th else 0.0
            vn = u_t - o_t
            sI[n] = lam * sI[n] + I[t, n]
            o[t, n] = o_t
        v[n] = vn
    return o


def dsr_backward(do, Ibar, gw, c, v_th):
    """Backward through the spike representation a = clamp(Ibar_w, 0, v_th).  Returns
    ``(dI, dv_th)``: dI (T, N) and the threshold's gradient (a float, summed over neurons).

    G        = sum_t gw[t] do[t]                 the representation's gradient
    m        = 1[0 <= Ibar_w <= v_th]            the clamp's slope
    dI[t]    = m G c[t]                          no recursion over time
    dL/dv_th = sum over neurons of G 1[Ibar_w > v_th]

    ``gw``, ``c`` (T,): the exact clamp network takes gw = 1, c[t] = lam^(T-1-t) / sum_s lam^s
    (the weights of Ibar_w); the authors' code gw = T c, c = 1/T (identical for IF).
    """
    T, N = do.shape
    dI = np.empty_like(do)
    dv_th = 0.0
    for n in range(N):
        G = 0.0
        for t in range(T):
            G += gw[t] * do[t, n]
        m = 1.0 if 0.0 <= Ibar[n] <= v_th else 0.0
        for t in range(T):
            dI[t, n] = m * G * c[t]
        if Ibar[n] > v_th:
            dv_th += G
    return dI, dv_th


# --------------------------------------------------------------------------------------------
# 2. Online neurons: OTTT ("Online Training Through Time for Spiking Neural Networks", Xiao et
#    al., NeurIPS 2022, arXiv 2210.04195) and SLTT ("Towards Memory- and Time-Efficient
#    Backpropagation for Training Spiking Neural Networks", Meng et al., ICCV 2023,
#    arXiv 2302.14311).  The forward is the LIF forward; the backward drops the membrane's
#    path through time.
# --------------------------------------------------------------------------------------------


def online_forward(I, v, tr, lam, v_th, soft, smooth, kind, a):
    """LIF neurons over one chunk ``I`` (Tc, N) with state ``v`` (N,) in place, and OTTT's
    presynaptic trace ``tr`` (N,) in place when ``tr`` has N entries (0 entries: no trace).

    u[t] = lam v[t-1] + I[t]          o[t] = H(u[t] - v_th)     (the surrogate's primitive in
    hard reset v[t] = u[t] (1 - o[t]),  soft reset v[t] = u[t] - v_th o[t]      smooth mode)
    trace  a_hat[t] = lam a_hat[t-1] + o[t]                      (OTTT Sec. 4.1)

    Returns ``(o, u, a_hat)``, each (Tc, N) (``a_hat`` (Tc, 0) without a trace): the spikes, the
    membrane before reset (what the backward reads) and the trace after each step.
    """
    Tc, N = I.shape
    trace = tr.shape[0] == N
    o = np.empty_like(I)
    u = np.empty_like(I)
    a_hat = np.empty((Tc, N if trace else 0), dtype=I.dtype)
    for n in range(N):
        vn = v[n]
        for t in range(Tc):
            u_t, o_t, vn = membrane_step_scalar(vn, I[t, n], lam, v_th, soft, smooth, kind, a)
            u[t, n] = u_t
            o[t, n] = o_t
            if trace:
                tr[n] = lam * tr[n] + o_t
                a_hat[t, n] = tr[n]
        v[n] = vn
    return o, u, a_hat


def online_backward(do, u, v_th, kind, a):
    """The online backward through the neuron, each step on its own:

    dL/dI[t] = dL/do[t] sigma'(u[t] - v_th)

    -- BPTT's recurrence (:func:`pysnn_ref.kernels.reference.lif_backward`) with the term
    through v[t-1] (the membrane's temporal path, reset included) dropped: v[t-1] is a constant.
    """
    T, N = u.shape
    dI = np.empty_like(u)
    for n in range(N):
        for t in range(T):
            dI[t, n] = do[t, n] * surrogate_grad_scalar(u[t, n] - v_th, kind, a)
    return dI


# --------------------------------------------------------------------------------------------
# 3. Rate-based backpropagation: "Advancing Training Efficiency of Deep Spiking Neural Networks
#    through Rate-based Backpropagation" (Yu et al., NeurIPS 2024, arXiv 2410.11488).
# --------------------------------------------------------------------------------------------


def rate_forward(I, v, kappa, sO, sE, lam, v_th, soft, smooth, detach_reset, kind, a):
    """LIF neurons over one chunk ``I`` (Tc, N), gathering the rate and its eligibility.

    State (N,) in place: the membrane ``v``, ``kappa`` = du[t]/dc (1 before the first step) for
    a shift c of every step's input, and the sums sO = sum_t o[t], sE = sum_t kappa[t] sg[t]
    with sg[t] = sigma'(u[t] - v_th).  After T steps r = sO / T and e = sE / T = dr/dc.

    kappa[t+1] = 1 + lam kappa[t] rho[t],  rho[t] = dv[t]/du[t]:
      soft reset:  rho = 1 - v_th sg      (detach_reset: 1)
      hard reset:  rho = (1 - o) - u sg   (detach_reset: 1 - o)

    Returns the spikes ``o`` (Tc, N).
    """
    Tc, N = I.shape
    o = np.empty_like(I)
    for n in range(N):
        vn = v[n]
        kn = kappa[n]
        for t in range(Tc):
            u_t, o_t, vn = membrane_step_scalar(vn, I[t, n], lam, v_th, soft, smooth, kind, a)
            sg = surrogate_grad_scalar(u_t - v_th, kind, a)
            sO[n] += o_t
            sE[n] += kn * sg
            if soft:
                rho = 1.0 if detach_reset else 1.0 - v_th * sg
            else:
                rho = (1.0 - o_t) if detach_reset else (1.0 - o_t) - u_t * sg
            kn = 1.0 + lam * kn * rho
            o[t, n] = o_t
        v[n] = vn
        kappa[n] = kn
    return o
