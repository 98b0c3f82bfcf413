"""Feeding one tus upload: its creation and the HEAD/PATCH loop, with no resume record of its own.

`PatchLoop` POSTs a new upload, then PATCHes the file from the server's offset: by default the whole
remainder in one request (fast, and few requests against rate limits), or `chunk_size` pieces for
proxies with body limits; the body is a `FileSlice` (1 MiB reads, known length), never a chunk in
memory. The server's `Upload-Offset` is trusted over our own count. 409 -> HEAD and realign;
423/429/5xx/network -> back off, HEAD, continue; 404/410 -> a new upload (`MAX_RESTARTS` at most);
a PATCH's 413 halves the PATCHes down to `MIN_CHUNK` (a proxy's body limit); 412/413/415 are fatal.
Where its position is worth writing down (a new upload, a resumed one's first HEAD, a PATCH's
answer) it calls `checkpoint`, which does nothing here: `tus_transfer.Transfer` is a `PatchLoop`
that keeps the resume record (DESIGN.md section 5) there, and sets the loop up to resume.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import requests

from tmpup.errors import GoneError, IntegrityError, TransientError, transport_reason
from tmpup.protocols.tus import OFFSET_OCTET_STREAM, TusClient, TusOutcome, header_int, parse_http_date
from tmpup.retry import RETRY_STATUSES
from tmpup.sources import check_cancel, pause
from tmpup.units import format_size

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
_NETWORK_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


class PatchLoop:
    """One upload of one file, fed by HEAD and PATCH: see the module docstring."""

    def __init__(
        self,
        client: TusClient,
        source: Source,
        options: UploadOptions,
        task: Task,
        create_url: str,
        metadata: dict[str, str],
        ttl: int | None,
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
        self.restarts = 0
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

    def checkpoint(self, periodic: bool = False) -> None:
        """The upload's position is worth writing down; `periodic`: a PATCH's answer, which comes often.

        Nothing to write here: `tus_transfer.Transfer` writes its resume record."""

    def outcome(self) -> TusOutcome:
        return TusOutcome(self.url, self.created_at, self.expires_at, self.resumed, self.resumed_from, self.ttl)

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
        self.checkpoint()

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
                self.checkpoint()  # `tmpup resume --list` shows where the server is
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
        self.checkpoint(periodic=True)

    def pause(self, attempt: int, response: requests.Response | None, what: str, limit: int) -> None:
        retrier = self.provider.env.retrier
        delay = retrier.delay(attempt, response)
        self.note(f"{what}; retrying in {delay:.1f}s ({attempt}/{limit})")
        pause(delay)  # Ctrl-C in a -j run wakes worker threads at once
