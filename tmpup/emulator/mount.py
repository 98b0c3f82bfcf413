"""The base class of provider mounts and the HTTP helpers they share.

A mount serves one provider's API under `/<id>/...` of the emulator. The app strips the prefix,
so rules are written exactly as the provider documents its paths. To add a provider:

    from werkzeug.routing import Rule
    from werkzeug.wrappers import Request, Response

    from .mount import BodyInterrupted, Mount, empty_response, json_response

    class Kf5Mount(Mount):
        id = "kf5"                                   # URL prefix and store namespace
        title = "KF5 attachments"
        rules = (
            Rule("/apiv2/attachments.json", methods=["POST"], endpoint="upload"),
            Rule("/apiv2/attachments/<id>.json", methods=["GET"], endpoint="show"),
        )

        def authenticate(self, request: Request, endpoint: str) -> Response | None:
            user = self.basic_credentials(request)   # None -> continue; a Response -> answer it
            ok = user is not None and user[0] == self.credentials.kf5_email  # ...
            return None if ok else self.error(401, "bad credentials")

        def error(self, status: int, detail: str, *, headers=None) -> Response:
            return json_response({"error": "...", "message": detail}, status, headers)

        def upload(self, request: Request) -> Response:      # route values become kwargs
            blob = self.store.create(self.id, str(self.ids.number(self.id, 1000)), name="x")
            try:
                self.receive(request, blob)                 # streamed to disk in 1 MiB reads
            except BodyInterrupted:                         # client vanished: nothing is kept
                self.store.delete(self.id, blob.id)
                raise
            self.store.complete(blob)
            return json_response({"attachment": {"id": int(blob.id)}}, 201)

        def show(self, request: Request, id: str) -> Response:
            blob = self.lookup(id)                          # 404 / 410 via self.error
            return self.send_blob(request, blob)            # Range, 206/416, Content-Disposition

then add the class to `mounts.builtin_mounts()`. Handlers may `raise Reply(response)` to answer
early from any depth. `dispatch` drains whatever body a handler left unread before answering,
so a client still sending a large body sees the answer (401, 413, ...) instead of a reset.
Faults (`faults.py`) are applied by the app around `dispatch`; a mount only has to keep what its
protocol keeps when `receive` raises `BodyInterrupted`, and to report sizes through
`self.claimed(request, size)` (and checksums through `self.corrupt(request)`), so that a `corrupt`
fault can make its answers misreport what was stored. A provider whose uploads never expire sets
`no_expiry` to the reason; the `expire` control and fault are then refused with it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from werkzeug.exceptions import ClientDisconnected, HTTPException, MethodNotAllowed, NotFound
from werkzeug.http import HTTP_STATUS_CODES, http_date
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from .body import BodyInterrupted, BodyReader
from .clock import Clock
from .context import Credentials, EmulatorContext, Ids
from .faults import CORRUPT_KEY, Fault
from .responses import (
    FileSlice,
    RangeNotSatisfiable,
    content_disposition,
    empty_response,
    json_response,
    parse_byte_range,
)
from .store import CHUNK, Blob, BlobExpired, BlobMissing, BlobStore

__all__ = ["BodyInterrupted", "Mount", "Reply", "empty_response", "json_response"]


class Reply(Exception):
    """Raised by a handler to answer `response` immediately."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


