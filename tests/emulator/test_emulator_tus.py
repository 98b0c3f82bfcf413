"""The tus 1.0.0 server, generic (`/tus/files/`) and as Qlik's resumable temp-contents endpoint."""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from tmpup.emulator import Credentials, Emulator
from tmpup.emulator.tus import parse_metadata

from .conftest import OCTET, QLIK_AUTH, TUS, qlik_api, sha256


@dataclass
class Server:
    """One tus server under test: where to create uploads and what it needs."""

    provider: str
    create_url: str
    auth: dict[str, str]


@pytest.fixture(params=["tus", "qlik"])
def server(request: pytest.FixtureRequest, emu: Emulator) -> Server:
    if request.param == "tus":
        return Server("tus", f"{emu.url}/tus/files/", {})
    return Server("qlik", f"{qlik_api(emu)}/files", dict(QLIK_AUTH))


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def create(server: Server, length: int, metadata: str | None = None, **headers: str) -> requests.Response:
    sent = {**server.auth, **TUS, "Upload-Length": str(length), **headers}
    if metadata is not None:
        sent["Upload-Metadata"] = metadata
    return requests.post(server.create_url, headers=sent)


def created(server: Server, length: int, metadata: str | None = None) -> str:
    response = create(server, length, metadata)
    assert response.status_code == 201, response.text
    return str(response.headers["Location"])


def patch(server: Server, url: str, offset: int, data: object, **headers: str) -> requests.Response:
    sent = {**server.auth, **TUS, "Content-Type": OCTET, "Upload-Offset": str(offset), **headers}
    return requests.patch(url, data=data, headers=sent)


def head(server: Server, url: str, **headers: str) -> requests.Response:
    return requests.head(url, headers={**server.auth, **TUS, **headers})


def test_creation_head_patch_round_trip(server: Server, emu: Emulator) -> None:
    data = os.urandom(2 * 1024 * 1024 + 5)
    response = create(server, len(data), f"filename {b64('résumé.pdf')}")
    assert response.status_code == 201
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert "Upload-Expires" in response.headers
    url = response.headers["Location"]
    assert url.startswith("http://127.0.0.1:")  # absolute, usable by go-tus as is
    upload_id = url.rsplit("/", 1)[1]
    expected_len = 24 if server.provider == "qlik" else 32
    assert len(upload_id) == expected_len and int(upload_id, 16) >= 0

    first = head(server, url)
    assert first.status_code == 200
    assert first.headers["Upload-Offset"] == "0"
    assert first.headers["Upload-Length"] == str(len(data))
    assert first.headers["Cache-Control"] == "no-store"
    assert first.headers["Tus-Resumable"] == "1.0.0"
    assert first.headers["Upload-Metadata"] == f"filename {b64('résumé.pdf')}"

    offset = 0
    for size in (1024 * 1024, 1024 * 1024, 5):
        answer = patch(server, url, offset, data[offset : offset + size])
        assert answer.status_code == 204, answer.text
        offset += size
        assert answer.headers["Upload-Offset"] == str(offset)
        assert answer.headers["Tus-Resumable"] == "1.0.0"
        assert "Upload-Expires" in answer.headers
    assert head(server, url).headers["Upload-Offset"] == str(len(data))
    assert emu.blob_sha256(server.provider, upload_id) == sha256(data)

    # PATCH of a finished upload with nothing in it changes nothing
    again = patch(server, url, len(data), b"")
    assert again.status_code == 204 and again.headers["Upload-Offset"] == str(len(data))


def test_get_is_204_until_complete_then_the_bytes(server: Server, emu: Emulator) -> None:
    url = created(server, 10, f"filename {b64('ten.bin')}")
    upload_id = url.rsplit("/", 1)[1]
    download = f"{qlik_api(emu)}/{upload_id}" if server.provider == "qlik" else url
    incomplete = requests.get(download, headers=server.auth)
    assert incomplete.status_code == 204 and incomplete.content == b""
    if server.provider == "qlik":
        assert requests.get(f"{download}/details", headers=server.auth).status_code == 204
    assert patch(server, url, 0, b"01234").status_code == 204
    assert requests.get(download, headers=server.auth).status_code == 204
    assert patch(server, url, 5, b"56789").status_code == 204
    complete = requests.get(download, headers=server.auth)
    assert complete.status_code == 200 and complete.content == b"0123456789"
    assert complete.headers["Content-Disposition"] == 'attachment; filename="ten.bin"'
    ranged = requests.get(download, headers={**server.auth, "Range": "bytes=-3"})
    assert ranged.status_code == 206 and ranged.content == b"789"
    if server.provider == "qlik":
        details = requests.get(f"{download}/details", headers=server.auth).json()
        assert details["ID"] == upload_id and details["Size"] == "10" and details["Name"] == "ten.bin"


