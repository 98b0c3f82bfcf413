"""KF5 attachments: raw `application/binary` upload, info, download through `content_url`, delete.

API facts (shared/reference/providers.md section 4, seed kf5-attachments):

* HTTP Basic as `{email}:{password}` or `{email}/token:{api_token}` (exactly one of the two secrets
  in a profile, checked by `validate_settings`).
* `POST {url}/apiv2/attachments.json?filename=NAME` with `Content-Type: application/binary` and the
  raw body answers 201, `Location: .../apiv2/attachments/{id}.json` and
  `{"attachment": {id, url, name, size, content_url, token}}`. The token is what a ticket or reply
  takes in `uploads` (so it is the handle printed); the numeric id is what info/download/delete use.
* `GET` / `DELETE {url}/apiv2/attachments/{id}.json`; the bytes come from `content_url`
  (`.../attachments/download/{id}/{token}/`), fetched with Range for `--continue`.

Commands take the numeric id; a token or content_url that tmpup uploaded from this machine is
translated to its id through the local receipts, so `tmpup delete $(tmpup upload f)` works.
Credentials go to `content_url` only when it is on the profile's own origin.
"""

from __future__ import annotations

import base64
import re
import unicodedata
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import quote

from tmpup.errors import IntegrityError, NotFoundError, UnexpectedAnswer, UsageError
from tmpup.headers import origin
from tmpup.providers.base import (
    Info,
    KeySpec,
    Provider,
    ProviderEnv,
    RemoteFile,
    UploadOptions,
    UploadResult,
)
from tmpup.providers.download import open_ranged_download

if TYPE_CHECKING:
    import requests

    from tmpup.config import Settings
    from tmpup.progress import Task
    from tmpup.sources import Source

API = "/apiv2"
_NUMERIC_ID = re.compile(r"[0-9]{1,18}")


