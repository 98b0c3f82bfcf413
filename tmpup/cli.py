"""The Typer app: parse options, build a `Runtime`, call a command; `main()` is the ONE error boundary.

Options that make sense everywhere (`-p`, `--json`, `-q`, `-v`, `--debug`, `--timeout`, `--retries`,
`--insecure`, `--ca-bundle`, `--config`) are added to every command by `@common`, so they go after the
subcommand where users type them. Nothing heavy is imported at module level: `tmpup --help` and
`--version` stay fast; commands import what they need when they run.
"""

from __future__ import annotations

import functools
import inspect
import os
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from tmpup import __version__
from tmpup.errors import ExitCode, Interrupted, TmpupError, UsageError
from tmpup.runtime import GlobalOptions, Runtime

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="tmpup",
    help="Upload files to temporary-file APIs (Qlik, tus, Thulium, Pyrus, KF5, Enterprise Tester).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
profiles_app = typer.Typer(help="List, show and check configuration profiles.", no_args_is_help=True)
app.add_typer(profiles_app, name="profiles")

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
            help="Profile to use (default: TMPUP_PROFILE, then default_profile).",
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
            None, "--retries", min=0, help="Retries of failed requests (default 5).", rich_help_panel="Common options"
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
        _STATE["debug"] = g.debug
        return fn(g=g, **kwargs)

    del wrapper.__wrapped__
    wrapper.__signature__ = sig.replace(parameters=own + COMMON_OPTIONS)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in own + COMMON_OPTIONS}
    return wrapper  # type: ignore[return-value]


_STATE: dict[str, Any] = {"debug": False}

ProgressOpt = Annotated[
    str,
    typer.Option(
        "--progress",
        help="auto (bar on a terminal, lines otherwise), bar, lines, json (events on stderr) or none.",
        case_sensitive=False,
    ),
]


def _check_progress(value: str) -> str:
    value = value.lower()
    if value not in ("auto", "bar", "lines", "json", "none"):
        raise UsageError(f"--progress must be auto, bar, lines, json or none, not {value!r}")
    return value


