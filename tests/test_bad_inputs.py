"""Bad inputs get one clear line, never a traceback (issue 10, docs/reliability.md).

CLI cases call the ``cli`` entry points in-process (``run_main``: one ``<prog>: error:`` line on
stderr, exit 2) and a few through a subprocess; API cases assert the exception type and a
one-line message naming the parameter or file.
"""

from __future__ import annotations

import gzip
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pysnn_ref.data import datasets as data
from pysnn_ref.data import load_dataset
from pysnn_ref.errors import DataError
from pysnn_ref.functional.neuron import lif_backward, lif_forward
from pysnn_ref.gradcheck import __main__ as gradcheck_cli
from pysnn_ref.train import __main__ as train_cli
from pysnn_ref.train import checkpoint
from pysnn_ref.train import evaluate as evaluate_cli

ROOT = Path(__file__).resolve().parents[1]


def _one_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


def _cli(fn, argv, capsys, code=2) -> str:
    try:
        rc = fn(argv)
    except SystemExit as e:   # argparse usage errors
        rc = e.code
    out = capsys.readouterr()
    assert rc == code, (rc, out.err)
    return _one_line(out.err)


# ---- CLI arguments ---------------------------------------------------------------------------

TRAIN_ARGS = [
    ["--dataset", "nope"], ["--epochs", "0"], ["--epochs", "x"], ["--batch-size", "-1"],
    ["--lr", "nan"], ["--lr", "-1"], ["--lam", "2"], ["--v-th", "0"], ["--model", "nope"],
    ["--method", "nope"], ["--loss", "nope"], ["--dtype", "float16"], ["--seed", "-3"],
    ["--dataset", "mnist"], ["--dataset", "npz", "--data-dir", "/nonexistent/x.npz"],
    ["--tit", "a,b"], ["--max-batches", "0"], ["--surrogate", "nope"], ["--unknown-flag"],
    ["--resume", "/nonexistent/run"],
]


@pytest.mark.parametrize("argv", TRAIN_ARGS, ids=[" ".join(a) for a in TRAIN_ARGS])
def test_train_bad_args(argv, capsys, tmp_path):
    line = _cli(train_cli.cli, argv + ["--out", str(tmp_path / "run"), "--no-plots",
                                       "--no-progress"], capsys)
    assert "error" in line


EVAL_ARGS = [["/nonexistent/run"], ["--checkpoint", "worst", "x"], ["--T", "0", "x"], []]


@pytest.mark.parametrize("argv", EVAL_ARGS, ids=[" ".join(a) or "none" for a in EVAL_ARGS])
def test_evaluate_bad_args(argv, capsys):
    assert "error" in _cli(evaluate_cli.cli, argv, capsys)


BENCH_ARGS = [["--model", "nope"], ["--batch-size", "0"], ["--repeats", "-1"],
              ["--dtype", "int8"], ["--device", "tpu"]]


@pytest.mark.parametrize("argv", BENCH_ARGS, ids=[" ".join(a) for a in BENCH_ARGS])
def test_bench_bad_args(argv, capsys):
    from pysnn_ref.bench import __main__ as bench
    assert "error" in _cli(bench.cli, argv, capsys)


def test_gradcheck_bad_device(capsys):
    assert "error" in _cli(gradcheck_cli.main, ["--device", "tpu"], capsys)


