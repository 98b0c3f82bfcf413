"""Exit 9 (integrity failure) through the emulator's `corrupt` fault, for every check tmpup makes.

The fault makes an answer misreport what the emulator stored (the bytes themselves are stored
exactly): one byte more in a reported size or tus offset, a wrong Pyrus `md5_hash`, one byte more in
a download's `Content-Range` total. Each case runs the real CLI (`tmpup.cli.main`) against the
in-process emulator and asserts exit 9, nothing on stdout, one `tmpup: error:` line on stderr, and
that nothing local is lost: the source file is untouched, no receipt claims the failed upload, a
resumable upload leaves no half-written state, another file's interrupted upload keeps its record,
and a partial download keeps every byte it had.

What tmpup checks, and so what is covered here:

* upload: Thulium's and KF5's `size`, Enterprise Tester's `Size`, Pyrus's MD5, and for tus (the
  generic mount and Qlik with `--resumable`) a PATCH answer's `Upload-Offset` past the file's size.
  A plain Qlik upload is answered with a `Location` only: there is nothing to verify, so no case.
* download (qlik, tus, kf5, pyrus, enterprise-tester; Thulium has none): a continued download whose
  206 announces more bytes than arrive.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import Result, make_file, run, sha256_file, write_qlik_profile, write_tus_profile
from tests.test_cli import assert_one_line_error
from tests.test_enterprise_tester import UPLOAD_PATH as ET_UPLOAD_PATH
from tests.test_enterprise_tester import et_config
from tests.test_kf5 import kf5_config
from tests.test_pyrus import pyrus_config, pyrus_download_id
from tests.test_thulium import thulium_config
from tests.test_tus_client import assert_clean, records
from tmpup.emulator import Emulator, Fault

MIB = 1024 * 1024
SIZE = 2 * MIB + 5  # more than one 1 MiB block, an odd tail

Record = dict[str, Any]


@dataclass(frozen=True)
class Case:
    """One provider: how to write its profile, which requests to corrupt, how to get its bytes back."""

    id: str
    configure: Callable[[Emulator, Path], str]
    upload_method: str  # the request whose answer tmpup verifies
    upload_path: str  # regex of its path
    upload_args: tuple[str, ...] = ()
    needle: str = ""  # what the error line says
    download_path: str | None = None  # regex of the GET of the bytes; None: no download
    download_id: Callable[[Emulator, Record], str] | None = None

    def __str__(self) -> str:
        return self.id


def _qlik(emulator: Emulator, config_path: Path) -> str:
    return write_qlik_profile(emulator, config_path)


def _tus(emulator: Emulator, config_path: Path) -> str:
    return write_tus_profile(emulator, config_path)


def _field(name: str) -> Callable[[Emulator, Record], str]:
    return lambda _emulator, record: str(record[name])


def _pyrus_number(emulator: Emulator, record: Record) -> str:
    return pyrus_download_id(emulator, record["id"])


TUS_UPLOAD = r"/files/[0-9a-f]+$"  # an upload's URL (HEAD, PATCH, GET), not the creation endpoint
CASES = [
    Case(
        "qlik",
        _qlik,
        "PATCH",
        r"/temp-contents/files/",
        ("--resumable",),
        "claims 2097158 bytes of a 2097157-byte upload",
        r"/temp-contents/[0-9a-f]{24}$",
        _field("id"),
    ),
    Case(
        "tus",
        _tus,
        "PATCH",
        TUS_UPLOAD,
        (),
        "claims 2097158 bytes of a 2097157-byte upload",
        TUS_UPLOAD,
        _field("url"),
    ),
    Case("thulium", thulium_config, "POST", r"/temporary_files", (), "but the server stored 2097158"),
    Case(
        "pyrus",
        pyrus_config,
        "POST",
        r"/v4/files/upload",
        (),
        "MD5",
        r"/v4/files/download/",
        _pyrus_number,
    ),
    Case(
        "kf5",
        kf5_config,
        "POST",
        r"/attachments\.json",
        (),
        "has 2097158",
        r"/attachments/download/",
        _field("id"),
    ),
    Case(
        "enterprise-tester",
        et_config,
        "POST",
        ET_UPLOAD_PATH,
        (),
        "arrived with 2097158 bytes instead of 2097157",
        r"/attachment/[^/]+/contents$",
        _field("id"),
    ),
]
RESUMABLE = [c for c in CASES if "--resumable" in c.upload_args or c.id == "tus"]
DOWNLOADS = [c for c in CASES if c.download_path is not None]


@pytest.fixture
def case(request: pytest.FixtureRequest, emulator: Emulator, config_path: Path) -> Iterator[Case]:
    chosen: Case = request.param
    chosen.configure(emulator, config_path)
    yield chosen


def over(cases: list[Case]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("case", cases, ids=str, indirect=True)


def assert_exit_9(result: Result, needle: str = "") -> None:
    assert result.code == 9, (result.code, result.err)
    assert result.out == ""
    assert_one_line_error(result.err, needle)


def receipts(state_dir: Path) -> list[Record]:
    path = state_dir / "receipts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def assert_part_kept_and_continued(download_id: str, target: Path, data: bytes) -> int:
    """After a failed download: no file under the final name, a .part of the file's first bytes only,
    and `--continue` (the fault gone) completes it exactly. Returns how many bytes the .part held."""
    assert not target.exists()
    part = target.with_name(target.name + ".part")
    held = part.read_bytes()
    assert held == data[: len(held)]
    again = run("download", download_id, "-o", str(target), "--continue", "--progress", "none")
    assert again.code == 0, again.err
    assert target.read_bytes() == data and not part.exists()
    return len(held)


def upload(*args: str) -> Record:
    result = run("upload", *args, "--json", "--progress", "none")
    assert result.code == 0, result.err
    (line,) = result.lines
    record: Record = json.loads(line)
    return record


# -- uploads -------------------------------------------------------------------------------------


@over(CASES)
def test_an_upload_answer_that_misreports_what_was_stored_is_exit_9(
    case: Case, emulator: Emulator, state_dir: Path, tmp_path: Path
) -> None:
    src = make_file(tmp_path / "s.bin", SIZE)
    digest, mtime = sha256_file(src), src.stat().st_mtime_ns
    fault = emulator.faults.add(Fault(provider=case.id, method=case.upload_method, path=case.upload_path, corrupt=True))

    result = run("upload", str(src), *case.upload_args, "--progress", "none")

    assert_exit_9(result, case.needle)
    assert fault not in [f for f, _ in emulator.faults.active()]  # the corrupted answer was really given
    assert (sha256_file(src), src.stat().st_mtime_ns) == (digest, mtime)
    assert receipts(state_dir) == []  # nothing claims the upload succeeded
    assert_clean(state_dir)  # no record, lock, temp file or spool left half-done
    stored = [b for b in emulator.store.blobs(case.id) if b.size]
    if case.id == "tus":
        # A damaged tus upload is terminated (the server offers termination): nobody can use it.
        assert stored == []
    else:
        # The emulator stored the bytes exactly: the mismatch is in its answer only.
        (blob,) = stored
        assert emulator.blob_sha256(case.id, blob.id) == digest

    # Nothing stands in the way of the next run.
    again = upload(str(src), *case.upload_args)
    assert again["size"] == SIZE and again["resumed"] is False
    assert len(receipts(state_dir)) == 1


@over(RESUMABLE)
def test_a_resumed_upload_whose_server_claims_too_much_loses_nothing_local(
    case: Case, emulator: Emulator, state_dir: Path, tmp_path: Path
) -> None:
    """The corrupt answer comes when an interrupted upload is continued; another file's interrupted
    upload keeps its record and can still be finished."""
    other = make_file(tmp_path / "other.bin", SIZE, seed=2)
    src = make_file(tmp_path / "s.bin", SIZE, seed=3)
    digest = sha256_file(src)
    # Both uploads break off half-way with a network error (exit 10) and keep their records.
    for path in (other, src):
        emulator.faults.add(Fault(provider=case.id, method="PATCH", path=case.upload_path, drop_after=MIB))
        cut = run("upload", str(path), *case.upload_args, "--retries", "0", "-q")
        assert cut.code == 10, cut.err
    assert len(records(state_dir)) == 2

    emulator.faults.add(Fault(provider=case.id, method="PATCH", path=case.upload_path, corrupt=True))
    result = run("upload", str(src), *case.upload_args, "-q")

    assert_exit_9(result, case.needle)
    assert sha256_file(src) == digest
    assert receipts(state_dir) == []
    (left,) = records(state_dir)  # the corrupt upload is dropped; the other one is kept
    assert left["file"]["path"] == str(other.resolve())
    done = run("resume", str(other), "--json", "--progress", "none")
    assert done.code == 0, done.err
    finished = json.loads(done.out)
    assert finished["resumed"] is True
    assert emulator.blob_sha256(case.id, finished["id"]) == sha256_file(other)
    fresh = upload(str(src), *case.upload_args)
    assert emulator.blob_sha256(case.id, fresh["id"]) == digest
    assert_clean(state_dir)


# -- downloads -----------------------------------------------------------------------------------


def uploaded_for_download(case: Case, emulator: Emulator, tmp_path: Path) -> tuple[str, bytes, Path]:
    """Upload a file for a download test: the id to download, the file's bytes, the target path."""
    assert case.download_id is not None and case.download_path is not None
    src = make_file(tmp_path / "s.bin", SIZE)
    return case.download_id(emulator, upload(str(src))), src.read_bytes(), tmp_path / "copy.bin"


