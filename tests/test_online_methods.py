"""OTTT and SLTT / SLTT-K end to end (issue 24): ``--method ottt | sltt`` through the Method
seam.  Their gradient equals the per-step sum computed directly from the functional pairs
(functional/online.py, whose per-step backward is checked by finite differences in
tests/test_family_online.py); OTTT_O updates after every step; SLTT-K back-propagates exactly the
sampled steps; T = 1 is BPTT; short runs on the digits learn; flags validated."""

from __future__ import annotations

import numpy as np
import pytest

from pysnn_ref import nn
from pysnn_ref.functional import loss as L
from pysnn_ref.functional.linear import LinearCache, linear_backward, linear_forward
from pysnn_ref.functional.online import OnlineState, online_backward, online_forward
from pysnn_ref.gradcheck.finite_diff import rel_error
from pysnn_ref.methods import OnlineMethod, StepTimes, make_method
from pysnn_ref.train import __main__ as train_cli
from pysnn_ref.train.loop import train

LOSS = L.loss_pair("tet", tet_lambda=0.05)


def _net(seed: int = 0) -> nn.Sequential:
    rng = np.random.default_rng(seed)
    lif = lambda: nn.LIF(0.6, 0.5, "soft", "sigmoid:4")  # noqa: E731
    return nn.Sequential(nn.Linear(6, 7, rng=rng, dtype=np.float64), lif(),
                         nn.Linear(7, 5, rng=rng, dtype=np.float64), lif(),
                         nn.Linear(5, 3, rng=rng, dtype=np.float64))


