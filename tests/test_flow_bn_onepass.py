"""Flow methods with BatchNorm in training: the one-pass forward (a chunk of all T steps, each BN
takes its statistics from it, no statistics passes) against two-pass streaming (chunk < T).

* Same outputs, gradients (float64, 1e-10) and running statistics (updated once per forward,
  as BPTT's) for asf, ssf and dsr, on a Conv-BN-LIF net and on a residual net with a BN after
  the sum (the per-step fallback).
* The number of passes: the first layer runs once per chunk in one-pass mode, L + 1 times per
  chunk when streamed (L BN layers).
* ``time_chunk="auto"`` picks the one pass when the estimate fits ``one_pass_bytes``.
"""

import numpy as np
import pytest

from pysnn_ref import nn
from pysnn_ref.data import PoissonEncoder
from pysnn_ref.functional.loss import sdt_loss_backward, sdt_loss_forward
from pysnn_ref.gradcheck import rel_error
from pysnn_ref.methods import DEFAULT_TIME_CHUNK, make_method

F64 = np.float64


def _lif(method):
    # DSR trains BN with IF neurons (lam = 1) and the soft reset
    return (nn.LIF(lam=1.0, reset="soft") if method == "dsr"
            else nn.LIF(lam=0.8, surrogate="sigmoid"))


def _bn(c, rng):
    bn = nn.BatchNorm(c, dtype=F64)
    bn.gamma.data[...] = rng.uniform(0.8, 1.6, c)
    bn.beta.data[...] = rng.uniform(0.2, 0.8, c)
    return bn


def _conv_net(method, seed=1):
    """conv-BN-LIF-AP-conv-BN-LIF-flatten-FC-BN-LIF-FC (3 BN layers, all streamed)."""
    r = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1, bias=False, rng=r, dtype=F64), _bn(3, r), _lif(method),
        nn.AvgPool2d(2),
        nn.Conv2d(3, 3, 3, padding=1, bias=False, rng=r, dtype=F64), _bn(3, r), _lif(method),
        nn.Flatten(), nn.Linear(27, 5, rng=r, dtype=F64), _bn(5, r), _lif(method),
        nn.Linear(5, 4, rng=r, dtype=F64))


def _residual_net(method, seed=2):
    """conv-BN-LIF-[conv-BN-LIF-conv + identity]-BN-LIF-flatten-FC: the BN after the sum takes
    the per-step fallback (3 BN layers)."""
    r = np.random.default_rng(seed)
    main = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1, bias=False, rng=r, dtype=F64),
                         _bn(2, r), _lif(method),
                         nn.Conv2d(2, 2, 3, padding=1, bias=False, rng=r, dtype=F64))
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1, bias=False, rng=r, dtype=F64), _bn(2, r), _lif(method),
        nn.Residual(main), _bn(2, r), _lif(method), nn.Flatten(),
        nn.Linear(72, 4, rng=r, dtype=F64))


def _run(net, method, X, labels, **opts):
    """One training step's forward and backward; counts the first layer's forward_chunk
    calls.  Returns the output, the gradients, the running statistics and the count."""
    first = net.layers[0]
    calls = []
    inner = first.forward_chunk

    def counted(x):
        calls.append(x.shape[0])
        return inner(x)

    first.forward_chunk = counted
    m = make_method(method, **opts)
    net.zero_grad()
    y = m.forward(net, X)
    _, cache = sdt_loss_forward(y, labels)
    m.backward(net, sdt_loss_backward(cache))
    grads = {k: p.grad.copy() for k, p in net.named_parameters().items()}
    stats = [(b.running_mean.copy(), b.running_var.copy()) for b in net.modules()
             if isinstance(b, nn.BatchNorm)]
    return y, grads, stats, calls


def _data(T, H, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 2, (T, 3, 1, H, H)), rng.integers(0, 4, 3)


def _assert_same(a, b):
    y1, g1, s1, _ = a
    y2, g2, s2, _ = b
    assert np.max(np.abs(y1 - y2)) < 1e-12
    scale = max(np.abs(v).max() for v in g2.values())
    for k in g2:
        if np.abs(g2[k]).max() < 1e-12 * scale:  # the bias before a BN: zero up to round-off
            assert np.abs(g1[k]).max() < 1e-12 * scale, k
        else:
            assert rel_error(g1[k], g2[k]) < 1e-10, k
    for (m1, v1), (m2, v2) in zip(s1, s2, strict=True):
        assert rel_error(m1, m2) < 1e-12 and rel_error(v1, v2) < 1e-12


