"""The benchmark suite measures real, complete transfers: no timings here, only that the bytes arrive exact.

Runs the sink (bench/sink.py) and the harness's own commands (bench/scenarios.py: tmpup with a
file-less profile, and the yardsticks curl and tuspy) on small files, and checks at the sink that
every byte arrived (sha256, and the MD5 Pyrus answers). Also: the sink's multipart scanner on
bodies cut at every awkward place, its chunked-body reader, the launcher's RSS figures (a child's
own, not its parent's), and one small end-to-end run of bench/run.py.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import scenarios as sc
from bench.groups import Files, file_digests, sink_check
from bench.multipart_scan import Part, scan
from bench.servers import Launcher, SinkProcess, create_tus_upload

REPO = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024


def make(path: Path, size: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


@pytest.fixture
def files(tmp_path: Path) -> Files:
    folder = tmp_path / "files"
    found = Files(
        make(folder / "big.bin", 3 * MIB + 12345, 1),
        make(folder / "ten.bin", MIB, 2),
        [make(folder / "small" / f"f{i}.bin", 10 * 1024, 10 + i) for i in range(5)],
    )
    for path in [found.big, found.ten, *found.small]:
        found.digests[path] = file_digests(path)
    return found


@pytest.fixture
def sink(files: Files) -> Iterator[SinkProcess]:
    server = SinkProcess(files.big.parent, python=sys.executable)
    server.verify(True)
    try:
        yield server
    finally:
        server.stop()


def run(command: sc.Command, cwd: Path) -> subprocess.CompletedProcess[str]:
    results = [subprocess.run(argv, env=command.env, cwd=cwd, capture_output=True, text=True, timeout=120)
               for argv in command.argvs]  # fmt: skip
    for result in results:
        assert result.returncode == 0, f"{command.label}: {result.stderr[-2000:]}"
    return results[-1]


def exact(sink: SinkProcess, files: Files, before: int, paths: list[Path], kind: str) -> None:
    problem = sink_check(sink, files, paths, kind)(before, True)
    assert problem is None, problem


@pytest.mark.parametrize("progress", ["bar", "none"])
def test_raw_upload_arrives_exact(sink: SinkProcess, files: Files, tmp_path: Path, progress: str) -> None:
    before = sink.last_seq()
    run(sc.tmpup_upload("t", tmp_path, "qlik", sink.url, [files.big], progress=progress), tmp_path)
    exact(sink, files, before, [files.big], "raw")
    before = sink.last_seq()
    run(sc.tmpup_upload("t", tmp_path, "qlik", sink.url, [files.ten], extra=("--checksum",)), tmp_path)
    exact(sink, files, before, [files.ten], "raw")
    receipt = json.loads((tmp_path / "state" / "receipts.jsonl").read_text().splitlines()[-1])
    assert receipt["sha256"] == files.sha256(files.ten)


def test_many_small_files_in_one_invocation_arrive_exact(sink: SinkProcess, files: Files, tmp_path: Path) -> None:
    for extra in ((), ("-j", "4")):
        before = sink.last_seq()
        out = run(sc.tmpup_upload("t", tmp_path, "qlik", sink.url, files.small, extra=extra), tmp_path)
        assert len(out.stdout.splitlines()) == len(files.small)
        exact(sink, files, before, files.small, "raw")


def test_pyrus_upload_md5_verified_and_fast_mode_registered_md5(
    sink: SinkProcess, files: Files, tmp_path: Path
) -> None:
    before = sink.last_seq()
    run(sc.tmpup_upload("t", tmp_path, "pyrus", sink.url, [files.big]), tmp_path)
    exact(sink, files, before, [files.big], "pyrus")
    # Timed runs: the sink does not hash, it answers the registered MD5 when the byte count matches.
    sink.verify(False)
    sink.expect(files.big.name, files.big.stat().st_size, files.digests[files.big][1])
    run(sc.tmpup_upload("t", tmp_path, "pyrus", sink.url, [files.big]), tmp_path)
    # A wrong registration is caught by tmpup's own MD5 check (exit 9): the bench cannot time a bad run.
    sink.expect(files.big.name, files.big.stat().st_size, "0" * 32)
    command = sc.tmpup_upload("t", tmp_path, "pyrus", sink.url, [files.big])
    failed = subprocess.run(command.argvs[0], env=command.env, cwd=tmp_path, capture_output=True, timeout=120)
    assert failed.returncode == 9
    # Unregistered names are hashed even without verification.
    run(sc.tmpup_upload("t", tmp_path, "pyrus", sink.url, [files.ten]), tmp_path)


def test_enterprise_tester_set_arrives_exact(sink: SinkProcess, files: Files, tmp_path: Path) -> None:
    before = sink.last_seq()
    run(sc.tmpup_upload("t", tmp_path, "enterprise-tester", sink.url, [files.big]), tmp_path)
    exact(sink, files, before, [files.big], "et")
    before = sink.last_seq()
    run(sc.tmpup_upload("t", tmp_path, "enterprise-tester", sink.url, [files.ten, *files.small]), tmp_path)
    exact(sink, files, before, [files.ten, *files.small], "et")


def test_tus_uploads_arrive_exact(sink: SinkProcess, files: Files, tmp_path: Path) -> None:
    create = f"{sink.url}/tus/files/"
    for command in (
        sc.tmpup_upload("t", tmp_path, "tus", create, [files.big]),
        sc.tuspy(create, files.big, chunk=MIB),  # several PATCHes
        sc.curl_patch(create_tus_upload(create, files.big.stat().st_size, files.big.name), files.big),
        sc.bare_tus(create, files.big),
    ):
        before = sink.last_seq()
        run(command, tmp_path)
        exact(sink, files, before, [files.big], "tus")


#: Runs tmpup in-process under a tiny wrapper that reports, at exit, how many bytes the process read
#: (`rchar` of /proc/self/io: files, sockets and the modules it imported).
_READ_COUNTER = """
import atexit, runpy, sys
def report():
    fields = dict(line.split(": ") for line in open("/proc/self/io").read().splitlines())
    sys.stderr.write("RCHAR %d\\n" % int(fields["rchar"]))
