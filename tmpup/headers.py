"""Parsers for the HTTP headers and URLs that carry untrusted values, and safe local file names.

Everything here takes what a server sent and must never raise on garbage: it returns None instead.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote, urlsplit

_RANGE_RE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_PARAM_RE = re.compile(
    r"""
    ;\s*(?P<key>[^\s=;]+)\s*=\s*
    (?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<token>[^;]*))
    """,
    re.VERBOSE,
)
MAX_NAME_BYTES = 255
#: Names of query parameters and headers whose values are credentials, or look like one.
SECRET_NAME = re.compile(r"(token|key|secret|pass|auth|sig|session|credential|cookie)", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    """Whether a header or parameter named `name` may carry a credential (masked wherever shown)."""
    return bool(SECRET_NAME.search(name))


def parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """`bytes 0-99/1000` -> (0, 99, 1000); `/*` gives a None total; anything malformed gives None."""
    if not value:
        return None
    match = _RANGE_RE.match(value)
    if not match:
        return None
    start, end = int(match.group(1)), int(match.group(2))
    total = None if match.group(3) == "*" else int(match.group(3))
    if end < start or (total is not None and end >= total):
        return None
    return start, end, total


def parse_content_disposition(value: str | None) -> str | None:
    """The file name of a Content-Disposition header, preferring RFC 6266/5987 `filename*`."""
    if not value:
        return None
    params: dict[str, str] = {}
    for match in _PARAM_RE.finditer(";" + value.split(";", 1)[1] if ";" in value else ""):
        key = match.group("key").lower()
        if match.group("quoted") is not None:
            raw = re.sub(r"\\(.)", r"\1", match.group("quoted"))
        else:
            raw = (match.group("token") or "").strip()
        params.setdefault(key, raw)
    extended = params.get("filename*")
    if extended:
        charset, _, rest = extended.partition("'")
        _lang, _, encoded = rest.partition("'")
        if encoded:
            try:
                return unquote(encoded, encoding=charset or "utf-8", errors="strict")
            except (LookupError, UnicodeDecodeError):
                pass
    name = params.get("filename")
    return name or None


#: Format characters that can disguise a name ("report\u202etxt.exe" shows as "reportexe.txt") or are
#: invisible noise (`commands.names.check_name` refuses them in upload names). Other format characters
#: stay: the zero-width (non-)joiners belong to the spelling of Persian and other scripts, and to emoji
#: sequences.
DISGUISING = frozenset(
    "\u00ad"  # soft hyphen: "\u00ad.bashrc" shows as a dotfile
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"  # bidi marks and controls
    "\ufeff"  # byte-order mark
)
#: Separators that end a line for many readers (`str.splitlines`, JavaScript): a name stays one line.
LINE_BREAKS = frozenset("\u2028\u2029\x85")


def _keep(ch: str) -> bool:
    category = unicodedata.category(ch)
    if ch in LINE_BREAKS:
        return False
    if category == "Cf":
        return ch not in DISGUISING
    return category[0] != "C"  # Cc controls, Cs surrogates, Co private use, Cn unassigned


def safe_filename(name: str | None, fallback: str = "download", *, limit: int = MAX_NAME_BYTES) -> str:
    """A server-supplied name reduced to a safe base name.

    No directories (either slash), no `..`, no control characters, no leading dot (no hidden or
    dot-dot files), no trailing dots or spaces, at most `limit` bytes of UTF-8 keeping the extension
    (a caller that appends a suffix, like `.part`, leaves room for it).
    """
    if not name:
        return fallback
    name = unicodedata.normalize("NFC", name)
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if _keep(ch))
    # Until stable: stripping spaces can expose a dot (". .0" -> ".0"), stripping dots a space.
    previous = None
    while name != previous:
        previous = name
        name = name.strip().lstrip(".").rstrip(". ")
    if not name or name in {".", ".."}:
        return fallback
    encoded = name.encode("utf-8")
    if len(encoded) > limit:
        stem, dot, ext = name.rpartition(".")
        if not dot or len(ext.encode()) > 32:
            stem, ext = name, ""
        budget = limit - (len(ext.encode()) + 1 if ext else 0)
        stem = stem.encode("utf-8")[:budget].decode("utf-8", "ignore")
        name = f"{stem}.{ext}" if ext else stem
    return name


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL, the default port filled in: what credentials are scoped to (a
    profile's secret goes only to its own origin). A garbled or out-of-range port is an origin of its
    own (port -1), matching nothing trusted."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = -1
    return scheme, (parts.hostname or "").lower(), port or {"http": 80, "https": 443}.get(scheme)
