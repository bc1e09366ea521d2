"""Energy estimate of a spiking network from a real forward pass (Dspike Sec. 5.4, TET Sec. 5).

The model of the seeds (Dspike, Li et al. NeurIPS 2021, Sec. 5.4 "Sparsity, Efficiency, and
Energy Cost"; TET, Deng et al. ICLR 2022, Sec. 5, both after Rathi & Roy 2020), 45 nm CMOS:

* an ANN does one multiply-accumulate (MAC, **4.6 pJ**) per weight use, once per sample;
* an SNN is multiplication-free except in its first (rate-encoding, non-spiking input) layer,
  whose MACs are "the FLOPs of the first layer scaled by T" (Dspike Sec. 5.4); every other
  weight layer does one accumulate (AC, **0.9 pJ**) per synaptic operation,
  ``SOPs = sum over incoming spikes of the spike's fan-out``.

Counted here (:func:`estimate_energy`), per weight layer (``Linear`` / ``Conv2d``), from the
actual inputs that reach it in ``net.forward(encoder.encode(x, T))``:

* fan-out ``FO[i]`` of an input element ``i``: the number of weights it multiplies, i.e. the
  number of outputs it contributes to.  ``Linear``: ``out_features``.  ``Conv2d``:
  ``out_channels * c_h(h) * c_w(w)`` where ``c_h(h) = #{(oh, kh): oh*stride - padding + kh = h}``
  counts the output rows whose window covers row ``h`` (exact at the borders and for any
  stride; see :func:`conv_fanout`; tested equal to a brute-force count through the layer's own
  forward with all-ones weights and one-hot inputs);
* the first weight layer (``--encoder direct``: analog input): ``MACs = T * sum_i FO[i]`` per
  sample (all input elements, as an ANN layer; padding zeros are not counted);
* every other weight layer: ``SOPs = sum_{t, i} [x_t[i] != 0] * FO[i]`` per sample.  Inputs are
  counted where they are non-zero, so an average pooling between a spiking layer and a weight
  layer (which can be folded into the weights) still counts one AC per non-zero input.  With
  spike inputs (Poisson encoder, event frames) the first layer is counted as SOPs too;
* the ANN reference: the same weight layers, each doing ``sum_i FO[i]`` MACs once per sample.

A ``SpikingLSTM`` (window-partition supplement, Eq. 1) counts as two rows: its input weights
``W_x`` (fan-out 4 x hidden; MACs if it is the first layer with analog input: direct or
``sequence`` encoder) and its recurrent weights ``W_h`` (one AC per spike ``s[t-1]`` times
4 x hidden); its ANN reference steps through the sequence (T and T - 1 times).
BatchNorm (foldable into the weights at inference), pooling, the residual additions and the
neuron updates are not counted, as in the papers.  Figures are per sample (mean over the batch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .. import backend
from .. import nn as nn_
from .._check import check_int
from ..data import DirectEncoder

E_MAC_PJ = 4.6  #: pJ per multiply-accumulate, 45 nm (Dspike Sec. 5.4; TET Sec. 5)
E_AC_PJ = 0.9   #: pJ per accumulate, 45 nm (Dspike Sec. 5.4; TET Sec. 5)

__all__ = ["E_MAC_PJ", "E_AC_PJ", "LayerOps", "EnergyReport", "conv_fanout", "fanout",
           "estimate_energy", "format_table"]


@dataclass
class LayerOps:
    """One weight layer's counts, per sample."""

    name: str
    kind: str            #: "MAC" (first, analog-input layer) or "AC"
    macs: float          #: SNN multiply-accumulates (first layer, all T steps)
    sops: float          #: SNN synaptic operations (accumulates)
    ann_macs: float      #: MACs of the same layer in an ANN (once per sample)
    input_rate: float    #: fraction of non-zero inputs over (T, input elements)
    energy_pj: float     #: macs * E_MAC + sops * E_AC
    ann_energy_pj: float


