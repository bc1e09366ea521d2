"""The window-partition supplement's closed forms (pysnn_ref.ecml): Table 1 and Eqs. 1-2."""

import re
import subprocess
import sys

import numpy as np
import pytest

from pysnn_ref import ecml

S_PRINTED = [0.05, 0.16, 0.22, 0.24, 0.20]
D_PRINTED = [-0.31, -0.21, -0.14, -0.13, -0.17]


def test_table1_values_truncated_match_paper():
    rows = ecml.table1(0.5)
    assert [r[0] for r in rows] == list(ecml.TABLE1_THETA)
    assert [ecml.truncate2(s) for _, s, _ in rows] == S_PRINTED
    assert [ecml.truncate2(d) for _, _, d in rows] == D_PRINTED


def test_surface_formula_against_direct_evaluation():
    th, t = 0.5, 0.3
    direct = 16 * np.sin(3 * t * np.pi * th / 2) * np.sin(t * np.pi * th / 4) ** 2 / (
        t ** 2 * np.pi ** 2)
    assert float(ecml.surface_area(t, th)) == pytest.approx(direct, rel=1e-14)


def test_surface_shape_rises_then_falls():
    # S(theta) -> 0 as theta -> 0 (like theta * (small-angle)), positive, one peak in (0.5, 0.9)
    theta = np.linspace(0.01, 1.0, 200)
    S = ecml.surface_area(theta, 0.5)
    assert np.all(S > 0)
    assert S[0] < 0.01
    k = int(np.argmax(S))
    assert 0.5 < theta[k] < 0.9
    assert np.all(np.diff(S[:k + 1]) > 0) and np.all(np.diff(S[k:]) < 0)
    # small-angle limit: 16 * (3 t pi th/2) (t pi th/4)^2 / (t^2 pi^2) = 3/2 pi th^3 t
    assert float(ecml.surface_area(1e-4, 0.5)) == pytest.approx(1.5 * np.pi * 0.125 * 1e-4,
                                                               rel=1e-6)


def test_delta_d_is_surface_minus_plane():
    assert ecml.plane_area(0.5) == 0.375
    assert float(ecml.delta_d(0.7)) == pytest.approx(float(ecml.surface_area(0.7)) - 0.375)


def test_truncate_toward_zero():
    assert ecml.truncate2(0.0583) == 0.05 and ecml.truncate2(-0.3167) == -0.31
    assert ecml.truncate2(0.20) == 0.20


def test_complexity_eq1_eq2():
    assert ecml.complexity_scnn(4, 5, 3, 3) == 4 * 3 * 3 * 5 * 2
    assert ecml.complexity_lsnn(4, 5) == 4 * 5 * 8 + 5 * (5 * 8 + 20)
    assert ecml.complexity_ratio_approx(64, 64, 3, 3) == pytest.approx(9 / 8)
    # the approximation is the leading order: exact ratio tends to it for large d
    d = 10 ** 6
    exact = ecml.complexity_scnn(d, d, 3, 3) / ecml.complexity_lsnn(d, d)
    assert exact == pytest.approx(ecml.complexity_ratio_approx(d, d, 3, 3), rel=1e-5)


@pytest.mark.parametrize("call", [lambda: ecml.complexity_lsnn(0, 3),
                                  lambda: ecml.complexity_scnn(2, 2, 3, 1.5),
                                  lambda: ecml.surface_area(0.0),
                                  lambda: ecml.plane_area(-1.0)])
def test_bad_input_value_error(call):
    with pytest.raises(ValueError):
        call()


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "pysnn_ref.ecml", *args],
                          capture_output=True, text=True)


def test_cli_table1_prints_paper_numbers():
    r = _cli("table1")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    s_line = next(ln for ln in lines if ln.startswith("S(th=0.5)"))
    d_line = next(ln for ln in lines if ln.startswith("nabla D"))
    strip = lambda ln: [float(v) for v in re.findall(r"(?<!\[)-?\d+\.\d{2}(?=\s\[)", ln)]  # noqa: E731
    assert strip(s_line) == S_PRINTED
    assert strip(d_line) == D_PRINTED


def test_cli_complexity_and_bad_args():
    r = _cli("complexity", "--dx", "64", "--dh", "64", "--k", "3")
    assert r.returncode == 0 and "73728" in r.stdout and "66816" in r.stdout
    r = _cli("complexity", "--dx", "0", "--dh", "3")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "dx" in r.stderr
