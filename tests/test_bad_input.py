"""A catalogue of bad input: special files, absurd sizes and durations, hostile names, malformed
configuration and environment, and servers answering garbage.

Every case ends the same way: the documented exit code (DESIGN.md section 4), exactly one line on
stderr starting `tmpup: error:`, no traceback, no "internal error", and nothing lost.

Servers that misbehave on purpose are tiny `http.server`s in a thread (`Garbage`); cases that could
eat the machine if tmpup regressed (an endless body) run tmpup as a real subprocess under a memory cap.
"""

from __future__ import annotations

import http.server
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import QuietHTTPServer, Result, make_file, run, run_process, sha256_file, write_config

MIB = 1024 * 1024
NINES = "9" * 400  # overflows a float: float(NINES) is inf


# -- helpers ---------------------------------------------------------------------------------------


def assert_error(result: Result, code: int, *needles: str) -> None:
    """The documented exit code and exactly one line on stderr, `tmpup: error: ...`, no traceback."""
    assert result.code == code, f"exit {result.code}, expected {code}: {result.err}"
    assert result.err.startswith("tmpup: error: "), result.err
    assert result.err.count("\n") == 1, result.err
    assert "Traceback" not in result.err and "internal error" not in result.err, result.err
    for needle in needles:
        assert needle in result.err, f"{needle!r} not in {result.err!r}"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Garbage:
    """An HTTP/1.1 server on 127.0.0.1:0 whose every answer is `reply(handler)`; it records requests."""

    def __init__(self, reply: Callable[[http.server.BaseHTTPRequestHandler], None]) -> None:
        self.reply = reply
        self.seen: list[Seen] = []
        self.stopping = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.seen.append(Seen(self.command, self.path, dict(self.headers.items()), body))
                try:
                    outer.reply(self)
                    self.wfile.flush()
                except OSError:  # the client went away (as it should, from an endless body)
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_PATCH = do_HEAD = do_DELETE = do_OPTIONS = _any

        self.server = QuietHTTPServer(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Garbage:
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


def answer(
    h: http.server.BaseHTTPRequestHandler,
    status: int,
    body: bytes = b"",
    *,
    content_type: str = "application/json",
    length: int | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    """One response; `length` lies about Content-Length (then the connection is closed after the body)."""
    h.send_response(status)
    h.send_header("Content-Type", content_type)
    h.send_header("Content-Length", str(len(body) if length is None else length))
    for key, value in (headers or {}).items():
        h.send_header(key, value)
    if length is not None and length != len(body):
        h.send_header("Connection", "close")
        h.close_connection = True
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


def html(h: http.server.BaseHTTPRequestHandler) -> None:
    answer(h, 200, b"<!doctype html><html><body><h1>Sign in</h1></body></html>", content_type="text/html")


def truncated_json(h: http.server.BaseHTTPRequestHandler) -> None:
    answer(h, 200, b'{"ID": "6571", "Name": "rep', length=None)


def endless_json(garbage: Garbage) -> Callable[[http.server.BaseHTTPRequestHandler], None]:
    """200 application/json, chunked, `[0,0,0,...` for ever (until the client hangs up)."""

    def reply(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        if h.command == "HEAD":
            return
        chunk = b"0," * 32768
        h.wfile.write(b"%x\r\n[\r\n" % 1)
        while not garbage.stopping.is_set():
            h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))

    return reply


def redirect_to_itself(h: http.server.BaseHTTPRequestHandler) -> None:
    answer(h, 302, b"", headers={"Location": h.path})


def ping_pong(h: http.server.BaseHTTPRequestHandler) -> None:
    """/x/... -> /y/... -> /x/... for ever."""
    target = "/y" + h.path[2:] if h.path.startswith("/x") else "/x" + h.path[2:]
    answer(h, 307, b"", headers={"Location": target})


#: A file-less profile for each provider, pointing at `base` (a garbage server's URL).
def provider_env(provider: str, base: str) -> dict[str, str]:
    env = {
        "qlik": {"TMPUP_URL": f"{base}/x", "TMPUP_TOKEN": "t"},
        "tus": {"TMPUP_URL": f"{base}/x/files/", "TMPUP_TOKEN": "t"},
        "kf5": {"TMPUP_URL": f"{base}/x", "TMPUP_EMAIL": "a@example.com", "TMPUP_API_TOKEN": "t"},
        "pyrus": {"TMPUP_URL": f"{base}/x", "TMPUP_LOGIN": "bot@example.com", "TMPUP_SECURITY_KEY": "k"},
        "thulium": {"TMPUP_URL": f"{base}/x", "TMPUP_USERNAME": "u", "TMPUP_PASSWORD": "p"},
        "enterprise-tester": {"TMPUP_URL": f"{base}/x", "TMPUP_USERNAME": "u", "TMPUP_PASSWORD": "p"},
    }[provider]
    return {"TMPUP_PROVIDER": provider, "TMPUP_RETRIES": "1", **env}


def command_args(command: str, tmp_path: Path) -> list[str]:
    """The arguments of one command of the catalogue (ids are numeric: every provider takes those)."""
    if command == "upload":
        return ["upload", str(make_file(tmp_path / "up.bin", 1000)), "--progress", "none"]
    if command == "download":
        return ["download", "6571", "-o", str(tmp_path / "down.bin"), "--progress", "none"]
    if command == "check":
        return ["profiles", "check"]
    return [command, "6571"]


def limited(preexec: Callable[[], None]) -> Callable[..., Result]:
    """`run_process` with resource limits set in the child before it starts."""

    def go(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Result:
        full_env = {**os.environ, **(env or {})}
        proc = subprocess.run(
            [sys.executable, "-m", "tmpup", *args],
            input=b"",
            capture_output=True,
            env=full_env,
            timeout=timeout,
            preexec_fn=preexec,
        )
        return Result(proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"))

    return go


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


run_capped = limited(_cap_memory)


@pytest.fixture
def qlik_env(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A file-less qlik profile at the emulator (TMPUP_* in the environment)."""
    monkeypatch.setenv("TMPUP_PROVIDER", "qlik")
    monkeypatch.setenv("TMPUP_URL", f"{emulator.url}/qlik")
    monkeypatch.setenv("TMPUP_TOKEN", emulator.credentials.qlik_token)
    monkeypatch.setenv("TMPUP_RETRIES", "1")
    return emulator


# -- special files -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dev-zero", "fifo"])
def test_devices_and_pipes_are_refused_with_the_stdin_hint(qlik_env: Any, tmp_path: Path, kind: str) -> None:
    path = "/dev/zero"
    if kind == "fifo":
        path = str(tmp_path / "pipe")
        os.mkfifo(path)
    result = run_capped("upload", path, "--progress", "none", timeout=30)  # never opened, never read
    assert_error(result, 7, path, "tmpup upload - --name")
    assert qlik_env.store.blobs("qlik") == []


def test_a_proc_file_that_says_it_is_empty_is_refused_not_sent_empty(qlik_env: Any, tmp_path: Path) -> None:
    # /proc files report a size of 0 whatever they hold: uploading "0 bytes" would lose the content.
    assert_error(run("upload", "/proc/self/status", "--progress", "none"), 7, "/proc/self/status", "tmpup upload -")
    assert qlik_env.store.blobs("qlik") == []
    empty = tmp_path / "really-empty.txt"
    empty.write_bytes(b"")
    assert run("upload", str(empty), "--progress", "none").code == 0  # a truly empty file is fine


def test_stdin_only_when_asked_and_with_a_name(qlik_env: Any) -> None:
    assert_error(run("upload", "-"), 2, "--name")
    assert_error(run("upload", "-", "-", "--name", "x"), 2)
    assert_error(run("upload", "a", "b", "--name", "x"), 2, "--name")
    assert qlik_env.store.blobs("qlik") == []


@pytest.mark.parametrize("kind", ["missing", "directory", "dev-zero"])
def test_ca_bundle_that_is_not_a_pem_file(qlik_env: Any, tmp_path: Path, kind: str) -> None:
    path = {"missing": str(tmp_path / "nonexistent.pem"), "directory": str(tmp_path), "dev-zero": "/dev/zero"}[kind]
    src = make_file(tmp_path / "f.bin", 10)
    assert_error(run("upload", str(src), "--ca-bundle", path), 3, "ca_bundle")
    env_result = run("info", "x", env={"TMPUP_CA_BUNDLE": path})
    assert_error(env_result, 3, "TMPUP_CA_BUNDLE")
    assert qlik_env.store.blobs("qlik") == []


def test_download_into_a_missing_directory_or_over_a_directory(qlik_env: Any, tmp_path: Path) -> None:
    up = run("upload", str(make_file(tmp_path / "f.bin", 10)))
    assert up.code == 0, up.err
    handle = up.out.strip()
    assert_error(run("download", handle, "-o", str(tmp_path / "no" / "such" / "dir" / "f.bin")), 7)
    (tmp_path / "taken.bin").mkdir()
    assert_error(run("download", handle, "-o", str(tmp_path / "taken.bin" / "f.bin" / "x")), 7)
    assert_error(run("download", "  ", "-o", str(tmp_path / "x.bin")), 2)


# -- files that change while they upload ---------------------------------------------------------------


def start_throttled_upload(src: Path, emulator: Any, rate: str = "1M") -> subprocess.Popen[bytes]:
    """Start `tmpup upload SRC` at `rate` per second (qlik profile of the test) and return once its first
    block reached the emulator: the rest of the file is seconds away, time for a test to change it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tmpup", "upload", str(src), "--limit-rate", rate, "--progress", "none"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while not any(blob.offset > 0 for blob in emulator.store.blobs("qlik")):
        assert time.monotonic() < deadline and proc.poll() is None, "the upload never started"
        time.sleep(0.02)
    return proc


@pytest.mark.parametrize("change", ["grows", "shrinks"])
@pytest.mark.parametrize(
    ("size", "rate"),
    [(3 * MIB, "1M"), (16 * MIB, "4M")],
    ids=["read inline", "read ahead"],  # under read_ahead.MIN_LENGTH the file is read in the sending thread
)
def test_a_file_that_changes_during_the_upload_is_an_integrity_error(
    qlik_env: Any, tmp_path: Path, state_dir: Path, change: str, size: int, rate: str
) -> None:
    src = make_file(tmp_path / "live.log", size)
    # 1 MiB blocks at 1 MiB/s: once the first block reached the server, the third read is ~1 s away.
    # Read ahead, the reader is a few blocks further on: a shrink shows as an early end of file there.
    proc = start_throttled_upload(src, qlik_env, rate)
    if change == "grows":
        with src.open("ab") as fh:
            fh.write(b"appended while uploading\n")
    else:
        os.truncate(src, MIB // 2)
    out, err = proc.communicate(timeout=60)
    assert_error(Result(proc.returncode, out.decode(), err.decode()), 9, "live.log")
    assert out == b""
    assert not (state_dir / "receipts.jsonl").exists()  # no receipt of an upload that does not match the file


# -- absurd sizes and durations ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["--chunk-size", "0"], 2, "--chunk-size"),
        (["--chunk-size", "-1"], 2, "--chunk-size"),
        (["--chunk-size", "1e9P"], 2, "--chunk-size"),
        (["--chunk-size", NINES], 2, "--chunk-size"),
        (["--chunk-size", NINES + "P"], 2, "--chunk-size"),
        (["--limit-rate", "abc"], 2, "--limit-rate"),
        (["--limit-rate", "0"], 2, "--limit-rate"),
        (["--limit-rate", NINES + "P"], 2, "--limit-rate"),
        (["--ttl", "10y"], 7, "--ttl"),
        (["--ttl", "-5"], 7, "--ttl"),
        (["--ttl", "0"], 7, "ttl"),
        (["--ttl", "0.5"], 7, "ttl"),
        (["--ttl", "4d"], 7, "ttl"),
        (["--ttl", NINES], 7, "ttl"),
        (["--ttl", "\u0663\u0660m"], 7, "--ttl"),  # Arabic-Indic digits: float() would read 30
        (["--chunk-size", "\u0666\u0664M"], 2, "--chunk-size"),
        (["--chunk-size", "99999999P"], 2, "--chunk-size"),
        (["--timeout", "-5"], 2, "--timeout"),
        (["--timeout", "0"], 2, "--timeout"),
        (["--timeout", "abc"], 2, "--timeout"),
        (["--timeout", "99999999999999d"], 2, "--timeout"),
        (["--timeout", NINES], 2, "--timeout"),
        (["--retries", "-1"], 2, "--retries"),
        (["--retries", "abc"], 2, "--retries"),
        (["-j", "0"], 2, "--jobs"),
        (["-j", "-3"], 2, "--jobs"),
        (["--progress", "sideways"], 2, "--progress"),
    ],
    ids=lambda v: " ".join(v)[:28] if isinstance(v, list) else str(v)[:12],
)
def test_absurd_sizes_and_durations(qlik_env: Any, tmp_path: Path, args: list[str], code: int, needle: str) -> None:
    src = make_file(tmp_path / "f.bin", 100)
    assert_error(run("upload", str(src), *args), code, needle)
    assert qlik_env.store.blobs("qlik") == []


def test_a_chunk_size_beyond_the_file_is_just_one_request(qlik_env: Any, tmp_path: Path) -> None:
    """1T is a sane size; as a chunk of a small file it means "all of it at once" (sizes above 1 EiB are typos)."""
    src = make_file(tmp_path / "f.bin", 3 * MIB + 1)
    up = run("upload", str(src), "--chunk-size", "1T", "--resumable", "--progress", "none")
    assert up.code == 0, up.err
    assert qlik_env.blob_sha256("qlik", up.out.strip()) == sha256_file(src)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TMPUP_RETRIES", "-3"),
        ("TMPUP_RETRIES", "many"),
        ("TMPUP_RETRIES", "1.5"),
        ("TMPUP_RETRIES", "\u0663"),  # int() takes any script's digits, and "1_0"
        ("TMPUP_RETRIES", "1_0"),
        ("TMPUP_TTL", "\u0663\u0660m"),
        ("TMPUP_TIMEOUT", "0"),
        ("TMPUP_TIMEOUT", "-1"),
        ("TMPUP_TIMEOUT", "soon"),
        ("TMPUP_TIMEOUT", NINES),
        ("TMPUP_TTL", "10y"),
        ("TMPUP_CHUNK_SIZE", "lots"),
        ("TMPUP_CHUNK_SIZE", NINES),
        ("TMPUP_INSECURE", "maybe"),
    ],
)
def test_bad_environment_values_are_configuration_errors(
    qlik_env: Any, tmp_path: Path, variable: str, value: str
) -> None:
    src = make_file(tmp_path / "f.bin", 100)
    assert_error(run("upload", str(src), env={variable: value}), 3, variable)
    assert qlik_env.store.blobs("qlik") == []


# -- names ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "",
        "   ",
        ".",
        "..",
        " .. ",
        "a/b.txt",
        "../up.txt",
        "a\\b.txt",
        "line\nbreak.txt",
        "carriage\rreturn.txt",
        # what a download's safe name would drop, so the name would not come back (headers.safe_filename)
        "invoice\u200fexe.pdf",  # a bidi mark
        "a\u2028b.txt",  # a line separator
        "\u00ad.bashrc",  # a soft hyphen: shows as a dotfile
        "a\ufeffb.txt",  # a byte-order mark
        "c1\x9bcsi.txt",  # a C1 control (the one-byte CSI)
        "nul\x00byte.txt",
        "x" * 256,
        "é" * 128,  # 256 bytes of UTF-8
        os.fsdecode(b"n\xffx"),
    ],
    ids=lambda n: repr(n)[:24],
)
def test_bad_names_are_rejected_input(qlik_env: Any, tmp_path: Path, name: str) -> None:
    src = make_file(tmp_path / "f.bin", 10)
    result = run("upload", str(src), "--name", name)
    assert_error(result, 7)
    assert "\n" not in result.err[:-1] and "\r" not in result.err and "\x00" not in result.err
    assert qlik_env.store.blobs("qlik") == []


