"""DSR and rate-based BP as training methods (``make_method("dsr" | "rate")``, the flow seam):
a whole network's gradient equals (a) central differences of the method's stated objective
(float64) and (b) a plain composition of the functional pairs; a few training steps on digits
lower the loss; the networks the methods cannot train are refused."""

import json

import numpy as np
import pytest

from pysnn_ref import nn
from pysnn_ref.bench.__main__ import cli as bench_main
from pysnn_ref.data import load_dataset
from pysnn_ref.functional import loss as L
from pysnn_ref.functional.dsr import dsr_backward, dsr_forward
from pysnn_ref.functional.linear import LinearCache, linear_backward, linear_forward
from pysnn_ref.functional.neuron import make_neuron_params
from pysnn_ref.functional.rate import rate_backward, rate_forward
from pysnn_ref.gradcheck import cosine_vs, method_gradients
from pysnn_ref.gradcheck.__main__ import all_gradcheck_cases
from pysnn_ref.gradcheck.family import family_gradcheck_cases
from pysnn_ref.gradcheck.finite_diff import numerical_gradient, rel_error
from pysnn_ref.methods import make_method
from pysnn_ref.optim import Adam
from pysnn_ref.train import __main__ as tr
from pysnn_ref.train import evaluate as ev
from pysnn_ref.train import loop

T, B, SIZES = 6, 5, (6, 9, 7, 3)


def _net(neuron, seed=0):
    rng = np.random.default_rng(seed)
    a, b, c, d = SIZES
    return nn.Sequential(nn.Linear(a, b, rng=rng, dtype=np.float64), neuron(),
                         nn.Linear(b, c, rng=rng, dtype=np.float64), neuron(),
                         nn.Linear(c, d, rng=rng, dtype=np.float64))


def _weights(net):
    return [(la.W.data, la.b.data) for la in net.layers[::2]]


def _grads(net):
    return [g for la in net.layers[::2] for g in (la.W.grad, la.b.grad)]


def _run(method, net, x, c):
    method.check_network(net)
    net.zero_grad()
    y = method.forward(net, x)
    method.backward(net, c)
    return y


def _per_step(x, W, b):
    return linear_forward(x, W, b)


# ---------------------------------------------------------------------------------------------
# DSR
# ---------------------------------------------------------------------------------------------

def _dsr_pass1(net, x, lam, v_ths, alpha):
    """The spiking forward by the functional pairs: per layer (Ibar_w, weighted spike rate)."""
    h, out = x, []
    w = lam ** np.arange(T - 1, -1, -1)
    for (W, b), v in zip(_weights(net)[:-1], v_ths, strict=True):
        I, _ = linear_forward(h, W, b)
        h, cache = dsr_forward(I, lam=lam, v_th=v, alpha=alpha)
        out.append((cache.Ibar, np.tensordot(w / w.sum(), h, axes=1)))
    return out


def _clamp_objective(net, x, c, pass1, v_arrs, v0):
    """The clamp network through the spiking rates: layer l outputs
    a = abar0 + clamp(Ibar_w(W), 0, v_th) - clamp(Ibar0, 0, v_th), Ibar_w = W a_below + b (the
    input layer reads the input's mean); the readout's value, constant in time, meets the
    linear loss sum_t <c[t], y>."""
    a = x.mean(axis=0)
    for (W, b), (Ib0, ab0), v in zip(_weights(net)[:-1], pass1, v_arrs, strict=True):
        Ib = a @ W.T + b
        a = ab0 + np.clip(Ib, 0, v[0]) - np.clip(Ib0, 0, v0)
    W, b = _weights(net)[-1]
    return float((c.sum(axis=0) * (a @ W.T + b)).sum())


