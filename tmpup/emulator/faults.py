"""Fault injection: make chosen requests fail the way real networks and servers fail.

A `Fault` names which requests it hits (provider mount, HTTP method, a regex searched in the
request path) and what happens to them, in this order:

* `delay`      sleep that many seconds before handling (a slow server);
* `expire`     expire the upload the request targets (its `id` route argument) right now;
* `status`     answer this status (e.g. 429, 500, 503, or 423 on tus) in the provider's error
               format, with `Retry-After` when `retry_after` is set, without handling the request;
* `drop_after` let the handler read at most N bytes of the request body (a tus upload stores
               what arrived, a raw upload is discarded), then abort the TCP connection without
               any response;
* `corrupt`    handle the request normally (the bytes are stored exactly) but make its answer
               misreport what is stored, so that a client which verifies sees a mismatch: every
               size or offset it reports is one byte more than stored (Thulium's and KF5's
               `size`, Enterprise Tester's `Size`, Qlik's `/details` `Size`, tus `Upload-Offset`
               on HEAD, PATCH and creation-with-upload), Pyrus's `md5_hash` is not the MD5 of
               the stored bytes, and a download (GET of the bytes) claims one byte more: a 206
               or 416 in its `Content-Range` total, a 200 in its `Content-Length`, after which
               the connection is closed (the body ends one byte short, as from a server whose
               metadata is wrong). A request whose answer reports nothing about stored bytes
               (tus creation, Qlik's single-request upload, which answers only a `Location`,
               Pyrus auth, ...) is unaffected but still uses up one of `times`.

`times` is how many matching requests the fault applies to (None: until cleared). Faults are
added from Python (`emu.faults.add(Fault(...))`) or over HTTP (`POST /_emulator/faults` with
the same fields as JSON); `GET /_emulator/faults` lists the active ones with `KINDS`, one line
on each kind. `expire` is refused for a provider whose uploads cannot expire (KF5, Enterprise
Tester: see `Mount.no_expiry`); the app installs that check with `FaultSet.check`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields

#: The `environ` key set on a request a `corrupt` fault hit; mounts read it through `Mount.corrupt`.
CORRUPT_KEY = "tmpup.emulator.corrupt"

#: The methods a fault can name: those the mounted APIs answer (a typo would match nothing, ever).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

#: What each kind of fault does, as `GET /_emulator/faults` lists it.
KINDS: dict[str, str] = {
    "delay": "sleep this many seconds (0-3600) before handling the request",
    "expire": "expire the upload the request addresses (its id in the path) now; refused for kf5 and "
    "enterprise-tester, whose uploads never expire",
    "status": "answer this status (400-599) in the provider's error format, with retry_after as Retry-After, "
    "without handling the request",
    "drop_after": "read at most this many body bytes (a tus upload keeps them), then reset the connection "
    "without an answer",
    "corrupt": "handle the request (bytes stored exactly) but misreport what was stored: sizes and tus "
    "Upload-Offset one byte more, Pyrus md5_hash wrong, a download's Content-Range total (206/416) or "
    "Content-Length (200, then the connection closes one byte short) one byte more",
}


@dataclass(frozen=True)
class Fault:
    """One injected failure; see the module docstring for the meaning of each field."""

    provider: str | None = None
    method: str | None = None
    path: str = ""
    times: int | None = 1
    drop_after: int | None = None
    status: int | None = None
    retry_after: int | None = None
    delay: float | None = None
    expire: bool = False
    corrupt: bool = False
    message: str = "fault injected by the tmpup emulator"
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (
            self.drop_after is None
            and self.status is None
            and self.delay is None
            and not self.expire
            and not self.corrupt
        ):
            raise ValueError("a fault needs at least one of drop_after, status, delay, expire, corrupt")
        if self.drop_after is not None and self.status is not None:
            raise ValueError("drop_after and status exclude each other")
        if self.corrupt and (self.status is not None or self.drop_after is not None):
            # Both leave the request without its real answer: there would be nothing to misreport.
            raise ValueError("corrupt excludes status and drop_after (the request gets no real answer to corrupt)")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be >= 1 (or null for 'until cleared')")
        if self.drop_after is not None and self.drop_after < 0:
            raise ValueError("drop_after must be >= 0")
        if self.status is not None and not 400 <= self.status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("retry_after must be >= 0")
        if self.delay is not None and not 0 <= self.delay <= 3600:
            raise ValueError("delay must be between 0 and 3600 seconds")
        try:
            pattern = re.compile(self.path)
        except re.error as exc:
            raise ValueError(f"path is not a valid regular expression: {exc}") from None
        object.__setattr__(self, "_pattern", pattern)
        if self.method is not None:
            object.__setattr__(self, "method", self.method.upper())
            if self.method not in METHODS:
                raise ValueError(f"method must be one of {', '.join(sorted(METHODS))} (or null for any)")

    def matches(self, provider: str, method: str, path: str) -> bool:
        """Whether this fault applies to a request (`path` is the full request path)."""
        return (
            (self.provider is None or self.provider == provider)
            and (self.method is None or self.method == method.upper())
            and self._pattern.search(path) is not None
        )

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data.pop("_pattern", None)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Fault:
        """Build a fault from JSON-like data, checking names and types (ValueError if wrong)."""
        known = {f.name: f for f in fields(cls) if f.init}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(unknown)}")
        kwargs: dict[str, object] = {}
        for name, value in data.items():
            kwargs[name] = _check_type(name, value)
        return cls(**kwargs)  # type: ignore[arg-type]


_TYPES: dict[str, tuple[type, ...]] = {
    "provider": (str,),
    "method": (str,),
    "path": (str,),
    "times": (int,),
    "drop_after": (int,),
    "status": (int,),
    "retry_after": (int,),
    "delay": (int, float),
    "expire": (bool,),
    "corrupt": (bool,),
    "message": (str,),
}
_NULLABLE = {"provider", "method", "times", "drop_after", "status", "retry_after", "delay"}


def _check_type(name: str, value: object) -> object:
    if value is None and name in _NULLABLE:
        return None
    allowed = _TYPES[name]
    # bool is an int subclass: refuse true/false where a number is expected
    if isinstance(value, bool) and bool not in allowed:
        raise ValueError(f"fault field {name!r} must be {' or '.join(t.__name__ for t in allowed)}")
    if not isinstance(value, allowed):
        raise ValueError(f"fault field {name!r} must be {' or '.join(t.__name__ for t in allowed)}")
    return value


@dataclass
class _Entry:
    fault: Fault
    remaining: int | None


class FaultSet:
    """The active faults, consulted once per request; thread-safe.

    `check`, when set, sees every fault before it is added and raises ValueError to refuse it
    (the app refuses `expire` for providers whose uploads cannot expire).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[_Entry] = []
        self.check: Callable[[Fault], None] | None = None

    def add(self, fault: Fault) -> Fault:
        """Activate a fault (ValueError if `check` refuses it); returns it."""
        if self.check is not None:
            self.check(fault)
        with self._lock:
            self._entries.append(_Entry(fault, fault.times))
        return fault

    def clear(self) -> int:
        """Remove every fault; return how many were active."""
        with self._lock:
            count = len(self._entries)
            self._entries.clear()
        return count

    def take(self, provider: str, method: str, path: str) -> Fault | None:
        """The first fault matching this request, using up one of its `times`."""
        with self._lock:
            for entry in self._entries:
                if not entry.fault.matches(provider, method, path):
                    continue
                if entry.remaining is not None:
                    entry.remaining -= 1
                    if entry.remaining <= 0:
                        self._entries.remove(entry)
                return entry.fault
        return None

    def active(self) -> list[tuple[Fault, int | None]]:
        """Snapshot of (fault, remaining uses) pairs."""
        with self._lock:
            return [(e.fault, e.remaining) for e in self._entries]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