class Mount:
    """Base class: routing, auth parsing, body streaming, downloads and the error hook."""

    id: ClassVar[str] = ""
    """URL prefix (`/<id>/...`) and store namespace."""
    title: ClassVar[str] = ""
    """Human name shown by `tmpup serve`."""
    rules: ClassVar[tuple[Rule, ...]] = ()
    """werkzeug rules relative to the mount; `endpoint` names a handler method."""
    method_override: ClassVar[bool] = False
    """Route by `X-HTTP-Method-Override` when present (tus requires it)."""
    no_expiry: ClassVar[str | None] = None
    """Why this provider's uploads never expire (no TTL in its API), or None when they can. When set,
    `POST /_emulator/expire` and `expire` faults for this mount are refused with this text."""

    def __init__(self, ctx: EmulatorContext) -> None:
        self.ctx = ctx
        # Rules are copied: a werkzeug Rule can belong to one Map only, and tests run many emulators.
        self.url_map = Map([r.empty() for r in self.rules], strict_slashes=False, merge_slashes=False)

    # -- shared state ----------------------------------------------------------------------------

    @property
    def store(self) -> BlobStore:
        return self.ctx.store

    @property
    def clock(self) -> Clock:
        return self.ctx.clock

    @property
    def credentials(self) -> Credentials:
        return self.ctx.credentials

    @property
    def ids(self) -> Ids:
        return self.ctx.ids

    # -- hooks for subclasses --------------------------------------------------------------------

    def authenticate(self, request: Request, endpoint: str) -> Response | None:
        """Return an error response to refuse the request, None to let it through."""
        return None

    def error(self, status: int, detail: str, *, headers: Mapping[str, str] | None = None) -> Response:
        """An error in this provider's format. Override to produce the provider's envelope."""
        return json_response({"error": HTTP_STATUS_CODES.get(status, "Error"), "message": detail}, status, headers)

    def finalize(self, request: Request, response: Response) -> Response:
        """Last touch on every response of this mount (fault responses included)."""
        return response

    def profile_url(self, base_url: str) -> str:
        """What a tmpup profile's `url` should be for this mount, given the emulator's base URL."""
        return f"{base_url}/{self.id}"

    def banner(self, base_url: str) -> list[str]:
        """Lines `tmpup serve` prints for this mount: where it is and how to log in."""
        return [f"{self.id:<18} {self.profile_url(base_url)}"]

    # -- dispatch --------------------------------------------------------------------------------

    def _method(self, request: Request) -> str:
        override = request.headers.get("X-HTTP-Method-Override") if self.method_override else None
        return (override or request.method).upper()

    def match(self, request: Request, subpath: str) -> tuple[str, dict[str, Any]]:
        """The (endpoint, route values) of a request; raises werkzeug's NotFound/MethodNotAllowed."""
        adapter = self.url_map.bind("emulator")
        endpoint, values = adapter.match(subpath, method=self._method(request))
        return str(endpoint), dict(values)

    def expire(self, upload_id: str) -> bool:
        """Expire an upload now (the control endpoint, an `expire` fault); False if there is no such upload.

        Only called when `no_expiry` is None. Override to accept other names of an upload."""
        return self.store.expire(self.id, upload_id)

    def target_id(self, request: Request, subpath: str) -> str | None:
        """The upload id a request addresses (its `id` route value), for the `expire` fault."""
        try:
            _, values = self.match(request, subpath)
        except (NotFound, MethodNotAllowed):
            return None
        value = values.get("id")
        return str(value) if value is not None else None

    def dispatch(self, request: Request, subpath: str) -> Response:
        """Route, authenticate, run the handler, drain the unread body, finalize."""
        try:
            endpoint, values = self.match(request, subpath)
            refused = self.authenticate(request, endpoint)
            response = refused if refused is not None else getattr(self, endpoint)(request, **values)
        except Reply as reply:
            response = reply.response
        except NotFound:
            response = self.error(404, f"no such resource: {request.path}")
        except MethodNotAllowed as exc:
            allowed = ", ".join(sorted(exc.valid_methods or ()))
            response = self.error(405, f"method {request.method} not allowed here", headers={"Allow": allowed})
        except ClientDisconnected as exc:  # from werkzeug's own body parsing: the client is gone
            raise BodyInterrupted(str(exc)) from exc
        except HTTPException as exc:  # e.g. werkzeug's form parser refusing a body
            response = self.error(exc.code or 500, exc.description or exc.name)
        try:
            self.drain(request)
        except BodyInterrupted:
            response.close()
            raise
        return self.finalize(request, response)

    def fault_response(self, request: Request, fault: Fault) -> Response:
        """The answer to a `status` fault, in this provider's format."""
        assert fault.status is not None
        headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
        self.drain(request)
        return self.finalize(request, self.error(fault.status, fault.message, headers=headers))

    # -- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def corrupt(request: Request) -> bool:
        """Whether a `corrupt` fault hit this request: its answer must misreport what is stored."""
        return bool(request.environ.get(CORRUPT_KEY))

    def claimed(self, request: Request, size: int) -> int:
        """The size (or tus offset) an answer reports for `size` stored bytes: one more under a `corrupt` fault."""
        return size + 1 if self.corrupt(request) else size

    def base_url(self, request: Request) -> str:
        """Absolute URL of this mount as the client addressed it, e.g. `http://127.0.0.1:8470/qlik`."""
        return f"{request.root_url.rstrip('/')}/{self.id}"

    def lookup(self, blob_id: str) -> Blob:
        """The live blob of this mount, or `Reply` with this provider's 404/410."""
        try:
            return self.store.find(self.id, blob_id)
        except BlobMissing:
            raise Reply(self.error(404, f"{blob_id} was not found")) from None
        except BlobExpired:
            raise Reply(self.error(410, f"{blob_id} has expired")) from None

    @staticmethod
    def bearer_token(request: Request) -> str | None:
        """The token of `Authorization: Bearer <token>`, if that is what was sent."""
        scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
        return (token.strip() or None) if scheme.lower() == "bearer" else None

    @staticmethod
    def basic_credentials(request: Request) -> tuple[str, str] | None:
        """(user, password) of `Authorization: Basic ...`, decoded as UTF-8 (Latin-1 fallback)."""
        scheme, _, param = request.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            raw = base64.b64decode(param.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        user, sep, password = text.partition(":")
        return (user, password) if sep else None

    @staticmethod
    def secret_equals(given: str | None, expected: str | None) -> bool:
        """Constant-time comparison of a presented secret with the expected one."""
        if given is None or expected is None:
            return False
        # surrogatepass: a JSON body may carry a lone surrogate ("\udcff"), which is no one's secret but
        # must be a wrong one (401), not an encoding error (500).
        return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))

    def receive(self, request: Request, blob: Blob, limit: int | None = None) -> int:
        """Append the request body (at most `limit` bytes) to `blob` as it arrives; return the count.

        Raises `BodyInterrupted` if the body ends early; the bytes that arrived are stored and
        `blob.offset` counts them, so the caller decides whether to keep or delete them.
        """
        reader = BodyReader.of(request.environ)
        buffer = memoryview(bytearray(CHUNK))
        total = 0
        with self.store.appender(blob) as sink:
            while limit is None or total < limit:
                want = CHUNK if limit is None else min(CHUNK, limit - total)
                count = reader.readinto(buffer[:want])
                if not count:
                    break
                sink.write(buffer[:count])
                total += count
        return total

    def drain(self, request: Request) -> None:
        """Read and discard what is left of the request body (BodyInterrupted if it breaks off)."""
        BodyReader.of(request.environ).drain()

    def send_blob(
        self,
        request: Request,
        blob: Blob,
        *,
        name: str | None = None,
        inline: bool = False,
        content_type: str = "application/octet-stream",
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Serve a stored blob: 200, 206 for a satisfiable `Range`, 416 otherwise.

        Under a `corrupt` fault the bytes sent are the stored ones but the answer claims one more:
        in the `Content-Range` total of a 206 or 416, or in the `Content-Length` of a 200, whose
        connection is then closed one byte short of it.
        """
        size = blob.size
        claimed = self.claimed(request, size)
        etag = f'"{blob.id}-{size}-{int(blob.updated_at)}"'
        last_modified = http_date(int(blob.updated_at))
        out = {
            "Accept-Ranges": "bytes",
            "Content-Disposition": content_disposition(blob.name if name is None else name, inline=inline),
            "ETag": etag,
            "Last-Modified": last_modified,
            **(headers or {}),
        }
        start, stop, status = 0, size, 200
        range_header = request.headers.get("Range")
        if_range = request.headers.get("If-Range")
        if range_header and (if_range is None or if_range.strip() in (etag, last_modified)):
            try:
                wanted = parse_byte_range(range_header, size)
            except RangeNotSatisfiable:
                return self.error(
                    416,
                    f"range {range_header!r} is not satisfiable for {size} bytes",
                    headers={"Content-Range": f"bytes */{claimed}", "Accept-Ranges": "bytes"},
                )
            if wanted is not None:
                start, stop, status = wanted[0], wanted[1], 206
                out["Content-Range"] = f"bytes {start}-{stop - 1}/{claimed}"
        out["Content-Length"] = str(stop - start)
        content = FileSlice(self.store.open(blob), start, stop - start)
        body: FileSlice | ShortBody = content
        if status == 200 and claimed != size:
            out["Content-Length"] = str(claimed)
            body = ShortBody(content)
        return Response(body, status=status, headers=out, content_type=content_type, direct_passthrough=True)


class ShortBody:
    """A download body that ends before its `Content-Length`: the stored bytes, then the connection is
    closed (what a client sees from a server whose metadata claims more than it stored)."""

    def __init__(self, body: FileSlice) -> None:
        self._body = body

    def __iter__(self) -> Iterator[bytes]:
        yield from self._body
        # werkzeug's server treats ConnectionError as "the connection is gone": no traceback, and the
        # handler closes the socket instead of waiting for the next request on it.
        raise ConnectionAbortedError("the body ends short of its Content-Length (a corrupt fault)")

    def close(self) -> None:
        self._body.close()
