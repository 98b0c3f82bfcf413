"""The commands the benchmark runs: tmpup with a file-less profile (`TMPUP_*` variables), and its
yardsticks (curl, tuspy, a bare-socket tus upload, `python -c "import requests"`).
tests/test_bench.py runs the same builders.

Every builder returns a `Command`: its argv list (several argvs for "200 curl processes") and the
environment to run it in. The environment is isolated: HOME, the XDG dirs and `TMPUP_STATE_DIR`
point into the work dir, `TMPUP_CONFIG` at a file that does not exist, and no `TMPUP_*` variable of
the caller's leaks in.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.servers import BENCH, ROOT

QLIK_TOKEN = "bench-token"
PYRUS_TOKEN = "bench-pyrus-token"
TUSPY_CHUNK = 64 * 1024 * 1024  # what issue 6 measured tuspy with


@dataclass
class Command:
    label: str
    argvs: list[list[str]]
    env: dict[str, str] = field(default_factory=dict)
    #: stderr on a pseudo-terminal (bench/launch.py): a progress bar drawn as on a user's screen
    terminal: bool = False


def python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def tmpup() -> list[str]:
    script = ROOT / ".venv" / "bin" / "tmpup"
    return [str(script)] if script.exists() else [python(), "-m", "tmpup"]


def base_env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TMPUP_")}
    home = workdir / "home"
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_STATE_HOME=str(home / ".local" / "state"),
        XDG_CACHE_HOME=str(home / ".cache"),
        TMPUP_STATE_DIR=str(workdir / "state"),
        TMPUP_CONFIG=str(workdir / "no-config.toml"),
        NO_COLOR="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.pop("PYTHONPATH", None)
    return env


def profile_env(workdir: Path, provider: str, url: str) -> dict[str, str]:
    """A file-less tmpup profile for `provider` at `url` (the sink's base URL, or a tus creation URL)."""
    env = base_env(workdir)
    env["TMPUP_PROVIDER"] = provider
    if provider == "qlik":
        env.update(TMPUP_URL=f"{url}/qlik", TMPUP_TOKEN=QLIK_TOKEN)
    elif provider == "pyrus":
        # Files over 250 MiB are refused by default (Pyrus's documented limit); the sink takes any size.
        env.update(TMPUP_URL=f"{url}/pyrus", TMPUP_LOGIN="bench@example.com", TMPUP_SECURITY_KEY="bench-key")
        env["TMPUP_MAX_SIZE"] = "1T"
    elif provider == "enterprise-tester":
        env.update(TMPUP_URL=f"{url}/et", TMPUP_USERNAME="bench", TMPUP_PASSWORD="bench")
    elif provider == "tus":
        env["TMPUP_URL"] = url
    else:
        raise ValueError(provider)
    return env


# -- tmpup -------------------------------------------------------------------------------------


def tmpup_upload(
    label: str,
    workdir: Path,
    provider: str,
    url: str,
    files: list[Path],
    *,
    progress: str = "bar",
    extra: tuple[str, ...] = (),
) -> Command:
    argv = [*tmpup(), "upload", *map(str, files), "--progress", progress, *extra]
    if provider == "qlik":
        argv.append("--no-resume")  # a raw POST: Qlik would take tus above 64 MiB otherwise
    return _drawn(Command(label, [argv], profile_env(workdir, provider, url)), progress)


def tmpup_download(label: str, workdir: Path, url: str, name: str, out: Path, *, progress: str = "bar") -> Command:
    argv = [*tmpup(), "download", name, "-o", str(out), "--force", "--progress", progress]
    return _drawn(Command(label, [argv], profile_env(workdir, "qlik", url)), progress)


def _drawn(command: Command, progress: str) -> Command:
    """A bar is measured where users see it: on a terminal, which it redraws in place eight times a
    second (off a terminal it prints its final state once)."""
    if progress == "bar":
        command.terminal = True
        command.env["TERM"] = "xterm-256color"
    return command


def tmpup_startup(label: str, workdir: Path, *args: str) -> Command:
    return Command(label, [[*tmpup(), *args]], base_env(workdir))


# -- yardsticks --------------------------------------------------------------------------------

CURL = ["curl", "-sS", "--fail", "-o", os.devnull]


def curl_raw(url: str, files: list[Path], label: str = "curl -T") -> Command:
    """One curl process per file (`curl -T` is a PUT; the sink's Qlik route takes PUT like POST)."""
    auth = ["-H", f"Authorization: Bearer {QLIK_TOKEN}"]
    argvs = [[*CURL, *auth, "-T", str(f), f"{url}/qlik/api/v1/temp-contents?filename={f.name}&ttl=3600"] for f in files]
    return Command(label, argvs, dict(os.environ))


def curl_form_pyrus(url: str, file: Path) -> Command:
    argv = [*CURL, "-H", f"Authorization: Bearer {PYRUS_TOKEN}", "-F", f"file=@{file}", f"{url}/pyrus/v4/files/upload"]
    return Command("curl -F", [argv], dict(os.environ))


def curl_form_et(url: str, set_id: str, file: Path) -> Command:
    # Enterprise Tester takes multipart/mixed; curl keeps its boundary when -H overrides the type.
    argv = [
        *CURL,
        "-u",
        "bench:bench",
        "-H",
        "Content-Type: multipart/mixed",
        "-F",
        f"{file.name}=@{file}",
        f"{url}/et/api/temporaryattachmentset/{set_id}",
    ]
    return Command("curl -F", [argv], dict(os.environ))


def curl_patch(upload_url: str, file: Path) -> Command:
    headers = ["Tus-Resumable: 1.0.0", "Upload-Offset: 0", "Content-Type: application/offset+octet-stream"]
    argv = [*CURL, *(x for h in headers for x in ("-H", h)), "-X", "PATCH", "-T", str(file), upload_url]
    return Command("curl PATCH", [argv], dict(os.environ))


def tuspy(create_url: str, file: Path, chunk: int = TUSPY_CHUNK) -> Command:
    argv = [python(), str(BENCH / "tuspy_upload.py"), create_url, str(file), str(chunk)]
    return Command(f"tuspy {chunk // 1024 // 1024} MiB", [argv], dict(os.environ))


def bare_tus(create_url: str, file: Path) -> Command:
    """A tus upload with a bare socket: the ceiling of any Python client (bench/bare_tus.py)."""
    argv = [python(), str(BENCH / "bare_tus.py"), create_url, str(file)]
    return Command("bare socket (Python)", [argv], dict(os.environ))


def curl_download(url: str, name: str, out: Path) -> Command:
    argv = ["curl", "-sS", "--fail", "-H", f"Authorization: Bearer {QLIK_TOKEN}", "-o", str(out)]
    return Command("curl -o", [[*argv, f"{url}/qlik/api/v1/temp-contents/{name}"]], dict(os.environ))


def python_import_requests() -> Command:
    return Command('python -c "import requests"', [[python(), "-c", "import requests"]], dict(os.environ))


def curl_version() -> Command:
    return Command("curl --version", [["curl", "--version"]], dict(os.environ))
