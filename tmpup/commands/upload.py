"""`tmpup upload`: validate every input, upload (optionally several at once), print and record results.

Several files go one after another, or `-j N` at a time over the provider's one session (its pool
keeps connections alive, its limiter paces every thread as one client). Either way results come out
in input order, a total joins the progress display, and a file that fails, even through a bug in
tmpup, is reported once under its name without stopping the others (exit 11). Ctrl-C/SIGTERM starts
no further file, stops the running ones at their next block, and names the resume commands of the
uploads that were kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import stat
import sys
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING, Any

from tmpup.commands.names import check_name
from tmpup.commands.upload_record import drop_replaced_record, record_asks_checksum
from tmpup.errors import (
    ExitCode,
    InputError,
    Interrupted,
    TmpupError,
    UsageError,
    internal_error_message,
    several_failed,
)
from tmpup.hashing import ContiguousHash
from tmpup.output import result_record
from tmpup.providers.base import MultiUploader, UploadOptions, UploadResult
from tmpup.runtime import Runtime
from tmpup.sources import CANCEL, Source, Throttle, check_cancel, open_source

if TYPE_CHECKING:
    from concurrent.futures import Future

#: As many as the HTTP session keeps connections alive for (`http.HttpOptions.pool_size`): more
#: would not be faster, only open and drop connections (and make urllib3 warn on stderr).
MAX_JOBS = 32
#: Seconds the main thread gives running uploads, after Ctrl-C, to stop and keep their resume records.
STOP_GRACE = 5.0


@dataclass(frozen=True)
class UploadRequest:
    files: list[str]
    name: str | None = None
    ttl: int | None = None
    jobs: int = 1
    chunk_size: int | None = None
    resumable: bool | None = None
    checksum: bool = False
    limit_rate: int | None = None


def run(rt: Runtime, request: UploadRequest) -> None:
    """Upload every file; raise the file's error for one file, `PartialFailure` when some of several fail."""
    files = request.files
    if not files:
        raise UsageError("no file to upload", hint="tmpup upload FILE... (or '-' with --name for stdin)")
    if request.name is not None and len(files) > 1:
        raise UsageError("--name applies to a single file, but several were given")
    if files.count("-") > 1:
        raise UsageError("stdin ('-') can be given only once")
    if "-" in files and request.name is None:
        raise UsageError("uploading stdin needs a name", hint="tmpup upload - --name NAME")
    if not 1 <= request.jobs <= MAX_JOBS:
        raise UsageError(f"-j/--jobs must be between 1 and {MAX_JOBS}")
    if request.name is not None:
        check_name(request.name)

    provider = rt.provider  # configuration errors surface before any file is read
    provider.check_options(_options(rt, request, request.name or "check"))
    if isinstance(provider, MultiUploader) and len(files) > 1:
        if request.jobs > 1:
            rt.messages.warn(f"{provider.id} takes all the files in one request; -j {request.jobs} is ignored")
        _run_multi(rt, request)
        return

    outcomes: list[TmpupError | None] = [None] * len(files)
    rt.progress.start()
    try:
        if len(files) > 1:
            rt.progress.add_total(len(files), _total_size(files))
        if request.jobs == 1 or len(files) == 1:
            for index, arg in enumerate(files):
                outcomes[index] = _print(rt, _upload_one(rt, request, arg))
        else:
            _run_parallel(rt, request, outcomes)
    except Interrupted as exc:
        if exc.hint is None and exc.resume_command is None:
            # A one-request upload (raw POST, multipart) leaves nothing on the server to continue.
            exc.hint = "nothing was kept to resume; run the same command again"
        raise
    finally:
        rt.progress.stop()
    _conclude(files, outcomes)


def _total_size(files: list[str]) -> int:
    """Bytes of the regular files among `files` (one that cannot be read fails, and is counted, in its turn)."""
    total = 0
    for arg in files:
        try:
            st = os.stat(arg)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            total += st.st_size
    return total


_Outcome = tuple[dict[str, Any] | None, TmpupError | None]


