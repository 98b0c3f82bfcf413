"""Pyrus files: Bearer token from `/auth`, one streamed `multipart/form-data` upload per file, MD5 check.

API facts (shared/reference/providers.md section 3):

* Auth: `POST https://accounts.pyrus.com/api/v4/auth` with JSON `{login, security_key, person_id?}`
  answers `{access_token, api_url, files_url}`; files go to `{files_url}/v4/files/...`. The token is
  fetched once per run (lazily, shared by parallel uploads) and fetched again once when a request
  answers 401 (tokens expire or are revoked when the key changes or the token limit is reached).
* Upload: `POST {files_url}/v4/files/upload`, exactly one file part (field name not significant),
  answers `{guid, md5_hash}`. The MD5 is computed from the blocks as they are sent and compared:
  a mismatch is an `IntegrityError` (exit 9). Files over `max_size` (default 250 MiB, the limit of
  the seed document and of the official Python client; the current English page says 2 GB) and
  empty files (Pyrus's `empty_file`) are refused before anything is sent.
* Download: `GET {files_url}/v4/files/download/{id}` takes the numeric id a file gets once attached
  to a task; a guid from an upload cannot be downloaded (no documented API), so `info GUID` answers
  from the local receipt.
* Errors are `{"error_code", "error"}`; 429 carries `X-RateLimit-Reset` (seconds to the next
  window, 5000 requests per 10 minutes), which is handed to the retrier as `Retry-After`.
"""

from __future__ import annotations

import mimetypes
import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from tmpup.errors import (
    AuthError,
    ConfigError,
    InputError,
    IntegrityError,
    NotFoundError,
    TmpupError,
    UnexpectedAnswer,
    UsageError,
)
from tmpup.hashing import ResettableHash
from tmpup.protocols.multipart import MultipartBody, Part, header_params
from tmpup.providers.base import KeySpec, Provider, RemoteFile, UploadOptions, UploadResult
from tmpup.providers.download import open_ranged_download
from tmpup.units import format_size

if TYPE_CHECKING:
    import requests

    from tmpup.progress import Task
    from tmpup.sources import Source

ACCOUNTS_URL = "https://accounts.pyrus.com"
AUTH_PATH = "/api/v4/auth"
MAX_SIZE = 250 * 1024 * 1024
_NUMERIC_ID = re.compile(r"[0-9]{1,18}")
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
#: Stable Pyrus error codes that mean something other than their HTTP status says.
_NOT_FOUND_CODES = frozenset({"file_is_missing", "file_not_found"})


