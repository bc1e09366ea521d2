"""Spiking layers: :class:`LIF` / :func:`IF` (:mod:`pysnn_ref.functional.neuron`, flows:
:mod:`pysnn_ref.functional.flows`) and the spiking LSTM (:mod:`pysnn_ref.functional.lstm`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import backend
from .._check import check_int
from ..functional import flows as F
from ..functional.dsr import (
    DSRState,
    bound_threshold,
    dsr_finish,
    dsr_forward_chunk,
    dsr_gain,
    make_dsr_params,
)
from ..functional.lstm import lstm_backward, lstm_forward, make_lstm_params
from ..functional.neuron import (
    LIFPoolCache,
    can_fuse_lif_avgpool,
    lif_avgpool_backward,
    lif_avgpool_forward_p,
    lif_backward,
    lif_forward_rate_p,
    make_neuron_params,
)
from ..functional.rate import RateState, rate_finish, rate_forward_chunk
from ..functional.surrogate import Surrogate
from ..parameter import Parameter
from .module import Module, SpikingModule

__all__ = ["LIF", "IF", "spiking_layers", "SpikingLSTM"]


class LIF(SpikingModule):
    """LIF spiking neurons (IF for ``lam=1``): SSF Eqs. 6-7 (hard reset), 16-17 (soft reset).

    BPTT: exact backward through time.  Flow mode: keeps a :class:`FlowState` (membrane and
    running sums) and back-propagates through the flow gain (ASF scale factor or SSF mapping).
    """

    _method: str | None = None  # the flow method of the pass in progress (flow_begin)
    #: DSR threshold training: v_th as a Parameter (None: fixed), see :meth:`train_threshold`
    v_th_param: Parameter | None = None

    def __init__(self, lam: float = 0.5, v_th: float = 1.0, reset: str = "hard",
                 surrogate: str | Surrogate = "triangle", detach_reset: bool = False,
                 smooth: bool = False) -> None:
        super().__init__()
        self.p = make_neuron_params(lam=lam, v_th=v_th, reset=reset, surrogate=surrogate,
                                    smooth=smooth, detach_reset=detach_reset)
        # ASF scale factor state (ASF Eq. 12), one scalar per layer
        self.S = 1.0
        self.update_S = True
        self._asf_tot = [0.0, 0.0, 0.0]  # sum FO, sum FI, sum |FI| since the last refresh
        self._rate: Any = 0.0       # mean spikes per neuron per step, last forward (on device)

    def set_surrogate(self, surrogate: Surrogate) -> None:
        """Use ``surrogate`` for the BPTT backward from now on (the forward is unchanged)."""
        self.p = make_neuron_params(lam=self.p.lam, v_th=self.p.v_th, reset=self.p.reset,
                                    surrogate=surrogate, smooth=self.p.smooth,
                                    detach_reset=self.p.detach_reset)

    def _set_v_th(self, v_th: float) -> None:
        self.p = make_neuron_params(lam=self.p.lam, v_th=v_th, reset=self.p.reset,
                                    surrogate=self.p.surrogate, smooth=self.p.smooth,
                                    detach_reset=self.p.detach_reset)

    # DSR threshold training
    def train_threshold(self, dtype: Any = np.float32) -> Parameter:
        """Make this layer's threshold a trainable :class:`Parameter` ``v_th`` of shape (1,) (DSR
        threshold training; idempotent).  The DSR flow pass clamps it by
        :func:`~pysnn_ref.functional.dsr.bound_threshold` before every forward and adds
        dL/dv_th to its ``grad``; every other method reads its value as the fixed threshold."""
        if self.v_th_param is None:
            self.v_th_param = Parameter("v_th", np.full(1, self.p.v_th, dtype=dtype))
        return self.v_th_param

    def own_parameters(self) -> list[Parameter]:
        """No parameters, unless the threshold is trained (DSR): then ``[v_th]``."""
        return [] if self.v_th_param is None else [self.v_th_param]

    def load_state_dict(self, state: dict[str, np.ndarray], prefix: str = "") -> None:
        """A saved trained threshold (key ``v_th``) turns threshold training on and is loaded."""
        if prefix + "v_th" in state:
            self.train_threshold(state[prefix + "v_th"].dtype)
        super().load_state_dict(state, prefix)
        if self.v_th_param is not None:
            self._set_v_th(float(backend.to_numpy(self.v_th_param.data)[0]))

    # BPTT
    def forward(self, x: Any) -> Any:
        # the rate stays on the device until read (no sync inside a step); on the CPU the
        # kernel counts the spikes as it writes them (no second pass over them)
        o, self._cache, self._rate = lif_forward_rate_p(x, self.p)
        return o

    def forward_pooled(self, x: Any, k: int, stride: int | None) -> Any | None:
        """This layer and the k x k average pooling above it in one kernel
        (:func:`~pysnn_ref.functional.neuron.lif_avgpool_forward_p`): the spikes are pooled in
        the kernel and never stored; :meth:`backward` then takes the pooled gradient.  Returns
        None, having run nothing, where the kernel does not apply
        (:func:`~pysnn_ref.functional.neuron.can_fuse_lif_avgpool`).  Called by
        :meth:`Sequential.forward` for the pairs of its fusion plan."""
        if not can_fuse_lif_avgpool(x, k, stride):
            return None
        y, self._cache = lif_avgpool_forward_p(x, self.p, k)
        self._rate = self._cache.spikes / x.size
        return y

    def backward(self, dy: Any, need_dx: bool = True, time_sum: bool = False) -> Any:
        """dL/dI from dL/do (or dL/d(pooled spikes) when fused with the pooling above); with
        ``time_sum``, its sum over the steps (for a weight layer below with a static input)."""
        if isinstance(self._cache, LIFPoolCache):
            dI = lif_avgpool_backward(dy, self._cache, time_sum=time_sum)
        else:
            dI = lif_backward(dy, self._cache, time_sum=time_sum)
        self._cache = None
        return dI

    # flows
    def flow_begin(self, method: str, opts: dict) -> None:
        self._method = method
        self._opts = opts
        self._state = None
        if method == "dsr":
            if self.v_th_param is not None:  # the authors' bound, then the value in use
                v = bound_threshold(float(backend.to_numpy(self.v_th_param.data)[0]))
                self.v_th_param.data[...] = v
                self._set_v_th(v)
            self._dsr_p = make_dsr_params(lam=self.p.lam, v_th=self.p.v_th,
                                          alpha=opts.get("dsr_alpha", 1.0),
                                          spread=opts.get("dsr_spread", "exact"))
        if method == "rate":  # rate_detach: the eligibility's reset path cut (rho of rate.py)
            self._rate_p = self.p if not opts.get("rate_detach") else make_neuron_params(
                lam=self.p.lam, v_th=self.p.v_th, reset=self.p.reset,
                surrogate=self.p.surrogate, smooth=self.p.smooth, detach_reset=True)

    def _family_chunk(self, x: Any) -> Any:
        """DSR / rate-BP: one chunk through the family's neuron rule (functional/dsr.py,
        functional/rate.py), keeping only its per-neuron state."""
        if self._state is None:
            self._dtype = x.dtype
            xp, shape = backend.array_module(x), tuple(x.shape[1:])
            State = DSRState if self._method == "dsr" else RateState
            self._state = State.zeros(shape, x.dtype, xp)
            self._spikes = 0.0
        if self._method == "dsr":
            o = dsr_forward_chunk(x, self._state, self._dsr_p)
            self._spikes = self._spikes + o.sum() / x.dtype.type(self._dsr_p.v_th)
            return o
        return rate_forward_chunk(x, self._state, self._rate_p)

    def _family_end(self) -> None:
        """DSR: gain m = 1[0 <= Ibar_w <= v_th], keep Ibar_w (threshold gradient); rate-BP:
        gain e, the rate's eligibility."""
        st = self._state
        if self._method == "dsr":
            cache = dsr_finish(st, self._dsr_p)
            self._gain, self._Ibar, self._T = dsr_gain(cache), cache.Ibar, cache.T
            self._rate = self._spikes / (st.v.size * st.steps)
        else:
            cache = rate_finish(st)
            self._gain, self._rate = cache.e, cache.r.mean()
        self._state = None

    def forward_chunk(self, x: Any) -> Any:
        if self._method in ("dsr", "rate"):
            return self._family_chunk(x)
        if self._state is None:
            self._dtype = x.dtype
            xp = backend.array_module(x)
            self._state = F.FlowState.zeros(tuple(x.shape[1:]), x.dtype, xp, self.flow_decay)
        return F.lif_forward_flows(x, self._state, self.p)

    def flow_end(self) -> None:
        if self._method in ("dsr", "rate"):
            return self._family_end()
        st = self._state
        self._rate = st.sO.mean() / st.norm()  # lam-weighted under SSF
        if self._method == "ssf":
            self._gain = F.ssf_gain(st, self.p, self._opts.get("r_granularity", "neuron"),
                                    self._opts.get("r_max", 2.0)).astype(self._dtype)
        else:
            FI, FO = st.sI, st.sO  # accumulated (w = 1) sums, ASF Eq. 7
            variant = self._opts.get("asf_variant", "paper")
            if self.training and self.update_S:
                if variant == "paper":  # on the GPU the sums and S stay on the device
                    self._asf_tot[0] += backend.as_scalar(FO.sum())
                    self._asf_tot[1] += backend.as_scalar(FI.sum())
                    self._asf_tot[2] += backend.as_scalar(abs(FI).sum())
                    sFO, sFI, sabs = self._asf_tot
                    self.S = F.asf_scale_paper(sFO, sFI, previous=self.S, sum_abs_FI=sabs)
                else:
                    self.S = F.asf_scale_code(FO, FI, previous=self.S)
            S = self.S.astype(self._dtype) if backend.is_gpu_array(self.S) else \
                self._dtype.type(self.S)
            self._gain = (FI > 0).astype(self._dtype) * S if variant == "code" else S
        self._state = None  # nothing of the forward is kept but the gain

    @property
    def flow_decay(self) -> float:
        """The decay w of this layer's flows in the flow pass in progress (or the last one):
        ``lam`` under SSF (its lam^(T-t) weights, SSF Eq. 11), 1 under ASF (plain sums, ASF
        Eq. 7).  Layers above weigh their per-step statistics by w^(T-1-t) with it.  DSR: lam
        with ``spread="authors"`` (the code's weighted G), 1 for the exact spread (G = sum_t
        dL/do[t]); rate-BP: 1 (rates are plain means)."""
        if self._method == "ssf" or (self._method == "dsr" and
                                     self._opts.get("dsr_spread") == "authors"):
            return float(self.p.lam)
        return 1.0

    @property
    def flow_gain(self) -> Any:
        """dFO/dFI of the last flow-mode forward pass: the ASF scale factor (times the mask of
        the "code" variant) or the SSF mapping's slope, per neuron and sample."""
        return self._gain

    def asf_state(self) -> dict[str, Any]:
        """ASF's scale-factor state (ASF Eq. 12, Alg. 1): ``S`` and ``asf_tot``, the sums
        ``[sum FO, sum FI, sum |FI|]`` gathered since the last refresh -- what a checkpoint
        keeps and a gradient measurement restores (:meth:`load_asf_state`)."""
        return {"S": self.S, "asf_tot": list(self._asf_tot)}

    def load_asf_state(self, S: Any, asf_tot: list[Any]) -> None:
        """Set the state :meth:`asf_state` returned (``asf_tot``: three sums, copied)."""
        if len(asf_tot) != 3:
            raise ValueError(f"asf_tot must hold 3 sums, got {len(asf_tot)}")
        self.S, self._asf_tot = S, list(asf_tot)

    def asf_refresh(self) -> None:
        """Start a new gathering period for the paper's scale factor (ASF Alg. 1)."""
        self._asf_tot = [0.0, 0.0, 0.0]

    def backward_flow(self, g: Any, per_step: bool, T: int, need_dx: bool = True
                      ) -> tuple[Any, bool]:
        if per_step:
            g = F.weighted_time_mean(g, self.flow_decay)
        if self._method == "dsr" and self.v_th_param is not None:
            # dL/dv_th = sum G 1[Ibar_w > v_th], G = T g: the representation's gradient
            over = (self._Ibar > self.p.v_th).astype(g.dtype)
            self.v_th_param.grad += (g * over).sum() * g.dtype.type(self._T)
        return g * self._gain, False

    def flow_out_per_step(self, per_step: bool) -> bool:
        return False

    def __repr__(self) -> str:
        p = self.p
        kind = "IF" if p.lam == 1.0 else f"LIF(lam={p.lam:g}"
        kind = kind + ("(" if p.lam == 1.0 else ", ")
        return f"{kind}v_th={p.v_th:g}, reset={p.reset}, surrogate={p.surrogate})"


