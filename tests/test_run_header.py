"""The run header names the surrogate only for the methods whose backward uses it."""

from __future__ import annotations

import pytest

from pysnn_ref.train.__main__ import build_parser, explicit_args, resolve_config
from pysnn_ref.train.loop import train


@pytest.mark.parametrize("method, shown", [("bptt", True), ("ssf", False), ("dsr", False)])
def test_header_names_the_surrogate_only_where_it_is_used(method, shown, tmp_path):
    argv = ["--method", method, "--epochs", "1", "--T", "2", "--max-batches", "1",
            "--no-progress", "--no-plots", "--out", str(tmp_path / "run")]
    lines: list[str] = []
    train(resolve_config(build_parser().parse_args(argv), explicit_args(argv)),
          log=lines.append)
    header = next(s for s in lines if s.startswith("method="))
    assert ("surrogate=" in header) == shown, header
