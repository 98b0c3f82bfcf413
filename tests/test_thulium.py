"""Thulium end to end: the real CLI against the emulator over HTTP.

`thulium_config` is meant for the shared contract suite as well. Thulium's API cannot give a file
back, so "round trip" here means: the bytes stored by the emulator are the file's, and `info`
answers from the local receipt.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_file, run, sha256_file, upload_record, write_config, write_profile
from tests.helpers_providers import (
    ODD_NAMES,
    assert_500s_after_all_retries_are_transient,
    assert_an_environment_profile_uploads,
    assert_progress_json_reaches_the_total,
    assert_two_503s_are_retried_without_duplicates,
    upload_recording_progress,
)
from tmpup.emulator import Credentials, Emulator, Fault

PROVIDER = "thulium"


def thulium_config(emulator: Any, config_path: Path, **keys: Any) -> str:
    """Write a default `thulium` profile for the emulator (password in a file); return its name.

    `keys` add profile keys or replace the defaults (`url`, `username`, `retries`, ...).
    """
    secret = config_path.parent / "thulium-password"
    secret.write_text(emulator.credentials.thulium_password + "\n")
    values: dict[str, Any] = {
        "provider": PROVIDER,
        "url": f"{emulator.url}/thulium",
        "username": emulator.credentials.thulium_username,
        "password_file": str(secret),
        "retries": 2,
        **keys,
    }
    return write_profile(config_path, "thulium", values)


@pytest.fixture
def profile(emulator: Any, config_path: Path) -> str:
    return thulium_config(emulator, config_path)


def blobs(emulator: Any) -> list[Any]:
    return list(emulator.store.blobs(PROVIDER))


@pytest.mark.parametrize("size", [0, 1, 5 * 1024 * 1024 + 7])
def test_round_trip(profile: str, emulator: Any, tmp_path: Path, size: int) -> None:
    src = make_file(tmp_path / "src.bin", size)
    before = dt.datetime.now(dt.timezone.utc)
    record = upload_record(str(src))
    after = dt.datetime.now(dt.timezone.utc)

    token = record["token"]
    assert len(token) in (22, 23) and all(c in "0123456789abcdef" for c in token)
    assert (record["provider"], record["profile"]) == (PROVIDER, profile)
    assert (record["name"], record["size"]) == ("src.bin", size)
    assert record["id"] is None and record["url"] is None  # Thulium answers a token only
    expires = dt.datetime.fromisoformat(record["expires_at"].replace("Z", "+00:00"))
    assert before + dt.timedelta(hours=24) <= expires <= after + dt.timedelta(hours=24)
    assert emulator.blob_sha256(PROVIDER, token) == sha256_file(src)
    blob = emulator.store.find(PROVIDER, token)
    assert blob.name == "src.bin" and blob.size == size

    info = run("info", token, "--json")
    assert info.code == 0, info.err
    fields = json.loads(info.out)
    assert fields["source"] == "local receipt"
    assert (fields["token"], fields["name"], fields["size"]) == (token, "src.bin", size)
    assert fields["expires_at"] == record["expires_at"] and fields["uploaded_at"] == record["uploaded_at"]
    assert fields["expired"] is False


def test_human_output_is_the_token_alone(profile: str, emulator: Any, tmp_path: Path) -> None:
    result = run("upload", str(make_file(tmp_path / "h.txt", 10)), "--progress", "none")
    assert result.code == 0, result.err
    (token,) = result.lines
    assert emulator.store.find(PROVIDER, token).name == "h.txt"


@pytest.mark.parametrize("name", ODD_NAMES)
def test_odd_names_arrive_exactly(profile: str, emulator: Any, tmp_path: Path, name: str) -> None:
    src = make_file(tmp_path / "data.bin", 100)
    record = upload_record(str(src), "--name", name)
    assert record["name"] == name
    assert emulator.store.find(PROVIDER, record["token"]).name == name


def test_a_file_named_oddly_on_disk_keeps_its_name(profile: str, emulator: Any, tmp_path: Path) -> None:
    src = make_file(tmp_path / 'back\\slash "q" & 50%.txt', 10)
    record = upload_record(str(src))
    assert emulator.store.find(PROVIDER, record["token"]).name == 'back\\slash "q" & 50%.txt'


def test_info_of_an_unknown_token_is_not_found(profile: str) -> None:
    result = run("info", "180174033853be57b76ed6a")
    assert result.code == 5
    assert "no receipt of '180174033853be57b76ed6a'" in result.err and "no info endpoint" in result.err


def test_info_says_expired_after_24_hours(
    profile: str, emulator: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`info` compares the receipt's expiry with the run's clock (injected here, 24 h later): it prints
    the fields (`expired: true`), then fails as gone (exit 6)."""
    from tmpup.commands import info as command
    from tmpup.errors import GoneError
    from tmpup.runtime import GlobalOptions, Runtime

    record = upload_record(str(make_file(tmp_path / "old.txt", 3)))
    rt = Runtime.build(GlobalOptions(json=True))
    later = dataclasses.replace(rt, clock=lambda: dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=24, seconds=1))
    capsys.readouterr()
    with pytest.raises(GoneError, match="expired at"):
        command.run(later, record["token"])
    assert json.loads(capsys.readouterr().out)["expired"] is True
    assert command.run(rt, record["token"]).fields["expired"] is False
    # ... and the emulator agrees: the token is gone once its clock has moved 24 h.
    emulator.clock.advance(24 * 3600 + 1)
    with pytest.raises(LookupError):
        emulator.store.find(PROVIDER, record["token"])


