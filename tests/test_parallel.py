"""Several files in one run: `-j N` really overlaps, results keep input order, one failure (even a
bug) does not stop the others, connections are reused, a total joins the progress display, the
providers' rate limits pace the run, and Ctrl-C/SIGTERM starts nothing new and says how to resume.

Everything talks HTTP to the real emulator. What the server saw (how many requests at once, over
how many TCP connections, in which order they ended) is recorded by `ServerSpy`, a wrapper around
the emulator's request handling: pass/fail never depends on wall-clock thresholds.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_file, run, sha256_file
from tests.test_enterprise_tester import PROVIDER as ET
from tests.test_enterprise_tester import UPLOAD_PATH as ET_UPLOAD_PATH
from tests.test_enterprise_tester import et_config
from tests.test_progress import run_in_pty
from tests.test_pyrus import pyrus_config
from tmpup.emulator import Fault
from tmpup.errors import Interrupted
from tmpup.pacing import RateLimiter, RateRule
from tmpup.runtime import GlobalOptions, Runtime
from tmpup.sources import CANCEL, Throttle

QLIK_UPLOAD = r"/api/v1/temp-contents$"


class ServerSpy:
    """Wraps the emulator's per-request handling to see what the server saw."""

    def __init__(self, emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0
        self.requests: list[tuple[str, str]] = []
        self.connections: set[tuple[str, int]] = set()
        self.finished: list[str] = []  # the `filename` query argument, in the order requests ended
        self.seen = threading.Condition(self.lock)
        original: Callable[..., Any] = emulator.app._serve

        def serve(mount: Any, request: Any, subpath: str) -> Any:
            environ = request.environ
            with self.lock:
                self.active += 1
                self.peak = max(self.peak, self.active)
                self.requests.append((request.method, request.path))
                self.connections.add((environ.get("REMOTE_ADDR", ""), int(environ.get("REMOTE_PORT", 0))))
                self.seen.notify_all()
            try:
                return original(mount, request, subpath)
            finally:
                with self.lock:
                    self.active -= 1
                    self.finished.append(request.args.get("filename", ""))

        monkeypatch.setattr(emulator.app, "_serve", serve)

    def reset(self) -> None:
        with self.lock:
            self.peak = 0
            self.requests.clear()
            self.connections.clear()
            self.finished.clear()

    def count(self, method: str, pattern: str = "") -> int:
        with self.lock:
            return self._count(method, pattern)

    def wait_for(self, method: str, pattern: str, n: int, timeout: float = 60) -> None:
        with self.seen:
            assert self.seen.wait_for(lambda: self._count(method, pattern) >= n, timeout), self.requests

    def _count(self, method: str, pattern: str) -> int:
        return sum(1 for m, p in self.requests if m == method and re.search(pattern, p))


@pytest.fixture
def spy(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> ServerSpy:
    return ServerSpy(emulator, monkeypatch)


def files_of(tmp_path: Path, count: int, size: int, prefix: str = "f") -> list[Path]:
    return [make_file(tmp_path / f"{prefix}{i}.bin", size, seed=i + 1) for i in range(count)]


def records_of(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


# -- concurrency, order, failures ------------------------------------------------------------------


def test_jobs_really_overlap_and_never_exceed_n(
    qlik_profile: str, emulator: Any, spy: ServerSpy, tmp_path: Path
) -> None:
    files = files_of(tmp_path, 4, 64 * 1024)
    # A slow server holds each upload a while: with -j 2 two are in flight, never three.
    emulator.faults.add(Fault(provider="qlik", method="POST", path=QLIK_UPLOAD, delay=0.4, times=4))
    result = run("upload", *map(str, files), "-j", "2", "--json", "--progress", "none")
    assert result.code == 0, result.err
    assert spy.peak == 2

    spy.reset()
    emulator.faults.add(Fault(provider="qlik", method="POST", path=QLIK_UPLOAD, delay=0.1, times=4))
    assert run("upload", *map(str, files), "--progress", "none").code == 0
    assert spy.peak == 1


def test_results_come_in_input_order(qlik_profile: str, emulator: Any, spy: ServerSpy, tmp_path: Path) -> None:
    slow = make_file(tmp_path / "slow.bin", 3 * 1024 * 1024)
    quick = files_of(tmp_path, 3, 1024, prefix="quick")
    files = [slow, *quick]
    result = run("upload", *map(str, files), "-j", "2", "--limit-rate", "4M", "--json", "--progress", "none")
    assert result.code == 0, result.err
    assert spy.finished[-1] == "slow.bin"  # the server finished it last ...
    records = records_of(result.out)
    assert [r["name"] for r in records] == [f.name for f in files]  # ... yet it is printed first
    for record, src in zip(records, files, strict=True):
        assert emulator.blob_sha256("qlik", record["id"]) == sha256_file(src)


def test_a_missing_file_among_several_fails_alone(qlik_profile: str, emulator: Any, tmp_path: Path) -> None:
    good = files_of(tmp_path, 2, 200 * 1024)
    args = [str(good[0]), "nope.bin", str(good[1])]
    result = run("upload", *args, "-j", "2", "--json", "--progress", "none")
    assert result.code == 11
    records = records_of(result.out)
    assert [r["name"] for r in records] == [good[0].name, good[1].name]
    for record, src in zip(records, good, strict=True):
        assert emulator.blob_sha256("qlik", record["id"]) == sha256_file(src)
    assert "tmpup: error: nope.bin: no such file\n" in result.err
    assert result.err.count("nope.bin") == 1  # named once, not "nope.bin: nope.bin: ..."
    assert "1 of 3 files failed" in result.err


@pytest.mark.parametrize("jobs", ["1", "3"])
def test_a_bug_in_one_upload_is_that_files_failure(
    qlik_profile: str, emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: str
) -> None:
    from tmpup.providers.qlik import QlikProvider

    original = QlikProvider.upload

    def upload(self: Any, source: Any, options: Any, task: Any) -> Any:
        if options.name == "boom.bin":
            raise RuntimeError("kaboom")
        return original(self, source, options, task)

    monkeypatch.setattr(QlikProvider, "upload", upload)
    files = [make_file(tmp_path / name, 1000) for name in ("a.bin", "boom.bin", "c.bin")]
    result = run("upload", *map(str, files), "-j", jobs, "--json", "--progress", "none")
    assert result.code == 11, result.err
    assert [r["name"] for r in records_of(result.out)] == ["a.bin", "c.bin"]
    assert f"tmpup: error: {files[1]}: internal error: RuntimeError: kaboom" in result.err
    assert "Traceback" not in result.err

    debug = run("upload", *map(str, files), "-j", jobs, "--progress", "none", "--debug")
    assert debug.code == 11
    assert "Traceback" in debug.err and "RuntimeError: kaboom" in debug.err


class _NoDrain:
    """Stands in for the selector werkzeug uses to drain a socket after each response."""

    def register(self, *args: Any) -> None:
        pass

    def select(self, timeout: float | None = None) -> list[Any]:
        return []

    def close(self) -> None:
        pass


def keep_connections_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the emulator keep connections alive, to see what the client does with them.

    werkzeug 3 ends every answer with `Connection: close` and then drains the socket, which on a
    kept connection would swallow the next request: it cannot reuse a connection at all. Bodies of
    the requests in these tests are read whole, so neither is needed here.
    """
    import types

    import werkzeug.serving

    from tmpup.emulator import server

    send_header = server._Handler.send_header

    def without_close(self: Any, keyword: str, value: str) -> None:
        if keyword.lower() == "connection" and value.lower() == "close":
            return
        send_header(self, keyword, value)

    monkeypatch.setattr(server._Handler, "send_header", without_close)
    monkeypatch.setattr(werkzeug.serving, "selectors", types.SimpleNamespace(DefaultSelector=_NoDrain, EVENT_READ=1))


def test_keep_alive_connections_are_reused(
    qlik_profile: str, emulator: Any, spy: ServerSpy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keep_connections_open(monkeypatch)
    files = files_of(tmp_path, 8, 10 * 1024)
    result = run("upload", *map(str, files), "-j", "2", "--progress", "none")
    assert result.code == 0, result.err
    uploads = spy.count("POST", QLIK_UPLOAD)
    assert uploads == 8
    assert len(spy.connections) <= 2 < uploads  # one pooled connection per worker

    spy.reset()
    assert run("upload", *map(str, files), "--progress", "none").code == 0
    assert len(spy.connections) == 1


# -- the total on the progress display ------------------------------------------------------------


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_bar_shows_a_total_row_and_keeps_only_it(qlik_profile: str, tmp_path: Path, jobs: str) -> None:
    files = files_of(tmp_path, 3, 100 * 1024)
    # --limit-rate: ~0.6 s, longer than the bar's delay (a shorter run draws no bar at all)
    result = run("upload", *map(str, files), "-j", jobs, "--progress", "bar", "--limit-rate", "500K")
    assert result.code == 0, result.err
    # Off a terminal rich draws the final state once: the total; finished files left the display.
    assert "total 3/3 files" in result.err
    assert not any(f.name in result.err for f in files)


def test_bar_on_a_terminal_has_the_total(qlik_profile: str, tmp_path: Path) -> None:
    files = files_of(tmp_path, 3, 1024 * 1024)
    code, out, tty = run_in_pty(
        ["upload", *map(str, files), "-j", "2", "--limit-rate", "2M"], {"TERM": "xterm-256color", "COLUMNS": "120"}
    )
    assert code == 0
    assert len(out.decode().split()) == 3
    assert b"total 3/3 files" in tty and b"f0.bin" in tty


def test_json_progress_reports_the_total(qlik_profile: str, tmp_path: Path) -> None:
    files = files_of(tmp_path, 3, 1000)
    result = run("upload", str(files[0]), "nope.bin", *map(str, files[1:]), "-j", "2", "--progress", "json")
    assert result.code == 11
    events = [json.loads(line) for line in result.err.splitlines() if line.startswith("{")]
    done = {e["name"] for e in events if e["event"] == "done"}
    assert done == {f.name for f in files}
    assert [e["name"] for e in events if e["event"] == "failed"] == ["nope.bin"]
    totals = [e for e in events if e["event"] == "total"]
    assert totals[0] == {**totals[0], "files": 4, "files_done": 0, "files_failed": 0, "bytes": 0, "total": 3000}
    assert totals[-1] == {**totals[-1], "files": 4, "files_done": 3, "files_failed": 1, "bytes": 3000}


# -- pacing ----------------------------------------------------------------------------------------


def paced(limiter: RateLimiter, method: str, url: str, count: int) -> list[float]:
    """Send `count` requests through the limiter on a fake clock; return the waits."""
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    limiter.clock = lambda: now[0]
    limiter.sleep = sleep
    return [limiter.acquire(method, url) for _ in range(count)]


def test_a_qlik_session_paces_to_the_documented_tiers(qlik_profile: str) -> None:
    from tmpup.providers.qlik import QlikProvider

    rt = Runtime.build(GlobalOptions())
    limiter = rt.provider.env.session.limiter  # type: ignore[attr-defined]
    assert limiter is not None and limiter.rules == QlikProvider.pacing()
    base = str(rt.settings.get("url")).rstrip("/")
    waits = paced(limiter, "POST", f"{base}/api/v1/temp-contents?filename=a&ttl=60", 501)
    assert waits[:500] == [0.0] * 500 and waits[500] == 300.0  # Tier 2: 500 per 5 minutes
    tus = paced(RateLimiter(limiter.rules), "PATCH", f"{base}/api/v1/temp-contents/files/abc", 801)
    assert tus[800] == 60.0  # tus: 800 per minute


def test_a_pyrus_session_paces_5000_per_10_minutes(emulator: Any, config_path: Path) -> None:
    from tmpup.providers.pyrus import PyrusProvider

    pyrus_config(emulator, config_path)
    rt = Runtime.build(GlobalOptions())
    limiter = rt.provider.env.session.limiter  # type: ignore[attr-defined]
    assert limiter is not None and limiter.rules == PyrusProvider.pacing()
    waits = paced(limiter, "POST", f"{emulator.url}/pyrus/v4/files/upload", 5001)
    assert set(waits[:5000]) == {0.0} and waits[5000] == 600.0


def test_a_run_is_paced_across_its_threads(
    qlik_profile: str, emulator: Any, spy: ServerSpy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tmpup.providers.qlik import QlikProvider

    monkeypatch.setattr(QlikProvider, "rate_rules", (RateRule(2, 0.5, method="POST", path="/temp-contents"),))
    files = files_of(tmp_path, 3, 1000)
    result = run("upload", *map(str, files), "-j", "3", "-v", "--progress", "none")
    assert result.code == 0, result.err
    assert result.err.count("to stay under the API's rate limit") == 1  # the third waited, once
    assert spy.count("POST", QLIK_UPLOAD) == 3


def test_a_pacing_wait_ends_on_ctrl_c() -> None:
    limiter = RateLimiter((RateRule(1, 300.0),))
    assert limiter.acquire("GET", "http://h/x") == 0.0
    CANCEL.set()
    try:
        with pytest.raises(Interrupted):
            limiter.acquire("GET", "http://h/x")  # the window is full: no 300 s wait
    finally:
        CANCEL.clear()

    outcome: list[BaseException] = []

    def waiting() -> None:
        try:
            limiter.acquire("GET", "http://h/x")
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=waiting, daemon=True)
    thread.start()
    thread.join(0.2)
    assert thread.is_alive()  # pacing: waiting out the window
    CANCEL.set()
    try:
        thread.join(30)
        assert not thread.is_alive() and isinstance(outcome[0], Interrupted)
    finally:
        CANCEL.clear()


# -- Ctrl-C and SIGTERM ----------------------------------------------------------------------------


def start_upload(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tmpup", "upload", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=dict(os.environ),
    )


def test_ctrl_c_starts_no_queued_file(qlik_profile: str, emulator: Any, spy: ServerSpy, tmp_path: Path) -> None:
    files = files_of(tmp_path, 12, 200 * 1024)
    proc = start_upload(*map(str, files), "-j", "2", "--limit-rate", "200K", "--json", "--progress", "none")
    spy.wait_for("POST", QLIK_UPLOAD, 2)  # both workers are busy (each file takes about 1 s)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert b"interrupted (Ctrl-C)" in err
    started = spy.count("POST", QLIK_UPLOAD)
    assert started <= 4  # of 12: no queued file starts after the signal
    by_name = {f.name: f for f in files}
    for record in records_of(out.decode()):  # a file that made it before the signal is printed
        assert emulator.blob_sha256("qlik", record["id"]) == sha256_file(by_name[record["name"]])


def test_sigterm_names_every_resume_command(qlik_profile: str, emulator: Any, spy: ServerSpy, tmp_path: Path) -> None:
    files = files_of(tmp_path, 12, 200 * 1024)
    proc = start_upload(*map(str, files), "-j", "2", "--resumable", "--limit-rate", "100K", "--progress", "none")
    spy.wait_for("PATCH", "/files/", 2)  # two tus uploads exist, each pausing under --limit-rate
    proc.send_signal(signal.SIGTERM)
    _out, err_bytes = proc.communicate(timeout=60)
    err = err_bytes.decode()
    assert proc.returncode == 130, err
    assert spy.count("POST", r"/temp-contents/files/?$") <= 4  # tus creations, of 12
    (line,) = [line for line in err.splitlines() if line.startswith("tmpup: error:")]
    assert "interrupted (SIGTERM)" in line
    assert "2 uploads were kept; continue them with: tmpup resume --all" in line
    assert f"tmpup resume {files[0].resolve()}" in line and f"tmpup resume {files[1].resolve()}" in line

    resumed = run("resume", "--all", "--json", "--progress", "none")
    assert resumed.code == 0, resumed.err
    records = {r["name"]: r for r in records_of(resumed.out)}
    assert set(records) == {files[0].name, files[1].name}
    for src in files[:2]:
        assert records[src.name]["resumed"] is True
        assert emulator.blob_sha256("qlik", records[src.name]["id"]) == sha256_file(src)


# -- Enterprise Tester: several files in one request ----------------------------------------------


@pytest.fixture
def et_profile(emulator: Any, config_path: Path) -> str:
    return et_config(emulator, config_path)


def test_et_limit_rate_caps_the_whole_request(
    et_profile: str, emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tmpup.providers.enterprise_tester import EnterpriseTesterProvider

    throttles: list[Throttle | None] = []
    original = EnterpriseTesterProvider.upload_many

    def upload_many(self: Any, sources: list[Any], options: Any, tasks: Any) -> Any:
        throttles.extend(s.throttle for s in sources)
        return original(self, sources, options, tasks)

    monkeypatch.setattr(EnterpriseTesterProvider, "upload_many", upload_many)
    files = files_of(tmp_path, 3, 50 * 1024)
    result = run("upload", *map(str, files), "--limit-rate", "1M", "--json", "--progress", "none")
    assert result.code == 0, result.err
    (throttle,) = {id(t): t for t in throttles}.values()  # one Throttle for the request's parts
    assert throttle is not None and throttle.rate == 1024 * 1024 and throttle.sent == 3 * 50 * 1024
    for record, src in zip(records_of(result.out), files, strict=True):
        assert emulator.blob_sha256(ET, record["id"]) == sha256_file(src)


def test_et_failed_request_finishes_every_task(et_profile: str, emulator: Any, tmp_path: Path) -> None:
    emulator.faults.add(Fault(provider=ET, method="POST", path=ET_UPLOAD_PATH, status=400))
    files = files_of(tmp_path, 2, 1000)
    result = run("upload", *map(str, files), "--progress", "json")
    assert result.code == 7, result.err
    events = [json.loads(line) for line in result.err.splitlines() if line.startswith("{")]
    assert sorted(e["name"] for e in events if e["event"] == "failed") == sorted(f.name for f in files)
    assert not [e for e in events if e["event"] == "done"]
    assert [e for e in events if e["event"] == "total"][-1]["files_failed"] == 2


def test_et_file_names_pass_the_name_check(et_profile: str, emulator: Any, tmp_path: Path) -> None:
    good = make_file(tmp_path / "good.txt", 10)
    bad_path = os.fsencode(tmp_path) + b"/caf\xe9.txt"  # Latin-1, not UTF-8
    with open(bad_path, "wb") as fh:
        fh.write(b"0123456789")
    bad = os.fsdecode(bad_path)
    result = run("upload", str(good), bad, "--progress", "none")
    assert result.code == 7
    assert result.err.count("is not valid UTF-8") == 1
    assert "1 of 2 file names cannot be uploaded" in result.err
    assert emulator.mounts[ET].sets == {}  # refused before any request


def test_et_error_names_the_file_once(et_profile: str, tmp_path: Path) -> None:
    good = files_of(tmp_path, 2, 10)
    result = run("upload", str(good[0]), "nope.bin", str(good[1]), "--progress", "none")
    assert result.code == 11
    assert "tmpup: error: nope.bin: no such file\n" in result.err and result.err.count("nope.bin") == 1
