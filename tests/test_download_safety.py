"""Download safety: one process per `.part`, no entry at the target replaced without `--force`, and
clear one-line errors for names and ids that cannot be used.

Concurrent runs are real `tmpup` processes racing on one target. They are ordered by a server that
stops in the middle of a body until the test lets it go on (`paused`), so that the first process is
sure to be downloading (holding the `.part`'s lock) when the second starts: no sleeps decide anything.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Result, make_file, run, run_process, write_qlik_profile, write_tus_profile
from tests.test_bad_input import Garbage, answer, assert_error, provider_env
from tests.test_download_retry import BLOCK, DATA, Handler, Server, Step, part_of, ranges, wait_for

AT = 4 * BLOCK  # where `paused` stops: whole blocks, so the .part holds exactly this much meanwhile
LOCKED = ("is being downloaded by another tmpup process", "this run changed nothing")


def paused(at: int, gate: threading.Event) -> Step:
    """Answer as a server does (206 for `Range: bytes=N-`), but stop after `at` bytes of the body
    until `gate` is set, then send the rest."""

    def step(server: Server, h: Handler) -> None:
        match = re.fullmatch(r"bytes=(\d+)-", h.headers.get("Range") or "")
        start = int(match.group(1)) if match else 0
        body = server.data[start:]
        h.send_response(206 if match else 200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(len(body)))
        h.send_header("ETag", server.etag)
        if match:
            h.send_header("Content-Range", f"bytes {start}-{len(server.data) - 1}/{len(server.data)}")
        h.end_headers()
        h.wfile.write(body[:at])
        h.wfile.flush()
        gate.wait(60)
        h.wfile.write(body[at:])

    return step


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # never leave a handler waiting


def args(out: Path, *extra: str) -> list[str]:
    return ["download", "6571", "-o", str(out), "--progress", "none", "-q", *extra]


def start(server: Server, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tmpup", *args(out, *extra)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **provider_env("qlik", server.url)},
    )


@contextlib.contextmanager
def downloading(server: Server, out: Path, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """`start` a download process for the `with` block; one still running at its end is killed."""
    proc = start(server, out, *extra)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()


def wait_for_part(part: Path, size: int, what: str = "the download") -> None:
    """Wait until `part` exists and holds `size` bytes (where `paused` holds the download)."""
    wait_for(lambda: part.exists() and part.stat().st_size == size, what)


def finish(proc: subprocess.Popen[bytes]) -> Result:
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return Result(proc.returncode, out.decode(), err.decode())


def second(server: Server, out: Path, *extra: str) -> Result:
    """Another real tmpup process, run to its end."""
    return run_process(*args(out, *extra), env=provider_env("qlik", server.url), timeout=60)


def snapshot(path: Path) -> tuple[int, int, bytes]:
    st = os.stat(path)
    return st.st_ino, st.st_size, path.read_bytes()


# -- one process per .part ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("held", "first", "other"),
    [
        pytest.param(0, (), (), id="fresh-then-fresh"),
        pytest.param(0, (), ("--continue",), id="fresh-then-continue"),
        pytest.param(0, (), ("--force",), id="fresh-then-force"),
        pytest.param(1000, ("--continue",), ("--continue",), id="continue-then-continue"),
        pytest.param(1000, ("--continue",), ("--force",), id="continue-then-force"),
        pytest.param(1000, ("--continue",), ("-c", "--force"), id="continue-then-continue-force"),
    ],
)
def test_a_second_download_of_a_part_being_written_exits_10_and_leaves_it_alone(
    tmp_path: Path, gate: threading.Event, held: int, first: tuple[str, ...], other: tuple[str, ...]
) -> None:
    out = tmp_path / "out.bin"
    part = part_of(out)
    if held:
        part.write_bytes(DATA[:held])
    with Server(paused(AT, gate)) as server, downloading(server, out, *first) as proc:
        wait_for_part(part, held + AT, "the first download")
        before = snapshot(part)
        refused = second(server, out, *other)
        assert_error(refused, 10, *LOCKED)
        assert snapshot(part) == before  # the same file, not one byte more or less
        assert len(server.gets) == 1  # the second run asked the server nothing
        gate.set()
        done = finish(proc)
    assert done.code == 0, done.err
    assert done.out.strip() == str(out)
    assert out.read_bytes() == DATA and not part.exists()
    assert ranges(server) == [f"bytes={held}-" if held else None]


def test_force_while_another_force_download_of_the_target_runs_exits_10(tmp_path: Path, gate: threading.Event) -> None:
    out = tmp_path / "out.bin"
    out.write_bytes(b"the old file")
    part = part_of(out)
    with Server(paused(AT, gate)) as server, downloading(server, out, "--force") as proc:
        wait_for_part(part, AT, "the first download")
        before = snapshot(part)
        assert_error(second(server, out, "--force"), 10, *LOCKED)
        assert_error(second(server, out), 7, "already exists")  # without --force: the target is there
        assert snapshot(part) == before
        assert out.read_bytes() == b"the old file"
        gate.set()
        done = finish(proc)
    assert done.code == 0, done.err
    assert out.read_bytes() == DATA and not part.exists()
    assert len(server.gets) == 1


def test_of_several_downloads_started_at_once_one_writes_and_the_others_exit_10(
    tmp_path: Path, gate: threading.Event
) -> None:
    out = tmp_path / "out.bin"
    part = part_of(out)
    with Server(paused(AT, gate)) as server:
        procs = [start(server, out) for _ in range(4)]
        try:
            wait_for(lambda: sum(p.poll() is not None for p in procs) == 3, "three of the four to stop")
            (winner,) = [p for p in procs if p.poll() is None]
            for loser in (p for p in procs if p is not winner):
                assert_error(finish(loser), 10, *LOCKED)
            gate.set()
            done = finish(winner)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
    assert done.code == 0, done.err
    assert out.read_bytes() == DATA and not part.exists()
    assert len(server.gets) == 1  # only the one that holds the .part asked for the file


def test_bytes_that_something_else_put_in_the_part_are_exit_9_and_the_part_is_kept(
    tmp_path: Path, gate: threading.Event
) -> None:
    """The lock is advisory: a program that ignores it and writes to the .part (here past the end the
    download reaches) makes the size on disk disagree with what was downloaded; nothing is renamed."""
    out = tmp_path / "out.bin"
    part = part_of(out)
    with Server(paused(AT, gate)) as server, downloading(server, out) as proc:
        wait_for_part(part, AT)
        fd = os.open(part, os.O_WRONLY)
        try:
            os.pwrite(fd, b"!", len(DATA))
        finally:
            os.close(fd)
        gate.set()
        failed = finish(proc)
    assert_error(failed, 9, f"{part} holds {len(DATA) + 1} bytes on disk", f"wrote {len(DATA)}", "was kept")
    assert not out.exists()
    assert part.read_bytes() == DATA + b"!"


def test_a_target_that_appears_during_the_download_is_not_replaced(tmp_path: Path, gate: threading.Event) -> None:
    out = tmp_path / "out.bin"
    part = part_of(out)
    with Server(paused(AT, gate)) as server:
        with downloading(server, out) as proc:
            wait_for_part(part, AT)
            out.write_bytes(b"written meanwhile")
            gate.set()
            failed = finish(proc)
        assert_error(failed, 7, f"{out} appeared while downloading", "--continue --force")
        assert out.read_bytes() == b"written meanwhile"
        assert part.read_bytes() == DATA  # complete, under its .part name
        done = second(server, out, "--continue", "--force")
    assert done.code == 0, done.err
    assert out.read_bytes() == DATA and not part.exists()


def test_a_download_that_fails_before_any_byte_leaves_no_part(tmp_path: Path) -> None:
    out = tmp_path / "out.bin"

    def gone(server: Server, h: Handler) -> None:
        answer(h, 404, b'{"errors": [{"title": "Not found", "code": "HTTP-404"}]}')

    with Server(gone) as server:
        result = run(*args(out), env=provider_env("qlik", server.url))
    assert_error(result, 5)
    assert not out.exists() and not part_of(out).exists()


# -- an interrupted --force: the printed command continues it --------------------------------------------


def test_the_command_printed_after_an_interrupted_force_download_carries_force(
    tmp_path: Path, gate: threading.Event
) -> None:
    out = tmp_path / "out.bin"
    out.write_bytes(b"the old file")
    part = part_of(out)
    with Server(paused(AT, gate)) as server:
        with downloading(server, out, "--force") as proc:
            wait_for_part(part, AT)
            proc.send_signal(signal.SIGINT)
            stopped = finish(proc)
        command = f"tmpup download 6571 -o {out} --continue --force"
        assert_error(stopped, 130, f"{part} was kept", f"continue with: {command}")
        assert out.read_bytes() == b"the old file"  # untouched until the new file is complete
        printed = stopped.err.rstrip("\n").split("continue with: ", 1)[1]
        words = shlex.split(printed)
        assert words[:2] == ["tmpup", "download"]
        gate.set()
        done = run_process(*words[1:], "--progress", "none", env=provider_env("qlik", server.url))
    assert done.code == 0, done.err
    assert out.read_bytes() == DATA and not part.exists()
    assert ranges(server)[-1] == f"bytes={AT}-"


def test_the_command_printed_without_force_has_no_force(tmp_path: Path, gate: threading.Event) -> None:
    out = tmp_path / "out.bin"
    part = part_of(out)
    with Server(paused(AT, gate)) as server, downloading(server, out) as proc:
        wait_for_part(part, AT)
        proc.send_signal(signal.SIGTERM)
        stopped = finish(proc)
    assert_error(stopped, 130, f"continue with: tmpup download 6571 -o {out} --continue")
    assert "--force" not in stopped.err
    assert part.read_bytes() == DATA[:AT]


# -- symlinks at the target and at the .part (through the emulator) -------------------------------------


@pytest.fixture
def uploaded(emulator: Any, config_path: Path, tmp_path: Path) -> tuple[str, bytes]:
    """The id of a file uploaded to the emulator's Qlik mount, and its bytes."""
    write_qlik_profile(emulator, config_path)
    src = make_file(tmp_path / "src.bin", 300_000, seed=7)
    up = run("upload", str(src), "--progress", "none", "-q")
    assert up.code == 0, up.err
    return up.out.strip(), src.read_bytes()


