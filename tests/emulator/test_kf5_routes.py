"""KF5 on the emulator, over raw HTTP with `requests` (not tmpup): upload, show, list, download, delete, auth."""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any
from urllib.parse import quote

import pytest
import requests

from tmpup.emulator import Credentials, Emulator, Fault

CREDS = Credentials()
TOKEN_AUTH = (f"{CREDS.kf5_email}/token", CREDS.kf5_api_token)
PASSWORD_AUTH = (CREDS.kf5_email, CREDS.kf5_password)
BINARY = {"Content-Type": "application/binary"}


def api(emu: Emulator) -> str:
    return f"{emu.url}/kf5/apiv2"


def upload(
    emu: Emulator, data: Any = b"GIF89a...", name: str | None = "hello.gif", auth: Any = TOKEN_AUTH, **kw: Any
) -> requests.Response:
    params = {} if name is None else {"filename": name}
    headers = kw.pop("headers", BINARY)
    return requests.post(f"{api(emu)}/attachments.json", params=params, data=data, headers=headers, auth=auth)


def attachment(response: requests.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"attachment"}
    item: dict[str, Any] = body["attachment"]
    return item


def assert_error(response: requests.Response, status: int, error: str) -> str:
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"error", "message"} and body["error"] == error
    message: str = body["message"]
    return message


@pytest.mark.parametrize("auth", [TOKEN_AUTH, PASSWORD_AUTH])
def test_upload_answers_201_location_and_the_attachment(emu: Emulator, auth: Any) -> None:
    response = upload(emu, b"GIF89a content", auth=auth)
    assert response.status_code == 201
    item = attachment(response)
    assert set(item) == {"id", "url", "name", "size", "content_url", "token"}
    assert isinstance(item["id"], int) and item["name"] == "hello.gif" and item["size"] == 14
    assert re.fullmatch(r"001[0-9a-f]{28}", item["token"])
    assert item["url"] == f"{api(emu)}/attachments/{item['id']}.json"
    assert response.headers["Location"] == item["url"]
    assert item["content_url"] == f"{emu.url}/kf5/attachments/download/{item['id']}/{item['token']}/"
    assert emu.blob_sha256("kf5", str(item["id"])) == hashlib.sha256(b"GIF89a content").hexdigest()


def test_ids_count_up_and_tokens_differ(emu: Emulator) -> None:
    items = [attachment(upload(emu)) for _ in range(3)]
    assert [i["id"] for i in items] == [1948, 1949, 1950]
    assert len({i["token"] for i in items}) == 3


@pytest.mark.parametrize("size", [0, 1, 3 * 1024 * 1024 + 17])
def test_bytes_round_trip(emu: Emulator, size: int) -> None:
    data = os.urandom(size)
    item = attachment(upload(emu, data, name="blob.bin"))
    assert item["size"] == size
    got = requests.get(item["content_url"])
    assert got.status_code == 200 and got.content == data
    assert got.headers["Accept-Ranges"] == "bytes"
    assert got.headers["Content-Disposition"] == 'attachment; filename="blob.bin"'


@pytest.mark.parametrize("name", ["with space.txt", "a&b#c%d;e=f+g?.txt", "quote\"s 'x'.txt", "отчёт 日本 تقرير.csv"])
def test_file_names_arrive_exactly(emu: Emulator, name: str) -> None:
    item = attachment(upload(emu, name=name))
    assert item["name"] == name
    assert emu.store.get("kf5", str(item["id"])).name == name  # type: ignore[union-attr]
    disposition = requests.get(item["content_url"]).headers["Content-Disposition"]
    assert disposition.startswith("attachment; filename=")
    if not name.isascii():
        assert disposition.endswith("filename*=UTF-8''" + quote(name, safe="!#$&+-.^_`|~"))


def test_show_answers_the_same_attachment(emu: Emulator) -> None:
    item = attachment(upload(emu))
    for auth in (TOKEN_AUTH, PASSWORD_AUTH):
        got = requests.get(item["url"], auth=auth)
        assert got.status_code == 200 and attachment(got) == item


