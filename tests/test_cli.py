"""The real `tmpup` process: every exit code, one-line errors, stdout/stderr separation, no ANSI in pipes."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_file, run_process, sha256_file, write_config
from tmpup.emulator import Fault

ANSI = re.compile(r"\x1b\[")


def assert_one_line_error(err: str, needle: str = "") -> None:
    assert err.startswith("tmpup: error: "), err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    assert needle in err, err


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_version_and_help_are_fast_and_light() -> None:
    result = run_process("--version")
    assert result.code == 0 and result.out.startswith("tmpup ")
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from tmpup.cli import app; "
            "print(' '.join(m for m in ('requests', 'requests_toolbelt', 'werkzeug', 'tmpup.providers.qlik', "
            "'tmpup.emulator') if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == ""
    assert run_process("--help").code == 0
    assert run_process("upload", "--help").code == 0
    # A profile from TMPUP_* variables alone (CI) reads no file: the TOML parser is not even loaded.
    env_only = subprocess.run(
        [sys.executable, "-c", "import sys; from tmpup.cli import main; main(['profiles', 'show', 'env']); "
         "print('tomllib' in sys.modules, file=sys.stderr)"],
        capture_output=True, text=True, check=False,
        env={**os.environ, "TMPUP_PROVIDER": "qlik", "TMPUP_URL": "http://127.0.0.1:9/qlik", "TMPUP_TOKEN": "t"},
    )  # fmt: skip
    assert "provider" in env_only.stdout and env_only.stderr.strip().endswith("False"), env_only.stderr


def test_a_run_builds_only_the_command_it_names_and_says_the_same() -> None:
    """`_app_for`: a named subcommand (or --version alone) is built without its siblings, and reads
    exactly as in the whole app: help, usage errors, group commands, the version."""
    from typer.testing import CliRunner

    from tmpup.cli import _app_for, app

    assert [c.callback.__name__ for c in _app_for(["upload", "f"]).registered_commands] == ["upload"]
    assert _app_for(["--version"]).registered_commands == []
    for whole in ([], ["--help"], ["bogus"], ["-v", "upload"]):
        assert _app_for(whole) is app
    assert app.registered_commands and len(app.registered_commands) > 1  # the original is untouched

    runner = CliRunner()
    for args in (["upload", "--help"], ["download", "--help"], ["profiles", "--help"], ["profiles", "show", "--help"],
                 ["serve", "--help"], ["info"], ["upload", "-j", "x", "f"], ["--version"]):  # fmt: skip
        expected = runner.invoke(app, args, prog_name="tmpup", env={"COLUMNS": "100"})
        got = runner.invoke(_app_for(args), args, prog_name="tmpup", env={"COLUMNS": "100"})
        assert expected.output.strip(), args  # something to compare: help, an error, the version
        assert (got.exit_code, got.output) == (expected.exit_code, expected.output), args


def test_exit_0_success_stdout_only_results(qlik_profile: str, tmp_path: Path) -> None:
    src = make_file(tmp_path / "ok.bin", 2 * 1024 * 1024)
    result = run_process("upload", str(src))
    assert result.code == 0
    assert len(result.out.splitlines()) == 1
    assert not ANSI.search(result.out + result.err)


def test_exit_1_internal_error_is_one_line_with_report_hint(tmp_path: Path) -> None:
    code = (
        "import sys, tmpup.commands.profiles as p\n"
        "def boom(rt): raise RuntimeError('deliberate bug')\n"
        "p.providers = boom\n"
        "from tmpup.cli import main\n"
        "sys.exit(main(['providers']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1
    assert_one_line_error(proc.stderr, "deliberate bug")
    assert "--debug" in proc.stderr and "report" in proc.stderr


def test_exit_2_usage(tmp_path: Path) -> None:
    result = run_process("upload", "x", "--bogus")
    assert result.code == 2
    assert_one_line_error(result.err, "--bogus")
    assert run_process("resume").code == 2


def test_exit_3_config() -> None:
    result = run_process("upload", "x", "-p", "nope")
    assert result.code == 3
    assert_one_line_error(result.err, "nope")


def test_exit_3_missing_credential(config_path: Path) -> None:
    write_config(
        config_path, '[profiles.p]\nprovider = "qlik"\nurl = "http://127.0.0.1:1/qlik"\ntoken_env = "NOPE_X"\n'
    )
    result = run_process("info", "x")
    assert result.code == 3
    assert_one_line_error(result.err, "NOPE_X")


def test_exit_4_auth(emulator: Any, tmp_path: Path) -> None:
    env = {"TMPUP_PROVIDER": "qlik", "TMPUP_URL": f"{emulator.url}/qlik", "TMPUP_TOKEN": "bad"}
    result = run_process("upload", str(make_file(tmp_path / "a", 5)), env=env)
    assert result.code == 4
    assert_one_line_error(result.err, "401")


def test_exit_5_not_found(qlik_profile: str) -> None:
    result = run_process("info", "ffffffffffffffffffffffff")
    assert result.code == 5
    assert_one_line_error(result.err, "404")
    nothing = run_process("resume", "--all")
    assert nothing.code == 5


def test_exit_6_gone(qlik_profile: str, emulator: Any, tmp_path: Path) -> None:
    up = run_process("upload", str(make_file(tmp_path / "g", 5)), "--ttl", "10")
    emulator.clock.advance(11)
    result = run_process("info", up.out.strip())
    assert result.code == 6
    assert_one_line_error(result.err, "410")


@pytest.mark.parametrize("kind", ["missing", "directory", "unreadable", "fifo", "ttl"])
def test_exit_7_rejected_input(qlik_profile: str, tmp_path: Path, kind: str) -> None:
    args: list[str]
    if kind == "missing":
        args = [str(tmp_path / "nope.bin")]
    elif kind == "directory":
        args = [str(tmp_path)]
    elif kind == "unreadable":
        path = make_file(tmp_path / "secret.bin", 5)
        path.chmod(0)
        # root reads anything; a permission test means nothing there, so use a path we cannot open.
        args = ["/proc/1/mem"] if os.access(path, os.R_OK) else [str(path)]
    elif kind == "fifo":
        fifo = tmp_path / "pipe"
        os.mkfifo(fifo)
        args = [str(fifo)]
    else:
        args = [str(make_file(tmp_path / "t", 5)), "--ttl", "300000"]
    result = run_process("upload", *args)
    assert result.code == 7, result.err
    assert_one_line_error(result.err)


@pytest.mark.parametrize("status", [400, 409, 415, 422])
def test_exit_7_when_the_service_refuses_what_was_sent_says_what_next(
    qlik_profile: str, emulator: Any, tmp_path: Path, status: int
) -> None:
    """The server's words, and what to do next (section 4: "saying what failed and what to do next")."""
    emulator.faults.add(Fault(provider="qlik", method="POST", status=status, times=None, message="Nope."))
    result = run_process("upload", str(make_file(tmp_path / "f.bin", 5)))
    assert result.code == 7, result.err
    assert_one_line_error(result.err)
    assert f"answered {status} " in result.err and "Nope." in result.err
    assert result.err.rstrip().endswith("its answer says why, and -v shows the requests tmpup made")


def test_empty_file_uploads(qlik_profile: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    result = run_process("upload", str(empty), "--json")
    assert result.code == 0
    assert json.loads(result.out)["size"] == 0


def test_exit_8_unsupported(qlik_profile: str) -> None:
    result = run_process("delete", "abc")
    assert result.code == 8
    assert_one_line_error(result.err, "qlik")


def test_exit_9_integrity(qlik_profile: str, tmp_path: Path) -> None:
    up = run_process("upload", str(make_file(tmp_path / "i.bin", 100)))
    (tmp_path / "i2.bin.part").write_bytes(b"x" * 1000)
    result = run_process("download", up.out.strip(), "-o", str(tmp_path / "i2.bin"), "--continue")
    assert result.code == 9
    assert_one_line_error(result.err)


def test_exit_10_unreachable(tmp_path: Path) -> None:
    env = {"TMPUP_PROVIDER": "qlik", "TMPUP_URL": f"http://127.0.0.1:{closed_port()}/qlik", "TMPUP_TOKEN": "t"}
    result = run_process("upload", str(make_file(tmp_path / "u", 5)), "--retries", "1", "-q", env=env)
    assert result.code == 10
    assert_one_line_error(result.err, "connection refused")


def test_exit_10_server_errors_after_retries(qlik_profile: str, emulator: Any, tmp_path: Path) -> None:
    emulator.faults.add(Fault(provider="qlik", status=500, times=None))
    result = run_process("upload", str(make_file(tmp_path / "s", 5)), "--retries", "2", "-q")
    assert result.code == 10
    assert_one_line_error(result.err, "500")


def test_exit_11_partial(qlik_profile: str, tmp_path: Path) -> None:
    good = make_file(tmp_path / "good.bin", 10)
    result = run_process("upload", str(good), str(tmp_path / "missing.bin"), "--json")
    assert result.code == 11
    assert len(result.out.splitlines()) == 1
    errors = result.err.splitlines()
    assert any("missing.bin" in line for line in errors)
    assert errors[-1].startswith("tmpup: error: 1 of 2 files failed")


def test_exit_130_on_sigterm(qlik_profile: str, emulator: Any, tmp_path: Path) -> None:
    emulator.faults.add(Fault(provider="qlik", method="POST", delay=30))
    src = make_file(tmp_path / "slow.bin", 1024)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tmpup", "upload", str(src)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert_one_line_error(err.decode(), "interrupted")
    assert "nothing was kept to resume; run the same command again" in err.decode()  # a raw POST: no record
    assert out == b""


def test_parallel_uploads_keep_input_order(qlik_profile: str, emulator: Any, tmp_path: Path) -> None:
    files = [make_file(tmp_path / f"f{i}.bin", (5 - i) * 300_000 + 1, seed=i) for i in range(5)]
    result = run_process("upload", *map(str, files), "-j", "3", "--json")
    assert result.code == 0, result.err
    records = [json.loads(line) for line in result.out.splitlines()]
    assert [r["name"] for r in records] == [f.name for f in files]


def test_no_ansi_and_lines_progress_off_a_terminal(qlik_profile: str, tmp_path: Path) -> None:
    src = make_file(tmp_path / "n.bin", 1024)
    result = run_process("upload", str(src), "--progress", "auto", env={"TERM": "xterm-256color"})
    assert result.code == 0
    assert not ANSI.search(result.out + result.err)


def test_a_reader_that_goes_away_ends_nothing(
    qlik_profile: str, emulator: Any, state_dir: Path, tmp_path: Path
) -> None:
    """`tmpup upload a b c --debug 2>&1 | head -3`: the pipe closes early; every file still uploads."""
    files = [make_file(tmp_path / f"{n}.bin", 300_000, seed=n) for n in range(3)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tmpup", "upload", *map(str, files), "--debug", "--no-resume", "--limit-rate", "1M"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    for _ in range(3):
        proc.stdout.readline()
    proc.stdout.close()  # as `head -3` does
    assert proc.wait(timeout=60) == 0
    receipts = [json.loads(line) for line in (state_dir / "receipts.jsonl").read_text().splitlines()]
    assert [r["name"] for r in receipts] == ["0.bin", "1.bin", "2.bin"]
    for receipt, src in zip(receipts, files, strict=True):
        assert emulator.blob_sha256("qlik", receipt["id"]) == sha256_file(src)


def test_an_unwritable_state_folder_never_costs_a_finished_upload_its_handle(
    qlik_profile: str, emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_the_way = tmp_path / "state-is-a-file"
    in_the_way.write_text("")
    monkeypatch.setenv("TMPUP_STATE_DIR", str(in_the_way))
    src = make_file(tmp_path / "f.bin", 5000)
    done = run_process("upload", str(src), "--no-resume", "--progress", "none")
    assert done.code == 0, done.err
    assert emulator.blob_sha256("qlik", done.out.strip()) == sha256_file(src)
    assert "uploaded, but cannot write the receipt" in done.err and "TMPUP_STATE_DIR" in done.err
    # A resumable upload needs its record before the first byte: a configuration error, nothing sent.
    resumable = run_process("upload", str(src), "--resumable", "--progress", "none")
    assert resumable.code == 3, resumable.err
    assert resumable.err.count("\n") == 1 and "TMPUP_STATE_DIR" in resumable.err
    assert len(emulator.store.blobs("qlik")) == 1
