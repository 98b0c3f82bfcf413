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
from dataclasses import dataclass
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
from tmpup.output import printable
from tmpup.resume_record import DamagedEntry, ResumeRecord
from tmpup.runtime import Runtime
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
    """The records, as a table or (`--json`) one object per readable record. A damaged record is a
    row of the table (STATE `damaged`) and, in both forms, a warning: its fields are not known, and a
    JSON object of nulls where scripts expect numbers would only break them."""
    now = rt.clock()
    rows = [_row(rt, r, now) for r in rt.state.records()]
    damaged = rt.state.damaged_entries()
    if damaged:
        listed = "" if rt.output.json_mode else " (listed as damaged)"
        rt.messages.warn(
            f"{len(damaged)} record(s) in {rt.state.uploads_dir} cannot be read{listed} and resume nothing "
            "('tmpup resume --clean' removes them)"
        )
    if rt.output.json_mode:
        for row in rows:
            rt.output.json(row)
        return rows
    if not rows and not damaged:
        rt.messages.note("no interrupted uploads")
        return rows
    table = [("FILE", "PROFILE", "PROVIDER", "SENT", "EXPIRES", "STATE")]
    for row in rows:
        expires = (row["expires_at"] or "-")[:19].replace("T", " ")
        file = _shown(str(row["file"]))
        profile, provider = printable(row["profile"]), printable(row["provider"])
        table.append((file, profile, provider, sent(row), expires, row["state"]))
    for entry in damaged:
        if entry.path is None:  # what it says of its profile may be as damaged as the rest
            file, profile, provider = f"{entry.key}.json", "-", "-"
        else:
            file, profile, provider = _shown(entry.path), printable(str(entry.profile)), printable(str(entry.provider))
        table.append((file, profile, provider, "-", "-", "damaged"))
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]) - 1)]
    for line in table:
        cells = [cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True)]
        rt.output.line("  ".join([*cells, line[-1]]))
    return rows