def get(handle: str, out: Path, *extra: str) -> Result:
    return run("download", handle, "-o", str(out), "--progress", "none", "-q", *extra)


def test_a_dangling_symlink_at_the_target_needs_force(uploaded: tuple[str, bytes], tmp_path: Path) -> None:
    handle, data = uploaded
    nowhere = tmp_path / "nowhere" / "file"  # its directory does not exist either
    link = tmp_path / "lnk"
    link.symlink_to(nowhere)
    assert_error(get(handle, link), 7, f"{link} already exists", "--force")
    assert link.is_symlink() and os.readlink(link) == str(nowhere)
    assert not part_of(link).exists()
    done = get(handle, link, "--force")
    assert done.code == 0, done.err
    assert not link.is_symlink() and link.read_bytes() == data  # the link itself was replaced
    assert not nowhere.parent.exists()


def test_force_over_a_symlink_to_a_file_replaces_the_link_not_the_file(
    uploaded: tuple[str, bytes], tmp_path: Path
) -> None:
    handle, data = uploaded
    precious = tmp_path / "precious.txt"
    precious.write_bytes(b"precious")
    link = tmp_path / "lnk"
    link.symlink_to(precious)
    assert_error(get(handle, link), 7, "already exists")
    done = get(handle, link, "--force")
    assert done.code == 0, done.err
    assert not link.is_symlink() and link.read_bytes() == data
    assert precious.read_bytes() == b"precious"


