"""Kernel sets: ``reference`` (plain NumPy loops, the teaching text), ``cpu`` (Numba), ``cuda``
(numba.cuda). Do not import these modules from functional code: ask :mod:`pysnn_ref.backend`.

The contract, declared once here:

* :data:`COMMON` -- every set provides these functions with the same signatures; tests assert
  the sets agree (``tests/test_architecture.py`` checks that each set has them all);
* :data:`FAST_PATHS` -- optional kernels (fused or threaded versions of NumPy code the callers
  also have).  Each set lists the ones it has in its module constant ``PROVIDES``; a caller asks
  :func:`provides` instead of probing the module with ``hasattr``.
"""

from __future__ import annotations

from types import ModuleType

__all__ = ["COMMON", "FAST_PATHS", "provides"]

COMMON = (
    "lif_forward", "lif_backward", "synaptic_forward", "synaptic_backward", "lif_forward_flows",
    "ssf_gain", "surrogate_primitive", "surrogate_grad", "im2col", "col2im", "maxpool2d_forward",
    "maxpool2d_backward",
)

FAST_PATHS = (
    "lif_forward_count",              # lif_forward + its spike sum, counted in the kernel
    "lif_backward_time_sum",          # sum_t dI without writing dI (static input below)
    "lif_avgpool_forward",            # LIF + k x k average pooling, one kernel
    "lif_avgpool_backward",
    "lif_avgpool_backward_time_sum",
    "avgpool2d_forward",              # one parallel pass instead of k*k strided adds
    "avgpool2d_backward",
    "conv2d_forward_images",          # im2col fused with the GEMM, per image
    "conv2d_backward_images",
    "matmul",                         # the GEMM split over the threads
    "sgd_update",                     # the optimizer's update in one fused pass
    "adam_update",
    "lstm_cell_forward",              # the spiking LSTM cell, one fused pass
    "lstm_cell_backward",
)


def provides(K: ModuleType, name: str) -> bool:
    """Whether kernel set ``K`` has fast path ``name`` (one of :data:`FAST_PATHS`)."""
    if name not in FAST_PATHS:
        raise ValueError(f"name must be one of {FAST_PATHS}, got {name!r}")
    return name in K.PROVIDES
