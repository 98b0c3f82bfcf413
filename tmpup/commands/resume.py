"""`tmpup resume`: continue interrupted resumable uploads, list their records, clean dead ones.

A resume record (DESIGN.md section 5) names the profile it was made with, so `resume` needs no
`-p`: each record is continued on its own profile, through the same upload path as `tmpup upload`
(which re-checks the file's identity, HEADs the server and starts afresh, saying so, when the file
changed or the server forgot the upload). `--list` and `--clean` are local: they read the records,
the files and the locks, never the network.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path
from typing import Any

from tmpup.config import ENV_PROFILE_NAME
from tmpup.errors import (
    ConfigError,
    ExitCode,
    InputError,
    LockedError,
    NotFoundError,
    TmpupError,
    several_failed,
)
from tmpup.runtime import Runtime
from tmpup.state import ResumeRecord
from tmpup.units import format_size


def record_state(record: ResumeRecord, now: dt.datetime, held: bool = False) -> str:
    """`uploading`, `resumable`, `expired`, `file missing` or `file changed` (local facts only).

    `held`: a process holds the record's lock now (`StateStore.lock_held` asks the kernel; a pid
    left in the lock file by a killed process could belong to anyone by now).
    """
    if held:
        return "uploading"
    if record.expired(now):
        return "expired"
    try:
        st = Path(str(record.file.get("path", ""))).stat()
    except OSError:
        return "file missing"
    if st.st_size != record.file.get("size") or st.st_mtime_ns != record.file.get("mtime_ns"):
        return "file changed"
    return "resumable"


def sent(row: dict[str, Any]) -> str:
    """The SENT column. Only an offset the server confirmed after the upload stopped is exact; any
    other (a process killed mid-PATCH, an upload still running) is a lower bound and says so."""
    pct = 100 * row["offset"] // row["size"] if row["size"] else 100
    text = f"{pct}% of {format_size(row['size'])}"
    return text if row["offset_exact"] else f"at least {text}"


def _row(rt: Runtime, record: ResumeRecord, now: dt.datetime) -> dict[str, Any]:
    return {
        "key": record.key,
        "profile": record.profile,
        "provider": record.provider,
        "file": record.file.get("path"),
        "name": record.name,
        "size": record.size,
        "offset": record.offset,
        "offset_exact": record.offset_exact,
        "upload_url": record.upload_url,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "state": record_state(record, now, held=rt.state.lock_held(record.key)),
    }


def list_records(rt: Runtime) -> list[dict[str, Any]]:
    now = rt.clock()
    rows = [_row(rt, r, now) for r in rt.state.records()]
    damaged = rt.state.damaged()
    if damaged:
        rt.messages.warn(
            f"{len(damaged)} record(s) in {rt.state.uploads_dir} cannot be read and were skipped "
            "('tmpup resume --clean' removes them)"
        )
    if rt.output.json_mode:
        for row in rows:
            rt.output.json(row)
        return rows
    if not rows:
        rt.messages.note("no interrupted uploads")
        return rows
    table = [("FILE", "PROFILE", "PROVIDER", "SENT", "EXPIRES", "STATE")]
    for row in rows:
        expires = (row["expires_at"] or "-")[:19].replace("T", " ")
        table.append((str(row["file"]), row["profile"], row["provider"], sent(row), expires, row["state"]))
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]) - 1)]
    for line in table:
        cells = [cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True)]
        rt.output.line("  ".join([*cells, line[-1]]))
    return rows


def clean(rt: Runtime) -> int:
    """Remove the records that can never resume (expired, or whose file is gone or changed), and
    what killed processes left behind: temp files of interrupted writes, locks without a record."""
    now = rt.clock()
    removed: list[dict[str, Any]] = []
    for record in rt.state.records():
        state = record_state(record, now)
        if state == "resumable":
            continue
        # Never pull a record from under a running upload: take its lock to delete it.
        with contextlib.suppress(LockedError), rt.state.lock(record.key, str(record.file.get("path"))):
            rt.state.delete_record(record.key)
            removed.append({"file": record.file.get("path"), "upload_url": record.upload_url, "reason": state})
            rt.messages.note(f"removed the record of {record.file.get('path')} ({state})")
    for key in rt.state.damaged():
        with contextlib.suppress(LockedError), rt.state.lock(key, key):
            rt.state.delete_record(key)
            removed.append({"file": None, "upload_url": None, "reason": "damaged", "key": key})
            rt.messages.note(f"removed the damaged record {key}.json")
    strays = rt.state.sweep() + rt.state.sweep_locks()
    if rt.output.json_mode:
        rt.output.json({"removed": len(removed), "records": removed, "stray_files": strays})
    else:
        if strays:
            rt.messages.note(f"removed {len(strays)} file(s) left in {rt.state.root} by killed processes")
        rt.messages.note(f"{len(removed)} record(s) removed")
    return len(removed)


def resume(rt: Runtime, target: str | None, *, limit_rate: int | None = None) -> None:
    """Continue one upload (by file path, upload id or URL) or, with target None, all of them;
    `limit_rate` caps each one's speed as `upload --limit-rate` does."""
    records = rt.state.records()
    if target is not None:
        records = [r for r in records if _matches(r, target)]
        if not records:
            raise NotFoundError(f"no interrupted upload matches {target!r}", hint="see them with 'tmpup resume --list'")
    if not records:
        # Exit 5 ("no resume record", DESIGN.md section 4), --all included; a nightly job that runs
        # `tmpup resume --all` treats 5 as "nothing left to do".
        raise NotFoundError("there is no interrupted upload to resume", hint="tmpup resume --list shows them")
    errors: list[TmpupError] = []
    for record in records:
        try:
            _resume_one(rt, record, limit_rate)
        except TmpupError as exc:
            if len(records) == 1 or exc.exit_code == ExitCode.INTERRUPTED:
                raise
            rt.messages.error(f"{record.file.get('path')}: {exc}")
            errors.append(exc)
    if errors:
        raise several_failed(errors, len(records), "interrupted uploads")


