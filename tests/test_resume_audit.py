"""Resume records, receipts and `tmpup resume` after the state/resume audit (findings 2, 3, 6-10).

Everything runs the real CLI against the emulator: in-process through `tmpup.cli.main` (`run`), or
as a real process interrupted with SIGINT/SIGTERM mid-transfer (throttled with --limit-rate).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_file, run, sha256_file
from tests.test_tus_client import (
    MIB,
    assert_clean,
    fail_with_503,
    finish,
    interrupt_midway,
    records,
    server_offset,
    start,
    tus_profile,
    upload_id,
    wait_until,
)
from tmpup.emulator import Emulator, Fault
from tmpup.state import StateStore

__all__ = ["tus_profile"]  # a fixture, imported for this module's tests


def kept_after_503(emu: Emulator, provider: str, src: Path, *extra: str) -> dict[str, Any]:
    """Leave an interrupted upload of `src` (exit 10, every PATCH answered 503); return its record."""
    fail_with_503(emu, provider, str(src), *extra)
    (record,) = [r for r in records(Path(os.environ["TMPUP_STATE_DIR"])) if r["file"]["path"] == str(src.resolve())]
    return record


def error_line(err: str) -> str:
    (line,) = [line for line in err.splitlines() if line.startswith("tmpup: error:")]
    return line


def receipts(state_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (state_dir / "receipts.jsonl").read_text().splitlines()]


# -- finding 2: --list escapes control characters in paths ------------------------------------------


def test_list_shows_paths_with_control_characters_escaped(
    tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path
) -> None:
    red = make_file(tmp_path / "x\x1b[31mred.bin", 1000)
    split = make_file(tmp_path / "two\nlines.bin", 1000, seed=2)  # printable: the newline shows as a space
    kept_after_503(emulator, "tus", red, "--name", "red.bin")
    kept_after_503(emulator, "tus", split, "--name", "split.bin")

    table = run("resume", "--list")
    assert table.code == 0, table.err
    assert "\x1b" not in table.out and "\x1b" not in table.err
    assert len(table.lines) == 3  # the header and one row per record: no row split by the newline
    assert any("x?[31mred.bin" in line and line.endswith("resumable") for line in table.lines)
    assert any("two lines.bin" in line and line.endswith("resumable") for line in table.lines)

    listed = run("resume", "--list", "--json")  # exact JSON: the real path, escaped by JSON itself
    assert listed.code == 0 and "\x1b" not in listed.out
    assert {json.loads(line)["file"] for line in listed.lines} == {str(red.resolve()), str(split.resolve())}


# -- finding 3: an interrupted `resume --all` names what continues every upload left --------------


def kept_files(emulator: Emulator, tmp_path: Path, count: int, size: int) -> list[Path]:
    files = [make_file(tmp_path / f"h{n}.bin", size, seed=n) for n in range(count)]
    for src in files:
        kept_after_503(emulator, "tus", src)
    return files


def test_interrupting_resume_all_names_resume_all_when_several_are_left(
    tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path
) -> None:
    files = kept_files(emulator, tmp_path, 3, 3 * MIB)
    proc = start("resume", "--all", "--limit-rate", "1M", "--progress", "none")
    try:
        wait_until(lambda: any(b.offset > 0 for b in emulator.store.blobs("tus")), "the first resumed bytes")
    finally:
        proc.send_signal(signal.SIGINT)
    code, _out, err = finish(proc)
    assert code == 130, err
    line = error_line(err)
    assert "interrupted (Ctrl-C)" in line
    assert "3 uploads were kept; continue them with: tmpup resume --all" in line

    done = run("resume", "--all", "--json", "--progress", "none")  # following the hint finishes all
    assert done.code == 0, done.err
    results = [json.loads(line) for line in done.lines]
    assert sorted(r["file"] for r in results) == sorted(str(f.resolve()) for f in files)
    for result in results:
        assert emulator.blob_sha256("tus", result["id"]) == sha256_file(Path(result["file"]))
    assert_clean(state_dir)


def test_interrupting_resume_all_names_the_one_left(
    tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path
) -> None:
    files = kept_files(emulator, tmp_path, 2, 2 * MIB)
    urls = {r["file"]["path"]: r["upload_url"] for r in records(state_dir)}
    # `resume --all` takes the records in the order of their keys, as `records` lists them.
    before, last = (Path(r["file"]["path"]) for r in records(state_dir))
    proc = start("resume", "--all", "--limit-rate", "2M", "--progress", "none")
    try:
        wait_until(
            lambda: (
                server_offset(emulator, "tus", urls[str(before)]) == before.stat().st_size
                and server_offset(emulator, "tus", urls[str(last)]) > 0
            ),
            "the first upload done, the second under way",
        )
    finally:
        proc.send_signal(signal.SIGTERM)
    code, _out, err = finish(proc)
    assert code == 130, err
    line = error_line(err)
    assert "interrupted (SIGTERM)" in line and "--all" not in line
    assert f"the upload was kept; continue it with: tmpup resume {shlex.quote(str(last))}" in line
    assert [r["file"]["path"] for r in records(state_dir)] == [str(last)]
    assert {p.resolve() for p in files} == {before, last}


# -- finding 6: --checksum survives the printed resume command ----------------------------------------


@pytest.mark.parametrize("how", ["resume FILE", "resume --all", "upload FILE"])
def test_checksum_is_reported_by_the_command_that_continues(
    tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path, how: str
) -> None:
    src = make_file(tmp_path / "f.bin", 6 * MIB)
    record, (code, _out, err) = interrupt_midway(
        emulator, state_dir, "tus", [str(src), "--checksum"], sig=signal.SIGINT, at=MIB
    )
    assert code == 130 and f"tmpup resume {src.resolve()}" in err
    assert record["extra"]["checksum"] is True and "token" not in json.dumps(record).lower()
    command = {
        "resume FILE": ["resume", str(src)],
        "resume --all": ["resume", "--all"],
        "upload FILE": ["upload", str(src)],  # no --checksum: the record remembers it
    }[how]
    done = run(*command, "--json", "--progress", "none")
    assert done.code == 0, done.err
    result = json.loads(done.out)
    assert result["resumed"] is True and "resuming at" in done.err
    assert result["sha256"] == sha256_file(src)  # of the whole file, the part sent before included
    assert emulator.blob_sha256("tus", result["id"]) == sha256_file(src)
    assert receipts(state_dir)[-1]["sha256"] == sha256_file(src)
    assert_clean(state_dir)


def test_no_checksum_unless_asked_or_remembered(
    tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path
) -> None:
    plain = make_file(tmp_path / "plain.bin", 1000)
    kept_after_503(emulator, "tus", plain)
    assert run("resume", str(plain), "--json", "--progress", "none").out.count('"sha256": null') == 1

    changed = make_file(tmp_path / "changed.bin", 1000, seed=2)
    kept_after_503(emulator, "tus", changed, "--checksum")
    make_file(changed, 1200, seed=3)  # another file now: a new upload, which nobody asked to hash
    again = run("upload", str(changed), "--json", "--progress", "none")
    assert again.code == 0, again.err
    assert "starting a new upload" in again.err
    assert json.loads(again.out)["resumed"] is False and json.loads(again.out)["sha256"] is None


# -- finding 7: a record with a wrong-typed or unparsable field is damaged, everywhere -----------------

BAD_FIELDS: dict[str, Any] = {
    "expires_at": "notadate",
    "created_at": "2026-12-01T13:07:29",  # no time zone: comparing it with the clock would fail
    "offset": "x",
    "size": True,
    "file": 3,
    "extra": {"ttl": "1h"},
    "offset_exact": "yes",
}


def damage(state_dir: Path, field: str) -> dict[str, Any]:
    (path,) = (state_dir / "uploads").glob("*.json")
    data = json.loads(path.read_text())
    data[field] = BAD_FIELDS[field]
    path.write_text(json.dumps(data))
    return data


@pytest.mark.parametrize("field", sorted(BAD_FIELDS))
def test_a_wrong_typed_field_is_listed_as_damaged_and_cleaned(
    tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path, field: str
) -> None:
    src = make_file(tmp_path / "f.bin", 1000)
    kept_after_503(emulator, "tus", src)
    damage(state_dir, field)

    table = run("resume", "--list")
    assert table.code == 0, table.err
    assert "1 record(s)" in table.err and "--clean" in table.err
    (_header, row) = table.lines
    assert row.endswith("damaged")
    if field != "file":
        assert row.startswith(str(src.resolve()))  # its key still says whose it is
    listed = run("resume", "--list", "--json")
    assert listed.code == 0 and listed.out == "" and "1 record(s)" in listed.err

    cleaned = run("resume", "--clean", "--json")
    assert cleaned.code == 0, cleaned.err
    assert [r["reason"] for r in json.loads(cleaned.out)["records"]] == ["damaged"]
    assert_clean(state_dir)


@pytest.mark.parametrize("field", ["expires_at", "offset", "file"])
@pytest.mark.parametrize("how", ["upload FILE", "resume FILE", "resume --all"])
def test_a_wrong_typed_record_starts_a_new_upload_with_a_warning(
    tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path, field: str, how: str
) -> None:
    src = make_file(tmp_path / "f.bin", 3000)
    kept_after_503(emulator, "tus", src)
    old = damage(state_dir, field)
    command = {"upload FILE": ["upload"], "resume FILE": ["resume"], "resume --all": ["resume", "--all"]}[how]
    if how != "resume --all":
        command.append(str(src))
    done = run(*command, "--json", "--progress", "none")
    if how == "resume --all" and field == "file":
        # Nothing in it says which file it was: skipped, with a warning, and nothing else to resume.
        assert done.code == 5 and "cannot be read and were skipped" in done.err
        return
    assert done.code == 0, done.err
    assert "resume record is damaged; starting a new upload" in done.err
    result = json.loads(done.out)
    assert result["resumed"] is False and result["url"] != old["upload_url"]
    assert emulator.blob_sha256("tus", result["id"]) == sha256_file(src)
    assert_clean(state_dir)


# -- finding 8: --no-resume and delete leave no record offering the replaced upload ------------------


def test_no_resume_removes_the_record_it_replaces_and_ends_that_upload(
    tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path
) -> None:
    src = make_file(tmp_path / "f.bin", 1000)
    old = kept_after_503(emulator, "tus", src)
    fresh = run("upload", str(src), "--no-resume", "--json", "--progress", "none")
    assert fresh.code == 0, fresh.err
    assert "removed the resume record" in fresh.err
    assert_clean(state_dir)
    assert emulator.store.get("tus", upload_id(old["upload_url"])) is None  # terminated on the server
    listed = run("resume", "--list")
    assert listed.out == "" and "no interrupted uploads" in listed.err
    again = run("upload", str(src), "--json", "--progress", "none")  # a new upload, no resume
    assert again.code == 0 and json.loads(again.out)["resumed"] is False and "resuming" not in again.err


def test_no_resume_on_qlik_removes_the_record_too(
    qlik_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path
) -> None:
    src = make_file(tmp_path / "f.bin", 1000)
    kept_after_503(emulator, "qlik", src, "--resumable")
    fresh = run("upload", str(src), "--no-resume", "--json", "--progress", "none")
    assert fresh.code == 0, fresh.err
    assert emulator.blob_sha256("qlik", json.loads(fresh.out)["id"]) == sha256_file(src)
    assert_clean(state_dir)


def test_no_resume_leaves_a_record_another_process_holds(
    tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path
) -> None:
    src = make_file(tmp_path / "f.bin", 1000)
    old = kept_after_503(emulator, "tus", src)
    with StateStore(state_dir).lock(old["key"], "held"):
        fresh = run("upload", str(src), "--no-resume", "--progress", "none")
    assert fresh.code == 0, fresh.err
    assert [r["upload_url"] for r in records(state_dir)] == [old["upload_url"]]


@pytest.mark.parametrize("by", ["url", "id"])
def test_delete_of_an_interrupted_upload_removes_its_record(
    tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path, by: str
) -> None:
    src = make_file(tmp_path / "f.bin", 1000)
    other = make_file(tmp_path / "other.bin", 1000, seed=2)
    old = kept_after_503(emulator, "tus", src)
    kept = kept_after_503(emulator, "tus", other)
    deleted = run("delete", old["upload_url"] if by == "url" else upload_id(old["upload_url"]))
    assert deleted.code == 0, deleted.err
    assert f"removed the resume record of {src.resolve()}" in deleted.err
    assert [r["upload_url"] for r in records(state_dir)] == [kept["upload_url"]]  # only that one
    again = run("resume", "--all", "--json", "--progress", "none")  # nothing re-creates the deleted one
    assert again.code == 0, again.err
    assert [json.loads(line)["file"] for line in again.lines] == [str(other.resolve())]


# -- finding 9: receipts.jsonl is 0600 again after an append ------------------------------------------


def test_an_append_makes_a_readable_receipts_file_private_again(
    tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path
) -> None:
    src = make_file(tmp_path / "f.bin", 100)
    assert run("upload", str(src), "--progress", "none").code == 0
    path = state_dir / "receipts.jsonl"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    assert run("upload", str(src), "--progress", "none").code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(receipts(state_dir)) == 2


# -- finding 10: wording ------------------------------------------------------------------------------


def test_resume_all_failure_lines_name_the_file_once(
    tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path
) -> None:
    gone = make_file(tmp_path / "e1.bin", 1000)
    held = make_file(tmp_path / "n1.bin", 1000, seed=2)
    kept_after_503(emulator, "tus", gone)
    held_record = kept_after_503(emulator, "tus", held)
    gone.unlink()
    with StateStore(state_dir).lock(held_record["key"], "held"):
        result = run("resume", "--all", "--progress", "none")
    assert result.code == 11, result.err  # two different failures (7 and 10)
    lines = [line for line in result.err.splitlines() if line.startswith("tmpup: error:")]
    (missing,) = [line for line in lines if "e1.bin" in line]
    (locked,) = [line for line in lines if "n1.bin" in line]
    assert missing.count(str(gone.resolve())) == 1 and "no such file" in missing
    assert locked.count(str(held.resolve())) == 1 and "another tmpup process" in locked


@pytest.mark.parametrize("provider", ["tus", "qlik"])
def test_an_upload_that_keeps_expiring_gives_advice_that_applies(
    request: pytest.FixtureRequest, emulator: Emulator, state_dir: Path, tmp_path: Path, provider: str
) -> None:
    request.getfixturevalue("tus_profile" if provider == "tus" else "qlik_profile")
    emulator.faults.add(Fault(provider=provider, method="PATCH", expire=True, times=None))
    src = make_file(tmp_path / "f.bin", MIB)
    failed = run("upload", str(src), "--progress", "none", "--resumable")
    assert failed.code == 6, failed.err
    line = error_line(failed.err)
    if provider == "qlik":
        assert "use a longer --ttl or a faster link" in line
    else:  # a tus server decides itself when uploads expire, and tmpup ignores --ttl for it
        assert "--ttl" not in line and "faster link" in line and "server" in line
    assert_clean(state_dir)
