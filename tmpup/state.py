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
                            would otherwise grow it by ~9 MiB a year, and `info` reads it whole)
    spool/                  stdin copied to a private file while it uploads

Records and receipts never hold credentials: only what identifies the file and the remote upload.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tmpup.errors import ConfigError, LockedError, TmpupError

#: A temp file of an atomic write older than this was left by a killed process (a write takes
#: milliseconds; minutes of margin cover a stalled disk).
STRAY_AGE = 300.0
#: Seconds `lock` keeps trying before it says another process holds the record: `resume --list`
#: probes locks by taking them for microseconds, which must not turn away an upload.
LOCK_GRACE = 0.5
#: receipts.jsonl is compacted when an append takes it past this size (~8000 receipts).
RECEIPTS_MAX_BYTES = 4 * 1024 * 1024
#: An upload's receipt is kept this long after it expired: `info` can still say when it expired.
RECEIPTS_KEEP_EXPIRED = dt.timedelta(days=30)


def default_state_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("TMPUP_STATE_DIR"):
        return Path(env["TMPUP_STATE_DIR"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_state_dir("tmpup", appauthor=False))


def _write_atomic(path: Path, data: bytes) -> None:
    """temp file in the same folder + fsync + rename: a reader sees the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
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
        # Absent keys take their defaults; a record missing a required one raises TypeError.
        fields: dict[str, Any] = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**fields)

    def expired(self, now: dt.datetime) -> bool:
        if not self.expires_at:
            return False
        return dt.datetime.fromisoformat(self.expires_at) <= now


def record_key(profile: str, provider: str, path: str) -> str:
    """One record per (profile, provider, absolute path): a new upload of the same file replaces it."""
    # fsencode: a path may hold bytes that are not UTF-8 (they arrive as surrogate escapes).
    return hashlib.sha256(f"{profile}\0{provider}\0".encode() + os.fsencode(path)).hexdigest()[:32]


def _keep_receipt(line: bytes, now: dt.datetime) -> bool:
    """False for a torn line (a crash mid-write) and for an upload that expired long ago."""
    try:
        item = json.loads(line)
    except ValueError:
        return False
    if not isinstance(item, dict):
        return False
    expires = item.get("expires_at")
    if not isinstance(expires, str):
        return True  # no expiry known (Pyrus, KF5): only the size limit removes it
    try:
        when = dt.datetime.fromisoformat(expires.replace("Z", "+00:00"))
    except ValueError:
        return True
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when + RECEIPTS_KEEP_EXPIRED > now


class StateError(ConfigError):
    """tmpup's own state folder cannot be written (read-only disk, full disk, a file in the way)."""


@contextlib.contextmanager
def _writing(root: Path, what: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise StateError(
            f"cannot write {what} in {root}: {exc.strerror or exc}",
            hint="free some space, or set TMPUP_STATE_DIR to a writable folder",
        ) from None


class StateStore:
    def __init__(self, root: Path, *, receipts_max_bytes: int = RECEIPTS_MAX_BYTES) -> None:
        self.root = root
        self.receipts_max_bytes = receipts_max_bytes

    @property
    def uploads_dir(self) -> Path:
        return self.root / "uploads"

    @property
    def receipts_path(self) -> Path:
        return self.root / "receipts.jsonl"

    @property
    def spool_dir(self) -> Path:
        return self.root / "spool"

    # -- receipts -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _receipts_lock(self) -> Iterator[None]:
        """An exclusive flock on `receipts.jsonl.lock`, held by an append (one write) and by a compaction."""
        import fcntl

        fd = os.open(self.root / "receipts.jsonl.lock", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def add_receipt(self, receipt: Mapping[str, Any]) -> None:
        """Append one receipt; compact the file when it has grown past `receipts_max_bytes`."""
        # ASCII escapes: a path may hold bytes that are not UTF-8, which only \u escapes carry through.
        line = (json.dumps(receipt, sort_keys=False) + "\n").encode("utf-8")
        with _writing(self.root, "the receipt"):
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Under the lock: an append never lands in a file that a compaction is replacing.
            with self._receipts_lock():
                fd = os.open(self.receipts_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, line)  # one write() of one line
                    size = os.fstat(fd).st_size
                finally:
                    os.close(fd)
                if size > self.receipts_max_bytes:
                    self._compact(dt.datetime.now(dt.timezone.utc))

    def compact_receipts(self, now: dt.datetime | None = None) -> None:
        """Rewrite receipts.jsonl without receipts long expired, then without the oldest, to half the limit."""
        with _writing(self.root, "the receipts"), self._receipts_lock():
            self._compact(now or dt.datetime.now(dt.timezone.utc))

    def _compact(self, now: dt.datetime) -> None:
        try:
            with self.receipts_path.open("rb") as fh:
                lines = [line for line in fh if _keep_receipt(line, now)]
        except FileNotFoundError:
            return
        budget, kept = self.receipts_max_bytes // 2, []
        for line in reversed(lines):  # the newest first, until half the limit is used
            budget -= len(line)
            if budget < 0:
                break
            kept.append(line)
        _write_atomic(self.receipts_path, b"".join(reversed(kept)))

    def receipts(self) -> Iterator[dict[str, Any]]:
        try:
            fh = self.receipts_path.open(encoding="utf-8")
        except FileNotFoundError:
            return
        with fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    item = json.loads(line)
                except ValueError:
                    continue  # a torn line from a crash must not hide the others
                if isinstance(item, dict):
                    yield item

    def find_receipt(self, handle: str, provider: str | None = None) -> dict[str, Any] | None:
        """The newest receipt whose id, token or url is `handle`."""
        found = None
        for item in self.receipts():
            if provider and item.get("provider") != provider:
                continue
            if handle in (item.get("id"), item.get("token"), item.get("url")):
                found = item
        return found

    # -- resume records -------------------------------------------------------------------------

    def record_path(self, key: str) -> Path:
        return self.uploads_dir / f"{key}.json"

    def save_record(self, record: ResumeRecord) -> None:
        data = json.dumps(record.as_dict(), indent=2).encode("ascii")
        with _writing(self.uploads_dir, "the resume record"):
            _write_atomic(self.record_path(record.key), data)
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
        """Remove lock files whose record is gone (a process killed before its first save), unless held."""
        import fcntl

        removed: list[str] = []
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
        try:
            data = json.loads(self.record_path(key).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError:
            return None
        try:
            return ResumeRecord.from_dict(data)
        except (TypeError, AttributeError):
            return None  # a damaged record is treated as absent, and replaced

    def delete_record(self, key: str) -> None:
        self.record_path(key).unlink(missing_ok=True)
        (self.uploads_dir / f"{key}.lock").unlink(missing_ok=True)

    def records(self) -> list[ResumeRecord]:
        return self._scan()[0]

    def damaged(self) -> list[str]:
        """Keys of record files that cannot be read as records (a disk error, a hand edit): they resume
        nothing, `records()` skips them and `resume --clean` removes them."""
        return self._scan()[1]

    def _scan(self) -> tuple[list[ResumeRecord], list[str]]:
        out: list[ResumeRecord] = []
        damaged: list[str] = []
        if not self.uploads_dir.is_dir():
            return out, damaged
        for path in sorted(self.uploads_dir.glob("*.json")):
            try:
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                continue  # finished (and deleted) meanwhile
            except (OSError, ValueError):
                damaged.append(path.stem)
                continue
            try:
                out.append(ResumeRecord.from_dict(json.loads(text)))
            except (ValueError, TypeError, AttributeError, KeyError):
                damaged.append(path.stem)
        return out, damaged

    @contextlib.contextmanager
    def lock(self, key: str, what: str) -> Iterator[None]:
        """Hold the record's lock for the duration, or fail (after LOCK_GRACE) if another process holds it."""
        import fcntl

        with _writing(self.uploads_dir, "the resume record's lock"):
            self.uploads_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.close(os.open(self.uploads_dir / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o600))
        path = self.uploads_dir / f"{key}.lock"
        deadline = time.monotonic() + LOCK_GRACE
        while True:
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
            try:
                current = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:
                break
            os.close(fd)
        try:
            # The pid is for people reading the file; whether the lock is held is `lock_held`'s to say.
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            yield
        finally:
            os.close(fd)


def ensure_private(path: Path) -> None:
    try:
        os.chmod(path, 0o600)
    except OSError as exc:  # pragma: no cover
        raise TmpupError(f"cannot set permissions of {path}: {exc}") from exc
