"""Fault injection: dropped connections, error statuses with Retry-After, delays, early expiry."""

from __future__ import annotations

import os
import time

import pytest
import requests

from tmpup.emulator import Emulator, Fault

from .conftest import OCTET, QLIK_AUTH, TUS, qlik_api, sha256


def tus_upload(emu: Emulator, provider: str, length: int) -> tuple[str, dict[str, str]]:
    if provider == "qlik":
        url, auth = f"{qlik_api(emu)}/files", dict(QLIK_AUTH)
    else:
        url, auth = f"{emu.url}/tus/files/", {}
    response = requests.post(url, headers={**auth, **TUS, "Upload-Length": str(length)})
    assert response.status_code == 201
    return response.headers["Location"], auth


def tus_patch(url: str, auth: dict[str, str], offset: int, data: object) -> requests.Response:
    headers = {**auth, **TUS, "Content-Type": OCTET, "Upload-Offset": str(offset)}
    return requests.patch(url, data=data, headers=headers)


def tus_offset(url: str, auth: dict[str, str]) -> int:
    response = requests.head(url, headers={**auth, **TUS})
    assert response.status_code == 200
    return int(response.headers["Upload-Offset"])


@pytest.mark.parametrize("provider", ["tus", "qlik"])
def test_drop_after_keeps_exactly_what_arrived(emu: Emulator, provider: str, quiet: None) -> None:
    data = os.urandom(3 * 1024 * 1024)
    url, auth = tus_upload(emu, provider, len(data))
    emu.faults.add(Fault(provider=provider, method="PATCH", drop_after=1_000_000))
    with pytest.raises(requests.ConnectionError):
        tus_patch(url, auth, 0, data)
    assert tus_offset(url, auth) == 1_000_000
    upload_id = url.rsplit("/", 1)[1]
    assert emu.blob_path(provider, upload_id).read_bytes() == data[:1_000_000]
    # the client resumes from the offset the server reports
    resumed = tus_patch(url, auth, 1_000_000, data[1_000_000:])
    assert resumed.status_code == 204 and resumed.headers["Upload-Offset"] == str(len(data))
    assert emu.blob_sha256(provider, upload_id) == sha256(data)


def test_drop_after_on_a_chunked_body(emu: Emulator, quiet: None) -> None:
    url, auth = tus_upload(emu, "tus", 300_000)
    emu.faults.add(Fault(provider="tus", method="PATCH", drop_after=123_457))
    with pytest.raises(requests.ConnectionError):
        tus_patch(url, auth, 0, iter([b"a" * 100_000, b"b" * 100_000, b"c" * 100_000]))
    assert tus_offset(url, auth) == 123_457


def test_drop_after_zero_and_past_the_end(emu: Emulator, quiet: None) -> None:
    url, auth = tus_upload(emu, "tus", 10)
    emu.faults.add(Fault(provider="tus", method="PATCH", drop_after=0))
    with pytest.raises(requests.ConnectionError):
        tus_patch(url, auth, 0, b"0123456789")
    assert tus_offset(url, auth) == 0
    # the whole body arrives but the answer is lost: the bytes are stored all the same
    emu.faults.add(Fault(provider="tus", method="PATCH", drop_after=1000))
    with pytest.raises(requests.ConnectionError):
        tus_patch(url, auth, 0, b"0123456789")
    assert tus_offset(url, auth) == 10


def test_dropped_raw_upload_stores_nothing(emu: Emulator, quiet: None) -> None:
    emu.faults.add(Fault(provider="qlik", method="POST", path=r"/temp-contents$", drop_after=500_000))
    with pytest.raises(requests.ConnectionError):
        requests.post(qlik_api(emu), data=os.urandom(2_000_000), headers=QLIK_AUTH)
    assert emu.store.blobs("qlik") == []
    retry = requests.post(qlik_api(emu), data=b"fine", headers=QLIK_AUTH)
    assert retry.status_code == 201


def test_dropped_download(emu: Emulator, quiet: None) -> None:
    created = requests.post(qlik_api(emu), data=b"payload", headers=QLIK_AUTH)
    url = f"{emu.url}/qlik{created.headers['Location']}"
    emu.faults.add(Fault(provider="qlik", method="GET", drop_after=0))
    with pytest.raises(requests.ConnectionError):
        requests.get(url, headers=QLIK_AUTH)
    assert requests.get(url, headers=QLIK_AUTH).content == b"payload"


def test_status_with_retry_after_in_the_provider_format(emu: Emulator) -> None:
    emu.faults.add(Fault(provider="qlik", method="POST", status=503, retry_after=7))
    refused = requests.post(qlik_api(emu), data=b"x" * 100_000, headers=QLIK_AUTH)
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "7"
    assert refused.json()["errors"][0]["code"] == "HTTP-503"
    assert emu.store.blobs("qlik") == []
    assert requests.post(qlik_api(emu), data=b"x", headers=QLIK_AUTH).status_code == 201

    emu.faults.add(Fault(provider="tus", status=429, retry_after=1, message="slow down"))
    limited = requests.post(f"{emu.url}/tus/files/", headers={**TUS, "Upload-Length": "1"})
    assert limited.status_code == 429
    assert limited.text == "ERR_RATE_LIMITED: slow down\n"
    assert limited.headers["Tus-Resumable"] == "1.0.0"


