"""The HTTP/1.1 plumbing of the benchmark sink: connections, request heads, bodies read straight into
the caller's buffer (Content-Length or chunked, `Expect: 100-continue` answered), replies.
"""

from __future__ import annotations

import json
import socket
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from bench.multipart_scan import BUFFER, Hasher

REASONS = {
    100: "Continue", 200: "OK", 201: "Created", 204: "No Content", 206: "Partial Content",
    400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
    409: "Conflict", 412: "Precondition Failed", 415: "Unsupported Media Type", 416: "Range Not Satisfiable",
}  # fmt: skip
MAX_HEAD = 64 * 1024


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Conn:
    """One client connection: a small pending buffer (bytes read past a request head) and the socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending = bytearray()

    def read_head(self) -> bytes | None:
        while True:
            i = self.pending.find(b"\r\n\r\n")
            if i >= 0:
                head = bytes(self.pending[:i])
                del self.pending[: i + 4]
                return head
            if len(self.pending) > MAX_HEAD:
                raise BadRequest(400, "request head too large")
            data = self.sock.recv(65536)
            if not data:
                return None
            self.pending += data

    def recv_into(self, view: memoryview, n: int) -> int:
        if self.pending:
            n = min(n, len(self.pending))
            view[:n] = self.pending[:n]
            del self.pending[:n]
            return n
        return self.sock.recv_into(view, n)

    def readline(self) -> bytes:
        while b"\r\n" not in self.pending:
            data = self.sock.recv(65536)
            if not data:
                raise BadRequest(400, "connection closed inside a chunked body")
            self.pending += data
        i = self.pending.find(b"\r\n")
        line = bytes(self.pending[:i])
        del self.pending[: i + 2]
        return line


class Body:
    """A request body read straight into the caller's buffer: Content-Length or chunked."""

    def __init__(self, conn: Conn, headers: dict[str, str]) -> None:
        self.conn = conn
        self.chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self.remaining = 0 if self.chunked else int(headers.get("content-length", "0") or 0)
        self.done = not self.chunked and self.remaining == 0
        self.expect = headers.get("expect", "").lower() == "100-continue"

    def start(self) -> None:
        """Answer `Expect: 100-continue` (curl waits a second for it otherwise)."""
        if self.expect and not self.done:
            self.conn.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.expect = False

    def readinto(self, view: memoryview) -> int:
        if self.expect:
            self.start()
        if self.done:
            return 0
        if self.chunked and self.remaining == 0:
            size = int(self.conn.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.conn.readline():  # trailers up to the empty line
                    pass
                self.done = True
                return 0
            self.remaining = size
        got = self.conn.recv_into(view, min(len(view), self.remaining))
        if got == 0:
            raise BadRequest(400, "connection closed inside the body")
        self.remaining -= got
        if self.remaining == 0:
            if self.chunked:
                self.conn.readline()  # the CRLF after a chunk
            else:
                self.done = True
        return got

    def drain(self, hashers: dict[str, Hasher] | None = None) -> int:
        """Read the rest of the body; return how many bytes it had (hashing them if asked)."""
        buf = bytearray(BUFFER)
        view = memoryview(buf)
        total = 0
        hashers = hashers or {}
        while True:
            got = self.readinto(view)
            if got == 0:
                return total
            total += got
            for hasher in hashers.values():
                hasher.update(view[:got])


class Request:
    def __init__(self, method: str, target: str, headers: dict[str, str], body: Body, host: str) -> None:
        self.method = method
        parts = urlsplit(target)
        self.path = unquote(parts.path)
        self.query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        self.headers = headers
        self.body = body
        self.base = f"http://{headers.get('host', host)}"


class Reply:
    def __init__(self, status: int, body: Any = b"", headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.headers = dict(headers or {})
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
            self.headers.setdefault("Content-Type", "application/json")
        self.body = body


def read_small(body: Body) -> bytes:
    chunks = bytearray(BUFFER // 16)
    view = memoryview(chunks)
    out = bytearray()
    while (got := body.readinto(view)) > 0:
        out += view[:got]
    return bytes(out)