def test_download_with_range(emu: Emulator) -> None:
    data = os.urandom(10_000)
    item = attachment(upload(emu, data))
    part = requests.get(item["content_url"], headers={"Range": "bytes=4000-"})
    assert part.status_code == 206 and part.content == data[4000:]
    assert part.headers["Content-Range"] == "bytes 4000-9999/10000"
    tail = requests.get(item["content_url"], headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    beyond = requests.get(item["content_url"], headers={"Range": "bytes=10000-"})
    assert_error(beyond, 416, "RangeNotSatisfiable")
    assert beyond.headers["Content-Range"] == "bytes */10000"


def test_download_type_is_guessed_from_the_name(emu: Emulator) -> None:
    item = attachment(upload(emu, b"{}", name="data.json"))
    assert requests.get(item["content_url"]).headers["Content-Type"].startswith("application/json")


def test_download_needs_the_right_token_not_credentials(emu: Emulator) -> None:
    item = attachment(upload(emu))
    assert requests.get(item["content_url"]).status_code == 200
    wrong = item["content_url"].replace(item["token"], "001" + "0" * 28)
    assert_error(requests.get(wrong), 404, "RecordNotFound")


def test_delete_then_everything_is_404(emu: Emulator) -> None:
    item = attachment(upload(emu))
    deleted = requests.delete(item["url"], auth=PASSWORD_AUTH)
    assert deleted.status_code == 200 and deleted.content == b""
    assert emu.store.get("kf5", str(item["id"])) is None
    assert_error(requests.get(item["url"], auth=TOKEN_AUTH), 404, "RecordNotFound")
    assert_error(requests.get(item["content_url"]), 404, "RecordNotFound")
    assert_error(requests.delete(item["url"], auth=TOKEN_AUTH), 404, "RecordNotFound")


def test_unknown_ids(emu: Emulator) -> None:
    assert_error(requests.get(f"{api(emu)}/attachments/1.json", auth=TOKEN_AUTH), 404, "RecordNotFound")
    assert requests.get(f"{api(emu)}/attachments/abc.json", auth=TOKEN_AUTH).status_code == 404


@pytest.mark.parametrize(
    "auth",
    [
        None,
        (CREDS.kf5_email, CREDS.kf5_api_token),  # the API token is not a password
        (f"{CREDS.kf5_email}/token", CREDS.kf5_password),  # nor the password a token
        ("other@demo.kf5.com", CREDS.kf5_password),
        ("other@demo.kf5.com/token", CREDS.kf5_api_token),
    ],
)
def test_auth_is_enforced(emu: Emulator, auth: Any) -> None:
    response = upload(emu, auth=auth)
    assert "authenticat" in assert_error(response, 401, "Unauthorized").lower()
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert emu.store.blobs("kf5") == []
    item_url = f"{api(emu)}/attachments/1948.json"
    assert requests.get(item_url, auth=auth).status_code == 401
    assert requests.delete(item_url, auth=auth).status_code == 401
    assert requests.get(f"{api(emu)}/attachments/AttachmentLists.json", auth=auth).status_code == 401


@pytest.mark.parametrize("content_type", [None, "application/octet-stream", "image/gif", "multipart/form-data"])
def test_content_type_must_be_application_binary(emu: Emulator, content_type: str | None) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = upload(emu, headers=headers)
    assert "application/binary" in assert_error(response, 400, "BadRequest")
    assert emu.store.blobs("kf5") == []


@pytest.mark.parametrize("name", [None, "", "  ", "a\x01b"])
def test_filename_is_required(emu: Emulator, name: str | None) -> None:
    assert_error(upload(emu, name=name), 400, "BadRequest")
    assert emu.store.blobs("kf5") == []


def test_size_limit_is_413() -> None:
    with Emulator(max_size=10) as emu:
        assert upload(emu, b"0123456789").status_code == 201
        assert_error(upload(emu, b"0123456789A"), 413, "RequestEntityTooLarge")
        assert len(emu.store.blobs("kf5")) == 1


def test_attachment_list_pages_with_string_ids(emu: Emulator) -> None:
    items = [attachment(upload(emu, name=f"f{i}.txt")) for i in range(3)]
    listing = requests.get(
        f"{api(emu)}/attachments/AttachmentLists.json", params={"page": 1, "per_page": 2}, auth=TOKEN_AUTH
    )
    assert listing.status_code == 200
    body = listing.json()
    assert {k: body[k] for k in ("code", "page_count", "page", "per_page")} == {
        "code": 0,
        "page_count": 2,
        "page": 1,
        "per_page": 2,
    }
    assert [a["id"] for a in body["attachments"]] == [str(items[2]["id"]), str(items[1]["id"])]
    first = body["attachments"][0]
    assert first["content_url"] == items[2]["content_url"] + "?filename=f2.txt"
    assert requests.get(first["content_url"]).content == b"GIF89a..."
    page2 = requests.get(
        f"{api(emu)}/attachments/AttachmentLists.json", params={"page": 2, "per_page": 2}, auth=TOKEN_AUTH
    ).json()
    assert [a["id"] for a in page2["attachments"]] == [str(items[0]["id"])]


def test_attachment_list_rejects_bad_paging(emu: Emulator) -> None:
    for params in ({"page": "x"}, {"page": 0}, {"per_page": 1000}):
        got = requests.get(f"{api(emu)}/attachments/AttachmentLists.json", params=params, auth=TOKEN_AUTH)
        assert_error(got, 400, "BadRequest")


def test_injected_faults_use_the_error_body(emu: Emulator) -> None:
    emu.faults.add(Fault(provider="kf5", method="POST", status=429, retry_after=3, message="slow down"))
    response = upload(emu)
    assert assert_error(response, 429, "TooManyRequests") == "slow down"
    assert response.headers["Retry-After"] == "3"
    assert upload(emu).status_code == 201


def test_a_dropped_upload_stores_nothing(emu: Emulator) -> None:
    emu.faults.add(Fault(provider="kf5", method="POST", drop_after=4096))
    with pytest.raises(requests.ConnectionError):
        upload(emu, os.urandom(1 << 20))
    assert emu.store.blobs("kf5") == []


def test_method_not_allowed(emu: Emulator) -> None:
    got = requests.put(f"{api(emu)}/attachments.json", auth=TOKEN_AUTH)
    assert_error(got, 405, "MethodNotAllowed")


def test_banner_shows_the_demo_credentials(emu: Emulator) -> None:
    line = emu.mounts["kf5"].banner(emu.url)[0]
    assert f"{emu.url}/kf5" in line
    assert CREDS.kf5_email in line and CREDS.kf5_password in line and CREDS.kf5_api_token in line
