"""The method seam: :class:`Method` (BPTT and the flow methods asf, ssf, dsr, rate), the step
every method trains a mini-batch with (:meth:`Method.train_step`, :class:`StepTimes`) and the
names and one-line summaries of all methods (:mod:`pysnn_ref.methods` has the overview)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import numpy as np

from .. import backend
from .._check import check_choice, check_in_range, check_int
from ..functional.dsr import DSR_SPREADS
from ..functional.flows import R_GRANULARITIES, weighted_time_mean
from ..functional.loss import is_per_step
from ..nn import (
    ASF_VARIANTS,
    LIF,
    BatchNorm,
    MaxPool2d,
    Module,
    check_method,
    spiking_layers,
)

__all__ = ["DEFAULT_TIME_CHUNK", "ONE_PASS_BYTES", "FAMILY_FLOW", "ONLINE", "OTTT_UPDATES",
           "METHODS", "SUMMARY", "StepTimes", "Method"]

DEFAULT_TIME_CHUNK = 4
#: ``time_chunk="auto"`` with BatchNorm in training: the one-pass forward (chunk = T) when the
#: largest per-layer activation of all T steps, T x B x features x itemsize, is at most this
ONE_PASS_BYTES = 1 << 30
#: the T-independent family's methods that run in flow mode (their own neuron rule and gain)
FAMILY_FLOW = ("dsr", "rate")
#: the online methods: per-step forward and backward, the neuron's past cut (OnlineMethod)
ONLINE = ("ottt", "sltt")
#: OTTT's weight updates: A = accumulate over the T steps, one step per batch; O = online,
#: an optimizer step after every time step (the authors' ``--online_update``)
OTTT_UPDATES = ("A", "O")
#: every method :func:`make_method` knows
METHODS = ("bptt", "asf", "ssf", *FAMILY_FLOW, *ONLINE)


#: what each method does, in one line (the run header, ``Method.describe``)
SUMMARY = {
    "bptt": "exact backprop through time",
    "asf": "accumulated spiking flow, one backward through the equivalent network",
    "ssf": "stabilized spiking flow, one backward through the flow mapping",
    "dsr": "differentiation on spike representation, one backward through the clamp",
    "rate": "rate-based backprop, one backward through the linearised rate network",
    "ottt": "online training through time: per-step backward, neuron past cut, weight "
            "gradient through the presynaptic trace",
    "sltt": "spatial learning through time: per-step backward, neuron past cut",
}


class StepTimes:
    """The device marks (:meth:`pysnn_ref.backend.Backend.mark`) of one training step: a list of
    (start, end) spans of forward work and one of backward work -- one span each for BPTT and
    the flow methods, one per time step for the online methods, whose forward and backward
    alternate."""

    def __init__(self) -> None:
        self.forward: list[tuple[Any, Any]] = []
        self.backward: list[tuple[Any, Any]] = []


class _SliceEncoder:
    """Adapter: an already time-major input (T, B, ...) streamed in chunks."""

    @staticmethod
    def chunks(x: Any, T: int, time_chunk: int) -> Iterator[Any]:
        for t0 in range(0, T, time_chunk):
            yield x[t0:t0 + time_chunk]


class Method:
    """A training method.  ``forward`` runs the network, ``backward`` fills parameter grads.

    Options (flow methods only): ``time_chunk`` (steps streamed at once: an int, or
    ``"auto"``/None, the default -- see :meth:`time_chunk_for`), ``one_pass_bytes`` (the
    memory budget of the one-pass BN forward under ``"auto"``, default :data:`ONE_PASS_BYTES`),
    ``asf_variant`` ("paper" | "code"),
    ``asf_refresh`` (K >= 1 epochs, or "batch"), ``r_granularity`` ("neuron" | "channel" |
    "sample" | "layer", SSF Table 3), ``r_max`` (SSF's R cutoff, 2), ``loss`` (the name of
    the loss the method trains with, one of :data:`~pysnn_ref.functional.loss.LOSSES`: with a
    per-step loss (TET, :func:`~pysnn_ref.functional.loss.is_per_step`) the layers above the
    top spiking layer keep their per-step inputs and back-propagate ``dy`` per step, so the
    output layer's gradient is exact; None or a loss read through the time mean (SDT, ASF-MSE):
    ``dy`` is collapsed first, see :meth:`backward`).
    """

    def __init__(self, name: str, *, time_chunk: int | str | None = None,
                 one_pass_bytes: int = ONE_PASS_BYTES,
                 asf_variant: str | None = None, asf_refresh: int | str = 5,
                 r_granularity: str | None = None, r_max: float = 2.0,
                 dsr_alpha: float | None = None, dsr_spread: str | None = None,
                 dsr_train_threshold: bool | None = None,
                 rate_detach: bool | None = None, loss: str | None = None) -> None:
        self.name = check_method(name)
        #: the loss's gradient differs per step: back-propagate it per step above the top
        #: spiking layer (:meth:`backward`); only a flow method's plan reads it
        self.per_step_loss = loss is not None and is_per_step(loss)
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
        if time_chunk == "auto":
            time_chunk = None
        if time_chunk is not None and (isinstance(time_chunk, (bool, str))
                                       or not isinstance(time_chunk, (int, np.integer))
                                       or time_chunk < 1):
            raise ValueError(f"time_chunk must be an integer >= 1 or 'auto', got {time_chunk!r}")
        self.one_pass_bytes = check_int("one_pass_bytes", one_pass_bytes, minimum=0)
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
        self._input_seen: tuple[int, tuple, int] | None = None  # (B, step shape, itemsize)

    @property
    def is_flow(self) -> bool:
        """Whether the method streams the time steps and back-propagates once (all but BPTT)."""
        return self.name != "bptt"

    def check_network(self, net: Module) -> None:
        """Reject combinations that make no sense for this method."""
        neurons = spiking_layers(net)
        bptt_only = [m for m in net.modules() if getattr(m, "bptt_only", False)]
        if self.is_flow and bptt_only:  # SpikingLSTM, SynapticLIF: no equivalent rate network
            raise ValueError(f"method {self.name!r} cannot train {bptt_only[0]!r}: its "
                             "recurrence has no equivalent rate network; use method 'bptt'")
        if not neurons and not bptt_only:
            raise ValueError("net must contain at least one LIF/IF (or SpikingLSTM, SynapticLIF) "
                             "layer")
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
            if isinstance(m, MaxPool2d) or (isinstance(m, BatchNorm) and m.training
                                            and self.name == "rate"):
                raise ValueError(f"method {self.name!r} cannot train a network with "
                                 f"{type(m).__name__} (in training): its per-step fallback "
                                 "assumes ASF/SSF's flows; use bptt, asf or ssf")
        if self.name == "dsr":
            self._check_dsr_batchnorm(net, neurons)
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

    def _check_dsr_batchnorm(self, net: Module, neurons: list[LIF]) -> None:
        """DSR with BatchNorm: both BN backwards (collapsed, per-step fallback) take the gradient
        from above as the same at every step, which DSR's is for IF (lam = 1) and for
        ``dsr_spread="authors"`` (uniform 1/T); the exact spread with lam < 1 gives
        dL/dI[t] ~ lam^(T-1-t), which neither computes (docs/methods.md, "DSR and
        BatchNorm"); in eval mode too (dgamma then needs the weighted sum of x_hat)."""
        lam = [n.p.lam for n in neurons if n.p.lam != 1.0]
        bn = any(isinstance(m, BatchNorm) for m in net.modules())
        if bn and lam and self.opts["dsr_spread"] == "exact":
            raise ValueError(f"dsr_spread='exact' with lam = {lam[0]:g} < 1 cannot train "
                             "BatchNorm (its gradient is not the same at every step): use "
                             "dsr_spread='authors' or IF neurons (lam = 1)")

    def begin_epoch(self, net: Module, epoch: int) -> None:
        """ASF: decide whether this epoch refreshes the scale factors (ASF Alg. 1)."""
        if self.name != "asf":
            return
        refresh = self.asf_refresh == "batch" or epoch % int(self.asf_refresh) == 0
        for n in spiking_layers(net):
            n.update_S = refresh
            if refresh:
                n.asf_refresh()

    def time_chunk_for(self, net: Module, T: int, x: Any = None, encoder: Any = None) -> int:
        """The steps streamed at once for ``net`` at ``T`` (<= T).

        An explicit ``time_chunk`` is kept (< T with BatchNorm in training: two-pass streaming).
        ``"auto"`` (the default): :data:`DEFAULT_TIME_CHUNK`, except for a network with
        BatchNorm in training, where it is T -- the **one-pass forward**, no statistics passes
        -- when the largest activation of one layer over all T steps, estimated from the input
        ``x`` (the ``encoder``'s static batch, or the time-major input) and the layers' shapes
        as ``T x B x features x itemsize`` (:meth:`~pysnn_ref.nn.Module.step_extent`), is at most
        ``one_pass_bytes`` (default :data:`ONE_PASS_BYTES`, 1 GiB); else the default.  Without
        ``x``: the estimate from the last forward's input.  The one pass holds T steps of one
        layer's activation (and the few temporaries of that layer) at a time, transiently;
        nothing of length T is kept for the backward."""
        if self.time_chunk is not None:
            return min(T, self.time_chunk)
        if not _training_bns(net):  # no statistics to gather: stream (nothing to estimate)
            return min(T, DEFAULT_TIME_CHUNK)
        if x is not None and getattr(x, "shape", None) is not None:
            shape = x.shape
            B, step = (shape[1], shape[2:]) if encoder in (None, _SliceEncoder) else (
                shape[0], shape[1:])
            itemsize = max([np.dtype(getattr(x, "dtype", np.float32)).itemsize]
                           + [p.data.dtype.itemsize for p in net.parameters()])
            self._input_seen = (int(B), tuple(step), itemsize)
        if self._input_seen is None:  # without x: the last forward's input, if any
            return min(T, DEFAULT_TIME_CHUNK)
        B, step, itemsize = self._input_seen
        need = T * B * net.step_extent(step)[0] * itemsize
        return T if need <= self.one_pass_bytes else min(T, DEFAULT_TIME_CHUNK)

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
        net.plan_flow(self.per_step_loss)  # per-step: the layers above the top LIF keep x[t]
        chunk = self.time_chunk_for(net, T, x, encoder)
        bns = _training_bns(net)
        one_pass = chunk >= T  # every BN sees all T steps at once: statistics in the chunk
        for bn in bns:
            bn.forget_statistics()
        if bns and not one_pass:
            if _stateful(encoder) and backend.array_module(x) is not np:
                x, encoder = encoder.encode(x, T), _SliceEncoder  # no state copy on the device
            self._statistics_passes(net, bns, x, T, encoder, chunk)
        net.flow_begin(self.name, {**self._flow_opts(net), "stats_in_chunk": one_pass,
                                   "time_steps": T})
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
        its state, so every pass and the final one see the same input.  Only when the chunk is
        shorter than T: a chunk of all T steps is normalised in the one pass (:meth:`forward`,
        ``stats_in_chunk``)."""
        opts = {**self.opts, "stats_pass": True}
        for bn in bns:
            net.flow_begin(self.name, opts)
            replay = copy.deepcopy(encoder) if _stateful(encoder) else encoder
            for c in replay.chunks(x, T, chunk):
                net.forward_chunk(c)
            bn.freeze_statistics()

    def train_step(self, net: Module, x: Any, labels: Any, T: int, encoder: Any,
                   loss_fwd: Any, loss_bwd: Any, update: Any, mark: Any
                   ) -> tuple[Any, Any, StepTimes]:
        """One mini-batch: forward, the loss ``loss_fwd(y, labels) -> (value, cache)`` and its
        gradient ``loss_bwd(cache)``, :meth:`backward`, then ``update(value)`` (the caller's
        gradient all-reduce, NaN check and optimizer step).  ``mark()`` marks device time: the
        forward span is the forward and the loss, the backward span the loss gradient and the
        method's backward.  Returns ``(update's loss, output (T, B, classes), times)``.  The
        online methods (:class:`OnlineMethod`) run their own per-step version."""
        times = StepTimes()
        m0 = mark()
        out = self.forward(net, x, T, encoder)
        value, cache = loss_fwd(out, labels)
        m1 = mark()
        dy = loss_bwd(cache)
        del cache
        self.backward(net, dy)
        del dy
        times.forward.append((m0, m1))
        times.backward.append((m1, mark()))
        return update(value), out, times

    def describe(self) -> str:
        """What this method does, in one line (:data:`SUMMARY`, with its variant)."""
        return SUMMARY[self.name]

    def spike_rates(self, layers: list[Module]) -> list[Any]:
        """The mean spike rate of each spiking layer in the last forward (device scalars)."""
        return [n.spike_rate for n in layers]

    def backward(self, net: Module, dy: Any) -> None:
        """Accumulate parameter gradients from ``dy`` = dL/dy ``(T, B, classes)``.

        Flow methods: with a per-step loss (``loss="tet"``) ``dy`` goes down per step to the
        output layer, which kept its per-step input, so its ``dW = sum_t dy[t]^T x[t]`` and
        ``db`` are BPTT's exactly; the gradient is collapsed with the top spiking layer's flow
        weights (the method's own rule) by the output layer itself where only pooling /
        flatten lie between (:meth:`~pysnn_ref.nn.WeightLayer.collapse_into`), else by that
        spiking layer.  Otherwise ``dy`` is collapsed at once with those weights: exact at the
        output layer for a ``dy`` that is the same at every step (SDT, ASF-MSE), an
        approximation for any other.  Through linear layers between the two (pooling,
        flatten, residual adds) both paths hand the top spiking layer the same gradient."""
        if not self.is_flow:
            net.backward(dy, need_dx=False)
            return
        if self.per_step_loss:
            net.backward_flow(dy, True, dy.shape[0], need_dx=False)
            return
        top = spiking_layers(net)[-1]
        G = weighted_time_mean(dy, top.flow_decay) if dy.shape[0] > 1 else dy[0]
        net.backward_flow(G, False, dy.shape[0], need_dx=False)

    def __repr__(self) -> str:
        return f"Method({self.name!r})"


def _training_bns(net: Module) -> list[BatchNorm]:
    """The BatchNorm layers of ``net`` in training mode, bottom to top."""
    return [m for m in net.modules() if isinstance(m, BatchNorm) and m.training]


def _stateful(encoder: Any) -> bool:
    """Whether ``encoder`` draws new values on every call (the stochastic encoders)."""
    return encoder is not _SliceEncoder and getattr(encoder, "name", None) not in ("direct",
                                                                                     "events")



