"""tmpup's tus client and the generic `tus` provider against the emulator over real HTTP.

Also the helpers the other tus/resume test modules share (profiles, background processes,
waiting for a server offset, "nothing half-done locally").
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import Result, make_file, run, sha256_file, write_config, write_tus_profile
from tests.rss import peak_rss_mib
from tmpup.emulator import Emulator, Fault
from tmpup.protocols.tus import decode_metadata, encode_metadata, parse_http_date

MIB = 1024 * 1024
TUS = {"Tus-Resumable": "1.0.0"}


# -- shared helpers ------------------------------------------------------------------------------


@pytest.fixture
def tus_profile(emulator: Any, config_path: Path) -> str:
    """A `tus` default profile at the emulator's generic tus mount."""
    return write_tus_profile(emulator, config_path)


def upload_json(*args: str) -> dict[str, Any]:
    result = run("upload", *args, "--json", "--progress", "none")
    assert result.code == 0, result.err
    (line,) = result.lines
    record: dict[str, Any] = json.loads(line)
    return record


def upload_id(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def records(state_dir: Path) -> list[dict[str, Any]]:
    uploads = state_dir / "uploads"
    if not uploads.is_dir():
        return []
    return [json.loads(p.read_text()) for p in sorted(uploads.glob("*.json"))]


def assert_clean(state_dir: Path) -> None:
    """Nothing half-done locally: no record, no lock, no temp file of an atomic write, no spool."""
    uploads = state_dir / "uploads"
    left = sorted(p.name for p in uploads.iterdir()) if uploads.is_dir() else []
    assert left == [], f"left in {uploads}: {left}"
    spool = state_dir / "spool"
    assert not spool.is_dir() or list(spool.iterdir()) == []


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def server_offset(emu: Emulator, provider: str, url: str) -> int:
    blob = emu.store.get(provider, upload_id(url))
    return -1 if blob is None else blob.offset


def start(*args: str) -> subprocess.Popen[bytes]:
    """The real tmpup program in the background (stdout/stderr piped)."""
    return subprocess.Popen(
        [sys.executable, "-m", "tmpup", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
    )


def finish(proc: subprocess.Popen[bytes], timeout: float = 60) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out.decode(), err.decode()


def fail_with_503(emu: Emulator, provider: str, *args: str, stdin: bytes | None = None) -> Result:
    """`tmpup upload ARGS --progress none` while the emulator answers every PATCH of `provider` with
    503: the upload must fail with exit 10 once its retries are spent. The fault is cleared after."""
    emu.faults.add(Fault(provider=provider, method="PATCH", status=503, retry_after=0, times=None))
    failed = run("upload", *args, "--progress", "none", stdin=stdin)
    emu.faults.clear()
    assert failed.code == 10, failed.err
    return failed


def interrupt_midway(
    emu: Emulator, state_dir: Path, provider: str, args: list[str], sig: int = signal.SIGKILL, at: int = 2 * MIB
) -> tuple[dict[str, Any], tuple[int, str, str]]:
    """Start a rate-limited upload, let `at` bytes reach the server, then send `sig`."""
    proc = start("upload", *args, "--limit-rate", "4M", "--progress", "none")
    try:
        wait_until(lambda: len(records(state_dir)) == 1, "the resume record")
        (record,) = records(state_dir)
        wait_until(lambda: server_offset(emu, provider, record["upload_url"]) >= at, f"{at} bytes on the server")
    finally:
        proc.send_signal(sig)
    result = finish(proc)
    assert 0 < server_offset(emu, provider, record["upload_url"]) < record["size"]
    return record, result


# -- tus metadata and dates ---------------------------------------------------------------------


def test_metadata_values_are_base64_and_round_trip() -> None:
    meta = {"filename": "résumé 2024,final.pdf", "ttl": "3600", "empty": ""}
    header = encode_metadata(meta)
    name = base64.b64encode(meta["filename"].encode()).decode()
    assert header == f"filename {name},ttl {base64.b64encode(b'3600').decode()},empty"
    assert decode_metadata(header) == meta
    # lenient like tusd: garbage pairs are skipped, a trailing comma is fine
    assert decode_metadata("a YQ==, b not-base64!, c d e, ,d ZA==,") == {"a": "a", "d": "d"}


@pytest.mark.parametrize("key", ["", "with space", "com,ma", "ключ"])
def test_bad_metadata_keys_are_refused(key: str) -> None:
    with pytest.raises(ValueError):
        encode_metadata({key: "x"})


def test_upload_expires_dates() -> None:
    when = parse_http_date("Wed, 25 Nov 2026 20:00:00 GMT")
    assert when is not None and when.tzinfo is not None and when.hour == 20
    assert parse_http_date("soon") is None and parse_http_date(None) is None


# -- the generic tus provider -------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 3 * MIB + 5])
def test_round_trip_upload_info_download_delete(
    tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path, size: int
) -> None:
    src = make_file(tmp_path / "src.bin", size)
    record = upload_json(str(src))
    assert record["provider"] == "tus" and record["size"] == size and record["resumed"] is False
    assert record["url"].startswith(emulator.mount_url("tus")) and record["id"] == upload_id(record["url"])
    assert record["expires_at"] is not None  # the emulator sends Upload-Expires
    assert emulator.blob_sha256("tus", record["id"]) == sha256_file(src)
    assert_clean(state_dir)

    info = run("info", record["id"], "--json")
    assert info.code == 0, info.err
    fields = json.loads(info.out)
    assert fields["size"] == size and fields["offset"] == size and fields["status"] == "complete"
    assert fields["name"] == "src.bin"

    for handle in (record["id"], record["url"]):
        target = tmp_path / f"copy-{len(handle)}.bin"
        got = run("download", handle, "-o", str(target), "--progress", "none")
        assert got.code == 0, got.err
        assert sha256_file(target) == sha256_file(src)

    assert run("delete", record["id"]).code == 0
    assert run("info", record["url"]).code == 5


def test_human_output_is_the_upload_url(tus_profile: str, emulator: Emulator, tmp_path: Path) -> None:
    result = run("upload", str(make_file(tmp_path / "a.txt", 10)), "--progress", "none")
    assert result.code == 0, result.err
    assert result.out.strip().startswith(emulator.mount_url("tus"))


def test_metadata_carries_name_and_type(tus_profile: str, emulator: Emulator, tmp_path: Path) -> None:
    src = make_file(tmp_path / "data.bin", 100)
    record = upload_json(str(src), "--name", "Über report, 2024.pdf")
    blob = emulator.store.find("tus", record["id"])
    assert blob.name == "Über report, 2024.pdf"
    assert blob.metadata["filetype"] == "application/pdf"


def count_requests(emu: Emulator, method: str) -> Callable[[], int]:
    """Count the requests of one method reaching the tus mount (a zero-delay fault that is used up)."""
    emu.faults.add(Fault(provider="tus", method=method, delay=0.0, times=10_000))

    def used() -> int:
        return sum(10_000 - (left or 0) for fault, left in emu.faults.active() if fault.method == method)

    return used


def test_whole_remainder_goes_in_one_patch(tus_profile: str, emulator: Emulator, tmp_path: Path) -> None:
    patches = count_requests(emulator, "PATCH")
    src = make_file(tmp_path / "one.bin", 5 * MIB + 3)
    record = upload_json(str(src))
    assert patches() == 1
    assert emulator.blob_sha256("tus", record["id"]) == sha256_file(src)


def test_chunk_size_splits_the_upload(tus_profile: str, emulator: Emulator, tmp_path: Path) -> None:
    patches = count_requests(emulator, "PATCH")
    src = make_file(tmp_path / "chunks.bin", 3 * MIB + 1)
    record = upload_json(str(src), "--chunk-size", "1M")
    assert patches() == 4
    assert emulator.blob_sha256("tus", record["id"]) == sha256_file(src)


def test_412_is_a_configuration_error(tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path) -> None:
    emulator.faults.add(Fault(provider="tus", method="POST", status=412))
    result = run("upload", str(make_file(tmp_path / "a", 10)), "--progress", "none")
    assert result.code == 3, result.err
    assert "tus 1.0.0" in result.err
    assert_clean(state_dir)


def test_413_too_large_leaves_nothing(config_path: Path, state_dir: Path, tmp_path: Path) -> None:
    with Emulator(max_size=1000) as emu:
        write_config(config_path, f'[profiles.t]\nprovider = "tus"\nurl = "{emu.mount_url("tus")}"\n')
        result = run("upload", str(make_file(tmp_path / "big", 1001)), "--progress", "none")
    assert result.code == 7, result.err
    assert "413" in result.err
    assert_clean(state_dir)


def test_415_keeps_the_record_and_resume_finishes(
    tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path
) -> None:
    src = make_file(tmp_path / "f.bin", MIB)
    emulator.faults.add(Fault(provider="tus", method="PATCH", status=415))
    failed = run("upload", str(src), "--progress", "none")
    assert failed.code == 7, failed.err
    assert f"tmpup resume {src}" in failed.err
    assert len(records(state_dir)) == 1
    done = run("resume", str(src), "--json", "--progress", "none")
    assert done.code == 0, done.err
    assert emulator.blob_sha256("tus", json.loads(done.out)["id"]) == sha256_file(src)
    assert_clean(state_dir)


def test_409_realigns_with_the_server(tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path) -> None:
    """Someone else appends while our first PATCH waits: 409, HEAD, and we continue from their offset."""
    src = make_file(tmp_path / "f.bin", 2 * MIB)
    emulator.faults.add(Fault(provider="tus", method="PATCH", delay=1.0, times=1))
    head = src.read_bytes()[:1000]
    intruded: list[object] = []  # the intruder's status, or its failure: asserted below, not in the thread

    def intruder() -> None:
        try:
            # Only once our PATCH is the one being held (the fault used up), so it must be the one to conflict.
            wait_until(lambda: emulator.faults.active() == [], "our PATCH to be held")
            url = records(state_dir)[0]["upload_url"]
            headers = {**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
            intruded.append(requests.patch(url, data=head, headers=headers).status_code)
        except BaseException as exc:  # reported by the test itself, after join()
            intruded.append(exc)

    thread = threading.Thread(target=intruder)
    thread.start()
    result = run("upload", str(src), "--json", "--progress", "none", "--debug")
    thread.join()
    assert intruded == [204]
    assert result.code == 0, result.err
    log = result.err.splitlines()
    conflict = next(i for i, line in enumerate(log) if line.startswith("tmpup: < 409 "))
    after = log[conflict:]
    assert any(line.startswith("tmpup: > HEAD ") for line in after)
    assert "tmpup: >   Upload-Offset: 1000" in after  # the next PATCH starts where the intruder left it
    record = json.loads(result.out)
    assert emulator.blob_sha256("tus", record["id"]) == sha256_file(src)


def test_credentials_never_go_to_another_origin(config_path: Path, state_dir: Path, tmp_path: Path) -> None:
    """A Location on another origin gets neither the Bearer token nor the profile's extra headers."""
    from tmpup.emulator import Credentials
    from tmpup.emulator.tus import TusMount

    seen: list[tuple[str, str, dict[str, str]]] = []  # (method, host, lower-cased headers) as the server got them

    class StorageHost(TusMount):
        """Creation needs the token; uploads live on another origin (this server named `localhost`)
        which, like capability URLs (Vimeo's tus links), needs none, unless `open_storage` is off."""

        open_storage = True

        def authenticate(self, request: Any, endpoint: str) -> Any:
            host = request.host.rsplit(":", 1)[0]
            seen.append((request.method, host, {k.lower(): v for k, v in request.headers.items()}))
            if host == "localhost" and self.open_storage:
                return None
            return super().authenticate(request, endpoint)

    with Emulator(credentials=Credentials(tus_token="tok-SECRET"), mounts=[StorageHost]) as emu:
        mount = emu.mounts["tus"]
        assert isinstance(mount, StorageHost)
        mount.tus.upload_base = f"http://localhost:{emu.port}/tus/files/"
        secret = tmp_path / "token"
        secret.write_text("tok-SECRET\n")
        write_config(
            config_path,
            f"""
            [profiles.t]
            provider = "tus"
            url = "{emu.mount_url("tus")}"
            token_file = "{secret}"
            headers = {{ X-Api-Key = "hdr-SECRET" }}
            retries = 1
            """,
        )
        src = make_file(tmp_path / "f.bin", 3 * MIB)
        result = run("upload", str(src), "--json", "--progress", "none")
        assert result.code == 0, result.err
        record = json.loads(result.out)
        assert record["url"].startswith(f"http://localhost:{emu.port}/tus/files/")
        assert emu.blob_sha256("tus", record["id"]) == sha256_file(src)
        (warning,) = [line for line in result.err.splitlines() if "not sent there" in line]
        assert warning.startswith("tmpup: warning: ") and f"http://127.0.0.1:{emu.port}" in warning
        assert "SECRET" not in result.err

        # info and delete by the foreign URL withhold them too
        assert run("info", record["url"], "--json").code == 0
        assert run("delete", record["url"]).code == 0
        home = [h for _m, host, h in seen if host == "127.0.0.1"]
        away = [(m, h) for m, host, h in seen if host == "localhost"]
        assert home and all(h["authorization"] == "Bearer tok-SECRET" and h["x-api-key"] == "hdr-SECRET" for h in home)
        assert {m for m, _h in away} >= {"PATCH", "HEAD", "DELETE"}
        assert all("authorization" not in h and "x-api-key" not in h for _m, h in away), away
        assert all(h["tus-resumable"] == "1.0.0" for _m, h in away)

        # a foreign origin that does want credentials: refused (4), and the error says why
        mount.open_storage = False
        refused = run("upload", str(make_file(tmp_path / "g.bin", 1000, seed=2)), "--progress", "none")
        assert refused.code == 4, refused.err
        assert f"only to http://127.0.0.1:{emu.port}" in refused.err and "SECRET" not in refused.err


def test_bearer_token_and_extra_headers(config_path: Path, state_dir: Path, tmp_path: Path) -> None:
    from tmpup.emulator import Credentials

    with Emulator(credentials=Credentials(tus_token="s3cret-tus-token")) as emu:
        secret = tmp_path / "token"
        secret.write_text("s3cret-tus-token\n")
        write_config(
            config_path,
            f"""
            [profiles.t]
            provider = "tus"
            url = "{emu.mount_url("tus")}"
            token_file = "{secret}"
            headers = {{ X-Tenant = "acme" }}
            """,
        )
        src = make_file(tmp_path / "f.bin", 10)
        record = upload_json(str(src))
        assert emu.blob_sha256("tus", record["id"]) == sha256_file(src)
        assert run("profiles", "check").code == 0
        secret.write_text("wrong\n")
        refused = run("upload", str(src), "--progress", "none")
        assert refused.code == 4, refused.err
        assert "s3cret" not in refused.err


# -- Qlik: tus above the threshold or with --resumable ------------------------------------------


def test_qlik_uses_tus_above_the_threshold(qlik_profile: str, emulator: Emulator, tmp_path: Path) -> None:
    env = {"TMPUP_RESUMABLE_THRESHOLD": "1M"}
    big = make_file(tmp_path / "big.csv", 2 * MIB + 1)
    result = run("upload", str(big), "--json", "--progress", "none", "--ttl", "2h", env=env)
    assert result.code == 0, result.err
    record = json.loads(result.out)
    assert record["upload_url"].endswith(f"/api/v1/temp-contents/files/{record['id']}")
    assert len(record["id"]) == 24 and record["ttl"] == 7200
    assert emulator.blob_sha256("qlik", record["id"]) == sha256_file(big)
    blob = emulator.store.find("qlik", record["id"])
    assert blob.name == "big.csv" and blob.ttl == 7200  # metadata ttl arrived Base64-encoded
    info = json.loads(run("info", record["id"], "--json").out)
    assert info["size"] == big.stat().st_size and info["ttl_seconds"] == 7200
    copy = tmp_path / "copy.csv"
    assert run("download", record["id"], "-o", str(copy), "--progress", "none").code == 0
    assert sha256_file(copy) == sha256_file(big)

    small = make_file(tmp_path / "small.csv", 1000)
    raw = json.loads(run("upload", str(small), "--json", "--progress", "none", env=env).out)
    assert "upload_url" not in raw
    forced = json.loads(run("upload", str(small), "--json", "--progress", "none", "--resumable").out)
    assert forced["upload_url"].endswith(forced["id"])
    never = json.loads(run("upload", str(big), "--json", "--progress", "none", "--no-resume", env=env).out)
    assert "upload_url" not in never


# -- memory ----------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("chunk", [None, "300M"])
def test_1_gib_tus_upload_keeps_memory_flat(
    tus_profile: str, emulator: Emulator, tmp_path: Path, chunk: str | None
) -> None:
    src = make_file(tmp_path / "huge.bin", 1024 * MIB)
    args = ["upload", str(src), "--progress", "lines"] + (["--chunk-size", chunk] if chunk else [])
    code, rss, out = peak_rss_mib(args)
    assert code == 0
    assert 10 < rss < 80, f"peak RSS {rss:.0f} MiB for a 1 GiB tus upload (chunk {chunk})"
    assert emulator.blob_sha256("tus", upload_id(out.decode().strip())) == sha256_file(src)


def test_a_proxys_413_on_patch_halves_the_chunks_and_finishes(
    tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path
) -> None:
    # A proxy's body limit answers 413 to a large PATCH (the upload's own size was accepted at
    # creation): the bytes already sent stay, smaller PATCHes get through.
    src = make_file(tmp_path / "f.bin", 3 * MIB + 11)
    emulator.faults.add(Fault(provider="tus", method="PATCH", status=413, times=2))
    result = run("upload", str(src), "--json", "--progress", "none")
    assert result.code == 0, result.err
    assert "413" in result.err and "continuing in PATCHes of 768.0 KiB" in result.err
    assert emulator.blob_sha256("tus", json.loads(result.out)["id"]) == sha256_file(src)
    assert_clean(state_dir)
