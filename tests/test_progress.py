"""Progress rendering: a bar only on a terminal; lines, JSON events or nothing elsewhere."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

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
    code, out, tty = run_in_pty(["upload", str(src)], {"TERM": "xterm-256color", "COLUMNS": "100"})
    assert code == 0
    assert len(out.decode().strip()) == 24 and not ANSI.search(out)
    assert ANSI.search(tty) and b"bar.bin" in tty


def test_no_color_keeps_the_bar_but_drops_colour(qlik_profile: str, tmp_path: Path) -> None:
    src = make_file(tmp_path / "nc.bin", 2 * 1024 * 1024)
    code, _out, tty = run_in_pty(["upload", str(src)], {"TERM": "xterm-256color", "NO_COLOR": "1"})
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


def test_json_events(capsys: pytest.CaptureFixture[str]) -> None:
    progress = JsonProgress(lambda: sys.stderr, interval=0)
    task = progress.task("a.txt", 10)
    task.advance(4)
    task.advance(6)
    task.finish()
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert events[0] == {**events[0], "event": "start", "name": "a.txt", "bytes": 0, "total": 10}
    assert events[-1]["event"] == "done" and events[-1]["bytes"] == 10
