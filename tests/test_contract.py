"""The contract suite (DESIGN.md section 8): the same cases over every provider.

Every case runs the real CLI, in-process through `tmpup.cli.main` or as a real `python -m tmpup`
process where signals or pipes matter, against the real emulator over HTTP on 127.0.0.1. Nothing
mocks `requests`; where a case needs a server that misbehaves, the emulator's own fault injection
(or, for a lying answer, a wrapped emulator route) provides it.

What differs between providers is stated once, in a `ProviderSpec` per provider (`SPECS`): how its
profile is written (the per-provider builders of the provider test modules, reused), which field of
the JSON result is the handle it prints, where the emulator keeps the bytes, what `download` takes,
which operations its API lacks. A case never skips: where a provider cannot do something, the case
asserts the documented answer instead (exit 8 for a Thulium download, exit 7 for an empty file on
Pyrus). The few cases that exist only for some providers (expiry needs a TTL the API reports; a
damaged upload needs an API that reports what it stored) are parametrised over those providers only.

Matrix, each row over all six providers unless noted:

* round trip upload -> info -> download of 0 B, 1 B and 3 MiB, sha256 of stored and downloaded bytes,
  every JSON result field of DESIGN.md section 2;
* odd names (punctuation, quotes, Cyrillic, CJK, Arabic, emoji) stored exactly, and given back by
  `info` and as the downloaded file's name (taken from the server: the receipts are removed first);
* exit codes 3, 4, 5, 6 (qlik, tus), 7, 8, 9, 10, 11, 130, each with a one-line `tmpup: error:`;
* a 503 that clears after one retry; `--progress json` growing to the total; stdout carrying only
  results, and no ANSI escape reaching a pipe.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Result, make_file, run, run_process, sha256_file, upload_record
from tests.test_cli import ANSI, assert_one_line_error
from tests.test_enterprise_tester import UPLOAD_PATH as ET_UPLOAD_PATH
from tests.test_enterprise_tester import et_config
from tests.test_kf5 import kf5_config
from tests.test_pyrus import pyrus_config, pyrus_download_id
from tests.test_thulium import thulium_config
from tests.test_tus_client import finish, records, start, wait_until
from tests.test_tus_client import tus_profile as tus_profile  # a fixture, requested by name below
from tmpup.emulator import Credentials, Emulator, Fault
from tmpup.emulator.store import Blob
from tmpup.output import RESULT_FIELDS

MIB = 1024 * 1024
BIG = 3 * MIB + 7  # "multi-MiB": several 1 MiB read blocks and an odd tail
TUS_TOKEN = "contract-tus-token"
ZWNJ, ZWJ = "\u200c", "\u200d"  # zero-width (non-)joiner, invisible in an editor
NAMES = {
    "space": "with space.txt",
    "punctuation": "a&b#c%d;e=f+g?.bin",
    "quotes": "quote\"s and 'apos'.txt",
    "cyrillic": "Отчёт за март.csv",
    "cjk": "日本語の資料 第2版.pdf",
    "arabic": "تقرير الربع الأول.docx",
    "persian-zwnj": "گزارش" + ZWNJ + "های مالی.pdf",  # the non-joiner is part of Persian spelling
    "emoji": "party 🎉 time 👍🏽.png",
    "emoji-zwj": "dev 👩" + ZWJ + "💻 notes.txt",  # one glyph: woman, joiner, laptop
}

Record = dict[str, Any]
Configure = Callable[[pytest.FixtureRequest, Emulator, Path], str]
Lookup = Callable[[Emulator, Record], str]


# -- the provider facts --------------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderSpec:
    """What the contract needs to know about one provider; everything else is the same for all."""

    id: str
    configure: Configure  # writes the default profile for the emulator, returns its name
    secret_file: str  # file beside the config holding the profile's secret
    handle: str  # the JSON result field human mode prints (what a user pastes next)
    upload_path: str  # regex of the upload request's path, for faults
    store_key: Lookup  # the emulator's store key of an upload
    download_id: Lookup | None  # what `download` takes to give the bytes back; None: no download (exit 8)
    downloads_handle: bool  # whether `download` takes the printed handle itself
    unknown_id: str  # a well-formed id that does not exist, for `info`
    unknown_download_id: str | None = None  # ... for `download`, when it takes another kind of id
    accepts_empty: bool = True  # Pyrus refuses an empty file (exit 7)
    deletable: bool = False
    resumable: bool = False  # takes --resumable (the providers that speak tus)
    ttl: int | None = None  # seconds the API keeps an upload by default, when the API reports expiry
    # arranges for the next upload to fail the provider's own check of what the server stored
    misreport_upload: Callable[[Emulator, pytest.MonkeyPatch], None] | None = None

    def __str__(self) -> str:
        return self.id


def _builder(build: Callable[[Any, Path], str]) -> Configure:
    return lambda _request, emulator, config_path: build(emulator, config_path)


def _fixture(name: str) -> Configure:
    def configure(request: pytest.FixtureRequest, _emulator: Emulator, _config_path: Path) -> str:
        profile: str = request.getfixturevalue(name)
        return profile

    return configure


def _tus_with_token(request: pytest.FixtureRequest, emulator: Emulator, config_path: Path) -> str:
    """`tus_profile`, plus a Bearer token from a file: this module's emulator demands one, so 401 is testable."""
    profile = _fixture("tus_profile")(request, emulator, config_path)
    secret = config_path.parent / "tus-token"
    secret.write_text(TUS_TOKEN + "\n")
    with config_path.open("a", encoding="utf-8") as fh:  # the profile's table is the last one in the file
        fh.write(f"token_file = {json.dumps(str(secret))}\n")
    return profile


