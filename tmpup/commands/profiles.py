"""`tmpup profiles list|show|check` and `tmpup providers`."""

from __future__ import annotations

from typing import Any

from tmpup.config import ENV_PROFILE_NAME, describe_profile, select_profile, warn_if_exposed
from tmpup.config_file import load_config_file
from tmpup.errors import ConfigError, NotFoundError, UnexpectedAnswer
from tmpup.runtime import Runtime


def list_profiles(rt: Runtime, *, names_only: bool = False) -> list[dict[str, Any]]:
    cfg = load_config_file(rt.options.config, rt.env, explicit=rt.options.config is not None)
    if not names_only:  # the first command after writing a config file: it says so too (not completion's listing)
        warn_if_exposed(cfg, rt.messages.warn)
    try:
        default = select_profile(cfg, None, rt.env)
    except ConfigError:
        default = None
    rows: list[dict[str, Any]] = []
    for name, table in cfg.profiles.items():
        url = _shown_url(table.get("url"))
        rows.append({"name": name, "provider": table.get("provider"), "url": url, "default": name == default})
    if rt.env.get("TMPUP_PROVIDER"):
        rows.append(
            {
                "name": ENV_PROFILE_NAME,
                "provider": rt.env["TMPUP_PROVIDER"],
                "url": _shown_url(rt.env.get("TMPUP_URL")),
                "default": default is None,
            }
        )
    if names_only:
        for row in rows:
            rt.output.line(row["name"])
    elif rt.output.json_mode:
        for row in rows:
            rt.output.json(row)
    elif not rows:
        rt.messages.note(f"no profiles (config file: {cfg.path})")
    else:
        width = max(len(r["name"]) for r in rows)
        kinds = max(len(str(r["provider"])) for r in rows)
        for row in rows:
            mark = "*" if row["default"] else " "
            line = f"{mark} {row['name'].ljust(width)}  {str(row['provider']).ljust(kinds)}  {row['url'] or ''}"
            rt.output.line(line.rstrip())
    return rows


def _shown_url(url: Any) -> Any:
    """A profile's url as listed: user info (a password?) taken out, secret-looking query values masked."""
    if not isinstance(url, str):
        return url
    from tmpup.http import redact_url

    return redact_url(url)


def show(rt: Runtime) -> dict[str, Any]:
    shown = describe_profile(rt.settings)
    if rt.output.json_mode:
        rt.output.json(shown)
    else:
        rt.output.fields(_for_people(rt.settings.provider, shown))
    return shown


def _for_people(provider: str, shown: dict[str, Any]) -> dict[str, Any]:
    """Durations and sizes as people write them (`2h`, `64.0 MiB`); JSON keeps the numbers."""
    from tmpup.config import provider_keys
    from tmpup.units import format_duration, format_size

    kinds = {spec.name: spec.kind for spec in provider_keys(provider)}
    out = dict(shown)
    for key, value in shown.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if kinds.get(key) == "duration":
                out[key] = format_duration(value)
            elif kinds.get(key) == "size":
                out[key] = format_size(value)
    return out


def check(rt: Runtime) -> str:
    try:
        text = rt.provider.check()
    except NotFoundError as exc:
        # A check asks for what every account of the service has (or for an id that cannot exist, where
        # the provider knows the API's own 404): a 404 here means the url is not that API. It is a
        # configuration error (exit 3), as every provider's check says of an answer from another server.
        raise UnexpectedAnswer(
            exc.message,
            hint="check the profile's url: it must point at the provider's API",
            status=exc.status,
            provider=exc.provider,
            url=exc.url,
        ) from None
    if rt.output.json_mode:
        rt.output.json({"profile": rt.settings.profile, "provider": rt.settings.provider, "ok": True, "detail": text})
    else:
        rt.output.line(f"{rt.settings.profile}: ok: {text}")
    return text


def providers(rt: Runtime) -> list[dict[str, Any]]:
    from tmpup.providers import PROVIDERS, provider_class
    from tmpup.providers.base import Deletable, Describable, Downloadable, MultiUploader

    rows: list[dict[str, Any]] = []
    for pid in PROVIDERS:
        try:
            cls = provider_class(pid)
        except ConfigError:
            continue
        resumable = cls.resumable
        row: dict[str, Any] = {
            "id": pid,
            "description": cls.description,
            "upload": True,
            "download": issubclass(cls, Downloadable),
            "info": "server" if issubclass(cls, Describable) else "local receipt",
            "delete": issubclass(cls, Deletable),
            "resumable": resumable,
            "multi_file_request": issubclass(cls, MultiUploader),
            "keys": [{"name": k.name, "required": k.required, "secret": k.secret, "help": k.help} for k in cls.keys],
        }
        rows.append(row)
    if rt.output.json_mode:
        for row in rows:
            rt.output.json(row)
    else:
        for row in rows:
            caps = ["upload"]
            caps += ["download"] if row["download"] else []
            caps += [f"info ({row['info']})"]
            caps += ["delete"] if row["delete"] else []
            caps += ["resumable"] if row["resumable"] else []
            rt.output.line(f"{row['id']:<18} {', '.join(caps)}")
            rt.output.line(f"{'':<18} {row['description']}")
            keys = ", ".join(k["name"] + ("*" if k["secret"] else "") for k in row["keys"])
            rt.output.line(f"{'':<18} keys: {keys}   (* = secret)")
    return rows
