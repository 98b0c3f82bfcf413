"""Shell completions: generated from the app, committed, and checked for drift and for behaviour."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, write_config
from tmpup.completions import GENERATORS, render


@pytest.mark.parametrize("shell", sorted(GENERATORS))
def test_committed_completions_match_the_app(shell: str) -> None:
    filename = GENERATORS[shell][0]
    committed = (REPO / "completions" / filename).read_text(encoding="utf-8")
    assert committed == render(shell), (
        f"completions/{filename} is stale: run `python -m tmpup.completions --write` and commit it"
    )


def bash_complete(line: str, env: dict[str, str]) -> list[str]:
    """Run the bash completion function the way bash does on TAB, and return its candidates."""
    words = line.split(" ")
    script = (
        f"source {REPO / 'completions' / 'tmpup.bash'}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        "_tmpup\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    bindir = str(Path(sys.executable).parent)
    proc = subprocess.run(
        ["bash", "--norc", "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, **env, "PATH": bindir + os.pathsep + os.environ["PATH"]},
        check=True,
    )
    return [w for w in proc.stdout.splitlines() if w]


def test_bash_completes_commands_options_and_profile_names(config_path: Path) -> None:
    assert shutil.which("bash")
    write_config(
        config_path,
        """
        [profiles.work]
        provider = "qlik"
        url = "https://a.qlikcloud.com"
        token_env = "X"

        [profiles.helpdesk]
        provider = "qlik"
        url = "https://b.qlikcloud.com"
        token_env = "Y"
        """,
    )
    env = {"TMPUP_CONFIG": str(config_path)}
    assert "upload" in bash_complete("tmpup up", env)
    assert {"--ttl", "--tus"} & set(bash_complete("tmpup upload --t", env)) == {"--ttl"}
    assert sorted(bash_complete("tmpup upload f -p ", env)) == ["helpdesk", "work"]
    assert bash_complete("tmpup profiles show h", env) == ["helpdesk"]
    assert set(bash_complete("tmpup download x --progress ", env)) == {"auto", "bar", "lines", "json", "none"}
    assert set(bash_complete("tmpup profiles ", env)) >= {"list", "show", "check"}


def need_shell(name: str) -> str:
    """The path of a shell; in CI (TMPUP_REQUIRE_PEERS=1) a missing one fails instead of skipping."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("TMPUP_REQUIRE_PEERS"):
            pytest.fail(f"{name} is not installed (.ci/run installs it with apt-get)")
        pytest.skip(f"{name} is not installed")
    return path


def test_zsh_script_parses() -> None:
    zsh = need_shell("zsh")
    subprocess.run([zsh, "-n", str(REPO / "completions" / "_tmpup")], check=True)


def test_zsh_profile_specs_call_a_helper_that_lists_the_profiles(config_path: Path) -> None:
    # Every `:profile:FUNC` spec must reach the function that lists profile names. A command's own
    # completion function named like the helper (`_tmpup_profiles` for `tmpup profiles`) once replaced it.
    zsh = need_shell("zsh")
    write_config(config_path, '[profiles.work]\nprovider = "qlik"\nurl = "https://a.qlikcloud.com"\ntoken = "t"\n')
    text = (REPO / "completions" / "_tmpup").read_text(encoding="utf-8")
    defined = re.findall(r"^(\w+)\(\) \{", text, flags=re.M)
    assert len(defined) == len(set(defined)), sorted(d for d in defined if defined.count(d) > 1)
    helpers = set(re.findall(r":profile:(\w+)", text))
    assert helpers, "no profile completion in the zsh script"
    # Load the functions (not the trailing `_tmpup "$@"`), then call each helper with a _describe that
    # prints the candidates it is given, as compsys would offer them.
    body = text.rsplit('_tmpup "$@"', 1)[0]
    for helper in sorted(helpers):
        script = f'{body}\n_describe() {{ print -l -- "${{(@P)4}}" }}\n{helper}\n'
        bindir = str(Path(sys.executable).parent)
        env = {**os.environ, "TMPUP_CONFIG": str(config_path), "PATH": bindir + os.pathsep + os.environ["PATH"]}
        out = subprocess.run([zsh, "-f", "-c", script], capture_output=True, text=True, env=env, check=True).stdout
        assert out.split() == ["work"], (helper, out)


def test_fish_completes_commands_and_options() -> None:
    fish = need_shell("fish")
    script = f"source {REPO / 'completions' / 'tmpup.fish'}; complete -C 'tmpup upl'; complete -C 'tmpup upload --tt'"
    out = subprocess.run([fish, "--no-config", "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0].startswith("upload\t")
    assert any(line.startswith("--ttl\t") for line in out.splitlines())
