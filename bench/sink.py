"""The benchmark sink: a fast loopback HTTP/1.1 server that speaks just enough of each API for tmpup
and the yardsticks (curl, tuspy) to upload to it and download from it.

    python bench/sink.py [--port 0] [--serve-dir DIR]      # prints "listening on URL"

Written for speed, not generality: a thread per connection on blocking sockets, bodies read with
`recv_into` into one 4 MiB buffer per request (never copied), downloads sent with `sendfile`. By
default it only COUNTS what arrives (and checks the count), so it costs the client nothing; with
verification on (`POST /_bench/verify?on=1`) it also hashes every upload (sha256 + md5) so that the
harness and tests/test_bench.py can prove the bytes arrived exact.

Routes (a profile's url is `URL/qlik`, `URL/pyrus`, `URL/et` or `URL/tus/files/`):

* Qlik raw: `POST|PUT /qlik/api/v1/temp-contents?filename=..` -> 201 + `Location`; `GET
  /qlik/api/v1/temp-contents/NAME` serves `serve_dir/NAME` (`Range: bytes=N-` honoured).
* Pyrus: `POST /pyrus/api/v4/auth` -> token + `files_url`; `POST /pyrus/v4/files/upload` (any
  multipart) -> `{guid, md5_hash}`. Without verification the sink does not hash: it answers the md5
  the harness registered for that file name (`POST /_bench/expect`), and only if the byte count
  matches; an unregistered name is hashed. md5 runs at ~0.7 GB/s, slower than loopback: hashing
  every timed upload would make the sink the bottleneck of the very row it serves.
* Enterprise Tester: `POST /et/api/temporaryattachmentsets` -> 201 `{Id}`; `POST
  /et/api/temporaryattachmentset/SET` (any multipart) -> 201 `[{Id, Name, FileName, Size, ...}]`.
* tus 1.0.0: `OPTIONS`, creation `POST /tus/files/`, `HEAD`, `PATCH` (offset checked), `DELETE`.
* Control: `GET /_bench/records?since=SEQ` (uploads seen: kind, name, size, hashes), `GET
  /_bench/seq` (the last one's number), `POST /_bench/verify?on=0|1`, `POST /_bench/expect`
  (`{"name", "size", "md5"}`), `POST /_bench/reset`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import socket
import sys
import threading
import uuid
from collections import deque
from pathlib import Path
from typing import Any

if not __package__:  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.httpio import REASONS, BadRequest, Body, Conn, Reply, Request, read_small
from bench.multipart_scan import Hasher, MultipartError, Part, boundary_of, header_param, scan

TUS_HEADERS = {"Tus-Resumable": "1.0.0"}


class Sink:
    """The server. `start()` serves on a thread and returns the base URL; `stop()` ends it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, serve_dir: Path | None = None) -> None:
        self.host = host
        self.port = port
        self.serve_dir = serve_dir
        self.verify = False
        self.records: deque[dict[str, Any]] = deque(maxlen=10000)
        self.expected: dict[str, tuple[int, str]] = {}
        self.tus: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.seq = itertools.count(1)
        self.listener: socket.socket | None = None
        self.url = ""

    # -- server plumbing --------------------------------------------------------------------------

    def bind(self) -> str:
        self.listener = socket.create_server((self.host, self.port), backlog=256)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://{self.host}:{self.port}"
        return self.url

    def start(self) -> str:
        url = self.bind()
        threading.Thread(target=self.serve_forever, name="sink-accept", daemon=True).start()
        return url

    def serve_forever(self) -> None:
        assert self.listener is not None
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self.handle, args=(sock,), daemon=True).start()

    def stop(self) -> None:
        if self.listener is not None:
            with contextlib.suppress(OSError):
                self.listener.shutdown(socket.SHUT_RDWR)
            self.listener.close()

    def handle(self, sock: socket.socket) -> None:
        conn = Conn(sock)
        try:
            while self.one_request(conn):
                pass
        except (OSError, BadRequest, ValueError):
            pass
        finally:
            sock.close()

    def one_request(self, conn: Conn) -> bool:
        head = conn.read_head()
        if head is None:
            return False
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = Body(conn, headers)
        request = Request(method, target, headers, body, f"{self.host}:{self.port}")
        try:
            reply = self.route(request)
        except MultipartError as exc:
            reply = Reply(400, {"error": str(exc)})
        except BadRequest as exc:
            reply = Reply(exc.status, {"error": str(exc)})
        keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close" and body.done
        if reply is None:  # already sent (a download)
            return keep
        out = [f"HTTP/1.1 {reply.status} {REASONS.get(reply.status, 'Status')}"]
        reply.headers.setdefault("Content-Length", str(len(reply.body)))
        if not keep:
            reply.headers["Connection"] = "close"
        out += [f"{k}: {v}" for k, v in reply.headers.items()]
        conn.sock.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + reply.body)
        return keep

    # -- bookkeeping ------------------------------------------------------------------------------

    def hashers(self) -> dict[str, Hasher]:
        return {"sha256": hashlib.sha256(), "md5": hashlib.md5()} if self.verify else {}

    def record(self, kind: str, name: str | None, size: int, digests: dict[str, str], **extra: Any) -> dict[str, Any]:
        entry = {"kind": kind, "id": uuid.uuid4().hex, "name": name, "size": size, **digests, **extra}
        with self.lock:
            entry["seq"] = next(self.seq)
            self.records.append(entry)
        return entry

    # -- routes -----------------------------------------------------------------------------------

    def route(self, rq: Request) -> Reply | None:
        path, method = rq.path, rq.method
        if path.startswith("/_bench/"):
            return self.control(rq)
        if path == "/qlik/api/v1/temp-contents" and method in ("POST", "PUT"):
            self.bearer(rq, "bench-token")
            rq.body.start()
            hashers = self.hashers()
            size = rq.body.drain(hashers)
            entry = self.record("raw", rq.query.get("filename"), size, {k: h.hexdigest() for k, h in hashers.items()})
            return Reply(201, b"", {"Location": f"/api/v1/temp-contents/{entry['id']}"})
        if path.startswith("/qlik/api/v1/temp-contents/") and method == "GET":
            return self.download(rq, path.rsplit("/", 1)[-1])
        if path in ("/pyrus/api/v4/auth", "/pyrus/v4/auth") and method == "POST":
            rq.body.drain()
            files = f"{rq.base}/pyrus"
            return Reply(200, {"access_token": "bench-pyrus-token", "api_url": files + "/v4/", "files_url": files})
        if path == "/pyrus/v4/files/upload" and method == "POST":
            self.bearer(rq, "bench-pyrus-token")
            return self.pyrus_upload(rq)
        if path == "/et/api/temporaryattachmentsets" and method == "POST":
            rq.body.drain()
            set_id = uuid.uuid4().hex
            link = f"{rq.base}/et/api/temporaryattachmentset/{set_id}"
            return Reply(201, {"Id": set_id, "Self": link}, {"Location": link})
        if path.startswith("/et/api/temporaryattachmentset/") and method == "POST":
            return self.et_upload(rq, path.rsplit("/", 1)[-1])
        if path.startswith("/tus/files"):
            return self.tus_route(rq, path[len("/tus/files") :].strip("/"))
        rq.body.drain()
        raise BadRequest(404, f"no route for {method} {path}")

    def bearer(self, rq: Request, token: str) -> None:
        if rq.headers.get("authorization") != f"Bearer {token}":
            raise BadRequest(401, "missing or wrong Bearer token")

    def control(self, rq: Request) -> Reply:
        data = read_small(rq.body)
        if rq.path == "/_bench/records":
            since = int(rq.query.get("since", "0") or 0)
            with self.lock:
                return Reply(200, [r for r in self.records if r["seq"] > since])
        if rq.path == "/_bench/seq":
            with self.lock:
                return Reply(200, {"seq": self.records[-1]["seq"] if self.records else 0})
        if rq.path == "/_bench/verify":
            self.verify = rq.query.get("on", "1") not in ("0", "false", "")
            return Reply(200, {"verify": self.verify})
        if rq.path == "/_bench/expect":
            spec = json.loads(data)
            self.expected[spec["name"]] = (int(spec["size"]), spec["md5"])
            return Reply(200, {"ok": True})
        if rq.path == "/_bench/reset":
            with self.lock:
                self.records.clear()
                self.tus.clear()
            return Reply(200, {"ok": True})
        raise BadRequest(404, "unknown control endpoint")

    def multipart(self, rq: Request, hash_md5_for: set[str] | None = None) -> list[Part]:
        boundary = boundary_of(rq.headers.get("content-type", ""))
        if boundary is None:
            rq.body.drain()
            raise BadRequest(415, "the body is not multipart")
        rq.body.start()

        def new_part(headers: dict[str, str]) -> Part:
            hashers = self.hashers()
            name = header_param(headers.get("content-disposition", ""), "filename")
            if not hashers and hash_md5_for is not None and name not in self.expected:
                hashers = {"md5": hashlib.md5()}
            return Part(headers, hashers=hashers)

        return scan(rq.body, boundary, new_part)

    def pyrus_upload(self, rq: Request) -> Reply:
        parts = [p for p in self.multipart(rq, hash_md5_for=set()) if p.param("content-disposition", "filename")]
        if len(parts) != 1:
            return Reply(400, {"error_code": "no_file_in_request", "error": f"{len(parts)} file parts"})
        part = parts[0]
        name = part.param("content-disposition", "filename")
        digests = part.digests()
        md5 = digests.get("md5")
        if md5 is None:
            size, registered = self.expected.get(name or "", (-1, ""))
            md5 = registered if size == part.size else "size-mismatch"
        entry = self.record("pyrus", name, part.size, digests)
        return Reply(200, {"guid": str(uuid.UUID(entry["id"])), "md5_hash": md5})

    def et_upload(self, rq: Request, set_id: str) -> Reply:
        if not rq.headers.get("authorization", "").startswith("Basic "):
            raise BadRequest(401, "Basic authentication required")
        items = []
        for part in self.multipart(rq):
            disposition = part.headers.get("content-disposition", "")
            filename = header_param(disposition, "filename")
            entry = self.record("et", filename, part.size, part.digests())
            items.append(
                {
                    "TemporaryId": set_id,
                    "Id": entry["id"],
                    "Name": header_param(disposition, "name") or filename,
                    "FileName": filename,
                    "Size": part.size,
                    "ContentType": part.headers.get("content-type"),
                    "Content": f"{rq.base}/et/api/attachment/{entry['id']}/contents",
                }
            )
        return Reply(201, items)

    def tus_route(self, rq: Request, upload_id: str) -> Reply:
        method = rq.method
        if method == "OPTIONS":
            rq.body.drain()
            return Reply(204, b"", {**TUS_HEADERS, "Tus-Version": "1.0.0", "Tus-Extension": "creation,termination"})
        if rq.headers.get("tus-resumable") != "1.0.0":
            rq.body.drain()
            raise BadRequest(412, "Tus-Resumable 1.0.0 required")
        if method == "POST" and not upload_id:
            rq.body.drain()
            new_id = uuid.uuid4().hex
            length = int(rq.headers["upload-length"])
            with self.lock:
                self.tus[new_id] = {"length": length, "offset": 0, "meta": rq.headers.get("upload-metadata", "")}
                self.tus[new_id]["hashers"] = self.hashers()
            location = f"{rq.base}/tus/files/{new_id}"
            return Reply(201, b"", {**TUS_HEADERS, "Location": location})
        upload = self.tus.get(upload_id)
        if upload is None:
            rq.body.drain()
            raise BadRequest(404, "unknown upload")
        if method == "HEAD":
            headers = {"Upload-Offset": str(upload["offset"]), "Upload-Length": str(upload["length"])}
            if upload["meta"]:
                headers["Upload-Metadata"] = upload["meta"]
            return Reply(200, b"", {**TUS_HEADERS, **headers, "Cache-Control": "no-store"})
        if method == "DELETE":
            rq.body.drain()
            self.tus.pop(upload_id, None)
            return Reply(204, b"", TUS_HEADERS)
        if method == "PATCH":
            if rq.headers.get("content-type") != "application/offset+octet-stream":
                rq.body.drain()
                raise BadRequest(415, "PATCH needs Content-Type: application/offset+octet-stream")
            if int(rq.headers.get("upload-offset", "-1")) != upload["offset"]:
                rq.body.drain()
                raise BadRequest(409, "Upload-Offset mismatch")
            rq.body.start()
            upload["offset"] += rq.body.drain(upload["hashers"])
            if upload["offset"] >= upload["length"]:
                digests = {k: h.hexdigest() for k, h in upload["hashers"].items()}
                self.record("tus", _tus_filename(upload["meta"]), upload["offset"], digests, upload_id=upload_id)
            return Reply(204, b"", {**TUS_HEADERS, "Upload-Offset": str(upload["offset"])})
        rq.body.drain()
        raise BadRequest(405, f"{method} is not a tus method")

    def download(self, rq: Request, name: str) -> Reply | None:
        rq.body.drain()
        if self.serve_dir is None or not name or name.startswith(".") or "/" in name:
            raise BadRequest(404, "no such file")
        path = self.serve_dir / name
        if not path.is_file():
            raise BadRequest(404, "no such file")
        size = path.stat().st_size
        offset, status = 0, 200
        headers = {"Content-Type": "application/octet-stream", "Content-Disposition": f'attachment; filename="{name}"'}
        spec = rq.headers.get("range", "")
        if spec.startswith("bytes=") and spec.endswith("-"):
            offset, status = int(spec[6:-1]), 206
            if offset >= size:
                return Reply(416, b"", {"Content-Range": f"bytes */{size}"})
            headers["Content-Range"] = f"bytes {offset}-{size - 1}/{size}"
        headers["Content-Length"] = str(size - offset)
        lines = [f"HTTP/1.1 {status} {REASONS[status]}", *(f"{k}: {v}" for k, v in headers.items())]
        rq.body.conn.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        with path.open("rb") as fh:
            rq.body.conn.sock.sendfile(fh, offset, size - offset)
        return None


def _tus_filename(metadata: str) -> str | None:
    import base64

    for pair in metadata.split(","):
        key, _, value = pair.strip().partition(" ")
        if key == "filename":
            return base64.b64decode(value).decode("utf-8", "replace")
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="tmpup's benchmark sink (see bench/README.md)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--serve-dir", type=Path, help="files that GET /qlik/api/v1/temp-contents/NAME serves")
    parser.add_argument("--verify", action="store_true", help="hash every upload (sha256 + md5)")
    args = parser.parse_args(argv)
    sink = Sink(args.host, args.port, args.serve_dir)
    sink.verify = args.verify
    print(f"listening on {sink.bind()}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        sink.serve_forever()


if __name__ == "__main__":
    main()
