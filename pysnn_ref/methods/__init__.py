"""How a network trains: ``"bptt"``, ``"asf"``, ``"ssf"``, ``"dsr"``, ``"rate"``, ``"ottt"`` or
``"sltt"`` -- one seam, one argument.

=======  ==========================================  =============================================
method   forward keeps                               backward
=======  ==========================================  =============================================
bptt     every layer's per-step input, every         exact BPTT with surrogate gradients, T steps
         neuron's membrane u[t]  (memory ~ T)        through every layer  (cost ~ T)
asf      per weight layer sum_t x[t]; per neuron     once through the equivalent network: neuron
         the running sums FI, FO  (memory flat)      gain = layer scale factor S (ASF Eqs. 9-12)
ssf      per weight layer sum_t x[t]; per neuron     once: neuron gain = dFO/dFI of the stabilized
         lam-weighted FI, FO, R  (memory flat)       flow mapping (SSF Eqs. 14-15, 19)
dsr      per weight layer its input's lam^(T-1-t)-   once through the clamp network a =
         weighted sum; per neuron v, Ibar_w          clamp(Ibar_w, 0, v_th): gain 1[0<=Ibar_w<=
         (memory flat)                               v_th], dL/dv_th (DSR, CVPR 2022)
rate     per weight layer sum_t x[t]; per neuron     once through the linearised rate network:
         v, kappa, r, e  (memory flat)               gain e = dr/dc (rate-BP, NeurIPS 2024)
ottt     per neuron v and the presynaptic trace      after every step, that step alone (the past
         a_hat; one step's caches  (memory flat)     cut); dW through a_hat (OTTT, NeurIPS 2022)
sltt     per neuron v; one step's caches             the same with dW through o[t]; SLTT-K: K
         (memory flat)                               sampled steps (SLTT, ICCV 2023)
=======  ==========================================  =============================================

Every method trains a mini-batch through :meth:`Method.train_step` (forward, loss, backward, then
the caller's ``update``); the online methods (:class:`OnlineMethod`) own a per-step version of it.

DSR and rate-BP (the T-independent family, :mod:`pysnn_ref.functional.dsr`,
:mod:`pysnn_ref.functional.rate`) run through the same flow-mode seam: their neurons stream
their own state (``DSRState``, ``RateState``) and collapse the gradient with their own gain; the
weight layers are the flow methods' (one backward on a ``(B, ...)`` gradient ``g`` standing for
every step's). DSR options: ``dsr_alpha`` (fire at alpha v_th; 1 = "DSR-noF"), ``dsr_spread``
(``"exact"`` or ``"authors"``), ``dsr_train_threshold`` (each spiking layer's v_th a Parameter,
bounded below by 5e-4 before every forward). Rate-BP option: ``rate_detach`` (the eligibility's
recursion through the reset cut, as ``detach_reset``; rate-BP honours the neurons' own
``detach_reset`` too). DSR is soft-reset only, and with the exact spread its layers must share
one lam (the weight layers keep their input's sum weighted by it). Neither handles MaxPool2d;
BatchNorm in training is DSR's for IF neurons or ``dsr_spread="authors"`` (its gradient then
the same at every step, as the collapsed BN backward takes it), refused for rate-BP; any
BatchNorm is refused for DSR's exact spread with lam < 1 (:meth:`Method.check_network`).

In the flow methods the input is streamed ``time_chunk`` steps at a time, so no tensor with a
time axis longer than one chunk exists (except the network's small ``(T, B, classes)`` output
and, under a per-step loss, the output layer's kept input).
BatchNorm in training mode needs its batch statistics before it can normalise.  When the chunk
holds all T steps, every layer sees its whole input at once and each BN takes the statistics
from it (**one-pass forward**: one pass, ``stats_in_chunk`` in the flow options); that holds T
steps of one layer's activation at a time, transiently (nothing of length T is kept for the
backward).  With a chunk shorter than T the forward makes L + 1 passes over the chunks (L BN
layers), L statistics passes and the normalised pass (two-pass streaming, see
:class:`~pysnn_ref.nn.BatchNorm`); every pass sees the same input.  ``time_chunk="auto"`` (the
default) takes the one pass for a network with BN in training when the largest per-layer
activation, ``T x B x features x itemsize``, is at most ``one_pass_bytes`` (1 GiB), else
streams chunks of :data:`DEFAULT_TIME_CHUNK` (:meth:`Method.time_chunk_for`); an explicit
``time_chunk`` < T streams.
The output layer does not spike; its gradient is BPTT's exactly for every loss.  For losses on
the time-averaged or accumulated output (SDT, ASF-MSE) the per-step gradients are collapsed into
one ``(B, classes)`` gradient by the top spiking layer's flow weights before it (exact there);
for a per-step loss (TET; ``Method(..., loss="tet")``,
:func:`~pysnn_ref.functional.loss.is_per_step`) the layers above the top spiking layer keep their
per-step inputs (memory ~ T for those alone) and back-propagate ``dy`` per step, collapsed
with that spiking layer's own flow weights on the way down.

ASF scale factor S (:class:`~pysnn_ref.nn.LIF`), ``asf_variant``:

* ``"paper"`` (ASF Eq. 12, Alg. 1): S = sum FO / sum FI over the layer, gathered over all
  forward passes of a refresh epoch; gain S for every neuron.  S is taken only where
  sum FI > 1e-3 sum abs(FI) (``flows.ASF_RTOL``), else the previous S is kept: behind BatchNorm
  (beta = 0) sum FI is round-off and the bare ratio would be ~1e8 (docs/methods.md, "ASF").
* ``"code"`` (the authors' public code, github.com/neural-lab/ASF-BP): S estimated per batch over
  neurons whose accumulated input is at least their spike count, S_new = 1 when that input sum
  is below 1e-3, EMA S = 0.6 S_new + 0.4 S; gain S * 1[FI > 0].

S is refreshed every ``asf_refresh`` epochs (5 in the paper) -- updated on every training batch
of epochs 0, K, 2K, ... and frozen in between -- or on every batch with ``asf_refresh="batch"``.
"""

from __future__ import annotations

from typing import Any

from .base import (
    DEFAULT_TIME_CHUNK,
    FAMILY_FLOW,
    METHODS,
    ONLINE,
    OTTT_UPDATES,
    SUMMARY,
    Method,
    StepTimes,
)
from .online import OnlineMethod

__all__ = ["DEFAULT_TIME_CHUNK", "FAMILY_FLOW", "ONLINE", "OTTT_UPDATES", "METHODS", "SUMMARY",
           "StepTimes", "Method", "OnlineMethod", "make_method"]


def make_method(name: str, **opts: Any) -> Method:
    """A :class:`Method` by name, one of :data:`METHODS` (``"ottt"`` / ``"sltt"``: an
    :class:`OnlineMethod`)."""
    if name in ONLINE:
        return OnlineMethod(name, **opts)
    return Method(name, **opts)
