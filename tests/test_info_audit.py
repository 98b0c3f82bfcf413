"""Audit findings on `info` (and its neighbours), end to end through the real CLI.

* Server and receipt text never reaches stdout raw in human mode: control characters (ESC, CR, LF,
  C1), line separators and bidirectional overrides are shown as `?`, so each field stays on its line;
  `--json` keeps the exact value (and escapes what a terminal could act on).
* An expired receipt (Thulium: 24 h) is printed as it is, `expired true`, and the run exits 6.
* KF5: a token with no receipt here is "not found" (5), for info, download and delete alike.
* Qlik: `info`/`download` take the `url` of tmpup's own result; another tenant's URL is refused.
* Qlik: the `--chunk-size` warning only when --chunk-size was typed.
* `profiles check` against something that is not the provider's API: exit 3, "check the profile's url".

Servers are the emulator, or (for answers the emulator never gives: names with control characters)
a small real HTTP server below.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import unicodedata
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import Result, make_file, run, run_process, serving, write_qlik_profile
from tests.test_cli import ANSI, assert_one_line_error
from tests.test_kf5 import kf5_config
from tests.test_pyrus import pyrus_config
from tests.test_thulium import thulium_config
from tmpup.emulator import Emulator

#: What a hostile (or merely careless) server may store: SGR escape, newline, CR, C1 CSI, an RTL
#: override, BEL, a line separator; and a zero-width joiner, which is part of emoji and must stay.
NASTY = "ev\x1b[31mil\nline2\r\x9b1m\u202eexe.txt\x07\u2028end \U0001f469\u200d\U0001f4bb"
SHOWN = "ev?[31mil?line2??1m?exe.txt??end \U0001f469\u200d\U0001f4bb"


def assert_clean_fields(result: Result, *, name_line: str = "name") -> list[str]:
    """Human `key  value` output: one line per field, nothing a terminal would act on, `name` shown safe."""
    assert result.code == 0, result.err
    assert not ANSI.search(result.out)
    for ch in result.out:
        if ch == "\n":
            continue
        assert unicodedata.category(ch) not in ("Cc", "Zl", "Zp"), (ch, result.out)
        assert not ("\u202a" <= ch <= "\u202e" or "\u2066" <= ch <= "\u2069"), (ch, result.out)
    lines = result.out.splitlines()
    for line in lines:
        assert re.match(r"^(\S+ *  \S|\s+- )", line), (line, result.out)
    named = [line for line in lines if line.split(" ", 1)[0] == name_line]
    assert named and named[0].endswith(SHOWN), result.out
    return lines


def assert_exact_json(result: Result) -> dict[str, Any]:
    assert result.code == 0, result.err
    (line,) = result.out.splitlines()
    for raw in ("\x1b", "\x9b", "\u202e", "\u2028", "\r", "\x07"):
        assert raw not in result.out
    fields: dict[str, Any] = json.loads(line)
    return fields


# -- 1. escapes in human output ------------------------------------------------------------------


def test_tus_metadata_and_name_are_shown_safely(emulator: Emulator, config_path: Path) -> None:
    """The reported case: any client may store metadata on a tus server; `info` is a HEAD of it."""
    import base64

    encoded = base64.b64encode(NASTY.encode()).decode()
    created = requests.post(
        emulator.mount_url("tus"),
        headers={"Tus-Resumable": "1.0.0", "Upload-Length": "3", "Upload-Metadata": f"filename {encoded}"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    url = created.headers["Location"]
    config_path.write_text(f'[profiles.t]\nprovider = "tus"\nurl = "{emulator.mount_url("tus")}"\n')
    human = run_process("info", url, "-p", "t")  # the real program, stdout a pipe
    lines = assert_clean_fields(human)
    assert len(lines) == 8  # id, url, name, size, offset, status, expires_at, metadata: no line was split
    assert any(line.startswith("metadata") and line.endswith(f"filename={SHOWN}") for line in lines)
    fields = assert_exact_json(run_process("info", url, "-p", "t", "--json"))
    assert fields["name"] == NASTY and fields["metadata"] == f"filename={NASTY}"


class _HostileApi(BaseHTTPRequestHandler):
    """Answers KF5's, Qlik's and Enterprise Tester's info requests with NASTY names (the emulator refuses
    such names at upload, as the real services may not)."""

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        body: Any
        if path == "/kf5/apiv2/attachments/7.json":
            body = {
                "attachment": {
                    "id": 7,
                    "name": NASTY,
                    "size": 3,
                    "token": "tok\x1b]0;title\x07",
                    "url": "http://x.invalid/apiv2/attachments/7.json",
                    "content_url": "http://x.invalid/attachments/download/7/tok/",
                }
            }
        elif path == "/qlik/api/v1/temp-contents/abc/details":
            body = {"ID": "abc", "Name": NASTY, "Size": "3", "CreatedAt": "2026-01-01T00:00:00Z", "TTLSeconds": 60}
        elif path == "/et/api/temporaryattachmentset/set1":
            body = {"Items": [{"Id": "a1", "Name": NASTY, "FileName": NASTY, "Size": 3, "ContentType": "x/y"}]}
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hostile() -> Iterator[str]:
    with serving(_HostileApi) as server:
        yield server.url


@pytest.mark.parametrize(
    ("provider", "mount", "id", "env"),
    [
        ("kf5", "kf5", "7", {"TMPUP_EMAIL": "a@b.c", "TMPUP_API_TOKEN": "t"}),
        ("qlik", "qlik", "abc", {"TMPUP_TOKEN": "t"}),
        ("enterprise-tester", "et", "set1", {"TMPUP_USERNAME": "u", "TMPUP_PASSWORD": "p"}),
    ],
)
def test_server_text_is_shown_safely(
    hostile: str, monkeypatch: pytest.MonkeyPatch, provider: str, mount: str, id: str, env: dict[str, str]
) -> None:
    monkeypatch.setenv("TMPUP_PROVIDER", provider)
    monkeypatch.setenv("TMPUP_URL", f"{hostile}/{mount}")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    if provider == "enterprise-tester":
        human = run("info", id)
        assert human.code == 0, human.err
        (item,) = [line for line in human.out.splitlines() if line.lstrip().startswith("- ")]
        assert f"name={SHOWN}" in item and f"file_name={SHOWN}" in item
        assert not any(unicodedata.category(ch) == "Cc" for ch in human.out.replace("\n", ""))
        assert len(human.out.splitlines()) == 5  # id, attachments, total_size, items 1, one item line
        fields = assert_exact_json(run("info", id, "--json"))
        assert fields["items"][0]["name"] == NASTY
        return
    human = run("info", id)
    lines = assert_clean_fields(human)
    if provider == "kf5":
        assert any(line.startswith("token") and line.endswith("tok?]0;title?") for line in lines)
    fields = assert_exact_json(run("info", id, "--json"))
    assert fields["name"] == NASTY


@pytest.mark.parametrize("provider", ["thulium", "pyrus"])
def test_receipt_text_is_shown_safely(emulator: Emulator, config_path: Path, state_dir: Path, provider: str) -> None:
    """Thulium's and Pyrus's info come from the receipt: a hand-edited (or older tmpup's) line holding
    control characters is shown as safely as a server's answer."""
    (thulium_config if provider == "thulium" else pyrus_config)(emulator, config_path)
    state_dir.mkdir(parents=True)
    receipt = {
        "provider": provider,
        "profile": provider,
        "id": "08923d83-255b-4f18-b0eb-5c4d3b9bf1d2" if provider == "pyrus" else None,
        "token": "T0KEN" if provider == "thulium" else None,
        "name": NASTY,
        "file": "/tmp/x\x1b[2Jy",
        "size": 3,
        "expires_at": None,
        "note": "a\nb",
    }
    (state_dir / "receipts.jsonl").write_text(json.dumps(receipt) + "\n")
    handle = receipt["token"] or receipt["id"]
    lines = assert_clean_fields(run("info", handle))
    assert any(line.startswith("file") and line.endswith("/tmp/x?[2Jy") for line in lines)
    assert any(line.startswith("note") and line.endswith("a?b") for line in lines)
    fields = assert_exact_json(run("info", handle, "--json"))
    assert fields["name"] == NASTY and fields["note"] == "a\nb"


# -- 5. an expired receipt ----------------------------------------------------------------------


def _age_receipts(state_dir: Path, hours: float) -> None:
    """Move every receipt's expiry `hours` into the past (as if the upload happened a day ago)."""
    path = state_dir / "receipts.jsonl"
    past = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=hours)).isoformat().replace("+00:00", "Z")
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    path.write_text("".join(json.dumps({**line, "expires_at": past}) + "\n" for line in lines))


