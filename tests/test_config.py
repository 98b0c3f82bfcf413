"""Profiles: file location, precedence, the environment profile, secrets, validation messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run, write_config
from tmpup.config import Secret, load_settings
from tmpup.errors import ConfigError

QLIK = """
default_profile = "work"

[profiles.work]
provider = "qlik"
url = "https://acme.eu.qlikcloud.com"
token_env = "QLIK_API_KEY"
ttl = "2h"

[profiles.other]
provider = "qlik"
url = "https://other.us.qlikcloud.com"
token = "literal-secret-value"
"""


def test_file_profile_with_token_from_env(config_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(config_path, QLIK)
    monkeypatch.setenv("QLIK_API_KEY", "s3cret-from-env")
    settings = load_settings()
    assert settings.profile == "work"
    assert settings.provider == "qlik"
    assert settings.get("url") == "https://acme.eu.qlikcloud.com"
    assert settings.get("ttl") == 7200
    assert settings.secret("token") == "s3cret-from-env"
    assert "s3cret" not in repr(settings)


def test_precedence_option_over_env_over_profile_over_default(
    config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(config_path, QLIK)
    monkeypatch.setenv("QLIK_API_KEY", "k")
    assert load_settings().get("timeout") == 60.0  # provider default
    monkeypatch.setenv("TMPUP_TTL", "30m")
    settings = load_settings()
    assert settings.get("ttl") == 1800  # environment beats profile
    assert settings.origins["ttl"] == "environment"
    settings = load_settings(options={"ttl": "90s"})
    assert settings.get("ttl") == 90  # option beats environment
    assert settings.origins["ttl"] == "option"


def test_profile_selection_order(config_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(config_path, QLIK)
    monkeypatch.setenv("QLIK_API_KEY", "k")
    assert load_settings().profile == "work"
    monkeypatch.setenv("TMPUP_PROFILE", "other")
    assert load_settings().profile == "other"
    assert load_settings(profile="work").profile == "work"


def test_file_less_environment_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPUP_PROVIDER", "qlik")
    monkeypatch.setenv("TMPUP_URL", "http://127.0.0.1:9/qlik")
    monkeypatch.setenv("TMPUP_TOKEN", "ci-token")
    settings = load_settings()
    assert settings.profile == "env"
    assert settings.secret("token") == "ci-token"
    assert settings.config_path is None


def test_secret_from_file_env_variant(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "token.txt"
    secret.write_text("from-a-file\n")
    monkeypatch.setenv("TMPUP_PROVIDER", "qlik")
    monkeypatch.setenv("TMPUP_URL", "http://127.0.0.1:9/qlik")
    monkeypatch.setenv("TMPUP_TOKEN_FILE", str(secret))
    assert load_settings().secret("token") == "from-a-file"


def test_missing_env_var_names_profile_key_and_variable(config_path: Path) -> None:
    write_config(config_path, QLIK)
    with pytest.raises(ConfigError) as err:
        load_settings()
    text = str(err.value)
    assert "token_env" in text and "QLIK_API_KEY" in text and "'work'" in text and str(config_path) in text


def test_unknown_key_names_file_line_profile_and_key(config_path: Path) -> None:
    write_config(
        config_path,
        """
        [profiles.work]
        provider = "qlik"
        url = "https://a.qlikcloud.com"
        token = "x"
        colour = "blue"
        """,
    )
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert f"{config_path}:6" in str(err.value)
    assert "'colour'" in str(err.value) and "'work'" in str(err.value)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ('provider = "qlik"\ntoken = "x"', "missing required key 'url'"),
        ('provider = "qlik"\nurl = "ftp://x"\ntoken = "x"', "not an http(s) URL"),
        ('provider = "qlik"\nurl = "https://u:p@x.com"\ntoken = "x"', "credentials do not belong in the URL"),
        ('provider = "nope"\nurl = "https://x.com"', "unknown provider 'nope'"),
        ('url = "https://x.com"', "missing required key 'provider'"),
        ('provider = "qlik"\nurl = "https://x.com"\ntoken = "x"\ntoken_env = "Y"', "more than once"),
        ('provider = "qlik"\nurl = "https://x.com"\ntoken = "x"\nretries = "many"', "bad value for 'retries'"),
        ('provider = "qlik"\nurl = "https://x.com"\ntoken = "x"\nttl = "soon"', "bad value for 'ttl'"),
        ('provider = "qlik"\nurl = "https://x.com"', "missing required key 'token'"),
    ],
)
def test_bad_profiles_are_config_errors(config_path: Path, body: str, needle: str) -> None:
    write_config(config_path, "[profiles.p]\n" + body + "\n")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert needle in str(err.value)
    assert "literal-secret" not in str(err.value)


def test_malformed_toml_exits_3_with_line(config_path: Path) -> None:
    write_config(config_path, '[profiles.p]\nprovider = "qlik\n')
    result = run("profiles", "show")
    assert result.code == 3
    assert result.err.startswith("tmpup: error: ")
    assert "line 2" in result.err and str(config_path) in result.err
    assert result.err.count("\n") == 1


def test_unknown_profile_exits_3(config_path: Path) -> None:
    write_config(config_path, QLIK)
    result = run("profiles", "show", "nope")
    assert result.code == 3
    assert "unknown profile 'nope'" in result.err and "work, other" in result.err


def test_no_profile_at_all_exits_3() -> None:
    result = run("info", "abc")
    assert result.code == 3
    assert "no profile configured" in result.err


def test_profiles_show_masks_secrets_and_list_marks_default(config_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(config_path, QLIK)
    monkeypatch.setenv("QLIK_API_KEY", "very-secret-token")
    shown = run("profiles", "show", "work")
    assert shown.code == 0
    assert "very-secret-token" not in shown.out + shown.err
    assert "token  ****" in shown.out.replace("    ", "  ") or "****" in shown.out
    other = run("profiles", "show", "other", "--json")
    assert "literal-secret-value" not in other.out + other.err
    listed = run("profiles", "list")
    assert listed.code == 0
    assert listed.lines[0].startswith("* work") and "qlik" in listed.lines[0]
    assert listed.lines[1].startswith("  other")


def test_world_readable_literal_secret_warns(config_path: Path) -> None:
    write_config(config_path, QLIK, mode=0o644)
    result = run("profiles", "show", "other")
    assert result.code == 0
    assert "tmpup: warning:" in result.err and "chmod 600" in result.err
    write_config(config_path, QLIK, mode=0o600)
    assert "warning" not in run("profiles", "show", "other").err


def test_explicit_missing_config_file(tmp_path: Path) -> None:
    result = run("profiles", "show", "--config", str(tmp_path / "nope.toml"))
    assert result.code == 3
    assert "does not exist" in result.err


def test_xdg_config_home_is_honoured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TMPUP_CONFIG")
    xdg = tmp_path / "xdg"
    (xdg / "tmpup").mkdir(parents=True)
    write_config(xdg / "tmpup" / "config.toml", QLIK.replace('token_env = "QLIK_API_KEY"', 'token = "t"'))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    assert load_settings().config_path == xdg / "tmpup" / "config.toml"


def test_secret_never_shows() -> None:
    secret = Secret("hunter2")
    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret) and "hunter2" not in f"{secret}"
    assert secret.reveal() == "hunter2"
