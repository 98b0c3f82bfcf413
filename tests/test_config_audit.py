"""Configuration findings of the config/CLI audit (F1, F2, F3, F5, F7, F9): each is a configuration
error (exit 3, one `tmpup: error:` line naming the file and line or the variable, the profile and the
key) found before any request, or a warning where the contract asks for one.

Requests that must not happen are counted by a real local HTTP server; the rest talk to the emulator.
"""

from __future__ import annotations

import http.server
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Result, make_file, run, run_process, serving, write_config
from tmpup.providers import PROVIDERS, provider_class

SECRET = "do-not-echo-me"


class Counter:
    def __init__(self, url: str) -> None:
        self.url = url
        self.hits = 0


@pytest.fixture
def counter() -> Iterator[Counter]:
    """A real HTTP server on a free port that counts every request and answers 500."""
    counter = Counter("")

    class Handler(http.server.BaseHTTPRequestHandler):
        def _any(self) -> None:
            counter.hits += 1
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_HEAD = do_PATCH = do_DELETE = _any

        def log_message(self, format: str, *args: Any) -> None:
            return None

    with serving(Handler) as server:
        counter.url = server.url
        yield counter


def config_error(result: Result, *needles: str) -> None:
    """Exit 3 with one `tmpup: error:` line holding every needle, and nothing of SECRET."""
    assert result.code == 3, (result.code, result.err)
    assert result.err.startswith("tmpup: error: ") and result.err.count("\n") == 1, result.err
    for needle in needles:
        assert needle in result.err, (needle, result.err)
    assert SECRET not in result.err + result.out


# -- F1: a port or host that cannot be sent to ------------------------------------------------------------

BAD_HOST_OR_PORT = [
    ("http://127.0.0.1:99999/qlik", "the port '99999' is not a number in 1-65535"),
    ("http://127.0.0.1:abc/qlik", "the port 'abc' is not a number in 1-65535"),
    ("http://127.0.0.1:0/qlik", "the port '0' is not a number in 1-65535"),
    ("http://127.0.0.1:-1/qlik", "the port '-1' is not a number in 1-65535"),
    ("http://[::1]:70000/qlik", "the port '70000' is not a number in 1-65535"),
    ("http://exa mple.com/qlik", "the host 'exa mple.com' contains ' '"),
    ("http://exa<mple.com/qlik", "the host 'exa<mple.com' contains '<'"),
    ("http://a%20b/qlik", "the host 'a%20b' contains '%'"),
    ("http://:8080/qlik", "the URL has no host"),
    ("http://.example.com/qlik", "empty label"),
    ("http://a..example.com/qlik", "empty label"),
    ("http://\u2603.net/qlik", "is not a valid (internationalized) domain name"),
    ("http://exa\tmple.com/qlik", "control character"),
]


@pytest.mark.parametrize(("url", "needle"), BAD_HOST_OR_PORT)
def test_a_bad_port_or_host_from_the_environment_is_exit_3_naming_the_variable(
    url: str, needle: str, tmp_path: Path
) -> None:
    src = make_file(tmp_path / "a.txt", 10)
    env = {"TMPUP_PROVIDER": "qlik", "TMPUP_URL": url, "TMPUP_TOKEN": SECRET}
    for args in (("upload", str(src)), ("profiles", "show")):  # `show` sends nothing: found at config time
        config_error(run(*args, env=env), "TMPUP_URL: bad value for 'url'", needle)


def test_a_bad_port_in_a_file_names_file_line_profile_and_key(config_path: Path) -> None:
    write_config(
        config_path,
        """
        [profiles.x]
        provider = "kf5"
        url = "http://127.0.0.1:99999/kf5"
        email = "agent@demo.kf5.com"
        api_token_env = "K"
        """,
    )
    result = run("profiles", "check", "x", env={"K": SECRET})
    config_error(result, f"{config_path}:4 profile 'x': bad value for 'url'", "'99999' is not a number in 1-65535")


def write_pyrus_profile(config_path: Path, counter: Counter, key: str, value: str) -> None:
    """Profile `p`: Pyrus at the counter, SECRET its security key, and `key = "value"` on line 7 of the file."""
    write_config(
        config_path,
        f"""
        [profiles.p]
        provider = "pyrus"
        url = "{counter.url}/pyrus"
        login = "bot@demo.pyrus"
        security_key = "{SECRET}"
        {key} = "{value}"
        """,
    )


