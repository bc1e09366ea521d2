"""Data paths that are not regular files -- a FIFO, a character device, a folder -- are refused
before they are opened, for every reader (IDX, CIFAR batch, .npz, N-MNIST .bin / .npz events,
checkpoints); zips that are not .npz, empty CIFAR batches and class folders not named by ASCII
digits get one line naming the file (issue 29 item 4, docs/reliability.md).  A FIFO would block
a reader forever: every case runs under a 10 s alarm, and the CLI case under a subprocess
timeout."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pysnn_ref.data import load_dataset
from pysnn_ref.data.datasets import read_idx
from pysnn_ref.data.events import read_events
from pysnn_ref.errors import DataError
from pysnn_ref.train import checkpoint

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def no_hang():
    def fail(signum, frame):
        raise TimeoutError("the reader blocked (opened a FIFO?)")

    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _special(tmp_path: Path, kind: str, name: str) -> Path:
    """A FIFO, a folder, or a path that is the character device /dev/null, named ``name``."""
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(p)
    elif kind == "dir":
        p.mkdir()
    else:
        p.symlink_to("/dev/null")
    return p


#: each reader: (file name it reads, call with the path or its folder)
READERS = {
    "idx": ("train-images-idx3-ubyte", lambda p: read_idx(p, 0x803, "mnist")),
    "cifar10": ("data_batch_1", lambda p: load_dataset("cifar10", p.parent)),
    "npz": ("data.npz", lambda p: load_dataset("npz", p.parent)),   # FOLDER/data.npz
    "events-bin": ("0.bin", read_events),
    "events-npz": ("0.npz", read_events),
    "checkpoint": ("last.npz", checkpoint.read_checkpoint),
}
KINDS = ("fifo", "dir", "device")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reader", list(READERS))
def test_special_files_are_refused_without_opening(tmp_path, reader, kind):
    name, read = READERS[reader]
    p = _special(tmp_path, kind, name)
    with pytest.raises(ValueError) as e:   # DataError is a ValueError
        read(p)
    msg = str(e.value)
    assert str(p) in msg and "not a regular file" in msg and "\n" not in msg, msg


def test_train_cli_with_a_fifo_as_npz_exits_2_at_once(tmp_path):
    fifo = _special(tmp_path, "fifo", "data.npz")
    r = subprocess.run([sys.executable, "-m", "pysnn_ref.train", "--dataset", "npz",
                        "--data-dir", str(fifo), "--out", str(tmp_path / "run")], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(fifo) in lines[0] and "FIFO" in lines[0], r.stderr


def _zip_without_npy(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x", "not an array")
        z.writestr("y", "nor this")
    return path


@pytest.mark.parametrize("read", [lambda p: load_dataset("npz", p), read_events,
                                  checkpoint.read_checkpoint], ids=["npz", "events", "ckpt"])
def test_a_zip_that_is_not_an_npz_names_the_file(tmp_path, read):
    p = _zip_without_npy(tmp_path / "z.npz")
    with pytest.raises(ValueError, match="not .npy arrays") as e:
        read(p)
    assert str(p) in str(e.value)


def test_an_empty_cifar_batch_names_the_file(tmp_path):
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = 0 if name == "test_batch" else 2
        d = {b"data": np.zeros((n, 3072), np.uint8), b"labels": [0] * n}
        (tmp_path / name).write_bytes(pickle.dumps(d))
    with pytest.raises(DataError, match="holds no images") as e:
        load_dataset("cifar10", tmp_path)
    assert str(tmp_path / "test_batch") in str(e.value)


def test_an_event_class_folder_not_named_by_ascii_digits(tmp_path):
    for split in ("Train", "Test"):
        (tmp_path / split / "\u00b2").mkdir(parents=True)   # '²'.isdigit() is True
    with pytest.raises(DataError, match="ASCII digits") as e:
        load_dataset("nmnist", tmp_path)
    assert str(tmp_path / "Train") in str(e.value)


@pytest.mark.parametrize("kind", KINDS)
def test_a_run_folder_whose_last_npz_is_special_is_refused_by_evaluate(tmp_path, kind, capsys):
    from pysnn_ref.train import evaluate

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    p = _special(run, kind, "last.npz")
    assert evaluate.cli([str(run)]) == 2
    err = capsys.readouterr().err
    assert str(p) in err and "not a regular file" in err and len(err.strip().splitlines()) == 1
