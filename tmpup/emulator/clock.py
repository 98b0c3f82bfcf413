"""The emulator's clock: wall time plus an offset that tests move forward.

Every TTL, expiry and timestamp in the emulator is computed from one `Clock`, so a test can
expire a 3-day upload instantly with `emu.clock.advance(259200)` (or `POST /_emulator/clock`)
instead of waiting.
"""

from __future__ import annotations

import threading
import time as _time
from datetime import datetime, timezone


class Clock:
    """Wall-clock time (UTC) that can be advanced but never goes backwards."""

    def __init__(self, start: float | None = None) -> None:
        """`start` pins the clock's current time (epoch seconds); by default it follows wall time."""
        self._lock = threading.Lock()
        self._offset = 0.0 if start is None else start - _time.time()

    def time(self) -> float:
        """Seconds since the epoch, like `time.time()`, plus any advance."""
        with self._lock:
            return _time.time() + self._offset

    def now(self) -> datetime:
        """The current time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.time(), tz=timezone.utc)

    def advance(self, seconds: float) -> float:
        """Move the clock forward by `seconds` (>= 0) and return the new time."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += seconds
        return self.time()
