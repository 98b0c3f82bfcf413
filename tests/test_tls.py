"""TLS end to end: tmpup against the emulator serving HTTPS with a private CA made by trustme.

Every case runs twice: with `REQUESTS_CA_BUNDLE` and `CURL_CA_BUNDLE` set to a public bundle (as
on this machine and in CI; that bundle does not hold the test CA) and with both unset. requests
lets those variables override a session's `verify`, so passing in both modes proves that
`--ca-bundle`, a profile's `ca_bundle` and `--insecure` win over them, and that without the CA
the upload fails closed either way.
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.conftest import Result, make_file, run, run_process, sha256_file, write_qlik_profile
from tmpup.emulator import Emulator

CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_pem(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def https_emulator(ca: trustme.CA) -> Iterator[Emulator]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    with Emulator(ssl_context=context) as emu:
        yield emu


@pytest.fixture(params=["ca-variables-set", "ca-variables-unset"], autouse=True)
def ca_variables(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both modes; "set" keeps the environment's values, or points them at certifi's public bundle."""
    if request.param == "ca-variables-set":
        import certifi

        for name in CA_VARIABLES:
            monkeypatch.setenv(name, os.environ.get(name) or certifi.where())
    else:
        for name in CA_VARIABLES:
            monkeypatch.delenv(name, raising=False)
    return str(request.param)


def qlik_profile(emu: Emulator, config_path: Path, extra: str = "") -> None:
    write_qlik_profile(emu, config_path, retries=1, extra=extra)


def uploaded(result: Result, emu: Emulator, src: Path) -> dict[str, Any]:
    """The JSON record of a successful upload whose bytes arrived exactly."""
    assert result.code == 0, result.err
    (line,) = result.lines
    record: dict[str, Any] = json.loads(line)
    assert emu.blob_sha256("qlik", record["id"]) == sha256_file(src)
    return record


def assert_one_error_line(result: Result) -> str:
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("tmpup: error: ")
    assert "Traceback" not in result.err
    assert result.out == ""
    return lines[0]


def test_the_emulator_url_is_https(https_emulator: Emulator) -> None:
    assert https_emulator.url == f"https://127.0.0.1:{https_emulator.port}"
    assert https_emulator.mount_url("qlik").startswith("https://")
    assert https_emulator.banner()[0].startswith(f"tmpup emulator listening on {https_emulator.url}")


@pytest.mark.parametrize("mode", ["raw", "resumable"])
def test_upload_with_ca_bundle_option(
    https_emulator: Emulator, config_path: Path, ca_pem: Path, tmp_path: Path, mode: str
) -> None:
    qlik_profile(https_emulator, config_path)
    src = make_file(tmp_path / "data.bin", 3 * 1024 * 1024 + 11)
    extra = ["--resumable", "--chunk-size", "1M"] if mode == "resumable" else []
    result = run("upload", str(src), "--json", "--progress", "none", "--ca-bundle", str(ca_pem), *extra)
    uploaded(result, https_emulator, src)
    assert result.err == ""


def test_upload_with_ca_bundle_in_the_profile(
    https_emulator: Emulator, config_path: Path, ca_pem: Path, tmp_path: Path
) -> None:
    qlik_profile(https_emulator, config_path, f'ca_bundle = "{ca_pem}"')
    src = make_file(tmp_path / "data.bin", 4096)
    uploaded(run("upload", str(src), "--json", "--progress", "none"), https_emulator, src)


def test_the_real_program_with_ca_bundle(
    https_emulator: Emulator, config_path: Path, ca_pem: Path, tmp_path: Path
) -> None:
    qlik_profile(https_emulator, config_path)
    src = make_file(tmp_path / "data.bin", 100_000)
    result = run_process("upload", str(src), "--json", "--progress", "none", "--ca-bundle", str(ca_pem))
    uploaded(result, https_emulator, src)
    assert result.err == ""


@pytest.mark.parametrize("runner", [run, run_process], ids=["in-process", "process"])
def test_without_the_ca_the_upload_fails_closed(
    https_emulator: Emulator, config_path: Path, tmp_path: Path, runner: Any
) -> None:
    qlik_profile(https_emulator, config_path)
    src = make_file(tmp_path / "data.bin", 4096)
    result = runner("upload", str(src), "--progress", "none")
    assert result.code == 3  # a configuration error: only a CA bundle (or the right url) makes it work
    line = assert_one_error_line(result)
    assert "certificate" in line and "--ca-bundle" in line
    assert https_emulator.store.blobs("qlik") == []  # nothing was uploaded


