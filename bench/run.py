"""The benchmark harness of issue 6: tmpup against curl, tuspy and the Node tus server, same machine,
same server, same run.

    .venv/bin/python bench/run.py --quick        # 64 MiB, 3 rounds: about a minute
    .venv/bin/python bench/run.py                # 1 GiB, 5 rounds: what the targets are stated for

It builds the test files (kept in the work dir for the next run), starts the sink (bench/sink.py),
the Node `@tus/server` (tests/peers, `npm ci --prefix tests/peers`) and the launcher
(bench/launch.py), runs every group of bench/groups.py (a verified warm-up of each command, then
alternating rounds), prints the report and writes it to bench/results.md. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import scenarios as sc
from bench.groups import MIB, Case, Files, Group, build_groups, file_digests
from bench.report import (
    CaseResult,
    GroupResult,
    Target,
    comparison_target,
    fmt_s,
    group_table,
    span,
    targets_table,
)
from bench.servers import ROOT, Launcher, Measurement, NodeTus, SinkProcess

GROUP_KEYS = ("raw", "raw10", "pyrus", "et", "tus", "tus-node", "download", "small", "startup")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="tmpup's benchmark suite (bench/README.md)")
    parser.add_argument("--quick", action="store_true", help="64 MiB files, 3 rounds, 10 start-up rounds")
    parser.add_argument("--size", help="size of the large file, e.g. 1G or 256M (default 1G, 64M with --quick)")
    parser.add_argument("--reps", type=int, help="timed rounds per group (default 9, 3 with --quick)")
    parser.add_argument("--startup-reps", type=int, help="timed rounds of the start-up group (default 20, 10 quick)")
    parser.add_argument("--small-files", type=int, default=200, help="how many small files (default 200)")
    parser.add_argument("--small-size", type=int, default=10 * 1024, help="bytes per small file (default 10 KiB)")
    parser.add_argument(
        "--only", help="comma-separated group keys: raw,raw10,pyrus,et,tus,tus-node,download,small,startup"
    )
    parser.add_argument("--workdir", type=Path, help="where test files live (default: $TMPDIR/tmpup-bench)")
    parser.add_argument(
        "--output", type=Path, help="the Markdown report (default bench/results.md, bench/results-full.md for 1 GiB)"
    )
    args = parser.parse_args(argv)
    args.size = _size(args.size or ("64M" if args.quick else "1G"))
    args.reps = args.reps or (3 if args.quick else 9)
    args.startup_reps = args.startup_reps or (10 if args.quick else 20)
    args.workdir = args.workdir or Path(tempfile.gettempdir()) / "tmpup-bench"
    if args.output is None:
        full = not args.quick and args.size >= 1024 * MIB
        args.output = ROOT / "bench" / ("results-full.md" if full else "results.md")
    return args


def _size(text: str) -> int:
    match = re.fullmatch(r"(\d+)\s*([KMG]?)(?:i?B)?", text.strip(), re.IGNORECASE)
    if not match:
        raise SystemExit(f"bench: not a size: {text!r} (e.g. 64M, 1G)")
    power = " KMG".index(match.group(2).upper() or " ")
    return int(match.group(1)) << (10 * power)


def make_file(path: Path, size: int) -> Path:
    """Random bytes (incompressible, so nothing on the way can cheat); an existing file of that size is kept."""
    if path.exists() and path.stat().st_size == size:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        left = size
        while left:
            block = os.urandom(min(left, 4 * MIB))
            fh.write(block)
            left -= len(block)
    return path


def make_files(args: argparse.Namespace) -> Files:
    folder = args.workdir / "files"
    big = make_file(folder / f"payload-{args.size // MIB}M.bin", args.size)
    ten = make_file(folder / "payload-10M.bin", 10 * MIB)
    small = [make_file(folder / "small" / f"f{i:03d}.bin", args.small_size) for i in range(args.small_files)]
    files = Files(big, ten, small)
    for path in [big, ten, *small]:
        files.digests[path] = file_digests(path)
    return files


class Harness:
    def __init__(self, work: Path, launcher: Launcher) -> None:
        self.work = work
        self.launcher = launcher
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def run_case(
        self, group: Group, case: Case, sink: SinkProcess, verify: bool
    ) -> tuple[Measurement, float, str | None]:
        if case.before is not None:
            case.before()
        before = sink.last_seq()
        command = case.build()
        cpu0 = case.server_cpu() if case.server_cpu else 0.0
        slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{group.key}-{case.label}").strip("-")
        err = self.logs / f"{slug}.err"
        m = self.launcher.run(
            command.argvs,
            command.env,
            cwd=self.work,
            stdout=self.logs / f"{slug}.out",
            stderr=err,
            stderr_tty=command.terminal,
        )
        server = (case.server_cpu() - cpu0) if case.server_cpu else 0.0
        problem = case.check(before, verify)
        if m.status != 0:
            text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "\n", err.read_text(errors="replace")) if err.exists() else ""
            tail = [line for line in text.splitlines() if line.strip()][-1:]
            problem = f"{case.label} exited with {m.status}" + (f": {tail[0][:300]}" if tail else "")
            if m.error:
                problem += f" ({m.error})"
        return m, server, problem

    def run_group(self, group: Group, sink: SinkProcess) -> GroupResult:
        result = GroupResult(group.key, group.title, group.note, comparisons=group.comparisons)
        if group.unavailable:
            result.unavailable = group.unavailable
            return result
        for case in group.cases:
            result.cases[case.label] = CaseResult(case.label, case.payload)
        print(f"== {group.title}", flush=True)
        sink.verify(True)
        try:
            for case in group.cases:  # warm-up: caches, and proof that the bytes arrive exact
                _m, _cpu, problem = self.run_case(group, case, sink, verify=True)
                if problem:
                    result.unavailable = f"the verified warm-up failed: {problem}"
                    print(f"   {result.unavailable}", flush=True)
                    return result
        finally:
            sink.verify(False)
        for rnd in range(group.reps):
            shift = rnd % len(group.cases)
            order = group.cases[shift:] + group.cases[:shift]
            done: list[tuple[str, Measurement, float]] = []
            problems = []
            for case in order:
                m, cpu, problem = self.run_case(group, case, sink, verify=False)
                if problem:
                    problems.append(f"round {rnd + 1}: {problem}")
                done.append((case.label, m, cpu))
            if problems:  # a round with a broken transfer is dropped whole, so ratios stay paired
                result.errors += problems
                print("   " + "; ".join(problems), flush=True)
                continue
            for label, m, cpu in done:
                case_result = result.cases[label]
                case_result.walls.append(m.wall)
                case_result.rss_kib.append(m.maxrss_kib)
                case_result.cpu.append(m.utime + m.stime)
                case_result.server_cpu.append(cpu)
            print("   " + ", ".join(f"{label}: {m.wall:.3f} s" for label, m, _ in done), flush=True)
        return result


def compile_package() -> None:
    """Byte-compile tmpup as `pip install` does, so start-up is measured as users meet it.

    An editable install (the test venv) has no `.pyc` of tmpup, and with PYTHONDONTWRITEBYTECODE set
    (it is, on CI images and here) every run would compile tmpup's sources again: ~25 ms per
    invocation that no installed copy pays.
    """
    import compileall

    compileall.compile_dir(str(ROOT / "tmpup"), quiet=1)


def machine(args: argparse.Namespace, launcher_floor: float) -> list[str]:
    def out(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "not available"

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    mem = next((line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), "0")  # fmt: skip
    commit = out("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD")
    status = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "tmpup"], capture_output=True, text=True)
    dirty = " (tmpup/ has uncommitted changes)" if status.stdout.strip() else ""
    mode = "quick (`--quick`)" if args.quick else "full"
    return [
        f"- when: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; mode: {mode}; "
        f"large file {args.size // MIB} MiB; "
        f"{args.reps} timed rounds per group ({args.startup_reps} for start-up) after one verified warm-up run",
        f"- machine: {cpu}, {os.cpu_count()} CPUs, {int(mem) // 1024 // 1024} GiB RAM, Linux {platform.release()}; "
        f"load average at start {os.getloadavg()[0]:.2f}",
        f"- {out(*sc.tmpup(), '--version')} at commit {commit}{dirty}; Python {platform.python_version()}; "
        f"{' '.join(out('curl', '--version').split()[:2])}; Node {out('node', '--version')}",
        f"- peak RSS is `ru_maxrss` from `os.wait4`, spawned from a small launcher whose own "
        f"{launcher_floor:.1f} MiB is the floor of every figure; tmpup is byte-compiled first, as an "
        f"installed copy is",
    ]  # fmt: skip


def hash_seconds(path: Path) -> dict[str, float]:
    """How long one thread takes to hash the large file here, per algorithm (the floor of any client
    that verifies it: MD5 cannot be split across cores)."""
    import hashlib

    seconds = {}
    for name in ("md5", "sha256"):
        h = hashlib.new(name)
        started = time.perf_counter()
        with path.open("rb", buffering=0) as fh:
            while block := fh.read(MIB):
                h.update(block)
        seconds[name] = time.perf_counter() - started
    return seconds


def hash_speed(path: Path, seconds: dict[str, float]) -> str:
    return ", ".join(f"{name} {path.stat().st_size / MIB / took:,.0f} MiB/s" for name, took in seconds.items())


def md5_floor_target(pyrus: GroupResult | None, md5: float | None) -> Target:
    """Pyrus against what no MD5-verifying client can beat: the slower of curl (no hash) and the MD5
    of the file in one thread, round by round."""
    text = "multipart Pyrus / max(`curl -F`, one thread's MD5 of the file): the floor for a verifying client; reported"
    if pyrus is None or pyrus.unavailable or md5 is None:
        return Target(text, "not available", None)
    pairs = zip(pyrus.cases["tmpup (bar)"].walls, pyrus.cases["curl -F"].walls, strict=False)
    ratios = [tmpup / max(curl, md5) for tmpup, curl in pairs]
    if not ratios:
        return Target(text, "no successful runs", None)
    return Target(text, f"{statistics.median(ratios):.2f} (range {span(ratios)}; MD5 alone {fmt_s(md5)})", None)


def summary(results: dict[str, GroupResult], args: argparse.Namespace, md5: float | None = None) -> list[Target]:
    g = results.get
    size = f"{args.size // MIB} MiB"
    targets = [
        comparison_target(g("raw"), 0, f"raw upload wall <= 1.15x `curl -T` ({size})"),
        comparison_target(g("pyrus"), 0, f"multipart Pyrus <= 1.3x `curl -F` ({size})"),
        md5_floor_target(g("pyrus"), md5),
        comparison_target(g("et"), 0, f"multipart Enterprise Tester <= 1.3x `curl -F` ({size})"),
        comparison_target(g("tus"), 0, "tus (sink) >= 2.5x tuspy's throughput"),
        comparison_target(g("tus"), 1, "tus (sink) <= 1.2x a single curl PATCH"),
        comparison_target(
            g("tus"), 2, "tus (sink): a bare Python socket's throughput / tuspy's (the ceiling): reported, no target"
        ),
        comparison_target(g("tus-node"), 0, "tus (@tus/server) >= 2.5x tuspy's throughput"),
        comparison_target(g("tus-node"), 1, "tus (@tus/server) <= 1.2x a single curl PATCH"),
        comparison_target(g("download"), 0, f"download to a file <= 1.1x `curl -o` ({size})"),
    ]
    raw, raw10 = g("raw"), g("raw10")
    text = f"peak RSS <= 64 MiB for 10 MiB and {size} alike, within 8 MiB of each other"
    if raw and raw10 and not raw.unavailable and not raw10.unavailable and raw10.cases["tmpup (bar)"].rss_kib:
        small, large = raw10.cases["tmpup (bar)"].peak_rss_mib, raw.cases["tmpup (bar)"].peak_rss_mib
        every = max(c.peak_rss_mib for r in results.values() for c in r.cases.values() if c.label.startswith("tmpup"))
        ok = max(small, large) <= 64 and abs(large - small) <= 8
        targets.append(Target(text, f"{small:.1f} MiB / {large:.1f} MiB (largest of any tmpup run: {every:.1f})", ok))
    else:
        targets.append(Target(text, "not available", None))
    targets += [
        comparison_target(g("startup"), 0, '`tmpup --version` no slower than `python -c "import requests"`'),
        comparison_target(g("small"), 0, f"{args.small_files} files of {args.small_size // 1024} KiB in one invocation "
                          f"<= 0.3x {args.small_files} curl processes"),
        comparison_target(g("bar"), 0, "progress bar overhead <= 3% (bar on a terminal / none)"),
        comparison_target(g("raw"), 1, "`--checksum` (sha256 in the read path) / no checksum: reported, no target"),
    ]  # fmt: skip
    return targets


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work: Path = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    for stale in ("state", "home", "logs", "node-store"):
        shutil.rmtree(work / stale, ignore_errors=True)
    print(f"bench: preparing files in {work}/files", flush=True)
    files = make_files(args)
    compile_package()
    launcher = Launcher()
    sink = SinkProcess(work / "files")
    node: NodeTus | None = None
    node_error = ""
    try:
        try:
            node = NodeTus(work / "node-store")
        except (RuntimeError, OSError) as exc:
            node_error = str(exc)
        for path in (files.big, files.ten):
            sink.expect(path.name, path.stat().st_size, files.digests[path][1])
        floor = launcher.run([["/bin/true"]], dict(os.environ)).rss_mib
        header = machine(args, floor)
        groups = build_groups(work, sink, node, node_error, files, args.reps, args.startup_reps)
        if args.only:
            keys = set(args.only.split(","))
            groups = [group for group in groups if group.key in keys]
        harness = Harness(work, launcher)
        results = {group.key: harness.run_group(group, sink) for group in groups}
        hashes = hash_seconds(files.big)
        header.append(f"- load average at the end {os.getloadavg()[0]:.2f}; in-process hashing here: "
                      f"{hash_speed(files.big, hashes)}")  # fmt: skip
    finally:
        sink.stop()
        if node is not None:
            node.stop()
        launcher.stop()
    report = render(header, summary(results, args, hashes["md5"]), results, args)
    print("\n" + report)
    args.output.write_text(report)
    print(f"bench: wrote {args.output}")
    return 0


def render(header: list[str], targets: list[Target], results: dict[str, GroupResult], args: argparse.Namespace) -> str:
    lines = [
        "# tmpup benchmark results",
        "",
        "Produced by `bench/run.py` (see bench/README.md for what each row means).",
        "",
    ]
    lines += [*header, "", "## Targets", "", *targets_table(targets)]
    startup = results.get("startup")
    one, curl_one = "tmpup upload of one small file (no progress)", "curl -T of one small file"
    if startup and not startup.unavailable and startup.cases[one].walls and startup.cases[curl_one].walls:
        fixed, curl_fixed = startup.cases[one].median, startup.cases[curl_one].median
        lines += [
            f"Fixed cost of one `tmpup upload` invocation (a 10 KiB file, no progress): {fmt_s(fixed)}; "
            f"of one `curl -T`: {fmt_s(curl_fixed)}. Every tmpup wall time above includes it once.",
            "",
        ]
    raw = results.get("raw")
    if raw and not raw.unavailable and raw.cases["curl -T"].walls:
        curl = raw.cases["curl -T"]
        busy = statistics.median(c / w for c, w in zip(curl.server_cpu, curl.walls, strict=False))
        lines += [
            "## The sink's ceiling",
            "",
            f"`curl -T` moved the large file into the sink at {curl.payload / MIB / curl.median:,.0f} MiB/s while the "
            f"sink was busy {100 * busy:.0f}% of one CPU (column \"server CPU\": the server's CPU time over the run's "
            "wall time): the sink is not what limits any row below.",
            "",
        ]
    lines += checksum_costs(results)
    lines += ["## Groups", ""]
    for result in results.values():
        lines += group_table(result)
    return "\n".join(lines).rstrip() + "\n"


def checksum_costs(results: dict[str, GroupResult]) -> list[str]:
    """What the checksums cost, per GiB: both are computed from the blocks being sent (one read)."""
    lines = []
    raw, pyrus, et = results.get("raw"), results.get("pyrus"), results.get("et")
    if raw and not raw.unavailable and raw.cases["tmpup --checksum (no progress)"].walls:
        with_sum, without = raw.cases["tmpup --checksum (no progress)"], raw.cases["tmpup (no progress)"]
        extra = (with_sum.median - without.median) / (with_sum.payload / MIB / 1024)
        lines.append(f"- `--checksum` (sha256 of what is sent, for the receipt): +{extra:.2f} s per GiB")
    if pyrus and et and not pyrus.unavailable and not et.unavailable and pyrus.cases["tmpup (bar)"].walls:
        p, e = pyrus.cases["tmpup (bar)"], et.cases["tmpup (bar)"]
        if e.walls:
            extra = (p.median - e.median) / (p.payload / MIB / 1024)
            lines.append(
                f"- Pyrus's MD5 verification (always on): +{extra:.2f} s per GiB, estimated as tmpup's Pyrus wall "
                "minus its Enterprise Tester wall (the same streaming multipart code without a hash)"
            )
    return ["## Checksum costs", "", *lines, ""] if lines else []


if __name__ == "__main__":
    sys.exit(main())
