"""Upload names (a file's own, or `--name`): checked before any request, so that no API stores a
name other than the one shown and no later download could recreate it unsafely."""

from __future__ import annotations

import unicodedata

from tmpup.errors import InputError
from tmpup.headers import DISGUISING, LINE_BREAKS, MAX_NAME_BYTES

#: Bytes of UTF-8: what a download writes back under this name may take as many (`headers.safe_filename`).
MAX_NAME_LENGTH = MAX_NAME_BYTES


def check_name(name: str, *, from_disk: bool = False) -> str:
    """Refuse names no API stores faithfully and no download could recreate safely.

    A file's own name (`from_disk`) may hold a backslash: on POSIX that is an ordinary character.
    """
    if not name or not name.strip():
        raise InputError("the upload name is empty", hint="pass --name NAME")
    # CR, LF, NUL break headers and lines; other control characters (ESC, TAB, the C1 range with its
    # one-byte CSI, ...) are no part of a name an API stores faithfully, and would reach terminals and
    # logs as escape sequences.
    bad = next((ch for ch in name if unicodedata.category(ch) == "Cc"), None)
    if bad is not None:
        raise InputError(
            f"the upload name {name!r} contains a control character ({bad!r})",
            hint="pass --name NAME" if from_disk else "choose a name without control characters (tabs, line breaks)",
        )
    # What a download's safe name (`headers.safe_filename`) would drop: the name would not come back.
    spoof = next((ch for ch in name if ch in DISGUISING or ch in LINE_BREAKS), None)
    if spoof is not None:
        if ch_is_bidi(spoof):
            # Bidirectional overrides, isolates and marks make a name display as another
            # ("invoice\u202efdp.exe" shows as "invoiceexe.pdf"): the trick behind disguised attachments.
            what = "a bidirectional control character"
        elif spoof in LINE_BREAKS:
            what = "a line separator"
        else:
            what = "an invisible character"  # a soft hyphen ("\u00ad.bashrc" shows as a dotfile), a BOM
        raise InputError(
            f"the upload name {name!r} contains {what} (U+{ord(spoof):04X})",
            hint="pass --name NAME" if from_disk else "pass --name NAME without it",
        )
    if any("\udc80" <= ch <= "\udcff" for ch in name):
        # Bytes that are not UTF-8 (a file name from another system): no API can store them as sent.
        raise InputError(f"the upload name {name!r} is not valid UTF-8", hint="pass --name NAME")
    if "/" in name or (not from_disk and "\\" in name):
        raise InputError(f"the upload name {name!r} contains a path separator", hint="pass a plain file name")
    if name.strip() in (".", ".."):
        raise InputError(f"the upload name {name!r} is not a file name", hint="pass --name NAME")
    if len(name.encode("utf-8")) > MAX_NAME_LENGTH:
        raise InputError(f"the upload name is longer than {MAX_NAME_LENGTH} bytes", hint="pass a shorter --name")
    return name


def ch_is_bidi(ch: str) -> bool:
    """A bidirectional mark, embedding, override or isolate."""
    return ch in "\u061c\u200e\u200f" or "\u202a" <= ch <= "\u202e" or "\u2066" <= ch <= "\u2069"
