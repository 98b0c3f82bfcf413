"""A provider-agnostic tus 1.0.0 server, and the generic tus mount at `/tus/files/`.

`TusEndpoint` implements the protocol against the blob store: core (HEAD, PATCH), creation,
creation-with-upload, expiration (`Upload-Expires`), termination (DELETE) and OPTIONS discovery.
Every `Upload-Offset` it answers goes through `Mount.claimed` (one byte more under a `corrupt` fault).
A mount owns one endpoint, routes its tus paths to it, authenticates first, and calls
`endpoint.finalize(response)` from its own `finalize` for those paths (that adds
`Tus-Resumable` to every answer, errors included). Provider deviations are constructor
arguments or overrides: Qlik (`qlik.py`) answers 415 to a wrong PATCH content type, advertises
no termination, reads its TTL from the metadata and formats errors as Qlik does.

`TusEndpoint.upload_base` (None: the request's own base) makes `Location` point elsewhere, as
servers that keep uploads on a storage host of their own do; tests set it to the same emulator
under another name (`http://localhost:PORT/...` for `127.0.0.1`), another origin to a client.

`TusMount` is the generic server: creation endpoint `http://HOST:PORT/tus/files/`, no auth unless
`Credentials.tus_token` is set (then a Bearer token), uploads expire 24 h after creation, errors
are tusd-style text (`ERR_...: detail`), and GET of a complete upload returns its bytes (Range
supported; 204 while incomplete).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from werkzeug.http import HTTP_STATUS_CODES, http_date
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from .context import EmulatorContext
from .mount import Mount, Reply, empty_response
from .store import Blob

TUS_VERSION = "1.0.0"
OFFSET_OCTET_STREAM = "application/offset+octet-stream"
ALL_EXTENSIONS = ("creation", "creation-with-upload", "termination", "expiration")
GENERIC_EXPIRY = 24 * 3600.0

_INT = re.compile(r"[0-9]{1,19}")
_MIME = re.compile(r"[A-Za-z0-9][\w.+-]*/[\w.+-]+")


def parse_metadata(header: str) -> dict[str, str]:
    """Parse `Upload-Metadata` leniently, as tusd does.

    Pairs are split on commas and trimmed; a pair with more than two space-separated parts, an
    empty key, or a value that is not valid standard Base64 is skipped; a key without value maps
    to ""; a trailing comma is fine. Values are decoded as UTF-8 (invalid bytes replaced).
    """
    result: dict[str, str] = {}
    for element in header.split(","):
        parts = element.strip().split(" ")
        if len(parts) > 2 or not parts[0]:
            continue
        value = ""
        if len(parts) == 2:
            try:
                value = base64.b64decode(parts[1], validate=True).decode("utf-8", errors="replace")
            except (binascii.Error, ValueError):
                continue
        result[parts[0]] = value
    return result


@dataclass(frozen=True)
class Creation:
    """What a provider makes of a creation request's metadata."""

    name: str = ""
    ttl: float | None = None


