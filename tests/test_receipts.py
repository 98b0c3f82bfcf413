"""receipts.jsonl stays bounded: past its size limit it is compacted (long-expired receipts go, then
the oldest), with concurrent appenders (a `-j` run, overlapping cron jobs) losing nothing."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_file, run
from tests.test_thulium import thulium_config
from tmpup.state import RECEIPTS_MAX_BYTES, StateStore

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)


def receipt(token: str, expires: dt.datetime | None, pad: int = 0) -> dict[str, Any]:
    return {
        "provider": "thulium",
        "token": token,
        "name": f"{token}.bin",
        "expires_at": expires.isoformat().replace("+00:00", "Z") if expires else None,
        "note": "x" * pad,
    }


def tokens(store: StateStore) -> list[str]:
    return [item["token"] for item in store.receipts()]


def test_compaction_drops_long_expired_then_the_oldest(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state", receipts_max_bytes=10**9)  # no compaction while filling
    store.add_receipt(receipt("expired-long-ago", NOW - dt.timedelta(days=31)))
    store.add_receipt(receipt("expired-lately", NOW - dt.timedelta(days=2)))
    store.add_receipt(receipt("never-expires", None))
    store.add_receipt(receipt("expires-later", NOW + dt.timedelta(hours=1)))
    with store.receipts_path.open("ab") as fh:
        fh.write(b'{"provider": "thulium", "tok')  # torn by a crash mid-write...
        fh.write(b"\n")  # ...and a later append started on a new line
    store.add_receipt(receipt("newest", NOW + dt.timedelta(hours=24)))

    store.compact_receipts(now=NOW)
    assert tokens(store) == ["expired-lately", "never-expires", "expires-later", "newest"]
    assert store.receipts_path.stat().st_mode & 0o777 == 0o600

    # Over half the limit after that: the oldest go until the rest fits in half.
    lines = store.receipts_path.read_bytes().splitlines(keepends=True)
    store.receipts_max_bytes = 2 * len(b"".join(lines[-2:])) + 1  # half holds the newest two lines
    store.compact_receipts(now=NOW)
    assert tokens(store) == ["expires-later", "newest"]
    assert store.receipts_path.stat().st_size <= store.receipts_max_bytes // 2


def test_the_first_receipt_makes_the_state_folder_private_and_compaction_makes_none(tmp_path: Path) -> None:
    """The folder is made by the first append only (not checked again by every one after it); a
    compaction of receipts that do not exist leaves no folder behind."""
    store = StateStore(tmp_path / "none" / "state")
    store.compact_receipts(now=NOW)
    assert not (tmp_path / "none").exists()

    store = StateStore(tmp_path / "deep" / "state")
    store.add_receipt(receipt("first", None))
    store.add_receipt(receipt("second", None))
    assert tokens(store) == ["first", "second"]
    assert (tmp_path / "deep" / "state").stat().st_mode & 0o777 == 0o700
    assert store.receipts_path.stat().st_mode & 0o777 == 0o600


def test_an_append_past_the_limit_compacts(tmp_path: Path) -> None:
    limit = 64 * 1024
    store = StateStore(tmp_path / "state", receipts_max_bytes=limit)
    for i in range(400):  # ~200 bytes each: 80 KB in all
        store.add_receipt(receipt(f"t{i}", NOW + dt.timedelta(days=1), pad=120))
        assert store.receipts_path.stat().st_size <= limit
    kept = tokens(store)
    assert kept[-1] == "t399" and kept == [f"t{i}" for i in range(400 - len(kept), 400)]
    assert len(kept) < 400


def _append_many(root: str, writer: int, count: int, start: Any) -> None:
    store = StateStore(Path(root), receipts_max_bytes=10**9)  # never compacts by itself
    start.wait()
    for i in range(count):
        store.add_receipt(receipt(f"w{writer}-{i}", None, pad=40))


def _compact_until(root: str, start: Any, stop: Any, rounds: Any) -> None:
    store = StateStore(Path(root), receipts_max_bytes=10**9)  # keeps every line: it only rewrites
    start.wait()
    while not stop.is_set():
        store.compact_receipts()
        rounds.value += 1


def test_concurrent_appenders_lose_nothing_while_it_compacts(tmp_path: Path) -> None:
    """Separate processes append while another rewrites the file (compaction with room for every
    line) again and again: every receipt is there at the end, once."""
    import multiprocessing

    root = tmp_path / "state"
    StateStore(root).add_receipt(receipt("first", None))
    writers, per_writer = 4, 400
    ctx = multiprocessing.get_context("fork")
    start, stop, rounds = ctx.Barrier(writers + 1), ctx.Event(), ctx.Value("i", 0)
    compactor = ctx.Process(target=_compact_until, args=(str(root), start, stop, rounds))
    procs = [ctx.Process(target=_append_many, args=(str(root), w, per_writer, start)) for w in range(writers)]
    compactor.daemon = True
    compactor.start()
    try:
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(120)
        assert [proc.exitcode for proc in procs] == [0] * writers
    finally:
        stop.set()
        compactor.join(120)
    assert compactor.exitcode == 0 and rounds.value >= 3  # it rewrote the file while they appended
    got = sorted(tokens(StateStore(root)))
    assert got == sorted(["first", *(f"w{w}-{i}" for w in range(writers) for i in range(per_writer))])


def test_a_real_upload_compacts_a_full_receipts_file_and_info_still_answers(
    emulator: Any, config_path: Path, state_dir: Path, tmp_path: Path
) -> None:
    thulium_config(emulator, config_path)
    old = json.dumps(receipt("0" * 22, NOW - dt.timedelta(days=400), pad=400)) + "\n"
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "receipts.jsonl").write_text(old * (RECEIPTS_MAX_BYTES // len(old) + 1))

    up = run("upload", str(make_file(tmp_path / "a.txt", 100)), "--progress", "none")
    assert up.code == 0, up.err
    token = up.out.strip()
    assert (state_dir / "receipts.jsonl").stat().st_size < 4096  # the year-old receipts are gone
    info = run("info", token, "--json")
    assert info.code == 0, info.err
    assert json.loads(info.out)["token"] == token


# -- damaged receipts files: a bad line hides nothing else, and nothing crashes ------------------------


def test_a_torn_last_line_does_not_swallow_the_next_receipt(
    emulator: Any, config_path: Path, state_dir: Path, tmp_path: Path
) -> None:
    """A process killed mid-append (or a full disk) leaves a line without its newline: the next
    receipt starts on a line of its own, so `info` still finds it."""
    thulium_config(emulator, config_path)
    src = make_file(tmp_path / "small.txt", 100)
    first = run("upload", str(src), "--progress", "none", "-q")
    assert first.code == 0, first.err
    receipts = state_dir / "receipts.jsonl"
    with receipts.open("ab") as fh:
        fh.write(b'{"profile": "thulium", "token": "trunc')
    second = run("upload", str(src), "--progress", "none", "-q")
    assert second.code == 0, second.err
    for token in (first.out.strip(), second.out.strip()):
        info = run("info", token, "--json")
        assert info.code == 0, info.err
        assert json.loads(info.out)["token"] == token
    lines = receipts.read_bytes().split(b"\n")
    assert lines[1] == b'{"profile": "thulium", "token": "trunc' and lines[-1] == b""  # kept, and set apart
    assert receipts.stat().st_mode & 0o777 == 0o600


DAMAGE = {
    "not utf-8": b"\xff\xfe{\n",
    "not utf-8 inside a string": b'{"provider": "thulium", "token": "T\xff"}\n',
    "a bad date": b'{"token": "X1", "provider": "thulium", "profile": "thulium", "expires_at": "notadate"}\n',
    "a date that is a number": b'{"token": "X2", "provider": "thulium", "expires_at": 5}\n',
    "a date past year 9999 in UTC": b'{"token": "X3", "provider": "thulium", '
    b'"expires_at": "9999-12-31T23:30:00-01:00"}\n',
    "a lone surrogate": b'{"token": "X4", "provider": "thulium", "name": "\\ud800x"}\n',
    "not an object": b"[1, 2]\n",
    "a line of a million bytes": b'{"token": "X5", "note": "' + b"x" * (1 << 20) + b'"}\n',
}


@pytest.mark.parametrize("damage", list(DAMAGE), ids=list(DAMAGE))
def test_a_damaged_line_is_skipped_by_every_reader(
    emulator: Any, config_path: Path, state_dir: Path, tmp_path: Path, damage: str
) -> None:
    thulium_config(emulator, config_path)
    src = make_file(tmp_path / "small.txt", 100)
    before = run("upload", str(src), "--progress", "none", "-q")
    assert before.code == 0, before.err
    with (state_dir / "receipts.jsonl").open("ab") as fh:
        fh.write(DAMAGE[damage])
    after = run("upload", str(src), "--progress", "none", "-q")
    assert after.code == 0 and after.err == "", after.err
    for token in (before.out.strip(), after.out.strip()):  # before and after the bad line
        for args in (["--json"], []):
            info = run("info", token, *args)
            assert info.code == 0, info.err
            assert token in info.out
    for token in ("X1", "X2", "X3", "X4", "X5"):  # a damaged receipt is no receipt: exit 5, not a crash
        missing = run("info", token)
        assert missing.code == 5 and missing.err.count("\n") == 1 and "internal error" not in missing.err
    store = StateStore(state_dir, receipts_max_bytes=10**9)
    store.compact_receipts()  # the compaction drops the bad line and keeps the rest
    assert tokens(store) == [before.out.strip(), after.out.strip()]
    assert store.receipts_path.read_bytes().count(b"\n") == 2


def test_a_naive_date_is_read_as_utc(emulator: Any, config_path: Path, state_dir: Path) -> None:
    """Written by hand without an offset: taken as UTC (as the compaction does), not a crash comparing
    a naive time with an aware one."""
    thulium_config(emulator, config_path)
    state_dir.mkdir(parents=True)
    line = {"token": "N1", "provider": "thulium", "expires_at": "2020-01-01T00:00:00"}
    (state_dir / "receipts.jsonl").write_text(json.dumps(line) + "\n")
    info = run("info", "N1", "--json")
    assert info.code == 6, info.err  # the fields are printed, and the exit code says the token is gone
    assert "expired at 2020-01-01 00:00:00 UTC" in info.err
    shown = json.loads(info.out)
    assert shown["expires_at"] == "2020-01-01T00:00:00+00:00" and shown["expired"] is True


def test_the_kf5_token_mapping_reads_past_a_bad_byte(emulator: Any, config_path: Path, state_dir: Path) -> None:
    from tests.test_kf5 import kf5_config

    kf5_config(emulator, config_path)
    up = run("upload", "-", "--name", "a.txt", "--json", "--progress", "none", stdin=b"hello")
    assert up.code == 0, up.err
    token = json.loads(up.out)["token"]
    with (state_dir / "receipts.jsonl").open("ab") as fh:
        fh.write(b"\xff\n")
    info = run("info", token, "--json")  # token -> id through the receipt, then the API
    assert info.code == 0, info.err
    assert run("delete", token).code == 0


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_a_receipts_path_that_cannot_be_read_is_a_state_error(
    emulator: Any, config_path: Path, state_dir: Path, tmp_path: Path, kind: str
) -> None:
    """`info` says what is wrong with receipts.jsonl (exit 3, one line) instead of crashing or, for a
    fifo, hanging; an upload still succeeds and only warns that its receipt was not kept."""
    import os

    from tests.test_bad_input import assert_error

    thulium_config(emulator, config_path)
    state_dir.mkdir(parents=True)
    receipts = state_dir / "receipts.jsonl"
    if kind == "directory":
        receipts.mkdir()
    else:
        os.mkfifo(receipts)
    assert_error(run("info", "123"), 3, str(receipts), "move it out of the way")
    up = run("upload", str(make_file(tmp_path / "a.txt", 10)), "--progress", "none")
    assert up.code == 0 and up.out.strip(), up.err
    assert "uploaded, but" in up.err and "Traceback" not in up.err


def test_skipped_lines_are_noted_once(tmp_path: Path) -> None:
    notes: list[str] = []
    store = StateStore(tmp_path / "state", notify=notes.append)
    store.add_receipt(receipt("good", None))
    with store.receipts_path.open("ab") as fh:
        fh.write(b"\xff\n{torn\n[]\n")
    store.add_receipt(receipt("also-good", None))
    assert tokens(store) == ["good", "also-good"]
    assert len(notes) == 1 and "skipped 3 line(s)" in notes[0]
    assert store.find_receipt("also-good") is not None and len(notes) == 2  # once per read


def test_compaction_streams_a_huge_receipts_file(
    emulator: Any, config_path: Path, state_dir: Path, tmp_path: Path
) -> None:
    """A 120 MB receipts.jsonl (grown outside tmpup's own limit) is compacted by the next upload
    without being held in memory: the peak stays where a small upload's is."""
    from tests.rss import peak_rss_mib

    thulium_config(emulator, config_path)
    state_dir.mkdir(parents=True)
    line = (json.dumps(receipt("T" * 22, NOW + dt.timedelta(days=3650), pad=200)) + "\n").encode()
    count = 120 * 1024 * 1024 // len(line)
    with (state_dir / "receipts.jsonl").open("wb") as fh:
        for _ in range(count // 1000):
            fh.write(line * 1000)
    code, rss, out = peak_rss_mib(["upload", str(make_file(tmp_path / "a.txt", 100)), "--progress", "none"])
    assert code == 0
    assert (state_dir / "receipts.jsonl").stat().st_size <= RECEIPTS_MAX_BYTES // 2  # it was compacted
    assert rss < 80, f"peak RSS {rss:.0f} MiB compacting a 120 MB receipts file"
    token = out.decode().strip()
    assert tokens(StateStore(state_dir))[-1] == token  # the newest kept, the new one last