@pytest.mark.parametrize("points_at_a_file", [False, True], ids=["dangling", "to-a-file"])
def test_a_symlink_at_the_part_is_never_written_through(
    uploaded: tuple[str, bytes], tmp_path: Path, points_at_a_file: bool
) -> None:
    handle, data = uploaded
    out = tmp_path / "out.bin"
    elsewhere = tmp_path / "elsewhere.bin"
    if points_at_a_file:
        elsewhere.write_bytes(b"not a download")
    part_of(out).symlink_to(elsewhere)
    assert_error(get(handle, out), 7, f"{part_of(out)} is not a regular file", "--force")
    assert_error(get(handle, out, "--continue"), 7, "not a regular file")
    assert part_of(out).is_symlink()
    assert elsewhere.read_bytes() == b"not a download" if points_at_a_file else not elsewhere.exists()
    done = get(handle, out, "--force")
    assert done.code == 0, done.err
    assert out.read_bytes() == data and not os.path.lexists(part_of(out))
    assert elsewhere.read_bytes() == b"not a download" if points_at_a_file else not elsewhere.exists()


# -- names too long ----------------------------------------------------------------------------------------


def never(server: Server, h: Handler) -> None:
    raise AssertionError("no request was expected")


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        pytest.param("x" * 251, "256 bytes with the .part suffix", id="fits-only-without-part"),
        pytest.param("x" * 255, "260 bytes", id="255"),
        pytest.param("x" * 300, "305 bytes", id="300"),
        pytest.param("é" * 126, "257 bytes", id="multibyte"),
        pytest.param("d" * 300 + "/out.bin", "the directory name", id="long-directory"),
    ],
)
def test_an_output_name_too_long_is_exit_7_before_any_request(tmp_path: Path, name: str, needle: str) -> None:
    with Server(never) as server:
        result = run(*args(Path(name)), env=provider_env("qlik", server.url))
    assert_error(result, 7, "too long", needle, "at most 255")
    assert server.gets == []
    assert list(tmp_path.iterdir()) == [tmp_path / "home"]  # nothing was created


