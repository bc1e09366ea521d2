"""Datasets, batching, augmentation and encoders of pysnn_ref.data, on tiny files written here."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from pysnn_ref.data import (
    DirectEncoder,
    PoissonEncoder,
    augment_cifar,
    iterate_minibatches,
    load_dataset,
    make_encoder,
    read_idx,
)
from pysnn_ref.errors import DataError

# ----------------------------------------------------------------------------------------------
# writers for the original formats
# ----------------------------------------------------------------------------------------------


def write_idx(path: Path, arr: np.ndarray, gz: bool) -> Path:
    arr = np.asarray(arr, dtype=np.uint8)
    raw = struct.pack(">I", 0x800 | arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    raw += arr.tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)
    return path


def make_mnist_dir(root: Path, gz: bool, n_train=12, n_test=5, hw=(28, 28)):
    rng = np.random.default_rng(1)
    xtr = rng.integers(0, 256, size=(n_train,) + hw, dtype=np.uint8)
    ytr = rng.integers(0, 10, size=n_train, dtype=np.uint8)
    xte = rng.integers(0, 256, size=(n_test,) + hw, dtype=np.uint8)
    yte = rng.integers(0, 10, size=n_test, dtype=np.uint8)
    root.mkdir(parents=True, exist_ok=True)
    write_idx(root / "train-images-idx3-ubyte", xtr, gz)
    write_idx(root / "train-labels-idx1-ubyte", ytr, gz)
    write_idx(root / "t10k-images-idx3-ubyte", xte, gz)
    write_idx(root / "t10k-labels-idx1-ubyte", yte, gz)
    return xtr, ytr, xte, yte


def make_cifar_dir(root: Path, n_per_batch=3, protocol=2, str_keys=False):
    rng = np.random.default_rng(2)
    root.mkdir(parents=True, exist_ok=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n_per_batch)]
        d = {"data": data, "labels": labels, "batch_label": "x"} if str_keys else \
            {b"data": data, b"labels": labels, b"batch_label": b"x"}
        (root / name).write_bytes(pickle.dumps(d, protocol=protocol))
        batches[name] = (data, labels)
    return batches


# ----------------------------------------------------------------------------------------------
# digits
# ----------------------------------------------------------------------------------------------

def test_digits_split_is_reproducible_disjoint_and_stratified():
    a = load_dataset("digits", seed=3, normalize=False)
    b = load_dataset("digits", seed=3, normalize=False)
    c = load_dataset("digits", seed=4, normalize=False)
    assert a.input_shape == (1, 8, 8) and a.num_classes == 10
    assert a.x_train.dtype == np.float32 and a.y_train.dtype == np.int64
    assert len(a.x_train) + len(a.x_test) == 1797
    assert len(a.x_test) == pytest.approx(0.2 * 1797, abs=10)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    assert not np.array_equal(a.y_test, c.y_test)
    assert 0.0 <= a.x_train.min() and a.x_train.max() == 1.0
    # disjoint: no test image appears in the training set
    tr = {row.tobytes() + bytes([lab]) for row, lab in zip(a.x_train, a.y_train, strict=True)}
    assert sum((row.tobytes() + bytes([lab])) in tr
               for row, lab in zip(a.x_test, a.y_test, strict=True)) <= 5   # a few duplicates
    # stratified: every class appears in the test set in about its share
    counts = np.bincount(a.y_test, minlength=10)
    assert counts.min() >= 30


def test_digits_split_indices_are_a_partition():
    from sklearn.datasets import load_digits

    from pysnn_ref.data import split_indices

    y = load_digits().target
    tr, te = split_indices(y, 0.25, seed=7)
    assert len(np.intersect1d(tr, te)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, te])), np.arange(len(y)))


def test_normalization_uses_training_statistics():
    d = load_dataset("digits", seed=0, normalize=True)
    raw = load_dataset("digits", seed=0, normalize=False)
    assert d.mean.shape == (1,) and d.std.shape == (1,)
    assert abs(float(d.x_train.mean())) < 1e-5
    assert float(d.x_train.std()) == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(d.x_test, (raw.x_test - d.mean[0]) / d.std[0], rtol=1e-5,
                               atol=1e-6)


# ----------------------------------------------------------------------------------------------
# MNIST (IDX)
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_mnist_idx_raw_and_gz(tmp_path, gz, name):
    xtr, ytr, xte, yte = make_mnist_dir(tmp_path, gz)
    d = load_dataset(name, tmp_path, normalize=False)
    assert d.input_shape == (1, 28, 28) and d.num_classes == 10 and d.name == name
    assert d.x_train.shape == (12, 1, 28, 28) and d.x_test.shape == (5, 1, 28, 28)
    assert d.x_train.dtype == np.float32 and d.y_test.dtype == np.int64
    np.testing.assert_allclose(d.x_train[:, 0], xtr / 255.0, rtol=1e-6)
    np.testing.assert_allclose(d.x_test[:, 0], xte / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(d.y_train, ytr)
    np.testing.assert_array_equal(d.y_test, yte)


def test_mnist_torchvision_layout_and_normalization(tmp_path):
    xtr, *_ = make_mnist_dir(tmp_path / "MNIST" / "raw", gz=True)
    d = load_dataset("mnist", tmp_path, normalize=True)
    m, s = (xtr / 255.0).mean(), (xtr / 255.0).std()
    assert d.mean[0] == pytest.approx(m, rel=1e-5) and d.std[0] == pytest.approx(s, rel=1e-5)
    np.testing.assert_allclose(d.x_train[:, 0], (xtr / 255.0 - m) / s, rtol=1e-4, atol=1e-5)


def test_mnist_missing_file_names_path(tmp_path):
    make_mnist_dir(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError) as e:
        load_dataset("mnist", tmp_path)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"mnist: cannot read {tmp_path / 't10k-labels-idx1-ubyte'}(.gz)")
    assert "0x00000801" in msg
    with pytest.raises(DataError, match="data_dir"):
        load_dataset("mnist")


def test_mnist_bad_magic_truncation_and_gzip(tmp_path):
    make_mnist_dir(tmp_path, gz=False)
    p = tmp_path / "train-images-idx3-ubyte"
    good = p.read_bytes()
    p.write_bytes(b"\x00\x00\x08\x01" + good[4:])                 # label magic on an image file
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: magic is 0x00000801; "
                                        r"expected an IDX image file with magic 0x00000803"):
        load_dataset("mnist", tmp_path)
    p.write_bytes(good[:-10])                                     # truncated data
    with pytest.raises(DataError, match="train-images-idx3-ubyte: .*data bytes"):
        load_dataset("mnist", tmp_path)
    p.write_bytes(good)
    lab = tmp_path / "train-labels-idx1-ubyte"
    lab.unlink()
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz: .*expected an IDX label"):
        load_dataset("mnist", tmp_path)
    # label count must match image count
    write_idx(lab, np.zeros(3), gz=False)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="3 labels for 12 images"):
        load_dataset("mnist", tmp_path)


def test_read_idx_directly(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    p = write_idx(tmp_path / "a", arr, gz=True)
    np.testing.assert_array_equal(read_idx(p, 0x803), arr)


# ----------------------------------------------------------------------------------------------
# CIFAR-10 (pickle batches)
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sub,protocol,str_keys", [(False, 2, False), (True, 4, True)])
def test_cifar10_batches(tmp_path, sub, protocol, str_keys):
    root = tmp_path / "cifar-10-batches-py" if sub else tmp_path
    batches = make_cifar_dir(root, protocol=protocol, str_keys=str_keys)
    d = load_dataset("cifar10", tmp_path, normalize=False)
    assert d.input_shape == (3, 32, 32) and d.num_classes == 10
    assert d.x_train.shape == (15, 3, 32, 32) and d.x_test.shape == (3, 3, 32, 32)
    data2, labels2 = batches["data_batch_2"]
    # image 1 of batch 2 is training sample 3 + 1; channel-major layout (R plane, G plane, B plane)
    np.testing.assert_allclose(d.x_train[4], data2[1].reshape(3, 32, 32) / 255.0, rtol=1e-6)
    assert d.x_train[4, 1, 0, 0] == pytest.approx(data2[1][1024] / 255.0)
    assert d.y_train[4] == labels2[1]
    np.testing.assert_array_equal(d.y_test, batches["test_batch"][1])
    dn = load_dataset("cifar10", tmp_path, normalize=True)
    assert dn.mean.shape == (3,)
    np.testing.assert_allclose(dn.x_train.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)


def test_cifar10_missing_and_malformed(tmp_path):
    make_cifar_dir(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(DataError, match=f"^cifar10: cannot read {tmp_path / 'data_batch_3'}: "
                                        "file not found; expected a CIFAR-10 python pickle"):
        load_dataset("cifar10", tmp_path)
    (tmp_path / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(DataError, match="data_batch_3: not a readable pickle"):
        load_dataset("cifar10", tmp_path)
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps({b"data": np.zeros((2, 10), np.uint8),
                                                          b"labels": [0, 1]}))
    with pytest.raises(DataError, match=r"data_batch_3: data uint8 \(2, 10\)"):
        load_dataset("cifar10", tmp_path)


def test_cifar10_refuses_code_in_pickles(tmp_path):
    make_cifar_dir(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(DataError, match="refusing to unpickle global builtins.print"):
        load_dataset("cifar10", tmp_path)


# ----------------------------------------------------------------------------------------------
# npz
# ----------------------------------------------------------------------------------------------

def test_npz_images_with_test_split(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((10, 2, 4, 4)).astype(np.float64)
    y = np.arange(10) % 3
    xt = rng.random((4, 2, 4, 4))
    yt = np.array([0, 1, 2, 3])
    np.savez(tmp_path / "d.npz", x=x, y=y, x_test=xt, y_test=yt)
    d = load_dataset("npz", tmp_path / "d.npz", normalize=False)
    assert d.input_shape == (2, 4, 4) and d.num_classes == 4
    assert d.x_train.dtype == np.float32
    np.testing.assert_allclose(d.x_train, x, rtol=1e-6)
    np.testing.assert_array_equal(d.y_test, yt)


def test_npz_folder_hw_images_and_seeded_split(tmp_path):
    x = np.arange(20 * 3 * 5, dtype=np.int32).reshape(20, 3, 5)
    y = np.repeat(np.arange(4), 5)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    d = load_dataset("npz", tmp_path, seed=1, test_fraction=0.2, normalize=False)
    assert d.input_shape == (1, 3, 5)
    assert len(d.x_test) == 4 and sorted(d.y_test.tolist()) == [0, 1, 2, 3]
    # values as stored; every sample exactly once across the two splits
    firsts = np.concatenate([d.x_train[:, 0, 0, 0], d.x_test[:, 0, 0, 0]])
    np.testing.assert_array_equal(np.sort(firsts), np.sort(x[:, 0, 0]))
    d2 = load_dataset("npz", tmp_path, seed=1, test_fraction=0.2, normalize=False)
    np.testing.assert_array_equal(d.y_train, d2.y_train)
    np.testing.assert_array_equal(d.x_test, d2.x_test)


def test_npz_flat_vectors(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(30, 7))
    y = np.arange(30) % 2
    np.savez(tmp_path / "flat.npz", x=x, y=y)
    d = load_dataset("npz", tmp_path / "flat.npz")
    assert d.input_shape == (7,) and d.x_train.shape[1:] == (7,) and d.num_classes == 2
    assert d.mean.shape == (1,)
    assert abs(float(d.x_train.mean())) < 1e-5


def test_npz_errors(tmp_path):
    with pytest.raises(DataError, match=f"npz: cannot read {tmp_path / 'data.npz'}: file not"):
        load_dataset("npz", tmp_path)
    p = tmp_path / "bad.npz"
    p.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="bad.npz: not a readable .npz"):
        load_dataset("npz", p)
    np.savez(p, x=np.zeros((3, 2)))
    with pytest.raises(DataError, match="bad.npz: no array 'y'"):
        load_dataset("npz", p)
    np.savez(p, x=np.zeros((3, 2)), y=np.zeros(3))
    with pytest.raises(DataError, match="bad.npz: y has dtype float64"):
        load_dataset("npz", p)
    np.savez(p, x=np.zeros((3,)), y=np.zeros(3, int))
    with pytest.raises(DataError, match=r"bad.npz: x has dtype float64 and shape \(3,\)"):
        load_dataset("npz", p)
    np.savez(p, x=np.zeros((3, 2)), y=np.zeros(3, int), x_test=np.zeros((1, 2)))
    with pytest.raises(DataError, match="only one of x_test, y_test"):
        load_dataset("npz", p)
    np.savez(p, x=np.zeros((3, 2)), y=np.zeros(3, int), x_test=np.zeros((1, 3)),
             y_test=np.zeros(1, int))
    with pytest.raises(DataError, match="x_test samples have shape"):
        load_dataset("npz", p)
    np.savez(p, x=np.array([None] * 3, dtype=object), y=np.zeros(3, int))
    with pytest.raises(DataError, match="not a readable .npz"):
        load_dataset("npz", p)


def test_bad_arguments():
    with pytest.raises(ValueError, match="^dataset must be one of"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="^test_fraction "):
        load_dataset("digits", test_fraction=1.0)
    with pytest.raises(ValueError, match="^seed "):
        load_dataset("digits", seed=-1)
    assert issubclass(DataError, ValueError)


# ----------------------------------------------------------------------------------------------
# batching and augmentation
# ----------------------------------------------------------------------------------------------

def test_minibatches_cover_every_sample_once():
    x = np.arange(23, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    y = np.arange(23)
    rng = np.random.default_rng(0)
    seen = []
    sizes = []
    for xb, yb in iterate_minibatches(x, y, 5, rng=rng):
        np.testing.assert_array_equal(xb[:, 0], yb)              # pairs stay together
        seen += yb.tolist()
        sizes.append(len(yb))
    assert sorted(seen) == list(range(23)) and sizes == [5, 5, 5, 5, 3]
    assert seen != list(range(23))                                # shuffled
    second = [int(v) for _, yb in iterate_minibatches(x, y, 5, rng=rng) for v in yb]
    assert sorted(second) == list(range(23)) and second != seen   # next epoch, new order
    a = [yb.tolist() for _, yb in iterate_minibatches(x, y, 5, rng=7)]
    b = [yb.tolist() for _, yb in iterate_minibatches(x, y, 5, rng=np.random.default_rng(7))]
    assert a == b                                                  # seeded
    dropped = [len(yb) for _, yb in iterate_minibatches(x, y, 5, rng=1, drop_last=True)]
    assert dropped == [5, 5, 5, 5]
    ordered = list(iterate_minibatches(x, y, 10, shuffle=False))
    assert [yb.tolist() for _, yb in ordered][2] == [20, 21, 22]
    assert np.shares_memory(ordered[0][0], x)                      # in-order batches are views


def test_minibatch_argument_errors():
    x, y = np.zeros((4, 2)), np.zeros(3)
    with pytest.raises(ValueError, match="^y must have one label"):
        iterate_minibatches(x, y, 2)
    with pytest.raises(ValueError, match="^batch_size "):
        iterate_minibatches(x, np.zeros(4), 0)
    with pytest.raises(ValueError, match="^rng "):
        iterate_minibatches(x, np.zeros(4), 2, rng="seed")


def test_augment_cifar_crops_and_flips():
    rng = np.random.default_rng(0)
    xb = rng.random((64, 3, 8, 8)).astype(np.float32)
    out = augment_cifar(xb, np.random.default_rng(5), pad=2)
    assert out.shape == xb.shape and out.dtype == xb.dtype
    np.testing.assert_array_equal(out, augment_cifar(xb, np.random.default_rng(5), pad=2))
    assert not np.array_equal(out, augment_cifar(xb, np.random.default_rng(6), pad=2))
    # each output is some crop (offset in [0, 4]^2) of the zero-padded input, maybe flipped
    padded = np.pad(xb, ((0, 0), (0, 0), (2, 2), (2, 2)))
    n_flipped = 0
    for i in range(len(xb)):
        match = None
        for dy in range(5):
            for dx in range(5):
                crop = padded[i, :, dy:dy + 8, dx:dx + 8]
                if np.array_equal(out[i], crop):
                    match = "plain"
                elif np.array_equal(out[i], crop[:, :, ::-1]):
                    match = "flip"
        assert match is not None, f"sample {i} is not a crop of its padded input"
        n_flipped += match == "flip"
    assert 15 <= n_flipped <= 49                                  # about half are flipped
    # pad=0 only flips
    out0 = augment_cifar(xb, 3, pad=0)
    assert all(np.array_equal(o, x) or np.array_equal(o, x[:, :, ::-1])
               for o, x in zip(out0, xb, strict=True))
    with pytest.raises(ValueError, match="^xb "):
        augment_cifar(xb[0], rng)
    with pytest.raises(ValueError, match="^pad "):
        augment_cifar(xb, rng, pad=-1)


# ----------------------------------------------------------------------------------------------
# encoders
# ----------------------------------------------------------------------------------------------

def test_direct_encoder_is_a_stride0_view():
    x = np.random.default_rng(0).random((4, 3, 2, 2)).astype(np.float32)
    s = DirectEncoder().encode(x, 6)
    assert s.shape == (6, 4, 3, 2, 2) and s.strides[0] == 0 and not s.flags.writeable
    assert np.shares_memory(s, x)
    np.testing.assert_array_equal(s[5], x)
    chunks = list(DirectEncoder().chunks(x, 6, 4))
    assert [c.shape[0] for c in chunks] == [4, 2]
    np.testing.assert_array_equal(np.concatenate(chunks), s)


def test_poisson_rates_match_abs_x():
    x = np.array([[0.0, 0.1, 0.5, 0.9, 1.0, 1.7, -0.3, -0.8]], dtype=np.float32)
    T = 4000
    s = PoissonEncoder(seed=0).encode(x, T)
    assert s.shape == (T, 1, 8) and s.dtype == np.float32
    assert set(np.unique(s).tolist()) <= {-1.0, 0.0, 1.0}
    rate = np.abs(s).mean(axis=0)[0]
    expected = np.clip(np.abs(x[0]), 0, 1)
    # binomial std <= sqrt(0.25 / 4000) ~ 0.008; allow 5 sigma
    np.testing.assert_allclose(rate, expected, atol=0.04)
    assert rate[0] == 0.0 and rate[4] == 1.0 and rate[5] == 1.0
    # the sign follows x
    assert np.all(s[:, 0, 6:] <= 0) and np.all(s[:, 0, 1:6] >= 0)
    # unsigned: negative entries never fire
    u = PoissonEncoder(seed=0, signed=False).encode(x, 500)
    assert np.all(u[:, 0, 6:] == 0) and np.all(u >= 0)
    assert u[:, 0, 3].mean() == pytest.approx(0.9, abs=0.06)


def test_poisson_is_seeded_and_steps_are_independent():
    x = np.full((2, 50), 0.5)
    a = PoissonEncoder(seed=3).encode(x, 10)
    b = PoissonEncoder(seed=3).encode(x, 10)
    c = PoissonEncoder(seed=4).encode(x, 10)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a[0], a[1])
    assert a.dtype == np.float64


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("time_chunk", [1, 3, 7, 20])
def test_chunks_concatenate_to_full_encoding(dtype, time_chunk):
    x = (np.random.default_rng(1).random((3, 2, 4, 4)) * 2 - 1).astype(dtype)
    T = 7
    full = PoissonEncoder(seed=11).encode(x, T)
    enc = PoissonEncoder(seed=11)
    chunks = list(enc.chunks(x, T, time_chunk))
    assert all(c.shape[0] <= time_chunk for c in chunks)
    np.testing.assert_array_equal(np.concatenate(chunks), full)
    # the encoder keeps streaming: the next window continues the same random stream
    enc2 = PoissonEncoder(seed=11)
    enc2.encode(x, T)
    np.testing.assert_array_equal(enc.encode(x, 2), enc2.encode(x, 2))


def test_make_encoder_and_errors():
    assert isinstance(make_encoder("direct"), DirectEncoder)
    p = make_encoder("poisson", seed=5)
    assert isinstance(p, PoissonEncoder) and p.seed == 5 and p.signed
    with pytest.raises(ValueError, match="^encoder must be one of"):
        make_encoder("latency")
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="^T "):
        p.encode(x, 0)
    with pytest.raises(ValueError, match="^time_chunk "):
        p.chunks(x, 4, 0)
    with pytest.raises(ValueError, match="^x "):
        DirectEncoder().encode(np.zeros(3, int), 2)
    with pytest.raises(ValueError, match="^seed "):
        PoissonEncoder(seed=-2)
