"""The read-ahead thread under upload bodies (tmpup/read_ahead.py): every byte in order, flat memory,
errors raised where they happened, and no thread or open file left behind when a request stops early.

The end-to-end cases (a large upload to the emulator whose file shrinks or grows meanwhile) are in
tests/test_bad_input.py; the RSS of a 200 MiB upload in tests/test_memory.py.
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_file, run, sha256_file
from tests.test_bad_input import qlik_env  # noqa: F401  (a fixture)
from tmpup import read_ahead
from tmpup.read_ahead import read_blocks

MIB = 1024 * 1024


def readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "read-ahead"]


def wait_for_no_readers(timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while readers():
        assert time.monotonic() < deadline, "the read-ahead thread outlived its body"
        time.sleep(0.01)


@pytest.mark.parametrize("size", [0, 1, 3 * MIB + 5, read_ahead.MIN_LENGTH, read_ahead.MIN_LENGTH + MIB + 7])
def test_every_byte_in_order_inline_or_ahead(tmp_path: Path, size: int) -> None:
    src = make_file(tmp_path / "f.bin", size)
    with src.open("rb", buffering=0) as fh:
        blocks = list(read_blocks(fh, size, MIB))
    assert all(0 < len(b) <= MIB for b in blocks)
    assert hashlib.sha256(b"".join(blocks)).hexdigest() == sha256_file(src)
    wait_for_no_readers()


def test_a_slice_from_an_offset_stops_at_its_length(tmp_path: Path) -> None:
    src = make_file(tmp_path / "f.bin", 12 * MIB)
    data = src.read_bytes()
    with src.open("rb", buffering=0) as fh:
        fh.seek(MIB + 3)
        got = b"".join(read_blocks(fh, 9 * MIB, MIB))
        assert fh.tell() == MIB + 3 + 9 * MIB  # the reader read no further than the slice
    assert got == data[MIB + 3 : MIB + 3 + 9 * MIB]


def test_the_reader_stays_a_few_blocks_ahead(tmp_path: Path) -> None:
    """A consumer that takes its time (a --limit-rate, a slow server) does not make the file pile up in
    memory: the reader is at most DEPTH blocks (plus the one in its hands) ahead."""
    src = make_file(tmp_path / "f.bin", 32 * MIB)
    with src.open("rb", buffering=0) as fh:
        blocks = read_blocks(fh, 32 * MIB, MIB)
        next(blocks)
        time.sleep(0.3)  # ample time to read the whole file, were it unbounded
        assert fh.tell() <= (1 + read_ahead.DEPTH + 1) * MIB
        blocks.close()
    wait_for_no_readers()


def test_a_short_file_ends_early_and_the_caller_sees_the_count(tmp_path: Path) -> None:
    src = make_file(tmp_path / "f.bin", 10 * MIB)
    with src.open("rb", buffering=0) as fh:
        got = sum(map(len, read_blocks(fh, 20 * MIB, MIB)))  # asked for more than there is
    assert got == 10 * MIB
    wait_for_no_readers()


def test_closing_early_stops_the_thread_before_the_file_closes(tmp_path: Path) -> None:
    """A request that fails mid-body closes its iterator: the reader must be gone by then, not reading
    from a file that is about to be closed."""
    src = make_file(tmp_path / "f.bin", 64 * MIB)
    fh = src.open("rb", buffering=0)
    blocks = read_blocks(fh, 64 * MIB, MIB)
    next(blocks)
    assert len(readers()) == 1
    blocks.close()
    assert readers() == []  # close() joined it
    fh.close()


class FailingFile:
    """A file whose read fails after `good` blocks, as a disk error or a vanished NFS mount would."""

    def __init__(self, path: Path, good: int) -> None:
        self.fh = path.open("rb", buffering=0)
        self.good = good

    def read(self, n: int) -> bytes:
        if self.good == 0:
            raise OSError(5, "Input/output error")
        self.good -= 1
        return self.fh.read(n)


def test_a_read_error_is_raised_in_the_consumer_after_the_blocks_before_it(tmp_path: Path) -> None:
    src = make_file(tmp_path / "f.bin", 16 * MIB)
    failing = FailingFile(src, good=5)
    got = []
    with pytest.raises(OSError, match="Input/output error"):
        for block in read_blocks(failing, 16 * MIB, MIB):  # type: ignore[arg-type]
            got.append(block)
    assert len(got) == 5 and b"".join(got) == src.read_bytes()[: 5 * MIB]
    failing.fh.close()
    wait_for_no_readers()


@pytest.mark.parametrize(
    "args",
    [["--no-resume"], ["--resumable", "--chunk-size", "10M"]],
    ids=["one raw POST", "tus PATCHes from offsets 0, 10M, 20M"],
)
def test_a_large_upload_reads_ahead_and_arrives_exact(qlik_env: Any, tmp_path: Path, args: list[str]) -> None:  # noqa: F811
    """End to end through requests, in-process: the bytes stored are the file's, and no reader is left."""
    src = make_file(tmp_path / "big.bin", 24 * MIB)
    up = run("upload", str(src), *args, "--progress", "none")
    assert up.code == 0, up.err
    (blob,) = qlik_env.store.blobs("qlik")
    assert blob.size == 24 * MIB
    assert hashlib.sha256(blob.path.read_bytes()).hexdigest() == sha256_file(src)
    wait_for_no_readers()


def test_a_body_cut_mid_upload_is_sent_again_and_leaves_no_reader(qlik_env: Any, tmp_path: Path) -> None:  # noqa: F811
    """The server aborts the connection 3 MiB into a 20 MiB body: requests drops the iteration, the
    retry reads the file again from its start with a new reader, and the old one is gone."""
    from tmpup.emulator import Fault

    qlik_env.faults.add(Fault(provider="qlik", method="POST", drop_after=3 * MIB, times=1))
    src = make_file(tmp_path / "cut.bin", 20 * MIB)
    up = run("upload", str(src), "--no-resume", "--progress", "none")
    assert up.code == 0, up.err
    assert "retrying" in up.err  # the cut happened and was retried
    (blob,) = qlik_env.store.blobs("qlik")
    assert hashlib.sha256(blob.path.read_bytes()).hexdigest() == sha256_file(src)
    wait_for_no_readers()
