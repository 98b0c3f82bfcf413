"""Real peers, not only our own server: tmpup's tus client against the official Node tus server
(`@tus/server` 1.10.2 with `@tus/file-store` 1.5.1, pinned in tests/peers), and the official Python
client `tuspy` uploading to tmpup's emulator, whose bytes tmpup then downloads and compares.

A peer that cannot run makes its tests fail (never skip): install the Node peer with
`npm ci --prefix tests/peers` (`.ci/test` does it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tusclient import client as tus_client

from tests.conftest import REPO, make_file, run, sha256_file, write_config
from tests.test_tus_client import MIB, assert_clean, finish, records, start, upload_id, upload_json, wait_until
from tmpup.emulator import Emulator

pytestmark = pytest.mark.peer

PEERS = REPO / "tests" / "peers"


@dataclass
class NodeTus:
    url: str  # the creation endpoint, http://127.0.0.1:PORT/files/
    directory: Path  # where @tus/file-store keeps each upload as a file named by its id

    def stored(self, upload_url: str) -> Path:
        return self.directory / upload_id(upload_url)

    def offset(self, upload_url: str) -> int:
        path = self.stored(upload_url)
        return path.stat().st_size if path.exists() else -1


def _start_node(directory: Path, *flags: str) -> Iterator[NodeTus]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("the Node tus peer needs `node` (Node.js 18 or newer) on PATH")
    if not (PEERS / "node_modules" / "@tus" / "server").is_dir():
        pytest.fail("the Node tus peer is not installed: run `npm ci --prefix tests/peers`")
    directory.mkdir()
    log = directory.with_suffix(".log")
    with log.open("w") as errors:  # a file, not a pipe nobody reads while the server runs
        proc = subprocess.Popen(
            [node, str(PEERS / "tus-server.js"), "0", str(directory), *flags],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
    assert proc.stdout is not None
    ready: list[str] = []
    reader = threading.Thread(target=lambda: ready.append(proc.stdout.readline() if proc.stdout else ""))
    reader.start()
    reader.join(timeout=20)
    line = ready[0] if ready else ""
    if not line.startswith("listening on "):
        proc.kill()
        proc.wait(timeout=10)
        pytest.fail(f"the Node tus server did not start: {line!r} {log.read_text()[-2000:]}")
    try:
        yield NodeTus(line.split()[-1], directory)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture
def node_tus(tmp_path: Path) -> Iterator[NodeTus]:
    yield from _start_node(tmp_path / "node-store")


@pytest.fixture
def node_tus_relative(tmp_path: Path) -> Iterator[NodeTus]:
    yield from _start_node(tmp_path / "node-store-relative", "--relative-location")


def use_profile(config_path: Path, url: str) -> None:
    write_config(config_path, f'[profiles.node]\nprovider = "tus"\nurl = "{url}"\nretries = 2\n')


# -- tmpup -> @tus/server ----------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "chunk"), [(0, None), (1, None), (5 * MIB + 3, None), (5 * MIB + 3, "2M")])
def test_tmpup_uploads_to_the_node_tus_server(
    node_tus: NodeTus, config_path: Path, state_dir: Path, tmp_path: Path, size: int, chunk: str | None
) -> None:
    use_profile(config_path, node_tus.url)
    src = make_file(tmp_path / "peer file.bin", size)
    record = upload_json(str(src), *(["--chunk-size", chunk] if chunk else []))
    assert record["url"].startswith(node_tus.url)
    assert sha256_file(node_tus.stored(record["url"])) == sha256_file(src)
    assert_clean(state_dir)

    info = json.loads(run("info", record["id"], "--json").out)
    assert info["size"] == size and info["offset"] == size and info["name"] == "peer file.bin"

    copy = tmp_path / "copy.bin"
    got = run("download", record["url"], "-o", str(copy), "--progress", "none")
    assert got.code == 0, got.err
    assert sha256_file(copy) == sha256_file(src)
    # @tus/server 1.10.2 survives repeated GETs (2.4.5 on Node 20 dies: DESIGN.md section 8)
    again = run("download", record["id"], "-o", str(tmp_path / "again.bin"), "--progress", "none")
    assert again.code == 0, again.err


def test_relative_location_is_resolved(
    node_tus_relative: NodeTus, config_path: Path, state_dir: Path, tmp_path: Path
) -> None:
    use_profile(config_path, node_tus_relative.url)
    src = make_file(tmp_path / "rel.bin", 2 * MIB)
    record = upload_json(str(src))
    assert record["url"].startswith("http://127.0.0.1:") and record["url"].startswith(node_tus_relative.url)
    assert sha256_file(node_tus_relative.stored(record["url"])) == sha256_file(src)
    assert_clean(state_dir)


def test_check_info_and_termination(node_tus: NodeTus, config_path: Path, tmp_path: Path) -> None:
    use_profile(config_path, node_tus.url)
    checked = run("profiles", "check", "node")
    assert checked.code == 0, checked.err
    assert "termination" in checked.out
    record = upload_json(str(make_file(tmp_path / "gone.bin", 1000)))
    deleted = run("delete", record["url"])
    assert deleted.code == 0, deleted.err
    assert not node_tus.stored(record["url"]).exists()
    assert run("info", record["id"]).code == 5


def test_killed_upload_resumes_against_the_node_server(
    node_tus: NodeTus, config_path: Path, state_dir: Path, tmp_path: Path
) -> None:
    use_profile(config_path, node_tus.url)
    src = make_file(tmp_path / "big.bin", 10 * MIB)
    proc = start("upload", str(src), "--limit-rate", "4M", "--progress", "none")
    try:
        wait_until(lambda: len(records(state_dir)) == 1, "the resume record")
        url = records(state_dir)[0]["upload_url"]
        wait_until(lambda: node_tus.offset(url) >= 2 * MIB, "2 MiB on the Node server")
    finally:
        proc.send_signal(signal.SIGKILL)
    code, _out, _err = finish(proc)
    assert code == -signal.SIGKILL
    assert 0 < node_tus.offset(url) < src.stat().st_size

    again = run("upload", str(src), "--json", "--progress", "none")
    assert again.code == 0, again.err
    result = json.loads(again.out)
    assert result["resumed"] is True and result["url"] == url
    assert "resuming at" in again.err
    assert sha256_file(node_tus.stored(url)) == sha256_file(src)
    assert_clean(state_dir)


# -- tuspy -> the emulator -> tmpup download ---------------------------------------------------------


@pytest.mark.parametrize("size", [1, 4 * MIB + 5])
def test_tuspy_upload_to_the_emulator_downloads_with_tmpup(
    emulator: Emulator, config_path: Path, tmp_path: Path, size: int
) -> None:
    src = make_file(tmp_path / "from tuspy.bin", size)
    uploader = tus_client.TusClient(emulator.mount_url("tus")).uploader(
        str(src), chunk_size=MIB, metadata={"filename": "from tuspy.bin"}
    )
    uploader.upload()
    assert uploader.url is not None
    use_profile(config_path, emulator.mount_url("tus"))
    info = json.loads(run("info", uploader.url, "--json").out)
    assert info["name"] == "from tuspy.bin" and info["status"] == "complete"
    out = tmp_path / "out"
    out.mkdir()
    got = run("download", upload_id(uploader.url), "-o", str(out), "--progress", "none")
    assert got.code == 0, got.err
    assert sha256_file(out / "from tuspy.bin") == sha256_file(src)


def test_tuspy_upload_to_emulated_qlik_downloads_with_tmpup(
    emulator: Emulator, qlik_profile: str, tmp_path: Path
) -> None:
    src = make_file(tmp_path / "report.csv", 3 * MIB + 1)
    auth = {"Authorization": f"Bearer {emulator.credentials.qlik_token}"}
    client = tus_client.TusClient(f"{emulator.mount_url('qlik')}/api/v1/temp-contents/files", headers=auth)
    uploader = client.uploader(str(src), chunk_size=MIB, metadata={"filename": "report.csv", "ttl": "600"})
    uploader.upload()
    assert uploader.url is not None
    temp_id = upload_id(uploader.url)
    info: dict[str, Any] = json.loads(run("info", temp_id, "--json").out)
    assert info["name"] == "report.csv" and info["ttl_seconds"] == 600
    copy = tmp_path / "copy.csv"
    got = run("download", temp_id, "-o", str(copy), "--progress", "none")
    assert got.code == 0, got.err
    assert sha256_file(copy) == sha256_file(src)


def test_node_peer_is_installed_where_ci_expects_it() -> None:
    """The pins of DESIGN.md section 8, as installed (a drifted lock file would test another server)."""
    lock = json.loads((PEERS / "package-lock.json").read_text())
    packages = lock["packages"]
    assert packages["node_modules/@tus/server"]["version"] == "1.10.2"
    assert packages["node_modules/@tus/file-store"]["version"] == "1.5.1"
    installed = json.loads((PEERS / "node_modules" / "@tus" / "server" / "package.json").read_text())
    assert installed["version"] == "1.10.2", "run `npm ci --prefix tests/peers`"
    assert os.access(PEERS / "tus-server.js", os.R_OK)
