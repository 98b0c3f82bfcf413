"""`tmpup serve` options as a real process (credentials from options and TMPUP_EMULATOR_* variables,
--max-size, --cert/--key, a busy port), and the server features behind them in-process: HTTPS and
the idle timeout that frees an upload a stalled client was feeding."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import certifi
import pytest
import requests
import trustme

from tmpup.emulator import Emulator

from .conftest import OCTET, TUS, qlik_api, sha256

DEFAULT_QLIK = {"Authorization": "Bearer demo-qlik-token"}


class Serve:
    """A running `python -m tmpup serve --port 0 ...` with its printed base URL and banner."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.args = [sys.executable, "-m", "tmpup", "serve", "--port", "0", *args]
        self.proc = subprocess.Popen(
            self.args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        assert self.proc.stdout is not None
        self.banner: list[str] = []
        while not self.banner or not self.banner[-1].startswith("Press Ctrl-C"):
            line = self.proc.stdout.readline()
            if not line:
                _, err = self.proc.communicate(timeout=20)
                raise AssertionError(f"tmpup serve exited {self.proc.returncode}: {err}")
            self.banner.append(line.rstrip("\n"))
        self.url = self.banner[0].split(" listening on ", 1)[1].split()[0]

    def stop(self) -> tuple[int, str, str]:
        self.proc.send_signal(signal.SIGINT)
        out, err = self.proc.communicate(timeout=20)
        return self.proc.returncode, out, err


@pytest.fixture
def serve() -> Iterator[list[Serve]]:
    """Collects started servers and makes sure each one stopped cleanly and quietly."""
    started: list[Serve] = []
    yield started
    for server in started:
        code, out, err = server.stop()
        assert code == 0 and out == "" and err == "", err


def start(started: list[Serve], *args: str, env: dict[str, str] | None = None) -> Serve:
    server = Serve(*args, env=env)
    started.append(server)
    return server


# -- credentials -----------------------------------------------------------------------------------


def test_credentials_from_options_and_environment(serve: list[Serve]) -> None:
    server = start(
        serve,
        "--qlik-token",
        "opt-qlik-token",
        "--thulium-username",
        "robot",
        env={"TMPUP_EMULATOR_THULIUM_PASSWORD": "env-thulium-pass", "TMPUP_EMULATOR_TUS_TOKEN": "env-tus-token"},
    )
    banner = "\n".join(server.banner)
    # Chosen secrets may be real ones: the banner masks them (demo values it prints as they are).
    assert "opt-qlik-token" not in banner and "env-thulium-pass" not in banner and "env-tus-token" not in banner
    assert "Bearer token: ****" in banner and "password: ****" in banner
    assert "demo-qlik-token" not in banner
    # The environment's secrets never reached the command line (which `ps` shows).
    assert not any("env-" in arg for arg in server.args)

    qlik = f"{server.url}/qlik/api/v1/temp-contents"
    assert requests.post(qlik, data=b"x", headers={"Authorization": "Bearer opt-qlik-token"}).status_code == 201
    assert requests.post(qlik, data=b"x", headers=DEFAULT_QLIK).status_code == 401

    thulium = f"{server.url}/thulium/api/temporary_files?filename=a.txt"
    assert requests.post(thulium, data=b"x", auth=("robot", "env-thulium-pass")).status_code == 200
    assert requests.post(thulium, data=b"x", auth=("api_user", "demo-thulium-pass")).status_code == 401

    tus = f"{server.url}/tus/files/"
    created = requests.post(tus, headers={**TUS, "Upload-Length": "1", "Authorization": "Bearer env-tus-token"})
    assert created.status_code == 201
    assert requests.post(tus, headers={**TUS, "Upload-Length": "1"}).status_code == 401


def test_an_option_wins_over_its_environment_variable(serve: list[Serve]) -> None:
    server = start(serve, "--qlik-token", "from-option", env={"TMPUP_EMULATOR_QLIK_TOKEN": "from-env"})
    qlik = f"{server.url}/qlik/api/v1/temp-contents"
    assert requests.post(qlik, data=b"x", headers={"Authorization": "Bearer from-option"}).status_code == 201
    assert requests.post(qlik, data=b"x", headers={"Authorization": "Bearer from-env"}).status_code == 401


def test_help_names_the_environment_variables() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tmpup", "serve", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )
    assert result.returncode == 0
    for name in ("QLIK_TOKEN", "TUS_TOKEN", "THULIUM_PASSWORD", "PYRUS_SECURITY_KEY", "KF5_API_TOKEN", "ET_PASSWORD"):
        assert f"TMPUP_EMULATOR_{name}" in result.stdout
    assert "ps" in result.stdout  # why secrets belong in the environment


# -- limits ----------------------------------------------------------------------------------------


def test_max_size_gives_413(serve: list[Serve]) -> None:
    server = start(serve, "--max-size", "1K")
    assert "max upload 1.0 KiB (1024 bytes)" in "\n".join(server.banner)
    tus = f"{server.url}/tus/files/"
    assert requests.options(tus, headers=TUS).headers["Tus-Max-Size"] == "1024"
    assert requests.post(tus, headers={**TUS, "Upload-Length": "1025"}).status_code == 413
    assert requests.post(tus, headers={**TUS, "Upload-Length": "1024"}).status_code == 201
    qlik = f"{server.url}/qlik/api/v1/temp-contents"
    assert requests.post(qlik, data=b"x" * 1025, headers=DEFAULT_QLIK).status_code == 413
    assert requests.post(qlik, data=b"x" * 1024, headers=DEFAULT_QLIK).status_code == 201


def run_serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tmpup", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_a_busy_port_is_one_line_and_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_serve("--port", str(port))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [result.stderr.rstrip("\n")]
    assert result.stderr.startswith(f"tmpup: error: cannot listen on 127.0.0.1:{port}: ")
    assert "--port" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["--idle-timeout", "soon"], {}, "--idle-timeout"),
        (["--max-size", "lots"], {}, "--max-size"),
        (["--key", __file__], {}, "--key needs --cert"),
        (["--cert", __file__], {}, "cannot load the TLS certificate"),
        (["--port", "70000"], {}, "--port"),
        ([], {"TMPUP_EMULATOR_QLIK_TOKEN": " "}, "TMPUP_EMULATOR_QLIK_TOKEN"),
        (["--data-dir", __file__], {}, "is not a folder"),
        (["--data-dir", "/proc/tmpup-cannot-be-here"], {}, "cannot be written"),
    ],
)
def test_bad_option_values_are_usage_errors(args: list[str], env: dict[str, str], needle: str) -> None:
    result = run_serve("--port", "0", *args, env=env)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("tmpup: error: ") and needle in line
    assert result.stdout == ""


