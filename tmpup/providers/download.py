"""A ranged, streamed GET shared by the providers that can download (Qlik, tus, KF5, Pyrus, ET).

A body cut off mid-stream (the connection closed or reset, a read timeout) is continued within the
run, with the backoff of `retry.Retrier`: the rest is asked for with `Range: bytes=N-` (and `If-Range`
when the first answer had a strong ETag). The answer must be a 206 starting at N, for the same file:
the total size, ETag and Last-Modified are compared with the first answer's. A server that answers
200 (Range ignored) for the same file is read from the start again and the bytes already held are
skipped, not rewritten: the `.part` is never truncated, so another cut loses nothing. A file that
changed meanwhile is an `IntegrityError`; retries spent end in a `TransientError`. `retries` counts
consecutive attempts that brought no new byte, as tus uploads count them (`tus_patch_loop.PatchLoop`).

Whatever arrived before an error is handed on before the error is raised (the body is read one
socket read at a time, `read1`), so that it reaches the `.part`: urllib3's `read(n)` and requests'
`iter_content` drop a block that ends short when the connection breaks. Transport exceptions are
translated here; callers see `TmpupError`s only.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tmpup.errors import IntegrityError, NotFoundError, TransientError, transport_reason
from tmpup.headers import parse_content_disposition, parse_content_range
from tmpup.units import format_size

if TYPE_CHECKING:
    import requests

    from tmpup.providers.base import Provider, RemoteFile

# Bytes per read from the socket and write to the file: small enough for a block to stay in the CPU
# cache between the copy out of the socket and the copy into the page cache. In hand runs of a 1 GiB
# download (bench/README.md) 1 MiB blocks took 0.6-2.8 s, 128 KiB blocks 0.8-1.2 s mostly, though the
# test VM's page-cache writes are bimodal whatever the block size (dd: 0.2-2.5 s for 1 GiB). Uploads
# keep 1 MiB blocks: there the per-block Python work dominates.
BLOCK = 128 * 1024


def open_ranged_download(
    provider: Provider,
    url: str,
    *,
    offset: int = 0,
    headers: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    reauthorize: Callable[[], dict[str, str]] | None = None,
) -> RemoteFile:
    """GET `url` from `offset`; the result says where the body really starts (a server may ignore Range).

    `reauthorize` is for session tokens (Pyrus): when a request that continues a cut body is answered
    401, it returns fresh auth headers and the request is sent once more with them.
    """
    from tmpup.providers.base import RemoteFile

    base_headers = dict(headers or {})
    # Identity encoding: byte offsets must be offsets in the file, not in a gzip stream.
    base_headers["Accept-Encoding"] = "identity"
    request_headers = dict(base_headers)
    if offset > 0:
        request_headers["Range"] = f"bytes={offset}-"

    with provider.transport_errors("download"):
        response = provider.env.retrier.send(
            lambda: provider.env.session.get(url, headers=request_headers, params=params, stream=True),
            what="download",
        )
    if response.status_code == 416 and offset > 0:
        total = _total_from_416(response)
        response.close()
        if total == offset:
            return RemoteFile(name=None, size=total, offset=offset, chunks=iter(()))
        raise IntegrityError(
            f"{provider.id}: the server has {total if total is not None else 'fewer'} bytes, "
            f"but the partial download already holds {offset}",
            hint="the remote file changed; download again with --force",
            provider=provider.id,
        )
    if response.status_code == 204:
        response.close()
        raise NotFoundError(
            f"{provider.id}: the content is not complete yet (a resumable upload has not finished)",
            hint="finish it with 'tmpup resume', then download",
            provider=provider.id,
        )
    provider.check_response(response, ok=(200, 206))
    name = parse_content_disposition(response.headers.get("Content-Disposition"))
    length = _int(response.headers.get("Content-Length"))
    if response.status_code == 206:
        content_range = parse_content_range(response.headers.get("Content-Range"))
        if content_range is None or content_range[0] != offset:
            response.close()
            raise IntegrityError(
                f"{provider.id}: asked for bytes from {offset} but the server sent "
                f"{response.headers.get('Content-Range') or 'no Content-Range'}",
                provider=provider.id,
            )
        start, _end, total = content_range
    else:
        start, total = 0, length
    identity = _Identity.of(response, total)
    body = _Body(provider, url, base_headers, params, response, start, identity, reauthorize)
    return RemoteFile(
        name=name, size=total, offset=start, chunks=body.chunks, close=body.close, validator=identity.as_dict()
    )


@dataclass
class _Identity:
    """What the first answer said about the file, to know a later answer serves the same bytes."""

    total: int | None
    etag: str | None
    last_modified: str | None

    @classmethod
    def of(cls, response: requests.Response, total: int | None) -> _Identity:
        return cls(total, response.headers.get("ETag"), response.headers.get("Last-Modified"))

    def as_dict(self) -> dict[str, Any]:
        return {"size": self.total, "etag": self.etag, "last_modified": self.last_modified}

    @property
    def strong_etag(self) -> str | None:
        # RFC 9110 13.1.5: If-Range never carries a weak entity tag.
        return self.etag if self.etag and not self.etag.startswith("W/") else None

    def change(self, response: requests.Response, total: int | None) -> str | None:
        """How `response` shows another version of the file than the first answer (None: it does not)."""
        if self.total is not None and total is not None and total != self.total:
            return f"{self.total} bytes at first, {total} now"
        etag = response.headers.get("ETag")
        if self.etag and etag and etag != self.etag:
            return f"ETag {self.etag} at first, {etag} now"
        # Last-Modified only stands in for a missing ETag (as in If-Range): some servers stamp every
        # answer with the current time, and the ETag is the better word on the bytes.
        modified = response.headers.get("Last-Modified")
        if not self.etag and self.last_modified and modified and modified != self.last_modified:
            return f"Last-Modified {self.last_modified} at first, {modified} now"
        return None


class _Retry(Exception):
    """An attempt to fetch the rest failed in a way worth another try (network, 429/5xx)."""

    def __init__(self, why: str, response: requests.Response | None = None) -> None:
        super().__init__(why)
        self.why = why
        self.response = response


class _Body:
    """The body of one download, continued with Range after a cut; `chunks` yields its bytes in order."""

    def __init__(
        self,
        provider: Provider,
        url: str,
        headers: dict[str, str],
        params: dict[str, Any] | None,
        response: requests.Response,
        start: int,
        identity: _Identity,
        reauthorize: Callable[[], dict[str, str]] | None = None,
    ) -> None:
        self.provider = provider
        self.url = url
        self.headers = headers
        self.params = params
        self.response = response
        self.position = start
        self.identity = identity
        # A compressed body (sent despite `Accept-Encoding: identity`): what we count are decoded bytes,
        # which are not the offsets a Range asks for, so it cannot be continued.
        self.encoded = _encoded(response)
        self.reauthorize = reauthorize
        self.chunks = self._stream()

    def close(self) -> None:
        self.chunks.close()
        self.response.close()

    def _stream(self) -> Generator[bytes, None, None]:
        retrier = self.provider.env.retrier
        failures = 0
        skip = 0  # bytes of a 200 answer that the caller already holds
        current: requests.Response | None = self.response
        try:
            while True:
                answered: requests.Response | None = None
                if current is None:
                    try:
                        current, skip = self._reopen()
                    except _Retry as retry:
                        why, answered = retry.why, retry.response
                    else:
                        if current is None:  # a 416 saying the bytes held are the whole file
                            return
                if current is not None:
                    try:
                        for block in _read_blocks(current, decode=self.encoded):
                            if skip:
                                if len(block) <= skip:
                                    skip -= len(block)
                                    continue
                                block, skip = block[skip:], 0
                            self.position += len(block)
                            failures = 0
                            yield block
                    except _cut_errors() as exc:
                        why = transport_reason(exc)
                    else:
                        if skip:
                            raise self._changed(f"the file now ends before byte {self.position}")
                        return
                    finally:
                        current.close()
                    current = None
                failures += 1
                if self.encoded or failures > retrier.retries:
                    raise self._gave_up(why, failures - 1)
                wait = retrier.delay(failures, answered)
                retrier.notify(
                    f"{self.provider.id}: the download was cut off after {self._held()} ({why}); "
                    f"retrying in {wait:.1f}s ({failures}/{retrier.retries})"
                )
                retrier.sleep(wait)
        finally:
            if current is not None:
                current.close()

    def _reopen(self) -> tuple[requests.Response | None, int]:
        """Ask for the rest; the answer to read and how many of its bytes to skip (None: nothing is left)."""
        from tmpup.retry import RETRY_STATUSES, retry_after_seconds

        response = self._request()
        if response.status_code == 401 and self.reauthorize is not None:
            # The token expired while the body was being read (a long download): a new one, once.
            response.close()
            self.headers.update(self.reauthorize())
            response = self._request()
        self.response = response
        status = response.status_code
        if status in RETRY_STATUSES:
            after = retry_after_seconds(response.headers.get("Retry-After"))
            if after is not None and after > self.provider.env.retrier.max_retry_after:
                self.provider.check_response(response, ok=())  # raises: "retry after ..." is the user's call
            response.close()
            raise _Retry(f"the server answered {status}", response)
        if status == 416:
            total = _total_from_416(response)
            response.close()
            if total == self.position and self.identity.total in (None, total):
                return None, 0
            first = f"{self.identity.total} bytes at first, " if self.identity.total is not None else ""
            has = f"a total of {total}" if total is not None else "no total"
            raise self._changed(f"{first}then a 416 for bytes {self.position}- with {has}")
        self.provider.check_response(response, ok=(200, 206))
        if status == 206:
            content_range = parse_content_range(response.headers.get("Content-Range"))
            if content_range is None or content_range[0] != self.position:
                response.close()
                raise IntegrityError(
                    f"{self.provider.id}: asked for bytes from {self.position} to continue the download but "
                    f"the server sent {response.headers.get('Content-Range') or 'no Content-Range'}",
                    hint="the .part was kept; try again with --continue later, or start over with --force",
                    provider=self.provider.id,
                )
            total, skip = content_range[2], 0
        else:
            total, skip = _int(response.headers.get("Content-Length")), self.position
        change = self.identity.change(response, total)
        if change is None and _encoded(response):
            change = f"the server now compresses it ({response.headers.get('Content-Encoding')})"
        if change is not None:
            response.close()
            raise self._changed(change)
        if self.identity.total is None:
            self.identity.total = total
        if skip:
            self.provider.env.retrier.notify(
                f"{self.provider.id}: the server does not resume downloads (it ignored Range); "
                f"reading the first {format_size(skip)} again to continue"
            )
        return response, skip

    def _request(self) -> requests.Response:
        import requests

        headers = {**self.headers, "Range": f"bytes={self.position}-"}
        if self.identity.strong_etag:
            headers["If-Range"] = self.identity.strong_etag
        try:
            return self.provider.env.session.get(self.url, headers=headers, params=self.params, stream=True)
        except requests.exceptions.SSLError as exc:
            with self.provider.transport_errors("download"):  # a certificate problem: no retry helps
                raise exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _Retry(transport_reason(exc)) from None
        except requests.RequestException as exc:
            with self.provider.transport_errors("download"):
                raise exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _held(self) -> str:
        total = self.identity.total
        if total is None:
            return format_size(self.position)
        if format_size(self.position) == format_size(total):  # "293.0 KiB of 293.0 KiB" says nothing
            return f"{self.position} of {total} bytes"
        return f"{format_size(self.position)} of {format_size(total)}"

    def _gave_up(self, why: str, retried: int) -> TransientError:
        if self.encoded:
            why += "; a compressed body cannot be continued where it stopped"
        tries = f"; still failing after {retried} {'retry' if retried == 1 else 'retries'}" if retried else ""
        return TransientError(
            f"{self.provider.id}: the download was cut off after {self._held()} ({why}){tries}",
            hint="the .part keeps what arrived; run the same command with --continue to resume it",
            provider=self.provider.id,
        )

    def _changed(self, change: str) -> IntegrityError:
        return IntegrityError(
            f"{self.provider.id}: the file changed on the server during the download, or the server "
            f"misreports it ({change})",
            hint="the .part was kept as it was; download the file again with --force",
            provider=self.provider.id,
        )


def _read_blocks(response: requests.Response, *, decode: bool) -> Iterator[bytes]:
    """The body in blocks of up to BLOCK bytes; the bytes read before an error come out before it.

    `read1` does at most one socket read, so an error never takes bytes already read with it; a block
    is gathered from several reads to keep writes large.
    """
    raw = response.raw
    done = False
    while not done:
        pieces: list[bytes] = []
        size = 0
        try:
            while size < BLOCK:
                data = raw.read1(BLOCK - size, decode_content=decode)
                if not data:
                    done = True
                    break
                pieces.append(data)
                size += len(data)
        except BaseException:
            if pieces:
                yield b"".join(pieces)  # what arrived is the caller's (and the .part's) before the error
            raise
        if pieces:
            yield pieces[0] if len(pieces) == 1 else b"".join(pieces)


def _cut_errors() -> tuple[type[BaseException], ...]:
    """What a body read raises when the transfer breaks (urllib3's errors: requests is not in the way)."""
    import requests
    import urllib3

    return (urllib3.exceptions.HTTPError, requests.RequestException, OSError)


def _encoded(response: requests.Response) -> bool:
    return response.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity")


def _total_from_416(response: requests.Response) -> int | None:
    value = response.headers.get("Content-Range", "")
    if value.startswith("bytes */"):
        return _int(value[len("bytes */") :])
    return None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
