"""tus 1.0.0 for every provider that speaks it: the wire protocol, and `upload_with_tus`.

`TusClient` sends the protocol's requests (creation, HEAD, PATCH, termination) with `Tus-Resumable`
and the caller's headers, encodes `Upload-Metadata` (Base64 values; Qlik's `ttl` too), resolves a
relative `Location`, and turns the answers into `TmpupError`s (412: the server speaks another
version; 413 with `Tus-Max-Size`). The caller's headers carry credentials (a Bearer token, a
profile's extra headers such as X-Api-Key), so they go only to the origin (scheme, host, port) of
the profile's url: an upload URL elsewhere, whether from a `Location` or a stored record, gets
`Tus-Resumable` alone, with one warning saying so. `upload_with_tus` is the entry point providers call: it runs
a resumable `tus_transfer.Transfer`, which keeps a resume record (DESIGN.md section 5) around the
HEAD/PATCH loop. Facts and the recommended algorithm: shared/reference/providers.md sections 1.6, 2.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

import requests

from tmpup.errors import AuthError, ConfigError, InputError, UnexpectedAnswer
from tmpup.headers import origin
from tmpup.retry import RETRY_STATUSES
from tmpup.units import format_size

if TYPE_CHECKING:
    from pathlib import Path

    from tmpup.progress import Task
    from tmpup.providers.base import Provider, UploadOptions
    from tmpup.sources import Source

TUS_VERSION = "1.0.0"
OFFSET_OCTET_STREAM = "application/offset+octet-stream"


@dataclass(frozen=True)
class TusOutcome:
    """A finished tus upload: where it lives, since when, until when, and whether it was resumed."""

    upload_url: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    resumed: bool
    resumed_from: int = 0
    ttl: int | None = None  # the TTL the upload was created with (a resumed one keeps its own)


@dataclass(frozen=True)
class UploadStatus:
    """What HEAD says of an upload."""

    offset: int
    length: int | None
    expires_at: dt.datetime | None
    metadata: dict[str, str]


def encode_metadata(metadata: Mapping[str, str]) -> str:
    """`Upload-Metadata`: `key base64(value)` pairs; a key with an empty value is sent alone."""
    pairs = []
    for key, value in metadata.items():
        if not key or not key.isascii() or any(ch.isspace() or ch == "," for ch in key):
            raise ValueError(f"invalid tus metadata key {key!r}")
        encoded = base64.b64encode(value.encode("utf-8")).decode("ascii")
        pairs.append(f"{key} {encoded}" if encoded else key)
    return ",".join(pairs)


def decode_metadata(header: str | None) -> dict[str, str]:
    """Parse `Upload-Metadata` leniently (as tusd does): bad pairs are skipped, never fatal."""
    result: dict[str, str] = {}
    for element in (header or "").split(","):
        parts = element.strip().split(" ")
        if len(parts) > 2 or not parts[0]:
            continue
        try:
            value = base64.b64decode(parts[1], validate=True).decode("utf-8", "replace") if len(parts) == 2 else ""
        except (binascii.Error, ValueError):
            continue
        result[parts[0]] = value
    return result


def parse_http_date(value: str | None) -> dt.datetime | None:
    """`Upload-Expires` (an RFC 7231 date) as an aware datetime; None when absent or garbled."""
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.timezone.utc)


def header_int(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


class TusClient:
    """The protocol's requests against one server, with its status codes turned into `TmpupError`s."""

    def __init__(self, provider: Provider, headers: Mapping[str, str] | None, trusted_url: str) -> None:
        """`headers` (credentials) are sent only to the origin of `trusted_url`, the profile's url."""
        self.provider = provider
        self.headers = {**(headers or {}), "Tus-Resumable": TUS_VERSION}
        self.bare = {"Tus-Resumable": TUS_VERSION}
        self.origin = origin(trusted_url)
        self.warned = False

    @property
    def session(self) -> requests.Session:
        return self.provider.env.session

    def headers_for(self, url: str) -> dict[str, str]:
        """The headers for a request to `url`: the credentials only on the profile's own origin.

        Withholding rather than refusing: servers that put uploads on a storage host of their own
        (capability URLs, as Vimeo's tus links) need none, and one that does answers 401/403,
        which `check` explains."""
        if origin(url) == self.origin or len(self.headers) == len(self.bare):
            return self.headers
        if not self.warned:
            self.warned = True
            self.provider.env.warn(
                f"the upload lives at {_origin_text(url)}, not at the profile's {_origin_text(self.origin)}: "
                "its credentials and extra headers are not sent there"
            )
        return self.bare

    def check(self, response: requests.Response, ok: tuple[int, ...]) -> None:
        """Raise unless `ok`; a 412 means the server speaks another tus version (a profile problem)."""
        pid = self.provider.id
        if response.status_code == 412:
            versions = response.headers.get("Tus-Version") or "unknown"
            raise ConfigError(
                f"{pid}: the server refused tus {TUS_VERSION} (it supports: {versions})",
                hint="the profile's url must point at a tus 1.0.0 endpoint",
                provider=pid,
                status=412,
            )
        try:
            self.provider.check_response(response, ok=ok)
        except InputError as exc:
            if response.status_code == 413 and response.headers.get("Tus-Max-Size"):
                exc.hint = f"the server accepts at most {format_size(int(response.headers['Tus-Max-Size']))}"
            raise
        except AuthError as exc:
            if response.url and origin(response.url) != self.origin:
                exc.hint = (
                    f"tmpup sends the profile's credentials only to {_origin_text(self.origin)}; if "
                    f"{_origin_text(response.url)} is yours too, make it the profile's url"
                )
            raise

    def create(self, create_url: str, length: int, metadata: Mapping[str, str]) -> tuple[str, dt.datetime | None]:
        """POST a new upload; return its absolute URL (a relative `Location` is resolved) and expiry."""
        headers = {**self.headers_for(create_url), "Upload-Length": str(length)}
        if metadata:
            headers["Upload-Metadata"] = encode_metadata(metadata)
        with self.provider.transport_errors("tus upload creation"):
            response = self.provider.env.retrier.send(
                lambda: self.session.post(create_url, headers=headers, data=b""), what="tus upload creation"
            )
        response.close()
        self.check(response, ok=(200, 201))
        location = response.headers.get("Location")
        if not location:
            raise ConfigError(
                f"{self.provider.id}: POST {create_url} answered {response.status_code} without a Location header",
                hint="the profile's url must be the tus creation endpoint",
                provider=self.provider.id,
            )
        upload_url = urljoin(create_url, location)
        if urlsplit(upload_url).scheme not in ("http", "https"):
            raise UnexpectedAnswer(
                f"{self.provider.id}: POST {create_url} answered a Location that is not an http(s) URL: {location!r}",
                hint="the profile's url must be a tus 1.0.0 creation endpoint",
                provider=self.provider.id,
            )
        return upload_url, parse_http_date(response.headers.get("Upload-Expires"))

    def status(self, upload_url: str) -> UploadStatus:
        """HEAD with retries (423 included): the upload's offset, length, expiry and metadata."""
        with self.provider.transport_errors("tus HEAD"):
            response = self.provider.env.retrier.send(
                lambda: self.session.head(upload_url, headers=self.headers_for(upload_url)),
                what="tus HEAD",
                retry_statuses=RETRY_STATUSES | {423},
            )
        response.close()
        self.check(response, ok=(200, 204))
        return self.parse_status(response)

    def parse_status(self, response: requests.Response) -> UploadStatus:
        offset = header_int(response.headers.get("Upload-Offset"))
        if offset is None:
            raise ConfigError(
                f"{self.provider.id}: HEAD {response.url} answered without Upload-Offset",
                hint="that is not a tus 1.0.0 upload URL",
                provider=self.provider.id,
            )
        return UploadStatus(
            offset=offset,
            length=header_int(response.headers.get("Upload-Length")),
            expires_at=parse_http_date(response.headers.get("Upload-Expires")),
            metadata=decode_metadata(response.headers.get("Upload-Metadata")),
        )

    def terminate(self, upload_url: str) -> None:
        """DELETE (the termination extension); raises like any other request."""
        with self.provider.transport_errors("tus termination"):
            response = self.provider.env.retrier.send(
                lambda: self.session.delete(upload_url, headers=self.headers_for(upload_url)),
                what="tus termination",
            )
        response.close()
        self.check(response, ok=(200, 204))


