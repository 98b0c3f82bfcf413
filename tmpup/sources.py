"""What gets uploaded: files (checked before any request) and stdin (spooled to a temp file).

`FileSlice` is the request body of every upload: an iterable of large blocks read from an offset of
the file with a known length, so `requests` sends a `Content-Length` (not chunked encoding) and
urllib3 writes 1 MiB at a time instead of its default 16 KiB; a large body is read a few blocks ahead
on a thread of its own (`read_ahead.py`). Each iteration seeks again, so a
retried request re-reads from the right position. Progress and optional hashes are fed from the same
reads: the file is read once.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import os
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from tmpup.errors import InputError, IntegrityError, TmpupError
from tmpup.read_ahead import read_blocks

BLOCK = 1024 * 1024
IDENTITY_SPAN = 1024 * 1024

#: Set by the CLI on Ctrl-C/SIGTERM: every transfer loop stops at its next block (worker threads too).
CANCEL = threading.Event()


def check_cancel() -> None:
    if CANCEL.is_set():
        from tmpup.errors import Interrupted

        raise Interrupted("interrupted")


def pause(seconds: float) -> None:
    """Sleep that Ctrl-C/SIGTERM ends at once, in worker threads too (where no signal handler runs).

    Every wait of tmpup's (back-off, Retry-After, rate limits, --limit-rate) goes through here.
    """
    if CANCEL.wait(seconds):
        check_cancel()


class Hasher(Protocol):
    """A hash computed in the read path (`hashing.ResettableHash`); `reset` starts it over for a retry."""

    def reset(self) -> None: ...
    def update(self, data: bytes, /) -> None: ...
    def hexdigest(self) -> str: ...


class Observer(Protocol):
    """Sees every block read for the source with its offset (`hashing.ContiguousHash`)."""

    def feed(self, offset: int, data: bytes, /) -> None: ...


@dataclass(frozen=True)
class FileIdentity:
    """Enough to know a file is the same one an interrupted upload started from."""

    path: str
    size: int
    mtime_ns: int
    edge_hash: str

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "mtime_ns": self.mtime_ns, "edge_hash": self.edge_hash}


class Source:
    """A regular file to upload. Construct with `open_source`, which validates it."""

    def __init__(self, path: Path, display: str, size: int, mtime_ns: int, *, temporary: bool = False):
        self.path = path
        self.display = display
        self.size = size
        self.mtime_ns = mtime_ns
        self.temporary = temporary
        self.observers: list[Observer] = []
        self.throttle: Throttle | None = None
        #: The fd whose flock marks a temporary (spool) file as in use; closed by `cleanup`.
        self.hold: int | None = None

    @property
    def default_name(self) -> str:
        return self.path.name

    @functools.cached_property
    def absolute(self) -> str:
        """The file's absolute path with symlinks resolved, as records and receipts name it (resolved
        once: record lookups and the receipt each need it, for every file of a 200-file run)."""
        return str(self.path.resolve())

    def identity(self) -> FileIdentity:
        digest = hashlib.sha256()
        with self.path.open("rb") as fh:
            digest.update(fh.read(IDENTITY_SPAN))
            if self.size > IDENTITY_SPAN:
                fh.seek(max(IDENTITY_SPAN, self.size - IDENTITY_SPAN))
                digest.update(fh.read(IDENTITY_SPAN))
        return FileIdentity(self.absolute, self.size, self.mtime_ns, digest.hexdigest())

    def slice(
        self,
        offset: int = 0,
        length: int | None = None,
        *,
        progress: Callable[[int], None] | None = None,
        hashers: list[Hasher] | None = None,
    ) -> FileSlice:
        if length is None:
            length = self.size - offset
        return FileSlice(self, offset, length, progress=progress, hashers=hashers)

    def check_unchanged(self) -> None:
        """Fail if the file changed while it was being uploaded."""
        try:
            st = self.path.stat()
        except OSError as exc:
            raise InputError(f"{self.display}: disappeared during the upload ({exc.strerror})") from None
        if st.st_size != self.size:
            what = f"{self.size} -> {st.st_size} bytes"
        elif st.st_mtime_ns != self.mtime_ns:
            # Same size: it was written in place (or touched); say so rather than a size "change".
            what = f"same size, but modified: mtime {_when(self.mtime_ns)} -> {_when(st.st_mtime_ns)}"
        else:
            return
        raise IntegrityError(
            f"{self.display}: the file changed while it was being uploaded ({what})",
            hint="upload it again once it is no longer being written",
        )

    def cleanup(self) -> None:
        if self.temporary:
            self.path.unlink(missing_ok=True)  # while still held: a sweeper never sees it unheld
        if self.hold is not None:
            os.close(self.hold)
            self.hold = None


def _when(mtime_ns: int) -> str:
    """A modification time as local ISO 8601 to the microsecond (a rewrite can land in the same second)."""
    import datetime as dt

    try:
        seconds, ns = divmod(mtime_ns, 10**9)
        when = dt.datetime.fromtimestamp(seconds).astimezone().replace(microsecond=ns // 1000)
        return when.isoformat(timespec="microseconds")
    except (OverflowError, OSError, ValueError):  # a date no calendar holds (touch -d far away)
        return f"{mtime_ns} ns"


class FileSlice:
    """`length` bytes of a source from `offset`, as a re-iterable body of large blocks."""

    def __init__(
        self,
        source: Source,
        offset: int,
        length: int,
        *,
        progress: Callable[[int], None] | None = None,
        hashers: list[Hasher] | None = None,
        block: int = BLOCK,
    ) -> None:
        self.source = source
        self.offset = offset
        self.length = length
        self.progress = progress
        self.hashers = hashers or []
        self.block = block
        self.sent = 0

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        # A new iteration is a new attempt: hashes and progress start over from this slice's offset.
        for hasher in self.hashers:
            hasher.reset()
        self.sent = 0
        with self.source.path.open("rb", buffering=0) as fh:
            fh.seek(self.offset)
            # Read on a thread of its own a few blocks ahead (read_ahead.py): the send never waits for the disk.
            with contextlib.closing(read_blocks(fh, self.length, self.block)) as blocks:
                for data in blocks:
                    check_cancel()
                    if self.source.throttle is not None:
                        self.source.throttle.consume(len(data))
                    for observer in self.source.observers:
                        observer.feed(self.offset + self.sent, data)
                    for hasher in self.hashers:
                        hasher.update(data)
                    self.sent += len(data)
                    if self.progress is not None:
                        self.progress(len(data))
                    yield data
        if self.sent < self.length:
            raise IntegrityError(
                f"{self.source.display}: the file shrank while it was being uploaded "
                f"(expected {self.offset + self.length} bytes)",
                hint="upload it again once it is no longer being written",
            )


class Throttle:
    """`--limit-rate`: keep one transfer at or below `rate` bytes per second (like curl's option)."""

    def __init__(
        self, rate: int, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = pause
    ) -> None:
        self.rate = max(1, rate)
        self.clock = clock  # injected edges, as everywhere: tests drive the throttle without waiting
        self.sleep = sleep
        self.start: float | None = None
        self.sent = 0

    def consume(self, n: int) -> None:
        now = self.clock()
        if self.start is None:
            self.start = now
        self.sent += n
        ahead = self.sent / self.rate - (now - self.start)
        if ahead > 0:
            self.sleep(ahead)


def open_source(arg: str, *, stdin: BinaryIO | None = None, spool_dir: Path | None = None) -> Source:
    """Validate a FILE argument (or `-` for stdin) before any request is made."""
    if arg == "-":
        return _spool_stdin(stdin or sys.stdin.buffer, spool_dir)
    path = Path(arg)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError(f"{arg}: no such file") from None
    except PermissionError:
        raise InputError(f"{arg}: permission denied") from None
    except OSError as exc:
        raise InputError(f"{arg}: cannot open ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{arg}: is a directory", hint="upload the files in it (e.g. tmpup upload DIR/*)")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(
            f"{arg}: not a regular file",
            hint="for a pipe or device, use 'tmpup upload - --name NAME < SOURCE'",
        )
    if not os.access(path, os.R_OK):
        raise InputError(f"{arg}: permission denied")
    try:
        with path.open("rb") as fh:
            # /proc and /sys files report a size that is not their content's (0, or a page of 4096):
            # the length is unknown until read. A regular file has its last byte where its size says.
            last = os.pread(fh.fileno(), 1, st.st_size - 1) if st.st_size else None
            pseudo = fh.read(1) != b"" if last is None else last == b""
    except OSError as exc:
        raise InputError(f"{arg}: cannot open ({exc.strerror or exc})") from None
    if pseudo:
        raise InputError(
            f"{arg}: its size ({st.st_size} bytes) is not its content's (a /proc or /sys file?)",
            hint=f"upload a copy, or through stdin: tmpup upload - --name NAME < {arg}",
        )
    return Source(path, arg, st.st_size, st.st_mtime_ns)


def _spool_stdin(stream: BinaryIO, spool_dir: Path | None) -> Source:
    """Copy stdin to a private temp file so the upload has a length and can be retried.

    The file stays flock'd until `Source.cleanup` (`state.create_spool`), so that `resume --clean`
    can tell a killed process's spool (swept) from a live one's. A disk that fills up, or a state
    folder that cannot be written, is a `StateError` (exit 3) and leaves no partial spool behind.
    """
    from tmpup.state import create_spool

    fd, path = create_spool(spool_dir)
    try:
        while True:
            try:
                data = stream.read(BLOCK)
            except OSError as exc:
                raise InputError(f"<stdin>: cannot read it ({exc.strerror or exc})") from None
            if not data:
                break
            check_cancel()
            try:
                _write_all(fd, data)
            except OSError as exc:
                raise _spool_error(path.parent, fd, exc) from None
        st = os.fstat(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)
        raise
    source = Source(path, "<stdin>", st.st_size, st.st_mtime_ns, temporary=True)
    source.hold = fd
    return source


def _spool_error(where: Path, fd: int, exc: OSError) -> TmpupError:
    from tmpup.state_io import StateError, state_write_error
    from tmpup.units import format_size

    if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return state_write_error(where, "the copy of stdin", exc)
    why = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc)).lower()
    return StateError(
        f"cannot copy stdin to {where}: {why} after {format_size(os.fstat(fd).st_size)}",
        hint="stdin is copied whole before it is uploaded: free some space, "
        "or set TMPUP_STATE_DIR to a folder on a disk with room for it",
    )


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
