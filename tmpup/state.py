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
Receipts are `tmpup.receipts`' (StateStore delegates to it); atomic writes and the error a folder that
cannot be written becomes are `tmpup.state_io`'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tmpup.errors import LockedError
from tmpup.receipts import RECEIPTS_MAX_BYTES, Receipts
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


@dataclass
class ResumeRecord:
    """An upload that did not finish: where it lives remotely and which local file feeds it."""

    key: str
    provider: str
    profile: str
    upload_url: str
    file: dict[str, Any]  # FileIdentity.as_dict()
    name: str
    size: int
    created_at: str
    expires_at: str | None = None
    offset: int = 0
    extra: dict[str, Any] | None = None
    # True only when the upload had stopped and the server confirmed `offset` afterwards; otherwise
    # `offset` is the last one the server confirmed while bytes were still flowing (it may hold more).
    offset_exact: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResumeRecord:
        """The record `data` holds; `DamagedRecord` (a ValueError) when it is not one.

        Absent optional keys take their defaults. Every field is checked for the type the code
        using it relies on, dates included: a hand edit, disk damage or a future format must make
        the record "damaged" (listed, cleaned, replaced by a new upload), never a crash later.
        """
        if not isinstance(data, Mapping):
            raise DamagedRecord("not a JSON object")
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise DamagedRecord(f"no {', '.join(missing)}")
        fields: dict[str, Any] = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        record = cls(**fields)
        record.check()
        return record

    def check(self) -> None:
        """Raise `DamagedRecord` for a field of the wrong type or an unparsable date."""
        for name in ("key", "provider", "profile", "upload_url", "name", "created_at"):
            if not isinstance(getattr(self, name), str):
                raise DamagedRecord(f"{name} is not text")
        if not _is_count(self.size) or not _is_count(self.offset) or self.offset > self.size:
            raise DamagedRecord("size or offset is not a byte count")
        if not isinstance(self.offset_exact, bool):
            raise DamagedRecord("offset_exact is not true or false")
        if self.extra is not None:
            if not isinstance(self.extra, dict):
                raise DamagedRecord("extra is not an object")
            for name in ("ttl", "chunk_size"):  # seconds and bytes, as the Transfer wrote them
                if self.extra.get(name) is not None and not _is_count(self.extra[name]):
                    raise DamagedRecord(f"extra.{name} is not a whole number")
            if not isinstance(self.extra.get("checksum", False), bool):
                raise DamagedRecord("extra.checksum is not true or false")
        file = self.file
        if (
            not isinstance(file, dict)
            or not isinstance(file.get("path"), str)
            or not _is_count(file.get("size"))
            or not isinstance(file.get("mtime_ns"), int)
            or isinstance(file.get("mtime_ns"), bool)
        ):
            raise DamagedRecord("file is not a file's identity")
        _aware_date(self.created_at, "created_at")
        if self.expires_at is not None:
            if not isinstance(self.expires_at, str):
                raise DamagedRecord("expires_at is not text")
            _aware_date(self.expires_at, "expires_at")

    def expired(self, now: dt.datetime) -> bool:
        if not self.expires_at:
            return False
        return dt.datetime.fromisoformat(self.expires_at) <= now


class DamagedRecord(ValueError):
    """A resume record file that is not a record tmpup wrote (torn, hand-edited, wrong-typed)."""


_REQUIRED = ("key", "provider", "profile", "upload_url", "file", "name", "size", "created_at")


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _aware_date(value: str, name: str) -> dt.datetime:
    """`value` as the aware datetime a record holds (`isoformat()` of one); else `DamagedRecord`."""
    try:
        when = dt.datetime.fromisoformat(value)
        when.astimezone(dt.timezone.utc)  # in range in UTC too (year 1 at +01:00 is not)
    except (ValueError, OverflowError):
        raise DamagedRecord(f"{name} is not a date") from None
    if when.tzinfo is None:  # comparing it with the clock's aware time would raise TypeError
        raise DamagedRecord(f"{name} has no time zone")
    return when


def record_key(profile: str, provider: str, path: str) -> str:
    """One record per (profile, provider, absolute path): a new upload of the same file replaces it."""
    # fsencode: a path may hold bytes that are not UTF-8 (they arrive as surrogate escapes).
    return hashlib.sha256(f"{profile}\0{provider}\0".encode() + os.fsencode(path)).hexdigest()[:32]


def _parse_record(key: str, text: str) -> ResumeRecord:
    """The record in the text of `uploads/KEY.json`; `DamagedRecord` when it holds none."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise DamagedRecord("not JSON") from None
    record = ResumeRecord.from_dict(data)
    # Its lock, its removal and `resume KEY` go by the file's name, and `tmpup upload` finds it by
    # the hash of its profile, provider and path: a record that disagrees is found by neither.
    if record.key != key or _key_of(record.profile, record.provider, record.file["path"]) != key:
        raise DamagedRecord("its key is not its file's name, or not its profile's, provider's and path's")
    return record


def _key_of(profile: str, provider: str, path: str) -> str | None:
    try:
        return record_key(profile, provider, path)
    except UnicodeError:  # a surrogate that is no byte of a path: no file has that name
        return None


@dataclass(frozen=True)
class DamagedEntry:
    """A damaged record file, and what can still be told of it (each field None where unknown).

    `profile` and `provider` are what the file says, where it says them as text. `path` is set only
    once the record's own file is known: when profile, provider and path hash to its key
    (`record_key`), as read from the file or as given (`for_path`, a path named on the command line).
    Then that file, on that profile, can be uploaded again (a new upload replaces the record).
    """

    key: str
    profile: str | None = None
    provider: str | None = None
    path: str | None = None
    name: str | None = None
    upload_url: str | None = None

    @classmethod
    def of(cls, key: str, text: str) -> DamagedEntry:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            return cls(key)
        if not isinstance(data, dict):
            return cls(key)
        file = data.get("file")
        entry = cls(
            key,
            **{
                name: value if isinstance(value, str) else None
                for name, value in (
                    ("profile", data.get("profile")),
                    ("provider", data.get("provider")),
                    ("name", data.get("name")),
                    ("upload_url", data.get("upload_url")),
                )
            },
        )
        path = file.get("path") if isinstance(file, dict) else None
        return (entry.for_path(path) if isinstance(path, str) else None) or entry

    def for_path(self, path: str) -> DamagedEntry | None:
        """This entry as the record of `path`, or None when it is not that file's."""
        if self.profile is None or self.provider is None or _key_of(self.profile, self.provider, path) != self.key:
            return None
        return dataclasses.replace(self, path=path)


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
        return _parse_record(key, text)

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
        if not self.uploads_dir.is_dir():
            return out, damaged
        for path in sorted(self.uploads_dir.glob("*.json")):
            try:
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                continue  # finished (and deleted) meanwhile
            except (OSError, ValueError):
                damaged.append(DamagedEntry(path.stem))
                continue
            try:
                out.append(_parse_record(path.stem, text))
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
