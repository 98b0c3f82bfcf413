"""One configuration value: secrets (wrapped in `Secret`, read from files without echoing them) and the
checks and conversions of each key kind (url, int, size, duration, bool, table, path, string).
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tmpup.config_file import MAX_SECRET_BYTES, read_text
from tmpup.errors import ConfigError
from tmpup.providers.base import KeySpec
from tmpup.units import parse_duration, parse_size

_WHOLE = re.compile(r"\s*[+-]?[0-9]+\s*")  # ASCII digits: int() also takes "1_000" and other scripts'


class Secret:
    """A credential. Its text never shows in str/repr/format; `reveal()` is the one way out."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('****')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def check_text(value: str, where: str) -> str:
    """VALUE, refused (without echoing it) when it is not text: bytes of the environment that are not
    UTF-8 reach Python as lone surrogates (U+DC80-U+DCFF), which no request can carry."""
    if any("\ud800" <= ch <= "\udfff" for ch in value):
        raise ConfigError(
            f"{where} is not UTF-8 text",
            hint="set it again from a UTF-8 source (tmpup reads environment variables as UTF-8)",
        )
    return value


def secret_value(value: str, where: str) -> Secret:
    """A credential as given; refuse what no HTTP header could carry, without echoing it."""
    check_text(value, where)
    if not value:
        raise ConfigError(f"{where} is empty")
    bad = next((ch for ch in value if ord(ch) < 0x20 or ord(ch) == 0x7F), None)
    if bad is not None:
        what = "a line break" if bad in "\r\n" else "a control character"
        raise ConfigError(f"{where} contains {what}", hint="check how the secret was stored (a stray newline?)")
    return Secret(value)


def read_secret_file(raw: Any, where: str) -> Secret:
    if not isinstance(raw, str) or not raw:
        raise ConfigError(f"{where} must be a file path")
    path = Path(raw).expanduser()
    value = read_text(path, MAX_SECRET_BYTES, str(path), prefix=f"{where}: ").strip("\r\n")
    if not value:
        raise ConfigError(f"{where}: {path} is empty")
    return secret_value(value, f"{where} ({path})")


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def coerce(raw: Any, spec: KeySpec, where: str) -> Any:
    """Check and convert one value to the key's kind; errors name where it came from."""
    if isinstance(raw, Secret):
        return raw
    try:
        if spec.kind != "table" and not isinstance(raw, (str, int, float)):
            # A TOML array, table or date where a scalar belongs (`timeout = [1]`)
            raise ValueError(f"expected a single value, not a TOML {_toml_kind(raw)}")
        value = _convert(raw, spec)
        if spec.positive and not value > 0:
            raise ValueError("must be more than 0")
        if spec.maximum is not None and value > spec.maximum:
            raise ValueError(f"at most {spec.maximum:g}")
        if spec.whole and value != int(value):
            raise ValueError(f"must be whole seconds, not {value:g}")
        return value
    except ValueError as exc:
        raise ConfigError(f"{where}: bad value for {spec.name!r}: {exc}") from None


def _toml_kind(raw: Any) -> str:
    import datetime as dt

    if isinstance(raw, (list, tuple)):
        return "array"
    if isinstance(raw, Mapping):
        return "table"
    if isinstance(raw, (dt.date, dt.time)):
        return "date/time"
    return type(raw).__name__