def _run_parallel(rt: Runtime, request: UploadRequest, outcomes: list[TmpupError | None]) -> None:
    """Upload `jobs` files at a time; print each result when its turn in input order comes.

    The workers are daemon threads over a queue rather than a `ThreadPoolExecutor`, whose threads are
    joined at interpreter exit: one blocked in a response read (up to the timeout) or in a retry's
    back-off would hold the process long after Ctrl-C had been reported.
    """
    from concurrent.futures import Future  # only for -j: one file at a time needs none of it

    files = request.files
    futures: list[Future[_Outcome]] = [Future() for _ in files]
    queue: SimpleQueue[int] = SimpleQueue()
    for index in range(len(files)):
        queue.put(index)

    def work() -> None:
        while True:
            try:
                index = queue.get_nowait()
            except Empty:
                return
            future = futures[index]
            if CANCEL.is_set():
                future.cancel()  # never start a queued file after Ctrl-C
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(_upload_one(rt, request, files[index]))
            except BaseException as exc:  # Interrupted (a file's own errors are outcomes): the main thread decides
                future.set_exception(exc)

    workers = [
        threading.Thread(target=work, name=f"upload-{n + 1}", daemon=True) for n in range(min(request.jobs, len(files)))
    ]
    for worker in workers:
        worker.start()
    printed = 0
    try:
        for index, future in enumerate(futures):
            outcomes[index] = _print(rt, future.result())
            printed = index + 1
    except BaseException as exc:
        CANCEL.set()  # the running uploads stop at their next block (or pause)
        for future in futures:
            future.cancel()  # only the ones no worker has started
        if not isinstance(exc, (Interrupted, KeyboardInterrupt)):
            raise
        raise _interrupted(rt, futures, printed, exc) from None
    for worker in workers:
        worker.join()


def _interrupted(rt: Runtime, futures: list[Future[_Outcome]], printed: int, exc: BaseException) -> Interrupted:
    """After Ctrl-C in a -j run: let the running uploads stop (briefly), print the results that made it,
    and return one `Interrupted` naming every resume command.

    The signal reaches the main thread, which waits on a future; the hints of kept uploads are on the
    workers' own `Interrupted`s, so they are gathered here rather than lost.
    """
    from concurrent.futures import wait as wait_for

    with contextlib.suppress(Interrupted, KeyboardInterrupt):  # a second Ctrl-C: stop waiting now
        wait_for([f for f in futures if not f.done()], timeout=STOP_GRACE)
    uploaded = 0
    for index, future in enumerate(futures):
        if future.done() and not future.cancelled() and future.exception() is None:
            if index >= printed:
                _print(rt, future.result())  # a file uploaded (and recorded) is worth its handle
            record, _error = future.result()
            uploaded += record is not None
    kept = []
    for future in futures:
        error = future.exception() if future.done() and not future.cancelled() else None
        if isinstance(error, Interrupted) and error.resume_command:
            kept.append(error.resume_command)
    message = exc.message if isinstance(exc, Interrupted) else "interrupted"
    message = f"{message}; {uploaded} of {len(futures)} files uploaded"
    if not kept:
        return Interrupted(message)
    if len(kept) == 1:
        return Interrupted(message, hint=f"the upload was kept; continue it with: {kept[0]}")
    from tmpup.protocols.tus import resume_command

    commands = "; ".join(kept)
    every = resume_command(None, "", rt.options.config)
    return Interrupted(
        message, hint=f"{len(kept)} uploads were kept; continue them with: {every} (or one by one: {commands})"
    )


def _print(rt: Runtime, outcome: _Outcome) -> TmpupError | None:
    record, error = outcome
    if record is not None:
        rt.output.result(record, rt.provider.handle)
    return error


def _upload_one(rt: Runtime, request: UploadRequest, arg: str) -> _Outcome:
    """Upload one file and record its receipt; return its result record or its error.

    With several files, any error of this file (a bug included) is reported here and returned;
    Ctrl-C, and every error of a single file, is raised.
    """
    source: Source | None = None
    task = None
    try:
        check_cancel()
        source = open_source(arg, spool_dir=rt.state.spool_dir)
        name = check_name(request.name) if request.name else check_name(source.default_name, from_disk=True)
        options = _options(rt, request, name)
        if not options.checksum and record_asks_checksum(rt, request, source):
            options = dataclasses.replace(options, checksum=True)
        if request.limit_rate:
            source.throttle = Throttle(request.limit_rate)
        hasher = ContiguousHash(source) if options.checksum else None
        if hasher is not None:
            source.observers.append(hasher)
        task = rt.progress.task(name, source.size)
        started = rt.clock()
        try:
            result = rt.provider.upload(source, options, task)
            source.check_unchanged()
        except BaseException:
            task.finish(ok=False)
            raise
        task.set_completed(source.size)
        task.finish()
        receipt = _receipt(rt, source, result, hasher, started)
        if request.resumable is False:
            drop_replaced_record(rt, source)
        return receipt, None
    except Exception as exc:
        if len(request.files) == 1 or (isinstance(exc, TmpupError) and exc.exit_code == ExitCode.INTERRUPTED):
            raise
        if task is None:  # failed before its transfer began: still one of the total's files
            rt.progress.task(_label(arg), source.size if source is not None else 0).finish(ok=False)
        return None, _failure(rt, arg, exc)
    finally:
        if source is not None:
            source.cleanup()


def _failure(rt: Runtime, arg: str, exc: Exception) -> TmpupError:
    """Report one file's failure (naming the file once) and return it as a `TmpupError`.

    A bug is that file's internal error, not the end of the others' uploads (the CLI's boundary
    would otherwise end the whole run); --debug shows its traceback as the boundary does.
    """
    error = exc if isinstance(exc, TmpupError) else TmpupError(internal_error_message(exc))
    text = str(error)
    rt.messages.error(text if text.startswith(f"{arg}: ") else f"{arg}: {text}")
    if error is not exc and rt.options.debug:
        traceback.print_exception(exc, file=sys.stderr)
    return error


