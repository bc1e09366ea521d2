"""The run configuration (issue 23 item 4): a frozen, typed ``RunConfig`` validated once, from the
command line or a dict (the API, a config.json, a checkpoint); on disk a plain JSON object; run
folders written before it existed (tests/fixtures/run_v1, made by the dict-based trainer) still
validate and resume."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from pysnn_ref.train import __main__ as train_cli
from pysnn_ref.train import flags, schema
from pysnn_ref.train.checkpoint import load_run, read_checkpoint
from pysnn_ref.train.config import DATA_KEYS, RunConfig, as_run_config
from pysnn_ref.train.loop import setup_run

FIXTURE = Path(__file__).parent / "fixtures" / "run_v1"


def _default() -> RunConfig:
    return train_cli.resolve_config(train_cli.build_parser().parse_args([]), set())


def test_frozen_assigning_raises():
    cfg = _default()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 0.5
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.world_size = 2
    assert isinstance(cfg.stages, tuple) and isinstance(cfg.stages[0], tuple)
    new = cfg.replace(world_size=2)                  # a changed copy; the original is unchanged
    assert new.world_size == 2 and cfg.world_size == 1 and new != cfg


def test_round_trip_dict_config_dict():
    cfg = _default()
    d = cfg.to_dict()
    assert json.loads(json.dumps(d)) == d            # plain JSON
    assert d["stages"] == [[4, 20]]
    assert RunConfig.from_dict(d) == cfg
    assert RunConfig.from_dict(d).to_dict() == d
    on_disk = json.loads((FIXTURE / "config.json").read_text())
    rc = RunConfig.from_dict(on_disk, "config.json")
    assert {k: v for k, v in rc.to_dict().items() if k in on_disk} == on_disk


#: one bad value per field kind, generated from the schema table: wrong type, outside the
#: choices, outside the range (the ranges are flags.RANGES)
def _bad_values() -> list[tuple[str, object]]:
    cases: list[tuple[str, object]] = []
    for k, f in schema.CONFIG.items():
        if k in DATA_KEYS or k not in {x.name for x in dataclasses.fields(RunConfig)}:
            continue
        cases.append((k, [1, 2] if list not in f.types else "text"))   # wrong type
        if f.choices is not None:
            cases.append((k, "no-such-choice"))
    fields = {x.name for x in dataclasses.fields(RunConfig)}
    for k, (_lo, hi, _, _) in flags.RANGES.items():
        if k in fields and k != "asf_refresh":   # asf_refresh: ranged, or 'batch' (below)
            cases.append((k, hi * 2 if k not in flags.INT_SETTINGS else int(hi) + 1))
    cases.append(("surrogate", "triangle:1e9"))
    cases.append(("asf_refresh", flags.MAX_EPOCHS + 1))
    return cases


BAD = _bad_values()


@pytest.mark.parametrize("key,value", BAD, ids=[f"{k}={v!r}" for k, v in BAD])
def test_invalid_value_is_rejected_naming_the_parameter(key, value):
    d = _default().to_dict() | {key: value}
    with pytest.raises(ValueError) as e:
        RunConfig.from_dict(d)
    assert flags.flag_name(key) in str(e.value) and "\n" not in str(e.value), str(e.value)
    with pytest.raises(ValueError) as e:
        _default().replace(**{key: value})
    assert flags.flag_name(key) in str(e.value)
    with pytest.raises(ValueError) as e:                 # read from disk: the file is named too
        RunConfig.from_dict(d | {k: 1 for k in ("num_classes", "n_train", "n_test")}
                            | {"input_shape": [1]}, "runs/x/config.json")
    msg = str(e.value)
    assert "runs/x/config.json" in msg and (repr(key) in msg or flags.flag_name(key) in msg), msg


def test_unknown_and_missing_keys():
    d = _default().to_dict()
    with pytest.raises(ValueError, match="unknown setting 'lrr'"):
        RunConfig.from_dict(d | {"lrr": 0.1})        # a typo in a caller's dict
    with pytest.raises(ValueError, match="'lr' is missing"):
        RunConfig.from_dict({k: v for k, v in d.items() if k != "lr"})
    with pytest.raises(TypeError, match="cfg must be"):
        as_run_config([("lr", 0.1)])


def test_a_config_written_before_later_settings_existed_takes_their_defaults():
    on_disk = json.loads((FIXTURE / "config.json").read_text())
    later = ("dsr_alpha", "dsr_spread", "dsr_train_threshold", "rate_detach",
             "max_eval_batches", "blas_threads", "no_plots", "no_progress", "distributed",
             "world_size", "format_version", "versions", "model_repr", "n_parameters")
    old = {k: v for k, v in on_disk.items() if k not in later}
    rc = RunConfig.from_dict(old, "old config.json")
    assert rc.dsr_train_threshold is False and rc.blas_threads == 0 and rc.world_size == 1
    assert rc.input_shape == (1, 8, 8) and rc.model == "lenet"


def test_the_api_takes_a_dict():
    d = _default().to_dict() | {"max_batches": 1, "no_progress": True}
    st = setup_run(d)
    assert isinstance(st.cfg, RunConfig) and st.cfg.input_shape == (1, 8, 8)
    assert st.cfg.n_train == 1438 and st.cfg.max_batches == 1


def test_a_run_folder_written_before_the_change_resumes(tmp_path, capsys):
    run = tmp_path / "run_v1"
    shutil.copytree(FIXTURE, run)
    net, cfg, info = load_run(run)
    assert cfg.model == "lenet" and info["epoch"] == 1
    code = train_cli.cli(["--resume", str(run), "--epochs", "2", "--no-plots"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"resumed from {run / 'last.npz'} at epoch 1/2" in out
    recs = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in recs] == [1, 2]
    meta = read_checkpoint(run / "last.npz")[2]
    assert meta["epoch"] == 2 and meta["config"]["out"] == str(run)
    written = json.loads((run / "config.json").read_text())
    assert RunConfig.from_dict(written, "config.json").stages == ((4, 2),)