def test_train_bad_dataset_subprocess():
    p = subprocess.run([sys.executable, "-m", "pysnn_ref.train", "--dataset", "nope"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "dataset" in _one_line(p.stderr)


# ---- data files ------------------------------------------------------------------------------

def _idx(arr: np.ndarray) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    return (struct.pack(">I", 0x800 | arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
            + arr.tobytes())


def _mnist(root: Path, n=4, hw=(28, 28), labels=None) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "t10k"):
        (root / f"{split}-images-idx3-ubyte").write_bytes(
            _idx(rng.integers(0, 256, (n,) + hw)))
        y = labels if labels is not None else rng.integers(0, 10, n)
        (root / f"{split}-labels-idx1-ubyte").write_bytes(_idx(y))


def _mnist_case(tmp_path, kind):
    _mnist(tmp_path)
    img = tmp_path / "train-images-idx3-ubyte"
    raw = img.read_bytes()
    if kind == "truncated-gz":
        img.unlink()
        (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw)[:-20])
    elif kind == "garbage-gz":
        img.unlink()
        (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8bgarbage!")
    elif kind == "truncated":
        img.write_bytes(raw[:-5])
    elif kind == "empty":
        img.write_bytes(b"")
    elif kind == "wrong-dims":
        _mnist(tmp_path, hw=(5, 5))
    elif kind == "label-range":
        _mnist(tmp_path, labels=np.array([0, 1, 200, 3]))
    elif kind == "count":
        (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx(np.zeros(3)))
    return load_dataset("mnist", tmp_path)


MNIST_CASES = ["truncated-gz", "garbage-gz", "truncated", "empty", "wrong-dims", "label-range",
               "count"]


@pytest.mark.parametrize("kind", MNIST_CASES)
def test_mnist_bad_files(tmp_path, kind):
    with pytest.raises(DataError) as e:
        _mnist_case(tmp_path, kind)
    msg = str(e.value)
    assert "\n" not in msg and "mnist: cannot read" in msg and str(tmp_path) in msg


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


NPZ_CASES = {
    "labels-1e9": dict(x=np.zeros((4, 3)), y=np.array([0, 1, 10**9, 2])),
    "negative-label": dict(x=np.zeros((4, 3)), y=np.array([0, -1, 1, 2])),
    "nan-pixels": dict(x=np.array([[np.nan, 0, 0]] * 4), y=np.array([0, 1, 0, 1])),
    "inf-pixels": dict(x=np.array([[np.inf, 0, 0]] * 4), y=np.array([0, 1, 0, 1])),
    "too-big-for-float32": dict(x=np.full((4, 3), 1e300), y=np.array([0, 1, 0, 1])),
    "count": dict(x=np.zeros((4, 3)), y=np.array([0, 1, 0])),
    "float-labels": dict(x=np.zeros((4, 3)), y=np.array([0.0, 1, 0, 1])),
    "1-d-x": dict(x=np.zeros(4), y=np.array([0, 1, 0, 1])),
    "5-d-x": dict(x=np.zeros((4, 1, 1, 2, 2)), y=np.array([0, 1, 0, 1])),
    "empty-x": dict(x=np.zeros((0, 3)), y=np.zeros(0, dtype=np.int64)),
    "string-x": dict(x=np.array([["a"]] * 4), y=np.array([0, 1, 0, 1])),
    "no-y": dict(x=np.zeros((4, 3))),
    "only-x-test": dict(x=np.zeros((4, 3)), y=np.array([0, 1, 0, 1]), x_test=np.zeros((2, 3))),
    "nan-test": dict(x=np.zeros((4, 3)), y=np.array([0, 1, 0, 1]),
                     x_test=np.full((2, 3), np.nan), y_test=np.array([0, 1])),
}


@pytest.mark.parametrize("kind", list(NPZ_CASES))
def test_npz_bad_files(tmp_path, kind):
    p = _npz(tmp_path / "d.npz", **NPZ_CASES[kind])
    with pytest.raises(DataError) as e:
        load_dataset("npz", p, normalize=False)
    msg = str(e.value)
    assert "\n" not in msg and str(p) in msg


@pytest.mark.parametrize("content", [b"", b"garbage", b"PK\x03\x04truncated"])
def test_npz_garbage(tmp_path, content):
    p = tmp_path / "d.npz"
    p.write_bytes(content)
    with pytest.raises(DataError, match="not a readable .npz"):
        load_dataset("npz", p)


@pytest.mark.parametrize("batch", [
    b"garbage", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 99]},
    {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]},
    {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0.5, 1.0]},
    {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 2**70]},
    {b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]},
])
def test_cifar_bad_batches(tmp_path, batch):
    import pickle
    raw = batch if isinstance(batch, bytes) else pickle.dumps(batch)
    for name in data.CIFAR_TRAIN + (data.CIFAR_TEST,):
        (tmp_path / name).write_bytes(raw)
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", tmp_path)
    assert "\n" not in str(e.value) and "data_batch_1" in str(e.value)


def test_npz_labels_1e9_through_the_cli(tmp_path, capsys):
    p = _npz(tmp_path / "d.npz", **NPZ_CASES["labels-1e9"])
    line = _cli(train_cli.cli, ["--dataset", "npz", "--data-dir", str(p), "--out",
                                str(tmp_path / "r"), "--no-plots", "--no-progress"], capsys)
    assert "label 1000000000" in line


def test_npz_nan_pixels_through_the_cli(tmp_path, capsys):
    p = _npz(tmp_path / "d.npz", **NPZ_CASES["nan-pixels"])
    line = _cli(train_cli.cli, ["--dataset", "npz", "--data-dir", str(p), "--out",
                                str(tmp_path / "r"), "--no-plots", "--no-progress"], capsys)
    assert "NaN" in line


# ---- Python API misuse -----------------------------------------------------------------------

BAD_I = {
    "int": np.ones((3, 4), dtype=np.int64), "float16": np.ones((3, 4), dtype=np.float16),
    "list": [[1.0, 2.0]], "0-d": np.float64(1.0), "1-d": np.ones(4),
    "no-steps": np.ones((0, 4)),
}


