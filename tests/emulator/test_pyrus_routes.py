"""Pyrus on the emulator, over raw HTTP: auth, upload (multipart/form-data) with MD5, download, errors, 429.

Uploads here are encoded by `requests`' own `files=` (what the official Python client does), not by
tmpup, so the emulator is checked against an independent multipart encoder.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest
import requests

from tmpup.emulator import Credentials, Emulator, Fault

LOGIN = Credentials().pyrus_login
KEY = Credentials().pyrus_security_key


def base(emu: Emulator) -> str:
    return f"{emu.url}/pyrus"


def auth(emu: Emulator, path: str = "/api/v4/auth", **body: Any) -> requests.Response:
    payload = {"login": LOGIN, "security_key": KEY, **body}
    return requests.post(f"{base(emu)}{path}", json=payload)


def token(emu: Emulator) -> dict[str, str]:
    response = auth(emu)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def upload(emu: Emulator, data: bytes, name: str = "file.bin", field: str = "file", **kw: Any) -> requests.Response:
    return requests.post(
        f"{base(emu)}/v4/files/upload", files={field: (name, data)}, headers=kw.pop("headers", None) or token(emu)
    )


def pyrus_mount(emu: Emulator) -> Any:
    return emu.mounts["pyrus"]


def test_auth_answers_token_and_urls_pointing_at_the_emulator(emu: Emulator) -> None:
    for path in ("/api/v4/auth", "/v4/auth"):  # current accounts endpoint and the older one
        response = auth(emu, path, person_id=1234)
        assert response.status_code == 200
        body = response.json()
        assert len(body["access_token"]) >= 32
        assert body["files_url"] == f"{base(emu)}/"
        assert body["api_url"] == f"{base(emu)}/v4/"


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"login": LOGIN, "security_key": "wrong"}, 401, "invalid_credentials"),
        ({"login": "someone@else", "security_key": KEY}, 401, "invalid_credentials"),
        ({"login": LOGIN}, 401, "invalid_credentials"),
        ({"login": LOGIN, "security_key": "a\udcff"}, 401, "invalid_credentials"),  # a lone surrogate: not a 500
        ({"login": LOGIN, "security_key": KEY, "person_id": "x"}, 400, "invalid_request"),
    ],
)
def test_auth_refusals_use_pyrus_error_codes(emu: Emulator, payload: dict[str, Any], status: int, code: str) -> None:
    response = requests.post(f"{base(emu)}/api/v4/auth", json=payload)
    assert response.status_code == status
    assert response.json()["error_code"] == code
    assert response.json()["error"]


def test_auth_with_a_body_that_is_not_json(emu: Emulator) -> None:
    response = requests.post(f"{base(emu)}/api/v4/auth", data=b"login=x")
    assert response.status_code == 400
    assert response.json()["error_code"] == "invalid_request"


@pytest.mark.parametrize("size", [1, 3 * 1024 * 1024 + 11])
def test_upload_answers_guid_and_real_md5_and_download_by_numeric_id(emu: Emulator, size: int) -> None:
    data = os.urandom(size)
    response = upload(emu, data, name="report ü.pdf")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"guid", "md5_hash"}
    assert body["md5_hash"] == hashlib.md5(data).hexdigest()
    numeric = pyrus_mount(emu).attachment_id(body["guid"])
    assert numeric.isdigit()
    assert emu.blob_sha256("pyrus", numeric) == hashlib.sha256(data).hexdigest()

    got = requests.get(f"{base(emu)}/v4/files/download/{numeric}", headers=token(emu))
    assert got.status_code == 200
    assert got.content == data
    assert got.headers["Content-Disposition"].startswith("attachment;")
    assert "filename*=UTF-8''report%20%C3%BC.pdf" in got.headers["Content-Disposition"]
    part = requests.get(f"{base(emu)}/v4/files/download/{numeric}", headers={**token(emu), "Range": "bytes=-1"})
    assert part.status_code == 206 and part.content == data[-1:]


def test_field_name_is_not_significant(emu: Emulator) -> None:
    # curl's documented example uses the file name as the field name.
    response = upload(emu, b"abc", name="filename.jpg", field="filename.jpg")
    assert response.status_code == 200
    assert response.json()["md5_hash"] == hashlib.md5(b"abc").hexdigest()


def test_upload_refusals(emu: Emulator) -> None:
    auth_header = token(emu)
    url = f"{base(emu)}/v4/files/upload"
    cases: list[tuple[requests.Response, str]] = [
        (requests.post(url, data=b"raw bytes", headers=auth_header), "bad_multipart_content"),
        (requests.post(url, files={"note": (None, "just a field")}, headers=auth_header), "no_file_in_request"),
        (requests.post(url, files={"file": ("empty.txt", b"")}, headers=auth_header), "empty_file"),
        (
            requests.post(url, files=[("a", ("a.txt", b"1")), ("b", ("b.txt", b"2"))], headers=auth_header),
            "bad_multipart_content",
        ),
        (
            requests.post(
                url,
                data=b'--xyz\r\nContent-Disposition: form-data; name="f"; filename="a"\r\n\r\nabc',
                headers={**auth_header, "Content-Type": "multipart/form-data; boundary=xyz"},
            ),
            "bad_multipart_content",
        ),
    ]
    for response, code in cases:
        assert response.status_code == 400, response.text
        assert response.json()["error_code"] == code
    assert [b for b in emu.store.blobs("pyrus") if b.complete] == []  # nothing refused was kept
    assert emu.store.blobs("pyrus") == []


def test_size_limits() -> None:
    with Emulator(max_size=1000) as emu:
        too_big = upload(emu, b"x" * 1001)
        assert too_big.status_code == 400
        assert too_big.json()["error_code"] == "attachment_too_big"
        exact = upload(emu, b"x" * 1000)
        assert exact.status_code == 200
        huge = requests.post(
            f"{base(emu)}/v4/files/upload",
            data=b"x" * (1000 + 128 * 1024),
            headers={**token(emu), "Content-Type": "multipart/form-data; boundary=b"},
        )
        assert huge.status_code == 400
        assert huge.json()["error_code"] == "too_large_request_length"
        assert len(emu.store.blobs("pyrus")) == 1


def test_tokens_missing_invalid_expired_revoked(emu: Emulator) -> None:
    url = f"{base(emu)}/v4/files/download/1001"
    missing = requests.get(url)
    assert (missing.status_code, missing.json()["error_code"]) == (401, "token_not_specified")
    invalid = requests.get(url, headers={"Authorization": "Bearer nope"})
    assert (invalid.status_code, invalid.json()["error_code"]) == (401, "invalid_token")
    good = token(emu)
    emu.clock.advance(pyrus_mount(emu).token_ttl + 1)
    expired = requests.get(url, headers=good)
    assert (expired.status_code, expired.json()["error_code"]) == (401, "expired_token")
    fresh = token(emu)
    pyrus_mount(emu).revoke_tokens()
    revoked = requests.get(url, headers=fresh)
    assert (revoked.status_code, revoked.json()["error_code"]) == (401, "invalid_token")


def test_download_unknown_or_non_numeric_ids(emu: Emulator) -> None:
    unknown = requests.get(f"{base(emu)}/v4/files/download/999999", headers=token(emu))
    assert unknown.status_code == 403
    assert unknown.json()["error_code"] == "file_is_missing"
    guid = upload(emu, b"abc").json()["guid"]
    by_guid = requests.get(f"{base(emu)}/v4/files/download/{guid}", headers=token(emu))
    assert by_guid.status_code == 404  # the real API has no download by guid either


def test_rate_limit_headers_and_429(emu: Emulator) -> None:
    mount = pyrus_mount(emu)
    mount.rate_limit = 2
    headers = token(emu)
    url = f"{base(emu)}/v4/files/download/1"
    first = requests.get(url, headers=headers)
    assert first.headers["X-RateLimit-Limit"] == "2"
    assert first.headers["X-RateLimit-Remaining"] == "1"
    assert 0 < int(first.headers["X-RateLimit-Reset"]) <= 600
    requests.get(url, headers=headers)
    limited = requests.get(url, headers=headers)
    assert limited.status_code == 429
    assert limited.json()["error_code"] == "too_many_requests"
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert "X-RateLimit-Reset" in limited.headers
    emu.clock.advance(601)  # a new window
    assert requests.get(url, headers=headers).status_code == 403


def test_injected_faults_answer_in_pyrus_format(emu: Emulator) -> None:
    emu.faults.add(Fault(provider="pyrus", path="/v4/files/upload", status=429, retry_after=1))
    response = upload(emu, b"abc")
    assert response.status_code == 429
    assert response.json()["error_code"] == "too_many_requests"
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert response.headers["Retry-After"] == "1"


def test_corrupt_uploads_store_damaged_bytes_and_report_their_md5(emu: Emulator) -> None:
    pyrus_mount(emu).corrupt_uploads = 1
    data = b"hello pyrus"
    damaged = upload(emu, data).json()
    assert damaged["md5_hash"] != hashlib.md5(data).hexdigest()
    assert damaged["md5_hash"] == hashlib.md5(bytes([data[0] ^ 0xFF]) + data[1:]).hexdigest()
    assert upload(emu, data).json()["md5_hash"] == hashlib.md5(data).hexdigest()


def test_a_dropped_upload_keeps_nothing(emu: Emulator) -> None:
    emu.faults.add(Fault(provider="pyrus", path="/v4/files/upload", drop_after=100_000))
    with pytest.raises(requests.ConnectionError):
        upload(emu, os.urandom(1_000_000))
    assert emu.store.blobs("pyrus") == []
