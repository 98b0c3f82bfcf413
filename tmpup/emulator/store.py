"""The emulator's blob store: bytes on disk, metadata in memory, expiry against the clock.

Each blob is addressed by `(provider, id)`; its bytes live in `<data_dir>/<provider>/<id>` and are
written exactly as received, appended in 1 MiB blocks (tus appends at the current offset, so an
interrupted body leaves precisely the bytes that arrived). Metadata stays in memory: a restarted
emulator forgets earlier uploads. Expired blobs keep their metadata (so the API can answer
410 Gone) but their bytes are removed by `sweep()`. Every blob carries a `busy` lock that tus
uses to answer 423 Locked to concurrent requests on one upload.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from .clock import Clock

CHUNK = 1 << 20
"""Block size for reading request bodies and serving downloads (1 MiB)."""

_SAFE_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")


class BlobMissing(LookupError):
    """No blob with that id (never created, or deleted)."""


class BlobExpired(LookupError):
    """The blob existed but its TTL has passed."""


@dataclass
class Blob:
    """One stored upload. `offset` is the number of bytes stored so far."""

    provider: str
    id: str
    path: Path
    name: str = ""
    length: int | None = None
    offset: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0
    expires_at: float | None = None
    complete: bool = False
    metadata: dict[str, str] = field(default_factory=dict)
    extra: dict[str, object] = field(default_factory=dict)
    busy: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def size(self) -> int:
        """Bytes stored (the final size once complete)."""
        return self.offset

    @property
    def ttl(self) -> float | None:
        """Seconds between creation and expiry, if the blob expires."""
        return None if self.expires_at is None else self.expires_at - self.created_at

    def is_expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


class _Appender:
    """Writes to the end of a blob's file and advances `blob.offset` after every write."""

    def __init__(self, blob: Blob, file: BinaryIO, clock: Clock) -> None:
        self._blob = blob
        self._file = file
        self._clock = clock

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._file.write(data)
        self._blob.offset += len(data)
        self._blob.updated_at = self._clock.time()


class BlobStore:
    """Thread-safe store of blobs for all mounts.

    `data_dir=None` makes a private temporary directory that `close()` removes; a given directory
    is created if needed and never emptied (files of earlier runs are left alone).
    """

    def __init__(self, data_dir: str | Path | None, clock: Clock) -> None:
        self.clock = clock
        if data_dir is None:
            self.root = Path(tempfile.mkdtemp(prefix="tmpup-emulator-"))
            self._owns_root = True
        else:
            self.root = Path(data_dir).expanduser()
            self.root.mkdir(parents=True, exist_ok=True)
            self._owns_root = False
        self._lock = threading.RLock()
        self._blobs: dict[tuple[str, str], Blob] = {}
        self._last_sweep = 0.0

    # -- lifecycle -------------------------------------------------------------------------------

    def create(
        self,
        provider: str,
        blob_id: str,
        *,
        name: str = "",
        length: int | None = None,
        ttl: float | None = None,
        metadata: dict[str, str] | None = None,
        extra: dict[str, object] | None = None,
    ) -> Blob:
        """Register a new, empty blob (its file is created empty). `ttl` counts from now."""
        for part in (provider, blob_id):
            if not _SAFE_ID.match(part):
                raise ValueError(f"unsafe store key: {part!r}")
        self.sweep()
        now = self.clock.time()
        path = self.root / provider / blob_id
        blob = Blob(
            provider=provider,
            id=blob_id,
            path=path,
            name=name,
            length=length,
            created_at=now,
            updated_at=now,
            expires_at=None if ttl is None else now + ttl,
            metadata=dict(metadata or {}),
            extra=dict(extra or {}),
        )
        with self._lock:
            if (provider, blob_id) in self._blobs:
                raise ValueError(f"blob {provider}/{blob_id} already exists")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
            self._blobs[provider, blob_id] = blob
        return blob

    def complete(self, blob: Blob) -> None:
        """Mark the blob finished; a blob created without a length takes its stored size."""
        with self._lock:
            if blob.length is None:
                blob.length = blob.offset
            blob.complete = True
            blob.updated_at = self.clock.time()

    def expire(self, provider: str, blob_id: str) -> bool:
        """Make the blob expire now. False if it does not exist."""
        with self._lock:
            blob = self._blobs.get((provider, blob_id))
            if blob is None:
                return False
            now = self.clock.time()
            if blob.expires_at is None or blob.expires_at > now:
                blob.expires_at = now
            return True

    def delete(self, provider: str, blob_id: str) -> bool:
        """Forget the blob and remove its bytes. False if it does not exist."""
        with self._lock:
            blob = self._blobs.pop((provider, blob_id), None)
        if blob is None:
            return False
        blob.path.unlink(missing_ok=True)
        return True

    def sweep(self) -> None:
        """Remove the bytes of expired blobs (their metadata stays, to answer 410). At most once a minute."""
        now = self.clock.time()
        with self._lock:
            if now - self._last_sweep < 60:
                return
            self._last_sweep = now
            expired = [b for b in self._blobs.values() if b.is_expired(now) and not b.busy.locked()]
        for blob in expired:
            # may fail while a download holds it open on Windows: the next sweep retries
            with contextlib.suppress(OSError):
                blob.path.unlink(missing_ok=True)

    def close(self) -> None:
        """Drop all metadata; remove the data directory if the store created it."""
        with self._lock:
            self._blobs.clear()
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- lookup ----------------------------------------------------------------------------------

    def get(self, provider: str, blob_id: str) -> Blob | None:
        """The blob, expired or not; None if unknown."""
        with self._lock:
            return self._blobs.get((provider, blob_id))

    def find(self, provider: str, blob_id: str) -> Blob:
        """The live blob; raises `BlobMissing` or `BlobExpired`."""
        blob = self.get(provider, blob_id)
        if blob is None:
            raise BlobMissing(f"{provider}/{blob_id}")
        if blob.is_expired(self.clock.time()):
            raise BlobExpired(f"{provider}/{blob_id}")
        return blob

    def blobs(self, provider: str | None = None) -> list[Blob]:
        """All blobs (of one provider), oldest first, expired ones included."""
        with self._lock:
            found = [b for b in self._blobs.values() if provider is None or b.provider == provider]
        return sorted(found, key=lambda b: b.created_at)

    # -- bytes -----------------------------------------------------------------------------------

    @contextmanager
    def appender(self, blob: Blob) -> Iterator[_Appender]:
        """Open the blob's file positioned at `blob.offset` for appending."""
        with open(blob.path, "r+b", buffering=0) as file:
            file.seek(blob.offset)
            file.truncate()  # nothing past the offset counts as stored
            yield _Appender(blob, file, self.clock)

    def open(self, blob: Blob) -> BinaryIO:
        """The blob's bytes for reading (the caller closes it)."""
        return open(blob.path, "rb")

    def path(self, provider: str, blob_id: str) -> Path:
        """Where the bytes of a known blob are. Raises `BlobMissing`."""
        blob = self.get(provider, blob_id)
        if blob is None:
            raise BlobMissing(f"{provider}/{blob_id}")
        return blob.path

    def sha256(self, provider: str, blob_id: str) -> str:
        """Hex SHA-256 of a blob's stored bytes, read in 1 MiB blocks."""
        digest = hashlib.sha256()
        with open(self.path(provider, blob_id), "rb") as file:
            while block := file.read(CHUNK):
                digest.update(block)
        return digest.hexdigest()
