"""One range table for every command line (issue 29 item 3): the numeric flags of ``bench`` and
``ecml`` take their ranges from ``cli.RANGES`` (as ``train`` does, tests/test_limits.py); bad
values of each -- generated from the table -- are one stderr line naming the flag, exit 2.
``gradcheck`` has no numeric flag.  SIGTERM is exit 143, Ctrl-C 130 (``cli.exit_line``).
energy.json is checked against its schema when written and when ``evaluate`` reads it."""

from __future__ import annotations

import json
import math
import signal

import pytest

from pysnn_ref import cli, ecml
from pysnn_ref.bench import __main__ as bench_cli


def _ranged_actions(parser) -> list:
    out = []
    for a in parser._actions:   # argparse lists its actions nowhere public
        if a.choices and isinstance(a.choices, dict):     # sub-commands
            for sub in a.choices.values():
                out += _ranged_actions(sub)
        elif getattr(a.type, "setting", None) is not None:
            out.append(a)
    return out


def _bad(key: str) -> list[str]:
    lo, hi, incl, _ = cli.RANGES[key]
    ints = key in cli.INT_SETTINGS
    low = lo - 1 if ints else (lo if not incl else lo - 1.0)
    return [str(low), str(int(hi) + 1 if ints else hi * 2), "nan", "inf", "text"]


BENCH = [(a.option_strings[0], v) for a in _ranged_actions(bench_cli.make_parser())
         for v in _bad(a.type.setting)]
ECML = [(a.option_strings[0], v) for a in _ranged_actions(ecml.make_parser())
        for v in _bad(a.type.setting)]
ECML_CMD = {"--th": ["table1"], "--dx": ["complexity", "--dh", "3"],
            "--dh": ["complexity", "--dx", "3"], "--k": ["complexity", "--dx", "3", "--dh", "3"]}


def test_the_clis_numeric_flags_are_ranged():
    assert {f for f, _ in BENCH} >= {"--batch-size", "--repeats", "--warmup", "--classes",
                                     "--time-chunk", "--lam", "--v-th", "--lr", "--seed",
                                     "--threads", "--kernel-times"}
    assert {f for f, _ in ECML} == {"--th", "--dx", "--dh", "--k"}


@pytest.mark.parametrize("flag,value", BENCH, ids=[f"{f}={v}" for f, v in BENCH])
def test_bench_bad_values_one_line_exit_2(flag, value, capsys):
    with pytest.raises(SystemExit) as e:   # argparse's refusal exits itself
        bench_cli.cli([flag, value])
    err = capsys.readouterr().err
    assert e.value.code == 2 and flag in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("argv", [["--T", "0,4"], ["--T", "10001"], ["--T", "4,x"]])
def test_bench_T_list_uses_the_T_range(argv, capsys):
    assert bench_cli.cli(argv) == 2
    err = capsys.readouterr().err
    assert "--T" in err and "[1, 10000]" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("flag,value", ECML, ids=[f"{f}={v}" for f, v in ECML])
def test_ecml_bad_values_one_line_exit_2(flag, value, capsys):
    with pytest.raises(SystemExit) as e:
        cli.run_main(ecml.main, "python -m pysnn_ref.ecml", [*ECML_CMD[flag], flag, value])
    err = capsys.readouterr().err
    assert e.value.code == 2 and flag in err and len(err.strip().splitlines()) == 1, err


def test_ranged_accepts_both_ends():
    for key, (lo, hi, incl, _) in cli.RANGES.items():
        parse = cli.ranged(key)
        if incl:
            assert parse(str(int(lo) if key in cli.INT_SETTINGS else lo)) == lo
        if key != "momentum":
            assert parse(str(int(hi) if key in cli.INT_SETTINGS else hi)) == hi


def test_sigterm_is_143_and_ctrl_c_130():
    assert cli.exit_line(cli.Terminated(), "p") == ("p: terminated", 143)
    assert cli.exit_line(KeyboardInterrupt(), "p") == ("p: interrupted", 130)
    assert issubclass(cli.Terminated, KeyboardInterrupt)   # the same clean-up runs

    def main(argv):
        signal.raise_signal(signal.SIGTERM)
        return 0

    # under run_main, SIGTERM (default handler) becomes Terminated: exit 143, one line
    assert cli.run_main(main, "p", []) == 143


def test_energy_json_is_checked_when_written_and_read(tmp_path, capsys):
    from pysnn_ref.errors import RunFormatError
    from pysnn_ref.train import runlog

    row = {"name": "0:Linear", "kind": "MAC", "macs": 1.0, "sops": 0.0, "ann_macs": 1.0,
           "input_rate": 1.0, "energy_pj": 4.6, "ann_energy_pj": 4.6}
    rep = {"T": 4, "batch": 8, "e_mac_pj": 4.6, "e_ac_pj": 0.9, "layers": [row], "macs": 1.0,
           "sops": 0.0, "ann_macs": 1.0, "energy_pj": 4.6, "ann_energy_pj": 4.6,
           "ann_over_snn": math.inf}
    runlog.write_energy(tmp_path, rep)                     # inf ratio: written as null
    assert json.loads((tmp_path / "energy.json").read_text())["ann_over_snn"] is None
    assert runlog.read_energy(tmp_path)["T"] == 4
    with pytest.raises(RunFormatError, match="being written.*'energy_pj'"):
        runlog.write_energy(tmp_path, rep | {"energy_pj": math.nan})
    assert runlog.read_energy(tmp_path)["energy_pj"] == 4.6    # the old file is kept
    bad = rep | {"ann_over_snn": 1.0, "layers": [row | {"macs": -1}]}
    (tmp_path / "energy.json").write_text(json.dumps(bad))
    with pytest.raises(RunFormatError, match=r"energy.json: key 'macs' in layers\[0\]"):
        runlog.read_energy(tmp_path)
    assert runlog.read_energy(tmp_path / "nowhere") is None


def test_evaluate_reads_the_runs_energy_json_through_its_schema(tmp_path, capsys):
    from pysnn_ref.train import __main__ as train_cli
    from pysnn_ref.train import evaluate

    run = tmp_path / "run"
    assert train_cli.cli(["--epochs", "1", "--max-batches", "1", "--max-eval-batches", "1",
                          "--no-plots", "--no-progress", "--out", str(run)]) == 0
    capsys.readouterr()
    assert evaluate.cli([str(run)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-2].startswith(f"{run / 'energy.json'}: energy/sample (45 nm, T=4): SNN")
    rep = json.loads((run / "energy.json").read_text())
    (run / "energy.json").write_text(json.dumps(rep | {"T": "four"}))
    assert evaluate.cli([str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "energy.json: key 'T'" in err[0], err
