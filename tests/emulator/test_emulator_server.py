"""Running the emulator: `serve_forever` as `tmpup serve` uses it, quiet logs, data dir, memory use."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import pytest
import requests

from tmpup.emulator import Emulator

from .conftest import QLIK_AUTH, file_sha256, qlik_api, random_file

MIB = 1024 * 1024


def start_serve(*args: str) -> tuple[subprocess.Popen[str], str, list[str]]:
    """Run serve_forever in a child process; return it, its base URL and the banner lines."""
    code = textwrap.dedent(
        f"""
        import sys
        from tmpup.emulator import Credentials, serve_forever
        serve_forever("127.0.0.1", 0, {", ".join(args) or "None"})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    banner: list[str] = []
    while not banner or not banner[-1].startswith("Press Ctrl-C"):
        line = proc.stdout.readline()
        assert line, f"serve_forever died: {proc.stderr.read() if proc.stderr else ''}"
        banner.append(line.rstrip("\n"))
    url = banner[0].split(" listening on ", 1)[1].split()[0]
    return proc, url, banner


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_forever_prints_mounts_and_credentials_and_stops_cleanly(sig: signal.Signals) -> None:
    proc, url, banner = start_serve()
    try:
        text = "\n".join(banner)
        assert f"{url}/qlik" in text and "demo-qlik-token" in text
        assert f"{url}/tus/files/" in text
        assert f"{url}/_emulator/health" in text
        assert requests.get(f"{url}/_emulator/health").json()["status"] == "ok"
        assert requests.post(f"{url}/qlik/api/v1/temp-contents", data=b"x", headers=QLIK_AUTH).status_code == 201
    finally:
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert err == ""  # quiet by default: no request log, no traceback
    assert out == ""


def test_serve_forever_with_data_dir_access_log_and_credentials(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    proc, url, banner = start_serve(
        repr(str(data_dir)), 'Credentials(qlik_token="tok-123")', "sys.stdout", "access_log=True"
    )
    try:
        assert "tok-123" not in "\n".join(banner) and "Bearer token: ****" in "\n".join(banner)
        created = requests.post(
            f"{url}/qlik/api/v1/temp-contents", data=b"kept", headers={"Authorization": "Bearer tok-123"}
        )
        upload_id = created.headers["Location"].rsplit("/", 1)[1]
        assert (data_dir / "qlik" / upload_id).read_bytes() == b"kept"
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert "POST /qlik/api/v1/temp-contents" in err and " 201 " in err
    assert "\x1b[" not in err
    assert "Traceback" not in err
    assert (data_dir / "qlik" / upload_id).read_bytes() == b"kept"  # a given data dir is left alone


def test_port_in_use_is_an_oserror() -> None:
    with Emulator() as first, pytest.raises(OSError):
        Emulator(port=first.port).start()


def test_stop_removes_the_temporary_data_dir() -> None:
    emu = Emulator().start()
    root = emu.store.root
    assert root.is_dir()
    assert emu.url == f"http://127.0.0.1:{emu.port}" and emu.port > 0
    assert emu.mount_url("qlik") == f"{emu.url}/qlik"
    assert emu.mount_url("tus") == f"{emu.url}/tus/files/"
    emu.stop()
    emu.stop()  # idempotent
    assert not root.exists()
    assert not emu.running


def test_importing_the_package_is_light() -> None:
    code = "import sys, tmpup.emulator; print('werkzeug' in sys.modules, 'tmpup.emulator.server' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]


def test_big_upload_and_download_are_streamed(emu: Emulator, tmp_path: Path) -> None:
    """48 MiB through the raw API with the server in-process: peak Python memory stays a few MiB."""
    path = random_file(tmp_path, 48 * MIB + 5)
    tracemalloc.start()
    try:
        with open(path, "rb") as body:
            created = requests.post(qlik_api(emu), data=body, headers=QLIK_AUTH)
        assert created.status_code == 201
        digest = hashlib.sha256()
        with requests.get(f"{emu.url}/qlik{created.headers['Location']}", headers=QLIK_AUTH, stream=True) as got:
            for block in got.iter_content(MIB):
                digest.update(block)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest.hexdigest() == file_sha256(path)
    assert peak < 12 * MIB, f"peak {peak / MIB:.1f} MiB"
