"""Qlik Cloud temp-contents, emulated at `/qlik/api/v1/temp-contents...`.

A profile's url is `http://HOST:PORT/qlik`; every request needs `Authorization: Bearer <token>`
(`Credentials.qlik_token`), else 401. Errors use Qlik's envelope
`{"errors": [{"code", "title", "detail"}], "traceId"}`.

* `POST /api/v1/temp-contents?filename=&ttl=`: body streamed to the store; `ttl` is an integer
  1..259200 (default 3600), anything else is 400; answers 201, empty body,
  `Location: /api/v1/temp-contents/{24-hex id}`.
* `GET /api/v1/temp-contents/{id}`: the bytes, with Range (206/416) and Content-Disposition
  (`inline=1` for inline); `GET .../{id}/details`: PascalCase JSON (`Size` is a string).
  Both answer 204 while a tus upload is incomplete, 404 for unknown ids, 410 once expired.
* tus 1.0.0 at `POST /api/v1/temp-contents/files` and `HEAD/PATCH .../files/{id}`: creation (with
  upload) and expiration, 415 for a wrong PATCH content type, no termination; metadata keys
  `filename` and `ttl` (Base64; the TTL counts from creation). The tus id is the temp-content id.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from collections.abc import Mapping
from datetime import datetime, timezone

from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from .context import EmulatorContext
from .mount import BodyInterrupted, Mount, empty_response, json_response
from .tus import Creation, TusEndpoint

API = "/api/v1/temp-contents"
TTL_DEFAULT = 3600
TTL_MAX = 259200
ID_LENGTH = 24

_DIGITS = re.compile(r"[0-9]{1,12}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def parse_ttl(value: str | None) -> int:
    """A TTL in seconds from its query/metadata text: default 3600, integer 1..259200 (else ValueError)."""
    if value is None:
        return TTL_DEFAULT
    if not _DIGITS.fullmatch(value.strip()) or not 1 <= int(value) <= TTL_MAX:
        raise ValueError(f"ttl must be an integer from 1 to {TTL_MAX} seconds, not {value!r}")
    return int(value)


def check_filename(value: str | None) -> str:
    """The file name as given (may be absent); empty or with control characters is ValueError."""
    if value is None:
        return ""
    if not value or _CONTROL.search(value):
        raise ValueError("filename must be a non-empty name without control characters")
    return value


def iso(timestamp: float | None) -> str:
    """UTC ISO-8601 with milliseconds and `Z`, as Qlik writes datetimes."""
    if timestamp is None:
        return ""
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class QlikTus(TusEndpoint):
    """tus with Qlik's rules: `filename`/`ttl` metadata, absolute Location under the API path."""

    def creation(self, metadata: Mapping[str, str]) -> Creation:
        try:
            name = check_filename(metadata.get("filename"))
            ttl = parse_ttl(metadata.get("ttl"))
        except ValueError as exc:
            raise self.fail(400, f"Upload-Metadata: {exc}") from None
        return Creation(name=name, ttl=ttl)

    def location(self, request: Request, upload_id: str) -> str:
        return f"{self.mount.base_url(request)}{API}/files/{upload_id}"


