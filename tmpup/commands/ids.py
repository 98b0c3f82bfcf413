"""Ids as users type them (`tmpup download|info|delete ID`): checked before they go into a URL or a
receipt lookup."""

from __future__ import annotations

import unicodedata

from tmpup.errors import UsageError


def check_id(id: str) -> None:
    """Refuse an id that cannot be sent to any API, before anything is looked at: empty, not text (bytes
    of the command line that are not UTF-8 arrive as lone surrogates), or holding control characters."""
    if not id.strip():
        raise UsageError("the id is empty")
    bad = [ch for ch in id if unicodedata.category(ch) in ("Cc", "Cs")]
    if not bad:
        return
    shown = "".join(_escaped(ch) for ch in id)
    if any(unicodedata.category(ch) == "Cs" for ch in bad):
        why = "it holds bytes that are not UTF-8 text"
    else:
        why = "it holds control characters"
    raise UsageError(f"the id {shown} is not valid: {why}", hint="pass the id exactly as the upload printed it")


def _escaped(ch: str) -> str:
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte of the command line (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if unicodedata.category(ch) in ("Cc", "Cs"):
        return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"
    return ch
