"""Profiles: the config file, the `TMPUP_*` environment and command-line options -> frozen `Settings`.

Precedence is decided in one place, `resolve_value`: command-line option > `TMPUP_*` environment >
profile > provider default. Secrets (keys a provider marks `secret`) come from `KEY_env` (the name
of an environment variable), `KEY_file` (a file holding the value) or `KEY` itself, and from
`TMPUP_KEY` / `TMPUP_KEY_FILE` in the environment; they are wrapped in `Secret` so that no repr, log
line or error message can show them.

Which profile: `-p NAME` > `TMPUP_PROFILE` > the file-less environment profile when `TMPUP_PROVIDER`
is set > the file's `default_profile` > the only profile of the file.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tmpup.errors import ConfigError
from tmpup.providers.base import COMMON_KEYS, KeySpec
from tmpup.units import parse_duration, parse_size

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

ENV_PREFIX = "TMPUP_"
ENV_PROFILE_NAME = "env"
_TOP_LEVEL_KEYS = {"default_profile", "profiles"}


class Secret:
    """A credential. Its text never shows in str/repr/format; `reveal()` is the one way out."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('****')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Settings:
    """A resolved profile: provider id, typed values (secrets as `Secret`), and where each came from."""

    profile: str
    provider: str
    values: Mapping[str, Any]
    origins: Mapping[str, str] = field(default_factory=dict)
    config_path: Path | None = None

    def get(self, key: str, default: Any = None) -> Any:
        value = self.values.get(key)
        return default if value is None else value

    def secret(self, key: str) -> str | None:
        value = self.values.get(key)
        return value.reveal() if isinstance(value, Secret) else None

    @property
    def timeout(self) -> float:
        return float(self.get("timeout", 60.0))

    @property
    def retries(self) -> int:
        return int(self.get("retries", 5))


@dataclass(frozen=True)
class ConfigFile:
    path: Path
    exists: bool
    data: Mapping[str, Any]
    text: str

    @property
    def profiles(self) -> Mapping[str, Any]:
        profiles = self.data.get("profiles", {})
        return profiles if isinstance(profiles, Mapping) else {}

    def line_of(self, profile: str, key: str | None = None) -> int | None:
        """The line of `[profiles.NAME]` (or of KEY inside it), for error messages."""
        lines = self.text.splitlines()
        header = re.compile(rf"^\s*\[\s*profiles\s*\.\s*(\"{re.escape(profile)}\"|{re.escape(profile)})\s*\]")
        start = next((i for i, line in enumerate(lines) if header.match(line)), None)
        if start is None:
            return None
        if key is None:
            return start + 1
        key_re = re.compile(rf"^\s*{re.escape(key)}\s*=")
        for i in range(start + 1, len(lines)):
            if lines[i].lstrip().startswith("["):
                break
            if key_re.match(lines[i]):
                return i + 1
        return start + 1