atexit.register(report)
sys.argv = ["tmpup", *sys.argv[1:]]
runpy.run_module("tmpup", run_name="__main__")
"""


@pytest.mark.parametrize(("provider", "extra"), [("qlik", ("--checksum",)), ("pyrus", ()), ("tus", ("--checksum",))])
def test_checksums_are_computed_in_the_read_path(
    sink: SinkProcess, tmp_path: Path, provider: str, extra: tuple[str, ...]
) -> None:
    """sha256 (--checksum) and Pyrus's MD5 come from the blocks that are sent: the file is read once."""
    size = 24 * MIB
    big = make(tmp_path / "files" / "read-once.bin", size, 7)
    url = f"{sink.url}/tus/files/" if provider == "tus" else sink.url
    command = sc.tmpup_upload("t", tmp_path, provider, url, [big], progress="none", extra=extra)
    argv = [sys.executable, "-c", _READ_COUNTER, *command.argvs[0][len(sc.tmpup()) :]]
    done = subprocess.run(argv, env=command.env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    read = int(done.stderr.rsplit("RCHAR ", 1)[1].split()[0])
    # Once is `size` plus imports (~7 MB) plus, for tus, the 2 MiB of the resume record's identity hash.
    assert size < read < size + 16 * MIB, f"{provider} read {read} bytes for a {size}-byte file"
    record = sink.records()[-1]
    assert record["size"] == size and record["sha256"] == hashlib.sha256(big.read_bytes()).hexdigest()


def test_yardsticks_arrive_exact(sink: SinkProcess, files: Files, tmp_path: Path) -> None:
    before = sink.last_seq()
    run(sc.curl_raw(sink.url, [files.big, *files.small]), tmp_path)
    exact(sink, files, before, [files.big, *files.small], "raw")
    before = sink.last_seq()
    run(sc.curl_form_pyrus(sink.url, files.big), tmp_path)
    exact(sink, files, before, [files.big], "pyrus")
    before = sink.last_seq()
    run(sc.curl_form_et(sink.url, "set1", files.big), tmp_path)
    exact(sink, files, before, [files.big], "et")


def test_downloads_write_the_exact_bytes(sink: SinkProcess, files: Files, tmp_path: Path) -> None:
    for command, out in (
        (sc.tmpup_download("t", tmp_path, sink.url, files.big.name, tmp_path / "t.bin"), tmp_path / "t.bin"),
        (sc.curl_download(sink.url, files.big.name, tmp_path / "c.bin"), tmp_path / "c.bin"),
    ):
        run(command, tmp_path)
        assert file_digests(out) == files.digests[files.big]


def test_sink_reads_chunked_bodies(sink: SinkProcess, files: Files) -> None:
    data = files.big.read_bytes()
    port = int(sink.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    blocks = (data[i : i + 100_000] for i in range(0, len(data), 100_000))
    headers = {"Authorization": f"Bearer {sc.QLIK_TOKEN}"}
    conn.request("POST", "/qlik/api/v1/temp-contents?filename=chunked", body=blocks, headers=headers,
                 encode_chunked=True)  # fmt: skip
    assert conn.getresponse().status == 201
    record = sink.records()[-1]
    assert (record["name"], record["size"]) == ("chunked", len(data))
    assert record["sha256"] == hashlib.sha256(data).hexdigest()


class Dribble:
    """A body reader that hands out the bytes in pieces of awkward sizes."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self.data, self.sizes, self.pos, self.turn = data, sizes, 0, 0

    def readinto(self, view: memoryview) -> int:
        n = min(len(view), self.sizes[self.turn % len(self.sizes)], len(self.data) - self.pos)
        self.turn += 1
        view[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


@pytest.mark.parametrize("sizes", [[1], [2, 3, 5, 7], [4096], [1 << 22], [37, 1 << 20, 1]])
def test_multipart_scanner_finds_parts_split_anywhere(sizes: list[int]) -> None:
    boundary = b"b0undary-xyz"
    contents = [b"", b"\r\n--b0undary-xy", os.urandom(70_000) + b"\r\n--b0undar", b"tail\r\n"]
    body = b"preamble\r\n"
    for i, content in enumerate(contents):
        body += b"--" + boundary + f'\r\nContent-Disposition: form-data; name="f{i}"; filename="n{i}"\r\n\r\n'.encode()
        body += content + b"\r\n"
    body += b"--" + boundary + b"--\r\nepilogue"
    parts = scan(Dribble(body, sizes), boundary, lambda h: Part(h, hashers={"sha256": hashlib.sha256()}))
    assert [p.param("content-disposition", "filename") for p in parts] == ["n0", "n1", "n2", "n3"]
    assert [p.size for p in parts] == [len(c) for c in contents]
    assert [p.digests()["sha256"] for p in parts] == [hashlib.sha256(c).hexdigest() for c in contents]


def test_launcher_reports_the_childs_own_peak_rss() -> None:
    # This process is big when the launcher starts; the launcher's children must not be charged with that.
    ballast = b"\x01" * (80 * MIB)
    launcher = Launcher(python=sys.executable)
    try:
        small = launcher.run([["/bin/true"]], dict(os.environ))
        grow = "b = b'x' * (100 * 1024 * 1024)"
        big = launcher.run([[sys.executable, "-c", grow]], dict(os.environ))
        failed = launcher.run([[sys.executable, "-c", "raise SystemExit(3)"], ["/bin/true"]], dict(os.environ))
    finally:
        launcher.stop()
    del ballast
    assert small.status == 0 and small.rss_mib < 30
    assert big.status == 0 and big.rss_mib > 100
    assert failed.status == 3 and failed.failed_argv is not None


def test_harness_end_to_end_on_small_files(tmp_path: Path) -> None:
    """bench/run.py itself, tiny: every group's commands run, are verified, and land in the report."""
    output = tmp_path / "results.md"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--size", "2M", "--reps", "1", "--startup-reps", "1",
         "--small-files", "3", "--workdir", str(tmp_path / "work"), "--output", str(output)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = output.read_text()
    assert "Not available" not in report, report
    assert "error:" not in report, report
    for title in ("Raw upload", "Multipart upload (Pyrus", "Enterprise Tester", "tus upload to the sink",
                  "@tus/server", "Download", "small files", "Start-up", "Progress bar overhead"):  # fmt: skip
        assert title in report


def test_a_ratio_that_rounds_onto_its_target_shows_which_side_it_is_on() -> None:
    from bench.report import fmt_ratio

    assert fmt_ratio(0.3007, 0.3) == "0.301"  # missed, though "0.30" would read as the target
    assert fmt_ratio(0.2996, 0.3) == "0.300"  # met by a hair
    assert fmt_ratio(0.3, 0.3) == "0.30"
    assert fmt_ratio(0.27, 0.3) == "0.27"
    assert fmt_ratio(1.154, None) == "1.15"


def test_the_md5_floor_row_divides_by_the_slower_of_curl_and_the_hash() -> None:
    from bench.report import CaseResult, GroupResult
    from bench.run import md5_floor_target

    group = GroupResult("pyrus", "Pyrus")
    group.cases["tmpup (bar)"] = CaseResult("tmpup (bar)", 1, walls=[1.5, 1.6, 3.0])
    group.cases["curl -F"] = CaseResult("curl -F", 1, walls=[0.7, 2.0, 0.6])
    row = md5_floor_target(group, md5=1.5)
    # rounds: 1.5 / max(0.7, 1.5), 1.6 / max(2.0, 1.5), 3.0 / max(0.6, 1.5) -> 1.0, 0.8, 2.0
    assert row.measured.startswith("1.00 (range 0.80-2.00; MD5 alone 1.50 s)") and row.ok is None
    assert md5_floor_target(group, None).measured == "not available"


def test_the_launcher_gives_a_bar_a_terminal_and_keeps_what_it_drew(tmp_path: Path) -> None:
    """`stderr_tty`: the child's stderr is a 120-column terminal (so tmpup draws its bar as on a user's
    screen) and what it writes there reaches the log; stdout stays a file."""
    from bench.servers import Launcher

    child = (
        "import os, sys; size = os.get_terminal_size(2); "
        "sys.stderr.write(f'tty={os.isatty(2)} cols={size.columns}\\r\\x1b[2Kdrawn\\n'); "
        "print('stdout tty', os.isatty(1))"
    )
    launcher = Launcher()
    try:
        m = launcher.run(
            [[sys.executable, "-c", child]],
            dict(os.environ),
            stdout=tmp_path / "out",
            stderr=tmp_path / "err",
            stderr_tty=True,
        )
        plain = launcher.run([[sys.executable, "-c", "import os; print(os.isatty(2))"]], dict(os.environ),
                             stdout=tmp_path / "out2", stderr=tmp_path / "err2")  # fmt: skip
    finally:
        launcher.stop()
    assert m.status == 0 and plain.status == 0
    assert (tmp_path / "err").read_bytes() == b"tty=True cols=120\r\x1b[2Kdrawn\r\n"  # the tty's own CRLF
    assert (tmp_path / "out").read_text() == "stdout tty False\n"
    assert (tmp_path / "err").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "out2").read_text() == "False\n"
