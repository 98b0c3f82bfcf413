"""Progress display: a rich bar on a terminal, plain lines in logs, JSON events, or nothing.

Providers see only the `Task` protocol (`advance`, `set_completed`, `finish`). Updates arrive about
once per MiB (one per read block); the renderers throttle what they draw, so progress costs a few
percent at most. Everything goes to stderr; only the rich bar uses escape sequences, and it is chosen
only when stderr is a terminal that is not `TERM=dumb`.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol, TextIO

from tmpup.units import format_duration, format_size

Mode = Literal["auto", "bar", "lines", "json", "none"]
LINES_INTERVAL = 10.0
JSON_INTERVAL = 1.0


class Task(Protocol):
    def advance(self, n: int) -> None: ...
    def set_completed(self, n: int) -> None: ...
    def set_total(self, total: int | None) -> None: ...
    def finish(self, ok: bool = True) -> None: ...


class Progress(Protocol):
    def task(self, label: str, total: int | None, completed: int = 0) -> Task: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...


def resolve_mode(mode: str, *, quiet: bool, stream: TextIO | None = None) -> Mode:
    if quiet or mode == "none":
        return "none"
    if mode in ("bar", "lines", "json"):
        return mode  # type: ignore[return-value]
    stream = stream or sys.stderr
    is_tty = hasattr(stream, "isatty") and stream.isatty()
    if is_tty and os.environ.get("TERM", "") != "dumb":
        return "bar"
    return "lines"


def make_progress(mode: Mode, *, stream: Callable[[], TextIO] = lambda: sys.stderr) -> Progress:
    if mode == "bar":
        return RichProgress()
    if mode == "lines":
        return LinesProgress(stream)
    if mode == "json":
        return JsonProgress(stream)
    return NullProgress()


class _NullTask:
    def advance(self, n: int) -> None:
        pass

    def set_completed(self, n: int) -> None:
        pass

    def set_total(self, total: int | None) -> None:
        pass

    def finish(self, ok: bool = True) -> None:
        pass


class NullProgress:
    def task(self, label: str, total: int | None, completed: int = 0) -> Task:
        return _NullTask()

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class _CountingTask:
    """Shared bookkeeping for the text renderers: counts, rate, throttled emission."""

    def __init__(
        self,
        label: str,
        total: int | None,
        completed: int,
        interval: float,
        emit: Callable[[_CountingTask, str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.total = total
        self.completed = completed
        self.start_completed = completed
        self.interval = interval
        self.emit = emit
        self.clock = clock
        self.started = clock()
        self.last = self.started
        self.finished = False
        self.lock = threading.Lock()
        emit(self, "start")

    def advance(self, n: int) -> None:
        with self.lock:
            self.completed += n
            self._maybe_emit()

    def set_completed(self, n: int) -> None:
        with self.lock:
            self.completed = n
            self._maybe_emit()

    def set_total(self, total: int | None) -> None:
        self.total = total

    def _maybe_emit(self) -> None:
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            self.emit(self, "progress")

    def finish(self, ok: bool = True) -> None:
        if not self.finished:
            self.finished = True
            self.emit(self, "done" if ok else "failed")

    @property
    def elapsed(self) -> float:
        return max(1e-9, self.clock() - self.started)

    @property
    def rate(self) -> float:
        return (self.completed - self.start_completed) / self.elapsed


class LinesProgress:
    """Plain lines for logs: a line at most every 10 s per transfer, and one when a long one ends."""

    def __init__(
        self,
        stream: Callable[[], TextIO],
        interval: float = LINES_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.interval = interval
        self.clock = clock

    def task(self, label: str, total: int | None, completed: int = 0) -> Task:
        return _CountingTask(label, total, completed, self.interval, self._emit, self.clock)

    def _emit(self, task: _CountingTask, event: str) -> None:
        if event == "start":
            return
        if event in ("done", "failed") and task.elapsed < self.interval:
            # Short transfers print nothing but their result on stdout (or their error).
            return
        done = format_size(task.completed)
        if task.total:
            pct = 100.0 * task.completed / task.total if task.total else 100.0
            text = f"{task.label}: {pct:3.0f}% {done} of {format_size(task.total)}"
        else:
            text = f"{task.label}: {done}"
        text += f", {format_size(task.rate)}/s"
        if event == "progress" and task.total and task.rate > 0:
            text += f", {format_duration((task.total - task.completed) / task.rate)} left"
        elif event != "progress":
            text += f", {event} in {format_duration(task.elapsed)}"
        print(text, file=self.stream(), flush=True)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class JsonProgress:
    """Progress events as JSON Lines on stderr, for programs that drive tmpup."""

    def __init__(self, stream: Callable[[], TextIO], interval: float = JSON_INTERVAL) -> None:
        self.stream = stream
        self.interval = interval
        self.lock = threading.Lock()

    def task(self, label: str, total: int | None, completed: int = 0) -> Task:
        return _CountingTask(label, total, completed, self.interval, self._emit)

    def _emit(self, task: _CountingTask, event: str) -> None:
        record: dict[str, Any] = {
            "event": event,
            "name": task.label,
            "bytes": task.completed,
            "total": task.total,
            "elapsed": round(task.elapsed, 3),
        }
        with self.lock:
            print(json.dumps(record, ensure_ascii=False), file=self.stream(), flush=True)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class _RichTask:
    def __init__(self, owner: RichProgress, task_id: Any) -> None:
        self.owner = owner
        self.task_id = task_id

    def advance(self, n: int) -> None:
        self.owner.bar.update(self.task_id, advance=n)
        if self.owner.total_id is not None:
            self.owner.bar.update(self.owner.total_id, advance=n)

    def set_completed(self, n: int) -> None:
        bar = self.owner.bar
        before = bar._tasks[self.task_id].completed
        bar.update(self.task_id, completed=n)
        if self.owner.total_id is not None:
            bar.update(self.owner.total_id, advance=n - before)

    def set_total(self, total: int | None) -> None:
        self.owner.bar.update(self.task_id, total=total)

    def finish(self, ok: bool = True) -> None:
        bar = self.owner.bar
        if not ok:
            bar.update(self.task_id, description=f"✗ {bar._tasks[self.task_id].description}")
        bar.stop_task(self.task_id)


class RichProgress:
    """A rich bar per transfer on stderr (plus a total bar when several files go at once)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as Bar

        self.bar = Bar(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            TaskProgressColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            refresh_per_second=8,
            transient=False,
            # Results must reach stdout itself when it is a pipe (`id=$(tmpup upload f)`); when both are
            # the same terminal, rich prints them above the bar instead of through it.
            redirect_stdout=sys.stdout.isatty(),
        )
        self.total_id: Any = None

    def add_total(self, total: int | None) -> None:
        self.total_id = self.bar.add_task("total", total=total)

    def task(self, label: str, total: int | None, completed: int = 0) -> Task:
        return _RichTask(self, self.bar.add_task(label, total=total, completed=completed))

    def start(self) -> None:
        self.bar.start()

    def stop(self) -> None:
        self.bar.stop()
