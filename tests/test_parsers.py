"""Parsers of what users type and of what servers send: sizes, durations, headers, safe names."""

from __future__ import annotations

import email.utils
import time
import unicodedata

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tmpup.headers import parse_content_disposition, parse_content_range, safe_filename
from tmpup.http import redact_url
from tmpup.retry import retry_after_seconds
from tmpup.units import MAX_DURATION, MAX_SIZE, format_size, parse_duration, parse_size


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


# Digits of other scripts ("٦٤" is 64 to float()) and the Kelvin sign (a "k" to a case-blind match) are not sizes.
@pytest.mark.parametrize("text", ["", "abc", "-1", "1X", "M", "1..2M", "\u0666\u0664M", "64\u212a", "\uff16\uff14M"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90", 90), ("90s", 90), ("30m", 1800), ("2h", 7200), ("3d", 259200), ("1.5h", 5400), ("500ms", 0.5)],
)
def test_parse_duration(text: str, expected: float) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "-5", "5y", "h", "\u0663\u0660m", "\u0663\u0660"])
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
        ("گزارش\u200cهای.pdf", "گزارش\u200cهای.pdf"),  # noqa: RUF001 (ZWNJ is part of the spelling)
        ("report\u202etxt.exe", "reporttxt.exe"),  # a right-to-left override would show "exe.txt"
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
    # No control, surrogate, private or unassigned characters, and no bidi controls that disguise a
    # name; the zero-width joiners (Persian spelling, emoji) are format characters that stay.
    assert all(unicodedata.category(ch) in ("Cf",) or unicodedata.category(ch)[0] != "C" for ch in name)
    assert not any("\u202a" <= ch <= "\u202e" or "\u2066" <= ch <= "\u2069" for ch in name)
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


# -- property tests of everything that meets untrusted input (hypothesis) ---------------------------

from urllib.parse import quote  # noqa: E402

from hypothesis import assume  # noqa: E402

from tmpup.protocols.tus import decode_metadata, encode_metadata  # noqa: E402
from tmpup.units import format_duration  # noqa: E402

#: Text as servers and file systems produce it: any code point, lone surrogates (non-UTF-8 bytes
#: decoded with surrogateescape) included.
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=300)
#: A valid tus metadata key: ASCII, no whitespace, no comma, not empty.
META_KEYS = st.text(
    st.characters(codec="ascii").filter(lambda ch: not ch.isspace() and ch != ","), min_size=1, max_size=20
)


@given(st.text(max_size=300))
@example("a YQ==, b not-base64!, c d e, ,d ZA==,")
@example("k " + "A" * 10_001)
@example("k /w==")  # base64 of a byte that is not UTF-8
def test_tus_metadata_decode_never_raises(header: str) -> None:
    decoded = decode_metadata(header)
    assert isinstance(decoded, dict)
    assert all(isinstance(k, str) and k and isinstance(v, str) for k, v in decoded.items())
    assert all(" " not in k and "," not in k for k in decoded)


@given(st.dictionaries(META_KEYS, st.text(max_size=80), max_size=8))
@example({"filename": "résumé 2024,final.pdf", "ttl": "3600", "empty": ""})
@example({"filename": "a\r\nb\x00c"})
def test_tus_metadata_round_trips(metadata: dict[str, str]) -> None:
    header = encode_metadata(metadata)
    assert "\r" not in header and "\n" not in header and header.isascii()  # safe as one header line
    assert decode_metadata(header) == metadata


@given(st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=4))
def test_tus_metadata_encode_refuses_bad_keys_with_valueerror_only(metadata: dict[str, str]) -> None:
    try:
        header = encode_metadata(metadata)
    except ValueError:
        assert any(not k or not k.isascii() or any(ch.isspace() or ch == "," for ch in k) for k in metadata)
        return
    assert decode_metadata(header) == metadata


@given(st.text(st.characters(codec="utf-8"), min_size=1, max_size=120))
@example("отчёт 2024.pdf")
@example('it\'s "quoted"; and=semi.txt')
@example("%41 is not A.txt")
def test_content_disposition_rfc5987_round_trip(name: str) -> None:
    encoded = quote(name, safe="")
    assert parse_content_disposition(f"attachment; filename*=UTF-8''{encoded}") == name
    # filename* wins over the ASCII fallback, whichever comes first
    assert parse_content_disposition(f"attachment; filename=\"fallback.bin\"; filename*=utf-8''{encoded}") == name
    assert parse_content_disposition(f"attachment; filename*=UTF-8'en'{encoded}; filename=\"x\"") == name


