"""Event data (pysnn_ref.data.events): N-MNIST decoding, framing, malformed files, training."""

import subprocess
import sys

import numpy as np
import pytest

from pysnn_ref.data import EventEncoder, load_dataset, make_encoder
from pysnn_ref.data.events import (
    Events,
    frames_by_count,
    frames_by_time,
    load_event_folder,
    read_events,
    read_nmnist_bin,
    write_nmnist_bin,
)
from pysnn_ref.errors import DataError


def _random_events(rng, n, H=34, W=34, t_max=300_000, x_lo=0, x_hi=None):
    t = np.sort(rng.integers(0, t_max, n))
    return Events(x=rng.integers(x_lo, x_hi or W, n), y=rng.integers(0, H, n), t=t,
                  p=rng.integers(0, 2, n))


def _loop_frames(ev, T, H, W, mode):
    """Plain per-event reference of the two framings."""
    out = np.zeros((T, 2, H, W), np.float32)
    n = len(ev)
    order = sorted(range(n), key=lambda i: (int(ev.t[i]), i))
    rank = {i: r for r, i in enumerate(order)}
    t0, t1 = int(min(ev.t)), int(max(ev.t))
    for i in range(n):
        if mode == "time":
            k = (int(ev.t[i]) - t0) * T // (t1 - t0 + 1)
        else:
            k = rank[i] * T // n
        out[k, int(ev.p[i]), int(ev.y[i]), int(ev.x[i])] += 1
    return out


def test_decoding_bit_by_bit(tmp_path):
    # hand-made records: every bit of the 23-bit time stamp and the polarity bit exercised
    recs = [(0, 0, 0x00, 0x00, 0x00), (33, 5, 0x80, 0x00, 0x01), (7, 33, 0x7F, 0xFF, 0xFF),
            (255, 255, 0xFF, 0xFF, 0xFF), (1, 2, 0x81, 0x23, 0x45)]
    f = tmp_path / "a.bin"
    f.write_bytes(bytes(b for r in recs for b in r))
    ev = read_nmnist_bin(f)
    assert ev.x.tolist() == [0, 33, 7, 255, 1]
    assert ev.y.tolist() == [0, 5, 33, 255, 2]
    assert ev.p.tolist() == [0, 1, 0, 1, 1]
    assert ev.t.tolist() == [0, 1, (1 << 23) - 1, (1 << 23) - 1, 0x012345]
    # writer round trip
    write_nmnist_bin(tmp_path / "b.bin", ev)
    assert (tmp_path / "b.bin").read_bytes() == f.read_bytes()


def test_npz_events_equal_bin(tmp_path):
    ev = _random_events(np.random.default_rng(0), 200)
    write_nmnist_bin(tmp_path / "e.bin", ev)
    np.savez(tmp_path / "e.npz", x=ev.x, y=ev.y, t=ev.t, p=ev.p)
    a, b = read_events(tmp_path / "e.bin"), read_events(tmp_path / "e.npz")
    for k in "xytp":
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))


@pytest.mark.parametrize("T", [1, 3, 7, 20])
@pytest.mark.parametrize("mode", ["time", "count"])
def test_framing_equals_loop(T, mode):
    rng = np.random.default_rng(T)
    ev = _random_events(rng, 500, H=6, W=9)
    ev.t[rng.integers(0, 500, 50)] = 1234        # ties
    fn = frames_by_time if mode == "time" else frames_by_count
    got = fn(ev, T, size=(6, 9))
    np.testing.assert_array_equal(got, _loop_frames(ev, T, 6, 9, mode))
    assert got.sum() == 500 and got.shape == (T, 2, 6, 9)
    if mode == "count":
        per = got.sum(axis=(1, 2, 3))
        assert per.max() - per.min() <= 1


@pytest.mark.parametrize("mode", ["time", "count"])
def test_encoder_group_sum_equals_direct_framing(mode):
    ev = _random_events(np.random.default_rng(3), 400)
    fn = frames_by_time if mode == "time" else frames_by_count
    fine = fn(ev, 20)[None]                              # (B=1, F=20, 2, H, W)
    for T in (1, 4, 5, 20):
        enc = EventEncoder().encode(fine, T)              # (T, 1, 2, H, W)
        np.testing.assert_array_equal(enc[:, 0], fn(ev, T))
        chunks = np.concatenate(list(EventEncoder().chunks(fine, T, 3)))
        np.testing.assert_array_equal(chunks, enc)
    with pytest.raises(ValueError, match="T must divide"):
        EventEncoder().encode(fine, 3)
    assert make_encoder("events").name == "events"


