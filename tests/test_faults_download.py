"""Downloads under faults: a body shorter than its Content-Length, a 206 for the wrong range, a server
that ignores Range, the disk filling up (RLIMIT_FSIZE in the child; a tiny tmpfs where mounting works).

Each either finishes byte-exact (after `--continue`) or stops with the documented exit code, one line
on stderr and the `.part` kept as it was, so that nothing already fetched is lost. A cut body is
continued within the run when retries are left (tests/test_download_retry.py); here `--retries 0`
shows what the `.part` keeps for `--continue` when they are spent.
"""

from __future__ import annotations

import http.server
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Result, make_file, run, run_process, sha256_file
from tests.test_bad_input import Garbage, answer, assert_error, limited, provider_env

MIB = 1024 * 1024
DATA = os.urandom(3 * MIB + 123)
PATH = "/x/api/v1/temp-contents/6571"  # what the qlik provider GETs for id 6571


def serve(
    data: bytes, *, first: Callable[[http.server.BaseHTTPRequestHandler, int], bool] | None = None
) -> Callable[[http.server.BaseHTTPRequestHandler], None]:
    """Serve `data` at PATH honouring `Range: bytes=N-`; `first(h, start)` may answer the first GET itself."""
    state = {"first": True}

    def reply(h: http.server.BaseHTTPRequestHandler) -> None:
        if h.path.split("?")[0] != PATH:
            answer(h, 404, b'{"errors": [{"title": "Not found", "code": "HTTP-404"}]}')
            return
        match = re.fullmatch(r"bytes=(\d+)-", h.headers.get("Range") or "")
        start = int(match.group(1)) if match else 0
        if state["first"] and first is not None:
            state["first"] = False
            if first(h, start):
                return
        if start >= len(data) and match:
            answer(h, 416, headers={"Content-Range": f"bytes */{len(data)}"})
        elif match:
            headers = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
            answer(h, 206, data[start:], content_type="application/octet-stream", headers=headers)
        else:
            answer(h, 200, data, content_type="application/octet-stream")

    return reply


def download(server: Garbage, out: Path, *extra: str) -> Result:
    return run(
        "download", "6571", "-o", str(out), "--progress", "none", "-q", *extra, env=provider_env("qlik", server.url)
    )


def assert_part_is_a_prefix(part: Path, data: bytes) -> int:
    """The .part holds the start of the file."""
    held = part.read_bytes()
    assert len(held) < len(data)
    assert held == data[: len(held)]
    return len(held)


# -- lying servers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [1, MIB, 2 * MIB + 7])
def test_a_body_shorter_than_its_content_length_keeps_the_part_for_continue(tmp_path: Path, cut: int) -> None:
    def short(h: http.server.BaseHTTPRequestHandler, start: int) -> bool:
        answer(h, 200, DATA[:cut], content_type="application/octet-stream", length=len(DATA))
        return True

    out = tmp_path / "out.bin"
    with Garbage(serve(DATA, first=short)) as server:
        cutoff = download(server, out, "--retries", "0")
        assert_error(cutoff, 10, "--continue")
        assert not out.exists()
        held = assert_part_is_a_prefix(out.with_name("out.bin.part"), DATA)
        assert held == cut  # every byte that arrived, the block cut short included
        again = download(server, out)  # without --continue the .part is not thrown away
        assert_error(again, 7, "--continue")
        assert out.with_name("out.bin.part").stat().st_size == held
        done = download(server, out, "--continue")
        ranges = [seen.headers.get("Range") for seen in server.seen]
    assert done.code == 0, done.err
    assert out.read_bytes() == DATA and not out.with_name("out.bin.part").exists()
    assert ranges[-1] == (f"bytes={held}-" if held else None)


