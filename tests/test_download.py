"""Dataset downloads end to end against a local HTTP server on 127.0.0.1 (no internet).

The server, started and stopped by the fixture, serves files the tests generate: intact ones
(whose MD5 the tests put into a copy of the source table), a corrupted one, a truncated transfer
(Content-Length larger than what is sent), one that stalls past the timeout, and 404s. A closed
port gives "connection refused". Every failure must be one line and leave nothing behind.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import socket
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pysnn_ref import data
from pysnn_ref.data import fetch as dl


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[str, bytes]] = {}
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.hits.append(self.path)
        mode, body = self.routes.get(self.path, ("404", b""))
        if mode == "404":
            self.send_error(404, "Not Found")
            return
        if mode == "stall":
            time.sleep(3.0)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body) + (1000 if mode == "truncate" else 0)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    _Handler.routes = {}
    _Handler.hits = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler
    httpd.shutdown()
    httpd.server_close()


def _md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def _idx(arr: np.ndarray, magic: int) -> bytes:
    head = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return gzip.compress(head + arr.astype(np.uint8).tobytes())


def _fake_mnist(rng: np.random.Generator) -> dict[str, bytes]:
    out = {}
    for split, n in (("train", 20), ("t10k", 10)):
        out[f"{split}-images-idx3-ubyte.gz"] = _idx(rng.integers(0, 256, (n, 28, 28)), 0x803)
        out[f"{split}-labels-idx1-ubyte.gz"] = _idx(np.arange(n) % 10, 0x801)
    return out


def _use(monkeypatch, name: str, files: dict[str, bytes], source: dl.Source | None = None):
    """Point ``name``'s table at the generated files' MD5s (same names, layout, unpacking)."""
    src = source or dl.SOURCES[name]
    new = tuple(dl.RemoteFile(f.filename, _md5(files[f.filename]), f.urls, f.unpack, f.unpack_to)
                for f in src.files)
    monkeypatch.setitem(dl.SOURCES, name, dl.Source(src.folder, new))


def _left(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def test_mnist_download_then_load_and_second_call_reads_the_cache(server, tmp_path, monkeypatch):
    url, h = server
    files = _fake_mnist(np.random.default_rng(0))
    h.routes = {f"/{k}": ("ok", v) for k, v in files.items()}
    _use(monkeypatch, "mnist", files)
    root = tmp_path / "data"
    assert dl.download("mnist", root, mirrors=[url], progress=False) == root
    assert sorted(p.name for p in (root / "MNIST" / "raw").iterdir()) == sorted(files)
    ds = data.load_dataset("mnist", root, normalize=False)
    assert ds.x_train.shape == (20, 1, 28, 28) and ds.x_test.shape == (10, 1, 28, 28)
    np.testing.assert_array_equal(ds.y_test, np.arange(10))
    n = len(h.hits)
    dl.download("mnist", root, mirrors=[url], progress=False)
    assert len(h.hits) == n == 4                  # idempotent: nothing fetched again


def test_environment_mirror_and_fallback_to_the_next_mirror(server, tmp_path, monkeypatch):
    url, h = server
    files = _fake_mnist(np.random.default_rng(1))
    h.routes = {f"/good/{k}": ("ok", v) for k, v in files.items()}
    _use(monkeypatch, "fashion-mnist", files)
    monkeypatch.setenv(dl.MIRROR_ENV, f"{url}/missing {url}/good/")
    dl.download("fashion-mnist", tmp_path, progress=False)
    assert len(list((tmp_path / "FashionMNIST" / "raw").iterdir())) == 4
    assert sum(p.startswith("/missing/") for p in h.hits) == 4     # each file tried there first


@pytest.mark.parametrize("mode, needle", [
    ("corrupt", "is not the published"),
    ("truncate", "truncat"),
    ("404", "HTTP 404"),
    ("stall", "timed out"),
])
def test_failed_transfer_is_one_line_and_leaves_nothing(server, tmp_path, monkeypatch, mode,
                                                        needle):
    url, h = server
    files = _fake_mnist(np.random.default_rng(2))
    _use(monkeypatch, "mnist", files)
    h.routes = {f"/{k}": ("ok", v) for k, v in files.items()}
    first = "train-images-idx3-ubyte.gz"
    body = files[first][:-7] + b"garbage" if mode == "corrupt" else files[first]
    h.routes[f"/{first}"] = ("ok" if mode == "corrupt" else mode, body)
    root = tmp_path / "data"
    with pytest.raises(dl.DownloadError) as e:
        dl.download("mnist", root, mirrors=[url], timeout=0.5, progress=False)
    msg = str(e.value)
    assert "\n" not in msg and needle in msg and first in msg and msg.startswith("mnist:")
    assert _left(tmp_path) == []                  # no partial file, no empty folder


def test_connection_refused(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                                      # nothing listens there now
    with pytest.raises(dl.DownloadError, match="connection refused"):
        dl.download("cifar10", tmp_path / "d", mirrors=[f"http://127.0.0.1:{port}"],
                    progress=False)
    assert _left(tmp_path) == []


def test_a_good_file_is_kept_when_a_later_one_fails(server, tmp_path, monkeypatch):
    url, h = server
    files = _fake_mnist(np.random.default_rng(3))
    _use(monkeypatch, "mnist", files)
    h.routes = {"/train-images-idx3-ubyte.gz": ("ok", files["train-images-idx3-ubyte.gz"])}
    with pytest.raises(dl.DownloadError, match="train-labels"):
        dl.download("mnist", tmp_path, mirrors=[url], progress=False)
    assert _left(tmp_path / "MNIST" / "raw") == ["train-images-idx3-ubyte.gz"]   # verified


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tf.addfile(info, io.BytesIO(body))
    return buf.getvalue()


def test_cifar_archive_is_unpacked_where_the_loader_reads_it(server, tmp_path, monkeypatch):
    import pickle

    rng = np.random.default_rng(4)
    batch = {b"data": rng.integers(0, 256, (4, 3072)).astype(np.uint8), b"labels": [0, 1, 2, 3]}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    archive = _tar({f"cifar-10-batches-py/{n}": pickle.dumps(batch) for n in names})
    url, h = server
    files = {"cifar-10-python.tar.gz": archive}
    h.routes = {"/cifar-10-python.tar.gz": ("ok", archive)}
    _use(monkeypatch, "cifar10", files)
    dl.download("cifar10", tmp_path, mirrors=[url], progress=False)
    assert not (tmp_path / "cifar-10-python.tar.gz").exists()       # the archive is dropped
    ds = data.load_dataset("cifar10", tmp_path, normalize=False)
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_test.shape == (4, 3, 32, 32)
    dl.download("cifar10", tmp_path, mirrors=[url], progress=False)
    assert len(h.hits) == 1


def test_archive_member_outside_the_folder_is_refused(server, tmp_path, monkeypatch):
    archive = _tar({"../evil": b"x"})
    url, h = server
    h.routes = {"/cifar-10-python.tar.gz": ("ok", archive)}
    _use(monkeypatch, "cifar10", {"cifar-10-python.tar.gz": archive})
    with pytest.raises(dl.DownloadError, match="outside"):
        dl.download("cifar10", tmp_path / "d", mirrors=[url], progress=False)
    assert _left(tmp_path) == []


def test_nmnist_zips_unpack_to_train_and_test(server, tmp_path, monkeypatch):
    def zipped(top: str) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for d in range(10):
                # one 5-byte N-MNIST event: x, y, polarity bit 7 + 23-bit time stamp
                zf.writestr(f"{top}/{d}/{d:05d}.bin", bytes([d + 1, d + 2, 0x80, 0, 10 * d]))
        return buf.getvalue()

    files = {"train.zip": zipped("Train"), "test.zip": zipped("Test")}
    url, h = server
    h.routes = {f"/{k}": ("ok", v) for k, v in files.items()}
    _use(monkeypatch, "nmnist", files)
    dl.download("nmnist", tmp_path, mirrors=[url], progress=False)
    assert sorted(p.name for p in (tmp_path / "Train").iterdir() if p.is_dir()) == \
        [str(d) for d in range(10)]
    ds = data.load_dataset("nmnist", tmp_path)
    assert len(ds.y_train) == 10 and len(ds.y_test) == 10


def test_bad_arguments_name_the_parameter(tmp_path):
    with pytest.raises(ValueError, match="name must be one of"):
        dl.download("imagenet", tmp_path)
    with pytest.raises(ValueError, match="timeout"):
        dl.download("mnist", tmp_path, timeout=0)


def test_published_checksums_are_well_formed():
    for name, src in dl.SOURCES.items():
        for f in src.files:
            assert len(f.md5) == 32 and int(f.md5, 16) >= 0, (name, f.filename)
            assert f.urls and all(u.startswith(("http://", "https://")) for u in f.urls)


def test_train_download_flag_end_to_end(server, tmp_path, monkeypatch, capsys):
    """``train --download``: fetches, verifies and trains; a failed transfer is one line, exit 2,
    and no run folder and no data folder are left."""
    from pysnn_ref.train.__main__ import cli

    url, h = server
    files = _fake_mnist(np.random.default_rng(5))
    h.routes = {f"/{k}": ("ok", v) for k, v in files.items()}
    _use(monkeypatch, "mnist", files)
    monkeypatch.setenv(dl.MIRROR_ENV, url)
    argv = ["--dataset", "mnist", "--download", "--data-dir", str(tmp_path / "d"), "--model",
            "mlp", "--epochs", "1", "--T", "2", "--no-progress"]
    assert cli([*argv, "--out", str(tmp_path / "run")]) == 0
    assert "test_acc=" in capsys.readouterr().out
    assert len(list((tmp_path / "d" / "MNIST" / "raw").iterdir())) == 4
    h.routes = {}                                               # every file now 404
    bad = tmp_path / "bad"
    bad.mkdir()
    argv[4] = str(bad / "d")
    assert cli([*argv, "--out", str(bad / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "HTTP 404" in err
    assert _left(bad) == []
