"""The ceiling of any Python tus client on this machine: a tus upload with nothing but a socket.

    python bench/bare_tus.py CREATE_URL FILE      # prints the upload URL

One connection, two requests: the creation POST (`Upload-Length`), then one PATCH whose body is the
file, read in 1 MiB blocks by a second thread a few blocks ahead and written with `sendall` (as tmpup
does, see tmpup/read_ahead.py: the loop measured fastest here; reading and sending in turn was ~15%
slower, `os.sendfile` slower still on loopback). No HTTP library, no retries, no resume record, no
progress, no error handling beyond the status codes: not a client anyone should use, but the time a
Python process needs to start and push the bytes through the kernel. A target that asks tmpup to be
faster than this cannot be met by any Python code (see bench/README.md).
"""

from __future__ import annotations

import base64
import os
import queue
import socket
import sys
import threading
from urllib.parse import urljoin, urlsplit

BLOCK = 1024 * 1024


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str]]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("bare_tus: the server closed the connection")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    remaining = int(headers.get("content-length", "0")) - len(rest)
    while remaining > 0:  # the body is not needed, but the connection is reused
        chunk = sock.recv(min(remaining, 65536))
        if not chunk:
            break
        remaining -= len(chunk)
    return status, headers


def main() -> None:
    create_url, path = sys.argv[1], sys.argv[2]
    size = os.path.getsize(path)
    parts = urlsplit(create_url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    name = base64.b64encode(os.path.basename(path).encode()).decode()
    with socket.create_connection((host, port)) as sock:
        sock.sendall(
            (
                f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\nTus-Resumable: 1.0.0\r\n"
                f"Upload-Length: {size}\r\nUpload-Metadata: filename {name}\r\nContent-Length: 0\r\n\r\n"
            ).encode()
        )
        status, headers = _read_response(sock)
        if status != 201 or "location" not in headers:
            raise SystemExit(f"bare_tus: creation answered {status}")
        upload_url = urljoin(create_url, headers["location"])
        sock.sendall(
            (
                f"PATCH {urlsplit(upload_url).path} HTTP/1.1\r\nHost: {parts.netloc}\r\nTus-Resumable: 1.0.0\r\n"
                f"Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
                f"Content-Length: {size}\r\n\r\n"
            ).encode()
        )
        blocks: queue.Queue[bytes] = queue.Queue(3)

        def read() -> None:
            with open(path, "rb", buffering=0) as fh:
                while data := fh.read(BLOCK):
                    blocks.put(data)
            blocks.put(b"")

        threading.Thread(target=read, daemon=True).start()
        while data := blocks.get():
            sock.sendall(data)
        status, _headers = _read_response(sock)
        if status != 204:
            raise SystemExit(f"bare_tus: the PATCH answered {status}")
    print(upload_url)


if __name__ == "__main__":
    main()
