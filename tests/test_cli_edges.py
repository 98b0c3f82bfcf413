"""Edges of the command line and the profile rules that an outside audit against DESIGN.md found:
each test names the contract sentence it holds tmpup to."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_file, run, run_process, write_config
from tmpup.config import load_settings
from tmpup.errors import ConfigError


def _env_profile(emulator: Any) -> dict[str, str]:
    return {
        "TMPUP_PROVIDER": "qlik",
        "TMPUP_URL": f"{emulator.url}/qlik",
        "TMPUP_TOKEN": emulator.credentials.qlik_token,
    }


def test_the_environment_profile_is_picked_by_the_name_it_is_listed_under(
    emulator: Any, config_path: Path, tmp_path: Path
) -> None:
    # "TMPUP_PROVIDER, ... define a profile; TMPUP_PROFILE picks a named one": `profiles list` calls it env
    write_config(config_path, '[profiles.other]\nprovider = "kf5"\nurl = "https://x.kf5.com"\nemail = "a@b"\n')
    env = _env_profile(emulator)
    listed = run("profiles", "list", "--names", env=env)
    assert listed.code == 0 and "env" in listed.lines
    src = make_file(tmp_path / "a.bin", 100)
    for how in (("-p", "env"), ()):
        extra = {} if how else {"TMPUP_PROFILE": "env"}
        result = run("upload", str(src), "--json", *how, env={**env, **extra})
        assert result.code == 0, result.err
        assert json.loads(result.out)["profile"] == "env"
    shown = run("profiles", "show", "env", "--json", env=env)
    assert shown.code == 0 and json.loads(shown.out)["provider"] == "qlik"
    assert emulator.credentials.qlik_token not in shown.out
    assert run("profiles", "check", "env", env=env).code == 0


def test_env_as_a_name_without_the_environment_profile_says_what_it_needs(config_path: Path) -> None:
    result = run("info", "x", "-p", "env")
    assert result.code == 3
    assert "unknown profile 'env'" in result.err and "TMPUP_PROVIDER" in result.err


def test_a_secret_from_a_variable_named_by_tmpup_key_env(monkeypatch: pytest.MonkeyPatch, config_path: Path) -> None:
    monkeypatch.setenv("TMPUP_PROVIDER", "qlik")
    monkeypatch.setenv("TMPUP_URL", "https://acme.eu.qlikcloud.com")
    monkeypatch.setenv("TMPUP_TOKEN_ENV", "MY_QLIK_KEY")
    with pytest.raises(ConfigError, match="TMPUP_TOKEN_ENV names the environment variable MY_QLIK_KEY"):
        load_settings()
    monkeypatch.setenv("MY_QLIK_KEY", "from-my-variable")
    assert load_settings().secret("token") == "from-my-variable"


def test_quiet_prints_nothing_but_results_and_errors(qlik_profile: str, tmp_path: Path) -> None:
    # "none/-q prints nothing but errors": warnings too (here: --insecure on an http url)
    src = make_file(tmp_path / "a.bin", 10)
    loud = run("upload", str(src), "--insecure")
    assert loud.code == 0 and "warning" in loud.err
    quiet = run("upload", str(src), "--insecure", "-q")
    assert quiet.code == 0 and quiet.err == "" and len(quiet.lines) == 1


def test_tmpup_alone_is_a_one_line_usage_error_on_stderr() -> None:
    # "stdout carries results only"; "Errors are one line on stderr, tmpup: error: ..."
    for args in ((), ("profiles",)):
        result = run_process(*args)
        assert result.code == 2
        assert result.out == ""
        assert result.err.startswith("tmpup: error: missing command: one of ") and result.err.count("\n") == 1
    assert "upload, download" in run_process().err
    assert "list, show, check" in run_process("profiles").err


def test_resumable_and_no_resume_together_is_a_usage_error(qlik_profile: str, tmp_path: Path) -> None:
    src = make_file(tmp_path / "a.bin", 10)
    for order in (("--resumable", "--no-resume"), ("--no-resume", "--resumable")):
        result = run("upload", str(src), *order)
        assert result.code == 2 and "contradict" in result.err and result.out == ""


def test_every_file_failing_alike_exits_with_their_code_not_partial(qlik_profile: str, tmp_path: Path) -> None:
    # 11 is "partial success: some of several files failed"; when none succeeded, the shared reason
    result = run("upload", str(tmp_path / "nope1"), str(tmp_path / "nope2"))
    assert result.code == 7
    assert result.err.splitlines()[-1].startswith("tmpup: error: 2 of 2 files failed")
    good = make_file(tmp_path / "good.bin", 10)
    assert run("upload", str(good), str(tmp_path / "nope1")).code == 11


def test_a_ttl_from_the_profile_out_of_range_names_where_it_came_from(
    emulator: Any, config_path: Path, tmp_path: Path
) -> None:
    write_config(
        config_path,
        f'[profiles.q]\nprovider = "qlik"\nurl = "{emulator.url}/qlik"\n'
        f'token = "{emulator.credentials.qlik_token}"\nttl = "9d"\n',
    )
    src = make_file(tmp_path / "a.bin", 10)
    result = run("upload", str(src))
    assert result.code == 7
    assert f"{config_path}:5 profile 'q': ttl" in result.err and "change it there" in result.err
    result = run("upload", str(src), env={"TMPUP_TTL": "4d"})
    assert result.code == 7 and "(TMPUP_TTL)" in result.err
    assert run("upload", str(src), "--ttl", "2h").code == 0  # the option beats both


def test_a_fractional_ttl_is_refused_wherever_it_comes_from(monkeypatch: pytest.MonkeyPatch, config_path: Path) -> None:
    monkeypatch.setenv("TMPUP_PROVIDER", "qlik")
    monkeypatch.setenv("TMPUP_URL", "https://acme.eu.qlikcloud.com")
    monkeypatch.setenv("TMPUP_TOKEN", "t")
    monkeypatch.setenv("TMPUP_TTL", "1.5")
    with pytest.raises(ConfigError, match=re.escape("TMPUP_TTL: bad value for 'ttl': must be whole seconds, not 1.5")):
        load_settings()
    monkeypatch.setenv("TMPUP_TTL", "1.5h")  # 5400 s: whole
    assert load_settings().get("ttl") == 5400


def test_a_bad_number_is_explained_in_tmpups_words(monkeypatch: pytest.MonkeyPatch, config_path: Path) -> None:
    monkeypatch.setenv("TMPUP_PROVIDER", "qlik")
    monkeypatch.setenv("TMPUP_URL", "https://acme.eu.qlikcloud.com")
    monkeypatch.setenv("TMPUP_TOKEN", "t")
    monkeypatch.setenv("TMPUP_RETRIES", "abc")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value) == "TMPUP_RETRIES: bad value for 'retries': expected a whole number, not 'abc'"


def test_an_unknown_top_level_key_names_its_line(config_path: Path) -> None:
    write_config(config_path, 'default_profile = "a"\n\nbogus_top = 1\n[profiles.a]\nprovider = "qlik"\n')
    with pytest.raises(ConfigError, match=re.escape(f"{config_path}:3: unknown top-level key 'bogus_top'")):
        load_settings()


def test_kf5_both_credentials_says_where_each_came_from(config_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A CI job exports TMPUP_PASSWORD for a Thulium step; a KF5 profile with an api_token must say so
    write_config(
        config_path,
        '[profiles.k]\nprovider = "kf5"\nurl = "https://x.kf5.com"\nemail = "a@b.c"\napi_token = "tok"\n',
    )
    monkeypatch.setenv("TMPUP_PASSWORD", "pw-from-ci")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "not both" in message and "password from TMPUP_PASSWORD" in message
    assert f"api_token from {config_path}:5 profile 'k'" in message
    assert "pw-from-ci" not in message and 'tok"' not in message


def test_qlik_check_does_not_take_another_apis_404_for_a_login(emulator: Any) -> None:
    # "check = can we reach and authenticate?": Thulium's mount answers 404 with an `errors` list too
    env = {"TMPUP_PROVIDER": "qlik", "TMPUP_URL": f"{emulator.url}/thulium", "TMPUP_TOKEN": "garbage"}
    result = run("profiles", "check", env=env)
    assert result.code == 3, result.out + result.err
    assert "ok" not in result.out
    good = run("profiles", "check", env=_env_profile(emulator))
    assert good.code == 0 and "accepted" in good.out


def test_auth_hint_names_the_profile_in_use(emulator: Any, config_path: Path, tmp_path: Path) -> None:
    write_config(config_path, f'[profiles.work]\nprovider = "qlik"\nurl = "{emulator.url}/qlik"\ntoken = "bad"\n')
    result = run("upload", str(make_file(tmp_path / "a", 5)))
    assert result.code == 4 and "tmpup profiles check work" in result.err


def test_forced_colour_never_puts_escapes_into_a_pipe(qlik_profile: str, tmp_path: Path) -> None:
    # "No ANSI escape ever reaches a pipe or a log file", whatever FORCE_COLOR, TTY_COMPATIBLE or a CI says
    forcing = {"FORCE_COLOR": "1", "TTY_COMPATIBLE": "1", "PY_COLORS": "1", "GITHUB_ACTIONS": "true"}
    src = make_file(tmp_path / "slow.bin", 600 * 1024)
    # --limit-rate: the bar draws once a run has lasted 0.3 s; this one takes ~0.6 s
    result = run_process("upload", str(src), "--progress", "bar", "--limit-rate", "1M", env=forcing)
    assert result.code == 0, result.err
    assert "slow.bin" in result.err  # the bar's final state was printed
    assert "\x1b" not in result.err + result.out
    for args in (("--help",), ("upload", "--help"), ("profiles", "-h")):
        shown = run_process(*args, env=forcing)
        assert shown.code == 0 and "Usage" in shown.out
        assert "\x1b" not in shown.out + shown.err


def test_a_secret_the_environment_gives_is_not_looked_for_in_the_profile(
    config_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # "TMPUP_* variables apply to every profile (they come before a profile's own values)": the
    # profile's token_env / token_file, which would not be used, may be unset or missing.
    write_config(
        config_path,
        '[profiles.a]\nprovider = "qlik"\nurl = "https://acme.eu.qlikcloud.com"\ntoken_env = "QLIK_API_KEY"\n'
        f'[profiles.b]\nprovider = "qlik"\nurl = "https://acme.eu.qlikcloud.com"\ntoken_file = "{tmp_path}/none"\n',
    )
    monkeypatch.delenv("QLIK_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="QLIK_API_KEY"):
        load_settings(profile="a")
    monkeypatch.setenv("TMPUP_TOKEN", "from-the-environment")
    for name in ("a", "b"):
        settings = load_settings(profile=name)
        assert settings.secret("token") == "from-the-environment" and settings.origins["token"] == "environment"


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("timeout = [1]", "not a TOML array"),
        ("timeout = {a = 1}", "not a TOML table"),
        ("timeout = 1979-05-27T07:32:00Z", "not a TOML date/time"),
        ("chunk_size = 1.5", "must be whole"),
        ("chunk_size = 0", "must be more than 0"),
        ("retries = 101", "at most 100"),
    ],
)
def test_odd_toml_values_are_configuration_errors_naming_the_key(config_path: Path, line: str, needle: str) -> None:
    write_config(config_path, f'[profiles.t]\nprovider = "tus"\nurl = "https://tus.example.com/files/"\n{line}\n')
    with pytest.raises(ConfigError) as caught:
        load_settings()
    key = line.split(" ")[0]
    assert f"{config_path}:4 profile 't': bad value for '{key}'" in str(caught.value)
    assert needle in str(caught.value)


def test_retries_has_an_upper_bound_on_the_command_line_too(qlik_profile: str) -> None:
    result = run("info", "x", "--retries", "101")
    assert result.code == 2 and "--retries" in result.err and result.err.count("\n") == 1


def test_an_unwritable_stdout_is_an_error_that_still_carries_the_handle(qlik_profile: str, tmp_path: Path) -> None:
    # The upload is done when stdout fails: the one error line gives the handle a script would have read
    import subprocess
    import sys

    src = make_file(tmp_path / "a.bin", 100)
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "tmpup", "upload", str(src)], stdout=full, stderr=subprocess.PIPE, text=True
        )
    assert proc.returncode == 10
    assert proc.stderr.startswith("tmpup: error: cannot write to stdout (no space left on device)")
    assert proc.stderr.count("\n") == 1
    handle = proc.stderr.split("the result was: ")[1].split(";")[0]
    assert run("info", handle).code == 0  # really uploaded, and that is its id
    closed = subprocess.run(
        [sys.executable, "-m", "tmpup", "providers"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
        close_fds=True,
        preexec_fn=lambda: __import__("os").close(1),
    )
    assert closed.returncode == 10 and "stdout is closed" in closed.stderr


def test_an_empty_profile_name_is_a_usage_error(qlik_profile: str) -> None:
    # before, `-p ""` quietly used the default profile
    result = run("info", "x", "-p", "")
    assert result.code == 2 and "-p/--profile needs a profile name" in result.err


@pytest.mark.parametrize("control", ["\u202e", "\u202d", "\u2066"])
def test_names_that_display_as_another_are_refused(qlik_profile: str, tmp_path: Path, control: str) -> None:
    src = make_file(tmp_path / "a.bin", 10)
    result = run("upload", str(src), "--name", f"invoice{control}fdp.exe")
    assert result.code == 7 and "bidirectional control character" in result.err
    assert run("upload", str(src), "--name", "счёт 2026 ✓.pdf").code == 0  # other scripts and symbols are fine


@pytest.mark.parametrize("header", ["Host", "upload-offset", "Content-Length"])
def test_tus_headers_cannot_replace_what_http_and_tus_are_made_of(config_path: Path, header: str) -> None:
    write_config(
        config_path,
        f'[profiles.t]\nprovider = "tus"\nurl = "https://tus.example.com/files/"\nheaders = {{ {header} = "x" }}\n',
    )
    with pytest.raises(ConfigError, match=f"'headers' cannot set '{header}'"):
        load_settings()


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        ('{ "X Tenant" = "acme" }', "is not a header name"),
        ('{ "X-Tenant:" = "acme" }', "is not a header name"),
        ('{ "" = "acme" }', "is not a header name"),
        (r'{ X-Tenant = "acme\r\nX-Evil: 1" }', "line break"),
        ('{ X-Tenant = "\u2603" }', "non-Latin-1"),
    ],
)
def test_tus_headers_that_http_cannot_send_are_a_config_error(config_path: Path, table: str, needle: str) -> None:
    """Checked when the profile loads (exit 3 naming the key), not at the first request, where the
    server's 400 to a malformed request would read as "the server refused tus 1.0.0"."""
    write_config(
        config_path, f'[profiles.t]\nprovider = "tus"\nurl = "https://tus.example.com/files/"\nheaders = {table}\n'
    )
    with pytest.raises(ConfigError, match=needle):
        load_settings()


def test_ordinary_tus_headers_load(config_path: Path) -> None:
    table = '{ X-Tenant = "acme", "X_Odd.Name~1" = "caf\u00e9\tv2" }'
    write_config(
        config_path, f'[profiles.t]\nprovider = "tus"\nurl = "https://tus.example.com/files/"\nheaders = {table}\n'
    )
    assert load_settings().get("headers") == {"X-Tenant": "acme", "X_Odd.Name~1": "caf\u00e9\tv2"}
