"""Stateful layers and containers built on :mod:`pysnn_ref.functional`.

==================  ==========================================================================
``module``          :class:`Module`: parameters, modes, the BPTT and flow interfaces, hooks
``weight``          :class:`Linear`, :class:`Conv2d` (and their flow-mode :class:`WeightLayer`)
``norm``            :class:`BatchNorm` (BN / tdBN), streamed in flow mode
``pool``            :class:`AvgPool2d`, :class:`MaxPool2d`, :class:`Flatten`
``neurons``         :class:`LIF`, :func:`IF`, :class:`SpikingLSTM`
``synaptic``        :class:`SynapticLIF` (current-based LIF: a synaptic current, then the membrane)
``containers``      :class:`Sequential`, :class:`Residual`
``sew``             :class:`SEWResidual` (SEW-ResNet blocks: ADD / AND / IAND), :class:`ZeroPad2d`
``recompose``       :class:`WindowRecompose` (window partition + recomposed computing)
``monitor``         :class:`SpikeMonitor` (records spikes through forward hooks)
==================  ==========================================================================

Every layer has parameters (:class:`~pysnn_ref.parameter.Parameter`, with ``.grad``), a train /
eval mode, and two ways to run, chosen by the training *method* (:mod:`pysnn_ref.methods`):

**BPTT** (``forward(x)`` / ``backward(dy)``): the whole time-major tensor ``(T, B, ...)`` goes
through each layer; each layer caches what its backward needs; spiking layers back-propagate
through time exactly (:func:`~pysnn_ref.functional.neuron.lif_backward`).

**Flows** (ASF, SSF: ``flow_begin`` / ``forward_chunk`` / ``flow_end`` / ``backward_flow``):
the input is streamed through the network a time chunk at a time; spiking layers keep only their
membrane and running sums (:class:`~pysnn_ref.functional.flows.FlowState`), weight layers only
the time-summed input.  The backward then runs **once**, on one ``(B, ...)`` gradient ``G``
that stands for every time step's gradient (all per-step input gradients are equal under
ASF/SSF: SSF Eq. 15, ASF Eqs. 10-11):

* Linear / Conv2d: ``dx = G W``, ``dW = G^T sum_t x[t]``, ``db = T sum G``;
* AvgPool / Flatten: their ordinary backward on ``G``;
* LIF / IF: ``G_in = G * dFO/dFI`` (the flow gain: SSF Eqs. 14/19, ASF scale factor S).

Two layers are not linear in time.  BatchNorm with batch statistics needs every step before
it can normalise, and its backward depends on x_hat[t].  The method streams it anyway, in L + 1
passes over the time chunks (L BN layers in training): statistics passes, then the normalised
pass.  Its backward stays collapsed because, for one ``G`` at every step, BN's input gradient is
affine in the step's input, ``dz[t] = a + c (z[t] - mean)``; the weight layer below turns that
into ``dW = wgrad(a, sum_t x[t]) + c A`` with ``A = sum_t wgrad(z[t] - mean, x[t])`` kept in the
forward (the "collapsed BN backward", :class:`BatchNorm`).  Where BN's input is not a weight layer
(or its gradient arrives per step) it falls back to a per-step backward: it keeps its per-step
input, turns ``G`` into a per-step gradient ``(T, B, ...)``, the weight layers between it and the
next spiking layer below keep their per-step inputs (:meth:`Sequential.plan_flow` decides which),
and the spiking layer below collapses the per-step gradient again by its flow weights (SSF:
lam^(T-t)-weighted mean; ASF: uniform mean) -- that memory grows with T.  MaxPool2d right above
a spiking layer collapses exactly through a flow-weighted map of the steps each input won (see
its docstring); elsewhere it falls back to the per-step backward too.
"""

from __future__ import annotations

from .containers import Residual, Sequential
from .module import (
    ASF_VARIANTS,
    FLOW_INPUT,
    FLOW_METHODS,
    HookHandle,
    Module,
    SpikingModule,
    check_method,
)
from .monitor import SpikeMonitor
from .neurons import IF, LIF, SpikingLSTM, spiking_layers
from .norm import BatchNorm
from .pool import AvgPool2d, Flatten, MaxPool2d
from .recompose import WindowRecompose
from .sew import SEWResidual, ZeroPad2d
from .synaptic import SynapticLIF
from .weight import Conv2d, Linear, WeightLayer

__all__ = [
    "ASF_VARIANTS", "FLOW_INPUT", "FLOW_METHODS", "Module", "SpikingModule", "check_method",
    "Conv2d", "Linear",
    "WeightLayer", "BatchNorm", "AvgPool2d", "Flatten", "MaxPool2d", "IF", "LIF",
    "SpikingLSTM", "spiking_layers", "Residual", "Sequential", "WindowRecompose", "SpikeMonitor",
    "HookHandle", "SEWResidual", "ZeroPad2d", "SynapticLIF",
]
