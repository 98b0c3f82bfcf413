"""Parsers of what users type and of what servers send: sizes, durations, headers, safe names."""

from __future__ import annotations

import email.utils
import time
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tmpup.headers import parse_content_disposition, parse_content_range, safe_filename
from tmpup.http import redact_url, retry_after_seconds
from tmpup.units import format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("1048576", 1048576),
        ("64M", 64 << 20),
        ("64MB", 64 << 20),
        ("64MiB", 64 << 20),
        ("1GiB", 1 << 30),
        ("1.5k", 1536),
        ("2 g", 2 << 30),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "-1", "1X", "M", "1..2M"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90", 90), ("90s", 90), ("30m", 1800), ("2h", 7200), ("3d", 259200), ("1.5h", 5400), ("500ms", 0.5)],
)
def test_parse_duration(text: str, expected: float) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "-5", "5y", "h"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@given(st.text(max_size=40))
def test_size_and_duration_parsers_never_raise_anything_but_valueerror(text: str) -> None:
    for parse in (parse_size, parse_duration):
        try:
            value = parse(text)
        except ValueError:
            continue
        assert value >= 0


def test_format_size() -> None:
    assert format_size(0) == "0 B"
    assert format_size(1536) == "1.5 KiB"
    assert format_size(200 << 20) == "200.0 MiB"


def test_content_range() -> None:
    assert parse_content_range("bytes 0-99/1000") == (0, 99, 1000)
    assert parse_content_range("bytes 5-9/*") == (5, 9, None)
    for bad in (None, "", "bytes 9-5/10", "bytes 0-10/10", "items 0-1/2", "bytes */10", "bytes a-b/c"):
        assert parse_content_range(bad) is None


@given(st.text(max_size=60))
def test_content_range_never_raises(text: str) -> None:
    parsed = parse_content_range(text)
    if parsed is not None:
        start, end, total = parsed
        assert 0 <= start <= end and (total is None or end < total)


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ('attachment; filename="a b.txt"', "a b.txt"),
        ("attachment; filename=plain.txt", "plain.txt"),
        ('attachment; filename="q\\"uote.txt"', 'q"uote.txt'),
        ("attachment; filename=\"x.txt\"; filename*=UTF-8''%D0%BE%D1%82%D1%87%D1%91%D1%82.pdf", "отчёт.pdf"),
        ("attachment; filename*=utf-8''%E6%97%A5%E6%9C%AC.txt", "日本.txt"),
        ("attachment", None),
        ("", None),
    ],
)
def test_content_disposition(header: str, name: str | None) -> None:
    assert parse_content_disposition(header) == name


@given(st.text(max_size=120))
def test_content_disposition_never_raises(text: str) -> None:
    result = parse_content_disposition(text)
    assert result is None or isinstance(result, str)


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("../../etc/passwd", "passwd"),
        ("..", "download"),
        (".bashrc", "bashrc"),
        ("a\\b\\c.txt", "c.txt"),
        ("evil\r\nname.txt", "evilname.txt"),
        ("nul\x00byte", "nulbyte"),
        ("  spaced  ", "spaced"),
        ("trailing. . .", "trailing"),
        ("отчёт 2024.pdf", "отчёт 2024.pdf"),
        (None, "download"),
    ],
)
def test_safe_filename(raw: str | None, safe: str) -> None:
    assert safe_filename(raw) == safe


@given(st.text(max_size=400))
def test_safe_filename_properties(raw: str) -> None:
    name = safe_filename(raw)
    assert name and "/" not in name and "\\" not in name
    assert not name.startswith(".")
    assert all(unicodedata.category(ch)[0] != "C" for ch in name)  # no control characters
    assert len(name.encode("utf-8")) <= 255


def test_retry_after_seconds_and_dates() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (retry_after_seconds(later) or 0) <= 31


def test_redact_url_masks_secret_query_values_and_userinfo() -> None:
    url = "https://user:pw@host/x?filename=a.txt&access_token=abc&api_key=zzz"
    redacted = redact_url(url)
    assert "pw" not in redacted and "abc" not in redacted and "zzz" not in redacted
    assert "filename=a.txt" in redacted
