"""The config file: where it is, reading it (bounded, pipes allowed), parsing the TOML, and finding the
line of a profile or key for error messages. What the values mean is `tmpup.config`'s job.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tmpup.errors import ConfigError

_TOP_LEVEL_KEYS = {"default_profile", "profiles"}
#: The name of the file-less profile that `TMPUP_PROVIDER` and friends define; no file profile may take it.
ENV_PROFILE_NAME = "env"


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
        """The line of `[profiles.NAME]` (or of KEY inside it: `KEY = ...`, a dotted `KEY.x = ...`, or
        its own `[profiles.NAME.KEY]` table), for error messages."""
        lines = self.text.splitlines()
        name = rf"\s*profiles\s*\.\s*(\"{re.escape(profile)}\"|{re.escape(profile)})\s*"
        header = re.compile(rf"^\s*\[{name}\]")
        start = next((i for i, line in enumerate(lines) if header.match(line)), None)
        if key is None:
            return None if start is None else start + 1
        quoted = rf"(\"{re.escape(key)}\"|{re.escape(key)})"
        table = re.compile(rf"^\s*\[{name}\.\s*{quoted}\s*\]")
        found = next((i for i, line in enumerate(lines) if table.match(line)), None)
        if found is not None:
            return found + 1
        if start is None:
            return None
        key_re = re.compile(rf"^\s*{quoted}\s*(=|\.)")
        for i in range(start + 1, len(lines)):
            if lines[i].lstrip().startswith("["):
                break
            if key_re.match(lines[i]):
                return i + 1
        return start + 1

    def top_line(self, key: str) -> int | None:
        """The line of a top-level KEY (`default_profile = ...`, or a `[KEY...]` table), for error messages."""
        pattern = re.compile(rf"^\s*(\[\s*)?[\"']?{re.escape(key)}[\"']?\s*(=|\]|\.)")
        in_table = False
        for i, row in enumerate(self.text.splitlines()):
            match = pattern.match(row)
            if match and (match.group(1) or not in_table):
                return i + 1
            in_table = in_table or row.lstrip().startswith("[")
        return None


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
    text = read_text(where, MAX_CONFIG_BYTES, f"config file {where}")
    # Imported here: a CI job's profile from TMPUP_* variables alone reads no file (~1 ms of start-up).
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {where} is not valid TOML: {exc}") from None
    cfg = ConfigFile(where, True, data, text)
    unknown = sorted(set(data) - _TOP_LEVEL_KEYS)
    if unknown:
        key = unknown[0]
        line = cfg.top_line(key)
        raise ConfigError(
            f"{where}" + (f":{line}" if line else "") + f": unknown top-level key {key!r}",
            hint="only 'default_profile' and [profiles.NAME] tables belong at the top",
        )
    profiles = data.get("profiles", {})
    if not isinstance(profiles, Mapping) or any(not isinstance(v, Mapping) for v in profiles.values()):
        raise ConfigError(f"{where}: 'profiles' must hold tables, e.g. [profiles.work]")
    default = data.get("default_profile")
    if default is not None and (not isinstance(default, str) or not default):
        line = cfg.top_line("default_profile")
        raise ConfigError(
            f"{where}" + (f":{line}" if line else "") + ": default_profile must be a profile name (a non-empty string)"
        )
    if ENV_PROFILE_NAME in profiles:
        # `-p env` picks the environment profile, and `profiles list` shows it as `env`: a file's profile
        # of that name could not be told apart from it.
        line = cfg.line_of(ENV_PROFILE_NAME)
        raise ConfigError(
            f"{where}" + (f":{line}" if line else "") + f" profile {ENV_PROFILE_NAME!r}: the name "
            f"{ENV_PROFILE_NAME!r} belongs to the environment profile (TMPUP_PROVIDER, TMPUP_URL, ...)",
            hint="rename the profile, e.g. [profiles.staging]",
        )
    return cfg


#: Bounds on what tmpup reads as configuration: a config path pointing at /dev/zero or a huge file
#: must be an error, not an exhausted memory.
MAX_CONFIG_BYTES = 1024 * 1024
MAX_SECRET_BYTES = 64 * 1024


def read_text(path: Path, limit: int, label: str, prefix: str = "") -> str:
    """The UTF-8 text of a file of at most `limit` bytes; errors read "PREFIX... LABEL ..."."""
    try:
        raw = read_bounded(path, limit)
    except OSError as exc:
        raise ConfigError(f"{prefix}cannot read {label}: {exc.strerror or exc}") from None
    if raw is None:
        raise ConfigError(f"{prefix}{label} is larger than {limit // 1024} KiB; is it the right file?")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{prefix}{label} is not UTF-8 text") from None


def read_bounded(path: Path, limit: int) -> bytes | None:
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