def test_a_resumed_206_that_is_cut_again_still_finishes(tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    part = out.with_name("out.bin.part")
    part.write_bytes(DATA[:1000])

    def short_206(h: http.server.BaseHTTPRequestHandler, start: int) -> bool:
        headers = {"Content-Range": f"bytes {start}-{len(DATA) - 1}/{len(DATA)}"}
        answer(h, 206, DATA[start : start + MIB], headers=headers, length=len(DATA) - start)
        return True

    with Garbage(serve(DATA, first=short_206)) as server:
        assert_error(download(server, out, "-c", "--retries", "0"), 10, "--continue")
        assert assert_part_is_a_prefix(part, DATA) == 1000 + MIB
        done = download(server, out, "-c")
    assert done.code == 0, done.err
    assert out.read_bytes() == DATA


@pytest.mark.parametrize(
    "content_range",
    [
        "bytes 0-{last}/{total}",  # the whole file, though bytes from 1000 were asked
        "bytes 1001-{last}/{total}",  # one byte off
        "bytes 999-{last}/{total}",
        None,  # no Content-Range at all
        "bytes abc",
        "items 1000-{last}/{total}",
    ],
)
def test_a_206_for_the_wrong_range_is_an_integrity_error_and_the_part_is_kept(
    tmp_path: Path, content_range: str | None
) -> None:
    out = tmp_path / "out.bin"
    part = out.with_name("out.bin.part")
    part.write_bytes(DATA[:1000])

    def wrong(h: http.server.BaseHTTPRequestHandler, start: int) -> bool:
        headers = {}
        if content_range is not None:
            headers["Content-Range"] = content_range.format(last=len(DATA) - 1, total=len(DATA))
        answer(h, 206, DATA, content_type="application/octet-stream", headers=headers)
        return True

    with Garbage(serve(DATA, first=wrong)) as server:
        result = download(server, out, "--continue")
        assert_error(result, 9)
        assert part.read_bytes() == DATA[:1000]  # untouched
        assert not out.exists()
        done = download(server, out, "--continue")  # a sane answer next time: it finishes
    assert done.code == 0, done.err
    assert out.read_bytes() == DATA


def test_a_server_that_ignores_range_restarts_from_zero_byte_exact(tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    part = out.with_name("out.bin.part")
    part.write_bytes(DATA[:1000])

    def ignore(h: http.server.BaseHTTPRequestHandler, start: int) -> bool:
        answer(h, 200, DATA, content_type="application/octet-stream")
        return True

    with Garbage(serve(DATA, first=ignore)) as server:
        result = run(
            "download", "6571", "-o", str(out), "-c", "--progress", "none", env=provider_env("qlik", server.url)
        )
    assert result.code == 0, result.err
    assert "from the beginning" in result.err
    assert out.read_bytes() == DATA and not part.exists()


def test_continue_on_a_complete_part_just_finishes(tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    out.with_name("out.bin.part").write_bytes(DATA)
    with Garbage(serve(DATA)) as server:
        done = download(server, out, "-c")
    assert done.code == 0, done.err
    assert out.read_bytes() == DATA


# -- the disk fills up ----------------------------------------------------------------------------------


def _file_size_limit(limit: int) -> Callable[[], None]:
    def preexec() -> None:
        # write() past the limit fails with EFBIG instead of killing the process with SIGXFSZ.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def _can_mount_tmpfs() -> bool:
    if os.geteuid() != 0:
        return False
    with tempfile.TemporaryDirectory() as where:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", where], capture_output=True)
        if mounted.returncode != 0:
            return False
        subprocess.run(["umount", where], check=True)
    return True


FULL_DISKS = ["rlimit-fsize"] + (["tmpfs"] if _can_mount_tmpfs() else [])


@pytest.mark.parametrize("how", FULL_DISKS)
def test_the_disk_filling_up_keeps_the_part_and_continue_finishes_byte_exact(
    qlik_profile: str, emulator: Any, tmp_path: Path, how: str
) -> None:
    src = make_file(tmp_path / "src.bin", 3 * MIB + 5)
    up = run("upload", str(src), "--progress", "none")
    assert up.code == 0, up.err
    handle = up.out.strip()
    target_dir = tmp_path / "small"
    target_dir.mkdir()
    out = target_dir / "copy.bin"
    part = out.with_name("copy.bin.part")
    args = ["download", handle, "-o", str(out), "--progress", "none"]
    mounted = False
    try:
        if how == "tmpfs":
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(target_dir)], check=True)
            mounted = True
            full = run_process(*args)
        else:
            full = limited(_file_size_limit(MIB))(*args)
        assert_error(full, 10, str(part), "--continue")
        assert part.exists() and not out.exists()
        held = part.read_bytes()
        assert 0 < len(held) <= MIB and held == src.read_bytes()[: len(held)]
        if how == "tmpfs":  # "free some space"
            subprocess.run(["mount", "-o", "remount,size=16m", str(target_dir)], check=True)
        refused = run_process(*args)  # a plain retry does not throw the .part away
        assert_error(refused, 7, "--continue")
        done = run_process(*args, "--continue")
        assert done.code == 0, done.err
        assert sha256_file(out) == sha256_file(src) and not part.exists()
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(target_dir)], check=False)


def test_a_full_stdout_is_a_clean_error(qlik_profile: str, tmp_path: Path) -> None:
    """`tmpup download ID -o - > /dev/full`: ENOSPC on stdout, reported like any full disk."""
    up = run("upload", str(make_file(tmp_path / "src.bin", MIB)), "--progress", "none")
    assert up.code == 0, up.err
    with open("/dev/full", "wb") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "tmpup", "download", up.out.strip(), "-o", "-"],
            stdout=full,
            stderr=subprocess.PIPE,
            timeout=60,
        )
    result = Result(proc.returncode, "", proc.stderr.decode())
    assert result.code in (7, 10), result.err
    assert_error(result, result.code)
