"""A resumable tus upload: the resume record's life cycle around the HEAD/PATCH loop.

1. Under the per-record lock (two overlapping cron runs never feed one upload), the resume record
   of this profile, provider and file is looked up. It is continued only if the file is the same
   (absolute path, size, mtime, hash of its first and last MiB), the endpoint and name are the
   same, the TTL asked for (if any: Qlik's `--ttl`, `TMPUP_TTL`, the profile's `ttl`) is the one
   the upload was created with, and it has not expired; HEAD then says where the server is, and
   the progress display starts there. Otherwise, or on a 404/410 (the server forgot the upload),
   a new upload starts and the user is told why, in one line.
2. Otherwise POST creates an upload and the record is written (atomically, 0600, no credentials)
   before the first PATCH, so even a process killed with SIGKILL can be resumed.
3. PATCH streams the file from the server's offset (`tus_patch_loop.PatchLoop`, which a `Transfer`
   is: HEAD, PATCH, back-off, new uploads); at the loop's checkpoints the record is rewritten, a
   PATCH's answer at most every `SAVE_INTERVAL`, so `resume --list` shows where the upload is.
4. Success deletes the record. A failure, Ctrl-C or SIGTERM keeps it, and the error's hint holds
   the command that continues it (`tmpup resume FILE`). The record's offset is written exact only
   when the server confirmed it after the last PATCH (a short HEAD at that moment): bytes handed to
   the socket are not bytes stored, so otherwise it stays the last confirmed one, marked as a lower
   bound (`resume --list` shows "at least ..."). A process killed by SIGKILL writes nothing more,
   and its record keeps such a lower bound.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from typing import TYPE_CHECKING

import requests

from tmpup.errors import GoneError, InputError, IntegrityError, Interrupted, TmpupError, TransientError
from tmpup.http import redact_url
from tmpup.protocols.tus import TusClient, TusOutcome, header_int, resume_command
from tmpup.protocols.tus_patch_loop import PatchLoop
from tmpup.resume_record import DamagedRecord, ResumeRecord, record_key
from tmpup.units import format_duration

if TYPE_CHECKING:
    from tmpup.progress import Task
    from tmpup.providers.base import UploadOptions
    from tmpup.sources import Source

#: Seconds between rewrites of the record's informational offset during a chunked upload.
SAVE_INTERVAL = 2.0
#: How long a stopping upload may spend asking the server where it is (a Ctrl-C must stay quick).
KEEP_PROBE_SECONDS = 2.0


class Transfer(PatchLoop):
    """One upload of one file that keeps its resume record: see the module docstring."""

    def __init__(
        self,
        client: TusClient,
        source: Source,
        options: UploadOptions,
        task: Task,
        create_url: str,
        metadata: dict[str, str],
        ttl: int | None,
        terminate: bool,
    ) -> None:
        super().__init__(client, source, options, task, create_url, metadata, ttl)
        provider = client.provider
        self.terminate = terminate
        self.state = provider.env.state
        # stdin is spooled to a temp file that is gone after this run: nothing to resume from.
        self.keep_records = options.resumable is not False and not source.temporary
        self.identity = source.identity() if self.keep_records else None
        self.path = self.identity.path if self.identity else str(source.path)
        self.key = record_key(provider.env.profile, provider.id, self.path)
        self.record_saved = False
        self.saved_at = 0.0
        self.checksum = options.checksum  # kept in the record: `tmpup resume` reports the sha256 as asked

    def run(self) -> TusOutcome:
        if not self.keep_records:
            self.create()
            self.loop()
            return self.outcome()
        with self.state.lock(self.key, self.source.display):
            try:
                self.begin()
                self.loop()
            except TmpupError as exc:
                # A dead upload (expired again and again, larger than the server takes) or a changed file
                # cannot be continued; a failure before any record was written leaves nothing to continue.
                dead = isinstance(exc, (GoneError, IntegrityError)) or (
                    isinstance(exc, InputError) and exc.status == 413
                )
                if self.record_saved and not dead:
                    self.keep(exc)
                else:
                    self.state.delete_record(self.key)
                    if isinstance(exc, IntegrityError) and self.terminate and self.url:
                        self.terminate_quietly(self.url)  # the damaged upload is of no use to anyone
                raise
            self.state.delete_record(self.key)
        return self.outcome()

    def begin(self) -> None:
        try:
            record = self.state.read_record(self.key)
        except DamagedRecord:
            # Nothing in it can be trusted, the upload URL included: it is replaced, never continued.
            self.provider.env.warn(f"{self.source.display}: its resume record is damaged; starting a new upload")
            record = None
        if record is not None:
            why = self.stale(record)
            if why is None:
                self.url = record.upload_url
                self.offset = record.offset
                self.created_at = dt.datetime.fromisoformat(record.created_at)
                self.expires_at = dt.datetime.fromisoformat(record.expires_at) if record.expires_at else None
                self.ttl = _record_ttl(record)
                # --checksum is the upload's, not the run's: a continuation reports the sha256 too.
                self.checksum = self.checksum or (record.extra or {}).get("checksum") is True
                self.in_doubt = not record.offset_exact
                self.resumed = self.announce = self.need_sync = self.record_saved = self.dangling = True
                return
            self.provider.env.warn(f"{self.source.display}: {why}; starting a new upload")
            if self.terminate and not record.expired(self.provider.env.clock()):
                self.terminate_quietly(record.upload_url)
        self.create()

    def stale(self, record: ResumeRecord) -> str | None:
        """Why a record cannot be continued, or None when it can."""
        assert self.identity is not None
        if record.file != self.identity.as_dict():
            return "the file changed since its upload was interrupted, so that upload cannot be continued"
        if (record.extra or {}).get("create_url") not in (self.create_url, _recorded_url(self.create_url)):
            return "the interrupted upload went to another endpoint"
        if record.name != self.options.name:
            return f"the interrupted upload was named {record.name!r}"
        old_ttl = _record_ttl(record)
        if self.options.ttl is not None and self.new_ttl is not None and old_ttl not in (None, self.new_ttl):
            # The user asked for another lifetime: continuing would silently keep the old one.
            assert old_ttl is not None
            return (
                f"the interrupted upload was created with a TTL of {format_duration(old_ttl)}, "
                f"not the {format_duration(self.new_ttl)} asked for"
            )
        if record.expired(self.provider.env.clock()):
            return f"the interrupted upload expired at {record.expires_at}"
        return None

    def terminate_quietly(self, url: str) -> None:
        with contextlib.suppress(TmpupError):  # best effort: the server expires it anyway
            self.client.terminate(url)

    def checkpoint(self, periodic: bool = False) -> None:
        """Rewrite the record where the loop says; a PATCH's answer (`periodic`) only now and then."""
        if not self.keep_records:
            return
        # The offset a PATCH's answer gives is informational: one rewrite per SAVE_INTERVAL, none
        # once the last byte is in (success deletes the record next).
        if periodic and (self.offset >= self.size or time.monotonic() - self.saved_at <= SAVE_INTERVAL):
            return
        self.save()

    def save(self, exact: bool = False) -> None:
        """Write the record; `exact`: the upload has stopped and the server confirmed `offset` since."""
        assert self.identity is not None
        record = ResumeRecord(
            key=self.key,
            provider=self.provider.id,
            profile=self.provider.env.profile,
            upload_url=self.url,
            file=self.identity.as_dict(),
            name=self.options.name,
            size=self.size,
            created_at=self.created_at.isoformat(),
            expires_at=self.expires_at.isoformat() if self.expires_at else None,
            offset=self.offset,
            extra={
                "create_url": _recorded_url(self.create_url),
                "ttl": self.ttl,
                "chunk_size": self.chunk,
                "checksum": self.checksum,
            },
            offset_exact=exact,
        )
        self.state.save_record(record)
        self.record_saved = True
        self.saved_at = time.monotonic()

    def keep(self, exc: TmpupError) -> None:
        """The upload stops here but can continue: record where the server is, say how in the hint."""
        if not self.record_saved:
            return
        exc.resume_command = resume_command(self.path, self.key, self.provider.env.config)
        kept = f"the upload was kept; continue it with: {exc.resume_command}"
        keep_hint = exc.hint and not isinstance(exc, (Interrupted, TransientError))
        exc.hint = f"{exc.hint}; {kept}" if keep_hint else kept
        # The record on disk is only less fresh when a save fails, or a second Ctrl-C cuts it short (the
        # atomic write leaves the previous record): keep the real error, whose hint says how to continue.
        with contextlib.suppress(OSError, Interrupted, KeyboardInterrupt):
            self.save(exact=not self.in_doubt)  # first the lower bound: a second Ctrl-C may come
            if self.in_doubt and self.probe():
                self.save(exact=True)

    def probe(self) -> bool:
        """Ask the server briefly where the stopped upload is; True when it said (`offset` updated).

        A dangling PATCH can hold the upload for a moment (423) until the server sees the
        connection closed; any other answer, a network error or a second Ctrl-C gives up at once."""
        deadline = time.monotonic() + KEEP_PROBE_SECONDS
        headers = self.client.headers_for(self.url)
        try:
            while (left := deadline - time.monotonic()) > 0:
                response = self.client.session.head(self.url, headers=headers, timeout=(left, left))
                response.close()
                if response.status_code == 423:
                    time.sleep(0.05)  # not CANCEL.wait: it is set when Ctrl-C brought us here
                    continue
                offset = header_int(response.headers.get("Upload-Offset"))
                if response.status_code not in (200, 204) or offset is None or offset > self.size:
                    return False
                self.offset, self.in_doubt = offset, False
                return True
        except (requests.RequestException, Interrupted):
            return False
        return False


def _record_ttl(record: ResumeRecord) -> int | None:
    """The TTL an interrupted upload was created with (None: the provider has none, or unknown)."""
    ttl = (record.extra or {}).get("ttl")
    return int(ttl) if isinstance(ttl, (int, float)) and not isinstance(ttl, bool) else None


def _recorded_url(url: str) -> str:
    """The creation URL as a record keeps it: only to tell whether a record belongs to this endpoint, so
    a secret-looking query value (`?token=...`, which the logs mask too) is masked: records hold no
    credentials (DESIGN.md section 5)."""
    return redact_url(url)
