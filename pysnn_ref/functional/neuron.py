"""LIF / IF spiking neurons, forward and exact BPTT backward (SSF paper, Sec. 3.1-3.2, 3.4).

Dynamics, for every neuron independently (SSF Eqs. 6-7 with hard reset, 16-17 with soft reset)::

    u[t] = lam * v[t-1] + I[t]            v[-1] = 0, so u[0] = I[0]
    o[t] = H(u[t] - v_th)                 a spike when the membrane reaches the threshold
    hard reset: v[t] = u[t] * (1 - o[t])  soft reset: v[t] = u[t] - v_th * o[t]

so that u[t] = lam * u[t-1] * (1 - o[t-1]) + I[t] (hard), as in SSF Eq. 6.  IF is ``lam = 1``.

Backward (exact BPTT; the loops are in :func:`pysnn_ref.kernels.reference.lif_backward`)::

    dL/do[t] = g[t] + dL/du[t+1] * (-lam * u[t])        (hard;  -lam * v_th for soft)
    dL/du[t] = dL/do[t] * sigma'(u[t] - v_th) + dL/du[t+1] * lam * (1 - o[t])   (hard; * lam soft)
    dL/dI[t] = dL/du[t]                                                          (SSF Eq. 10)

where g[t] is the gradient arriving from the next layer.  **Where the paper differs:** SSF's
Eq. 8 as printed writes the reset term of dL/do[t-1] as (dL/do[t] from the next layer) *
sigma'(u[t] - v_th) * (-lam u[t-1]): it follows u[t] only along its spike into the next layer
and drops the path through the membrane recurrence u[t] -> u[t+1] -> ...  The exact factor is the
whole dL/du[t], as above -- finite differences in smooth mode confirm it (tests/test_neuron.py).
``detach_reset=True`` treats the spike in the reset as a
constant (drops the ``-lam u[t]`` term), the common SpyTorch/SpikingJelly option.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from .. import backend
from .._check import check_choice, check_in_range, check_positive, check_time_major
from ..kernels import provides
from .surrogate import Surrogate, get_surrogate

__all__ = ["RESETS", "NeuronParams", "make_neuron_params", "LIFCache", "lif_forward",
    "lif_forward_rate_p",
    "lif_forward_p", "lif_backward", "LIFPoolCache", "can_fuse_lif_avgpool",
    "lif_avgpool_forward_p", "lif_avgpool_backward"]

RESETS = ("hard", "soft")


@dataclass(frozen=True)
class NeuronParams:
    """Everything that defines a LIF/IF neuron's forward and backward."""

    lam: float
    v_th: float
    reset: str = "hard"
    surrogate: Surrogate = get_surrogate("triangle")
    smooth: bool = False
    detach_reset: bool = False

    @property
    def soft(self) -> bool:
        """True for the soft reset (subtract v_th, SSF Eqs. 16-17)."""
        return self.reset == "soft"


def make_neuron_params(*, lam: float, v_th: float, reset: str = "hard",
                       surrogate: str | Surrogate = "triangle", smooth: bool = False,
                       detach_reset: bool = False) -> NeuronParams:
    """Validate neuron hyper-parameters: ``lam`` in (0, 1], ``v_th`` > 0, known reset/surrogate."""
    lam = check_in_range("lam", lam, 0.0, 1.0)
    v_th = check_positive("v_th", v_th)
    check_choice("reset", reset, RESETS)
    return NeuronParams(lam, v_th, reset, get_surrogate(surrogate), bool(smooth),
                        bool(detach_reset))


class LIFCache(NamedTuple):
    """What :func:`lif_backward` needs: the membrane before reset ``u`` (T, B, ...), the neuron
    parameters and T.  For a time-broadcast input on the CPU (direct encoding: the layer below
    ran once) ``u`` is instead the input current's one step, (1, B, ...), from which the backward
    recomputes the membrane (bit-equal: the same recurrence), so it is never stored."""

    u: Any
    p: NeuronParams
    T: int