def test_dsr_network_gradient_is_the_clamp_networks():
    """IF network, alpha = 0.7, threshold training: every weight, bias and threshold gradient
    equals the central difference of the clamp network (away from its kinks)."""
    v_th = 0.6
    net = _net(lambda: nn.IF(v_th, reset="soft"))
    rng = np.random.default_rng(1)
    x = rng.normal(0.4, 1.0, (T, B, SIZES[0]))
    c = rng.normal(size=(T, B, SIZES[-1]))
    m = make_method("dsr", dsr_alpha=0.7, dsr_train_threshold=True)
    _run(m, net, x, c)
    lifs = nn.spiking_layers(net)
    v_arrs = [n.v_th_param.data for n in lifs]
    pass1 = _dsr_pass1(net, x, 1.0, [v_th, v_th], 0.7)
    for Ib0, _ in pass1:  # no neuron at a kink: the difference would straddle two slopes
        assert np.abs(Ib0).min() > 1e-3 and np.abs(Ib0 - v_th).min() > 1e-3
    assert any(((Ib0 > 0) & (Ib0 < v_th)).any() and (Ib0 > v_th).any() for Ib0, _ in pass1)
    f = lambda: _clamp_objective(net, x, c, pass1, v_arrs, v_th)  # noqa: E731
    for p in net.parameters():
        num = numerical_gradient(f, p.data)
        assert np.abs(num).max() > 0, p.name
        assert rel_error(p.grad, num) < 1e-7, p.name


@pytest.mark.parametrize("lam, spread", [(1.0, "exact"), (0.8, "authors")])
def test_dsr_network_equals_the_functional_composition(lam, spread):
    """A loss on the time-averaged output (dy equal at every step): the method's gradients equal
    linear_forward / dsr_forward / dsr_backward / linear_backward composed step by step."""
    v_th, alpha = 0.7, 0.8
    net = _net(lambda: nn.LIF(lam, v_th, reset="soft"))
    rng = np.random.default_rng(2)
    x = rng.normal(0.5, 1.0, (T, B, SIZES[0]))
    c = np.broadcast_to(rng.normal(size=(1, B, SIZES[-1])), (T, B, SIZES[-1])).copy()
    m = make_method("dsr", dsr_alpha=alpha, dsr_spread=spread, dsr_train_threshold=True)
    y = _run(m, net, x, c)
    h, caches = x, []
    for i, (W, b) in enumerate(_weights(net)):
        I, lc = linear_forward(h, W, b)
        caches.append(lc)
        if i < 2:
            h, dc = dsr_forward(I, lam=lam, v_th=v_th, alpha=alpha, spread=spread)
            caches.append(dc)
    assert rel_error(y, I) < 1e-12
    g, want = c, []
    for i in range(len(caches) - 1, -1, -1):
        if i % 2:
            g, dv = dsr_backward(g, caches[i])
            want.append(np.array([dv]))
        else:
            g, dW, db = linear_backward(g, caches[i], need_dx=i > 0)
            want += [db, dW]
    got = [p.grad for p in net.parameters()]  # W, b, v_th per layer, bottom up
    names = [p.name for p in net.parameters()]
    assert names == ["W", "b", "v_th", "W", "b", "v_th", "W", "b"]
    want = want[::-1]
    for n, a, b_ in zip(names, got, want, strict=True):
        assert rel_error(a, b_) < 1e-10, n


# ---------------------------------------------------------------------------------------------
# rate-based BP
# ---------------------------------------------------------------------------------------------

def _rate_net_case(detach):
    p = make_neuron_params(lam=0.8, v_th=0.5, reset="hard", surrogate="sigmoid",
                           smooth=True, detach_reset=detach)
    net = _net(lambda: nn.LIF(0.8, 0.5, "hard", "sigmoid", smooth=True))
    rng = np.random.default_rng(3)
    x = rng.normal(0.3, 1.0, (T, B, SIZES[0]))
    c = rng.normal(size=(T, B, SIZES[-1]))
    return net, p, x, c