def test_insecure_uploads_and_warns(https_emulator: Emulator, config_path: Path, tmp_path: Path) -> None:
    qlik_profile(https_emulator, config_path)
    src = make_file(tmp_path / "data.bin", 70_000)
    result = run("upload", str(src), "--json", "--progress", "none", "--insecure")
    uploaded(result, https_emulator, src)
    assert "--insecure" in result.err and "verification is OFF" in result.err
    assert "Traceback" not in result.err and "InsecureRequestWarning" not in result.err


def test_a_missing_ca_bundle_is_a_configuration_error(
    https_emulator: Emulator, config_path: Path, tmp_path: Path
) -> None:
    qlik_profile(https_emulator, config_path)
    src = make_file(tmp_path / "data.bin", 10)
    result = run("upload", str(src), "--progress", "none", "--ca-bundle", str(tmp_path / "nonexistent.pem"))
    assert result.code == 3
    assert "nonexistent.pem" in assert_one_error_line(result)
    assert https_emulator.store.blobs("qlik") == []


def test_requests_ca_bundle_alone_is_honoured(
    https_emulator: Emulator, config_path: Path, ca_pem: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # tmpup reads the environment once per run, not per request (the session's trust_env is off):
    # a private CA named only by REQUESTS_CA_BUNDLE (corporate machines, CI images) still counts.
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_pem))
    qlik_profile(https_emulator, config_path)
    src = make_file(tmp_path / "env-ca.bin", 20_000)
    uploaded(run("upload", str(src), "--json", "--progress", "none"), https_emulator, src)


def _not_a_bundle(tmp_path: Path, kind: str, ca: trustme.CA) -> Path:
    path = tmp_path / f"{kind}.pem"
    if kind == "text":
        path.write_text("hello, not a certificate\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "key-only":  # a PEM file, but of the private key
        ca.private_key_pem.write_to_path(str(path))
    else:  # the CA certificate in DER form: a certificate, but not a PEM bundle
        path.write_bytes(ssl.PEM_cert_to_DER_cert(ca.cert_pem.bytes().decode()))
    return path


@pytest.mark.parametrize("kind", ["text", "empty", "key-only", "der"])
@pytest.mark.parametrize("given", ["option", "profile", "variable"])
def test_a_ca_bundle_that_holds_no_certificate_is_one_clear_line(
    https_emulator: Emulator,
    config_path: Path,
    tmp_path: Path,
    ca: trustme.CA,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    given: str,
) -> None:
    bad = _not_a_bundle(tmp_path, kind, ca)
    qlik_profile(https_emulator, config_path, f'ca_bundle = "{bad}"' if given == "profile" else "")
    extra = ["--ca-bundle", str(bad)] if given == "option" else []
    if given == "variable":
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bad))
    src = make_file(tmp_path / "data.bin", 10)
    for args in (("upload", str(src), "--progress", "none"), ("profiles", "check")):
        result = run(*args, *extra)
        assert result.code == 3, result.err
        line = assert_one_error_line(result)
        assert f"the CA bundle {bad}" in line and "holds no certificate" in line
        assert "HTTPSConnectionPool" not in line and "NO_CERTIFICATE" not in line
        assert "pass --ca-bundle" not in line
        if given == "variable":
            assert "REQUESTS_CA_BUNDLE" in line
    assert https_emulator.store.blobs("qlik") == []


def test_a_ca_bundle_is_not_read_for_plain_http(emulator: Emulator, config_path: Path, tmp_path: Path) -> None:
    """Only https requests use the bundle: a profile's bundle does not stop an http url (the emulator)."""
    write_qlik_profile(emulator, config_path, retries=1)
    bad = tmp_path / "bad.pem"
    bad.write_text("not pem\n")
    src = make_file(tmp_path / "data.bin", 10)
    result = run("upload", str(src), "--progress", "none", "--ca-bundle", str(bad))
    assert result.code == 0, result.err


def test_a_ca_bundle_without_the_servers_ca_says_so_rather_than_asking_for_one(
    https_emulator: Emulator, config_path: Path, tmp_path: Path
) -> None:
    """A valid bundle of another CA: the hint names that bundle, not the option the user already gave."""
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    qlik_profile(https_emulator, config_path)
    src = make_file(tmp_path / "data.bin", 100)
    result = run("upload", str(src), "--progress", "none", "--ca-bundle", str(other))
    assert result.code == 3
    line = assert_one_error_line(result)
    assert f"the CA bundle {other} does not hold the CA that signed this server's certificate" in line
    assert "pass --ca-bundle" not in line
    assert https_emulator.store.blobs("qlik") == []