@pytest.mark.parametrize("kind", list(BAD_I))
def test_lif_forward_bad_input(kind):
    with pytest.raises(ValueError) as e:
        lif_forward(BAD_I[kind], lam=0.9, v_th=1.0)
    assert str(e.value).startswith("I ") and "\n" not in str(e.value)


@pytest.mark.parametrize("kw", [dict(lam=0.0), dict(lam=1.5), dict(v_th=0.0), dict(v_th=np.nan),
                                dict(reset="nope"), dict(surrogate="nope")])
def test_lif_forward_bad_parameters(kw):
    args = dict(lam=0.9, v_th=1.0) | kw
    with pytest.raises(ValueError) as e:
        lif_forward(np.ones((3, 4)), **args)
    assert "\n" not in str(e.value)


def test_lif_backward_noncontiguous_and_wrong_shape():
    rng = np.random.default_rng(0)
    I = rng.normal(size=(4, 6))
    o, cache = lif_forward(I, lam=0.9, v_th=1.0)
    for bad in (np.ones((4, 5)), np.ones((4, 6), dtype=np.float16), np.ones((4, 6), dtype=int)):
        with pytest.raises(ValueError):
            lif_backward(bad, cache)
    # a non-contiguous gradient gives the same result as its contiguous copy (never garbage)
    g = rng.normal(size=(4, 12))[:, ::2]
    assert np.array_equal(lif_backward(g, cache), lif_backward(np.ascontiguousarray(g), cache))


def test_noncontiguous_input_equals_contiguous():
    I = np.random.default_rng(1).normal(size=(5, 8))[:, ::2]
    a = lif_forward(I, lam=0.9, v_th=1.0)[0]
    b = lif_forward(np.ascontiguousarray(I), lam=0.9, v_th=1.0)[0]
    assert np.array_equal(a, b)


# ---- checkpoints -----------------------------------------------------------------------------

def _bad_ckpt(path: Path, meta, model=None) -> Path:
    arrays = {"meta": np.array(json.dumps(meta))}
    for k, v in (model if model is not None else {"0.W": np.ones((2, 2))}).items():
        arrays[f"model/{k}"] = v
    np.savez(path, **arrays)
    return path


GOOD_CONFIG = train_cli.resolve_config(train_cli.build_parser().parse_args([]), set()).to_dict() | {
    "input_shape": [4], "num_classes": 2, "n_train": 10, "n_test": 5}
GOOD_META = {"epoch": 1, "T": 2, "test_acc": 0.5, "best_acc": 0.5, "best_epoch": 1,
             "neurons": [], "config": GOOD_CONFIG}
CKPT_CASES = {
    "meta-list": [1, 2], "meta-empty": {}, "no-config": {k: v for k, v in GOOD_META.items()
                                                           if k != "config"},
    "no-neurons": {k: v for k, v in GOOD_META.items() if k != "neurons"},
    "string-epoch": GOOD_META | {"epoch": "3"}, "negative-epoch": GOOD_META | {"epoch": -1},
    "version-99": GOOD_META | {"version": 99}, "bad-neuron": GOOD_META | {"neurons": [1]},
}


@pytest.mark.parametrize("kind", list(CKPT_CASES))
def test_checkpoint_bad_meta(tmp_path, kind, capsys):
    p = _bad_ckpt(tmp_path / "last.npz", CKPT_CASES[kind])
    with pytest.raises(ValueError) as e:
        checkpoint.read_checkpoint(p)
    assert "\n" not in str(e.value) and str(p) in str(e.value)
    line = _cli(evaluate_cli.cli, [str(p)], capsys)
    assert str(p) in line


@pytest.mark.parametrize("arr", [np.full((2, 2), np.nan), np.full((2, 2), np.inf),
                                 np.array(["a", "b"])])
def test_checkpoint_nonfinite_weights(tmp_path, arr, capsys):
    p = _bad_ckpt(tmp_path / "last.npz", GOOD_META, {"0.W": arr})
    with pytest.raises(ValueError, match="not finite"):
        checkpoint.read_checkpoint(p)
    line = _cli(train_cli.cli, ["--resume", str(p), "--no-plots", "--no-progress"], capsys)
    assert "not finite" in line


@pytest.mark.parametrize("content", [b"", b"junk", b"PK\x03\x04"])
def test_checkpoint_garbage(tmp_path, content, capsys):
    p = tmp_path / "last.npz"
    p.write_bytes(content)
    assert str(p) in _cli(evaluate_cli.cli, [str(p)], capsys)
