"""`tmpup delete ID`: where the API can delete (KF5, tus termination).

Deleting an upload that was interrupted (tus) also removes its resume record: a later `tmpup upload
FILE` or `resume --all` would otherwise start it again, an upload the user deliberately removed.
"""

from __future__ import annotations

from tmpup.commands.ids import check_id
from tmpup.errors import LockedError, TmpupError
from tmpup.providers.base import Deletable
from tmpup.runtime import Runtime


def run(rt: Runtime, id: str) -> None:
    provider = rt.provider
    if not isinstance(provider, Deletable):
        why = "the temporary file expires by itself" if provider.id in ("qlik", "thulium", "pyrus") else ""
        raise provider.unsupported("delete", why)
    check_id(id)  # before the id goes into a URL
    provider.delete(id)
    if provider.resumable:
        _drop_records(rt, id)
    if rt.output.json_mode:
        rt.output.json({"id": id, "deleted": True})
    else:
        rt.messages.note(f"deleted {id}")


def _drop_records(rt: Runtime, id: str) -> None:
    """Remove the resume records of the upload just deleted: its URL (from any profile of this
    provider), or its last segment (from this profile, whose endpoint a bare id is relative to)."""
    settings = rt.settings
    try:
        records = rt.state.records()
    except TmpupError as exc:  # the upload is deleted all the same
        rt.messages.warn(f"deleted {id}, but its resume record could not be looked for: {exc}")
        return
    for record in records:
        if record.provider != settings.provider:
            continue
        url = record.upload_url.rstrip("/")
        by_id = record.profile == settings.profile and url.rsplit("/", 1)[-1] == id
        if id.rstrip("/") != url and not by_id:
            continue
        path = str(record.file["path"])
        try:
            # Under its lock, as every removal: a process feeding it now keeps it (and meets the 404).
            with rt.state.lock(record.key, path):
                rt.state.delete_record(record.key)
        except LockedError:
            continue
        except TmpupError as exc:
            rt.messages.warn(f"deleted {id}, but its resume record was not removed: {exc}")
            continue
        rt.messages.note(f"removed the resume record of {path}")
