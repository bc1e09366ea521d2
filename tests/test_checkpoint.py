"""Checkpoints survive kill -9: the last one is always loadable, and ``--resume`` continues
bit-exactly (the same final weights as an uninterrupted run with the same seed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from pysnn_ref.train import checkpoint

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--dataset", "digits", "--epochs", "12", "--max-batches", "3", "--max-eval-batches", "1",
        "--seed", "3", "--no-plots", "--no-progress"]


def _train(*extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pysnn_ref.train", *ARGS, *extra], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def _resume(run: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pysnn_ref.train", "--resume", str(run),
                           "--epochs", "12", "--max-batches", "3", "--max-eval-batches", "1",
                           "--no-plots", "--no-progress"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def _weights(run: Path) -> dict[str, np.ndarray]:
    return checkpoint.read_checkpoint(run / "last.npz")[0]


def test_kill9_then_resume_is_bit_exact(tmp_path):
    full = tmp_path / "full"
    assert _train("--out", str(full)).returncode == 0
    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "pysnn_ref.train", *ARGS, "--out", str(run)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while not (run / "last.npz").exists() and proc.poll() is None and time.time() - t0 < 120:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    model, _, meta = checkpoint.read_checkpoint(run / "last.npz")   # loadable after kill -9
    assert 1 <= meta["epoch"] <= 12 and model
    print("killed at epoch", meta["epoch"])
    if meta["epoch"] < 12:
        r = _resume(run)
        assert r.returncode == 0, r.stderr[-2000:]
    a, b = _weights(full), _weights(run)
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_resume_refuses_nan_weights(tmp_path):
    run = tmp_path / "r"
    assert _train("--out", str(run), "--epochs", "1").returncode == 0
    with np.load(run / "last.npz") as z:
        arrays = {k: z[k] for k in z.files}
    key = next(k for k in arrays if k.startswith("model/"))
    arrays[key] = np.full_like(arrays[key], np.nan)
    np.savez(run / "last.npz", **arrays)
    r = _resume(run)
    assert r.returncode == 2 and "not finite" in r.stderr and "Traceback" not in r.stderr
