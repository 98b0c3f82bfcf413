"""The README's examples that a newcomer copies first keep working: the emulator profiles of every
provider (Quickstart) pass `tmpup profiles check` and round-trip a file."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, make_file, run, write_config

README = (REPO / "README.md").read_text(encoding="utf-8")


def emulator_profiles() -> str:
    """The TOML block of the Quickstart that points every provider at the emulator."""
    blocks = re.findall(r"```toml\n(.*?)```", README, flags=re.S)
    (block,) = [b for b in blocks if "127.0.0.1:8470/tus/files/" in b]
    return block


def test_the_quickstart_profiles_name_every_provider() -> None:
    from tmpup.providers import PROVIDERS

    providers = re.findall(r'^provider = "([\w-]+)"', emulator_profiles(), flags=re.M)
    assert sorted(providers) == sorted(PROVIDERS)


@pytest.mark.parametrize("name", ["work", "files", "helpdesk", "pyrus", "kf5", "et"])
def test_the_quickstart_profiles_work_against_the_emulator(
    name: str, emulator: Any, config_path: Path, tmp_path: Path
) -> None:
    write_config(config_path, emulator_profiles().replace("http://127.0.0.1:8470", emulator.url))
    checked = run("profiles", "check", name)
    assert checked.code == 0, checked.err
    assert checked.err == ""  # chmod 600, as the README says: no warning
    uploaded = run("upload", str(make_file(tmp_path / "hello.txt", 1000)), "-p", name, "--progress", "none")
    assert uploaded.code == 0, uploaded.err
    assert len(uploaded.lines) == 1


def test_the_quickstart_demo_command_round_trips_and_exits_0(tmp_path: Path) -> None:
    """The Quickstart's one command, run as a newcomer runs it: a real process, from the repository,
    in a shell that still exports the TMPUP_* variables of the README's next step (pointing at a server
    that is not there). The demo must use its own emulator and profile, and exit 0."""
    import subprocess
    import sys

    (command,) = {m for m in re.findall(r"(\S*python\S* -m tmpup\.demo)", README)}
    assert command.endswith("python -m tmpup.demo")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TMPUP_")},
        "TMPUP_PROVIDER": "qlik",
        "TMPUP_URL": "http://127.0.0.1:9/qlik",  # nothing listens there
        "TMPUP_TOKEN": "left-over",
        "TMPUP_PROFILE": "work",
        "HOME": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "tmpup.demo"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "round trip OK" in done.stdout and "Traceback" not in done.stderr
    assert "127.0.0.1:9/" not in done.stdout + done.stderr
