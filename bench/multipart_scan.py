"""A streaming multipart scanner for the benchmark sink: finds the parts of a request body and counts
(optionally hashes) each part's content, reading the body in large blocks.

Speed matters more than generality here: the sink must never be the bottleneck of a benchmark. The
body is read into one reusable buffer; the delimiter (`CRLF--boundary`) is searched with
`bytearray.find` (about 15 GB/s), and only the last `len(delimiter) - 1` bytes of a block, which
could be the start of a delimiter split across two reads, are carried over to the next read.
The content is never copied: hashers get `memoryview` slices of the buffer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

BUFFER = 4 * 1024 * 1024
MAX_HEADER_BLOCK = 64 * 1024


class Reader(Protocol):
    def readinto(self, view: memoryview) -> int: ...


class Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...
    def hexdigest(self) -> str: ...


class MultipartError(ValueError):
    """The body is not the multipart body its Content-Type announced."""


@dataclass
class Part:
    """One part: its headers (names lower-cased), how many content bytes it had, and their hashes."""

    headers: dict[str, str]
    size: int = 0
    hashers: dict[str, Hasher] = field(default_factory=dict)

    def feed(self, data: memoryview) -> None:
        self.size += len(data)
        for hasher in self.hashers.values():
            hasher.update(data)

    def param(self, header: str, name: str) -> str | None:
        """A parameter of a header such as Content-Disposition (`name*=UTF-8''...` preferred)."""
        return header_param(self.headers.get(header, ""), name)

    def digests(self) -> dict[str, str]:
        return {name: hasher.hexdigest() for name, hasher in self.hashers.items()}


_PARAM = re.compile(r';\s*([A-Za-z0-9_.*-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def header_param(value: str, name: str) -> str | None:
    from urllib.parse import unquote

    found: dict[str, str] = {}
    for key, raw in _PARAM.findall(value):
        raw = raw.strip()
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        found[key.lower()] = raw
    extended = found.get(name.lower() + "*")
    if extended and "''" in extended:
        charset, _, encoded = extended.partition("''")
        return unquote(encoded, encoding=charset or "utf-8", errors="replace")
    return found.get(name.lower())


def boundary_of(content_type: str) -> bytes | None:
    if not content_type.lower().startswith("multipart/"):
        return None
    boundary = header_param(content_type, "boundary")
    return boundary.encode("latin-1") if boundary else None


def scan(reader: Reader, boundary: bytes, new_part: Callable[[dict[str, str]], Part]) -> list[Part]:
    """Read the whole body from `reader`; return its parts, each fed its content as it streamed by.

    `new_part(headers)` makes the `Part` for a header block (it chooses which hashers to attach).
    """
    delim = b"\r\n--" + boundary
    keep = len(delim) - 1
    buf = bytearray(BUFFER)
    view = memoryview(buf)
    # A virtual CRLF in front: the first delimiter then looks like every other one.
    buf[0:2] = b"\r\n"
    start, end = 0, 2
    parts: list[Part] = []
    current: Part | None = None  # None while in the preamble

    def fill() -> int:
        nonlocal start, end
        if start:
            pending = end - start
            buf[0:pending] = buf[start:end]
            start, end = 0, pending
        if end == len(buf):
            raise MultipartError("a multipart header block is too large")
        got = reader.readinto(view[end:])
        end += got
        return got

    while True:
        # Content (or preamble) up to the next delimiter.
        while True:
            i = buf.find(delim, start, end)
            if i >= 0:
                if current is not None:
                    current.feed(view[start:i])
                start = i + len(delim)
                break
            safe = end - keep
            if safe > start:
                if current is not None:
                    current.feed(view[start:safe])
                start = safe
            if fill() == 0:
                raise MultipartError("the body ended inside a part (no closing delimiter)")
        while end - start < 2:
            if fill() == 0:
                raise MultipartError("the body ended right after a delimiter")
        marker = bytes(buf[start : start + 2])
        if marker == b"--":
            while reader.readinto(view) > 0:  # the epilogue is ignored
                pass
            return parts
        if marker != b"\r\n":
            raise MultipartError("a delimiter is followed by neither CRLF nor '--'")
        # Header block: from the CRLF after the delimiter to the empty line.
        while True:
            j = buf.find(b"\r\n\r\n", start, end)
            if j >= 0:
                break
            if end - start > MAX_HEADER_BLOCK or fill() == 0:
                raise MultipartError("a part's header block is unterminated")
        text = bytes(buf[start + 2 : j]).decode("utf-8", "replace")
        headers: dict[str, str] = {}
        for line in text.split("\r\n"):
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        start = j + 4
        current = new_part(headers)
        parts.append(current)
