"""The gradcheck CLI: every case passes, a broken backward is caught, bad input is one line."""

import numpy as np

from pysnn_ref import gradcheck
from pysnn_ref.gradcheck import __main__ as gradcheck_cli
from pysnn_ref.kernels import cpu


def test_cli_all_cases_pass(capsys):
    assert gradcheck_cli.main([]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].endswith(" passed, 0 failed")
    cases = "\n".join(out)
    for must in ("LIF reset=soft surrogate=dspike", "IF reset=hard surrogate=atan",
                 "network conv-tdBN-LIF", "conv", "maxpool", "tdBN", "asf conv", "ssf conv",
                 "loss sdt", "loss tet", "loss asf-mse", "SynapticLIF reset=soft"):
        assert must in cases


def test_broken_backward_is_caught(monkeypatch):
    for name in ("lif_backward", "synaptic_backward"):  # every neuron case: LIF, SynapticLIF
        good = getattr(cpu, name)
        monkeypatch.setattr(cpu, name, lambda *a, good=good: good(*a) * np.float64(1.001))
    rows = gradcheck.neuron_gradcheck_cases()
    assert any(c.startswith("SynapticLIF") for c, _, _ in rows)
    assert all(err > gradcheck.TOLERANCE for _, _, err in rows)


def test_cli_bad_device_is_one_line(capsys):
    try:
        rc = gradcheck_cli.main(["--device", "tpu"])
    except SystemExit as e:
        rc = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--device" in err[0]


def test_cli_gpu_without_gpu_is_one_line(capsys):
    rc = gradcheck_cli.main(["--device", "gpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "gpu" in err[0]


def test_gradient_measurements_do_not_train_the_network():
    from pysnn_ref import nn
    from pysnn_ref.data import PoissonEncoder

    rng = np.random.default_rng(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, rng=rng, dtype=np.float64),
                        nn.BatchNorm(2, dtype=np.float64), nn.LIF(lam=0.8), nn.Flatten(),
                        nn.Linear(2 * 4 * 4, 3, rng=rng, dtype=np.float64))
    x = rng.uniform(0, 1, (4, 1, 4, 4))
    labels = rng.integers(0, 3, 4)
    before = net.state_dict()
    S = net.layers[2].S
    cos = gradcheck.cosine_vs(net, "asf", x, labels, T=3, encoder=PoissonEncoder(seed=1))
    fdg = gradcheck.cosine_vs(net, "bptt", x, labels, reference="fdg", T=3,
                              encoder=PoissonEncoder(seed=1), eps=0.1)
    after = net.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert net.layers[2].S == S
    assert set(cos) == {"0.W", "4.W"} and all(-1 <= c <= 1 for c in cos.values())
    assert set(fdg) == {"0.W"}


def test_cli_one_group_and_one_case(capsys):
    assert gradcheck_cli.main(["--group", "flows", "--case", "ssf"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = out[1:-1]
    assert rows and all(r.startswith("ssf ") for r in rows)
    assert out[-1] == f"{len(rows)} passed, 0 failed"
    assert gradcheck_cli.main(["--group", "losses", "--case", "nothing-like-this"]) == 2
    assert "--case" in capsys.readouterr().err


def test_rate_network_check_catches_a_wrong_gain(monkeypatch):
    """The flow rows compare against the rate network built from the method's own gains: with
    every gain doubled in the reference, the same analytic gradients no longer match."""
    from pysnn_ref.gradcheck import flows

    good = flows.rate_network_loss
    monkeypatch.setattr(flows, "rate_network_loss",
                        lambda net, X, labels, gains, points: good(net, X, labels,
                                                                   [2 * g for g in gains], points))
    rows = flows.flow_gradcheck_cases()
    assert all(err > gradcheck.TOLERANCE for _, name, err in rows if name.startswith("0."))
