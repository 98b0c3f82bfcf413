"""KF5 end to end: the real CLI against the emulator over HTTP.

`kf5_config` is meant for the shared contract suite as well. The handle printed by `upload` is the
token (what a ticket's `uploads` takes); info/download/delete take the numeric id, or a token tmpup
recorded in its receipts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import requests

from tests.conftest import make_file, run, sha256_file, upload_record, write_config, write_profile
from tests.helpers_providers import (
    ODD_NAMES,
    assert_500s_after_all_retries_are_transient,
    assert_an_environment_profile_uploads,
    assert_progress_json_reaches_the_total,
    assert_two_503s_are_retried_without_duplicates,
    upload_recording_progress,
)
from tmpup.emulator import Credentials, Emulator
from tmpup.emulator.kf5 import Kf5Mount

PROVIDER = "kf5"


def kf5_config(emulator: Any, config_path: Path, auth: str = "api_token", **keys: Any) -> str:
    """Write a default `kf5` profile for the emulator; return its name.

    `auth` is "api_token" (the default) or "password"; the secret is kept in a file. `keys` add
    profile keys or replace the defaults (`url`, `email`, `retries`, ...).
    """
    value = emulator.credentials.kf5_api_token if auth == "api_token" else emulator.credentials.kf5_password
    secret = config_path.parent / f"kf5-{auth}"
    secret.write_text(value + "\n")
    values: dict[str, Any] = {
        "provider": PROVIDER,
        "url": f"{emulator.url}/kf5",
        "email": emulator.credentials.kf5_email,
        f"{auth}_file": str(secret),
        "retries": 2,
        **keys,
    }
    return write_profile(config_path, "kf5", values)


@pytest.fixture
def profile(emulator: Any, config_path: Path) -> str:
    return kf5_config(emulator, config_path)


def blobs(emulator: Any) -> list[Any]:
    return list(emulator.store.blobs(PROVIDER))


@pytest.mark.parametrize("auth", ["api_token", "password"])
@pytest.mark.parametrize("size", [0, 1, 5 * 1024 * 1024 + 7])
def test_round_trip(emulator: Any, config_path: Path, tmp_path: Path, size: int, auth: str) -> None:
    kf5_config(emulator, config_path, auth=auth)
    src = make_file(tmp_path / "src.bin", size)
    record = upload_record(str(src))
    assert (record["provider"], record["name"], record["size"]) == (PROVIDER, "src.bin", size)
    assert record["id"].isdigit() and len(record["token"]) == 31 and record["token"].startswith("001")
    base = f"{emulator.url}/kf5"
    assert record["url"] == f"{base}/attachments/download/{record['id']}/{record['token']}/"
    assert record["api_url"] == f"{base}/apiv2/attachments/{record['id']}.json"
    assert record["expires_at"] is None
    assert emulator.blob_sha256(PROVIDER, record["id"]) == sha256_file(src)

    info = run("info", record["id"], "--json")
    assert info.code == 0, info.err
    fields = json.loads(info.out)
    assert fields == {
        "id": record["id"],
        "name": "src.bin",
        "size": size,
        "token": record["token"],
        "url": record["url"],  # the same kind of URL as the upload's (the bytes)
        "content_url": record["url"],
        "api_url": record["api_url"],
    }

    out = tmp_path / "out"
    out.mkdir()
    got = run("download", record["id"], "-o", str(out), "--progress", "none")
    assert got.code == 0, got.err
    assert sha256_file(out / "src.bin") == sha256_file(src)


def test_human_output_is_the_token(profile: str, emulator: Any, tmp_path: Path) -> None:
    result = run("upload", str(make_file(tmp_path / "h.txt", 10)), "--progress", "none")
    assert result.code == 0, result.err
    (token,) = result.lines
    (blob,) = blobs(emulator)
    assert blob.extra["token"] == token


@pytest.mark.parametrize("name", ODD_NAMES)
def test_odd_names_arrive_exactly_and_come_back(profile: str, emulator: Any, tmp_path: Path, name: str) -> None:
    src = make_file(tmp_path / "data.bin", 1000)
    record = upload_record(str(src), "--name", name)
    assert record["name"] == name
    assert emulator.store.get(PROVIDER, record["id"]).name == name
    assert json.loads(run("info", record["id"], "--json").out)["name"] == name
    dest = tmp_path / "dl"
    dest.mkdir()
    got = run("download", record["id"], "-o", str(dest), "--progress", "none")
    assert got.code == 0, got.err
    assert sha256_file(dest / name) == sha256_file(src)


def test_server_supplied_name_is_reduced_to_a_safe_base_name(profile: str, emulator: Any, tmp_path: Path) -> None:
    """Uploaded by someone else (no receipt here): the name comes from Content-Disposition."""
    creds = emulator.credentials
    answer = requests.post(
        f"{emulator.url}/kf5/apiv2/attachments.json",
        params={"filename": "../../.evil name.txt"},
        data=b"payload",
        headers={"Content-Type": "application/binary"},
        auth=(f"{creds.kf5_email}/token", creds.kf5_api_token),
    )
    assert answer.status_code == 201
    attachment_id = str(answer.json()["attachment"]["id"])
    got = run("download", attachment_id, "--progress", "none")
    assert got.code == 0, got.err
    assert (tmp_path / "evil name.txt").read_bytes() == b"payload"
    assert not list(tmp_path.parent.glob("*.evil*"))


def test_download_continue_uses_range(profile: str, emulator: Any, tmp_path: Path) -> None:
    src = make_file(tmp_path / "big.bin", 3 * 1024 * 1024 + 5)
    record = upload_record(str(src))
    dest = tmp_path / "dest"
    dest.mkdir()
    part = dest / "big.bin.part"
    part.write_bytes(src.read_bytes()[: 1024 * 1024 + 3])
    seen: list[str | None] = []
    mount = emulator.mounts[PROVIDER]
    original = mount.download

    def spy(request: Any, **kw: Any) -> Any:
        seen.append(request.headers.get("Range"))
        return original(request, **kw)

    mount.download = spy
    got = run("download", record["id"], "-o", str(dest), "--continue", "--json", "--progress", "none")
    assert got.code == 0, got.err
    assert json.loads(got.out)["resumed"] is True
    assert seen == [f"bytes={1024 * 1024 + 3}-"]
    assert sha256_file(dest / "big.bin") == sha256_file(src)
    assert not part.exists()


def test_download_to_stdout(profile: str, emulator: Any, tmp_path: Path) -> None:
    src = make_file(tmp_path / "s.bin", 100_000)
    record = upload_record(str(src))
    proc = subprocess.run(
        [sys.executable, "-m", "tmpup", "download", record["id"], "-o", "-"], capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == src.read_bytes()
    assert not list(tmp_path.glob("*.part"))


def test_info_download_delete_accept_the_token_from_a_receipt(profile: str, emulator: Any, tmp_path: Path) -> None:
    src = make_file(tmp_path / "t.txt", 30)
    token = run("upload", str(src), "--progress", "none").out.strip()
    info = run("info", token, "--json")
    assert info.code == 0, info.err
    attachment_id = json.loads(info.out)["id"]
    dest = tmp_path / "dl"
    dest.mkdir()
    assert run("download", token, "-o", str(dest), "--progress", "none").code == 0
    assert (dest / "t.txt").read_bytes() == src.read_bytes()
    deleted = run("delete", token)
    assert deleted.code == 0, deleted.err
    assert emulator.store.get(PROVIDER, attachment_id) is None
    again = run("info", attachment_id)
    assert again.code == 5 and f"attachment {attachment_id} was not found" in again.err


def test_an_unknown_handle_that_is_not_an_id_is_not_found(profile: str) -> None:
    """A token with no receipt here is "not found" (exit 5), as Thulium's and Pyrus's are."""
    for command in ("info", "download", "delete"):
        result = run(command, "00154af5872418a7792dda0edb32921")
        assert result.code == 5, (command, result.err)
        assert "no receipt of '00154af5872418a7792dda0edb32921' here" in result.err
        assert "numeric attachment id" in result.err


@pytest.mark.parametrize("command", ["info", "download", "delete"])
def test_unknown_id_is_not_found(profile: str, command: str) -> None:
    result = run(command, "999999", "--progress", "none") if command == "download" else run(command, "999999")
    assert result.code == 5
    assert "attachment 999999 was not found (RecordNotFound)" in result.err


def test_delete_by_id(profile: str, emulator: Any, tmp_path: Path) -> None:
    record = upload_record(str(make_file(tmp_path / "d.txt", 3)))
    result = run("delete", record["id"], "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out) == {"id": record["id"], "deleted": True}
    assert blobs(emulator) == []
    assert run("download", record["id"], "-o", str(tmp_path / "again.txt"), "--progress", "none").code == 5


@pytest.mark.parametrize("auth", ["api_token", "password"])
def test_wrong_secret_is_an_auth_error(emulator: Any, config_path: Path, tmp_path: Path, auth: str) -> None:
    kf5_config(emulator, config_path, auth=auth)
    (config_path.parent / f"kf5-{auth}").write_text("not-the-secret\n")
    result = run("upload", str(make_file(tmp_path / "f.bin", 10)), "--progress", "none")
    assert result.code == 4
    assert "Couldn't authenticate you" in result.err and "(Unauthorized)" in result.err
    assert "not-the-secret" not in result.err + result.out
    assert blobs(emulator) == []
    assert run("info", "1948").code == 4


def test_password_and_api_token_are_not_interchangeable(emulator: Any, config_path: Path, tmp_path: Path) -> None:
    """The API token is only accepted in the EMAIL/token form: a token given as `password` fails."""
    kf5_config(emulator, config_path, auth="password")
    (config_path.parent / "kf5-password").write_text(emulator.credentials.kf5_api_token)
    assert run("upload", str(make_file(tmp_path / "f.bin", 1)), "--progress", "none").code == 4


def test_neither_password_nor_api_token_is_a_config_error(emulator: Any, config_path: Path) -> None:
    write_config(
        config_path,
        f"""
        [profiles.k]
        provider = "kf5"
        url = "{emulator.url}/kf5"
        email = "agent@demo.kf5.com"
        """,
    )
    result = run("info", "1")
    assert result.code == 3
    assert "profile 'k'" in result.err and "'password' or 'api_token'" in result.err


def test_both_password_and_api_token_is_a_config_error(emulator: Any, config_path: Path) -> None:
    write_config(
        config_path,
        f"""
        [profiles.k]
        provider = "kf5"
        url = "{emulator.url}/kf5"
        email = "agent@demo.kf5.com"
        password_env = "KF5_PW"
        api_token_env = "KF5_TOKEN"
        """,
    )
    result = run("info", "1", env={"KF5_PW": "secret-pw-value", "KF5_TOKEN": "secret-token-value"})
    assert result.code == 3
    assert "not both" in result.err
    assert "secret-pw-value" not in result.err and "secret-token-value" not in result.err


def test_environment_profile_needs_no_file(emulator: Any, tmp_path: Path) -> None:
    env = {
        "TMPUP_PROVIDER": "kf5",
        "TMPUP_URL": f"{emulator.url}/kf5",
        "TMPUP_EMAIL": emulator.credentials.kf5_email,
        "TMPUP_API_TOKEN": emulator.credentials.kf5_api_token,
    }
    assert_an_environment_profile_uploads(emulator, tmp_path, env, handle="id", secret=env["TMPUP_API_TOKEN"])


def test_server_errors_are_retried_without_duplicates(profile: str, emulator: Any, tmp_path: Path) -> None:
    assert_two_503s_are_retried_without_duplicates(emulator, tmp_path, PROVIDER, handle="id")


def test_server_errors_after_all_retries_are_transient(profile: str, emulator: Any, tmp_path: Path) -> None:
    assert_500s_after_all_retries_are_transient(
        emulator, tmp_path, PROVIDER, message="database is down", shown="database is down (InternalError)"
    )


def test_a_download_cut_off_resumes_with_continue(profile: str, emulator: Any, tmp_path: Path) -> None:
    src = make_file(tmp_path / "cut.bin", 3 * 1024 * 1024)
    record = upload_record(str(src))
    dest = tmp_path / "dest"
    dest.mkdir()
    mount = emulator.mounts[PROVIDER]
    original = mount.download

    def truncated(request: Any, **kw: Any) -> Any:
        response = original(request, **kw)
        body = response.response

        def first_block_only() -> Any:
            try:
                yield next(iter(body))
            finally:
                body.close()
            raise ConnectionResetError("cut by the test")

        response.response = first_block_only()
        return response

    mount.download = truncated
    first = run("download", record["id"], "-o", str(dest), "--progress", "none", "--retries", "0")
    assert first.code == 10 and "--continue" in first.err
    assert (dest / "cut.bin.part").stat().st_size == 1024 * 1024
    mount.download = original
    second = run("download", record["id"], "-o", str(dest), "--continue", "--progress", "none")
    assert second.code == 0, second.err
    assert sha256_file(dest / "cut.bin") == sha256_file(src)


def test_progress_json_reaches_the_total(profile: str, tmp_path: Path) -> None:
    assert_progress_json_reaches_the_total(tmp_path)


def test_progress_counts_every_byte_streamed(profile: str, emulator: Any, tmp_path: Path) -> None:
    size = 2 * 1024 * 1024 + 9
    result, task = upload_recording_progress(tmp_path / "p.bin", size)
    assert sum(task.steps) == size and max(task.steps) == 1024 * 1024
    assert emulator.blob_sha256(PROVIDER, str(result.id)) == sha256_file(tmp_path / "p.bin")


def test_resumable_is_unsupported_and_ttl_is_ignored(profile: str, emulator: Any, tmp_path: Path) -> None:
    src = make_file(tmp_path / "r.txt", 3)
    refused = run("upload", str(src), "--resumable", "--progress", "none")
    assert refused.code == 8 and "resumably" in refused.err
    warned = run("upload", str(src), "--ttl", "2h", "--progress", "none")
    assert warned.code == 0 and "--ttl is ignored" in warned.err
    assert len(blobs(emulator)) == 1


@pytest.mark.parametrize("auth", ["api_token", "password"])
def test_profiles_check(emulator: Any, config_path: Path, auth: str) -> None:
    kf5_config(emulator, config_path, auth=auth)
    result = run("profiles", "check", "kf5")
    assert result.code == 0, result.err
    assert emulator.credentials.kf5_email in result.out
    assert ("API token" if auth == "api_token" else "password") in result.out


def test_profiles_check_with_wrong_credentials(emulator: Any, config_path: Path) -> None:
    kf5_config(emulator, config_path, email="someone@else.example")
    result = run("profiles", "check", "kf5")
    assert result.code == 4


def test_non_ascii_credentials_are_sent_as_utf8(config_path: Path, tmp_path: Path) -> None:
    creds = Credentials(kf5_email="агент@пример.рф", kf5_api_token="токен-令牌")
    with Emulator(credentials=creds) as emu:
        kf5_config(emu, config_path)
        record = upload_record(str(make_file(tmp_path / "u.txt", 7)))
        assert emu.blob_sha256(PROVIDER, record["id"]) == sha256_file(tmp_path / "u.txt")


class _ForeignContentMount(Kf5Mount):
    """A KF5 whose content_url is on another origin (a CDN), recording the credentials it is sent."""

    seen: list[str | None]

    def attachment(self, request: Any, blob: Any) -> dict[str, Any]:
        body = super().attachment(request, blob)
        url = urlparse(body["content_url"])
        body["content_url"] = url._replace(netloc=f"localhost:{url.port}").geturl()
        return body

    def download(self, request: Any, id: int, token: str) -> Any:
        self.seen.append(request.headers.get("Authorization"))
        return super().download(request, id, token)


def test_credentials_go_to_content_url_only_on_the_profiles_origin(config_path: Path, tmp_path: Path) -> None:
    with Emulator(mounts=[_ForeignContentMount]) as emu:
        mount = emu.mounts[PROVIDER]
        assert isinstance(mount, _ForeignContentMount)
        mount.seen = []
        kf5_config(emu, config_path)
        src = make_file(tmp_path / "o.txt", 50)
        record = upload_record(str(src))
        assert record["url"].startswith("http://localhost:")
        dest = tmp_path / "dl"
        dest.mkdir()
        assert run("download", record["id"], "-o", str(dest), "--progress", "none").code == 0
        assert (dest / "o.txt").read_bytes() == src.read_bytes()
        kf5_config(emu, config_path, url=record["url"].split("/attachments/")[0])  # now the same origin
        (dest / "o.txt").unlink()
        assert run("download", record["id"], "-o", str(dest), "--progress", "none").code == 0
        assert mount.seen[0] is None
        assert mount.seen[1] is not None and mount.seen[1].startswith("Basic ")


def test_debug_output_shows_no_credentials(profile: str, emulator: Any, tmp_path: Path) -> None:
    import base64

    record = upload_record(str(make_file(tmp_path / "d.txt", 5)))
    result = run("download", record["id"], "-o", str(tmp_path / "copy.txt"), "--debug", "--progress", "none")
    assert result.code == 0, result.err
    assert f"attachments/{record['id']}.json" in result.err  # the requests are logged ...
    creds = emulator.credentials
    basic = base64.b64encode(f"{creds.kf5_email}/token:{creds.kf5_api_token}".encode()).decode()
    assert creds.kf5_api_token not in result.err + result.out and basic not in result.err  # ... their secrets are not


def test_a_download_names_its_attachment_lookup_as_the_download_not_info(
    profile: str, emulator: Any, tmp_path: Path
) -> None:
    """The lookup of the content_url is the first step of `tmpup download`: its retry notes and its
    error say so, not "info", a command the user did not run."""
    from tmpup.emulator import Fault

    up = run("upload", str(make_file(tmp_path / "a.bin", 100)), "--json", "--progress", "none")
    attachment = json.loads(up.out)["id"]
    emulator.faults.add(Fault(provider="kf5", method="GET", status=503, retry_after=0, times=None))
    busy = run("download", attachment, "-o", str(tmp_path / "out.bin"), "--progress", "none")
    assert busy.code == 10
    assert "download (looking up the attachment)" in busy.err and "info" not in busy.err