def test_zero_length_upload_is_complete_at_creation(server: Server, emu: Emulator) -> None:
    url = created(server, 0)
    assert head(server, url).headers["Upload-Offset"] == "0"
    upload_id = url.rsplit("/", 1)[1]
    download = f"{qlik_api(emu)}/{upload_id}" if server.provider == "qlik" else url
    got = requests.get(download, headers=server.auth)
    assert got.status_code == 200 and got.content == b""


def test_412_without_or_with_wrong_tus_resumable(server: Server) -> None:
    url = created(server, 4)
    for version in (None, "0.2.2", "2.0.0"):
        extra = {} if version is None else {"Tus-Resumable": version}
        attempts = [
            requests.post(server.create_url, headers={**server.auth, "Upload-Length": "4", **extra}),
            requests.head(url, headers={**server.auth, **extra}),
            requests.patch(
                url, data=b"abcd", headers={**server.auth, "Content-Type": OCTET, "Upload-Offset": "0", **extra}
            ),
        ]
        for response in attempts:
            assert response.status_code == 412
            assert response.headers["Tus-Version"] == "1.0.0"
            assert response.headers["Tus-Resumable"] == "1.0.0"
    assert head(server, url).headers["Upload-Offset"] == "0"


def test_creation_validates_lengths(server: Server) -> None:
    for bad in ("", "-1", "abc", "1.5"):
        assert create(server, 0, **{"Upload-Length": bad}).status_code == 400, bad
    missing = requests.post(server.create_url, headers={**server.auth, **TUS})
    assert missing.status_code == 400
    both = create(server, 5, **{"Upload-Defer-Length": "1"})
    assert both.status_code == 400
    deferred = requests.post(server.create_url, headers={**server.auth, **TUS, "Upload-Defer-Length": "1"})
    assert deferred.status_code == 400


def test_413_over_max_size() -> None:
    with Emulator(max_size=100) as emu:
        for url, auth in ((f"{emu.url}/tus/files/", {}), (f"{qlik_api(emu)}/files", QLIK_AUTH)):
            server = Server("x", url, auth)
            assert create(server, 100).status_code == 201
            too_big = create(server, 101)
            assert too_big.status_code == 413
            assert too_big.headers["Tus-Resumable"] == "1.0.0"
        options = requests.options(f"{emu.url}/tus/files/")
        assert options.headers["Tus-Max-Size"] == "100"


def test_patch_past_upload_length_is_413(server: Server, emu: Emulator) -> None:
    url = created(server, 5)
    assert patch(server, url, 0, b"123456").status_code == 413
    assert head(server, url).headers["Upload-Offset"] == "0"


def test_415_for_wrong_content_type(server: Server) -> None:
    url = created(server, 4)
    for content_type in ("application/octet-stream", "text/plain", None):
        headers = {**server.auth, **TUS, "Upload-Offset": "0"}
        if content_type:
            headers["Content-Type"] = content_type
        response = requests.patch(url, data=b"abcd", headers=headers)
        assert response.status_code == 415, content_type
    assert head(server, url).headers["Upload-Offset"] == "0"


def test_409_on_offset_mismatch_leaves_upload_untouched(server: Server, emu: Emulator) -> None:
    url = created(server, 10)
    assert patch(server, url, 0, b"abc").status_code == 204
    for wrong in (0, 2, 4, 10):
        conflict = patch(server, url, wrong, b"zzz")
        assert conflict.status_code == 409
        assert conflict.headers["Tus-Resumable"] == "1.0.0"
    for bad in ("", "-3", "x"):
        assert patch(server, url, 0, b"zzz", **{"Upload-Offset": bad}).status_code == 400
    assert head(server, url).headers["Upload-Offset"] == "3"
    assert emu.blob_path(server.provider, url.rsplit("/", 1)[1]).read_bytes() == b"abc"


def test_404_for_unknown_uploads(server: Server) -> None:
    url = server.create_url.rstrip("/") + "/0123456789abcdef01234567"
    unknown_head = head(server, url)
    assert unknown_head.status_code == 404
    assert "Upload-Offset" not in unknown_head.headers
    assert patch(server, url, 0, b"x").status_code == 404


