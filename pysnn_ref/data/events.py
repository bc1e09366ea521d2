"""Neuromorphic event data: N-MNIST binary files, generic ``.npz`` events, integration into frames.

An event camera emits events ``(x, y, t, p)``: pixel, time stamp (microseconds), polarity
(1 = ON, brightness up; 0 = OFF).  The network takes time-major frames ``(T, B, 2, H, W)``; here
the events of one sample are integrated into ``T`` frames of event counts, one channel per
polarity, either

* **by time** (:func:`frames_by_time`): frame ``k`` holds the events with
  ``floor((t - t_min) * T / (t_max - t_min + 1)) == k`` (``T`` equal time bins), or
* **by count** (:func:`frames_by_count`): the time-sorted events split into ``T`` groups of
  (nearly) equal size, event ``i`` of ``N`` going to frame ``floor(i * T / N)``.

Both are one ``np.bincount`` over the flat index ``((k * 2 + p) * H + y) * W + x``: no Python
loop per event.  Both binnings nest exactly: grouping ``F = m * T`` frames ``m`` at a time gives
the ``T``-frame result (``floor(floor(a F / D) / m) = floor(a T / D)``), which is what the
``"events"`` encoder of :mod:`pysnn_ref.data` relies on.

File formats:

* **N-MNIST ``.bin``** (Orchard et al. 2015): 5-byte records ``b0..b4``, ``x = b0``, ``y = b1``,
  ``p = b2 >> 7``, ``t = ((b2 & 0x7F) << 16) | (b3 << 8) | b4`` (microseconds, 23 bits);
* **``.npz``** with integer arrays ``x``, ``y``, ``t``, ``p`` of one length.

A folder laid out like N-MNIST, ``Train/<digit>/*.bin`` and ``Test/<digit>/*.bin`` (``.npz``
event files are accepted too), is read by :func:`load_event_folder`.  A malformed file raises
:class:`pysnn_ref.errors.DataError` with one line naming the path and the expected format.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._check import check_choice, check_int, not_a_regular_file
from ..errors import DataError

__all__ = ["Events", "NMNIST_SIZE", "FRAME_MODES", "DEFAULT_FRAMES", "read_nmnist_bin",
           "read_events_npz", "read_events", "write_nmnist_bin", "frames_by_time",
           "frames_by_count", "to_frames", "load_event_folder"]

NMNIST_SIZE = (34, 34)          #: (H, W) of the N-MNIST sensor crop
FRAME_MODES = ("time", "count")
DEFAULT_FRAMES = 20             #: frames per sample the dataset keeps (T in 1, 2, 4, 5, 10, 20)
_BIN_EXPECTED = ("N-MNIST events: 5-byte records (x, y, p|t[22:16], t[15:8], t[7:0]), "
                 "at least one")
_NPZ_EXPECTED = ".npz with integer arrays x, y, t, p of one length (at least one event)"
_FOLDER_EXPECTED = "a folder with Train/<digit>/*.bin and Test/<digit>/*.bin (N-MNIST layout)"


@dataclass
class Events:
    """One sample's events, time stamps in microseconds."""

    x: np.ndarray  #: int64 column
    y: np.ndarray  #: int64 row
    t: np.ndarray  #: int64 time (us)
    p: np.ndarray  #: int64 polarity, 0 or 1

    def __len__(self) -> int:
        return int(self.t.size)


def _fail(path: Path | str, problem: str, expected: str) -> DataError:
    return DataError(f"events: cannot read {path}: {' '.join(problem.split())}; "
                     f"expected {expected}")


def read_nmnist_bin(path: str | Path) -> Events:
    """Decode an N-MNIST ``.bin`` file (5-byte records, module doc)."""
    path = Path(path)
    if (why := not_a_regular_file(path)) is not None:
        raise _fail(path, why, _BIN_EXPECTED)
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0:
        raise _fail(path, "empty file", _BIN_EXPECTED)
    if raw.size % 5:
        raise _fail(path, f"{raw.size} bytes is not a whole number of 5-byte records "
                    f"(truncated last record of {raw.size % 5} bytes)", _BIN_EXPECTED)
    r = raw.reshape(-1, 5).astype(np.int64)
    t = ((r[:, 2] & 0x7F) << 16) | (r[:, 3] << 8) | r[:, 4]
    return Events(x=r[:, 0], y=r[:, 1], t=t, p=r[:, 2] >> 7)


