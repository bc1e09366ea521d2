"""The run folder as a validated format (issue 29 item 1, docs/reliability.md "The run folder
format"): every key of every schema in :mod:`pysnn_ref.train.schema`, missing or of a wrong
type / out of range, is refused on read with one line naming the file, the key and what was
expected -- by the Python loader, ``evaluate`` and ``train --resume`` (exit 2, no traceback).
The cases are generated from the schema tables, so a key added there is tested here too."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pysnn_ref.errors import RunFormatError
from pysnn_ref.train import __main__ as train_cli
from pysnn_ref.train import checkpoint, evaluate, schema
from pysnn_ref.train.schema import FORMAT_VERSION, Field

CFG = train_cli.resolve_config(train_cli.build_parser().parse_args([]), set()).to_dict() | {
    "input_shape": [1, 8, 8], "num_classes": 10, "n_train": 10, "n_test": 5,
    "format_version": FORMAT_VERSION, "versions": {"numpy": "x"}, "model_repr": "m",
    "n_parameters": 3, "world_size": 1}
META = {"version": FORMAT_VERSION, "epoch": 1, "T": 4, "test_acc": 0.5, "best_acc": 0.5,
        "best_epoch": 1, "dspike_b": None, "config": CFG,
        "neurons": [{"S": 1.0, "asf_tot": [0.0, 0.0, 0.0], "surrogate": "triangle:1"}]}
REC = {"epoch": 1, "stage": 1, "T": 4, "lr": 1e-3, "loss": 2.3, "train_acc": 0.1,
       "test_loss": 2.2, "test_acc": 0.2, "firing_rate": 0.3, "firing_rates": {"2:LIF": 0.3},
       "forward_s": 1.0, "backward_s": 1.0, "epoch_s": 2.0}
ROW = {"name": "0:Linear", "kind": "MAC", "macs": 1.0, "sops": 0.0, "ann_macs": 1.0,
       "input_rate": 1.0, "energy_pj": 4.6, "ann_energy_pj": 4.6}
ENERGY = {"T": 4, "batch": 8, "e_mac_pj": 4.6, "e_ac_pj": 0.9, "layers": [ROW], "macs": 1.0,
          "sops": 0.0, "ann_macs": 1.0, "energy_pj": 4.6, "ann_energy_pj": 4.6,
          "ann_over_snn": 1.0}
GOOD = {"CONFIG": CFG, "META": META, "NEURON": META["neurons"][0], "METRICS": REC,
        "ENERGY": ENERGY, "ENERGY_LAYER": ROW}

#: values tried against every key: those the key's Field refuses are the cases
CANDIDATES = ["nope", 12345, -7, 0, 1.5, 1e308, [1], [], {"a": 1}, None, True]


def _bad_values(f: Field) -> list:
    return [v for v in CANDIDATES if not f.valid(v)] + (["not-a-choice"] if f.choices else [])


def _cases(name: str) -> list:
    table = getattr(schema, name)
    out = []
    for k, f in table.items():
        if f.required:
            out.append((name, k, "missing"))
        out += [(name, k, v) for v in _bad_values(f)]
    return out


ALL = [c for n in GOOD for c in _cases(n)]


def test_every_key_has_cases_and_the_good_records_pass():
    for name, good in GOOD.items():
        table = getattr(schema, name)
        schema.check(good, table, name)
        assert set(table) <= set(good), name         # the good records use every key
        for k, f in table.items():
            assert _bad_values(f), (name, k)          # something is refused for every key


def _broken(good: dict, key: str, value) -> dict:
    d = dict(good)
    if value == "missing":
        del d[key]
    else:
        d[key] = value
    return d


def _meta_with(name: str, key: str, value) -> dict:
    """META with one key of one of its parts broken."""
    if name == "META":
        return _broken(META, key, value)
    if name == "CONFIG":
        return META | {"config": _broken(CFG, key, value)}
    return META | {"neurons": [_broken(META["neurons"][0], key, value)]}


@pytest.mark.parametrize("name,key,value", ALL, ids=[f"{n}-{k}-{v!r}" for n, k, v in ALL])
def test_each_key_missing_or_wrong_is_one_line_naming_it(name, key, value, tmp_path):
    if name in ("META", "CONFIG", "NEURON"):
        with pytest.raises(RunFormatError) as e:
            schema.check_meta(_meta_with(name, key, value), "checkpoint X")
    elif name == "METRICS":
        p = tmp_path / "metrics.jsonl"
        p.write_text(json.dumps(REC) + "\n" + json.dumps(_broken(REC | {"epoch": 2}, key,
                                                                  value)) + "\n")
        with pytest.raises(RunFormatError) as e:
            schema.read_metrics(p)
    else:
        p = tmp_path / "energy.json"
        bad = (_broken(ENERGY, key, value) if name == "ENERGY"
               else ENERGY | {"layers": [_broken(ROW, key, value)]})
        p.write_text(json.dumps(bad))
        with pytest.raises(RunFormatError) as e:
            schema.read_json(p, schema.ENERGY)
    msg = str(e.value)
    assert "\n" not in msg and f"{key}'" in msg and "expected" in msg, msg
    assert ("checkpoint X" in msg) if name in ("META", "CONFIG", "NEURON") else str(p) in msg


def _write_ckpt(path: Path, meta) -> Path:
    np.savez(path, meta=np.array(json.dumps(meta)), **{"model/0.W": np.ones((2, 2))})
    return path


def _cli_line(cli, argv, capsys) -> str:
    code = cli(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


ONE_PER_KEY = [(n, k, "missing" if getattr(schema, n)[k].required
                else _bad_values(getattr(schema, n)[k])[0])
               for n in ("META", "CONFIG", "NEURON") for k in getattr(schema, n)]


@pytest.mark.parametrize("name,key,value", ONE_PER_KEY,
                         ids=[f"{n}-{k}-{v!r}" for n, k, v in ONE_PER_KEY])
def test_loader_evaluate_and_resume_refuse_each_key(name, key, value, tmp_path, capsys):
    p = _write_ckpt(tmp_path / "last.npz", _meta_with(name, key, value))
    with pytest.raises(RunFormatError, match=key):
        checkpoint.load(p)
    for cli, argv in ((evaluate.cli, [str(p)]),
                      (train_cli.cli, ["--resume", str(p), "--no-plots", "--no-progress"])):
        line = _cli_line(cli, argv, capsys)
        assert str(p) in line and f"{key}'" in line and "expected" in line, line


def test_format_version_is_written_and_checked(tmp_path, capsys):
    run = tmp_path / "run"
    assert train_cli.cli(["--epochs", "1", "--max-batches", "1", "--max-eval-batches", "1",
                          "--no-plots", "--no-progress", "--out", str(run)]) == 0
    cfg = schema.read_json(run / "config.json", schema.CONFIG)
    assert cfg["format_version"] == FORMAT_VERSION
    _, _, meta = checkpoint.read_checkpoint(run / "last.npz")
    assert meta["version"] == FORMAT_VERSION
    schema.read_json(run / "energy.json", schema.ENERGY)
    assert [m["epoch"] for m in schema.read_metrics(run / "metrics.jsonl")] == [1]
    bad = _write_ckpt(tmp_path / "v2.npz", META | {"version": FORMAT_VERSION + 1})
    line = _cli_line(evaluate.cli, [str(bad)], capsys)
    assert "'version'" in line and f"expected {FORMAT_VERSION}" in line


@pytest.mark.parametrize("line", ["{}", "[1, 2]", '"x"', "{not json",
                                  json.dumps(REC | {"epoch": "1"}),
                                  json.dumps(REC | {"epoch": None}),
                                  json.dumps(REC) + "\n" + json.dumps(REC)])
def test_resume_refuses_a_damaged_metrics_jsonl(line, tmp_path, capsys):
    run = tmp_path / "run"
    flags = ["--max-batches", "1", "--max-eval-batches", "1", "--no-plots", "--no-progress"]
    assert train_cli.cli(["--epochs", "1", "--out", str(run), *flags]) == 0
    capsys.readouterr()
    (run / "metrics.jsonl").write_text(line + "\n")
    msg = _cli_line(train_cli.cli, ["--resume", str(run), "--epochs", "2", *flags], capsys)
    assert "metrics.jsonl" in msg, msg