# -- TLS -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def test_serve_with_cert_and_key_speaks_https(serve: list[Serve], ca: trustme.CA, tmp_path: Path) -> None:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_pem, key_pem, ca_pem = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_pem))
    cert.private_key_pem.write_to_path(str(key_pem))
    ca.cert_pem.write_to_path(str(ca_pem))
    server = start(serve, "--cert", str(cert_pem), "--key", str(key_pem))
    assert server.url.startswith("https://127.0.0.1:")
    assert f"{server.url}/qlik" in "\n".join(server.banner)
    created = requests.post(f"{server.url}/qlik/api/v1/temp-contents", data=b"tls", headers=DEFAULT_QLIK, verify=ca_pem)
    assert created.status_code == 201
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{server.url}/_emulator/health", verify=certifi.where())  # a public bundle


def test_a_client_that_never_handshakes_does_not_block_others(ca: trustme.CA, tmp_path: Path) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    emu = Emulator(ssl_context=context, idle_timeout=1.0)
    with emu, socket.create_connection(("127.0.0.1", emu.port)) as silent:  # port: bound on entry
        assert requests.get(f"{emu.url}/_emulator/health", verify=ca_pem, timeout=5).json()["status"] == "ok"
        silent.settimeout(5)
        assert silent.recv(1) == b""  # dropped after the idle timeout, not held forever


# -- idle timeout ----------------------------------------------------------------------------------


def stalled_patch(port: int, path: str, length: int, sent: bytes) -> socket.socket:
    """A raw PATCH announcing `length` body bytes that sends only `sent`, then goes silent."""
    sock = socket.create_connection(("127.0.0.1", port))
    head = (
        f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTus-Resumable: 1.0.0\r\n"
        f"Content-Type: {OCTET}\r\nUpload-Offset: 0\r\nContent-Length: {length}\r\n\r\n"
    )
    sock.sendall(head.encode("ascii") + sent)
    return sock


