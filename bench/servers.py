"""The processes the harness drives: the sink, the Node `@tus/server`, and the launcher.

Each runs as its own process: the sink must not share a GIL (or a CPU account) with anything it
measures, and the launcher must stay small (see bench/launch.py). `SinkProcess` also wraps the
sink's control endpoints (records, verification, registered md5s, tus creation for curl's PATCH).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin, urlsplit

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PEERS = ROOT / "tests" / "peers"


def _wait_for_line(proc: subprocess.Popen[str], prefix: str, what: str, timeout: float = 30.0) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(prefix):
            return str(line[len(prefix) :].strip())
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"{what} did not start (exit status {proc.poll()})")


def request(
    url: str, method: str = "GET", body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One small HTTP request with the standard library; returns (status, headers, body)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, target, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


class SinkProcess:
    """bench/sink.py in its own process, with its control endpoints."""

    def __init__(self, serve_dir: Path, python: str = sys.executable) -> None:
        self.proc = subprocess.Popen(
            [python, str(BENCH / "sink.py"), "--serve-dir", str(serve_dir)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.url = _wait_for_line(self.proc, "listening on ", "the sink")

    def cpu_seconds(self) -> float:
        """The sink's user + system CPU so far (to show it is not the bottleneck)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def control(self, path: str, payload: Any = None) -> Any:
        body = json.dumps(payload).encode() if payload is not None else b""
        status, _headers, data = request(f"{self.url}/_bench/{path}", "GET" if payload is None else "POST", body)
        if status != 200:
            raise RuntimeError(f"sink control {path}: {status} {data[:200]!r}")
        return json.loads(data)

    def records(self, since: int = 0) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = self.control(f"records?since={since}")
        return records

    def last_seq(self) -> int:
        return int(self.control("seq")["seq"])

    def verify(self, on: bool) -> None:
        request(f"{self.url}/_bench/verify?on={int(on)}", "POST")

    def expect(self, name: str, size: int, md5: str) -> None:
        self.control("expect", {"name": name, "size": size, "md5": md5})

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


def create_tus_upload(create_url: str, size: int, name: str) -> str:
    """A tus creation by the harness itself (untimed), for the single-curl-PATCH yardstick."""
    import base64

    status, headers, _ = request(
        create_url,
        "POST",
        headers={
            "Tus-Resumable": "1.0.0",
            "Upload-Length": str(size),
            "Upload-Metadata": "filename " + base64.b64encode(name.encode()).decode(),
        },
    )
    location = {k.lower(): v for k, v in headers.items()}.get("location")
    if status != 201 or not location:
        raise RuntimeError(f"tus creation at {create_url} answered {status}")
    return urljoin(create_url, location)


class NodeTus:
    """The official Node tus server (tests/peers/tus-server.js, @tus/server 1.10.2 + @tus/file-store)."""

    def __init__(self, store: Path) -> None:
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("`node` is not on PATH")
        if not (PEERS / "node_modules" / "@tus" / "server").is_dir():
            raise RuntimeError("@tus/server is not installed: run `npm ci --prefix tests/peers`")
        self.store = store
        store.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [node, str(PEERS / "tus-server.js"), "0", str(store)], stdout=subprocess.PIPE, text=True
        )
        self.url = _wait_for_line(self.proc, "listening on ", "the Node tus server")

    def stored_sizes(self) -> dict[str, int]:
        return {p.name: p.stat().st_size for p in self.store.iterdir() if p.is_file() and "." not in p.name}

    def clear(self) -> None:
        for path in self.store.iterdir():
            if path.is_file():
                path.unlink()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


@dataclass
class Measurement:
    status: int
    wall: float
    maxrss_kib: int
    utime: float
    stime: float
    failed_argv: list[str] | None = None
    error: str | None = None

    @property
    def rss_mib(self) -> float:
        return self.maxrss_kib / 1024


class Launcher:
    """bench/launch.py as a long-lived small child: every measured command is spawned from it."""

    def __init__(self, python: str = sys.executable) -> None:
        self.proc = subprocess.Popen(
            [python, "-I", "-S", str(BENCH / "launch.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def run(
        self,
        argvs: list[list[str]],
        env: dict[str, str],
        *,
        cwd: Path | None = None,
        stdout: Path | None = None,
        stderr: Path | None = None,
        stderr_tty: bool = False,
        timeout: float = 1800,
    ) -> Measurement:
        stdin: IO[str] | None = self.proc.stdin
        assert stdin is not None and self.proc.stdout is not None
        spec = {
            "argvs": argvs,
            "env": env,
            "cwd": str(cwd) if cwd else None,
            "stdout": str(stdout) if stdout else None,
            "stderr": str(stderr) if stderr else None,
            "stderr_tty": stderr_tty,
            "timeout": timeout,
        }
        stdin.write(json.dumps(spec) + "\n")
        stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the launcher died")
        return Measurement(**json.loads(line))

    def stop(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(10)
        if self.proc.stdout:
            self.proc.stdout.close()