class TusEndpoint:
    """The tus protocol for one mount; handlers return responses or raise `Reply`."""

    def __init__(
        self,
        mount: Mount,
        *,
        extensions: Iterable[str] = ALL_EXTENSIONS,
        max_size: int | None = None,
        bad_content_type_status: int = 415,
        expiry: float | None = GENERIC_EXPIRY,
        id_length: int = 32,
        upload_base: str | None = None,
    ) -> None:
        self.mount = mount
        self.upload_base = upload_base
        self.extensions = tuple(extensions)
        self.max_size = max_size
        self.bad_content_type_status = bad_content_type_status
        self.expiry = expiry
        self.id_length = id_length

    # -- provider hooks --------------------------------------------------------------------------

    def creation(self, metadata: Mapping[str, str]) -> Creation:
        """Name and TTL of a new upload (raise `self.fail(400, ...)` to refuse the metadata)."""
        return Creation(name=metadata.get("filename") or metadata.get("name") or "", ttl=self.expiry)

    def location(self, request: Request, upload_id: str) -> str:
        """Absolute URL of an upload (go-tus does not resolve relative ones)."""
        return f"{(self.upload_base or request.base_url).rstrip('/')}/{upload_id}"

    # -- helpers ---------------------------------------------------------------------------------

    @property
    def provider(self) -> str:
        return self.mount.id

    def fail(self, status: int, detail: str, headers: Mapping[str, str] | None = None) -> Reply:
        return Reply(self.mount.error(status, detail, headers=headers))

    def finalize(self, response: Response) -> Response:
        response.headers["Tus-Resumable"] = TUS_VERSION
        return response

    def check_version(self, request: Request) -> None:
        version = request.headers.get("Tus-Resumable")
        if version != TUS_VERSION:
            detail = "missing Tus-Resumable header" if version is None else f"unsupported tus version {version!r}"
            raise self.fail(412, detail, {"Tus-Version": TUS_VERSION})

    def int_header(self, request: Request, name: str) -> int:
        value = request.headers.get(name)
        if value is None or not _INT.fullmatch(value.strip()):
            raise self.fail(400, f"missing or invalid {name} header: {value!r}")
        return int(value)

    def expires_header(self, blob: Blob) -> dict[str, str]:
        if "expiration" in self.extensions and blob.expires_at is not None:
            return {"Upload-Expires": http_date(blob.expires_at)}
        return {}

    def settle(self, blob: Blob) -> None:
        if blob.length is not None and blob.offset >= blob.length and not blob.complete:
            self.mount.store.complete(blob)

    def lock(self, blob: Blob) -> None:
        if not blob.busy.acquire(blocking=False):
            raise self.fail(423, "the upload is locked by another request; retry later")

    # -- requests --------------------------------------------------------------------------------

    def options(self, request: Request) -> Response:
        headers = {"Tus-Version": TUS_VERSION}
        if self.extensions:
            headers["Tus-Extension"] = ",".join(self.extensions)
        if self.max_size is not None:
            headers["Tus-Max-Size"] = str(self.max_size)
        return empty_response(204, headers)

    def create(self, request: Request) -> Response:
        self.check_version(request)
        if "Upload-Defer-Length" in request.headers:
            if "Upload-Length" in request.headers:
                raise self.fail(400, "Upload-Length and Upload-Defer-Length exclude each other")
            raise self.fail(400, "Upload-Defer-Length is not supported; send Upload-Length")
        length = self.int_header(request, "Upload-Length")
        if self.max_size is not None and length > self.max_size:
            raise self.fail(413, f"Upload-Length {length} exceeds the maximum of {self.max_size} bytes")
        raw_metadata = (request.headers.get("Upload-Metadata") or "").strip()
        metadata = parse_metadata(raw_metadata)
        creation = self.creation(metadata)
        with_upload = "creation-with-upload" in self.extensions and request.mimetype == OFFSET_OCTET_STREAM
        if with_upload and (request.content_length or 0) > length:
            raise self.fail(413, f"the body is longer than Upload-Length {length}")
        upload_id = self.mount.ids.hex(self.id_length)
        blob = self.mount.store.create(
            self.provider,
            upload_id,
            name=creation.name,
            length=length,
            ttl=creation.ttl,
            metadata=metadata,
            extra={"tus_metadata": raw_metadata, "ttl": creation.ttl},
        )
        headers = {"Location": self.location(request, upload_id), **self.expires_header(blob)}
        if with_upload:
            self.lock(blob)
            try:
                self._receive(request, blob)
            finally:
                blob.busy.release()
            headers["Upload-Offset"] = str(self.mount.claimed(request, blob.offset))
        self.settle(blob)
        return empty_response(201, headers)

    def head(self, request: Request, upload_id: str) -> Response:
        self.check_version(request)
        blob = self.mount.lookup(upload_id)
        if blob.busy.locked():
            raise self.fail(423, "the upload is locked by a running PATCH; retry later")
        headers = {
            "Upload-Offset": str(self.mount.claimed(request, blob.offset)),
            "Upload-Length": str(blob.length),
            "Cache-Control": "no-store",
            **self.expires_header(blob),
        }
        raw_metadata = blob.extra.get("tus_metadata")
        if isinstance(raw_metadata, str) and raw_metadata:
            headers["Upload-Metadata"] = raw_metadata
        return empty_response(200, headers)

    def patch(self, request: Request, upload_id: str) -> Response:
        self.check_version(request)
        if request.mimetype != OFFSET_OCTET_STREAM:
            raise self.fail(
                self.bad_content_type_status,
                f"PATCH needs Content-Type: {OFFSET_OCTET_STREAM}, not {request.content_type!r}",
            )
        offset = self.int_header(request, "Upload-Offset")
        blob = self.mount.lookup(upload_id)
        self.lock(blob)  # before the offset check: a second PATCH during a running one gets 423, as in tusd
        try:
            if offset != blob.offset:
                raise self.fail(409, f"Upload-Offset {offset} does not match the upload's offset {blob.offset}")
            assert blob.length is not None
            if offset + (request.content_length or 0) > blob.length:
                raise self.fail(413, f"the body would take the upload past its Upload-Length {blob.length}")
            self._receive(request, blob)
        finally:
            blob.busy.release()
        offset = self.mount.claimed(request, blob.offset)
        return empty_response(204, {"Upload-Offset": str(offset), **self.expires_header(blob)})

    def _receive(self, request: Request, blob: Blob) -> None:
        """Append the body (up to Upload-Length); a broken body keeps what arrived, as tus asks."""
        assert blob.length is not None
        try:
            self.mount.receive(request, blob, limit=blob.length - blob.offset)
        finally:
            self.settle(blob)

    def delete(self, request: Request, upload_id: str) -> Response:
        self.check_version(request)
        blob = self.mount.lookup(upload_id)
        self.lock(blob)
        try:
            self.mount.store.delete(self.provider, blob.id)
        finally:
            blob.busy.release()
        return empty_response(204)


