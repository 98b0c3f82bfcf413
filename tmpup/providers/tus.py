"""Any tus 1.0.0 server (tusd, @tus/server, tmpup's emulator, ...): resumable uploads and what the
core protocol offers besides.

The profile's `url` is the creation endpoint itself (e.g. `https://host/files/`); `token` is an
optional Bearer token and `headers` a table of extra headers sent with every request to the
origin of `url`, and only there (neither is ever written to a resume record). Every upload is a
tus upload (`protocols/tus.py`) and resumes by itself; `--no-resume` starts afresh and keeps no
record. The id a user passes to `info`, `download` and `delete` is the upload URL or its last
path segment. `info` is a HEAD (offset, length, metadata, expiry); `download` is a GET of the
upload URL, which many servers allow (tusd, @tus/server, the emulator) and some do not; `delete`
is tus termination where offered.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import quote, urlparse

from tmpup.errors import ConfigError, NotFoundError, TmpupError
from tmpup.progress import Task
from tmpup.providers.base import Info, KeySpec, Provider, RemoteFile, UploadOptions, UploadResult
from tmpup.sources import Source

if TYPE_CHECKING:
    from tmpup.protocols.tus import TusClient


#: An HTTP field name (RFC 9110 section 5.1: a token).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


#: Headers a profile's `headers` table may not set.
_MANAGED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "content-type",
        "tus-resumable",
        "upload-offset",
        "upload-length",
        "upload-metadata",
        "upload-defer-length",
        "x-http-method-override",
    }
)


class TusProvider(Provider):
    id: ClassVar[str] = "tus"
    description: ClassVar[str] = "any tus 1.0.0 server (resumable uploads; download, info, delete where offered)"
    resumable: ClassVar[bool] = True
    keys: ClassVar[tuple[KeySpec, ...]] = (
        KeySpec("url", "url", required=True, query=True, help="the tus creation endpoint, e.g. https://host/files/"),
        KeySpec("token", secret=True, help="optional Bearer token"),
        KeySpec("headers", "table", help="extra headers sent with every request, e.g. { X-Tenant = 'acme' }"),
        KeySpec("chunk_size", "size", positive=True, help="PATCH size (default: the whole remainder in one request)"),
    )
    handle: ClassVar[Literal["id", "token", "url"]] = "url"

    @classmethod
    def validate_settings(cls, values: Mapping[str, Any]) -> str | None:
        """`headers` may add headers, not replace the ones HTTP and tus themselves are made of: a `Host`
        would send the upload (and its record) elsewhere, an `Upload-Offset` would corrupt it."""
        for name, value in (values.get("headers") or {}).items():
            if not _TOKEN.fullmatch(str(name)):
                # RFC 9110 field names are tokens: a space or colon would reach the server as a malformed
                # request, whose 400 reads as "the server refused tus 1.0.0".
                return f"'headers' has {str(name)!r}, which is not a header name (letters, digits and !#$%&'*+-.^_`|~)"
            if str(name).lower() in _MANAGED_HEADERS:
                return f"'headers' cannot set {name!r}: tmpup sends it itself (HTTP framing or the tus protocol)"
            text = str(value)
            if any((ord(ch) < 0x20 and ch != "\t") or ord(ch) == 0x7F for ch in text) or not _latin1(text):
                return f"'headers' {name!r}: the value holds a line break, a control or a non-Latin-1 character"
        return None

    @property
    def create_url(self) -> str:
        return str(self.settings.get("url"))

    def _client(self) -> TusClient:
        from tmpup.protocols.tus import TusClient

        return TusClient(self, self._headers(), self.create_url)

    def _headers(self) -> dict[str, str]:
        headers = {str(k): str(v) for k, v in (self.settings.get("headers") or {}).items()}
        token = self.settings.secret("token")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def upload_url(self, id: str) -> str:
        """The upload URL of an id: a full URL as is, a bare id under the creation endpoint."""
        if urlparse(id).scheme in ("http", "https"):
            return id
        if not id or "/" in id:
            raise NotFoundError(
                f"tus: {id!r} is neither an upload URL nor an upload id",
                hint="pass the URL 'tmpup upload' printed, or its last segment",
                provider=self.id,
            )
        return f"{self.create_url.rstrip('/')}/{quote(id, safe='')}"

    def check_options(self, options: UploadOptions) -> None:
        if options.ttl is not None:
            self.env.warn("a tus server decides itself when uploads expire; --ttl is ignored")

    # -- upload ---------------------------------------------------------------------------------

    def upload(self, source: Source, options: UploadOptions, task: Task) -> UploadResult:
        from tmpup.protocols.tus import upload_with_tus

        metadata = {"filename": options.name}
        filetype = mimetypes.guess_type(options.name, strict=False)[0]
        if filetype:
            metadata["filetype"] = filetype  # what tus-js-client sends; servers use it for GET's Content-Type
        outcome = upload_with_tus(
            self,
            source=source,
            options=options,
            task=task,
            create_url=self.create_url,
            headers=self._headers(),
            metadata=metadata,
            ttl=None,
            terminate=True,
        )
        return UploadResult(
            id=urlparse(outcome.upload_url).path.rstrip("/").rsplit("/", 1)[-1] or None,
            name=options.name,
            size=source.size,
            url=outcome.upload_url,
            expires_at=outcome.expires_at,
            resumed=outcome.resumed,
        )

    # -- info / download / delete ---------------------------------------------------------------

    def info(self, id: str) -> Info:
        url = self.upload_url(id)
        status = self._client().status(url)
        complete = status.length is not None and status.offset >= status.length
        fields: dict[str, Any] = {
            "id": urlparse(url).path.rstrip("/").rsplit("/", 1)[-1],
            "url": url,
            "name": status.metadata.get("filename") or status.metadata.get("name"),
            "size": status.length,
            "offset": status.offset,
            "status": "complete" if complete else "incomplete (a resumable upload has not finished)",
            "expires_at": status.expires_at.isoformat() if status.expires_at else None,
            "metadata": ", ".join(f"{k}={v}" for k, v in status.metadata.items()) or None,
        }
        return Info(fields["id"], fields)

    def open_download(self, id: str, *, offset: int = 0) -> RemoteFile:
        from tmpup.providers.download import open_ranged_download

        url = self.upload_url(id)
        try:
            return open_ranged_download(self, url, offset=offset, headers=self._client().headers_for(url))
        except TmpupError as exc:
            if exc.status in (405, 501):
                raise self.unsupported("download", "this server does not serve uploads by GET") from None
            raise

    def delete(self, id: str) -> None:
        try:
            self._client().terminate(self.upload_url(id))
        except TmpupError as exc:
            if exc.status in (405, 501):
                raise self.unsupported("delete", "this server does not offer tus termination") from None
            raise

    def check(self) -> str:
        """OPTIONS proves a tus server is there; HEAD of an id that cannot exist proves the credentials."""
        client = self._client()
        with self.transport_errors("check"):
            options = self.env.session.options(self.create_url, headers=self._headers())
        options.close()
        versions = options.headers.get("Tus-Version")
        if not versions:
            if options.status_code in (401, 403):
                self.check_response(options, ok=())
            raise ConfigError(
                f"tus: OPTIONS {self.create_url} answered {options.status_code} without Tus-Version",
                hint="the profile's url must be a tus 1.0.0 creation endpoint",
                provider=self.id,
            )
        with self.transport_errors("check"):
            probe = self.env.session.head(self.upload_url("0" * 32), headers=client.headers)  # same origin
        probe.close()
        if probe.status_code not in (404, 410):
            self.check_response(probe, ok=(200, 204))
        extensions = options.headers.get("Tus-Extension") or "none"
        return f"reached a tus server at {self.create_url} (versions {versions}; extensions {extensions})"
