"""tmpup's own state folder under faults: a full disk (RLIMIT_FSIZE in the child; a tiny tmpfs where
mounting works), a read-only one, a file in its way, and processes killed with SIGKILL.

Each ends in exit 3 (the state folder is the problem, as for every other state error) with one
`tmpup: error:` line, and leaves nothing behind for the next run to trip over: no empty lock file,
no partial copy of stdin. A spool that a killed process left is swept by `resume --clean`; a live
process's never is. Also here: a file changed in place (same size) says what changed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from tests.conftest import Result, make_file, run, sha256_file, write_tus_profile
from tests.test_bad_input import assert_error, start_throttled_upload
from tests.test_faults_download import _can_mount_tmpfs, _file_size_limit

MIB = 1024 * 1024
CAN_MOUNT = _can_mount_tmpfs()
FULL_DISKS = ["rlimit-fsize", pytest.param("tmpfs", marks=pytest.mark.skipif(not CAN_MOUNT, reason="cannot mount"))]
NO_MOUNT = "mounting a tmpfs needs root (CI runs as root and mounts); a read-only disk cannot be made otherwise"


def tmpup(
    *args: str, stdin: bytes = b"", preexec: Callable[[], None] | None = None, env: dict[str, str] | None = None
) -> Result:
    """The real `tmpup` program, with resource limits set in the child where given."""
    proc = subprocess.run(
        [sys.executable, "-m", "tmpup", *args],
        input=stdin,
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        preexec_fn=preexec,
    )
    return Result(proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"))


@contextlib.contextmanager
def tmpfs(where: Path, size: str, *options: str) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *options]), "tmpfs", str(where)], check=True
    )
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(folder: Path) -> None:
    """Write into `folder` until its disk has no byte left."""
    with (folder / "filler").open("wb", buffering=0) as fh, contextlib.suppress(OSError):
        while True:
            fh.write(b"\0" * 4096)


def left_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# -- a full disk while the resume record's lock is written ---------------------------------------------


@pytest.mark.parametrize("how", FULL_DISKS)
@pytest.mark.parametrize("provider", ["tus", "qlik --resumable"])
def test_a_full_disk_at_the_lock_is_a_state_error_and_leaves_no_lock(
    emulator: Any, config_path: Path, tmp_path: Path, how: str, provider: str
) -> None:
    from tests.conftest import write_qlik_profile

    if provider == "tus":
        write_tus_profile(emulator, config_path)
    else:
        write_qlik_profile(emulator, config_path)
    src = make_file(tmp_path / "f.bin", 3 * MIB)
    args = ["upload", str(src), "--progress", "none", *provider.split()[1:]]
    with contextlib.ExitStack() as stack:
        if how == "tmpfs":
            small = stack.enter_context(tmpfs(tmp_path / "small", "1m"))
            state = small / "state"
            state.mkdir()
            fill(small)
            full = tmpup(*args, env={"TMPUP_STATE_DIR": str(state)})
            assert_error(full, 3, "the resume record's lock", "the disk is full", "TMPUP_STATE_DIR")
        else:
            state = Path(os.environ["TMPUP_STATE_DIR"])
            full = tmpup(*args, preexec=_file_size_limit(0))  # not one byte may be written to any file
            assert_error(full, 3, "the resume record's lock", "File too large", "TMPUP_STATE_DIR")
        assert left_in(state / "uploads") == []  # no 0-byte lock file
        assert [b for b in emulator.store.blobs(provider.split()[0]) if b.size] == []  # and nothing sent
        if how == "tmpfs":
            (small / "filler").unlink()  # "free some space"
        done = tmpup(*args, env={"TMPUP_STATE_DIR": str(state)})
        assert done.code == 0, done.err
        assert left_in(state / "uploads") == []


# -- stdin: a state folder that cannot be written, a disk that fills while it is copied ----------------


def test_stdin_with_a_file_in_the_way_of_the_state_dir(qlik_profile: str, emulator: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    result = tmpup(
        "upload",
        "-",
        "--name",
        "a.txt",
        "--progress",
        "none",
        stdin=b"abc",
        env={"TMPUP_STATE_DIR": str(blocker / "st")},
    )
    assert_error(result, 3, "cannot write the copy of stdin", str(blocker / "st" / "spool"), "TMPUP_STATE_DIR")
    assert blocker.read_text() == "not a folder" and emulator.store.blobs("qlik") == []


@pytest.mark.parametrize("args", [["resume", "--list"], ["resume", "--clean"], ["resume", "--all"]])
def test_resume_records_that_cannot_be_read_are_not_called_none(
    qlik_profile: str, tmp_path: Path, args: list[str]
) -> None:
    """A file in the way of the state folder is an error to fix (exit 3), not "no interrupted uploads";
    a state folder that does not exist yet has none."""
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    result = tmpup(*args, env={"TMPUP_STATE_DIR": str(blocker / "st")})
    assert_error(result, 3, "cannot read the resume records in", str(blocker / "st" / "uploads"), "TMPUP_STATE_DIR")
    assert blocker.read_text() == "not a folder"
    listed = tmpup("resume", "--list", env={"TMPUP_STATE_DIR": str(tmp_path / "never-made")})
    assert listed.code == 0 and "no interrupted uploads" in listed.err


def test_delete_with_unreadable_resume_records_still_deletes(emulator: Any, config_path: Path, tmp_path: Path) -> None:
    """The upload is deleted on the server; that its records could not be looked through is a warning."""
    write_tus_profile(emulator, config_path)
    src = make_file(tmp_path / "f.bin", 100)
    url = tmpup("upload", str(src), "--progress", "none").out.strip()
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    result = tmpup("delete", url, env={"TMPUP_STATE_DIR": str(blocker / "st")})
    assert result.code == 0, result.err
    assert "deleted" in result.err and "could not be looked for" in result.err
    assert emulator.store.blobs("tus") == []


@pytest.mark.skipif(not CAN_MOUNT, reason=NO_MOUNT)
@pytest.mark.parametrize("exists", [False, True], ids=["new-state-dir", "existing-state-dir"])
def test_stdin_with_a_read_only_state_dir(qlik_profile: str, emulator: Any, tmp_path: Path, exists: bool) -> None:
    ro = tmp_path / "ro"
    with tmpfs(ro, "1m"):
        (ro / "st" / "spool").mkdir(parents=True)
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        state = ro / ("st" if exists else "new")
        result = tmpup(
            "upload", "-", "--name", "a.txt", "--progress", "none", stdin=b"abc", env={"TMPUP_STATE_DIR": str(state)}
        )
        assert_error(result, 3, "cannot write the copy of stdin", "Read-only file system", "make it writable")
        assert emulator.store.blobs("qlik") == []


@pytest.mark.parametrize("how", FULL_DISKS)
def test_stdin_on_a_full_disk_says_so_and_removes_the_partial_copy(
    qlik_profile: str, emulator: Any, tmp_path: Path, how: str
) -> None:
    data = os.urandom(3 * MIB)
    args = ["upload", "-", "--name", "piped.bin", "--progress", "none"]
    with contextlib.ExitStack() as stack:
        if how == "tmpfs":
            state = stack.enter_context(tmpfs(tmp_path / "small", "1m")) / "state"
            full = tmpup(*args, stdin=data, env={"TMPUP_STATE_DIR": str(state)})
            assert_error(full, 3, "cannot copy stdin to", "the disk is full after", "TMPUP_STATE_DIR")
        else:
            state = Path(os.environ["TMPUP_STATE_DIR"])
            full = tmpup(*args, stdin=data, preexec=_file_size_limit(MIB))
            assert_error(full, 3, "cannot copy stdin to", "file too large after 1.0 MiB", "TMPUP_STATE_DIR")
        assert left_in(state / "spool") == []  # the partial copy is gone
        assert emulator.store.blobs("qlik") == []
        if how == "tmpfs":
            subprocess.run(["mount", "-o", "remount,size=16m", str(state.parent)], check=True)
        done = tmpup(*args, "--json", stdin=data, env={"TMPUP_STATE_DIR": str(state)})
        assert done.code == 0, done.err
        assert emulator.blob_sha256("qlik", json.loads(done.out)["id"]) == sha256_file(_write(tmp_path / "d", data))
        assert left_in(state / "spool") == []


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# -- SIGKILL: the spool of a killed process is swept, a live one's is not -----------------------------


def _spooling(data: bytes) -> subprocess.Popen[bytes]:
    """A real `tmpup upload -` that has copied `data` and waits for more of stdin."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tmpup", "upload", "-", "--name", "x.bin", "--json", "--progress", "none"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    proc.stdin.write(data)
    proc.stdin.flush()
    return proc


