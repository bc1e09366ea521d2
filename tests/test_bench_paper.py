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
