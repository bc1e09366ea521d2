"""The flow methods' output layer under a per-step loss (issue 25 item 5).

With a per-step loss (TET) the layers above the top spiking layer keep their per-step inputs and
back-propagate ``dy`` per step, so the output layer's ``dW = sum_t dy[t]^T x[t]`` and ``db`` equal
BPTT's (same forward spikes: ``smooth=False``; float64); with SDT / ASF-MSE the collapse is kept
(nothing of length T is stored) and is exact too.  Below the top spiking layer both paths give
the same gradients (that layer collapses a per-step gradient with its own flow weights).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from pysnn_ref import nn
from pysnn_ref.functional.loss import is_per_step, loss_pair, tet_loss_forward
from pysnn_ref.gradcheck import numerical_gradient, rel_error
from pysnn_ref.methods import make_method
from pysnn_ref.models import PAPER_MODELS


def _mlp(lam: float = 0.8, reset: str = "hard") -> nn.Sequential:
    rng = np.random.default_rng(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 10, rng=rng, dtype=np.float64),
                         nn.LIF(lam=lam, v_th=0.8, reset=reset),
                         nn.Linear(10, 8, rng=rng, dtype=np.float64),
                         nn.LIF(lam=lam, v_th=0.8, reset=reset),
                         nn.Linear(8, 5, rng=rng, dtype=np.float64))


def _conv(pool: type = nn.AvgPool2d) -> nn.Sequential:
    """conv -> BN -> LIF -> pool -> flatten -> Linear: pooling and flatten before the
    classifier."""
    rng = np.random.default_rng(2)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1, bias=False, rng=rng, dtype=np.float64),
                         nn.BatchNorm(3, dtype=np.float64), nn.LIF(lam=0.8, v_th=0.8),
                         pool(2), nn.Flatten(), nn.Linear(27, 5, rng=rng, dtype=np.float64))


def _residual_top() -> nn.Sequential:
    """A SEW block (ADD, identity shortcut) at the top: the per-step gradient goes down both
    branches and through the shortcut to the spiking layer below the block."""
    rng = np.random.default_rng(3)
    main = nn.Sequential(nn.Linear(8, 8, rng=rng, dtype=np.float64), nn.LIF(lam=0.8, v_th=0.8))
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 8, rng=rng, dtype=np.float64),
                         nn.LIF(lam=0.8, v_th=0.8), nn.SEWResidual(main),
                         nn.Linear(8, 5, rng=rng, dtype=np.float64))


SMALL = {"mlp": (_mlp, (1, 3, 4)), "conv-avgpool": (_conv, (1, 6, 6)),
         "conv-maxpool": (lambda: _conv(nn.MaxPool2d), (1, 6, 6)),
         "sew-top": (_residual_top, (1, 3, 4))}


def _input(shape: tuple[int, ...], T: int = 6, B: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 2, (T, B, *shape))


def _grads(net: nn.Module, method: str, X: np.ndarray, dy: Any, **opts: Any
           ) -> tuple[dict[str, np.ndarray], int]:
    """Every gradient after ``method``'s forward and its backward of ``dy`` (an array, or a
    function of the output), and the bytes the output layer kept for its backward."""
    m = make_method(method, **opts)
    m.check_network(net)
    net.zero_grad()
    y = m.forward(net, X)
    out = _output_layer(net)
    kept = out.kept_steps_nbytes if m.is_flow and isinstance(out, nn.Linear) else 0
    m.backward(net, dy(y) if callable(dy) else dy)
    return {k: p.grad.copy() for k, p in net.named_parameters().items()}, kept


def _output_layer(net: nn.Sequential) -> nn.Module:
    return net.layers[-1]


def _out_names(net: nn.Sequential) -> list[str]:
    i = len(net.layers) - 1
    return [f"{i}.{p.name}" for p in _output_layer(net).own_parameters()]


def _random_dy(T: int, B: int, C: int, seed: int = 5) -> np.ndarray:
    """Random per-step gradients: every step different (the hardest case for a collapse)."""
    return np.random.default_rng(seed).normal(0, 1, (T, B, C))


@pytest.mark.parametrize("case", sorted(SMALL))
@pytest.mark.parametrize("method", ["ssf", "asf"])
def test_per_step_loss_output_layer_equals_bptt(method, case):
    build, shape = SMALL[case]
    X = _input(shape)
    dy = _random_dy(X.shape[0], X.shape[1], 5)
    ref, _ = _grads(build(), "bptt", X, dy)
    net = build()
    got, kept = _grads(net, method, X, dy, loss="tet", time_chunk=4)
    for k in _out_names(net):   # sum_t dy[t]^T x[t] and sum_t sum_b dy[t]: BPTT's, exactly
        assert rel_error(got[k], ref[k]) < 1e-12, k
    x_features = _output_layer(net).W.data.shape[1]
    assert kept == X.shape[0] * X.shape[1] * x_features * 8     # T x one step's input (float64)
    assert _output_layer(net).kept_steps_nbytes == 0             # released by the backward
    # the collapse would be off for these per-step gradients (what this change fixes)
    old, _ = _grads(build(), method, X, dy, time_chunk=4)
    k = _out_names(net)[0]
    assert rel_error(old[k], ref[k]) > 1e-3


@pytest.mark.parametrize("case", sorted(SMALL))
def test_pooling_and_flatten_pass_the_collapsed_gradient(case):
    """Only AvgPool2d / Flatten between the output layer and the top spiking layer: the output
    layer hands down the collapsed gradient (nothing in between keeps or forms per-step
    tensors); a MaxPool2d or a SEW block in between gets the per-step gradient."""
    build, shape = SMALL[case]
    net = build()
    make_method("ssf", loss="tet").forward(net, _input(shape))
    per_step_below = case in ("conv-maxpool", "sew-top")
    assert _output_layer(net).keep_steps
    assert _output_layer(net).flow_out_per_step(True) is per_step_below
    top = max(i for i, la in enumerate(net.layers) if isinstance(la, nn.LIF))
    between = [la for la in net.layers[top + 1:-1] if not isinstance(la, nn.SEWResidual)]
    assert all(la.keep_steps is per_step_below for la in between)


@pytest.mark.parametrize("method", ["ssf", "asf"])
@pytest.mark.parametrize("case", ["mlp", "conv-avgpool", "sew-top"])
def test_per_step_path_leaves_the_layers_below_unchanged(method, case):
    """Below the top spiking layer the per-step path and the collapse give the same gradients:
    the linear layers in between commute with the flow-weighted time mean.  (A MaxPool2d
    there is not linear: per step it routes each dy[t] to that step's winners before the
    spiking layer collapses, where the collapse routed the mean gradient by the winners'
    flow-weighted frequency -- the per-step path is the flow rule applied exactly.)"""
    build, shape = SMALL[case]
    X = _input(shape)
    dy = _random_dy(X.shape[0], X.shape[1], 5)
    net = build()
    new, _ = _grads(net, method, X, dy, loss="tet", time_chunk=4)
    old, _ = _grads(build(), method, X, dy, time_chunk=4)
    top = set(_out_names(net))
    for k in new:
        if k not in top:
            assert rel_error(new[k], old[k]) < 1e-12, k


@pytest.mark.parametrize("loss", ["sdt", "asf-mse"])
@pytest.mark.parametrize("method", ["ssf", "asf"])
@pytest.mark.parametrize("case", ["mlp", "conv-avgpool"])
def test_time_mean_losses_keep_the_collapse_and_are_exact(method, loss, case):
    build, shape = SMALL[case]
    X = _input(shape)
    labels = np.array([0, 3, 4])
    fwd, bwd = loss_pair(loss)
    assert not is_per_step(loss)
    ref, _ = _grads(build(), "bptt", X, lambda y: bwd(fwd(y, labels)[1]))
    net = build()
    got, kept = _grads(net, method, X, lambda y: bwd(fwd(y, labels)[1]), loss=loss)
    assert kept == 0 and not any(la.keep_steps for la in net.modules())
    for k in _out_names(net):
        assert rel_error(got[k], ref[k]) < 1e-12, k


def test_tet_output_gradient_matches_finite_differences_with_the_spikes_fixed():
    """The output layer's gradient is the exact gradient of the TET loss (TET Eqs. 9, 12, 13)
    of ``y[t] = x[t] W^T + b`` with the spikes ``x`` held fixed: central differences, float64."""
    X = _input((1, 3, 4), T=5)
    labels = np.array([1, 4, 2])
    bptt_net, seen = _mlp(), []
    bptt_net.layers[-1].register_forward_hook(lambda mod, x, y: seen.append(x))
    make_method("bptt").forward(bptt_net, X)
    x = seen[0]                                          # (T, B, 8): the top layer's spikes
    net = _mlp()
    fwd, bwd = loss_pair("tet")
    got, _ = _grads(net, "ssf", X, lambda y: bwd(fwd(y, labels)[1]), loss="tet")
    out = _output_layer(net)
    W, b = out.W.data.copy(), out.b.data.copy()

    def loss() -> float:
        return tet_loss_forward(x @ W.T + b, labels)[0]

    assert rel_error(got["5.W"], numerical_gradient(loss, W)) < 1e-7
    assert rel_error(got["5.b"], numerical_gradient(loss, b)) < 1e-7


class _Tap(nn.Module):
    """Records the per-step input it passes on (flow mode), to read the output layer's x[t]
    under methods whose forward is not BPTT's (DSR)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[np.ndarray] = []

    def forward(self, x: Any) -> Any:
        return x

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        return dy

    def forward_chunk(self, x: Any) -> Any:
        self.seen.append(x.copy())
        return x