def lif_forward(I: Any, *, lam: float, v_th: float, reset: str = "hard",
                surrogate: str | Surrogate = "triangle", smooth: bool = False,
                detach_reset: bool = False) -> tuple[Any, LIFCache]:
    """Run LIF (IF for ``lam=1``) neurons over time.

    Inputs:
      I: input current, time-major ``(T, B, ...)``, float32 or float64.
      lam: membrane decay per step in (0, 1];  v_th: firing threshold > 0.
      reset: "hard" (SSF Eqs. 6-7) or "soft" (Eqs. 16-17).
      surrogate: name, "name:param" or :class:`Surrogate` -- used by the backward, and by the
        forward in smooth mode.
      smooth: spike with the surrogate's primitive instead of the Heaviside (gradient checks).
      detach_reset: drop the reset path from the backward.
    Returns ``(o, cache)``: spikes shaped like ``I`` and the cache for :func:`lif_backward`.
    """
    p = make_neuron_params(lam=lam, v_th=v_th, reset=reset, surrogate=surrogate, smooth=smooth,
                           detach_reset=detach_reset)
    return lif_forward_p(I, p)


def lif_forward_p(I: Any, p: NeuronParams) -> tuple[Any, LIFCache]:
    """:func:`lif_forward` with already-validated :class:`NeuronParams` (used by layers)."""
    check_time_major("I", I)
    T = I.shape[0]
    K = backend.kernels_for(I)
    o, u = K.lif_forward(I.reshape(T, -1), p.lam, p.v_th, p.soft, p.smooth, p.surrogate.kind,
                         p.surrogate.a)
    return o.reshape(I.shape), LIFCache(u.reshape(u.shape[0], *I.shape[1:]), p, T)


def lif_forward_rate_p(I: Any, p: NeuronParams) -> tuple[Any, LIFCache, Any]:
    """:func:`lif_forward_p` plus the firing rate ``o.mean()`` (a scalar of ``I``'s dtype,
    on ``I``'s device): from the kernel's own spike count where the kernel set has one
    (``lif_forward_count``: no second pass over the spikes), else ``o.mean()``."""
    K = backend.kernels_for(I)
    if not provides(K, "lif_forward_count"):
        o, cache = lif_forward_p(I, p)
        return o, cache, o.mean()
    check_time_major("I", I)
    T = I.shape[0]
    o, u, spikes = K.lif_forward_count(I.reshape(T, -1), p.lam, p.v_th, p.soft, p.smooth,
                                       p.surrogate.kind, p.surrogate.a)
    rate = I.dtype.type(spikes) / o.size  # o.mean()'s float32 / float64 arithmetic
    return o.reshape(I.shape), LIFCache(u.reshape(u.shape[0], *I.shape[1:]), p, T), rate


def _time_summed(K: Any, name: str, time_sum: bool, shape: tuple, *args: Any) -> Any:
    """Run kernel ``name`` of ``K`` on ``(*args)``: dI (T, N) reshaped to ``shape`` (T, ...), or
    with ``time_sum`` its sum over the steps, ``shape[1:]`` -- from the kernel set's own
    ``<name>_time_sum`` (the CPU's: dI is never written) where it has one."""
    if time_sum and provides(K, name + "_time_sum"):
        return getattr(K, name + "_time_sum")(*args).reshape(shape[1:])
    dI = getattr(K, name)(*args).reshape(shape)
    return dI.sum(axis=0) if time_sum else dI


def lif_backward(do: Any, cache: LIFCache, time_sum: bool = False) -> Any:
    """Exact BPTT through the neuron: ``dI`` from ``do`` = dL/do (shaped like the spikes).

    ``time_sum=True`` returns ``sum_t dI[t]`` instead (shape ``u.shape[1:]``): all that a layer
    below with a time-broadcast input needs (:func:`pysnn_ref.functional.linear.linear_backward`
    of a static input reads only ``sum_t dout[t]``)."""
    u, p, T = cache
    check_time_major("do", do)
    shape = (T, *u.shape[1:])
    if tuple(do.shape) != shape:
        raise ValueError(f"do must have shape {shape}, got {tuple(do.shape)}")
    return _time_summed(backend.kernels_for(u), "lif_backward", time_sum, shape,
                        do.reshape(T, -1),
                        u.reshape(u.shape[0], -1), p.lam, p.v_th, p.soft, p.smooth, p.detach_reset,
                        p.surrogate.kind, p.surrogate.a)