def _version_callback(value: bool) -> None:
    if value:
        print(f"tmpup {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Upload files to temporary-file APIs; results on stdout, everything else on stderr."""


# -- upload ----------------------------------------------------------------------------------------


@app.command()
@common
def upload(
    files: Annotated[
        list[str], typer.Argument(help="Files to upload; '-' reads stdin (needs --name).", show_default=False)
    ],
    name: Annotated[str | None, typer.Option("--name", help="Name to store the file under (one file only).")] = None,
    ttl: Annotated[str | None, typer.Option("--ttl", help="Time to live, e.g. 90m, 2h, 3600 (Qlik: up to 3d).")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Upload this many files at once.")] = 1,
    chunk_size: Annotated[
        str | None, typer.Option("--chunk-size", help="Split resumable uploads into requests of this size, e.g. 64M.")
    ] = None,
    resumable: Annotated[
        bool | None,
        typer.Option(
            "--resumable/--no-resume", help="Force a resumable (tus) upload, or never resume one.", show_default=False
        ),
    ] = None,
    checksum: Annotated[
        bool, typer.Option("--checksum", help="Compute the sha256 of each file while it uploads.")
    ] = False,
    limit_rate: Annotated[
        str | None, typer.Option("--limit-rate", help="Cap the upload speed, e.g. 5M (bytes per second).")
    ] = None,
    progress: ProgressOpt = "auto",
    *,
    g: GlobalOptions,
) -> None:
    """Upload FILE... and print one handle per file (token, id or URL)."""
    from tmpup.commands import upload as command
    from tmpup.units import parse_duration

    ttl_seconds = None
    if ttl is not None:
        try:
            ttl_seconds = parse_duration(ttl)
        except ValueError as exc:
            raise _input_error(f"--ttl: {exc}") from None
        if ttl_seconds != int(ttl_seconds):
            raise _input_error("--ttl must be whole seconds")
    chunk = _size_option("--chunk-size", chunk_size)
    if chunk is not None and chunk < 1:
        raise UsageError("--chunk-size must be at least 1 byte")
    rate = _size_option("--limit-rate", limit_rate)
    if rate is not None and rate < 1:
        raise UsageError("--limit-rate must be at least 1 byte per second")
    g = _with(g, progress=_check_progress(progress))
    rt = Runtime.build(g)
    command.run(
        rt,
        command.UploadRequest(
            files=files,
            name=name,
            ttl=int(ttl_seconds) if ttl_seconds is not None else None,
            jobs=jobs,
            chunk_size=chunk,
            resumable=resumable,
            checksum=checksum,
            limit_rate=rate,
        ),
    )


def _size_option(flag: str, value: str | None) -> int | None:
    if value is None:
        return None
    from tmpup.units import parse_size

    try:
        return parse_size(value)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from None


def _input_error(message: str) -> TmpupError:
    from tmpup.errors import InputError

    return InputError(message)


def _with(g: GlobalOptions, **changes: Any) -> GlobalOptions:
    import dataclasses

    return dataclasses.replace(g, **changes)


# -- download / info / delete -----------------------------------------------------------------------


@app.command()
@common
def download(
    id: Annotated[str, typer.Argument(help="The id (or token) the upload printed.", show_default=False)],
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="File or directory to write; '-' for stdout.")
    ] = None,
    resume: Annotated[bool, typer.Option("--continue", "-c", help="Resume a partial download (NAME.part).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    progress: ProgressOpt = "auto",
    *,
    g: GlobalOptions,
) -> None:
    """Download a file by id; never overwrites without --force."""
    from tmpup.commands import download as command

    rt = Runtime.build(_with(g, progress=_check_progress(progress)))
    command.run(rt, command.DownloadRequest(id=id, output=output, resume=resume, force=force))


@app.command()
@common
def info(
    id: Annotated[str, typer.Argument(help="The id or token of an upload.", show_default=False)],
    *,
    g: GlobalOptions,
) -> None:
    """Show what is known of an upload: from the API, or from tmpup's receipts where the API has no info."""
    from tmpup.commands import info as command

    command.run(Runtime.build(g), id)


@app.command()
@common
def delete(
    id: Annotated[str, typer.Argument(help="The id of the upload to delete.", show_default=False)],
    *,
    g: GlobalOptions,
) -> None:
    """Delete an uploaded file where the API allows it."""
    from tmpup.commands import delete as command

    command.run(Runtime.build(g), id)


# -- resume ----------------------------------------------------------------------------------------


@app.command()
@common
def resume(
    target: Annotated[str | None, typer.Argument(help="A FILE or upload ID to continue.", show_default=False)] = None,
    all_: Annotated[bool, typer.Option("--all", help="Continue every interrupted upload.")] = False,
    list_: Annotated[bool, typer.Option("--list", help="List interrupted uploads.")] = False,
    clean: Annotated[
        bool, typer.Option("--clean", help="Remove records of uploads that can no longer resume.")
    ] = False,
    progress: ProgressOpt = "auto",
    *,
    g: GlobalOptions,
) -> None:
    """Continue interrupted resumable uploads, or list/clean their records."""
    from tmpup.commands import resume as command

    chosen = sum(bool(x) for x in (target, all_, list_, clean))
    if chosen != 1:
        raise UsageError("give exactly one of FILE|ID, --all, --list or --clean")
    rt = Runtime.build(_with(g, progress=_check_progress(progress)))
    if list_:
        command.list_records(rt)
    elif clean:
        command.clean(rt)
    else:
        command.resume(rt, None if all_ else target)


# -- profiles / providers ---------------------------------------------------------------------------


@profiles_app.command("list")
@common
def profiles_list(
    names: Annotated[bool, typer.Option("--names", hidden=True, help="Only the names (for shell completion).")] = False,
    *,
    g: GlobalOptions,
) -> None:
    """List the profiles of the config file (and the environment profile, if TMPUP_PROVIDER is set)."""
    from tmpup.commands import profiles as command

    command.list_profiles(Runtime.build(g), names_only=names)


@profiles_app.command("show")
@common
def profiles_show(
    name: Annotated[
        str | None, typer.Argument(help="Profile name (default: the active profile).", show_default=False)
    ] = None,
    *,
    g: GlobalOptions,
) -> None:
    """Show a profile's resolved settings; secrets are masked."""
    from tmpup.commands import profiles as command

    command.show(Runtime.build(_with(g, profile=name or g.profile)))


@profiles_app.command("check")
@common
def profiles_check(
    name: Annotated[
        str | None, typer.Argument(help="Profile name (default: the active profile).", show_default=False)
    ] = None,
    *,
    g: GlobalOptions,
) -> None:
    """Check that a profile can reach its service and authenticate."""
    from tmpup.commands import profiles as command

    command.check(Runtime.build(_with(g, profile=name or g.profile)))


@app.command()
@common
def providers(*, g: GlobalOptions) -> None:
    """List the providers and what each can do."""
    from tmpup.commands import profiles as command

    command.providers(Runtime.build(g))


# -- serve ----------------------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[
        str, typer.Option("--host", help="Address to bind (loopback unless told otherwise).")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port to listen on (0 = any free port).")
    ] = 8470,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Where to keep uploaded bytes (default: a temp dir).")
    ] = None,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log each request to stderr.")] = False,
    cert: Annotated[
        Path | None,
        typer.Option(
            "--cert",
            exists=True,
            dir_okay=False,
            help="Serve HTTPS with this PEM certificate (chain); it may hold the key too.",
            rich_help_panel="TLS and limits",
        ),
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option(
            "--key",
            exists=True,
            dir_okay=False,
            help="PEM private key of --cert.",
            rich_help_panel="TLS and limits",
        ),
    ] = None,
    max_size: Annotated[
        str | None,
        typer.Option(
            "--max-size",
            metavar="SIZE",
            help="Largest upload the providers accept, e.g. 10M: 413 above it; tus sends it as Tus-Max-Size "
            "(default: no limit; Pyrus 250 MiB).",
            rich_help_panel="TLS and limits",
        ),
    ] = None,
    idle_timeout: Annotated[
        str,
        typer.Option(
            "--idle-timeout",
            metavar="DURATION",
            help="Drop a connection that sends nothing for this long (0 = never); a stalled upload keeps "
            "the bytes that arrived and is no longer locked.",
            rich_help_panel="TLS and limits",
        ),
    ] = "60s",
    qlik_token: Annotated[
        str | None,
        typer.Option(
            "--qlik-token",
            envvar="TMPUP_EMULATOR_QLIK_TOKEN",
            help="Qlik API key (Bearer).",
            rich_help_panel="Demo credentials",
        ),
    ] = None,
    tus_token: Annotated[
        str | None,
        typer.Option(
            "--tus-token",
            envvar="TMPUP_EMULATOR_TUS_TOKEN",
            help="Bearer token the tus server requires (default: no auth).",
            rich_help_panel="Demo credentials",
        ),
    ] = None,
    thulium_username: Annotated[
        str | None,
        typer.Option(
            "--thulium-username",
            envvar="TMPUP_EMULATOR_THULIUM_USERNAME",
            help="Thulium API user.",
            rich_help_panel="Demo credentials",
        ),
    ] = None,
    thulium_password: Annotated[
        str | None,
        typer.Option(
            "--thulium-password",
            envvar="TMPUP_EMULATOR_THULIUM_PASSWORD",
            help="Thulium API password.",
            rich_help_panel="Demo credentials",
        ),
    ] = None,
    pyrus_login: Annotated[
        str | None,
        typer.Option(
            "--pyrus-login",
            envvar="TMPUP_EMULATOR_PYRUS_LOGIN",
            help="Pyrus bot login.",
            rich_help_panel="Demo credentials",
        ),
    ] = None,
    pyrus_security_key: Annotated[
        str | None,
        typer.Option(
            "--pyrus-security-key",
            envvar="TMPUP_EMULATOR_PYRUS_SECURITY_KEY",
            help="Pyrus bot security key.",
            rich_help_panel="Demo credentials",
        ),
    ] = None,
    kf5_email: Annotated[
        str | None,
        typer.Option(
            "--kf5-email",
            envvar="TMPUP_EMULATOR_KF5_EMAIL",
            help="KF5 agent e-mail.",
            rich_help_panel="Demo credentials",
        ),
    ] = None,
    kf5_password: Annotated[
        str | None,
        typer.Option(
            "--kf5-password",
            envvar="TMPUP_EMULATOR_KF5_PASSWORD",
            help="KF5 agent password.",
            rich_help_panel="Demo credentials",
        ),
    ] = None,
    kf5_api_token: Annotated[
        str | None,
        typer.Option(
            "--kf5-api-token",
            envvar="TMPUP_EMULATOR_KF5_API_TOKEN",
            help="KF5 API token (used with the e-mail instead of the password).",
            rich_help_panel="Demo credentials",
        ),
    ] = None,
    et_username: Annotated[
        str | None,
        typer.Option(
            "--et-username",
            envvar="TMPUP_EMULATOR_ET_USERNAME",
            help="Enterprise Tester user.",
            rich_help_panel="Demo credentials",
        ),
    ] = None,
    et_password: Annotated[
        str | None,
        typer.Option(
            "--et-password",
            envvar="TMPUP_EMULATOR_ET_PASSWORD",
            help="Enterprise Tester password.",
            rich_help_panel="Demo credentials",
        ),
    ] = None,
) -> None:
    """Run the local emulator of all six provider APIs (for trying tmpup and for tests).

    The demo credentials are printed at start; each one not given keeps its built-in demo value.
    Every credential option can also come from its TMPUP_EMULATOR_* environment variable (shown
    with each option): prefer that for secrets, since a command line shows in `ps` and in shell
    history.
    """
    from tmpup.units import parse_duration

    size = _size_option("--max-size", max_size)
    try:
        idle = parse_duration(idle_timeout)
    except ValueError as exc:
        raise UsageError(f"--idle-timeout: {exc}") from None
    if idle < 0:
        raise UsageError("--idle-timeout must be 0 (never) or more, e.g. 60s")
    if key is not None and cert is None:
        raise UsageError("--key needs --cert")
    given = {
        "qlik_token": qlik_token,
        "tus_token": tus_token,
        "thulium_username": thulium_username,
        "thulium_password": thulium_password,
        "pyrus_login": pyrus_login,
        "pyrus_security_key": pyrus_security_key,
        "kf5_email": kf5_email,
        "kf5_password": kf5_password,
        "kf5_api_token": kf5_api_token,
        "et_username": et_username,
        "et_password": et_password,
    }
    for field, value in given.items():
        if value is not None and not value.strip():
            # An empty secret would make "no credentials" a valid login; the value is never echoed.
            option = "--" + field.replace("_", "-")
            raise UsageError(f"{option} (or TMPUP_EMULATOR_{field.upper()}) must not be empty")

    from tmpup.emulator.context import Credentials
    from tmpup.emulator.server import BindError, serve_forever, tls_context

    credentials = Credentials(**{field: value for field, value in given.items() if value is not None})
    ssl_context = None
    if cert is not None:
        try:
            ssl_context = tls_context(cert, key)
        except OSError as exc:  # ssl.SSLError included: not PEM, or the key does not match
            files = f"--cert {cert}" + (f" --key {key}" if key is not None else "")
            raise UsageError(
                f"cannot load the TLS certificate ({files}): {exc.strerror or exc}",
                hint="give a PEM certificate and the PEM private key that belongs to it",
            ) from None
    try:
        serve_forever(
            host=host,
            port=port,
            data_dir=data_dir,
            credentials=credentials,
            max_size=size,
            access_log=access_log,
            ssl_context=ssl_context,
            idle_timeout=idle or None,
        )
    except BindError as exc:
        # Exit 2 (usage error), not 1 (a bug) nor 7 (rejected input is about the data to upload):
        # the --host/--port the user chose cannot be used right now, and the fix is another value.
        import errno

        if exc.errno == errno.EADDRINUSE:
            hint = "choose another --port (--port 0 takes any free one) or stop the program using it"
        elif exc.errno == errno.EACCES:
            hint = "ports below 1024 need privileges; choose another --port"
        else:
            hint = "check --host: an address of this machine, e.g. 127.0.0.1, or 0.0.0.0 for all"
        raise UsageError(str(exc), hint=hint) from None