def upload_with_tus(
    provider: Provider,
    *,
    source: Source,
    options: UploadOptions,
    task: Task,
    create_url: str,
    headers: Mapping[str, str] | None = None,
    metadata: Mapping[str, str] | None = None,
    ttl: int | None = None,
    terminate: bool = False,
) -> TusOutcome:
    """Upload `source` with tus, resuming a matching interrupted upload.

    `headers` (credentials included) go on every request to the origin of `create_url` (only
    there) and are never stored; `metadata` values
    are Base64-encoded; `ttl` (seconds, counted from creation as Qlik does) sets the record's
    expiry when the server sends no `Upload-Expires`; `terminate` lets a superseded upload (the
    file changed) be deleted on the server, where termination is offered.
    """
    from tmpup.protocols.tus_transfer import Transfer

    client = TusClient(provider, headers, create_url)
    transfer = Transfer(client, source, options, task, create_url, dict(metadata or {}), ttl, terminate)
    return transfer.run()


def resume_command(path: str | None, key: str, config: Path | None = None) -> str:
    """What a user types to continue the interrupted upload of `path` (record `key`); `path` None:
    every kept upload (`tmpup resume --all`).

    The path when it can be pasted back; the record's key when it holds bytes that are not UTF-8
    or characters that are not printable, which messages show as `?` (a different file). With the
    `--config` the run was given: the record names its profile, which only that file holds."""
    if path is None:
        command = "tmpup resume --all"
    elif path.isprintable() and not any("\udc80" <= ch <= "\udcff" for ch in path):
        command = f"tmpup resume {shlex.quote(path)}"
    else:
        command = f"tmpup resume {key}"
    return command if config is None else f"{command} --config {shlex.quote(str(config))}"


def _origin_text(url: str | tuple[str, str, int | None]) -> str:
    scheme, host, port = origin(url) if isinstance(url, str) else url
    return f"{scheme}://{host}:{port}"


__all__: list[str] = [
    "TUS_VERSION",
    "TusClient",
    "TusOutcome",
    "UploadStatus",
    "decode_metadata",
    "encode_metadata",
    "origin",
    "parse_http_date",
    "resume_command",
    "upload_with_tus",
]
