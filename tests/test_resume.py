"""`tmpup resume` and the resume records behind it (DESIGN.md section 5), through the real CLI.

Interrupted uploads are made deterministically: the emulator answers every PATCH with 503 until the
fault is cleared, so the upload fails (exit 10) after its retries with the record kept.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_file, run, sha256_file, write_config
from tests.test_tus_client import MIB, assert_clean, fail_with_503, records, tus_profile, upload_id
from tmpup.emulator import Emulator

__all__ = ["tus_profile"]  # a fixture, imported for this module's tests


def interrupted(emu: Emulator, provider: str, src: Path, *extra: str) -> dict[str, Any]:
    """Leave an interrupted upload of `src` behind; return the record's row from `resume --list --json`."""
    failed = fail_with_503(emu, provider, str(src), *extra)
    assert f"tmpup resume {shlex.quote(str(src))}" in failed.err  # a command one can paste
    rows = [json.loads(line) for line in run("resume", "--list", "--json").lines]
    (row,) = [r for r in rows if r["file"] == str(src.resolve())]
    return row


def test_nothing_to_resume(tus_profile: str, tmp_path: Path) -> None:
    assert run("resume", "--all").code == 5
    missing = run("resume", str(tmp_path / "never.bin"))
    assert missing.code == 5 and "resume --list" in missing.err
    listed = run("resume", "--list")
    assert listed.code == 0 and listed.out == "" and "no interrupted uploads" in listed.err
    assert run("resume", "--list", "--json").out == ""
    assert run("resume", "--list", "--all").code == 2


def test_list_shows_a_table_and_json(tus_profile: str, emulator: Emulator, tmp_path: Path) -> None:
    src = make_file(tmp_path / "big report.bin", 2 * MIB)
    row = interrupted(emulator, "tus", src)
    assert row["profile"] == "t" and row["provider"] == "tus" and row["state"] == "resumable"
    assert row["size"] == 2 * MIB and row["name"] == "big report.bin"
    assert row["upload_url"].startswith(emulator.mount_url("tus")) and row["expires_at"]
    table = run("resume", "--list")
    assert table.code == 0, table.err
    header, line = table.lines
    assert header.split() == ["FILE", "PROFILE", "PROVIDER", "SENT", "EXPIRES", "STATE"]
    assert line.startswith(str(src.resolve())) and line.endswith("resumable") and "2.0 MiB" in line
    assert "\x1b" not in table.out


