"""Download MNIST, Fashion-MNIST, CIFAR-10 and N-MNIST, checked against published checksums.

:func:`download` fetches a dataset's files into ``root`` in the layout :func:`load_dataset`
reads, from the same sources and with the same MD5 checksums as the established loaders:

* MNIST and Fashion-MNIST: torchvision's ``MNIST`` / ``FashionMNIST`` (``mirrors`` and
  ``resources`` in ``torchvision/datasets/mnist.py``, github.com/pytorch/vision); the four
  gzipped IDX files go to ``root/MNIST/raw`` / ``root/FashionMNIST/raw`` as torchvision puts them.
* CIFAR-10: torchvision's ``CIFAR10`` (``url``, ``tgz_md5`` in ``torchvision/datasets/cifar.py``);
  the archive is unpacked to ``root/cifar-10-batches-py``.
* N-MNIST (Orchard et al., Front. Neurosci. 2015): Tonic's ``NMNIST`` (``train_url``,
  ``train_md5``, ``test_url``, ``test_md5`` in ``tonic/datasets/nmnist.py``,
  github.com/neuromorphs/tonic); ``train.zip`` and ``test.zip`` are unpacked to ``root/Train``
  and ``root/Test``.

Every file is streamed to a temporary name beside its destination while its MD5 is computed,
and renamed to its final name only when the size and checksum match: an interrupted, truncated
or corrupted transfer never leaves a file under the final name (the temporary file is removed).
Archives are unpacked into a temporary folder that is renamed when complete. A second call finds
the verified files and downloads nothing. Mirrors are tried in order; ``mirrors=`` or the
environment variable ``PYSNN_DATA_MIRROR`` (space-separated base URLs, each holding the files
under their file names) replaces them. Every failure is one :class:`DownloadError` line naming
the dataset, the file and what went wrong at each mirror.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import socket
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..errors import DataError

__all__ = ["DOWNLOADABLE", "SOURCES", "DownloadError", "RemoteFile", "Source", "download"]

#: environment variable holding mirror base URLs that replace the built-in ones
MIRROR_ENV = "PYSNN_DATA_MIRROR"
_CHUNK = 1 << 16


class DownloadError(DataError):
    """A dataset file could not be fetched or failed its checksum; the message is one line."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: its name on disk, its MD5, and where each default source has it.

    ``urls`` are full URLs of the default sources, tried in order; a mirror given by the user is
    a base URL to which ``filename`` is appended.
    """

    filename: str
    md5: str
    urls: tuple[str, ...]
    unpack: str = ""        # "" (keep as is), "tar" or "zip"
    unpack_to: str = ""     # folder (relative to the dataset folder) the archive fills


@dataclass(frozen=True)
class Source:
    """Where a dataset's files go (``folder`` under ``root``) and which files they are."""

    folder: str
    files: tuple[RemoteFile, ...]


def _idx_files(mirrors: tuple[str, ...], md5s: dict[str, str]) -> tuple[RemoteFile, ...]:
    return tuple(RemoteFile(f"{name}.gz", md5, tuple(m + f"{name}.gz" for m in mirrors))
                 for name, md5 in md5s.items())


# torchvision/datasets/mnist.py, MNIST.mirrors and MNIST.resources
_MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                  "http://yann.lecun.com/exdb/mnist/")
_MNIST_MD5 = {"train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
              "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
              "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
              "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c"}
# torchvision/datasets/mnist.py, FashionMNIST.mirrors and FashionMNIST.resources
_FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
_FASHION_MD5 = {"train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
                "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
                "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310"}
# tonic/datasets/nmnist.py, NMNIST.base_url / train_url / test_url and their MD5s
_NMNIST_BASE = "https://data.mendeley.com/public-files/datasets/468j46mzdv/files/"

