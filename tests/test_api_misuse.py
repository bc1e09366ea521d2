"""API misuse raises ValueError / TypeError naming the parameter (issue 29 item 6): backward
before forward on every layer kind and through a Method, a non-array to Flatten, a non-layer in
Sequential, an empty batch or an absurd padding to conv2d_forward, a weight beyond memory."""

from __future__ import annotations

import numpy as np
import pytest

from pysnn_ref import nn
from pysnn_ref.errors import BackwardBeforeForwardError
from pysnn_ref.functional.conv import conv2d_forward
from pysnn_ref.methods import make_method

D = np.ones((2, 1, 4), np.float32)   # (T, B, features)
LAYERS = {
    "Linear": lambda: nn.Linear(4, 4),
    "Conv2d": lambda: nn.Conv2d(1, 2, 3),
    "LIF": lambda: nn.LIF(0.5, 1.0),
    "IF": lambda: nn.IF(1.0),
    "Flatten": lambda: nn.Flatten(),
    "AvgPool2d": lambda: nn.AvgPool2d(2),
    "MaxPool2d": lambda: nn.MaxPool2d(2),
    "BatchNorm": lambda: nn.BatchNorm(4),
}


@pytest.mark.parametrize("kind", list(LAYERS))
def test_backward_before_forward_names_the_layer(kind):
    layer = LAYERS[kind]()
    with pytest.raises(BackwardBeforeForwardError,
                       match=rf"{type(layer).__name__}.backward needs the state of a forward "
                             r"pass") as e:
        layer.backward(D)
    assert isinstance(e.value, ValueError)


def test_backward_before_forward_through_a_method():
    net = nn.Sequential(nn.Linear(4, 4), nn.LIF(0.5, 1.0))
    with pytest.raises(ValueError, match=r"LIF.backward needs the state of a forward pass"):
        make_method("bptt").backward(net, D)


def test_missing_private_state_is_still_an_attribute_error_for_getattr():
    assert getattr(nn.Linear(2, 2), "_cache", "default") == "default"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        nn.Linear(2, 2).nope  # noqa: B018


@pytest.mark.parametrize("x", [None, 3, np.ones(4, np.float32), np.ones((2, 4), np.float32)])
def test_flatten_forward_of_a_non_time_major_array(x):
    with pytest.raises(ValueError, match=r"x must be a time-major array \(T, B, \.\.\.\)"):
        nn.Flatten().forward(x)


@pytest.mark.parametrize("bad", [5, "lif", None, np.ones(3)])
def test_sequential_of_non_layers_names_the_position(bad):
    with pytest.raises(TypeError, match=r"layers\[1\] must be a Module"):
        nn.Sequential(nn.Flatten(), bad)


@pytest.mark.parametrize("shape", [(0, 1, 4, 4), (2, 0, 1, 4, 4), (1, 1, 0, 4)])
def test_conv2d_forward_of_an_empty_batch(shape):
    C = 1 if len(shape) == 4 and shape[1] else 1
    x = np.zeros(shape, np.float32)
    W = np.zeros((2, C, 1, 1), np.float32)
    with pytest.raises(ValueError, match="x must hold at least one image"):
        conv2d_forward(x, W, None)


def test_conv2d_forward_absurd_padding_names_padding():
    with pytest.raises(ValueError, match="padding must be at most"):
        conv2d_forward(np.zeros((1, 1, 4, 4), np.float32), np.zeros((2, 1, 3, 3), np.float32),
                       None, padding=10**6)


def test_a_weight_beyond_memory_is_refused_with_the_estimate():
    with pytest.raises(ValueError, match=r"in_features x out_features: .* GiB"):
        nn.Linear(10**6, 10**6)


def test_encoding_beyond_memory_is_refused_with_the_estimate():
    from pysnn_ref.data import make_encoder

    with pytest.raises(ValueError, match=r"^T: .* GiB"):
        make_encoder("poisson", seed=0).encode(np.ones((2, 4), np.float32), 10**12)


@pytest.mark.parametrize("dtype", [np.int8, np.int64, np.float16])
def test_module_to_a_non_float_dtype_names_dtype(dtype):
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        nn.Linear(2, 2).to("cpu", dtype=dtype)


def test_event_polarity_outside_0_1_names_it():
    from pysnn_ref.data.events import Events, frames_by_time

    ev = Events(x=np.array([0, 1]), y=np.array([0, 1]), t=np.array([0, 5]), p=np.array([0, 2]))
    with pytest.raises(ValueError, match=r"ev.p: polarities must be 0 or 1"):
        frames_by_time(ev, 2)
