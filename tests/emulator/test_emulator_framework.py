"""The mount framework as another provider would use it, and the store, ids and helpers under it."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
import requests
from werkzeug.exceptions import BadRequest
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from tmpup.emulator import Clock, Emulator, Fault
from tmpup.emulator.body import Dechunker
from tmpup.emulator.context import Ids
from tmpup.emulator.mount import BodyInterrupted, Mount, Reply, json_response
from tmpup.emulator.responses import content_disposition
from tmpup.emulator.store import BlobExpired, BlobMissing, BlobStore


class EchoMount(Mount):
    """A toy provider written the way mount.py's docstring says: Basic auth, upload, show, 418."""

    id = "echo"
    title = "Echo"
    rules = (
        Rule("/files", methods=["POST"], endpoint="upload"),
        Rule("/files/<id>", methods=["GET"], endpoint="show"),
        Rule("/teapot", methods=["GET"], endpoint="teapot"),
        Rule("/bad", methods=["GET"], endpoint="bad"),
    )

    def authenticate(self, request: Request, endpoint: str) -> Response | None:
        if self.basic_credentials(request) == ("user", "pässword"):
            return None
        return self.error(401, "who are you?")

    def error(self, status: int, detail: str, *, headers: object = None) -> Response:
        return json_response({"oops": detail, "status": status}, status, headers)  # type: ignore[arg-type]

    def upload(self, request: Request) -> Response:
        name = request.args.get("name", "")
        blob = self.store.create(self.id, str(self.ids.number(self.id, 1000)), name=name, ttl=60)
        try:
            self.receive(request, blob)
        except BodyInterrupted:
            self.store.delete(self.id, blob.id)
            raise
        self.store.complete(blob)
        return json_response({"id": int(blob.id), "size": blob.size}, 201)

    def show(self, request: Request, id: str) -> Response:
        return self.send_blob(request, self.lookup(id))

    def teapot(self, request: Request) -> Response:
        def deep() -> None:
            raise Reply(self.error(418, "short and stout"))

        deep()
        return json_response({})

    def bad(self, request: Request) -> Response:
        raise BadRequest("werkzeug says no")


AUTH = ("user", "pässword")


@pytest.fixture
def echo() -> Emulator:
    emu = Emulator(mounts=[EchoMount], seed=7).start()
    yield emu  # type: ignore[misc]
    emu.stop()


def test_a_new_mount_gets_routing_auth_storage_and_downloads(echo: Emulator) -> None:
    base = echo.mount_url("echo")
    assert base == f"{echo.url}/echo"
    created = requests.post(f"{base}/files", params={"name": "x y.txt"}, data=b"hello world", auth=AUTH)
    assert created.status_code == 201
    assert created.json() == {"id": 1000, "size": 11}
    assert echo.blob_path("echo", "1000").read_bytes() == b"hello world"
    got = requests.get(f"{base}/files/1000", auth=AUTH, headers={"Range": "bytes=6-"})
    assert got.status_code == 206 and got.content == b"world"
    assert got.headers["Content-Disposition"] == 'attachment; filename="x y.txt"'
    assert requests.get(f"{base}/files/1000", auth=("user", "nope")).json() == {"oops": "who are you?", "status": 401}
    assert requests.get(f"{base}/files/999", auth=AUTH).status_code == 404
    echo.clock.advance(60)
    assert requests.get(f"{base}/files/1000", auth=AUTH).status_code == 410
    assert requests.get(f"{base}/teapot", auth=AUTH).json() == {"oops": "short and stout", "status": 418}
    assert requests.get(f"{base}/bad", auth=AUTH).json() == {"oops": "werkzeug says no", "status": 400}
    wrong = requests.put(f"{base}/files", auth=AUTH)
    assert wrong.status_code == 405 and wrong.json()["status"] == 405
    assert requests.get(f"{echo.url}/qlik/api/v1/temp-contents/x").status_code == 404  # only the given mounts


def test_refused_big_body_is_drained_so_the_client_reads_the_answer(echo: Emulator) -> None:
    response = requests.post(f"{echo.mount_url('echo')}/files", data=b"\0" * (16 * 1024 * 1024))
    assert response.status_code == 401


def test_faults_apply_to_any_mount(echo: Emulator) -> None:
    echo.faults.add(Fault(provider="echo", status=503, retry_after=2))
    refused = requests.post(f"{echo.mount_url('echo')}/files", data=b"x", auth=AUTH)
    assert refused.status_code == 503 and refused.json()["status"] == 503 and refused.headers["Retry-After"] == "2"
    echo.faults.add(Fault(provider="echo", method="POST", drop_after=3))
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{echo.mount_url('echo')}/files", data=b"abcdef", auth=AUTH)
    assert echo.store.blobs("echo") == []