def test_an_expired_thulium_token_prints_its_fields_then_exits_6(
    emulator: Emulator, config_path: Path, state_dir: Path, tmp_path: Path
) -> None:
    thulium_config(emulator, config_path)
    token = run("upload", str(make_file(tmp_path / "a.txt", 3)), "--progress", "none").out.strip()
    fresh = run("info", token)
    assert fresh.code == 0 and "expired      false" in fresh.out, fresh
    _age_receipts(state_dir, 1)

    human = run_process("info", token)
    assert human.code == 6
    assert "expired      true" in human.out and f"token        {token}" in human.out
    assert_one_line_error(human.err, f"thulium: {token} expired at ")
    assert "upload the file again" in human.err

    as_json = run("info", token, "--json")
    assert as_json.code == 6
    fields = json.loads(as_json.out)
    assert fields["expired"] is True and fields["token"] == token
    assert_one_line_error(as_json.err, "expired at")


def test_a_pyrus_receipt_has_no_expiry_and_stays_exit_0(emulator: Emulator, config_path: Path, tmp_path: Path) -> None:
    pyrus_config(emulator, config_path)
    guid = run("upload", str(make_file(tmp_path / "p.txt", 5)), "--progress", "none").out.strip()
    info = run("info", guid, "--json")
    assert info.code == 0, info.err
    assert "expired" not in json.loads(info.out)


