"""The exception tree and the exit codes of DESIGN.md section 4.

Every failure tmpup reports is a `TmpupError`; the CLI's single error boundary turns it into one line
on stderr (`tmpup: error: ...`) and the exit code its class carries. Providers translate HTTP status
codes, API error bodies and `requests` exceptions into these at their own boundary, so commands never
see `requests` or raw JSON.

    TmpupError                      (1  INTERNAL, only as a base)
    ├── UsageError                  (2  bad option or argument)
    ├── ConfigError                 (3  profile / config file / credential; 3xx redirect, 407 proxy)
    │   └── UnexpectedAnswer        (3  the server does not answer as its API does, 405: wrong url?)
    ├── AuthError                   (4  401 / 403)
    ├── NotFoundError               (5  404, unknown id, no resume record)
    ├── GoneError                   (6  410, TTL passed)
    ├── InputError                  (7  bad file, bad TTL or name; 400/409/411/413/414/415/416/422
    │                                   and any other 4xx refusal of what was sent)
    ├── UnsupportedError            (8  provider lacks the operation)
    ├── IntegrityError              (9  size / checksum mismatch)
    ├── TransientError              (10 network, timeout, 408/423/425/429, 5xx after all retries)
    ├── LockedError                 (10 another tmpup process is feeding this upload)
    ├── PartialFailure              (11 some of several files failed; see several_failed)
    └── Interrupted                 (130 Ctrl-C / SIGTERM)
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar


class ExitCode(enum.IntEnum):
    OK = 0
    INTERNAL = 1
    USAGE = 2
    CONFIG = 3
    AUTH = 4
    NOT_FOUND = 5
    GONE = 6
    INPUT = 7
    UNSUPPORTED = 8
    INTEGRITY = 9
    TRANSIENT = 10
    PARTIAL = 11
    INTERRUPTED = 130


class TmpupError(Exception):
    """Base of every error tmpup reports to the user.

    `message` says what failed; `hint` says what to do next. Structured fields (`status`, `provider`,
    `url`) let callers and tests reason about the failure without parsing text.
    """

    exit_code: ClassVar[ExitCode] = ExitCode.INTERNAL

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        status: int | None = None,
        provider: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.status = status
        self.provider = provider
        self.url = url
        #: What continues the interrupted upload this error stopped (`tmpup resume ...`), if one was kept.
        self.resume_command: str | None = None

    def __str__(self) -> str:
        text = self.message
        if self.hint:
            text = f"{text}; {self.hint}"
        return text


class UsageError(TmpupError):
    exit_code = ExitCode.USAGE


class ConfigError(TmpupError):
    exit_code = ExitCode.CONFIG


class UnexpectedAnswer(ConfigError):
    """A server answered in a way its API never does (no token, wrong JSON, an odd status).

    Almost always the profile's url points at something else (a web page, a proxy, another API),
    so it is a configuration error: retrying would not help, fixing the url does.
    """

    def __init__(self, message: str, **kwargs: Any) -> None:
        if kwargs.get("hint") is None:
            kwargs["hint"] = "check the profile's url: it must point at the provider's API"
        super().__init__(message, **kwargs)


class AuthError(TmpupError):
    exit_code = ExitCode.AUTH


class NotFoundError(TmpupError):
    exit_code = ExitCode.NOT_FOUND


class GoneError(TmpupError):
    exit_code = ExitCode.GONE


class InputError(TmpupError):
    exit_code = ExitCode.INPUT


class UnsupportedError(TmpupError):
    exit_code = ExitCode.UNSUPPORTED


class IntegrityError(TmpupError):
    exit_code = ExitCode.INTEGRITY


class TransientError(TmpupError):
    exit_code = ExitCode.TRANSIENT


class PartialFailure(TmpupError):
    exit_code = ExitCode.PARTIAL


def several_failed(failed: list[TmpupError], total: int, what: str) -> TmpupError:
    """What ends a run of several items (files, records) some of which failed, each reported already.

    Exit 11 when some succeeded. When none did and all failed alike (one exit code: every file
    missing, the server down for all), that code: nothing succeeded, so it is not a partial success,
    and a script learns the reason it would have learnt from one file."""
    message = f"{len(failed)} of {total} {what} failed (each reported above)"
    if len(failed) == total and len({error.exit_code for error in failed}) == 1:
        return type(failed[0])(message)
    return PartialFailure(message)


class Interrupted(TmpupError):
    exit_code = ExitCode.INTERRUPTED


class LockedError(TmpupError):
    """Another tmpup process holds the resume record of this upload (overlapping cron runs)."""

    exit_code = ExitCode.TRANSIENT


def internal_error_message(exc: BaseException) -> str:
    """What a bug (an exception that is not a TmpupError) says: exit 1, and how to report it."""
    return (
        f"internal error: {type(exc).__name__}: {exc} — this is a bug; please report it with the output "
        "of the same command run with --debug"
    )


def error_for_status(
    status: int,
    message: str,
    *,
    provider: str | None = None,
    url: str | None = None,
    hint: str | None = None,
    method: str | None = None,
    profile: str | None = None,
    config: object | None = None,
) -> TmpupError:
    """Map an HTTP status to the error class (and so the exit code) of DESIGN.md section 4, with a
    hint at what to do next where the status says it (`method`: the request's; `profile`: the one in use)."""
    cls: type[TmpupError]
    if status in (401, 403):
        cls = AuthError
        import shlex

        check = f"tmpup profiles check {shlex.quote(profile)}" if profile else "tmpup profiles check"
        if config is not None:  # the --config this run was given: the profile is that file's
            check += f" --config {shlex.quote(str(config))}"
        hint = hint or f"check the profile's credentials ({check})"
    elif status == 404:
        cls = NotFoundError
        if method == "POST":
            hint = hint or "check the profile's url: it must point at the provider's API"
        else:
            hint = hint or "check the id (the service may also have deleted or expired it)"
    elif status == 410:
        cls = GoneError
        hint = hint or "the file has expired on the service; upload it again"
    elif status == 413:
        cls = InputError
        hint = hint or "the service refuses a request this large; see the provider's size limit in the README"
    elif status in (400, 411, 414, 415, 416, 422):
        cls = InputError
        hint = hint or _REFUSED
    elif status in (407,):
        cls = ConfigError  # the proxy wants credentials: HTTPS_PROXY=http://user:pass@host
        hint = hint or "the proxy asks for credentials: put them in HTTP(S)_PROXY (http://user:pass@proxy:port)"
    elif status == 429 or status >= 500 or status in (408, 423, 425):
        cls = TransientError
        hint = hint or "the service is busy or failing; try again later"
    elif 300 <= status < 400:
        # tmpup does not send an upload on to a redirect's target; the profile should name the real API.
        cls = ConfigError
        hint = hint or "the server redirects this request; set the profile's url to the address it redirects to"
    elif status == 405 or status < 300:
        # "Method not allowed" (or a success where an error was expected): not the API's endpoint.
        cls = UnexpectedAnswer
    else:
        cls = InputError  # another refusal of what was sent (409, 418, 451, ...)
        hint = hint or _REFUSED
    return cls(message, status=status, provider=provider, url=url, hint=hint)


#: What to do next about a refusal of what was sent, whose reason (the server's words) the message holds.
_REFUSED = "the service refused the request as sent; its answer says why, and -v shows the requests tmpup made"


def transport_reason(exc: BaseException) -> str:
    """tmpup's words for a network failure (the class names of requests and urllib3 mean nothing to users):
    for error lines and retry notes alike."""
    return known_transport_reason(exc) or "the connection broke"


def known_transport_reason(exc: BaseException) -> str | None:
    """`transport_reason` for the failures it recognises; None for any other, whose own text an error
    line may show instead (`providers.base`)."""
    import requests
    import urllib3

    text = str(exc)
    if (
        isinstance(exc, (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError))
        or "timed out" in text.lower()
    ):
        return "timed out"
    if "IncompleteRead" in text:
        return "the server closed the connection early"
    if "Connection reset" in text or "ConnectionResetError" in text:
        return "the connection was reset"
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "the host name does not resolve"
    if "RemoteDisconnected" in text or "Connection aborted" in text:
        return "the server closed the connection"
    return None