def _batch(T: int = 5, B: int = 4, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(0.6, 1.0, (T, B, 6)), rng.integers(0, 3, B)


def _reference_grads(net: nn.Sequential, x: np.ndarray, labels: np.ndarray, traced: bool,
                     steps: set[int]) -> list[np.ndarray]:
    """The summed per-step gradient, written directly with the functional pairs: for every
    step t in ``steps``, the gradient of loss(y[t]) / T with v[t-1] (and OTTT's a_hat[t-1])
    constants; OTTT's traced layers back-propagate with the trace as their input."""
    W = [m for m in net.children() if isinstance(m, nn.Linear)]
    p = net.children()[1].p
    T, B = x.shape[:2]
    s1 = OnlineState.zeros((B, 7), x.dtype, trace=traced)
    s2 = OnlineState.zeros((B, 5), x.dtype, trace=traced)
    grads = [np.zeros_like(q.data) for m in W for q in (m.W, m.b)]
    for t in range(T):
        I1, c1 = linear_forward(x[t:t + 1], W[0].W.data, W[0].b.data)
        o1, a1, k1, _ = online_forward(I1, p, s1)
        I2, c2 = linear_forward(o1, W[1].W.data, W[1].b.data)
        o2, a2, k2, _ = online_forward(I2, p, s2)
        y, c3 = linear_forward(o2, W[2].W.data, W[2].b.data)
        if t not in steps:
            continue
        if traced:
            c2, c3 = LinearCache(a1, W[1].W.data, True), LinearCache(a2, W[2].W.data, True)
        dy = LOSS[1](LOSS[0](y, labels)[1]) / T
        do2, dW3, db3 = linear_backward(dy, c3)
        do1, dW2, db2 = linear_backward(online_backward(do2, k2), c2)
        _, dW1, db1 = linear_backward(online_backward(do1, k1), c1, need_dx=False)
        for g, d in zip(grads, (dW1, db1, dW2, db2, dW3, db3), strict=True):
            g += d
    return grads


def _step(method: OnlineMethod, net: nn.Sequential, x, labels, record=None):
    """``train_step`` with an update that changes nothing (records the grads if asked)."""
    net.zero_grad()

    def update(loss):
        if record is not None:
            record.append([q.grad.copy() for q in net.parameters()])
        return loss

    return method.train_step(net, x, labels, x.shape[0], None, *LOSS, update, lambda: 0.0)


@pytest.mark.parametrize("name", ["ottt", "sltt"])
def test_summed_gradient_equals_the_per_step_reference(name):
    net, (x, labels) = _net(), _batch()
    m = make_method(name)
    m.check_network(net)
    loss, out, times = _step(m, net, x, labels)
    assert out.shape == (5, 4, 3) and isinstance(times, StepTimes) and len(times.forward) == 5
    got = [q.grad.copy() for q in net.parameters()]
    want = _reference_grads(net, x, labels, name == "ottt", set(range(5)))
    for g, w in zip(got, want, strict=True):
        assert np.abs(w).max() > 1e-6 and rel_error(g, w) < 1e-12, rel_error(g, w)
    # the loss is TET's loss of the whole output: the per-step losses sum to it
    assert abs(loss - LOSS[0](out, labels)[0]) < 1e-12
    # forward + backward (the API of every method, bench, gradcheck) gives the same gradient
    net.zero_grad()
    m.forward(net, x)
    m.backward(net, LOSS[1](LOSS[0](out, labels)[1]))
    for g, q in zip(got, net.parameters(), strict=True):
        assert rel_error(q.grad, g) < 1e-12


def test_ottt_and_sltt_differ():
    net, (x, labels) = _net(), _batch()
    grads = {}
    for name in ("ottt", "sltt"):
        m = make_method(name)
        m.check_network(net)
        _step(m, net, x, labels)
        grads[name] = [q.grad.copy() for q in net.parameters()]
    assert rel_error(grads["ottt"][2], grads["sltt"][2]) > 1e-3      # W2 sees the trace
    assert rel_error(grads["ottt"][0], grads["sltt"][0]) < 1e-12     # W1 sees the input


def test_ottt_o_updates_after_every_step():
    net, (x, labels) = _net(), _batch()
    per_step: list = []
    m = make_method("ottt", ottt_update="O")
    m.check_network(net)
    _step(m, net, x, labels, per_step)
    assert len(per_step) == 5                 # one update per time step, grads zeroed after it
    summed = [sum(g[i] for g in per_step) for i in range(6)]
    want = _reference_grads(net, x, labels, True, set(range(5)))  # weights unchanged by update
    for s, w in zip(summed, want, strict=True):
        assert rel_error(s, w) < 1e-12


def test_sltt_k_backpropagates_exactly_the_sampled_steps():
    net, (x, labels) = _net(), _batch(T=6)
    m = make_method("sltt", sltt_k=2, seed=3)
    m.check_network(net)
    m.begin_epoch(net, 4)
    steps = set(m.sampled_steps(6))   # the same draw as the step below
    m.begin_epoch(net, 4)        # ... replayed: the epoch's stream restarts
    _, _, times = _step(m, net, x, labels)
    assert len(steps) == 2 and len(times.backward) == 2 and len(times.forward) == 6
    want = _reference_grads(net, x, labels, False, steps)
    for q, w in zip(net.parameters(), want, strict=True):
        assert rel_error(q.grad, w) < 1e-12


@pytest.mark.parametrize("name", ["ottt", "sltt"])
def test_T1_is_bptt(name):
    net, (x, labels) = _net(), _batch(T=1)
    m = make_method(name)
    m.check_network(net)
    _step(m, net, x, labels)
    got = [q.grad.copy() for q in net.parameters()]
    net.zero_grad()
    bptt = make_method("bptt")
    y = bptt.forward(net, x)
    bptt.backward(net, LOSS[1](LOSS[0](y, labels)[1]))
    for g, q in zip(got, net.parameters(), strict=True):
        assert rel_error(g, q.grad) < 1e-12


def test_networks_it_cannot_run_are_refused():
    m = make_method("ottt")
    with pytest.raises(ValueError, match="BatchNorm"):
        m.check_network(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm(2), nn.LIF()))
    with pytest.raises(ValueError, match="sltt_k only applies"):
        make_method("ottt", sltt_k=2)
    with pytest.raises(ValueError, match="ottt_update"):
        make_method("ottt", ottt_update="B")


@pytest.mark.parametrize("argv", [["--method", "ottt"], ["--method", "ottt", "--ottt-update", "O"],
                                  ["--method", "sltt"], ["--method", "sltt", "--sltt-k", "2"]])