def _shown(path: str) -> str:
    """A path in the table: a byte that is not UTF-8 as `\\xNN` (as `Output.line` shows it), and
    control characters (an escape sequence, a newline that would split the row) as `?`, as every
    message shows them (`printable`)."""
    return printable(path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"))


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


@dataclass(frozen=True)
class _Job:
    """One upload `resume` continues: a record, or a damaged record that still names its file and
    profile (`DamagedEntry`), whose file then starts a new upload (the Transfer warns why)."""

    key: str
    path: str
    profile: str
    provider: str
    name: str | None
    extra: dict[str, Any]

    @classmethod
    def of(cls, item: ResumeRecord | DamagedEntry) -> _Job:
        if isinstance(item, ResumeRecord):
            return cls(item.key, item.file["path"], item.profile, item.provider, item.name, item.extra or {})
        assert item.path is not None and item.profile is not None and item.provider is not None
        return cls(item.key, item.path, item.profile, item.provider, item.name, {})


def resume(rt: Runtime, target: str | None, *, limit_rate: int | None = None) -> None:
    """Continue one upload (by file path, upload id or URL) or, with target None, all of them;
    `limit_rate` caps each one's speed as `upload --limit-rate` does."""
    records = rt.state.records()
    entries = rt.state.damaged_entries()
    # A damaged record whose file and profile are known is that file's upload, to start again.
    known = [e for e in entries if e.path is not None]
    if target is not None:
        records = [r for r in records if _matches(r, target)]
        known = [] if records else _damaged_matches(entries, target)
        if not records and not known:
            raise NotFoundError(f"no interrupted upload matches {target!r}", hint="see them with 'tmpup resume --list'")
    elif len(known) < len(entries):
        rt.messages.warn(
            f"{len(entries) - len(known)} record(s) in {rt.state.uploads_dir} cannot be read and were skipped "
            "('tmpup resume --clean' removes them)"
        )
    jobs = [_Job.of(r) for r in records] + [_Job.of(e) for e in known]
    if not jobs:
        # Exit 5 ("no resume record", DESIGN.md section 4), --all included; a nightly job that runs
        # `tmpup resume --all` treats 5 as "nothing left to do".
        raise NotFoundError("there is no interrupted upload to resume", hint="tmpup resume --list shows them")
    errors: list[TmpupError] = []
    for index, job in enumerate(jobs):
        try:
            _resume_one(rt, job, limit_rate)
        except TmpupError as exc:
            if exc.exit_code == ExitCode.INTERRUPTED and len(jobs) > 1:
                _name_what_is_left(rt, exc, jobs[index:], errors)
            if len(jobs) == 1 or exc.exit_code == ExitCode.INTERRUPTED:
                raise
            text = str(exc)
            # Most errors name their file already ("/x/a.bin: no such file"): say it once.
            rt.messages.error(text if job.path in text else f"{job.path}: {text}")
            errors.append(exc)
    if errors:
        raise several_failed(errors, len(jobs), "interrupted uploads")


def _name_what_is_left(rt: Runtime, exc: TmpupError, left: list[_Job], earlier: list[TmpupError]) -> None:
    """`resume --all` was interrupted at `left[0]`: make the hint name what continues every upload
    still waiting, as an interrupted `upload -j` does: the one running, those not reached (their
    records still on disk), and earlier ones kept after a transient failure."""
    from tmpup.protocols.tus import resume_command

    current, *unreached = left
    kept = [e.resume_command for e in earlier if e.resume_command]
    if exc.resume_command:
        kept.append(exc.resume_command)
    elif rt.state.record_path(current.key).exists():
        kept.append(resume_command(current.path, current.key, rt.options.config))
    config = rt.options.config
    kept += [resume_command(j.path, j.key, config) for j in unreached if rt.state.record_path(j.key).exists()]
    if len(kept) > 1:
        exc.resume_command = every = resume_command(None, "", config)
        exc.hint = f"{len(kept)} uploads were kept; continue them with: {every} (tmpup resume --list shows them)"
    elif kept:
        exc.resume_command = kept[0]
        exc.hint = f"the upload was kept; continue it with: {kept[0]}"
    else:
        exc.hint = "nothing is left to resume"


def _resume_one(rt: Runtime, job: _Job, limit_rate: int | None = None) -> None:
    from tmpup.commands.upload import UploadRequest
    from tmpup.commands.upload import run as upload

    path = job.path
    if not Path(path).is_file():
        raise InputError(
            f"{path}: no such file; its interrupted upload cannot continue",
            hint="'tmpup resume --clean' removes records that can no longer resume",
        )
    extra = job.extra
    ttl, chunk = extra.get("ttl"), extra.get("chunk_size")
    request = UploadRequest(
        files=[path],
        name=job.name,
        ttl=ttl if isinstance(ttl, int) else None,
        chunk_size=chunk if isinstance(chunk, int) and chunk > 0 else None,
        resumable=True,
        # An upload started with --checksum reports the sha256 of the whole file when it completes.
        checksum=extra.get("checksum") is True,
        limit_rate=limit_rate,
    )
    on = rt.with_profile(job.profile)
    settings = on.settings
    if (settings.profile, settings.provider) != (job.profile, job.provider):
        # The profile it was made with is not what the same name (or, for "env", the environment)
        # gives now: continuing would send the file to another service, and leave this record behind.
        if job.profile == ENV_PROFILE_NAME:
            hint = f"set TMPUP_PROVIDER={job.provider} (and its TMPUP_URL, credentials) again, then resume"
        else:
            hint = f"restore profile {job.profile!r} (provider {job.provider}), or 'tmpup resume --clean'"
        raise ConfigError(
            f"{path}: its interrupted upload was made with profile {job.profile!r} (provider "
            f"{job.provider}), but that now means profile {settings.profile!r} (provider {settings.provider})",
            hint=hint,
        )
    upload(on, request)


def _damaged_matches(entries: list[DamagedEntry], target: str) -> list[DamagedEntry]:
    """The damaged records `target` names, each with its file known: by key, upload URL or id, or
    a path whose hash (with the record's profile and provider) is its key, whatever its `file` says."""
    found = []
    resolved = _resolved(target)
    for entry in entries:
        if resolved is not None and entry.path is None:
            entry = entry.for_path(resolved) or entry
        if entry.path is not None and _matches(entry, target):
            found.append(entry)
    return found


def _resolved(target: str) -> str | None:
    try:
        return str(Path(target).resolve())
    except (OSError, ValueError):  # a loop of links; a NUL byte
        return None


def _matches(record: ResumeRecord | DamagedEntry, target: str) -> bool:
    if isinstance(record, ResumeRecord):
        upload_url: str | None = record.upload_url
        path: str | None = record.file["path"]
    else:
        upload_url, path = record.upload_url, record.path
    if target == record.key:
        return True
    if upload_url:
        url = upload_url.rstrip("/")
        if target in (upload_url, url) or url.rsplit("/", 1)[-1] == target:
            return True
    return path is not None and _resolved(target) == path
