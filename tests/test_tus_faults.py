"""Resumable uploads under faults: dropped connections, killed processes, 423 storms, expiry
mid-way, a file modified between runs, two processes on one file.

After each: the server's bytes equal the file's (sha256) and nothing is left half-done locally.
Faults come from the emulator's own injection (`Fault`), processes are real (`python -m tmpup`).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_file, run, sha256_file, write_config
from tests.test_tus_client import (
    MIB,
    assert_clean,
    finish,
    interrupt_midway,
    records,
    start,
    tus_profile,
    upload_id,
    upload_json,
    wait_until,
)
from tmpup.emulator import Emulator, Fault

__all__ = ["tus_profile"]  # a fixture, imported for this module's tests

UPLOAD_PATH = r"/files/[0-9a-f]+$"  # tus upload URLs (HEAD/PATCH), not the creation endpoint


def assert_uploaded(emu: Emulator, provider: str, record: dict[str, Any], src: Path) -> None:
    assert emu.blob_sha256(provider, record["id"]) == sha256_file(src)


# -- dropped connections ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("drops", "chunk"),
    [
        ([0], None),
        ([1, MIB - 1, MIB, 2 * MIB + 17], None),
        ([5], "1M"),
        ([MIB // 2, 0, 3], "2M"),
    ],
)
def test_connection_dropped_at_several_offsets(
    tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path, drops: list[int], chunk: str | None
) -> None:
    for n in drops:
        emulator.faults.add(Fault(provider="tus", method="PATCH", drop_after=n, times=1))
    src = make_file(tmp_path / "f.bin", 6 * MIB + 3)
    result = run("upload", str(src), "--json", "--progress", "none", *(["--chunk-size", chunk] if chunk else []))
    assert result.code == 0, result.err
    assert "retrying" in result.err
    record = json.loads(result.out)
    assert record["resumed"] is False  # recovered within the run: the same upload, continued
    assert_uploaded(emulator, "tus", record, src)
    assert len(emulator.store.blobs("tus")) == 1
    assert_clean(state_dir)


def test_dropped_head_and_5xx_bursts(tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path) -> None:
    emulator.faults.add(Fault(provider="tus", method="PATCH", drop_after=MIB, times=1))
    emulator.faults.add(Fault(provider="tus", method="HEAD", drop_after=0, times=1))
    emulator.faults.add(Fault(provider="tus", method="HEAD", status=500, times=1))
    emulator.faults.add(Fault(provider="tus", method="PATCH", status=503, retry_after=0, times=2))
    src = make_file(tmp_path / "f.bin", 3 * MIB)
    record = upload_json(str(src), "--retries", "5")  # five failures in a row before any progress
    assert_uploaded(emulator, "tus", record, src)
    assert_clean(state_dir)


def test_a_link_that_never_recovers_keeps_the_record(
    tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path
) -> None:
    emulator.faults.add(Fault(provider="tus", method="PATCH", drop_after=0, times=None))
    src = make_file(tmp_path / "f.bin", 2 * MIB)
    failed = run("upload", str(src), "--progress", "none")
    assert failed.code == 10, failed.err
    assert f"tmpup resume {src}" in failed.err
    assert len(records(state_dir)) == 1
    emulator.faults.clear()
    done = run("resume", str(src), "--json", "--progress", "none")
    assert done.code == 0, done.err
    assert_uploaded(emulator, "tus", json.loads(done.out), src)
    assert_clean(state_dir)


# -- killed and interrupted processes --------------------------------------------------------------


def test_killed_mid_upload_resumes_where_the_server_is(
    tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path
) -> None:
    src = make_file(tmp_path / "f.bin", 10 * MIB)
    record, (code, _out, _err) = interrupt_midway(emulator, state_dir, "tus", [str(src)])
    assert code == -signal.SIGKILL
    (left,) = records(state_dir)
    kept = server_bytes = emulator.store.find("tus", upload_id(record["upload_url"])).offset
    # A killed process wrote nothing after its PATCH began: the record holds only a lower bound, and says so.
    assert left["offset"] == 0 and left["offset_exact"] is False
    assert "at least 0% of 10.0 MiB" in run("resume", "--list").out

    again = run("upload", str(src), "--json", "--progress", "none")
    assert again.code == 0, again.err
    assert "resuming at" in again.err and f"({100 * kept // src.stat().st_size}%)" in again.err
    result = json.loads(again.out)
    assert result["resumed"] is True and result["url"] == record["upload_url"]
    assert server_bytes > 0
    assert_uploaded(emulator, "tus", result, src)
    assert_clean(state_dir)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_keep_the_record_and_print_the_resume_command(
    tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path, sig: int
) -> None:
    src = make_file(tmp_path / "f.bin", 10 * MIB)
    record, (code, out, err) = interrupt_midway(emulator, state_dir, "tus", [str(src)], sig=sig)
    assert code == 130
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tmpup: error: interrupted")
    assert f"tmpup resume {src}" in lines[0]
    (kept,) = records(state_dir)
    assert kept["upload_url"] == record["upload_url"]
    assert sorted(p.suffix for p in (state_dir / "uploads").iterdir()) == [".json", ".lock"]
    # Stopping, it asked the server where the upload is: the record's offset is the server's, exactly.
    server = emulator.store.find("tus", upload_id(record["upload_url"])).offset
    assert kept["offset"] == server > 0 and kept["offset_exact"] is True
    listed = run("resume", "--list")
    assert f"  {100 * server // src.stat().st_size}% of 10.0 MiB  " in listed.out and "at least" not in listed.out

    done = run("resume", str(src), "--json", "--progress", "none")
    assert done.code == 0, done.err
    result = json.loads(done.out)
    assert result["resumed"] is True
    assert_uploaded(emulator, "tus", result, src)
    assert_clean(state_dir)


def test_progress_of_a_resumed_upload_starts_where_the_server_is(
    tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path
) -> None:
    src = make_file(tmp_path / "f.bin", 12 * MIB)
    size = src.stat().st_size
    record, _ = interrupt_midway(emulator, state_dir, "tus", [str(src)], at=4 * MIB)
    kept = emulator.store.find("tus", upload_id(record["upload_url"])).offset
    resumed = run("upload", str(src), "--progress", "json", "--limit-rate", "4M")
    assert resumed.code == 0, resumed.err
    events = [json.loads(line) for line in resumed.err.splitlines() if line.startswith("{")]
    # every event, `start` included: the task exists before the HEAD, then moves to the server's offset
    names = [e["event"] for e in events]
    assert names[:2] == ["start", "resume"] and names[-1] == "done", names
    assert events[0]["bytes"] == 0 and events[1]["bytes"] == kept and events[1]["total"] == size
    assert all(e["bytes"] >= kept for e in events[1:])
    assert events[-1]["bytes"] == size


def test_resumed_bytes_are_not_counted_as_speed_in_any_renderer() -> None:
    import io

    from tmpup.progress import LinesProgress, NullProgress
    from tmpup.progress_bar import RichProgress

    now = [100.0]
    lines = LinesProgress(lambda: io.StringIO(), interval=1000.0, clock=lambda: now[0])
    lines.add_total(2, 200)
    task = lines.task("f", 100)
    now[0] += 5  # the HEAD took a while
    task.resume_at(60)
    now[0] += 2
    task.advance(10)
    assert task.completed == 70 and task.rate == 5.0  # type: ignore[attr-defined]
    overall = lines.overall
    assert overall is not None and overall.completed == 70 and overall.rate == 10 / 7

    bar = RichProgress()
    bar.add_total(2, 200)
    rich_task = bar.task("f", 100)
    bar.sync()  # drawn before the HEAD answers, then again after the jump
    rich_task.resume_at(60)
    bar.sync()
    shown, total = bar.bar._tasks[rich_task.row], bar.bar._tasks[bar.total_row]  # type: ignore[attr-defined]
    assert shown.completed == 60 and total.completed == 60
    assert shown.speed is None and total.speed is None  # no sample holds the jump
    rich_task.advance(10)
    bar.sync()
    assert shown.completed == 70 and total.completed == 70

    NullProgress().task("f", 100).resume_at(60)


# -- 423 Locked ------------------------------------------------------------------------------------


def test_423_storm_waits_and_continues(tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path) -> None:
    emulator.faults.add(Fault(provider="tus", path=UPLOAD_PATH, status=423, retry_after=0, times=9))
    src = make_file(tmp_path / "f.bin", 2 * MIB)
    result = run("upload", str(src), "--json", "--progress", "none", "--retries", "9")
    assert result.code == 0, result.err
    assert "locked" in result.err
    assert_uploaded(emulator, "tus", json.loads(result.out), src)
    assert_clean(state_dir)


def test_423_counts_against_retries_when_no_request_of_ours_can_hold_the_lock(
    tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path
) -> None:
    # Somebody else holds the upload: --retries 1 means one retry, not a two-minute wait
    emulator.faults.add(Fault(provider="tus", path=UPLOAD_PATH, status=423, retry_after=0, times=None))
    src = make_file(tmp_path / "f.bin", MIB)
    result = run("upload", str(src), "--progress", "json", "--retries", "1")
    assert result.code == 10, result.err
    assert result.err.count("locked on the server") == 1
    last = [json.loads(line) for line in result.err.splitlines() if line.startswith("{")][-1]
    assert last["event"] == "failed" and last["bytes"] == 0  # what the server holds, not what was sent


def test_423_after_our_own_patch_was_cut_waits_past_retries(
    tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path
) -> None:
    # Our cut PATCH may hold the server's lock until the server notices: that wait is not the retry budget
    emulator.faults.add(Fault(provider="tus", method="PATCH", drop_after=MIB // 2, times=1))
    emulator.faults.add(Fault(provider="tus", path=UPLOAD_PATH, status=423, retry_after=0, times=5))
    src = make_file(tmp_path / "f.bin", MIB)
    result = run("upload", str(src), "--json", "--progress", "none")  # the profile's retries = 2
    assert result.code == 0, result.err
    assert "locked" in result.err
    assert_uploaded(emulator, "tus", json.loads(result.out), src)


def test_endless_423_is_transient_and_resumable(
    tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path
) -> None:
    emulator.faults.add(Fault(provider="tus", path=UPLOAD_PATH, status=423, retry_after=0, times=None))
    src = make_file(tmp_path / "f.bin", MIB)
    failed = run("upload", str(src), "--progress", "none")
    assert failed.code == 10, failed.err
    assert "423" in failed.err and f"tmpup resume {src}" in failed.err
    emulator.faults.clear()
    done = run("resume", "--all", "--json", "--progress", "none")
    assert done.code == 0, done.err
    assert_uploaded(emulator, "tus", json.loads(done.out), src)
    assert_clean(state_dir)


# -- expiry ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["tus", "qlik"])
def test_upload_expiring_midway_restarts_with_a_new_upload(
    request: pytest.FixtureRequest, emulator: Emulator, state_dir: Path, tmp_path: Path, provider: str
) -> None:
    request.getfixturevalue("tus_profile" if provider == "tus" else "qlik_profile")
    # the first PATCH gets half-way, then the upload expires under it
    emulator.faults.add(Fault(provider=provider, method="PATCH", drop_after=MIB, times=1))
    emulator.faults.add(Fault(provider=provider, method="HEAD", expire=True, times=1))
    src = make_file(tmp_path / "f.bin", 3 * MIB)
    result = run("upload", str(src), "--json", "--progress", "none", "--resumable")
    assert result.code == 0, result.err
    assert "starting a new upload" in result.err and "410" in result.err
    record = json.loads(result.out)
    assert_uploaded(emulator, provider, record, src)
    assert len(emulator.store.blobs(provider)) == 2  # the expired one and the new one
    if provider == "qlik":
        info = run("info", record["id"], "--json")
        assert info.code == 0 and json.loads(info.out)["size"] == src.stat().st_size
    assert_clean(state_dir)


def test_an_upload_that_always_expires_gives_up(
    qlik_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path
) -> None:
    emulator.faults.add(Fault(provider="qlik", method="PATCH", expire=True, times=None))
    src = make_file(tmp_path / "f.bin", MIB)
    failed = run("upload", str(src), "--progress", "none", "--resumable")
    assert failed.code == 6, failed.err
    assert "--ttl" in failed.err
    assert_clean(state_dir)


def test_expired_between_runs_starts_over(
    qlik_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path
) -> None:
    src = make_file(tmp_path / "f.bin", 8 * MIB)
    record, _ = interrupt_midway(emulator, state_dir, "qlik", [str(src), "--resumable", "--ttl", "60"])
    emulator.clock.advance(61)  # the server's clock only: tmpup learns it from the 410
    again = run("upload", str(src), "--json", "--progress", "none")
    assert again.code == 0, again.err
    assert "no longer has the upload" in again.err
    result = json.loads(again.out)
    assert result["resumed"] is False and result["id"] != upload_id(record["upload_url"])
    assert_uploaded(emulator, "qlik", result, src)
    assert_clean(state_dir)


def test_a_record_past_its_expiry_is_not_even_asked_about(
    tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path
) -> None:
    src = make_file(tmp_path / "f.bin", 8 * MIB)
    interrupt_midway(emulator, state_dir, "tus", [str(src)])
    (path,) = (state_dir / "uploads").glob("*.json")
    data = json.loads(path.read_text())
    data["expires_at"] = "2001-01-01T00:00:00+00:00"
    path.write_text(json.dumps(data))
    heads = Fault(provider="tus", method="HEAD", delay=0.0, times=100)
    emulator.faults.add(heads)
    again = run("upload", str(src), "--json", "--progress", "none")
    assert again.code == 0, again.err
    assert "expired" in again.err and "starting a new upload" in again.err
    assert [left for f, left in emulator.faults.active() if f is heads] == [100]
    assert_uploaded(emulator, "tus", json.loads(again.out), src)
    assert_clean(state_dir)


# -- the file changes ------------------------------------------------------------------------------


def test_file_modified_between_runs_is_never_resumed_into_the_old_upload(
    tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path
) -> None:
    src = make_file(tmp_path / "f.bin", 8 * MIB)
    record, _ = interrupt_midway(emulator, state_dir, "tus", [str(src)])
    make_file(src, 8 * MIB, seed=2)  # same size, other bytes
    os.utime(src, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns + 10**9))
    again = run("upload", str(src), "--json", "--progress", "none")
    assert again.code == 0, again.err
    assert "changed" in again.err and "starting a new upload" in again.err
    result = json.loads(again.out)
    assert result["resumed"] is False and result["url"] != record["upload_url"]
    assert_uploaded(emulator, "tus", result, src)
    # the superseded upload was terminated on the server (tus termination is offered)
    assert emulator.store.get("tus", upload_id(record["upload_url"])) is None
    assert_clean(state_dir)


# -- two processes, one file -----------------------------------------------------------------------


def test_a_second_upload_of_the_same_file_says_so_and_exits(
    tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path
) -> None:
    src = make_file(tmp_path / "f.bin", 8 * MIB)
    first = start("upload", str(src), "--limit-rate", "4M", "--progress", "none", "--json")
    wait_until(lambda: len(records(state_dir)) == 1, "the first upload's record")
    second = run("upload", str(src), "--progress", "none")
    assert second.code == 10, second.err
    assert "being uploaded by another tmpup process" in second.err
    code, out, err = finish(first)
    assert code == 0, err
    assert_uploaded(emulator, "tus", json.loads(out), src)
    assert len(emulator.store.blobs("tus")) == 1
    assert_clean(state_dir)


def test_two_resumes_of_one_upload_at_once(
    tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path
) -> None:
    src = make_file(tmp_path / "f.bin", 8 * MIB)
    interrupt_midway(emulator, state_dir, "tus", [str(src)])
    emulator.faults.add(Fault(provider="tus", method="HEAD", delay=2.0, times=1))  # holds the first one
    first = start("resume", str(src), "--json", "--progress", "none")
    wait_until(lambda: emulator.faults.active() == [], "the first resume's HEAD")
    second = start("resume", "--all", "--json", "--progress", "none")
    results = [finish(first), finish(second)]
    codes = sorted(code for code, _out, _err in results)
    assert codes == [0, 10], results
    winner = next(out for code, out, _err in results if code == 0)
    loser = next(err for code, _out, err in results if code == 10)
    assert "being uploaded by another tmpup process" in loser
    assert_uploaded(emulator, "tus", json.loads(winner), src)
    assert len(emulator.store.blobs("tus")) == 1
    assert_clean(state_dir)


def test_a_token_in_the_creation_url_stays_out_of_the_resume_record(
    emulator: Emulator, config_path: Path, state_dir: Path, tmp_path: Path
) -> None:
    # The logs mask `?token=...`; the record (DESIGN.md 5: "holding no credentials") must not keep it either
    write_config(
        config_path,
        f'[profiles.t]\nprovider = "tus"\nurl = "{emulator.mount_url("tus")}?token=hunter3pw"\nretries = 0\n',
    )
    emulator.faults.add(Fault(provider="tus", method="PATCH", drop_after=MIB // 2, times=1))
    src = make_file(tmp_path / "f.bin", MIB)
    failed = run("upload", str(src), "--progress", "none")
    assert failed.code == 10, failed.err
    records = list((state_dir / "uploads").glob("*.json"))
    assert len(records) == 1
    assert "hunter3pw" not in records[0].read_text() and "token=" in records[0].read_text()
    assert "hunter3pw" not in failed.err
    done = run("resume", str(src), "--json", "--progress", "none")
    assert done.code == 0, done.err
    assert json.loads(done.out)["resumed"] is True  # the masked URL still matches this endpoint
    assert_uploaded(emulator, "tus", json.loads(done.out), src)


def test_a_second_ctrl_c_while_stopping_still_prints_the_resume_command(
    tus_profile: str, emulator: Emulator, state_dir: Path, tmp_path: Path
) -> None:
    # Stopping, tmpup asks the server where the upload is (HEAD); an impatient second Ctrl-C arrives
    # meanwhile. It cuts that question short, not the message that says how to continue.
    src = make_file(tmp_path / "f.bin", 10 * MIB)
    proc = start("upload", str(src), "--limit-rate", "4M", "--progress", "none")
    try:
        wait_until(lambda: len(records(state_dir)) == 1, "the resume record")
        slow_head = emulator.faults.add(Fault(provider="tus", method="HEAD", delay=5, times=1))
    finally:
        proc.send_signal(signal.SIGINT)
    # The fault is used up when the HEAD arrives (it then waits out its delay): that is the moment.
    wait_until(lambda: slow_head not in [f for f, _ in emulator.faults.active()], "the stopping HEAD")
    proc.send_signal(signal.SIGINT)
    code, out, err = finish(proc)
    assert code == 130 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tmpup: error: interrupted"), err
    assert f"tmpup resume {src}" in lines[0]
    emulator.faults.clear()
    done = run("resume", str(src), "--json", "--progress", "none")
    assert done.code == 0, done.err
    assert_uploaded(emulator, "tus", json.loads(done.out), src)
