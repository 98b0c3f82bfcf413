"""`tmpup upload`: validate every input, upload (optionally several at once), print and record results."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tmpup.errors import (
    ExitCode,
    InputError,
    PartialFailure,
    TmpupError,
    UsageError,
)
from tmpup.output import result_record
from tmpup.providers.base import MultiUploader, UploadOptions
from tmpup.runtime import Runtime
from tmpup.sources import CANCEL, ContiguousHash, Source, Throttle, open_source

MAX_NAME_LENGTH = 255


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


def check_name(name: str) -> str:
    """Refuse names no API stores faithfully and no download could recreate safely."""
    if not name or not name.strip():
        raise InputError("the upload name is empty", hint="pass --name NAME")
    bad = next((ch for ch in name if ch in "\r\n\x00"), None)
    if bad is not None:
        raise InputError(f"the upload name {name!r} contains a control character ({bad!r})")
    if any("\udc80" <= ch <= "\udcff" for ch in name):
        # Bytes that are not UTF-8 (a file name from another system): no API can store them as sent.
        raise InputError(f"the upload name {name!r} is not valid UTF-8", hint="pass --name NAME")
    if "/" in name or "\\" in name:
        raise InputError(f"the upload name {name!r} contains a path separator", hint="pass a plain file name")
    if name.strip() in (".", ".."):
        raise InputError(f"the upload name {name!r} is not a file name", hint="pass --name NAME")
    if len(name.encode("utf-8")) > MAX_NAME_LENGTH:
        raise InputError(f"the upload name is longer than {MAX_NAME_LENGTH} bytes", hint="pass a shorter --name")
    return name


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
    if request.jobs < 1:
        raise UsageError("-j/--jobs must be at least 1")
    if request.name is not None:
        check_name(request.name)

    provider = rt.provider  # configuration errors surface before any file is read
    provider.check_options(_options(rt, request, request.name or "check"))
    if isinstance(provider, MultiUploader) and len(files) > 1:
        _run_multi(rt, request)
        return

    outcomes: list[TmpupError | None] = [None] * len(files)
    rt.progress.start()
    try:
        if request.jobs == 1 or len(files) == 1:
            for index, arg in enumerate(files):
                outcomes[index] = _print(rt, _upload_one(rt, request, arg))
        else:
            _run_parallel(rt, request, outcomes)
    finally:
        rt.progress.stop()
    _conclude(files, outcomes)


def _run_parallel(rt: Runtime, request: UploadRequest, outcomes: list[TmpupError | None]) -> None:
    """Upload with a pool; results still come out in input order."""
    with ThreadPoolExecutor(max_workers=request.jobs, thread_name_prefix="upload") as pool:
        futures: list[Future[_Outcome]] = [pool.submit(_upload_one, rt, request, arg) for arg in request.files]
        try:
            for index, future in enumerate(futures):
                outcomes[index] = _print(rt, future.result())
        except BaseException:
            CANCEL.set()  # Ctrl-C: the workers stop at their next block
            raise


_Outcome = tuple[dict[str, Any] | None, TmpupError | None]


def _print(rt: Runtime, outcome: _Outcome) -> TmpupError | None:
    record, error = outcome
    if record is not None:
        rt.output.result(record, rt.provider.handle)
    return error


def _upload_one(rt: Runtime, request: UploadRequest, arg: str) -> _Outcome:
    """Upload one file and record its receipt; return its result record or its error."""
    source: Source | None = None
    try:
        source = open_source(arg, spool_dir=rt.state.spool_dir)
        name = check_name(request.name or source.default_name)
        options = _options(rt, request, name)
        if request.limit_rate:
            source.throttle = Throttle(request.limit_rate)
        hasher = ContiguousHash(source) if request.checksum else None
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
        record = result_record(
            profile=rt.settings.profile,
            provider=rt.settings.provider,
            file=str(source.path.resolve()) if not source.temporary else "-",
            result=result,
            sha256=hasher.finish() if hasher is not None else None,
            uploaded_at=started,
        )
        rt.state.add_receipt(record)
        return record, None
    except TmpupError as exc:
        if len(request.files) == 1 or exc.exit_code == ExitCode.INTERRUPTED:
            raise
        rt.messages.error(f"{arg}: {exc}")
        return None, exc
    finally:
        if source is not None:
            source.cleanup()


def _options(rt: Runtime, request: UploadRequest, name: str) -> UploadOptions:
    ttl = request.ttl if request.ttl is not None else rt.settings.get("ttl")
    chunk = request.chunk_size if request.chunk_size is not None else rt.settings.get("chunk_size")
    return UploadOptions(
        name=name,
        ttl=int(ttl) if ttl is not None else None,
        chunk_size=int(chunk) if chunk is not None else None,
        resumable=request.resumable,
        checksum=request.checksum,
    )


def _run_multi(rt: Runtime, request: UploadRequest) -> None:
    """Providers that take several files in one request (Enterprise Tester)."""
    provider = rt.provider
    assert isinstance(provider, MultiUploader)
    sources: list[Source] = []
    errors: list[TmpupError | None] = []
    try:
        for arg in request.files:
            try:
                sources.append(open_source(arg, spool_dir=rt.state.spool_dir))
                errors.append(None)
            except TmpupError as exc:
                rt.messages.error(f"{arg}: {exc}")
                errors.append(exc)
        if sources:
            hashers = [ContiguousHash(s) if request.checksum else None for s in sources]
            for source, hasher in zip(sources, hashers, strict=True):
                if hasher is not None:
                    source.observers.append(hasher)
            options = [_options(rt, request, s.default_name) for s in sources]
            rt.progress.start()
            try:
                tasks = [rt.progress.task(o.name, s.size) for s, o in zip(sources, options, strict=True)]
                started = rt.clock()
                results = provider.upload_many(sources, options, tasks)
                for task in tasks:
                    task.finish()
            finally:
                rt.progress.stop()
            for source, result, hasher in zip(sources, results, hashers, strict=True):
                source.check_unchanged()
                record = result_record(
                    profile=rt.settings.profile,
                    provider=rt.settings.provider,
                    file=str(source.path.resolve()) if not source.temporary else "-",
                    result=result,
                    sha256=hasher.finish() if hasher is not None else None,
                    uploaded_at=started,
                )
                rt.state.add_receipt(record)
                rt.output.result(record, provider.handle)
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
    raise PartialFailure(f"{len(failed)} of {len(files)} files failed (each reported above)")
