"""A download whose body is cut mid-stream is continued in the same run, from what the `.part` holds.

Real servers cut the connection after N bytes: a small HTTP server (`Garbage`) that closes (FIN) or
resets (RST) the connection in the middle of a body, and a TCP proxy in front of the real emulator.
The real CLI downloads through them; the tests check the bytes, the requests and their Range and
If-Range headers, the `.part` after a failure, and the message and command printed on Ctrl-C/SIGTERM.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Result, make_file, run, run_process, write_qlik_profile
from tests.test_bad_input import Garbage, answer, assert_error, provider_env

MIB = 1024 * 1024
DATA = os.urandom(3 * MIB + 123)
PATH = "/x/api/v1/temp-contents/6571"  # what the qlik provider GETs for id 6571
ETAG = '"6571-v1"'
BLOCK = 128 * 1024

Handler = http.server.BaseHTTPRequestHandler
Step = Callable[["Server", Handler], None]


class Server:
    """Serves `data` at PATH as a real server does (200; 206 for `Range: bytes=N-` unless `If-Range`
    names another ETag; 416 past the end), except that the first GETs follow `script`, one step each."""

    def __init__(self, *script: Step, data: bytes = DATA, etag: str = ETAG) -> None:
        self.data = data
        self.etag = etag
        self.script = list(script)
        self.http = Garbage(self._reply)

    def _reply(self, h: Handler) -> None:
        if h.path.split("?")[0] != PATH:
            answer(h, 404, b'{"errors": [{"title": "Not found", "code": "HTTP-404"}]}')
            return
        step = self.script.pop(0) if self.script else whole()
        step(self, h)

    @property
    def url(self) -> str:
        return self.http.url

    @property
    def gets(self) -> list[dict[str, str]]:
        """The headers of every GET of the file, in order."""
        return [seen.headers for seen in self.http.seen if seen.path.split("?")[0] == PATH]

    def __enter__(self) -> Server:
        self.http.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.__exit__(*exc)


def send(
    limit: int | None = None,
    *,
    how: str = "close",
    ignore_range: bool = False,
    data: bytes | None = None,
    etag: str | None = None,
    total: int | None = None,
    modified: str | None = None,
) -> Step:
    """Answer as the server would, but send at most `limit` body bytes and then cut the connection
    (`close`: FIN; `reset`: RST). `data`/`etag` serve another version of the file (`etag=""`: none);
    `total` lies in the Content-Range total; `modified` is sent as Last-Modified."""

    def step(server: Server, h: Handler) -> None:
        body_of = server.data if data is None else data
        tag = server.etag if etag is None else etag
        match = re.fullmatch(r"bytes=(\d+)-", h.headers.get("Range") or "")
        if_range = h.headers.get("If-Range")
        ranged = match is not None and not ignore_range and (if_range is None or if_range == tag)
        start = int(match.group(1)) if match and ranged else 0
        if ranged and start >= len(body_of):
            answer(h, 416, headers={"Content-Range": f"bytes */{len(body_of)}"})
            return
        body = body_of[start:]
        h.send_response(206 if ranged else 200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(len(body)))
        if tag:
            h.send_header("ETag", tag)
        if modified:
            h.send_header("Last-Modified", modified)
        h.send_header("Accept-Ranges", "bytes")
        if ranged:
            h.send_header("Content-Range", f"bytes {start}-{len(body_of) - 1}/{total or len(body_of)}")
        if limit is not None:
            h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(body if limit is None else body[:limit])
        if limit is None:
            return
        h.wfile.flush()
        h.close_connection = True
        if how == "reset":
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()

    return step


def whole(**kwargs: Any) -> Step:
    return send(None, **kwargs)


def cut(limit: int, **kwargs: Any) -> Step:
    return send(limit, **kwargs)


def status(code: int, headers: dict[str, str] | None = None) -> Step:
    def step(server: Server, h: Handler) -> None:
        answer(h, code, b'{"errors": [{"title": "busy", "code": "HTTP-%d"}]}' % code, headers=headers)

    return step


def download(server: Server, out: Path, *extra: str, retries: int = 3, quiet: bool = True) -> Result:
    args = ["download", "6571", "-o", str(out), "--progress", "none", "--retries", str(retries), *extra]
    return run(*args, *(["-q"] if quiet else []), env=provider_env("qlik", server.url))


def ranges(server: Server) -> list[str | None]:
    return [headers.get("Range") for headers in server.gets]


def part_of(out: Path) -> Path:
    return out.with_name(out.name + ".part")


NO_CLASS_NAMES = ("ChunkedEncodingError", "ProtocolError", "IncompleteRead", "ConnectionError", "urllib3")


# -- continued in the same run ------------------------------------------------------------------------


@pytest.mark.parametrize("at", [1, BLOCK - 1, MIB + 7, len(DATA) - 1])
def test_a_body_closed_after_n_bytes_is_continued_from_n_and_is_byte_exact(tmp_path: Path, at: int) -> None:
    out = tmp_path / "out.bin"
    with Server(cut(at)) as server:
        done = download(server, out, quiet=False)
    assert done.code == 0, done.err
    assert out.read_bytes() == DATA and not part_of(out).exists()
    assert ranges(server) == [None, f"bytes={at}-"]
    assert server.gets[1].get("If-Range") == ETAG  # the rest only if it is still the same file
    assert "retrying" in done.err and "cut off after" in done.err
    assert not any(name in done.err for name in NO_CLASS_NAMES), done.err


def test_a_reset_connection_is_continued_and_is_byte_exact(tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    with Server(cut(MIB + 7, how="reset")) as server:
        done = download(server, out)
    assert done.code == 0, done.err
    assert out.read_bytes() == DATA and not part_of(out).exists()
    assert len(server.gets) == 2
    # A reset may discard what the kernel had not handed over yet: the rest starts at most where the cut was.
    resumed = re.fullmatch(r"bytes=(\d+)-", ranges(server)[1] or "")
    assert resumed is not None and int(resumed.group(1)) <= MIB + 7


def test_each_attempt_that_brings_bytes_renews_the_retries(tmp_path: Path) -> None:
    """Three cuts with --retries 1: every attempt got further, so none of them used the budget up."""
    out = tmp_path / "out.bin"
    with Server(cut(MIB), cut(MIB), cut(MIB)) as server:
        done = download(server, out, retries=1)
    assert done.code == 0, done.err
    assert out.read_bytes() == DATA
    assert ranges(server) == [None, f"bytes={MIB}-", f"bytes={2 * MIB}-", f"bytes={3 * MIB}-"]


def test_a_busy_server_on_the_retry_is_waited_for(tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    with Server(cut(MIB), status(503, {"Retry-After": "0"})) as server:
        done = download(server, out)
    assert done.code == 0, done.err
    assert out.read_bytes() == DATA
    assert ranges(server) == [None, f"bytes={MIB}-", f"bytes={MIB}-"]


def test_a_cut_continue_run_is_continued_again(tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    part_of(out).write_bytes(DATA[:1000])
    with Server(cut(MIB)) as server:
        done = download(server, out, "--continue")
    assert done.code == 0, done.err
    assert out.read_bytes() == DATA
    assert ranges(server) == ["bytes=1000-", f"bytes={1000 + MIB}-"]


def test_a_cut_download_to_stdout_is_continued(tmp_path: Path) -> None:
    with Server(cut(MIB + 7)) as server, open(tmp_path / "stdout.bin", "wb") as stdout:
        proc = subprocess.run(
            [sys.executable, "-m", "tmpup", "download", "6571", "-o", "-", "-q", "--retries", "2"],
            stdout=stdout,
            stderr=subprocess.PIPE,
            env={**os.environ, **provider_env("qlik", server.url)},
            timeout=60,
        )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "stdout.bin").read_bytes() == DATA
    assert ranges(server) == [None, f"bytes={MIB + 7}-"]


def test_a_download_to_stdout_that_stays_cut_does_not_suggest_continue(tmp_path: Path) -> None:
    with Server(cut(MIB + 7)) as server, open(tmp_path / "stdout.bin", "wb") as stdout:
        proc = subprocess.run(
            [sys.executable, "-m", "tmpup", "download", "6571", "-o", "-", "--retries", "0"],
            stdout=stdout,
            stderr=subprocess.PIPE,
            env={**os.environ, **provider_env("qlik", server.url)},
            timeout=60,
        )
    result = Result(proc.returncode, "", proc.stderr.decode())
    assert_error(result, 10, "download again", "went to stdout")
    assert "--continue" not in result.err
    assert (tmp_path / "stdout.bin").read_bytes() == DATA[: MIB + 7]


# -- a server that does not resume -------------------------------------------------------------------


def test_a_server_that_ignores_range_on_the_retry_is_read_again_without_truncating(tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    with Server(cut(MIB + 7), whole(ignore_range=True)) as server:
        done = download(server, out, quiet=False)
    assert done.code == 0, done.err
    assert out.read_bytes() == DATA
    assert ranges(server) == [None, f"bytes={MIB + 7}-"]
    assert "ignored Range" in done.err


def test_a_cut_while_reading_again_loses_nothing_already_held(tmp_path: Path) -> None:
    """The second answer (a 200) breaks before it reaches what the .part holds: the .part is as it was."""
    out = tmp_path / "out.bin"
    with Server(cut(MIB + 7), cut(MIB // 2, ignore_range=True)) as server:
        failed = download(server, out, retries=1)
        assert_error(failed, 10, "--continue")
        assert part_of(out).read_bytes() == DATA[: MIB + 7]
        done = download(server, out, "--continue")
    assert done.code == 0, done.err
    assert out.read_bytes() == DATA


# -- a file that changed --------------------------------------------------------------------------------


OTHER = bytes(reversed(DATA))


@pytest.mark.parametrize(
    "second",
    [
        pytest.param(whole(data=OTHER, etag='"6571-v2"'), id="if-range-gives-200-new-etag"),
        pytest.param(whole(etag='"6571-v2"', ignore_range=True), id="200-new-etag"),
        pytest.param(whole(data=OTHER + b"more", etag=ETAG, ignore_range=True), id="200-new-length"),
        pytest.param(whole(total=len(DATA) + 1), id="206-new-total"),
    ],
)
def test_a_file_that_changed_during_the_download_is_not_stitched(tmp_path: Path, second: Step) -> None:
    out = tmp_path / "out.bin"
    with Server(cut(MIB + 7), second) as server:
        result = download(server, out)
    assert_error(result, 9, "changed", "--force")
    assert part_of(out).read_bytes() == DATA[: MIB + 7]  # kept as it was
    assert not out.exists()
    assert len(server.gets) == 2


MONDAY, TUESDAY = "Mon, 01 Jun 2026 10:00:00 GMT", "Tue, 02 Jun 2026 10:00:00 GMT"


def test_without_an_etag_last_modified_tells_a_changed_file(tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    with Server(cut(MIB, modified=MONDAY), whole(modified=TUESDAY), etag="") as server:
        result = download(server, out)
    assert_error(result, 9, "changed", "Last-Modified")
    assert "If-Range" not in server.gets[1]  # a date is no strong validator: tmpup compares it itself
    assert part_of(out).read_bytes() == DATA[:MIB]


@pytest.mark.parametrize("etag", ['W/"6571"', ""])
def test_without_a_strong_etag_the_rest_is_asked_for_without_if_range(tmp_path: Path, etag: str) -> None:
    out = tmp_path / "out.bin"
    with Server(cut(MIB, modified=MONDAY), whole(modified=MONDAY), etag=etag) as server:
        done = download(server, out)
    assert done.code == 0, done.err
    assert out.read_bytes() == DATA
    assert ranges(server) == [None, f"bytes={MIB}-"] and "If-Range" not in server.gets[1]


def test_a_206_for_the_wrong_range_on_the_retry_is_an_integrity_error(tmp_path: Path) -> None:
    def wrong(server: Server, h: Handler) -> None:
        headers = {"Content-Range": f"bytes 0-{len(DATA) - 1}/{len(DATA)}", "ETag": ETAG}
        answer(h, 206, DATA, content_type="application/octet-stream", headers=headers)

    out = tmp_path / "out.bin"
    with Server(cut(MIB + 7), wrong) as server:
        result = download(server, out)
    assert_error(result, 9, f"bytes from {MIB + 7}")
    assert part_of(out).read_bytes() == DATA[: MIB + 7]
    assert not out.exists()


# -- when the retries are spent --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "at"),
    [(DATA[:100], 10), (DATA, MIB + 7), (DATA, 0)],
    ids=["10-of-100-bytes", "1MiB+7-of-3MiB", "none-of-3MiB"],
)
def test_no_retries_exits_10_with_every_received_byte_in_the_part(tmp_path: Path, data: bytes, at: int) -> None:
    out = tmp_path / "out.bin"
    with Server(cut(at), data=data) as server:
        failed = download(server, out, retries=0)
        assert_error(failed, 10, f"{part_of(out)} was kept", f"tmpup download 6571 -o {out} --continue")
        assert not any(name in failed.err for name in NO_CLASS_NAMES), failed.err
        assert len(server.gets) == 1
        assert part_of(out).read_bytes() == data[:at]  # exactly what arrived, a block cut short included
        assert not out.exists()
        refused = download(server, out)  # without --continue the .part is not thrown away
        assert_error(refused, 7, "--continue")
        assert part_of(out).read_bytes() == data[:at]
        done = download(server, out, "--continue")
    assert done.code == 0, done.err
    assert out.read_bytes() == data and not part_of(out).exists()
    assert ranges(server)[-1] == (f"bytes={at}-" if at else None)


def test_a_server_that_keeps_cutting_without_progress_uses_the_retries_up(tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    with Server(cut(10), cut(0), cut(0), cut(0)) as server:
        failed = download(server, out, retries=2)
    assert_error(failed, 10, "after 2 retries", "--continue")
    assert ranges(server) == [None, "bytes=10-", "bytes=10-"]
    assert part_of(out).read_bytes() == DATA[:10]


def test_force_does_not_touch_the_old_file_until_the_new_one_is_complete(tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    out.write_bytes(b"the old file")
    with Server(cut(MIB + 7)) as server:
        failed = download(server, out, "--force", retries=0)
        assert_error(failed, 10, "--continue")
        assert out.read_bytes() == b"the old file"
        refused = download(server, out, "--continue")  # the old file is still there: --force is needed
        assert_error(refused, 7, "--force")
        done = download(server, out, "--continue", "--force")
    assert done.code == 0, done.err
    assert out.read_bytes() == DATA


# -- through the real emulator -----------------------------------------------------------------------------


class CuttingProxy:
    """A TCP proxy to `upstream` that cuts the first `cuts` answers after `limit` bytes (headers included)
    and records each request's head."""

    def __init__(
        self, upstream: tuple[str, int], limit: int, cuts: int = 1, on_cut: Callable[[], None] | None = None
    ) -> None:
        self.upstream = upstream
        self.limit = limit
        self.cuts = cuts
        self.on_cut = on_cut  # called after each cut, before the client can send its next request
        self.heads: list[str] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()

    def __enter__(self) -> CuttingProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client, socket.create_connection(self.upstream) as upstream:
            head = b""
            while b"\r\n\r\n" not in head:
                data = client.recv(65536)
                if not data:
                    return
                head += data
            text = head.decode("latin-1")
            with self.lock:
                self.heads.append(text)
                limit = self.limit if self.cuts > 0 else None
                self.cuts -= 1
            # One request per connection keeps the counting simple.
            upstream.sendall(head.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1))
            sent = 0
            while True:
                data = upstream.recv(65536)
                if not data:
                    return
                if limit is not None and sent + len(data) >= limit:
                    client.sendall(data[: limit - sent])
                    if self.on_cut is not None:
                        self.on_cut()
                    return  # closing both ends mid-answer: the cut
                client.sendall(data)
                sent += len(data)