def test_the_longest_name_fits(qlik_env: Any, tmp_path: Path) -> None:
    name = "é" * 127 + "x"  # 255 bytes of UTF-8
    up = run("upload", str(make_file(tmp_path / "f.bin", 10)), "--name", name)
    assert up.code == 0, up.err
    assert qlik_env.store.find("qlik", up.out.strip()).name == name


@pytest.mark.parametrize("raw", [b"n\xffx.bin", b"line\nbreak.bin", b"\xe9t\xe9.csv"], ids=repr)
def test_a_file_whose_own_name_is_bad_needs_name(qlik_env: Any, tmp_path: Path, raw: bytes) -> None:
    path = os.fsdecode(os.fsencode(tmp_path) + b"/" + raw)
    make_file(Path(path), 64)
    refused = run_process("upload", path, "--progress", "none")  # real argv bytes, not Python strings
    assert_error(refused, 7, "--name")
    assert qlik_env.store.blobs("qlik") == []
    done = run_process("upload", path, "--name", "ok.bin", "--json", "--progress", "none")
    assert done.code == 0, done.err
    (blob,) = qlik_env.store.blobs("qlik")
    assert blob.name == "ok.bin"
    assert qlik_env.blob_sha256("qlik", blob.id) == sha256_file(Path(path))


