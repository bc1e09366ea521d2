"""python -m pysnn_ref.bench --paper ssf-table1 (bench/paper.py): the rows, their parameter
counts, the wiring of one tiny timed run and the one-line errors."""

from __future__ import annotations

import re

import pytest

from pysnn_ref.bench import __main__ as bench
from pysnn_ref.bench import paper


def _run(argv, capsys):
    try:
        rc = bench.cli(argv)
    except SystemExit as e:  # argparse usage errors
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_table1_rows_are_the_papers():
    """Every row's printed ratio is its two times' ratio (to the printed 2 decimals), except
    SEW's, where Table 1 prints 2.95 for 7231.4 / 2250.3 = 3.21."""
    assert len(paper.TABLE1) == 8
    for r in paper.TABLE1:
        ratio = r.paper_bptt_s / r.paper_ssf_s
        if r.key == "tiny-sew":
            assert round(ratio, 2) == 3.21 and r.paper_ratio == 2.95
        else:
            assert abs(ratio - r.paper_ratio) < 0.01, r.key


def test_dry_run_prints_every_row_with_its_parameter_count(capsys):
    rc, out, _ = _run(["--paper", "ssf-table1", "--dry-run"], capsys)
    assert rc == 0
    for key, params in (("resnet19", "12.70M"), ("preact_resnet18", "11.18M"),
                        ("vgg11", "9.27M"), ("sew_resnet34", "21.39M")):
        assert re.search(rf"{key}\s+{re.escape(params)}", out), (key, out)
    assert "RecDis rows" in out and "no public code" in out


def test_tiny_timed_run(capsys):
    """Two rows at T = 2 on 8x8 images: both backward times measured, ratio = their quotient."""
    rc, out, _ = _run(["--paper", "ssf-table1", "--T", "2", "--image-size", "8",
                       "--rows", "dvs-tet-ce,c10-tdbn"], capsys)
    assert rc == 0, out
    rows = [ln for ln in out.splitlines() if ln.startswith(("DVS-CIFAR10", "CIFAR-10"))]
    assert len(rows) == 2
    for ln in rows:
        bptt, ssf, ours, paper_ratio = re.search(
            r"([\d.]+)\s+([\d.]+)\s+([\d.]+)x\s+([\d.]+)x", ln).groups()
        assert float(bptt) > 0 and float(ssf) > 0
        assert abs(float(ours) - float(bptt) / float(ssf)) < 0.01 * float(ours) + 0.006
    assert "2.08x" in rows[0] and "2.07x" in rows[1]  # in Table 1's order


@pytest.mark.parametrize("argv, needle", [
    (["--rows", "c10-tdbn,nope"], "--rows"),
    (["--T", "0"], "T"),
    (["--batch-size", "x"], "batch-size"),
])
def test_bad_input_one_line_exit_2(argv, needle, capsys):
    rc, _, err = _run(["--paper", "ssf-table1", *argv], capsys)
    assert rc == 2
    lines = [s for s in err.splitlines() if s.strip()]
    assert len(lines) == 1 and needle in lines[0], err


# ---------------------------------------------------------------------------------------------
# --paper ssf-table2: SSF vs DSR (whole training step)
# ---------------------------------------------------------------------------------------------

_T2_ROW = re.compile(r"^\s*(\d+) (bptt|ssf|dsr|dsr-noF)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+"
                     r"([\d.]+)\s+([\d.]+)x\s+([\d.]+)x\s+(-|[\d.]+x)$")


def test_table2_tiny_timed_run_prints_every_method_and_T(capsys):
    """Wiring, not timing: at 8 x 8 images and T = 2, 3 every (T, method) row is printed in
    order with positive finite times, step = the sum of its parts, bptt's speed-ups 1.00x, and
    the paper's column '-' (Table 2 gives speed-ups at T = 20 only)."""
    import math
    rc, out, _ = _run(["--paper", "ssf-table2", "--T", "2,3", "--image-size", "8"], capsys)
    assert rc == 0, out
    rows = [m.groups() for m in map(_T2_ROW.match, out.splitlines()) if m]
    assert [(int(r[0]), r[1]) for r in rows] == [(T, m) for T in (2, 3)
                                                 for m in ("bptt", "ssf", "dsr", "dsr-noF")]
    for r in rows:
        f, b, u, step, sx, bx = map(float, r[2:8])
        assert all(math.isfinite(v) and v > 0 for v in (f, b, u, step, sx, bx)), r
        assert abs(step - (f + b + u)) < 0.0021, r
        assert r[8] == "-"
        if r[1] == "bptt":
            assert sx == 1.0 and bx == 1.0


def test_table2_dry_run_shows_the_papers_cells(capsys):
    rc, out, _ = _run(["--paper", "ssf-table2", "--dry-run", "--image-size", "8"], capsys)
    assert rc == 0
    lines = out.splitlines()
    assert any(ln.split()[:2] == ["20", "ssf"] and ln.endswith("2.75x") for ln in lines)
    assert any(ln.split()[:2] == ["20", "dsr"] and ln.endswith("2.69x") for ln in lines)
    assert sum(ln.split()[:1] in (["5"], ["10"], ["20"]) for ln in lines) == 12
    assert "dsr-noF: alpha 1" in out


@pytest.mark.parametrize("argv, needle", [(["--T", "5,x"], "--T"), (["--T", ""], "--T"),
                                          (["--repeats", "0"], "repeats")])
def test_table2_bad_input_one_line_exit_2(argv, needle, capsys):
    rc, _, err = _run(["--paper", "ssf-table2", *argv], capsys)
    lines = [s for s in err.splitlines() if s.strip()]
    assert rc == 2 and len(lines) == 1 and needle in lines[0], err