def _convert(raw: Any, spec: KeySpec) -> Any:
    if spec.kind == "url":
        return _check_url(raw, spec)
    if spec.kind == "int":
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError("expected a whole number")
        if isinstance(raw, str) and not _WHOLE.fullmatch(raw):  # int() takes "1_000" and other scripts' digits
            raise ValueError(f"expected a whole number, not {raw[:40]!r}")
        try:
            number = int(raw)
        except ValueError:
            raise ValueError(f"expected a whole number, not {str(raw)[:40]!r}") from None
        if number < 0:
            raise ValueError("cannot be negative")
        return number
    if spec.kind == "size":
        if isinstance(raw, float):
            if not raw.is_integer():
                raise ValueError(f'a size in bytes must be whole, not {raw:g} (or write e.g. "1.5M")')
            raw = int(raw)
        return parse_size(raw)
    if spec.kind == "duration":
        return parse_duration(raw)
    if spec.kind == "bool":
        if isinstance(raw, bool):
            return raw
        if str(raw).strip().lower() in _TRUE:
            return True
        if str(raw).strip().lower() in _FALSE:
            return False
        raise ValueError("expected true or false")
    if spec.kind == "table":
        if isinstance(raw, str):  # from the environment (TMPUP_HEADERS): a JSON object
            try:
                raw = json.loads(raw)
            except ValueError:
                raise ValueError('expected a JSON object of strings, e.g. {"X-Foo": "bar"}') from None
        if not isinstance(raw, Mapping) or not all(isinstance(v, str) for v in raw.values()):
            raise ValueError('expected a table of strings, e.g. { X-Foo = "bar" } (TMPUP_HEADERS: JSON)')
        return dict(raw)
    if spec.kind == "path":
        path = Path(str(raw)).expanduser()
        if not path.is_file():
            raise ValueError(f"{str(path)!r} is not a readable file")
        return str(path)
    if not isinstance(raw, (str, int)) or isinstance(raw, bool):
        raise ValueError("expected a string")
    return str(raw)


def _check_url(raw: Any, spec: KeySpec) -> str:
    """An http(s) URL that `requests` can send to as tmpup will use it, refused here (exit 3, naming
    the key) rather than at the first request. A `?query` only where the key is a full endpoint
    (`spec.query`); a `#fragment` nowhere: no server ever sees it, and a path appended to it would
    vanish into it. The query is never echoed (it may hold a signature or a token)."""
    if not isinstance(raw, str):
        raise ValueError("expected a URL string")
    url = raw.strip()
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise ValueError("the URL contains a control character (a tab or line break?)")
    try:
        parsed = urlsplit(url)
    except ValueError as exc:  # a bad [IPv6] literal
        raise ValueError(f"not a valid URL ({exc})") from None
    if "@" in parsed.netloc or (not parsed.netloc and "@" in url):
        # Checked first, and the URL not echoed: what precedes the '@' is likely a password.
        raise ValueError("credentials do not belong in the URL; use the profile's secret keys")
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"{url.partition('?')[0]!r} is not an http(s) URL")
    _check_host(parsed.netloc, parsed.hostname)
    try:
        port = parsed.port
    except ValueError:
        port = 0
    if port == 0:  # `requests` silently drops a port 0 and connects to 80/443
        _, _, text = parsed.netloc.rpartition("]")
        raise ValueError(f"the port {text.partition(':')[2]!r} is not a number in 1-65535")
    if "#" in url:
        raise ValueError("a URL cannot carry a #fragment (it is never sent to the server); remove it")
    if "?" in url and not spec.query:
        raise ValueError("a ?query cannot be part of a base URL: tmpup appends the API path to it; remove the '?...'")
    return url


#: What an ASCII host name may hold (`_`: service names on internal networks).
_HOST_CHARS = frozenset(string.ascii_letters + string.digits + "._-")


def _check_host(netloc: str, hostname: str | None) -> None:
    if netloc.startswith("["):
        return  # an IPv6 literal: `urlsplit` has checked it
    host = netloc.partition(":")[0]
    if not host or not hostname:
        raise ValueError("the URL has no host")
    for label in host.rstrip(".").split("."):  # a trailing dot (an absolute name) is fine
        if not label:
            raise ValueError(f"the host {host!r} has an empty label (two dots, or a leading dot)")
        if label.isascii():
            bad = next((ch for ch in label if ch not in _HOST_CHARS), None)
            if bad is not None:
                raise ValueError(f"the host {host!r} contains {bad!r}, which a host name cannot hold")
    if not host.isascii():
        import idna  # what `requests` and urllib3 encode a non-ASCII host with (both depend on it)

        try:
            for label in host.rstrip(".").split("."):
                if not label.isascii():
                    idna.encode(label.lower(), strict=True, std3_rules=True)
            idna.encode(host, uts46=True)
        except (idna.IDNAError, UnicodeError, ValueError):
            raise ValueError(f"the host {host!r} is not a valid (internationalized) domain name") from None