def test_download_and_delete_are_unsupported(profile: str, emulator: Any, tmp_path: Path) -> None:
    record = upload_record(str(make_file(tmp_path / "d.txt", 3)))
    got = run("download", record["token"])
    assert got.code == 8
    assert "Thulium's API has no download" in got.err
    assert not list(tmp_path.glob("d.txt.part"))
    gone = run("delete", record["token"])
    assert gone.code == 8 and "thulium" in gone.err
    assert emulator.store.find(PROVIDER, record["token"]).size == 3


def test_resumable_is_unsupported_and_ttl_is_ignored(profile: str, emulator: Any, tmp_path: Path) -> None:
    src = make_file(tmp_path / "r.txt", 3)
    refused = run("upload", str(src), "--resumable", "--progress", "none")
    assert refused.code == 8 and "resumably" in refused.err
    assert blobs(emulator) == []
    warned = run("upload", str(src), "--ttl", "2h", "--json", "--progress", "none")
    assert warned.code == 0
    assert "24 hours" in warned.err and "--ttl is ignored" in warned.err
    record = json.loads(warned.out)
    uploaded = dt.datetime.fromisoformat(record["uploaded_at"].replace("Z", "+00:00"))
    expires = dt.datetime.fromisoformat(record["expires_at"].replace("Z", "+00:00"))
    assert dt.timedelta(hours=23, minutes=59) < expires - uploaded < dt.timedelta(hours=24, minutes=1)


def test_wrong_password_is_an_auth_error_with_thuliums_message(
    emulator: Any, config_path: Path, tmp_path: Path
) -> None:
    thulium_config(emulator, config_path)
    (config_path.parent / "thulium-password").write_text("not-the-password\n")
    result = run("upload", str(make_file(tmp_path / "f.bin", 10)), "--progress", "none")
    assert result.code == 4
    assert "Invalid username or password. (code 401001) [request_id " in result.err
    assert "not-the-password" not in result.err + result.out
    assert blobs(emulator) == []


def test_error_envelope_with_request_id_becomes_the_message(profile: str, emulator: Any, tmp_path: Path) -> None:
    emulator.faults.add(Fault(provider=PROVIDER, method="POST", status=400, message="Wrong format of file."))
    result = run("upload", str(make_file(tmp_path / "f.bin", 10)), "--progress", "none")
    assert result.code == 7
    line = result.err.strip()
    assert line.startswith("tmpup: error: thulium: POST ") and "answered 400" in line
    assert "Wrong format of file. (code 400001) [request_id " in line and "\n" not in line


def test_server_errors_are_retried(profile: str, emulator: Any, tmp_path: Path) -> None:
    assert_two_503s_are_retried_without_duplicates(emulator, tmp_path, PROVIDER, handle="token")


def test_server_errors_after_all_retries_are_transient(profile: str, emulator: Any, tmp_path: Path) -> None:
    assert_500s_after_all_retries_are_transient(
        emulator, tmp_path, PROVIDER, message="Internal error.", shown="Internal error. (code 500001) [request_id "
    )


def test_a_dropped_connection_is_retried_with_the_whole_file(profile: str, emulator: Any, tmp_path: Path) -> None:
    emulator.faults.add(Fault(provider=PROVIDER, method="POST", drop_after=1024 * 1024))
    src = make_file(tmp_path / "f.bin", 3 * 1024 * 1024)
    result = run("upload", str(src), "--json", "--progress", "none")
    assert result.code == 0, result.err
    # tmpup's words, not requests' class names (ConnectionError)
    assert re.search(r"(the server closed the connection|the connection was reset); retrying in", result.err)
    assert "Error" not in result.err
    record = json.loads(result.out)
    assert [b.id for b in blobs(emulator)] == [record["token"]]
    assert emulator.blob_sha256(PROVIDER, record["token"]) == sha256_file(src)