def write_nmnist_bin(path: str | Path, ev: Events) -> None:
    """Encode ``ev`` as an N-MNIST ``.bin`` file (x, y < 256, p in {0, 1}, t < 2**23)."""
    x, y, t, p = (np.asarray(a, dtype=np.int64) for a in (ev.x, ev.y, ev.t, ev.p))
    if (x.min(initial=0) < 0 or x.max(initial=0) > 255 or y.min(initial=0) < 0
            or y.max(initial=0) > 255 or not np.isin(p, (0, 1)).all()
            or t.min(initial=0) < 0 or t.max(initial=0) >= 1 << 23):
        raise ValueError("ev must have 0 <= x, y <= 255, p in {0, 1}, 0 <= t < 2**23")
    rec = np.stack([x, y, (p << 7) | (t >> 16), (t >> 8) & 0xFF, t & 0xFF], axis=1)
    rec.astype(np.uint8).tofile(Path(path))


def read_events_npz(path: str | Path) -> Events:
    """Read a ``.npz`` of integer arrays ``x``, ``y``, ``t``, ``p`` (one event per entry)."""
    path = Path(path)
    if (why := not_a_regular_file(path)) is not None:
        raise _fail(path, why, _NPZ_EXPECTED)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise _fail(path, "file not found", _NPZ_EXPECTED) from None
    except Exception as e:  # noqa: BLE001 - BadZipFile, object arrays, truncated files ...
        raise _fail(path, f"not a readable .npz ({type(e).__name__})", _NPZ_EXPECTED) from None
    if not isinstance(arrays, dict) or any(not isinstance(v, np.ndarray)
                                           for v in arrays.values()):
        raise _fail(path, "a zip whose members are not .npy arrays (not an .npz)", _NPZ_EXPECTED)
    missing = [k for k in "xytp" if k not in arrays]
    if missing:
        raise _fail(path, f"no array {missing[0]!r} (has {sorted(arrays)})", _NPZ_EXPECTED)
    a = [arrays[k] for k in "xytp"]
    if any(v.ndim != 1 or v.dtype.kind not in "iub" for v in a) or len({v.size for v in a}) != 1:
        raise _fail(path, "x, y, t, p must be 1-D integer arrays of one length (got "
                    + ", ".join(f"{k}: {v.dtype} {v.shape}" for k, v in zip("xytp", a,
                                                                            strict=True))
                    + ")", _NPZ_EXPECTED)
    if a[0].size == 0:
        raise _fail(path, "no events", _NPZ_EXPECTED)
    x, y, t, p = (v.astype(np.int64) for v in a)
    if not np.isin(p, (0, 1)).all() or x.min() < 0 or y.min() < 0:
        raise _fail(path, "p must be 0 or 1 and x, y >= 0", _NPZ_EXPECTED)
    return Events(x=x, y=y, t=t, p=p)


def read_events(path: str | Path) -> Events:
    """:func:`read_events_npz` for ``*.npz``, else :func:`read_nmnist_bin`."""
    path = Path(path)
    return read_events_npz(path) if path.suffix == ".npz" else read_nmnist_bin(path)


def _check_size(ev: Events, size: tuple[int, int]) -> tuple[int, int]:
    H, W = (check_int("size", s, minimum=1) for s in size)
    if len(ev) and (ev.x.max() >= W or ev.y.max() >= H or ev.x.min() < 0 or ev.y.min() < 0):
        raise ValueError(f"size: events reach x={int(ev.x.max())}, y={int(ev.y.max())}, outside "
                         f"the {H}x{W} frame")
    if len(ev) and not np.isin(np.asarray(ev.p), (0, 1)).all():
        raise ValueError(f"ev.p: polarities must be 0 or 1, got values in "
                         f"[{int(np.min(ev.p))}, {int(np.max(ev.p))}]")
    return H, W


