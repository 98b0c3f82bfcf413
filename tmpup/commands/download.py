"""`tmpup download`: stream to `NAME.part`, rename when complete; `--continue` resumes with Range.

Rules (DESIGN.md section 5): an existing file is never overwritten without `--force`; a `.part` left by
an interrupted download is never thrown away without `--force` (it is resumed with `--continue`); a
server-supplied name is reduced to a safe base name; `-o -` streams to stdout.

A body cut off mid-stream is continued within the run by the provider (`providers.download`); when
that gives up, or on Ctrl-C/SIGTERM, the `.part` keeps every byte that arrived and the error says
the command that continues it (`tmpup download ID -o PATH --continue`), as an interrupted upload
names its `tmpup resume` command. The `.part` itself (names that fit, the exclusive claim, the note of
which file it holds, the final rename) is `part_file`'s.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shlex
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from tmpup.commands import part_file
from tmpup.commands.ids import check_id
from tmpup.commands.part_file import (
    PART_SUFFIX,
    PART_XATTR,
    check_name_length,
    check_path_length,
    check_same_file,
    is_dir,
    remember,
    rename_into_place,
    unlink_if_ours,
)
from tmpup.errors import (
    InputError,
    IntegrityError,
    Interrupted,
    TmpupError,
    TransientError,
    UsageError,
)
from tmpup.headers import safe_filename
from tmpup.providers.base import Downloadable, RemoteFile
from tmpup.runtime import Runtime
from tmpup.sources import check_cancel
from tmpup.units import format_size


@dataclass(frozen=True)
class DownloadRequest:
    id: str
    output: str | None = None
    resume: bool = False
    force: bool = False


def run(rt: Runtime, request: DownloadRequest) -> dict[str, Any]:
    provider = rt.provider
    if not isinstance(provider, Downloadable):
        raise provider.unsupported("download", _why_no_download(provider.id))
    check_id(request.id)
    provider.check_download_id(request.id)
    if request.output == "-":
        if request.resume:
            raise UsageError("--continue cannot be used with -o - (stdout)")
        return _to_stdout(rt, provider, request)

    target = _planned_target(rt, request)
    if target is not None and _is_stream(target):
        # `-o /dev/null`, a fifo: written into as it is, like stdout. There is no file to replace, and
        # a rename over it (--force) would put a regular file in the place of a device.
        if request.resume:
            raise UsageError(f"--continue cannot be used with -o {target} (not a regular file)")
        try:
            sink = open(target, "wb")  # noqa: SIM115 - closed below, after the stream
        except OSError as exc:
            raise InputError(f"cannot write {target}: {exc.strerror or exc}") from None
        with sink:
            return _to_stream(rt, provider, request, sink, str(target))
    remote: RemoteFile | None = None
    if target is None:
        # The name comes from the server: look at the answer's headers first.
        remote = provider.open_download(request.id, offset=0)
        target = Path(_local_name(remote.name, request.id))
        if request.output:
            target = Path(request.output) / target
    part = target.with_name(target.name + PART_SUFFIX)
    try:
        check_name_length(target)
        _check_targets(target, part, request)
        claim = part_file.claim(part, target, resume=request.resume, force=request.force)
    except BaseException:
        if remote is not None:
            remote.close()
        raise

    # From here this process holds the .part's lock, until the rename (or the end of the run).
    # Without --force the target does not exist; with it, the continuing run must carry --force too.
    command = continue_command(rt, request.id, target, force=os.path.lexists(target))
    started = False  # whether the .part was truncated or written to by this run
    try:
        offset = os.fstat(claim.fd).st_size if request.resume and not claim.created else 0
        if remote is not None and offset > 0:
            remote.close()
            remote = None
        if remote is None:
            remote = provider.open_download(request.id, offset=offset)
        if offset and remote.offset == offset:
            check_same_file(claim.fd, part, request.id, remote)
        if remote.offset != offset:
            rt.messages.note(f"the server does not resume downloads; starting {target.name} from the beginning")
            offset = remote.offset
        started = True
        return _write(rt, remote, target, part, claim.fd, offset, request, command)
    except (Interrupted, TransientError) as exc:
        if started or not claim.created:
            _say_kept(exc, claim.fd, part, command)
        raise
    except KeyboardInterrupt:  # called as a library, without the CLI's signal handlers
        stopped = Interrupted("interrupted")
        if started or not claim.created:
            _say_kept(stopped, claim.fd, part, command)
        raise stopped from None
    finally:
        if remote is not None:
            remote.close()  # already closed by _write, unless something stopped the run before it
        if claim.created and not started:
            unlink_if_ours(part, claim.fd)  # nothing was asked of it: leave no empty .part behind
        os.close(claim.fd)  # and with it the lock


def continue_command(rt: Runtime, id: str, target: Path, *, force: bool = False) -> str | None:
    """What a user types to continue this download (None when it cannot be pasted back as shown).

    `force`: the target exists (a `--force` download that has not replaced it yet), so continuing
    needs `--force` too."""
    words = ["tmpup", "download", id]
    if rt.options.profile:
        words += ["-p", rt.options.profile]
    if rt.options.config is not None:
        words += ["--config", str(rt.options.config)]
    words += ["-o", str(target), "--continue"]
    if force:
        words.append("--force")
    # Messages show unprintable characters (and undecodable bytes of a name) as `?`: another file.
    if not all(word.isprintable() for word in words):
        return None
    return shlex.join(words)


def _say_kept(exc: TmpupError, fd: int, part: Path, command: str | None) -> None:
    """Point an error that stopped a download at the `.part` it left and the command that continues it."""
    if exc.resume_command is not None:
        return  # the hint already says it (a full disk: "free some space, then ...")
    try:
        held = os.fstat(fd).st_size
    except OSError:  # pragma: no cover - the fd is open
        return
    exc.resume_command = command
    how = f"continue with: {command}" if command else "run the same command with --continue to resume it"
    exc.hint = f"{part} was kept ({format_size(held)}); {how}"


def _local_name(name: str | None, id: str) -> str:
    """A safe local name with room for the `.part` suffix within the file system's 255 bytes."""
    limit = 255 - len(PART_SUFFIX)
    return safe_filename(name, fallback=safe_filename(id, limit=limit), limit=limit)