@given(st.text(st.characters(codec="utf-8", exclude_characters='"\\'), min_size=1, max_size=120))
def test_content_disposition_quoted_filename_round_trip(name: str) -> None:
    assert parse_content_disposition(f'attachment; filename="{name}"') == name


@given(st.text(st.characters(codec="utf-8"), min_size=1, max_size=60))
def test_content_disposition_quoted_pair_escapes_round_trip(name: str) -> None:
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    assert parse_content_disposition(f'attachment; filename="{quoted}"') == name


@given(ANY_TEXT)
def test_any_content_disposition_becomes_a_safe_name(header: str) -> None:
    name = safe_filename(parse_content_disposition(header))
    assert name and "/" not in name and "\\" not in name and name not in (".", "..")
    name.encode("utf-8")  # always writable as a UTF-8 file name


@given(st.integers(0, 2**62), st.integers(0, 2**62), st.integers(1, 2**62))
def test_content_range_round_trip(a: int, b: int, extra: int) -> None:
    start, end = min(a, b), max(a, b)
    total = end + extra
    assert parse_content_range(f"bytes {start}-{end}/{total}") == (start, end, total)
    assert parse_content_range(f"bytes {start}-{end}/*") == (start, end, None)
    assert parse_content_range(f"BYTES  {start}-{end}/{total} ") == (start, end, total)
    assert parse_content_range(f"bytes {start}-{end}/{end}") is None  # the last byte must lie inside
    if start < end:
        assert parse_content_range(f"bytes {end}-{start}/{total}") is None


@given(st.integers(0, 2**50), st.sampled_from(["", "K", "M", "G", "T", "P"]), st.sampled_from(["", "B", "iB"]))
def test_size_round_trip(n: int, unit: str, suffix: str) -> None:
    power = "KMGTP".find(unit) + 1 if unit else 0
    text = f"{n}{unit}{suffix if unit else ''}"
    if n * 1024**power > MAX_SIZE:  # beyond 1 EiB a size is a typo
        with pytest.raises(ValueError):
            parse_size(text)
        return
    assert parse_size(text) == n * 1024**power
    assert parse_size(text.lower()) == n * 1024**power
    assert parse_size(f" {n} {unit.lower()} ") == n * 1024**power


@given(st.integers(0, 2**60))
def test_format_size_parses_back_within_its_rounding(n: int) -> None:
    shown = format_size(n)
    back = parse_size(shown)
    assert abs(back - n) <= 0.05 * n
    assert back == n or n >= 1024


@given(st.from_regex(r"\A\s?[0-9]{1,600}(\.[0-9]{1,5})?\s?[kmgtpKMGTP]?(i?[bB])?\s?\Z"))
@example("9" * 400)
@example("9" * 400 + "P")
def test_parse_size_of_any_number_is_an_int_or_valueerror(text: str) -> None:
    """Never OverflowError (float('9'*400) is inf): a number too big to mean anything is a ValueError."""
    try:
        value = parse_size(text)
    except ValueError:
        return
    assert isinstance(value, int) and value >= 0


@given(st.from_regex(r"\A[0-9]{1,600}(\.[0-9]{1,5})?(ms|s|m|h|d|w)?\Z"))
@example("9" * 400)
@example("99999999999999d")
def test_parse_duration_of_any_number_is_finite_or_valueerror(text: str) -> None:
    """inf seconds would crash `--ttl` (int(inf)) and `--timeout` (time_t overflow): refuse it instead."""
    import math

    try:
        value = parse_duration(text)
    except ValueError:
        return
    assert math.isfinite(value) and value >= 0
    assert value < 10**11  # about 3000 years: the socket and datetime layers take that


@given(st.integers(0, 10**9), st.sampled_from([("s", 1), ("m", 60), ("h", 3600), ("d", 86400), ("w", 604800)]))
def test_duration_round_trip(n: int, unit: tuple[str, int]) -> None:
    suffix, factor = unit
    if n * factor > MAX_DURATION:  # beyond about 30 years a duration is a typo
        with pytest.raises(ValueError):
            parse_duration(f"{n}{suffix}")
        return
    assert parse_duration(f"{n}{suffix}") == n * factor
    assert parse_duration(str(n)) == n


@given(st.integers(0, 10**8))
def test_format_duration_parts_parse_back(seconds: int) -> None:
    import re

    shown = format_duration(seconds)
    parts = re.findall(r"\d+[dhms]", shown)
    assert "".join(parts) == shown and 1 <= len(parts) <= 2
    total = sum(parse_duration(p) for p in parts)
    smallest = {"d": 86400, "h": 3600, "m": 60, "s": 1}[parts[-1][-1]]
    assert total <= seconds < total + smallest