def _field(name: str) -> Lookup:
    return lambda _emulator, record: str(record[name])


def _pyrus_number(emulator: Emulator, record: Record) -> str:
    return pyrus_download_id(emulator, record["id"])


def _understate_size(provider: str) -> Callable[[Emulator, pytest.MonkeyPatch], None]:
    """The mount answers uploads with one byte less than it stored (a cut-off body it did not notice)."""

    def shrink(value: Any) -> Any:
        if isinstance(value, list):
            return [shrink(v) for v in value]
        if isinstance(value, dict):
            return {k: v - 1 if k.lower() == "size" and isinstance(v, int) else shrink(v) for k, v in value.items()}
        return value

    def arrange(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
        mount = emulator.mounts[provider]
        original = mount.upload  # type: ignore[attr-defined]

        def lying(*args: Any, **kwargs: Any) -> Any:
            answer = original(*args, **kwargs)
            answer.set_data(json.dumps(shrink(json.loads(answer.get_data()))))
            return answer

        monkeypatch.setattr(mount, "upload", lying)

    return arrange


def _damage_pyrus_upload(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The emulator stores the next upload damaged, so its MD5 differs from the bytes sent."""
    monkeypatch.setattr(emulator.mounts["pyrus"], "corrupt_uploads", 1)


SPECS = [
    ProviderSpec(
        id="qlik",
        configure=_fixture("qlik_profile"),
        secret_file="qlik-token",
        handle="id",
        upload_path=r"/temp-contents",
        store_key=_field("id"),
        download_id=_field("id"),
        downloads_handle=True,
        unknown_id="ffffffffffffffffffffffff",
        resumable=True,
        ttl=3600,
    ),
    ProviderSpec(
        id="tus",
        configure=_tus_with_token,
        secret_file="tus-token",
        handle="url",
        upload_path=r"/files/?$",
        store_key=_field("id"),
        download_id=_field("url"),
        downloads_handle=True,
        unknown_id="0123456789abcdef0123456789abcdef",
        deletable=True,
        resumable=True,
        ttl=24 * 3600,
    ),
    ProviderSpec(
        id="thulium",
        configure=_builder(thulium_config),
        secret_file="thulium-password",
        handle="token",
        upload_path=r"/temporary_files",
        store_key=_field("token"),
        download_id=None,
        downloads_handle=False,
        unknown_id="180174033853be57b76ed6a",
        misreport_upload=_understate_size("thulium"),
    ),
    ProviderSpec(
        id="pyrus",
        configure=_builder(pyrus_config),
        secret_file="pyrus-security-key",
        handle="id",
        upload_path=r"/v4/files/upload",
        store_key=_pyrus_number,  # EMULATOR-ONLY numbering, see pyrus_download_id
        download_id=_pyrus_number,
        downloads_handle=False,  # a guid cannot be downloaded: exit 8
        unknown_id="08923d83-255b-4f18-b0eb-5c4d3b9bf1d2",
        unknown_download_id="999999",
        accepts_empty=False,
        misreport_upload=_damage_pyrus_upload,
    ),
    ProviderSpec(
        id="kf5",
        configure=_builder(kf5_config),
        secret_file="kf5-api_token",
        handle="token",
        upload_path=r"/attachments\.json",
        store_key=_field("id"),
        download_id=_field("id"),
        downloads_handle=True,  # the token, through the local receipt
        unknown_id="999999",
        deletable=True,
        misreport_upload=_understate_size("kf5"),
    ),
    ProviderSpec(
        id="enterprise-tester",
        configure=_builder(et_config),
        secret_file="et-password",
        handle="id",
        upload_path=ET_UPLOAD_PATH,
        store_key=_field("id"),
        download_id=_field("id"),
        downloads_handle=True,
        unknown_id="4bb709c2-e0e7-4af3-9f60-a045016a9610",
        misreport_upload=_understate_size("enterprise-tester"),
    ),
]


def providers(where: Callable[[ProviderSpec], bool]) -> pytest.MarkDecorator:
    """Run a case only over the providers it exists for (the others have no such path at all)."""
    return pytest.mark.parametrize("spec", [s for s in SPECS if where(s)], ids=str, indirect=True)


# -- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """The real emulator; its generic tus mount demands a Bearer token (the default demands none)."""
    with Emulator(credentials=Credentials(tus_token=TUS_TOKEN)) as emu:
        yield emu


@pytest.fixture(params=SPECS, ids=str)
def spec(request: pytest.FixtureRequest) -> ProviderSpec:
    param: ProviderSpec = request.param
    return param


@pytest.fixture(autouse=True)
def profile(spec: ProviderSpec, request: pytest.FixtureRequest, emulator: Emulator, config_path: Path) -> str:
    """The provider's default profile, pointing at the emulator."""
    return spec.configure(request, emulator, config_path)


def assert_error(result: Result, code: int, needle: str = "") -> None:
    """Exit `code`, nothing on stdout, one line `tmpup: error: ...` on stderr, no traceback, no ANSI."""
    assert result.code == code, (result.code, result.err)
    assert result.out == ""
    assert_one_line_error(result.err, needle)
    assert not ANSI.search(result.err)


def stored(spec: ProviderSpec, emulator: Emulator, record: Record) -> Blob:
    blob = emulator.store.get(spec.id, spec.store_key(emulator, record))
    assert blob is not None, f"the emulator has no {spec.id} upload for {record}"
    return blob


# -- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, BIG], ids=["0B", "1B", "3MiB"])
def test_round_trip(spec: ProviderSpec, profile: str, emulator: Emulator, tmp_path: Path, size: int) -> None:
    src = make_file(tmp_path / "src.bin", size)
    if size == 0 and not spec.accepts_empty:
        assert_error(run("upload", str(src), "--progress", "none"), 7, "empty")
        assert emulator.store.blobs(spec.id) == []
        return

    record = upload_record(str(src), "--checksum")
    assert set(RESULT_FIELDS) <= record.keys(), sorted(set(RESULT_FIELDS) - record.keys())
    assert (record["profile"], record["provider"], record["file"]) == (profile, spec.id, str(src.resolve()))
    assert (record["name"], record["size"], record["resumed"]) == ("src.bin", size, False)
    assert record["sha256"] == sha256_file(src)
    assert isinstance(record[spec.handle], str) and record[spec.handle]
    if record["expires_at"] is not None:
        assert dt.datetime.fromisoformat(record["expires_at"].replace("Z", "+00:00")) > dt.datetime.now(dt.timezone.utc)
    blob = stored(spec, emulator, record)
    assert (blob.name, blob.size) == ("src.bin", size)
    assert emulator.blob_sha256(spec.id, blob.id) == sha256_file(src)

    info = run("info", record[spec.handle], "--json")
    assert info.code == 0, info.err
    fields = json.loads(info.out)
    assert (fields["name"], fields["size"]) == ("src.bin", size), fields

    out = tmp_path / "out"
    out.mkdir()
    if spec.download_id is None:
        assert_error(run("download", record[spec.handle], "-o", str(out)), 8, spec.id)
        return
    got = run("download", spec.download_id(emulator, record), "-o", str(out), "--json", "--progress", "none")
    assert got.code == 0, got.err
    assert json.loads(got.out)["file"] == str(out / "src.bin")
    assert sha256_file(out / "src.bin") == sha256_file(src)


def test_download_of_the_printed_handle(spec: ProviderSpec, emulator: Emulator, tmp_path: Path) -> None:
    """What `upload` printed is what a user passes to `download` next: bytes back, or exit 8.

    The download goes to the current directory, where a file of that name (the source) already
    exists: a provider that cannot download must say so before anything else.
    """
    src = make_file(tmp_path / "h.bin", 1000)
    record = upload_record(str(src))
    if not spec.downloads_handle:
        assert_error(run("download", record[spec.handle], "--progress", "none"), 8, spec.id)
        return
    out = tmp_path / "out"
    out.mkdir()
    got = run("download", record[spec.handle], "-o", str(out), "--progress", "none")
    assert got.code == 0, got.err
    assert sha256_file(out / "h.bin") == sha256_file(src)


@pytest.mark.parametrize("name", NAMES.values(), ids=NAMES.keys())
def test_odd_names_arrive_exactly_and_come_back(
    spec: ProviderSpec, emulator: Emulator, tmp_path: Path, state_dir: Path, name: str
) -> None:
    src = make_file(tmp_path / "data.bin", 1000)
    record = upload_record(str(src), "--name", name)
    assert record["name"] == name
    assert stored(spec, emulator, record).name == name
    info = run("info", record[spec.handle], "--json")
    assert info.code == 0, info.err
    assert json.loads(info.out)["name"] == name
    if spec.download_id is None:
        assert_error(run("download", record[spec.handle]), 8, spec.id)
        return
    # Without the receipt, the file name can only come from the server's answer.
    (state_dir / "receipts.jsonl").unlink()
    dest = tmp_path / "dl"
    dest.mkdir()
    got = run("download", spec.download_id(emulator, record), "-o", str(dest), "--json", "--progress", "none")
    assert got.code == 0, got.err
    assert json.loads(got.out)["file"] == str(dest / name)
    assert sha256_file(dest / name) == sha256_file(src)


# -- exit codes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["unknown-profile", "missing-credential"])
def test_exit_3_configuration(
    spec: ProviderSpec, emulator: Emulator, config_path: Path, tmp_path: Path, kind: str
) -> None:
    src = str(make_file(tmp_path / "a.bin", 10))
    if kind == "unknown-profile":
        assert_error(run("upload", src, "-p", "nope", "--progress", "none"), 3, "nope")
    else:
        (config_path.parent / spec.secret_file).unlink()
        assert_error(run("upload", src, "--progress", "none"), 3, spec.secret_file)
    assert emulator.store.blobs(spec.id) == []


def test_exit_4_wrong_secret(spec: ProviderSpec, emulator: Emulator, config_path: Path, tmp_path: Path) -> None:
    (config_path.parent / spec.secret_file).write_text("not-the-secret-value\n")
    result = run("upload", str(make_file(tmp_path / "a.bin", 10)), "--progress", "none")
    assert_error(result, 4)
    assert "not-the-secret-value" not in result.err
    assert emulator.store.blobs(spec.id) == []


def test_exit_5_unknown_id(spec: ProviderSpec) -> None:
    assert_error(run("info", spec.unknown_id), 5)
    download_id = spec.unknown_download_id or spec.unknown_id
    assert_error(run("download", download_id, "--progress", "none"), 8 if spec.download_id is None else 5)


@providers(lambda s: s.ttl is not None)
def test_exit_6_expired(spec: ProviderSpec, emulator: Emulator, tmp_path: Path) -> None:
    assert spec.ttl is not None and spec.download_id is not None
    record = upload_record(str(make_file(tmp_path / "e.bin", 10)))
    emulator.clock.advance(spec.ttl + 1)
    assert_error(run("info", record[spec.handle]), 6)
    assert_error(run("download", spec.download_id(emulator, record), "-o", str(tmp_path / "e2.bin")), 6)
    assert not (tmp_path / "e2.bin").exists()


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_exit_7_rejected_input(spec: ProviderSpec, emulator: Emulator, tmp_path: Path, kind: str) -> None:
    target = tmp_path / "nope.bin" if kind == "missing" else tmp_path
    assert_error(run("upload", str(target), "--progress", "none"), 7, str(target))
    assert emulator.store.blobs(spec.id) == []


def test_exit_8_delete(spec: ProviderSpec, emulator: Emulator, tmp_path: Path) -> None:
    """`delete` removes the upload where the API can, and is refused with exit 8 where it cannot."""
    record = upload_record(str(make_file(tmp_path / "d.bin", 10)))
    key = spec.store_key(emulator, record)
    result = run("delete", record[spec.handle])
    if not spec.deletable:
        assert_error(result, 8, spec.id)
        assert emulator.store.get(spec.id, key) is not None
        return
    assert result.code == 0, result.err
    assert result.out == ""
    assert emulator.store.get(spec.id, key) is None
    assert_error(run("info", record[spec.handle]), 5)


def test_exit_8_resumable(spec: ProviderSpec, emulator: Emulator, tmp_path: Path) -> None:
    """`--resumable` is honoured by the tus-speaking providers, refused with exit 8 by the others."""
    src = make_file(tmp_path / "r.bin", MIB + 1)
    if not spec.resumable:
        assert_error(run("upload", str(src), "--resumable", "--progress", "none"), 8, "resumabl")
        assert emulator.store.blobs(spec.id) == []
        return
    record = upload_record(str(src), "--resumable")
    assert emulator.blob_sha256(spec.id, spec.store_key(emulator, record)) == sha256_file(src)


@providers(lambda s: s.download_id is not None)
def test_exit_9_partial_download_larger_than_the_file(spec: ProviderSpec, emulator: Emulator, tmp_path: Path) -> None:
    assert spec.download_id is not None
    record = upload_record(str(make_file(tmp_path / "i.bin", 100)))
    part = tmp_path / "copy.bin.part"
    part.write_bytes(b"x" * 1000)
    result = run("download", spec.download_id(emulator, record), "-o", str(tmp_path / "copy.bin"), "--continue")
    assert_error(result, 9)
    assert part.read_bytes() == b"x" * 1000  # nothing local is lost
    assert not (tmp_path / "copy.bin").exists()


@providers(lambda s: s.misreport_upload is not None)
def test_exit_9_upload_the_server_did_not_store_intact(
    spec: ProviderSpec, emulator: Emulator, tmp_path: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert spec.misreport_upload is not None
    spec.misreport_upload(emulator, monkeypatch)
    assert_error(run("upload", str(make_file(tmp_path / "s.bin", 4096)), "--progress", "none"), 9)
    assert not (state_dir / "receipts.jsonl").exists()  # a failed upload leaves no receipt


def test_exit_10_server_errors_after_all_retries(spec: ProviderSpec, emulator: Emulator, tmp_path: Path) -> None:
    emulator.faults.add(
        Fault(provider=spec.id, method="POST", path=spec.upload_path, status=503, retry_after=0, times=None)
    )
    # -q: the retry is announced as a warning; quiet leaves only the error
    result = run("upload", str(make_file(tmp_path / "t.bin", 10)), "-q", "--retries", "1")
    assert_error(result, 10, "503")
    assert not [b for b in emulator.store.blobs(spec.id) if b.complete]


def test_a_server_error_that_clears_is_retried(spec: ProviderSpec, emulator: Emulator, tmp_path: Path) -> None:
    fault = emulator.faults.add(
        Fault(provider=spec.id, method="POST", path=spec.upload_path, status=503, retry_after=0, times=1)
    )
    src = make_file(tmp_path / "r.bin", BIG)
    result = run("upload", str(src), "--json", "--progress", "none")
    assert result.code == 0, result.err
    assert fault not in [f for f, _ in emulator.faults.active()]  # the 503 was really answered
    record = json.loads(result.out)
    assert emulator.blob_sha256(spec.id, spec.store_key(emulator, record)) == sha256_file(src)
    assert len([b for b in emulator.store.blobs(spec.id) if b.complete]) == 1  # no duplicate


def test_exit_11_one_of_several_files_missing(spec: ProviderSpec, emulator: Emulator, tmp_path: Path) -> None:
    good = [make_file(tmp_path / f"g{i}.bin", 100 + i, seed=i) for i in range(2)]
    result = run("upload", str(good[0]), str(tmp_path / "missing.bin"), str(good[1]), "--progress", "none")
    assert result.code == 11, result.err
    assert len(result.lines) == 2
    errors = result.err.splitlines()
    assert len(errors) == 2 and all(line.startswith("tmpup: error: ") for line in errors), errors
    assert "missing.bin" in errors[0] and "1 of 3 files failed" in errors[1]
    assert "Traceback" not in result.err and not ANSI.search(result.err)
    sums = {emulator.blob_sha256(spec.id, b.id) for b in emulator.store.blobs(spec.id) if b.complete}
    assert sums == {sha256_file(g) for g in good}


def test_exit_130_sigterm_mid_upload(spec: ProviderSpec, emulator: Emulator, tmp_path: Path, state_dir: Path) -> None:
    src = make_file(tmp_path / "slow.bin", BIG)
    resumable = ["--resumable"] if spec.resumable else []
    proc = start("upload", str(src), *resumable, "--limit-rate", "1M", "--progress", "none")
    try:
        wait_until(
            lambda: any(0 < b.offset < BIG for b in emulator.store.blobs(spec.id)), "the first bytes on the server"
        )
        proc.send_signal(signal.SIGTERM)
        code, out, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 130, err
    assert out == ""
    assert_one_line_error(err, "interrupted")
    if spec.resumable:
        assert f"tmpup resume {src}" in err
        assert len(records(state_dir)) == 1

    # The same command finishes the job with the exact bytes; a resumable upload goes on from the server's offset.
    finished = run("upload", str(src), "--json", "--progress", "none")
    assert finished.code == 0, finished.err
    again = json.loads(finished.out)
    assert again["resumed"] is spec.resumable
    assert ("resuming at" in finished.err) is spec.resumable
    assert emulator.blob_sha256(spec.id, spec.store_key(emulator, again)) == sha256_file(src)


# -- progress and output streams -----------------------------------------------------------------


def test_progress_json_grows_to_the_total(spec: ProviderSpec, tmp_path: Path) -> None:
    """Intermediate events, counting up as the bytes go (the command forces the final count, so the
    last event alone proves nothing). `--limit-rate` makes the upload last about 1.5 s, long enough
    for the renderer's one event per second."""
    src = make_file(tmp_path / "p.bin", BIG)
    result = run("upload", str(src), "--progress", "json", "--limit-rate", "2M")
    assert result.code == 0, result.err
    events = [json.loads(line) for line in result.err.splitlines()]  # stderr holds nothing but events
    assert {e["name"] for e in events} == {"p.bin"}
    assert (events[0]["event"], events[0]["bytes"], events[0]["total"]) == ("start", 0, BIG)
    assert (events[-1]["event"], events[-1]["bytes"], events[-1]["total"]) == ("done", BIG, BIG)
    moving = [e["bytes"] for e in events if e["event"] == "progress"]
    assert moving and moving[0] > 0 and moving[-1] < BIG, events
    assert [e["bytes"] for e in events] == sorted(e["bytes"] for e in events)
    assert [e["elapsed"] for e in events] == sorted(e["elapsed"] for e in events)


def test_stdout_carries_only_results_and_no_ansi_reaches_a_pipe(
    spec: ProviderSpec, tmp_path: Path, state_dir: Path
) -> None:
    files = [str(make_file(tmp_path / f"s{i}.bin", 1000 + i, seed=i)) for i in range(2)]
    env = {"TERM": "xterm-256color"}  # a colour terminal type, but the streams are pipes
    human = run_process("upload", *files, "--progress", "auto", env=env)
    assert human.code == 0, human.err
    receipts = [json.loads(line) for line in (state_dir / "receipts.jsonl").read_text().splitlines()]
    assert human.lines == [r[spec.handle] for r in receipts]  # one handle per file, nothing else

    as_json = run_process("upload", *files, "--json", "--progress", "lines", env=env)
    assert as_json.code == 0, as_json.err
    assert [json.loads(line)["name"] for line in as_json.lines] == ["s0.bin", "s1.bin"]
    for result in (human, as_json):
        assert not ANSI.search(result.out + result.err)
