"""Enterprise Tester temporary attachment sets on the emulator, over raw HTTP with hand-written bodies.

The multipart bodies here are written out byte by byte (as in the seed document), not produced by
tmpup, so the emulator's parser is checked on its own: quoted and unquoted parameters, RFC 2231
`filename*`, the seed's `name`/`filename` mapping, and every documented refusal.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any

import pytest
import requests

from tmpup.emulator import Credentials, Emulator, Fault

AUTH = (Credentials().et_username, Credentials().et_password)
BOUNDARY = "65bf6b94-c91c-442c-abe7-f41444d7c71f"
GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def api(emu: Emulator) -> str:
    return f"{emu.url}/enterprise-tester/api"


def new_set(emu: Emulator) -> str:
    response = requests.post(f"{api(emu)}/temporaryattachmentsets", auth=AUTH, headers={"Accept": "application/json"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert GUID.fullmatch(body["Id"])
    assert body["Self"] == f"{api(emu)}/temporaryattachmentset/{body['Id']}"
    assert response.headers["Location"] == body["Self"]
    return str(body["Id"])


def part(disposition: str, data: bytes, *, content_type: str = "application/octet-stream", length: Any = True) -> bytes:
    head = f"Content-Disposition: {disposition}\r\nContent-Type: {content_type}\r\n"
    if length is True:
        head += f"Content-Length: {len(data)}\r\n"
    elif length is not None:
        head += f"Content-Length: {length}\r\n"
    return f"--{BOUNDARY}\r\n".encode() + head.encode() + b"\r\n" + data + b"\r\n"


def post(emu: Emulator, set_id: str, *parts: bytes, content_type: str | None = None) -> requests.Response:
    body = b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()
    headers = {"Content-Type": content_type or f"multipart/mixed; boundary={BOUNDARY}", "Accept": "application/json"}
    return requests.post(f"{api(emu)}/temporaryattachmentset/{set_id}", data=body, headers=headers, auth=AUTH)


def test_seed_example_body_quoted_and_unquoted_parameters(emu: Emulator) -> None:
    set_id = new_set(emu)
    png = os.urandom(2000)
    response = post(
        emu,
        set_id,
        part(
            f'attachment; filename=screenshot1.png; name="screenshot 1"; size={len(png)}', png, content_type="image/png"
        ),
        part("attachment; filename=notes.txt; name=notes; size=3", b"ABC", content_type="text/plain"),
    )
    assert response.status_code == 201, response.text
    first, second = response.json()
    # name -> Name and filename -> FileName (the seed's second example swaps them: a doc error).
    assert (first["Name"], first["FileName"], first["ContentType"], first["Size"]) == (
        "screenshot 1",
        "screenshot1.png",
        "image/png",
        2000,
    )
    assert (second["Name"], second["FileName"], second["Size"]) == ("notes", "notes.txt", 3)
    for item in (first, second):
        assert item["TemporaryId"] == set_id
        assert GUID.fullmatch(item["Id"]) and GUID.fullmatch(item["CreatedById"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", item["CreatedAt"])
        assert item["Self"] == f"{api(emu)}/temporaryattachmentset/{set_id}/attachment/{item['Id']}"
        assert item["Content"] == f"{api(emu)}/attachment/{item['Id']}/contents"
    assert emu.blob_sha256("enterprise-tester", first["Id"]) == hashlib.sha256(png).hexdigest()

    contents = requests.get(first["Content"], auth=AUTH)
    assert contents.status_code == 200 and contents.content == png
    assert contents.headers["Content-Type"] == "image/png"
    assert contents.headers["Content-Disposition"] == 'attachment; filename="screenshot1.png"'
    ranged = requests.get(second["Content"], auth=AUTH, headers={"Range": "bytes=1-"})
    assert ranged.status_code == 206 and ranged.content == b"BC"
    assert requests.get(first["Self"], auth=AUTH).json() == first


def test_quoted_escaped_and_rfc2231_names(emu: Emulator) -> None:
    set_id = new_set(emu)
    response = post(
        emu,
        set_id,
        part('attachment; filename="we \\"quote\\" \\\\ it.txt"; name="a; b"', b"1"),
        part(
            "attachment; filename=\"Creme.txt\"; filename*=UTF-8''Cr%C3%A8me.txt; name*=UTF-8''%E6%97%A5%E6%9C%AC", b"2"
        ),
        part("attachment; name*=UTF-8''first; filename*=UTF-8''%D0%BE%D1%82%D1%87%D1%91%D1%82.csv; filename=x", b"3"),
    )
    assert response.status_code == 201, response.text
    names = [(item["FileName"], item["Name"]) for item in response.json()]
    assert names == [('we "quote" \\ it.txt', "a; b"), ("Crème.txt", "日本"), ("отчёт.csv", "first")]


def test_set_listing_and_adding_to_an_existing_set(emu: Emulator) -> None:
    set_id = new_set(emu)
    assert requests.get(f"{api(emu)}/temporaryattachmentset/{set_id}", auth=AUTH).json() == {"Items": []}
    one = post(emu, set_id, part("attachment; filename=a.txt; name=a", b"a")).json()
    two = post(emu, set_id, part("attachment; filename=b.txt; name=b", b"bb")).json()
    listing = requests.get(f"{api(emu)}/temporaryattachmentset/{set_id}", auth=AUTH)
    assert listing.status_code == 200
    assert listing.json() == {"Items": one + two}
    assert requests.get(f"{api(emu)}/temporaryattachmentset/{set_id.upper()}", auth=AUTH).status_code == 200


def test_parts_without_a_filename_are_ignored_and_no_file_is_403(emu: Emulator) -> None:
    set_id = new_set(emu)
    mixed = post(emu, set_id, part("attachment; name=comment", b"hello"), part("attachment; filename=f.bin", b"x"))
    assert mixed.status_code == 201
    assert [item["FileName"] for item in mixed.json()] == ["f.bin"]
    assert mixed.json()[0]["Name"] == "f.bin"  # no name: the file name stands in
    none = post(emu, set_id, part("attachment; name=comment", b"hello"))
    assert none.status_code == 403
    assert "did not contain any files" in none.json()["Message"]


def test_not_multipart_is_415_and_unknown_set_is_404(emu: Emulator) -> None:
    set_id = new_set(emu)
    plain = requests.post(f"{api(emu)}/temporaryattachmentset/{set_id}", data=b"abc", auth=AUTH)
    assert plain.status_code == 415
    as_json = requests.post(f"{api(emu)}/temporaryattachmentset/{set_id}", json={"a": 1}, auth=AUTH)
    assert as_json.status_code == 415
    form = requests.post(f"{api(emu)}/temporaryattachmentset/{set_id}", files={"f": ("a.txt", b"a")}, auth=AUTH)
    assert form.status_code == 201  # any MIME multipart is accepted
    unknown = post(emu, "4bb709c2-e0e7-4af3-9f60-a045016a9610", part("attachment; filename=a", b"a"))
    assert unknown.status_code == 404
    assert "Message" in unknown.json()
    assert requests.get(f"{api(emu)}/temporaryattachmentset/nope", auth=AUTH).status_code == 404
    assert requests.get(f"{api(emu)}/attachment/nope/contents", auth=AUTH).status_code == 404


@pytest.mark.parametrize(
    "bad_part",
    [
        part("attachment; filename=a.bin; size=5", b"abc"),
        part("attachment; filename=a.bin", b"abc", length=7),
        part("attachment; filename=a.bin; size=big", b"abc"),
    ],
)
def test_sizes_that_disagree_with_the_bytes_are_400_and_nothing_is_kept(emu: Emulator, bad_part: bytes) -> None:
    set_id = new_set(emu)
    response = post(emu, set_id, part("attachment; filename=good.bin", b"fine"), bad_part)
    assert response.status_code == 400
    assert response.json()["Message"]
    assert emu.store.blobs("enterprise-tester") == []
    assert requests.get(f"{api(emu)}/temporaryattachmentset/{set_id}", auth=AUTH).json() == {"Items": []}


def test_malformed_bodies_are_400(emu: Emulator) -> None:
    set_id = new_set(emu)
    url = f"{api(emu)}/temporaryattachmentset/{set_id}"
    no_boundary = requests.post(url, data=b"x", headers={"Content-Type": "multipart/mixed"}, auth=AUTH)
    assert no_boundary.status_code == 400
    unterminated = requests.post(
        url,
        data=part("attachment; filename=a", b"abc"),
        headers={"Content-Type": f"multipart/mixed; boundary={BOUNDARY}"},
        auth=AUTH,
    )
    assert unterminated.status_code == 400
    assert emu.store.blobs("enterprise-tester") == []


def test_basic_auth_is_required_everywhere(emu: Emulator) -> None:
    set_id = new_set(emu)
    for method, path in [
        ("POST", "/temporaryattachmentsets"),
        ("GET", f"/temporaryattachmentset/{set_id}"),
        ("POST", f"/temporaryattachmentset/{set_id}"),
        ("GET", "/attachment/x/contents"),
    ]:
        for auth in (None, (AUTH[0], "wrong"), ("nobody", AUTH[1])):
            response = requests.request(method, f"{api(emu)}{path}", auth=auth)
            assert response.status_code == 401
            assert response.headers["WWW-Authenticate"].startswith("Basic")
            assert response.json()["Message"]


def test_large_files_stream_and_an_interrupted_request_keeps_nothing(emu: Emulator) -> None:
    set_id = new_set(emu)
    big = os.urandom(5 * 1024 * 1024 + 3)
    ok = post(emu, set_id, part("attachment; filename=big.bin", big), part("attachment; filename=small", b"s"))
    assert ok.status_code == 201
    assert emu.blob_sha256("enterprise-tester", ok.json()[0]["Id"]) == hashlib.sha256(big).hexdigest()
    emu.faults.add(
        Fault(provider="enterprise-tester", method="POST", path="/temporaryattachmentset/", drop_after=3_000_000)
    )
    with pytest.raises(requests.ConnectionError):
        post(emu, set_id, part("attachment; filename=big2.bin", big))
    assert len(emu.store.blobs("enterprise-tester")) == 2
    assert len(requests.get(f"{api(emu)}/temporaryattachmentset/{set_id}", auth=AUTH).json()["Items"]) == 2


def test_injected_status_faults_answer_in_the_et_format(emu: Emulator) -> None:
    set_id = new_set(emu)
    emu.faults.add(Fault(provider="enterprise-tester", method="POST", status=503, retry_after=2))
    response = post(emu, set_id, part("attachment; filename=a", b"a"))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "2"
    assert response.json()["Message"]