def test_410_after_ttl_counted_from_creation(server: Server, emu: Emulator) -> None:
    metadata = f"ttl {b64('100')}" if server.provider == "qlik" else None
    url = created(server, 10, metadata)
    emu.clock.advance(60)
    assert patch(server, url, 0, b"01234").status_code == 204  # activity does not extend the TTL
    lifetime = 100 if server.provider == "qlik" else 24 * 3600
    emu.clock.advance(lifetime - 60)
    gone = patch(server, url, 5, b"56789")
    assert gone.status_code == 410
    assert gone.headers["Tus-Resumable"] == "1.0.0"
    assert head(server, url).status_code == 410


def test_423_while_a_patch_is_running(server: Server, emu: Emulator) -> None:
    url = created(server, 20)
    upload_id = url.rsplit("/", 1)[1]
    release = threading.Event()

    def slow_body() -> Iterator[bytes]:
        yield b"0123456789"
        release.wait(10)
        yield b"abcdefghij"

    result: dict[str, requests.Response] = {}
    thread = threading.Thread(target=lambda: result.setdefault("patch", patch(server, url, 0, slow_body())))
    thread.start()
    try:
        blob = emu.store.get(server.provider, upload_id)
        assert blob is not None
        deadline = time.monotonic() + 5
        while blob.offset < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert blob.busy.locked()
        locked_head = head(server, url)
        assert locked_head.status_code == 423
        assert locked_head.headers["Tus-Resumable"] == "1.0.0"
        assert patch(server, url, 10, b"abcdefghij").status_code == 423
    finally:
        release.set()
        thread.join(10)
    assert result["patch"].status_code == 204
    assert result["patch"].headers["Upload-Offset"] == "20"
    assert head(server, url).headers["Upload-Offset"] == "20"
    assert emu.blob_path(server.provider, upload_id).read_bytes() == b"0123456789abcdefghij"


def test_creation_with_upload(server: Server, emu: Emulator) -> None:
    headers = {**server.auth, **TUS, "Upload-Length": "10", "Content-Type": OCTET}
    response = requests.post(server.create_url, data=b"01234", headers=headers)
    assert response.status_code == 201
    assert response.headers["Upload-Offset"] == "5"
    url = response.headers["Location"]
    assert patch(server, url, 5, b"56789").status_code == 204
    assert emu.blob_path(server.provider, url.rsplit("/", 1)[1]).read_bytes() == b"0123456789"
    too_long = requests.post(server.create_url, data=b"x" * 11, headers=headers)
    assert too_long.status_code == 413
    # a body with another content type is not upload data
    plain = requests.post(server.create_url, data=b"ignored", headers={**headers, "Content-Type": "text/plain"})
    assert plain.status_code == 201 and "Upload-Offset" not in plain.headers
    assert head(server, plain.headers["Location"]).headers["Upload-Offset"] == "0"


def test_method_override(server: Server, emu: Emulator) -> None:
    url = created(server, 3)
    response = requests.post(
        url,
        data=b"abc",
        headers={**server.auth, **TUS, "Content-Type": OCTET, "Upload-Offset": "0", "X-HTTP-Method-Override": "PATCH"},
    )
    assert response.status_code == 204 and response.headers["Upload-Offset"] == "3"


def test_qlik_metadata_filename_and_ttl(emu: Emulator) -> None:
    server = Server("qlik", f"{qlik_api(emu)}/files", dict(QLIK_AUTH))
    url = created(server, 1, f"filename {b64('a b.txt')},ttl {b64('7200')},ignored {b64('x')}")
    upload_id = url.rsplit("/", 1)[1]
    patch(server, url, 0, b"!")
    details = requests.get(f"{qlik_api(emu)}/{upload_id}/details", headers=QLIK_AUTH).json()
    assert details == {**details, "Name": "a b.txt", "TTLSeconds": 7200, "Size": "1"}

    # a ttl that is not Base64 is dropped, as tusd's parser does: default TTL
    url = created(server, 1, f"filename {b64('c.txt')}, ttl 10000")
    upload_id = url.rsplit("/", 1)[1]
    patch(server, url, 0, b"!")
    details = requests.get(f"{qlik_api(emu)}/{upload_id}/details", headers=QLIK_AUTH).json()
    assert details["TTLSeconds"] == 3600 and details["Name"] == "c.txt"

    for bad in ("0", "259201", "soon"):
        refused = create(server, 1, f"ttl {b64(bad)}")
        assert refused.status_code == 400
        assert refused.json()["errors"][0]["code"] == "HTTP-400"