@pytest.mark.parametrize("detach", [False, True])
def test_rate_network_gradient_is_the_linearised_rate_networks(detach):
    """Smooth mode: the gradients equal central differences of the linearised rate network
    r = r0 + e (Ibar - Ibar0) (r0, e, Ibar0 frozen at pass 1) under sum_t <c[t], ybar>, and
    the composition of rate_forward / rate_backward / linear_backward at the rate level."""
    net, p, x, c = _rate_net_case(detach)
    _run(make_method("rate", rate_detach=detach or None), net, x, c)
    h, frozen = x, []
    for W, b in _weights(net)[:-1]:
        I, _ = linear_forward(h, W, b)
        h, rc = rate_forward(I, p)
        frozen.append((I.mean(axis=0), rc))

    def f():
        a = x.mean(axis=0)
        for (W, b), (Ib0, (r0, e)) in zip(_weights(net)[:-1], frozen, strict=True):
            a = r0 + e * (a @ W.T + b - Ib0)
        W, b = _weights(net)[-1]
        return float((c.sum(axis=0) * (a @ W.T + b)).sum())

    for p_ in net.parameters():
        num = numerical_gradient(f, p_.data)
        assert np.abs(num).max() > 0
        assert rel_error(p_.grad, num) < 1e-7
    # the same rule composed from the functional pairs, at the rate level
    ins = [x.mean(axis=0)] + [rc.r for _, rc in frozen]
    g, want = c.sum(axis=0), []
    for i in range(2, -1, -1):
        W, _ = _weights(net)[i]
        dx, dW, db = linear_backward(g, LinearCache(ins[i], W, True), need_dx=True)
        want += [db, dW]
        if i:
            g = rate_backward(dx, frozen[i - 1][1])
    for a, b_ in zip(_grads(net), want[::-1], strict=True):
        assert rel_error(a, b_) < 1e-10


# ---------------------------------------------------------------------------------------------
# training, options, bad input
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, opts, reset", [("dsr", {"dsr_train_threshold": True}, "soft"),
                                               ("dsr", {"dsr_alpha": 0.5}, "soft"),
                                               ("rate", {}, "hard")])
def test_a_few_steps_on_digits_lower_the_loss(name, opts, reset):
    d = load_dataset("digits")
    rng = np.random.default_rng(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64, rng=rng), nn.LIF(0.5, 1.0, reset),
                        nn.Linear(64, 10, rng=rng))
    m = make_method(name, **opts)
    m.check_network(net)
    opt = Adam(net.parameters(), lr=3e-3)
    lf, lb = L.loss_pair("sdt")
    xb = d.x_train[:128].astype(np.float32)
    x = np.broadcast_to(xb, (4, *xb.shape))
    yb = d.y_train[:128]
    losses = []
    for _ in range(15):
        net.zero_grad()
        y = m.forward(net, x)
        loss, cache = lf(y, yb)
        m.backward(net, lb(cache))
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.8 * losses[0], losses


def test_options_belong_to_their_method():
    with pytest.raises(ValueError, match="dsr_alpha"):
        make_method("ssf", dsr_alpha=0.5)
    with pytest.raises(ValueError, match="rate_detach"):
        make_method("dsr", rate_detach=True)
    with pytest.raises(ValueError, match="dsr_alpha"):
        make_method("dsr", dsr_alpha=1.5)
    with pytest.raises(ValueError, match="dsr_spread"):
        make_method("dsr", dsr_spread="paper")


@pytest.mark.parametrize("name", ["dsr", "rate"])
def test_refused_networks_say_why(name):
    rng = np.random.default_rng(0)
    bn = nn.Sequential(nn.Linear(4, 4, rng=rng), nn.BatchNorm(4), nn.LIF(reset="soft"),
                       nn.Linear(4, 2, rng=rng))
    with pytest.raises(ValueError, match="BatchNorm"):
        make_method(name).check_network(bn)
    lstm = nn.Sequential(nn.SpikingLSTM(4, 4), nn.Linear(4, 2, rng=rng))
    with pytest.raises(ValueError, match="SpikingLSTM"):
        make_method(name).check_network(lstm)