def default_config_path(env: Mapping[str, str]) -> Path:
    explicit = env.get("TMPUP_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    xdg = env.get("XDG_CONFIG_HOME")
    if xdg and sys.platform.startswith("linux"):
        return Path(xdg) / "tmpup" / "config.toml"
    import platformdirs

    return Path(platformdirs.user_config_dir("tmpup", appauthor=False)) / "config.toml"


def load_config_file(path: Path | None, env: Mapping[str, str], *, explicit: bool) -> ConfigFile:
    """Read and parse the TOML file; a missing default file is simply empty, a missing `--config` is not."""
    where = path or default_config_path(env)
    if not where.exists():
        if explicit:
            raise ConfigError(f"config file {where} does not exist", hint="create it or fix --config")
        return ConfigFile(where, False, {}, "")
    try:
        raw = _read_bounded(where, MAX_CONFIG_BYTES)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {where}: {exc.strerror or exc}") from exc
    if raw is None:
        raise ConfigError(f"config file {where} is larger than {MAX_CONFIG_BYTES // 1024} KiB; is it the right file?")
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except UnicodeDecodeError:
        raise ConfigError(f"config file {where} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {where} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - _TOP_LEVEL_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown top-level key {unknown[0]!r}",
            hint="only 'default_profile' and [profiles.NAME] tables belong at the top",
        )
    profiles = data.get("profiles", {})
    if not isinstance(profiles, Mapping) or any(not isinstance(v, Mapping) for v in profiles.values()):
        raise ConfigError(f"{where}: 'profiles' must hold tables, e.g. [profiles.work]")
    default = data.get("default_profile")
    if default is not None and (not isinstance(default, str) or not default):
        raise ConfigError(f"{where}: default_profile must be a profile name (a non-empty string)")
    return ConfigFile(where, True, data, text)


#: Bounds on what tmpup reads as configuration: a config path pointing at /dev/zero or a huge file
#: must be an error, not an exhausted memory.
MAX_CONFIG_BYTES = 1024 * 1024
MAX_SECRET_BYTES = 64 * 1024


def _read_bounded(path: Path, limit: int) -> bytes | None:
    """The file's bytes, or None when it holds more than `limit` (reads at most limit + 1 bytes).

    A pipe works (`password_file = "/dev/fd/3"`, `<(pass show x)`), but one that nobody writes to
    must not hang a cron job: it is opened without blocking and refused (OSError ENXIO).
    """
    import fcntl

    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            try:
                first = os.read(fd, limit + 1)
            except BlockingIOError:
                first = None  # a writer is there but has not written yet: wait for it
            else:
                if not first:
                    raise OSError(errno.ENXIO, "nothing writes to this pipe")
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
            chunks = [first] if first else []
        else:
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
            chunks = []
        total = sum(len(c) for c in chunks)
        while total <= limit:
            chunk = os.read(fd, limit + 1 - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    return None if len(data) > limit else data


def provider_keys(provider_id: str) -> tuple[KeySpec, ...]:
    from tmpup.providers import provider_class

    return provider_class(provider_id).keys + COMMON_KEYS


def known_provider_ids() -> list[str]:
    from tmpup.providers import PROVIDERS

    return list(PROVIDERS)


def select_profile(cfg: ConfigFile, option: str | None, env: Mapping[str, str]) -> str | None:
    """The profile name to use, or None for the file-less environment profile."""
    if option:
        return option
    if env.get("TMPUP_PROFILE"):
        return env["TMPUP_PROFILE"]
    if env.get("TMPUP_PROVIDER"):
        return None
    default = cfg.data.get("default_profile")
    if isinstance(default, str) and default:
        return default
    if len(cfg.profiles) == 1:
        return next(iter(cfg.profiles))
    if not cfg.profiles:
        raise ConfigError(
            f"no profile configured (no {cfg.path}, no TMPUP_PROVIDER)",
            hint="write a [profiles.NAME] table there, or set TMPUP_PROVIDER and TMPUP_URL; see README",
        )
    raise ConfigError(
        f"{cfg.path} has several profiles and no default_profile",
        hint=f"pass -p NAME (one of: {', '.join(cfg.profiles)}) or set default_profile",
    )


def resolve_value(
    key: str,
    *,
    options: Mapping[str, Any],
    env_values: Mapping[str, Any],
    profile_values: Mapping[str, Any],
    spec: KeySpec,
) -> tuple[Any, str]:
    """The single precedence rule: option > TMPUP_* environment > profile > provider default."""
    for origin, source in (("option", options), ("environment", env_values), ("profile", profile_values)):
        if source.get(key) is not None:
            return source[key], origin
    return spec.default, "default"


def load_settings(
    *,
    profile: str | None = None,
    config_path: Path | None = None,
    options: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    warn: Callable[[str], None] = lambda message: None,
) -> Settings:
    """Build the frozen settings of one run. Raises `ConfigError` naming file, line, profile and key."""
    env = os.environ if env is None else env
    options = {k: v for k, v in (options or {}).items() if v is not None}
    cfg = load_config_file(config_path, env, explicit=config_path is not None)
    _warn_if_exposed(cfg, warn)
    name = select_profile(cfg, profile, env)

    if name is None:
        table: Mapping[str, Any] = {}
        provider: Any = env["TMPUP_PROVIDER"]
        where = "the environment profile (TMPUP_PROVIDER)"
        display = ENV_PROFILE_NAME
    else:
        if name not in cfg.profiles:
            known = ", ".join(cfg.profiles) or "none"
            raise ConfigError(
                f"unknown profile {name!r}" + (f" in {cfg.path}" if cfg.exists else f" (no {cfg.path})"),
                hint=f"known profiles: {known}",
            )
        table = cfg.profiles[name]
        display = name
        line = cfg.line_of(name)
        where = f"{cfg.path}" + (f":{line}" if line else "") + f" profile {name!r}"
        provider = table.get("provider")
        if not isinstance(provider, str) or not provider:
            raise ConfigError(f"{where}: missing required key 'provider'", hint=_provider_hint())
        env_provider = env.get("TMPUP_PROVIDER")
        if env_provider and env_provider != provider:
            raise ConfigError(f"TMPUP_PROVIDER={env_provider} conflicts with {where}, whose provider is {provider!r}")

    if provider not in known_provider_ids():
        raise ConfigError(f"{where}: unknown provider {provider!r}", hint=_provider_hint())
    specs = {spec.name: spec for spec in provider_keys(provider)}

    def key_where(key: str) -> str:
        if name is None:
            return where
        line = cfg.line_of(name, key)
        return f"{cfg.path}" + (f":{line}" if line else "") + f" profile {name!r}"

    profile_values = _profile_values(table, specs, key_where, env)
    env_values = _env_values(specs, env)

    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for key, spec in specs.items():
        raw, origin = resolve_value(
            key, options=options, env_values=env_values, profile_values=profile_values, spec=spec
        )
        origin_text = {
            "option": f"--{key.replace('_', '-')}",
            "environment": f"{ENV_PREFIX}{key.upper()}",
            "profile": key_where(key),
            "default": "default",
        }[origin]
        if raw is None:
            if spec.required:
                raise ConfigError(
                    f"{where}: missing required key {key!r} for provider {provider!r}",
                    hint=_missing_hint(spec, name),
                )
            continue
        values[key] = _coerce(raw, spec, origin_text)
        origins[key] = origin
    _check_alternatives(provider, values, where)
    return Settings(display, provider, values, origins, cfg.path if cfg.exists else None)


def _provider_hint() -> str:
    return "provider must be one of: " + ", ".join(known_provider_ids())


def _missing_hint(spec: KeySpec, profile: str | None) -> str:
    env_name = f"{ENV_PREFIX}{spec.name.upper()}"
    if spec.secret:
        return f'set {spec.name}_env = "VAR" or {spec.name}_file = "PATH" in the profile, or {env_name}'
    return f"set {spec.name} in the profile or {env_name}"


def _check_alternatives(provider: str, values: Mapping[str, Any], where: str) -> None:
    from tmpup.providers import provider_class

    check = getattr(provider_class(provider), "validate_settings", None)
    if check is not None:
        problem = check(values)
        if problem:
            raise ConfigError(f"{where}: {problem}")


def _profile_values(
    table: Mapping[str, Any],
    specs: Mapping[str, KeySpec],
    key_where: Callable[[str], str],
    env: Mapping[str, str],
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, raw in table.items():
        if key == "provider":
            continue
        base, form = key, "value"
        for suffix in ("_env", "_file"):
            if key.endswith(suffix) and key[: -len(suffix)] in specs and specs[key[: -len(suffix)]].secret:
                base, form = key[: -len(suffix)], suffix[1:]
        spec = specs.get(base)
        if spec is None:
            known = ", ".join(sorted(specs))
            raise ConfigError(f"{key_where(key)}: unknown key {key!r}", hint=f"known keys: provider, {known}")
        if base in values:
            raise ConfigError(
                f"{key_where(key)}: {base!r} is given more than once (as {base}, {base}_env or {base}_file)",
                hint="keep exactly one of them",
            )
        if form == "env":
            if not isinstance(raw, str) or not raw:
                raise ConfigError(f"{key_where(key)}: {key} must name an environment variable")
            if raw not in env:
                raise ConfigError(
                    f"{key_where(key)}: {key} names the environment variable {raw}, which is not set",
                    hint=f"export {raw}=... before running tmpup",
                )
            values[base] = _secret(env[raw], f"{key_where(key)}: the environment variable {raw} ({key})")
        elif form == "file":
            values[base] = _read_secret_file(raw, f"{key_where(key)}: {key}")
        else:
            if spec.secret:
                if not isinstance(raw, str):
                    raise ConfigError(f"{key_where(key)}: {key} must be a string")
                values[base] = _secret(raw, f"{key_where(key)}: {key}")
            else:
                values[base] = raw
    return values


def _warn_if_exposed(cfg: ConfigFile, warn: Callable[[str], None]) -> None:
    """Warn when the file holds a literal secret (in any profile) and others may read it."""
    if not cfg.exists or os.name != "posix":
        return
    exposed = []
    for name, table in cfg.profiles.items():
        provider = table.get("provider")
        if not isinstance(provider, str) or provider not in known_provider_ids():
            continue
        secret_keys = {spec.name for spec in provider_keys(provider) if spec.secret}
        if secret_keys & set(table):
            exposed.append(name)
    if not exposed:
        return
    mode = cfg.path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        which = ", ".join(repr(n) for n in exposed)
        warn(
            f"{cfg.path} holds a literal secret (profile {which}) and is readable by others "
            f"(mode {stat.S_IMODE(mode):o}); run: chmod 600 {cfg.path}"
        )


def _secret(value: str, where: str) -> Secret:
    """A credential as given; refuse what no HTTP header could carry, without echoing it."""
    if not value:
        raise ConfigError(f"{where} is empty")
    bad = next((ch for ch in value if ord(ch) < 0x20 or ord(ch) == 0x7F), None)
    if bad is not None:
        what = "a line break" if bad in "\r\n" else "a control character"
        raise ConfigError(f"{where} contains {what}", hint="check how the secret was stored (a stray newline?)")
    return Secret(value)


def _env_values(specs: Mapping[str, KeySpec], env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, spec in specs.items():
        env_name = f"{ENV_PREFIX}{key.upper()}"
        if spec.secret:
            if env.get(env_name):
                values[key] = _secret(env[env_name], env_name)
            elif env.get(env_name + "_FILE"):
                values[key] = _read_secret_file(env[env_name + "_FILE"], f"{env_name}_FILE")
        elif env.get(env_name):
            values[key] = env[env_name]
    return values


def _read_secret_file(raw: Any, where: str) -> Secret:
    if not isinstance(raw, str) or not raw:
        raise ConfigError(f"{where} must be a file path")
    path = Path(raw).expanduser()
    try:
        data = _read_bounded(path, MAX_SECRET_BYTES)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path}: {exc.strerror or exc}") from None
    if data is None:
        raise ConfigError(f"{where}: {path} is larger than {MAX_SECRET_BYTES // 1024} KiB; is it the right file?")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: {path} is not UTF-8 text") from None
    value = text.strip("\r\n")
    if not value:
        raise ConfigError(f"{where}: {path} is empty")
    return _secret(value, f"{where} ({path})")


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _coerce(raw: Any, spec: KeySpec, where: str) -> Any:
    """Check and convert one value to the key's kind; errors name where it came from."""
    if isinstance(raw, Secret):
        return raw
    try:
        value = _convert(raw, spec)
        if spec.positive and not value > 0:
            raise ValueError("must be more than 0")
        return value
    except ValueError as exc:
        raise ConfigError(f"{where}: bad value for {spec.name!r}: {exc}") from None


def _convert(raw: Any, spec: KeySpec) -> Any:
    if spec.kind == "url":
        return _check_url(raw)
    if spec.kind == "int":
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError("expected a whole number")
        number = int(raw)
        if number < 0:
            raise ValueError("cannot be negative")
        return number
    if spec.kind == "size":
        return parse_size(raw)
    if spec.kind == "duration":
        return parse_duration(raw)
    if spec.kind == "bool":
        if isinstance(raw, bool):
            return raw
        if str(raw).strip().lower() in _TRUE:
            return True
        if str(raw).strip().lower() in _FALSE:
            return False
        raise ValueError("expected true or false")
    if spec.kind == "table":
        if isinstance(raw, str):  # from the environment (TMPUP_HEADERS): a JSON object
            try:
                raw = json.loads(raw)
            except ValueError:
                raise ValueError('expected a JSON object of strings, e.g. {"X-Foo": "bar"}') from None
        if not isinstance(raw, Mapping) or not all(isinstance(v, str) for v in raw.values()):
            raise ValueError('expected a table of strings, e.g. { X-Foo = "bar" } (TMPUP_HEADERS: JSON)')
        return dict(raw)
    if spec.kind == "path":
        path = Path(str(raw)).expanduser()
        if not path.is_file():
            raise ValueError(f"{str(path)!r} is not a readable file")
        return str(path)
    if not isinstance(raw, (str, int)) or isinstance(raw, bool):
        raise ValueError("expected a string")
    return str(raw)


def _check_url(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError("expected a URL string")
    url = raw.strip()
    parsed = urlparse(url)
    if "@" in parsed.netloc or (not parsed.netloc and "@" in url):
        # Checked first, and the URL not echoed: what precedes the '@' is likely a password.
        raise ValueError("credentials do not belong in the URL; use the profile's secret keys")
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"{url!r} is not an http(s) URL")
    return url


def describe_profile(settings: Settings) -> dict[str, Any]:
    """The profile as `profiles show` prints it: secrets masked, origins kept."""
    shown: dict[str, Any] = {"profile": settings.profile, "provider": settings.provider}
    from tmpup.headers import is_secret_name

    for key, value in settings.values.items():
        if isinstance(value, Secret):
            value = "****"
        elif isinstance(value, Mapping):  # a table of headers: their credentials stay hidden too
            value = {k: ("****" if is_secret_name(str(k)) else v) for k, v in value.items()}
        shown[key] = value
    return shown
