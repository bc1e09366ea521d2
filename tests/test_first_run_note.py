"""A first run says that Numba is compiling (the first epoch is slow for that reason alone);
later runs, with the kernels in Numba's cache, do not."""

from __future__ import annotations

import pytest

from pysnn_ref import backend
from pysnn_ref.train.__main__ import build_parser, explicit_args, resolve_config
from pysnn_ref.train.loop import train


@pytest.mark.parametrize("cached", [False, True])
def test_first_run_says_it_compiles(cached, tmp_path, monkeypatch):
    monkeypatch.setattr(backend, "cpu_kernels_cached", lambda: cached)
    argv = ["--epochs", "1", "--T", "2", "--max-batches", "2", "--no-progress",
            "--out", str(tmp_path / "run")]
    lines: list[str] = []
    train(resolve_config(build_parser().parse_args(argv), explicit_args(argv)),
          log=lines.append)
    noted = [s for s in lines if "compiles the CPU kernels" in s]
    assert len(noted) == (0 if cached else 1)


def test_the_cache_probe_finds_numbas_cache_after_a_kernel_ran():
    """Running a CPU kernel compiles it with ``cache=True``, which writes the index files the
    probe looks for (this checks the probe looks where Numba writes)."""
    import numpy as np

    from pysnn_ref.functional.neuron import lif_forward

    lif_forward(np.ones((3, 2, 4), np.float32), lam=0.5, v_th=1.0)
    assert backend.cpu_kernels_cached()