def test_unexpected_handler_error_is_a_logged_500(echo: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    mount = echo.mounts["echo"]
    mount.teapot = lambda request: 1 / 0  # type: ignore[method-assign]
    response = requests.get(f"{echo.mount_url('echo')}/teapot", auth=AUTH)
    assert response.status_code == 500 and response.json()["status"] == 500
    assert any("ZeroDivisionError" in (r.exc_text or "") for r in caplog.records)


def test_mount_ids_must_be_unique() -> None:
    with pytest.raises(ValueError):
        Emulator(mounts=[EchoMount, EchoMount])


def test_store_lifecycle(tmp_path: Path) -> None:
    clock = Clock()
    store = BlobStore(tmp_path / "blobs", clock)
    blob = store.create("p", "abc", name="n", length=6, ttl=10)
    with store.appender(blob) as sink:
        sink.write(b"abc")
    with store.appender(blob) as sink:
        sink.write(memoryview(b"def"))
    assert blob.offset == 6 and (tmp_path / "blobs" / "p" / "abc").read_bytes() == b"abcdef"
    assert store.find("p", "abc") is blob
    with pytest.raises(ValueError):
        store.create("p", "abc")
    for unsafe in ("../x", ".hidden", "a/b", ""):
        with pytest.raises(ValueError):
            store.create("p", unsafe)
    clock.advance(10)
    with pytest.raises(BlobExpired):
        store.find("p", "abc")
    assert store.get("p", "abc") is blob
    assert store.delete("p", "abc") and not store.delete("p", "abc")
    with pytest.raises(BlobMissing):
        store.find("p", "abc")
    assert not (tmp_path / "blobs" / "p" / "abc").exists()
    store.close()
    assert (tmp_path / "blobs").is_dir()  # a given directory is never removed


def test_sweep_removes_bytes_of_expired_blobs_but_remembers_them(tmp_path: Path) -> None:
    clock = Clock()
    store = BlobStore(tmp_path, clock)
    old = store.create("p", "old", ttl=5)
    clock.advance(120)
    store.create("p", "new")  # creating triggers a sweep
    assert not old.path.exists()
    with pytest.raises(BlobExpired):
        store.find("p", "old")


def test_store_is_thread_safe_for_distinct_uploads(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, Clock())

    def work(n: int) -> None:
        blob = store.create("p", f"b{n}")
        with store.appender(blob) as sink:
            sink.write(bytes([n]) * 1000)
        store.complete(blob)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.blobs("p")) == 32
    assert all(store.find("p", f"b{n}").path.read_bytes() == bytes([n]) * 1000 for n in range(32))


def test_seeded_ids_repeat() -> None:
    a, b = Ids(1), Ids(1)
    assert [a.hex(24), a.uuid(), a.number("x")] == [b.hex(24), b.uuid(), b.number("x")]
    assert a.number("x") == 2 and a.number("y", 100) == 100
    assert len(Ids().hex(32)) == 32


@pytest.mark.parametrize(
    ("name", "inline", "expected"),
    [
        ("a.txt", False, 'attachment; filename="a.txt"'),
        ("a.txt", True, 'inline; filename="a.txt"'),
        ("", False, "attachment"),
        ('q"uote.txt', False, 'attachment; filename="q\\"uote.txt"; filename*=UTF-8\'\'q%22uote.txt'),
        ("é.txt", False, "attachment; filename=\"_.txt\"; filename*=UTF-8''%C3%A9.txt"),
        ("a\r\nb", False, "attachment; filename=\"a__b\"; filename*=UTF-8''a%0D%0Ab"),
    ],
)
def test_content_disposition(name: str, inline: bool, expected: str) -> None:
    assert content_disposition(name, inline=inline) == expected


def test_dechunker_returns_data_as_it_arrives() -> None:
    raw = io.BufferedReader(io.BytesIO(b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT"))  # type: ignore[arg-type]
    dechunked = Dechunker(raw)
    assert dechunked.read1(100) == b"hello"
    assert dechunked.read1(3) == b" wo"
    assert dechunked.read1(100) == b"rld"
    assert dechunked.read1(100) == b""
    assert raw.read() == b"NEXT"
    broken = Dechunker(io.BufferedReader(io.BytesIO(b"10\r\nshort")))  # type: ignore[arg-type]
    assert broken.read1(100) == b"short"
    with pytest.raises(ConnectionError):
        broken.read1(100)
