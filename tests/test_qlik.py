"""Qlik temp-contents end to end: the real CLI against the emulator over HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_file, run, serving, sha256_file
from tmpup.emulator import Fault

NAMES = ["plain.txt", "with space.txt", "ünïcødé отчёт 日本.csv", "quote\"s and 'apos'.txt", "a&b#c%d.bin"]


def upload(path: Path, *extra: str, quiet: bool = True) -> dict[str, Any]:
    result = run("upload", str(path), "--json", "--progress", "none", *extra)
    assert result.code == 0, result.err
    if quiet:
        assert result.err == ""
    (line,) = result.lines
    record: dict[str, Any] = json.loads(line)
    return record


@pytest.mark.parametrize("size", [0, 1, 5 * 1024 * 1024 + 7])
def test_round_trip_bytes(qlik_profile: str, emulator: Any, tmp_path: Path, size: int) -> None:
    src = make_file(tmp_path / f"src-{size}.bin", size)
    record = upload(src)
    assert record["size"] == size and record["provider"] == "qlik" and record["profile"] == qlik_profile
    assert len(record["id"]) == 24
    assert emulator.blob_sha256("qlik", record["id"]) == sha256_file(src)

    info = run("info", record["id"], "--json")
    assert info.code == 0, info.err
    details = json.loads(info.out)
    assert details["size"] == size and details["name"] == src.name

    out = tmp_path / "out"
    out.mkdir()
    got = run("download", record["id"], "-o", str(out), "--progress", "none")
    assert got.code == 0, got.err
    assert sha256_file(out / src.name) == sha256_file(src)
    assert not (out / (src.name + ".part")).exists()


@pytest.mark.parametrize("name", NAMES)
def test_odd_names_arrive_exactly(qlik_profile: str, emulator: Any, tmp_path: Path, name: str) -> None:
    src = make_file(tmp_path / "data.bin", 1000)
    record = upload(src, "--name", name)
    assert record["name"] == name
    info = json.loads(run("info", record["id"], "--json").out)
    assert info["name"] == name
    dest = tmp_path / "dl"
    dest.mkdir()
    assert run("download", record["id"], "-o", str(dest), "--progress", "none").code == 0
    assert sha256_file(dest / name) == sha256_file(src)


def test_human_output_is_the_id_only(qlik_profile: str, tmp_path: Path) -> None:
    src = make_file(tmp_path / "a.bin", 10)
    result = run("upload", str(src), "--progress", "none")
    assert result.code == 0
    assert len(result.lines) == 1 and len(result.lines[0]) == 24


def test_json_fields_and_checksum(qlik_profile: str, tmp_path: Path, state_dir: Path) -> None:
    src = make_file(tmp_path / "c.bin", 3 * 1024 * 1024 + 5)
    record = upload(src, "--checksum", "--ttl", "2h")
    for key in ("profile", "provider", "file", "name", "size", "id", "token", "url", "expires_at", "sha256", "resumed"):
        assert key in record
    assert record["sha256"] == sha256_file(src)
    assert record["file"] == str(src.resolve())
    assert record["resumed"] is False
    assert record["url"].endswith(f"/api/v1/temp-contents/{record['id']}")
    assert record["expires_at"].endswith("Z")
    receipts = (state_dir / "receipts.jsonl").read_text().splitlines()
    assert json.loads(receipts[-1])["id"] == record["id"]
    assert (state_dir / "receipts.jsonl").stat().st_mode & 0o777 == 0o600


def test_ttl_is_sent_and_validated(qlik_profile: str, emulator: Any, tmp_path: Path) -> None:
    src = make_file(tmp_path / "t.bin", 10)
    record = upload(src, "--ttl", "90m")
    details = json.loads(run("info", record["id"], "--json").out)
    assert details["ttl_seconds"] == 5400
    for bad in ("0", "300000", "abc", "1.5"):
        result = run("upload", str(src), "--ttl", bad)
        assert result.code == 7, (bad, result.err)
        assert result.err.startswith("tmpup: error: ") and result.err.count("\n") == 1


def test_stdin_upload(qlik_profile: str, emulator: Any) -> None:
    result = run("upload", "-", "--name", "from-stdin.txt", "--json", "--progress", "none", stdin=b"hello stdin")
    assert result.code == 0, result.err
    record = json.loads(result.out)
    assert record["size"] == 11 and record["name"] == "from-stdin.txt" and record["file"] == "-"
    assert run("upload", "-").code == 2  # stdin needs --name


def test_download_to_stdout(qlik_profile: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    src = make_file(tmp_path / "s.bin", 300_000)
    record = upload(src)
    proc = subprocess.run(
        [sys.executable, "-m", "tmpup", "download", record["id"], "-o", "-"], capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == src.read_bytes()
    assert proc.stderr == b""


def test_download_never_overwrites_and_continues(qlik_profile: str, emulator: Any, tmp_path: Path) -> None:
    src = make_file(tmp_path / "big.bin", 3 * 1024 * 1024)
    record = upload(src)
    target = tmp_path / "copy.bin"
    target.write_bytes(b"precious")
    refused = run("download", record["id"], "-o", str(target))
    assert refused.code == 7 and "--force" in refused.err
    assert target.read_bytes() == b"precious"

    # A partial download left behind: refused without --continue, completed with it.
    target.unlink()
    part = tmp_path / "copy.bin.part"
    with src.open("rb") as fh:
        part.write_bytes(fh.read(1_000_000))
    assert run("download", record["id"], "-o", str(target)).code == 7
    assert part.exists()
    resumed = run("download", record["id"], "-o", str(target), "--continue", "--json", "--progress", "none")
    assert resumed.code == 0, resumed.err
    assert json.loads(resumed.out)["resumed"] is True
    assert sha256_file(target) == sha256_file(src) and not part.exists()

    forced = run("download", record["id"], "-o", str(target), "--force", "--progress", "none")
    assert forced.code == 0 and sha256_file(target) == sha256_file(src)


def test_continue_with_a_part_larger_than_the_remote_is_an_integrity_error(qlik_profile: str, tmp_path: Path) -> None:
    src = make_file(tmp_path / "small.bin", 100)
    record = upload(src)
    (tmp_path / "x.bin.part").write_bytes(b"\0" * 500)
    result = run("download", record["id"], "-o", str(tmp_path / "x.bin"), "--continue")
    assert result.code == 9, result.err
    assert (tmp_path / "x.bin.part").stat().st_size == 500  # nothing the user had is lost


def test_retries_on_503_with_retry_after(qlik_profile: str, emulator: Any, tmp_path: Path) -> None:
    emulator.faults.add(Fault(provider="qlik", method="POST", status=503, retry_after=1, times=2))
    src = make_file(tmp_path / "r.bin", 2 * 1024 * 1024)
    result = run("upload", str(src), "--json", "--progress", "none")
    assert result.code == 0, result.err
    assert "503" in result.err  # the retries were reported on stderr
    record = json.loads(result.out)
    assert emulator.blob_sha256("qlik", record["id"]) == sha256_file(src)


def test_dropped_connection_is_retried_from_the_start_of_the_file(
    qlik_profile: str, emulator: Any, tmp_path: Path
) -> None:
    emulator.faults.add(Fault(provider="qlik", method="POST", drop_after=1_500_000, times=1))
    src = make_file(tmp_path / "d.bin", 4 * 1024 * 1024)
    record = upload(src, quiet=False)
    assert emulator.blob_sha256("qlik", record["id"]) == sha256_file(src)


def test_expired_and_unknown(qlik_profile: str, emulator: Any, tmp_path: Path) -> None:
    src = make_file(tmp_path / "e.bin", 10)
    record = upload(src, "--ttl", "60")
    emulator.clock.advance(61)
    gone = run("info", record["id"])
    assert gone.code == 6, gone.err
    assert run("download", record["id"], "-o", str(tmp_path / "z")).code == 6
    missing = run("info", "ffffffffffffffffffffffff")
    assert missing.code == 5 and "404" in missing.err


def test_wrong_token_is_exit_4_and_secret_not_shown(
    emulator: Any, config_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPUP_PROVIDER", "qlik")
    monkeypatch.setenv("TMPUP_URL", f"{emulator.url}/qlik")
    monkeypatch.setenv("TMPUP_TOKEN", "wrong-token-value")
    src = make_file(tmp_path / "w.bin", 10)
    result = run("upload", str(src), "-v", "--debug")
    assert result.code == 4
    assert "wrong-token-value" not in result.out + result.err
    assert "Authorization: ****" in result.err or "authorization: ****" in result.err.lower()


def test_delete_is_unsupported(qlik_profile: str) -> None:
    result = run("delete", "abc")
    assert result.code == 8
    assert "qlik" in result.err and "delete" in result.err


def test_profiles_check(qlik_profile: str) -> None:
    result = run("profiles", "check", qlik_profile)
    assert result.code == 0 and "ok" in result.out


def test_progress_json_reaches_total(qlik_profile: str, tmp_path: Path) -> None:
    src = make_file(tmp_path / "p.bin", 3 * 1024 * 1024)
    result = run("upload", str(src), "--progress", "json")
    assert result.code == 0
    events = [json.loads(line) for line in result.err.splitlines()]
    assert events[0]["event"] == "start" and events[0]["total"] == src.stat().st_size
    assert events[-1]["event"] == "done" and events[-1]["bytes"] == src.stat().st_size


def test_html_instead_of_json_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A URL that points at a web site rather than the API: one line, no traceback."""
    import http.server

    class Html(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<!doctype html><html><body>Welcome</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    with serving(Html) as server:
        monkeypatch.setenv("TMPUP_PROVIDER", "qlik")
        monkeypatch.setenv("TMPUP_URL", server.url)
        monkeypatch.setenv("TMPUP_TOKEN", "t")
        result = run("info", "abc")
    assert result.code == 3, result.err
    assert "HTML page" in result.err and "Traceback" not in result.err
    assert result.err.count("\n") == 1


# -- answers in every form the API documents ------------------------------------------------------


@pytest.mark.parametrize(
    "form",
    [
        "/api/v1/temp-contents/{id}",  # what the emulator answers
        "/v1/temp-contents/{id}",  # the form in Qlik's own examples
        "https://tenant.example/api/v1/temp-contents/{id}",  # absolute
        "/api/v1/temp-contents/{id}/",  # a trailing slash
        "/api/v1/temp-contents/{id}?inline=1",  # a query
    ],
)
def test_the_id_is_the_last_segment_of_any_location_form(
    qlik_profile: str, emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    mount = emulator.mounts["qlik"]
    upload = mount.upload

    def answer_in_form(request: Any) -> Any:
        response = upload(request)
        blob_id = response.headers["Location"].rsplit("/", 1)[-1]
        response.headers["Location"] = form.format(id=blob_id)
        return response

    monkeypatch.setattr(mount, "upload", answer_in_form)
    src = make_file(tmp_path / "f.bin", 5000)
    result = run("upload", str(src), "--no-resume", "--json", "--progress", "none")
    assert result.code == 0, result.err
    record = json.loads(result.out)
    assert emulator.blob_sha256("qlik", record["id"]) == sha256_file(src)
    assert len(record["id"]) == 24 and "/" not in record["id"] and "?" not in record["id"]


@pytest.mark.parametrize("size", ["number", "string"])
def test_info_takes_size_as_a_string_or_a_number(
    qlik_profile: str, emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: str
) -> None:
    src = make_file(tmp_path / "f.bin", 4321)
    upload_id = run("upload", str(src), "--no-resume", "--progress", "none").out.strip()
    mount = emulator.mounts["qlik"]
    details = mount.details

    def sized(request: Any, id: str) -> Any:
        response = details(request, id)
        body = json.loads(response.get_data())
        body["Size"] = int(body["Size"]) if size == "number" else str(body["Size"])
        response.set_data(json.dumps(body))
        return response

    monkeypatch.setattr(mount, "details", sized)
    info = run("info", upload_id, "--json")
    assert info.code == 0, info.err
    assert json.loads(info.out)["size"] == 4321


def test_download_into_a_folder_that_does_not_exist_is_refused(qlik_profile: str, tmp_path: Path) -> None:
    src = make_file(tmp_path / "f.bin", 2000)
    upload_id = run("upload", str(src), "--no-resume", "--progress", "none").out.strip()
    missing = tmp_path / "dl"
    result = run("download", upload_id, "-o", f"{missing}/", "--progress", "none")
    assert result.code == 7, result.err
    assert "no such directory" in result.err and not missing.exists()
    missing.mkdir()
    into = run("download", upload_id, "-o", f"{missing}/", "--progress", "none")
    assert into.code == 0, into.err
    assert sha256_file(missing / "f.bin") == sha256_file(src)