@pytest.mark.parametrize("method", ["dsr", "rate", "ssf"])
def test_family_methods_output_layer_is_exact_for_a_per_step_loss(method):
    """DSR and rate-BP: the same per-step path (their top spiking layer collapses a per-step
    gradient with its own flow weights, as their collapse always did)."""
    net = _mlp(reset="soft")
    tap = _Tap()
    net.layers.insert(len(net.layers) - 1, tap)
    X = _input((1, 3, 4))
    dy = _random_dy(X.shape[0], X.shape[1], 5)
    got, _ = _grads(net, method, X, dy, loss="tet", time_chunk=4)
    x = np.concatenate(tap.seen)
    assert rel_error(got["6.W"], np.einsum("tbc,tbf->cf", dy, x)) < 1e-12
    assert rel_error(got["6.b"], dy.sum(axis=(0, 1))) < 1e-12


@pytest.mark.parametrize("model,shape", [("vgg11", (2, 16, 16)), ("sew_resnet34", (3, 16, 16))])
def test_paper_model_head_is_exact(model, shape):
    """VGG-11 (AvgPool -> Flatten -> Linear) and SEW-ResNet-34 (SEW blocks with identity
    shortcuts -> global AvgPool -> Flatten -> Linear), small inputs, T = 3, B = 2."""
    build = lambda: PAPER_MODELS[model](shape, 5, lambda: nn.LIF(lam=0.8),  # noqa: E731
                                        dtype=np.float64)
    X = _input(shape, T=3, B=2)
    dy = _random_dy(3, 2, 5)
    ref, _ = _grads(build(), "bptt", X, dy)
    net = build()
    got, kept = _grads(net, "ssf", X, dy, loss="tet")
    assert kept > 0
    for k in _out_names(net):
        assert rel_error(got[k], ref[k]) < 1e-10, k