def test_qlik_has_no_termination(emu: Emulator) -> None:
    server = Server("qlik", f"{qlik_api(emu)}/files", dict(QLIK_AUTH))
    url = created(server, 1)
    assert requests.delete(url, headers={**QLIK_AUTH, **TUS}).status_code == 405
    options = requests.options(f"{qlik_api(emu)}/files")
    assert options.status_code == 204
    assert "termination" not in options.headers["Tus-Extension"]
    assert "creation" in options.headers["Tus-Extension"].split(",")


def test_generic_options_discovery(emu: Emulator) -> None:
    for url in (f"{emu.url}/tus/files/", f"{emu.url}/tus/files"):
        response = requests.options(url)
        assert response.status_code == 204
        assert response.headers["Tus-Version"] == "1.0.0"
        extensions = response.headers["Tus-Extension"].split(",")
        assert {"creation", "creation-with-upload", "termination", "expiration"} <= set(extensions)
        assert "Tus-Max-Size" not in response.headers


def test_generic_termination(emu: Emulator) -> None:
    server = Server("tus", f"{emu.url}/tus/files/", {})
    url = created(server, 5)
    upload_id = url.rsplit("/", 1)[1]
    assert patch(server, url, 0, b"ab").status_code == 204
    assert requests.delete(url).status_code == 412
    deleted = requests.delete(url, headers=TUS)
    assert deleted.status_code == 204
    assert deleted.headers["Tus-Resumable"] == "1.0.0"
    assert emu.store.get("tus", upload_id) is None
    assert head(server, url).status_code == 404
    assert patch(server, url, 2, b"cde").status_code == 404
    assert requests.delete(url, headers=TUS).status_code == 404


def test_generic_errors_are_tusd_style_text(emu: Emulator) -> None:
    response = requests.head(f"{emu.url}/tus/files/nope", headers=TUS)
    assert response.status_code == 404
    patched = requests.patch(
        f"{emu.url}/tus/files/nope", data=b"x", headers={**TUS, "Content-Type": OCTET, "Upload-Offset": "0"}
    )
    assert patched.status_code == 404
    assert patched.headers["Content-Type"].startswith("text/plain")
    assert patched.text.startswith("ERR_UPLOAD_NOT_FOUND: ")


def test_generic_filetype_becomes_content_type(emu: Emulator) -> None:
    server = Server("tus", f"{emu.url}/tus/files/", {})
    url = created(server, 2, f"filename {b64('p.png')},filetype {b64('image/png')}")
    patch(server, url, 0, b"hi")
    assert requests.get(url).headers["Content-Type"] == "image/png"
    url = created(server, 2, f"filetype {b64('bad type')}")
    patch(server, url, 0, b"hi")
    assert requests.get(url).headers["Content-Type"] == "application/octet-stream"


def test_generic_optional_bearer_token() -> None:
    with Emulator(credentials=Credentials(tus_token="tok")) as emu:
        url = f"{emu.url}/tus/files/"
        refused = requests.post(url, headers={**TUS, "Upload-Length": "1"})
        assert refused.status_code == 401
        assert refused.headers["Tus-Resumable"] == "1.0.0"
        assert requests.options(url).status_code == 204
        ok = requests.post(url, headers={**TUS, "Upload-Length": "1", "Authorization": "Bearer tok"})
        assert ok.status_code == 201
        assert requests.head(ok.headers["Location"], headers=TUS).status_code == 401


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("", {}),
        (f"filename {b64('a.txt')}", {"filename": "a.txt"}),
        (f"filename {b64('a.txt')},ttl {b64('60')},", {"filename": "a.txt", "ttl": "60"}),  # go-tus trailing comma
        (f" filename {b64('x')} ,  is_secret , ", {"filename": "x", "is_secret": ""}),
        ("filename not-base64!, ttl 10000", {}),
        (f"a {b64('1')} extra,b {b64('2')}", {"b": "2"}),
        (f"name {b64('文件.txt')}", {"name": "文件.txt"}),
        ("k YQ", {}),  # unpadded Base64 is not standard Base64
    ],
)
def test_metadata_parsing_is_lenient_like_tusd(header: str, expected: dict[str, str]) -> None:
    assert parse_metadata(header) == expected
