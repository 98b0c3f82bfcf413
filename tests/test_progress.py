"""Progress rendering: a bar only on a terminal; lines, JSON events or nothing elsewhere."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_file, run
from tmpup.progress import JsonProgress, LinesProgress, resolve_mode

ANSI = re.compile(rb"\x1b\[")
COLOR = re.compile(rb"\x1b\[[0-9;]*m")


def run_in_pty(args: list[str], env: dict[str, str]) -> tuple[int, bytes, bytes]:
    """tmpup with stderr on a pseudo-terminal (as a person sees it) and stdout on a pipe."""
    leader, follower = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tmpup", *args],
        stdout=subprocess.PIPE,
        stderr=follower,
        env={**os.environ, **env},
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    assert proc.stdout is not None
    out = proc.stdout.read()
    proc.wait(timeout=60)
    os.close(leader)
    return proc.returncode, out, b"".join(chunks)


def test_bar_on_a_terminal_results_still_plain_on_stdout(qlik_profile: str, tmp_path: Path) -> None:
    src = make_file(tmp_path / "bar.bin", 4 * 1024 * 1024)
    # --limit-rate: the bar appears once a transfer has lasted BAR_DELAY (0.3 s); this one takes ~1 s
    argv = ["upload", str(src), "--limit-rate", "4M"]
    code, out, tty = run_in_pty(argv, {"TERM": "xterm-256color", "COLUMNS": "100"})
    assert code == 0
    assert len(out.decode().strip()) == 24 and not ANSI.search(out)
    assert ANSI.search(tty) and b"bar.bin" in tty and b"4.0 MiB" in tty


def test_a_transfer_shorter_than_the_delay_draws_no_bar(qlik_profile: str, tmp_path: Path) -> None:
    src = make_file(tmp_path / "quick.bin", 1000)
    code, out, tty = run_in_pty(["upload", str(src)], {"TERM": "xterm-256color", "COLUMNS": "100"})
    assert code == 0 and len(out.decode().strip()) == 24
    assert tty == b""  # its result line says it all; rich was never loaded


def test_the_painter_draws_after_the_delay_and_the_final_state_on_stop() -> None:
    import io

    from rich.console import Console

    from tmpup.progress_bar import RichProgress

    screen = io.StringIO()
    progress = RichProgress(delay=0.05, refresh=0.01, console=lambda: Console(file=screen, width=100))
    progress.start()
    task = progress.task("slow.bin", 100)
    task.advance(40)
    deadline = time.monotonic() + 10
    while not progress._live and time.monotonic() < deadline:
        time.sleep(0.01)
    assert progress._live  # the delay passed: the live display is open
    task.advance(60)
    task.finish()
    progress.stop()
    (row,) = progress.bar.tasks
    assert row.completed == 100 and row.finished
    assert "slow.bin" in screen.getvalue() and "100%" in screen.getvalue()


def test_stop_before_the_delay_draws_nothing_and_loads_no_rich() -> None:
    from tmpup.progress_bar import RichProgress

    progress = RichProgress(delay=60)
    progress.start()
    progress.task("quick.bin", 10).advance(10)
    progress.stop()  # ends the painter at once, not after 60 s
    assert progress._bar is None and not progress._live


def test_no_color_keeps_the_bar_but_drops_colour(qlik_profile: str, tmp_path: Path) -> None:
    src = make_file(tmp_path / "nc.bin", 2 * 1024 * 1024)
    argv = ["upload", str(src), "--limit-rate", "4M"]
    code, _out, tty = run_in_pty(argv, {"TERM": "xterm-256color", "NO_COLOR": "1"})
    assert code == 0
    assert b"nc.bin" in tty
    assert not [m for m in COLOR.findall(tty) if m not in (b"\x1b[0m", b"\x1b[m")]


def test_term_dumb_gets_no_escape_sequences(qlik_profile: str, tmp_path: Path) -> None:
    src = make_file(tmp_path / "dumb.bin", 2 * 1024 * 1024)
    code, _out, tty = run_in_pty(["upload", str(src)], {"TERM": "dumb"})
    assert code == 0
    assert not ANSI.search(tty)


def test_quiet_prints_nothing_but_results(qlik_profile: str, tmp_path: Path) -> None:
    src = make_file(tmp_path / "q.bin", 1024)
    result = run("upload", str(src), "-q", "--progress", "json")
    assert result.code == 0 and result.err == "" and len(result.lines) == 1


def test_resolve_mode() -> None:
    class Tty:
        def isatty(self) -> bool:
            return True

    assert resolve_mode("auto", quiet=True) == "none"
    assert resolve_mode("json", quiet=False) == "json"
    assert resolve_mode("auto", quiet=False, stream=Tty()) in ("bar", "lines")  # TERM decides


def test_lines_are_throttled_and_report_the_end(capsys: pytest.CaptureFixture[str]) -> None:
    clock = [0.0]
    lines = LinesProgress(lambda: sys.stderr, interval=10, clock=lambda: clock[0])
    task = lines.task("f.bin", 100)
    for _ in range(9):
        clock[0] += 1
        task.advance(5)
    assert capsys.readouterr().err == ""  # nothing within the first 10 s
    clock[0] += 2
    task.advance(5)
    assert "f.bin:  50% 50 B of 100 B" in capsys.readouterr().err
    clock[0] += 20
    task.set_completed(100)
    task.finish()
    err = capsys.readouterr().err
    assert "done" in err and "100%" in err


def test_a_failed_long_transfer_says_failed_without_a_percentage(capsys: pytest.CaptureFixture[str]) -> None:
    """A raw upload counts what went to the socket: "100% ... failed" would read as complete."""
    clock = [0.0]
    lines = LinesProgress(lambda: sys.stderr, interval=10, clock=lambda: clock[0])
    task = lines.task("big.bin", 12 * 1024 * 1024)
    clock[0] += 12
    task.advance(12 * 1024 * 1024)
    capsys.readouterr()
    task.finish(ok=False)
    err = capsys.readouterr().err
    assert err == "big.bin: failed in 12s (12.0 MiB of 12.0 MiB sent)\n"


def test_json_events(capsys: pytest.CaptureFixture[str]) -> None:
    progress = JsonProgress(lambda: sys.stderr, interval=0)
    task = progress.task("a.txt", 10)
    task.advance(4)
    task.advance(6)
    task.finish()
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert events[0] == {**events[0], "event": "start", "name": "a.txt", "bytes": 0, "total": 10}
    assert events[-1]["event"] == "done" and events[-1]["bytes"] == 10


def test_json_total_events_count_files_and_bytes(capsys: pytest.CaptureFixture[str]) -> None:
    progress = JsonProgress(lambda: sys.stderr, interval=3600)
    progress.add_total(3, 30)
    tasks = [progress.task(f"f{i}", 10) for i in range(3)]
    tasks[0].advance(10)
    tasks[0].finish()
    tasks[1].advance(4)
    tasks[1].finish(ok=False)  # its 6 unsent bytes leave the total
    tasks[2].set_completed(5)
    tasks[2].set_completed(0)  # a retry starts over
    tasks[2].advance(10)
    tasks[2].finish()
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    totals = [e for e in events if e["event"] == "total"]
    assert all("name" not in e for e in totals)  # readers picking files' events by name see no change
    assert [(e["files_done"], e["files_failed"], e["bytes"], e["total"]) for e in totals] == [
        (0, 0, 0, 30),
        (1, 0, 10, 30),
        (1, 1, 14, 24),
        (2, 1, 24, 24),
    ]
    assert [e["event"] for e in events if e["event"] != "total"] == ["start"] * 3 + ["done", "failed", "done"]


def test_lines_total_only_for_long_runs(capsys: pytest.CaptureFixture[str]) -> None:
    clock = [0.0]
    lines = LinesProgress(lambda: sys.stderr, interval=10, clock=lambda: clock[0])
    lines.add_total(2, 200)
    first, second = lines.task("a.bin", 100), lines.task("b.bin", 100)
    first.advance(100)
    first.finish()
    assert capsys.readouterr().err == ""  # short so far: nothing
    clock[0] += 11
    second.advance(50)
    assert "total: 1 of 2 files, 150 B of 200 B" in capsys.readouterr().err
    clock[0] += 11
    second.advance(50)
    second.finish()
    err = capsys.readouterr().err
    assert "total: 2 of 2 files" in err and "done in" in err


def test_rich_total_keeps_only_active_rows() -> None:
    from tmpup.progress_bar import RichProgress

    progress = RichProgress()  # never started: nothing is drawn; sync() builds the rows it would draw
    progress.add_total(50, 50 * 10)
    active = progress.task("active", 10)
    for i in range(49):
        task = progress.task(f"f{i}", 10)
        if i % 2:
            progress.sync()  # drawn while it runs: its row leaves at the next sync
        task.advance(10)
        task.finish(ok=i != 7)
        task.advance(1)  # late updates of a finished file are ignored
        progress.sync()
        assert len(progress.bar.tasks) == 2  # the total and the one still running
    (total, row) = progress.bar.tasks
    assert total.description == "total 49/50 files, 1 failed" and row.description == "active"
    assert total.completed == 490 and total.total == 500
    active.advance(10)
    active.finish()
    progress.sync()
    (total,) = progress.bar.tasks
    assert total.description == "total 50/50 files, 1 failed" and total.completed == total.total == 500


def test_rich_single_file_keeps_its_row() -> None:
    from tmpup.progress_bar import RichProgress

    progress = RichProgress()
    task = progress.task("one.bin", 10)
    task.advance(10)
    task.finish(ok=False)
    progress.sync()
    (row,) = progress.bar.tasks
    assert row.description == "✗ one.bin" and row.completed == 10


def test_a_display_that_breaks_stops_drawing_and_nothing_else() -> None:
    from tmpup.progress_bar import RichProgress

    def broken_console() -> Any:
        raise RuntimeError("no terminal after all")

    progress = RichProgress(delay=0, refresh=0.01, console=broken_console)
    progress.start()
    task = progress.task("f.bin", 10)
    deadline = time.monotonic() + 10
    while progress.error is None and time.monotonic() < deadline:
        time.sleep(0.01)
    task.advance(10)  # the transfer goes on counting
    task.finish()
    progress.stop()  # and ends as usual
    assert isinstance(progress.error, RuntimeError)


def test_a_display_started_again_draws_the_next_transfer_afresh() -> None:
    """`resume --all` runs one upload after another on one display: each gets its own bar."""
    import io

    from rich.console import Console

    from tmpup.progress_bar import RichProgress

    screens: list[io.StringIO] = []

    def console() -> Any:
        screens.append(io.StringIO())
        return Console(file=screens[-1], width=100)

    progress = RichProgress(delay=0, refresh=0.01, console=console)
    for name in ("first.bin", "second.bin"):
        task = progress.task(name, 10)  # made before start(), as a download does
        progress.start()
        deadline = time.monotonic() + 10
        while not progress._live and time.monotonic() < deadline:
            time.sleep(0.01)
        task.advance(10)
        task.finish()
        progress.stop()
    assert len(screens) == 2
    assert "first.bin" in screens[0].getvalue() and "first.bin" not in screens[1].getvalue()
    assert "second.bin" in screens[1].getvalue()