def test_spiking_output_model_is_unchanged():
    """PreAct-ResNet-18 ends in a spiking layer (Linear -> BN1d -> SN): nothing lies above its
    top spiking layer, so the per-step path is the collapse (same gradients, nothing kept)."""
    shape = (3, 8, 8)
    build = lambda: PAPER_MODELS["preact_resnet18"](shape, 5,  # noqa: E731
                                                    lambda: nn.LIF(lam=0.8), dtype=np.float64)
    X = _input(shape, T=3, B=2)
    dy = _random_dy(3, 2, 5)
    net = build()
    new, _ = _grads(net, "ssf", X, dy, loss="tet")
    old, _ = _grads(build(), "ssf", X, dy)
    assert isinstance(net.layers[-1], nn.LIF)
    assert not any(la.keep_steps for la in net.modules() if isinstance(la, nn.Linear))
    for k in new:
        assert rel_error(new[k], old[k]) < 1e-12, k


def test_loss_option_errors_and_the_train_config():
    with pytest.raises(ValueError, match="loss must be one of"):
        make_method("ssf", loss="ce")
    assert make_method("ssf", loss="tet").per_step_loss
    assert not make_method("asf", loss="sdt").per_step_loss
    assert not make_method("ssf").per_step_loss
    from pysnn_ref.train import __main__ as cli
    from pysnn_ref.train.config import build_method
    for loss, per_step in (("tet", True), ("sdt", False)):
        argv = ["--method", "ssf", "--loss", loss]
        cfg = cli.resolve_config(cli.build_parser().parse_args(argv), cli.explicit_args(argv))
        assert build_method(cfg).per_step_loss is per_step
