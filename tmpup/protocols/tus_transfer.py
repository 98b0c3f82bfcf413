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
3. PATCH streams the file from the server's offset: by default the whole remainder in one request
   (fast, and few requests against rate limits), or `chunk_size` pieces for proxies with body
   limits; the body is a `FileSlice` (1 MiB reads, known length), never a chunk in memory. The
   server's `Upload-Offset` is trusted over our own count. 409 -> HEAD and realign;
   423/429/5xx/network -> back off, HEAD, continue; 404/410 -> a new upload; 412/413/415 are fatal.
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

from tmpup.errors import (
    GoneError,
    InputError,
    IntegrityError,
    Interrupted,
    TmpupError,
    TransientError,
    transport_reason,
)
from tmpup.http import redact_url
from tmpup.protocols.tus import (
    OFFSET_OCTET_STREAM,
    TusClient,
    TusOutcome,
    header_int,
    parse_http_date,
    resume_command,
)
from tmpup.resume_record import DamagedRecord, ResumeRecord, record_key
from tmpup.retry import RETRY_STATUSES
from tmpup.sources import check_cancel, pause
from tmpup.units import format_duration, format_size

if TYPE_CHECKING:
    from tmpup.progress import Task
    from tmpup.providers.base import UploadOptions
    from tmpup.sources import Source

#: New uploads started after the server forgot or expired one; a TTL too short for the link
#: would otherwise start over forever.
MAX_RESTARTS = 2
#: Consecutive 423 Locked answers tolerated after a PATCH of ours was cut (or a record is resumed): the
#: dangling request can hold the server's lock a while. Otherwise 423 counts against --retries.
MAX_LOCKED = 12
#: The smallest PATCH a proxy's 413 halves the chunks down to; a 413 for one this small is final.
MIN_CHUNK = 256 * 1024
#: Seconds between rewrites of the record's informational offset during a chunked upload.
SAVE_INTERVAL = 2.0
#: How long a stopping upload may spend asking the server where it is (a Ctrl-C must stay quick).
KEEP_PROBE_SECONDS = 2.0
_NETWORK_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


