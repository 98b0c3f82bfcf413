"""Pyrus files, emulated at `/pyrus/...`: the accounts server and the file service in one mount.

A profile's url is `http://HOST:PORT/pyrus` (standing for `https://accounts.pyrus.com`).

* `POST /api/v4/auth` (and the older `POST /v4/auth`): JSON `{login, security_key, person_id?}`
  checked against `Credentials.pyrus_login` / `pyrus_security_key`; answers `{access_token,
  api_url, files_url}` with both URLs pointing back at this mount. Tokens live `token_ttl`
  seconds of the emulator clock (Pyrus documents expiry but no figure); `revoke_tokens()` revokes
  them all, as changing the security key does.
* `POST /v4/files/upload` (Bearer): `multipart/form-data` with exactly one file part (field name
  not significant), streamed to the store; answers `{guid, md5_hash}` with the real MD5 of the
  stored bytes. Refused with 400 and Pyrus's codes: `bad_multipart_content`, `no_file_in_request`,
  `empty_file`, `too_large_request_length` (Content-Length far over the limit),
  `attachment_too_big` (over `ctx.max_size`, default 250 MiB). `corrupt_uploads = N` makes the
  next N uploads store their first byte flipped (damage in transit, for the client's MD5 check).
* `GET /v4/files/download/{id}` (Bearer): the bytes with `Content-Disposition: attachment` and Range.
  EMULATOR-ONLY: real Pyrus gives a file a numeric id only once it is attached to a task, and has
  no way to download an upload's guid. This emulator gives every upload a numeric id at once so
  that tests can download it; find it with `PyrusMount.attachment_id(guid)`. An unknown id is
  403 `file_is_missing`.
* Pyrus removes unreferenced files "after a while" (no figure), so uploads have no TTL here, but
  `POST /_emulator/expire` (with the guid or the numeric id) and `expire` faults remove one early:
  its download then answers 403 `file_is_missing`, as for a file Pyrus no longer has.
* A `corrupt` fault makes the upload's `md5_hash` wrong (the bytes are stored exactly): what a
  server that damaged the file would answer. `corrupt_uploads` (above) damages the stored bytes
  themselves.

Errors are `{"error_code", "error"}`. Every files request counts against a rate window per login
(`rate_limit` requests per `rate_window` seconds; Pyrus: 5000 per 10 minutes) and its answer
carries `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (seconds to the next
window); over the limit it is 429 `too_many_requests`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import threading
from collections.abc import Mapping
from typing import Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from .body import BodyReader
from .enterprise_tester import MultipartError, PartHead, iter_multipart
from .mount import Mount, json_response
from .store import CHUNK, Blob

MAX_SIZE = 250 * 1024 * 1024
#: Room for the multipart framing around a file of the maximum size.
FRAMING_SLACK = 64 * 1024
TOKEN_TTL = 24 * 3600.0
RATE_LIMIT = 5000
RATE_WINDOW = 600.0
_ENV_KEY = "tmpup.pyrus.rate"
_CODES = {
    400: "bad_request",
    401: "invalid_token",
    403: "access_denied",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large_request_length",
    429: "too_many_requests",
    500: "server_error",
    503: "server_error",
}


class PyrusMount(Mount):
    """Pyrus auth, file upload (with MD5) and download by numeric id."""

    id = "pyrus"
    title = "Pyrus files"
    rules = (
        Rule("/api/v4/auth", methods=["POST"], endpoint="auth"),
        Rule("/v4/auth", methods=["POST"], endpoint="auth"),
        Rule("/v4/files/upload", methods=["POST"], endpoint="upload"),
        Rule("/v4/files/download/<int:id>", methods=["GET"], endpoint="download"),
    )

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self._lock = threading.Lock()
        self.tokens: dict[str, float] = {}  # token -> expiry (emulator clock)
        self.token_ttl = TOKEN_TTL
        self.rate_limit = RATE_LIMIT
        self.rate_window = RATE_WINDOW
        self.corrupt_uploads = 0
        self._window_start = 0.0
        self._window_count = 0
        self._guids: dict[str, str] = {}  # guid -> numeric id

    # -- test helpers ----------------------------------------------------------------------------

    def attachment_id(self, guid: str) -> str:
        """EMULATOR-ONLY: the numeric id under which an uploaded guid can be downloaded."""
        with self._lock:
            return self._guids[guid]

    def expire(self, upload_id: str) -> bool:
        """Expire an upload by its guid (what the client knows) or its numeric id."""
        with self._lock:
            number = self._guids.get(upload_id, upload_id)
        return self.store.expire(self.id, number)

    def revoke_tokens(self) -> None:
        """Invalidate every issued token (Pyrus does this when the security key changes)."""
        with self._lock:
            self.tokens.clear()

    # -- hooks -----------------------------------------------------------------------------------

    def error(
        self, status: int, detail: str, *, headers: Mapping[str, str] | None = None, code: str | None = None
    ) -> Response:
        out = dict(headers or {})
        if status == 429:
            out.update({k: v for k, v in self._rate_headers(remaining=0).items() if k not in out})
        body = {"error_code": code or _CODES.get(status, "server_error"), "error": detail}
        return json_response(body, status, out)

    def authenticate(self, request: Request, endpoint: str) -> Response | None:
        if endpoint == "auth":
            return None
        token = self.bearer_token(request)
        if token is None:
            return self.error(401, "Authorization token is not specified.", code="token_not_specified")
        now = self.clock.time()
        with self._lock:
            expires = next((e for t, e in self.tokens.items() if self.secret_equals(t, token)), None)
        if expires is None:
            return self.error(401, "Authorization token is invalid.", code="invalid_token")
        if now >= expires:
            return self.error(401, "Authorization token has expired.", code="expired_token")
        allowed, remaining = self._count(now)
        headers = self._rate_headers(remaining)
        request.environ[_ENV_KEY] = headers
        if not allowed:
            return self.error(429, "Too many requests.", headers=headers)
        return None

    def finalize(self, request: Request, response: Response) -> Response:
        for key, value in request.environ.get(_ENV_KEY, {}).items():
            response.headers.setdefault(key, value)
        return response

    def banner(self, base_url: str) -> list[str]:
        login, key = self.credentials.pyrus_login, self.credentials.shown("pyrus_security_key")
        return [f"{self.id:<18} {self.profile_url(base_url)}  (login: {login}, security_key: {key})"]

    # -- rate limit ------------------------------------------------------------------------------

    def _count(self, now: float) -> tuple[bool, int]:
        with self._lock:
            if now >= self._window_start + self.rate_window:
                self._window_start, self._window_count = now, 0
            self._window_count += 1
            return self._window_count <= self.rate_limit, max(0, self.rate_limit - self._window_count)

    def _rate_headers(self, remaining: int) -> dict[str, str]:
        reset = max(0, math.ceil(self._window_start + self.rate_window - self.clock.time()))
        return {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(reset),
        }

    # -- auth ------------------------------------------------------------------------------------

    def auth(self, request: Request) -> Response:
        try:
            body = json.loads(read_small_body(request) or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError):
            return self.error(400, "The request body is not valid JSON.", code="invalid_request")
        if not isinstance(body, dict):
            return self.error(400, "The request body must be a JSON object.", code="invalid_request")
        login, key, person = body.get("login"), body.get("security_key"), body.get("person_id")
        if person is not None and (isinstance(person, bool) or not isinstance(person, int)):
            return self.error(400, "person_id must be an integer.", code="invalid_request")
        if not (
            isinstance(login, str)
            and isinstance(key, str)
            and self.secret_equals(login, self.credentials.pyrus_login)
            and self.secret_equals(key, self.credentials.pyrus_security_key)
        ):
            return self.error(401, "Invalid login or security key.", code="invalid_credentials")
        token = self.ids.hex(64)
        with self._lock:
            self.tokens[token] = self.clock.time() + self.token_ttl
        base = self.base_url(request)
        return json_response({"access_token": token, "api_url": f"{base}/v4/", "files_url": f"{base}/"})

    # -- files -----------------------------------------------------------------------------------

    @property
    def max_size(self) -> int:
        return self.ctx.max_size if self.ctx.max_size is not None else MAX_SIZE

    def upload(self, request: Request) -> Response:
        if request.mimetype != "multipart/form-data" or not request.mimetype_params.get("boundary"):
            return self.error(400, "The request is not multipart/form-data.", code="bad_multipart_content")
        if (request.content_length or 0) > self.max_size + FRAMING_SLACK:
            return self.error(400, "The request is too large.", code="too_large_request_length")
        stored: list[Blob] = []
        try:
            outcome = self._receive(request, request.mimetype_params["boundary"], stored)
        except MultipartError as exc:
            outcome = self.error(400, str(exc), code="bad_multipart_content")
        except BaseException:
            self._forget(stored)
            raise
        if isinstance(outcome, Response):
            self._forget(stored)
            return outcome
        blob, md5 = outcome
        if self.corrupt(request):
            md5 = md5[:-1] + ("1" if md5[-1] == "0" else "0")  # any MD5 but the stored bytes' one
        guid = self.ids.uuid()
        blob.extra["guid"] = guid
        self.store.complete(blob)
        with self._lock:
            self._guids[guid] = blob.id
        return json_response({"guid": guid, "md5_hash": md5})

    def _forget(self, blobs: list[Blob]) -> None:
        for blob in blobs:
            self.store.delete(self.id, blob.id)

    def _receive(self, request: Request, boundary: str, stored: list[Blob]) -> Response | tuple[Blob, str]:
        """Store the one file part; the blob and the MD5 of what was stored, or an error answer."""
        blob: Blob | None = None
        digest = hashlib.md5()
        in_file = False
        with self._lock:
            corrupt = self.corrupt_uploads > 0
            self.corrupt_uploads -= 1 if corrupt else 0
        with contextlib.ExitStack() as stack:
            sink = None
            for event in iter_multipart(request, boundary):
                if isinstance(event, PartHead):
                    in_file = bool(event.filename)
                    if in_file and blob is not None:
                        return self.error(400, "Upload exactly one file per request.", code="bad_multipart_content")
                    if in_file:
                        blob = self.store.create(
                            self.id, str(self.ids.number(self.id, 1001)), name=event.filename or ""
                        )
                        stored.append(blob)
                        sink = stack.enter_context(self.store.appender(blob))
                elif isinstance(event, bytes) and in_file and blob is not None and sink is not None:
                    if corrupt and blob.size == 0:
                        event = bytes([event[0] ^ 0xFF]) + event[1:]
                    if blob.size + len(event) > self.max_size:
                        return self.error(
                            400, f"The file is larger than {self.max_size} bytes.", code="attachment_too_big"
                        )
                    sink.write(event)
                    digest.update(event)
        if blob is None:
            return self.error(400, "The request has no file.", code="no_file_in_request")
        if blob.size == 0:
            return self.error(400, "The file is empty.", code="empty_file")
        return blob, digest.hexdigest()

    def download(self, request: Request, id: int) -> Response:
        blob = self.store.get(self.id, str(id))
        if blob is None or not blob.complete or blob.is_expired(self.clock.time()):
            return self.error(403, f"File {id} is missing or you have no access to it.", code="file_is_missing")
        return self.send_blob(request, blob)


def read_small_body(request: Request, limit: int = 64 * 1024) -> bytes:
    """A small request body (a JSON document), through the request's `BodyReader`; longer is ValueError."""
    reader = BodyReader.of(request.environ)
    buffer = memoryview(bytearray(CHUNK))
    data = bytearray()
    while count := reader.readinto(buffer):
        data += buffer[:count]
        if len(data) > limit:
            raise json.JSONDecodeError("the body is too long for a JSON document", "", 0)
    return bytes(data)
