"""Datasets (:func:`load_dataset`) as host NumPy arrays in a :class:`Dataset`: images float32
``(N, C, H, W)``, flat vectors float32 ``(N, D)``, labels int64 ``(N,)``. Nothing is downloaded:
``"digits"`` is scikit-learn's copy of the UCI 8x8 digits (shipped inside the wheel); MNIST,
Fashion-MNIST and CIFAR-10 are read from files you already have, in their original formats;
``"npz"`` reads your own arrays, ``"nmnist"`` event recordings (:mod:`pysnn_ref.data.events`).
A missing or malformed file raises :class:`~pysnn_ref.errors.DataError` (a ``ValueError``) whose
one-line message names the path and the expected format.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._check import check_choice, check_in_range, check_int, not_a_regular_file
from ..errors import DataError
from .encoders import TIME_ENCODERS
from .events import load_event_folder

__all__ = ["DATASETS", "Dataset", "load_dataset", "split_indices", "read_idx"]

DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "npz", "nmnist", "digits-rows")


@dataclass
class Dataset:
    """A train/test split held in host memory.

    Attributes:
        x_train, x_test: float32 inputs, ``(N,) + input_shape`` (images ``(N, C, H, W)``).
        y_train, y_test: int64 labels in ``[0, num_classes)``.
        name: the dataset name given to :func:`load_dataset`.
        input_shape: ``(C, H, W)`` for images, ``(D,)`` for flat vectors.
        num_classes: number of classes.
        mean, std: the per-channel statistics that were subtracted/divided (shape ``(C,)``, or
            ``(1,)`` for flat vectors), or ``None`` when ``normalize=False``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    mean: np.ndarray | None = None
    std: np.ndarray | None = None


# ----------------------------------------------------------------------------------------------
# errors and small helpers
# ----------------------------------------------------------------------------------------------

def _fail(dataset: str, path: Any, problem: str, expected: str) -> DataError:
    """One-line :class:`DataError`: ``"<dataset>: cannot read <path>: <problem>; expected ..."``."""
    problem = " ".join(str(problem).split())   # keep it on one line
    return DataError(f"{dataset}: cannot read {path}: {problem}; expected {expected}")