@pytest.mark.parametrize("make", [_conv_net, _residual_net], ids=["conv", "residual"])
@pytest.mark.parametrize("method", ["asf", "ssf", "dsr"])
def test_one_pass_equals_streamed(method, make):
    T = 7
    X, labels = _data(T, 6 if make is _conv_net else 6)
    one = _run(make(method), method, X, labels)          # "auto": chunk = T, one pass
    streamed = _run(make(method), method, X, labels, time_chunk=3)  # chunks 3, 3, 1
    assert one[3] == [T]                                 # one chunk, one pass
    assert streamed[3] == [3, 3, 1] * 4                  # L + 1 = 4 passes over 3 chunks
    _assert_same(one, streamed)
    net = make(method)
    bpt = make_method("bptt")
    bpt.forward(net, X)  # BPTT updates the running statistics once per forward
    ref = [(b.running_mean, b.running_var) for b in net.modules() if isinstance(b, nn.BatchNorm)]
    for (m1, v1), (m2, v2) in zip(one[2], ref, strict=True):
        assert rel_error(m1, m2) < 1e-12 and rel_error(v1, v2) < 1e-12


def test_kept_state_for_the_backward():
    """One pass keeps what the normalised pass kept: the BNs under a weight layer stream
    (sum_t xc, xc_flow, the weight layer's A), the BN after a residual sum keeps its steps."""
    X, labels = _data(5, 6)
    net = _residual_net("ssf")
    m = make_method("ssf")
    m.forward(net, X)
    bns = [b for b in net.modules() if isinstance(b, nn.BatchNorm)]
    assert [b._streamed for b in bns] == [True, True, False]
    assert sum(x.shape[0] for x in bns[2]._steps) == 5
    assert all(b.batch_mean is not None for b in bns)


def test_auto_rule_and_budget():
    T = 6
    X, labels = _data(T, 6)
    m = make_method("ssf")
    net = _conv_net("ssf")
    assert m.time_chunk_for(net, T, X) == T               # 6 x 3 x 27 x 8 bytes: fits
    assert m.time_chunk_for(net, 40, X) == 40
    small = make_method("ssf", one_pass_bytes=T * 3 * 108 * 8 - 1)  # just under the first conv
    assert small.time_chunk_for(net, T, X) == DEFAULT_TIME_CHUNK
    assert make_method("ssf", one_pass_bytes=T * 3 * 108 * 8).time_chunk_for(net, T, X) == T
    assert make_method("ssf", time_chunk=3).time_chunk_for(net, T, X) == 3
    assert make_method("ssf", time_chunk="auto").time_chunk_for(net, T, X) == T
    no_bn = nn.Sequential(nn.Flatten(), nn.Linear(36, 4, dtype=F64), nn.LIF())
    assert m.time_chunk_for(no_bn, T, X) == DEFAULT_TIME_CHUNK  # no BN: nothing to gain
    net.eval()
    assert m.time_chunk_for(net, T, X) == DEFAULT_TIME_CHUNK    # BN in eval: no statistics
    net.train()
    # over budget: streamed, L + 1 passes over the chunks of 4
    calls = _run(net, "ssf", X, labels, one_pass_bytes=1000)[3]
    assert calls == [4, 2] * 4


def test_bad_time_chunk_names_the_parameter():
    with pytest.raises(ValueError, match="time_chunk must be an integer >= 1 or 'auto'"):
        make_method("ssf", time_chunk="fast")
    with pytest.raises(ValueError, match="one_pass_bytes"):
        make_method("ssf", one_pass_bytes=-1)


def test_one_pass_with_poisson_input():
    """A stateful encoder is drawn once (nothing to replay): equals BPTT on the same spikes."""
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, (3, 1, 6, 6))
    T = 6
    y = make_method("ssf").forward(_conv_net("ssf"), x, T, enc := PoissonEncoder(seed=2))
    ref_enc = PoissonEncoder(seed=2)
    y_ref = make_method("bptt").forward(_conv_net("ssf"), ref_enc.encode(x, T))
    assert np.max(np.abs(y - y_ref)) < 1e-12
    assert np.array_equal(enc.encode(x, 2), ref_enc.encode(x, 2))


@pytest.mark.parametrize("name,shape,classes", [("resnet19", (3, 32, 32), 10),
                                                ("preact_resnet18", (3, 32, 32), 10),
                                                ("vgg11", (2, 48, 48), 10),
                                                ("sew_resnet34", (3, 64, 64), 200)])
def test_step_extent_walks_every_paper_network_to_its_classifier(name, shape, classes):
    """Module.step_extent: every layer of the four paper networks knows its output shape (the
    one-pass estimate is finite), the walk ends at the classifier's (classes,), and the
    largest activation is the first convolution's output (shapes by hand)."""
    from pysnn_ref.models import make_model

    net = make_model(name, shape, classes, lambda: nn.LIF(0.5, 1.0), width=0.125)
    largest, out = net.step_extent(shape)
    assert out == (classes,)
    first = {"resnet19": 16 * 32 * 32, "preact_resnet18": 8 * 32 * 32, "vgg11": 8 * 48 * 48,
             "sew_resnet34": 8 * 32 * 32 + 0}[name]
    assert largest >= first and np.isfinite(largest)
