"""The tutorial chapters run to the end: each is a script whose own ``assert``s check what it
demonstrates (gradient checks, kernel equality, accuracy reached), so a broken library makes a
chapter exit non-zero.

The default suite runs every chapter in quick mode (``PYSNN_TUTORIAL_QUICK=1``: fewer epochs,
smaller sizes); ``-m slow`` runs them at full size, as a reader would.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
CHAPTERS = sorted(TUTORIALS.glob("[0-9][0-9]_*.py"))


def _run(chapter: Path, out: Path, quick: bool, timeout: float) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.update(
        PYSNN_TUTORIAL_QUICK="1" if quick else "0",
        PYSNN_TUTORIAL_OUT=str(out),
        MPLBACKEND="Agg",
        # the scripts import pysnn_ref: make the checkout importable without an install
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
    )
    return subprocess.run([sys.executable, str(chapter)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _check(proc: subprocess.CompletedProcess, chapter: Path, out: Path) -> None:
    tail = (proc.stdout[-3000:] + "\n--- stderr ---\n" + proc.stderr[-3000:])
    assert proc.returncode == 0, f"{chapter.name} exited with {proc.returncode}:\n{tail}"
    assert "done" in proc.stdout.splitlines()[-1].lower(), tail
    # every figure the chapter announces was written
    for name in re.findall(r"(\d\d_[\w]+\.png)", proc.stdout):
        assert (out / name).stat().st_size > 0, f"{chapter.name} did not write {name}"


def test_chapters_are_numbered_from_01_without_gaps_and_the_readme_lists_them() -> None:
    assert len(CHAPTERS) >= 12, [c.name for c in CHAPTERS]
    numbers = [int(c.name[:2]) for c in CHAPTERS]
    assert numbers == list(range(1, len(CHAPTERS) + 1)), [c.name for c in CHAPTERS]
    readme = (TUTORIALS / "README.md").read_text()
    for chapter in CHAPTERS:
        assert chapter.name in readme, f"tutorials/README.md does not list {chapter.name}"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_chapter_runs_quick(chapter: Path, tmp_path: Path) -> None:
    _check(_run(chapter, tmp_path, quick=True, timeout=120), chapter, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_chapter_runs_full(chapter: Path, tmp_path: Path) -> None:
    _check(_run(chapter, tmp_path, quick=False, timeout=600), chapter, tmp_path)
