"""What `tmpup upload` does with a file's resume record besides the tus transfer itself: honour the
`--checksum` an interrupted upload was started with, and remove the record an upload with
`--no-resume` has just replaced (a later `tmpup upload FILE` or `resume --all` would otherwise finish
a duplicate)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from tmpup.errors import LockedError, TmpupError
from tmpup.providers.base import Deletable
from tmpup.resume_record import key_for

if TYPE_CHECKING:
    from tmpup.commands.upload import UploadRequest
    from tmpup.runtime import Runtime
    from tmpup.sources import Source


def _record_key(rt: Runtime, source: Source) -> str | None:
    """The key of this file's resume record on this profile (`tus_transfer.Transfer`'s), None for stdin
    and for providers that keep none."""
    if not rt.provider.resumable:
        return None
    return key_for(rt.settings.profile, rt.settings.provider, source)


def record_asks_checksum(rt: Runtime, request: UploadRequest, source: Source) -> bool:
    """Whether the interrupted upload this run will continue was started with `--checksum`: the
    continuation (`tmpup resume`, or a plain `tmpup upload FILE`) then reports the sha256 as asked."""
    key = _record_key(rt, source) if request.resumable is not False else None
    record = rt.state.load_record(key) if key is not None else None
    if record is None or (record.extra or {}).get("checksum") is not True:
        return False
    try:
        return record.file == source.identity().as_dict()  # a changed file starts a new upload instead
    except OSError:
        return False  # its read fails in the upload itself, with its own error


def drop_replaced_record(rt: Runtime, source: Source) -> None:
    """After a `--no-resume` upload: this file's resume record would offer to continue the upload this
    one replaced (a later `tmpup upload FILE` or `resume --all` would finish a duplicate). Remove it,
    and end that upload on the server where the provider can (best effort: it expires anyway)."""
    key = _record_key(rt, source)
    if key is None or not rt.state.record_path(key).exists():
        return
    try:
        with rt.state.lock(key, source.display):
            record = rt.state.load_record(key)
            rt.state.delete_record(key)
    except LockedError:
        return  # another process is feeding that upload: it is that one's to finish
    except TmpupError as exc:
        rt.messages.warn(f"{source.display}: uploaded, but its old resume record was not removed: {exc}")
        return
    rt.messages.note(f"{source.display}: removed the resume record of the upload this one replaces")
    provider = rt.provider
    if record is not None and isinstance(provider, Deletable) and not record.expired(rt.clock()):
        with contextlib.suppress(TmpupError):
            provider.delete(record.upload_url)