@pytest.mark.parametrize("key", ["files_url", "auth_url"])
def test_every_url_kind_key_is_checked(config_path: Path, key: str, counter: Counter) -> None:
    write_pyrus_profile(config_path, counter, key, "http://files host.example/x")
    result = run("profiles", "check", "p")
    config_error(result, f"{config_path}:7 profile 'p': bad value for {key!r}", "the host 'files host.example'")
    assert counter.hits == 0


@pytest.mark.parametrize(
    "url",
    [
        "https://b\u00fccher.example:443/qlik",
        "http://127.0.0.1:65535/qlik",
        "http://[::1]:8080/qlik",
        "http://[::1]/qlik",
        "http://my_service.internal:8080/qlik",
        "http://tenant.example./qlik",
        "http://host:/qlik",
        "HTTPS://ACME.EU.QLIKCLOUD.COM",
    ],
)
def test_good_urls_still_pass(url: str) -> None:
    env = {"TMPUP_PROVIDER": "qlik", "TMPUP_URL": url, "TMPUP_TOKEN": SECRET}
    result = run("profiles", "show", "--json", env=env)
    assert result.code == 0, result.err
    assert url in result.out


# -- F2: a ?query or #fragment in a base URL --------------------------------------------------------------


def _env_for(provider: str, url: str) -> dict[str, str]:
    env = {"TMPUP_PROVIDER": provider, "TMPUP_URL": url}
    env.update(
        {
            "qlik": {"TMPUP_TOKEN": SECRET},
            "thulium": {"TMPUP_USERNAME": "api_user", "TMPUP_PASSWORD": SECRET},
            "kf5": {"TMPUP_EMAIL": "agent@demo.kf5.com", "TMPUP_API_TOKEN": SECRET},
            "pyrus": {"TMPUP_LOGIN": "bot@demo.pyrus", "TMPUP_SECURITY_KEY": SECRET},
            "enterprise-tester": {"TMPUP_USERNAME": "Administrator", "TMPUP_PASSWORD": SECRET},
            "tus": {},
        }[provider]
    )
    return env


BASE_URL_PROVIDERS = ["qlik", "thulium", "kf5", "pyrus", "enterprise-tester"]


@pytest.mark.parametrize("provider", BASE_URL_PROVIDERS)
@pytest.mark.parametrize("tail", [f"?api_key={SECRET}", "?", "?x=1#frag"])
def test_a_query_in_a_base_url_is_exit_3_before_any_request(
    provider: str, tail: str, counter: Counter, tmp_path: Path
) -> None:
    src = make_file(tmp_path / "a.txt", 10)
    result = run("upload", str(src), env=_env_for(provider, f"{counter.url}/{provider}{tail}"))
    needle = "#fragment" if "#" in tail else "a ?query cannot be part of a base URL"
    config_error(result, "TMPUP_URL: bad value for 'url'", needle)
    assert counter.hits == 0


@pytest.mark.parametrize("provider", [*BASE_URL_PROVIDERS, "tus"])
def test_a_fragment_is_refused_in_every_url(provider: str, counter: Counter, tmp_path: Path) -> None:
    src = make_file(tmp_path / "a.txt", 10)
    result = run("upload", str(src), env=_env_for(provider, f"{counter.url}/{provider}/#{SECRET}"))
    config_error(result, "TMPUP_URL: bad value for 'url'", "a URL cannot carry a #fragment")
    assert counter.hits == 0


def test_pyrus_files_url_is_a_base_too(config_path: Path, counter: Counter) -> None:
    write_pyrus_profile(config_path, counter, "files_url", f"{counter.url}/files?region=eu")
    config_error(run("profiles", "check", "p"), f"{config_path}:7 profile 'p': bad value for 'files_url'", "?query")
    assert counter.hits == 0


def test_only_full_endpoints_may_keep_a_query() -> None:
    # The property lives on the key spec (KeySpec.query); url keys default to "no query".
    allowed = sorted(
        f"{pid}.{spec.name}"
        for pid in PROVIDERS
        for spec in provider_class(pid).keys
        if spec.kind == "url" and spec.query
    )
    assert allowed == ["pyrus.auth_url", "tus.url"]