# -- 4. KF5 tokens with no receipt ----------------------------------------------------------------


@pytest.mark.parametrize("command", ["info", "download", "delete"])
def test_kf5_token_without_receipt_is_not_found(
    emulator: Emulator, config_path: Path, tmp_path: Path, command: str
) -> None:
    kf5_config(emulator, config_path)
    token = "001c3b29c8c1d61e7ec137757e2e9d00"
    args = [command, token] + (["-o", str(tmp_path / "out.bin"), "--progress", "none"] if command == "download" else [])
    result = run(*args)
    assert result.code == 5, result.err
    assert_one_line_error(result.err, f"kf5: no receipt of '{token}' here")
    assert "numeric attachment id" in result.err
    assert result.out == ""
    assert not list(tmp_path.glob("out.bin*"))


@pytest.mark.parametrize("command", ["info", "download", "delete"])
@pytest.mark.parametrize("bad", ["", "   ", "12\x1b[31m"])
def test_kf5_handle_that_cannot_be_one_is_a_usage_error(
    emulator: Emulator, config_path: Path, command: str, bad: str
) -> None:
    kf5_config(emulator, config_path)
    result = run(command, bad)
    assert result.code == 2, result.err
    assert_one_line_error(result.err)


# -- 10. Qlik: the url of tmpup's own result --------------------------------------------------------


def test_qlik_info_and_download_take_the_result_url(emulator: Emulator, config_path: Path, tmp_path: Path) -> None:
    write_qlik_profile(emulator, config_path)
    src = make_file(tmp_path / "q.bin", 1234)
    record = json.loads(run("upload", str(src), "--json", "--progress", "none").out)
    url = record["url"]
    assert url.startswith(emulator.mount_url("qlik")) and url.endswith(f"/api/v1/temp-contents/{record['id']}")
    for handle in (url, url + "/", f"/api/v1/temp-contents/{record['id']}"):
        info = run("info", handle, "--json")
        assert info.code == 0, (handle, info.err)
        assert json.loads(info.out)["id"] == record["id"]
    human = run("info", url)
    assert human.code == 0 and f"id           {record['id']}" in human.out
    got = run_process("download", url, "-o", "-", "--progress", "none")
    assert got.code == 0, got.err
    out = tmp_path / "copy.bin"
    assert run("download", url, "-o", str(out), "--progress", "none").code == 0
    assert out.read_bytes() == src.read_bytes()


def test_qlik_info_takes_the_tus_upload_url(emulator: Emulator, config_path: Path, tmp_path: Path) -> None:
    write_qlik_profile(emulator, config_path)
    record = json.loads(
        run("upload", str(make_file(tmp_path / "r.bin", 2000)), "--resumable", "--json", "--progress", "none").out
    )
    assert "/temp-contents/files/" in record["upload_url"]
    info = run("info", record["upload_url"], "--json")
    assert info.code == 0, info.err
    assert json.loads(info.out)["id"] == record["id"]


@pytest.mark.parametrize("command", ["info", "download"])
def test_qlik_url_of_another_tenant_is_refused(
    emulator: Emulator, config_path: Path, tmp_path: Path, command: str
) -> None:
    write_qlik_profile(emulator, config_path)
    record = json.loads(run("upload", str(make_file(tmp_path / "o.bin", 10)), "--json", "--progress", "none").out)
    other = record["url"].replace("127.0.0.1", "localhost")  # the same server, but not this profile's origin
    path_elsewhere = record["url"].replace("/qlik/", "/other/")
    for handle in (other, path_elsewhere):
        args = [command, handle] + (["-o", str(tmp_path / "x.bin")] if command == "download" else [])
        result = run(*args)
        assert result.code == 2, result.err
        assert_one_line_error(result.err, "qlik: ")
        assert "tenant" in result.err
        assert not list(tmp_path.glob("x.bin*"))


# -- F6. the --chunk-size warning -----------------------------------------------------------------

CHUNK_WARNING = "--chunk-size applies to resumable (tus) uploads"


def test_qlik_chunk_size_warning_only_for_the_option(emulator: Emulator, config_path: Path, tmp_path: Path) -> None:
    write_qlik_profile(emulator, config_path, extra='chunk_size = "1M"')
    src = str(make_file(tmp_path / "small.txt", 10))
    from_profile = run("upload", src, "--progress", "none")
    assert from_profile.code == 0 and from_profile.err == "", from_profile.err
    from_env = run("upload", src, "--progress", "none", env={"TMPUP_CHUNK_SIZE": "2M"})
    assert from_env.code == 0 and from_env.err == "", from_env.err
    typed = run("upload", src, "--progress", "none", "--chunk-size", "512K")
    assert typed.code == 0 and CHUNK_WARNING in typed.err
    assert typed.err.count("\n") == 1
    same = run("upload", src, "--progress", "none", "--chunk-size", "1M")  # typed, even if the profile agrees
    assert same.code == 0 and CHUNK_WARNING in same.err


def test_qlik_chunk_size_option_without_a_profile_value_warns(
    emulator: Emulator, config_path: Path, tmp_path: Path
) -> None:
    write_qlik_profile(emulator, config_path)
    typed = run("upload", str(make_file(tmp_path / "s.txt", 10)), "--progress", "none", "--chunk-size", "1M")
    assert typed.code == 0 and CHUNK_WARNING in typed.err


# -- F9. profiles check of a url that is not the provider's API -------------------------------------


@pytest.mark.parametrize(
    ("provider", "env"),
    [
        ("kf5", {"TMPUP_EMAIL": "agent@demo.kf5.com", "TMPUP_API_TOKEN": "demo-kf5-token"}),
        ("thulium", {"TMPUP_USERNAME": "api_user", "TMPUP_PASSWORD": "x"}),
        ("pyrus", {"TMPUP_LOGIN": "bot@demo.pyrus", "TMPUP_SECURITY_KEY": "x"}),
        ("enterprise-tester", {"TMPUP_USERNAME": "u", "TMPUP_PASSWORD": "p"}),
        ("qlik", {"TMPUP_TOKEN": "demo-qlik-token"}),
    ],
)
@pytest.mark.parametrize("where", ["another-provider", "nothing"])
def test_profiles_check_of_a_wrong_url_is_a_configuration_error(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, provider: str, env: dict[str, str], where: str
) -> None:
    other = "qlik" if provider != "qlik" else "kf5"
    monkeypatch.setenv("TMPUP_PROVIDER", provider)
    monkeypatch.setenv("TMPUP_URL", f"{emulator.url}/{other if where == 'another-provider' else 'nothing'}")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = run("profiles", "check")
    assert result.code == 3, result.err
    assert_one_line_error(result.err, "check the profile's url")
    assert "check the id" not in result.err


def test_kf5_check_pointing_at_qlik_names_the_url(emulator: Emulator, config_path: Path) -> None:
    kf5_config(emulator, config_path, url=emulator.mount_url("qlik"))
    result = run_process("profiles", "check")
    assert result.code == 3
    assert_one_line_error(result.err, "not as KF5's API would")
    assert result.out == ""