@dataclass
class EnergyReport:
    """Per-sample totals and the per-layer rows of :func:`estimate_energy`."""

    T: int
    batch: int
    e_mac_pj: float
    e_ac_pj: float
    layers: list[LayerOps] = field(default_factory=list)

    @property
    def macs(self) -> float:
        """Multiply-accumulates per sample (the analog first layer), summed over layers."""
        return float(sum(r.macs for r in self.layers))

    @property
    def sops(self) -> float:
        """Synaptic operations (accumulates on spikes) per sample, summed over layers."""
        return float(sum(r.sops for r in self.layers))

    @property
    def ann_macs(self) -> float:
        """MACs per sample of the ANN with the same weights."""
        return float(sum(r.ann_macs for r in self.layers))

    @property
    def energy_pj(self) -> float:
        """The SNN's energy per sample in pJ: MACs x e_mac + SOPs x e_ac."""
        return float(sum(r.energy_pj for r in self.layers))

    @property
    def ann_energy_pj(self) -> float:
        """The same ANN's energy per sample in pJ: its MACs x e_mac."""
        return float(sum(r.ann_energy_pj for r in self.layers))

    @property
    def ratio(self) -> float:
        """ANN energy / SNN energy (> 1: the SNN is cheaper)."""
        return self.ann_energy_pj / self.energy_pj if self.energy_pj > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready values (the ``--json`` file)."""
        d = asdict(self)
        d.update(macs=self.macs, sops=self.sops, ann_macs=self.ann_macs,
                 energy_pj=self.energy_pj, ann_energy_pj=self.ann_energy_pj,
                 ann_over_snn=self.ratio)
        return d

    def summary_line(self) -> str:
        """One line for a training log."""
        return (f"energy/sample (45 nm, T={self.T}): SNN {self.energy_pj / 1e6:.4g} uJ "
                f"({self.macs:.4g} MAC + {self.sops:.4g} SOP), ANN {self.ann_energy_pj / 1e6:.4g}"
                f" uJ ({self.ann_macs:.4g} MAC), ANN/SNN = {self.ratio:.3g}")


def _cover(n_in: int, k: int, stride: int, padding: int) -> np.ndarray:
    """``c[h] = #{(o, j): o*stride - padding + j == h, 0 <= o < n_out, 0 <= j < k}``."""
    n_out = (n_in + 2 * padding - k) // stride + 1
    pos = (np.arange(n_out)[:, None] * stride - padding + np.arange(k)[None, :]).ravel()
    pos = pos[(pos >= 0) & (pos < n_in)]
    return np.bincount(pos, minlength=n_in).astype(np.int64)


def conv_fanout(layer: nn_.Conv2d, in_shape: Sequence[int]) -> np.ndarray:
    """Exact fan-out ``(C, H, W)`` of every input element of ``layer`` for inputs
    ``in_shape = (C, H, W)``: ``out_channels * c_h[h] * c_w[w]`` (window coverage per axis)."""
    C, H, W = (int(s) for s in in_shape)
    _, c_out, k = layer.shape_args
    ch = _cover(H, k, layer.stride, layer.padding)
    cw = _cover(W, k, layer.stride, layer.padding)
    return np.broadcast_to(c_out * np.outer(ch, cw), (C, H, W))


@dataclass(frozen=True)
class _Recurrent:
    """The recurrent input of a SpikingLSTM (its own spikes s[t-1]) as a row of its own."""

    layer: nn_.SpikingLSTM

    def __repr__(self) -> str:
        return f"SpikingLSTM recurrent W_h ({self.layer.hidden} -> {4 * self.layer.hidden})"


def fanout(layer: nn_.Module, in_shape: Sequence[int]) -> np.ndarray:
    """Fan-out of every input element (shape ``in_shape``) of a Linear or Conv2d layer (or
    a SpikingLSTM's input / recurrent weights: 4 gates x hidden)."""
    if isinstance(layer, nn_.Linear):
        return np.full(tuple(in_shape), layer.out_features, dtype=np.int64)
    if isinstance(layer, (nn_.SpikingLSTM, _Recurrent)):
        return np.full(tuple(in_shape), 4 * getattr(layer, "layer", layer).hidden, np.int64)
    if isinstance(layer, nn_.Conv2d):
        return conv_fanout(layer, in_shape)
    raise ValueError(f"layer must be Linear or Conv2d, got {type(layer).__name__}")


def _weight_layers(net: nn_.Module) -> list[nn_.Module]:
    return [m for m in net.modules() if isinstance(m, (nn_.Linear, nn_.Conv2d, nn_.SpikingLSTM))]