def test_dsr_refuses_hard_reset_and_mixed_lam():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="soft reset"):
        make_method("dsr").check_network(nn.Sequential(nn.Linear(4, 4, rng=rng), nn.LIF()))
    mixed = nn.Sequential(nn.Linear(4, 4, rng=rng), nn.LIF(0.5, reset="soft"),
                          nn.Linear(4, 4, rng=rng), nn.LIF(0.9, reset="soft"))
    with pytest.raises(ValueError, match="one lam"):
        make_method("dsr").check_network(mixed)
    make_method("dsr", dsr_spread="authors").check_network(mixed)


def test_trained_threshold_is_bounded_and_saved():
    net = _net(lambda: nn.IF(0.6, reset="soft"))
    make_method("dsr", dsr_train_threshold=True).check_network(net)
    n = nn.spiking_layers(net)[0]
    n.v_th_param.data[...] = -1.0
    make_method("dsr").forward(net, np.zeros((2, 1, SIZES[0])))
    assert n.v_th_param.data == 5e-4 and n.p.v_th == 5e-4
    fresh = _net(lambda: nn.IF(0.6, reset="soft"))
    fresh.load_state_dict(net.state_dict())
    assert nn.spiking_layers(fresh)[0].p.v_th == 5e-4


# ---------------------------------------------------------------------------------------------
# the training CLI
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["--method", "dsr", "--dsr-alpha", "0.5",
                                   "--dsr-train-threshold"],
                                  ["--method", "rate", "--rate-detach"]])
