"""The documentation site builds, and every tutorial chapter is a page of its own run (issue 27).

The site is built once per session the way the README says (``python -m sphinx -W --keep-going
docs OUT``) with ``PYSNN_DOCS_QUICK=1`` (every chapter executed in quick mode) and warnings as
errors: an RST mistake in a chapter's prose or a docstring, a broken cross-reference, a chapter
that fails, all fail the build.  Then every chapter's page must show what running it produced --
its figures, its ``Verification`` line -- and offer the chapter as a notebook.  The chapters are
found by the same pattern as ``tests/test_tutorials.py`` uses, so new ones are picked up.

Skipped, with the reason, only where the ``docs`` extra (sphinx, sphinx-gallery, myst-parser) is
not installed.
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))

for _module in ("sphinx", "sphinx_gallery", "myst_parser"):
    pytest.importorskip(_module, reason=f"{_module} is not installed: the site needs the docs "
                                        "extra (pip install -e '.[docs]')")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, PYSNN_DOCS_QUICK="1", MPLBACKEND="Agg",
               PYSNN_TUTORIAL_OUT=str(tmp_path_factory.mktemp("figures")))
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going",
                           "-q", "docs", str(out)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=3600)
    assert proc.returncode == 0, (f"the site did not build cleanly (rc {proc.returncode}):\n"
                                  + proc.stdout[-4000:] + "\n--- stderr ---\n"
                                  + proc.stderr[-6000:])
    return out


def _text(page: str) -> str:
    """The page's visible text, roughly: tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_chapter_page_has_its_figures_output_and_notebook(site: Path, chapter: Path) -> None:
    page_path = site / "auto_tutorials" / f"{chapter.stem}.html"
    assert page_path.is_file(), f"no page for {chapter.name}"
    page = page_path.read_text()
    # the figures the chapter drew, captured by sphinx-gallery, each an image file of the site
    images = re.findall(rf'src="(\.\./_images/sphx_glr_{chapter.stem}_\d+\.png)"', page)
    assert images, f"{chapter.name}: no figure on its page"
    for src in images:
        assert (page_path.parent / src).resolve().stat().st_size > 0, src
    # what it printed, down to the Verification line
    assert re.search(r"^\s*Verification", _text(page), re.M), \
        f"{chapter.name}: its page shows no Verification line"
    # the chapter as a notebook (and as a script), downloadable from the page
    for ext in ("ipynb", "py"):
        link = re.search(rf'href="(\.\./_downloads/[0-9a-f]+/{chapter.stem}\.{ext})"', page)
        assert link, f"{chapter.name}: no .{ext} download on its page"
        assert (page_path.parent / link.group(1)).resolve().is_file(), link.group(1)


def test_pages_and_api_reference_are_built(site: Path) -> None:
    for page in ("index", "_generated/overview", "methods", "derivations", "training",
                 "auto_tutorials/index", "api/index", "api/functional"):
        assert (site / f"{page}.html").is_file(), page
    api = (site / "api" / "functional.html").read_text()
    # the docstrings' functions, with the paper equations they cite
    assert 'id="pysnn_ref.functional.neuron.lif_forward"' in api
    assert "SSF Eqs. 6-7" in _text(api)
    # the gallery's index links every chapter, in order
    index = (site / "auto_tutorials" / "index.html").read_text()
    found = [m for m in re.findall(r'href="(\d\d_\w+)\.html', index)]
    assert list(dict.fromkeys(found)) == [c.stem for c in CHAPTERS]
