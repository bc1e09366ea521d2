"""Sphinx configuration of the pysnn_ref site: the tutorials (sphinx-gallery: prose, code,
output and figures of every chapter, each downloadable as a notebook), the docs/*.md pages
(MyST) and the API reference from the docstrings.

Build (after ``pip install -e ".[docs]"``)::

    python -m sphinx -W --keep-going docs docs/_build/html

``PYSNN_DOCS_QUICK=1`` runs every chapter in quick mode (``PYSNN_TUTORIAL_QUICK=1``), as
``tests/test_site.py`` does.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))          # the checkout, installed or not

# The chapters read these when they run inside the build.
if os.environ.get("PYSNN_DOCS_QUICK") == "1":
    os.environ["PYSNN_TUTORIAL_QUICK"] = "1"
# figures the chapters save themselves go out of the source tree (the page shows its own copy)
os.environ.setdefault("PYSNN_TUTORIAL_OUT", tempfile.mkdtemp(prefix="pysnn-docs-figures-"))
# Chapter 18 runs its numba.cuda kernels under numba's CUDA simulator where no CUDA driver is
# found; numba reads the switch when it is first imported, which in the build is before that
# chapter runs (all chapters share one process), so it is set here.
if "NUMBA_ENABLE_CUDASIM" not in os.environ and ctypes.util.find_library("cuda") is None:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"


def write_overview() -> None:
    """docs/_generated/overview.md: the top-level README as the site's first page, its links to
    docs/*.md and to tutorials/README.md pointed at the site's own pages (generated at each
    build, not committed; outside docs/*.md, which tests/test_docs_code.py runs)."""
    text = (ROOT / "README.md").read_text()
    text = text.replace("](docs/", "](../").replace("](tutorials/README.md)",
                                                    "](../auto_tutorials/index.rst)")
    out = ROOT / "docs" / "_generated"
    out.mkdir(exist_ok=True)
    (out / "overview.md").write_text(text)


write_overview()

project = "pysnn_ref"
author = "pysnn_ref contributors"
copyright = "pysnn_ref contributors (MIT licence)"
release = version = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

# literal blocks (the docstrings' equations) are text, not Python; code cells say their language
highlight_language = "text"
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "auto_tutorials/*.ipynb", "auto_tutorials/*.py",
                    "auto_tutorials/*.zip", "CONVENTIONS-for-contributors.md", "bench/*.md"]
templates_path: list[str] = []

# MyST: $...$ and $$...$$ math, heading anchors for the pages' #section links
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

# autodoc: a module's members are its __all__; Google-style docstrings through napoleon
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_mock_imports = ["cupy", "mpi4py", "nir", "torch"]
napoleon_google_docstring = True
napoleon_numpy_docstring = True
# the functional layer's docstrings list their arguments under "Inputs:" (CS231n's word)
napoleon_custom_sections = [("Inputs", "params_style")]

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "tutorials"),
    "gallery_dirs": "auto_tutorials",
    "filename_pattern": r"/\d\d_",          # run every chapter, not only plot_*.py
    "within_subsection_order": "FileNameSortKey",
    "remove_config_comments": True,
    # every build runs every chapter (quick or full as asked), never reusing a previous run's
    # output from docs/auto_tutorials
    "run_stale_examples": True,
    "download_all_examples": False,
    "line_numbers": False,
    "min_reported_time": 1,
    "show_signature": False,
    "image_srcset": [],
    # what a cell prints is shown; the value of its last expression is not (it is never the
    # point of a chapter's cell, e.g. threadpool_limits(...)'s object)
    "capture_repr": (),
    "matplotlib_animations": False,
}

html_theme = "alabaster"
html_theme_options = {"page_width": "1300px", "sidebar_width": "240px",
                      "code_font_size": "0.8em",
                      "description": "Training spiking neural networks, by hand"}
html_static_path: list[str] = []
html_show_sourcelink = False