class LIFPoolCache(NamedTuple):
    """What :func:`lif_avgpool_backward` needs: the membrane ``u`` (T, B, C, H, W), the neuron
    parameters, the window and the spike count of the forward (for the layer's firing rate).

    For a time-broadcast input (direct encoding: the layer below ran once) ``u`` is instead the
    input current's one step, (1, B, C, H, W), and the backward recomputes the membrane from it
    (bit-equal: the same recurrence), so the T steps' membrane is never stored."""

    u: Any
    p: NeuronParams
    kernel_size: int
    spikes: float
    T: int


def can_fuse_lif_avgpool(I: Any, kernel_size: int, stride: int | None) -> bool:
    """Whether :func:`lif_avgpool_forward` applies: a fused kernel exists for ``I``'s device
    (the Numba CPU set), ``I`` is time-major images (T, B, C, H, W) and the windows do not
    overlap (stride = kernel size) and fit the image."""
    k = kernel_size
    return (I.ndim == 5 and (stride is None or stride == k) and k <= min(I.shape[-2:])
            and provides(backend.kernels_for(I), "lif_avgpool_forward"))


def lif_avgpool_forward_p(I: Any, p: NeuronParams, kernel_size: int) -> tuple[Any, LIFPoolCache]:
    """LIF neurons (:func:`lif_forward_p`) followed by k x k average pooling with stride k
    (:func:`pysnn_ref.functional.pool.avgpool2d_forward`), in one pass over the neurons.

    Returns ``(pooled, cache)``: the pooled spikes (T, B, C, H // k, W // k), equal to pooling
    :func:`lif_forward_p`'s spikes, and the cache of :func:`lif_avgpool_backward`.  The spikes
    are not stored: the backward recomputes them from the membrane ``u`` (``o = H(u - v_th)``,
    or the surrogate's primitive in smooth mode).  For a time-broadcast ``I`` (stride 0 along
    time) not even ``u`` is stored: the cache keeps I's one step and the backward recomputes the
    membrane (see :class:`LIFPoolCache`).  Check :func:`can_fuse_lif_avgpool` first."""
    check_time_major("I", I)
    T, k = I.shape[0], int(kernel_size)
    H, W = I.shape[-2:]
    K = backend.kernels_for(I)
    out, u, n = K.lif_avgpool_forward(I.reshape(T, -1), p.lam, p.v_th, p.soft, p.smooth,
                                      p.surrogate.kind, p.surrogate.a, H, W, k)
    return (out.reshape(*I.shape[:-2], H // k, W // k),
            LIFPoolCache(u.reshape(u.shape[0], *I.shape[1:]), p, k, n, T))


def lif_avgpool_backward(dp: Any, cache: LIFPoolCache, time_sum: bool = False) -> Any:
    """BPTT through :func:`lif_avgpool_forward_p`: ``dI`` from ``dp`` = dL/d(pooled spikes);
    the pooling backward (dL/do = dp / k^2 over each window) happens inside the recurrence.
    ``time_sum=True`` returns ``sum_t dI[t]``, as :func:`lif_backward`."""
    u, p, k, _, T = cache
    H, W = u.shape[-2:]
    shape = (T, *u.shape[1:-2], H // k, W // k)
    if tuple(dp.shape) != shape:
        raise ValueError(f"dp must have shape {shape}, got {tuple(dp.shape)}")
    return _time_summed(backend.kernels_for(u), "lif_avgpool_backward", time_sum,
                        (T, *u.shape[1:]), dp.reshape(T, -1), u.reshape(u.shape[0], -1), p.lam,
                        p.v_th, p.soft, p.smooth, p.detach_reset, p.surrogate.kind,
                        p.surrogate.a, H, W, k)