NASTY = st.sampled_from(["..", ".", "/", "\\", "\x00", "\r\n", " ", "\t", "\u202e", "\u200b", "\udcff", "a", "é", "~"])


@given(st.one_of(ANY_TEXT, st.lists(NASTY, max_size=40).map("".join)))
@example("../../etc/passwd")
@example(" .. ")
@example(". .0")  # a space between the dots: the leading dot must go too
@example("\udcff\udcfe")
@example("." * 300)
@example("x" * 300 + ".tar.gz")
def test_safe_filename_is_safe_idempotent_and_bounded(raw: str) -> None:
    name = safe_filename(raw)
    assert name and name.strip() == name
    assert name not in (".", "..") and not name.startswith(".") and not name.endswith((".", " "))
    assert "/" not in name and "\\" not in name and "\x00" not in name
    # no control, surrogate, private-use or unassigned characters; format characters only if not bidi controls
    assert all(unicodedata.category(ch) == "Cf" or unicodedata.category(ch)[0] != "C" for ch in name)
    assert not any("\u202a" <= ch <= "\u202e" or "\u2066" <= ch <= "\u2069" for ch in name)
    assert len(name.encode("utf-8")) <= 255  # encodes: no lone surrogate survives
    assert safe_filename(name) == name  # already safe: left alone


@given(st.from_regex(r"\A[A-Za-z0-9_-][A-Za-z0-9 _.-]{0,60}[A-Za-z0-9_-]\Z"))
def test_safe_filename_keeps_ordinary_names(raw: str) -> None:
    assume(" " not in (raw[0], raw[-1]))
    assert safe_filename(raw) == raw
    assert safe_filename(f"../dir/{raw}") == raw


@given(st.text(st.characters(codec="utf-8", exclude_categories=("C",)), min_size=256, max_size=400))
def test_safe_filename_truncation_keeps_the_extension(stem: str) -> None:
    name = safe_filename(stem.replace(".", "_").replace("/", "_").replace("\\", "_") + ".pdf")
    assert len(name.encode("utf-8")) <= 255
    assert name.endswith(".pdf") or name == "download"


@given(st.text(max_size=40))
@example("invoice\u200fexe.pdf")
@example("\u00ad.bashrc")
@example("a\u2028b.txt")
@example("a\ufeffb.txt")
@example("a\u200db \u0641\u0627\u06cc\u0644.txt")  # a joiner stays
def test_an_accepted_upload_name_comes_back_from_a_download_as_it_was(name: str) -> None:
    """What `check_name` lets through, `safe_filename` keeps (NFC-normalised, no leading dot aside):
    no character of an upload's name is silently dropped when it is downloaded again."""
    import unicodedata

    from tmpup.commands.names import check_name
    from tmpup.errors import InputError
    from tmpup.headers import safe_filename

    try:
        check_name(name)
    except InputError:
        return
    nfc = unicodedata.normalize("NFC", name)
    kept = "".join(ch for ch in nfc if unicodedata.category(ch)[0] != "C" or unicodedata.category(ch) == "Cf")
    expected = kept.strip().lstrip(".").rstrip(". ")
    if expected and len(expected.encode()) <= 200:
        assert safe_filename(name) in (expected, expected.lstrip(".").strip()), (name, safe_filename(name))


def test_origin_scopes_credentials_and_never_raises() -> None:
    """One `origin` for tus, Qlik and KF5 (three copies disagreed: a port out of range was 443 to one,
    -1 to another, and a ValueError, exit 1, to KF5's download)."""
    from tmpup.headers import origin

    assert origin("HTTPS://Acme.Example.com/x") == ("https", "acme.example.com", 443)
    assert origin("http://h/x") == origin("http://h:80/y") == ("http", "h", 80)
    assert origin("https://h:99999/x") == ("https", "h", -1) != origin("https://h/x")
    assert origin("https://h:abc/x")[2] == -1
    assert origin("") == ("", "", None)


def test_the_rate_limit_sleeps_only_what_it_is_ahead() -> None:
    """`--limit-rate` (sources.Throttle) with its clock and sleep injected: no real waiting."""
    from tmpup.sources import Throttle

    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    throttle = Throttle(1000, clock=lambda: now[0], sleep=sleep)
    throttle.consume(500)  # half a second's worth at once: ahead by 0.5 s
    assert slept == [0.5]
    now[0] += 2.0  # a slow stretch: 2 s passed for the next 500 bytes, nothing to make up
    throttle.consume(500)
    assert slept == [0.5] and throttle.sent == 1000
