"""Parsing and formatting of the sizes (`64M`, `1GiB`) and durations (`90s`, `2h`, `3600`) users type."""

from __future__ import annotations

import re

#: Beyond these a value is a typo, not a wish: 1 EiB, and about 31 years.
MAX_SIZE = 1 << 60
MAX_DURATION = 1e9
#: The most retries tmpup takes (--retries, a profile's `retries`): with backoff capped at 30 s, 100 already
#: means waiting most of an hour; a bigger number is a typo.
MAX_RETRIES = 100

# re.ASCII: \d would take any script's digits ("٦٤M"), which float() reads as 64.
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?)(b?)\s*$", re.IGNORECASE | re.ASCII)
_SIZE_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|secs|m|min|mins|h|hr|hrs|d|day|days|w)?\s*$", re.I | re.A)
_DURATION_FACTORS = {
    None: 1.0,
    "ms": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "m": 60.0,
    "min": 60.0,
    "mins": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hrs": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
    "w": 604800.0,
}


def parse_size(text: str | int) -> int:
    """Bytes from `1048576`, `64M`, `64MB`, `64MiB`, `1.5G`.

    Units are binary (1 K = 1024 B): that is what people mean when they say a 64 M chunk, and what
    curl's `--limit-rate 5M` means too.
    """
    if isinstance(text, bool):
        raise ValueError(f"not a size: {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"a size cannot be negative: {text}")
        value: float = text
    else:
        match = _SIZE_RE.match(text)
        if not match:
            raise ValueError(f"not a size: {_short(text)!r} (use e.g. 1048576, 64M, 1GiB)")
        number, unit, _i, _b = match.groups()
        value = float(number) * (1024 ** _SIZE_POWERS[unit.lower()])
    if not value <= MAX_SIZE:  # also catches inf from a number of hundreds of digits
        raise ValueError(f"{_short(str(text))} is more than 1 EiB")
    return int(value)


def parse_duration(text: str | int | float) -> float:
    """Seconds from `90`, `90s`, `30m`, `2h`, `3d`, `1.5h`."""
    if isinstance(text, bool):
        raise ValueError(f"not a duration: {text!r}")
    if isinstance(text, (int, float)):
        if text < 0:
            raise ValueError(f"a duration cannot be negative: {text}")
        seconds = float(text)
    else:
        match = _DURATION_RE.match(text)
        if not match:
            raise ValueError(f"not a duration: {_short(text)!r} (use e.g. 90s, 30m, 2h, 3d or plain seconds)")
        number, unit = match.groups()
        seconds = float(number) * _DURATION_FACTORS[unit.lower() if unit else None]
    if not seconds <= MAX_DURATION:  # also catches inf and nan
        raise ValueError(f"{_short(str(text))} is longer than 30 years")
    return seconds


def _short(text: str) -> str:
    """A user's value for a message, cut if absurdly long (a pasted number of 400 digits)."""
    return text if len(text) <= 40 else text[:37] + "..."


def format_size(n: float) -> str:
    """Human size with binary units: `0 B`, `1.0 KiB`, `200.0 MiB`."""
    if n < 1024:
        return f"{int(n)} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024:
            return f"{value:.1f} {unit}"
    return f"{value / 1024:.1f} PiB"


def format_duration(seconds: float) -> str:
    """`45s`, `1h30m`, `2d`: compact, for messages."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts[:2])
