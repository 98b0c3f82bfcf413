"""Qlik temp-contents raw API on the emulator: upload, download with Range, details, auth, TTL, expiry."""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta
from email.message import Message
from urllib.parse import unquote

import pytest
import requests

from tmpup.emulator import Credentials, Emulator

from .conftest import QLIK_AUTH, qlik_api, sha256


def upload(emu: Emulator, data: bytes, **params: str) -> str:
    response = requests.post(qlik_api(emu), params=params, data=data, headers=QLIK_AUTH)
    assert response.status_code == 201, response.text
    assert response.content == b""
    location = response.headers["Location"]
    assert re.fullmatch(r"/api/v1/temp-contents/[0-9a-f]{24}", location)
    return location.rsplit("/", 1)[1]


def disposition_filename(header: str) -> str:
    """What an RFC 6266 client makes of Content-Disposition: `filename*` wins over `filename`."""
    message = Message()
    message["Content-Disposition"] = header
    star = re.search(r"filename\*=UTF-8''([^;]+)", header)
    if star:
        return unquote(star.group(1))
    name = message.get_param("filename", header="Content-Disposition")
    assert isinstance(name, str)
    return name


@pytest.mark.parametrize("size", [0, 1, 3 * 1024 * 1024 + 17])
def test_round_trip_keeps_bytes_exactly(emu: Emulator, size: int) -> None:
    data = os.urandom(size)
    upload_id = upload(emu, data, filename="blob.bin")
    assert emu.blob_sha256("qlik", upload_id) == sha256(data)
    assert emu.blob_path("qlik", upload_id).stat().st_size == size

    got = requests.get(f"{qlik_api(emu)}/{upload_id}", headers=QLIK_AUTH)
    assert got.status_code == 200
    assert got.content == data
    assert got.headers["Content-Length"] == str(size)
    assert got.headers["Accept-Ranges"] == "bytes"
    assert got.headers["Content-Disposition"] == 'attachment; filename="blob.bin"'

    details = requests.get(f"{qlik_api(emu)}/{upload_id}/details", headers=QLIK_AUTH)
    assert details.status_code == 200
    body = details.json()
    assert body["ID"] == upload_id
    assert body["Name"] == "blob.bin"
    assert body["Size"] == str(size)
    assert body["TTLSeconds"] == 3600
    assert re.fullmatch(r"[0-9a-f]{24}", body["CreatorID"])
    created = datetime.fromisoformat(body["CreatedAt"].replace("Z", "+00:00"))
    expires = datetime.fromisoformat(body["Expires"].replace("Z", "+00:00"))
    assert expires - created == timedelta(seconds=3600)
    assert body["UpdatedAt"].endswith("Z")


@pytest.mark.parametrize(
    "name",
    ["with spaces.txt", "ünïcødé \u2013 文件.pdf", 'quote"s and \\ back.csv', "emoji 😀.png", "'single'.bin"],
)
def test_odd_names_survive_details_and_content_disposition(emu: Emulator, name: str) -> None:
    upload_id = upload(emu, b"abc", filename=name)
    details = requests.get(f"{qlik_api(emu)}/{upload_id}/details", headers=QLIK_AUTH).json()
    assert details["Name"] == name
    got = requests.get(f"{qlik_api(emu)}/{upload_id}", headers=QLIK_AUTH)
    header = got.headers["Content-Disposition"]
    assert header.startswith("attachment; ")
    header.encode("ascii")  # the header itself stays ASCII
    assert disposition_filename(header) == name


def test_inline_disposition_and_content_type(emu: Emulator) -> None:
    upload_id = upload(emu, b"hello", filename="note.txt")
    got = requests.get(f"{qlik_api(emu)}/{upload_id}", params={"inline": "1"}, headers=QLIK_AUTH)
    assert got.headers["Content-Disposition"] == 'inline; filename="note.txt"'
    assert got.headers["Content-Type"].startswith("text/plain")