_TUSD_CODES = {
    400: "ERR_BAD_REQUEST",
    401: "ERR_UNAUTHORIZED",
    404: "ERR_UPLOAD_NOT_FOUND",
    405: "ERR_METHOD_NOT_ALLOWED",
    409: "ERR_MISMATCHED_OFFSET",
    410: "ERR_UPLOAD_GONE",
    412: "ERR_UNSUPPORTED_VERSION",
    413: "ERR_MAX_SIZE_EXCEEDED",
    415: "ERR_INVALID_CONTENT_TYPE",
    416: "ERR_RANGE_NOT_SATISFIABLE",
    423: "ERR_UPLOAD_LOCKED",
    429: "ERR_RATE_LIMITED",
}


class TusMount(Mount):
    """Generic tus 1.0.0 server at `/tus/files/`."""

    id = "tus"
    title = "tus 1.0.0 server"
    method_override = True
    rules = (
        Rule("/files/", methods=["POST"], endpoint="create"),
        Rule("/files/", methods=["OPTIONS"], endpoint="options"),
        Rule("/files/<id>", methods=["HEAD"], endpoint="head"),
        Rule("/files/<id>", methods=["PATCH"], endpoint="patch"),
        Rule("/files/<id>", methods=["DELETE"], endpoint="delete"),
        Rule("/files/<id>", methods=["OPTIONS"], endpoint="options"),
        Rule("/files/<id>", methods=["GET"], endpoint="download"),
    )

    def __init__(self, ctx: EmulatorContext) -> None:
        super().__init__(ctx)
        self.tus = TusEndpoint(self, max_size=self.ctx.max_size)

    def authenticate(self, request: Request, endpoint: str) -> Response | None:
        token = self.credentials.tus_token
        if token is None or endpoint == "options" or self.secret_equals(self.bearer_token(request), token):
            return None
        return self.error(401, "a valid Bearer token is required", headers={"WWW-Authenticate": 'Bearer realm="tus"'})

    def error(self, status: int, detail: str, *, headers: Mapping[str, str] | None = None) -> Response:
        code = _TUSD_CODES.get(status, "ERR_" + HTTP_STATUS_CODES.get(status, "ERROR").upper().replace(" ", "_"))
        return Response(f"{code}: {detail}\n", status=status, headers=dict(headers or {}), mimetype="text/plain")

    def finalize(self, request: Request, response: Response) -> Response:
        return self.tus.finalize(response)

    def profile_url(self, base_url: str) -> str:
        return f"{base_url}/{self.id}/files/"

    def banner(self, base_url: str) -> list[str]:
        c = self.credentials
        auth = "no auth" if c.tus_token is None else f"Bearer token: {c.shown('tus_token')}"
        return [f"{self.id:<18} {self.profile_url(base_url)}  ({auth})"]

    def options(self, request: Request, id: str | None = None) -> Response:
        return self.tus.options(request)

    def create(self, request: Request) -> Response:
        return self.tus.create(request)

    def head(self, request: Request, id: str) -> Response:
        return self.tus.head(request, id)

    def patch(self, request: Request, id: str) -> Response:
        return self.tus.patch(request, id)

    def delete(self, request: Request, id: str) -> Response:
        return self.tus.delete(request, id)

    def download(self, request: Request, id: str) -> Response:
        blob = self.lookup(id)
        if not blob.complete:
            offset = self.claimed(request, blob.offset)
            return empty_response(204, {"Upload-Offset": str(offset), "Upload-Length": str(blob.length)})
        filetype = blob.metadata.get("filetype", "")
        content_type = filetype if _MIME.fullmatch(filetype) else "application/octet-stream"
        return self.send_blob(request, blob, content_type=content_type)
