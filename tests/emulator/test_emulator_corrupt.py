"""The `corrupt` fault, over raw HTTP: every answer that reports what was stored misreports it once.

The bytes are stored (and served) exactly; only what the answer says about them is wrong: sizes and
tus offsets one byte more, Pyrus's MD5 not the stored bytes' one, a download claiming one byte more.
The fault matches like the others and is used up by the requests it matches.
"""

from __future__ import annotations

import hashlib
import http.client
import os
from urllib.parse import urlsplit

import pytest
import requests

from tmpup.emulator import Credentials, Emulator, Fault

from . import test_et_routes as et
from . import test_kf5_routes as kf5
from . import test_pyrus_routes as pyrus
from . import test_thulium_routes as thulium
from .conftest import OCTET, QLIK_AUTH, TUS, qlik_api, sha256

DATA = os.urandom(100_000)


def corrupt(emu: Emulator, provider: str, method: str | None, path: str = "", times: int | None = 1) -> Fault:
    return emu.faults.add(Fault(provider=provider, method=method, path=path, corrupt=True, times=times))


# -- the fault itself ----------------------------------------------------------------------------


def test_corrupt_is_a_fault_of_its_own_and_excludes_answering_otherwise() -> None:
    assert Fault(corrupt=True).corrupt is True
    assert Fault.from_dict({"provider": "qlik", "corrupt": True, "delay": 0.1, "times": None}).corrupt is True
    for bad in ({"corrupt": True, "status": 503}, {"corrupt": True, "drop_after": 10}):
        with pytest.raises(ValueError, match="corrupt excludes"):
            Fault(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="corrupt"):
        Fault(corrupt=False)  # the message names every kind, corrupt included
    for bad_type in ({"corrupt": 1}, {"corrupt": "yes"}):
        with pytest.raises(ValueError):
            Fault.from_dict(bad_type)


def test_the_fault_listing_describes_every_kind(emu: Emulator) -> None:
    listing = requests.get(f"{emu.url}/_emulator/faults").json()
    assert set(listing["kinds"]) == {"delay", "expire", "status", "drop_after", "corrupt"}
    assert "md5_hash" in listing["kinds"]["corrupt"] and "Upload-Offset" in listing["kinds"]["corrupt"]
    refused = requests.post(f"{emu.url}/_emulator/faults", json={"corrupt": True, "status": 500})
    assert refused.status_code == 400 and "corrupt excludes" in refused.json()["message"]


# -- upload answers ------------------------------------------------------------------------------


def test_thulium_reports_one_byte_more(emu: Emulator) -> None:
    corrupt(emu, "thulium", "POST")
    lying = thulium.post(emu, DATA)
    assert lying.status_code == 200 and lying.json()["size"] == len(DATA) + 1
    assert emu.blob_sha256("thulium", lying.json()["token"]) == sha256(DATA)
    assert thulium.post(emu, DATA).json()["size"] == len(DATA)  # used up


def test_kf5_reports_one_byte_more_on_upload_and_show(emu: Emulator) -> None:
    corrupt(emu, "kf5", "POST")
    item = kf5.attachment(kf5.upload(emu, DATA))
    assert item["size"] == len(DATA) + 1
    assert emu.blob_sha256("kf5", str(item["id"])) == sha256(DATA)
    show = f"{kf5.api(emu)}/attachments/{item['id']}.json"
    assert requests.get(show, auth=kf5.TOKEN_AUTH).json()["attachment"]["size"] == len(DATA)
    corrupt(emu, "kf5", "GET", r"\.json$")
    assert requests.get(show, auth=kf5.TOKEN_AUTH).json()["attachment"]["size"] == len(DATA) + 1
    assert requests.get(item["content_url"]).content == DATA


def test_enterprise_tester_reports_one_byte_more_for_every_file(emu: Emulator) -> None:
    set_id = et.new_set(emu)
    corrupt(emu, "enterprise-tester", "POST", r"/temporaryattachmentset/")
    answer = et.post(emu, set_id, et.part("attachment; filename=a.bin", DATA), et.part("attachment; filename=b", b"b"))
    assert answer.status_code == 201, answer.text
    assert [item["Size"] for item in answer.json()] == [len(DATA) + 1, 2]
    listing = requests.get(f"{et.api(emu)}/temporaryattachmentset/{set_id}", auth=et.AUTH).json()["Items"]
    assert [item["Size"] for item in listing] == [len(DATA), 1]
    assert requests.get(answer.json()[0]["Content"], auth=et.AUTH).content == DATA


def test_pyrus_answers_an_md5_that_is_not_the_stored_bytes(emu: Emulator) -> None:
    real = hashlib.md5(DATA).hexdigest()
    corrupt(emu, "pyrus", "POST", r"/files/upload")
    lying = pyrus.upload(emu, DATA)  # its auth request is not matched: another path
    assert lying.status_code == 200
    md5 = lying.json()["md5_hash"]
    assert md5 != real and len(md5) == 32 and int(md5, 16) >= 0
    number = pyrus.pyrus_mount(emu).attachment_id(lying.json()["guid"])
    assert emu.blob_sha256("pyrus", number) == sha256(DATA)
    assert pyrus.upload(emu, DATA).json()["md5_hash"] == real


def test_qlik_details_report_one_byte_more(emu: Emulator) -> None:
    created = requests.post(qlik_api(emu), data=DATA, headers=QLIK_AUTH)
    details = f"{emu.url}/qlik{created.headers['Location']}/details"
    corrupt(emu, "qlik", "GET", "/details$")
    assert requests.get(details, headers=QLIK_AUTH).json()["Size"] == str(len(DATA) + 1)
    assert requests.get(details, headers=QLIK_AUTH).json()["Size"] == str(len(DATA))


@pytest.mark.parametrize("provider", ["tus", "qlik"])
def test_tus_offsets_are_one_byte_more_on_patch_head_and_creation_with_upload(emu: Emulator, provider: str) -> None:
    if provider == "qlik":
        create, auth = f"{qlik_api(emu)}/files", dict(QLIK_AUTH)
    else:
        create, auth = f"{emu.url}/tus/files/", {}
    headers = {**auth, **TUS, "Upload-Length": str(len(DATA))}
    corrupt(emu, provider, "POST")
    with_upload = requests.post(create, data=DATA[:10], headers={**headers, "Content-Type": OCTET})
    assert with_upload.status_code == 201 and with_upload.headers["Upload-Offset"] == "11"
    url = with_upload.headers["Location"]
    upload_id = url.rsplit("/", 1)[1]
    assert emu.store.find(provider, upload_id).offset == 10

    corrupt(emu, provider, "HEAD")
    assert requests.head(url, headers={**auth, **TUS}).headers["Upload-Offset"] == "11"
    assert requests.head(url, headers={**auth, **TUS}).headers["Upload-Offset"] == "10"

    corrupt(emu, provider, "PATCH")
    patch = {**auth, **TUS, "Content-Type": OCTET, "Upload-Offset": "10"}
    answer = requests.patch(url, data=DATA[10:], headers=patch)
    assert answer.status_code == 204 and answer.headers["Upload-Offset"] == str(len(DATA) + 1)
    assert emu.blob_sha256(provider, upload_id) == sha256(DATA)


def test_a_request_that_reports_nothing_stored_uses_the_fault_up(emu: Emulator) -> None:
    fault = corrupt(emu, "tus", None)
    created = requests.post(f"{emu.url}/tus/files/", headers={**TUS, "Upload-Length": "3"})
    assert created.status_code == 201 and "Upload-Offset" not in created.headers
    assert fault not in [f for f, _ in emu.faults.active()]
    assert requests.head(created.headers["Location"], headers=TUS).headers["Upload-Offset"] == "0"


# -- downloads -----------------------------------------------------------------------------------


@pytest.fixture
def qlik_content(emu: Emulator) -> str:
    created = requests.post(qlik_api(emu), data=DATA, headers=QLIK_AUTH)
    return f"{emu.url}/qlik{created.headers['Location']}"


def test_a_206_claims_one_byte_more_in_its_total(emu: Emulator, qlik_content: str, quiet: None) -> None:
    corrupt(emu, "qlik", "GET")
    ranged = requests.get(qlik_content, headers={**QLIK_AUTH, "Range": "bytes=1000-"})
    assert ranged.status_code == 206
    assert ranged.headers["Content-Range"] == f"bytes 1000-{len(DATA) - 1}/{len(DATA) + 1}"
    assert ranged.content == DATA[1000:]  # the bytes are the stored ones
    corrupt(emu, "qlik", "GET")
    past = requests.get(qlik_content, headers={**QLIK_AUTH, "Range": f"bytes={len(DATA)}-"})
    assert past.status_code == 416 and past.headers["Content-Range"] == f"bytes */{len(DATA) + 1}"


def test_a_200_claims_one_byte_more_and_the_connection_closes_short(
    emu: Emulator, qlik_content: str, quiet: None
) -> None:
    corrupt(emu, "qlik", "GET")
    parts = urlsplit(qlik_content)
    connection = http.client.HTTPConnection(parts.netloc, timeout=10)
    try:
        connection.request("GET", parts.path, headers=QLIK_AUTH)
        response = connection.getresponse()
        assert response.status == 200 and response.headers["Content-Length"] == str(len(DATA) + 1)
        with pytest.raises(http.client.IncompleteRead) as short:
            response.read()
        assert short.value.partial == DATA  # every stored byte, then the server closed the connection
    finally:
        connection.close()
    # The next answer is the true one.
    again = requests.get(qlik_content, headers=QLIK_AUTH)
    assert again.content == DATA and again.headers["Content-Length"] == str(len(DATA))
    corrupt(emu, "qlik", "HEAD")
    head = requests.head(qlik_content, headers=QLIK_AUTH)  # no body to cut: the header alone misreports
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(DATA) + 1)


@pytest.mark.parametrize("provider", ["tus", "kf5", "pyrus", "enterprise-tester"])
def test_every_download_route_misreports(emu: Emulator, provider: str, quiet: None) -> None:
    headers: dict[str, str] = {}
    auth: tuple[str, str] | None = None
    if provider == "tus":
        creation = {**TUS, "Upload-Length": str(len(DATA)), "Content-Type": OCTET}
        created = requests.post(f"{emu.url}/tus/files/", data=DATA, headers=creation)
        url = created.headers["Location"]
    elif provider == "kf5":
        url = kf5.attachment(kf5.upload(emu, DATA))["content_url"]
    elif provider == "pyrus":
        headers = pyrus.token(emu)
        guid = pyrus.upload(emu, DATA, headers=headers).json()["guid"]
        url = f"{pyrus.base(emu)}/v4/files/download/{pyrus.pyrus_mount(emu).attachment_id(guid)}"
    else:
        auth = (Credentials().et_username, Credentials().et_password)
        set_id = et.new_set(emu)
        url = et.post(emu, set_id, et.part("attachment; filename=d.bin", DATA)).json()[0]["Content"]
    corrupt(emu, provider, "GET")
    ranged = requests.get(url, headers={**headers, "Range": "bytes=10-"}, auth=auth)
    assert ranged.status_code == 206, ranged.text
    assert ranged.headers["Content-Range"] == f"bytes 10-{len(DATA) - 1}/{len(DATA) + 1}"
    assert ranged.content == DATA[10:]
    true = requests.get(url, headers={**headers, "Range": "bytes=10-"}, auth=auth)
    assert true.headers["Content-Range"] == f"bytes 10-{len(DATA) - 1}/{len(DATA)}"