def test_no_filename_is_accepted_and_named_by_id(emu: Emulator) -> None:
    upload_id = upload(emu, b"x")
    assert requests.get(f"{qlik_api(emu)}/{upload_id}/details", headers=QLIK_AUTH).json()["Name"] == ""
    got = requests.get(f"{qlik_api(emu)}/{upload_id}", headers=QLIK_AUTH)
    assert got.headers["Content-Disposition"] == f'attachment; filename="{upload_id}"'


def test_ranges(emu: Emulator) -> None:
    data = bytes(range(256)) * 40  # 10240 bytes
    upload_id = upload(emu, data, filename="r.bin")
    url = f"{qlik_api(emu)}/{upload_id}"

    def get(value: str) -> requests.Response:
        return requests.get(url, headers={**QLIK_AUTH, "Range": value})

    part = get("bytes=100-199")
    assert part.status_code == 206
    assert part.content == data[100:200]
    assert part.headers["Content-Range"] == "bytes 100-199/10240"
    assert part.headers["Content-Length"] == "100"
    assert part.headers["Content-Disposition"] == 'attachment; filename="r.bin"'

    assert get("bytes=10000-").content == data[10000:]
    suffix = get("bytes=-10")
    assert suffix.status_code == 206 and suffix.content == data[-10:]
    assert suffix.headers["Content-Range"] == "bytes 10230-10239/10240"
    whole_suffix = get("bytes=-99999")
    assert whole_suffix.status_code == 206 and whole_suffix.content == data
    clipped = get("bytes=10200-99999")
    assert clipped.status_code == 206 and clipped.content == data[10200:]

    for bad in ("bytes=10240-", "bytes=99999-100000", "bytes=-0"):
        refused = get(bad)
        assert refused.status_code == 416, bad
        assert refused.headers["Content-Range"] == "bytes */10240"
        assert refused.json()["errors"][0]["code"] == "HTTP-416"

    for ignored in ("bytes=5-2", "items=0-1", "bytes=0-1,5-6", "bytes=x-y"):
        whole = get(ignored)
        assert whole.status_code == 200, ignored
        assert whole.content == data


def test_range_on_empty_file_is_not_satisfiable(emu: Emulator) -> None:
    upload_id = upload(emu, b"", filename="empty")
    got = requests.get(f"{qlik_api(emu)}/{upload_id}", headers={**QLIK_AUTH, "Range": "bytes=0-"})
    assert got.status_code == 416
    assert got.headers["Content-Range"] == "bytes */0"


def test_if_range_mismatch_sends_everything(emu: Emulator) -> None:
    upload_id = upload(emu, b"0123456789")
    url = f"{qlik_api(emu)}/{upload_id}"
    etag = requests.get(url, headers=QLIK_AUTH).headers["ETag"]
    same = requests.get(url, headers={**QLIK_AUTH, "Range": "bytes=5-", "If-Range": etag})
    assert same.status_code == 206 and same.content == b"56789"
    other = requests.get(url, headers={**QLIK_AUTH, "Range": "bytes=5-", "If-Range": '"other"'})
    assert other.status_code == 200 and other.content == b"0123456789"


@pytest.mark.parametrize("ttl", ["1", "300", "259200"])
def test_ttl_in_range_is_kept(emu: Emulator, ttl: str) -> None:
    upload_id = upload(emu, b"t", ttl=ttl)
    details = requests.get(f"{qlik_api(emu)}/{upload_id}/details", headers=QLIK_AUTH).json()
    assert details["TTLSeconds"] == int(ttl)


@pytest.mark.parametrize("ttl", ["0", "259201", "300000", "abc", "-5", "1.5", "", " "])
def test_bad_ttl_is_400_with_qlik_envelope(emu: Emulator, ttl: str) -> None:
    response = requests.post(qlik_api(emu), params={"ttl": ttl}, data=b"x" * 1000, headers=QLIK_AUTH)
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["code"] == "HTTP-400" and error["title"] == "Bad Request"
    assert "ttl" in error["detail"]
    assert emu.store.blobs("qlik") == []