def test_a_download_from_the_emulator_cut_by_the_network_is_continued(
    emulator: Any, config_path: Path, tmp_path: Path
) -> None:
    write_qlik_profile(emulator, config_path)
    src = make_file(tmp_path / "src.bin", 2 * MIB + 5)
    up = run("upload", str(src), "--progress", "none")
    assert up.code == 0, up.err
    handle = up.out.strip()
    host, port = emulator.url.split("//", 1)[1].rstrip("/").split(":")
    out = tmp_path / "copy.bin"
    with CuttingProxy((host, int(port)), limit=MIB + 333) as proxy:
        qlik_url = emulator.mount_url("qlik").replace(f":{port}", f":{proxy.port}")
        done = run("download", handle, "-o", str(out), "--progress", "none", env={"TMPUP_URL": qlik_url})
    assert done.code == 0, done.err
    assert out.read_bytes() == src.read_bytes() and not part_of(out).exists()
    gets = [head for head in proxy.heads if head.startswith("GET ")]
    assert len(gets) == 2
    assert "range:" not in gets[0].lower()
    resumed = re.search(r"^range: bytes=(\d+)-\r$", gets[1], re.IGNORECASE | re.MULTILINE)
    assert resumed is not None and 0 < int(resumed.group(1)) < MIB + 333
    assert re.search(r"^if-range: \"", gets[1], re.IGNORECASE | re.MULTILINE)  # the emulator's ETag


