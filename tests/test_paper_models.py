"""The SSF paper's networks (models.resnet19, preact_resnet18, vgg11, sew_resnet34): parameter
counts against counts written here from the authors' definitions (and torchvision's published
ResNet-34 count), and every network's wiring under bptt, asf and ssf on tiny inputs."""

from __future__ import annotations

import numpy as np
import pytest

from pysnn_ref import nn
from pysnn_ref.functional.loss import sdt_loss_backward, sdt_loss_forward
from pysnn_ref.methods import make_method
from pysnn_ref.models import count_parameters, make_model


def conv(ci, co, k, bias):
    return ci * co * k * k + (co if bias else 0)


def bn(c):
    return 2 * c


def fc(i, o):
    return i * o + o


def ref_resnet19(C, classes):
    """tdBN ResNet-19 (RBP model/resnet.py resnet19): bias-free convs, BN after each, FC
    512-256-classes."""
    n = conv(C, 128, 3, False) + bn(128)
    c = 128
    for w, blocks in ((128, 3), (256, 3), (512, 2)):
        for _i in range(blocks):
            n += conv(c, w, 3, False) + bn(w) + conv(w, w, 3, False) + bn(w)
            if c != w:
                n += conv(c, w, 1, False) + bn(w)
            c = w
    return n + fc(512, 256) + fc(256, classes)


def ref_preact_resnet18(C, classes):
    """DSR cifar/modules/preresnet.py: bias-free stem; blocks bn1(in), conv1 (bias), bn2,
    conv2 (bias), shortcut conv1x1 (bias) when the shape changes; head bn1(512), linear,
    bn2 (BatchNorm1d classes)."""
    n = conv(C, 64, 3, False)
    c = 64
    for w in (64, 128, 256, 512):
        for _i in range(2):
            n += bn(c) + conv(c, w, 3, True) + bn(w) + conv(w, w, 3, True)
            if c != w:
                n += conv(c, w, 1, True)
            c = w
    return n + bn(512) + fc(512, classes) + bn(classes)


def ref_vgg11_dvs(classes):
    """TET models/VGG_models.py VGGSNN: Layer = Conv2d (bias) + BatchNorm2d; Linear(512*3*3)."""
    n, c = 0, 2
    for w in (64, 128, 256, 256, 512, 512, 512, 512):
        n += conv(c, w, 3, True) + bn(w)
        c = w
    return n + fc(512 * 3 * 3, classes)


def ref_resnet34(C, classes):
    """torchvision resnet34 / SEW imagenet/sew_resnet.py: the spiking neurons have no
    parameters, so SEW-ResNet-34 counts as ResNet-34."""
    n = conv(C, 64, 7, False) + bn(64)
    c = 64
    for w, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for _i in range(blocks):
            n += conv(c, w, 3, False) + bn(w) + conv(w, w, 3, False) + bn(w)
            if c != w:
                n += conv(c, w, 1, False) + bn(w)
            c = w
    return n + fc(512, classes)


def _lif():
    return nn.LIF(lam=0.5, v_th=1.0)


CASES = [  # model, input shape, classes, reference count
    ("resnet19", (3, 32, 32), 10, ref_resnet19(3, 10)),
    ("resnet19", (3, 32, 32), 100, ref_resnet19(3, 100)),
    ("resnet19", (2, 48, 48), 10, ref_resnet19(2, 10)),
    ("preact_resnet18", (3, 32, 32), 10, ref_preact_resnet18(3, 10)),
    ("preact_resnet18", (3, 32, 32), 100, ref_preact_resnet18(3, 100)),
    ("vgg11", (2, 48, 48), 10, ref_vgg11_dvs(10)),
    ("sew_resnet34", (3, 64, 64), 200, ref_resnet34(3, 200)),
]


@pytest.mark.parametrize("name, shape, classes, ref", CASES)
def test_parameter_counts_match_the_authors_definitions(name, shape, classes, ref):
    n = count_parameters(make_model(name, shape, classes, _lif))
    assert abs(n - ref) <= 0.01 * ref, (n, ref)
    assert n == ref


def test_sew_resnet34_imagenet_is_torchvisions_resnet34_count():
    """torchvision's documented resnet34 count (ImageNet, 1000 classes): 21,797,672; Fang et al.
    NeurIPS 2021 list SEW-ResNet-34 with 21.79M parameters."""
    assert count_parameters(make_model("sew_resnet34", (3, 224, 224), 1000, _lif)) == 21797672