def test_a_tus_endpoint_and_a_pyrus_auth_url_with_a_query_work(emulator: Any, tmp_path: Path) -> None:
    src = make_file(tmp_path / "a.bin", 1000)
    tus = run("upload", str(src), "--json", env=_env_for("tus", emulator.mount_url("tus") + "?tenant=acme"))
    assert tus.code == 0, tus.err
    env = {
        "TMPUP_PROVIDER": "pyrus",
        "TMPUP_URL": emulator.mount_url("pyrus"),
        "TMPUP_AUTH_URL": emulator.mount_url("pyrus") + "/api/v4/auth?source=ci",
        "TMPUP_LOGIN": emulator.credentials.pyrus_login,
        "TMPUP_SECURITY_KEY": emulator.credentials.pyrus_security_key,
    }
    pyrus = run("upload", str(src), "--json", env=env)
    assert pyrus.code == 0, pyrus.err


# -- F3: environment values that are not UTF-8 ------------------------------------------------------------

NOT_UTF8 = "SECRET\udcff"  # what Python makes of the bytes b"SECRET\xff" in the environment


@pytest.mark.parametrize(
    ("provider", "variable"),
    [("thulium", "TMPUP_PASSWORD"), ("thulium", "TMPUP_USERNAME"), ("kf5", "TMPUP_EMAIL"), ("kf5", "TMPUP_API_TOKEN")],
)
def test_basic_auth_providers_refuse_non_utf8_credentials_with_exit_3(
    emulator: Any, provider: str, variable: str, tmp_path: Path
) -> None:
    src = make_file(tmp_path / "a.txt", 10)
    creds = emulator.credentials
    env = {
        "thulium": {"TMPUP_USERNAME": creds.thulium_username, "TMPUP_PASSWORD": creds.thulium_password},
        "kf5": {"TMPUP_EMAIL": creds.kf5_email, "TMPUP_API_TOKEN": creds.kf5_api_token},
    }[provider]
    env.update({"TMPUP_PROVIDER": provider, "TMPUP_URL": emulator.mount_url(provider), variable: NOT_UTF8})
    # the real program, so that the variable holds the raw byte 0xff
    result = run_process("upload", str(src), env=env)
    assert result.code == 3, result.err
    assert result.err == f"{result.err.splitlines()[0]}\n" and result.err.startswith("tmpup: error: ")
    assert f"{variable} is not UTF-8 text" in result.err
    assert "SECRET" not in result.err and "Traceback" not in result.err and "internal error" not in result.err


@pytest.mark.parametrize(
    ("variables", "needle"),
    [
        ({"TMPUP_TOKEN": NOT_UTF8}, "TMPUP_TOKEN is not UTF-8 text"),
        ({"TMPUP_URL": "http://127.0.0.1:9/q\udcff"}, "TMPUP_URL is not UTF-8 text"),
        (
            {"TMPUP_TOKEN": "", "TMPUP_TOKEN_ENV": "MY_KEY", "MY_KEY": NOT_UTF8},
            "the environment variable MY_KEY (TMPUP_TOKEN_ENV) is not UTF-8 text",
        ),
        ({"TMPUP_TTL": "1h\udcff"}, "TMPUP_TTL is not UTF-8 text"),
    ],
)
def test_any_tmpup_variable_that_is_not_utf8_is_exit_3_naming_it(variables: dict[str, str], needle: str) -> None:
    env = {"TMPUP_PROVIDER": "qlik", "TMPUP_URL": "http://127.0.0.1:9/qlik", "TMPUP_TOKEN": "t", **variables}
    result = run("profiles", "show", env=env)
    config_error(result, needle)
    assert "SECRET" not in result.err


def test_a_profile_key_env_variable_that_is_not_utf8_is_exit_3(config_path: Path) -> None:
    write_config(
        config_path,
        """
        [profiles.h]
        provider = "thulium"
        url = "http://127.0.0.1:9/thulium"
        username = "api_user"
        password_env = "THULIUM_PASS"
        """,
    )
    result = run("profiles", "show", "h", env={"THULIUM_PASS": NOT_UTF8})
    config_error(result, f"{config_path}:6 profile 'h'", "the environment variable THULIUM_PASS (password_env)")
    assert "not UTF-8 text" in result.err and "SECRET" not in result.err


