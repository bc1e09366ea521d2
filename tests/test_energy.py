"""Energy estimate (pysnn_ref.energy): exact op counts, conv fan-out, CLI."""

import json
import subprocess
import sys

import numpy as np
import pytest

from pysnn_ref import nn
from pysnn_ref.energy import E_AC_PJ, E_MAC_PJ, conv_fanout, estimate_energy
from pysnn_ref.energy.__main__ import main


def _tiny():
    """Linear(3, 2) -> IF(v_th=1) -> Linear(2, 4): hand-countable."""
    l1 = nn.Linear(3, 2, bias=False)
    l1.W.data[:] = np.array([[1.0, 0.0, 0.0], [0.0, 0.6, 0.0]], np.float32)
    l2 = nn.Linear(2, 4, bias=False)
    return nn.Sequential(l1, nn.IF(v_th=1.0), l2)


def test_tiny_network_counts_by_hand():
    # sample 0: x = (1, 1, 0): neuron 0 gets 1/step -> fires every step; neuron 1 gets 0.6/step
    # -> u = 0.6, 1.2 (fire, hard reset), 0.6, 1.2 (fire): 2 spikes in T=4. Total 6 spikes.
    # sample 1: x = 0 -> no spike.  SOPs = 6 spikes * fan-out 4 = 24 over the batch -> 12/sample.
    x = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]], np.float32)
    rep = estimate_energy(_tiny(), x, T=4)
    first, second = rep.layers
    assert first.kind == "MAC" and first.macs == 4 * 3 * 2 and first.sops == 0
    assert second.kind == "AC" and second.macs == 0 and second.sops == 12.0
    assert first.ann_macs == 6 and second.ann_macs == 8
    assert rep.energy_pj == pytest.approx(24 * E_MAC_PJ + 12 * E_AC_PJ)
    assert rep.ann_energy_pj == pytest.approx(14 * E_MAC_PJ)
    assert second.input_rate == pytest.approx(6 / (2 * 4 * 2))
    # the network is left as it was (no wrapped forward, training mode restored)
    net = _tiny()
    estimate_energy(net, x, T=2)
    assert "forward" not in vars(net.layers[0]) and net.training


def test_spike_input_counts_sops_in_first_layer():
    x = np.array([[1.0, 0.0, 1.0]], np.float32)   # spikes: first layer does ACs
    rep = estimate_energy(_tiny(), x, T=3, analog_input=False)
    assert rep.layers[0].kind == "AC" and rep.layers[0].sops == 3 * 2 * 2


@pytest.mark.parametrize("k,stride,padding,H,W", [(3, 1, 1, 5, 6), (3, 2, 1, 7, 5),
                                                  (5, 2, 2, 6, 6), (2, 3, 0, 7, 8),
                                                  (3, 1, 0, 4, 4)])
def test_conv_fanout_equals_brute_force(k, stride, padding, H, W):
    C, Co = 2, 3
    conv = nn.Conv2d(C, Co, k, stride=stride, padding=padding, bias=False, dtype=np.float64)
    conv.W.data[:] = 1.0
    n = C * H * W
    eye = np.eye(n).reshape(n, C, H, W)[None]            # (T=1, n one-hot samples, C, H, W)
    brute = conv.forward(eye).reshape(n, -1).sum(axis=1).reshape(C, H, W)
    np.testing.assert_array_equal(conv_fanout(conv, (C, H, W)), brute)


def test_conv_sops_match_spike_count_times_fanout():
    rng = np.random.default_rng(1)
    conv = nn.Conv2d(2, 4, 3, stride=2, padding=1, bias=False)
    seq = nn.Sequential(conv)
    s = (rng.random((3, 4, 2, 6, 6)) < 0.3).astype(np.float32)   # (T, B, C, H, W) spikes

    class Pass:  # hands the spikes over as they are
        def encode(self, x, T):
            return s

    rep = estimate_energy(seq, s[0], T=3, encoder=Pass())
    fo = conv_fanout(conv, (2, 6, 6))
    assert rep.layers[0].kind == "AC"
    assert rep.layers[0].sops == pytest.approx((s * fo).sum() / 4)


def test_cli_table_and_json(tmp_path, capsys):
    out = tmp_path / "e.json"
    assert main(["--model", "lenet", "--T", "2", "--batch-size", "8", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Conv2d(1, 16, 3" in text and "ANN/SNN energy" in text and "4.6 pJ/MAC" in text
    d = json.loads(out.read_text())
    assert d["T"] == 2 and d["batch"] == 8 and len(d["layers"]) == 4
    # 3x3 'same' conv on 8x8: rows covered 2,3,3,3,3,3,3,2 times (sum 22) -> 16 * 22 * 22 MACs
    assert d["layers"][0]["kind"] == "MAC" and d["layers"][0]["macs"] == 2 * 16 * 22 * 22
    assert d["energy_pj"] == pytest.approx(sum(r["energy_pj"] for r in d["layers"]))


@pytest.mark.parametrize("args", [["--T", "0"], ["--model", "nope"], ["--batch-size", "0"],
                                  ["--checkpoint", "/nonexistent/run"]])
def test_cli_bad_args_exit_2(args):
    r = subprocess.run([sys.executable, "-m", "pysnn_ref.energy", *args], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0]


def test_train_summary_shows_energy_and_checkpoint_cli(tmp_path, capsys):
    from pysnn_ref.train.__main__ import main as train_main

    run = tmp_path / "run"
    assert train_main(["--epochs", "1", "--max-batches", "2", "--max-eval-batches", "1",
                       "--no-plots", "--no-progress", "--out", str(run)]) == 0
    log = capsys.readouterr().out
    assert "energy/sample (45 nm, T=4): SNN" in log and "ANN/SNN" in log
    saved = json.loads((run / "energy.json").read_text())
    assert saved["T"] == 4 and saved["layers"][0]["kind"] == "MAC"
    assert main(["--checkpoint", str(run), "--json", str(tmp_path / "e.json")]) == 0
    again = json.loads((tmp_path / "e.json").read_text())
    assert again["T"] == 4 and again["energy_pj"] == pytest.approx(saved["energy_pj"])