def _spool_of(spool: Path, size: int, known: set[str]) -> Path:
    """The one new spool file that has reached `size` bytes (waits for it, as long as it takes)."""
    deadline = time.monotonic() + 60
    while True:
        found = [p for p in spool.glob("stdin-*.spool") if p.name not in known and p.stat().st_size >= size]
        if found:
            (path,) = found
            return path
        assert time.monotonic() < deadline, f"no spool of {size} bytes in {spool}: {left_in(spool)}"
        time.sleep(0.05)


def test_clean_sweeps_the_spool_of_a_killed_stdin_upload_and_not_a_live_one(
    qlik_profile: str, emulator: Any, state_dir: Path, tmp_path: Path
) -> None:
    spool = state_dir / "spool"
    data = os.urandom(2 * MIB)
    live = _spooling(data)
    killed = _spooling(data[: MIB + 7])
    try:
        live_spool = _spool_of(spool, len(data), set())
        killed_spool = _spool_of(spool, MIB, {live_spool.name})  # stdin is copied in 1 MiB reads

        both_alive = run("resume", "--clean", "--json")
        assert both_alive.code == 0, both_alive.err
        assert json.loads(both_alive.out)["stray_files"] == []
        assert live_spool.exists() and killed_spool.exists()

        killed.send_signal(signal.SIGKILL)
        killed.wait(60)
        assert killed.returncode == -signal.SIGKILL
        assert killed_spool.exists()  # SIGKILL gives no chance to clean up: this is what is left

        cleaned = run("resume", "--clean", "--json")
        assert cleaned.code == 0, cleaned.err
        assert json.loads(cleaned.out)["stray_files"] == [killed_spool.name]
        assert not killed_spool.exists() and live_spool.exists()
        human = run("resume", "--clean")
        assert human.code == 0 and "file(s) left" not in human.err  # nothing more to sweep

        assert live.stdin is not None
        live.stdin.write(data)  # the rest of the stream: the live upload carries on and finishes
        out, err = _finish(live, live.stdin)
        assert live.returncode == 0, err
        result = json.loads(out)
        assert result["size"] == 2 * len(data)
        assert emulator.blob_sha256("qlik", result["id"]) == sha256_file(_write(tmp_path / "d", data + data))
        assert left_in(spool) == []
    finally:
        for proc in (live, killed):
            if proc.poll() is None:
                proc.kill()
                proc.wait(60)


