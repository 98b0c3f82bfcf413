"""Progress display: a rich bar on a terminal, plain lines in logs, JSON events, or nothing.

Providers see only the `Task` protocol (`advance`, `set_completed`, `resume_at`, `finish`). Updates arrive
once per block read: 1 MiB of an upload's file (`sources.BLOCK`), up to 128 KiB of a download's body
(`providers.download.BLOCK`); the renderers throttle what they draw, so progress costs a few percent
at most. Everything goes to stderr; only the rich bar uses escape sequences, and it is chosen only
when stderr is a terminal that is not `TERM=dumb`.

A run of several files adds a total (`add_total`: files finished of N, bytes of all of them), fed
by every task from whichever thread uploads it: a total row on the bar, a `total:` line in logs of
long runs, `"event": "total"` records in JSON.

The rich bar is in `tmpup.progress_bar`, loaded only when a bar is chosen.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol, TextIO

from tmpup.output import printable, stderr_guard
from tmpup.units import format_duration, format_size

Mode = Literal["auto", "bar", "lines", "json", "none"]
LINES_INTERVAL = 10.0
JSON_INTERVAL = 1.0


class Task(Protocol):
    def advance(self, n: int) -> None: ...
    def set_completed(self, n: int) -> None: ...
    def finish(self, ok: bool = True) -> None: ...
    # A resumed upload starts at the server's offset: shown as done, never counted as this run's speed.
    def resume_at(self, n: int) -> None: ...


class Progress(Protocol):
    def task(self, label: str, total: int | None, completed: int = 0) -> Task: ...
    def add_total(self, files: int, total: int | None) -> None: ...
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
        from tmpup.progress_bar import RichProgress

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

    def finish(self, ok: bool = True) -> None:
        pass

    def resume_at(self, n: int) -> None:
        pass


class NullProgress:
    def task(self, label: str, total: int | None, completed: int = 0) -> Task:
        return _NullTask()

    def add_total(self, files: int, total: int | None) -> None:
        pass

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class _Overall:
    """The total of a multi-file run for the text renderers: files finished of N, bytes of all of them.

    Every task of the run feeds it, from whichever thread uploads that file; emission is throttled
    like a task's, plus one event each time a file finishes.
    """

    def __init__(
        self,
        files: int,
        total: int | None,
        interval: float,
        emit: Callable[[_Overall, str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.files = files
        self.total = total
        self.completed = 0
        self.done = 0
        self.failed = 0
        self.interval = interval
        self.emit = emit
        self.clock = clock
        self.started = clock()
        self.last = self.started
        self.lock = threading.Lock()
        emit(self, "start")

    def add(self, n: int, *, carried: bool = False) -> None:
        """`n` more bytes; `carried` ones were sent by an earlier run (they count, but not as speed)."""
        with self.lock:
            self.completed += n
            if carried:
                self.carried += n
            now = self.clock()
            if now - self.last >= self.interval:
                self.last = now
                self.emit(self, "progress")

    def finish(self, ok: bool, unsent: int) -> None:
        with self.lock:
            if ok:
                self.done += 1
            else:
                self.failed += 1
                if self.total is not None:
                    # A failed file's unsent bytes will never come: the total still ends at 100%.
                    self.total -= max(0, unsent)
            self.emit(self, "done" if self.done + self.failed >= self.files else "file")

    @property
    def elapsed(self) -> float:
        return max(1e-9, self.clock() - self.started)

    #: Bytes resumed from earlier runs (`_CountingTask.resume_at`): in `completed`, not in `rate`.
    carried = 0

    @property
    def rate(self) -> float:
        return (self.completed - self.carried) / self.elapsed


class _CountingTask:
    """Shared bookkeeping for the text renderers: counts, rate, throttled emission."""

    #: The run's total, when several files go (set by the renderer right after construction).
    overall: _Overall | None = None

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
        self.since = self.started  # when `start_completed` was reached: the rate counts from there
        self.last = self.started
        self.finished = False
        self.lock = threading.Lock()
        emit(self, "start")

    def resume_at(self, n: int) -> None:
        """The server already holds `n` bytes: the count jumps there, the rate starts afresh."""
        with self.lock:
            if self.overall is not None:
                self.overall.add(n - self.completed, carried=True)
            self.completed = self.start_completed = n
            self.since = self.clock()
            self.emit(self, "resume")

    def advance(self, n: int) -> None:
        with self.lock:
            self.completed += n
            if self.overall is not None:
                self.overall.add(n)
            self._maybe_emit()

    def set_completed(self, n: int) -> None:
        with self.lock:
            if self.overall is not None:
                self.overall.add(n - self.completed)  # negative when a retry starts over
            self.completed = n
            self._maybe_emit()

    def _maybe_emit(self) -> None:
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            self.emit(self, "progress")

    def finish(self, ok: bool = True) -> None:
        if not self.finished:
            self.finished = True
            self.emit(self, "done" if ok else "failed")
            if self.overall is not None:
                self.overall.finish(ok, (self.total or 0) - self.completed)

    @property
    def elapsed(self) -> float:
        return max(1e-9, self.clock() - self.started)

    @property
    def rate(self) -> float:
        return (self.completed - self.start_completed) / max(1e-9, self.clock() - self.since)


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

    overall: _Overall | None = None

    def task(self, label: str, total: int | None, completed: int = 0) -> Task:
        # A file name may hold an escape sequence; a log line must not (JSON events escape it themselves).
        task = _CountingTask(printable(label), total, completed, self.interval, self._emit, self.clock)
        task.overall = self.overall
        return task

    def add_total(self, files: int, total: int | None) -> None:
        self.overall = _Overall(files, total, self.interval, self._emit_total, self.clock)

    def _emit_total(self, overall: _Overall, event: str) -> None:
        # Like a file's lines: progress at most every interval, a summary only when the run was long.
        if event in ("start", "file") or (event == "done" and overall.elapsed < self.interval):
            return
        finished = overall.done + overall.failed
        text = f"total: {finished} of {overall.files} files"
        if overall.failed:
            text += f" ({overall.failed} failed)"
        text += f", {format_size(overall.completed)}"
        if overall.total:
            text += f" of {format_size(overall.total)}"
        text += f", {format_size(overall.rate)}/s"
        if event == "progress" and overall.total and overall.rate > 0:
            text += f", {format_duration(max(0, overall.total - overall.completed) / overall.rate)} left"
        elif event == "done":
            text += f", done in {format_duration(overall.elapsed)}"
        self._print(text)

    def _print(self, text: str) -> None:
        # One write per line: with -j several threads report, and print() writes the newline apart.
        with stderr_guard():
            out = self.stream()
            out.write(text + "\n")
            out.flush()

    def _emit(self, task: _CountingTask, event: str) -> None:
        if event in ("start", "resume"):  # the upload says "resuming at ..." itself
            return
        if event in ("done", "failed") and task.elapsed < self.interval:
            # Short transfers print nothing but their result on stdout (or their error).
            return
        done = format_size(task.completed)
        if event == "failed":
            # No percentage: "100%" beside "failed" reads as complete, and a raw upload counts the bytes
            # handed to the socket, not what the server kept.
            of = f" of {format_size(task.total)}" if task.total else ""
            self._print(f"{task.label}: failed in {format_duration(task.elapsed)} ({done}{of} sent)")
            return
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
        self._print(text)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class JsonProgress:
    """Progress events as JSON Lines on stderr, for programs that drive tmpup.

    A file's events: `start`, then `resume` (its `bytes`: what the server already held) when an
    interrupted upload continues, `progress`, and `done` or `failed`."""

    def __init__(self, stream: Callable[[], TextIO], interval: float = JSON_INTERVAL) -> None:
        self.stream = stream
        self.interval = interval
        self.lock = threading.Lock()

    overall: _Overall | None = None

    def task(self, label: str, total: int | None, completed: int = 0) -> Task:
        task = _CountingTask(label, total, completed, self.interval, self._emit)
        task.overall = self.overall
        return task

    def add_total(self, files: int, total: int | None) -> None:
        self.overall = _Overall(files, total, self.interval, self._emit_total)

    def _emit_total(self, overall: _Overall, event: str) -> None:
        # Its own event name: readers that pick files' "start"/"done" events by name see no change.
        # The run is over when files_done + files_failed == files.
        record = {
            "event": "total",
            "files": overall.files,
            "files_done": overall.done,
            "files_failed": overall.failed,
            "bytes": overall.completed,
            "total": overall.total,
            "elapsed": round(overall.elapsed, 3),
        }
        with self.lock, stderr_guard():
            print(json.dumps(record), file=self.stream(), flush=True)

    def _emit(self, task: _CountingTask, event: str) -> None:
        record: dict[str, Any] = {
            "event": event,
            "name": task.label,
            "bytes": task.completed,
            "total": task.total,
            "elapsed": round(task.elapsed, 3),
        }
        with self.lock, stderr_guard():
            print(json.dumps(record, ensure_ascii=False), file=self.stream(), flush=True)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass
