"""Reading request bodies as they arrive, and telling a finished body from a broken one.

`BodyReader` hands out the request body one socket read at a time (up to 1 MiB), so whatever
arrived before a connection broke can still be stored, as tus requires. It stops at
`Content-Length` and raises `BodyInterrupted` when the body ends before that (client gone, reset,
or an injected `drop_after` fault). One reader is kept per request, so a handler's reads and the
final drain share the count.

The app prepares `wsgi.input` before any mount runs: `Dechunker` replaces werkzeug's de-chunker
(which blocks until its buffer is full, so bytes that arrived before a drop would be lost) and
`TruncatedInput` implements the `drop_after` fault. Both are plain readable streams, so a mount
may also use werkzeug's `request.stream` (e.g. a multipart parser) and still see the faults.
"""

from __future__ import annotations

import io
from typing import IO, Any

from werkzeug.exceptions import ClientDisconnected


class BodyInterrupted(Exception):
    """The request body ended early: the client disconnected, or a `drop_after` fault fired."""


def _read1(stream: IO[bytes], size: int) -> bytes:
    read1 = getattr(stream, "read1", None)
    return bytes(read1(size) if read1 is not None else stream.read(size))


class Dechunker(io.RawIOBase):
    """`Transfer-Encoding: chunked` decoder returning each piece of data as soon as it arrives."""

    def __init__(self, rfile: IO[bytes]) -> None:
        self._rfile = rfile
        self._left = 0
        self._done = False

    def readable(self) -> bool:
        return True

    def _next_chunk(self) -> None:
        line = self._rfile.readline(1024)
        if not line.endswith(b"\n"):
            raise ConnectionAbortedError("chunked body ended inside a chunk header")
        try:
            self._left = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise OSError(f"invalid chunk header {line[:40]!r}") from None
        if self._left < 0:
            raise OSError("negative chunk size")
        if self._left == 0:
            while self._rfile.readline(1024).strip():  # trailer fields, up to the blank line
                pass
            self._done = True

    def read1(self, size: int = -1) -> bytes:
        if self._done:
            return b""
        if self._left == 0:
            self._next_chunk()
            if self._done:
                return b""
        want = self._left if size is None or size < 0 else min(size, self._left)
        data = _read1(self._rfile, want)
        if not data:
            raise ConnectionAbortedError("chunked body ended inside a chunk")
        self._left -= len(data)
        if self._left == 0 and self._rfile.readline(2).strip():
            raise OSError("missing CRLF after a chunk")
        return data

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read1(len(view))
        view[: len(data)] = data
        return len(data)


class TruncatedInput(io.RawIOBase):
    """`wsgi.input` that delivers `limit` bytes, then fails like a dropped connection."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self._stream = stream
        self._left = limit

    def readable(self) -> bool:
        return True

    def read1(self, size: int = -1) -> bytes:
        if self._left <= 0:
            raise ConnectionAbortedError("connection dropped by an injected fault")
        want = self._left if size is None or size < 0 else min(size, self._left)
        data = _read1(self._stream, want)
        self._left -= len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if len(view) == 0:
            return 0
        data = self.read1(len(view))
        view[: len(data)] = data
        return len(data)


def prepare_input(environ: dict[str, Any], drop_after: int | None = None) -> None:
    """Install `Dechunker` for chunked bodies and, for a `drop_after` fault, `TruncatedInput`."""
    stream = environ["wsgi.input"]
    rfile = getattr(stream, "_rfile", None)
    if "wsgi.input_terminated" in environ and rfile is not None and not isinstance(stream, Dechunker):
        environ["wsgi.input"] = stream = Dechunker(rfile)
    if drop_after is not None:
        environ["wsgi.input"] = TruncatedInput(stream, drop_after)


_KEY = "tmpup.emulator.body"


class BodyReader:
    """The body of one request, read incrementally; see the module docstring."""

    def __init__(self, environ: dict[str, Any]) -> None:
        self._stream: IO[bytes] = environ["wsgi.input"]
        length = str(environ.get("CONTENT_LENGTH") or "").strip()
        self.remaining: int | None
        if "wsgi.input_terminated" in environ:
            self.remaining = None  # the stream itself ends where the body ends
        else:
            self.remaining = int(length) if length.isdigit() else 0
        self.received = 0

    @classmethod
    def of(cls, environ: dict[str, Any]) -> BodyReader:
        """The reader of this request (created on first use)."""
        reader = environ.get(_KEY)
        if not isinstance(reader, BodyReader):
            reader = environ[_KEY] = cls(environ)
        return reader

    def readinto(self, view: memoryview) -> int:
        """Put up to len(view) bytes that have arrived into view; 0 at the end of the body."""
        if self.remaining == 0 or len(view) == 0:
            return 0
        want = len(view) if self.remaining is None else min(len(view), self.remaining)
        try:
            data = _read1(self._stream, want)
        except (OSError, ValueError, ClientDisconnected) as exc:
            raise BodyInterrupted(f"request body broke off after {self.received} bytes: {exc}") from exc
        count = len(data)
        if count == 0 and self.remaining is not None:
            expected = self.received + self.remaining
            raise BodyInterrupted(f"client disconnected after {self.received} of {expected} bytes")
        view[:count] = data
        self.received += count
        if self.remaining is not None:
            self.remaining -= count
        return count

    def drain(self) -> int:
        """Read and discard the rest of the body; return how many bytes that was."""
        buffer = memoryview(bytearray(1 << 20))
        total = 0
        while count := self.readinto(buffer):
            total += count
        return total
