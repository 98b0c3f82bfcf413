"""Enterprise Tester temporary attachment sets, emulated at `/enterprise-tester/api/...`.

A profile's url is `http://HOST:PORT/enterprise-tester` (it stands for `https://host/EnterpriseTester`,
the base including the application path). Every request needs HTTP Basic with
`Credentials.et_username` / `et_password`, else 401 with `WWW-Authenticate: Basic`. The API documents
no error body; this emulator answers `{"Message": "..."}` (the ASP.NET Web API shape).

* `POST /api/temporaryattachmentsets`: a new set, 201, `Location` and `{"Id", "Self"}`.
* `POST /api/temporaryattachmentset/{id}`: any `multipart/*` body (415 otherwise; 400 without a
  boundary or when malformed), parsed as it streams (each file goes straight to the blob store).
  Part parameters are read quoted or not, `filename*`/`name*` (RFC 2231) win over plain ones;
  `name` -> `Name`, `filename` -> `FileName` (the seed's second example swaps them: a doc error).
  A `size` parameter or `Content-Length` that disagrees with the bytes is 400. Parts without a
  filename are ignored; no file part at all is 403. 404 for an unknown set. Answers 201 with a
  JSON array of attachment objects. A failed request keeps none of its files.
* `GET /api/temporaryattachmentset/{id}`: 200 `{"Items": [...]}` (OData options are ignored);
  `GET /api/temporaryattachmentset/{set}/attachment/{id}`: one attachment (its `Self` link);
  `GET /api/attachment/{id}/contents`: the bytes (Range, Content-Disposition, Content-Type).

Above `ctx.max_size` (`--max-size`) a file part is refused with 413 `{"Message": ...}` (ET documents
no limit; 413 is what an ASP.NET Web API host answers for a request over its limit): as soon as a
part's `size` parameter or `Content-Length` says so, else when its bytes pass the limit. The limit is
per file, as for the other providers; the request keeps none of its files.

ET documents no expiry for temporary attachments, so `POST /_emulator/expire` and `expire` faults
are refused for this mount (`no_expiry`).

`iter_multipart` (the streaming reader) is shared with the Pyrus mount.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote

from werkzeug.datastructures import Headers
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.routing import Rule
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData
from werkzeug.wrappers import Request, Response

from .body import BodyReader
from .mount import Mount, Reply, json_response
from .store import CHUNK, Blob

API = "/api"
_PARAM = re.compile(r'\s*;\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')
_DIGITS = re.compile(r"[0-9]{1,19}")


class MultipartError(ValueError):
    """The body is not the multipart message it claims to be."""


def parse_disposition(value: str) -> tuple[str, dict[str, str]]:
    """(`attachment`, {params}) from a Content-Disposition; quoted or token values, `key*` preferred."""
    kind, _, rest = value.partition(";")
    plain: dict[str, str] = {}
    extended: dict[str, str] = {}
    for match in _PARAM.finditer(";" + rest):
        key, raw = match.group(1).lower(), match.group(2).strip()
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        if key.endswith("*"):
            charset, _, tail = raw.partition("'")
            _language, _, encoded = tail.partition("'")
            try:
                extended[key[:-1]] = unquote(encoded, encoding=charset or "utf-8", errors="strict")
            except (LookupError, UnicodeDecodeError):
                raise MultipartError(f"bad RFC 2231 value for {key}: {raw!r}") from None
        else:
            plain.setdefault(key, raw)
    return kind.strip().lower(), {**plain, **extended}


@dataclass
class PartHead:
    """The header block of one part."""

    headers: Headers
    disposition: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def filename(self) -> str | None:
        return self.params.get("filename")


def iter_multipart(request: Request, boundary: str) -> Iterator[PartHead | bytes | None]:
    """Stream a multipart body: a `PartHead` at each part's start, its data as bytes, None at its end.

    Reads at most 1 MiB at a time, so memory stays flat whatever the file sizes. Raises
    `MultipartError` for a malformed body and `BodyInterrupted` when the client stops sending.
    """
    decoder = MultipartDecoder(boundary.encode("latin-1"), max_form_memory_size=None)
    # Through the request's BodyReader, so that the framework's final drain knows what was read.
    reader = BodyReader.of(request.environ)
    buffer = memoryview(bytearray(CHUNK))
    in_part = False
    while True:
        count = reader.readinto(buffer)
        chunk = bytes(buffer[:count])
        decoder.receive_data(chunk or None)
        while True:
            try:
                event = decoder.next_event()
            except (ValueError, RequestEntityTooLarge) as exc:  # UnicodeDecodeError included
                raise MultipartError(f"malformed multipart body: {exc}") from None
            if isinstance(event, NeedData):
                break
            if isinstance(event, Epilogue):
                if in_part:
                    raise MultipartError("the body ended inside a part")
                return
            if isinstance(event, (Field, File)):
                raw = event.headers.get("Content-Disposition", "")
                kind, params = parse_disposition(raw)
                in_part = True
                yield PartHead(event.headers, kind, params)
            elif isinstance(event, Data):
                if event.data:
                    yield event.data
                if not event.more_data:
                    in_part = False
                    yield None
        if not chunk:
            raise MultipartError("the body ended before the closing boundary")


def iso_seconds(timestamp: float) -> str:
    """`2015-12-16T07:40:18Z`, as Enterprise Tester writes datetimes."""
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class AttachmentSet:
    id: str
    created_at: float
    attachments: list[str] = field(default_factory=list)


class EnterpriseTesterMount(Mount):
    """Enterprise Tester: temporary attachment sets over HTTP Basic."""

    id = "enterprise-tester"
    title = "Enterprise Tester temporary attachment sets"
    no_expiry = "Enterprise Tester temporary attachments do not expire (the API documents no TTL)"
    rules = (
        Rule(f"{API}/temporaryattachmentsets", methods=["POST"], endpoint="create_set"),
        Rule(f"{API}/temporaryattachmentset/<id>", methods=["GET"], endpoint="list_set"),
        Rule(f"{API}/temporaryattachmentset/<id>", methods=["POST"], endpoint="upload"),
        Rule(f"{API}/temporaryattachmentset/<set_id>/attachment/<id>", methods=["GET"], endpoint="attachment"),
        Rule(f"{API}/attachment/<id>/contents", methods=["GET"], endpoint="contents"),
    )

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self._lock = threading.Lock()
        self.sets: dict[str, AttachmentSet] = {}
        self.user_id = self.ids.uuid()

    # -- hooks -----------------------------------------------------------------------------------

    def authenticate(self, request: Request, endpoint: str) -> Response | None:
        given = self.basic_credentials(request)
        if (
            given is not None
            and self.secret_equals(given[0], self.credentials.et_username)
            and self.secret_equals(given[1], self.credentials.et_password)
        ):
            return None
        return self.error(
            401,
            "Authorization has been denied for this request.",
            headers={"WWW-Authenticate": 'Basic realm="Enterprise Tester"'},
        )

    def error(self, status: int, detail: str, *, headers: Mapping[str, str] | None = None) -> Response:
        return json_response({"Message": detail}, status, headers)

    def banner(self, base_url: str) -> list[str]:
        user, password = self.credentials.et_username, self.credentials.shown("et_password")
        return [f"{self.id:<18} {self.profile_url(base_url)}  (Basic: {user} / {password})"]

    # -- sets ------------------------------------------------------------------------------------

    def _set(self, set_id: str) -> AttachmentSet:
        with self._lock:
            found = self.sets.get(set_id.lower())
        if found is None:
            raise Reply(self.error(404, f"Temporary attachment set {set_id} was not found."))
        return found

    def _self_link(self, request: Request, set_id: str) -> str:
        return f"{self.base_url(request)}{API}/temporaryattachmentset/{set_id}"

    def create_set(self, request: Request) -> Response:
        new = AttachmentSet(self.ids.uuid(), self.clock.time())
        with self._lock:
            self.sets[new.id] = new
        link = self._self_link(request, new.id)
        return json_response({"Id": new.id, "Self": link}, 201, {"Location": link})

    def list_set(self, request: Request, id: str) -> Response:
        found = self._set(id)
        items = [self._describe(request, blob) for blob in self._blobs(found)]
        return json_response({"Items": items})

    def _blobs(self, found: AttachmentSet) -> list[Blob]:
        blobs = []
        for blob_id in list(found.attachments):
            blob = self.store.get(self.id, blob_id)
            if blob is not None and blob.complete:
                blobs.append(blob)
        return blobs

    def _describe(self, request: Request, blob: Blob) -> dict[str, Any]:
        base = self.base_url(request)
        set_id = str(blob.extra.get("set_id", ""))
        return {
            "TemporaryId": set_id,
            "Id": blob.id,
            "Name": blob.extra.get("display_name", blob.name),
            "FileName": blob.name,
            "ContentType": blob.extra.get("content_type", "application/octet-stream"),
            "CreatedAt": iso_seconds(blob.created_at),
            "CreatedById": self.user_id,
            "Size": self.claimed(request, blob.size),
            "Self": f"{base}{API}/temporaryattachmentset/{set_id}/attachment/{blob.id}",
            "Content": f"{base}{API}/attachment/{blob.id}/contents",
        }

    def attachment(self, request: Request, set_id: str, id: str) -> Response:
        found = self._set(set_id)
        if id.lower() not in found.attachments:
            return self.error(404, f"Attachment {id} was not found in set {set_id}.")
        return json_response(self._describe(request, self.lookup(id.lower())))

    def contents(self, request: Request, id: str) -> Response:
        blob = self.lookup(id.lower())
        if not blob.complete:
            return self.error(404, f"Attachment {id} was not found.")
        content_type = str(blob.extra.get("content_type", "application/octet-stream"))
        return self.send_blob(request, blob, content_type=content_type)

    # -- upload ----------------------------------------------------------------------------------

    def upload(self, request: Request, id: str) -> Response:
        found = self._set(id)
        if not request.mimetype.startswith("multipart/"):
            return self.error(415, f"The request entity's media type '{request.mimetype}' is not MIME multipart.")
        boundary = request.mimetype_params.get("boundary")
        if not boundary:
            return self.error(400, "The multipart request has no boundary parameter.")
        created: list[Blob] = []
        try:
            self._receive_parts(request, boundary, found, created)
        except MultipartError as exc:
            self._forget(created)
            return self.error(400, str(exc))
        except BaseException:
            self._forget(created)
            raise
        if not created:
            return self.error(403, "The multipart request did not contain any files.")
        with self._lock:
            found.attachments.extend(blob.id for blob in created)
        return json_response([self._describe(request, blob) for blob in created], 201)

    def _forget(self, blobs: list[Blob]) -> None:
        for blob in blobs:
            self.store.delete(self.id, blob.id)

    def _receive_parts(self, request: Request, boundary: str, found: AttachmentSet, created: list[Blob]) -> None:
        """Store every file part as a blob (appended to `created` as soon as it exists)."""
        with contextlib.ExitStack() as stack:
            sink = None
            head: PartHead | None = None
            blob: Blob | None = None
            for event in iter_multipart(request, boundary):
                if isinstance(event, PartHead):
                    head, blob, sink = event, None, None
                    if event.filename:
                        self._check_declared_size(event)
                        blob = self._new_blob(event, found)
                        created.append(blob)
                        sink = stack.enter_context(self.store.appender(blob))
                elif isinstance(event, bytes):
                    if sink is not None and blob is not None:
                        self._check_size(head, blob.size + len(event))
                        sink.write(event)
                elif head is not None and blob is not None:
                    stack.close()
                    check_lengths(head, blob.size)
                    self.store.complete(blob)

    def _too_large(self, head: PartHead | None) -> Reply:
        name = head.filename if head is not None else None
        limit = self.ctx.max_size
        return Reply(self.error(413, f"The file {name!r} is larger than the limit of {limit} bytes."))

    def _check_declared_size(self, head: PartHead) -> None:
        """413 before any byte of a part whose `size` parameter or `Content-Length` is over the limit."""
        limit = self.ctx.max_size
        if limit is None:
            return
        for value in (head.params.get("size"), head.headers.get("Content-Length")):
            if value is not None and _DIGITS.fullmatch(value.strip()) and int(value) > limit:
                raise self._too_large(head)

    def _check_size(self, head: PartHead | None, size: int) -> None:
        """413 once a part's bytes pass the limit (whatever it declared)."""
        if self.ctx.max_size is not None and size > self.ctx.max_size:
            raise self._too_large(head)

    def _new_blob(self, head: PartHead, found: AttachmentSet) -> Blob:
        filename = head.filename or ""
        content_type = head.headers.get("Content-Type", "application/octet-stream").strip()
        extra: dict[str, object] = {
            "set_id": found.id,
            "display_name": head.params.get("name") or filename,
            "content_type": content_type or "application/octet-stream",
        }
        return self.store.create(self.id, self.ids.uuid(), name=filename, extra=extra)


def check_lengths(head: PartHead, size: int) -> None:
    """The part's `size` parameter and `Content-Length`, when given, must match the bytes received."""
    for label, value in (
        ("size parameter", head.params.get("size")),
        ("Content-Length", head.headers.get("Content-Length")),
    ):
        if value is None:
            continue
        value = value.strip()
        if not _DIGITS.fullmatch(value):
            raise MultipartError(f"part {head.filename!r}: the {label} {value!r} is not a number of bytes")
        if int(value) != size:
            raise MultipartError(f"part {head.filename!r}: the {label} says {value} bytes, but {size} arrived")
