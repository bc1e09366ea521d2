"""The networks of the papers, built from layer strings and adapted to the data's shape.

A layer string reads like the papers' tables: ``64C3`` is a 3x3 convolution with 64 output
channels ('same' padding) followed by batch norm (if the model uses it) and a spiking layer;
``AP2`` / ``MP2`` are 2x2 average / max pooling; ``FC1024`` a fully connected layer followed by
a spiking layer; the classifier (a non-spiking ``FC``) is appended last.  A pooling layer is
skipped when the feature map is already smaller than 2x2, so every model adapts to small inputs
such as the 8x8 digits.

=========  =================================================================  ===============
model      layers                                                             source
=========  =================================================================  ===============
mlp        FC800                                                              SSF/ASF MLP
lenet      16C3-AP2-32C3-AP2-FC128  (no BN)                                   ASF LeNet
vgg7       64C3-64C3-AP2-128C3-128C3-128C3-MP2-FC1024  (no BN)                ASF VGG-7
snn5       16C3-64C5-AP2-128C5-AP2-256C5-AP2-512C3-AP2  (BN)                  TET SNN-5
vggsnn     64C3-128C3-AP2-256C3-256C3-AP2-512C3-512C3-AP2-512C3-512C3-AP2     TET VGGSNN
resnet     32C3 stem, residual blocks [32, 64 s2, 128 s2], global AP  (BN)    spiking ResNet
window     4 windows (3L/4) of 16C3, Algorithm 1 recompose, AP2  (BPTT only)  window-partition
lstm       SpikingLSTM(128) on a sequence (T, B, D), classifier  (BPTT only)  window-partition
=========  =================================================================  ===============

``lstm`` takes sequence input, ``input_shape = (D,)`` features per step (``--dataset
digits-rows --encoder sequence``: one 8-pixel image row per step); its spike threshold
applies to the membrane ``o tanh(c)`` in (-1, 1), so it must lie in (0, 1)
(:data:`LSTM_V_TH` = 0.5 unless ``--v-th`` is given).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

from ._check import check_choice, check_int
from .nn import (
    AvgPool2d,
    BatchNorm,
    Conv2d,
    Flatten,
    Linear,
    MaxPool2d,
    Module,
    Residual,
    Sequential,
    SpikingLSTM,
    WindowRecompose,
)

LAYER_STRINGS = {
    "mlp": ("FC800", False),
    "lenet": ("16C3-AP2-32C3-AP2-FC128", False),
    "vgg7": ("64C3-64C3-AP2-128C3-128C3-128C3-MP2-FC1024", False),
    "snn5": ("16C3-64C5-AP2-128C5-AP2-256C5-AP2-512C3-AP2", True),
    "vggsnn": ("64C3-128C3-AP2-256C3-256C3-AP2-512C3-512C3-AP2-512C3-512C3-AP2", True),
}
MODELS = (*LAYER_STRINGS, "resnet", "window", "lstm")
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
               batch_norm: bool | None = None, surrogate: str = "triangle") -> Sequential:
    """Build model ``name`` (see the module table) for ``input_shape`` and ``num_classes``.

    ``batch_norm`` overrides the model's default (BN where its source paper uses it).
    ``surrogate`` is used by ``lstm`` only (the other models' neurons come from ``neuron``).
    """
    check_choice("model", name, MODELS)
    check_int("num_classes", num_classes, minimum=2)
    shape = tuple(input_shape)
    if name == "lstm":
        return _lstm(shape, num_classes, v_th, surrogate, seed, dtype)
    if name == "window":
        return _window(shape, num_classes, neuron, seed, dtype)
    if name == "resnet":
        if len(shape) != 3:
            raise ValueError(f"model 'resnet' needs image input (C, H, W), got {shape}")
        return _resnet(shape, num_classes, neuron, tdbn_alpha, v_th, seed, dtype)
    spec, bn = LAYER_STRINGS[name]
    if name != "mlp" and len(shape) != 3:
        raise ValueError(f"model {name!r} needs image input (C, H, W), got input_shape {shape}")
    return build_from_string(spec, shape, num_classes, neuron,
                             batch_norm=bn if batch_norm is None else batch_norm,
                             tdbn_alpha=tdbn_alpha, v_th=v_th, seed=seed, dtype=dtype)