def test_cli_one_epoch_on_digits(tmp_path, capsys, argv):
    """End to end, one epoch on digits: the run folder, a recorded accuracy above chance that
    python -m pysnn_ref.evaluate reproduces from the checkpoint (trained thresholds included)."""
    run = tmp_path / "run"
    rc = tr.cli([*argv, "--epochs", "1", "--T", "4", "--no-progress", "--no-plots",
                 "--out", str(run)])
    out = capsys.readouterr().out
    assert rc == 0
    rows = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines() if s]
    assert rows[0]["test_acc"] > 0.6 and 0 < rows[0]["firing_rate"] < 1
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["method"] == argv[1] and (cfg["reset"] == "soft") == (argv[1] == "dsr")
    assert ev.cli([str(run)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == out.strip().splitlines()[-1]


@pytest.mark.parametrize("argv, says", [
    (["--method", "dsr", "--reset", "hard"], "--reset"),
    (["--method", "rate", "--model", "vgg7"], "max pooling"),
    (["--method", "dsr", "--model", "snn5"], "--dsr-spread authors or --neuron if"),
    (["--method", "rate", "--model", "snn5"], "BatchNorm"),
    (["--method", "asf", "--model", "lstm"], "--model lstm"),
    (["--method", "rate", "--model", "window"], "--model window"),
    (["--method", "dsr", "--dsr-alpha", "0"], "--dsr-alpha"),
    (["--method", "ssf", "--dsr-spread", "authors"], "--dsr-spread"),
    (["--method", "dsr", "--rate-detach"], "--rate-detach"),
])
def test_cli_refuses_at_start_up(tmp_path, capsys, monkeypatch, argv, says):
    """One line, exit 2, before any data is read (load_dataset is not reached)."""
    def no_data(*a, **k):
        raise AssertionError("data was loaded before the refusal")
    monkeypatch.setattr(loop, "load_dataset", no_data)
    rc = tr.cli([*argv, "--out", str(tmp_path / "r"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and says in err[0], err


# ---------------------------------------------------------------------------------------------
# bench and the gradient-quality helpers
# ---------------------------------------------------------------------------------------------

def test_bench_times_the_family_and_their_memory_is_flat(tmp_path, capsys):
    """bench --methods dsr,rate: rows for both with speed-ups over bptt; step memory T = 4 -> 16
    at most 1.3x (bptt's grows several-fold on the same run)."""
    js = tmp_path / "b.json"
    rc = bench_main(["--model", "convnet", "--methods", "bptt,dsr,rate", "--T", "4,16",
                     "--batch-size", "2", "--repeats", "1", "--warmup", "1", "--threads", "1",
                     "--json", str(js)])
    out = capsys.readouterr().out
    assert rc == 0
    recs = json.loads(js.read_text())
    by = {(r["method"], r["T"]): r for r in recs}
    assert by[("bptt", 16)]["peak_mem_bytes"] > 2.5 * by[("bptt", 4)]["peak_mem_bytes"]
    for m in ("dsr", "rate"):
        assert by[(m, 16)]["peak_mem_bytes"] <= 1.3 * by[(m, 4)]["peak_mem_bytes"], m
        assert by[(m, 16)]["backward_speedup_vs_bptt"] > 0
        assert f"{m} vs bptt at T=16" in out


@pytest.mark.parametrize("name", ["dsr", "rate"])
def test_cosine_vs_bptt_names_the_method(name):
    """gradcheck.cosine_vs takes the family by name: a cosine in [-1, 1] per weight, 1 against
    itself (the reference gradients given are the method's own)."""
    d = load_dataset("digits")
    rng = np.random.default_rng(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32, rng=rng, dtype=np.float64),
                        nn.LIF(0.5, 1.0, "soft"), nn.Linear(32, 10, rng=rng, dtype=np.float64))
    x = np.broadcast_to(d.x_train[:16].astype(np.float64), (4, 16, 1, 8, 8))
    cos = cosine_vs(net, name, x, d.y_train[:16])
    assert set(cos) == {"1.W", "3.W"} and all(-1 <= v <= 1 for v in cos.values())
    _, own = method_gradients(net, name, x, d.y_train[:16])
    assert cosine_vs(net, name, x, d.y_train[:16], reference_grads=own) == \
        pytest.approx({"1.W": 1.0, "3.W": 1.0})


def test_gradcheck_cli_rows_for_the_family(capsys):
    """python -m pysnn_ref.gradcheck checks the dsr and rate networks (every weight, bias and
    trained threshold) and none of its rows fails; on the GPU it has none of them."""
    rows = family_gradcheck_cases()
    assert {p for c, p, _ in rows if c.startswith("dsr")} == {"0.W", "0.b", "1.v_th", "2.W",
                                                               "2.b", "3.v_th", "4.W", "4.b"}
    assert {p for c, p, _ in rows if c.startswith("rate")} == {"0.W", "0.b", "2.W", "2.b",
                                                                "4.W", "4.b"}
    assert all(err < 1e-7 for _, _, err in rows), rows
    assert family_gradcheck_cases("gpu") == []
    assert all(r in all_gradcheck_cases() for r in rows[:1])


def test_help_explains_the_family_flags():
    text = tr.build_parser().format_help()
    for flag in ("--dsr-alpha", "--dsr-spread", "--dsr-train-threshold", "--rate-detach"):
        assert f"  {flag}" in text, flag
    assert "dsr" in text and "rate" in text


@pytest.mark.parametrize("name, opts", [("dsr", {"dsr_train_threshold": True}),
                                        ("dsr", {"dsr_spread": "authors"}), ("rate", {})])
def test_conv_net_gradients_do_not_depend_on_the_time_chunk(name, opts):
    """Conv + AvgPool + LIF(lam = 0.8), T = 7: streamed one step at a time, three at a time or
    all at once, the same gradients (the weighted input sums continue across chunks)."""
    rng = np.random.default_rng(4)
    x = rng.normal(0.5, 1.0, (7, 3, 2, 6, 6))
    c = rng.normal(size=(7, 3, 4))
    grads = []
    for chunk in (1, 3, 7):
        r = np.random.default_rng(0)
        net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, rng=r, dtype=np.float64),
                            nn.LIF(0.8, 0.7, "soft"), nn.AvgPool2d(2), nn.Flatten(),
                            nn.Linear(36, 4, rng=r, dtype=np.float64))
        _run(make_method(name, time_chunk=chunk, **opts), net, x, c)
        grads.append([p.grad.copy() for p in net.parameters()])
    assert any(np.abs(g).max() > 0 for g in grads[0])
    for other in grads[1:]:
        for a, b_ in zip(grads[0], other, strict=True):
            assert rel_error(a, b_) < 1e-10