@pytest.mark.parametrize(
    ("disposition", "expected"),
    [
        ("attachment; filename*=UTF-8''..%2F..%2Fevil%0D%0A.txt", "evil.txt"),
        ('attachment; filename="../../../etc/cron.d/x"', "x"),
        ('attachment; filename=".bashrc"', "bashrc"),
        ("attachment; filename*=UTF-8''%2E%2E", "6571"),
        ("attachment; filename*=UTF-8''bad%FFutf8.txt; filename=\"plain.txt\"", "plain.txt"),
        ("attachment; filename*=UTF-8''" + "%C3%A9" * 200 + ".pdf", "LONG"),
        ("attachment; filename*=UTF-8''report%E2%80%AEtxt.exe", "reporttxt.exe"),  # no right-to-left override
    ],
)
def test_a_server_supplied_name_lands_as_a_safe_base_name(tmp_path: Path, disposition: str, expected: str) -> None:
    body = b"payload"

    def reply(h: http.server.BaseHTTPRequestHandler) -> None:
        headers = {"Content-Disposition": disposition.encode("utf-8").decode("latin-1")}
        answer(h, 200, body, content_type="application/octet-stream", headers=headers)

    out = tmp_path / "downloads"
    out.mkdir()
    with Garbage(reply) as server:
        result = run("download", "6571", "-o", str(out), "--progress", "none", env=provider_env("qlik", server.url))
    assert result.code == 0, result.err
    (landed,) = out.iterdir()
    if expected == "LONG":  # cut to fit a file name (and its .part while downloading), extension kept
        assert landed.name.startswith("éé") and landed.name.endswith(".pdf")
        assert len((landed.name + ".part").encode()) <= 255
    else:
        assert landed.name == expected
    assert landed.read_bytes() == body
    assert sorted(p.name for p in tmp_path.iterdir()) == ["downloads", "home"]  # nothing landed outside