def split_indices(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified random train/test split: ``(train_idx, test_idx)``, both sorted and disjoint.

    For each class, its indices are permuted by ``numpy.random.default_rng(seed)`` and the first
    ``round(n_class · test_fraction)`` go to the test set, so the class proportions are kept and
    the same ``seed`` gives the same split.
    """
    test_fraction = check_in_range("test_fraction", test_fraction, 0.0, 1.0, hi_open=True)
    rng = np.random.default_rng(check_int("seed", seed, minimum=0))
    test = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        test.append(idx[: int(round(len(idx) * test_fraction))])
    test_idx = np.sort(np.concatenate(test)) if test else np.zeros(0, dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(len(y)), test_idx)
    if len(test_idx) == 0 or len(train_idx) == 0:
        raise ValueError(f"test_fraction={test_fraction} leaves an empty train or test split of "
                         f"{len(y)} samples; choose a test_fraction that gives both at least one")
    return train_idx, test_idx


def _normalize(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standardise both splits in place with the training set's per-channel mean and std.

    Images ``(N, C, H, W)``: one mean/std per channel over ``(N, H, W)``. Flat vectors ``(N, D)``:
    one mean/std over all entries (a single channel; per-feature statistics would divide constant
    features by zero). A std below 1e-12 is replaced by 1. Returns ``(mean, std)`` as float32.
    """
    axes = (0, 2, 3) if x_train.ndim == 4 else (0, 1)
    mean = x_train.mean(axis=axes, dtype=np.float64).reshape(-1)
    std = x_train.std(axis=axes, dtype=np.float64).reshape(-1)
    std[std < 1e-12] = 1.0
    shape = (1, -1, 1, 1) if x_train.ndim == 4 else (1, 1)
    for x in (x_train, x_test):
        x -= mean.astype(np.float32).reshape(shape)
        x /= std.astype(np.float32).reshape(shape)
    return mean.astype(np.float32), std.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# digits (scikit-learn, no download)
# ----------------------------------------------------------------------------------------------

def _digits_path() -> Path:
    """scikit-learn's embedded ``digits.csv.gz``, found without importing scikit-learn (whose
    import costs seconds per process); the same file ``sklearn.datasets.load_digits`` reads."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise DataError("digits: scikit-learn is not installed; it ships the embedded digits data "
                        "(pip install scikit-learn)")
    return Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"


def _load_digits(seed: int, test_fraction: float) -> tuple[np.ndarray, ...]:
    path = _digits_path()
    try:
        d = np.loadtxt(path, delimiter=",")
    except (OSError, ValueError) as e:
        raise _fail("digits", path, str(e), "scikit-learn's digits.csv.gz (1797 rows of 64 pixels "
                    "and a label)") from None
    if d.shape != (1797, 65):
        raise _fail("digits", path, f"shape {d.shape}", "1797 rows of 64 pixels and a label")
    x = (d[:, :64].reshape(-1, 1, 8, 8) / 16.0).astype(np.float32)  # (1797, 1, 8, 8) in [0, 1]
    y = d[:, 64].astype(np.int64)
    tr, te = split_indices(y, test_fraction, seed)
    return x[tr], y[tr], x[te], y[te]


# ----------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST (IDX files)
# ----------------------------------------------------------------------------------------------

IDX_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
_IDX_IMAGES, _IDX_LABELS = 0x00000803, 0x00000801


def _idx_expected(magic: int) -> str:
    what = "image" if magic == _IDX_IMAGES else "label"
    return f"an IDX {what} file with magic 0x{magic:08x} (raw or .gz)"


def read_idx(path: str | Path, magic: int, dataset: str = "idx") -> np.ndarray:
    """Read one IDX file of unsigned bytes (raw, or gzip if the name ends in ``.gz``).

    Layout (LeCun's MNIST page): a big-endian 32-bit magic ``0x000008NN`` (``0x08`` = uint8,
    ``NN`` = number of dimensions), then ``NN`` big-endian 32-bit sizes, then the data.
    ``magic`` is the expected value (0x803 for images, 0x801 for labels).
    """
    path = Path(path)
    expected = _idx_expected(magic)
    if (why := not_a_regular_file(path)) is not None:
        raise _fail(dataset, path, why, expected)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b" or path.suffix == ".gz":    # gzip, by magic or by name
            raw = gzip.decompress(raw)
    except EOFError:
        raise _fail(dataset, path, "truncated gzip stream", expected) from None
    except (OSError, zlib.error) as e:
        raise _fail(dataset, path, getattr(e, "strerror", None) or e, expected) from None
    if len(raw) < 4:
        raise _fail(dataset, path, f"only {len(raw)} bytes", expected)
    got = int.from_bytes(raw[:4], "big")
    if got != magic:
        raise _fail(dataset, path, f"magic is 0x{got:08x}", expected)
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise _fail(dataset, path, f"header truncated ({len(raw)} bytes)", expected)
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    n = int(np.prod(dims))
    if len(raw) != header + n:
        raise _fail(dataset, path, f"{len(raw) - header} data bytes, header sizes {dims} need {n}",
                    expected)
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find(dirs: list[Path], fname: str, dataset: str, expected: str) -> Path:
    """The first of ``dir/fname``, ``dir/fname.gz`` over ``dirs`` that exists."""
    for d in dirs:
        for p in (d / fname, d / (fname + ".gz")):
            if p.is_file():
                return p
    also = f" (also looked in {', '.join(str(d) for d in dirs[1:])})" if len(dirs) > 1 else ""
    raise _fail(dataset, f"{dirs[0] / fname}(.gz)", f"file not found{also}", expected)


def _load_idx_dataset(name: str, data_dir: Path) -> tuple[np.ndarray, ...]:
    sub = "MNIST" if name == "mnist" else "FashionMNIST"
    dirs = [data_dir, data_dir / "raw", data_dir / sub / "raw"]     # plain, torchvision layouts
    out = []
    for split in ("train", "test"):
        px = _find(dirs, IDX_FILES[f"{split}_x"], name, _idx_expected(_IDX_IMAGES))
        py = _find(dirs, IDX_FILES[f"{split}_y"], name, _idx_expected(_IDX_LABELS))
        x = read_idx(px, _IDX_IMAGES, name)
        y = read_idx(py, _IDX_LABELS, name)
        if len(y) != len(x):
            raise _fail(name, py, f"{len(y)} labels for {len(x)} images in {px}",
                        "one label per image")
        if x.shape[1:] != (28, 28) or len(x) == 0:
            raise _fail(name, px, f"images of shape {x.shape}", "N >= 1 images of 28x28 pixels")
        if y.size and y.max() > 9:
            raise _fail(name, py, f"label {int(y.max())}", "labels in [0, 10)")
        out += [(x.astype(np.float32) / 255.0)[:, None], y.astype(np.int64)]
    return tuple(out)


# ----------------------------------------------------------------------------------------------
# CIFAR-10 (python pickle batches)
# ----------------------------------------------------------------------------------------------

CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = "test_batch"
_CIFAR_EXPECTED = ("a CIFAR-10 python pickle batch (a dict with b'data': uint8 (N, 3072) and "
                   "b'labels': N ints in [0, 10))")


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only dicts/lists of plain NumPy arrays: any other global is refused.

    CIFAR batches are pickles; a pickle can run arbitrary code, so we allow only the globals a
    NumPy array needs.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle global {module}.{name}")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 batch: ``(x uint8 (N, 3, 32, 32), y int64 (N,))``, N >= 1."""
    if (why := not_a_regular_file(path)) is not None:
        raise _fail("cifar10", path, why, _CIFAR_EXPECTED)
    try:
        with open(path, "rb") as f:
            d = _ArrayUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
    except FileNotFoundError:
        raise _fail("cifar10", path, "file not found", _CIFAR_EXPECTED) from None
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not a batch"
        raise _fail("cifar10", path, f"not a readable pickle ({type(e).__name__}: {e})",
                    _CIFAR_EXPECTED) from None
    if not isinstance(d, dict):
        raise _fail("cifar10", path, f"pickle holds a {type(d).__name__}", _CIFAR_EXPECTED)
    data = d.get(b"data", d.get("data"))
    labels = d.get(b"labels", d.get("labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * 32 * 32:
        got = (f"data {data.dtype} {data.shape}" if isinstance(data, np.ndarray)
               else f"data {type(data).__name__}")
        raise _fail("cifar10", path, got, _CIFAR_EXPECTED)
    if len(data) == 0:
        raise _fail("cifar10", path, "the batch holds no images", _CIFAR_EXPECTED)
    try:
        y = np.asarray(labels)
        if y.dtype.kind not in "iu":
            raise TypeError
        y = y.astype(np.int64).reshape(-1)
    except (TypeError, ValueError, OverflowError):
        raise _fail("cifar10", path, "labels are not integers", _CIFAR_EXPECTED) from None
    if len(y) != len(data):
        raise _fail("cifar10", path, f"{len(y)} labels for {len(data)} images", _CIFAR_EXPECTED)
    if y.size and (y.min() < 0 or y.max() > 9):
        raise _fail("cifar10", path, f"label {int(y.min() if y.min() < 0 else y.max())} out of "
                    "range", _CIFAR_EXPECTED)
    return data.reshape(-1, 3, 32, 32), y


def _load_cifar10(data_dir: Path) -> tuple[np.ndarray, ...]:
    dirs = [data_dir, data_dir / "cifar-10-batches-py"]
    root = next((d for d in dirs if (d / CIFAR_TRAIN[0]).is_file()), data_dir)
    parts = [_read_cifar_batch(root / f) for f in CIFAR_TRAIN + (CIFAR_TEST,)]
    x_tr = np.concatenate([p[0] for p in parts[:-1]]).astype(np.float32) / 255.0
    y_tr = np.concatenate([p[1] for p in parts[:-1]])
    x_te = parts[-1][0].astype(np.float32) / 255.0
    return x_tr, y_tr, x_te, parts[-1][1]


# ----------------------------------------------------------------------------------------------
# npz (your own arrays)
# ----------------------------------------------------------------------------------------------

MAX_CLASSES = 100_000   #: npz: the largest number of classes (output units) accepted
_NPZ_EXPECTED = ("a .npz with integer label array y (N,) and input array x of shape (N, C, H, W), "
                 "(N, H, W) or (N, D), optionally x_test and y_test")


def _load_npz(data_dir: Path, seed: int, test_fraction: float) -> tuple[np.ndarray, ...]:
    path = data_dir / "data.npz" if data_dir.is_dir() else data_dir
    if (why := not_a_regular_file(path)) is not None:
        raise _fail("npz", path, why, _NPZ_EXPECTED)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise _fail("npz", path, "file not found", _NPZ_EXPECTED) from None
    except Exception as e:  # noqa: BLE001 - BadZipFile, object arrays, truncated files ...
        raise _fail("npz", path, f"not a readable .npz ({type(e).__name__}: {e})",
                    _NPZ_EXPECTED) from None
    if not isinstance(arrays, dict) or any(not isinstance(v, np.ndarray)
                                           for v in arrays.values()):
        raise _fail("npz", path, "a zip whose members are not .npy arrays (not an .npz)",
                    _NPZ_EXPECTED)
    for k in ("x", "y"):
        if k not in arrays:
            raise _fail("npz", path, f"no array {k!r} (has {sorted(arrays)})", _NPZ_EXPECTED)
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise _fail("npz", path, "only one of x_test, y_test is present", _NPZ_EXPECTED)

    def inputs(key: str) -> np.ndarray:
        x = arrays[key]
        if x.dtype.kind not in "biuf" or x.ndim not in (2, 3, 4):
            raise _fail("npz", path, f"{key} has dtype {x.dtype} and shape {x.shape}",
                        _NPZ_EXPECTED)
        if len(x) == 0 or 0 in x.shape:
            raise _fail("npz", path, f"{key} has shape {x.shape} (no samples or an empty axis)",
                        _NPZ_EXPECTED)
        with np.errstate(over="ignore"):
            x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.isfinite(x).all():
            raise _fail("npz", path, f"{key} holds NaN or infinite values (or values beyond "
                        "float32's range)", _NPZ_EXPECTED)
        return x[:, None] if x.ndim == 3 else x                # (N, H, W) -> (N, 1, H, W)

    def labels(key: str, n: int) -> np.ndarray:
        y = arrays[key]
        if y.dtype.kind not in "iu" or y.shape != (n,):
            raise _fail("npz", path, f"{key} has dtype {y.dtype} and shape {y.shape} "
                        f"(need {n} integer labels)", _NPZ_EXPECTED)
        # K = max label + 1 sizes the output layer: bound it before anything is allocated
        k_max = min(MAX_CLASSES, n_all)
        if y.size and (y.min() < 0 or y.max() >= k_max):
            bad = int(y.min()) if y.min() < 0 else int(y.max())
            raise _fail("npz", path, f"{key} has label {bad}", f"labels in 0..K-1 with "
                        f"K <= min({MAX_CLASSES}, number of samples {n_all})")
        return y.astype(np.int64)

    x = inputs("x")
    xt = arrays.get("x_test")
    n_all = len(x) + (int(xt.shape[0]) if xt is not None and xt.ndim else 0)
    y = labels("y", len(x))
    if "x_test" in arrays:
        x_te = inputs("x_test")
        y_te = labels("y_test", len(x_te))
        if x_te.shape[1:] != x.shape[1:]:
            raise _fail("npz", path, f"x_test samples have shape {x_te.shape[1:]}, x samples "
                        f"{x.shape[1:]}", _NPZ_EXPECTED)
        return x, y, x_te, y_te
    tr, te = split_indices(y, test_fraction, seed)
    return x[tr], y[tr], x[te], y[te]


# ----------------------------------------------------------------------------------------------
# the entry point
# ----------------------------------------------------------------------------------------------

def load_dataset(name: str, data_dir: str | Path | None = None, seed: int = 0,
                 test_fraction: float = 0.2, normalize: bool = True) -> Dataset:
    """Load a dataset as a :class:`Dataset` of host NumPy arrays.

    ``name``:

    * ``"digits"``: scikit-learn's 8x8 digits (1797 images, 10 classes, no download), pixel
      values / 16, shape ``(1, 8, 8)``; a stratified split by ``seed`` with ``test_fraction``.
    * ``"mnist"`` / ``"fashion-mnist"``: the four IDX files ``train-images-idx3-ubyte``,
      ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each
      raw or ``.gz``, in ``data_dir`` (or ``data_dir/raw``, or torchvision's
      ``data_dir/MNIST/raw`` / ``data_dir/FashionMNIST/raw``); pixels / 255, ``(1, 28, 28)``;
      the official train/test split.
    * ``"cifar10"``: the python batches ``data_batch_1`` .. ``data_batch_5`` and ``test_batch``
      in ``data_dir`` or ``data_dir/cifar-10-batches-py``; pixels / 255, ``(3, 32, 32)``. The
      pickles are read with an unpickler that only accepts NumPy arrays.
    * ``"npz"``: ``data_dir`` is a ``.npz`` file (or a folder holding ``data.npz``) with arrays
      ``x``, ``y`` and optionally ``x_test``, ``y_test`` (else a stratified split by ``seed``).
      ``x`` of shape ``(N, C, H, W)`` is kept; ``(N, H, W)`` becomes ``(N, 1, H, W)``; ``(N, D)``
      stays flat with ``input_shape = (D,)``. Values are used as stored (cast to float32, not
      rescaled); ``num_classes = max(label) + 1``.
    * ``"nmnist"``: event files in a folder laid out like N-MNIST, ``data_dir/Train/<digit>/*.bin``
      and ``data_dir/Test/<digit>/*.bin`` (or ``.npz`` events), read by
      :func:`pysnn_ref.data.events.load_event_folder`: ``x`` is ``(N, 20, 2, 34, 34)`` event counts
      (20 time bins, 2 polarities; not normalised), ``input_shape = (2, 34, 34)``; use the
      ``"events"`` encoder (:class:`EventEncoder`, T dividing 20).
    * ``"digits-rows"``: the ``"digits"`` images and split read as sequences, one image row per
      time step: ``x`` is ``(N, 8, 8)`` = (samples, 8 steps, 8 pixels), ``input_shape = (8,)``
      (features per step); standardised with one mean/std over all pixels; use the
      ``"sequence"`` encoder (:class:`SequenceEncoder`, T = 8, or 4, 2, 1: rows summed).

    ``seed`` and ``test_fraction`` only matter where the split is made here (digits, npz without
    a test set). With ``normalize=True`` both splits are standardised with the *training* set's
    per-channel mean and std (``(x - mean_c) / std_c``; one channel for flat vectors), which are
    returned in ``Dataset.mean`` / ``Dataset.std``; with ``normalize=False`` images stay in
    [0, 1].

    Raises:
        ValueError: unknown ``dataset`` name or bad ``seed`` / ``test_fraction``.
        DataError: a missing or malformed file (the message names the path and the format).
    """
    check_choice("dataset", name, DATASETS)
    seed = check_int("seed", seed, minimum=0)
    test_fraction = check_in_range("test_fraction", test_fraction, 0.0, 1.0, hi_open=True)
    if name in ("digits", "digits-rows"):
        parts = _load_digits(seed, test_fraction)
        if name == "digits-rows":  # (N, 1, 8, 8) -> (N, 8 steps, 8 features): one row per step
            parts = tuple(p[:, 0] if p.ndim == 4 else p for p in parts)
    else:
        if data_dir is None:
            where = "a .npz file or a folder with data.npz" if name == "npz" else "a folder"
            raise DataError(f"{name}: data_dir is required ({where} holding the {name} files; "
                            "nothing is downloaded)")
        data_dir = Path(data_dir).expanduser()
        if name in ("mnist", "fashion-mnist"):
            parts = _load_idx_dataset(name, data_dir)
        elif name == "cifar10":
            parts = _load_cifar10(data_dir)
        elif name == "nmnist":  # event counts (N, F, 2, H, W), per-sample frames: data.events
            parts = load_event_folder(data_dir)
        else:
            parts = _load_npz(data_dir, seed, test_fraction)
    x_tr, y_tr, x_te, y_te = (np.ascontiguousarray(a) for a in parts)
    mean = std = None
    if normalize and name == "digits-rows":   # one channel: the statistics of all pixels
        mean, std = _normalize(x_tr.reshape(len(x_tr), -1), x_te.reshape(len(x_te), -1))
    elif normalize and name != "nmnist":   # event counts are used as they are
        mean, std = _normalize(x_tr, x_te)
    num_classes = 10 if name not in ("npz", "nmnist") else int(max(y_tr.max(), y_te.max())) + 1
    # per-sample time steps: frames (2, H, W), rows (8,)
    shape = x_tr.shape[2:] if name in TIME_ENCODERS else x_tr.shape[1:]
    return Dataset(x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te, name=name,
                   input_shape=tuple(int(s) for s in shape), num_classes=num_classes,
                   mean=mean, std=std)
