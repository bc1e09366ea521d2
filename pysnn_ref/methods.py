"""How a network trains: ``"bptt"``, ``"asf"``, ``"ssf"``, ``"dsr"`` or ``"rate"`` -- one seam,
one argument.

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
=======  ==========================================  =============================================

DSR and rate-BP (the T-independent family, :mod:`pysnn_ref.functional.dsr`,
:mod:`pysnn_ref.functional.rate`) run through the same flow-mode seam: their neurons stream
their own state (``DSRState``, ``RateState``) and collapse the gradient with their own gain; the
weight layers are the flow methods' (one backward on a ``(B, ...)`` gradient ``g`` standing for
every step's).  DSR options: ``dsr_alpha`` (fire at alpha v_th; 1 = "DSR-noF"), ``dsr_spread``
("exact" | "authors"), ``dsr_train_threshold`` (each spiking layer's v_th a Parameter, bounded
below by 5e-4 before every forward).  Rate-BP option: ``rate_detach`` (the eligibility's
recursion through the reset cut, as ``detach_reset``; rate-BP honours the neurons' own
``detach_reset`` too).  DSR is soft-reset only, and with the exact spread its
layers must share one lam (the weight layers keep their input's sum weighted by it).  Neither
method handles BatchNorm in training or MaxPool2d (their per-step fallbacks assume ASF/SSF's
flow weights); :meth:`Method.check_network` refuses them.

In the flow methods the input is streamed ``time_chunk`` steps at a time, so no tensor with a
time axis longer than one chunk exists (except the network's small ``(T, B, classes)`` output).
BatchNorm in training mode needs its batch statistics before it can normalise: the forward then
makes L + 1 passes over the chunks (L BN layers), L statistics passes and the normalised pass
(two-pass streaming, see :class:`~pysnn_ref.nn.BatchNorm`); every pass sees the same input.
The output layer does not spike; its per-step gradients are collapsed into one ``(B, classes)``
gradient by the top spiking layer's flow weights -- exact for losses on the time-averaged or
accumulated output (SDT, ASF-MSE), an approximation for the per-step TET loss.

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

import copy
from collections.abc import Iterator
from typing import Any

import numpy as np

from . import backend
from ._check import check_choice, check_in_range, check_int
from .functional.dsr import DSR_SPREADS
from .functional.flows import R_GRANULARITIES, weighted_time_mean
from .nn import ASF_VARIANTS, LIF, BatchNorm, MaxPool2d, Module, check_method, spiking_layers

__all__ = ["DEFAULT_TIME_CHUNK", "FAMILY_FLOW", "METHODS", "Method", "make_method"]

DEFAULT_TIME_CHUNK = 4
#: the T-independent family's methods that run in flow mode (their own neuron rule and gain)
FAMILY_FLOW = ("dsr", "rate")
#: every method :func:`make_method` knows
METHODS = ("bptt", "asf", "ssf", *FAMILY_FLOW)


class _SliceEncoder:
    """Adapter: an already time-major input (T, B, ...) streamed in chunks."""

    @staticmethod
    def chunks(x: Any, T: int, time_chunk: int) -> Iterator[Any]:
        for t0 in range(0, T, time_chunk):
            yield x[t0:t0 + time_chunk]


class Method:
    """A training method.  ``forward`` runs the network, ``backward`` fills parameter grads.

    Options (flow methods only): ``time_chunk`` (steps streamed at once; default 4),
    ``asf_variant`` ("paper" | "code"),
    ``asf_refresh`` (K >= 1 epochs, or "batch"), ``r_granularity`` ("neuron" | "channel" |
    "sample" | "layer", SSF Table 3), ``r_max`` (SSF's R cutoff, 2).
    """

    def __init__(self, name: str, *, time_chunk: int | None = None,
                 asf_variant: str | None = None, asf_refresh: int | str = 5,
                 r_granularity: str | None = None, r_max: float = 2.0,
                 dsr_alpha: float | None = None, dsr_spread: str | None = None,
                 dsr_train_threshold: bool | None = None,
                 rate_detach: bool | None = None) -> None:
        self.name = check_method(name)
        if rate_detach is not None and name != "rate":
            raise ValueError(f"rate_detach only applies to method 'rate', not {name!r}")
        dsr = (dsr_alpha, dsr_spread, dsr_train_threshold)
        if name != "dsr" and any(o is not None for o in dsr):
            raise ValueError(f"dsr_alpha, dsr_spread and dsr_train_threshold only apply to "
                             f"method 'dsr', not {name!r}")
        if name == "dsr":
            dsr_alpha = check_in_range("dsr_alpha", 1.0 if dsr_alpha is None else dsr_alpha,
                                       0.0, 1.0)
            dsr_spread = check_choice("dsr_spread", dsr_spread or "exact", DSR_SPREADS)
        self.dsr_train_threshold = bool(dsr_train_threshold) if name == "dsr" else False
        if time_chunk is not None:
            check_int("time_chunk", time_chunk)
        if asf_variant is not None:
            if name != "asf":
                raise ValueError(f"asf_variant only applies to method 'asf', not {name!r}")
            check_choice("asf_variant", asf_variant, ASF_VARIANTS)
        if r_granularity is not None:
            if name != "ssf":
                raise ValueError(f"r_granularity only applies to method 'ssf', not {name!r}")
            check_choice("r_granularity", r_granularity, R_GRANULARITIES)
        if asf_refresh != "batch":
            check_int("asf_refresh", asf_refresh)
        self.time_chunk = time_chunk
        self.opts = {"asf_variant": asf_variant or "paper",
                     "r_granularity": r_granularity or "neuron", "r_max": float(r_max),
                     "dsr_alpha": dsr_alpha, "dsr_spread": dsr_spread,
                     "rate_detach": bool(rate_detach)}
        self.asf_refresh = asf_refresh
        self._T = 0

    @property
    def is_flow(self) -> bool:
        """Whether the method streams the time steps and back-propagates once (all but BPTT)."""
        return self.name != "bptt"

    def check_network(self, net: Module) -> None:
        """Reject combinations that make no sense for this method."""
        neurons = spiking_layers(net)
        bptt_only = [m for m in net.modules() if getattr(m, "bptt_only", False)]
        if self.is_flow and bptt_only:  # e.g. SpikingLSTM: no equivalent rate network
            raise ValueError(f"method {self.name!r} cannot train {bptt_only[0]!r}: its gated "
                             "recurrence has no equivalent rate network; use method 'bptt'")
        if not neurons and not bptt_only:
            raise ValueError("net must contain at least one LIF/IF (or SpikingLSTM) layer")
        if self.name in FAMILY_FLOW:
            self._check_family(net, neurons)
        elif self.is_flow:
            for n in neurons:
                if n.p.detach_reset:
                    raise ValueError(
                        f"detach_reset=True only changes the BPTT backward; method "
                        f"{self.name!r} has no reset path to detach -- use detach_reset=False")

    def _check_family(self, net: Module, neurons: list[LIF]) -> None:
        """DSR / rate-BP: layers they cannot train, DSR's soft reset and shared lam; with
        ``dsr_train_threshold``, makes every spiking layer's v_th a Parameter (do this before
        the optimizer collects ``net.parameters()``)."""
        for m in net.modules():
            if isinstance(m, MaxPool2d) or (isinstance(m, BatchNorm) and m.training):
                raise ValueError(f"method {self.name!r} cannot train a network with "
                                 f"{type(m).__name__} (in training): its per-step fallback "
                                 "assumes ASF/SSF's flows; use bptt, asf or ssf")
        if self.name == "dsr":
            if any(n.p.detach_reset for n in neurons):
                raise ValueError("detach_reset=True only changes the BPTT backward; method "
                                 "'dsr' has no reset path to detach -- use detach_reset=False")
            hard = [n for n in neurons if n.p.reset != "soft"]
            if hard:
                raise ValueError(f"method 'dsr' defines only the soft reset (v -= o), got "
                                 f"{hard[0]!r}: use reset='soft' (--reset soft)")
            lams = {n.p.lam for n in neurons}
            if self.opts["dsr_spread"] == "exact" and len(lams) > 1:
                raise ValueError(f"method 'dsr' with dsr_spread='exact' needs one lam for "
                                 f"every spiking layer, got {sorted(lams)}")
            if self.dsr_train_threshold:
                ps = net.parameters()
                dtype = ps[0].data.dtype if ps else np.float32
                for n in neurons:
                    n.train_threshold(dtype)

    def begin_epoch(self, net: Module, epoch: int) -> None:
        """ASF: decide whether this epoch refreshes the scale factors (ASF Alg. 1)."""
        if self.name != "asf":
            return
        refresh = self.asf_refresh == "batch" or epoch % int(self.asf_refresh) == 0
        for n in spiking_layers(net):
            n.update_S = refresh
            if refresh:
                n.asf_refresh()

    def time_chunk_for(self, net: Module, T: int) -> int:
        """The steps streamed at once for ``net`` at ``T``: the option or the default, <= T."""
        return min(T, self.time_chunk or DEFAULT_TIME_CHUNK)

    def forward(self, net: Module, x: Any, T: int | None = None, encoder: Any = None) -> Any:
        """Run ``net`` and return its output ``(T, B, classes)``.

        ``x`` is either a time-major input ``(T, B, ...)`` (``encoder=None``) or a static batch
        that ``encoder`` (see :mod:`pysnn_ref.data`) turns into T steps.
        """
        if encoder is None:
            T = x.shape[0] if T is None else T
            if T != x.shape[0]:
                raise ValueError(f"T must equal x.shape[0] = {x.shape[0]}, got {T}")
            encoder = _SliceEncoder
        elif T is None:
            raise ValueError("T is required with an encoder")
        T = check_int("T", T)
        self._T = T
        if not self.is_flow:
            X = x if encoder is _SliceEncoder else encoder.encode(x, T)
            return net.forward(X)
        net.plan_flow(False)
        chunk = self.time_chunk_for(net, T)
        bns = [m for m in net.modules() if isinstance(m, BatchNorm) and m.training]
        if bns:
            if _stateful(encoder) and backend.array_module(x) is not np:
                x, encoder = encoder.encode(x, T), _SliceEncoder  # no state copy on the device
            self._statistics_passes(net, bns, x, T, encoder, chunk)
        net.flow_begin(self.name, self._flow_opts(net))
        xp = backend.array_module(x)
        ys = [net.forward_chunk(c) for c in encoder.chunks(x, T, chunk)]
        net.flow_end()
        return ys[0] if len(ys) == 1 else xp.concatenate(ys)

    def _flow_opts(self, net: Module) -> dict[str, Any]:
        """The options every layer's ``flow_begin`` sees; DSR with the exact spread adds
        ``x_decay`` = lam, the weights of the spike representation, for the weight layers."""
        if self.name == "dsr" and self.opts["dsr_spread"] == "exact":
            return {**self.opts, "x_decay": spiking_layers(net)[0].p.lam}
        return self.opts

    def _statistics_passes(self, net: Module, bns: list[BatchNorm], x: Any, T: int,
                           encoder: Any, chunk: int) -> None:
        """Two-pass streaming, first part: one pass over the time chunks per BatchNorm layer in
        training, bottom to top (``net.modules()`` order is a topological order).  Each pass
        ends at the first BN without statistics, which merges the chunks' moments; nothing is
        accumulated for the backward.  A stateful encoder (Poisson) is replayed from a copy of
        its state, so every pass and the final one see the same input."""
        for bn in bns:
            bn.forget_statistics()
        opts = {**self.opts, "stats_pass": True}
        for bn in bns:
            net.flow_begin(self.name, opts)
            replay = copy.deepcopy(encoder) if _stateful(encoder) else encoder
            for c in replay.chunks(x, T, chunk):
                net.forward_chunk(c)
            bn.freeze_statistics()

    def backward(self, net: Module, dy: Any) -> None:
        """Accumulate parameter gradients from ``dy`` = dL/dy ``(T, B, classes)``."""
        if not self.is_flow:
            net.backward(dy, need_dx=False)
            return
        top = spiking_layers(net)[-1]
        G = weighted_time_mean(dy, top.flow_decay) if dy.shape[0] > 1 else dy[0]
        net.backward_flow(G, False, dy.shape[0], need_dx=False)

    def __repr__(self) -> str:
        return f"Method({self.name!r})"


def _stateful(encoder: Any) -> bool:
    """Whether ``encoder`` draws new values on every call (the stochastic encoders)."""
    return encoder is not _SliceEncoder and getattr(encoder, "name", None) not in ("direct",
                                                                                     "events")


def make_method(name: str, **opts: Any) -> Method:
    """A :class:`Method` by name, one of :data:`METHODS`."""
    return Method(name, **opts)