def _why_no_download(provider_id: str) -> str:
    if provider_id == "thulium":
        return "Thulium's API has no download for temporary files"
    return "its API offers no download"


def _planned_target(rt: Runtime, request: DownloadRequest) -> Path | None:
    """The destination when it can be known before the request (-o FILE, or a receipt's name)."""
    if request.output:
        check_path_length(Path(request.output))  # before is_dir(), which raises on a name too long
    if request.output and request.output.endswith(("/", os.sep)) and not is_dir(Path(request.output)):
        # `-o dl/` means a folder: writing a file called `dl` would be a surprise.
        raise InputError(f"{request.output}: no such directory", hint="create it first, or give -o a file name")
    if request.output and not is_dir(Path(request.output)):
        return Path(request.output)
    receipt = rt.state.find_receipt(request.id, rt.settings.provider)
    if receipt and receipt.get("name"):
        name = _local_name(str(receipt["name"]), request.id)
        return Path(request.output) / name if request.output else Path(name)
    return None


def _check_targets(target: Path, part: Path, request: DownloadRequest) -> None:
    """What can be refused before the `.part` is opened. Any entry at the target counts, a dangling
    symlink included (`lexists`): --force replaces the entry itself, never what a link points at."""
    if os.path.lexists(target) and not request.force:
        raise InputError(f"{target} already exists", hint="pass --force to overwrite it, or -o PATH")
    if is_dir(target):
        raise InputError(f"{target} is a directory")
    if not is_dir(target.parent):
        raise InputError(f"{target.parent} is not a directory")


def _write(
    rt: Runtime,
    remote: RemoteFile,
    target: Path,
    part: Path,
    fd: int,
    offset: int,
    request: DownloadRequest,
    command: str | None,
) -> dict[str, Any]:
    """Stream the body into the locked `.part` from `offset`, check its size on disk, and rename it."""
    how = f"continue with: {command}" if command else "run the same command with --continue"
    task = rt.progress.task(target.name, remote.size, completed=offset)
    written = offset
    rt.progress.start()
    try:
        try:
            if os.fstat(fd).st_size != offset:
                # What lies past the offset is not this file's (or is about to be again). Only when there is
                # something to cut: on ext4 a truncate to 0 makes the close start writing the whole file
                # back (auto_da_alloc), which blocked the end of a 1 GiB download for ~0.4 s.
                os.ftruncate(fd, offset)
            os.lseek(fd, offset, os.SEEK_SET)
            remember(fd, request.id, remote, fresh=offset == 0)
            with open(fd, "wb", closefd=False) as fh:  # the fd's position; an int fd is never truncated
                for chunk in remote.chunks:
                    # Written before looking at Ctrl-C: these bytes arrived, and the .part keeps them.
                    fh.write(chunk)
                    written += len(chunk)
                    task.advance(len(chunk))
                    check_cancel()
                # No fsync, as curl and wget do not: flushing 1 GiB to the disk before the rename tripled a
                # download's time. The rename still means the final name never holds a partial file
                # while tmpup runs or after it dies; only a power cut can lose what the kernel had not written.
                fh.flush()
        except OSError as exc:
            task.finish(ok=False)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                # The disk (or a quota, or a file-size limit) is full: the .part keeps what arrived.
                why = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or "no space").lower()
                full = TransientError(
                    f"{why} writing {part} ({written} bytes so far)", hint=f"free some space, then {how}"
                )
                full.resume_command = command
                raise full from None
            raise InputError(f"cannot write {part}: {exc.strerror or exc}") from None
        except BaseException:
            task.finish(ok=False)
            raise
        finally:
            remote.close()
        if remote.size is not None and written != remote.size:
            task.finish(ok=False)
            raise IntegrityError(
                f"{target.name}: got {written} bytes but the server announced {remote.size}",
                hint=f"{part} was kept; to fetch the rest, {how}",
            )
        # What is on disk, not only what this process wrote: something else writing to the .part
        # (it ignores the lock, which is advisory) must not end up under the final name.
        on_disk = os.fstat(fd).st_size
        if on_disk != written:
            task.finish(ok=False)
            raise IntegrityError(
                f"{part} holds {on_disk} bytes on disk, but the download wrote {written}: something else wrote to it",
                hint=f"{part} was kept; pass --force to download the file again",
            )
        task.finish()
    finally:
        rt.progress.stop()
    with contextlib.suppress(OSError):
        os.removexattr(fd, PART_XATTR)  # the finished file carries nothing of tmpup's
    rename_into_place(part, target, replace=request.force)
    record = {"id": request.id, "file": str(target), "size": written, "resumed": offset > 0}
    rt.output.result(record, "file")
    return record


def _is_stream(path: Path) -> bool:
    """A character device or a fifo (`/dev/null`, `/dev/stdout`, a named pipe): written into, never replaced."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def _to_stdout(rt: Runtime, provider: Downloadable, request: DownloadRequest) -> dict[str, Any]:
    return _to_stream(rt, provider, request, sys.stdout.buffer, "-")


def _to_stream(
    rt: Runtime, provider: Downloadable, request: DownloadRequest, out: BinaryIO, where: str
) -> dict[str, Any]:
    """Stream the download into `out` (stdout, a device, a fifo): no `.part`, nothing to continue."""
    remote = provider.open_download(request.id, offset=0)
    shown = "stdout" if where == "-" else where
    written = 0
    # Progress on stderr as for a file (a bar on a terminal while stdout goes to a pipe or a file).
    task = rt.progress.task(safe_filename(remote.name, fallback="stdout"), remote.size)
    rt.progress.start()
    try:
        for chunk in remote.chunks:
            check_cancel()
            out.write(chunk)
            written += len(chunk)
            task.advance(len(chunk))
        out.flush()
        task.finish(ok=remote.size is None or written == remote.size)
    except BrokenPipeError:
        # `tmpup download ID -o - | head` is fine: the reader had enough.
        task.finish()
        return {"file": where, "size": written}
    except TransientError as exc:
        task.finish(ok=False)
        if exc.provider is not None:  # the provider's "--continue" does not apply to a stream
            exc.hint = f"{written} bytes went to {shown}; download again (to a file, -o PATH can be continued)"
        raise
    except OSError as exc:
        task.finish(ok=False)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise TransientError(
                f"cannot write to {shown} after {written} bytes: {(exc.strerror or 'no space').lower()}",
                hint=f"free some space where {shown} goes, then download again",
            ) from None
        raise InputError(f"cannot write to {shown} after {written} bytes: {exc.strerror or exc}") from None
    except BaseException:
        task.finish(ok=False)
        raise
    finally:
        remote.close()
        rt.progress.stop()
    if remote.size is not None and written != remote.size:
        raise IntegrityError(f"got {written} bytes but the server announced {remote.size}")
    if where != "-":
        record = {"id": request.id, "file": where, "size": written, "resumed": False}
        rt.output.result(record, "file")
        return record
    return {"file": "-", "size": written}
