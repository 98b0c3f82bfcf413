"""The streaming multipart body: exact length, re-iterable, 1 MiB blocks, safe headers, real parsers agree.

The bodies are parsed back with the standard library's MIME parser (multipart/mixed, RFC 2231
parameters) and with werkzeug's form-data parser (what a WSGI server does with a Pyrus upload).
"""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import hashlib
import io
import re
from pathlib import Path
from urllib.parse import unquote

import pytest
from werkzeug.formparser import parse_form_data
from werkzeug.test import EnvironBuilder

from tests.conftest import make_file
from tmpup.errors import ExitCode, InputError
from tmpup.hashing import ResettableHash
from tmpup.protocols.multipart import (
    MultipartBody,
    Part,
    ascii_fallback,
    check_header_text,
    ext_value,
    header_params,
    quoted,
)
from tmpup.sources import BLOCK, open_source

ODD_NAMES = ["plain.txt", "with space.txt", 'quo"te.txt', "back\\slash.txt", "ünïcødé отчёт 日本.csv", "a;b=c.txt"]


def rfc6266_param(part: email.message.Message, key: str) -> str | None:
    """A Content-Disposition parameter as RFC 6266 reads it: `key*` (RFC 2231) wins over `key`.

    The stdlib's own `get_param` takes whichever comes first, i.e. the ASCII fallback.
    """
    header = next(value for name, value in part.raw_items() if name.lower() == "content-disposition")
    star = re.search(rf"(?:^|;)\s*{re.escape(key)}\*=([^;]+)", header)
    if star:
        charset, _lang, encoded = star.group(1).strip().split("'", 2)
        return unquote(encoded, encoding=charset, errors="strict")
    value = part.get_param(key, header="Content-Disposition")
    return value if isinstance(value, str) else None


def body_bytes(body: MultipartBody) -> bytes:
    return b"".join(body)


def mixed_body(tmp_path: Path, names_sizes: list[tuple[str, int]]) -> tuple[MultipartBody, list[Path]]:
    parts, files = [], []
    for index, (name, size) in enumerate(names_sizes):
        path = make_file(tmp_path / f"f{index}.bin", size, seed=index + 1)
        files.append(path)
        source = open_source(str(path))
        disposition = header_params("attachment", [("filename", name), ("name", name), ("size", size)], extended=True)
        headers = [
            ("Content-Disposition", disposition),
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(size)),
        ]
        parts.append(Part(headers, source.slice(0)))
    return MultipartBody(parts, subtype="mixed"), files


def test_length_is_exact_and_the_body_is_reiterable(tmp_path: Path) -> None:
    body, _ = mixed_body(tmp_path, [("a.bin", 0), ("b.bin", 1), ("c.bin", 3 * BLOCK + 5)])
    first = body_bytes(body)
    assert len(first) == len(body)
    assert body_bytes(body) == first  # a retry sends the same bytes again
    assert body.content_type == f"multipart/mixed; boundary={body.boundary}"
    assert first.endswith(f"\r\n--{body.boundary}--\r\n".encode())


def test_file_data_is_sent_in_blocks_of_at_most_one_mib(tmp_path: Path) -> None:
    body, _ = mixed_body(tmp_path, [("a.bin", 3 * BLOCK + 7)])
    sizes = [len(chunk) for chunk in body]
    assert max(sizes) == BLOCK
    assert sizes.count(BLOCK) == 3
    assert all(sizes)  # no empty writes


def test_stdlib_mime_parser_reads_multipart_mixed(tmp_path: Path) -> None:
    names = [("ünïcødé отчёт 日本.csv", 10), ('quo"te \\ back.txt', 0), ("plain.bin", BLOCK + 3)]
    body, files = mixed_body(tmp_path, names)
    raw = f"Content-Type: {body.content_type}\r\n\r\n".encode() + body_bytes(body)
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    parts = list(message.iter_parts())
    assert len(parts) == 3
    for part, (name, size), path in zip(parts, names, files, strict=True):
        assert part.get_content_disposition() == "attachment"
        assert rfc6266_param(part, "filename") == name
        assert rfc6266_param(part, "name") == name
        assert part.get_filename() == (name if name.isascii() else ascii_fallback(name))
        assert part.get_param("size", header="Content-Disposition") == str(size)
        assert part["Content-Length"] == str(size)
        assert part.get_payload(decode=True) == path.read_bytes()


@pytest.mark.parametrize("name", ODD_NAMES)
def test_werkzeug_form_parser_reads_form_data_names_exactly(tmp_path: Path, name: str) -> None:
    path = make_file(tmp_path / "data.bin", 2 * BLOCK + 1)
    source = open_source(str(path))
    disposition = header_params("form-data", [("name", "file"), ("filename", name)], extended=False)
    body = MultipartBody(
        [Part([("Content-Disposition", disposition), ("Content-Type", "application/octet-stream")], source.slice(0))]
    )
    data = body_bytes(body)
    environ = EnvironBuilder(method="POST", input_stream=io.BytesIO(data), content_type=body.content_type).get_environ()
    environ["CONTENT_LENGTH"] = str(len(data))
    _stream, _form, files = parse_form_data(environ)
    upload = files["file"]
    assert upload.filename == name
    assert upload.read() == path.read_bytes()


