"""Profiles: the config file, the `TMPUP_*` environment and command-line options -> frozen `Settings`.

Precedence is decided in one place, `resolve_value`: command-line option > `TMPUP_*` environment >
profile > provider default. Secrets (keys a provider marks `secret`) come from `KEY_env` (the name
of an environment variable), `KEY_file` (a file holding the value) or `KEY` itself, and from
`TMPUP_KEY` / `TMPUP_KEY_FILE` / `TMPUP_KEY_ENV` in the environment; they are wrapped in `Secret` so that no repr, log
line or error message can show them.

Which profile: `-p NAME` > `TMPUP_PROFILE` > the file-less environment profile when `TMPUP_PROVIDER`
is set > the file's `default_profile` > the only profile of the file. The environment profile is named
`env` (`-p env` picks it; a file may not have a profile of that name).

Every value given is checked, whether or not it is the one used: a bad `TMPUP_TIMEOUT` is an error
even beside `--timeout`, as a bad `ttl` in the profile is beside `TMPUP_TTL`. What a value points to
outside tmpup (the file of a `ca_bundle`, the variable of a `KEY_env`, the file of a `KEY_file`) is
looked at only when that value is used.

Reading the file is `tmpup.config_file`'s job; checking and converting one value (and `Secret`) is
`tmpup.config_values`'.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tmpup.config_file import ENV_PROFILE_NAME as ENV_PROFILE_NAME
from tmpup.config_file import ConfigFile, load_config_file
from tmpup.config_values import Secret, check_text, coerce, read_secret_file, secret_value
from tmpup.errors import ConfigError
from tmpup.providers.base import COMMON_KEYS, KeySpec

ENV_PREFIX = "TMPUP_"


@dataclass(frozen=True)
class Settings:
    """A resolved profile: provider id, typed values (secrets as `Secret`), and where each came from."""

    profile: str
    provider: str
    values: Mapping[str, Any]
    origins: Mapping[str, str] = field(default_factory=dict)
    config_path: Path | None = None
    #: where each value came from, as error messages name it (`--ttl`, `TMPUP_TTL`, `FILE:LINE profile 'x'`)
    sources: Mapping[str, str] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        value = self.values.get(key)
        return default if value is None else value

    def secret(self, key: str) -> str | None:
        value = self.values.get(key)
        return value.reveal() if isinstance(value, Secret) else None

    def where(self, key: str) -> str | None:
        """Where KEY's value came from, for a message about it (None for a provider default)."""
        source = self.sources.get(key)
        if source is None or source == "default":
            return None
        return f"{source}: {key}" if self.origins.get(key) == "profile" else source

    @property
    def timeout(self) -> float:
        return float(self.get("timeout", 60.0))

    @property
    def retries(self) -> int:
        return int(self.get("retries", 5))


def provider_keys(provider_id: str) -> tuple[KeySpec, ...]:
    from tmpup.providers import provider_class

    return provider_class(provider_id).keys + COMMON_KEYS


def known_provider_ids() -> list[str]:
    from tmpup.providers import PROVIDERS

    return list(PROVIDERS)


def select_profile(cfg: ConfigFile, option: str | None, env: Mapping[str, str]) -> str | None:
    """The profile name to use, or None for the file-less environment profile.

    That profile is listed (and recorded in results) as `env`, so the name picks it too (a file may
    not have a profile of that name: `load_config_file` refuses it)."""
    chosen = option or env.get("TMPUP_PROFILE")
    if chosen:
        if chosen == ENV_PROFILE_NAME and env.get("TMPUP_PROVIDER"):
            return None
        return chosen
    if env.get("TMPUP_PROVIDER"):
        return None
    default = cfg.data.get("default_profile")
    if isinstance(default, str) and default:
        if default not in cfg.profiles:
            line = cfg.top_line("default_profile")
            hint = f"known profiles: {', '.join(cfg.profiles) or 'none'}; fix default_profile or pass -p NAME"
            if default == ENV_PROFILE_NAME:
                hint += f"; the environment profile {default!r} needs TMPUP_PROVIDER (and TMPUP_URL, credentials)"
            raise ConfigError(
                f"{cfg.path}" + (f":{line}" if line else "") + f": default_profile names the profile {default!r}, "
                "which this file does not have",
                hint=hint,
            )
        return default
    if len(cfg.profiles) == 1:
        return next(iter(cfg.profiles))
    if not cfg.profiles:
        what = f"{cfg.path} has no [profiles.NAME] table" if cfg.exists else f"no {cfg.path}"
        raise ConfigError(
            f"no profile configured ({what}, no TMPUP_PROVIDER)",
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
    warn_if_exposed(cfg, warn)
    name = select_profile(cfg, profile, env)

    if name is None:
        table: Mapping[str, Any] = {}
        provider: Any = env["TMPUP_PROVIDER"]
        where = where_provider = "the environment profile (TMPUP_PROVIDER)"
        display = ENV_PROFILE_NAME
    else:
        if name not in cfg.profiles:
            known = ", ".join(cfg.profiles) or "none"
            hint = f"known profiles: {known}"
            if name == ENV_PROFILE_NAME:
                hint += f"; the environment profile {name!r} needs TMPUP_PROVIDER (and TMPUP_URL, credentials)"
            raise ConfigError(
                f"unknown profile {name!r}" + (f" in {cfg.path}" if cfg.exists else f" (no {cfg.path})"),
                hint=hint,
            )
        table = cfg.profiles[name]
        display = name
        line = cfg.line_of(name)
        where = f"{cfg.path}" + (f":{line}" if line else "") + f" profile {name!r}"
        provider = table.get("provider")
        if provider is None:
            raise ConfigError(f"{where}: missing required key 'provider'", hint=_provider_hint())
        # A present provider's own line: the header line is where the profile starts, not the mistake.
        line = cfg.line_of(name, "provider")
        where_provider = f"{cfg.path}" + (f":{line}" if line else "") + f" profile {name!r}"
        if not isinstance(provider, str) or not provider:
            import reprlib

            raise ConfigError(
                f"{where_provider}: provider must be a provider's name (a string), not {reprlib.repr(provider)}",
                hint=_provider_hint(),
            )
        env_provider = env.get("TMPUP_PROVIDER")
        if env_provider and env_provider != provider:
            raise ConfigError(f"TMPUP_PROVIDER={env_provider} conflicts with {where}, whose provider is {provider!r}")

    if provider not in known_provider_ids():
        raise ConfigError(f"{where_provider}: unknown provider {provider!r}", hint=_provider_hint())
    specs = {spec.name: spec for spec in provider_keys(provider)}

    def key_where(key: str) -> str:
        if name is None:
            return where
        line = cfg.line_of(name, key)
        return f"{cfg.path}" + (f":{line}" if line else "") + f" profile {name!r}"

    env_values = _env_values(specs, env)
    # A secret the option or the environment gives is not looked for in the profile's KEY_env / KEY_file:
    # an unset variable or a missing file that would not be used is no error.
    given = {key for key in specs if options.get(key) is not None or env_values.get(key) is not None}
    profile_values = _profile_values(table, specs, key_where, env, given)

    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    sources: dict[str, str] = {}
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
        values[key] = coerce(raw, spec, origin_text)
        _check_overridden(spec, origin, env_values, profile_values, key_where)
        origins[key] = origin
        sources[key] = origin_text
    _check_alternatives(provider, values, where, origins, sources)
    return Settings(display, provider, values, origins, cfg.path if cfg.exists else None, sources)


def _check_overridden(
    spec: KeySpec,
    origin: str,
    env_values: Mapping[str, Any],
    profile_values: Mapping[str, Any],
    key_where: Callable[[str], str],
) -> None:
    """Check the values that ORIGIN's value overrides, as if they were used: a bad `TMPUP_TIMEOUT` is an
    error beside `--timeout` too, as a bad `TMPUP_TTL` is beside `--ttl` (which the upload command
    applies after the settings are built). What a path names is looked at only when it is used."""
    if spec.kind == "path":
        return
    below = {"option": ("environment", "profile"), "environment": ("profile",)}.get(origin, ())
    for source in below:
        values = env_values if source == "environment" else profile_values
        raw = values.get(spec.name)
        if raw is not None:
            where = f"{ENV_PREFIX}{spec.name.upper()}" if source == "environment" else key_where(spec.name)
            coerce(raw, spec, where)


def _provider_hint() -> str:
    return "provider must be one of: " + ", ".join(known_provider_ids())


def _missing_hint(spec: KeySpec, profile: str | None) -> str:
    env_name = f"{ENV_PREFIX}{spec.name.upper()}"
    if spec.secret:
        return f'set {spec.name}_env = "VAR" or {spec.name}_file = "PATH" in the profile, or {env_name}'
    return f"set {spec.name} in the profile or {env_name}"


def _check_alternatives(
    provider: str, values: Mapping[str, Any], where: str, origins: Mapping[str, str], sources: Mapping[str, str]
) -> None:
    """The provider's own check of how keys combine (KF5: a password or an API token, not both).

    Its problem names the keys involved as `'KEY'`; when one of them came from outside the profile
    (`TMPUP_PASSWORD` beside a profile's api_token), the message says where each came from."""
    from tmpup.providers import provider_class

    check = getattr(provider_class(provider), "validate_settings", None)
    if check is not None:
        problem = check(values)
        if problem:
            named = [key for key in values if f"'{key}'" in problem and key in origins]
            if any(origins[key] != "profile" for key in named):
                came = "; ".join(f"{key} from {sources[key]}" for key in named)
                raise ConfigError(f"{where}: {problem} ({came})")
            raise ConfigError(f"{where}: {problem}")


def _profile_values(
    table: Mapping[str, Any],
    specs: Mapping[str, KeySpec],
    key_where: Callable[[str], str],
    env: Mapping[str, str],
    given: Collection[str] = (),
) -> dict[str, Any]:
    """The profile's own values; `given`: keys an option or the environment supplies, whose secret
    the profile does not have to (and is not asked to) resolve."""
    values: dict[str, Any] = {}
    seen: set[str] = set()
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
        if base in seen:
            raise ConfigError(
                f"{key_where(key)}: {base!r} is given more than once (as {base}, {base}_env or {base}_file)",
                hint="keep exactly one of them",
            )
        seen.add(base)
        if base in given and form != "value":
            continue
        if form == "env":
            if not isinstance(raw, str) or not raw:
                raise ConfigError(f"{key_where(key)}: {key} must name an environment variable")
            if raw not in env:
                raise ConfigError(
                    f"{key_where(key)}: {key} names the environment variable {raw}, which is not set",
                    hint=f"export {raw}=... before running tmpup",
                )
            values[base] = secret_value(env[raw], f"{key_where(key)}: the environment variable {raw} ({key})")
        elif form == "file":
            values[base] = read_secret_file(raw, f"{key_where(key)}: {key}")
        else:
            if spec.secret:
                if not isinstance(raw, str):
                    raise ConfigError(f"{key_where(key)}: {key} must be a string")
                values[base] = secret_value(raw, f"{key_where(key)}: {key}")
            else:
                values[base] = raw
    return values


def warn_if_exposed(cfg: ConfigFile, warn: Callable[[str], None]) -> None:
    """Warn when the file holds a literal secret (in any profile) and others may read it."""
    if not cfg.exists or os.name != "posix":
        return
    exposed = []
    for name, table in cfg.profiles.items():
        provider = table.get("provider")
        if not isinstance(provider, str) or provider not in known_provider_ids():
            continue
        if any(_holds_literal_secret(spec, table.get(spec.name)) for spec in provider_keys(provider)):
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


def _holds_literal_secret(spec: KeySpec, value: Any) -> bool:
    """Whether a profile's own KEY holds a credential: a secret key's literal value, or a header of a
    table (tus `headers`) whose name says it carries one (those `profiles show` masks)."""
    if value is None:
        return False
    if spec.secret:
        return True
    from tmpup.headers import is_secret_name

    return spec.kind == "table" and isinstance(value, Mapping) and any(is_secret_name(str(k)) for k in value)


def _env_values(specs: Mapping[str, KeySpec], env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, spec in specs.items():
        env_name = f"{ENV_PREFIX}{key.upper()}"
        if spec.secret:
            if env.get(env_name):
                values[key] = secret_value(env[env_name], env_name)
            elif env.get(env_name + "_FILE"):
                values[key] = read_secret_file(env[env_name + "_FILE"], f"{env_name}_FILE")
            elif env.get(env_name + "_ENV"):  # as `KEY_env` in a profile: the name of the variable to read
                var = env[env_name + "_ENV"]
                if not env.get(var):
                    raise ConfigError(
                        f"{env_name}_ENV names the environment variable {var}, which is not set (or empty)",
                        hint=f"export {var}=... before running tmpup",
                    )
                values[key] = secret_value(env[var], f"the environment variable {var} ({env_name}_ENV)")
        elif env.get(env_name):
            # Not UTF-8 is refused (naming the variable), except in a path: a file name may be any bytes.
            values[key] = env[env_name] if spec.kind == "path" else check_text(env[env_name], env_name)
    return values


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
