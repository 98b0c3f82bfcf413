"""`tmpup resume`: continue interrupted resumable uploads, list their records, clean dead ones."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tmpup.errors import NotFoundError
from tmpup.runtime import Runtime
from tmpup.state import ResumeRecord


def _row(record: ResumeRecord, now: dt.datetime) -> dict[str, Any]:
    path = record.file.get("path")
    return {
        "key": record.key,
        "profile": record.profile,
        "provider": record.provider,
        "file": path,
        "name": record.name,
        "size": record.size,
        "offset": record.offset,
        "upload_url": record.upload_url,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "expired": record.expired(now),
    }


def list_records(rt: Runtime) -> list[dict[str, Any]]:
    now = rt.clock()
    rows = [_row(r, now) for r in rt.state.records()]
    if rt.output.json_mode:
        for row in rows:
            rt.output.json(row)
    elif not rows:
        rt.messages.note("no interrupted uploads")
    else:
        for row in rows:
            pct = 100 * row["offset"] // row["size"] if row["size"] else 100
            state = "expired" if row["expired"] else f"{pct}% sent"
            rt.output.line(f"{row['file']}  [{row['profile']}/{row['provider']}]  {state}  {row['upload_url']}")
    return rows


def clean(rt: Runtime) -> int:
    """Remove records that can never resume: expired, or whose file is gone or changed."""
    from pathlib import Path

    now = rt.clock()
    removed = 0
    for record in rt.state.records():
        path = Path(str(record.file.get("path", "")))
        dead = record.expired(now)
        try:
            st = path.stat()
            dead = dead or st.st_size != record.file.get("size") or st.st_mtime_ns != record.file.get("mtime_ns")
        except OSError:
            dead = True
        if dead:
            rt.state.delete_record(record.key)
            removed += 1
            rt.messages.note(f"removed the record of {path} ({record.upload_url})")
    if rt.output.json_mode:
        rt.output.json({"removed": removed})
    else:
        rt.messages.note(f"{removed} record(s) removed")
    return removed


def resume(rt: Runtime, target: str | None) -> None:
    """Continue one upload (by file path or upload id) or, with target None, all of them."""
    from tmpup.commands.upload import UploadRequest
    from tmpup.commands.upload import run as upload

    records = rt.state.records()
    if target is not None:
        records = [r for r in records if _matches(r, target)]
        if not records:
            raise NotFoundError(f"no interrupted upload matches {target!r}", hint="see them with 'tmpup resume --list'")
    if not records:
        raise NotFoundError("there is no interrupted upload to resume")
    for record in records:
        path = str(record.file.get("path"))
        sub = rt.with_profile(record.profile)
        upload(sub, UploadRequest(files=[path], name=record.name, resumable=True))


def _matches(record: ResumeRecord, target: str) -> bool:
    import os

    if target in (record.key, record.upload_url) or record.upload_url.rstrip("/").endswith("/" + target):
        return True
    return os.path.abspath(target) == record.file.get("path")
