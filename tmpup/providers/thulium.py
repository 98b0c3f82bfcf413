"""Thulium temporary files: one raw `application/octet-stream` POST per file, HTTP Basic, 24 h life.

API facts (shared/reference/providers.md section 5, seed thulium-temporary-files):

* `POST {url}/api/temporary_files?filename=NAME` with the file as the raw body and Basic auth of an
  API user answers 200 `{"filename", "token", "size"}`; the file lives 24 hours and its token is
  what ticket calls take in `attachments`.
* The API has no way to download or inspect a temporary file, so this provider is neither
  `Downloadable` nor `Describable`: `tmpup download` exits 8 and `tmpup info TOKEN` answers from
  tmpup's local receipt (whose `expires_at` is the upload's start plus 24 h, never later than the
  server's own clock would say).
* Errors come as `{"request_id", "errors": [{"message", "code"}, ...]}`; the messages, their codes
  and the request id (which Thulium support asks for) become the error text.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from tmpup.errors import IntegrityError, UnexpectedAnswer
from tmpup.providers.base import KeySpec, Provider, UploadOptions, UploadResult

if TYPE_CHECKING:
    import requests

    from tmpup.progress import Task
    from tmpup.sources import Source

API = "/api/temporary_files"
#: How long Thulium keeps a temporary file ("dostępny przez 24 godziny").
LIFETIME = dt.timedelta(hours=24)


def thulium_error_text(body: Any) -> str | None:
    """`message (code)` of every error in Thulium's envelope, then `[request_id ...]`."""
    if not isinstance(body, dict):
        return None
    errors = body.get("errors")
    parts: list[str] = []
    if isinstance(errors, list):
        for err in errors:
            if not isinstance(err, dict):
                continue
            message, code = err.get("message"), err.get("code")
            if message and code is not None:
                parts.append(f"{message} (code {code})")
            elif message or code is not None:
                parts.append(str(message or f"code {code}"))
    request_id = body.get("request_id")
    if not parts and not request_id:
        return None
    text = "; ".join(parts) or "no error message"
    return f"{text} [request_id {request_id}]" if request_id else text


class ThuliumProvider(Provider):
    id: ClassVar[str] = "thulium"
    description: ClassVar[str] = (
        "Thulium temporary files (raw upload, token valid 24 h; no download or info in the API)"
    )
    keys: ClassVar[tuple[KeySpec, ...]] = (
        KeySpec("url", "url", required=True, help="your system, e.g. https://acme.thulium.com"),
        KeySpec("username", required=True, help="login of a Thulium API user (HTTP Basic)"),
        KeySpec("password", secret=True, required=True, help="that API user's password"),
    )
    handle: ClassVar[Literal["id", "token", "url"]] = "token"

    @property
    def base(self) -> str:
        base = str(self.settings.get("url")).rstrip("/")
        # People paste the API root they see in Thulium's docs; the client adds /api itself.
        return base[: -len("/api")] if base.endswith("/api") else base

    @property
    def endpoint(self) -> str:
        return f"{self.base}{API}"

    def _headers(self) -> dict[str, str]:
        # Built by hand: requests encodes Basic credentials as Latin-1 and fails on other characters.
        pair = f"{self.settings.get('username')}:{self.settings.secret('password')}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii"), "Accept": "application/json"}

    def error_message(self, response: Any) -> str | None:
        return thulium_error_text(response.json())

    # -- upload ---------------------------------------------------------------------------------

    def check_options(self, options: UploadOptions) -> None:
        if options.resumable:
            raise self.unsupported("upload resumably", "Thulium takes each file in one request")
        if options.ttl is not None:
            self.env.warn("Thulium keeps temporary files for 24 hours, whatever is asked; --ttl is ignored")
        if options.chunk_size is not None:
            self.env.warn("Thulium takes each file in one request; --chunk-size is ignored")

    def upload(self, source: Source, options: UploadOptions, task: Task) -> UploadResult:
        # The 24 h count from when the server has the file; counting from before the request
        # keeps the recorded expiry on the safe side.
        started = self.env.clock()
        params = {"filename": options.name}
        headers = {**self._headers(), "Content-Type": "application/octet-stream"}

        def attempt() -> requests.Response:
            task.set_completed(0)
            # An empty FileSlice would make requests send chunked encoding; b"" sends Content-Length: 0.
            body: Any = source.slice(0, progress=task.advance) if source.size else b""
            return self.env.session.post(self.endpoint, params=params, data=body, headers=headers)

        with self.transport_errors("upload"):
            response = self.env.retrier.send(attempt, what=f"upload of {source.display}")
            self.check_response(response, ok=(200, 201))
        answer = self.json_body(response)
        token = answer.get("token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise UnexpectedAnswer(
                f"thulium: the upload of {source.display} answered {response.status_code} without a token",
                hint="check the profile's url (it must be your Thulium system, e.g. https://acme.thulium.com)",
                provider=self.id,
            )
        size = answer.get("size")
        if isinstance(size, int) and not isinstance(size, bool) and size != source.size:
            raise IntegrityError(
                f"thulium: sent {source.size} bytes of {source.display} but the server stored {size} (token {token})",
                hint="upload it again; do not attach this token",
                provider=self.id,
            )
        name = answer.get("filename")
        return UploadResult(
            id=None,
            name=name if isinstance(name, str) and name else options.name,
            size=source.size,
            token=token,
            expires_at=started + LIFETIME,
        )

    # -- check ----------------------------------------------------------------------------------

    @staticmethod
    def _thulium_answer(response: requests.Response, key: str) -> bool:
        """Whether the answer is Thulium's JSON with `key` (its error envelope, or an upload's token)."""
        try:
            body = response.json()
        except ValueError:
            return False
        return isinstance(body, dict) and bool(body.get(key))

    def check(self) -> str:
        # The API has nothing to read. A POST without the required filename (and without a body)
        # creates nothing: the server refuses it as incomplete (400) once it has accepted the
        # credentials, and refuses the credentials first (401/403) when they are wrong.
        with self.transport_errors("check"):
            response = self.env.session.post(self.endpoint, data=b"", headers=self._headers())
        user = self.settings.get("username")
        if response.status_code in (400, 422) and self._thulium_answer(response, "errors"):
            return f"reached {self.base} and the API user {user!r} was accepted"
        if response.status_code in (200, 201) and self._thulium_answer(response, "token"):
            return f"reached {self.base}; the API user {user!r} was accepted"
        if response.status_code in (200, 201, 400, 422):
            # Answered, but not as Thulium does: a web page or another API at that url.
            from tmpup.http import describe_body

            body = describe_body(response) or "no body"
            raise UnexpectedAnswer(
                f"thulium: {self.endpoint} answered {response.status_code} with {body}, not as Thulium's API would",
                hint="check the profile's url (it must be your Thulium system, e.g. https://acme.thulium.com)",
                provider=self.id,
            )
        self.check_response(response, ok=())
        raise AssertionError("unreachable")  # pragma: no cover - check_response raised
