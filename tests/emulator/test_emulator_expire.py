"""Early expiry (`POST /_emulator/expire`, the `expire` fault) for every provider: honoured or refused.

No provider may answer `{"expired": true}` and go on serving the upload. Qlik, tus and Thulium have
a TTL, Pyrus removes unreferenced files "after a while": those expire, and their API then answers as
it does for an expired or removed file. KF5 and Enterprise Tester document no expiry at all: the
emulator refuses to expire their uploads (400, saying why) rather than pretend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import requests

from tmpup.emulator import Emulator, Fault
from tmpup.emulator.store import BlobExpired

from . import test_et_routes as et
from . import test_kf5_routes as kf5
from . import test_pyrus_routes as pyrus
from . import test_thulium_routes as thulium
from .conftest import QLIK_AUTH, TUS, qlik_api


def control(emu: Emulator, path: str) -> str:
    return f"{emu.url}/_emulator/{path}"


@dataclass(frozen=True)
class Upload:
    """One upload: the id `expire` takes, and how its provider answers about it now."""

    id: str
    status: Callable[[], int]  # the status of the request that shows the upload (200 while it lives)
    gone: int | None  # that status once expired; None: the provider's uploads never expire


def upload_qlik(emu: Emulator) -> Upload:
    created = requests.post(qlik_api(emu), data=b"data", headers=QLIK_AUTH)
    url = f"{emu.url}/qlik{created.headers['Location']}"
    return Upload(url.rsplit("/", 1)[1], lambda: requests.get(url, headers=QLIK_AUTH).status_code, 410)


def upload_tus(emu: Emulator) -> Upload:
    url = requests.post(f"{emu.url}/tus/files/", headers={**TUS, "Upload-Length": "4"}).headers["Location"]
    return Upload(url.rsplit("/", 1)[1], lambda: requests.head(url, headers=TUS).status_code, 410)


def upload_thulium(emu: Emulator) -> Upload:
    token = thulium.post(emu, b"data").json()["token"]

    def status() -> int:
        # The API has no way to read a temporary file back: ask the store, as the Thulium tests do.
        try:
            emu.store.find("thulium", token)
        except BlobExpired:
            return 410
        return 200

    return Upload(token, status, 410)


def upload_pyrus(emu: Emulator) -> Upload:
    headers = pyrus.token(emu)
    guid = pyrus.upload(emu, b"data", headers=headers).json()["guid"]
    url = f"{pyrus.base(emu)}/v4/files/download/{pyrus.pyrus_mount(emu).attachment_id(guid)}"
    return Upload(guid, lambda: requests.get(url, headers=headers).status_code, 403)  # 403 file_is_missing


def upload_kf5(emu: Emulator) -> Upload:
    item = kf5.attachment(kf5.upload(emu, b"data"))
    show = f"{kf5.api(emu)}/attachments/{item['id']}.json"

    def status() -> int:
        shown = requests.get(show, auth=kf5.TOKEN_AUTH).status_code
        content = requests.get(item["content_url"]).status_code
        return shown if shown != 200 else content

    return Upload(str(item["id"]), status, None)


def upload_et(emu: Emulator) -> Upload:
    set_id = et.new_set(emu)
    (item,) = et.post(emu, set_id, et.part("attachment; filename=a.bin", b"data")).json()
    listing = f"{et.api(emu)}/temporaryattachmentset/{set_id}"

    def status() -> int:
        for response in (requests.get(item["Self"], auth=et.AUTH), requests.get(item["Content"], auth=et.AUTH)):
            if response.status_code != 200:
                return response.status_code
        return 200 if requests.get(listing, auth=et.AUTH).json()["Items"] == [item] else 404

    return Upload(item["Id"], status, None)


UPLOADS: dict[str, Callable[[Emulator], Upload]] = {
    "qlik": upload_qlik,
    "tus": upload_tus,
    "thulium": upload_thulium,
    "pyrus": upload_pyrus,
    "kf5": upload_kf5,
    "enterprise-tester": upload_et,
}


def test_every_mount_is_covered(emu: Emulator) -> None:
    assert set(UPLOADS) == set(emu.mounts)


@pytest.mark.parametrize("provider", UPLOADS)
def test_the_expire_endpoint_is_honoured_or_refused(emu: Emulator, provider: str) -> None:
    upload = UPLOADS[provider](emu)
    assert upload.status() == 200
    answer = requests.post(control(emu, "expire"), json={"provider": provider, "id": upload.id})
    if upload.gone is None:
        assert answer.status_code == 400
        message = answer.json()["message"]
        assert "do not expire" in message and provider in message
        assert upload.status() == 200  # still served, as the refusal says
        return
    assert answer.status_code == 200 and answer.json() == {"expired": True, "provider": provider, "id": upload.id}
    assert upload.status() == upload.gone


@pytest.mark.parametrize("provider", UPLOADS)
def test_an_expire_fault_is_honoured_or_refused(emu: Emulator, provider: str) -> None:
    upload = UPLOADS[provider](emu)
    if upload.gone is None:
        with pytest.raises(ValueError, match="do not expire"):
            emu.faults.add(Fault(provider=provider, expire=True))
        over_http = requests.post(control(emu, "faults"), json={"provider": provider, "expire": True})
        assert over_http.status_code == 400 and "do not expire" in over_http.json()["message"]
        assert len(emu.faults) == 0
        # A fault for any provider may pass through such a mount: it expires nothing there.
        emu.faults.add(Fault(expire=True, times=None))
        assert upload.status() == 200
        return
    if provider == "thulium":  # its only route is the upload, which addresses no existing upload
        assert requests.post(control(emu, "expire"), json={"provider": provider, "id": upload.id}).ok
    else:
        emu.faults.add(Fault(provider=provider, method="GET" if provider != "tus" else "HEAD", expire=True))
    assert upload.status() == upload.gone


def test_pyrus_expires_by_guid_or_numeric_id_and_unknown_is_404(emu: Emulator) -> None:
    first, second = upload_pyrus(emu), upload_pyrus(emu)
    number = pyrus.pyrus_mount(emu).attachment_id(second.id)
    assert requests.post(control(emu, "expire"), json={"provider": "pyrus", "id": number}).status_code == 200
    assert (first.status(), second.status()) == (200, 403)
    missing = requests.post(control(emu, "expire"), json={"provider": "pyrus", "id": "no-such-guid"})
    assert missing.status_code == 404


def test_an_unknown_provider_is_404_naming_the_mounts(emu: Emulator) -> None:
    answer = requests.post(control(emu, "expire"), json={"provider": "dropbox", "id": "x"})
    assert answer.status_code == 404
    assert "dropbox" in answer.json()["message"] and "qlik" in answer.json()["message"]