def test_a_pyrus_token_that_expires_before_the_rest_is_asked_for_is_renewed(
    emulator: Any, config_path: Path, tmp_path: Path
) -> None:
    """Pyrus tokens expire: the GET that continues a cut download is answered 401, so tmpup
    authenticates again and asks once more, instead of failing with exit 4 and a .part."""
    from tests.test_pyrus import pyrus_config, pyrus_download_id

    pyrus_config(emulator, config_path)
    src = make_file(tmp_path / "src.bin", 2 * MIB + 5)
    up = run("upload", str(src), "--json", "--progress", "none")
    assert up.code == 0, up.err
    numeric = pyrus_download_id(emulator, json.loads(up.out)["id"])
    host, port = emulator.url.split("//", 1)[1].rstrip("/").split(":")
    with CuttingProxy((host, int(port)), limit=MIB + 333, on_cut=emulator.mounts["pyrus"].revoke_tokens) as proxy:
        # The download goes through the proxy (files_url); authentication to the emulator directly.
        pyrus_config(emulator, config_path, files_url=f"http://127.0.0.1:{proxy.port}/pyrus")
        out = tmp_path / "copy.bin"
        done = run("download", numeric, "-o", str(out), "--progress", "none")
    assert done.code == 0, done.err
    assert out.read_bytes() == src.read_bytes() and not part_of(out).exists()
    gets = [head for head in proxy.heads if head.startswith("GET ")]
    assert len(gets) == 3  # the first (cut), the continuation with the revoked token (401), with the new one
    tokens = [re.search(r"^authorization: bearer (\S+)\r$", g, re.IGNORECASE | re.MULTILINE) for g in gets]
    assert all(tokens) and tokens[0].group(1) == tokens[1].group(1) != tokens[2].group(1)  # type: ignore[union-attr]
    assert re.search(r"^range: bytes=[1-9]\d*-\r$", gets[2], re.IGNORECASE | re.MULTILINE)


