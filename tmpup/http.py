"""The one `requests.Session` factory, and redaction of credentials in logs.

- Timeouts: every request gets (connect, read) timeouts from the settings.
- Retries are `tmpup.retry`'s (`Retrier`); client-side rate limits are `tmpup.pacing`'s.
- TLS verification is always on unless `insecure` (which warns); `ca_bundle` adds a private CA.
- `--verbose` logs one line per request and response; `--debug` adds headers. Authorization and
  cookies are masked, and so are query parameters whose names suggest a secret.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests
import requests.adapters

from tmpup import __version__
from tmpup.headers import is_secret_name
from tmpup.pacing import RateLimiter, RateRule

USER_AGENT = f"tmpup/{__version__}"
#: Headers that may follow a redirect to another origin; every other header (credentials, a tus
#: profile's extra `headers`) stays with the origin the profile names.
_PORTABLE_HEADERS = {
    "user-agent",
    "accept",
    "accept-encoding",
    "connection",
    "content-type",
    "content-length",
    "range",
    "if-range",
    "tus-resumable",
    "upload-offset",
    "upload-length",
    "upload-metadata",
    "upload-defer-length",
}
#: An answer tmpup reads whole (not streamed) is an API's JSON or error text: far below this. A bigger
#: (or endless) body is a wrong URL or a broken server, refused before it fills the memory.
MAX_BODY = 16 * 1024 * 1024


@dataclass(frozen=True)
class HttpOptions:
    timeout: float = 60.0
    ca_bundle: str | None = None
    insecure: bool = False
    pool_size: int = 32  # keep-alive connections per host: one per `-j` worker (upload.MAX_JOBS)


def redact_url(url: str | None) -> str:
    """The URL without user info and with secret-looking query values masked."""
    if not url:
        return ""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "****" if is_secret_name(k) else v) for k, v in pairs])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_headers(headers: Any) -> dict[str, str]:
    # Authorization, Cookie, X-Api-Key, and any header whose name suggests a credential (a tus
    # profile's extra `headers` may carry X-Auth-Token, X-Tenant-Key, ...).
    return {str(k): ("****" if is_secret_name(str(k)) else str(v)) for k, v in dict(headers).items()}


def describe_body(response: requests.Response, limit: int = 200) -> str:
    """A short, single-line, markup-free description of an error body for messages."""
    content_type = response.headers.get("Content-Type", "")
    try:
        # Error bodies are small; never read more than a bounded prefix of anything else.
        consumed = bool(getattr(response, "_content_consumed", False))
        raw = response.raw.read(4096, decode_content=True) if response.raw and not consumed else b""
        if consumed and response._content:
            raw = response._content[:4096]
    except Exception:
        raw = b""
    text = raw.decode("utf-8", "replace")
    if "html" in content_type.lower() or text.lstrip().lower().startswith(("<!doctype html", "<html")):
        return "an HTML page"
    text = " ".join(text.split())
    text = "".join(ch for ch in text if ch.isprintable())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


class _Session(requests.Session):
    """A Session that paces requests (client-side rate limits) and logs them (redacted) when asked to."""

    def __init__(self, log: Callable[[str], None] | None, debug: bool, limiter: RateLimiter | None = None) -> None:
        super().__init__()
        self._log = log
        self._debug = debug
        self.limiter = limiter

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        # Always stream from the adapter; a body the caller wants whole is then read with a bound.
        stream = bool(kwargs.get("stream"))
        kwargs["stream"] = True
        response = self._send(request, **kwargs)
        if not stream:
            _read_whole(response)
        return response

    def rebuild_proxies(self, prepared_request: requests.PreparedRequest, proxies: Any) -> dict[str, str]:
        """A redirect's target gets the environment's proxies for its own host, as requests does when
        it trusts the environment (this session does not: see make_session)."""
        from requests.utils import get_auth_from_url, get_environ_proxies

        headers = prepared_request.headers
        url = prepared_request.url or ""
        scheme = urlsplit(url).scheme
        # From the environment for the new URL alone, not merged with the previous hop's: a redirect
        # to a NO_PROXY host goes direct.
        new_proxies: dict[str, str] = dict(get_environ_proxies(url))
        headers.pop("Proxy-Authorization", None)
        username, password = get_auth_from_url(new_proxies[scheme]) if scheme in new_proxies else (None, None)
        if not scheme.startswith("https") and username and password:
            headers["Proxy-Authorization"] = requests.auth._basic_auth_str(username, password)
        return new_proxies

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        """On a redirect to another origin, drop every header that may be a credential.

        requests itself drops only `Authorization`; custom credential headers would follow.
        """
        super().rebuild_auth(prepared_request, response)  # type: ignore[no-untyped-call]
        old_url = response.request.url if response.request is not None else None
        if old_url and self.should_strip_auth(old_url, prepared_request.url):  # type: ignore[no-untyped-call]
            for name in list(prepared_request.headers):
                if name.lower() not in _PORTABLE_HEADERS:
                    del prepared_request.headers[name]

    def _send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if self.limiter is not None:
            waited = self.limiter.acquire(request.method or "GET", request.url or "")
            if waited and self._log is not None:
                self._log(f"  paced {waited:.1f}s to stay under the API's rate limit")
        if self._log is None:
            return super().send(request, **kwargs)
        self._log(f"> {request.method} {redact_url(request.url)}")
        if self._debug:
            for key, value in redact_headers(request.headers).items():
                self._log(f">   {key}: {value}")
        started = time.monotonic()
        try:
            response = super().send(request, **kwargs)
        except requests.RequestException as exc:
            self._log(f"! {request.method} {redact_url(request.url)} failed: {type(exc).__name__}")
            raise
        self._log(f"< {response.status_code} {response.reason} ({time.monotonic() - started:.2f}s)")
        if self._debug:
            for key, value in redact_headers(response.headers).items():
                self._log(f"<   {key}: {value}")
        return response


def _drop_redirect_body(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
    """A redirect's body is never read: requests would read it whole (unbounded) before following.

    Closing the response costs the connection, which a redirect rarely keeps anyway.
    """
    if response.is_redirect:
        response.close()
        response._content = b""
        response._content_consumed = True  # type: ignore[attr-defined]
    return response


def _read_whole(response: requests.Response) -> None:
    """Read a non-streamed answer into `response.content`, refusing more than MAX_BODY bytes."""
    from tmpup.errors import UnexpectedAnswer

    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_content(64 * 1024):
        total += len(chunk)
        if total > MAX_BODY:
            response.close()
            raise UnexpectedAnswer(
                f"{redact_url(response.url)} answered {response.status_code} with a body of more than "
                f"{MAX_BODY // (1024 * 1024)} MiB where a short API answer was expected",
                hint="check the profile's url; the server may be broken",
                status=response.status_code,
                url=redact_url(response.url),
            )
        chunks.append(chunk)
    response._content = b"".join(chunks)


def make_session(
    options: HttpOptions,
    *,
    log: Callable[[str], None] | None = None,
    debug: bool = False,
    warn: Callable[[str], None] = lambda message: None,
    rate_rules: tuple[RateRule, ...] = (),
) -> requests.Session:
    session = _Session(log, debug, RateLimiter(rate_rules) if rate_rules else None)
    # No environment lookups per request: requests would scan os.environ for proxies twice and stat
    # ~/.netrc on every request (a sixth of a small upload's time), and a ~/.netrc entry for the
    # API's host would replace the profile's Authorization. `_with_defaults` reads the proxies and
    # the CA bundle variables once instead.
    session.trust_env = False
    session.hooks["response"].append(_drop_redirect_body)
    session.headers["User-Agent"] = USER_AGENT
    # Retries are ours (Retrier), not urllib3's: urllib3 cannot rewind a streamed body.
    adapter = requests.adapters.HTTPAdapter(
        pool_connections=options.pool_size, pool_maxsize=options.pool_size, max_retries=0
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    verify: bool | str | None = None
    if options.insecure:
        import urllib3

        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        verify = False
        warn("TLS certificate verification is OFF (--insecure): anyone on the path can read and alter the transfer")
    elif options.ca_bundle:
        verify = options.ca_bundle
    if verify is not None:
        session.verify = verify
    session.request = _with_defaults(session.request, options.timeout, verify)  # type: ignore[method-assign]
    return session


def _with_defaults(
    request: Callable[..., requests.Response], timeout: float, verify: bool | str | None
) -> Callable[..., requests.Response]:
    """Every request gets the timeouts, and the TLS choice when one was made.

    `verify` goes on each request, not only on the session: requests lets `REQUESTS_CA_BUNDLE` and
    `CURL_CA_BUNDLE` override a session's `verify`, which would silently undo `--ca-bundle` and
    `--insecure` on machines (CI images among them) that set those variables. Only reads follow
    redirects (credentials stripped across origins by `_Session.rebuild_auth`).
    """
    default = (min(10.0, timeout), timeout)
    # The session does not consult the environment itself (`trust_env` is off, see make_session):
    # what requests would read there on every request is read once here.
    import os

    tls = verify
    missing_bundle = ""  # a CA bundle variable naming no file: an error for https requests only
    name: str | None = None
    if tls is None:
        name = next((n for n in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE") if os.environ.get(n)), None)
        if name is not None:
            tls = os.environ[name]
            if not os.path.exists(tls):
                missing_bundle, tls = f"{name}={tls}", None
    proxies: dict[tuple[str, str], dict[str, str]] = {}
    # The variable a CA bundle came from, for the message about a file that holds no certificate.
    bundle_from = name if verify is None and tls is not None and name else ""
    checked: list[bool] = []  # the bundle is read once, at the first https request

    def wrapped(method: str, url: str, **kwargs: Any) -> requests.Response:
        if missing_bundle and url.lower().startswith("https:"):
            from tmpup.errors import ConfigError

            variable = missing_bundle.split("=", 1)[0]
            raise ConfigError(
                f"{missing_bundle}: no such CA bundle", hint=f"fix or unset {variable}, or pass --ca-bundle"
            )
        if isinstance(tls, str) and not checked and url.lower().startswith("https:"):
            check_ca_bundle(tls, bundle_from)
            checked.append(True)
        kwargs.setdefault("timeout", default)
        if method.upper() not in ("GET", "HEAD", "OPTIONS"):
            # An upload is never sent on to wherever a redirect points: the answer is reported instead.
            kwargs.setdefault("allow_redirects", False)
        if tls is not None:
            kwargs.setdefault("verify", tls)
        if "proxies" not in kwargs:
            parts = urlsplit(url)
            origin = (parts.scheme, parts.netloc)
            if origin not in proxies:  # HTTP(S)_PROXY, honouring NO_PROXY, once per origin
                proxies[origin] = requests.utils.get_environ_proxies(url)
            kwargs["proxies"] = proxies[origin]
        return request(method, url, **kwargs)

    return wrapped


def check_ca_bundle(path: str, source: str) -> None:
    """Refuse a CA bundle that holds no certificate (a key, a DER file, any other file) with one line
    saying so: urllib3 would report it as a nested `NO_CERTIFICATE_OR_CRL_FOUND` from every request,
    and the advice for a TLS failure (pass --ca-bundle) would name the very option that was given.

    A directory of hashed certificates (OpenSSL's capath) is left to OpenSSL."""
    import os
    import ssl

    from tmpup.errors import ConfigError

    if os.path.isdir(path):
        return
    shown = f"{path} ({source})" if source else path
    try:
        ssl.create_default_context(cafile=path)
    except ssl.SSLError:
        raise ConfigError(
            f"the CA bundle {shown} holds no certificate",
            hint="give a PEM file of CA certificates (-----BEGIN CERTIFICATE----- blocks)",
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"the CA bundle {shown} cannot be read: {(exc.strerror or str(exc)).lower()}",
            hint="give a readable PEM file of CA certificates",
        ) from None