# -- malformed configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "needles"),
    [
        ('[profiles.q]\nprovider = "qlik"\nprovider = "tus"\n', ["line 3"]),
        ('[profiles.q\nprovider = "qlik"\n', ["line 1"]),
        ('default_profile = 5\n[profiles.q]\nprovider = "qlik"\n', ["default_profile"]),
        ('default_profile = ""\n[profiles.q]\nprovider = "qlik"\n', ["default_profile"]),
        ("profiles = 5\n", ["profiles"]),
        ("[profiles]\nq = 5\n", ["profiles"]),
        ("colour = 'blue'\n", ["colour"]),
        ('[profiles.q]\nprovider = "qlik"\nurl = "URL"\ntoken = "t"\nretries = "x"\n', [":5", "'q'", "retries"]),
        ('[profiles.q]\nprovider = "qlik"\nurl = "URL"\ntoken = "t"\nretries = -2\n', [":5", "'q'", "retries"]),
        ('[profiles.q]\nprovider = "qlik"\nurl = "URL"\ntoken = "t"\ntimeout = 0\n', [":5", "'q'", "timeout"]),
        ('[profiles.q]\nprovider = "qlik"\nurl = "URL"\ntoken = "t"\ninsecure = "perhaps"\n', [":5", "insecure"]),
        ('[profiles.q]\nprovider = "qlik"\nurl = "URL"\ntoken = ""\n', [":4", "'q'", "token", "empty"]),
        ('[profiles.q]\nprovider = "qlik"\nurl = "URL"\ntoken = 42\n', [":4", "'q'", "token"]),
        ('[profiles.q]\nprovider = "qlik"\nurl = 5\ntoken = "t"\n', [":3", "'q'", "url"]),
        ('[profiles.q]\nprovider = 5\nurl = "URL"\n', ["'q'", "provider"]),
        ('[profiles.t]\nprovider = "tus"\nurl = "URL"\nheaders = "str"\n', [":4", "'t'", "headers"]),
        ('[profiles.t]\nprovider = "tus"\nurl = "URL"\nheaders = { X-A = 1 }\n', [":4", "'t'", "headers"]),
        ('[profiles.t]\nprovider = "tus"\nurl = "URL"\nchunk_size = "big"\n', [":4", "'t'", "chunk_size"]),
        ('[profiles.q]\nprovider = "qlik"\nurl = "URL"\ntoken_env = ""\n', [":4", "'q'", "token_env"]),
        ('[profiles.q]\nprovider = "qlik"\nurl = "URL"\ntoken_file = ""\n', [":4", "'q'", "token_file"]),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_malformed_config_names_file_line_profile_and_key(
    emulator: Any, config_path: Path, body: str, needles: list[str]
) -> None:
    write_config(config_path, body.replace("URL", f"{emulator.url}/qlik"))
    for args in (["info", "abc"], ["profiles", "show"]):
        assert_error(run(*args), 3, str(config_path), *needles)


def test_config_that_is_not_utf8_or_a_directory(config_path: Path, tmp_path: Path) -> None:
    config_path.write_bytes(b'[profiles.q]\nprovider = "ql\xffik"\n')
    assert_error(run("profiles", "list"), 3, str(config_path), "UTF-8")
    assert_error(run("profiles", "list", "--config", str(tmp_path)), 3, str(tmp_path))


def test_config_and_secret_file_on_dev_zero_are_bounded(emulator: Any, config_path: Path) -> None:
    assert_error(run_capped("info", "x", env={"TMPUP_CONFIG": "/dev/zero"}, timeout=30), 3, "/dev/zero")
    assert_error(run_capped("profiles", "list", "--config", "/dev/zero", timeout=30), 3, "/dev/zero")
    write_config(
        config_path,
        f'[profiles.q]\nprovider = "qlik"\nurl = "{emulator.url}/qlik"\ntoken_file = "/dev/zero"\n',
    )
    assert_error(run_capped("info", "x", timeout=30), 3, f"{config_path}:4", "token_file", "/dev/zero")
    env = {"TMPUP_PROVIDER": "qlik", "TMPUP_URL": f"{emulator.url}/qlik", "TMPUP_TOKEN_FILE": "/dev/zero"}
    assert_error(
        run_capped("info", "x", env={**env, "TMPUP_CONFIG": "/nonexistent"}, timeout=30), 3, "TMPUP_TOKEN_FILE"
    )


@pytest.mark.parametrize("kind", ["missing", "directory", "empty", "not-utf8", "two-lines"])
def test_bad_secret_files(emulator: Any, config_path: Path, tmp_path: Path, kind: str) -> None:
    secret = tmp_path / "token"
    if kind == "directory":
        secret.mkdir()
    elif kind == "empty":
        secret.write_text("\n")
    elif kind == "not-utf8":
        secret.write_bytes(b"SECRET\xff\xfeen")
    elif kind == "two-lines":
        secret.write_text("SECRET-first-half\nSECRET-second-half\n")
    write_config(
        config_path, f'[profiles.q]\nprovider = "qlik"\nurl = "{emulator.url}/qlik"\ntoken_file = "{secret}"\n'
    )
    assert_error(run("info", "x"), 3, f"{config_path}:4", "'q'", "token_file")
    debug = run("info", "x", "--debug")  # with the traceback
    assert debug.code == 3 and "SECRET" not in debug.err + debug.out


def test_a_secret_file_that_is_a_fifo_without_a_writer_does_not_hang(
    emulator: Any, config_path: Path, tmp_path: Path
) -> None:
    fifo = tmp_path / "token.fifo"
    os.mkfifo(fifo)
    write_config(config_path, f'[profiles.q]\nprovider = "qlik"\nurl = "{emulator.url}/qlik"\ntoken_file = "{fifo}"\n')
    try:
        result = run_process("info", "x", timeout=8)
    except subprocess.TimeoutExpired:
        pytest.fail("tmpup blocked opening a FIFO that nobody writes to (token_file)")
    assert_error(result, 3, "token_file", str(fifo))


def test_a_config_that_is_a_fifo_without_a_writer_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo)
    try:
        result = run_process("profiles", "list", "--config", str(fifo), timeout=8)
    except subprocess.TimeoutExpired:
        pytest.fail("tmpup blocked opening a FIFO that nobody writes to (--config)")
    assert_error(result, 3, str(fifo))


