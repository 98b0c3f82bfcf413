"""Streaming multipart bodies (`multipart/form-data` for Pyrus, `multipart/mixed` for Enterprise Tester).

A `MultipartBody` is the request body itself: every part's header block is built once, up front,
and the part bodies are `sources.FileSlice`s read from disk in 1 MiB blocks between them. So the
body has an exact `__len__` (requests sends `Content-Length`, not chunked encoding), it can be
iterated again for a retry (each `FileSlice` seeks anew and restarts its hashes), and progress and
hashes are fed from the same reads that feed the socket: the file is read once per attempt.

Why not requests-toolbelt's `MultipartEncoder`: measured on our machines it runs at about a fifth of
curl's speed (it copies through small buffers), it only speaks `form-data` (`multipart/mixed` needs
its private `_iter_fields`), and it reports progress per internal read. Precomputed headers plus
1 MiB file reads run near curl's speed.

Header parameters (`header_params`) are written as RFC 2045/7230 quoted-strings with `\\` and `"`
escaped. Non-ASCII names: `multipart/form-data` forbids `filename*` (RFC 7578 section 4.2), so they
go as raw UTF-8 in the quoted string, as browsers and curl send them; elsewhere (`multipart/mixed`,
RFC 2183 + RFC 2231) an ASCII fallback is followed by `NAME*=UTF-8''percent-encoded`. CR, LF and NUL
can never be written safely into a header and are refused with an `InputError` (exit 7) before any
request is made.
"""

from __future__ import annotations

import secrets
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

from tmpup.errors import InputError

CRLF = b"\r\n"
#: RFC 5987 attr-char punctuation; letters and digits are always kept.
_ATTR_CHARS = "!#$&+-.^_`|~"
_FORBIDDEN = "\r\n\x00"


class SizedBody(Protocol):
    """A part body: a known length and a re-iterable stream of blocks (a `FileSlice`, or bytes)."""

    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[bytes]: ...


def check_header_text(value: str, what: str = "name") -> str:
    """Refuse text that would break out of a header line (CR, LF) or truncate it (NUL)."""
    bad = next((ch for ch in value if ch in _FORBIDDEN), None)
    if bad is not None:
        raise InputError(
            f"the {what} {value!r} contains a control character ({bad!r}) that cannot be sent in a header",
            hint="rename the file or pass --name NAME",
        )
    return value


def quoted(value: str) -> str:
    """An RFC 2045/7230 quoted-string: `\\` and `"` escaped, CR/LF/NUL refused."""
    check_header_text(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ascii_fallback(value: str) -> str:
    """A readable ASCII stand-in for a non-ASCII name: accents dropped, other characters as `_`."""
    decomposed = unicodedata.normalize("NFKD", value)
    out = []
    for ch in decomposed:
        if unicodedata.combining(ch):
            continue
        out.append(ch if 0x20 <= ord(ch) < 0x7F else "_")
    return "".join(out)


def ext_value(value: str) -> str:
    """An RFC 5987/2231 extended value: `UTF-8''` and the percent-encoded UTF-8 bytes."""
    return "UTF-8''" + quote(value, safe=_ATTR_CHARS, encoding="utf-8")


def header_params(kind: str, params: Sequence[tuple[str, str | int]], *, extended: bool) -> str:
    """`kind; key="value"; ...` for a Content-Disposition.

    Integers go unquoted (`size=3`). With `extended`, a non-ASCII value is written as an ASCII
    fallback followed by `key*=UTF-8''...` (RFC 6266 order: old parsers take the first); without it,
    the value is sent as UTF-8 inside the quoted string.
    """
    items = [kind]
    for key, value in params:
        if isinstance(value, int):
            items.append(f"{key}={value}")
            continue
        check_header_text(value)
        if extended and not value.isascii():
            items.append(f"{key}={quoted(ascii_fallback(value))}")
            items.append(f"{key}*={ext_value(value)}")
        else:
            items.append(f"{key}={quoted(value)}")
    return "; ".join(items)


@dataclass(frozen=True)
class Part:
    """One part: its header lines (name, value) and its body."""

    headers: Sequence[tuple[str, str]]
    body: SizedBody | bytes


def new_boundary() -> str:
    """A boundary no file will contain by chance (128 random bits), within RFC 2046's 70 characters."""
    return f"tmpup-{secrets.token_hex(16)}"


class MultipartBody:
    """A multipart body streamed from its parts; `len()` is its exact size in bytes."""

    def __init__(self, parts: Sequence[Part], *, subtype: str = "form-data") -> None:
        if not parts:
            raise ValueError("a multipart body needs at least one part")
        self.subtype = subtype
        self.boundary = new_boundary()
        self.parts = list(parts)
        delimiter = b"--" + self.boundary.encode("ascii")
        self._heads: list[bytes] = []
        for index, part in enumerate(self.parts):
            lines = [delimiter]
            for name, value in part.headers:
                check_header_text(name, "header name")
                check_header_text(value, "header value")
                lines.append(f"{name}: {value}".encode())
            # Every delimiter after the first starts on a new line (RFC 2046: CRLF belongs to the delimiter).
            self._heads.append((CRLF if index else b"") + CRLF.join(lines) + CRLF + CRLF)
        self._tail = CRLF + delimiter + b"--" + CRLF
        self._length = sum(map(len, self._heads)) + sum(len(p.body) for p in self.parts) + len(self._tail)

    @property
    def content_type(self) -> str:
        return f"multipart/{self.subtype}; boundary={self.boundary}"

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        # Each iteration is a complete new body (a retry): the FileSlices seek and reset themselves.
        for head, part in zip(self._heads, self.parts, strict=True):
            yield head
            if isinstance(part.body, bytes):
                if part.body:
                    yield part.body
            else:
                yield from _blocks(part.body)
        yield self._tail


def _blocks(body: Iterable[bytes]) -> Iterator[bytes]:
    for block in body:
        if block:
            yield block