def estimate_energy(net: nn_.Module, x: Any, T: int, encoder: Any = None, *,
                    analog_input: bool | None = None, e_mac_pj: float = E_MAC_PJ,
                    e_ac_pj: float = E_AC_PJ) -> EnergyReport:
    """Count MACs / SOPs of ``net`` on the batch ``x`` (``(B, ...)``, encoded with ``encoder``,
    default direct) over ``T`` steps, in eval mode, and convert them to energy (module doc).

    ``analog_input``: the first weight layer sees analog values and does MACs; default: True
    for the direct encoder, False for spike inputs (Poisson, event frames), counted as SOPs.

    The network's own forward runs once; a forward hook on each weight layer
    (:meth:`~pysnn_ref.nn.Module.register_forward_hook`) records the non-zero count of its
    input per element.  Returns an :class:`EnergyReport` with per-sample figures.
    """
    T = check_int("T", T, minimum=1)
    encoder = encoder or DirectEncoder()
    if analog_input is None:
        analog_input = getattr(encoder, "name", "") in ("direct", "sequence")
    layers = _weight_layers(net)
    if not layers:
        raise ValueError("net has no Linear or Conv2d layer to count")
    seen: list[tuple[nn_.Module, np.ndarray]] = []

    def count(layer: nn_.Module, xin: Any, out: Any) -> None:
        xh = backend.to_numpy(xin)
        nz = np.count_nonzero(xh.reshape(xh.shape[0] * xh.shape[1], -1), axis=0)
        seen.append((layer, nz.reshape(xh.shape[2:])))
        if isinstance(layer, nn_.SpikingLSTM):  # W_h: one AC per spike s[t-1] and fan-out
            sh = backend.to_numpy(out)[:-1]
            seen.append((_Recurrent(layer), np.count_nonzero(sh.reshape(-1, sh.shape[-1]),
                                                             axis=0)))

    was_training = [m.training for m in net.modules()]
    handles = [layer.register_forward_hook(count) for layer in layers]
    try:
        net.eval()
        net.forward(encoder.encode(x, T))
    finally:
        for h in handles:
            h.remove()
        for m, mode in zip(net.modules(), was_training, strict=True):
            m.training = mode
    B = int(x.shape[0])
    rep = EnergyReport(T=T, batch=B, e_mac_pj=e_mac_pj, e_ac_pj=e_ac_pj)
    for i, (layer, nz) in enumerate(seen):
        fo = fanout(layer, nz.shape)
        ann = float(fo.sum())
        steps = T - 1 if isinstance(layer, _Recurrent) else T   # s[-1] = 0: T - 1 inputs
        first_mac = i == 0 and bool(analog_input)
        macs = T * ann if first_mac else 0.0
        sops = 0.0 if first_mac else float((nz * fo).sum()) / B
        if isinstance(layer, (nn_.SpikingLSTM, _Recurrent)):
            ann *= steps  # an ANN LSTM steps through the sequence too
        rep.layers.append(LayerOps(
            name=f"{i}:{layer!r}", kind="MAC" if first_mac else "AC", macs=macs, sops=sops,
            ann_macs=ann, input_rate=float(nz.sum()) / (B * max(steps, 1) * nz.size),
            energy_pj=macs * e_mac_pj + sops * e_ac_pj, ann_energy_pj=ann * e_mac_pj))
    return rep


def format_table(rep: EnergyReport) -> str:
    """The per-layer table and the totals, as text."""
    head = f"{'layer':<44} {'op':>3} {'in rate':>8} {'SNN MAC':>11} {'SNN SOP':>11} " \
           f"{'ANN MAC':>11} {'SNN uJ':>9} {'ANN uJ':>9}"
    rows = [head, "-" * len(head)]
    for r in rep.layers:
        rows.append(f"{r.name[:44]:<44} {r.kind:>3} {r.input_rate:>8.4f} {r.macs:>11.4g} "
                    f"{r.sops:>11.4g} {r.ann_macs:>11.4g} {r.energy_pj / 1e6:>9.4g} "
                    f"{r.ann_energy_pj / 1e6:>9.4g}")
    rows.append("-" * len(head))
    rows.append(f"{'total per sample':<44} {'':>3} {'':>8} {rep.macs:>11.4g} {rep.sops:>11.4g} "
                f"{rep.ann_macs:>11.4g} {rep.energy_pj / 1e6:>9.4g} "
                f"{rep.ann_energy_pj / 1e6:>9.4g}")
    rows.append(f"45 nm: {rep.e_mac_pj} pJ/MAC, {rep.e_ac_pj} pJ/AC (Dspike Sec. 5.4); "
                f"T={rep.T}, batch={rep.batch}; ANN/SNN energy = {rep.ratio:.3g} (the ANN with "
                f"the same weights spends {rep.ratio:.3g}x the SNN's energy: "
                f"{'the SNN is cheaper' if rep.ratio > 1 else 'the SNN costs more'})")
    return "\n".join(rows)
