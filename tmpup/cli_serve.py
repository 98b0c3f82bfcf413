"""`tmpup serve`: the local emulator of all six provider APIs, as a command (DESIGN.md section 6).

Its options are its own (no profile, no credentials of a user): where to listen, TLS, limits, and
the demo credentials each mount accepts. The emulator itself loads only when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tmpup.cli_options import size_option
from tmpup.errors import UsageError


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

    Every credential option can also come from its TMPUP_EMULATOR_* environment variable, shown with each option.

    Prefer that for secrets: a command line shows in `ps` and in shell history.
    """
    from tmpup.units import parse_duration

    size = size_option("--max-size", max_size)
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
    if data_dir is not None:
        _check_data_dir(Path(data_dir))
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


def _check_data_dir(path: Path) -> None:
    """--data-dir must be a folder the emulator can write: made when missing, refused (exit 2) otherwise."""
    import tempfile

    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        not_a_folder = path.exists() and not path.is_dir()
        what = "is not a folder" if not_a_folder else f"cannot be written ({exc.strerror or exc})"
        raise UsageError(f"--data-dir {path} {what}", hint="give a folder the emulator may write to") from None