def _resume_one(rt: Runtime, record: ResumeRecord, limit_rate: int | None = None) -> None:
    from tmpup.commands.upload import UploadRequest
    from tmpup.commands.upload import run as upload

    path = str(record.file.get("path"))
    if not Path(path).is_file():
        raise InputError(
            f"{path}: no such file; its interrupted upload cannot continue",
            hint="'tmpup resume --clean' removes records that can no longer resume",
        )
    extra = record.extra or {}
    ttl, chunk = extra.get("ttl"), extra.get("chunk_size")
    request = UploadRequest(
        files=[path],
        name=record.name,
        ttl=int(ttl) if isinstance(ttl, (int, float)) else None,
        chunk_size=int(chunk) if isinstance(chunk, int) and chunk > 0 else None,
        resumable=True,
        limit_rate=limit_rate,
    )
    on = rt.with_profile(record.profile)
    settings = on.settings
    if (settings.profile, settings.provider) != (record.profile, record.provider):
        # The profile it was made with is not what the same name (or, for "env", the environment)
        # gives now: continuing would send the file to another service, and leave this record behind.
        if record.profile == ENV_PROFILE_NAME:
            hint = f"set TMPUP_PROVIDER={record.provider} (and its TMPUP_URL, credentials) again, then resume"
        else:
            hint = f"restore profile {record.profile!r} (provider {record.provider}), or 'tmpup resume --clean'"
        raise ConfigError(
            f"{path}: its interrupted upload was made with profile {record.profile!r} (provider "
            f"{record.provider}), but that now means profile {settings.profile!r} (provider {settings.provider})",
            hint=hint,
        )
    upload(on, request)


def _matches(record: ResumeRecord, target: str) -> bool:
    url = record.upload_url.rstrip("/")
    if target in (record.key, record.upload_url, url) or url.rsplit("/", 1)[-1] == target:
        return True
    try:
        resolved = str(Path(target).resolve())
    except OSError:
        return False
    return resolved == record.file.get("path")