def test_an_output_name_that_fits_with_its_part_downloads(tmp_path: Path) -> None:
    out = tmp_path / ("y" * 250)
    with Server() as server:
        done = run(*args(out), env=provider_env("qlik", server.url))
    assert done.code == 0, done.err
    assert out.read_bytes() == DATA


# -- ids that are not valid text ---------------------------------------------------------------------------


@pytest.fixture
def garbage() -> Iterator[Garbage]:
    with Garbage(lambda h: answer(h, 500, b"{}")) as server:
        yield server


BAD_IDS = [
    pytest.param("ab\udcff", "ab\\xff", "not UTF-8", id="undecodable-byte"),
    pytest.param("\udcc3(1", "\\xc3(1", "not UTF-8", id="invalid-utf8-sequence"),
    pytest.param("ab\x1bc", "ab\\x1bc", "control characters", id="escape"),
    pytest.param("12\n34", "12\\x0a34", "control characters", id="newline"),
    pytest.param("12\x7f", "12\\x7f", "control characters", id="del"),
    pytest.param("12\x85", "12\\x85", "control characters", id="c1"),
]


@pytest.mark.parametrize(("bad_id", "shown", "why"), BAD_IDS)
@pytest.mark.parametrize(
    ("command", "provider"),
    [
        ("download", "qlik"),
        ("download", "tus"),
        ("download", "enterprise-tester"),
        ("info", "tus"),
        ("info", "qlik"),
        ("info", "enterprise-tester"),
        ("delete", "tus"),
        ("delete", "kf5"),
    ],
)
def test_an_id_that_is_not_valid_text_is_a_usage_error_before_any_request(
    garbage: Garbage, tmp_path: Path, command: str, provider: str, bad_id: str, shown: str, why: str
) -> None:
    extra = ["-o", str(tmp_path / "x"), "--progress", "none"] if command == "download" else []
    # A real process: the id reaches it as bytes of its command line, as from a shell.
    result = run_process(command, bad_id, *extra, env=provider_env(provider, garbage.url), timeout=60)
    assert_error(result, 2, f"the id {shown} is not valid", why)
    assert garbage.seen == []
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.part").exists()


def test_an_id_in_another_script_is_still_sent(emulator: Any, config_path: Path, tmp_path: Path) -> None:
    """Only ids that are not text, or hold control characters, are refused: a non-ASCII id goes to the API."""
    write_tus_profile(emulator, config_path)
    assert_error(run("info", "файл-1"), 5)
    assert_error(run("delete", "файл-1"), 5)
    assert_error(run("download", "файл-1", "-o", str(tmp_path / "x"), "--progress", "none"), 5)