@pytest.mark.parametrize("provider", ["tus", "qlik"])
def test_injected_423_on_head(emu: Emulator, provider: str) -> None:
    url, auth = tus_upload(emu, provider, 5)
    emu.faults.add(Fault(provider=provider, method="HEAD", status=423))
    locked = requests.head(url, headers={**auth, **TUS})
    assert locked.status_code == 423
    assert locked.headers["Tus-Resumable"] == "1.0.0"
    assert "Upload-Offset" not in locked.headers
    assert tus_offset(url, auth) == 0


def test_times_and_matching(emu: Emulator) -> None:
    url, auth = tus_upload(emu, "tus", 4)
    emu.faults.add(Fault(provider="tus", method="PATCH", path=r"/files/[0-9a-f]+$", status=500, times=2))
    assert requests.head(url, headers=TUS).status_code == 200  # HEAD is not targeted
    assert requests.post(f"{emu.url}/qlik/api/v1/temp-contents", headers=QLIK_AUTH).status_code == 201
    assert tus_patch(url, auth, 0, b"ab").status_code == 500
    assert tus_patch(url, auth, 0, b"ab").status_code == 500
    assert tus_patch(url, auth, 0, b"ab").status_code == 204
    assert len(emu.faults) == 0

    emu.faults.add(Fault(provider="tus", method="HEAD", status=503, times=None))
    for _ in range(4):
        assert requests.head(url, headers=TUS).status_code == 503
    assert emu.faults.clear() == 1
    assert requests.head(url, headers=TUS).status_code == 200


def test_faults_follow_method_override(emu: Emulator) -> None:
    url, _ = tus_upload(emu, "tus", 2)
    emu.faults.add(Fault(provider="tus", method="PATCH", status=500))
    headers = {**TUS, "Content-Type": OCTET, "Upload-Offset": "0", "X-HTTP-Method-Override": "PATCH"}
    assert requests.post(url, data=b"ab", headers=headers).status_code == 500


def test_delay(emu: Emulator) -> None:
    emu.faults.add(Fault(provider="qlik", delay=0.4))
    started = time.monotonic()
    response = requests.post(qlik_api(emu), data=b"slow", headers=QLIK_AUTH)
    assert time.monotonic() - started >= 0.4
    assert response.status_code == 201
    started = time.monotonic()
    requests.post(qlik_api(emu), data=b"fast", headers=QLIK_AUTH)
    assert time.monotonic() - started < 0.4


def test_expire_fault_expires_the_target_now(emu: Emulator) -> None:
    created = requests.post(qlik_api(emu), data=b"x", headers=QLIK_AUTH)
    url = f"{emu.url}/qlik{created.headers['Location']}"
    assert requests.get(url, headers=QLIK_AUTH).status_code == 200
    emu.faults.add(Fault(provider="qlik", method="GET", path="/details$", expire=True))
    assert requests.get(f"{url}/details", headers=QLIK_AUTH).status_code == 410
    assert requests.get(url, headers=QLIK_AUTH).status_code == 410

    tus_url, auth = tus_upload(emu, "tus", 4)
    emu.faults.add(Fault(provider="tus", method="PATCH", expire=True))
    assert tus_patch(tus_url, auth, 0, b"abcd").status_code == 410


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"status": 503, "drop_after": 5},
        {"status": 200},
        {"status": 503, "times": 0},
        {"drop_after": -1},
        {"delay": -1.0},
        {"status": 500, "path": "("},
        {"status": 503, "method": "PATHC"},  # a typo would match nothing, ever
    ],
)
def test_invalid_faults_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Fault(**kwargs)  # type: ignore[arg-type]


def test_from_dict_checks_names_and_types() -> None:
    assert Fault.from_dict({"provider": "qlik", "status": 503, "retry_after": 2}).retry_after == 2
    assert Fault.from_dict({"delay": 1}).delay == 1
    for bad in ({"status": "503"}, {"stauts": 503}, {"status": True}, {"expire": 1}, {"times": 1.5, "status": 500}):
        with pytest.raises(ValueError):
            Fault.from_dict(bad)


@pytest.mark.parametrize("provider", ["et", "Qlik", "enterprise_tester"])
def test_a_fault_for_a_provider_that_is_not_mounted_is_refused_over_http(emu: Emulator, provider: str) -> None:
    """`et` is the README's profile name for enterprise-tester: a fault for it would never fire, and a
    test relying on it would pass for the wrong reason."""
    response = requests.post(f"{emu.url}/_emulator/faults", json={"provider": provider, "status": 503})
    assert response.status_code == 400
    assert "enterprise-tester" in response.text and "qlik" in response.text  # the mounts it could have meant
    assert len(emu.faults) == 0
    good = {"provider": "enterprise-tester", "method": "post", "status": 503}
    ok = requests.post(f"{emu.url}/_emulator/faults", json=good)
    assert ok.status_code == 201 and len(emu.faults) == 1
