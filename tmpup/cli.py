"""The Typer app: parse options, build a `Runtime`, call a command; `main()` is the ONE error boundary.

Options that make sense everywhere (`-p`, `--json`, `-q`, `-v`, `--debug`, `--timeout`, `--retries`,
`--insecure`, `--ca-bundle`, `--config`) are added to every command by `@common` (`cli_options`), so
they go after the subcommand where users type them; `tmpup serve` lives in `cli_serve`. Nothing heavy
is imported at module level: `tmpup --help` and `--version` stay fast; commands import what they need
when they run.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from typing import Annotated, Any

import typer

from tmpup import __version__
from tmpup.cli_options import (
    STATE,
    ProgressOpt,
    check_progress,
    common,
    input_error,
    rate_option,
    size_option,
    with_options,
)
from tmpup.cli_serve import serve
from tmpup.errors import ExitCode, Interrupted, TmpupError, UsageError, internal_error_message
from tmpup.runtime import GlobalOptions, Runtime

app = typer.Typer(
    name="tmpup",
    help="Upload files to temporary-file APIs (Qlik, tus, Thulium, Pyrus, KF5, Enterprise Tester).",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
profiles_app = typer.Typer(help="List, show and check configuration profiles.", no_args_is_help=False)
app.add_typer(profiles_app, name="profiles")


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
        bool, typer.Option("--resumable", help="Force a resumable (tus) upload.", show_default=False)
    ] = False,
    no_resume: Annotated[
        bool,
        typer.Option("--no-resume", help="Never resume, nor make resumable: one plain request.", show_default=False),
    ] = False,
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
            raise input_error(f"--ttl: {exc}") from None
        if ttl_seconds != int(ttl_seconds):
            raise input_error("--ttl must be whole seconds")
    if resumable and no_resume:
        raise UsageError("--resumable and --no-resume contradict each other; give one of them")
    chunk = size_option("--chunk-size", chunk_size)
    if chunk is not None and chunk < 1:
        raise UsageError("--chunk-size must be at least 1 byte")
    rate = rate_option(limit_rate)
    g = with_options(g, progress=check_progress(progress))
    rt = Runtime.build(g)
    command.run(
        rt,
        command.UploadRequest(
            files=files,
            name=name,
            ttl=int(ttl_seconds) if ttl_seconds is not None else None,
            jobs=jobs,
            chunk_size=chunk,
            resumable=True if resumable else (False if no_resume else None),
            checksum=checksum,
            limit_rate=rate,
        ),
    )


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

    if output is not None and not output.strip():
        raise UsageError("-o/--output is empty", hint="give a file or folder, '-' for stdout, or leave -o out")

    rt = Runtime.build(with_options(g, progress=check_progress(progress)))
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
    limit_rate: Annotated[
        str | None, typer.Option("--limit-rate", help="Cap the upload speed, e.g. 5M (bytes per second).")
    ] = None,
    progress: ProgressOpt = "auto",
    *,
    g: GlobalOptions,
) -> None:
    """Continue interrupted resumable uploads, or list/clean their records."""
    from tmpup.commands import resume as command

    chosen = sum(bool(x) for x in (target, all_, list_, clean))
    if chosen != 1:
        raise UsageError("give exactly one of FILE|ID, --all, --list or --clean")
    rate = rate_option(limit_rate)
    if rate is not None and (list_ or clean):
        raise UsageError("--limit-rate applies to continuing uploads, not to --list or --clean")
    rt = Runtime.build(with_options(g, progress=check_progress(progress)))
    if list_:
        command.list_records(rt)
    elif clean:
        command.clean(rt)
    else:
        command.resume(rt, None if all_ else target, limit_rate=rate)


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

    command.show(Runtime.build(with_options(g, profile=name or g.profile)))


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

    command.check(Runtime.build(with_options(g, profile=name or g.profile)))


@app.command()
@common
def providers(*, g: GlobalOptions) -> None:
    """List the providers and what each can do."""
    from tmpup.commands import profiles as command

    command.providers(Runtime.build(g))


app.command("serve")(serve)


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
    if "-h" in args or "--help" in args:
        _plain_help_off_a_terminal()

    code: int
    try:
        result = _app_for(args)(args=args, prog_name="tmpup", standalone_mode=False)
        code = int(result) if isinstance(result, int) else 0
    except TmpupError as exc:
        _cancel()
        _error(str(exc))  # an expected failure: its message is the whole story (--debug traces bugs only)
        code = int(exc.exit_code)
    except KeyboardInterrupt:
        _cancel()
        _error("interrupted")
        code = int(ExitCode.INTERRUPTED)
    except typer.Abort:
        _error("aborted")
        code = int(ExitCode.INTERRUPTED)
    except click_exc.UsageError as exc:
        message, hint = exc.format_message(), ""
        if exc.ctx is not None:
            hint = f" (see '{exc.ctx.command_path} --help')"
            commands = getattr(exc.ctx.command, "list_commands", None)
            if commands is not None and message == "Missing command.":
                # `tmpup` alone: the help is not a result (stdout) and not an error line; name the commands
                message = "missing command: one of " + ", ".join(commands(exc.ctx))
        _error(f"{message}{hint}")
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
        _error(internal_error_message(exc))
        if STATE["debug"]:
            traceback.print_exc()
        code = int(ExitCode.INTERNAL)
    return code


def _app_for(args: list[str]) -> typer.Typer:
    """The app as this run needs it: typer builds a click command for every registered subcommand
    on each run (~5 ms of reading signatures, a twentieth of a small upload's start-up), and a run
    that names its subcommand (or asks for --version only) uses one, or none.

    Anything else (no argument, `--help`, an unknown name, whose error lists the commands) gets
    the whole app. The copy shares everything with `app` but the lists of what it builds."""
    import copy

    if not args or (args[0].startswith("-") and args[0] != "--version"):
        return app
    if args[0] == "--version":
        commands, groups = [], []
    else:
        commands = [c for c in app.registered_commands if _command_name(c) == args[0]]
        groups = [g for g in app.registered_groups if g.name == args[0]]
        if not commands and not groups:
            return app
    lean = copy.copy(app)
    lean.registered_commands = commands
    lean.registered_groups = groups
    return lean


def _command_name(info: Any) -> str:
    """A registered command's name, as typer derives it (`get_command_name`)."""
    if info.name:
        return str(info.name)
    return str(info.callback.__name__).lower().replace("_", "-")


def _plain_help_off_a_terminal() -> None:
    """typer colours its help whenever FORCE_COLOR, PY_COLORS or GITHUB_ACTIONS is set, pipe or not:
    off a terminal, tmpup's help carries no escape sequence (DESIGN.md section 2: "No ANSI escape
    ever reaches a pipe or a log file")."""
    try:
        if sys.stdout.isatty():
            return
    except (AttributeError, ValueError):
        pass
    try:
        from typer import rich_utils
    except ImportError:  # pragma: no cover - typer without rich: plain help already
        return
    rich_utils.FORCE_TERMINAL = False


def _cancel() -> None:
    from tmpup.sources import CANCEL

    CANCEL.set()


def _error(text: str) -> None:
    from tmpup.output import printable

    try:
        sys.stderr.write(f"tmpup: error: {printable(text)}\n")
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):  # pragma: no cover - stderr gone
        pass