# -- the error boundary ------------------------------------------------------------------------------


def _on_signal(signum: int, frame: Any) -> None:
    _cancel()
    name = "SIGTERM" if signum == getattr(signal, "SIGTERM", None) else "Ctrl-C"
    raise Interrupted(f"interrupted ({name})")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; every failure becomes one line on stderr and a documented exit code."""
    args = sys.argv[1:] if argv is None else argv
    # Both signals become `Interrupted` (exit 130) at whatever the main thread is doing; typer would
    # otherwise swallow KeyboardInterrupt into a bare exit code and skip our cleanup and message.
    from tmpup.sources import CANCEL

    CANCEL.clear()
    previous = {sig: signal.signal(sig, _on_signal) for sig in _SIGNALS}
    try:
        return _run(args)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


_SIGNALS = [signal.SIGINT] + ([signal.SIGTERM] if hasattr(signal, "SIGTERM") else [])


def _click_exceptions() -> Any:
    """click's exception module: vendored inside typer since 0.2x, the `click` package before."""
    import importlib

    try:
        return importlib.import_module("typer._click.exceptions")
    except ImportError:  # pragma: no cover - older typer, which depends on click
        return importlib.import_module("click.exceptions")


def _run(args: list[str]) -> int:
    click_exc = _click_exceptions()

    code: int
    try:
        result = app(args=args, prog_name="tmpup", standalone_mode=False)
        code = int(result) if isinstance(result, int) else 0
    except TmpupError as exc:
        _cancel()
        _error(str(exc))
        code = int(exc.exit_code)
        if _STATE["debug"]:
            traceback.print_exc()
    except KeyboardInterrupt:
        _cancel()
        _error("interrupted")
        code = int(ExitCode.INTERRUPTED)
    except typer.Abort:
        _error("aborted")
        code = int(ExitCode.INTERRUPTED)
    except click_exc.UsageError as exc:
        # No arguments at all: the help was printed (no_args_is_help); there is no error to add.
        if exc.format_message().strip():
            hint = ""
            if exc.ctx is not None:
                hint = f" (see '{exc.ctx.command_path} --help')"
            _error(f"{exc.format_message()}{hint}")
        code = int(ExitCode.USAGE)
    except click_exc.ClickException as exc:
        _error(exc.format_message())
        code = exc.exit_code
    except typer.Exit as exc:
        code = exc.exit_code
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    except BrokenPipeError:
        # The reader of stdout went away (`tmpup ... | head`): not an error worth a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 0
    except Exception as exc:  # the one place an unexpected error is caught
        _error(
            f"internal error: {type(exc).__name__}: {exc} — this is a bug; please report it with the output "
            f"of the same command run with --debug"
        )
        if _STATE["debug"]:
            traceback.print_exc()
        code = int(ExitCode.INTERNAL)
    return code


def _cancel() -> None:
    from tmpup.sources import CANCEL

    CANCEL.set()


def _error(text: str) -> None:
    from tmpup.output import _clean

    try:
        sys.stderr.write(f"tmpup: error: {_clean(text)}\n")
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):  # pragma: no cover - stderr gone
        pass
