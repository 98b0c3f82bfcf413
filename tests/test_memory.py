"""Streaming, proven: a 200 MiB upload keeps the tmpup process's peak RSS far below the file size."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_file, sha256_file
from tests.rss import peak_rss_mib

SIZE = 200 * 1024 * 1024


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