class PyrusProvider(Provider):
    id: ClassVar[str] = "pyrus"
    description: ClassVar[str] = (
        "Pyrus files (streamed multipart/form-data upload with MD5 check; download by numeric attachment id)"
    )
    keys: ClassVar[tuple[KeySpec, ...]] = (
        KeySpec(
            "url",
            "url",
            default=ACCOUNTS_URL,
            help=f"accounts base; the token comes from POST {{url}}{AUTH_PATH} (default {ACCOUNTS_URL})",
        ),
        KeySpec("login", required=True, help="the user's or bot's login (e-mail)"),
        KeySpec("security_key", secret=True, required=True, help="the security key of that login"),
        KeySpec("person_id", "int", help="employee id, when several accounts share one login"),
        KeySpec("auth_url", "url", query=True, help=f"the full auth endpoint, instead of {{url}}{AUTH_PATH}"),
        KeySpec("files_url", "url", help="file service base (default: files_url from the auth answer)"),
        KeySpec("max_size", "size", default=MAX_SIZE, help="refuse larger files before sending (default 250 MiB)"),
    )
    handle: ClassVar[Any] = "id"
    rate_limit: ClassVar[tuple[int, float] | None] = (5000, 600.0)

    def __init__(self, settings: Any, env: Any) -> None:
        super().__init__(settings, env)
        self._lock = threading.Lock()
        self._token: str | None = None
        self._files_url: str | None = None
        # Pyrus says when its rate window resets in X-RateLimit-Reset; the retrier reads Retry-After.
        # The session is this provider's own (one per provider per run), so the hook stays here.
        env.session.hooks.setdefault("response", []).append(_rate_limit_hook)

    # -- API envelope ---------------------------------------------------------------------------

    def error_message(self, response: Any) -> str | None:
        body = response.json()
        if not isinstance(body, dict):
            return None
        code, text = body.get("error_code"), body.get("error") or body.get("error_message")
        if not code and not text:
            return None
        return f"{text} ({code})" if code and text else str(code or text)

    def check_response(self, response: requests.Response, *, ok: tuple[int, ...] = (200,)) -> None:
        try:
            super().check_response(response, ok=ok)
        except TmpupError as err:
            if _error_code(response) in _NOT_FOUND_CODES and not isinstance(err, NotFoundError):
                raise NotFoundError(err.message, provider=self.id, status=err.status, url=err.url) from None
            raise

    # -- auth -----------------------------------------------------------------------------------

    @property
    def auth_url(self) -> str:
        explicit = self.settings.get("auth_url")
        if explicit:
            return str(explicit)
        return str(self.settings.get("url", ACCOUNTS_URL)).rstrip("/") + AUTH_PATH

    def _authenticate(self, stale: str | None = None) -> tuple[str, str]:
        """The cached (token, files base URL); a new token when none is cached or `stale` is cached."""
        with self._lock:
            if self._token is not None and self._token != stale and self._files_url is not None:
                return self._token, self._files_url
            payload: dict[str, Any] = {
                "login": self.settings.get("login"),
                "security_key": self.settings.secret("security_key"),
            }
            if self.settings.get("person_id") is not None:
                payload["person_id"] = int(self.settings.get("person_id"))
            with self.transport_errors("authentication"):
                response = self.env.retrier.send(
                    lambda: self.env.session.post(self.auth_url, json=payload, headers={"Accept": "application/json"}),
                    what="authentication",
                )
                self.check_response(response)
            body = self.json_body(response)
            token = body.get("access_token") if isinstance(body, dict) else None
            if not isinstance(token, str) or not token:
                raise UnexpectedAnswer(
                    f"pyrus: {self.auth_url} answered without an access_token",
                    hint="check the profile's url (it must be the accounts base) or auth_url",
                    provider=self.id,
                )
            files = self.settings.get("files_url") or body.get("files_url")
            if not isinstance(files, str) or not files.startswith(("http://", "https://")):
                raise ConfigError(
                    "pyrus: the auth answer has no files_url and the profile sets none",
                    hint='set files_url = "https://files.pyrus.com" in the profile',
                    provider=self.id,
                )
            self._token, self._files_url = token, files.rstrip("/")
            return self._token, self._files_url

    def _send(self, what: str, request: Callable[[str, str], requests.Response]) -> requests.Response:
        """Send `request(token, files_url)` with retries; on 401 authenticate again and send once more."""
        token, files = self._authenticate()
        with self.transport_errors(what):
            response = self.env.retrier.send(lambda: request(token, files), what=what)
            if response.status_code == 401:
                response.close()
                token, files = self._authenticate(stale=token)
                response = self.env.retrier.send(lambda: request(token, files), what=what)
        return response

    def check(self) -> str:
        _token, files = self._authenticate()
        return f"authenticated at {self.auth_url} as {self.settings.get('login')}; files at {files}"

    # -- upload ---------------------------------------------------------------------------------

    def check_options(self, options: UploadOptions) -> None:
        if options.resumable:
            raise self.unsupported("upload resumably", "Pyrus takes each file in one request")
        if options.ttl is not None:
            self.env.warn(
                "Pyrus sets no expiry on uploads (files nobody attaches are removed after a while); --ttl is ignored"
            )
        if options.chunk_size is not None:
            self.env.warn("Pyrus takes each file in one request; --chunk-size is ignored")

    def upload(self, source: Source, options: UploadOptions, task: Task) -> UploadResult:
        limit = int(self.settings.get("max_size", MAX_SIZE))
        if source.size > limit:
            raise InputError(
                f"{source.display}: {format_size(source.size)} is over the Pyrus limit of {format_size(limit)}",
                hint="raise max_size in the profile if your Pyrus accepts larger files (the current docs say 2 GB)",
            )
        if source.size == 0:
            raise InputError(f"{source.display}: Pyrus refuses empty files (empty_file)")
        md5 = ResettableHash("md5")
        content_type = mimetypes.guess_type(options.name, strict=False)[0] or "application/octet-stream"
        disposition = header_params("form-data", [("name", "file"), ("filename", options.name)], extended=False)
        body = MultipartBody(
            [
                Part(
                    [("Content-Disposition", disposition), ("Content-Type", content_type)],
                    source.slice(0, progress=task.advance, hashers=[md5]),
                )
            ],
            subtype="form-data",
        )

        def attempt(token: str, files: str) -> requests.Response:
            task.set_completed(0)
            headers = {
                "Authorization": f"Bearer {token}",
                "Content-Type": body.content_type,
                "Accept": "application/json",
            }
            return self.env.session.post(f"{files}/v4/files/upload", data=body, headers=headers)

        response = self._send(f"upload of {source.display}", attempt)
        self.check_response(response)
        answer = self.json_body(response)
        guid = answer.get("guid") if isinstance(answer, dict) else None
        remote_md5 = answer.get("md5_hash") if isinstance(answer, dict) else None
        if not isinstance(guid, str) or not guid:
            raise UnexpectedAnswer("pyrus: the upload answered without a guid", provider=self.id)
        sent_md5 = md5.hexdigest()
        if not isinstance(remote_md5, str) or remote_md5.lower() != sent_md5:
            raise IntegrityError(
                f"pyrus: {source.display} arrived damaged: the server's MD5 is {remote_md5 or 'missing'}, "
                f"the bytes sent have MD5 {sent_md5} (guid {guid})",
                hint="upload it again; do not attach this guid",
                provider=self.id,
            )
        return UploadResult(id=guid, name=options.name, size=source.size, extra={"md5_hash": sent_md5})

    # -- download -------------------------------------------------------------------------------

    def check_download_id(self, id: str) -> None:
        id = id.strip()
        if _GUID.fullmatch(id):
            raise self.unsupported(
                "download by guid",
                "Pyrus downloads a file by the numeric id it gets once attached to a task "
                "(tmpup info GUID shows what was recorded at upload)",
            )
        if not _NUMERIC_ID.fullmatch(id):
            raise UsageError(f"pyrus: {id!r} is not a numeric attachment id (e.g. 1334)")

    def open_download(self, id: str, *, offset: int = 0) -> RemoteFile:
        self.check_download_id(id)
        id = id.strip()

        token, files = self._authenticate()
        try:
            return self._open(files, id, token, offset)
        except AuthError as exc:
            if exc.status != 401:
                raise
        token, files = self._authenticate(stale=token)
        return self._open(files, id, token, offset)

    def _open(self, files: str, id: str, token: str, offset: int) -> RemoteFile:
        def reauthorize() -> dict[str, str]:  # the token expired while a cut download was continued
            nonlocal token
            token, _files = self._authenticate(stale=token)
            return {"Authorization": f"Bearer {token}"}

        return open_ranged_download(
            self,
            f"{files}/v4/files/download/{id}",
            offset=offset,
            headers={"Authorization": f"Bearer {token}"},
            reauthorize=reauthorize,
        )


def _rate_limit_hook(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
    """Give the retrier Pyrus's `X-RateLimit-Reset` (seconds to the next window) as `Retry-After`."""
    if response.status_code == 429 and "Retry-After" not in response.headers:
        reset = response.headers.get("X-RateLimit-Reset", "").strip()
        if reset.isdigit():
            response.headers["Retry-After"] = reset
    return response


def _error_code(response: requests.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    code = body.get("error_code") if isinstance(body, dict) else None
    return code if isinstance(code, str) else None
