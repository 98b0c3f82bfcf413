"""The `.part` of a download: a name that fits the file system, an exclusive claim on it, the note of
which file it holds the start of, and the rename that gives it its final name.

One process per `.part`: it is created with O_EXCL (or an existing one opened as it is, never
truncated here), then locked with flock(LOCK_EX|LOCK_NB) until the rename, so two downloads of one
target cannot write into it together; the second stops with exit 10. The note is an extended attribute
(`PART_XATTR`): `--continue` in a later run refuses to append another file's bytes to a `.part`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from tmpup.errors import InputError, IntegrityError, LockedError, TmpupError, TransientError
from tmpup.providers.base import RemoteFile

PART_SUFFIX = ".part"
#: The longest file name, in bytes, of nearly every file system (what `pathconf` says when it says nothing).
NAME_MAX = 255


def _name_max(directory: Path) -> int:
    """The longest file name (in bytes) the file system of `directory` takes: 255 almost everywhere."""
    try:
        limit = os.pathconf(directory if str(directory) else ".", "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return NAME_MAX
    return limit if limit > 0 else NAME_MAX


def short_name(name: str) -> str:
    return name if len(name) <= 40 else f"{name[:20]}...{name[-12:]}"


def check_path_length(path: Path) -> None:
    """An `-o` no file system takes (a name over 255 bytes, a path over PATH_MAX): one line, before any
    request and before `is_dir()` would raise on it."""
    for component in path.parts[:-1]:
        size = len(os.fsencode(component))
        if size > NAME_MAX:
            raise InputError(
                f"-o {short_name(str(path))}: the directory name {short_name(component)} is too long ({size} bytes; "
                f"the file system takes at most {NAME_MAX})"
            )
    if len(os.fsencode(path.name)) > NAME_MAX:
        check_name_length(path)  # no directory has this name: it is the file's, and it does not fit
    size, limit = len(os.fsencode(str(path))) + len(PART_SUFFIX), _path_max()
    if size >= limit:
        raise InputError(
            f"-o {short_name(str(path))}: the path is too long ({size} bytes with the {PART_SUFFIX} suffix tmpup "
            f"writes while downloading; the system takes less than {limit})"
        )


def _path_max() -> int:
    try:
        limit = os.pathconf("/", "PC_PATH_MAX")
    except (OSError, ValueError, AttributeError):
        return 4096
    return limit if limit > 0 else 4096


def is_dir(path: Path) -> bool:
    """`Path.is_dir()` that says False, not raises, where the path cannot be looked at at all."""
    try:
        return path.is_dir()
    except OSError:
        return False


def check_name_length(target: Path) -> None:
    """The `.part` (the target's name and 5 bytes more) must fit the file system's name limit."""
    limit = _name_max(target.parent)
    size = len(os.fsencode(target.name + PART_SUFFIX))
    if size > limit:
        raise InputError(
            f"{short_name(str(target))}: the file name is too long ({size} bytes with the {PART_SUFFIX} suffix "
            f"tmpup writes while downloading; the file system takes at most {limit})",
            hint=f"give -o a name of at most {limit - len(PART_SUFFIX)} bytes",
        )


@dataclass(frozen=True)
class Claim:
    fd: int  #: the `.part`, open for writing and locked (LOCK_EX) by this process
    created: bool  #: this run created it (it was not there before)


def claim(part: Path, target: Path, *, resume: bool, force: bool) -> Claim:
    """Open the `.part` and lock it, without a window between looking and opening.

    A new `.part` is created with O_EXCL, so that this run knows it was not there before; an existing
    one is opened as it is (never truncated here). Either is then locked with flock(LOCK_EX|LOCK_NB):
    another tmpup process that holds it is downloading into it, and this run leaves it alone (exit 10).
    Nothing is truncated or written until the lock is held; the lock is kept until the rename."""
    while True:
        created = True
        opened: int | None
        try:
            opened = os.open(part, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            created = False
            opened = _open_existing(part, force=force)
        except OSError as exc:
            raise _cannot_open(part, exc) from None
        if opened is None:
            continue  # it went away (or was replaced) meanwhile: look again
        fd = opened
        locked = False
        try:
            if not _lock(fd):
                raise LockedError(
                    f"{target} is being downloaded by another tmpup process",
                    hint=f"let that one finish (it writes {part}); this run changed nothing",
                )
            locked = True
            if not _is_current(part, fd):
                # The holder renamed or removed it between our open and our lock: that file is no
                # longer the .part, and a lock on it would exclude nobody.
                os.close(fd)
                continue
            if not created and _holds_nothing(fd):
                # Empty and never written by a download: another run created it a moment ago and has
                # not locked it yet (it will find it locked and stop), or one left it holding nothing.
                created = True
            if not created and not (resume or force):
                raise InputError(
                    f"{part} is left from an interrupted download",
                    hint="pass --continue to resume it, or --force to start over",
                )
            if os.path.lexists(target) and not force:
                # Another download finished (renamed its .part to the target) after our first look.
                raise InputError(f"{target} already exists", hint="pass --force to overwrite it, or -o PATH")
        except BaseException:
            if created and locked:
                unlink_if_ours(part, fd)
            os.close(fd)
            raise
        return Claim(fd, created)


def _holds_nothing(fd: int) -> bool:
    """An empty `.part` without the note a download writes on it (`remember`)."""
    if os.fstat(fd).st_size:
        return False
    if not hasattr(os, "getxattr"):  # pragma: no cover
        return True
    try:
        os.getxattr(fd, PART_XATTR)
    except OSError:
        return True  # no note (or no user attributes on this file system): nothing tells it apart
    return False


def _open_existing(part: Path, *, force: bool) -> int | None:
    """Open an existing `.part` for writing, as it is; None if it is no longer there."""
    try:
        st = os.lstat(part)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        # A symlink (dangling or not), fifo, socket: not a .part tmpup left. Never written through.
        what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        if not force or stat.S_ISDIR(st.st_mode):
            raise InputError(f"{part} is {what}", hint="move it away, or pass --force to replace it")
        try:
            os.unlink(part)  # the entry itself, never what a link points at
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _cannot_open(part, exc) from None
        return None
    try:
        fd = os.open(part, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None  # became a symlink meanwhile: lstat it again
        raise _cannot_open(part, exc) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None  # swapped for something else meanwhile: lstat it again
    return fd


def _lock(fd: int) -> bool:
    """Take the `.part`'s lock; False if another process holds it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no flock (Windows): downloads are not locked
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return True  # a file system without locks: download unlocked, as curl and wget always do
        raise
    return True


def _is_current(part: Path, fd: int) -> bool:
    """Whether the name `part` still refers to the open file `fd`."""
    try:
        named = os.lstat(part)
    except OSError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def unlink_if_ours(part: Path, fd: int) -> None:
    """Remove the `.part` this run created and holds the lock of (not one another process put there)."""
    with contextlib.suppress(OSError):
        if _is_current(part, fd):
            os.unlink(part)


def _cannot_open(part: Path, exc: OSError) -> TmpupError:
    if exc.errno == errno.ENAMETOOLONG:
        return InputError(f"cannot write {short_name(str(part))}: the path is too long for the file system")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        why = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or "no space").lower()
        return TransientError(f"{why}: cannot create {part}", hint="free some space, then run the same command")
    return InputError(f"cannot write {part}: {exc.strerror or exc}")


