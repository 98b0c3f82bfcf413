"""The provider interface: metadata, the abstract core, optional capabilities, and result types.

A provider is a class whose metadata are class attributes (`id`, `description`, `keys`) and whose
core is `upload()`. What some APIs offer and others do not is expressed as separate protocols
(`Downloadable`, `Describable`, `Deletable`, `MultiUploader`) that the commands check with
`isinstance`; a missing capability becomes an `UnsupportedError` (exit 8) naming the provider and the
operation. The HTTP session, the progress sink and the clock are injected, never created here.

Each provider translates its API's error bodies and `requests` exceptions into `TmpupError`s at its
own boundary (see `Provider.check_response` and `Provider.transport_errors`), so commands
never see `requests` or raw JSON.
"""

from __future__ import annotations

import abc
import contextlib
import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

from tmpup.errors import (
    ConfigError,
    InputError,
    TmpupError,
    TransientError,
    UnsupportedError,
    error_for_status,
    known_transport_reason,
    transport_reason,
)
from tmpup.units import MAX_RETRIES

if TYPE_CHECKING:
    from pathlib import Path

    import requests

    from tmpup.config import Settings
    from tmpup.pacing import RateRule
    from tmpup.progress import Task
    from tmpup.retry import Retrier
    from tmpup.sources import Source
    from tmpup.state import StateStore

KeyKind = Literal["str", "url", "int", "size", "duration", "bool", "table", "path"]


@dataclass(frozen=True)
class KeySpec:
    """One profile key a provider understands."""

    name: str
    kind: KeyKind = "str"
    required: bool = False
    secret: bool = False
    default: Any = None
    help: str = ""
    positive: bool = False  # a number that must be above zero (a timeout of 0 would mean "fail at once")
    whole: bool = False  # a duration in whole seconds (an API that takes an integer TTL)
    maximum: float | None = None  # the largest sensible number (100 retries: beyond, a typo or a loop)
    #: A url key that may keep a `?query`: a full endpoint used as given (tus creation URL, Pyrus
    #: auth_url). Other url keys are bases tmpup appends API paths to, so a query is refused there.
    query: bool = False


#: Keys every profile accepts, whatever its provider.
COMMON_KEYS: tuple[KeySpec, ...] = (
    KeySpec(
        "timeout", "duration", default=60.0, positive=True, help="seconds to wait for the server (connect and read)"
    ),
    KeySpec("retries", "int", default=5, maximum=MAX_RETRIES, help="retries of a failed request (network, 429, 5xx)"),
    KeySpec("ca_bundle", "path", help="a PEM file of CA certificates to trust"),
    KeySpec("insecure", "bool", default=False, help="turn TLS certificate verification off"),
)


@dataclass(frozen=True)
class UploadOptions:
    """What the user asked of one upload, independent of the provider."""

    name: str
    ttl: int | None = None
    chunk_size: int | None = None
    resumable: bool | None = None  # None = provider decides; True = --resumable; False = --no-resume
    checksum: bool = False
    #: where `ttl` came from when not from --ttl (`FILE:LINE profile 'x': ttl`, `TMPUP_TTL`), for messages
    ttl_origin: str | None = None
    #: where `chunk_size` came from when not from --chunk-size (a profile, `TMPUP_CHUNK_SIZE`): a setting
    #: for the uploads that go resumable, which a small one-request upload ignores without a warning
    chunk_size_origin: str | None = None


@dataclass
class UploadResult:
    """What a provider answers for one uploaded file (section 2's JSON fields come from it)."""

    id: str | None
    name: str
    size: int
    token: str | None = None
    url: str | None = None
    expires_at: dt.datetime | None = None
    resumed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RemoteFile:
    """An open download: the body streams from `chunks`; `offset` is where it starts in the file."""

    name: str | None
    size: int | None
    offset: int
    chunks: Iterator[bytes]
    close: Callable[[], None] = lambda: None
    #: What identifies this version of the file (`size`, `etag`, `last_modified`, None where the server
    #: says nothing): kept with a `.part`, so that a later `--continue` knows it continues the same bytes.
    validator: dict[str, Any] | None = None


@dataclass
class Info:
    """What `tmpup info` shows: ordered fields, plus whether it came from the server or a receipt."""

    id: str
    fields: dict[str, Any]
    source: Literal["server", "receipt"] = "server"


@runtime_checkable
class Downloadable(Protocol):
    def open_download(self, id: str, *, offset: int = 0) -> RemoteFile: ...


@runtime_checkable
class Describable(Protocol):
    def info(self, id: str) -> Info: ...


@runtime_checkable
class Deletable(Protocol):
    def delete(self, id: str) -> None: ...


