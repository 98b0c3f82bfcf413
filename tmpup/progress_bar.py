"""The rich progress bar (`--progress bar`, the default on a terminal): a painter thread draws what the
transfers count.

Split from `tmpup.progress` so that the other renderers (and every run that never draws a bar) do not
carry it; `make_progress("bar")` loads it. rich itself loads later still, on the painter thread, once a
run has lasted `BAR_DELAY`.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from tmpup.output import printable, stderr_guard
from tmpup.progress import Task
from tmpup.units import format_size


def _speed_column() -> Any:
    """Speed in the binary units of the sizes beside it (rich's TransferSpeedColumn says MB/s)."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class SpeedColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            # rich's estimate from recent samples while the transfer runs; the whole run's average at the
            # end (a row drawn late, or a short transfer, has too few samples to estimate from)
            speed = task.fields.get("average") if task.finished else task.speed or task.fields.get("average")
            return Text("" if speed is None else f"{format_size(speed)}/s", style="progress.data.speed")

    return SpeedColumn()


class _BarTask:
    """One transfer's counts, written by the thread that moves its bytes (a plain integer add: the read
    path never waits for rich) and copied into rich by the painter a few times a second."""

    def __init__(self, owner: RichProgress, label: str, total: int | None, completed: int) -> None:
        self.owner = owner
        self.label = label
        self.total = total
        self.completed = completed
        self.carried = completed  # already there before this run (a resumed transfer): no speed
        self.resets = 0  # resume_at() calls: each restarts the row's speed samples
        self.since = time.monotonic()  # the average speed counts from here, and from `from_bytes`
        self.from_bytes = completed
        self.finished = False
        self.ok = True
        # The painter's side: the rich row (None until drawn) and the resets it has applied.
        self.row: Any = None
        self.shown_resets = 0

    def advance(self, n: int) -> None:
        if not self.finished:
            self.completed += n

    def set_completed(self, n: int) -> None:
        if not self.finished:
            self.completed = n  # lower when a retry starts over

    def resume_at(self, n: int) -> None:
        if not self.finished:
            self.carried += n - self.completed
            self.completed = self.from_bytes = n
            self.since = time.monotonic()
            self.resets += 1

    def finish(self, ok: bool = True) -> None:
        if not self.finished:
            self.finished = True
            self.ok = ok
            self.ended = time.monotonic()
            self.owner.finished(self)

    ended: float | None = None

    @property
    def average(self) -> float | None:
        elapsed = (self.ended or time.monotonic()) - self.since
        return (self.completed - self.from_bytes) / elapsed if elapsed > 0.01 else None


#: How long a display waits before it draws anything: a transfer that is over by then printed its result
#: line and needed no bar (and rich, ~40 ms to import, is never loaded for it).
BAR_DELAY = 0.3
BAR_REFRESH = 1 / 8


class RichProgress:
    """A rich bar per transfer on stderr, plus a total bar when several files go.

    The transfers only count bytes (`_BarTask`); a painter thread started by `start()` waits
    `delay` seconds, then imports rich, opens the live display and copies the counts into it eight
    times a second; `stop()` draws the final state. A run shorter than the delay draws nothing, as
    short transfers print nothing in the other renderers either. Rich's own refresh and its drawing in
    every `add_task` are off: one thread draws, at a fixed rate, whatever the number of files.

    With a total, a finished file's row leaves the display (its result is on stdout, its error above
    the bar): rich lays out every row on every refresh, so keeping 200 finished rows made a 200-file
    run spend most of its time drawing. The display holds the total and the active files only; the
    total row says how many files finished and failed.
    """

    def __init__(
        self, delay: float = BAR_DELAY, refresh: float = BAR_REFRESH, console: Callable[[], Any] | None = None
    ) -> None:
        self.delay = delay
        self.refresh = refresh
        self.console = console  # makes the rich Console to draw on (default: stderr)
        self.lock = threading.Lock()
        self._painter: threading.Thread | None = None
        self._reset()

    def _reset(self, keep: list[_BarTask] | None = None) -> None:
        """A display with no rows (but `keep`'s): a new one, or one started again (`resume --all`: one
        upload after another, each with its own bar)."""
        self.active: list[_BarTask] = keep or []  # not yet finished, or finished but still to be drawn
        self.files = 0  # a total is shown when add_total() set this
        self.total: int | None = None
        self.started = time.monotonic()
        self.done = 0
        self.failed = 0
        self.gone_completed = 0  # bytes of files whose rows left the display
        self.gone_carried = 0
        self.total_row: Any = None
        self.shown_carried = 0
        self._bar: Any = None
        self._stopping = threading.Event()
        self._live = False

    # -- what the transfers call -----------------------------------------------------------------

    def task(self, label: str, total: int | None, completed: int = 0) -> Task:
        task = _BarTask(self, printable(label), total, completed)
        with self.lock:
            self.active.append(task)
        return task

    def add_total(self, files: int, total: int | None) -> None:
        with self.lock:
            self.files = files
            self.total = total
            self.started = time.monotonic()

    def finished(self, task: _BarTask) -> None:
        if not self.files:
            return  # one file: its row stays, marked by the next sync
        with self.lock:
            if task.ok:
                self.done += 1
            else:
                self.failed += 1
                if task.total is not None and self.total is not None:
                    # A failed file's unsent bytes will never come: the total still ends at 100%.
                    self.total -= max(0, task.total - task.completed)
            if task.row is None:  # never drawn: it only counts
                self.active.remove(task)
                self.gone_completed += task.completed
                self.gone_carried += task.carried

    def start(self) -> None:
        if self._painter is not None:
            if self._painter.is_alive():
                return  # started already
            # Stopped: the last display's final state is on the screen and a new one begins, with the
            # transfers made since (a download makes its task before it starts the display).
            keep = [task for task in self.active if not task.finished]
            for task in keep:
                task.row = None
            self._reset(keep)
        self._painter = threading.Thread(target=self._paint, name="tmpup-progress", daemon=True)
        self._painter.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._painter is not None:
            self._painter.join()
        if self._live:
            self._live = False
            try:
                with stderr_guard():
                    self.sync()
                    self.bar.stop()  # draws the final state
            except Exception as exc:  # pragma: no cover - see _paint
                self.error = exc

    #: What broke the display, if anything did: it stops drawing, the transfers go on.
    error: Exception | None = None

    # -- the painter -----------------------------------------------------------------------------

    def _paint(self) -> None:
        try:
            self._draw()
        except Exception as exc:  # a display that fails must not end (or clutter) an upload
            self.error = exc

    def _draw(self) -> None:
        if self._stopping.wait(self.delay):
            return
        # Loading rich creates ~40,000 long-lived objects: with the collector off meanwhile and the
        # objects frozen afterwards (as at start-up, see __main__), no collection walks them during the
        # transfer.
        gc.disable()
        try:
            with stderr_guard():
                self.sync()
                self.bar.start()
        finally:
            gc.freeze()
            gc.enable()
        self._live = True
        while not self._stopping.wait(self.refresh):
            with stderr_guard():
                self.sync()
                self.bar.live.refresh()

    @property
    def bar(self) -> Any:
        """The rich Progress (made on first use, not started): its tasks are the rows shown."""
        if self._bar is None:
            self._bar = _make_bar(self.console() if self.console is not None else None)
        return self._bar

    def sync(self) -> None:
        """Copy the counts into the rich rows: add new rows, drop finished files' rows (with a total).

        Under the lock that `task()` and `finished()` take (once per file; the byte counts take none),
        so a file that finishes while it is being drawn is counted once."""
        bar = self.bar
        with self.lock:
            if self.files and self.total_row is None:
                self.total_row = bar.add_task("", total=self.total)  # the top row; filled in below
            for task in list(self.active):
                if task.row is None:
                    task.row = bar.add_task(task.label, total=task.total, completed=task.completed)
                    task.shown_resets = task.resets
                elif task.resets != task.shown_resets:
                    task.shown_resets = task.resets
                    # drops the speed samples: the jump to the server's offset is not throughput
                    bar.reset(task.row, total=task.total, completed=task.completed)
                else:
                    bar.update(task.row, total=task.total, completed=task.completed)
                bar.update(task.row, average=task.average)
                if not task.finished:
                    continue
                self.active.remove(task)
                if self.files:
                    self.gone_completed += task.completed
                    self.gone_carried += task.carried
                    bar.remove_task(task.row)
                else:
                    if not task.ok:
                        bar.update(task.row, description=f"✗ {task.label}")
                    bar.stop_task(task.row)
            if self.files:
                self._sync_total(bar)

    def _sync_total(self, bar: Any) -> None:
        completed = self.gone_completed + sum(t.completed for t in self.active)
        carried = self.gone_carried + sum(t.carried for t in self.active)
        label = f"total {self.done + self.failed}/{self.files} files"
        if self.failed:
            label += f", {self.failed} failed"
        with bar._lock:  # bytes there before this run move the total without a speed sample
            bar._tasks[self.total_row].completed += carried - self.shown_carried
        self.shown_carried = carried
        elapsed = time.monotonic() - self.started
        average = (completed - carried) / elapsed if elapsed > 0.01 else None
        bar.update(self.total_row, total=self.total, completed=completed, description=label, average=average)


def _make_bar(console: Any = None) -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as Bar

    bar = Bar(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        TaskProgressColumn(),
        DownloadColumn(binary_units=True),
        _speed_column(),
        TimeRemainingColumn(),
        # Off a terminal, no escape sequence whatever FORCE_COLOR or TTY_COMPATIBLE say: the contract is
        # "no ANSI escape ever reaches a pipe or a log file" (the bar then prints its final state once).
        console=console if console is not None else Console(stderr=True, force_terminal=_terminal(sys.stderr)),
        auto_refresh=False,  # the painter refreshes
        transient=False,
        # Results must reach stdout itself when it is a pipe (`id=$(tmpup upload f)`); when both are
        # the same terminal, rich prints them above the bar instead of through it.
        redirect_stdout=sys.stdout.isatty(),
    )
    # rich lays out and draws the whole table in every add_task and reset: the painter draws once per
    # refresh instead (stop() draws the final state).
    bar.refresh = lambda: None  # type: ignore[method-assign]
    return bar


def _terminal(stream: Any) -> bool | None:
    """rich's `force_terminal`: False off a terminal, else None (rich's own checks, e.g. TERM=dumb)."""
    try:
        return None if stream.isatty() else False
    except (AttributeError, ValueError):
        return False