def rename_into_place(part: Path, target: Path, *, replace: bool) -> None:
    """Give the complete `.part` its final name: with --force in one rename (a symlink at the target is
    replaced, not followed); without, never over an entry that appeared meanwhile (link, then unlink)."""
    try:
        if replace:
            os.replace(part, target)
            return
        try:
            os.link(part, target, follow_symlinks=False)
        except FileExistsError:
            raise InputError(
                f"{target} appeared while downloading; the complete download is in {part}",
                hint="move one of them away, or pass --continue --force to replace it",
            ) from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV, errno.ENOSYS):
                raise
            # No hard links on this file system (FAT, some FUSE): look once more, then rename.
            if os.path.lexists(target):
                raise InputError(
                    f"{target} appeared while downloading; the complete download is in {part}",
                    hint="move one of them away, or pass --continue --force to replace it",
                ) from None
            os.replace(part, target)
            return
        os.unlink(part)
    except OSError as exc:
        raise InputError(f"cannot rename {part} to {target}: {exc.strerror or exc}", hint=f"{part} was kept") from None


#: The extended attribute of a `.part` that says which file it holds the start of (`RemoteFile.validator`
#: plus the id): `--continue` in a later run checks the server still serves that file. Where the file
#: system keeps no user attributes, `--continue` trusts the server's answer, as `curl -C -` does.
PART_XATTR = "user.tmpup.download"


def remember(fd: int, download_id: str, remote: RemoteFile, *, fresh: bool) -> None:
    """Note on the `.part` (open as `fd`) which file it holds the start of; `fresh`: it starts empty, so
    a note left by an earlier download of it (a `--force` over a stale `.part`) no longer applies."""
    if not hasattr(os, "setxattr"):
        return
    with contextlib.suppress(OSError):
        if remote.validator is not None:
            os.setxattr(fd, PART_XATTR, json.dumps({"id": download_id, **remote.validator}).encode())
        elif fresh:
            os.removexattr(fd, PART_XATTR)


def check_same_file(fd: int, part: Path, download_id: str, remote: RemoteFile) -> None:
    """Refuse to append to a `.part` (open as `fd`) that holds the start of another file, or of another
    version of it."""
    if not hasattr(os, "getxattr"):
        return
    try:
        stored = json.loads(os.getxattr(fd, PART_XATTR))
    except (OSError, ValueError):
        return  # written before tmpup kept this, or on a file system without user attributes
    if not isinstance(stored, dict):
        return
    now = remote.validator or {}
    why = None
    if stored.get("id") != download_id:
        why = f"it was written by a download of {stored.get('id')!r}"
    else:
        for key, label in (("size", "a size of"), ("etag", "ETag"), ("last_modified", "Last-Modified")):
            if key == "last_modified" and (stored.get("etag") or now.get("etag")):
                break  # Last-Modified only stands in for a missing ETag (as in If-Range)
            then, current = stored.get(key), now.get(key)
            if then is not None and current is not None and then != current:
                why = f"the file had {label} {then} then, {current} now"
                break
    if why is not None:
        remote.close()
        raise IntegrityError(
            f"{part} holds the start of another file than the one {download_id} is now ({why})",
            hint="pass --force to download it again from the start",
        )
