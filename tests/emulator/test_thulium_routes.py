"""Thulium on the emulator, over raw HTTP with `requests` (not tmpup): upload, auth, errors, 24 h expiry."""

from __future__ import annotations

import hashlib
import os
import re
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import pytest
import requests

from tmpup.emulator import Credentials, Emulator, Fault
from tmpup.emulator.store import BlobExpired

USER = Credentials().thulium_username
PASSWORD = Credentials().thulium_password
AUTH = (USER, PASSWORD)
OCTET = {"Content-Type": "application/octet-stream"}


def endpoint(emu: Emulator) -> str:
    return f"{emu.url}/thulium/api/temporary_files"


def post(emu: Emulator, data: Any = b"file content", *, auth: Any = AUTH, **params: str) -> requests.Response:
    params.setdefault("filename", "file.txt")
    return requests.post(endpoint(emu), params=params, data=data, headers=OCTET, auth=auth)


def assert_envelope(response: requests.Response, status: int, code: int | None = None) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert set(body) == {"request_id", "errors"}
    assert re.fullmatch(r"[0-9a-f]{13}", body["request_id"])
    assert len(body["errors"]) == 1 and set(body["errors"][0]) == {"message", "code"}
    assert isinstance(body["errors"][0]["code"], int)
    if code is not None:
        assert body["errors"][0]["code"] == code
    return body


def test_upload_answers_filename_token_size_as_documented(emu: Emulator) -> None:
    response = post(emu, b"file content")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"filename", "token", "size"}
    assert body["filename"] == "file.txt" and body["size"] == 12
    assert re.fullmatch(r"[0-9]{10}[0-9a-f]{13}", body["token"])
    assert emu.blob_sha256("thulium", body["token"]) == hashlib.sha256(b"file content").hexdigest()


@pytest.mark.parametrize("size", [0, 1, 3 * 1024 * 1024 + 17])
def test_bytes_are_stored_exactly(emu: Emulator, size: int) -> None:
    data = os.urandom(size)
    response = post(emu, data)
    assert response.status_code == 200 and response.json()["size"] == size
    assert emu.blob_sha256("thulium", response.json()["token"]) == hashlib.sha256(data).hexdigest()


def test_a_chunked_body_is_stored(emu: Emulator) -> None:
    def body() -> Iterator[bytes]:
        yield b"a" * 70000
        yield b"b" * 5

    response = post(emu, body())
    assert response.status_code == 200 and response.json()["size"] == 70005


def test_tokens_are_unique(emu: Emulator) -> None:
    tokens = {post(emu).json()["token"] for _ in range(20)}
    assert len(tokens) == 20


@pytest.mark.parametrize(
    "name", ["with space.txt", "a&b#c%d;e=f+g?.txt", "quote\"s 'x'.txt", "отчёт 日本 تقرير.csv", "%41%20.txt"]
)
def test_file_names_arrive_exactly(emu: Emulator, name: str) -> None:
    response = post(emu, filename=name)
    assert response.status_code == 200
    assert response.json()["filename"] == name
    assert emu.store.find("thulium", response.json()["token"]).name == name


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        (None, "Authentication required."),
        ((USER, "wrong"), "Invalid username or password."),
        (("someone", PASSWORD), "Invalid username or password."),
    ],
)
def test_basic_auth_is_enforced(emu: Emulator, auth: Any, message: str) -> None:
    response = post(emu, auth=auth)
    body = assert_envelope(response, 401, 401001)
    assert body["errors"][0]["message"] == message
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert emu.store.blobs("thulium") == []


def test_bearer_is_not_basic(emu: Emulator) -> None:
    response = requests.post(
        endpoint(emu), params={"filename": "f"}, data=b"x", headers={**OCTET, "Authorization": f"Bearer {PASSWORD}"}
    )
    assert_envelope(response, 401)


def test_credentials_are_checked_before_parameters(emu: Emulator) -> None:
    response = requests.post(endpoint(emu), data=b"x", headers=OCTET, auth=(USER, "wrong"))
    assert_envelope(response, 401)


@pytest.mark.parametrize("params", [{}, {"filename": ""}, {"filename": "   "}])
def test_filename_is_required(emu: Emulator, params: dict[str, str]) -> None:
    response = requests.post(endpoint(emu), params=params, data=b"x", headers=OCTET, auth=AUTH)
    body = assert_envelope(response, 400, 400002)
    assert body["errors"][0]["message"] == "Parameter filename is required."
    assert emu.store.blobs("thulium") == []


def test_a_filename_with_control_characters_is_refused(emu: Emulator) -> None:
    assert_envelope(post(emu, filename="a\nb.txt"), 400, 400003)


def test_messages_in_polish_on_request(emu: Emulator) -> None:
    response = requests.post(
        endpoint(emu), data=b"x", headers={**OCTET, "Accept-Language": "pl-PL,pl;q=0.9,en;q=0.5"}, auth=AUTH
    )
    assert assert_envelope(response, 400)["errors"][0]["message"] == "Parametr filename jest wymagany."


def test_request_ids_differ(emu: Emulator) -> None:
    ids = {post(emu, auth=None).json()["request_id"] for _ in range(5)}
    assert len(ids) == 5


def test_other_methods_and_paths_answer_in_the_envelope(emu: Emulator) -> None:
    got = requests.get(endpoint(emu), auth=AUTH)
    assert_envelope(got, 405)
    assert "POST" in got.headers["Allow"]
    assert_envelope(requests.get(f"{emu.url}/thulium/api/temporary_files/123", auth=AUTH), 404)


def test_size_limit_is_413(tmp_path: Any) -> None:
    with Emulator(max_size=10) as emu:
        assert post(emu, b"0123456789").status_code == 200
        assert_envelope(post(emu, b"0123456789A"), 413)
        assert len(emu.store.blobs("thulium")) == 1


def test_tokens_expire_after_24_hours_of_the_emulator_clock(emu: Emulator) -> None:
    token = post(emu).json()["token"]
    blob = emu.store.find("thulium", token)
    assert blob.ttl == 24 * 3600
    requests.post(f"{emu.url}/_emulator/clock", json={"advance": 24 * 3600 - 5}).raise_for_status()
    assert emu.store.find("thulium", token).size == 12
    requests.post(f"{emu.url}/_emulator/clock", json={"advance": 5}).raise_for_status()
    with pytest.raises(BlobExpired):
        emu.store.find("thulium", token)


def test_injected_503_uses_the_envelope_and_retry_after(emu: Emulator) -> None:
    emu.faults.add(Fault(provider="thulium", status=503, retry_after=7, message="Service unavailable."))
    response = post(emu)
    body = assert_envelope(response, 503, 503001)
    assert body["errors"][0]["message"] == "Service unavailable."
    assert response.headers["Retry-After"] == "7"
    assert post(emu).status_code == 200


def test_a_body_that_breaks_off_stores_nothing(emu: Emulator) -> None:
    address = urlparse(emu.url)
    with socket.create_connection((address.hostname, address.port or 80)) as sock:
        token = requests.auth._basic_auth_str(USER, PASSWORD)
        head = (
            "POST /thulium/api/temporary_files?filename=cut.bin HTTP/1.1\r\n"
            f"Host: {address.netloc}\r\nAuthorization: {token}\r\n"
            "Content-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n"
        )
        sock.sendall(head.encode() + b"x" * 1000)
        sock.shutdown(socket.SHUT_WR)  # the client goes away 1000 bytes in
        answer = b""
        try:  # the server closes (or resets) the connection once it has dropped the upload
            while block := sock.recv(65536):
                answer += block
        except ConnectionResetError:
            pass
        assert answer == b""  # and sends no answer to a request it never fully received
    assert emu.store.blobs("thulium") == []
    assert post(emu).status_code == 200  # the server is fine, and only that upload is stored
    assert [b.name for b in emu.store.blobs("thulium")] == ["file.txt"]


def test_a_dropped_upload_stores_nothing(emu: Emulator) -> None:
    emu.faults.add(Fault(provider="thulium", method="POST", drop_after=4096))
    with pytest.raises(requests.ConnectionError):
        post(emu, os.urandom(1 << 20))
    assert emu.store.blobs("thulium") == []


def test_banner_shows_the_demo_credentials(emu: Emulator) -> None:
    line = emu.mounts["thulium"].banner(emu.url)[0]
    assert f"{emu.url}/thulium" in line and USER in line and PASSWORD in line