def test_a_valid_id_still_works_through_info_download_and_delete(
    emulator: Any, config_path: Path, tmp_path: Path
) -> None:
    write_tus_profile(emulator, config_path)
    src = make_file(tmp_path / "t.bin", 5000, seed=3)
    up = run("upload", str(src), "--progress", "none", "-q")
    assert up.code == 0, up.err
    handle = up.out.strip()
    assert run("info", handle).code == 0
    got = run("download", handle, "-o", str(tmp_path / "copy.bin"), "--progress", "none", "-q")
    assert got.code == 0, got.err
    assert (tmp_path / "copy.bin").read_bytes() == src.read_bytes()
    assert run("delete", handle).code == 0


def test_a_shell_passes_the_undecodable_byte_through(garbage: Garbage, tmp_path: Path) -> None:
    """The audit's reproduction, byte for byte: `tmpup download $'ab\\xff' -p ... -o x` from a shell."""
    env = {**os.environ, **provider_env("qlik", garbage.url)}
    proc = subprocess.run(
        [sys.executable, "-m", "tmpup", b"download", b"ab\xff", b"-o", str(tmp_path / "x").encode()],
        capture_output=True,
        env=env,
        timeout=60,
    )
    result = Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())
    assert_error(result, 2, "the id ab\\xff is not valid")
    assert garbage.seen == []


# -- devices and fifos at the target ---------------------------------------------------------------


def test_a_device_at_the_target_is_written_into_never_replaced(tmp_path: Path) -> None:
    # `-o /dev/null` is how people test a download; --force used to rename a regular file over the
    # device (as root, over /dev/null itself). A private character device stands in for /dev/null.
    import stat

    device = tmp_path / "null"
    if os.geteuid() == 0:
        os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    else:  # without root, the real /dev/null; the --force case below runs only where it cannot hurt
        device = Path("/dev/null")
    with Server() as server:
        plain = run("download", "6571", "-o", str(device), "--progress", "none", env=provider_env("qlik", server.url))
        assert plain.code == 0, plain.err
        assert plain.out.strip() == str(device)
        if device != Path("/dev/null"):
            forced = run(
                "download",
                "6571",
                "-o",
                str(device),
                "--force",
                "--progress",
                "none",
                env=provider_env("qlik", server.url),
            )
            assert forced.code == 0, forced.err
    assert stat.S_ISCHR(os.stat(device).st_mode)  # still the device
    assert not part_of(device).exists()
    with Server() as server:
        refused = run("download", "6571", "-o", str(device), "-c", env=provider_env("qlik", server.url))
    assert refused.code == 2 and "--continue cannot be used" in refused.err


def test_a_fifo_at_the_target_gets_the_bytes(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    with Server() as server:
        result = run("download", "6571", "-o", str(fifo), "--progress", "none", env=provider_env("qlik", server.url))
    reader.join(30)
    assert result.code == 0, result.err
    assert got == [DATA]
    assert fifo.is_fifo()


@pytest.mark.parametrize("stale", [1, 299_999, 2_000_000])
def test_a_left_over_part_is_cut_when_a_download_starts_over(
    uploaded: tuple[str, bytes], tmp_path: Path, stale: int
) -> None:
    """Starting over (without --continue) writes from byte 0 into the .part as it is: whatever it held
    past what arrives must go (the truncate is skipped only when there is nothing to cut)."""
    handle, data = uploaded
    out = tmp_path / "out.bin"
    part_of(out).write_bytes(b"\xee" * stale)
    done = get(handle, out, "--force")
    assert done.code == 0, done.err
    assert out.read_bytes() == data and not part_of(out).exists()


@pytest.mark.parametrize("empty", ["", "  "])
def test_an_empty_output_is_a_usage_error_not_the_current_folder(
    uploaded: tuple[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty: str
) -> None:
    handle, _data = uploaded
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert_error(run("download", handle, "-o", empty, "--progress", "none"), 2, "-o/--output is empty")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written under the server's name