def test_a_secret_from_a_pipe_with_a_writer_works(emulator: Any, tmp_path: Path) -> None:
    """`TMPUP_TOKEN_FILE=<(pass show qlik)` is a pipe with a writer: that must keep working."""
    read_end, write_end = os.pipe()
    os.write(write_end, emulator.credentials.qlik_token.encode() + b"\n")
    os.close(write_end)
    env = {
        **os.environ,
        "TMPUP_PROVIDER": "qlik",
        "TMPUP_URL": f"{emulator.url}/qlik",
        "TMPUP_TOKEN_FILE": f"/dev/fd/{read_end}",
    }
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "tmpup", "profiles", "check"],
            capture_output=True,
            env=env,
            timeout=30,
            pass_fds=(read_end,),
        )
    finally:
        os.close(read_end)
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"ok" in proc.stdout


@pytest.mark.parametrize(
    "how",
    ["env-newline", "env-cr", "env-tab", "literal-nul", "literal-newline", "token_env-newline", "file-inner-newline"],
)
def test_a_secret_with_a_control_character_is_refused_and_not_echoed(
    emulator: Any, config_path: Path, tmp_path: Path, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`TMPUP_TOKEN=$'a\\nb'` and friends: no HTTP header can carry it; say so without showing it."""
    url = f"{emulator.url}/qlik"
    env = {"TMPUP_PROVIDER": "qlik", "TMPUP_URL": url}
    needle = "TMPUP_TOKEN"
    if how.startswith("env-"):
        env["TMPUP_TOKEN"] = {"env-newline": "SECRET-a\nSECRET-b", "env-cr": "SECRET-a\rSECRET-b"}.get(
            how, "SECRET-a\tSECRET-b"
        )
    else:
        env = {}
        needle = f"{config_path}:4"
        key = {"literal-nul": 'token = "SECRET-a\\u0000SECRET-b"', "literal-newline": 'token = "SECRET-a\\nSECRET-b"'}
        if how == "token_env-newline":
            monkeypatch.setenv("QLIK_TOKEN_FOR_TEST", "SECRET-a\nSECRET-b")
            key[how] = 'token_env = "QLIK_TOKEN_FOR_TEST"'
        elif how == "file-inner-newline":
            (tmp_path / "tok").write_text("SECRET-a\nSECRET-b\n")
            key[how] = f'token_file = "{tmp_path / "tok"}"'
        write_config(config_path, f'[profiles.q]\nprovider = "qlik"\nurl = "{url}"\n{key[how]}\n')
    assert_error(run_process("info", "x", env=env), 3, needle)
    debug = run_process("info", "x", "--debug", env=env)  # with the traceback
    assert debug.code == 3 and "SECRET" not in debug.err + debug.out


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"TMPUP_PROVIDER": "nope"}, "nope"),
        ({"TMPUP_PROVIDER": "qlik", "TMPUP_URL": "ftp://example.com", "TMPUP_TOKEN": "t"}, "TMPUP_URL"),
        ({"TMPUP_PROVIDER": "qlik", "TMPUP_URL": "not a url", "TMPUP_TOKEN": "t"}, "TMPUP_URL"),
        ({"TMPUP_PROVIDER": "qlik", "TMPUP_URL": "https://u:SECRET-pw@example.com", "TMPUP_TOKEN": "t"}, "URL"),
        ({"TMPUP_PROVIDER": "qlik", "TMPUP_URL": "https://example.com"}, "token"),
        ({"TMPUP_PROFILE": "missing"}, "missing"),
        ({"TMPUP_PROVIDER": "kf5", "TMPUP_URL": "https://example.com", "TMPUP_EMAIL": "a@b.c"}, "api_token"),
    ],
)
def test_malformed_environment_profiles(env: dict[str, str], needle: str) -> None:
    result = run("info", "x", env=env)
    assert_error(result, 3, needle)
    assert "SECRET" not in result.err


# -- servers answering garbage ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "command"),
    [
        ("qlik", "info"),
        ("qlik", "upload"),
        ("qlik", "check"),
        ("kf5", "info"),
        ("kf5", "upload"),
        ("kf5", "check"),
        ("pyrus", "upload"),
        ("pyrus", "check"),
        ("thulium", "upload"),
        ("thulium", "check"),
        ("enterprise-tester", "info"),
        ("enterprise-tester", "upload"),
        ("enterprise-tester", "check"),
        ("tus", "info"),
        ("tus", "upload"),
        ("tus", "check"),
    ],
)
def test_an_html_page_where_the_api_should_be_is_a_configuration_error(
    tmp_path: Path, state_dir: Path, provider: str, command: str
) -> None:
    with Garbage(html) as server:
        result = run(*command_args(command, tmp_path), env=provider_env(provider, server.url))
    assert_error(result, 3)
    assert "url" in result.err.lower()  # check the profile's url
    assert "<" not in result.err  # server text is shown, never its markup
    assert not (state_dir / "receipts.jsonl").exists()


@pytest.mark.parametrize(
    ("provider", "command"),
    [
        ("qlik", "info"),
        ("kf5", "info"),
        ("kf5", "upload"),
        ("pyrus", "upload"),
        ("thulium", "upload"),
        ("enterprise-tester", "info"),
        ("enterprise-tester", "upload"),
    ],
)
def test_truncated_json_is_a_transient_garbled_answer(tmp_path: Path, provider: str, command: str) -> None:
    with Garbage(truncated_json) as server:
        result = run(*command_args(command, tmp_path), env=provider_env(provider, server.url))
    assert_error(result, 10)


@pytest.mark.parametrize(
    ("provider", "command", "body"),
    [
        ("qlik", "info", b"[1, 2, 3]"),
        ("qlik", "info", b'"just a string"'),
        ("kf5", "info", b'{"attachment": 5}'),
        ("kf5", "upload", b'{"attachment": {"name": "up.bin"}}'),
        ("kf5", "check", b'{"nothing": "here"}'),
        ("pyrus", "upload", b"{}"),
        ("thulium", "upload", b'{"token": null}'),
        ("enterprise-tester", "info", b"[]"),
        ("enterprise-tester", "upload", b'{"Id": 7}'),
    ],
)
def test_json_of_the_wrong_shape_is_not_an_internal_error(
    tmp_path: Path, provider: str, command: str, body: bytes
) -> None:
    """Valid JSON that is not what the API documents: the server's fault, so never exit 1 ("a bug")."""
    with Garbage(lambda h: answer(h, 200, body)) as server:
        result = run(*command_args(command, tmp_path), env=provider_env(provider, server.url))
    assert result.code in (3, 10), result.err  # a wrong url, or a garbled answer
    assert_error(result, result.code)


@pytest.mark.parametrize(
    ("provider", "command"),
    [
        ("qlik", "info"),
        ("qlik", "check"),
        ("kf5", "info"),
        ("kf5", "upload"),
        ("pyrus", "upload"),
        ("thulium", "upload"),
        ("enterprise-tester", "info"),
        ("tus", "upload"),
    ],
)
def test_an_endless_json_answer_is_read_with_a_bound(tmp_path: Path, provider: str, command: str) -> None:
    """A server that never stops answering: tmpup (capped at 1 GiB of address space) gives up on its own."""
    server = Garbage(lambda h: None)
    server.reply = endless_json(server)
    with server:
        started = time.monotonic()
        result = run_capped(*command_args(command, tmp_path), env=provider_env(provider, server.url), timeout=60)
    assert_error(result, 3, "MiB")  # no API answers like this: the url points elsewhere (UnexpectedAnswer)
    assert time.monotonic() - started < 30


def test_a_redirect_with_an_endless_body_is_followed_without_reading_it(tmp_path: Path) -> None:
    """requests reads a 3xx body whole before following it; tmpup (capped at 1 GiB) never reads it."""
    server = Garbage(lambda h: None)

    def endless_redirect(h: http.server.BaseHTTPRequestHandler) -> None:
        if h.path.startswith("/x/final"):
            return answer(h, 404, b'{"errors": [{"code": "NotFound", "title": "Not found"}]}')
        h.send_response(302)
        h.send_header("Location", "/x/final" + h.path)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        chunk = b"z" * 65536
        while not server.stopping.is_set():
            h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))

    server.reply = endless_redirect
    with server:
        started = time.monotonic()
        result = run_capped("info", "0123456789abcdef01234567", env=provider_env("qlik", server.url), timeout=60)
    assert_error(result, 5)  # the redirect's target answered 404: the redirect itself cost nothing
    assert time.monotonic() - started < 30


