"""Results on stdout: one human line per file (the handle a user pastes next), or JSON Lines.

Nothing but results goes to stdout, so `id=$(tmpup upload f.png)` and `tmpup upload --json ... | jq`
work. Messages for people go to stderr through `Messages`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import sys
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TextIO

from tmpup.providers.base import UploadResult

#: The fields DESIGN.md section 2 promises in every `--json` upload result, in this order.
RESULT_FIELDS = (
    "profile",
    "provider",
    "file",
    "name",
    "size",
    "id",
    "token",
    "url",
    "expires_at",
    "sha256",
    "resumed",
)


def _inline(value: Any) -> str:
    """One value on one line: a table as `k=v, ...`, a list comma-separated, true/false lowercase."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_inline(v)}" for k, v in value.items() if v is not None)
    if isinstance(value, (list, tuple)):
        return ", ".join(_inline(v) for v in value)
    return str(value)


def iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def result_record(
    *, profile: str, provider: str, file: str, result: UploadResult, sha256: str | None, uploaded_at: dt.datetime
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "profile": profile,
        "provider": provider,
        "file": file,
        "name": result.name,
        "size": result.size,
        "id": result.id,
        "token": result.token,
        "url": result.url,
        "expires_at": iso(result.expires_at),
        "sha256": sha256,
        "resumed": result.resumed,
    }
    for key, value in result.extra.items():
        record.setdefault(key, value)
    record["uploaded_at"] = iso(uploaded_at)
    return record


class Output:
    """Writes results to stdout, human or JSON Lines."""

    def __init__(self, *, json_mode: bool, stream: Callable[[], TextIO] = lambda: sys.stdout) -> None:
        self.json_mode = json_mode
        self.stream = stream

    def result(self, record: dict[str, Any], handle: str) -> None:
        if self.json_mode:
            self.json(record)
        else:
            value = record.get(handle) or record.get("id") or record.get("token") or record.get("url")
            self.line(str(value))

    def json(self, record: Any) -> None:
        text = json.dumps(record, ensure_ascii=False, default=str)
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                # A path with bytes that are not UTF-8 (surrogate escapes): \u escapes keep the line valid.
                text = json.dumps(record, default=str)
        # JSON escapes C0 controls itself; C1 controls (0x9b is a one-byte CSI), DEL, line separators and
        # bidirectional overrides would reach the pipe raw. They can only occur inside strings, where
        # their \u escapes decode to the very same value.
        self._emit(_JSON_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", text))

    def fields(self, fields: Mapping[str, Any]) -> None:
        """Aligned `key  value` lines for people; a list of records gets a short line per record.

        Keys and values come from servers and receipts (a tus server stores whatever metadata a client
        sent): each is shown by `one_line`, so no escape sequence reaches the terminal or pipe and no
        value starts a line of its own."""
        shown = {one_line(str(k)): v for k, v in fields.items() if v is not None}
        width = max((len(k) for k in shown), default=0)
        for key, value in shown.items():
            if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
                self.line(f"{key.ljust(width)}  {len(value)}")
                for item in value:
                    self.line(f"{''.ljust(width)}  - {one_line(_inline(item))}")
            else:
                self.line(f"{key.ljust(width)}  {one_line(_inline(value))}")

    def line(self, text: str) -> None:
        if not text.isascii():
            # A path with bytes that are not UTF-8 shows them as \xNN instead of failing to print.
            text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        self._emit(text)

    def _emit(self, text: str) -> None:
        # `tmpup upload a b c | head -1`: the reader may leave. The other files still upload, and
        # every result stays in the receipts (`tmpup info`), so a closed stdout ends nothing.
        out: TextIO | None = self.stream()
        if out is None:  # started with stdout closed (`tmpup ... >&-`)
            raise _unwritable(text, "stdout is closed")
        try:
            with _guard(out):
                out.write(text + "\n")
                out.flush()
        except OSError as exc:  # a full disk behind `> file`, /dev/full, an I/O error
            raise _unwritable(text, (exc.strerror or str(exc)).lower()) from None


class Messages:
    """Warnings and notes for people, on stderr, prefixed and free of markup and escapes."""

    def __init__(
        self, *, quiet: bool = False, verbose: bool = False, stream: Callable[[], TextIO] = lambda: sys.stderr
    ):
        self.quiet = quiet
        self.verbose = verbose
        self.stream = stream

    def _write(self, text: str) -> None:
        with stderr_guard():
            out = self.stream()
            out.write(text + "\n")
            out.flush()

    def warn(self, text: str) -> None:
        # -q: "nothing but results and errors", for cron jobs whose every stderr line mails someone
        if not self.quiet:
            self._write(f"tmpup: warning: {printable(text)}")

    def note(self, text: str) -> None:
        if not self.quiet:
            self._write(f"tmpup: {printable(text)}")

    def debug(self, text: str) -> None:
        if self.verbose:
            self._write(f"tmpup: {printable(text)}")

    def error(self, text: str) -> None:
        self._write(f"tmpup: error: {printable(text)}")


@contextlib.contextmanager
def stderr_guard() -> Iterator[None]:
    """Writes to stderr that may find nobody reading (`tmpup ... 2>&1 | head -3`).

    A log reader going away must not end (or corrupt) a transfer: the rest of stderr goes to
    /dev/null and the upload carries on; its result still reaches stdout.
    """
    with _guard(sys.stderr):
        yield


def _unwritable(text: str, why: str) -> Exception:
    """stdout cannot take a result: the error line carries it instead, so that a finished upload's
    handle is not lost (its receipt keeps it too)."""
    from tmpup.errors import TransientError

    return TransientError(
        f"cannot write to stdout ({why}); the result was: {printable(text)[:2000]}",
        hint="give stdout somewhere to go (a disk with room, a pipe); an upload's result is in its receipt too",
    )


@contextlib.contextmanager
def _guard(stream: TextIO) -> Iterator[None]:
    """A reader that went away (EPIPE): the rest of `stream` goes to /dev/null, the run carries on."""
    try:
        yield
    except BrokenPipeError:
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
            os.close(devnull)


#: Characters `json.dumps(ensure_ascii=False)` leaves raw that a terminal may act on or that reorder text.
_JSON_RAW = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def one_line(text: str) -> str:
    """Server or receipt text as part of one stdout line: every control character (C0 with CR and LF,
    DEL, C1), line and paragraph separator and bidirectional override or isolate becomes `?`, as
    `printable` shows them on stderr; a byte that is not UTF-8 (a path's surrogate escape) shows as
    `\\xNN`, as `Output.line` shows it. Other invisible format characters stay: a zero-width joiner is
    part of an emoji, a zero-width non-joiner part of a Persian word."""
    if text.isprintable():
        return text
    return "".join(_one_char(ch) for ch in text)


def _one_char(ch: str) -> str:
    if "\udc80" <= ch <= "\udcff":
        return f"\\x{ord(ch) - 0xDC00:02x}"
    if unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") or "\u202a" <= ch <= "\u202e" or "\u2066" <= ch <= "\u2069":
        return "?"
    return ch


def printable(text: str) -> str:
    """One line, no control characters (server text and file names can hold anything, escapes included)."""
    text = " ".join(text.splitlines())
    return "".join(ch if ch.isprintable() else "?" for ch in text)
