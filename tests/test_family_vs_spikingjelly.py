"""The family against an independent implementation: SpikingJelly's modules (PyTorch autograd).

Optional: skipped unless ``torch`` and ``spikingjelly`` import.  Cheapest install (measured
on the 2-core dev machine, from its local wheel mirror, so network time is not included):
``pip install torch==2.13.0+cpu`` (a 192 MB wheel) 34 s, then ``pip install --no-deps
spikingjelly loguru`` 1.7 s -- a 979 MB venv with numpy, enough for this file (plus numba and
pytest).  A plain ``pip install spikingjelly`` instead pulls the CUDA build of torch (a 555 MB
wheel plus the nvidia-* libraries), torchvision, torchaudio, triton and tensorboard: a 6.1 GB
venv.  Checked:
Checked:

* DSR IF -- ``spikingjelly.activation_based.neuron.DSRIFNode`` (its forward loop and its
  hand-written backward, the authors' rule): spikes, dL/dI and dL/dv_th equal ours.
* OTTT -- ``OTTTLIFNode`` inside ``OTTTSequential`` (the trace-substituted weight layers,
  ``layer/online_learning.py``), one step at a time with each step's loss back-propagated
  (OTTT_A): every weight and bias gradient equals ours.
* SLTT -- ``SLTTLIFNode`` (``decay_input=False``; soft ``v_reset=None`` and hard ``0.0``) in an
  ordinary ``nn.Sequential``, the same way.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("spikingjelly")

from spikingjelly.activation_based import functional as sjf  # noqa: E402
from spikingjelly.activation_based.layer import OTTTSequential  # noqa: E402
from spikingjelly.activation_based.neuron import (  # noqa: E402
    DSRIFNode,
    OTTTLIFNode,
    SLTTLIFNode,
)
from spikingjelly.activation_based.surrogate import Sigmoid  # noqa: E402

from pysnn_ref.functional.dsr import dsr_backward, dsr_forward  # noqa: E402
from pysnn_ref.functional.linear import LinearCache, linear_backward, linear_forward  # noqa: E402
from pysnn_ref.functional.neuron import make_neuron_params  # noqa: E402
from pysnn_ref.functional.online import OnlineState, online_backward, online_forward  # noqa: E402
from pysnn_ref.gradcheck.finite_diff import rel_error  # noqa: E402

TAU, V_TH = 2.5, 0.5  # lam = 1 - 1/tau = 0.6


@pytest.mark.parametrize("alpha", [0.5, 1.0])
def test_dsr_if_equals_spikingjelly(alpha):
    rng = np.random.default_rng(0)
    T, v_th = 8, 0.7
    I = rng.normal(0.35, 0.6, (T, 4, 30)).astype(np.float32)
    c = rng.normal(size=I.shape).astype(np.float32)
    node = DSRIFNode(T=T, v_threshold=v_th, alpha=alpha, v_threshold_lower_bound=0.01)
    x = torch.tensor(I, requires_grad=True)
    out = node(x)
    (out * torch.tensor(c)).sum().backward()
    o, cache = dsr_forward(I, lam=1.0, v_th=v_th, alpha=alpha)
    dI, dv = dsr_backward(c, cache)
    assert np.array_equal(out.detach().numpy(), o) and 0 < (o > 0).mean() < 1
    assert rel_error(x.grad.numpy(), dI) < 1e-6
    sj_dv = float(node.v_threshold.grad)
    assert sj_dv != 0.0 and abs(sj_dv - dv) <= 1e-4 * max(1.0, abs(dv))


def _params(rng, sizes):
    return [(rng.normal(0, 0.8, (m, n)), rng.normal(0, 0.3, m))
            for n, m in zip(sizes[:-1], sizes[1:], strict=True)]


def _torch_net(P, neuron, ottt):
    layers = []
    for i, (W, b) in enumerate(P):
        lin = torch.nn.Linear(W.shape[1], W.shape[0]).double()
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(W))
            lin.bias.copy_(torch.tensor(b))
        layers.append(lin)
        if i < len(P) - 1:
            layers.append(neuron())
    net = OTTTSequential(*layers) if ottt else torch.nn.Sequential(*layers)
    return net.train()


def _ours(x, tgt, P, p, ottt):
    """Online training with our functions, one step at a time (as tests/test_family_online.py)."""
    (W1, b1), (W2, b2), (W3, b3) = P
    B = x.shape[1]
    st1 = OnlineState.zeros((B, W1.shape[0]), x.dtype, trace=ottt)
    st2 = OnlineState.zeros((B, W2.shape[0]), x.dtype, trace=ottt)
    grads = [np.zeros_like(q) for pair in P for q in pair]
    for t in range(x.shape[0]):
        I1, c1 = linear_forward(x[t:t + 1], W1, b1)
        o1, a1, k1, _ = online_forward(I1, p, st1)
        I2, c2 = linear_forward(o1, W2, b2)
        o2, a2, k2, _ = online_forward(I2, p, st2)
        y, c3 = linear_forward(o2, W3, b3)
        if ottt:
            c2, c3 = LinearCache(a1, W2, True), LinearCache(a2, W3, True)
        do2, dW3, db3 = linear_backward(y - tgt[t:t + 1], c3)
        do1, dW2, db2 = linear_backward(online_backward(do2, k2), c2)
        _, dW1, db1 = linear_backward(online_backward(do1, k1), c1, need_dx=False)
        for g, d in zip(grads, (dW1, db1, dW2, db2, dW3, db3), strict=True):
            g += d
    return grads


@pytest.mark.parametrize("method,reset", [("ottt", "soft"), ("sltt", "soft"), ("sltt", "hard")])
def test_online_methods_equal_spikingjelly(method, reset):
    rng = np.random.default_rng(1)
    T, B, sizes = 6, 3, (5, 8, 6, 4)
    x = rng.normal(0.6, 1.0, (T, B, sizes[0]))
    tgt = rng.normal(size=(T, B, sizes[-1]))
    P = _params(rng, sizes)
    ottt = method == "ottt"
    v_reset = None if reset == "soft" else 0.0
    if ottt:
        neuron = lambda: OTTTLIFNode(tau=TAU, v_threshold=V_TH,  # noqa: E731
                                     surrogate_function=Sigmoid(alpha=4.0))
    else:
        neuron = lambda: SLTTLIFNode(tau=TAU, decay_input=False, v_threshold=V_TH,  # noqa: E731
                                     v_reset=v_reset, surrogate_function=Sigmoid(alpha=4.0))
    net = _torch_net(P, neuron, ottt)
    sjf.reset_net(net)
    for t in range(T):
        y = net(torch.tensor(x[t]))
        (0.5 * ((y - torch.tensor(tgt[t])) ** 2).sum()).backward()
    p = make_neuron_params(lam=1 - 1 / TAU, v_th=V_TH, reset=reset, surrogate="sigmoid:4")
    ours = _ours(x, tgt, P, p, ottt)
    theirs = [q.grad.numpy() for lin in net if isinstance(lin, torch.nn.Linear)
              for q in (lin.weight, lin.bias)]
    for a, b in zip(ours, theirs, strict=True):
        assert np.abs(b).max() > 1e-3 and rel_error(a, b) < 1e-10, rel_error(a, b)