def test_records_are_private_atomic_and_hold_no_credentials(
    qlik_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path
) -> None:
    src = make_file(tmp_path / "f.bin", MIB)
    interrupted(emulator, "qlik", src, "--resumable")
    uploads = state_dir / "uploads"
    assert stat.S_IMODE(uploads.stat().st_mode) == 0o700
    (path,) = uploads.glob("*.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in uploads.iterdir() if p.name.startswith(".")] == []  # no temp file left
    text = path.read_text()
    assert emulator.credentials.qlik_token not in text and "Bearer" not in text
    data = json.loads(text)
    assert data["file"]["path"] == str(src.resolve())
    assert {"size", "mtime_ns", "edge_hash"} <= set(data["file"])
    assert data["extra"]["ttl"] == 3600 and data["expires_at"]


def test_tus_token_and_headers_stay_out_of_records(
    config_path: Path, state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tmpup.emulator import Credentials

    with Emulator(credentials=Credentials(tus_token="tok-SECRET-1")) as emu:
        write_config(
            config_path,
            f"""
            [profiles.t]
            provider = "tus"
            url = "{emu.mount_url("tus")}"
            token_env = "TUS_TOKEN_FOR_TEST"
            headers = {{ X-Api-Key = "hdr-SECRET-2" }}
            retries = 1
            """,
        )
        monkeypatch.setenv("TUS_TOKEN_FOR_TEST", "tok-SECRET-1")
        interrupted(emu, "tus", make_file(tmp_path / "f.bin", 1000))
    for path in state_dir.rglob("*"):
        if path.is_file():
            assert "SECRET" not in path.read_text(errors="replace"), path


@pytest.mark.parametrize("how", ["file", "relative", "id", "url", "key"])
def test_resume_one_by_file_id_url_or_key(
    tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path, how: str
) -> None:
    src = make_file(tmp_path / "f.bin", 3 * MIB)
    other = make_file(tmp_path / "other.bin", 1000, seed=3)
    row = interrupted(emulator, "tus", src)
    interrupted(emulator, "tus", other)
    target = {
        "file": str(src),
        "relative": "f.bin",  # the tests run in tmp_path
        "id": row["upload_url"].rsplit("/", 1)[-1],
        "url": row["upload_url"],
        "key": row["key"],
    }[how]
    done = run("resume", target, "--json", "--progress", "none")
    assert done.code == 0, done.err
    result = json.loads(done.out)
    assert result["resumed"] is True and result["url"] == row["upload_url"]
    assert emulator.blob_sha256("tus", result["id"]) == sha256_file(src)
    assert [r["file"]["path"] for r in records(state_dir)] == [str(other.resolve())]


def test_upload_resumes_by_itself_and_qlik_takes_tus_for_a_small_file_with_a_record(
    qlik_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path
) -> None:
    src = make_file(tmp_path / "small.csv", 1000)  # below the threshold: raw, unless a record waits
    row = interrupted(emulator, "qlik", src, "--resumable", "--ttl", "2h")
    again = run("upload", str(src), "--json", "--progress", "none")
    assert again.code == 0, again.err
    assert "resuming at 0 B of 1000 B (0%)" in again.err
    result = json.loads(again.out)
    assert result["resumed"] is True and result["upload_url"] == row["upload_url"]
    assert result["id"] == row["upload_url"].rsplit("/", 1)[-1]
    # no TTL asked for this time: the upload keeps its own, and the result says which and until when
    assert result["ttl"] == 7200 and _when(result["expires_at"]) == _when(row["expires_at"])
    assert emulator.blob_sha256("qlik", result["id"]) == sha256_file(src)
    assert_clean(state_dir)


def _when(iso: str) -> dt.datetime:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).replace(microsecond=0)


@pytest.mark.parametrize("how", ["--ttl", "TMPUP_TTL"])
def test_another_ttl_starts_a_new_qlik_upload(
    qlik_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path, how: str
) -> None:
    src = make_file(tmp_path / "f.bin", 2 * MIB)
    row = interrupted(emulator, "qlik", src, "--resumable", "--ttl", "2h")
    if how == "--ttl":
        again = run("upload", str(src), "--json", "--progress", "none", "--ttl", "3h")
    else:
        again = run("upload", str(src), "--json", "--progress", "none", env={"TMPUP_TTL": "3h"})
    assert again.code == 0, again.err
    (why,) = [line for line in again.err.splitlines() if "starting a new upload" in line]
    assert "TTL of 2h, not the 3h asked for" in why
    result = json.loads(again.out)
    assert result["resumed"] is False and result["upload_url"] != row["upload_url"]
    assert result["ttl"] == 10800
    lifetime = _when(result["expires_at"]) - _when(result["uploaded_at"])
    assert dt.timedelta(hours=3) - dt.timedelta(seconds=5) <= lifetime <= dt.timedelta(hours=3)
    assert emulator.store.find("qlik", result["id"]).ttl == 10800
    assert emulator.blob_sha256("qlik", result["id"]) == sha256_file(src)
    assert_clean(state_dir)


def test_resume_keeps_the_ttl_the_upload_was_created_with(
    qlik_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path
) -> None:
    src = make_file(tmp_path / "f.bin", MIB)
    row = interrupted(emulator, "qlik", src, "--resumable", "--ttl", "90m")
    done = run("resume", str(src), "--json", "--progress", "none")
    assert done.code == 0, done.err
    result = json.loads(done.out)
    assert result["resumed"] is True and result["id"] == upload_id(row["upload_url"])
    assert result["ttl"] == 5400 and _when(result["expires_at"]) == _when(row["expires_at"])


def test_resume_all_reports_each_failure(tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path) -> None:
    kept = make_file(tmp_path / "kept.bin", MIB)
    gone = make_file(tmp_path / "gone.bin", MIB, seed=2)
    interrupted(emulator, "tus", kept)
    interrupted(emulator, "tus", gone)
    gone.unlink()
    result = run("resume", "--all", "--json", "--progress", "none")
    assert result.code == 11, result.err
    assert "gone.bin: no such file" in result.err and "--clean" in result.err
    (line,) = result.lines
    assert emulator.blob_sha256("tus", json.loads(line)["id"]) == sha256_file(kept)
    alone = run("resume", str(gone))
    assert alone.code == 7, alone.err


def test_clean_removes_dead_records_only(tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path) -> None:
    alive = make_file(tmp_path / "alive.bin", 1000)
    changed = make_file(tmp_path / "changed.bin", 1000, seed=2)
    missing = make_file(tmp_path / "missing.bin", 1000, seed=3)
    expired = make_file(tmp_path / "expired.bin", 1000, seed=4)
    for src in (alive, changed, missing, expired):
        interrupted(emulator, "tus", src)
    changed.write_bytes(b"different now")
    missing.unlink()
    for path in (state_dir / "uploads").glob("*.json"):
        data = json.loads(path.read_text())
        if data["name"] == "expired.bin":
            data["expires_at"] = "2001-01-01T00:00:00+00:00"
            path.write_text(json.dumps(data))
    states = {r["name"]: r["state"] for r in map(json.loads, run("resume", "--list", "--json").lines)}
    assert states == {
        "alive.bin": "resumable",
        "changed.bin": "file changed",
        "missing.bin": "file missing",
        "expired.bin": "expired",
    }
    cleaned = run("resume", "--clean", "--json")
    assert cleaned.code == 0, cleaned.err
    report = json.loads(cleaned.out)
    assert report["removed"] == 3
    assert sorted(r["reason"] for r in report["records"]) == ["expired", "file changed", "file missing"]
    assert [r["name"] for r in records(state_dir)] == ["alive.bin"]
    assert sorted(p.suffix for p in (state_dir / "uploads").iterdir()) == [".json", ".lock"]


def test_uploading_is_the_locks_answer_not_a_pid(
    tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path
) -> None:
    from tmpup.state import StateStore

    src = make_file(tmp_path / "f.bin", 1000)
    row = interrupted(emulator, "tus", src)
    lock = state_dir / "uploads" / f"{row['key']}.lock"

    def state() -> str:
        (listed,) = run("resume", "--list", "--json").lines
        return str(json.loads(listed)["state"])

    lock.write_text(str(os.getppid()))  # a live process, as a reused pid would be, holding nothing
    assert state() == "resumable"
    with StateStore(state_dir).lock(row["key"], "f.bin"):  # held, by this very process
        assert state() == "uploading"
        assert "uploading" in run("resume", "--list").out
    assert state() == "resumable"


def test_clean_and_saves_sweep_what_killed_processes_left(
    tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path
) -> None:
    from tmpup.state import StateStore

    src = make_file(tmp_path / "f.bin", 1000)
    row = interrupted(emulator, "tus", src)
    uploads = state_dir / "uploads"
    old = time.time() - 3600

    def leftover(name: str, age: float | None = old) -> Path:
        path = uploads / name
        path.write_text("{")
        if age is not None:
            os.utime(path, (age, age))
        return path

    # the next save of a record sweeps the temp files an earlier, killed writer of it left
    mine = leftover(f".{row['key']}.json.k1ll3d")
    store = StateStore(state_dir)
    record = store.load_record(row["key"])
    assert record is not None
    store.save_record(record)
    assert not mine.exists()

    # --clean sweeps old temp files and locks without a record that nobody holds; fresh ones stay
    stale = leftover(".0123abcd.json.x1y2z3")
    fresh = leftover(".4567cdef.json.a1b2c3", age=None)  # perhaps being written right now
    orphan = leftover("89abcdef.lock")
    held = leftover("fedcba98.lock")
    with store.lock("fedcba98", "held"):
        cleaned = run("resume", "--clean", "--json")
    assert cleaned.code == 0, cleaned.err
    report = json.loads(cleaned.out)
    assert report["removed"] == 0 and sorted(report["stray_files"]) == sorted([stale.name, orphan.name])
    assert not stale.exists() and not orphan.exists() and fresh.exists() and held.exists()
    assert [r["key"] for r in records(state_dir)] == [row["key"]]
    leftover(".0123abcd.json.again")
    human = run("resume", "--clean")  # that one, and the lock nobody holds any more
    assert human.code == 0 and "removed 2 file(s) left in" in human.err and "by killed processes" in human.err
    assert not held.exists()


def test_a_file_name_that_is_not_utf8_uploads_and_resumes_under_name(
    tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path
) -> None:
    src = make_file(tmp_path / os.fsdecode(b"bad\xff.bin"), 2 * MIB)
    refused = run("upload", str(src), "--progress", "none")
    assert refused.code == 7 and "not valid UTF-8" in refused.err

    failed = fail_with_503(emulator, "tus", str(src), "--name", "ok.bin")
    (record,) = records(state_dir)
    assert record["file"]["path"] == str(src.resolve()) and record["name"] == "ok.bin"
    # messages show the byte as '?', a different file: the printed command names the record instead
    assert f"continue it with: tmpup resume {record['key']}" in failed.err

    (listed,) = run("resume", "--list", "--json").lines
    row = json.loads(listed)
    assert row["file"] == str(src.resolve()) and row["name"] == "ok.bin" and row["state"] == "resumable"
    table = run("resume", "--list")
    assert table.code == 0 and "bad\\xff.bin" in table.out and table.out.rstrip().endswith("resumable")

    done = run("resume", str(src), "--json", "--progress", "none")  # as a shell glob would pass it
    assert done.code == 0, done.err
    result = json.loads(done.out)
    assert result["resumed"] is True and result["name"] == "ok.bin" and result["file"] == str(src.resolve())
    assert emulator.store.find("tus", result["id"]).name == "ok.bin"
    assert emulator.blob_sha256("tus", result["id"]) == sha256_file(src)
    assert_clean(state_dir)


def test_resume_on_a_profile_that_is_gone(
    tus_profile: str, emulator: Emulator, config_path: Path, tmp_path: Path
) -> None:
    src = make_file(tmp_path / "f.bin", 1000)
    interrupted(emulator, "tus", src)
    write_config(config_path, f'[profiles.other]\nprovider = "tus"\nurl = "{emulator.mount_url("tus")}"\n')
    result = run("resume", str(src))
    assert result.code == 3, result.err
    assert "'t'" in result.err


def test_a_record_of_the_environment_profile_never_continues_on_another(
    qlik_profile: str, emulator: Emulator, monkeypatch: pytest.MonkeyPatch, state_dir: Path, tmp_path: Path
) -> None:
    # Made with TMPUP_PROVIDER=tus (profile "env"); later the variables are gone and the config's
    # default profile is a Qlik one: resuming must not send the file to Qlik instead.
    src = make_file(tmp_path / "f.bin", 1000)
    monkeypatch.setenv("TMPUP_PROVIDER", "tus")
    monkeypatch.setenv("TMPUP_URL", emulator.mount_url("tus"))
    row = interrupted(emulator, "tus", src)
    assert row["profile"] == "env"
    monkeypatch.delenv("TMPUP_PROVIDER")
    monkeypatch.delenv("TMPUP_URL")
    for args in (["resume", str(src)], ["resume", "--all"]):
        result = run(*args, "--progress", "none")
        assert result.code == 3, result.err
        assert "TMPUP_PROVIDER=tus" in result.err
    assert emulator.store.blobs("qlik") == []
    assert [r["upload_url"] for r in records(state_dir)] == [row["upload_url"]]  # kept for later

    monkeypatch.setenv("TMPUP_PROVIDER", "tus")
    monkeypatch.setenv("TMPUP_URL", emulator.mount_url("tus"))
    done = run("resume", str(src), "--json", "--progress", "none")
    assert done.code == 0, done.err
    assert emulator.blob_sha256("tus", json.loads(done.out)["id"]) == sha256_file(src)


def test_a_damaged_record_is_ignored_and_replaced(
    tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path
) -> None:
    src = make_file(tmp_path / "f.bin", 1000)
    interrupted(emulator, "tus", src)
    (path,) = (state_dir / "uploads").glob("*.json")
    path.write_text('{"key": "torn')
    result = run("upload", str(src), "--json", "--progress", "none")
    assert result.code == 0, result.err
    assert json.loads(result.out)["resumed"] is False
    assert emulator.blob_sha256("tus", json.loads(result.out)["id"]) == sha256_file(src)
    assert_clean(state_dir)


def test_list_warns_about_damaged_records_and_clean_removes_them(
    tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path
) -> None:
    src = make_file(tmp_path / "f.bin", 1000)
    interrupted(emulator, "tus", src)
    uploads = state_dir / "uploads"
    (uploads / "0123456789abcdef0123456789abcdef.json").write_text("{garbage")
    (uploads / "fedcba9876543210fedcba9876543210.json").write_text("[1, 2]")
    listed = run("resume", "--list", "--json")
    assert listed.code == 0 and len(listed.lines) == 1  # the good record only
    assert "2 record(s)" in listed.err and "--clean" in listed.err
    cleaned = run("resume", "--clean", "--json")
    assert cleaned.code == 0, cleaned.err
    report = json.loads(cleaned.out)
    assert report["removed"] == 2 and {r["reason"] for r in report["records"]} == {"damaged"}
    assert sorted(p.name for p in uploads.glob("*.json")) == [f"{records(state_dir)[0]['key']}.json"]
    assert run("resume", "--list").err == ""


def test_resume_takes_limit_rate_like_upload(tus_profile: str, emulator: Emulator, tmp_path: Path) -> None:
    # A throttled cron upload that was cut continues throttled. JSON progress reports once a second,
    # so a transfer of 2.5 MiB at 1 MiB/s reports on its way; an unthrottled one on loopback would not.
    src = make_file(tmp_path / "f.bin", 5 * MIB // 2)
    interrupted(emulator, "tus", src)
    done = run("resume", str(src), "--limit-rate", "1M", "--progress", "json", "--json")
    assert done.code == 0, done.err
    events = [json.loads(line)["event"] for line in done.err.splitlines() if line.startswith("{")]
    assert "progress" in events
    assert emulator.blob_sha256("tus", json.loads(done.out)["id"]) == sha256_file(src)
    for mode in ("--list", "--clean"):
        refused = run("resume", mode, "--limit-rate", "1M")
        assert refused.code == 2 and "--limit-rate" in refused.err
    assert run("resume", "--all", "--limit-rate", "0").code == 2


def test_no_resume_neither_uses_nor_keeps_a_record(
    tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path
) -> None:
    src = make_file(tmp_path / "f.bin", 1000)
    row = interrupted(emulator, "tus", src)
    fresh = run("upload", str(src), "--no-resume", "--json", "--progress", "none")
    assert fresh.code == 0, fresh.err
    assert json.loads(fresh.out)["url"] != row["upload_url"]
    # The upload it replaced is not offered again (audit finding 8): tests/test_resume_audit.py
    assert records(state_dir) == []


def test_stdin_uploads_keep_no_record(tus_profile: str, emulator: Emulator, state_dir: Path) -> None:
    failed = fail_with_503(emulator, "tus", "-", "--name", "piped.txt", stdin=b"x" * 5000)
    assert "tmpup resume" not in failed.err  # a spooled stdin is gone after the run: nothing to resume
    assert_clean(state_dir)


def test_the_printed_resume_command_carries_the_config_the_upload_was_given(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A profile from `--config FILE` exists only in that file: the printed `tmpup resume ...` (and the
    401 hint's `profiles check`) must name it, or pasting it back is exit 3 'unknown profile'."""
    monkeypatch.delenv("TMPUP_CONFIG", raising=False)
    other = tmp_path / "elsewhere" / "alt config.toml"
    other.parent.mkdir()
    write_config(other, f'[profiles.alt]\nprovider = "tus"\nurl = "{emulator.mount_url("tus")}"\nretries = 1\n')
    src = make_file(tmp_path / "f.bin", 3 * MIB)
    failed = fail_with_503(emulator, "tus", str(src), "--config", str(other), "-p", "alt", "-q")
    command = failed.err.rsplit("continue it with: ", 1)[1].strip()
    assert command == f"tmpup resume {shlex.quote(str(src))} --config {shlex.quote(str(other))}"
    done = run(*shlex.split(command)[1:], "--json", "--progress", "none")  # pasted back as printed
    assert done.code == 0, done.err
    result = json.loads(done.out)
    assert result["resumed"] is True and emulator.blob_sha256("tus", upload_id(result["url"])) == sha256_file(src)

    write_config(other, f'[profiles.alt]\nprovider = "qlik"\nurl = "{emulator.mount_url("qlik")}"\ntoken = "wrong"\n')
    refused = run("upload", str(src), "--config", str(other), "-p", "alt", "--progress", "none")
    assert refused.code == 4
    assert f"tmpup profiles check alt --config {shlex.quote(str(other))}" in refused.err
