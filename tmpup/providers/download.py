"""A ranged, streamed GET shared by the providers that can download (Qlik, tus, KF5, Pyrus, ET)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from tmpup.errors import IntegrityError, NotFoundError, TransientError
from tmpup.headers import parse_content_disposition, parse_content_range

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
) -> RemoteFile:
    """GET `url` from `offset`; the result says where the body really starts (a server may ignore Range)."""
    from tmpup.providers.base import RemoteFile

    request_headers = dict(headers or {})
    if offset > 0:
        request_headers["Range"] = f"bytes={offset}-"
    # Identity encoding: byte offsets must be offsets in the file, not in a gzip stream.
    request_headers["Accept-Encoding"] = "identity"

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
    return RemoteFile(
        name=name,
        size=total,
        offset=start,
        chunks=_chunks(provider, response),
        close=response.close,
    )


def _chunks(provider: Provider, response: requests.Response) -> Iterator[bytes]:
    import requests

    try:
        yield from response.iter_content(BLOCK)
    except (requests.exceptions.RequestException, OSError) as exc:
        raise TransientError(
            f"{provider.id}: the download was cut off ({type(exc).__name__})",
            hint="run the same command with --continue to resume it",
            provider=provider.id,
        ) from exc
    finally:
        response.close()


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
