"""The official Python tus client (tuspy) against the emulator: a real peer, not our own client."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from tusclient import client as tus_client
from tusclient.exceptions import TusCommunicationError

from tmpup.emulator import Emulator, Fault

from .conftest import QLIK_AUTH, file_sha256, qlik_api, random_file

pytestmark = pytest.mark.peer

MIB = 1024 * 1024


@pytest.mark.parametrize("size", [0, 1, 5 * MIB + 3])
def test_tuspy_uploads_to_generic_tus(emu: Emulator, tmp_path: Path, size: int) -> None:
    path = random_file(tmp_path, size)
    client = tus_client.TusClient(emu.mount_url("tus"))
    uploader = client.uploader(str(path), chunk_size=2 * MIB, metadata={"filename": "tuspy ü.bin"})
    uploader.upload()
    assert uploader.url is not None and uploader.url.startswith(f"{emu.url}/tus/files/")
    upload_id = uploader.url.rsplit("/", 1)[1]
    assert emu.blob_sha256("tus", upload_id) == file_sha256(path)
    blob = emu.store.get("tus", upload_id)
    assert blob is not None and blob.complete and blob.name == "tuspy ü.bin"
    download = requests.get(uploader.url)
    assert download.status_code == 200 and len(download.content) == size


def test_tuspy_uploads_to_qlik_with_bearer(emu: Emulator, tmp_path: Path) -> None:
    path = random_file(tmp_path, 3 * MIB + 11, "report.csv")
    client = tus_client.TusClient(f"{qlik_api(emu)}/files", headers=dict(QLIK_AUTH))
    uploader = client.uploader(str(path), chunk_size=MIB, metadata={"filename": "report.csv", "ttl": "7200"})
    uploader.upload()
    upload_id = uploader.url.rsplit("/", 1)[1]
    assert len(upload_id) == 24
    assert emu.blob_sha256("qlik", upload_id) == file_sha256(path)
    details = requests.get(f"{qlik_api(emu)}/{upload_id}/details", headers=QLIK_AUTH).json()
    assert details["Name"] == "report.csv"
    assert details["Size"] == str(path.stat().st_size)
    assert details["TTLSeconds"] == 7200
    content = requests.get(f"{qlik_api(emu)}/{upload_id}", headers=QLIK_AUTH)
    assert content.content == path.read_bytes()


def test_tuspy_without_token_is_refused_by_qlik(emu: Emulator, tmp_path: Path) -> None:
    path = random_file(tmp_path, 10)
    client = tus_client.TusClient(f"{qlik_api(emu)}/files")
    uploader = client.uploader(str(path), chunk_size=MIB)
    with pytest.raises(TusCommunicationError) as refused:
        uploader.upload()
    assert refused.value.status_code == 401
    assert emu.store.blobs("qlik") == []


def test_tuspy_resumes_after_a_dropped_patch(emu: Emulator, tmp_path: Path) -> None:
    path = random_file(tmp_path, 4 * MIB)
    client = tus_client.TusClient(emu.mount_url("tus"))
    first = client.uploader(str(path), chunk_size=4 * MIB)
    first.set_url(first.create_url())
    emu.faults.add(Fault(provider="tus", method="PATCH", drop_after=1_500_000))
    with pytest.raises(TusCommunicationError):
        first.upload_chunk()
    # a new uploader given the URL asks the server (HEAD) where to go on from
    second = client.uploader(str(path), url=first.url, chunk_size=MIB)
    assert second.offset == 1_500_000
    second.upload()
    assert emu.blob_sha256("tus", first.url.rsplit("/", 1)[1]) == file_sha256(path)


def test_tuspy_checksum_header_is_tolerated(emu: Emulator, tmp_path: Path) -> None:
    path = random_file(tmp_path, MIB + 1)
    client = tus_client.TusClient(emu.mount_url("tus"))
    uploader = client.uploader(str(path), chunk_size=MIB // 2, upload_checksum=True)
    uploader.upload()
    assert emu.blob_sha256("tus", uploader.url.rsplit("/", 1)[1]) == file_sha256(path)
