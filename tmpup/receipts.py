"""receipts.jsonl: one JSON line per successful upload (its `--json` result), what `tmpup info` answers
from where an API has no info, and how KF5 and Enterprise Tester map a printed handle to its id.

Every append and every compaction holds `receipts.jsonl.lock` (flock), so parallel runs lose no line.
Past `RECEIPTS_MAX_BYTES` an append compacts the file, in one streaming pass: receipts of uploads that
expired over `RECEIPTS_KEEP_EXPIRED` ago go, then the oldest, down to half the limit. Readers skip
lines that are not receipts (torn by a crash, not UTF-8, a bad date), and an append starts on a fresh
line, so one bad line hides nothing else.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import errno
import json
import os
import re
import stat
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from tmpup.state_io import StateError, atomic_file, writing

#: receipts.jsonl is compacted when an append takes it past this size (~8000 receipts).
RECEIPTS_MAX_BYTES = 4 * 1024 * 1024
#: An upload's receipt is kept this long after it expired: `info` can still say when it expired.
RECEIPTS_KEEP_EXPIRED = dt.timedelta(days=30)
#: A line longer than this is no receipt tmpup wrote (one is a few hundred bytes): readers skip it
#: without holding it whole, so a damaged file cannot make them take its size in memory.
RECEIPT_LINE_MAX = 1024 * 1024


#: A \u escape of a UTF-16 surrogate: only those can put text in a receipt that cannot be printed.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _parse_receipt(line: bytes) -> dict[str, Any] | None:
    """The receipt on one line of receipts.jsonl, or None for a line that is not one.

    Not one: a line torn by a crash, bytes that are not UTF-8, JSON that is not an object, an
    `expires_at` that is not a date, or text no output can carry (a surrogate that is not a
    non-UTF-8 path byte). tmpup writes none of these, so they come from a crash or a hand edit; every
    reader (`info`, the token-to-id mapping, the compaction) skips them instead of failing on them.
    A naive `expires_at` is taken as UTC and given its offset, as the compaction always read it.
    """
    try:
        item = json.loads(line.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError included
        return None
    if not isinstance(item, dict):
        return None
    if _SURROGATE_ESCAPE.search(line):
        try:
            # Paths with bytes that are not UTF-8 arrive as \udc80-\udcff, which surrogateescape
            # turns back into those bytes; any other surrogate is damage.
            json.dumps(item, ensure_ascii=False).encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return None
    expires = item.get("expires_at")
    if expires is not None and expires != "":
        when = _parse_when(expires)
        if when is None:
            return None
        if isinstance(expires, str) and dt.datetime.fromisoformat(expires.replace("Z", "+00:00")).tzinfo is None:
            item["expires_at"] = when.isoformat()
    return item


def _parse_when(value: object) -> dt.datetime | None:
    """An `expires_at` as an aware datetime (naive: UTC), or None where it is not a date."""
    if not isinstance(value, str):
        return None
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        # In UTC, so that comparing it never overflows (year 1 at +01:00 is before any datetime).
        return when.astimezone(dt.timezone.utc)
    except (ValueError, OverflowError):
        return None


def _keep_receipt(item: dict[str, Any] | None, now: dt.datetime) -> bool:
    """False for a line that is not a receipt (`_parse_receipt`) and for an upload that expired long ago."""
    if item is None:
        return False
    when = _parse_when(item.get("expires_at"))
    if when is None:
        return True  # no expiry known (Pyrus, KF5): only the size limit removes it
    return when > now - RECEIPTS_KEEP_EXPIRED  # not `when + ...`: that overflows for year 9999


def _receipt_lines(fh: IO[bytes]) -> Iterator[bytes | None]:
    """The lines of receipts.jsonl, each with its newline; None for one over RECEIPT_LINE_MAX bytes,
    which is read past in blocks (never held whole)."""
    while True:
        line = fh.readline(RECEIPT_LINE_MAX)
        if not line:
            return
        if len(line) == RECEIPT_LINE_MAX and not line.endswith(b"\n"):
            while (rest := fh.readline(RECEIPT_LINE_MAX)) and not rest.endswith(b"\n"):
                pass
            yield None
            continue
        yield line


def _open_for_reading(path: Path) -> int | None:
    """An fd of the regular file `path` for reading, None if there is none; else a StateError.

    O_NONBLOCK: a fifo in its place must not hang `tmpup info` until something writes to it.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _read_error(path, exc.strerror or str(exc)) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _read_error(path, "is a directory" if stat.S_ISDIR(mode) else "not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_error(path: Path, why: str) -> StateError:
    return StateError(
        f"cannot read the receipts {path}: {why}",
        hint="move it out of the way (tmpup starts a new one), or set TMPUP_STATE_DIR to another folder",
    )


class Receipts:
    """The receipts of one state folder (`root/receipts.jsonl`)."""

    def __init__(
        self, root: Path, *, max_bytes: int = RECEIPTS_MAX_BYTES, notify: Callable[[str], None] | None = None
    ) -> None:
        self.root = root
        self.max_bytes = max_bytes
        #: Where notes for -v/--debug go (the runtime passes `Messages.debug`); none by default.
        self.notify = notify

    @property
    def path(self) -> Path:
        return self.root / "receipts.jsonl"

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """An exclusive flock on `receipts.jsonl.lock`, held by an append (one write) and by a compaction."""
        import fcntl

        lock = self.root / "receipts.jsonl.lock"
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT, 0o600)
        except FileNotFoundError:  # the first receipt of this state folder: make the folder
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def add(self, receipt: Mapping[str, Any]) -> None:
        """Append one receipt; compact the file when it has grown past `receipts_max_bytes`."""
        # ASCII escapes: a path may hold bytes that are not UTF-8, which only \u escapes carry through.
        line = (json.dumps(receipt, sort_keys=False) + "\n").encode("utf-8")
        # Under the lock: an append never lands in a file that a compaction is replacing.
        with writing(self.root, "the receipt"), self._lock():
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o600)
            try:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode):  # a fifo would swallow the line unseen
                    raise OSError(errno.EINVAL, f"{self.path.name} is not a regular file")
                if stat.S_IMODE(info.st_mode) & 0o077:
                    self._make_private(fd, stat.S_IMODE(info.st_mode))
                end = info.st_size
                # A line torn by a crash (or a full disk) has no newline: this receipt must not
                # be glued onto it, where no reader would find it. Its last byte says so.
                if end and os.pread(fd, 1, end - 1) != b"\n":
                    line = b"\n" + line
                os.write(fd, line)  # one write() of one line
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
            if size > self.max_bytes:
                self._compact(dt.datetime.now(dt.timezone.utc))

    def _make_private(self, fd: int, mode: int) -> None:
        """Set an existing receipts.jsonl readable by group or others back to 0600 (DESIGN.md section
        5): receipts hold Thulium tokens and KF5 content URLs. One that cannot be (another user's
        file) takes no receipt: `StateError`, which the upload reports as a warning."""
        try:
            os.fchmod(fd, 0o600)
        except OSError as exc:
            raise StateError(
                f"{self.path} is readable by others (mode {mode:04o}) and cannot be made private: "
                f"{exc.strerror or exc}; the receipt was not written",
                hint=f"chmod 600 {self.path}, or set TMPUP_STATE_DIR to a folder of your own",
            ) from None
        if self.notify is not None:
            self.notify(f"{self.path} was readable by others (mode {mode:04o}); set it back to 0600")

    def compact(self, now: dt.datetime | None = None) -> None:
        """Rewrite receipts.jsonl without receipts long expired, then without the oldest, to half the limit."""
        if not self.path.exists():
            return  # nothing to compact (and no state folder to make for it)
        with writing(self.root, "the receipts"), self._lock():
            self._compact(now or dt.datetime.now(dt.timezone.utc))

    def _compact(self, now: dt.datetime) -> None:
        """One pass, holding at most half the limit: the newest receipts kept so far, in a window
        that drops its oldest whenever it outgrows the budget (a 240 MB file is read, never held)."""
        fd = _open_for_reading(self.path)
        if fd is None:
            return
        budget = self.max_bytes // 2
        kept: collections.deque[bytes] = collections.deque()
        held = 0
        with os.fdopen(fd, "rb") as fh:
            for line in _receipt_lines(fh):
                if line is None or not _keep_receipt(_parse_receipt(line), now):
                    continue
                line = line.rstrip(b"\r\n") + b"\n"  # a last line may lack its newline
                kept.append(line)
                held += len(line)
                while held > budget:
                    held -= len(kept.popleft())
        with atomic_file(self.path) as out:
            out.writelines(kept)

    def all(self) -> Iterator[dict[str, Any]]:
        """Every receipt, oldest first; lines that are not receipts are skipped (and noted once)."""
        fd = _open_for_reading(self.path)
        if fd is None:
            return
        skipped = 0
        try:
            with os.fdopen(fd, "rb") as fh:
                for line in _receipt_lines(fh):
                    if line is not None and not line.strip():
                        continue
                    item = _parse_receipt(line) if line is not None else None
                    if item is None:
                        skipped += 1  # a torn line from a crash must not hide the others
                        continue
                    yield item
        except OSError as exc:  # a disk error mid-read
            raise _read_error(self.path, exc.strerror or str(exc)) from None
        if skipped and self.notify is not None:
            self.notify(f"skipped {skipped} line(s) of {self.path} that are not receipts (damaged)")

    def find(self, handle: str, provider: str | None = None) -> dict[str, Any] | None:
        """The newest receipt whose id, token or url is `handle`."""
        found = None
        for item in self.all():
            if provider and item.get("provider") != provider:
                continue
            if handle in (item.get("id"), item.get("token"), item.get("url")):
                found = item
        return found