def test_layouts():
    """Where neurons and BN sit: ResNet-19 8 blocks then LIF each; SEW-ResNet-34 16 SEW blocks
    with 3 downsampling shortcuts, no LIF between blocks; PreAct 8 blocks; VGG-11 8 convs."""
    r19 = make_model("resnet19", (3, 32, 32), 10, _lif)
    blocks = [m for m in r19.modules() if isinstance(m, nn.Residual)]
    assert len(blocks) == 8 and sum(b.shortcut is not None for b in blocks) == 2
    assert all(isinstance(r19.layers[r19.layers.index(b) + 1], nn.LIF) for b in blocks)
    sew = make_model("sew_resnet34", (3, 64, 64), 200, _lif)
    sb = [m for m in sew.layers if isinstance(m, nn.SEWResidual)]
    assert len(sb) == 16 and sum(b.shortcut is not None for b in sb) == 3
    assert all(isinstance(b.main.layers[-1], nn.LIF) for b in sb)
    pre = make_model("preact_resnet18", (3, 32, 32), 10, _lif)
    assert sum(isinstance(m, nn.Residual) for m in pre.modules()) == 8
    assert isinstance(pre.layers[-1], nn.LIF)  # DSR's output is the last layer's spikes
    vgg = make_model("vgg11", (2, 48, 48), 10, _lif)
    assert sum(isinstance(m, nn.Conv2d) for m in vgg.modules()) == 8


@pytest.mark.parametrize("name, shape", [("resnet19", (3, 8, 8)), ("preact_resnet18", (3, 8, 8)),
                                         ("vgg11", (2, 8, 8)), ("sew_resnet34", (3, 16, 16))])
def test_trainable_by_every_method(name, shape):
    """Full widths on tiny inputs (wiring only): the streamed flow forward (ssf) gives BPTT's
    output, and every method's backward reaches the first layer with finite gradients."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 3, (2, 2, *shape)).astype(np.float32)
    labels = np.array([1, 3])
    outs = {}
    for method in ("bptt", "asf", "ssf"):
        net = make_model(name, shape, 10, _lif, seed=1)
        m = make_method(method, time_chunk=2) if method != "bptt" else make_method(method)
        m.check_network(net)
        y = m.forward(net, x)
        _, cache = sdt_loss_forward(y, labels)
        m.backward(net, sdt_loss_backward(cache))
        outs[method] = y
        grads = [p.grad for p in net.parameters()]
        assert all(np.all(np.isfinite(g)) for g in grads), method
        assert np.abs(grads[0]).max() > 0, method
    assert y.shape == (2, 2, 10)
    np.testing.assert_allclose(outs["ssf"], outs["bptt"], rtol=1e-4, atol=1e-4)


def test_fixed_layout_rejects_bn_options_and_non_square_input():
    with pytest.raises(ValueError, match="tdbn_alpha"):
        make_model("resnet19", (3, 32, 32), 10, _lif, tdbn_alpha=1.0)
    with pytest.raises(ValueError, match="batch_norm"):
        make_model("vgg11", (2, 48, 48), 10, _lif, batch_norm=False)
    with pytest.raises(ValueError, match="square image input"):
        make_model("sew_resnet34", (3, 64, 32), 200, _lif)


def test_train_cli_refuses_a_bn_flag_for_a_paper_model_in_one_line(capsys, tmp_path):
    from pysnn_ref.train.__main__ import cli

    rc = cli(["--model", "resnet19", "--tdbn-alpha", "1.0", "--epochs", "1", "--T", "2",
              "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    lines = [s for s in err.splitlines() if s.strip()]
    assert rc == 2 and len(lines) == 1 and "tdbn_alpha" in lines[0], err


def _conv_channels(net):
    return [m.W.data.shape[0] for m in net.modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize("name, shape", [("resnet19", (3, 32, 32)), ("preact_resnet18",
                                         (3, 32, 32)), ("vgg11", (2, 48, 48)),
                                         ("sew_resnet34", (3, 64, 64))])
def test_width_scales_every_channel_count(name, shape):
    """width = 1 is the published network (the same parameters, seed for seed); width = 0.25
    builds every convolution with a quarter of its output channels (the same layer list) and
    keeps the classifier's outputs; the reduced network trains (wiring)."""
    full = make_model(name, shape, 10, _lif, seed=3)
    same = make_model(name, shape, 10, _lif, seed=3, width=1.0)
    for p, q in zip(full.parameters(), same.parameters(), strict=True):
        np.testing.assert_array_equal(p.data, q.data)
    small = make_model(name, shape, 10, _lif, seed=3, width=0.25)
    assert [c // 4 for c in _conv_channels(full)] == _conv_channels(small)
    assert 10 < count_parameters(full) / count_parameters(small) < 20  # ~16 = 4**2
    x = np.ones((2, 1, *shape), np.float32)
    assert small.forward(x).shape == (2, 1, 10)


@pytest.mark.parametrize("width", [0, -0.5, float("nan"), 5.0, "wide"])
def test_width_out_of_range_is_a_clear_error(width):
    with pytest.raises(ValueError, match=r"width must be"):
        make_model("vgg11", (2, 48, 48), 10, _lif, width=width)


def test_width_applies_to_the_paper_models_only():
    with pytest.raises(ValueError, match="width applies to the SSF Table 1 networks"):
        make_model("lenet", (1, 8, 8), 10, _lif, width=0.5)
    assert count_parameters(make_model("lenet", (1, 8, 8), 10, _lif, width=1.0)) > 0