# -- Ctrl-C / SIGTERM ------------------------------------------------------------------------------------


def stall_after(n: int, release: threading.Event) -> Step:
    """Send the headers and `n` body bytes, then wait (a stalled server) until `release`."""

    def step(server: Server, h: Handler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(len(server.data)))
        h.send_header("ETag", server.etag)
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(server.data[:n])
        h.wfile.flush()
        release.wait(30)
        h.close_connection = True

    return step


def wait_for(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("sent", [MIB, 1000])
def test_an_interrupted_download_keeps_the_part_and_prints_the_command_that_continues_it(
    tmp_path: Path, release: threading.Event, sig: signal.Signals, sent: int
) -> None:
    out = tmp_path / "out.bin"
    part = part_of(out)
    with Server(stall_after(sent, release)) as server:
        env = {**os.environ, **provider_env("qlik", server.url)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "tmpup", "download", "6571", "-o", str(out), "--progress", "none"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        try:
            # Whole blocks are written as they arrive; a block cut short is written when the run stops.
            wait_for(lambda: part.exists() and part.stat().st_size >= sent // BLOCK * BLOCK, "the .part")
            time.sleep(0.3)  # the rest of the bytes sent reach tmpup (not an assertion on timing)
            proc.send_signal(sig)
            stdout, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        result = Result(proc.returncode, stdout.decode(), stderr.decode())
        command = f"tmpup download 6571 -o {out} --continue"
        assert_error(result, 130, "interrupted", f"{part} was kept", command)
        assert part.read_bytes() == DATA[:sent]  # every byte received, the block being gathered too
        assert not out.exists()
        release.set()
        done = run_process(*command.split()[1:], "--progress", "none", env=provider_env("qlik", server.url))
    assert done.code == 0, done.err
    assert out.read_bytes() == DATA and not part.exists()
    assert ranges(server)[-1] == f"bytes={sent}-"


# -- continued in a later run (--continue) --------------------------------------------------------------


def test_a_later_continue_checks_the_part_holds_the_same_file(tmp_path: Path) -> None:
    # The .part keeps (as an extended attribute) the ETag and size it was written from; a later
    # --continue that finds another version of the file refuses to stitch the two together.
    out = tmp_path / "out.bin"
    with Server(cut(MIB)) as server:
        assert download(server, out, retries=0).code == 10
    assert json.loads(os.getxattr(part_of(out), "user.tmpup.download"))["etag"] == '"6571-v1"'
    other = os.urandom(len(DATA))
    with Server(etag='"6571-v2"', data=other) as server:
        refused = download(server, out, "--continue")
    assert_error(refused, 9, "another file", '"6571-v1" then, "6571-v2" now', "--force")
    assert part_of(out).read_bytes() == DATA[:MIB]  # kept as it was
    with Server() as server:
        done = download(server, out, "--continue")
    assert done.code == 0, done.err
    assert out.read_bytes() == DATA
    assert "user.tmpup.download" not in os.listxattr(out)  # the finished file carries nothing of tmpup's


def test_a_part_of_another_id_is_not_continued_as_this_one(tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    with Server(cut(MIB)) as server:
        assert download(server, out, retries=0).code == 10
    record = json.loads(os.getxattr(part_of(out), "user.tmpup.download"))
    os.setxattr(part_of(out), "user.tmpup.download", json.dumps({**record, "id": "1234"}).encode())
    with Server() as server:
        refused = download(server, out, "--continue")
    assert_error(refused, 9, "written by a download of '1234'")
    assert part_of(out).read_bytes() == DATA[:MIB]


def test_a_part_without_the_attribute_is_continued_as_before(tmp_path: Path) -> None:
    # A .part from an older tmpup, or from a file system that keeps no user attributes
    out = tmp_path / "out.bin"
    part_of(out).write_bytes(DATA[:MIB])
    with Server() as server:
        done = download(server, out, "--continue")
    assert done.code == 0, done.err
    assert out.read_bytes() == DATA and ranges(server) == [f"bytes={MIB}-"]
