"""The training and evaluation CLIs, end to end (``python -m pysnn_ref.train`` / ``.evaluate``).

Quick runs: digits, the MLP, T=2, 2 epochs of at most 4 mini-batches.  The three methods run as
real subprocesses (exit code, stdout, run folder); the other behaviours run in-process through
``train.cli`` (same code path, no interpreter start-up).  The full default runs and their
accuracy targets are behind ``@pytest.mark.slow``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pysnn_ref import backend
from pysnn_ref.data import load_dataset
from pysnn_ref.functional import loss as L
from pysnn_ref.methods import make_method
from pysnn_ref.train import __main__ as tr
from pysnn_ref.train import dspike
from pysnn_ref.train import evaluate as ev
from pysnn_ref.train.checkpoint import load, load_run, read_checkpoint
from pysnn_ref.train.config import SPLIT_SEED, build_method, make_encoder

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--no-progress", "--T", "2", "--epochs", "2", "--max-batches", "4", "--batch-size", "32"]
LAST_LINE = re.compile(r"^test_acc=\d\.\d{4}$")
METHODS = ("bptt", "asf", "ssf")


def _popen(module: str, args: list[str]) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(p: subprocess.Popen) -> tuple[int, str, str]:
    out, err = p.communicate(timeout=300)
    return p.returncode, out, err


def _metrics(run: Path, drop_timings: bool = True) -> list[dict]:
    rows = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines() if s]
    if drop_timings:
        rows = [{k: v for k, v in r.items() if not k.endswith("_s")} for r in rows]
    return rows


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    """In-process CLI run (no plots: the subprocess runs check those)."""
    rc = tr.cli([*argv, "--no-plots"])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory) -> dict[str, tuple[Path, int, str, str]]:
    """One quick CLI run per method, in parallel subprocesses, seed 3."""
    base = tmp_path_factory.mktemp("cli")
    procs = {m: (base / m, _popen("pysnn_ref.train", [*QUICK, "--method", m, "--seed", "3",
                                                      "--out", str(base / m)]))
             for m in METHODS}
    return {m: (out, *_finish(p)) for m, (out, p) in procs.items()}


# ---- end to end -------------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_cli_run_folder_and_last_line(cli_runs, method):
    run, rc, out, err = cli_runs[method]
    assert rc == 0, err
    lines = out.strip().splitlines()
    assert LAST_LINE.match(lines[-1]), lines[-1]
    for name in ("config.json", "metrics.jsonl", "best.npz", "last.npz", "curves.png",
                 "firing_rates.png"):
        assert (run / name).is_file(), name
    for png in ("curves.png", "firing_rates.png"):
        data = (run / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["method"] == method and cfg["T"] == 2 and cfg["epochs"] == 2
    assert cfg["lr"] == 1e-3 and cfg["loss"] == "sdt"          # resolved defaults are recorded
    assert cfg["versions"]["pysnn_ref"] and cfg["input_shape"] == [1, 8, 8]
    assert cfg["time_chunk"] is None  # flows: "auto" (Method.time_chunk_for)
    rows = _metrics(run, drop_timings=False)
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:
        assert {"loss", "train_acc", "test_acc", "firing_rate", "forward_s", "backward_s",
                "lr", "T"} <= set(r)
        assert list(r["firing_rates"]) == ["2:LIF"]             # mlp: one spiking layer
        assert 0 < r["firing_rate"] < 1
    assert rows[1]["loss"] < rows[0]["loss"]                    # it learns
    assert lines[-1] == f"test_acc={rows[-1]['test_acc']:.4f}"  # the final epoch's accuracy
    assert ("asf_S" in rows[0]) == (method == "asf")
    summary = [s for s in lines if s.startswith("epoch ")]
    assert len(summary) == 2 and "fwd=" in summary[0] and "rate=" in summary[0]


def test_seed_reproducible_bit_for_bit(cli_runs, tmp_path, capsys):
    """The same flags in another process give the same metrics, to the last bit."""
    run = cli_runs["bptt"][0]
    rc, _, err = _run([*QUICK, "--method", "bptt", "--seed", "3", "--out", str(tmp_path / "a")],
                      capsys)
    assert rc == 0, err
    assert _metrics(tmp_path / "a") == _metrics(run)
    with np.load(run / "last.npz") as z1, np.load(tmp_path / "a" / "last.npz") as z2:
        assert np.array_equal(z1["model/1.W"], z2["model/1.W"])
    rc, _, _ = _run([*QUICK, "--method", "bptt", "--seed", "4", "--out", str(tmp_path / "b")],
                    capsys)
    assert rc == 0
    assert _metrics(tmp_path / "b")[0]["loss"] != _metrics(run)[0]["loss"]


def test_evaluate_cli_reproduces_recorded_accuracy(cli_runs):
    run = cli_runs["bptt"][0]
    rc, out, err = _finish(_popen("pysnn_ref.evaluate", [str(run)]))
    assert rc == 0, err
    assert out.strip().splitlines()[-1] == cli_runs["bptt"][2].strip().splitlines()[-1]


@pytest.mark.parametrize("method", ["ssf", "asf"])
def test_load_best_checkpoint_reproduces_its_accuracy(cli_runs, method, capsys):
    run = cli_runs[method][0]
    best = max(_metrics(run), key=lambda r: r["test_acc"])
    net, cfg = load(run, checkpoint="best")             # the API's dict form
    assert cfg["checkpoint"]["epoch"] == best["epoch"] and not net.training
    net, rc, info = load_run(run, checkpoint="best")
    assert info == cfg["checkpoint"] and rc.to_dict() == {k: v for k, v in cfg.items()
                                                            if k != "checkpoint"}
    data = load_dataset("digits", seed=SPLIT_SEED)
    res = ev.evaluate_model(net, build_method(rc), data.x_test, data.y_test, T=rc.T,
                            encoder=make_encoder(rc, None), batch_size=rc.batch_size)
    assert res["acc"] == best["test_acc"]
    assert ev.cli([str(run), "--checkpoint", "best"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"test_acc={best['test_acc']:.4f}"


# ---- resume -----------------------------------------------------------------------------------

def test_resume_continues_exactly(tmp_path, capsys):
    """2 epochs + --resume to 3 == 3 epochs straight (constant lr, so the schedule agrees)."""
    args = [*QUICK, "--schedule", "constant", "--method", "ssf"]
    assert _run([*args, "--epochs", "3", "--out", str(tmp_path / "full")], capsys)[0] == 0
    assert _run([*args, "--out", str(tmp_path / "part")], capsys)[0] == 0
    rc, out, err = _run(["--resume", str(tmp_path / "part"), "--epochs", "3", "--no-progress"],
                        capsys)
    assert rc == 0, err
    assert "resumed from" in out and "at epoch 2/3" in out
    assert [s.split()[1] for s in out.splitlines() if s.startswith("epoch ")] == ["3/3"]
    assert _metrics(tmp_path / "part") == _metrics(tmp_path / "full")
    _, _, meta = read_checkpoint(tmp_path / "part" / "last.npz")
    assert meta["epoch"] == 3 and meta["config"]["epochs"] == 3
    # resuming into a new folder carries the history over
    rc, _, err = _run(["--resume", str(tmp_path / "part" / "best.npz"), "--no-progress",
                       "--out", str(tmp_path / "copy")], capsys)
    assert rc == 0, err
    assert [r["epoch"] for r in _metrics(tmp_path / "copy")] == [1, 2, 3]


def test_resume_rejects_changed_settings(tmp_path, capsys):
    assert _run([*QUICK, "--epochs", "1", "--out", str(tmp_path / "r")], capsys)[0] == 0
    rc, out, err = _run(["--resume", str(tmp_path / "r"), "--lr", "0.5"], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "--lr" in err
    rc, out, err = _run(["--resume", str(tmp_path / "nothing-here")], capsys)
    assert rc == 2 and "does not exist" in err


# ---- bad input: one line on stderr, exit code 2, no traceback ----------------------------------

def _gpu_usable() -> bool:
    try:
        backend.get_backend("gpu")
    except backend.GPUUnavailableError:
        return False
    return True


BAD = {
    "unknown method": (["--method", "foo"], "--method"),
    "missing mnist": (["--dataset", "mnist", "--data-dir", "/nonexistent/mnist"], "mnist"),
    "bad tit": (["--tit", "2:30,6"], "--tit"),
    "gpu": (["--device", "gpu"], "gpu"),
    "option of another method": (["--method", "ssf", "--asf-variant", "code"], "--asf-variant"),
    "dspike-adapt without dspike": (["--dspike-adapt"], "--surrogate dspike"),
    "bad surrogate": (["--surrogate", "nope"], "surrogate"),
}


def test_bad_input_one_line_exit_2(tmp_path):
    cases = dict(BAD)
    if _gpu_usable():
        del cases["gpu"]
    procs = {k: _popen("pysnn_ref.train",
                       [*QUICK, *a, "--out", str(tmp_path / k.replace(" ", "_"))])
             for k, (a, _) in cases.items()}
    procs["evaluate missing run"] = _popen("pysnn_ref.evaluate", [str(tmp_path / "no-run")])
    for k, p in procs.items():
        rc, out, err = _finish(p)
        assert rc == 2, (k, err)
        assert len(err.strip().splitlines()) == 1, (k, err)
        assert "Traceback" not in err and "error:" in err, (k, err)
        if k in cases:
            assert cases[k][1] in err, (k, err)


def test_parse_tit():
    assert tr.parse_tit("2:30,6:10") == [(2, 30), (6, 10)]
    assert tr.parse_tit(" 6:3 ") == [(6, 3)]
    for bad in ("", "2", "2:0", "0:3", "a:b", "2:3,", "2:3:4"):
        with pytest.raises(ValueError, match="--tit"):
            tr.parse_tit(bad)


def test_help_explains_every_flag_with_default():
    text = tr.build_parser().format_help()
    for flag in ("--dataset", "--data-dir", "--model", "--method", "--neuron", "--lam",
                 "--v-th", "--reset", "--surrogate", "--loss", "--tet-lambda", "--T",
                 "--epochs", "--batch-size", "--optimizer", "--lr", "--momentum",
                 "--weight-decay", "--schedule", "--encoder", "--augment", "--time-chunk",
                 "--asf-variant", "--asf-refresh", "--r-granularity", "--tdbn-alpha", "--dtype",
                 "--seed", "--device", "--out", "--resume", "--dspike-adapt", "--tit",
                 "--no-progress", "--max-batches"):
        assert re.search(rf"^\s+{re.escape(flag)}\b", text, re.M), flag
    assert text.count("(default:") >= 40
    assert "--tit is given" in text        # --epochs says it is ignored under --tit


# ---- NaN, time inheritance, Dspike adaptation ---------------------------------------------------

def test_nan_loss_stops_naming_epoch_and_batch(tmp_path, capsys, monkeypatch):
    """The 4th loss evaluation is NaN: epoch 1 = 2 training batches + 1 test batch, so it is
    the first batch of epoch 2."""
    calls = []
    real = L.sdt_loss_forward

    def fake(y, labels):
        calls.append(1)
        loss, cache = real(y, labels)
        return (float("nan") if len(calls) == 4 else loss), cache

    monkeypatch.setitem(L.LOSS_PAIRS, "sdt", (fake, L.sdt_loss_backward))
    rc, out, err = _run([*QUICK, "--max-batches", "2", "--max-eval-batches", "1",
                         "--out", str(tmp_path / "nan")], capsys)
    assert rc == 3
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "nan" in err and "epoch 2, batch 1" in err
    assert [r["epoch"] for r in _metrics(tmp_path / "nan")] == [1]   # epoch 1 was kept
    assert not LAST_LINE.match(out.strip().splitlines()[-1])


def test_time_inheritance_switches_T(tmp_path, capsys):
    rc, out, err = _run([*QUICK, "--max-batches", "2", "--tit", "2:2,3:1", "--epochs", "9",
                         "--out", str(tmp_path / "tit")], capsys)
    assert rc == 0, err
    rows = _metrics(tmp_path / "tit")
    assert [(r["T"], r["stage"]) for r in rows] == [(2, 1), (2, 1), (3, 2)]
    assert rows[2]["lr"] == 1e-3                      # the schedule restarts with the stage
    assert "--epochs 9 is ignored" in out and "T 2 -> 3" in out
    _, optim, meta = read_checkpoint(tmp_path / "tit" / "last.npz")
    assert int(optim["steps"]) == 3 * 2               # one optimizer across the stages
    assert meta["T"] == 3


def test_dspike_adapt_logs_and_keeps_b(tmp_path, capsys):
    rc, out, err = _run([*QUICK, "--surrogate", "dspike", "--dspike-adapt", "--fdg-samples", "16",
                         "--out", str(tmp_path / "ds")], capsys)
    assert rc == 0, err
    logged = re.findall(r"dspike: epoch (\d) b=([\d.]+) cos=(-?[\d.]+)", out)
    assert [e for e, _, _ in logged] == ["1", "2"]
    rows = _metrics(tmp_path / "ds")
    bs = [r["dspike_b"] for r in rows]
    assert bs == [float(b) for _, b, _ in logged]
    assert bs[0] in (0.8, 1.0, 1.2) and round(abs(bs[1] - bs[0]), 6) in (0.0, 0.2)
    assert all(-1 <= r["dspike_cos"] <= 1 for r in rows)
    _, _, meta = read_checkpoint(tmp_path / "ds" / "last.npz")
    assert meta["neurons"][0]["surrogate"] == f"dspike:{bs[-1]!r}"
    rc, _, err = _run([*QUICK, "--method", "ssf", "--surrogate", "dspike", "--dspike-adapt"],
                      capsys)
    assert rc == 2 and "--method bptt" in err


def test_adapt_dspike_picks_best_cosine_and_restores_state():
    """adapt_dspike on its own: returns the arg-max of its cosines, sets every spiking layer to
    it, leaves BatchNorm running statistics and gradients untouched / zero."""
    from pysnn_ref import nn
    from pysnn_ref.models import build_from_string

    cfg = {"surrogate": "dspike:1"}
    net = build_from_string("4C3-FC16", (1, 6, 6), 3,
                            lambda: nn.LIF(0.5, 1.0, "hard", cfg["surrogate"]), batch_norm=True)
    rng = np.random.default_rng(0)
    x = np.broadcast_to(rng.normal(size=(8, 1, 6, 6)).astype(np.float32), (3, 8, 1, 6, 6))
    labels = rng.integers(0, 3, 8)
    bn = [m for m in net.modules() if isinstance(m, nn.BatchNorm)][0]
    before = bn.running_mean.copy()
    b, cos = dspike.adapt_dspike(net, make_method("bptt"), x, labels, 0.1,
                                  L.sdt_loss_forward, L.sdt_loss_backward, n_samples=20,
                                  rng=np.random.default_rng(1))
    assert set(cos) == {0.1, 0.3}                      # 0.1 - 0.2 <= 0 is skipped
    assert b == max(cos, key=cos.get)
    assert all(n.p.surrogate.a == b for n in nn.spiking_layers(net))
    assert np.array_equal(bn.running_mean, before)
    assert all(not p.grad.any() for p in net.parameters())


# ---- the default runs (slow) ------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("method,target", [("bptt", 0.95), ("ssf", 0.95), ("asf", 0.92)])
def test_default_run_accuracy(tmp_path, method, target):
    """``python -m pysnn_ref.train --method M`` with every other default: the accuracy targets
    of docs/training.md, in well under 90 s on the 2-core CPU (warm JIT cache)."""
    t0 = time.perf_counter()
    rc, out, err = _finish(_popen("pysnn_ref.train", ["--method", method, "--no-progress",
                                                      "--out", str(tmp_path / method)]))
    wall = time.perf_counter() - t0
    assert rc == 0, err
    acc = float(out.strip().splitlines()[-1].split("=")[1])
    assert acc >= target, out
    assert wall < 90, f"{wall:.0f} s"
