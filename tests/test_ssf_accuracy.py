"""benchmarks/ssf_accuracy.py (issue 25 item 3): the original (BPTT) and SSF version of each SSF
Table 1 framework trained with the same seed, data order, initial weights and budget.  The
default test runs ``--quick`` (a wiring test, seconds) on two rows and checks the table, the
JSON record and that each pair started from the same weights and saw the same label sequence;
the ``-m slow`` test trains one pair for real and asserts both beat chance clearly."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "ssf_accuracy.py"


def _script():
    """The benchmark, imported by path (a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("ssf_accuracy", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(tmp_path, capsys, *argv):
    acc = _script()
    out = tmp_path / "rec.json"
    assert acc.main([*argv, "--json", str(out)]) == 0
    return acc, capsys.readouterr().out, json.loads(out.read_text())


def test_quick_table_record_and_same_start(tmp_path, capsys):
    acc, text, rec = _run(tmp_path, capsys, "--quick", "--rows", "c10-tet,dvs-tet-ce")
    lines = text.splitlines()
    assert lines[0].startswith("SSF Table 1, accuracy side") and "width 0.0625" in lines[0]
    table = lines[lines.index(acc.HEADER) + 1:]  # the table after the progress lines
    assert [t.split()[0] for t in table[:2]] == ["TET", "TET-CE"]
    assert all(t.rstrip().endswith("yes/yes") for t in table[:2]), table
    assert table[2].startswith("gap = SSF test accuracy")
    assert rec["scale"]["width"] == 0.0625 and rec["scale"]["T"] == 2
    assert [r["row"] for r in rec["rows"]] == ["c10-tet", "dvs-tet-ce"]
    empty = acc.digest([])
    for r in rec["rows"]:
        o, s = r["original"], r["ssf"]
        assert (o["method"], s["method"]) == ("bptt", "ssf")
        for run in (o, s):
            assert 0.0 <= run["train_acc"] <= 1.0 and 0.0 <= run["test_acc"] <= 1.0
            assert run["n_train"] == 48 and run["n_test"] == 32 and run["wall_s"] > 0
            assert len(run["history"]) == 1
        assert r["gap"] == pytest.approx(s["test_acc"] - o["test_acc"])
        # the pair: the same initial weights, the same (observed, non-empty) label sequence
        assert o["init_digest"] == s["init_digest"]
        assert o["order_digest"] == s["order_digest"] != empty
        assert o["params"] == s["params"]
    assert rec["rows"][0]["original"]["input_shape"] == [3, 16, 16]
    assert rec["rows"][1]["original"]["input_shape"] == [2, 34, 34]
    assert rec["rows"][1]["original"]["loss"] == "tet" and rec["rows"][1]["ssf"]["loss"] == "sdt"
    # different networks start differently (the digest sees the weights)
    assert rec["rows"][0]["original"]["init_digest"] != rec["rows"][1]["original"]["init_digest"]


def test_images_resized_by_nearest_neighbour_and_saccade_events():
    acc = _script()
    x = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)
    np.testing.assert_array_equal(acc.resize_nearest(x, 4)[0, 0],
                                  np.kron(x[0, 0], np.ones((2, 2))))
    img = np.zeros((8, 8), np.float32)
    img[2:6, 3] = 1.0
    ev = acc.saccade_events(img)
    assert len(ev) > 0 and set(np.unique(ev.p)) == {0, 1}
    assert ev.x.max() < acc.EVENT_SIZE and ev.y.max() < acc.EVENT_SIZE
    assert np.array_equal(np.unique(ev.t), np.arange(1, 17) * 1000)  # one time per step
    # the saccade returns to its start: as many ON as OFF events over a closed path
    assert (ev.p == 1).sum() == (ev.p == 0).sum()


@pytest.mark.parametrize("argv, msg", [(["--rows", "c10-tet,nope"], "--rows"),
                                       (["--rows", "dvs-tet", "--T", "3"], "T dividing 20"),
                                       (["--dataset", "mnist"], "--data-dir")])
def test_bad_flags_are_one_line_exit_2(argv, msg, capsys):
    with pytest.raises(SystemExit) as e:
        _script().main(argv)
    assert e.value.code == 2 and msg in capsys.readouterr().err


@pytest.mark.slow
def test_one_pair_trained_for_real_both_beat_chance(tmp_path, capsys):
    """TET / VGG-11 on the digits' saccade events, width 1/8, T 4, 2 epochs on the 1437
    training digits (minutes): both runs well above chance (10 %)."""
    _, text, rec = _run(tmp_path, capsys, "--rows", "dvs-tet", "--width", "0.125", "--T", "4",
                        "--epochs", "2")
    r = rec["rows"][0]
    assert r["original"]["init_digest"] == r["ssf"]["init_digest"]
    for side in ("original", "ssf"):
        assert r[side]["test_acc"] > 0.5, text
