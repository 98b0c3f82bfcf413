"""Secret hygiene: no credential ever shows in output, state files or exception text, and none is sent
to another host on a redirect.

`test_no_secret_anywhere` is ONE sweep: every provider (KF5 with an API token and with a password),
every command, with `--verbose` and again with `--debug` (which prints tracebacks of failures), against
an emulator whose credentials are distinctive strings; failing calls (wrong ids, a 401, an unreachable
server, interrupted uploads that leave resume records) included. Then every byte of stdout, stderr and
the state dir is searched for each secret, its Basic-auth forms, their Base64, and Pyrus's access
tokens as the emulator issued them.
"""

from __future__ import annotations

import base64
import http.server
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Result, make_file, run, write_config
from tests.test_bad_input import Garbage, answer
from tmpup.emulator import Credentials, Emulator, Fault

CREDS = Credentials(
    qlik_token="QLIK-SECRET-5f3a9c0d",
    tus_token="TUS-SECRET-7b2e11aa",
    thulium_username="api_user",
    thulium_password="THULIUM-SECRET-4d8c",
    pyrus_login="bot@demo.pyrus",
    pyrus_security_key="PYRUS-SECRET-9e1f",
    kf5_email="agent@demo.kf5.com",
    kf5_password="KF5PW-SECRET-2a6b",
    kf5_api_token="KF5TOK-SECRET-3c7d",
    et_username="Administrator",
    et_password="ET-SECRET-8f0e",
)
HEADER_SECRET = "HEADER-SECRET-6d4a"  # a value in the tus profile's extra `headers`
MIB = 1024 * 1024


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def static_secrets() -> dict[str, str]:
    """Every form in which a configured secret could leak, by a readable label."""
    raw = {
        "qlik token": CREDS.qlik_token,
        "tus token": CREDS.tus_token or "",
        "tus header": HEADER_SECRET,
        "thulium password": CREDS.thulium_password,
        "pyrus security key": CREDS.pyrus_security_key,
        "kf5 password": CREDS.kf5_password,
        "kf5 api token": CREDS.kf5_api_token,
        "et password": CREDS.et_password,
    }
    forms = dict(raw)
    forms.update({f"base64 of {label}": b64(value) for label, value in raw.items()})
    forms.update(
        {
            "thulium Basic": b64(f"{CREDS.thulium_username}:{CREDS.thulium_password}"),
            "kf5 Basic (token)": b64(f"{CREDS.kf5_email}/token:{CREDS.kf5_api_token}"),
            "kf5 Basic (password)": b64(f"{CREDS.kf5_email}:{CREDS.kf5_password}"),
            "et Basic": b64(f"{CREDS.et_username}:{CREDS.et_password}"),
        }
    )
    return forms


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def emu() -> Any:
    with Emulator(credentials=CREDS) as emulator:
        yield emulator


