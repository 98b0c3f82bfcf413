"""State on disk: resume records of interrupted uploads, and receipts of finished ones.

Layout under `<user state dir>/tmpup/` (`$TMPUP_STATE_DIR` overrides):

    uploads/<key>.json      one resume record per interrupted upload (0600, atomic writes)
    uploads/<key>.lock      a lock file held (fcntl.flock) by the process feeding that upload
    uploads/.<key>.json.*   a record being written; one older than a few minutes was left by a
                            process killed mid-write, and is swept (next save, `resume --clean`)
    receipts.jsonl.lock     flock'd by each append and by a compaction
    receipts.jsonl          one JSON line per successful upload (0600); past RECEIPTS_MAX_BYTES it is
                            compacted: receipts of uploads expired over RECEIPTS_KEEP_EXPIRED ago go,
                            then the oldest, down to half the limit (a cron job every 30 minutes
                            would otherwise grow it by ~9 MiB a year, and `info` reads it whole).
                            Readers skip lines that are not receipts (torn by a crash, not UTF-8, a
                            bad date) and an append starts on a fresh line, so one bad line hides
                            nothing else.
    spool/stdin-*.spool     stdin copied to a private file while it uploads, flock'd by the process
                            that spools it: one nobody holds was left by a killed process, and is
                            swept (`resume --clean`)

Records and receipts never hold credentials: only what identifies the file and the remote upload.
What a record holds, and how a damaged one is told apart, is `tmpup.resume_record`'s; receipts are
`tmpup.receipts`' (StateStore delegates to it); atomic writes and the error a folder that cannot be
written becomes are `tmpup.state_io`'s.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from tmpup.errors import LockedError
from tmpup.receipts import RECEIPTS_MAX_BYTES, Receipts
from tmpup.resume_record import DamagedEntry, DamagedRecord, ResumeRecord, parse_record
from tmpup.state_io import is_current, state_write_error, write_atomic, writing

#: A temp file of an atomic write older than this was left by a killed process (a write takes
#: milliseconds; minutes of margin cover a stalled disk).
STRAY_AGE = 300.0
#: Seconds `lock` keeps trying before it says another process holds the record: `resume --list`
#: probes locks by taking them for microseconds, which must not turn away an upload.
LOCK_GRACE = 0.5
#: Names of stdin's spool files in `spool/` (`create_spool`, `StateStore.sweep_spool`).
SPOOL_PREFIX, SPOOL_SUFFIX = "stdin-", ".spool"


def default_state_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("TMPUP_STATE_DIR"):
        return Path(env["TMPUP_STATE_DIR"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_state_dir("tmpup", appauthor=False))


class StateStore:
    """The state folder: resume records and their locks here, receipts in `tmpup.receipts`."""

    def __init__(
        self,
        root: Path,
        *,
        receipts_max_bytes: int = RECEIPTS_MAX_BYTES,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        self.root = root
        self.receipt_log = Receipts(root, max_bytes=receipts_max_bytes, notify=notify)

    @property
    def uploads_dir(self) -> Path:
        return self.root / "uploads"

    @property
    def receipts_path(self) -> Path:
        return self.receipt_log.path

    @property
    def receipts_max_bytes(self) -> int:
        return self.receipt_log.max_bytes

    @receipts_max_bytes.setter
    def receipts_max_bytes(self, value: int) -> None:
        self.receipt_log.max_bytes = value

    # -- receipts (tmpup.receipts) -----------------------------------------------------------------

    def add_receipt(self, receipt: Mapping[str, Any]) -> None:
        self.receipt_log.add(receipt)

    def compact_receipts(self, now: dt.datetime | None = None) -> None:
        self.receipt_log.compact(now)

    def receipts(self) -> Iterator[dict[str, Any]]:
        return self.receipt_log.all()

    def find_receipt(self, handle: str, provider: str | None = None) -> dict[str, Any] | None:
        return self.receipt_log.find(handle, provider)

    @property
    def spool_dir(self) -> Path:
        return self.root / "spool"

    # -- resume records -------------------------------------------------------------------------

    def record_path(self, key: str) -> Path:
        return self.uploads_dir / f"{key}.json"

    def save_record(self, record: ResumeRecord) -> None:
        data = json.dumps(record.as_dict(), indent=2).encode("ascii")
        with writing(self.uploads_dir, "the resume record"):
            write_atomic(self.record_path(record.key), data)
        self.sweep(f".{record.key}.json.*")  # what an earlier, killed writer of this record left

    def sweep(self, pattern: str = ".*.json.*", max_age: float = STRAY_AGE) -> list[str]:
        """Remove temp files of atomic writes older than `max_age` seconds; return their names."""
        removed: list[str] = []
        if not self.uploads_dir.is_dir():
            return removed
        now = time.time()
        for path in self.uploads_dir.glob(pattern):
            try:
                if now - path.lstat().st_mtime > max_age:
                    path.unlink()
                    removed.append(path.name)
            except OSError:
                continue  # gone already, or not ours to remove: nothing to report
        return removed

    def sweep_locks(self) -> list[str]:
        """Remove what only a live process's flock accounts for, unless held: lock files whose record
        is gone (a process killed before its first save), and stdin spool files (`sweep_spool`)."""
        import fcntl

        removed: list[str] = self.sweep_spool()
        if not self.uploads_dir.is_dir():
            return removed
        for path in self.uploads_dir.glob("*.lock"):
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            try:
                # Delete only while holding the lock, as delete_record's callers do: a process that
                # opened the file just before sees the unlink and retries on a fresh file (`lock`).
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if not path.with_suffix(".json").exists():
                    path.unlink()
                    removed.append(path.name)
            except OSError:
                continue  # held (BlockingIOError) or gone
            finally:
                os.close(fd)
        return removed

    def lock_held(self, key: str) -> bool:
        """Whether a process holds this record's lock now: the kernel's answer, not a pid that may be reused."""
        import fcntl

        try:
            fd = os.open(self.uploads_dir / f"{key}.lock", os.O_RDONLY)
        except OSError:
            return False
        try:
            # flock locks belong to open file descriptions, so this probe conflicts with a holder
            # in this very process too; a shared lock never blocks an exclusive taker for long.
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            os.close(fd)  # closing releases the probe's lock
        return False

    def load_record(self, key: str) -> ResumeRecord | None:
        """The record of `key`; None when there is none or it is damaged (`read_record` tells which)."""
        try:
            return self.read_record(key)
        except DamagedRecord:
            return None

    def read_record(self, key: str) -> ResumeRecord | None:
        """The record of `key`, None if there is none; `DamagedRecord` for a file that is not one."""
        try:
            text = self.record_path(key).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:  # unreadable, or not UTF-8
            raise DamagedRecord(f"cannot be read ({exc})") from None
        return parse_record(key, text)

    def delete_record(self, key: str) -> None:
        self.record_path(key).unlink(missing_ok=True)
        (self.uploads_dir / f"{key}.lock").unlink(missing_ok=True)

    def records(self) -> list[ResumeRecord]:
        return self._scan()[0]

    def damaged(self) -> list[str]:
        """Keys of record files that cannot be read as records (a disk error, a hand edit, a field of
        the wrong type): they resume nothing, `records()` skips them and `resume --clean` removes them."""
        return [entry.key for entry in self._scan()[1]]

    def damaged_entries(self) -> list[DamagedEntry]:
        """The damaged record files, with what can still be told of each (`DamagedEntry`)."""
        return self._scan()[1]

    def _scan(self) -> tuple[list[ResumeRecord], list[DamagedEntry]]:
        out: list[ResumeRecord] = []
        damaged: list[DamagedEntry] = []
        try:
            names = sorted(name for name in os.listdir(self.uploads_dir) if name.endswith(".json"))
        except FileNotFoundError:
            return out, damaged  # no upload was ever kept here
        except OSError as exc:  # a file in the way, no permission: not the same as "none"
            from tmpup.state_io import StateError

            raise StateError(
                f"cannot read the resume records in {self.uploads_dir}: {exc.strerror or exc}",
                hint="fix that folder, or set TMPUP_STATE_DIR to a folder of your own",
            ) from None
        for path in (self.uploads_dir / name for name in names):
            try:
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                continue  # finished (and deleted) meanwhile
            except (OSError, ValueError):
                damaged.append(DamagedEntry(path.stem))
                continue
            try:
                out.append(parse_record(path.stem, text))
            except DamagedRecord:
                damaged.append(DamagedEntry.of(path.stem, text))
        return out, damaged

    @contextlib.contextmanager
    def lock(self, key: str, what: str) -> Iterator[None]:
        """Hold the record's lock for the duration, or fail (after LOCK_GRACE) if another process holds it."""
        import fcntl

        what_lock = "the resume record's lock"
        path = self.uploads_dir / f"{key}.lock"
        with writing(self.uploads_dir, what_lock):
            self.uploads_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        deadline = time.monotonic() + LOCK_GRACE
        while True:
            with writing(self.uploads_dir, what_lock):
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() < deadline:
                    time.sleep(0.02)  # perhaps only a probe (lock_held, sweep_locks): they let go at once
                    continue
                raise LockedError(
                    f"{what} is being uploaded by another tmpup process",
                    hint="let that one finish; this run changed nothing",
                ) from None
            # The previous holder may have deleted the lock file (delete_record) between our open
            # and flock: a lock on an unlinked file excludes nobody, so take the current file.
            if is_current(path, fd):
                break
            os.close(fd)
        try:
            try:
                # The pid is for people reading the file; whether the lock is held is `lock_held`'s to say.
                os.ftruncate(fd, 0)
                os.write(fd, str(os.getpid()).encode())
            except OSError as exc:  # a full disk: fail before any request, as a record's save would
                # Removed while held, as delete_record's callers do: the next run creates a new one.
                if is_current(path, fd):
                    with contextlib.suppress(OSError):
                        path.unlink()
                raise state_write_error(self.uploads_dir, what_lock, exc) from None
            yield
        finally:
            os.close(fd)

    # -- stdin's spool files --------------------------------------------------------------------

    def sweep_spool(self) -> list[str]:
        """Remove spool files no process holds (`create_spool`): a process killed while it spooled or
        uploaded stdin left them, and they can be as large as the stream was. Return their names."""
        import fcntl

        removed: list[str] = []
        if not self.spool_dir.is_dir():
            return removed
        for path in self.spool_dir.glob(f"{SPOOL_PREFIX}*{SPOOL_SUFFIX}"):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                continue
            try:
                # Delete only while holding the lock: `create_spool` sees the unlink and starts over.
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if stat.S_ISREG(os.fstat(fd).st_mode) and is_current(path, fd):
                    path.unlink()
                    removed.append(path.name)
            except OSError:
                continue  # held by a live tmpup (BlockingIOError), or gone
            finally:
                os.close(fd)
        return removed


def create_spool(spool_dir: Path | None) -> tuple[int, Path]:
    """A new private spool file in `spool_dir` (the system's temp folder when None), open for writing
    and flock'd for as long as the fd stays open: `StateStore.sweep_spool` removes one only when no
    process holds it, so a killed process's spool is swept and a live one's never is.

    Errors are `StateError`s (exit 3), as for every other file in the state folder.
    """
    import fcntl

    where = spool_dir if spool_dir is not None else Path(tempfile.gettempdir())
    with writing(where, "the copy of stdin"):
        if spool_dir is not None:
            # The state dir first: mkdir's mode does not apply to the parents it creates.
            spool_dir.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            spool_dir.mkdir(exist_ok=True, mode=0o700)
        while True:
            fd, name = tempfile.mkstemp(prefix=SPOOL_PREFIX, suffix=SPOOL_SUFFIX, dir=spool_dir)
            path = Path(name)
            try:
                # Blocking: a sweeper that took it between mkstemp and here lets go at once.
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                with contextlib.suppress(OSError):
                    path.unlink()
                raise
            if is_current(path, fd):
                return fd, path
            os.close(fd)  # swept in that instant (it was empty and unheld): take another
