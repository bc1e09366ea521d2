"""``--distributed``: a failure on one rank ends every rank promptly (issue 29 item 5).  Rank 0
alone fails (its ``best.npz`` is a folder, so only the writer's checkpoint fails); without the
abort rank 1 would wait in the next epoch's all-reduce forever and ``mpiexec`` would never
return."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_distributed import MPIEXEC  # the one lookup of mpiexec (tests/ is on the path)

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(MPIEXEC is None, reason="mpi4py / mpiexec not installed")
def test_rank0_alone_failing_ends_every_rank_within_seconds(tmp_path):
    run = tmp_path / "run"
    (run / "best.npz").mkdir(parents=True)      # rank 0 cannot write its first checkpoint
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    cmd = [MPIEXEC, "-n", "2", sys.executable, "-m", "pysnn_ref.train", "--epochs", "5",
           "--max-batches", "2", "--max-eval-batches", "1", "--no-plots", "--no-progress",
           "--out", str(run), "--distributed"]
    t0 = time.time()
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    took = time.time() - t0
    assert r.returncode != 0, r.stdout + r.stderr
    lines = [s for s in r.stderr.splitlines() if "pysnn_ref.train: rank 0: error:" in s]
    assert len(lines) == 1 and "best.npz" in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (run / "last.npz").exists()
    print(f"mpiexec exited {r.returncode} after {took:.1f}s")
    assert took < 60