def write_profiles(emu: Emulator, config_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One profile per provider; secrets from a file, an environment variable and literals (mode 0600)."""
    secrets = config_path.parent / "secrets"
    secrets.mkdir()
    for name, value in {
        "qlik": CREDS.qlik_token,
        "pyrus": CREDS.pyrus_security_key,
        "kf5": CREDS.kf5_api_token,
        "et": CREDS.et_password,
    }.items():
        (secrets / name).write_text(value + "\n")
    monkeypatch.setenv("SWEEP_TUS_TOKEN", CREDS.tus_token or "")
    monkeypatch.setenv("SWEEP_PYRUS_KEY", CREDS.pyrus_security_key)
    url = emu.url
    write_config(
        config_path,
        f"""
        [profiles.qlik]
        provider = "qlik"
        url = "{url}/qlik"
        token_file = "{secrets / "qlik"}"
        retries = 1

        [profiles.tus]
        provider = "tus"
        url = "{emu.mount_url("tus")}"
        token_env = "SWEEP_TUS_TOKEN"
        headers = {{ X-Tenant-Key = "{HEADER_SECRET}" }}
        retries = 1

        [profiles.thulium]
        provider = "thulium"
        url = "{url}/thulium"
        username = "{CREDS.thulium_username}"
        password = "{CREDS.thulium_password}"
        retries = 1

        [profiles.pyrus]
        provider = "pyrus"
        url = "{url}/pyrus"
        login = "{CREDS.pyrus_login}"
        security_key_env = "SWEEP_PYRUS_KEY"
        retries = 1

        [profiles.kf5-token]
        provider = "kf5"
        url = "{url}/kf5"
        email = "{CREDS.kf5_email}"
        api_token_file = "{secrets / "kf5"}"
        retries = 1

        [profiles.kf5-password]
        provider = "kf5"
        url = "{url}/kf5"
        email = "{CREDS.kf5_email}"
        password = "{CREDS.kf5_password}"
        retries = 1

        [profiles.et]
        provider = "enterprise-tester"
        url = "{url}/enterprise-tester"
        username = "{CREDS.et_username}"
        password_file = "{secrets / "et"}"
        retries = 1
        """,
    )


def _handles(profile: str, record: dict[str, Any], emu: Emulator) -> tuple[str, str, str, str]:
    """(info id, download id, delete id, a wrong id) for a fresh upload's JSON record."""
    if profile == "qlik":
        return record["id"], record["id"], record["id"], "ffffffffffffffffffffffff"
    if profile == "tus":
        return record["url"], record["id"], record["id"], "0" * 32
    if profile == "thulium":
        return record["token"], record["token"], record["token"], "no-such-token"
    if profile == "pyrus":
        numeric = str(emu.mounts["pyrus"].attachment_id(record["id"]))
        return record["id"], numeric, record["id"], "999999"
    if profile.startswith("kf5"):
        return record["token"], record["token"], record["token"], "999999"
    return record["set_id"], record["id"], record["id"], "00000000-0000-0000-0000-000000000000"


PROVIDER_OF = {
    "qlik": "qlik",
    "tus": "tus",
    "thulium": "thulium",
    "pyrus": "pyrus",
    "kf5-token": "kf5",
    "kf5-password": "kf5",
    "et": "enterprise-tester",
}


def test_no_secret_anywhere(
    emu: Emulator, config_path: Path, state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_profiles(emu, config_path, monkeypatch)
    results: list[tuple[str, Result]] = []
    pyrus_tokens: set[str] = set()

    def go(*args: str, env: dict[str, str] | None = None) -> Result:
        result = run(*args, env=env)
        results.append((" ".join(args), result))
        pyrus_tokens.update(emu.mounts["pyrus"].tokens)
        return result

    unreachable = f"http://127.0.0.1:{closed_port()}/x/"
    for mode in ("--verbose", "--debug"):
        for profile, provider in PROVIDER_OF.items():
            p = ["-p", profile, mode]
            src = make_file(tmp_path / f"{profile}{mode}.bin", 2000)
            up = go("upload", str(src), "--json", "--progress", "none", *p)
            assert up.code == 0, up.err
            record = json.loads(up.lines[-1])
            info_id, download_id, delete_id, wrong = _handles(profile, record, emu)
            out = tmp_path / f"out-{profile}{mode}"
            out.mkdir()
            assert go("info", info_id, *p).code == 0
            assert go("info", info_id, "--json", *p).code == 0
            assert go("info", wrong, *p).code == 5
            download = go("download", download_id, "-o", str(out), "--progress", "none", *p)
            assert download.code == (8 if provider == "thulium" else 0), download.err
            assert go("download", wrong, "-o", str(out / "x"), "--progress", "none", *p).code in (5, 8)
            assert go("delete", delete_id, *p).code in (0, 8)
            assert go("profiles", "show", profile, *p).code == 0
            assert go("profiles", "show", profile, "--json", *p).code == 0
            assert go("profiles", "check", profile, *p).code == 0
            # Refused credentials (the secret was sent, the server said no), then an unreachable server.
            emu.faults.add(Fault(provider=provider, status=401, times=None))
            refused = go("upload", str(src), "--progress", "none", *p)
            assert refused.code == 4, refused.err
            assert go("profiles", "check", profile, *p).code == 4
            emu.faults.clear()
            gone = go("upload", str(src), "--progress", "none", "--retries", "0", *p, env={"TMPUP_URL": unreachable})
            assert gone.code == 10, gone.err
        # Interrupted resumable uploads leave resume records (qlik and tus); they are listed, then resumed.
        for profile in ("qlik", "tus"):
            emu.faults.add(Fault(provider=profile, method="PATCH", status=503, retry_after=0, times=None))
            big = make_file(tmp_path / f"big-{profile}{mode}.bin", MIB + 3)
            broken = go("upload", str(big), "--resumable", "--progress", "none", "-p", profile, mode)
            assert broken.code == 10, broken.err
            emu.faults.clear()
        assert len(list((state_dir / "uploads").glob("*.json"))) == 2
        assert go("resume", "--list", mode).code == 0
        assert go("resume", "--list", "--json", mode).code == 0
        record_texts = [p.read_text() for p in (state_dir / "uploads").glob("*.json")]
        assert go("resume", "--all", "--progress", "none", mode).code == 0
        assert go("profiles", "list", mode).code == 0
        assert go("profiles", "list", "--json", mode).code == 0
        assert go("providers", mode).code == 0
        assert go("providers", "--json", mode).code == 0

    # The sweep looked where secrets would be: requests were logged, headers shown masked, and every
    # failure's exception text printed (an expected error's message is all --debug shows of it).
    debug_err = "".join(r.err for args, r in results if "--debug" in args)
    assert "> POST " in debug_err and "Authorization: ****" in debug_err and "tmpup: error: " in debug_err
    assert pyrus_tokens, "the emulator issued no Pyrus access token"

    secrets = static_secrets()
    secrets.update({f"pyrus access token {t[:6]}...": t for t in pyrus_tokens})
    secrets.update({f"base64 of pyrus access token {t[:6]}...": b64(t) for t in pyrus_tokens})
    places = [(f"stdout of `{args}`", r.out) for args, r in results]
    places += [(f"stderr of `{args}`", r.err) for args, r in results]
    places += [(f"resume record {i}", text) for i, text in enumerate(record_texts)]
    places += [(str(path), path.read_text(errors="replace")) for path in sorted(state_dir.rglob("*")) if path.is_file()]
    assert any("receipts.jsonl" in where for where, _ in places)
    leaks = [f"{label} in {where}" for where, text in places for label, value in secrets.items() if value in text]
    assert leaks == [], "\n".join(leaks)


# -- redirects to another host --------------------------------------------------------------------------


def _collector(h: http.server.BaseHTTPRequestHandler) -> None:
    answer(h, 404, b'{"errors": [{"title": "Not found", "code": "HTTP-404"}]}')


def _garbage_env(provider: str, base: str) -> dict[str, str]:
    env = {
        "qlik": {"TMPUP_URL": f"{base}/x", "TMPUP_TOKEN": CREDS.qlik_token},
        "tus": {"TMPUP_URL": f"{base}/x/files/", "TMPUP_TOKEN": CREDS.tus_token or ""},
        "kf5": {"TMPUP_URL": f"{base}/x", "TMPUP_EMAIL": CREDS.kf5_email, "TMPUP_API_TOKEN": CREDS.kf5_api_token},
        "pyrus": {
            "TMPUP_URL": f"{base}/x",
            "TMPUP_LOGIN": CREDS.pyrus_login,
            "TMPUP_SECURITY_KEY": CREDS.pyrus_security_key,
        },
        "thulium": {
            "TMPUP_URL": f"{base}/x",
            "TMPUP_USERNAME": CREDS.thulium_username,
            "TMPUP_PASSWORD": CREDS.thulium_password,
        },
        "enterprise-tester": {
            "TMPUP_URL": f"{base}/x",
            "TMPUP_USERNAME": CREDS.et_username,
            "TMPUP_PASSWORD": CREDS.et_password,
        },
    }[provider]
    return {"TMPUP_PROVIDER": provider, "TMPUP_RETRIES": "0", **env}


@pytest.mark.parametrize("status", [302, 307])
@pytest.mark.parametrize(
    ("provider", "command"),
    [
        ("qlik", "info"),
        ("qlik", "download"),
        ("qlik", "upload"),
        ("tus", "upload"),
        ("tus", "info"),
        ("tus", "download"),
        ("tus", "delete"),
        ("kf5", "info"),
        ("kf5", "download"),
        ("kf5", "upload"),
        ("pyrus", "upload"),
        ("thulium", "upload"),
        ("enterprise-tester", "info"),
        ("enterprise-tester", "download"),
    ],
)
def test_credentials_never_follow_a_redirect_to_another_host(
    tmp_path: Path, config_path: Path, provider: str, command: str, status: int
) -> None:
    """A 302/307 from the configured host to another one: nothing secret reaches the other host."""
    with Garbage(_collector) as other:
        port = other.server.server_address[1]

        def redirect(h: http.server.BaseHTTPRequestHandler) -> None:
            answer(h, status, b"", headers={"Location": f"http://localhost:{port}{h.path}"})

        with Garbage(redirect) as origin:
            env = _garbage_env(provider, origin.url)
            if provider == "tus":  # the extra headers of a tus profile come from the config file
                write_config(
                    config_path,
                    f'[profiles.t]\nprovider = "tus"\nurl = "{origin.url}/x/files/"\n'
                    f'token = "{CREDS.tus_token}"\nheaders = {{ X-Tenant-Key = "{HEADER_SECRET}" }}\nretries = 0\n',
                )
                env = {}
            args = {
                "upload": ["upload", str(make_file(tmp_path / "f.bin", 100)), "--progress", "none"],
                "download": ["download", "6571", "-o", str(tmp_path / "got.bin"), "--progress", "none"],
            }.get(command, [command, "6571"])
            result = run(*args, env=env)
            at_origin, elsewhere = list(origin.seen), list(other.seen)
    assert "Traceback" not in result.err and result.err.count("tmpup: error:") <= 1, result.err
    assert at_origin, "the configured host was never asked"
    secrets = static_secrets()
    leaks = [
        f"{label} in {seen.method} {seen.path} ({where})"
        for seen in elsewhere
        for where, text in [
            *((f"header {k}", f"{k}: {v}") for k, v in seen.headers.items()),
            ("body", seen.body.decode("latin-1")),
            ("path", seen.path),
        ]
        for label, value in secrets.items()
        if value in text
    ]
    assert leaks == [], "\n".join(leaks)
    for seen in elsewhere:
        assert "authorization" not in {k.lower() for k in seen.headers}, (seen.method, seen.path, seen.headers)
        assert "x-tenant-key" not in {k.lower() for k in seen.headers}, (seen.method, seen.path, seen.headers)
