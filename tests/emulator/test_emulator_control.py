"""The `/_emulator/` JSON control endpoints, unknown mounts, and the clock."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import requests

from tmpup.emulator import Clock, Emulator

from .conftest import QLIK_AUTH, TUS, qlik_api


def control(emu: Emulator, path: str) -> str:
    return f"{emu.url}/_emulator/{path}"


def test_health(emu: Emulator) -> None:
    response = requests.get(control(emu, "health"))
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["mounts"]["qlik"] == f"{emu.url}/qlik"
    assert body["mounts"]["tus"] == f"{emu.url}/tus/files/" == emu.mount_url("tus")  # a profile's url
    assert set(body["mounts"]) == set(emu.mounts)
    assert body["faults"] == 0
    assert datetime.fromisoformat(body["time"]).tzinfo is not None


def test_faults_over_http(emu: Emulator) -> None:
    added = requests.post(control(emu, "faults"), json={"provider": "qlik", "status": 503, "retry_after": 3})
    assert added.status_code == 201
    assert added.json()["fault"]["status"] == 503
    listed = requests.get(control(emu, "faults")).json()["faults"]
    assert len(listed) == 1 and listed[0]["remaining"] == 1 and listed[0]["retry_after"] == 3

    refused = requests.post(qlik_api(emu), data=b"x", headers=QLIK_AUTH)
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "3"
    assert requests.get(control(emu, "faults")).json()["faults"] == []

    requests.post(control(emu, "faults"), json={"provider": "tus", "status": 500, "times": None})
    requests.post(control(emu, "faults"), json={"provider": "qlik", "delay": 0.1})
    cleared = requests.delete(control(emu, "faults"))
    assert cleared.json() == {"cleared": 2}
    assert len(emu.faults) == 0


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", b'{"nonsense": 1}', b'{"status": "503"}', b"{}", b'{"status": 503, "path": "("}'],
)
def test_bad_fault_bodies_are_400(emu: Emulator, body: bytes) -> None:
    response = requests.post(control(emu, "faults"), data=body)
    assert response.status_code == 400
    assert response.json()["error"] == "Bad Request"
    assert len(emu.faults) == 0


def test_clock_advance_expires_uploads(emu: Emulator) -> None:
    created = requests.post(qlik_api(emu), params={"ttl": "600"}, data=b"x", headers=QLIK_AUTH)
    url = f"{emu.url}/qlik{created.headers['Location']}"
    before = requests.get(control(emu, "clock")).json()["time"]
    moved = requests.post(control(emu, "clock"), json={"advance": 600})
    assert moved.status_code == 200
    assert moved.json()["time"] - before >= 600
    assert requests.get(url, headers=QLIK_AUTH).status_code == 410
    for bad in ({"advance": -1}, {"advance": "10"}, {}, {"advance": True}):
        assert requests.post(control(emu, "clock"), json=bad).status_code == 400


def test_expire_endpoint(emu: Emulator) -> None:
    tus = requests.post(f"{emu.url}/tus/files/", headers={**TUS, "Upload-Length": "3"})
    upload_url = tus.headers["Location"]
    upload_id = upload_url.rsplit("/", 1)[1]
    expired = requests.post(control(emu, "expire"), json={"provider": "tus", "id": upload_id})
    assert expired.status_code == 200 and expired.json()["expired"] is True
    assert requests.head(upload_url, headers=TUS).status_code == 410
    missing = requests.post(control(emu, "expire"), json={"provider": "qlik", "id": "nope"})
    assert missing.status_code == 404
    assert requests.post(control(emu, "expire"), json={"provider": "qlik"}).status_code == 400


def test_unknown_control_endpoint_and_unknown_mount(emu: Emulator) -> None:
    assert requests.get(control(emu, "nope")).status_code == 404
    assert requests.put(control(emu, "faults")).status_code == 404
    response = requests.get(f"{emu.url}/thulium-typo/api/temporary_files")
    assert response.status_code == 404
    assert response.json()["mounts"] == sorted(emu.mounts)
    assert {"qlik", "tus"} <= set(emu.mounts)
    root = requests.get(emu.url)
    assert root.status_code == 404 and root.headers["Content-Type"] == "application/json"


def test_unknown_route_inside_a_mount_is_the_providers_404(emu: Emulator) -> None:
    response = requests.get(f"{emu.url}/qlik/api/v2/whatever", headers=QLIK_AUTH)
    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "HTTP-404"


def test_clock_only_moves_forward_and_can_be_pinned() -> None:
    clock = Clock(start=1_700_000_000)
    assert abs(clock.time() - 1_700_000_000) < 5
    assert clock.now().tzinfo == timezone.utc
    assert clock.advance(100) >= 1_700_000_100
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_injected_clock_drives_details_timestamps() -> None:
    clock = Clock(start=datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc).timestamp())
    with Emulator(clock=clock) as emu:
        created = requests.post(qlik_api(emu), params={"ttl": "60"}, data=b"x", headers=QLIK_AUTH)
        details = requests.get(f"{emu.url}/qlik{created.headers['Location']}/details", headers=QLIK_AUTH).json()
        assert details["CreatedAt"].startswith("2030-01-02T03:04:")
        assert details["Expires"].startswith("2030-01-02T03:05:")