def test_form_data_never_uses_filename_star_and_mixed_does_for_non_ascii() -> None:
    form = header_params("form-data", [("name", "file"), ("filename", "отчёт.txt")], extended=False)
    assert form == 'form-data; name="file"; filename="отчёт.txt"'
    mixed = header_params("attachment", [("filename", "Crème brûlée.txt"), ("size", 3)], extended=True)
    assert mixed == (
        "attachment; filename=\"Creme brulee.txt\"; filename*=UTF-8''Cr%C3%A8me%20br%C3%BBl%C3%A9e.txt; size=3"
    )
    assert header_params("attachment", [("name", 'a "b" \\c')], extended=True) == 'attachment; name="a \\"b\\" \\\\c"'


def test_quoting_helpers() -> None:
    assert quoted('say "hi"\\') == '"say \\"hi\\"\\\\"'
    assert ext_value("a b/ü") == "UTF-8''a%20b%2F%C3%BC"
    assert ascii_fallback("日本.txt") == "__.txt"
    assert ascii_fallback("naïve") == "naive"


@pytest.mark.parametrize("bad", ["a\rb", "a\nb", "a\x00b", "x\r\nContent-Type: evil"])
def test_cr_lf_nul_are_refused_with_exit_7(bad: str) -> None:
    with pytest.raises(InputError) as caught:
        header_params("attachment", [("filename", bad)], extended=True)
    assert caught.value.exit_code == ExitCode.INPUT
    with pytest.raises(InputError):
        check_header_text(bad)
    with pytest.raises(InputError):
        MultipartBody([Part([("Content-Disposition", f"attachment; filename={bad}")], b"")])


def test_progress_per_part_and_hash_in_the_read_path_restart_on_retry(tmp_path: Path) -> None:
    sizes = [5, 2 * BLOCK + 9]
    paths = [make_file(tmp_path / f"p{i}.bin", size, seed=i + 7) for i, size in enumerate(sizes)]
    counters = [0, 0]
    md5 = ResettableHash("md5")

    def counter(index: int) -> object:
        def advance(n: int) -> None:
            counters[index] += n

        return advance

    parts = []
    for index, path in enumerate(paths):
        source = open_source(str(path))
        hashers = [md5] if index == 1 else None
        parts.append(Part([("Content-Type", "x/y")], source.slice(0, progress=counter(index), hashers=hashers)))  # type: ignore[arg-type]
    body = MultipartBody(parts, subtype="mixed")
    for _attempt in range(2):
        counters[:] = [0, 0]
        assert len(body_bytes(body)) == len(body)
        assert counters == sizes
        assert md5.hexdigest() == hashlib.md5(paths[1].read_bytes()).hexdigest()


def test_an_interrupted_iteration_can_start_over(tmp_path: Path) -> None:
    body, _ = mixed_body(tmp_path, [("a.bin", 3 * BLOCK)])
    iterator = iter(body)
    next(iterator)
    next(iterator)  # a retry after a dropped connection abandons the old iteration
    assert body_bytes(body) == body_bytes(body)
    assert len(body_bytes(body)) == len(body)


def test_bytes_parts_and_boundaries_are_unique() -> None:
    one = MultipartBody([Part([("Content-Disposition", 'form-data; name="x"')], b"value")])
    two = MultipartBody([Part([("Content-Disposition", 'form-data; name="x"')], b"value")])
    assert one.boundary != two.boundary and len(one.boundary) <= 70
    assert body_bytes(one) == (
        f'--{one.boundary}\r\nContent-Disposition: form-data; name="x"\r\n\r\nvalue\r\n--{one.boundary}--\r\n'.encode()
    )
    with pytest.raises(ValueError):
        MultipartBody([])


# -- hashes computed beside the transfer ------------------------------------------------------------


def test_hashes_on_their_own_thread_equal_hashlib_through_resets_and_idle_gaps() -> None:
    import hashlib
    import random
    import time

    from tmpup.hashing import HashLane, ResettableHash

    rng = random.Random(7)
    blocks = [rng.randbytes(rng.choice([1, 100, 70_000, 1 << 20])) for _ in range(40)]
    md5 = ResettableHash("md5")
    for block in blocks[:10]:
        md5.update(block)
    md5.reset()  # a retry starts over: only what follows counts
    for i, block in enumerate(blocks):
        md5.update(block)
        if i == 20:
            time.sleep(HashLane.IDLE * 1.5)  # the thread ends when idle and a new one takes over
    assert md5.hexdigest() == hashlib.md5(b"".join(blocks)).hexdigest()
    md5.update(b"more")  # usable after a digest, as hashlib is
    assert md5.hexdigest() == hashlib.md5(b"".join(blocks) + b"more").hexdigest()


def test_a_failing_update_is_raised_to_the_caller() -> None:
    from tmpup.hashing import HashLane

    lane = HashLane()

    def boom() -> None:
        raise ValueError("kaboom")

    lane.submit(boom)
    with pytest.raises(ValueError, match="kaboom"):
        lane.drain()
