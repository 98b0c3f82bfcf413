"""Hashes computed from the upload's own reads, on a thread of their own (the file is read once).

`ResettableHash` is a provider's check of what it sent (Pyrus's MD5), started over by a retried
attempt; `ContiguousHash` is `--checksum`'s sha256 of the whole file, fed with each block's offset so
a resumed upload hashes only what it did not send. Both run their updates on a `HashLane`.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tmpup.sources import BLOCK

if TYPE_CHECKING:
    from tmpup.sources import Source


class HashLane:
    """Runs hash updates, in order, on a thread of its own, beside the transfer that feeds them.

    hashlib releases the GIL for large buffers, so with a second core the hash costs (almost) no
    wall time: MD5 runs at ~0.7 GiB/s on one core, slower than a loopback upload, and inline it
    would add its whole time to the transfer's. The queue holds a few blocks (`DEPTH` MiB): when
    the hash is the slower, the transfer waits for it instead of memory growing.
    """

    DEPTH = 4
    IDLE = 1.0  # seconds without work after which the thread ends (an abandoned upload leaks none)

    def __init__(self) -> None:
        import queue

        self._queue: queue.Queue[tuple[Callable[..., None], tuple[Any, ...]] | None] = queue.Queue(self.DEPTH)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        # Under the lock, so the worker cannot decide it is idle between the check and the put. A
        # full queue blocks here with the lock held, which is safe: the worker takes items without it.
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="hash", daemon=True)
                self._thread.start()
            self._queue.put((fn, args))

    def drain(self) -> None:
        """Wait until every submitted update is done; re-raise what one of them raised."""
        with self._lock:
            thread = self._thread
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join()
        if self._error is not None:
            raise self._error

    def _work(self) -> None:
        import queue

        while True:
            try:
                item = self._queue.get(timeout=self.IDLE)
            except queue.Empty:
                with self._lock:  # no submit can slip in between this check and the exit
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            if item is None:
                with self._lock:
                    self._thread = None
                return
            fn, args = item
            if self._error is None:
                try:
                    fn(*args)
                except BaseException as exc:  # re-raised by drain(), in the caller's thread
                    self._error = exc


class ResettableHash:
    """A hashlib hash that a retried attempt can start over, computed on a `HashLane`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._h = hashlib.new(name)
        self._lane = HashLane()

    def reset(self) -> None:
        self._lane.submit(self._reset)

    def _reset(self) -> None:
        self._h = hashlib.new(self.name)

    def update(self, data: bytes, /) -> None:
        self._lane.submit(self._h_update, data)

    def _h_update(self, data: bytes) -> None:
        self._h.update(data)

    def hexdigest(self) -> str:
        self._lane.drain()
        return self._h.hexdigest()


class ContiguousHash:
    """A whole-file hash fed from the upload's own reads, so `--checksum` does not read the file twice.

    Blocks arrive with their offset; a block that does not continue the hashed prefix (a retry from
    an earlier offset restarts it when it comes from 0) is ignored, and `finish` reads only what the
    transfer never covered (e.g. the part sent before a resume).
    """

    def __init__(self, source: Source, name: str = "sha256") -> None:
        self.source = source
        self.name = name
        self._h = hashlib.new(name)
        self.position = 0
        self._lane = HashLane()

    def feed(self, offset: int, data: bytes) -> None:
        self._lane.submit(self._feed, offset, data)

    def _feed(self, offset: int, data: bytes) -> None:
        if offset == 0 and self.position:
            self._h = hashlib.new(self.name)
            self.position = 0
        if offset == self.position:
            self._h.update(data)
            self.position += len(data)

    def finish(self) -> str:
        self._lane.drain()
        if self.position < self.source.size:
            with self.source.path.open("rb") as fh:
                fh.seek(self.position)
                while block := fh.read(BLOCK):
                    self._h.update(block)
                    self.position += len(block)
        return self._h.hexdigest()