@pytest.mark.parametrize("name", ["", "bad\nname", "tab\there"])
def test_bad_filename_is_400(emu: Emulator, name: str) -> None:
    response = requests.post(qlik_api(emu), params={"filename": name}, data=b"x", headers=QLIK_AUTH)
    assert response.status_code == 400
    assert "filename" in response.json()["errors"][0]["detail"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic ZGVtbzpkZW1v"}, {"Authorization": "Bearer"}],
)
def test_auth_is_enforced_everywhere(emu: Emulator, headers: dict[str, str]) -> None:
    upload_id = upload(emu, b"secret")
    for method, url in [
        ("POST", qlik_api(emu)),
        ("GET", f"{qlik_api(emu)}/{upload_id}"),
        ("GET", f"{qlik_api(emu)}/{upload_id}/details"),
        ("POST", f"{qlik_api(emu)}/files"),
        ("HEAD", f"{qlik_api(emu)}/files/{upload_id}"),
        ("PATCH", f"{qlik_api(emu)}/files/{upload_id}"),
    ]:
        response = requests.request(method, url, headers=headers, data=b"x" * 2048 if method != "HEAD" else None)
        assert response.status_code == 401, (method, url)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        if method != "HEAD":
            body = response.json()
            assert body["errors"][0]["code"] == "HTTP-401"
            assert body["errors"][0]["title"] == "Unauthorized"
            assert body["errors"][0]["detail"]
            assert re.fullmatch(r"[0-9a-f]{32}", body["traceId"])
    assert len(emu.store.blobs("qlik")) == 1


def test_custom_token(tmp_path: object) -> None:
    with Emulator(credentials=Credentials(qlik_token="s3cret")) as emu:
        ok = requests.post(qlik_api(emu), data=b"x", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 201
        assert requests.post(qlik_api(emu), data=b"x", headers=QLIK_AUTH).status_code == 401


def test_unauthorized_large_upload_gets_the_401_not_a_reset(emu: Emulator) -> None:
    body = b"z" * (8 * 1024 * 1024)
    response = requests.post(qlik_api(emu), data=body, headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401


def test_unknown_is_404_and_expired_is_410(emu: Emulator) -> None:
    for path in ("0123456789abcdef01234567", "0123456789abcdef01234567/details", "nothex"):
        response = requests.get(f"{qlik_api(emu)}/{path}", headers=QLIK_AUTH)
        assert response.status_code == 404
        assert response.json()["errors"][0]["code"] == "HTTP-404"

    upload_id = upload(emu, b"short-lived", ttl="60")
    emu.clock.advance(59)
    assert requests.get(f"{qlik_api(emu)}/{upload_id}", headers=QLIK_AUTH).status_code == 200
    emu.clock.advance(1)
    for suffix in ("", "/details"):
        gone = requests.get(f"{qlik_api(emu)}/{upload_id}{suffix}", headers=QLIK_AUTH)
        assert gone.status_code == 410
        assert gone.json()["errors"][0]["title"] == "Gone"


def test_max_size_is_413(tmp_path: object) -> None:
    with Emulator(max_size=1000) as emu:
        assert requests.post(qlik_api(emu), data=b"x" * 1000, headers=QLIK_AUTH).status_code == 201
        too_big = requests.post(qlik_api(emu), data=b"x" * 1001, headers=QLIK_AUTH)
        assert too_big.status_code == 413
        assert too_big.json()["errors"][0]["code"] == "HTTP-413"

        def chunks() -> object:
            yield b"y" * 600
            yield b"y" * 600

        streamed = requests.post(qlik_api(emu), data=chunks(), headers=QLIK_AUTH)  # chunked: no length up front
        assert streamed.status_code == 413
        assert len(emu.store.blobs("qlik")) == 1


def test_chunked_upload_is_stored(emu: Emulator) -> None:
    parts = [os.urandom(70_000) for _ in range(5)]
    response = requests.post(qlik_api(emu), data=iter(parts), headers=QLIK_AUTH)
    assert response.status_code == 201
    upload_id = response.headers["Location"].rsplit("/", 1)[1]
    assert emu.blob_sha256("qlik", upload_id) == sha256(b"".join(parts))


def test_wrong_method_is_405_in_qlik_format(emu: Emulator) -> None:
    response = requests.delete(qlik_api(emu), headers=QLIK_AUTH)
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
    assert response.json()["errors"][0]["code"] == "HTTP-405"