class Kf5Provider(Provider):
    id: ClassVar[str] = "kf5"
    description: ClassVar[str] = "KF5 attachments (raw upload; info, download and delete by attachment id)"
    keys: ClassVar[tuple[KeySpec, ...]] = (
        KeySpec("url", "url", required=True, help="your KF5 domain, e.g. https://acme.kf5.com"),
        KeySpec("email", required=True, help="the agent's e-mail address"),
        KeySpec("password", secret=True, help="the agent's password (or give api_token instead)"),
        KeySpec("api_token", secret=True, help="an API token, sent as EMAIL/token:TOKEN (or give password instead)"),
    )
    handle: ClassVar[Literal["id", "token", "url"]] = "token"

    def __init__(self, settings: Settings, env: ProviderEnv) -> None:
        super().__init__(settings, env)
        self._resolved: dict[str, str] = {}  # handle -> attachment id, from the receipts (read once a run)

    @classmethod
    def validate_settings(cls, values: Mapping[str, Any]) -> str | None:
        """Exactly one of `password` and `api_token`: KF5 takes one or the other."""
        has_password = values.get("password") is not None
        has_token = values.get("api_token") is not None
        if has_password and has_token:
            return "kf5 takes either 'password' or 'api_token', not both; remove one of them"
        if not has_password and not has_token:
            return (
                "kf5 needs 'password' or 'api_token' (each also as _env or _file, or TMPUP_PASSWORD / TMPUP_API_TOKEN)"
            )
        return None

    @property
    def base(self) -> str:
        base = str(self.settings.get("url")).rstrip("/")
        return base[: -len(API)] if base.endswith(API) else base

    def _headers(self) -> dict[str, str]:
        email = str(self.settings.get("email"))
        token = self.settings.secret("api_token")
        # Built by hand: requests encodes Basic credentials as Latin-1 and fails on other characters.
        pair = f"{email}/token:{token}" if token is not None else f"{email}:{self.settings.secret('password')}"
        return {
            "Authorization": "Basic " + base64.b64encode(pair.encode()).decode("ascii"),
            "Accept": "application/json",
        }

    def attachment_url(self, id: str) -> str:
        return f"{self.base}{API}/attachments/{quote(id, safe='')}.json"

    def error_message(self, response: Any) -> str | None:
        body = response.json()
        if not isinstance(body, dict):
            return None
        error: Any = body.get("error")
        message: Any = body.get("message")
        if isinstance(error, dict):  # Zendesk-style {"error": {"title", "message"}}
            message = message or error.get("message")
            error = error.get("title")
        texts = [str(t) for t in (message, error) if isinstance(t, str) and t]
        if len(texts) == 2 and texts[0] != texts[1]:
            return f"{texts[0]} ({texts[1]})"
        return texts[0] if texts else None

    # -- upload ---------------------------------------------------------------------------------

    def check_options(self, options: UploadOptions) -> None:
        if options.resumable:
            raise self.unsupported("upload resumably", "KF5 takes each file in one request")
        if options.ttl is not None:
            self.env.warn("KF5 attachments do not expire by a TTL; --ttl is ignored")
        if options.chunk_size is not None:
            self.env.warn("KF5 takes each file in one request; --chunk-size is ignored")

    def upload(self, source: Source, options: UploadOptions, task: Task) -> UploadResult:
        url = f"{self.base}{API}/attachments.json"
        params = {"filename": options.name}
        headers = {**self._headers(), "Content-Type": "application/binary"}

        def attempt() -> requests.Response:
            task.set_completed(0)
            # An empty FileSlice would make requests send chunked encoding; b"" sends Content-Length: 0.
            body: Any = source.slice(0, progress=task.advance) if source.size else b""
            return self.env.session.post(url, params=params, data=body, headers=headers)

        with self.transport_errors("upload"):
            response = self.env.retrier.send(attempt, what=f"upload of {source.display}")
            self.check_response(response, ok=(200, 201))
        attachment = self._attachment(response, f"the upload of {source.display}")
        size = attachment.get("size")
        if isinstance(size, int) and not isinstance(size, bool) and size != source.size:
            raise IntegrityError(
                f"kf5: sent {source.size} bytes of {source.display} but attachment {attachment['id']} has {size}",
                hint=f"delete it (tmpup delete {attachment['id']}) and upload again",
                provider=self.id,
            )
        name = attachment.get("name")
        extra = {"api_url": attachment["url"]} if isinstance(attachment.get("url"), str) else {}
        return UploadResult(
            id=str(attachment["id"]),
            name=name if isinstance(name, str) and name else options.name,
            size=source.size,
            token=attachment.get("token") if isinstance(attachment.get("token"), str) else None,
            url=attachment.get("content_url") if isinstance(attachment.get("content_url"), str) else None,
            extra=extra,
        )

    def _attachment(self, response: requests.Response, what: str) -> dict[str, Any]:
        body = self.json_body(response)
        attachment = body.get("attachment") if isinstance(body, dict) else None
        if not isinstance(attachment, dict) or attachment.get("id") is None:
            raise UnexpectedAnswer(
                f"kf5: {what} answered {response.status_code} without an attachment",
                hint="check the profile's url (it must be your KF5 domain, e.g. https://acme.kf5.com)",
                provider=self.id,
            )
        return attachment

    # -- by id ----------------------------------------------------------------------------------

    def resolve(self, handle: str) -> str:
        """The numeric attachment id for `handle`: an id, or a token/content_url from a local receipt.

        A handle that cannot be one at all (empty, control characters) is a usage error (exit 2); a
        token or URL this machine has no receipt of is "not found" (exit 5), as Thulium's and Pyrus's
        unknown tokens are: it may well be a real token, uploaded from elsewhere."""
        handle = handle.strip()
        if _NUMERIC_ID.fullmatch(handle):
            return handle
        if not handle or any(unicodedata.category(ch) in ("Cc", "Cs") for ch in handle):
            raise UsageError(f"kf5: {handle!r} is not an attachment id", hint="pass the id or token the upload printed")
        if handle in self._resolved:
            return self._resolved[handle]
        receipt = self.env.state.find_receipt(handle, self.id)
        if receipt is not None and receipt.get("id") is not None:
            self._resolved[handle] = str(receipt["id"])
            return self._resolved[handle]
        raise NotFoundError(
            f"kf5: no receipt of {handle!r} here (tmpup knows the tokens and content_urls of the files "
            "uploaded from this machine)",
            hint="KF5 takes the numeric attachment id, e.g. 1948",
            provider=self.id,
        )

    def check_download_id(self, id: str) -> None:
        # An unknown token is refused before anything local (a .part, the output file) is looked at.
        self.resolve(id)

    def _get(self, id: str, what: str = "info") -> dict[str, Any]:
        """The attachment's JSON; `what` names the step in errors and retry notes (a download's lookup
        of its content_url is not an `info` the user ran)."""
        with self.transport_errors(what):
            response = self.env.retrier.send(
                lambda: self.env.session.get(self.attachment_url(id), headers=self._headers()), what=what
            )
            self.check_response(response)
        return self._attachment(response, f"attachment {id}")

    def info(self, id: str) -> Info:
        attachment_id = self.resolve(id)
        attachment = self._get(attachment_id)
        fields = {
            "id": str(attachment.get("id", attachment_id)),
            "name": attachment.get("name"),
            "size": attachment.get("size"),
            "token": attachment.get("token"),
            # `url` means what it means in the upload's result (the bytes: content_url); the API's own
            # `url` of the attachment is `api_url` there and here, so `jq .url` gives one kind of URL.
            "url": attachment.get("content_url"),
            "content_url": attachment.get("content_url"),
            "api_url": attachment.get("url"),
        }
        return Info(attachment_id, fields)

    def open_download(self, id: str, *, offset: int = 0) -> RemoteFile:
        attachment_id = self.resolve(id)
        content_url = self._get(attachment_id, "download (looking up the attachment)").get("content_url")
        if not isinstance(content_url, str) or not content_url.startswith(("http://", "https://")):
            raise UnexpectedAnswer(f"kf5: attachment {attachment_id} has no content_url to download", provider=self.id)
        # The content_url carries the token; the account's credentials only go to the account's own origin.
        headers = self._headers() if origin(content_url) == origin(self.base) else {}
        headers.pop("Accept", None)
        return open_ranged_download(self, content_url, offset=offset, headers=headers)

    def delete(self, id: str) -> None:
        attachment_id = self.resolve(id)
        with self.transport_errors("delete"):
            response = self.env.retrier.send(
                lambda: self.env.session.delete(self.attachment_url(attachment_id), headers=self._headers()),
                what="delete",
            )
            self.check_response(response, ok=(200, 204))

    def check(self) -> str:
        # The documented attachment list (agent permission) proves the url and the credentials.
        url = f"{self.base}{API}/attachments/AttachmentLists.json"
        with self.transport_errors("check"):
            response = self.env.session.get(url, params={"page": 1, "per_page": 1}, headers=self._headers())
        if response.status_code == 404:
            # Every KF5 account has this list: a 404 is another server (or another path) at the url, not
            # a missing id as it would be for info or download.
            from tmpup.http import describe_body, redact_url

            body = describe_body(response)
            raise UnexpectedAnswer(
                f"kf5: {redact_url(response.url)} answered 404"
                + (f" with {body}" if body else "")
                + ", not as KF5's API would",
                hint="check the profile's url (it must be your KF5 domain, e.g. https://acme.kf5.com)",
                provider=self.id,
                status=404,
                url=redact_url(response.url),
            )
        self.check_response(response)
        body = self.json_body(response)
        if not isinstance(body, dict) or not isinstance(body.get("attachments"), list):
            raise UnexpectedAnswer(
                f"kf5: {url} answered without an attachment list",
                hint="check the profile's url (it must be your KF5 domain, e.g. https://acme.kf5.com)",
                provider=self.id,
            )
        how = "API token" if self.settings.secret("api_token") is not None else "password"
        return f"reached {self.base} as {self.settings.get('email')} ({how})"
