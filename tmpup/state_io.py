"""Files of tmpup's state folder: atomic writes, and the one error a folder that cannot be written
or read becomes (`StateError`, exit 3, naming the folder and what frees it)."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from tmpup.errors import ConfigError


class StateError(ConfigError):
    """tmpup's own state folder cannot be written or read (read-only disk, full disk, a file in the way)."""


_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


def state_write_error(root: Path, what: str, exc: OSError) -> StateError:
    """The one-line error for `what` that could not be written in `root`, with what fixes it."""
    why = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
    if exc.errno in _FULL:
        hint = "free some space, or set TMPUP_STATE_DIR to a folder on a disk with room"
    elif exc.errno in _READ_ONLY:
        hint = "make it writable, or set TMPUP_STATE_DIR to a writable folder"
    else:
        hint = "free some space, or set TMPUP_STATE_DIR to a writable folder"
    return StateError(f"cannot write {what} in {root}: {why}", hint=hint)


@contextlib.contextmanager
def writing(root: Path, what: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise state_write_error(root, what, exc) from None


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[IO[bytes]]:
    """temp file in the same folder + fsync + rename: a reader sees the old or the new file, never half.

    What the body writes to the yielded file becomes `path` when the body returns; an exception
    leaves `path` as it was and removes the temp file.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dirfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)


def write_atomic(path: Path, data: bytes) -> None:
    with atomic_file(path) as fh:
        fh.write(data)


def is_current(path: Path, fd: int) -> bool:
    """Whether `path` still names the file open as `fd` (a lock on an unlinked file excludes nobody)."""
    try:
        return os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
    except OSError:
        return False
