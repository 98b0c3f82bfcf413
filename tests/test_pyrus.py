"""Pyrus end to end: the real CLI against the emulator over HTTP.

`pyrus_config` and `pyrus_download_id` are meant for the shared contract suite as well.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_file, run, sha256_file, upload_record, write_profile
from tests.rss import peak_rss_mib
from tmpup.emulator import Fault

NAMES = ["plain.txt", "with space.txt", "ünïcødé отчёт 日本.csv", "quote\"s and 'apos'.txt", "a&b#c%d;e=f.bin"]


def pyrus_config(emulator: Any, config_path: Path, **keys: str) -> str:
    """Write a default `pyrus` profile for the emulator (security key in a file); return its name.

    `keys` add profile keys or replace the defaults (`url`, `login`, ...).
    """
    secret = config_path.parent / "pyrus-security-key"
    secret.write_text(emulator.credentials.pyrus_security_key + "\n")
    values = {
        "provider": "pyrus",
        "url": f"{emulator.url}/pyrus",
        "login": emulator.credentials.pyrus_login,
        "security_key_file": str(secret),
        "retries": 2,
        **keys,
    }
    return write_profile(config_path, "pyrus", values)


def pyrus_download_id(emulator: Any, guid: str) -> str:
    """The numeric id to download an upload by. EMULATOR-ONLY: real Pyrus numbers a file once attached."""
    return str(emulator.mounts["pyrus"].attachment_id(guid))


def mount(emulator: Any) -> Any:
    return emulator.mounts["pyrus"]


@pytest.fixture
def profile(emulator: Any, config_path: Path) -> str:
    return pyrus_config(emulator, config_path)


@pytest.mark.parametrize("size", [1, 5 * 1024 * 1024 + 7])
def test_round_trip(profile: str, emulator: Any, tmp_path: Path, size: int) -> None:
    src = make_file(tmp_path / "src.bin", size)
    record = upload_record(str(src))
    assert record["provider"] == "pyrus" and record["profile"] == profile and record["size"] == size
    assert record["url"] is None and record["expires_at"] is None  # Pyrus gives neither
    import hashlib

    assert record["md5_hash"] == hashlib.md5(src.read_bytes()).hexdigest()
    numeric = pyrus_download_id(emulator, record["id"])
    assert emulator.blob_sha256("pyrus", numeric) == sha256_file(src)

    info = run("info", record["id"], "--json")
    assert info.code == 0, info.err
    fields = json.loads(info.out)
    assert fields["source"] == "local receipt"
    assert (fields["id"], fields["name"], fields["size"]) == (record["id"], "src.bin", size)
    assert fields["md5_hash"] == record["md5_hash"]

    out = tmp_path / "out"
    out.mkdir()
    got = run("download", numeric, "-o", str(out), "--progress", "none")
    assert got.code == 0, got.err
    assert sha256_file(out / "src.bin") == sha256_file(src)


@pytest.mark.parametrize("name", NAMES)
def test_odd_names_arrive_exactly(profile: str, emulator: Any, tmp_path: Path, name: str) -> None:
    src = make_file(tmp_path / "data.bin", 1000)
    record = upload_record(str(src), "--name", name)
    assert record["name"] == name
    blob = emulator.store.get("pyrus", pyrus_download_id(emulator, record["id"]))
    assert blob.name == name
    dest = tmp_path / "dl"
    dest.mkdir()
    got = run("download", pyrus_download_id(emulator, record["id"]), "-o", str(dest), "--progress", "none")
    assert got.code == 0, got.err
    assert sha256_file(dest / name) == sha256_file(src)


def test_a_backslash_in_a_file_name_arrives_exactly(profile: str, emulator: Any, tmp_path: Path) -> None:
    # --name refuses path separators, but on POSIX a file may be called this.
    src = make_file(tmp_path / 'back\\slash "q".txt', 10)
    record = upload_record(str(src))
    blob = emulator.store.get("pyrus", pyrus_download_id(emulator, record["id"]))
    assert blob.name == 'back\\slash "q".txt'


def test_token_is_fetched_once_per_run(profile: str, emulator: Any, tmp_path: Path) -> None:
    files = [str(make_file(tmp_path / f"f{i}.bin", 100 + i, seed=i)) for i in range(3)]
    result = run("upload", *files, "-j", "2", "--progress", "none")
    assert result.code == 0, result.err
    assert len(result.lines) == 3
    assert len(mount(emulator).tokens) == 1


def test_a_401_authenticates_again_once(profile: str, emulator: Any, tmp_path: Path) -> None:
    emulator.faults.add(Fault(provider="pyrus", path="/v4/files/upload", status=401, times=1))
    src = make_file(tmp_path / "f.bin", 2 * 1024 * 1024 + 1)
    record = upload_record(str(src))
    assert len(mount(emulator).tokens) == 2
    assert emulator.blob_sha256("pyrus", pyrus_download_id(emulator, record["id"])) == sha256_file(src)


def test_a_second_401_is_an_auth_error(profile: str, emulator: Any, tmp_path: Path) -> None:
    emulator.faults.add(
        Fault(provider="pyrus", path="/v4/files/upload", status=401, times=2, message="Token revoked by admin.")
    )
    result = run("upload", str(make_file(tmp_path / "f.bin", 10)), "--progress", "none")
    assert result.code == 4, result.err
    assert "Token revoked by admin. (invalid_token)" in result.err
    assert len(mount(emulator).tokens) == 2


def test_wrong_security_key(emulator: Any, config_path: Path, tmp_path: Path) -> None:
    pyrus_config(emulator, config_path)
    (config_path.parent / "pyrus-security-key").write_text("not-the-key\n")
    result = run("upload", str(make_file(tmp_path / "f.bin", 10)), "--progress", "none")
    assert result.code == 4
    assert "Invalid login or security key. (invalid_credentials)" in result.err
    assert "not-the-key" not in result.err + result.out


def test_empty_file_is_refused_before_any_request(profile: str, emulator: Any, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    result = run("upload", str(empty), "--progress", "none")
    assert result.code == 7
    assert "empty" in result.err
    assert mount(emulator).tokens == {}


def test_files_over_the_size_limit_are_refused_before_any_request(
    emulator: Any, config_path: Path, tmp_path: Path
) -> None:
    pyrus_config(emulator, config_path, max_size="1K")
    result = run("upload", str(make_file(tmp_path / "f.bin", 1025)), "--progress", "none")
    assert result.code == 7
    assert "1.0 KiB" in result.err or "1 KiB" in result.err or "1024" in result.err
    assert mount(emulator).tokens == {}
    assert emulator.store.blobs("pyrus") == []
    assert upload_record(str(make_file(tmp_path / "g.bin", 1024)))["size"] == 1024


def test_a_name_with_a_line_break_is_refused_before_any_request(profile: str, emulator: Any, tmp_path: Path) -> None:
    bad = make_file(tmp_path / "two\nlines.txt", 10)
    result = run("upload", str(bad), "--progress", "none")
    assert result.code == 7
    assert "control character" in result.err
    assert mount(emulator).tokens == {}


def test_options_pyrus_cannot_honour(profile: str, emulator: Any, tmp_path: Path) -> None:
    src = str(make_file(tmp_path / "f.bin", 10))
    resumable = run("upload", src, "--resumable", "--progress", "none")
    assert resumable.code == 8
    assert mount(emulator).tokens == {}
    ttl = run("upload", src, "--ttl", "2h", "--progress", "none")
    assert ttl.code == 0, ttl.err
    assert "--ttl is ignored" in ttl.err


def test_damage_in_transit_is_an_integrity_error(profile: str, emulator: Any, tmp_path: Path) -> None:
    mount(emulator).corrupt_uploads = 1
    result = run("upload", str(make_file(tmp_path / "f.bin", 4096)), "--progress", "none")
    assert result.code == 9
    assert "MD5" in result.err
    assert result.out == ""


def test_download_ids(profile: str, emulator: Any) -> None:
    guid = run("download", "08923d83-255b-4f18-b0eb-5c4d3b9bf1d2")
    assert guid.code == 8
    assert "numeric id" in guid.err
    junk = run("download", "abc")
    assert junk.code == 2
    missing = run("download", "999999", "--progress", "none")
    assert missing.code == 5
    assert "file_is_missing" in missing.err


def test_info_of_an_unknown_guid_is_not_found(profile: str) -> None:
    result = run("info", "08923d83-255b-4f18-b0eb-5c4d3b9bf1d2")
    assert result.code == 5


def test_rate_limit_waits_for_the_window_reset(profile: str, emulator: Any, tmp_path: Path) -> None:
    mount(emulator).rate_limit, mount(emulator).rate_window = 1, 1.0
    files = [str(make_file(tmp_path / f"f{i}.bin", 10, seed=i)) for i in range(2)]
    result = run("upload", *files, "--progress", "none")
    assert result.code == 0, result.err
    assert "429" in result.err  # the retry was announced
    assert len(result.lines) == 2


def test_rate_limit_beyond_the_patience_of_the_retrier_is_transient(
    profile: str, emulator: Any, tmp_path: Path
) -> None:
    mount(emulator).rate_limit = 0  # the next window is 10 minutes away
    result = run("upload", str(make_file(tmp_path / "f.bin", 10)), "--progress", "none")
    assert result.code == 10
    assert "too_many_requests" in result.err


@pytest.mark.parametrize(
    "fault",
    [
        Fault(provider="pyrus", path="/v4/files/upload", status=503, times=1),
        Fault(provider="pyrus", path="/v4/files/upload", drop_after=1_500_000, times=1),
    ],
    ids=["503", "dropped"],
)
def test_retries_resend_the_whole_body(profile: str, emulator: Any, tmp_path: Path, fault: Fault) -> None:
    emulator.faults.add(fault)
    src = make_file(tmp_path / "f.bin", 3 * 1024 * 1024 + 5)
    result = run("upload", str(src), "--json", "--progress", "none")
    assert result.code == 0, result.err
    record = json.loads(result.out)
    assert emulator.blob_sha256("pyrus", pyrus_download_id(emulator, record["id"])) == sha256_file(src)
    assert len([b for b in emulator.store.blobs("pyrus") if b.complete]) == 1


def test_auth_url_and_files_url_overrides(emulator: Any, config_path: Path, tmp_path: Path) -> None:
    pyrus_config(
        emulator,
        config_path,
        url="https://accounts.invalid",
        auth_url=f"{emulator.url}/pyrus/v4/auth",  # the older api.pyrus.com/v4/auth form
        files_url=f"{emulator.url}/pyrus",
    )
    record = upload_record(str(make_file(tmp_path / "f.bin", 10)))
    assert len(record["id"]) == 36
    check = run("profiles", "check", "pyrus")
    assert check.code == 0, check.err
    assert f"{emulator.url}/pyrus/v4/auth" in check.out


def test_environment_profile_and_secret_hygiene(emulator: Any, tmp_path: Path, state_dir: Path) -> None:
    key = emulator.credentials.pyrus_security_key
    env = {
        "TMPUP_PROVIDER": "pyrus",
        "TMPUP_URL": f"{emulator.url}/pyrus",
        "TMPUP_LOGIN": emulator.credentials.pyrus_login,
        "TMPUP_SECURITY_KEY": key,
    }
    result = run("upload", str(make_file(tmp_path / "f.bin", 10)), "--json", "--debug", "--progress", "none", env=env)
    assert result.code == 0, result.err
    (token,) = mount(emulator).tokens
    everything = result.out + result.err + (state_dir / "receipts.jsonl").read_text()
    assert key not in everything
    assert token not in everything
    assert "Authorization: ****" in result.err


@pytest.mark.slow
def test_200_mib_multipart_upload_keeps_memory_flat(profile: str, emulator: Any, tmp_path: Path) -> None:
    src = make_file(tmp_path / "big.bin", 200 * 1024 * 1024)
    code, rss, _ = peak_rss_mib(["upload", str(src), "--progress", "none"])
    assert code == 0
    assert 10 < rss < 80, f"peak RSS {rss:.0f} MiB for a 200 MiB multipart/form-data upload"
    (blob,) = emulator.store.blobs("pyrus")
    assert emulator.blob_sha256("pyrus", blob.id) == sha256_file(src)
