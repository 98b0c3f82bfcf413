"""Response building blocks shared by the mounts: JSON, empty answers, downloads with Range.

`parse_byte_range` follows RFC 9110 for one `bytes=` range (suffix ranges included; a range
that starts past the end is 416, anything it does not understand is ignored, i.e. 200).
`content_disposition` writes a quoted ASCII `filename` plus RFC 5987 `filename*` when the name
needs it. `FileSlice` streams part of a file in 1 MiB blocks and closes it when the server is done.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import BinaryIO
from urllib.parse import quote

from werkzeug.wrappers import Response

from .store import CHUNK


def json_response(data: object, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON response (UTF-8, not ASCII-escaped)."""
    body = json.dumps(data, ensure_ascii=False)
    return Response(body, status=status, headers=dict(headers or {}), mimetype="application/json")


def empty_response(status: int, headers: Mapping[str, str] | None = None) -> Response:
    """A response without body or Content-Type (201 Created, 204 No Content, HEAD answers)."""
    response = Response(b"", status=status, headers=dict(headers or {}))
    del response.headers["Content-Type"]
    return response


class RangeNotSatisfiable(Exception):
    """The Range header cannot be satisfied for this size (answer 416)."""


_ATTR_CHARS = "!#$&+-.^_`|~"  # RFC 5987 attr-char punctuation (letters and digits are implied)


def content_disposition(name: str, *, inline: bool = False) -> str:
    """`attachment`/`inline` with a quoted ASCII `filename` and, when needed, RFC 5987 `filename*`."""
    kind = "inline" if inline else "attachment"
    if not name:
        return kind
    fallback = "".join(c if 0x20 <= ord(c) < 0x7F else "_" for c in name)
    quoted = fallback.replace("\\", "\\\\").replace('"', '\\"')
    value = f'{kind}; filename="{quoted}"'
    if fallback != name or quoted != name:
        value += "; filename*=UTF-8''" + quote(name, safe=_ATTR_CHARS)
    return value


_DIGITS = re.compile(r"[0-9]+")


def parse_byte_range(header: str, size: int) -> tuple[int, int] | None:
    """The `(start, stop)` slice a single `bytes=` range asks for (RFC 9110 §14).

    None means "ignore the header and send everything" (other units, bad syntax, several
    ranges); raises `RangeNotSatisfiable` when the range starts past the end.
    """
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if len(parts) != 1:
        return None
    first, dash, last = parts[0].partition("-")
    first, last = first.strip(), last.strip()
    if not dash:
        return None
    if not first:
        if not _DIGITS.fullmatch(last):
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable
        return max(0, size - suffix), size
    if not _DIGITS.fullmatch(first) or (last and not _DIGITS.fullmatch(last)):
        return None
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable
    end = int(last) if last else size - 1
    return start, min(end, size - 1) + 1


class FileSlice:
    """A response body streaming `length` bytes of an open file from `start`, 1 MiB at a time."""

    def __init__(self, file: BinaryIO, start: int, length: int) -> None:
        self._file = file
        self._start = start
        self._length = length

    def __iter__(self) -> Iterator[bytes]:
        self._file.seek(self._start)
        remaining = self._length
        while remaining > 0:
            block = self._file.read(min(CHUNK, remaining))
            if not block:
                break
            remaining -= len(block)
            yield block

    def close(self) -> None:
        self._file.close()