def _label(arg: str) -> str:
    # Progress renderers write UTF-8: bytes of a non-UTF-8 file name become U+FFFD there.
    return Path(arg).name.encode("utf-8", "surrogateescape").decode("utf-8", "replace") or arg


def _receipt(
    rt: Runtime, source: Source, result: UploadResult, hasher: ContiguousHash | None, started: dt.datetime
) -> dict[str, Any]:
    """The file's result record (section 2's JSON), appended to the receipts before it is printed."""
    record = result_record(
        profile=rt.settings.profile,
        provider=rt.settings.provider,
        file=source.absolute if not source.temporary else "-",
        result=result,
        sha256=hasher.finish() if hasher is not None else None,
        uploaded_at=started,
    )
    try:
        rt.state.add_receipt(record)
    except TmpupError as exc:
        # The file is uploaded: its handle still reaches stdout; only `tmpup info` from receipts is lost.
        rt.messages.warn(f"{source.display}: uploaded, but {exc}")
    return record


def _options(rt: Runtime, request: UploadRequest, name: str) -> UploadOptions:
    ttl = request.ttl if request.ttl is not None else rt.settings.get("ttl")
    chunk = request.chunk_size if request.chunk_size is not None else rt.settings.get("chunk_size")
    return UploadOptions(
        name=name,
        ttl=int(ttl) if ttl is not None else None,
        chunk_size=int(chunk) if chunk is not None else None,
        resumable=request.resumable,
        checksum=request.checksum,
        ttl_origin=rt.settings.where("ttl") if request.ttl is None else None,
        chunk_size_origin=(rt.settings.where("chunk_size") or "settings") if request.chunk_size is None else None,
    )


def _run_multi(rt: Runtime, request: UploadRequest) -> None:
    """Providers that take several files in one request (Enterprise Tester).

    Each file is checked as `_upload_one` checks it. One that cannot be read is reported and left
    out (exit 11); a name an API cannot store is reported and refuses the whole request before it is
    sent (exit 7): the names are the request's own part headers, and the set is meant to be whole.
    `--limit-rate` caps the whole request, one `Throttle` shared by its parts. When the request
    fails, every file's task ends as failed before the error is raised.
    """
    provider = rt.provider
    assert isinstance(provider, MultiUploader)
    sources: list[Source] = []
    names: list[str] = []
    errors: list[TmpupError | None] = []
    bad_names = 0
    try:
        for arg in request.files:
            try:
                source = open_source(arg, spool_dir=rt.state.spool_dir)
            except TmpupError as exc:
                errors.append(_failure(rt, arg, exc))
                continue
            sources.append(source)
            errors.append(None)
            try:
                names.append(check_name(source.default_name, from_disk=True))
            except TmpupError as exc:
                _failure(rt, arg, exc)
                bad_names += 1
        if bad_names:
            raise InputError(
                f"{bad_names} of {len(request.files)} file names cannot be uploaded (each reported above); "
                "nothing was sent",
                hint="rename them, or upload each with --name NAME",
            )
        if sources:
            hashers = [ContiguousHash(s) if request.checksum else None for s in sources]
            throttle = Throttle(request.limit_rate) if request.limit_rate else None
            for source, hasher in zip(sources, hashers, strict=True):
                source.throttle = throttle
                if hasher is not None:
                    source.observers.append(hasher)
            options = [_options(rt, request, name) for name in names]
            rt.progress.start()
            try:
                rt.progress.add_total(len(request.files), sum(s.size for s in sources))
                for arg, error in zip(request.files, errors, strict=True):
                    if error is not None:  # left out, still one of the total's files
                        rt.progress.task(_label(arg), 0).finish(ok=False)
                tasks = [rt.progress.task(o.name, s.size) for s, o in zip(sources, options, strict=True)]
                started = rt.clock()
                try:
                    results = provider.upload_many(sources, options, tasks)
                except BaseException:
                    for task in tasks:
                        task.finish(ok=False)
                    raise
                for task in tasks:
                    task.finish()
            finally:
                rt.progress.stop()
            for source, result, hasher in zip(sources, results, hashers, strict=True):
                source.check_unchanged()
                rt.output.result(_receipt(rt, source, result, hasher, started), provider.handle)
    finally:
        for source in sources:
            source.cleanup()
    _conclude(request.files, errors)


def _conclude(files: list[str], outcomes: list[TmpupError | None]) -> None:
    failed = [e for e in outcomes if e is not None]
    if not failed:
        return
    if len(files) == 1:
        raise failed[0]
    raise several_failed(failed, len(files), "files")
