"""Streaming, proven: a 200 MiB upload keeps the tmpup process's peak RSS far below the file size."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_file, sha256_file

SIZE = 200 * 1024 * 1024


def peak_rss_mib(args: list[str], env: dict[str, str] | None = None) -> tuple[int, float, bytes]:
    """Run a real tmpup process; return (exit status, its own peak RSS in MiB, stdout)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tmpup", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024, out  # ru_maxrss is KiB on Linux


@pytest.mark.slow
def test_200_mib_raw_upload_and_download_keep_memory_flat(qlik_profile: str, emulator: object, tmp_path: Path) -> None:
    src = make_file(tmp_path / "big.bin", SIZE)
    code, rss, out = peak_rss_mib(["upload", str(src), "--no-resume", "--progress", "lines"])
    assert code == 0
    assert rss < 80, f"peak RSS {rss:.0f} MiB for a 200 MiB upload"
    upload_id = out.decode().strip()

    code, rss, _ = peak_rss_mib(["download", upload_id, "-o", str(tmp_path / "copy.bin"), "--progress", "lines"])
    assert code == 0
    assert rss < 80, f"peak RSS {rss:.0f} MiB for a 200 MiB download"
    assert sha256_file(tmp_path / "copy.bin") == sha256_file(src)