def test_a_path_from_the_environment_may_hold_any_bytes(tmp_path: Path) -> None:
    # A file name is bytes, not text: TMPUP_TOKEN_FILE naming such a file still works.
    name = os.fsdecode(b"token-\xff.txt")
    (tmp_path / name).write_text("from-a-file\n")
    env = {"TMPUP_PROVIDER": "qlik", "TMPUP_URL": "http://127.0.0.1:9/qlik", "TMPUP_TOKEN_FILE": str(tmp_path / name)}
    result = run("profiles", "show", "--json", env=env)
    assert result.code == 0, result.err
    assert "from-a-file" not in result.out


# -- F5: literal secrets in tus headers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "mode", "warned"),
    [
        ('{ X-Api-Key = "S1" }', 0o644, True),
        ('{ Authorization = "Bearer S2", X-Tenant = "acme" }', 0o640, True),
        ('{ X-Tenant = "acme" }', 0o644, False),
        ('{ X-Api-Key = "S1" }', 0o600, False),
    ],
)
def test_secret_headers_in_a_readable_file_get_the_permission_warning(
    config_path: Path, headers: str, mode: int, warned: bool
) -> None:
    write_config(
        config_path,
        f"""
        [profiles.t]
        provider = "tus"
        url = "http://127.0.0.1:9/tus/files/"
        headers = {headers}
        """,
        mode=mode,
    )
    result = run("profiles", "show", "t")
    assert result.code == 0, result.err
    assert ("holds a literal secret (profile 't') and is readable by others" in result.err) is warned
    assert "S1" not in result.out + result.err and "S2" not in result.out + result.err


def test_secret_headers_in_a_subtable_count_too(config_path: Path) -> None:
    text = '[profiles.t]\nprovider = "tus"\nurl = "http://h/files/"\n\n[profiles.t.headers]\nX-Auth = "S1"\n'
    write_config(config_path, text, mode=0o644)
    result = run("profiles", "show", "t")
    assert result.code == 0 and "chmod 600" in result.err


def test_profiles_list_warns_about_a_readable_file_with_a_literal_secret_too(config_path: Path) -> None:
    """`profiles list` is the first command a newcomer runs after writing the README's config."""
    text = '[profiles.work]\nprovider = "qlik"\nurl = "http://127.0.0.1:9/qlik"\ntoken = "S1"\n'
    write_config(config_path, text, mode=0o644)
    listed = run("profiles", "list")
    assert listed.code == 0 and "holds a literal secret (profile 'work')" in listed.err and "chmod 600" in listed.err
    names = run("profiles", "list", "--names")  # what shell completion calls: results only
    assert names.code == 0 and names.err == "" and names.out == "work\n"
    config_path.chmod(0o600)
    assert run("profiles", "list").err == ""


# -- F7: a bad value that an option overrides -------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "option"),
    [
        ("TMPUP_TIMEOUT", "bogus", ("--timeout", "10")),
        ("TMPUP_RETRIES", "bogus", ("--retries", "1")),
        ("TMPUP_TTL", "bogus", ("--ttl", "1h")),
        ("TMPUP_CHUNK_SIZE", "bogus", ("--chunk-size", "1M")),
    ],
)
def test_a_bad_tmpup_value_is_an_error_even_when_an_option_overrides_it(
    qlik_profile: str, tmp_path: Path, variable: str, value: str, option: tuple[str, str]
) -> None:
    src = make_file(tmp_path / "a.txt", 10)
    key = variable.removeprefix("TMPUP_").lower()
    config_error(run("upload", str(src), *option, env={variable: value}), f"{variable}: bad value for {key!r}")


def test_a_bad_profile_value_is_an_error_even_when_overridden(emulator: Any, config_path: Path) -> None:
    from tests.conftest import write_qlik_profile

    write_qlik_profile(emulator, config_path, extra='timeout = "bogus"')
    result = run("upload", str(make_file(config_path.parent / "a.txt", 10)), "--timeout", "10")
    config_error(result, str(config_path), "profile 'q': bad value for 'timeout'")
    config_error(run("profiles", "show", env={"TMPUP_TIMEOUT": "10"}), "bad value for 'timeout'")