def poll_head(url: str, until: object, deadline: float) -> requests.Response:
    """HEAD the upload until `until(response)` holds or `deadline` (monotonic) passes."""
    while True:
        response = requests.head(url, headers=TUS, timeout=5)
        if until(response) or time.monotonic() > deadline:  # type: ignore[operator]
            return response
        time.sleep(0.02)


def test_a_stalled_patch_is_dropped_and_keeps_what_arrived() -> None:
    body = os.urandom(100_000)
    arrived = body[:37_000]
    with Emulator(idle_timeout=1.0) as emu:
        created = requests.post(f"{emu.url}/tus/files/", headers={**TUS, "Upload-Length": str(len(body))})
        location = created.headers["Location"]
        path = location.split(str(emu.port), 1)[1]
        started = time.monotonic()
        with stalled_patch(emu.port, path, len(body), arrived) as sock:
            busy = poll_head(location, lambda r: r.status_code == 423, started + 0.8)
            assert busy.status_code == 423  # the PATCH is still waiting for its body
            after = poll_head(location, lambda r: r.status_code != 423, started + 10)
            assert time.monotonic() - started >= 0.9  # freed by the timeout, not earlier
            assert after.status_code == 200
            assert after.headers["Upload-Offset"] == str(len(arrived))
            sock.settimeout(5)
            with contextlib.suppress(ConnectionResetError):  # no answer: the server reset the connection
                assert sock.recv(1024) == b""
        rest = requests.patch(
            location,
            data=body[len(arrived) :],
            headers={**TUS, "Content-Type": OCTET, "Upload-Offset": str(len(arrived))},
        )
        assert rest.status_code == 204 and rest.headers["Upload-Offset"] == str(len(body))
        upload_id = location.rsplit("/", 1)[1]
        assert emu.blob_sha256("tus", upload_id) == sha256(body)


def test_a_stalled_qlik_upload_over_https_is_freed_too(ca: trustme.CA, tmp_path: Path) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    with Emulator(ssl_context=context, idle_timeout=0.5) as emu:
        auth = {**TUS, **DEFAULT_QLIK}
        created = requests.post(f"{qlik_api(emu)}/files", headers={**auth, "Upload-Length": "10"}, verify=ca_pem)
        assert created.status_code == 201, created.text
        location = created.headers["Location"]
        if location.startswith("/"):
            location = f"{emu.url}/qlik{location}"
        path = location.split(str(emu.port), 1)[1]
        client = ssl.create_default_context(cafile=str(ca_pem))
        raw = socket.create_connection(("127.0.0.1", emu.port))
        with client.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            head = (
                f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
                f"Authorization: {DEFAULT_QLIK['Authorization']}\r\n"
                f"Content-Type: {OCTET}\r\nUpload-Offset: 0\r\nContent-Length: 10\r\n\r\n"
            )
            started = time.monotonic()
            sock.sendall(head.encode("ascii") + b"abcd")
            # Until the stalled PATCH has been dropped the answer is 423 (or offset 0 if the HEAD
            # overtook it); afterwards 200 with the 4 bytes that arrived.
            while True:
                answer = requests.head(location, headers=auth, verify=ca_pem, timeout=5)
                done = answer.status_code == 200 and answer.headers.get("Upload-Offset") == "4"
                if done or time.monotonic() > started + 10:
                    break
                time.sleep(0.02)
            assert time.monotonic() - started >= 0.4
        assert answer.status_code == 200
        assert answer.headers["Upload-Offset"] == "4"


def test_idle_timeout_must_be_positive_or_none() -> None:
    with pytest.raises(ValueError):
        Emulator(idle_timeout=0)
    assert Emulator(idle_timeout=None).idle_timeout is None
    assert Emulator().idle_timeout == 60.0


def test_serve_idle_timeout_option(serve: list[Serve]) -> None:
    server = start(serve, "--idle-timeout", "0.5")
    assert "idle connections dropped after 0.5s" in "\n".join(server.banner)
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as idle:
        idle.settimeout(10)
        started = time.monotonic()
        assert idle.recv(1) == b""
        assert 0.3 < time.monotonic() - started < 5
