"""receipts.jsonl stays bounded: past its size limit it is compacted (long-expired receipts go, then
the oldest), with concurrent appenders (a `-j` run, overlapping cron jobs) losing nothing."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

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
