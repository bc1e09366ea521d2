"""The tutorial chapters run to the end: each is a script whose own ``assert``s check what it
demonstrates (gradient checks, kernel equality, accuracy reached), so a broken library makes a
chapter exit non-zero.

The default suite runs every chapter in quick mode (``PYSNN_TUTORIAL_QUICK=1``: fewer epochs,
smaller sizes); ``-m slow`` runs them at full size, as a reader would.

Beyond running, each chapter must (issue 12): save at least one figure whose every axes has a
title (or the figure a suptitle) and labelled axes -- checked inside ``Figure.savefig`` by the
small runner below -- cite the paper equations it implements, in its docstring and in what it
prints, and print a "Verification" summary of what its asserts checked.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
CHAPTERS = sorted(TUTORIALS.glob("[0-9][0-9]_*.py"))
# a paper named next to an equation, algorithm, section, figure or table number
CITATION = re.compile(r"\b(SSF|ASF|TET|Dspike|WP)\b[^\n]*?\b(Eqs?\.|Alg\.|Sec\.|Fig\.|Table)\s*\d")

# Runs the chapter with Figure.savefig checking every axes first (python -c RUNNER chapter.py).
RUNNER = r"""
import runpy, sys
from matplotlib.figure import Figure

_savefig = Figure.savefig


def problems(fig):
    out = []
    sup = fig._suptitle.get_text() if fig._suptitle is not None else ""
    for i, ax in enumerate(fig.axes):
        if not ax.get_visible():
            continue
        if hasattr(ax, "_colorbar"):
            if not (ax.get_ylabel() or ax.get_xlabel()):
                out.append(f"axes {i}: colorbar without a label")
            continue
        twins = ax.get_shared_x_axes().get_siblings(ax) + ax.get_shared_y_axes().get_siblings(ax)
        if not (sup or any(t.get_title(loc) for t in twins for loc in ("center", "left", "right"))):
            out.append(f"axes {i}: no title (and no suptitle)")
        if not ax.axison:
            continue  # a picture (the digit itself): its title is enough
        if not any(t.get_xlabel() for t in ax.get_shared_x_axes().get_siblings(ax)):
            out.append(f"axes {i} {ax.get_title()!r}: no x label")
        if not any(t.get_ylabel() for t in ax.get_shared_y_axes().get_siblings(ax)):
            out.append(f"axes {i} {ax.get_title()!r}: no y label")
    return out


def savefig(self, fname, *args, **kwargs):
    bad = problems(self)
    if bad:
        raise AssertionError(f"figure {fname}: " + "; ".join(bad))
    print(f"FIGURE-CHECKED {fname}", file=sys.stderr)
    return _savefig(self, fname, *args, **kwargs)


Figure.savefig = savefig
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _run(chapter: Path, out: Path, quick: bool, timeout: float) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.update(
        PYSNN_TUTORIAL_QUICK="1" if quick else "0",
        PYSNN_TUTORIAL_OUT=str(out),
        MPLBACKEND="Agg",
        # the scripts import pysnn_ref: make the checkout importable without an install
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
    )
    return subprocess.run([sys.executable, "-c", RUNNER, str(chapter)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _check(proc: subprocess.CompletedProcess, chapter: Path, out: Path) -> None:
    tail = (proc.stdout[-3000:] + "\n--- stderr ---\n" + proc.stderr[-3000:])
    assert proc.returncode == 0, f"{chapter.name} exited with {proc.returncode}:\n{tail}"
    assert "done" in proc.stdout.splitlines()[-1].lower(), tail
    # every figure the chapter announces was written
    for name in re.findall(r"(\d\d_[\w]+\.png)", proc.stdout):
        assert (out / name).stat().st_size > 0, f"{chapter.name} did not write {name}"
    figures = re.findall(r"^FIGURE-CHECKED (.+)$", proc.stderr, re.M)
    assert figures and all(Path(f).stat().st_size > 0 for f in figures), tail
    assert CITATION.search(proc.stdout), f"{chapter.name} prints no paper equation citation"
    # the chapter ends by printing what it verified (its asserts are what make it fail)
    assert re.search(r"^Verification", proc.stdout, re.M), f"{chapter.name}: no Verification line"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_chapter_docstring_cites_paper_equations(chapter: Path) -> None:
    doc = ast.get_docstring(ast.parse(chapter.read_text())) or ""
    assert CITATION.search(doc), f"{chapter.name}: the docstring cites no paper equation"


def test_chapters_are_numbered_from_01_without_gaps_and_the_readme_lists_them() -> None:
    assert len(CHAPTERS) >= 12, [c.name for c in CHAPTERS]
    numbers = [int(c.name[:2]) for c in CHAPTERS]
    assert numbers == list(range(1, max(numbers) + 1)), [c.name for c in CHAPTERS]
    readme = (TUTORIALS / "README.md").read_text()
    for chapter in CHAPTERS:
        assert chapter.name in readme, f"tutorials/README.md does not list {chapter.name}"
        # its table row ends with the measured "full / quick (s)" times
        row = next((line for line in readme.splitlines()
                    if line.startswith(f"| [`{chapter.name}`]")), "")
        assert re.search(r"\| [\d.]+ / [\d.]+ \|$", row), f"README row of {chapter.name}: {row!r}"


def test_the_figure_check_catches_an_unlabelled_axes(tmp_path: Path) -> None:
    script = tmp_path / "99_bad.py"
    script.write_text("from matplotlib.figure import Figure\n"
                      "fig = Figure()\nax = fig.subplots()\nax.plot([0, 1])\n"
                      "ax.set_title('t')\nax.set_xlabel('x')\n"
                      f"fig.savefig({str(tmp_path / '99_bad.png')!r})\n")
    proc = _run(script, tmp_path, quick=True, timeout=60)
    assert proc.returncode != 0 and "no y label" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_chapter_runs_quick(chapter: Path, tmp_path: Path) -> None:
    _check(_run(chapter, tmp_path, quick=True, timeout=120), chapter, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_chapter_runs_full(chapter: Path, tmp_path: Path) -> None:
    _check(_run(chapter, tmp_path, quick=False, timeout=600), chapter, tmp_path)