def test_a_short_run_on_digits_learns(argv, tmp_path):
    argv = [*argv, "--epochs", "1", "--max-batches", "12", "--max-eval-batches", "2",
            "--no-plots", "--no-progress", "--out", str(tmp_path / "run")]
    lines: list[str] = []
    res = train(train_cli.resolve_config(train_cli.build_parser().parse_args(argv),
                                         train_cli.explicit_args(argv)), log=lines.append)
    assert res["test_acc"] > 0.4, res["test_acc"]         # chance: 0.1
    assert any(s.startswith(f"method {argv[1]}: ") and "per-step backward" in s for s in lines)
    assert res["history"][0]["firing_rate"] > 0


@pytest.mark.parametrize("argv,what", [
    (["--method", "sltt", "--sltt-k", "5", "--T", "4"], "--sltt-k"),
    (["--method", "sltt", "--sltt-k", "0"], "--sltt-k"),
    (["--method", "ottt", "--sltt-k", "2"], "--sltt-k only applies"),
    (["--method", "sltt", "--ottt-update", "O"], "--ottt-update only applies"),
    (["--method", "ottt", "--loss", "sdt"], "--loss sdt"),
    (["--method", "sltt", "--model", "vgg7"], "--model vgg7"),
    (["--method", "ottt", "--time-chunk", "2"], "--time-chunk only applies"),
    (["--method", "ottt", "--distributed"], "--distributed does not combine"),
])
def test_bad_flags_are_one_line_exit_2(argv, what, tmp_path, capsys):
    out = tmp_path / "run"
    try:
        code = train_cli.cli([*argv, "--out", str(out)])
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and what in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


@pytest.mark.parametrize("method", ["ottt", "sltt"])
def test_the_surrogate_is_used_and_accepted(method):
    argv = ["--method", method, "--surrogate", "sigmoid:4"]
    cfg = train_cli.resolve_config(train_cli.build_parser().parse_args(argv),
                                   train_cli.explicit_args(argv))
    assert cfg.surrogate == "sigmoid:4" and cfg.loss == "tet"


def test_gradcheck_online_group_and_cosine_vs_bptt():
    from pysnn_ref.gradcheck import cosine_vs
    from pysnn_ref.gradcheck.__main__ import GROUPS
    from pysnn_ref.gradcheck.finite_diff import TOLERANCE
    from pysnn_ref.gradcheck.online import online_network_rows

    rows = online_network_rows("ottt", "hard") + online_network_rows("sltt", "soft")
    assert len(rows) == 12 and all(err < TOLERANCE for _, _, err in rows), rows
    assert "online" in GROUPS and GROUPS["online"]("gpu") == []
    x, labels = _batch(T=4)
    for name in ("ottt", "sltt"):
        cos = cosine_vs(_net(), make_method(name), x, labels, loss="tet")
        assert 0.0 < cos["0.W"] < 1.0 - 1e-6, cos          # T > 1: the past cut, not BPTT
        # the readout's gradient: BPTT's for SLTT (stateless, fed by spikes), not for OTTT
        assert (abs(cos["4.W"] - 1.0) < 1e-9) == (name == "sltt"), cos
        cos1 = cosine_vs(_net(), make_method(name), x[:1], labels, loss="tet")
        assert all(abs(c - 1.0) < 1e-9 for c in cos1.values()), cos1     # T = 1: BPTT


def test_bench_reports_the_online_methods_with_flat_memory(tmp_path, capsys):
    import json

    from pysnn_ref.bench import __main__ as bench_cli

    out = tmp_path / "b.json"
    assert bench_cli.cli(["--model", "mlp", "--methods", "bptt,ottt,sltt", "--T", "2,16",
                          "--batch-size", "4", "--repeats", "1", "--warmup", "1",
                          "--json", str(out)]) == 0
    capsys.readouterr()
    recs = {(r["method"], r["T"]): r for r in json.loads(out.read_text())}
    for m in ("ottt", "sltt"):
        for T in (2, 16):
            r = recs[(m, T)]
            assert r["forward_s"] > 0 and r["backward_s"] > 0 and r["step_s"] > 0
        grow = recs[(m, 16)]["peak_mem_bytes"] / recs[(m, 2)]["peak_mem_bytes"]
        assert grow <= 1.3, (m, grow)                 # one step's caches at a time
    assert recs[("bptt", 16)]["peak_mem_bytes"] > recs[("bptt", 2)]["peak_mem_bytes"]