def test_progress_counts_every_byte_streamed(profile: str, emulator: Any, tmp_path: Path) -> None:
    """The provider reports progress as the body streams, in blocks, up to the total."""
    size = 3 * 1024 * 1024 + 100
    result, task = upload_recording_progress(tmp_path / "p.bin", size)
    assert task.completed == size and sum(task.steps) == size
    assert len(task.steps) == 4 and max(task.steps) == 1024 * 1024  # 1 MiB blocks, not 16 KiB
    assert emulator.blob_sha256(PROVIDER, str(result.token)) == sha256_file(tmp_path / "p.bin")


def test_progress_json_reaches_the_total(profile: str, tmp_path: Path) -> None:
    assert_progress_json_reaches_the_total(tmp_path)


def test_profiles_check(profile: str, emulator: Any) -> None:
    result = run("profiles", "check", profile)
    assert result.code == 0, result.err
    assert "api_user" in result.out and "ok" in result.out
    assert blobs(emulator) == []  # the check creates no temporary file


def test_profiles_check_with_a_wrong_password(emulator: Any, config_path: Path) -> None:
    thulium_config(emulator, config_path)
    (config_path.parent / "thulium-password").write_text("nope\n")
    result = run("profiles", "check", "thulium")
    assert result.code == 4
    assert "Invalid username or password." in result.err


def test_url_may_end_in_api(emulator: Any, config_path: Path, tmp_path: Path) -> None:
    thulium_config(emulator, config_path, url=f"{emulator.url}/thulium/api/")
    record = upload_record(str(make_file(tmp_path / "a.txt", 5)))
    assert emulator.store.find(PROVIDER, record["token"]).size == 5


def test_missing_password_is_a_config_error(emulator: Any, config_path: Path, tmp_path: Path) -> None:
    write_config(
        config_path,
        f"""
        [profiles.t]
        provider = "thulium"
        url = "{emulator.url}/thulium"
        username = "api_user"
        """,
    )
    result = run("upload", str(make_file(tmp_path / "a.txt", 5)))
    assert result.code == 3
    assert "'password'" in result.err and "profile 't'" in result.err


def test_environment_profile_needs_no_file(emulator: Any, tmp_path: Path) -> None:
    env = {
        "TMPUP_PROVIDER": "thulium",
        "TMPUP_URL": f"{emulator.url}/thulium",
        "TMPUP_USERNAME": emulator.credentials.thulium_username,
        "TMPUP_PASSWORD": emulator.credentials.thulium_password,
    }
    assert_an_environment_profile_uploads(emulator, tmp_path, env, handle="token", secret=env["TMPUP_PASSWORD"])


def test_non_ascii_credentials_are_sent_as_utf8(config_path: Path, tmp_path: Path) -> None:
    creds = Credentials(thulium_username="użytkownik_api", thulium_password="hasło-źdźbło")
    with Emulator(credentials=creds) as emu:
        thulium_config(emu, config_path)
        record = upload_record(str(make_file(tmp_path / "pl.txt", 7)))
        assert emu.store.find(PROVIDER, record["token"]).size == 7


def test_size_mismatch_is_an_integrity_error(profile: str, emulator: Any, tmp_path: Path, state_dir: Path) -> None:
    """A server that stored fewer bytes than were sent (a cut-off body it did not notice) is caught."""
    from werkzeug.wrappers import Response

    from tmpup.emulator.mount import json_response

    mount = emulator.mounts[PROVIDER]
    original = mount.upload

    def short(request: Any) -> Response:
        answer = original(request)
        body = json.loads(answer.get_data())
        return json_response({**body, "size": body["size"] - 1})

    mount.upload = short
    result = run("upload", str(make_file(tmp_path / "s.bin", 100)), "--progress", "none")
    assert result.code == 9
    assert "sent 100 bytes" in result.err and "stored 99" in result.err
    assert not (state_dir / "receipts.jsonl").exists()  # a failed upload leaves no receipt


def test_sha256_of_the_receipt_matches_with_checksum(profile: str, tmp_path: Path) -> None:
    src = make_file(tmp_path / "c.bin", 1024 * 1024 + 3)
    record = upload_record(str(src), "--checksum")
    assert record["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()


def test_debug_output_shows_no_credentials(profile: str, emulator: Any, tmp_path: Path) -> None:
    import base64

    result = run("upload", str(make_file(tmp_path / "d.txt", 5)), "--debug", "--progress", "none")
    assert result.code == 0, result.err
    assert "temporary_files?filename=d.txt" in result.err  # the request is logged ...
    creds = emulator.credentials
    basic = base64.b64encode(f"{creds.thulium_username}:{creds.thulium_password}".encode()).decode()
    assert creds.thulium_password not in result.err + result.out and basic not in result.err  # ... its secrets are not
