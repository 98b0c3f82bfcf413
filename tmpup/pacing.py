"""Client-side rate limits: pacing many-file runs under an API's published request limits.

Providers declare `RateRule`s (Qlik's request tiers, Pyrus's 5000 per 10 minutes); the session of
a run holds one `RateLimiter` and asks it before every request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from tmpup.sources import check_cancel, pause


@dataclass(frozen=True)
class RateRule:
    """At most `count` requests per `period` seconds for requests matching `method` and `path` (a substring)."""

    count: int
    period: float
    method: str | None = None
    path: str = ""

    def matches(self, method: str, url: str) -> bool:
        return (self.method is None or self.method == method) and self.path in urlsplit(url).path


class RateLimiter:
    """Client-side pacing so that many-file runs stay under an API's published limits instead of earning 429s.

    A sliding window per rule, shared by every thread of the process (a `-j 8` run is one client to the API).
    A wait can last a whole window (300 s for Qlik), so it ends at once on Ctrl-C/SIGTERM
    (`sources.CANCEL`) with `Interrupted`, in worker threads too, where no signal handler runs.
    """

    def __init__(
        self,
        rules: tuple[RateRule, ...],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        import collections
        import threading

        self.rules = rules
        self.clock = clock
        self.sleep = sleep or pause
        self._lock = threading.Lock()
        self._sent: dict[RateRule, collections.deque[float]] = {rule: collections.deque() for rule in rules}

    def acquire(self, method: str, url: str) -> float:
        """Wait until a request may go; return how long we waited."""
        rule = next((r for r in self.rules if r.matches(method, url)), None)
        if rule is None:
            return 0.0
        waited = 0.0
        while True:
            with self._lock:
                now = self.clock()
                sent = self._sent[rule]
                while sent and sent[0] <= now - rule.period:
                    sent.popleft()
                if len(sent) < rule.count:
                    sent.append(now)
                    return waited
                wait = sent[0] + rule.period - now
            check_cancel()
            self.sleep(wait)
            waited += wait
