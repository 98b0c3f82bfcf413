"""Fixtures for the emulator's own tests: a fresh in-process emulator per test, talked to over HTTP."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tmpup.emulator import Emulator

QLIK_TOKEN = "demo-qlik-token"
QLIK_AUTH = {"Authorization": f"Bearer {QLIK_TOKEN}"}
TUS = {"Tus-Resumable": "1.0.0"}
OCTET = "application/offset+octet-stream"


@pytest.fixture
def quiet(capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail the test if the server printed anything or logged a warning (a traceback, say)."""
    caplog.set_level(logging.DEBUG, logger="tmpup.emulator")
    yield
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    assert err == ""
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


def qlik_api(emu: Emulator) -> str:
    return f"{emu.url}/qlik/api/v1/temp-contents"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def random_file(directory: Path, size: int, name: str = "data.bin") -> Path:
    path = directory / name
    with open(path, "wb") as out:
        left = size
        while left:
            block = os.urandom(min(left, 1 << 20))
            out.write(block)
            left -= len(block)
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