@pytest.mark.parametrize(
    ("provider", "command"),
    [
        ("qlik", "info"),
        ("qlik", "upload"),
        ("qlik", "download"),
        ("qlik", "check"),
        ("kf5", "info"),
        ("kf5", "download"),
        ("kf5", "delete"),
        ("pyrus", "upload"),
        ("thulium", "upload"),
        ("enterprise-tester", "info"),
        ("enterprise-tester", "download"),
        ("tus", "info"),
        ("tus", "upload"),
        ("tus", "download"),
        ("tus", "delete"),
        ("tus", "check"),
    ],
)
@pytest.mark.parametrize("loop", [redirect_to_itself, ping_pong], ids=["self", "ping-pong"])
def test_a_redirect_loop_is_a_configuration_error(
    tmp_path: Path, provider: str, command: str, loop: Callable[[http.server.BaseHTTPRequestHandler], None]
) -> None:
    """It will not fix itself by retrying: exit 3 at once, one line, and no file left behind."""
    with Garbage(loop) as server:
        started = time.monotonic()
        result = run(*command_args(command, tmp_path), env=provider_env(provider, server.url))
        requests_seen = len(server.seen)
    assert_error(result, 3, "redirect")
    assert time.monotonic() - started < 10
    assert requests_seen <= 2 * 31  # bounded: at most one round of redirects per attempt (retries=1)
    assert not (tmp_path / "down.bin").exists() and not (tmp_path / "down.bin.part").exists()