def IF(v_th: float = 1.0, reset: str = "hard", surrogate: str | Surrogate = "triangle",
       detach_reset: bool = False, smooth: bool = False) -> LIF:
    """Integrate-and-fire neurons: LIF with ``lam = 1`` (ASF Eq. 3)."""
    return LIF(1.0, v_th, reset, surrogate, detach_reset, smooth)


def spiking_layers(net: Module) -> list[LIF]:
    """All LIF/IF layers of a network, bottom to top."""
    return [m for m in net.modules() if isinstance(m, LIF)]


class SpikingLSTM(SpikingModule):
    """Spiking LSTM layer (the LSNN of the window-partition supplement, Sec. 3.1 Eq. 1):
    (T, B, in_features) -> spikes (T, B, hidden).  Equations (L1)-(L4) and the BPTT backward
    (B1)-(B4) are in :mod:`pysnn_ref.functional.lstm`; the gates are analog, the hidden output
    ``s[t] = H(o tanh(c) - v_th)`` is a spike and is what the recurrence feeds back.

    Parameters ``W_x`` (4H, in), ``W_h`` (4H, H), ``b`` (4H,), gate order (i, f, g, o).
    Initialisation: ``W_h`` and ``b`` as PyTorch's ``nn.LSTM`` (uniform in +-1/sqrt(H)), the
    forget-gate bias at 1 (Gers et al. 2000: the cell starts by remembering), ``W_x`` Kaiming
    normal (std sqrt(2/in), as :class:`Linear`) -- with PyTorch's small uniform ``W_x`` the
    membrane o tanh(c) starts far below threshold and no neuron fires (measured on
    digits-rows: rate 0.000 vs 0.06 at init).  ``v_th`` in (0, 1).

    BPTT only (``bptt_only``): the flow methods' equivalence (ASF Eqs. 9-11, SSF Eq. 15) needs
    a neuron whose output rate is a function of its time-summed input; the gated cell's output
    depends on the order of its inputs in time (c[t] = f c[t-1] + i g is not a function of
    sum_t x[t]), so it has no equivalent rate network, and :meth:`Method.check_network`
    refuses "asf"/"ssf" for it.
    """

    bptt_only = True

    def __init__(self, in_features: int, hidden: int, v_th: float = 0.5,
                 surrogate: str | Surrogate = "triangle", smooth: bool = False,
                 rng: np.random.Generator | None = None, dtype: Any = np.float32) -> None:
        super().__init__()
        check_int("in_features", in_features)
        check_int("hidden", hidden)
        self.p = make_lstm_params(v_th, surrogate, smooth)
        rng = rng or np.random.default_rng(0)
        k = 1.0 / math.sqrt(hidden)
        std = math.sqrt(2.0 / in_features)  # Kaiming normal, fan-in, as Linear
        self.W_x = Parameter("W_x", rng.normal(0, std, (4 * hidden, in_features)).astype(dtype))
        self.W_h = Parameter("W_h", rng.uniform(-k, k, (4 * hidden, hidden)).astype(dtype))
        b = rng.uniform(-k, k, 4 * hidden)
        b[hidden:2 * hidden] = 1.0
        self.b = Parameter("b", b.astype(dtype))
        self.in_features, self.hidden = in_features, hidden
        self._rate: Any = 0.0

    def own_parameters(self) -> list[Parameter]:
        """``[W_x, W_h, b]``: the four gates' input and recurrent weights and their bias."""
        return [self.W_x, self.W_h, self.b]

    def forward(self, x: Any) -> Any:
        s, self._cache = lstm_forward(x, self.W_x.data, self.W_h.data, self.b.data, self.p)
        self._rate = s.mean()
        return s

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        dx, dW_x, dW_h, db = lstm_backward(dy, self._cache, need_dx)
        self.W_x.grad += dW_x
        self.W_h.grad += dW_h
        self.b.grad += db
        self._cache = None
        return dx

    def flow_begin(self, method: str, opts: dict) -> None:
        raise ValueError(f"SpikingLSTM (model 'lstm') supports method 'bptt' only, got "
                         f"{method!r}")

    def __repr__(self) -> str:
        return (f"SpikingLSTM({self.in_features}, {self.hidden}, v_th={self.p.v_th:g}, "
                f"surrogate={self.p.surrogate})")
