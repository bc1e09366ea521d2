"""The networks of the papers, built from layer strings and adapted to the data's shape.

A layer string reads like the papers' tables: ``64C3`` is a 3x3 convolution with 64 output
channels ('same' padding) followed by batch norm (if the model uses it) and a spiking layer;
``AP2`` / ``MP2`` are 2x2 average / max pooling; ``FC1024`` a fully connected layer followed by
a spiking layer; the classifier (a non-spiking ``FC``) is appended last.  A pooling layer is
skipped when the feature map is already smaller than 2x2, so every model adapts to small inputs
such as the 8x8 digits.

=============== ================================================================= =================
model           layers                                                            source
=============== ================================================================= =================
mlp             FC800                                                             SSF/ASF MLP
lenet           16C3-AP2-32C3-AP2-FC128  (no BN)                                  ASF LeNet
vgg7            64C3-64C3-AP2-128C3-128C3-128C3-MP2-FC1024  (no BN)               ASF VGG-7
snn5            16C3-64C5-AP2-128C5-AP2-256C5-AP2-512C3-AP2  (BN)                 TET SNN-5
vggsnn          64C3-128C3-AP2-256C3-256C3-AP2-512C3-512C3-AP2-512C3-512C3-AP2    TET VGGSNN
resnet          32C3 stem, residual blocks [32, 64 s2, 128 s2], global AP  (BN)   spiking ResNet
window          4 windows (3L/4) of 16C3, Algorithm 1 recompose, AP2  (BPTT only) window-partition
lstm            SpikingLSTM(128) on a sequence (T, B, D), classifier  (BPTT only) window-partition
resnet19        128C3 stem, [3x128, 3x256 s2, 2x512 s2] blocks, FC256  (tdBN)     tdBN (SSF Tab. 1)
preact_resnet18 pre-activation [2x64, 2x128, 2x256, 2x512], BN1d-SN head          DSR (SSF Tab. 1)
vgg11           TET's VGGSNN for 2x48x48 DVS frames (conv bias + BN)              TET (SSF Tab. 1)
sew_resnet34    SEW blocks [3, 4, 6, 3], ImageNet stem, connect g (ADD)           SEW (SSF Tab. 1)
=============== ================================================================= =================

The four SSF Table 1 networks (``resnet19`` ... ``sew_resnet34``) are built at full width as
published (:func:`count_parameters`, tests/test_paper_models.py checks the counts).  Their
``width`` option (``make_model(..., width=0.25)``) multiplies every channel count, hidden FC
width included, by ``width`` (rounded, at least 1; the classifier's outputs stay
``num_classes``): the reduced networks of ``benchmarks/ssf_accuracy.py``.  ``width = 1``
builds the published network.

``lstm`` takes sequence input, ``input_shape = (D,)`` features per step (``--dataset
digits-rows --encoder sequence``: one 8-pixel image row per step); its spike threshold
applies to the membrane ``o tanh(c)`` in (-1, 1), so it must lie in (0, 1)
(:data:`LSTM_V_TH` = 0.5 unless ``--v-th`` is given).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._check import check_choice, check_in_range, check_int
from .nn import (
    LIF,
    AvgPool2d,
    BatchNorm,
    Conv2d,
    Flatten,
    Linear,
    MaxPool2d,
    Module,
    Residual,
    Sequential,
    SEWResidual,
    SpikingLSTM,
    WindowRecompose,
    ZeroPad2d,
)

__all__ = ["LAYER_STRINGS", "MODELS", "LSTM_V_TH", "LSTM_HIDDEN", "build_from_string",
    "make_model", "TDBN_RES_ALPHA", "count_parameters", "resnet19", "preact_resnet18", "vgg11",
    "sew_resnet34", "PAPER_MODELS", "MAX_WIDTH", "scaled_width", "lif_mlp"]

LAYER_STRINGS = {
    "mlp": ("FC800", False),
    "lenet": ("16C3-AP2-32C3-AP2-FC128", False),
    "vgg7": ("64C3-64C3-AP2-128C3-128C3-128C3-MP2-FC1024", False),
    "snn5": ("16C3-64C5-AP2-128C5-AP2-256C5-AP2-512C3-AP2", True),
    "vggsnn": ("64C3-128C3-AP2-256C3-256C3-AP2-512C3-512C3-AP2-512C3-512C3-AP2", True),
}
MODELS = (*LAYER_STRINGS, "resnet", "window", "lstm", "resnet19", "preact_resnet18", "vgg11",
          "sew_resnet34")
LSTM_V_TH = 0.5   #: the lstm model's default threshold (its membrane lies in (-1, 1))
LSTM_HIDDEN = 128

_TOKEN = re.compile(r"^(\d+)C(\d+)$|^(AP|MP)(\d+)$|^FC(\d+)$")


def build_from_string(spec: str, input_shape: tuple[int, ...], num_classes: int,
                      neuron: Callable[[], Module], batch_norm: bool = False,
                      tdbn_alpha: float | None = None, v_th: float = 1.0, seed: int = 0,
                      dtype: Any = np.float32) -> Sequential:
    """Build ``spec`` (e.g. ``"16C3-AP2-FC128"``) for inputs of ``input_shape`` (C, H, W).

    ``neuron()`` makes each spiking layer; ``batch_norm`` puts BN (tdBN if ``tdbn_alpha``) after
    every convolution.  The classifier ``FC(num_classes)`` does not spike.
    """
    rng = np.random.default_rng(seed)
    shape = tuple(input_shape)
    layers: list[Module] = []
    for tok in spec.split("-"):
        m = _TOKEN.match(tok)
        if m is None:
            raise ValueError(f"spec: cannot parse layer {tok!r} (expected like 64C3, AP2, MP2, "
                             "FC128)")
        if m.group(1):
            if len(shape) != 3:
                raise ValueError(f"spec: convolution {tok!r} needs image input (C, H, W), got "
                                 f"input_shape {shape}")
            c_out, k = int(m.group(1)), int(m.group(2))
            layers.append(Conv2d(shape[0], c_out, k, padding=k // 2, bias=not batch_norm,
                                 rng=rng, dtype=dtype))
            if batch_norm:
                layers.append(BatchNorm(c_out, alpha=tdbn_alpha, v_th=v_th, dtype=dtype))
            layers.append(neuron())
            shape = (c_out, shape[1], shape[2])
        elif m.group(3):
            k = int(m.group(4))
            if len(shape) == 3 and min(shape[1], shape[2]) >= k:
                layers.append((AvgPool2d if m.group(3) == "AP" else MaxPool2d)(k))
                shape = (shape[0], shape[1] // k, shape[2] // k)
        else:
            if len(shape) > 1:
                layers.append(Flatten())
                shape = (int(np.prod(shape)),)
            n = int(m.group(5))
            layers.append(Linear(shape[0], n, rng=rng, dtype=dtype))
            layers.append(neuron())
            shape = (n,)
    if len(shape) > 1:
        layers.append(Flatten())
        shape = (int(np.prod(shape)),)
    layers.append(Linear(shape[0], num_classes, rng=rng, dtype=dtype))
    return Sequential(*layers)


def _resnet(input_shape, num_classes, neuron, tdbn_alpha, v_th, seed, dtype,
            widths=(32, 64, 128)) -> Sequential:
    """A small spiking ResNet: stem, one basic block per width (stride 2 after the first),
    global average pooling, classifier.  Block: conv-BN-LIF-conv-BN (+ shortcut) then LIF."""
    rng = np.random.default_rng(seed)
    C, H, W = input_shape

    def conv_bn(ci, co, k=3, s=1):
        return [Conv2d(ci, co, k, stride=s, padding=k // 2, bias=False, rng=rng, dtype=dtype),
                BatchNorm(co, alpha=tdbn_alpha, v_th=v_th, dtype=dtype)]

    layers: list[Module] = [*conv_bn(C, widths[0]), neuron()]
    c, h, w_ = widths[0], H, W
    for i, w in enumerate(widths):
        s = 2 if i > 0 and min(h, w_) >= 4 else 1
        main = Sequential(*conv_bn(c, w, 3, s), neuron(), *conv_bn(w, w))
        short = None if (s == 1 and c == w) else Sequential(*conv_bn(c, w, 1, s))
        layers += [Residual(main, short), neuron()]
        c, h, w_ = w, (h - 1) // s + 1, (w_ - 1) // s + 1
    if h == w_ and h > 1:  # global average pooling
        layers.append(AvgPool2d(h))
        h = w_ = 1
    layers += [Flatten(), Linear(c * h * w_, num_classes, rng=rng, dtype=dtype)]
    return Sequential(*layers)


def _window(input_shape, num_classes, neuron, seed, dtype, width=16) -> Sequential:
    """Window partition + recomposed computing (window-partition supplement, Algorithm 1):
    a 3x3 conv + LIF on each of the four 3L/4 windows, condensed back with Region Threshold
    0.1, 2x2 average pooling, classifier.  BPTT only (WindowRecompose has no flow mode)."""
    if len(input_shape) != 3 or input_shape[1] != input_shape[2] or input_shape[1] % 4:
        raise ValueError(f"model 'window' needs square image input (C, L, L) with L divisible "
                         f"by 4, got {input_shape}")
    rng = np.random.default_rng(seed)
    C, L, _ = input_shape
    body = Sequential(Conv2d(C, width, 3, padding=1, rng=rng, dtype=dtype), neuron())
    h = L // 2
    return Sequential(WindowRecompose(body, th_r=0.1), AvgPool2d(2), Flatten(),
                      Linear(width * h * h, num_classes, rng=rng, dtype=dtype))


def _lstm(input_shape, num_classes, v_th, surrogate, seed, dtype,
          hidden=LSTM_HIDDEN) -> Sequential:
    """The spiking LSTM of the window-partition supplement (its LSNN, Sec. 3.1 Eq. 1): one
    SpikingLSTM layer of ``hidden`` units over the sequence, then a non-spiking classifier on
    its spikes at every step (the SDT loss averages the steps).  BPTT only."""
    if len(input_shape) != 1:
        raise ValueError(f"model 'lstm' needs sequence input, (features per step,), e.g. "
                         f"--dataset digits-rows --encoder sequence; got input_shape "
                         f"{input_shape}")
    rng = np.random.default_rng(seed)
    return Sequential(SpikingLSTM(input_shape[0], hidden, v_th=v_th, surrogate=surrogate,
                                  rng=rng, dtype=dtype),
                      Linear(hidden, num_classes, rng=rng, dtype=dtype))


def make_model(name: str, input_shape: tuple[int, ...], num_classes: int,
               neuron: Callable[[], Module], *, tdbn_alpha: float | None = None,
               v_th: float = 1.0, seed: int = 0, dtype: Any = np.float32,
               batch_norm: bool | None = None, surrogate: str = "triangle",
               width: float = 1.0) -> Sequential:
    """Build model ``name`` (see the module table) for ``input_shape`` and ``num_classes``.

    ``batch_norm`` overrides the model's default (BN where its source paper uses it).
    ``width`` (the SSF Table 1 networks only) multiplies their channel counts
    (:func:`scaled_width`); 1 builds them as published.
    ``surrogate`` is used by ``lstm`` only (the other models' neurons come from ``neuron``).
    """
    check_choice("model", name, MODELS)
    check_int("num_classes", num_classes, minimum=2)
    shape = tuple(input_shape)
    width = check_in_range("width", width, 0.0, MAX_WIDTH)
    if width != 1.0 and name not in PAPER_MODELS:
        raise ValueError(f"width applies to the SSF Table 1 networks "
                         f"({', '.join(PAPER_MODELS)}), not model {name!r}; got width={width}")
    if name == "lstm":
        return _lstm(shape, num_classes, v_th, surrogate, seed, dtype)
    if name == "window":
        return _window(shape, num_classes, neuron, seed, dtype)
    if name == "resnet":
        if len(shape) != 3:
            raise ValueError(f"model 'resnet' needs image input (C, H, W), got {shape}")
        return _resnet(shape, num_classes, neuron, tdbn_alpha, v_th, seed, dtype)
    if name in PAPER_MODELS:
        if len(shape) != 3 or shape[1] != shape[2]:
            raise ValueError(f"model {name!r} needs square image input (C, H, H), got "
                             f"input_shape {shape}")
        if batch_norm is not None or tdbn_alpha is not None:
            raise ValueError(f"model {name!r} is built as published, BN / tdBN where its "
                             "source puts them: batch_norm and tdbn_alpha (--tdbn-alpha) do "
                             "not apply")
        return PAPER_MODELS[name](shape, num_classes, neuron, v_th=v_th, seed=seed,
                                  dtype=dtype, width=width)
    spec, bn = LAYER_STRINGS[name]
    if name != "mlp" and len(shape) != 3:
        raise ValueError(f"model {name!r} needs image input (C, H, W), got input_shape {shape}")
    return build_from_string(spec, shape, num_classes, neuron,
                             batch_norm=bn if batch_norm is None else batch_norm,
                             tdbn_alpha=tdbn_alpha, v_th=v_th, seed=seed, dtype=dtype)


# ============================================================================================
# The SSF paper's networks (Table 1), built as their sources publish them.  Parameter counts:
# :func:`count_parameters`; the reference counts and where they come from: PAPER_PARAMS.
# ============================================================================================

TDBN_RES_ALPHA = 1 / np.sqrt(2)  #: tdBN's alpha on the BNs before a residual sum (Zheng 2021)


MAX_WIDTH = 4.0  #: the largest ``width`` accepted (4x the published channel counts)


def scaled_width(channels: int, width: float) -> int:
    """``channels`` of the published network times ``width``, rounded, at least 1 (``width``
    in (0, :data:`MAX_WIDTH`]; 1 gives ``channels`` unchanged)."""
    width = check_in_range("width", width, 0.0, MAX_WIDTH)
    return max(1, int(round(channels * width)))


def lif_mlp(sizes: Sequence[int], lam: float = 0.5, seed: int = 0, v_th: float = 1.0,
            dtype: Any = np.float64) -> Sequential:
    """``Flatten -> [Linear -> LIF] per hidden size -> Linear`` readout: ``sizes`` = (inputs,
    hidden..., outputs), one generator seeded ``seed`` drawing the weights layer by layer.  The
    small float64 network of the gradient-quality studies (chapters 11 and 15,
    ``benchmarks/family_cosine.py``)."""
    rng = np.random.default_rng(seed)
    layers: list[Module] = [Flatten()]
    for a, b in zip(sizes[:-2], sizes[1:-1], strict=True):
        layers += [Linear(a, b, rng=rng, dtype=dtype), LIF(lam=lam, v_th=v_th)]
    layers.append(Linear(sizes[-2], sizes[-1], rng=rng, dtype=dtype))
    return Sequential(*layers)


def count_parameters(net: Module) -> int:
    """Number of trainable scalars of ``net`` (weights, biases, BN gamma / beta)."""
    return int(sum(p.data.size for p in net.parameters()))


def _conv_bn(rng, dtype, ci, co, k, s=1, *, bias=False, alpha=None, v_th=1.0):
    return [Conv2d(ci, co, k, stride=s, padding=k // 2, bias=bias, rng=rng, dtype=dtype),
            BatchNorm(co, alpha=alpha, v_th=v_th, dtype=dtype)]


def resnet19(input_shape: tuple[int, ...], num_classes: int,
             neuron: Callable[[], Module], *, tdbn: bool = True, v_th: float = 1.0,
             seed: int = 0, dtype: Any = np.float32, width: float = 1.0) -> Sequential:
    """ResNet-19 of tdBN (Zheng et al., "Going Deeper With Directly-Trained Larger Spiking
    Neural Networks", AAAI 2021; layout as in RBP's ``model/resnet.py`` ``resnet19`` and
    ``yfguo91/Re-Loss`` ``models/spike_block.py``): conv3x3 C->128 + BN + SN; BasicBlock =
    conv3x3-BN-SN-conv3x3-BN (+ identity, or conv1x1(stride)+BN), then SN; stages 3 x 128
    (stride 1), 3 x 256 (stride 2), 2 x 512 (stride 2); global average pooling; FC 512->256 +
    SN; FC 256->classes.  Convolutions bias-free.  tdBN (``tdbn``): alpha = 1 / sqrt(2) on the
    two BNs that meet at a residual sum (bn2 and the shortcut's BN, as in Re-Loss's code),
    alpha = 1 elsewhere, threshold ``v_th``.  ``width`` scales every channel count and the
    hidden FC (:func:`scaled_width`)."""
    rng = np.random.default_rng(seed)
    k = lambda c: scaled_width(c, width)  # noqa: E731
    a1, ar = (1.0, TDBN_RES_ALPHA) if tdbn else (None, None)
    cb = lambda ci, co, k, s=1, a=a1: _conv_bn(rng, dtype, ci, co, k, s,  # noqa: E731
                                                  alpha=a, v_th=v_th)
    C, H, W = input_shape
    layers: list[Module] = [*cb(C, k(128), 3), neuron()]
    c, h = k(128), H
    for w, n, stride in ((k(128), 3, 1), (k(256), 3, 2), (k(512), 2, 2)):
        for i in range(n):
            s = stride if i == 0 else 1
            main = Sequential(*cb(c, w, 3, s), neuron(), *cb(w, w, 3, 1, ar))
            short = None if (s == 1 and c == w) else Sequential(*cb(c, w, 1, s, ar))
            layers += [Residual(main, short), neuron()]
            c, h = w, (h - 1) // s + 1
    layers += [AvgPool2d(h), Flatten(), Linear(c, k(256), rng=rng, dtype=dtype), neuron(),
               Linear(k(256), num_classes, rng=rng, dtype=dtype)]
    return Sequential(*layers)


def preact_resnet18(input_shape: tuple[int, ...], num_classes: int,
                    neuron: Callable[[], Module], *, v_th: float = 1.0, seed: int = 0,
                    dtype: Any = np.float32, width: float = 1.0) -> Sequential:
    """Spiking PreAct-ResNet-18 as in DSR's code (Meng et al., "Training High-Performance
    Low-Latency Spiking Neural Networks by Differentiation on Spike Representation", CVPR 2022;
    ``qymeng94/DSR`` ``cifar/modules/preresnet.py``), the network SSF's Table 1 uses for TET and
    RecDis on CIFAR: conv3x3 C->64 (no bias, no BN, no neuron); stages 2 x 64 (stride 1),
    2 x 128, 2 x 256, 2 x 512 (stride 2); block: ``s = SN(BN(x))``, ``h = conv3x3(s, stride,
    bias)``, ``h = conv3x3(SN(BN(h)), bias)``, ``out = h + sc(s)`` with ``sc`` = conv1x1(stride,
    bias) or identity, on the spikes ``s``; head BN(512) -> SN -> AvgPool(4) -> SN -> Linear ->
    BN1d -> SN (the output is the last layer's spikes: the loss reads their rate).  DSR's
    dropout (between the two convolutions of a block) has no parameters and is left out.
    ``width`` scales every channel count (:func:`scaled_width`)."""
    rng = np.random.default_rng(seed)
    k = lambda c: scaled_width(c, width)  # noqa: E731
    C, H, W = input_shape
    layers: list[Module] = [Conv2d(C, k(64), 3, padding=1, bias=False, rng=rng, dtype=dtype)]
    c, h = k(64), H
    for w, stride in ((k(64), 1), (k(128), 2), (k(256), 2), (k(512), 2)):
        for i in range(2):
            s = stride if i == 0 else 1
            main = Sequential(Conv2d(c, w, 3, stride=s, padding=1, rng=rng, dtype=dtype),
                              BatchNorm(w, v_th=v_th, dtype=dtype), neuron(),
                              Conv2d(w, w, 3, padding=1, rng=rng, dtype=dtype))
            short = None if (s == 1 and c == w) else Sequential(
                Conv2d(c, w, 1, stride=s, rng=rng, dtype=dtype))
            layers += [BatchNorm(c, v_th=v_th, dtype=dtype), neuron(), Residual(main, short)]
            c, h = w, (h - 1) // s + 1
    layers += [BatchNorm(c, v_th=v_th, dtype=dtype), neuron(), AvgPool2d(min(4, h)), neuron(),
               Flatten(), Linear(c * (h // min(4, h)) ** 2, num_classes, rng=rng, dtype=dtype),
               BatchNorm(num_classes, v_th=v_th, dtype=dtype), neuron()]
    return Sequential(*layers)


def vgg11(input_shape: tuple[int, ...], num_classes: int,
          neuron: Callable[[], Module], *, v_th: float = 1.0, seed: int = 0,
          dtype: Any = np.float32, width: float = 1.0) -> Sequential:
    """The "VGG-11" of SSF's DVS-CIFAR10 rows (TET and RecDis): TET's ``VGGSNN`` (Deng et al.,
    "Temporal Efficient Training of Spiking Neural Network via Gradient Re-weighting", ICLR
    2022; ``brain-intelligence-lab/temporal_efficient_training`` ``models/VGG_models.py``, the
    only DVS network of TET's code), for 2 x 48 x 48 event frames: 8 layers conv3x3 (with bias)
    + BN + SN, 64-128-AP2-256-256-AP2-512-512-AP2-512-512-AP2, then FC 512 * 3 * 3 -> classes
    (non-spiking).  The library's ``vggsnn`` is the same layout with bias-free convolutions.
    ``width`` scales every channel count (:func:`scaled_width`)."""
    rng = np.random.default_rng(seed)
    C, H, W = input_shape
    layers: list[Module] = []
    c, h, w_ = C, H, W
    for widths in ((64, 128), (256, 256), (512, 512), (512, 512)):
        for co in (scaled_width(w, width) for w in widths):
            layers += [*_conv_bn(rng, dtype, c, co, 3, bias=True, v_th=v_th), neuron()]
            c = co
        if min(h, w_) >= 2:
            layers.append(AvgPool2d(2))
            h, w_ = h // 2, w_ // 2
    layers += [Flatten(), Linear(c * h * w_, num_classes, rng=rng, dtype=dtype)]
    return Sequential(*layers)


def sew_resnet34(input_shape: tuple[int, ...], num_classes: int,
                 neuron: Callable[[], Module], *, g: str = "ADD", v_th: float = 1.0,
                 seed: int = 0, dtype: Any = np.float32, width: float = 1.0) -> Sequential:
    """SEW-ResNet-34 (Fang et al., "Deep Residual Learning in Spiking Neural Networks", NeurIPS
    2021; ``fangwei123456/Spike-Element-Wise-ResNet`` ``imagenet/sew_resnet.py``, torchvision's
    ``resnet34`` layout): stem conv7x7/2 (pad 3) + BN + SN + maxpool 3x3/2 (pad 1); stages
    [3, 4, 6, 3] SEW BasicBlocks of width 64, 128, 256, 512 (strides 1, 2, 2, 2); block
    ``O = g(SN(BN(conv3x3(SN(BN(conv3x3(S)))))), S)`` with ``S`` the input spikes or, when the
    shape changes, ``SN(BN(conv1x1(stride)))``; global average pooling; FC 512->classes on the
    spikes' time mean.  Convolutions bias-free.  ``g`` = ``"ADD"`` (the paper's ImageNet
    choice), ``"AND"`` or ``"IAND"`` (:class:`~pysnn_ref.nn.SEWResidual`).  SSF trains it on
    Tiny-ImageNet (3 x 64 x 64, 200 classes) with the ImageNet stem unchanged.  ``width``
    scales every channel count (:func:`scaled_width`)."""
    rng = np.random.default_rng(seed)
    k = lambda c: scaled_width(c, width)  # noqa: E731
    cb = lambda ci, co, k, s=1: _conv_bn(rng, dtype, ci, co, k, s, v_th=v_th)  # noqa: E731
    C, H, W = input_shape
    layers: list[Module] = [Conv2d(C, k(64), 7, stride=2, padding=3, bias=False, rng=rng,
                                   dtype=dtype), BatchNorm(k(64), v_th=v_th, dtype=dtype),
                            neuron(), ZeroPad2d(1), MaxPool2d(3, 2)]
    c, h = k(64), ((H - 1) // 2 + 1 - 1) // 2 + 1
    for w, n, stride in ((k(64), 3, 1), (k(128), 4, 2), (k(256), 6, 2), (k(512), 3, 2)):
        for i in range(n):
            s = stride if i == 0 else 1
            main = Sequential(*cb(c, w, 3, s), neuron(), *cb(w, w, 3), neuron())
            short = None if (s == 1 and c == w) else Sequential(*cb(c, w, 1, s), neuron())
            layers.append(SEWResidual(main, short, g))
            c, h = w, (h - 1) // s + 1
    layers += [AvgPool2d(h), Flatten(), Linear(c, num_classes, rng=rng, dtype=dtype)]
    return Sequential(*layers)


PAPER_MODELS = {"resnet19": resnet19, "preact_resnet18": preact_resnet18, "vgg11": vgg11,
                "sew_resnet34": sew_resnet34}
