"""`--max-size` (`Emulator(max_size=...)`) for every provider: a larger file is refused, nothing kept.

Each mount refuses in its own API's way (413 in its error format; Pyrus 400 `attachment_too_big`, as
Pyrus does). Enterprise Tester, which documents no limit, answers 413 `{"Message": ...}` for a file
part over the limit, as soon as the part's `size` or `Content-Length` says so or its bytes pass the
limit, and keeps none of the request's files. The CLI cases run the real `tmpup` against it: exit 7.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import make_file, run, write_qlik_profile, write_tus_profile
from tests.test_cli import assert_one_line_error
from tests.test_enterprise_tester import et_config
from tests.test_kf5 import kf5_config
from tests.test_pyrus import pyrus_config
from tests.test_thulium import thulium_config
from tmpup.emulator import Emulator

from . import test_et_routes as et
from . import test_kf5_routes as kf5
from . import test_pyrus_routes as pyrus
from . import test_thulium_routes as thulium
from .conftest import OCTET, QLIK_AUTH, TUS, qlik_api

MIB = 1024 * 1024
LIMIT = MIB
BIG = os.urandom(3 * MIB)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(max_size=LIMIT) as emulator:
        yield emulator


# -- over HTTP -----------------------------------------------------------------------------------


def post_qlik(emu: Emulator, data: bytes) -> requests.Response:
    return requests.post(qlik_api(emu), data=data, headers=QLIK_AUTH)


def post_tus(emu: Emulator, data: bytes) -> requests.Response:
    headers = {**TUS, "Upload-Length": str(len(data)), "Content-Type": OCTET}
    return requests.post(f"{emu.url}/tus/files/", data=data, headers=headers)


def post_pyrus(emu: Emulator, data: bytes) -> requests.Response:
    return pyrus.upload(emu, data)


def post_et(emu: Emulator, data: bytes) -> requests.Response:
    return et.post(emu, et.new_set(emu), et.part("attachment; filename=big.bin", data))


POSTS: dict[str, tuple[Callable[[Emulator, bytes], requests.Response], int]] = {
    "qlik": (post_qlik, 413),
    "tus": (post_tus, 413),
    "thulium": (lambda emu, data: thulium.post(emu, data), 413),
    "pyrus": (post_pyrus, 400),
    "kf5": (lambda emu, data: kf5.upload(emu, data), 413),
    "enterprise-tester": (post_et, 413),
}


def test_every_mount_is_covered(emu: Emulator) -> None:
    assert set(POSTS) == set(emu.mounts)


@pytest.mark.parametrize("provider", POSTS)
def test_a_file_over_the_limit_is_refused_and_one_at_it_is_taken(emu: Emulator, provider: str) -> None:
    post, status = POSTS[provider]
    refused = post(emu, BIG)
    assert refused.status_code == status, refused.text
    assert [b for b in emu.store.blobs(provider) if b.complete] == []
    taken = post(emu, BIG[:LIMIT])
    assert taken.status_code in (200, 201), taken.text
    (blob,) = [b for b in emu.store.blobs(provider) if b.size]
    assert blob.size == LIMIT


@pytest.mark.parametrize(
    "disposition",
    [
        "attachment; filename=big.bin",  # Content-Length says so (the `part` helper writes it)
        f"attachment; filename=big.bin; size={len(BIG)}",
    ],
)
def test_enterprise_tester_refuses_a_declared_size_over_the_limit(emu: Emulator, disposition: str) -> None:
    response = et.post(emu, et.new_set(emu), et.part(disposition, BIG))
    assert response.status_code == 413
    assert set(response.json()) == {"Message"} and str(LIMIT) in response.json()["Message"]
    assert emu.store.blobs("enterprise-tester") == []


def test_enterprise_tester_counts_the_bytes_of_a_part_that_declares_nothing(emu: Emulator) -> None:
    set_id = et.new_set(emu)
    response = et.post(emu, set_id, et.part("attachment; filename=big.bin", BIG, length=None))
    assert response.status_code == 413
    assert emu.store.blobs("enterprise-tester") == []


def test_enterprise_tester_keeps_none_of_a_request_with_one_file_too_large(emu: Emulator) -> None:
    set_id = et.new_set(emu)
    small = et.part("attachment; filename=small.bin", b"fine")
    response = et.post(emu, set_id, small, et.part("attachment; filename=big.bin", BIG, length=None))
    assert response.status_code == 413
    assert emu.store.blobs("enterprise-tester") == []
    listing = requests.get(f"{et.api(emu)}/temporaryattachmentset/{set_id}", auth=et.AUTH).json()
    assert listing == {"Items": []}
    # The limit is per file: several files that are each within it go in one request.
    parts = [et.part(f"attachment; filename=f{i}.bin", BIG[:LIMIT]) for i in range(2)]
    assert et.post(emu, set_id, *parts).status_code == 201


# -- through tmpup -------------------------------------------------------------------------------


def tus_config(emulator: Emulator, config_path: Path) -> str:
    return write_tus_profile(emulator, config_path)


CONFIGS: dict[str, Callable[[Emulator, Path], str]] = {
    "qlik": lambda emulator, path: write_qlik_profile(emulator, path),
    "tus": tus_config,
    "thulium": thulium_config,
    "pyrus": pyrus_config,
    "kf5": kf5_config,
    "enterprise-tester": et_config,
}


@pytest.mark.parametrize("provider", CONFIGS)
def test_tmpup_upload_over_the_limit_is_exit_7(
    emu: Emulator, provider: str, config_path: Path, state_dir: Path, tmp_path: Path
) -> None:
    CONFIGS[provider](emu, config_path)
    src = make_file(tmp_path / "big.bin", 3 * MIB)
    result = run("upload", str(src), "--progress", "none")
    assert result.code == 7, (result.code, result.err)
    assert result.out == ""
    assert_one_line_error(result.err)
    assert [b for b in emu.store.blobs(provider) if b.complete] == []
    assert not (state_dir / "receipts.jsonl").exists()
