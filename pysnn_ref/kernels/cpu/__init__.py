"""Numba CPU kernels: the computations of :mod:`pysnn_ref.kernels.reference`, fast.

Same signatures as the reference module; tests assert equality (float64, rel <= 1e-10).
Every kernel is ``@njit(cache=True)`` so the JIT compile cost is paid once per machine, and the
hot loops run ``prange`` over independent neurons/rows with the time loop fused inside each one,
kept in registers.  The scalar surrogate formulas are the reference module's own Python functions
compiled with ``njit`` -- one definition of each formula.

One module per subject, sections numbered as in the reference module:

==================  ==========================================================================
``surrogate``       1. surrogate functions (float32 / float64 twins of the reference scalars)
``neuron``          2. LIF / IF neuron (BPTT); 2b. LIF + average pooling fused
``synaptic``        2c. current-based (synaptic) LIF neuron (BPTT, two adjoints)
``flows``           3. LIF / IF streaming with spiking flows; 4. SSF's flow gain
``conv``            5. im2col / col2im; 5b. convolution fused with the GEMMs, threaded GEMM
``pool``            6. max and average pooling
``lstm``            8. spiking LSTM cell
``optim``           9. fused SGD and Adam updates
``malloc``          glibc malloc thresholds (:func:`tune_malloc_once`, called by the backend)
==================  ==========================================================================

This package's namespace is the CPU kernel set: the functions of
:data:`pysnn_ref.kernels.KERNEL_FUNCTIONS` (what every tier provides) plus the CPU-only ones.
"""

from __future__ import annotations

from .conv import (
    MATMUL_SPLIT_MACS,
    col2im,
    conv2d_backward_images,
    conv2d_forward_images,
    im2col,
    limit_numba_blas,
    matmul,
    thread_block,
)
from .flows import lif_forward_flows, ssf_gain
from .lstm import lstm_cell_backward, lstm_cell_forward
from .malloc import (
    MMAP_THRESHOLD_BYTES,
    TRIM_THRESHOLD_BYTES,
    malloc_tuned,
    tune_malloc,
    tune_malloc_once,
)
from .neuron import (
    BLOCK,
    lif_avgpool_backward,
    lif_avgpool_backward_time_sum,
    lif_avgpool_forward,
    lif_backward,
    lif_backward_time_sum,
    lif_forward,
    lif_forward_count,
)
from .optim import FUSED_UPDATE_MIN_SIZE, adam_update, sgd_update
from .pool import avgpool2d_backward, avgpool2d_forward, maxpool2d_backward, maxpool2d_forward
from .surrogate import SURROGATE_KINDS, surrogate_grad, surrogate_primitive
from .synaptic import synaptic_backward, synaptic_forward

#: the fast paths of :data:`pysnn_ref.kernels.FAST_PATHS` this set has: all of them
PROVIDES = frozenset({
    "lif_forward_count", "lif_backward_time_sum", "lif_avgpool_forward", "lif_avgpool_backward",
    "lif_avgpool_backward_time_sum", "avgpool2d_forward", "avgpool2d_backward",
    "conv2d_forward_images", "conv2d_backward_images", "matmul", "sgd_update", "adam_update",
    "lstm_cell_forward", "lstm_cell_backward",
})

__all__ = [
    "PROVIDES",
    "BLOCK", "FUSED_UPDATE_MIN_SIZE", "MATMUL_SPLIT_MACS", "MMAP_THRESHOLD_BYTES",
    "SURROGATE_KINDS", "TRIM_THRESHOLD_BYTES", "adam_update", "avgpool2d_backward",
    "avgpool2d_forward", "col2im", "conv2d_backward_images", "conv2d_forward_images", "im2col",
    "lif_avgpool_backward", "lif_avgpool_backward_time_sum", "lif_avgpool_forward",
    "lif_backward", "lif_backward_time_sum", "lif_forward", "lif_forward_count",
    "lif_forward_flows",
    "limit_numba_blas", "lstm_cell_backward", "lstm_cell_forward", "malloc_tuned", "matmul",
    "maxpool2d_backward", "maxpool2d_forward", "sgd_update", "ssf_gain", "surrogate_grad",
    "surrogate_primitive", "synaptic_backward", "synaptic_forward", "thread_block", "tune_malloc",
    "tune_malloc_once",
]
