"""Cases the provider modules that upload in one request with Basic auth (`test_kf5`, `test_thulium`)
share, and what they need for them: each test stays in its module and states the provider's facts
(its fault message, the result field that is its handle), the steps and checks are written once here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import make_file, run, run_process, sha256_file
from tmpup.emulator import Fault

#: File names that must arrive exactly: spaces, URL and shell punctuation, quotes, several scripts.
ODD_NAMES = [
    "plain.txt",
    "with space.txt",
    "a&b#c%d;e=f+g?.bin",
    "quote\"s and 'apos'.txt",
    "ünïcødé отчёт 日本 تقرير.csv",
    "100% done #1 & more.pdf",
]


class RecordingTask:
    """A progress task (`tmpup.progress.Task`) that records what a provider reports."""

    def __init__(self) -> None:
        self.steps: list[int] = []  # every advance(n), in order
        self.completed = 0

    def advance(self, n: int) -> None:
        self.steps.append(n)
        self.completed += n

    def set_completed(self, n: int) -> None:
        self.completed = n

    def resume_at(self, n: int) -> None:
        self.completed = n

    def finish(self, ok: bool = True) -> None:
        pass


def upload_recording_progress(path: Path, size: int) -> tuple[Any, RecordingTask]:
    """Make a file of `size` bytes at `path` and upload it through the default profile's provider
    itself (no CLI), with a `RecordingTask`; return the provider's result and the task."""
    from tmpup.providers.base import UploadOptions
    from tmpup.runtime import GlobalOptions, Runtime
    from tmpup.sources import open_source

    source = open_source(str(make_file(path, size)))
    task = RecordingTask()
    result = Runtime.build(GlobalOptions()).provider.upload(source, UploadOptions(name=path.name), task)
    return result, task


def assert_progress_json_reaches_the_total(tmp_path: Path) -> None:
    """`--progress json` starts with the file's size as its total and ends done with every byte."""
    src = make_file(tmp_path / "p.bin", 2 * 1024 * 1024 + 1)
    result = run("upload", str(src), "--progress", "json")
    assert result.code == 0, result.err
    events = [json.loads(line) for line in result.err.splitlines()]
    assert events[0]["event"] == "start" and events[0]["total"] == src.stat().st_size
    assert events[-1]["event"] == "done" and events[-1]["bytes"] == src.stat().st_size


def assert_two_503s_are_retried_without_duplicates(emulator: Any, tmp_path: Path, provider: str, handle: str) -> None:
    """The upload POST answered 503 twice, then accepted: two retry notes, one stored upload (the one
    the result's `handle` field names) holding the file's bytes."""
    emulator.faults.add(Fault(provider=provider, method="POST", status=503, retry_after=0, times=2))
    src = make_file(tmp_path / "f.bin", 2 * 1024 * 1024 + 5)
    result = run("upload", str(src), "--json", "--progress", "none")
    assert result.code == 0, result.err
    assert result.err.count("server answered 503; retrying") == 2
    stored = json.loads(result.out)[handle]
    assert [b.id for b in emulator.store.blobs(provider)] == [stored]
    assert emulator.blob_sha256(provider, stored) == sha256_file(src)


def assert_500s_after_all_retries_are_transient(
    emulator: Any, tmp_path: Path, provider: str, *, message: str, shown: str
) -> None:
    """Every request answered 500 with the API's error `message`: exit 10 once the retries are spent,
    the error holding `shown` (the message as tmpup words it); nothing on stdout."""
    emulator.faults.add(Fault(provider=provider, status=500, times=None, message=message))
    result = run("upload", str(make_file(tmp_path / "f.bin", 10)), "--progress", "none", "--retries", "1")
    assert result.code == 10
    assert shown in result.err
    assert result.out == ""


def assert_an_environment_profile_uploads(
    emulator: Any, tmp_path: Path, env: dict[str, str], *, handle: str, secret: str
) -> None:
    """A real `tmpup upload --json` with no config file, its profile from the TMPUP_* variables of
    `env` alone: profile "env", the file's bytes stored under the result's `handle` field, and the
    `secret` nowhere in the output."""
    src = make_file(tmp_path / "env.txt", 42)
    result = run_process("upload", str(src), "--json", env=env)
    assert result.code == 0, result.err
    record = json.loads(result.out)
    assert record["profile"] == "env" and record["size"] == 42
    assert emulator.blob_sha256(env["TMPUP_PROVIDER"], record[handle]) == sha256_file(src)
    assert secret not in result.out + result.err
