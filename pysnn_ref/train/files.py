"""Files of a run folder written atomically, and one writer per run folder.

* :func:`atomic_write` -- a temporary file in the same folder, flushed and ``os.fsync``-ed,
  then ``os.replace`` and an fsync of the folder: a reader (or a crash, or a full disk) sees the
  old file or the new one, whole, never a half-written one; a failed write removes its
  temporary file.
* :class:`RunLock` -- an exclusive ``fcntl.flock`` on ``RUN_DIR/.lock``, held while a process
  writes the run and released by the operating system when the process ends, however it ends
  (exit, exception, Ctrl-C, ``kill -9``): a second process asking for the same run folder gets
  one ``ValueError`` line instead of writing into it too (docs/reliability.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

try:
    import fcntl  # POSIX only; without it (Windows) the lock is not taken
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = ["atomic_write", "atomic_write_text", "fsync_dir", "RunLock", "LOCK_NAME"]

LOCK_NAME = ".lock"   #: the lock file inside a run folder


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (a no-op where folders cannot be fsync-ed)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any], tmp_suffix: str = ".tmp"
                 ) -> Path:
    """Write ``path`` through ``write(f)`` (a binary file) atomically; returns ``path``."""
    path = Path(path)
    tmp = path.with_name(path.stem + tmp_suffix + path.suffix)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)   # a full disk or Ctrl-C leaves no .tmp file behind
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write` of a UTF-8 text."""
    data = text.encode()
    return atomic_write(path, lambda f: f.write(data))


class RunLock:
    """An exclusive lock on a run folder (created if missing), or a ``ValueError`` naming the
    folder and the process that holds it.  :meth:`release` (or the end of the process) frees
    it."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is None:  # pragma: no cover
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            self._fd = None
            raise ValueError(f"run folder {self.run_dir} is being written by another process "
                             f"(pid {holder}, lock {self.path}); wait for it to end, or "
                             f"choose another --out") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    @property
    def held(self) -> bool:
        """Whether this process holds the lock now."""
        return self._fd is not None

    def release(self) -> None:
        """Free the lock (the file stays; an unlocked file means nobody writes the run)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
