"""The retry policy: `Retrier.send` repeats an attempt on network errors, 408/425/429/500/502/503/504,
with exponential backoff and full jitter, honouring `Retry-After` (seconds or an HTTP date).

The attempt is a callable that builds its request anew, so a retried upload re-reads its body from
the right place (bodies are `sources.FileSlice`s, which seek on every iteration) and never resends a
spent generator. Every wait goes through `sources.pause`, which Ctrl-C/SIGTERM ends at once.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random
import time
from collections.abc import Callable

import requests

from tmpup.errors import transport_reason
from tmpup.sources import pause

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def retry_after_seconds(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP date. None when absent or unparsable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, when.timestamp() - now())


class Retrier:
    """Repeat an HTTP attempt on transient failures, with backoff and jitter."""

    #: A `Retry-After` longer than this (seconds) is not waited out: the answer is given back as it is.
    max_retry_after: float = 300.0

    def __init__(
        self,
        retries: int = 5,
        *,
        base: float = 0.5,
        cap: float = 30.0,
        sleep: Callable[[float], None] | None = None,
        rng: Callable[[], float] = random.random,
        notify: Callable[[str], None] = lambda message: None,
    ) -> None:
        self.retries = max(0, retries)
        self.base = base
        self.cap = cap
        self.sleep = sleep or pause
        self.rng = rng
        self.notify = notify

    def delay(self, attempt: int, response: requests.Response | None = None) -> float:
        """Seconds to wait before retry number `attempt` (1-based)."""
        if response is not None:
            after = retry_after_seconds(response.headers.get("Retry-After"))
            if after is not None:
                return min(after, self.max_retry_after)
        # Full jitter keeps many clients (a -j run, several cron jobs) from retrying in lockstep.
        return float(self.rng() * min(self.cap, self.base * (2 ** (attempt - 1))))

    def send(
        self,
        attempt: Callable[[], requests.Response],
        *,
        what: str,
        retry_statuses: frozenset[int] = RETRY_STATUSES,
    ) -> requests.Response:
        """Run `attempt` until it gives a non-retryable answer or the retries are spent.

        Returns the last response (the caller maps a final 429/5xx to an error); re-raises the last
        network exception when every attempt failed that way.
        """
        for number in range(self.retries + 1):
            last_try = number == self.retries
            try:
                response = attempt()
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                if last_try or isinstance(exc, requests.exceptions.SSLError):
                    raise
                wait = self.delay(number + 1)
                reason = transport_reason(exc)
                self.notify(f"{what}: {reason}; retrying in {wait:.1f}s ({number + 1}/{self.retries})")
            else:
                if response.status_code not in retry_statuses or last_try:
                    return response
                wait = self.delay(number + 1, response)
                after = retry_after_seconds(response.headers.get("Retry-After"))
                if after is not None and after > self.max_retry_after:
                    return response
                self.notify(
                    f"{what}: server answered {response.status_code}; retrying in {wait:.1f}s "
                    f"({number + 1}/{self.retries})"
                )
                response.close()
            self.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover
