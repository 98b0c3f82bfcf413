"""Statistics and the Markdown report of a benchmark run (bench/results.md).

Ratios are taken per repetition (tmpup's run i against the yardstick's run i of the same round,
so slow drift of the machine cancels out) and summarised by their median and range, as issue 6
states its targets ("medians of ratios").
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

MIB = 1024 * 1024


@dataclass
class CaseResult:
    label: str
    payload: int  # bytes moved per run (0 for start-up rows)
    walls: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.walls)

    @property
    def peak_rss_mib(self) -> float:
        return max(self.rss_kib) / 1024 if self.rss_kib else 0.0


@dataclass
class Comparison:
    subject: str
    yardstick: str
    #: "time": subject wall / yardstick wall (lower is better); "throughput": yardstick wall / subject
    #: wall, i.e. how many times faster tmpup is (higher is better).
    kind: str = "time"
    target: float | None = None
    goal: str = ""

    def ratios(self, cases: dict[str, CaseResult]) -> list[float]:
        a, b = cases[self.subject].walls, cases[self.yardstick].walls
        pairs = list(zip(a, b, strict=False))
        return [x / y if self.kind == "time" else y / x for x, y in pairs if x > 0 and y > 0]

    def met(self, value: float) -> bool | None:
        if self.target is None:
            return None
        return value <= self.target if self.kind == "time" else value >= self.target


@dataclass
class GroupResult:
    key: str
    title: str
    note: str = ""
    cases: dict[str, CaseResult] = field(default_factory=dict)
    comparisons: list[Comparison] = field(default_factory=list)
    unavailable: str | None = None
    errors: list[str] = field(default_factory=list)


def fmt_s(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def span(values: Sequence[float], fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(min(values))}-{fmt.format(max(values))}" if values else "n/a"


def fmt_ratio(value: float, target: float | None) -> str:
    """Two decimals, or three where two would round onto the target and hide which side it is on."""
    text = f"{value:.2f}"
    if target is not None and value != target and text == f"{target:.2f}":
        text = f"{value:.3f}"
    return text


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**missed**")


def group_table(group: GroupResult) -> list[str]:
    lines = [f"### {group.title}", ""]
    if group.note:
        lines += [group.note, ""]
    if group.unavailable:
        return [*lines, f"Not available: {group.unavailable}", ""]
    lines += [
        "| command | median wall | min-max | throughput | peak RSS | server CPU |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for case in group.cases.values():
        if not case.walls:
            lines.append(f"| {case.label} | no successful run | | | | |")
            continue
        rate = f"{case.payload / MIB / case.median:,.0f} MiB/s" if case.payload else "n/a"
        busy = (
            f"{100 * statistics.median(c / w for c, w in zip(case.server_cpu, case.walls, strict=False)):.0f}%"
            if case.server_cpu
            else "n/a"
        )
        lines.append(
            f"| {case.label} | {fmt_s(case.median)} | {fmt_s(min(case.walls))}-{fmt_s(max(case.walls))} "
            f"| {rate} | {case.peak_rss_mib:.1f} MiB | {busy} |"
        )
    lines.append("")
    if group.comparisons:
        lines += ["| ratio | median | min-max | target | |", "|---|---:|---:|---:|---|"]
        for comp in group.comparisons:
            ratios = comp.ratios(group.cases)
            if not ratios:
                continue
            median = statistics.median(ratios)
            name = (
                f"{comp.subject} / {comp.yardstick} (wall)"
                if comp.kind == "time"
                else f"{comp.subject} throughput / {comp.yardstick} throughput"
            )
            target = comp.goal or ("n/a" if comp.target is None else f"{comp.target}")
            shown = fmt_ratio(median, comp.target)
            lines.append(f"| {name} | {shown} | {span(ratios)} | {target} | {verdict(comp.met(median))} |")
        lines.append("")
    for error in group.errors:
        lines.append(f"- error: {error}")
    if group.errors:
        lines.append("")
    return lines


@dataclass
class Target:
    text: str
    measured: str
    ok: bool | None


def targets_table(targets: list[Target]) -> list[str]:
    lines = ["| target (issue 6) | measured | |", "|---|---|---|"]
    lines += [f"| {t.text} | {t.measured} | {verdict(t.ok)} |" for t in targets]
    return [*lines, ""]


def comparison_target(group: GroupResult | None, index: int, text: str) -> Target:
    """A Targets-table line from a group's comparison (its median ratio and range)."""
    if group is None or group.unavailable:
        why = group.unavailable if group else "not run"
        return Target(text, f"not available ({why})", None)
    comp = group.comparisons[index]
    ratios = comp.ratios(group.cases)
    if not ratios:
        return Target(text, "no successful runs", False)
    median = statistics.median(ratios)
    return Target(text, f"{fmt_ratio(median, comp.target)} (range {span(ratios)})", comp.met(median))