@runtime_checkable
class MultiUploader(Protocol):
    """Providers that send several files in one request (Enterprise Tester's multipart/mixed)."""

    def upload_many(
        self, sources: list[Source], options: list[UploadOptions], tasks: list[Task]
    ) -> list[UploadResult]: ...


@dataclass
class ProviderEnv:
    """The edges a provider gets from outside: session, retry policy, clock, state, a warning sink."""

    session: requests.Session
    retrier: Retrier
    state: StateStore
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)
    warn: Callable[[str], None] = lambda message: None
    profile: str = ""
    #: The `--config` this run was given (None: the default file or $TMPUP_CONFIG), so a printed resume
    #: command finds the same profile.
    config: Path | None = None


class Provider(abc.ABC):
    """A temporary-file API. Subclasses set the class attributes and implement `upload`."""

    id: ClassVar[str]
    description: ClassVar[str]
    keys: ClassVar[tuple[KeySpec, ...]] = ()
    #: Which result field a user pastes next (printed in human mode).
    handle: ClassVar[Literal["id", "token", "url"]] = "id"
    #: Whether interrupted uploads continue where they stopped (tus), so `tmpup resume` applies.
    resumable: ClassVar[bool] = False
    #: Documented per-provider request budget (requests, per seconds) for client-side pacing of all requests;
    #: `rate_rules` refines it per method and path (first match wins, before `rate_limit`).
    rate_limit: ClassVar[tuple[int, float] | None] = None
    rate_rules: ClassVar[tuple[RateRule, ...]] = ()

    @classmethod
    def pacing(cls) -> tuple[RateRule, ...]:
        from tmpup.pacing import RateRule

        rules = cls.rate_rules
        if cls.rate_limit is not None:
            rules = (*rules, RateRule(cls.rate_limit[0], cls.rate_limit[1]))
        return rules

    def __init__(self, settings: Settings, env: ProviderEnv) -> None:
        self.settings = settings
        self.env = env

    @abc.abstractmethod
    def upload(self, source: Source, options: UploadOptions, task: Task) -> UploadResult:
        """Upload one file, streaming it and reporting progress to `task`."""

    def check_options(self, options: UploadOptions) -> None:
        """Refuse options this API cannot take (e.g. a TTL out of range) before anything is read or sent."""
        return None

    def check_download_id(self, id: str) -> None:
        """Refuse an id this API cannot download by, before anything local is looked at or written."""
        return None

    def check(self) -> str:
        """Reach the service and prove the credentials work; return a one-line description."""
        raise UnsupportedError(f"provider {self.id!r} cannot check a profile without uploading", provider=self.id)

    # -- helpers shared by the providers ------------------------------------------------------

    def unsupported(self, operation: str, why: str = "") -> UnsupportedError:
        detail = f": {why}" if why else ""
        return UnsupportedError(
            f"the {self.id} provider cannot {operation}{detail}",
            provider=self.id,
            hint="run 'tmpup providers' to see what each provider can do",
        )

    def error_message(self, response: requests.Response) -> str | None:
        """The human text of an API error body; providers override for their envelope."""
        return None

    def check_response(self, response: requests.Response, *, ok: tuple[int, ...] = (200,)) -> None:
        """Raise the right `TmpupError` unless `response.status_code` is one of `ok`."""
        if response.status_code in ok:
            return
        from tmpup.http import describe_body, redact_url

        try:
            detail = self.error_message(response)
        except (ValueError, KeyError, TypeError, AttributeError):
            detail = None
        if detail is None:
            detail = describe_body(response)
        request = response.request
        method = request.method if request is not None else "?"
        url = redact_url(response.url)
        message = f"{self.id}: {method} {url} answered {response.status_code} {response.reason or ''}".rstrip()
        if 300 <= response.status_code < 400 and response.headers.get("Location"):
            from urllib.parse import urljoin

            detail = f"a redirect to {redact_url(urljoin(response.url, response.headers['Location']))}"
        if detail:
            message = f"{message}: {detail}"
        err = error_for_status(
            response.status_code,
            message,
            provider=self.id,
            url=url,
            method=method,
            profile=self.settings.profile,
            config=self.env.config,
        )
        if response.status_code in (429, 503) and response.headers.get("Retry-After"):
            err.hint = f"the server asks to retry after {response.headers['Retry-After']}s"
        raise err

    def json_body(self, response: requests.Response) -> Any:
        """Decode a JSON answer, turning an HTML page or garbage into a clear error."""
        from tmpup.http import describe_body, redact_url

        try:
            return response.json()
        except ValueError:
            described = describe_body(response) or "an empty body"
            message = (
                f"{self.id}: {redact_url(response.url)} answered {response.status_code} with "
                f"{described} instead of JSON"
            )
            if described == "an HTML page":
                # A web page where the API should be: the profile's url points at the wrong place.
                raise ConfigError(
                    message, hint="check the profile's url (it must point at the API)", provider=self.id
                ) from None
            raise TransientError(message, hint="the answer was cut or garbled; try again", provider=self.id) from None

    @contextlib.contextmanager
    def transport_errors(self, what: str) -> Iterator[None]:
        """Translate `requests` exceptions raised inside the block into `TmpupError`s."""
        import requests

        from tmpup.http import redact_url

        try:
            yield
        except requests.exceptions.SSLError as exc:
            # Exit 3, not 10: waiting does not make a certificate trusted; a CA bundle (or the right url) does.
            bundle = self.settings.get("ca_bundle")
            hint = (
                # The bundle given does not vouch for this server: naming the option again would not help.
                f"the CA bundle {bundle} does not hold the CA that signed this server's certificate: "
                "add that CA to it, or check the profile's url"
                if bundle and "verify failed" in str(exc)
                else "pass --ca-bundle FILE for a private CA (or --insecure to skip verification)"
            )
            message = f"{self.id}: TLS failure during {what}: {_short(exc)}"
            raise ConfigError(message, hint=hint, provider=self.id) from exc
        except requests.exceptions.InvalidURL as exc:
            raise InputError(f"{self.id}: invalid URL during {what}: {_short(exc)}") from exc
        except requests.exceptions.TooManyRedirects as exc:
            raise ConfigError(
                f"{self.id}: {what} failed: the server redirects in a loop",
                hint="check the profile's url",
                provider=self.id,
            ) from exc
        except UnicodeEncodeError:
            # http.client writes header values as Latin-1: a Bearer token or an extra header beyond it.
            raise ConfigError(
                f"{self.id}: {what} failed: a credential or header holds characters HTTP headers cannot carry",
                hint="check the profile's secrets and headers (Latin-1 only in a header)",
                provider=self.id,
            ) from None
        except requests.exceptions.InvalidHeader:
            # requests' message quotes the header's value, which may be a credential: never show it.
            raise ConfigError(
                f"{self.id}: {what} failed: a header value is not valid (a line break in a credential?)",
                hint="check the profile's secrets and headers",
                provider=self.id,
            ) from None
        except requests.exceptions.ProxyError as exc:
            raise _proxy_error(self.id, what, exc) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            url = redact_url(exc.request.url) if exc.request is not None and exc.request.url else ""
            hint = "check the network and the profile's url"
            if what == "upload" or what.startswith("tus "):  # only an upload can have kept a record
                hint += "; resumable state, if any, was kept"
            raise TransientError(
                f"{self.id}: {what} failed{' at ' + url if url else ''}: {_short(exc)}",
                hint=hint,
                provider=self.id,
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise TransientError(f"{self.id}: {what} failed: {_short(exc)}", provider=self.id) from exc


def _proxy_error(provider: str, what: str, exc: BaseException) -> TmpupError:
    """A proxy (HTTPS_PROXY / HTTP_PROXY) that could not be reached or refused the tunnel. Its text is
    urllib3's nested repr, and the proxy URL may hold a password: only the status is taken from it."""
    import re

    found = re.search(r"Tunnel connection failed: (\d{3})", str(exc))
    status = int(found.group(1)) if found else None
    if status == 407:
        return ConfigError(
            f"{provider}: {what} failed: the proxy asks for credentials (407)",
            hint="put them in HTTPS_PROXY / HTTP_PROXY (http://user:pass@proxy:port), or check them",
            provider=provider,
            status=407,
        )
    if status is not None:
        return TransientError(
            f"{provider}: {what} failed: the proxy refused to open a connection to the server ({status})",
            hint="check the proxy (HTTPS_PROXY / HTTP_PROXY) and that it may reach this host",
            provider=provider,
            status=status,
        )
    return TransientError(
        f"{provider}: {what} failed: cannot reach the proxy ({transport_reason(exc)})",
        hint="check HTTPS_PROXY / HTTP_PROXY (NO_PROXY lists the hosts reached without it)",
        provider=provider,
    )


def _short(exc: BaseException) -> str:
    """One line from a `requests`/urllib3 exception, whose text is often a nested repr: the words of
    `errors.transport_reason` for the network failures it knows, else the exception's own text."""
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "the server's certificate is not trusted (certificate verify failed)"
    return known_transport_reason(exc) or " ".join(text.split())[:300]