class Transfer:
    """One upload of one file: see the module docstring."""

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
        provider = client.provider
        self.provider = provider
        self.client = client
        self.source = source
        self.options = options
        self.task = task
        self.create_url = create_url
        self.metadata = metadata
        self.new_ttl = ttl  # the TTL a new upload is created with (in `metadata` too)
        self.ttl = ttl  # the TTL of the upload being fed: a resumed one keeps its own
        self.terminate = terminate
        self.state = provider.env.state
        # stdin is spooled to a temp file that is gone after this run: nothing to resume from.
        self.keep_records = options.resumable is not False and not source.temporary
        self.identity = source.identity() if self.keep_records else None
        self.path = self.identity.path if self.identity else str(source.path)
        self.key = record_key(provider.env.profile, provider.id, self.path)
        self.url = ""
        self.offset = 0
        self.created_at = provider.env.clock()
        self.expires_at: dt.datetime | None = None
        self.resumed = False
        self.resumed_from = 0
        self.announce = False
        self.need_sync = False
        # A PATCH went out since the server last said where it is: it may hold more than `offset`.
        self.in_doubt = False
        self.record_saved = False
        self.saved_at = 0.0
        self.restarts = 0
        self.checksum = options.checksum  # kept in the record: `tmpup resume` reports the sha256 as asked
        self.chunk = options.chunk_size  # None: the whole remainder in one PATCH; halved on a proxy's 413
        self.last_length = 0
        # A request of ours may still hold the server's lock: one was cut, or an earlier run was stopped.
        self.dangling = False

    @property
    def size(self) -> int:
        return self.source.size

    def note(self, text: str) -> None:
        # The retrier's notify is the run's note channel (stderr, silent with -q).
        self.provider.env.retrier.notify(f"{self.source.display}: {text}")

    # -- records --------------------------------------------------------------------------------

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

    def outcome(self) -> TusOutcome:
        return TusOutcome(self.url, self.created_at, self.expires_at, self.resumed, self.resumed_from, self.ttl)

    # -- the protocol ---------------------------------------------------------------------------

    def create(self) -> None:
        self.created_at = self.provider.env.clock()
        self.url, expires = self.client.create(self.create_url, self.size, self.metadata)
        self.ttl = self.new_ttl
        if self.ttl is not None:
            by_ttl = self.created_at + dt.timedelta(seconds=self.ttl)
            expires = min(expires, by_ttl) if expires else by_ttl
        self.expires_at = expires
        self.offset = 0
        self.need_sync = self.in_doubt = False
        if self.keep_records:
            self.save()

    def restart(self, why: str) -> None:
        self.restarts += 1
        if self.restarts > MAX_RESTARTS:
            if self.new_ttl is not None:  # Qlik: the TTL asked for is the upload's lifetime
                hint = "the upload expires before it can finish: use a longer --ttl or a faster link"
            else:  # a tus server decides itself how long an upload lives; --ttl is ignored there
                hint = (
                    "the server drops the upload before it can finish (it decides itself when uploads "
                    "expire): use a faster link, or ask the server's operator for a longer expiry"
                )
            raise GoneError(
                f"{self.provider.id}: {self.source.display}: {why}, after {self.restarts - 1} new uploads already",
                hint=hint,
                provider=self.provider.id,
            )
        self.provider.env.warn(f"{self.source.display}: {why}; starting a new upload")
        self.resumed = self.announce = False
        self.resumed_from = 0
        self.create()
        self.task.resume_at(0)  # back to zero is not negative throughput

    def loop(self) -> None:
        """HEAD when out of sync, PATCH while bytes remain; every answer moves `offset` or backs off.

        Whatever ends it, the progress shows what the server confirmed, not what was sent."""
        try:
            self._loop()
        except BaseException:
            self.task.set_completed(self.offset)
            raise

    def _loop(self) -> None:
        retrier = self.provider.env.retrier
        failures = locked = 0
        while True:
            check_cancel()
            if not self.need_sync and self.offset >= self.size:
                return
            method = "HEAD" if self.need_sync else "PATCH"
            before = self.offset
            try:
                response = self.head() if self.need_sync else self.patch()
            except requests.exceptions.SSLError as exc:
                with self.provider.transport_errors("upload"):
                    raise exc
            except _NETWORK_ERRORS as exc:
                failures += 1
                if failures > retrier.retries:
                    with self.provider.transport_errors("upload"):
                        raise exc
                self.pause(failures, None, f"{method} failed ({transport_reason(exc)})", retrier.retries)
                self.need_sync = True
                self.dangling = self.dangling or method == "PATCH"
                continue
            response.close()
            status = response.status_code
            if status in (200, 204):
                self.accept(response, method)
                if self.offset > before:
                    failures = locked = 0
                elif method == "PATCH":
                    failures += 1  # the server took nothing: do not loop forever
                    if failures > retrier.retries:
                        raise TransientError(
                            f"{self.provider.id}: the server keeps accepting PATCHes without storing them",
                            provider=self.provider.id,
                        )
            elif status in (404, 410):
                self.restart(f"the server no longer has the upload ({status} {response.reason or ''})".strip())
            elif status == 409 and method == "PATCH":
                failures += 1
                if failures > retrier.retries:
                    self.client.check(response, ok=())
                self.need_sync = True
            elif status == 423:
                locked += 1
                limit = max(MAX_LOCKED, retrier.retries) if self.dangling else retrier.retries
                if locked > limit:
                    self.client.check(response, ok=())
                self.pause(locked, response, f"the upload is locked on the server (423, {method})", limit)
                self.need_sync = True
            elif status in RETRY_STATUSES:
                failures += 1
                if failures > retrier.retries:
                    self.client.check(response, ok=())
                self.pause(failures, response, f"the server answered {status} to {method}", retrier.retries)
                self.need_sync = True
            elif status == 413 and method == "PATCH" and self.last_length > MIN_CHUNK:
                # Not the upload's size (creation accepted that): a proxy's limit on request bodies.
                # What the server holds stays; halve the PATCHes until they get through.
                self.chunk = max(MIN_CHUNK, self.last_length // 2)
                self.note(
                    f"the server refused a PATCH of {format_size(self.last_length)} (413: a proxy's body limit?); "
                    f"continuing in PATCHes of {format_size(self.chunk)} (--chunk-size sets this)"
                )
                self.need_sync = True
            else:
                self.client.check(response, ok=())

    def head(self) -> requests.Response:
        return self.client.session.head(self.url, headers=self.client.headers_for(self.url))

    def patch(self) -> requests.Response:
        remaining = self.size - self.offset
        chunk = self.chunk
        length = remaining if not chunk else min(chunk, remaining)
        self.last_length = length
        self.task.set_completed(self.offset)
        body = self.source.slice(self.offset, length, progress=self.task.advance)
        headers = {
            **self.client.headers_for(self.url),
            "Upload-Offset": str(self.offset),
            "Content-Type": OFFSET_OCTET_STREAM,
        }
        self.in_doubt = True
        return self.client.session.patch(self.url, data=body, headers=headers)

    def accept(self, response: requests.Response, method: str) -> None:
        """Take the server's word for the offset (HEAD or a successful PATCH)."""
        if method == "HEAD":
            status = self.client.parse_status(response)
            if (status.length is not None and status.length != self.size) or status.offset > self.size:
                self.restart(f"the server's upload holds {status.length} bytes, the file {self.size}")
                return
            self.offset = status.offset
            self.need_sync = self.in_doubt = False
            if status.expires_at is not None:
                self.expires_at = status.expires_at
            if self.announce:
                self.announce = False
                self.resumed_from = self.offset
                pct = 100 * self.offset // self.size if self.size else 100
                self.note(f"resuming at {format_size(self.offset)} of {format_size(self.size)} ({pct}%)")
                # The bar starts where the server is; those bytes are not this run's throughput.
                self.task.resume_at(self.offset)
                if self.keep_records:
                    self.save()  # `tmpup resume --list` shows where the server is
            self.task.set_completed(self.offset)
            return
        new = header_int(response.headers.get("Upload-Offset"))
        if new is None:
            self.need_sync = True  # a PATCH answer without its offset: ask
            return
        if new > self.size:
            raise IntegrityError(
                f"{self.provider.id}: the server claims {new} bytes of a {self.size}-byte upload",
                hint="the upload is damaged on the server and was dropped; upload the file again (a new upload starts)",
                provider=self.provider.id,
            )
        self.offset = new
        self.in_doubt = False
        self.task.set_completed(new)
        expires = parse_http_date(response.headers.get("Upload-Expires"))
        if expires is not None:
            self.expires_at = expires
        if self.keep_records and self.offset < self.size and time.monotonic() - self.saved_at > SAVE_INTERVAL:
            self.save()

    def pause(self, attempt: int, response: requests.Response | None, what: str, limit: int) -> None:
        retrier = self.provider.env.retrier
        delay = retrier.delay(attempt, response)
        self.note(f"{what}; retrying in {delay:.1f}s ({attempt}/{limit})")
        pause(delay)  # Ctrl-C in a -j run wakes worker threads at once


def _record_ttl(record: ResumeRecord) -> int | None:
    """The TTL an interrupted upload was created with (None: the provider has none, or unknown)."""
    ttl = (record.extra or {}).get("ttl")
    return int(ttl) if isinstance(ttl, (int, float)) and not isinstance(ttl, bool) else None


def _recorded_url(url: str) -> str:
    """The creation URL as a record keeps it: only to tell whether a record belongs to this endpoint, so
    a secret-looking query value (`?token=...`, which the logs mask too) is masked: records hold no
    credentials (DESIGN.md section 5)."""
    return redact_url(url)