def test_an_overridden_path_is_not_looked_at(qlik_profile: str, tmp_path: Path) -> None:
    # What a value points to is looked at only when it is used (as for KEY_file and KEY_env).
    pem = tmp_path / "ca.pem"
    pem.write_text("not used over http\n")
    src = make_file(tmp_path / "a.txt", 10)
    result = run("upload", str(src), "--ca-bundle", str(pem), env={"TMPUP_CA_BUNDLE": str(tmp_path / "missing.pem")})
    assert result.code == 0, result.err
    used = run("upload", str(src), env={"TMPUP_CA_BUNDLE": str(tmp_path / "missing.pem")})
    config_error(used, "TMPUP_CA_BUNDLE: bad value for 'ca_bundle'", "is not a readable file")


# -- F9: default_profile, an empty file, a file profile named `env` ---------------------------------------


def test_a_default_profile_that_does_not_exist_names_the_key_and_its_line(config_path: Path) -> None:
    write_config(
        config_path, '# tmpup\ndefault_profile = "nope"\n\n[profiles.x]\nprovider = "tus"\nurl = "http://h/"\n'
    )
    result = run("upload", "f.txt")
    config_error(result, f"{config_path}:2: default_profile names the profile 'nope'", "known profiles: x")


def test_an_empty_file_is_not_called_missing(tmp_path: Path) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    result = run("upload", "f.txt", "--config", str(empty))
    config_error(result, f"{empty} has no [profiles.NAME] table")
    assert f"no {empty}" not in result.err
    # a default file that is really missing is still called so
    config_error(run("upload", "f.txt"), f"(no {os.environ['TMPUP_CONFIG']},")


@pytest.mark.parametrize("header", ["[profiles.env]", '[profiles."env"]'])
def test_a_file_profile_named_env_is_refused(config_path: Path, header: str) -> None:
    write_config(
        config_path,
        f'[profiles.work]\nprovider = "tus"\nurl = "http://h/files/"\n\n{header}\nprovider = "tus"\nurl = "http://h/"\n',
    )
    needle = f"{config_path}:5 profile 'env': the name 'env' belongs to the environment profile"
    for args in (("profiles", "list"), ("upload", "f.txt", "-p", "work"), ("profiles", "show", "env")):
        config_error(run(*args), needle)
    config_error(run("upload", "f.txt", "-p", "env", env={"TMPUP_PROVIDER": "tus"}), needle)


def test_the_environment_profile_is_still_picked_as_env_beside_a_file(emulator: Any, config_path: Path) -> None:
    write_config(config_path, '[profiles.other]\nprovider = "tus"\nurl = "http://h/files/"\n')
    env = _env_for("tus", emulator.mount_url("tus"))
    shown = run("profiles", "show", "env", "--json", env=env)
    assert shown.code == 0, shown.err
    assert json.loads(shown.out)["provider"] == "tus"


# -- the line of a provider key, and of a profile's sub-table ----------------------------------------------


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        # the provider's own line, not the profile's header
        ('# c\n\n[profiles.q]\nurl = "http://127.0.0.1:9/qlik"\ntoken = "t"\nprovider = "dropbox"\n',
         ":6 profile 'q': unknown provider 'dropbox'"),
        # present but not a name: said so, not "missing"
        ('[profiles.q]\nurl = "http://127.0.0.1:9/qlik"\ntoken = "t"\nprovider = 5\n',
         ":4 profile 'q': provider must be a provider's name (a string), not 5"),
        ('[profiles.q]\nprovider = "qlik"\nurl = "http://127.0.0.1:9/qlik"\ntoken = "t"\n\n[profiles.q.headers]\n'
         'X-A = "1"\n', ":6 profile 'q': unknown key 'headers'"),
        ('[profiles.q]\nprovider = "tus"\nurl = "http://127.0.0.1:9/files/"\nheaders.X-A = 1\n',
         ":4 profile 'q': bad value for 'headers'"),
        ('[profiles.q]\nurl = "http://127.0.0.1:9/qlik"\n', ":1 profile 'q': missing required key 'provider'"),
    ],
)  # fmt: skip
def test_a_config_error_names_the_line_of_the_key_at_fault(config_path: Path, text: str, needle: str) -> None:
    write_config(config_path, text)
    config_error(run("profiles", "show", "q"), str(config_path) + needle)