def test_error_pages_are_described_never_rendered(tmp_path: Path) -> None:
    """A proxy's HTML 502 and an error text full of terminal escapes: one clean line each."""

    def reply(h: http.server.BaseHTTPRequestHandler) -> None:
        if "details" in h.path:
            answer(h, 502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", content_type="text/html")
        else:
            body = b'{"errors": [{"title": "bad \\u001b[31mred\\u001b[0m <b>bold</b>\\r\\nnext", "code": "X"}]}'
            answer(h, 400, body)

    with Garbage(reply) as server:
        env = provider_env("qlik", server.url)
        gateway = run("info", "abc", "-q", env=env)
        bad = run("upload", str(make_file(tmp_path / "f.bin", 10)), "--progress", "none", env=env)
    assert_error(gateway, 10, "502", "HTML page")
    assert "<" not in gateway.err
    assert_error(bad, 7, "400", "red")
    assert "\x1b" not in bad.err and "\r" not in bad.err


@pytest.mark.parametrize("status", [201, 405, 418])
@pytest.mark.parametrize(("provider", "command"), [("qlik", "info"), ("pyrus", "upload")])
def test_a_status_no_api_documents_is_not_an_internal_error(
    tmp_path: Path, provider: str, command: str, status: int
) -> None:
    """Exit 1 means "a bug in tmpup"; a server's odd status is not one (a wrong url, bad input or a flaky server)."""
    with Garbage(lambda h: answer(h, status, b"{}")) as server:
        result = run(*command_args(command, tmp_path), "-q", env=provider_env(provider, server.url))
    assert result.code in (3, 7, 10), result.err
    assert_error(result, result.code, str(status))


def test_tus_head_with_garbage_offsets(tmp_path: Path) -> None:
    def reply(h: http.server.BaseHTTPRequestHandler) -> None:
        answer(h, 200, headers={"Tus-Resumable": "1.0.0", "Upload-Offset": "-5", "Upload-Length": "abc"})

    with Garbage(reply) as server:
        result = run("info", "6571", env=provider_env("tus", server.url))
    assert_error(result, 3, "Upload-Offset")


# -- found in review ----------------------------------------------------------------------------------


def test_a_sys_file_whose_size_is_not_its_content_is_refused(qlik_env: Any) -> None:
    path = "/sys/class/net/lo/address"  # reports 4096 bytes, holds 18
    assert_error(run("upload", path, "--progress", "none"), 7, "tmpup upload -")
    assert qlik_env.store.blobs("qlik") == []


def test_a_header_value_beyond_latin_1_is_a_configuration_error(qlik_env: Any, tmp_path: Path) -> None:
    src = make_file(tmp_path / "f.bin", 10)
    result = run("upload", str(src), "--progress", "none", env={"TMPUP_TOKEN": "tök€n"})
    assert_error(result, 3, "headers cannot carry")
    assert "tök€n" not in result.err


def test_a_ca_bundle_variable_naming_no_file_is_exit_3_for_https(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "nowhere.pem"))
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    env = {"TMPUP_PROVIDER": "qlik", "TMPUP_URL": "https://127.0.0.1:9/qlik", "TMPUP_TOKEN": "t", "TMPUP_RETRIES": "0"}
    src = make_file(tmp_path / "f.bin", 10)
    assert_error(run("upload", str(src), "--progress", "none", env=env), 3, "REQUESTS_CA_BUNDLE")


def test_profiles_list_never_shows_a_password_in_a_url(config_path: Path) -> None:
    profile = '[profiles.x]\nprovider = "qlik"\nurl = "https://admin:hunter2@acme.example/"\ntoken = "t"\n'
    write_config(config_path, profile, mode=0o600)
    result = run("profiles", "list")
    assert result.code == 0, result.err
    assert "hunter2" not in result.out and "acme.example" in result.out


def test_an_escape_sequence_in_a_name_is_refused_and_never_reaches_a_terminal(qlik_env: Any, tmp_path: Path) -> None:
    src = make_file(tmp_path / "evil\x1b[31mred.bin", 3 * MIB)
    refused = run_process("upload", str(src), "--progress", "lines", "--no-resume")
    assert_error(refused, 7, "control character", "--name")
    assert "\x1b" not in refused.err
    assert qlik_env.store.blobs("qlik") == []
    named = run_process("upload", str(src), "--name", "red.bin", "--progress", "lines", "--limit-rate", "1M")
    assert named.code == 0, named.err
    assert "\x1b" not in named.err