#: the datasets :func:`download` knows, and their files
SOURCES: dict[str, Source] = {
    "mnist": Source("MNIST/raw", _idx_files(_MNIST_MIRRORS, _MNIST_MD5)),
    "fashion-mnist": Source("FashionMNIST/raw", _idx_files(_FASHION_MIRRORS, _FASHION_MD5)),
    # torchvision/datasets/cifar.py, CIFAR10.url and CIFAR10.tgz_md5
    "cifar10": Source("", (RemoteFile(
        "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
        ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
        unpack="tar", unpack_to="cifar-10-batches-py"),)),
    "nmnist": Source("", (
        RemoteFile("train.zip", "20959b8e626244a1b502305a9e6e2031",
                   (_NMNIST_BASE + "39c25547-014b-4137-a934-9d29fa53c7a0/file_downloaded",),
                   unpack="zip", unpack_to="Train"),
        RemoteFile("test.zip", "69ca8762b2fe404d9b9bad1103e97832",
                   (_NMNIST_BASE + "05a4d654-7e03-4c15-bdfa-9bb2bcbea494/file_downloaded",),
                   unpack="zip", unpack_to="Test"))),
}
DOWNLOADABLE = tuple(SOURCES)


def md5_of(path: Path) -> str:
    """The MD5 hex digest of a file, read in chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _reason(e: BaseException) -> str:
    """A short, one-line reason for a failed transfer."""
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        e = e.reason if isinstance(e.reason, BaseException) else e
    if isinstance(e, (TimeoutError, socket.timeout)):
        return "timed out"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    return " ".join(str(getattr(e, "strerror", None) or e or type(e).__name__).split())


def _fetch(url: str, dest: Path, md5: str, timeout: float, progress: bool) -> None:
    """Stream ``url`` to a temporary file beside ``dest``; rename it to ``dest`` if verified.

    Raises ``OSError`` / ``urllib.error.URLError`` on a failed transfer and ``ValueError`` when
    the size or checksum is wrong; the temporary file is removed in every case.
    """
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        h = hashlib.md5()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            size = resp.headers.get("Content-Length")
            total = int(size) if size and size.isdigit() else None
            got = 0
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, leave=False,
                      disable=not progress) as bar:
                for block in iter(lambda: resp.read(_CHUNK), b""):
                    out.write(block)
                    h.update(block)
                    got += len(block)
                    bar.update(len(block))
        if total is not None and got != total:
            raise ValueError(f"truncated transfer: {got} of {total} bytes")
        if h.hexdigest() != md5:
            raise ValueError(f"MD5 {h.hexdigest()} is not the published {md5}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _urls(file: RemoteFile, mirrors: tuple[str, ...] | None) -> tuple[str, ...]:
    if mirrors is None:
        return file.urls
    return tuple(m.rstrip("/") + "/" + file.filename for m in mirrors)


def _fetch_any(name: str, file: RemoteFile, dest: Path, mirrors: tuple[str, ...] | None,
               timeout: float, progress: bool) -> None:
    """Fetch ``file`` from the first source that delivers it intact, else one-line error."""
    failures = []
    for url in _urls(file, mirrors):
        try:
            _fetch(url, dest, file.md5, timeout, progress)
            return
        except ValueError as e:
            failures.append(f"{url}: {e}")
        except (OSError, http.client.HTTPException) as e:   # HTTP errors, refused, timeout, reset
            failures.append(f"{url}: {_reason(e)}")
    raise DownloadError(f"{name}: could not download {file.filename} ({'; '.join(failures)}); "
                        f"set {MIRROR_ENV} to a mirror holding it, or put the files in "
                        f"{dest.parent}")


def _members_inside(names: list[str], kind: str, archive: Path) -> None:
    """Refuse archive members that would land outside the unpack folder."""
    for n in names:
        p = Path(n)
        if p.is_absolute() or ".." in p.parts:
            raise DownloadError(f"cannot unpack {archive}: member {n!r} points outside the "
                                f"folder; expected a {kind} archive of relative paths")


def _unpack(name: str, archive: Path, file: RemoteFile, folder: Path) -> None:
    """Unpack ``archive`` into ``folder/unpack_to`` through a temporary folder renamed at the end.

    An archive whose members all sit under one top folder named ``unpack_to`` (N-MNIST's
    ``Train/...``, CIFAR's ``cifar-10-batches-py/...``) is unpacked without doubling it.
    """
    target = folder / file.unpack_to
    work = Path(tempfile.mkdtemp(dir=folder, prefix=f".{file.unpack_to}.", suffix=".part"))
    try:
        if file.unpack == "tar":
            with tarfile.open(archive) as tf:
                members = [m for m in tf.getmembers() if m.isfile() or m.isdir()]
                _members_inside([m.name for m in members], "tar", archive)
                safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tf.extractall(work, members=members, **safe)
        else:
            with zipfile.ZipFile(archive) as zf:
                _members_inside(zf.namelist(), "zip", archive)
                zf.extractall(work)
        inner = work / file.unpack_to
        src = inner if inner.is_dir() and len(list(work.iterdir())) == 1 else work
        if target.exists():
            shutil.rmtree(target)
        os.replace(src, target)
        (target / ".verified").write_text(file.md5 + "\n")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as e:
        raise DownloadError(f"{name}: cannot unpack {archive}: {_reason(e)}; expected a "
                            f"{file.unpack} archive") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _done(folder: Path, file: RemoteFile) -> bool:
    """Whether ``file`` is already in place and verified (a second call downloads nothing)."""
    if file.unpack:
        marker = folder / file.unpack_to / ".verified"
        return marker.is_file() and marker.read_text().strip() == file.md5
    path = folder / file.filename
    return path.is_file() and md5_of(path) == file.md5


def download(name: str, root: str | Path, *, mirrors: list[str] | tuple[str, ...] | None = None,
             timeout: float = 60.0, progress: bool = True) -> Path:
    """Download dataset ``name`` into ``root`` (if not there yet) and return ``root``.

    Args:
        name: one of :data:`DOWNLOADABLE` (``"mnist"``, ``"fashion-mnist"``, ``"cifar10"``,
            ``"nmnist"``).
        root: the data folder; pass the same folder as ``data_dir`` to :func:`load_dataset`.
        mirrors: base URLs tried in order instead of the built-in sources (default: the
            environment variable ``PYSNN_DATA_MIRROR``, space-separated, if set).
        timeout: seconds a connection or a read may stall before the source is given up.
        progress: show a progress bar per file on stderr.

    Raises:
        ValueError: unknown ``name`` or a ``timeout`` that is not positive.
        DownloadError: no source delivered a file intact, or an archive cannot be unpacked.
    """
    if name not in SOURCES:
        raise ValueError(f"name must be one of {', '.join(DOWNLOADABLE)}, got {name!r}")
    if not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if mirrors is None and os.environ.get(MIRROR_ENV, "").strip():
        mirrors = os.environ[MIRROR_ENV].split()
    mirrors = tuple(mirrors) if mirrors is not None else None
    root = Path(root).expanduser()
    source = SOURCES[name]
    folder = root / source.folder
    made = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"{name}: cannot create {folder}: {_reason(e)}") from None
    try:
        for file in source.files:
            if not _done(folder, file):
                _fetch_one(name, file, folder, mirrors, timeout, progress)
    except BaseException:
        for p in made:                       # leave no empty folder this call created
            if p.is_dir() and not any(p.iterdir()):
                p.rmdir()
        raise
    return root


def _fetch_one(name: str, file: RemoteFile, folder: Path, mirrors: tuple[str, ...] | None,
               timeout: float, progress: bool) -> None:
    """Fetch one file into ``folder`` and unpack it if it is an archive (then drop it)."""
    path = folder / file.filename
    _fetch_any(name, file, path, mirrors, timeout, progress)
    if file.unpack:
        try:
            _unpack(name, path, file, folder)
        finally:
            path.unlink(missing_ok=True)     # the unpacked folder is what is kept
