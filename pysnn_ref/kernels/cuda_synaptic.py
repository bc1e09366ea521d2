"""The current-based (synaptic) LIF kernels of :mod:`pysnn_ref.kernels.cuda` (reference module,
section 2c), built per float dtype.

Only the kernels live here (:func:`synaptic_kernels`, called by ``kernels/cuda.py`` for each
dtype with that dtype's neuron step and adjoint device functions); their host wrappers and the
launch are in :mod:`pysnn_ref.kernels.cuda`. The pattern is the LIF kernels' (section 2 there):
**one thread per neuron**, the whole time loop inside the thread, the two states (syn, v)
forward and the two adjoints (dL/du, dL/dsyn) backward in registers, so a T-step pass is one
launch; thread ``n`` reads column ``n`` of row ``t`` (coalesced); every float constant is
written ``F(c)`` so a float32 kernel does float32 maths only.
"""

from __future__ import annotations

from typing import Any

from numba import cuda

__all__ = ["synaptic_kernels"]


def synaptic_kernels(F: Any, _step: Any, _adjoint: Any) -> dict[str, Any]:
    """The forward and backward kernels in dtype ``F`` (np.float32 / np.float64), calling the
    device functions of that dtype compiled from the reference's scalar step and adjoint
    (``_step`` = reference.membrane_step_scalar, ``_adjoint`` =
    reference.membrane_adjoint_scalar)."""

    @cuda.jit
    def _synaptic_forward_kernel(I, alpha, lam, v_th, soft, smooth, kind, a, o, u):
        """reference.synaptic_forward for neuron n = thread index, t = 0..T-1 in registers:
        syn = alpha syn + I[t], then the LIF step on syn.

        I, o, u: (T, N). Launch: launch_config(N) -- one thread per neuron, one launch for all T.
        """
        T, N = I.shape
        for n in range(cuda.grid(1), N, cuda.gridsize(1)):  # grid-stride
            syn = F(0.0)
            v = F(0.0)
            for t in range(T):
                syn = alpha * syn + I[t, n]
                u_t, o_t, v = _step(v, syn, lam, v_th, soft, smooth, kind, a)
                u[t, n] = u_t
                o[t, n] = o_t

    @cuda.jit
    def _synaptic_backward_kernel(do, u, alpha, lam, v_th, soft, smooth, detach_reset, kind, a,
                                  dI):
        """Exact BPTT (reference.synaptic_backward) for neuron n = thread index, t = T-1..0.

        dL/du[t+1] and dL/dsyn[t+1] are carried in registers; the membrane adjoint is the LIF's
        (``_adjoint``).  do, u, dI: (T, N). Launch: launch_config(N), one thread per neuron.
        """
        T, N = u.shape
        for n in range(cuda.grid(1), N, cuda.gridsize(1)):  # grid-stride
            du_next = F(0.0)
            ds_next = F(0.0)
            for t in range(T - 1, -1, -1):
                du_next = _adjoint(do[t, n], u[t, n], du_next, lam, v_th, soft, smooth,
                                   detach_reset, kind, a)
                ds_next = du_next + alpha * ds_next
                dI[t, n] = ds_next

    return {"_synaptic_forward_kernel": _synaptic_forward_kernel,
            "_synaptic_backward_kernel": _synaptic_backward_kernel}
