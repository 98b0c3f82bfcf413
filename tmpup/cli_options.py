"""The options every command takes, and the small parsers the commands' options share.

`@common` adds `COMMON_OPTIONS` (`-p`, `--json`, `-q`, `-v`, `--debug`, `--timeout`, `--retries`,
`--insecure`, `--ca-bundle`, `--config`) to a command's own signature, so they are typed after the
subcommand where users type them, and hands them to the command as one `GlobalOptions`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from tmpup.errors import TmpupError, UsageError
from tmpup.runtime import GlobalOptions
from tmpup.units import MAX_RETRIES

F = TypeVar("F", bound=Callable[..., Any])

_KW = inspect.Parameter.KEYWORD_ONLY


def _opt(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, _KW, default=default, annotation=annotation)


#: The options every command takes, in the order --help lists them.
COMMON_OPTIONS = [
    _opt(
        "profile",
        str | None,
        typer.Option(
            None,
            "--profile",
            "-p",
            help="Profile to use (default: TMPUP_PROFILE, then 'env' when TMPUP_PROVIDER is set, then "
            "default_profile, then the file's only profile).",
            rich_help_panel="Common options",
        ),
    ),
    _opt(
        "json_output",
        bool,
        typer.Option(False, "--json", help="Print results as JSON Lines.", rich_help_panel="Common options"),
    ),
    _opt(
        "quiet",
        bool,
        typer.Option(
            False, "--quiet", "-q", help="Print nothing but results and errors.", rich_help_panel="Common options"
        ),
    ),
    _opt(
        "verbose",
        bool,
        typer.Option(
            False,
            "--verbose",
            "-v",
            help="Log each HTTP request (credentials masked).",
            rich_help_panel="Common options",
        ),
    ),
    _opt(
        "debug",
        bool,
        typer.Option(
            False,
            "--debug",
            help="Log headers too; show tracebacks of internal errors.",
            rich_help_panel="Common options",
        ),
    ),
    _opt(
        "timeout",
        str | None,
        typer.Option(
            None, "--timeout", help="Network timeout, e.g. 30s (default 60s).", rich_help_panel="Common options"
        ),
    ),
    _opt(
        "retries",
        int | None,
        typer.Option(
            None,
            "--retries",
            min=0,
            max=MAX_RETRIES,
            help="Retries of failed requests (default 5).",
            rich_help_panel="Common options",
        ),
    ),
    _opt(
        "insecure",
        bool,
        typer.Option(
            False, "--insecure", help="Do not verify TLS certificates (warns).", rich_help_panel="Common options"
        ),
    ),
    _opt(
        "ca_bundle",
        Path | None,
        typer.Option(
            None, "--ca-bundle", help="PEM file of CA certificates to trust.", rich_help_panel="Common options"
        ),
    ),
    _opt(
        "config",
        Path | None,
        typer.Option(
            None,
            "--config",
            help="Config file (default: TMPUP_CONFIG, then the user config dir).",
            rich_help_panel="Common options",
        ),
    ),
]
_COMMON_NAMES = [p.name for p in COMMON_OPTIONS]


def common(fn: F) -> F:
    """Add COMMON_OPTIONS to a command; the command receives them as `g: GlobalOptions`."""
    sig = inspect.signature(fn, eval_str=True)
    own = [p for name, p in sig.parameters.items() if name not in ("g", "overrides")]

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in _COMMON_NAMES}
        timeout = values["timeout"]
        if timeout is not None:
            from tmpup.units import parse_duration

            try:
                timeout = parse_duration(timeout)
            except ValueError as exc:
                raise UsageError(f"--timeout: {exc}") from None
            if timeout <= 0:
                raise UsageError("--timeout must be more than 0, e.g. 30s")
        if values["profile"] is not None and not values["profile"].strip():
            raise UsageError("-p/--profile needs a profile name", hint="see them with 'tmpup profiles list'")
        g = GlobalOptions(
            profile=values["profile"],
            config=values["config"],
            json=values["json_output"],
            quiet=values["quiet"],
            verbose=values["verbose"],
            debug=values["debug"],
            timeout=timeout,
            retries=values["retries"],
            insecure=values["insecure"],
            ca_bundle=str(values["ca_bundle"]) if values["ca_bundle"] else None,
        )
        STATE["debug"] = g.debug
        return fn(g=g, **kwargs)

    del wrapper.__wrapped__
    wrapper.__signature__ = sig.replace(parameters=own + COMMON_OPTIONS)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in own + COMMON_OPTIONS}
    return wrapper  # type: ignore[return-value]


STATE: dict[str, Any] = {"debug": False}

ProgressOpt = Annotated[
    str,
    typer.Option(
        "--progress",
        help="auto (bar on a terminal, lines otherwise), bar, lines, json (events on stderr) or none.",
        case_sensitive=False,
    ),
]


def check_progress(value: str) -> str:
    value = value.lower()
    if value not in ("auto", "bar", "lines", "json", "none"):
        raise UsageError(f"--progress must be auto, bar, lines, json or none, not {value!r}")
    return value


def size_option(flag: str, value: str | None) -> int | None:
    if value is None:
        return None
    from tmpup.units import parse_size

    try:
        return parse_size(value)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from None


def rate_option(value: str | None) -> int | None:
    """`--limit-rate 5M`: bytes per second, at least 1."""
    rate = size_option("--limit-rate", value)
    if rate is not None and rate < 1:
        raise UsageError("--limit-rate must be at least 1 byte per second")
    return rate


def input_error(message: str) -> TmpupError:
    from tmpup.errors import InputError

    return InputError(message)


def with_options(g: GlobalOptions, **changes: Any) -> GlobalOptions:
    import dataclasses

    return dataclasses.replace(g, **changes)