def _write_folder(root, n_per_class, rng, classes=(0, 1)):
    """Class c's events fall in column band c of the sensor (a spatial pattern per class)."""
    for split, n in (("Train", n_per_class), ("Test", max(n_per_class // 2, 2))):
        for c in classes:
            d = root / split / str(c)
            d.mkdir(parents=True)
            for i in range(n):
                lo = 17 * (c % 2)
                ev = _random_events(rng, 300, x_lo=lo, x_hi=lo + 17)
                write_nmnist_bin(d / f"{i:05d}.bin", ev)


def test_load_folder_and_dataset(tmp_path):
    _write_folder(tmp_path, 3, np.random.default_rng(0))
    x_tr, y_tr, x_te, y_te = load_event_folder(tmp_path, frames=4)
    assert x_tr.shape == (6, 4, 2, 34, 34) and y_tr.tolist() == [0, 0, 0, 1, 1, 1]
    assert x_te.shape[0] == 4 and (x_tr.sum(axis=(1, 2, 3, 4)) == 300).all()
    assert x_tr[y_tr == 0][..., 17:].sum() == 0 and x_tr[y_tr == 1][..., :17].sum() == 0
    ds = load_dataset("nmnist", tmp_path)
    assert ds.input_shape == (2, 34, 34) and ds.num_classes == 2 and ds.x_train.shape[1] == 20
    assert ds.mean is None


def _bad(tmp_path, name, data):
    d = tmp_path / "Train" / "0"
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)
    (tmp_path / "Test" / "0").mkdir(parents=True, exist_ok=True)
    write_nmnist_bin(tmp_path / "Test" / "0" / "a.bin", Events(*(np.zeros(1, int),) * 4))
    return tmp_path


@pytest.mark.parametrize("name,data,msg", [
    ("a.bin", b"\x01\x02\x03\x04\x05\x06\x07", "truncated last record of 2 bytes"),
    ("a.bin", b"\x01\x02", "not a whole number of 5-byte records"),
    ("a.bin", b"", "empty file"),
    ("a.bin", bytes([40, 1, 0, 0, 1]), "outside the 34x34"),
    ("a.npz", b"not a zip", "not a readable .npz"),
])
def test_malformed_files_one_line(tmp_path, name, data, msg):
    root = _bad(tmp_path, name, data)
    with pytest.raises(DataError, match=msg) as e:
        load_event_folder(root)
    assert "\n" not in str(e.value) and str(root) in str(e.value)


def test_wrong_layout(tmp_path):
    with pytest.raises(DataError, match="no Train/ folder"):
        load_event_folder(tmp_path)
    (tmp_path / "Train" / "zero").mkdir(parents=True)
    with pytest.raises(DataError, match="named by their integer label"):
        load_event_folder(tmp_path)
    with pytest.raises(DataError, match="not a folder"):
        load_event_folder(tmp_path / "missing")


def test_cli_bad_folder_exit_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pysnn_ref.train", "--dataset", "nmnist",
                        "--data-dir", str(tmp_path), "--encoder", "events", "--epochs", "1",
                        "--out", str(tmp_path / "run")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "no Train/ folder" in lines[0]


def test_train_cli_learns_synthetic_nmnist(tmp_path, capsys):
    from pysnn_ref.train.__main__ import main as train_main

    _write_folder(tmp_path / "d", 16, np.random.default_rng(1))
    with pytest.raises(ValueError, match="--encoder events"):
        train_main(["--dataset", "nmnist", "--data-dir", str(tmp_path / "d"), "--epochs", "1",
                    "--out", str(tmp_path / "r0"), "--no-plots", "--no-progress"])
    assert train_main(["--dataset", "nmnist", "--data-dir", str(tmp_path / "d"), "--encoder",
                       "events", "--T", "4", "--epochs", "3", "--batch-size", "8",
                       "--out", str(tmp_path / "run"), "--no-plots", "--no-progress"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("test_acc=") and float(last.split("=")[1]) >= 0.9  # chance: 0.5


def test_energy_cli_on_events(tmp_path, capsys):
    from pysnn_ref.energy.__main__ import main as energy_main

    _write_folder(tmp_path, 2, np.random.default_rng(2))
    assert energy_main(["--dataset", "nmnist", "--data-dir", str(tmp_path), "--encoder",
                        "events", "--T", "4"]) == 0
    out = capsys.readouterr().out
    assert " AC " in out.splitlines()[2]          # event input: the first layer does SOPs
    with pytest.raises(ValueError, match="--encoder events"):
        energy_main(["--dataset", "nmnist", "--data-dir", str(tmp_path)])
