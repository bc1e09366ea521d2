"""ASF's paper scale factor (Eq. 12, ``flows.asf_scale_paper``) where the inputs cancel.

Behind BatchNorm with beta = 0 a spiking layer's summed input sum FI is 0 up to float
round-off while sum |FI| is large; Eq. 12's S = sum FO / sum FI is then undefined.  The
estimator keeps the previous S unless sum FI > rtol * sum |FI| (docs/methods.md, "ASF").
Before that guard, a positive round-off epsilon gave S ~ 1e8 and the weights blew up
(docs/benchmarks.md, "Flow memory with BatchNorm").
"""

import json
import warnings

import numpy as np
import pytest

from pysnn_ref import backend, models, nn
from pysnn_ref.functional import flows
from pysnn_ref.functional.loss import sdt_loss_backward, sdt_loss_forward
from pysnn_ref.methods import make_method
from pysnn_ref.optim import SGD
from pysnn_ref.train.checkpoint import restore_neuron_state


def test_degenerate_sum_keeps_previous():
    # the first snn5 step of docs/benchmarks.md: sum FI = +2.4e-4 (round-off) against
    # sum FO = 66314; sum |FI| is of the order of the spike count
    assert flows.asf_scale_paper(66314.0, 2.4e-4, previous=0.7, sum_abs_FI=2.5e5) == 0.7
    assert flows.asf_scale_paper(66314.0, -2.4e-3, previous=0.7, sum_abs_FI=2.5e5) == 0.7
    assert flows.asf_scale_paper(5.0, 0.0, previous=1.0, sum_abs_FI=0.0) == 1.0  # nothing in
    # the bound is strict: exactly rtol * sum |FI| is still "not clearly positive"
    r = flows.ASF_RTOL
    assert flows.asf_scale_paper(1.0, r * 1e4, previous=0.5, sum_abs_FI=1e4) == 0.5
    # without a size to compare with, only sum FI <= 0 is caught (the bare Eq. 12 guard)
    assert flows.asf_scale_paper(66314.0, 2.4e-4, previous=0.7) == pytest.approx(66314 / 2.4e-4)


def test_normal_sum_is_eq12_unchanged():
    # all inputs positive (the paper's own setting) and a cancellation as seen without BN
    # (the MLP on the digits, sum FI / sum |FI| = 0.02): the value is Eq. 12's, bit for bit
    assert flows.asf_scale_paper(300.0, 1000.0, previous=1.0, sum_abs_FI=1000.0) == 300.0 / 1000.0
    assert flows.asf_scale_paper(13.0, 20.0, previous=1.0, sum_abs_FI=1000.0) == 13.0 / 20.0
    r = flows.ASF_RTOL
    assert flows.asf_scale_paper(1.0, 2 * r * 1e4, previous=0.5,
                                 sum_abs_FI=1e4) == 1.0 / (2 * r * 1e4)


def test_device_branch_same_rule(monkeypatch):
    """The 0-d device-array branch (no host sync: where, no Python if), run on NumPy 0-d arrays
    by letting the backend take them for device arrays."""
    cases = [(66314.0, 2.4e-4, 0.7, 2.5e5), (66314.0, -2.4e-3, 0.7, 2.5e5),
             (300.0, 1000.0, 1.0, 1000.0), (13.0, 20.0, 1.0, 1000.0),
             (5.0, -1.0, 0.3, 4.0)]  # sum FI = -1: the old `sum_FI + ~ok` divided by 0 here
    want = [flows.asf_scale_paper(fo, fi, previous=p, sum_abs_FI=ab) for fo, fi, p, ab in cases]
    monkeypatch.setattr(backend, "is_gpu_array", lambda x: isinstance(x, np.ndarray))
    monkeypatch.setattr(backend, "array_module", lambda x: np)
    a = lambda v: np.array(v, dtype=np.float64)  # noqa: E731
    for (fo, fi, prev, ab), w in zip(cases, want, strict=True):
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            got = flows.asf_scale_paper(a(fo), a(fi), previous=a(prev), sum_abs_FI=a(ab))
        assert isinstance(got, np.ndarray) and got.ndim == 0
        assert float(got) == w


def test_asf_trains_a_bn_network_with_finite_weights():
    """conv-BN-LIF-AP-conv-BN-LIF-FC, ASF (paper S), SGD, six steps, RuntimeWarning = error.
    With this seed the second spiking layer's sum FI after the first step is a positive
    round-off epsilon; before the guard S became 7.9e7 and the weights 1.7e13."""
    net = models.build_from_string("8C3-AP2-8C3", (1, 8, 8), 4, lambda: nn.LIF(0.5, 1.0),
                                   batch_norm=True, seed=0)
    net.train()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4, 8, 1, 8, 8)).astype(np.float32)
    labels = rng.integers(0, 4, 8)
    method = make_method("asf")
    opt = SGD(list(net.named_parameters().values()), lr=0.05, momentum=0.9)
    lifs = nn.spiking_layers(net)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for step in range(6):
            opt.zero_grad()
            y = method.forward(net, X)
            loss, cache = sdt_loss_forward(y, labels)
            method.backward(net, sdt_loss_backward(cache))
            opt.step()
            if step == 0:  # the degenerate case is there: sum FI is round-off of sum |FI|
                rho = [n._asf_tot[1] / n._asf_tot[2] for n in lifs]
                assert min(abs(v) for v in rho) < 1e-6, rho
            assert np.isfinite(float(loss))
    S = [float(n.S) for n in lifs]
    assert all(np.isfinite(S)) and max(S) < 10, S
    wmax = max(float(np.abs(p.data).max()) for p in net.named_parameters().values())
    assert wmax < 10, wmax


def test_old_checkpoint_asf_tot_is_padded():
    net = models.build_from_string("FC4", (3,), 2, lambda: nn.LIF(0.5, 1.0))
    state = [{"S": 0.4, "asf_tot": [2.0, -3.0], "surrogate": "triangle:1.0"}]
    restore_neuron_state(net, json.loads(json.dumps(state)))
    (lif,) = nn.spiking_layers(net)
    assert lif.S == 0.4 and lif._asf_tot == [2.0, -3.0, 3.0]
