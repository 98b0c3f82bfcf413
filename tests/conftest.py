"""Shared fixtures: an isolated home per test, the real emulator on an ephemeral port, and ways to
run tmpup (in-process through the real entry point, or as a real subprocess).

Nothing here mocks `requests`: every test that moves bytes talks HTTP to `tmpup.emulator` or to a
real peer (the Node tus server, the tuspy client).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import io
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]

# Helper modules whose `assert`s should explain themselves as the test modules' do.
pytest.register_assert_rewrite("tests.helpers_providers")


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


class QuietHTTPServer(http.server.ThreadingHTTPServer):
    """A threaded test server that never writes into the stderr a test is capturing.

    socketserver prints a traceback to `sys.stderr` when a client resets the connection (which clients
    under test do on purpose); `run()` swaps `sys.stderr` for a buffer, so that traceback would land in
    tmpup's captured output. A client going away is expected and dropped; anything else goes to the real
    stderr (`sys.__stderr__`), where pytest shows it.
    """

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        import traceback

        traceback.print_exc(file=sys.__stderr__)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@contextlib.contextmanager
def serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[QuietHTTPServer]:
    """Serve `handler` on a free port of 127.0.0.1 from a daemon thread for the `with` block (its
    address is the server's `url`), then shut the server down and close its socket."""
    server = QuietHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own HOME, config file location and state dir, and no TMPUP_* leaking in."""
    home = tmp_path / "home"
    home.mkdir()
    for key in list(os.environ):
        if key.startswith("TMPUP_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
    monkeypatch.setenv("TMPUP_CONFIG", str(home / "tmpup.toml"))
    monkeypatch.setenv("TMPUP_STATE_DIR", str(home / "state"))
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.chdir(tmp_path)
    from tmpup import sources

    sources.CANCEL.clear()
    return home


@pytest.fixture
def config_path(isolated: Path) -> Path:
    return Path(os.environ["TMPUP_CONFIG"])


@pytest.fixture
def state_dir(isolated: Path) -> Path:
    return Path(os.environ["TMPUP_STATE_DIR"])


@pytest.fixture
def emulator() -> Iterator[Any]:
    from tmpup.emulator import Emulator

    emu = Emulator(port=0).start()
    try:
        yield emu
    finally:
        emu.stop()


def write_config(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    path.chmod(mode)
    return path


def write_profile(config_path: Path, name: str, keys: dict[str, Any]) -> str:
    """Write a config whose only, default, profile `name` holds `keys` (strings and numbers, written
    as JSON, which TOML reads alike); return `name`."""
    body = "".join(f"{key} = {json.dumps(value)}\n" for key, value in keys.items())
    write_config(config_path, f'default_profile = "{name}"\n\n[profiles.{name}]\n{body}')
    return name


@pytest.fixture
def qlik_profile(emulator: Any, config_path: Path) -> str:
    """A `qlik` default profile pointing at the emulator, with the token in a file."""
    return write_qlik_profile(emulator, config_path)


def write_qlik_profile(emulator: Any, config_path: Path, *, retries: int = 2, extra: str = "") -> str:
    """Write the default profile `q` (provider qlik) for `emulator`, its token in a file; `extra` is
    more TOML lines for the profile."""
    secret = config_path.parent / "qlik-token"
    secret.write_text(emulator.credentials.qlik_token + "\n")
    write_config(
        config_path,
        f"""
        default_profile = "q"

        [profiles.q]
        provider = "qlik"
        url = "{emulator.mount_url("qlik")}"
        token_file = "{secret}"
        retries = {retries}
        {extra}
        """,
    )
    return "q"


def write_tus_profile(emulator: Any, config_path: Path) -> str:
    """Write the default profile `t` (provider tus) at the emulator's generic tus mount, 2 retries."""
    write_config(
        config_path,
        f"""
        default_profile = "t"

        [profiles.t]
        provider = "tus"
        url = "{emulator.mount_url("tus")}"
        retries = 2
        """,
    )
    return "t"


def run(*args: str, stdin: bytes | None = None, env: dict[str, str] | None = None) -> Result:
    """Run tmpup in-process through `tmpup.cli.main` with real stdout/stderr capture."""
    from tmpup.cli import main

    out_buf, err_buf = io.BytesIO(), io.BytesIO()
    out = io.TextIOWrapper(out_buf, encoding="utf-8", write_through=True)
    err = io.TextIOWrapper(err_buf, encoding="utf-8", write_through=True)
    old = sys.stdout, sys.stderr, sys.stdin
    old_env = None
    if env is not None:
        old_env = dict(os.environ)
        os.environ.update(env)
    sys.stdout, sys.stderr = out, err
    if stdin is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    try:
        code = main(list(args))
    finally:
        sys.stdout, sys.stderr, sys.stdin = old
        if old_env is not None:
            os.environ.clear()
            os.environ.update(old_env)
    return Result(code, out_buf.getvalue().decode("utf-8"), err_buf.getvalue().decode("utf-8"))


def upload_record(*args: str) -> dict[str, Any]:
    """`tmpup upload ARGS --json --progress none`, which must succeed with nothing on stderr and one
    JSON result line; return that result."""
    result = run("upload", *args, "--json", "--progress", "none")
    assert result.code == 0, result.err
    assert result.err == ""
    (line,) = result.lines
    record: dict[str, Any] = json.loads(line)
    return record


def run_process(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> Result:
    """Run the real `tmpup` program (python -m tmpup) as a subprocess, stdout and stderr as pipes."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "tmpup", *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        env=full_env,
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def make_file(path: Path, size: int, seed: int = 1) -> Path:
    """A file of `size` pseudo-random bytes, written in blocks (never held whole in memory)."""
    import random

    rng = random.Random(seed)
    with path.open("wb") as fh:
        remaining = size
        while remaining:
            n = min(remaining, 1 << 20)
            fh.write(rng.randbytes(n))
            remaining -= n
    return path