@over(DOWNLOADS)
def test_a_continued_download_that_announces_more_than_it_sends_is_exit_9(
    case: Case, emulator: Emulator, tmp_path: Path
) -> None:
    download_id, data, target = uploaded_for_download(case, emulator, tmp_path)
    part = target.with_name("copy.bin.part")
    part.write_bytes(data[:1000])
    emulator.faults.add(Fault(provider=case.id, method="GET", path=case.download_path, corrupt=True))

    result = run("download", download_id, "-o", str(target), "--continue", "--progress", "none")

    assert_exit_9(result, f"announced {SIZE + 1}")
    held = assert_part_kept_and_continued(download_id, target, data)
    assert held >= 1000  # what the .part had, and only the file's bytes


@over(DOWNLOADS)
def test_a_download_cut_short_of_its_announced_length_keeps_the_part(
    case: Case, emulator: Emulator, tmp_path: Path
) -> None:
    """A 200 whose `Content-Length` is one byte more than the bytes sent (the connection then closes)."""
    download_id, data, target = uploaded_for_download(case, emulator, tmp_path)
    emulator.faults.add(Fault(provider=case.id, method="GET", path=case.download_path, corrupt=True))

    result = run("download", download_id, "-o", str(target), "-q")

    # The body ends before its Content-Length: tmpup continues the cut within the run and finds the file
    # one byte shorter than first announced (exit 9), keeping every byte that arrived.
    assert result.code == 9, (result.code, result.err)
    assert result.out == ""
    assert_one_line_error(result.err, "--force")
    assert_part_kept_and_continued(download_id, target, data)


def test_the_fault_is_documented_where_faults_are_listed(emulator: Emulator) -> None:
    listing = requests.get(f"{emulator.url}/_emulator/faults").json()
    assert "corrupt" in listing["kinds"]
    added = requests.post(f"{emulator.url}/_emulator/faults", json={"provider": "kf5", "corrupt": True})
    assert added.status_code == 201 and added.json()["fault"]["corrupt"] is True
    (active,) = requests.get(f"{emulator.url}/_emulator/faults").json()["faults"]
    assert (active["corrupt"], active["remaining"]) == (True, 1)
