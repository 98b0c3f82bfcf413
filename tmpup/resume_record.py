"""A resume record: what identifies an interrupted upload's file and its remote upload (never a
credential), its key, and how a record that cannot be trusted (torn, hand-edited, a field of the wrong
type) is told apart as damaged rather than crashing whoever reads it. `tmpup.state` stores them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tmpup.providers.base import Provider
    from tmpup.sources import Source


@dataclass
class ResumeRecord:
    """An upload that did not finish: where it lives remotely and which local file feeds it."""

    key: str
    provider: str
    profile: str
    upload_url: str
    file: dict[str, Any]  # FileIdentity.as_dict()
    name: str
    size: int
    created_at: str
    expires_at: str | None = None
    offset: int = 0
    extra: dict[str, Any] | None = None
    # True only when the upload had stopped and the server confirmed `offset` afterwards; otherwise
    # `offset` is the last one the server confirmed while bytes were still flowing (it may hold more).
    offset_exact: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResumeRecord:
        """The record `data` holds; `DamagedRecord` (a ValueError) when it is not one.

        Absent optional keys take their defaults. Every field is checked for the type the code
        using it relies on, dates included: a hand edit, disk damage or a future format must make
        the record "damaged" (listed, cleaned, replaced by a new upload), never a crash later.
        """
        if not isinstance(data, Mapping):
            raise DamagedRecord("not a JSON object")
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise DamagedRecord(f"no {', '.join(missing)}")
        fields: dict[str, Any] = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        record = cls(**fields)
        record.check()
        return record

    def check(self) -> None:
        """Raise `DamagedRecord` for a field of the wrong type or an unparsable date."""
        for name in ("key", "provider", "profile", "upload_url", "name", "created_at"):
            if not isinstance(getattr(self, name), str):
                raise DamagedRecord(f"{name} is not text")
        if not _is_count(self.size) or not _is_count(self.offset) or self.offset > self.size:
            raise DamagedRecord("size or offset is not a byte count")
        if not isinstance(self.offset_exact, bool):
            raise DamagedRecord("offset_exact is not true or false")
        if self.extra is not None:
            if not isinstance(self.extra, dict):
                raise DamagedRecord("extra is not an object")
            for name in ("ttl", "chunk_size"):  # seconds and bytes, as the Transfer wrote them
                if self.extra.get(name) is not None and not _is_count(self.extra[name]):
                    raise DamagedRecord(f"extra.{name} is not a whole number")
            if not isinstance(self.extra.get("checksum", False), bool):
                raise DamagedRecord("extra.checksum is not true or false")
        file = self.file
        if (
            not isinstance(file, dict)
            or not isinstance(file.get("path"), str)
            or not _is_count(file.get("size"))
            or not isinstance(file.get("mtime_ns"), int)
            or isinstance(file.get("mtime_ns"), bool)
        ):
            raise DamagedRecord("file is not a file's identity")
        _aware_date(self.created_at, "created_at")
        if self.expires_at is not None:
            if not isinstance(self.expires_at, str):
                raise DamagedRecord("expires_at is not text")
            _aware_date(self.expires_at, "expires_at")

    def expired(self, now: dt.datetime) -> bool:
        if not self.expires_at:
            return False
        return dt.datetime.fromisoformat(self.expires_at) <= now


class DamagedRecord(ValueError):
    """A resume record file that is not a record tmpup wrote (torn, hand-edited, wrong-typed)."""


_REQUIRED = ("key", "provider", "profile", "upload_url", "file", "name", "size", "created_at")


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _aware_date(value: str, name: str) -> dt.datetime:
    """`value` as the aware datetime a record holds (`isoformat()` of one); else `DamagedRecord`."""
    try:
        when = dt.datetime.fromisoformat(value)
        when.astimezone(dt.timezone.utc)  # in range in UTC too (year 1 at +01:00 is not)
    except (ValueError, OverflowError):
        raise DamagedRecord(f"{name} is not a date") from None
    if when.tzinfo is None:  # comparing it with the clock's aware time would raise TypeError
        raise DamagedRecord(f"{name} has no time zone")
    return when


@functools.lru_cache(maxsize=1024)  # several lookups per file of a many-file run
def record_key(profile: str, provider: str, path: str) -> str:
    """One record per (profile, provider, absolute path): a new upload of the same file replaces it."""
    # fsencode: a path may hold bytes that are not UTF-8 (they arrive as surrogate escapes).
    return hashlib.sha256(f"{profile}\0{provider}\0".encode() + os.fsencode(path)).hexdigest()[:32]


def parse_record(key: str, text: str) -> ResumeRecord:
    """The record in the text of `uploads/KEY.json`; `DamagedRecord` when it holds none."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise DamagedRecord("not JSON") from None
    record = ResumeRecord.from_dict(data)
    # Its lock, its removal and `resume KEY` go by the file's name, and `tmpup upload` finds it by
    # the hash of its profile, provider and path: a record that disagrees is found by neither.
    if record.key != key or _key_of(record.profile, record.provider, record.file["path"]) != key:
        raise DamagedRecord("its key is not its file's name, or not its profile's, provider's and path's")
    return record


def _key_of(profile: str, provider: str, path: str) -> str | None:
    try:
        return record_key(profile, provider, path)
    except UnicodeError:  # a surrogate that is no byte of a path: no file has that name
        return None


@dataclass(frozen=True)
class DamagedEntry:
    """A damaged record file, and what can still be told of it (each field None where unknown).

    `profile` and `provider` are what the file says, where it says them as text. `path` is set only
    once the record's own file is known: when profile, provider and path hash to its key
    (`record_key`), as read from the file or as given (`for_path`, a path named on the command line).
    Then that file, on that profile, can be uploaded again (a new upload replaces the record).
    """

    key: str
    profile: str | None = None
    provider: str | None = None
    path: str | None = None
    name: str | None = None
    upload_url: str | None = None

    @classmethod
    def of(cls, key: str, text: str) -> DamagedEntry:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            return cls(key)
        if not isinstance(data, dict):
            return cls(key)
        file = data.get("file")
        entry = cls(
            key,
            **{
                name: value if isinstance(value, str) else None
                for name, value in (
                    ("profile", data.get("profile")),
                    ("provider", data.get("provider")),
                    ("name", data.get("name")),
                    ("upload_url", data.get("upload_url")),
                )
            },
        )
        path = file.get("path") if isinstance(file, dict) else None
        return (entry.for_path(path) if isinstance(path, str) else None) or entry

    def for_path(self, path: str) -> DamagedEntry | None:
        """This entry as the record of `path`, or None when it is not that file's."""
        if self.profile is None or self.provider is None or _key_of(self.profile, self.provider, path) != self.key:
            return None
        return dataclasses.replace(self, path=path)


def key_for(profile: str, provider: str, source: Source) -> str | None:
    """The key of `source`'s resume record on this profile; None for stdin (spooled to a file that is
    gone after the run: nothing to resume from)."""
    return None if source.temporary else record_key(profile, provider, source.absolute)


def has_resume_record(provider: Provider, source: Source) -> bool:
    """Whether an interrupted upload of this file may be waiting (providers that choose between a
    raw and a tus upload take tus then, so `tmpup upload` resumes by itself)."""
    key = key_for(provider.env.profile, provider.id, source)
    return key is not None and provider.env.state.record_path(key).exists()
