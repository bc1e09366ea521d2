"""Ranges, memory estimate, unused flags, NaN weights, warnings and Ctrl-C (issue 29 item 3):
every setting of ``flags.RANGES`` just past either end is refused with one line naming the flag,
before any data is read or folder made (the cases are generated from the table); weights that
become NaN/inf stop the run with exit 3 naming epoch and batch even while the loss stays finite;
no raw NumPy warning reaches the user; Ctrl-C while the imports run exits 130 with one line."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pysnn_ref.errors import NonFiniteLossError
from pysnn_ref.train import __main__ as train_cli
from pysnn_ref.train import flags
from pysnn_ref.train.config import make_encoder
from pysnn_ref.train.loop import setup_run, train_step

ROOT = Path(__file__).resolve().parents[1]

#: what else a flag needs on the command line to be accepted at all
CONTEXT = {"tit_lr": ["--tit", "2:1,2:1"], "tet_lambda": ["--loss", "tet"],
           "dsr_alpha": ["--method", "dsr"], "sltt_k": ["--method", "sltt", "--T", "10000"],
           "fdg_samples": ["--surrogate", "dspike", "--dspike-adapt"],
           "time_chunk": ["--method", "ssf"], "asf_refresh": ["--method", "asf"],
           "momentum": ["--optimizer", "sgd"], "tdbn_alpha": ["--model", "snn5"],
           "width": ["--model", "vgg11"]}
INTS = set(flags.INT_SETTINGS)


def _argv(key: str, v: float) -> list[str]:
    if key == "surrogate_param":
        return ["--surrogate", f"triangle:{v!r}"]
    val = str(int(v)) if key in INTS else repr(float(v))
    return [*CONTEXT.get(key, []), "--" + key.replace("_", "-"), val]


def _outside(key: str) -> list[float]:
    lo, hi, incl, _ = flags.RANGES[key]
    step = 1 if key in INTS else hi * 1e-3
    out = [hi + step]
    if key == "momentum":
        out = [1.0]
    if lo > 0 or incl:   # a value below the low end that the parser itself would accept
        out.append(lo - step if key in INTS else (lo * 0.5 if lo > 0 else -1.0))
    else:
        out.append(0.0)
    return out


#: the train CLI's numeric flags (their argparse ``type`` parses numbers), by setting name
NUMERIC_TYPES = ("positive_int", "nonnegative_int", "finite_float", "_asf_refresh")
TRAIN_NUMERIC = [a for a in train_cli.build_parser()._actions
                 if getattr(a.type, "__name__", "") in NUMERIC_TYPES]
TRAIN_KEYS = {a.dest for a in TRAIN_NUMERIC} | {"surrogate_param"}

CASES = [(k, v) for k in flags.RANGES if k in TRAIN_KEYS for v in _outside(k)]


@pytest.mark.parametrize("key,v", CASES, ids=[f"{k}={v!r}" for k, v in CASES])
def test_each_range_is_refused_before_anything_is_made(key, v, tmp_path, capsys):
    out = tmp_path / "run"
    try:
        code = train_cli.cli([*_argv(key, v), "--out", str(out), "--no-plots", "--no-progress"])
    except SystemExit as e:   # argparse's own refusal (e.g. --T 0): also one line, exit 2
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    flag = "--surrogate" if key == "surrogate_param" else "--" + key.replace("_", "-")
    assert flag in err or flag.replace("--", "") in err, err
    assert not out.exists()


def test_the_ends_of_each_range_are_accepted():
    for key, (lo, hi, incl, _) in flags.RANGES.items():
        if key not in TRAIN_KEYS:
            continue
        for v in ([lo] if incl else []) + ([hi] if key != "momentum" else [0.5]):
            if key in INTS and v < 1:
                continue
            args = train_cli.build_parser().parse_args(_argv(key, v))
            cfg = train_cli.resolve_config(args, train_cli.explicit_args(_argv(key, v)))
            flags.check_ranges(cfg)


def test_every_numeric_flag_of_the_train_cli_has_a_range():
    """A new numeric flag without an entry in the range table fails here."""
    assert len(TRAIN_NUMERIC) >= 20
    missing = [a.dest for a in TRAIN_NUMERIC if a.dest not in flags.RANGES]
    assert not missing, f"numeric flags without a range in cli.RANGES: {missing}"


def _bad_values(key: str) -> list[str]:
    """Below the low end, above the high end, NaN, infinity and text."""
    lo, hi, incl, _ = flags.RANGES[key]
    low = lo - 1 if key in INTS else (lo if not incl else lo - abs(lo) - 1.0)
    high = int(hi) + 1 if key in INTS else hi * 2
    return [str(low), str(high), "nan", "inf", "text"]


EVERY = [(a.dest, a.option_strings[0], v) for a in TRAIN_NUMERIC for v in _bad_values(a.dest)]


@pytest.mark.parametrize("key,flag,value", EVERY, ids=[f"{f}={v}" for _, f, v in EVERY])
def test_every_numeric_flag_refuses_bad_values_with_one_line(key, flag, value, tmp_path, capsys):
    out = tmp_path / "run"
    argv = [*CONTEXT.get(key, []), flag, value, "--out", str(out)]
    try:
        code = train_cli.cli(argv)
    except SystemExit as e:   # argparse's own refusal: also one line, exit 2
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, (argv, err)
    assert flag in err, (argv, err)
    assert not out.exists()


def test_memory_estimate_refuses_before_the_data_is_read(tmp_path, capsys):
    argv = ["--dataset", "cifar10", "--data-dir", str(tmp_path / "nowhere"), "--T", "10000",
            "--batch-size", "100000", "--out", str(tmp_path / "run")]
    assert train_cli.cli(argv) == 2
    err = capsys.readouterr().err
    assert "GiB" in err and "nowhere" not in err and not (tmp_path / "run").exists(), err
    cfg = train_cli.resolve_config(train_cli.build_parser().parse_args([]), set()).replace(
        dataset="cifar10", data_dir="x", stages=((4, 1),), batch_size=64, dtype="float32")
    assert flags.input_bytes(cfg) == 4 * 64 * 3 * 32 * 32 * 4
    flags.check_memory(cfg, ram=2 * flags.input_bytes(cfg))
    with pytest.raises(ValueError, match="GiB"):
        flags.check_memory(cfg, ram=2 * flags.input_bytes(cfg) - 2)


@pytest.mark.parametrize("argv,what", [
    (["--method", "ssf", "--surrogate", "atan"], "--surrogate only applies"),
    (["--method", "asf", "--surrogate", "sigmoid:4"], "--surrogate only applies"),
    (["--tit", "4:1", "--tit-lr", "0.1"], "--tit-lr"),
    (["--tdbn-alpha", "1"], "--tdbn-alpha only applies to models with BatchNorm"),
    (["--surrogate", "sigmoid:"], "surrogate parameter is empty"),
])
def test_flags_the_run_does_not_use_are_refused(argv, what, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_cli.cli([*argv, "--out", str(out), "--max-batches", "1"]) == 2
    err = capsys.readouterr().err
    assert what in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_nan_weights_after_an_update_stop_at_that_step(monkeypatch):
    args = train_cli.build_parser().parse_args(["--max-batches", "2"])
    st = setup_run(train_cli.resolve_config(args, {"max_batches"}))
    real_step = st.opt.step

    def poisoned_step():
        real_step()
        st.net.parameters()[-1].data[0] = np.nan      # what an overflowing update leaves

    monkeypatch.setattr(st.opt, "step", poisoned_step)
    x = st.data.x_train[:8].astype(np.float32)
    with pytest.raises(NonFiniteLossError, match=r"weights became NaN/inf \(parameter .*"
                                                 r"epoch 3, batch 2"):
        train_step(st, x, st.data.y_train[:8], 2, make_encoder(st.cfg, 2), epoch=2, batch=1)


def test_weights_overflowing_while_the_loss_stays_finite_exit_3_without_warnings(tmp_path):
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "pysnn_ref.train", "--optimizer", "sgd", "--lr",
                        "1e6", "--weight-decay", "1e6", "--epochs", "3", "--max-batches", "3",
                        "--max-eval-batches", "1", "--no-plots", "--no-progress", "--out",
                        str(run)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 3, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "weights became NaN/inf" in lines[0], r.stderr   # no Warning
    assert "epoch" in lines[0] and "batch" in lines[0]


@pytest.mark.parametrize("delay", [0.1, 0.2, 0.35, 0.5, 1.0])
def test_ctrl_c_while_importing_is_one_line_exit_130(delay, tmp_path):
    p = subprocess.Popen([sys.executable, "-m", "pysnn_ref.train", "--no-progress", "--out",
                          str(tmp_path / "r")],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert err.strip().splitlines() == ["python -m pysnn_ref.train: interrupted"], err
    assert "Traceback" not in err


def test_evaluate_data_dir_for_a_built_in_dataset_is_refused(tmp_path, capsys):
    from pysnn_ref.train import evaluate

    run = tmp_path / "run"
    assert train_cli.cli(["--epochs", "1", "--max-batches", "1", "--max-eval-batches", "1",
                          "--no-plots", "--no-progress", "--out", str(run)]) == 0
    capsys.readouterr()
    assert evaluate.cli([str(run), "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--data-dir only applies" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv", [["--T", str(flags.MAX_T + 1)],
                                  ["--batch-size", str(flags.MAX_BATCH + 1)]])
def test_evaluate_ranges(argv, tmp_path, capsys):
    from pysnn_ref.train import evaluate

    run = tmp_path / "run"
    assert train_cli.cli(["--epochs", "1", "--max-batches", "1", "--max-eval-batches", "1",
                          "--no-plots", "--no-progress", "--out", str(run)]) == 0
    capsys.readouterr()
    assert evaluate.cli([str(run), *argv]) == 2
    err = capsys.readouterr().err
    assert argv[0] in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("argv", [["--T", str(10**12)], ["--T", "0"],
                                  ["--batch-size", str(flags.MAX_BATCH + 1)], ["--seed", "-1"]])
def test_energy_cli_ranges(argv):
    r = subprocess.run([sys.executable, "-m", "pysnn_ref.energy", *argv], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and argv[0] in lines[0], r.stderr