class QlikMount(Mount):
    """Qlik Cloud temp-contents: raw upload, download, details, and tus."""

    id = "qlik"
    title = "Qlik Cloud temp-contents"
    method_override = True
    rules = (
        Rule(f"{API}", methods=["POST"], endpoint="upload"),
        Rule(f"{API}/files", methods=["POST"], endpoint="tus_create"),
        Rule(f"{API}/files", methods=["OPTIONS"], endpoint="tus_options"),
        Rule(f"{API}/files/<id>", methods=["HEAD"], endpoint="tus_head"),
        Rule(f"{API}/files/<id>", methods=["PATCH"], endpoint="tus_patch"),
        Rule(f"{API}/files/<id>", methods=["OPTIONS"], endpoint="tus_options"),
        Rule(f"{API}/<id>", methods=["GET"], endpoint="download"),
        Rule(f"{API}/<id>/details", methods=["GET"], endpoint="details"),
    )

    def __init__(self, ctx: EmulatorContext) -> None:
        super().__init__(ctx)
        self.tus = QlikTus(
            self,
            extensions=("creation", "creation-with-upload", "expiration"),
            max_size=ctx.max_size,
            bad_content_type_status=415,
            expiry=TTL_DEFAULT,
            id_length=ID_LENGTH,
        )

    # -- hooks -----------------------------------------------------------------------------------

    def authenticate(self, request: Request, endpoint: str) -> Response | None:
        if endpoint == "tus_options" or self.secret_equals(self.bearer_token(request), self.credentials.qlik_token):
            return None
        detail = "missing Bearer token" if self.bearer_token(request) is None else "invalid API key or token"
        return self.error(401, detail, headers={"WWW-Authenticate": 'Bearer realm="qlik"'})

    def error(self, status: int, detail: str, *, headers: Mapping[str, str] | None = None) -> Response:
        title = HTTP_STATUS_CODES.get(status, "Error")
        body = {
            "errors": [{"code": f"HTTP-{status}", "title": title, "detail": detail}],
            "traceId": self.ids.hex(32),
        }
        return json_response(body, status, headers)

    def finalize(self, request: Request, response: Response) -> Response:
        if f"{API}/files" in request.path:
            self.tus.finalize(response)
        return response

    def banner(self, base_url: str) -> list[str]:
        return [f"{self.id:<18} {self.profile_url(base_url)}  (Bearer token: {self.credentials.shown('qlik_token')})"]

    @property
    def creator_id(self) -> str:
        """A stable user id for the demo token, shaped like Qlik's."""
        return hashlib.sha256(f"qlik-user:{self.credentials.qlik_token}".encode()).hexdigest()[:ID_LENGTH]

    # -- raw temp-contents -----------------------------------------------------------------------

    def upload(self, request: Request) -> Response:
        try:
            name = check_filename(request.args.get("filename"))
            ttl = parse_ttl(request.args.get("ttl"))
        except ValueError as exc:
            return self.error(400, str(exc))
        max_size = self.ctx.max_size
        if max_size is not None and (request.content_length or 0) > max_size:
            return self.error(413, f"the file is larger than the limit of {max_size} bytes")
        blob = self.store.create(self.id, self.ids.hex(ID_LENGTH), name=name, ttl=ttl, extra={"ttl": ttl})
        try:
            self.receive(request, blob, limit=None if max_size is None else max_size + 1)
        except BodyInterrupted:  # a single-shot upload that broke off leaves nothing behind
            self.store.delete(self.id, blob.id)
            raise
        if max_size is not None and blob.size > max_size:
            self.store.delete(self.id, blob.id)
            return self.error(413, f"the file is larger than the limit of {max_size} bytes")
        self.store.complete(blob)
        headers = {"Location": f"{API}/{blob.id}", "Cache-Control": "no-store", "Pragma": "no-cache"}
        return empty_response(201, headers)

    def download(self, request: Request, id: str) -> Response:
        blob = self.lookup(id)
        if not blob.complete:
            return empty_response(204)
        name = blob.name or blob.id
        content_type = mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"
        inline = request.args.get("inline") == "1"
        return self.send_blob(request, blob, name=name, inline=inline, content_type=content_type)

    def details(self, request: Request, id: str) -> Response:
        blob = self.lookup(id)
        if not blob.complete:
            return empty_response(204)
        ttl = blob.extra.get("ttl")
        return json_response(
            {
                "ID": blob.id,
                "Name": blob.name,
                "Size": str(self.claimed(request, blob.size)),
                "Expires": iso(blob.expires_at),
                "CreatedAt": iso(blob.created_at),
                "CreatorID": self.creator_id,
                "UpdatedAt": iso(blob.updated_at),
                "TTLSeconds": int(ttl) if isinstance(ttl, (int, float)) else TTL_DEFAULT,
            }
        )

    # -- tus -------------------------------------------------------------------------------------

    def tus_options(self, request: Request, id: str | None = None) -> Response:
        return self.tus.options(request)

    def tus_create(self, request: Request) -> Response:
        return self.tus.create(request)

    def tus_head(self, request: Request, id: str) -> Response:
        return self.tus.head(request, id)

    def tus_patch(self, request: Request, id: str) -> Response:
        return self.tus.patch(request, id)
