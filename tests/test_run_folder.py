"""One writer per run folder, nothing lost (issue 29 item 2, docs/reliability.md): the run-folder
lock, ``--resume A --out B`` never clobbering B, two resumes at once, SIGINT / SIGTERM before the
first checkpoint and mid-run followed by a resume or a restart, atomic writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pysnn_ref.train import checkpoint
from pysnn_ref.train.files import RunLock, atomic_write, atomic_write_text
from pysnn_ref.train.schema import read_metrics

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--max-batches", "2", "--max-eval-batches", "1", "--no-plots", "--no-progress"]
PROG = "python -m pysnn_ref.train"


def _argv(*extra: str) -> list[str]:
    return [sys.executable, "-m", "pysnn_ref.train", *QUICK, *extra]


def _run(*extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(_argv(*extra), cwd=ROOT, capture_output=True, text=True, timeout=300)


def _files(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run.iterdir()) if p.name != ".lock"}


def _epochs(run: Path) -> list[int]:
    return [m["epoch"] for m in read_metrics(run / "metrics.jsonl")]


def _one_error_line(r: subprocess.CompletedProcess) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    return lines[0]


# ---- the lock and the atomic writes (in-process) -------------------------------------------

def test_lock_refuses_a_second_writer_and_is_released(tmp_path):
    run = tmp_path / "run"
    with RunLock(run) as lock:
        assert lock.held and (run / ".lock").read_text().strip() == str(os.getpid())
        with pytest.raises(ValueError, match=r"being written by another process \(pid \d+"):
            RunLock(run)
    RunLock(run).release()   # free again after release


def test_lock_is_released_when_its_process_is_killed(tmp_path):
    run = tmp_path / "run"
    code = ("import sys, time; from pysnn_ref.train.files import RunLock; "
            f"l = RunLock({str(run)!r}); print('locked', flush=True); time.sleep(60)")
    p = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.stdout.readline().strip() == "locked"
    with pytest.raises(ValueError, match="another process"):
        RunLock(run)
    p.kill()
    p.wait(timeout=10)
    RunLock(run).release()   # the OS freed the flock of the killed process


def test_atomic_write_keeps_the_old_file_and_no_tmp_on_failure(tmp_path):
    path = tmp_path / "config.json"
    atomic_write_text(path, "old\n")

    def boom(f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(path, boom)
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


# ---- the CLI: refusing to clobber, concurrent resumes, signals ------------------------------

def test_resume_into_another_run_is_refused_and_into_a_new_folder_copies(tmp_path):
    a, b, c = tmp_path / "A", tmp_path / "B", tmp_path / "C"
    assert _run("--epochs", "2", "--out", str(a)).returncode == 0
    assert _run("--epochs", "1", "--seed", "5", "--out",
                str(b)).returncode == 0
    before_a, before_b = _files(a), _files(b)
    r = _run("--resume", str(a), "--out", str(b), "--epochs", "3")
    assert r.returncode == 2
    assert "already holds a run" in _one_error_line(r)
    assert _files(b) == before_b          # nothing of B was touched
    r = _run("--resume", str(a), "--out", str(c), "--epochs", "3")
    assert r.returncode == 0, r.stderr[-2000:]
    assert _files(a) == before_a          # the resumed run is read, never written
    assert _epochs(c) == [1, 2, 3] and (c / "best.npz").is_file()
    assert checkpoint.read_checkpoint(c / "last.npz")[2]["epoch"] == 3


def test_two_resumes_at_once_one_is_refused_nothing_duplicated(tmp_path):
    run = tmp_path / "run"
    assert _run("--epochs", "2", "--out", str(run)).returncode == 0
    procs = [subprocess.Popen(_argv("--resume", str(run), "--epochs", "7"), cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    refused = [e for p, (_, e) in zip(procs, outs, strict=True) if p.returncode == 2]
    if codes == [0, 0]:   # the second started after the first had finished: nothing to train
        assert any("nothing to train" in o for o, _ in outs)
    else:
        assert codes == [0, 2], outs
        assert ("being written by another process" in refused[0]
                or "another process moved the run" in refused[0]), refused[0]
        assert len(refused[0].strip().splitlines()) == 1
    assert _epochs(run) == list(range(1, 8))
    assert checkpoint.read_checkpoint(run / "last.npz")[2]["epoch"] == 7


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("ref") / "run"
    r = _run("--epochs", "4", "--seed", "2", "--out", str(run))
    assert r.returncode == 0, r.stderr[-2000:]
    return run


def _wait_for(cond, proc, limit=120.0) -> None:
    t0 = time.time()
    while not cond() and proc.poll() is None and time.time() - t0 < limit:
        time.sleep(0.005)


@pytest.mark.parametrize("sig,when", [(signal.SIGINT, "before-checkpoint"),
                                      (signal.SIGTERM, "before-checkpoint"),
                                      (signal.SIGINT, "mid-run"),
                                      (signal.SIGTERM, "mid-run")])
def test_signal_then_resume_or_restart_loses_nothing(tmp_path, reference_run, sig, when):
    run = tmp_path / "run"
    flags = ("--epochs", "4", "--seed", "2")
    p = subprocess.Popen(_argv(*flags, "--out", str(run)), cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    if when == "before-checkpoint":
        _wait_for(lambda: (run / "config.json").exists(), p)
    else:
        _wait_for(lambda: (run / "last.npz").exists() and len(_epochs(run)) >= 1, p)
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    if p.returncode != 0:   # it stopped (not finished before the signal arrived)
        code, word = (130, "interrupted") if sig == signal.SIGINT else (143, "terminated")
        assert p.returncode == code, err[-2000:]       # 128 + the signal's number
        assert err.strip().splitlines()[-1] == f"{PROG}: {word}"
        assert "Traceback" not in err
    assert not [f.name for f in run.iterdir() if ".tmp" in f.name]   # no temporary left
    print(sig, when, "exit", p.returncode, "epochs kept", _epochs(run),
          "last.npz" if (run / "last.npz").exists() else "no checkpoint")
    if (run / "last.npz").exists():
        r = _run("--resume", str(run), "--epochs", "4")
    else:   # stopped before the first checkpoint: --resume says so, --out starts it over
        r = _run("--resume", str(run), "--epochs", "4")
        assert r.returncode == 2 and "stopped before its first checkpoint" in \
            _one_error_line(r)
        r = _run(*flags, "--out", str(run))
    assert r.returncode == 0, r.stderr[-2000:]
    assert _epochs(run) == [1, 2, 3, 4]
    a = checkpoint.read_checkpoint(reference_run / "last.npz")[0]
    b = checkpoint.read_checkpoint(run / "last.npz")[0]
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
