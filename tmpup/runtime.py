"""Assembles one run: settings, HTTP session, retry policy, provider, state, output and progress.

The CLI parses options into `GlobalOptions` and calls `Runtime.build`; commands receive the runtime
and never construct their own edges, so tests can build a runtime with any of them replaced.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tmpup.output import Messages, Output
from tmpup.progress import NullProgress, Progress, make_progress, resolve_mode
from tmpup.state import StateStore, default_state_dir

if TYPE_CHECKING:
    from tmpup.config import Settings
    from tmpup.providers.base import Provider


@dataclass(frozen=True)
class GlobalOptions:
    """Options every command accepts (after the subcommand)."""

    profile: str | None = None
    config: Path | None = None
    json: bool = False
    quiet: bool = False
    verbose: bool = False
    debug: bool = False
    timeout: float | None = None
    retries: int | None = None
    insecure: bool = False
    ca_bundle: str | None = None
    progress: str = "auto"
    #: Profile keys set on the command line (e.g. ttl, chunk_size), highest precedence.
    overrides: Mapping[str, Any] = field(default_factory=dict)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass
class Runtime:
    options: GlobalOptions
    messages: Messages
    output: Output
    state: StateStore
    env: Mapping[str, str]
    clock: Callable[[], dt.datetime] = utcnow
    progress: Progress = field(default_factory=NullProgress)
    _settings: Settings | None = None
    _provider: Provider | None = None

    @classmethod
    def build(cls, options: GlobalOptions, env: Mapping[str, str] | None = None) -> Runtime:
        env = dict(os.environ) if env is None else env
        messages = Messages(quiet=options.quiet, verbose=options.verbose or options.debug)
        mode = resolve_mode(options.progress, quiet=options.quiet)
        return cls(
            options=options,
            messages=messages,
            output=Output(json_mode=options.json),
            state=StateStore(default_state_dir(env), notify=messages.debug),
            env=env,
            progress=make_progress(mode),
        )

    def with_profile(self, profile: str) -> Runtime:
        """The same run on another profile (a resume record names the profile it was made with)."""
        import dataclasses

        from tmpup.config import ENV_PROFILE_NAME

        name = None if profile == ENV_PROFILE_NAME else profile
        if name == self.options.profile and self._settings is not None:
            return self
        options = dataclasses.replace(self.options, profile=name)
        return dataclasses.replace(self, options=options, _settings=None, _provider=None)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from tmpup.config import load_settings

            opts = self.options
            overrides: dict[str, Any] = dict(opts.overrides)
            overrides.update(
                {
                    "timeout": opts.timeout,
                    "retries": opts.retries,
                    "ca_bundle": opts.ca_bundle,
                    "insecure": True if opts.insecure else None,
                }
            )
            self._settings = load_settings(
                profile=opts.profile,
                config_path=opts.config,
                options=overrides,
                env=self.env,
                warn=self.messages.warn,
            )
        return self._settings

    @property
    def provider(self) -> Provider:
        if self._provider is None:
            self._provider = self.make_provider(self.settings)
        return self._provider

    def make_provider(self, settings: Settings) -> Provider:
        from tmpup.http import HttpOptions, make_session
        from tmpup.providers import provider_class
        from tmpup.providers.base import ProviderEnv
        from tmpup.retry import Retrier

        log = self.messages.debug if (self.options.verbose or self.options.debug) else None
        cls = provider_class(settings.provider)
        session = make_session(
            HttpOptions(
                timeout=settings.timeout,
                ca_bundle=settings.get("ca_bundle"),
                insecure=bool(settings.get("insecure", False)),
            ),
            log=log,
            debug=self.options.debug,
            warn=self.messages.warn,
            rate_rules=cls.pacing(),
        )
        retrier = Retrier(settings.retries, notify=self.messages.debug if self.options.quiet else self.messages.note)
        env = ProviderEnv(
            session=session,
            retrier=retrier,
            state=self.state,
            clock=self.clock,
            warn=self.messages.warn,
            profile=settings.profile,
            config=self.options.config,
        )
        return cls(settings, env)
