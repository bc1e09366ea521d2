"""The repository stands alone: nothing in it points at the developers' notes outside the
checkout (``../shared``: the papers' text, research notes). Papers are cited by title, venue and
arXiv/DOI; authors' code by its repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = re.compile(r"\.\./shared|/work/shared|shared/papers|\b(REFERENCES|PLATFORM|METHODS-FAMILY"
                     r"|DESIGN)\.md\b")


def _tracked() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:      # not a git checkout (e.g. an sdist): every text file instead
        return [p for p in ROOT.rglob("*") if p.is_file() and ".git" not in p.parts]
    return [ROOT / f for f in out.stdout.splitlines()]


def test_no_file_points_outside_the_repository():
    this = Path(__file__).resolve()
    hits = []
    for path in _tracked():
        if path.resolve() == this or path.suffix not in (".py", ".md", ".cfg", ".toml", ".txt",
                                                         ".sh", "") or not path.is_file():
            continue
        for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()[:100]}")
    assert not hits, "references outside the repository:\n" + "\n".join(hits)


def test_the_pattern_catches_a_reference():
    assert OUTSIDE.search("the papers are in `../shared/papers/`")
    assert OUTSIDE.search("see REFERENCES.md Sec. 1.1")
    assert not OUTSIDE.search("github.com/neural-lab/ASF-BP")