def _bincount_frames(ev: Events, k: np.ndarray, T: int, H: int, W: int) -> np.ndarray:
    idx = ((k * 2 + ev.p) * H + ev.y) * W + ev.x
    return np.bincount(idx, minlength=T * 2 * H * W).reshape(T, 2, H, W).astype(np.float32)


def frames_by_time(ev: Events, T: int, size: tuple[int, int] = NMNIST_SIZE) -> np.ndarray:
    """``(T, 2, H, W)`` float32 event counts in ``T`` equal time bins over
    ``[t_min, t_max]``: ``k = floor((t - t_min) * T / (t_max - t_min + 1))``."""
    T = check_int("T", T, minimum=1)
    H, W = _check_size(ev, size)
    if len(ev) == 0:
        return np.zeros((T, 2, H, W), np.float32)
    t0 = ev.t.min()
    k = ((ev.t - t0) * T) // (ev.t.max() - t0 + 1)
    return _bincount_frames(ev, k, T, H, W)


def frames_by_count(ev: Events, T: int, size: tuple[int, int] = NMNIST_SIZE) -> np.ndarray:
    """``(T, 2, H, W)`` float32 event counts, the time-sorted events in ``T`` groups of equal
    count: event ``i`` of ``N`` (stable time order) goes to frame ``floor(i * T / N)``."""
    T = check_int("T", T, minimum=1)
    H, W = _check_size(ev, size)
    n = len(ev)
    order = np.argsort(ev.t, kind="stable")
    k = np.empty(n, np.int64)
    k[order] = (np.arange(n, dtype=np.int64) * T) // max(n, 1)
    return _bincount_frames(ev, k, T, H, W)


def to_frames(ev: Events, T: int, mode: str = "time",
              size: tuple[int, int] = NMNIST_SIZE) -> np.ndarray:
    """:func:`frames_by_time` (``mode="time"``) or :func:`frames_by_count` (``"count"``)."""
    check_choice("mode", mode, FRAME_MODES)
    return (frames_by_time if mode == "time" else frames_by_count)(ev, T, size)


def _split_files(root: Path, split: str) -> tuple[list[Path], list[int]]:
    d = root / split
    if not d.is_dir():
        raise _fail(root, f"no {split}/ folder", _FOLDER_EXPECTED)
    classes = sorted((c for c in d.iterdir() if c.is_dir()), key=lambda c: c.name)
    if not classes or any(not (c.name.isascii() and c.name.isdigit()) for c in classes):
        names = [c.name for c in classes]
        raise _fail(d, f"class folders must be named by their integer label in ASCII digits "
                    f"(found {names})",
                    _FOLDER_EXPECTED)
    files, labels = [], []
    for c in classes:
        fs = sorted(f for f in c.iterdir() if f.suffix in (".bin", ".npz"))
        files += fs
        labels += [int(c.name)] * len(fs)
    if not files:
        raise _fail(d, "no .bin or .npz event files in the class folders", _FOLDER_EXPECTED)
    return files, labels


def load_event_folder(data_dir: str | Path, frames: int = DEFAULT_FRAMES, mode: str = "time",
                      size: tuple[int, int] = NMNIST_SIZE) -> tuple[np.ndarray, ...]:
    """Read ``Train/<digit>/*`` and ``Test/<digit>/*`` of ``data_dir`` into
    ``(x_train, y_train, x_test, y_test)``: ``x`` float32 ``(N, frames, 2, H, W)`` event counts
    (per-sample frames, time axis second), ``y`` int64 labels (the folder names)."""
    root = Path(data_dir).expanduser()
    frames = check_int("frames", frames, minimum=1)
    check_choice("mode", mode, FRAME_MODES)
    if not root.is_dir():
        raise _fail(root, "not a folder", _FOLDER_EXPECTED)
    out: list[np.ndarray] = []
    for split in ("Train", "Test"):
        files, labels = _split_files(root, split)
        x = np.empty((len(files), frames, 2, *size), np.float32)
        for i, f in enumerate(files):
            ev = read_events(f)
            try:
                x[i] = to_frames(ev, frames, mode, size)
            except ValueError as e:
                raise _fail(f, str(e), f"events inside the {size[0]}x{size[1]} sensor") from None
        out += [x, np.asarray(labels, np.int64)]
    return tuple(out)