def _finish(proc: subprocess.Popen[bytes], stdin: IO[bytes]) -> tuple[str, str]:
    stdin.close()
    proc.stdin = None  # closed: communicate() must not flush it again
    out, err = proc.communicate(timeout=120)
    return out.decode(), err.decode()


# -- a file changed in place: same size, another mtime -------------------------------------------------


def test_a_file_changed_in_place_says_it_was_modified_not_a_size_change(
    qlik_profile: str, emulator: Any, tmp_path: Path, state_dir: Path
) -> None:
    size = 3 * MIB
    src = make_file(tmp_path / "live.log", size)
    # 1 MiB blocks at 1 MiB/s: once the first block reached the server, the last is seconds away.
    proc = start_throttled_upload(src, emulator)
    before = src.stat().st_mtime_ns
    with src.open("r+b") as fh:  # rewritten in place: the same size, other bytes
        fh.write(b"changed!" * 1024)
    assert src.stat().st_size == size and src.stat().st_mtime_ns != before
    out, err = proc.communicate(timeout=60)
    result = Result(proc.returncode, out.decode(), err.decode())
    assert_error(result, 9, "live.log", "changed while it was being uploaded", "same size, but modified", "mtime")
    assert f"{size} -> {size}" not in result.err
    assert not (state_dir / "receipts.jsonl").exists()
