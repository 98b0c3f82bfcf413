"""Enterprise Tester temporary attachment sets: several files in ONE streamed `multipart/mixed` request.

API facts (shared/reference/providers.md section 6; the base URL includes the application path,
e.g. `https://host/EnterpriseTester`, and every call uses HTTP Basic):

* `POST {base}/api/temporaryattachmentsets` creates a set: 201, `Location`, `{"Id", "Self"}`.
  A profile's `set` key skips this and adds to an existing set.
* `POST {base}/api/temporaryattachmentset/{set}` takes `multipart/mixed`, one part per file with
  `Content-Disposition: attachment; filename=...; name=...; size=...`, `Content-Type` and
  `Content-Length`, and answers 201 with a JSON array of attachment objects (`TemporaryId`, `Id`,
  `Name` <- `name`, `FileName` <- `filename`, `Size`, `Self`, `Content`, ...); 403 when no part is a
  file, 415 when the body is not multipart, 404 for an unknown set.
* `GET {base}/api/temporaryattachmentset/{set}` lists `{"Items": [...]}` (`tmpup info SET_ID`);
  `GET {base}/api/attachment/{id}/contents` is an attachment's bytes (`tmpup download ID`).

`upload_many` is what `tmpup upload a b c` calls: the whole set goes in one request, so it succeeds
or fails as one; a retry (network error, 429, 5xx) resends the same body to the same set.
"""

from __future__ import annotations

import base64
import mimetypes
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, urlparse

from tmpup.errors import IntegrityError, NotFoundError, UnexpectedAnswer, UsageError
from tmpup.protocols.multipart import MultipartBody, Part, header_params
from tmpup.providers.base import Info, KeySpec, Provider, RemoteFile, UploadOptions, UploadResult
from tmpup.providers.download import open_ranged_download

if TYPE_CHECKING:
    import requests

    from tmpup.progress import Task
    from tmpup.sources import Source

API = "/api"


class EnterpriseTesterProvider(Provider):
    id: ClassVar[str] = "enterprise-tester"
    description: ClassVar[str] = (
        "Enterprise Tester temporary attachment sets (all files of one run in one multipart/mixed request)"
    )
    keys: ClassVar[tuple[KeySpec, ...]] = (
        KeySpec(
            "url", "url", required=True, help="base including the application path, e.g. https://host/EnterpriseTester"
        ),
        KeySpec("username", required=True, help="Enterprise Tester user (HTTP Basic)"),
        KeySpec("password", secret=True, required=True, help="that user's password"),
        KeySpec("set", help="add to this existing temporary attachment set instead of creating one"),
    )
    handle: ClassVar[Any] = "id"

    @property
    def base(self) -> str:
        return str(self.settings.get("url")).rstrip("/")

    def _headers(self) -> dict[str, str]:
        # Built by hand: requests encodes Basic credentials as Latin-1 and fails on other characters.
        pair = f"{self.settings.get('username')}:{self.settings.secret('password')}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii"), "Accept": "application/json"}

    def set_url(self, set_id: str) -> str:
        return f"{self.base}{API}/temporaryattachmentset/{quote(set_id, safe='')}"

    def content_url(self, attachment_id: str) -> str:
        return f"{self.base}{API}/attachment/{quote(attachment_id, safe='')}/contents"

    def error_message(self, response: Any) -> str | None:
        body = response.json()
        if isinstance(body, dict):
            for key in ("Message", "message", "ExceptionMessage", "error"):
                if isinstance(body.get(key), str) and body[key]:
                    return str(body[key])
        return None

    # -- upload ---------------------------------------------------------------------------------

    def check_options(self, options: UploadOptions) -> None:
        if options.resumable:
            raise self.unsupported("upload resumably", "Enterprise Tester takes each file in one request")
        if options.ttl is not None:
            self.env.warn("Enterprise Tester documents no expiry for temporary attachment sets; --ttl is ignored")
        if options.chunk_size is not None:
            self.env.warn("Enterprise Tester takes each file in one request; --chunk-size is ignored")

    def upload(self, source: Source, options: UploadOptions, task: Task) -> UploadResult:
        return self.upload_many([source], [options], [task])[0]

    def upload_many(self, sources: list[Source], options: list[UploadOptions], tasks: list[Task]) -> list[UploadResult]:
        if not sources or not len(sources) == len(options) == len(tasks):
            raise ValueError("upload_many needs one option and one task per source")
        # The body is built first: a name that cannot go into a header fails before any request.
        body = MultipartBody(
            [self._part(s, o, t) for s, o, t in zip(sources, options, tasks, strict=True)], subtype="mixed"
        )
        set_id = self.settings.get("set") or self._create_set()
        url = self.set_url(str(set_id))
        display = sources[0].display if len(sources) == 1 else f"{len(sources)} files"

        def attempt() -> requests.Response:
            for task in tasks:
                task.set_completed(0)
            headers = {**self._headers(), "Content-Type": body.content_type}
            return self.env.session.post(url, data=body, headers=headers)

        with self.transport_errors("upload"):
            response = self.env.retrier.send(attempt, what=f"upload of {display}")
            self.check_response(response, ok=(200, 201))
        items = self.json_body(response)
        if not isinstance(items, list) or len(items) != len(sources) or not all(isinstance(i, dict) for i in items):
            raise IntegrityError(
                f"enterprise-tester: sent {len(sources)} file(s) to set {set_id} but the answer lists "
                f"{len(items) if isinstance(items, list) else 'no'} attachment(s)",
                hint=f"check the set with 'tmpup info {set_id}'",
                provider=self.id,
            )
        return [self._result(item, s, o, str(set_id)) for item, s, o in zip(items, sources, options, strict=True)]

    def _part(self, source: Source, options: UploadOptions, task: Task) -> Part:
        name = options.name
        disposition = header_params(
            "attachment", [("filename", name), ("name", name), ("size", source.size)], extended=True
        )
        content_type = mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"
        headers = [
            ("Content-Disposition", disposition),
            ("Content-Type", content_type),
            ("Content-Length", str(source.size)),
        ]
        return Part(headers, source.slice(0, progress=task.advance))

    def _create_set(self) -> str:
        with self.transport_errors("creating a temporary attachment set"):
            response = self.env.retrier.send(
                lambda: self.env.session.post(f"{self.base}{API}/temporaryattachmentsets", headers=self._headers()),
                what="creating a temporary attachment set",
            )
            self.check_response(response, ok=(200, 201))
        body = self.json_body(response)
        set_id = body.get("Id") if isinstance(body, dict) else None
        if not isinstance(set_id, str) or not set_id:
            location = response.headers.get("Location") or ""
            set_id = urlparse(location).path.rstrip("/").rsplit("/", 1)[-1]
        if not set_id:
            raise UnexpectedAnswer(
                "enterprise-tester: creating a temporary attachment set answered without its Id",
                hint="check the profile's url (the base including the application path)",
                provider=self.id,
            )
        return set_id

    def _result(self, item: dict[str, Any], source: Source, options: UploadOptions, set_id: str) -> UploadResult:
        size = item.get("Size")
        if size is not None and size != source.size:
            raise IntegrityError(
                f"enterprise-tester: {source.display} arrived with {size} bytes instead of {source.size}",
                hint="upload it again",
                provider=self.id,
            )
        attachment_id = str(item.get("Id") or "")
        content = item.get("Content")
        return UploadResult(
            id=attachment_id or None,
            name=options.name,
            size=source.size,
            url=str(content) if content else (self.content_url(attachment_id) if attachment_id else None),
            extra={"set_id": str(item.get("TemporaryId") or set_id), "content_type": item.get("ContentType")},
        )

    # -- info / download ------------------------------------------------------------------------

    def info(self, id: str) -> Info:
        """A set's attachments by set id; or, for an attachment id tmpup uploaded, that attachment.

        Human output of an upload is the attachment id, so `tmpup info "$(tmpup upload f)"` must work:
        the receipt knows the attachment's set, and the set's list has the attachment.
        """
        id = id.strip()
        if not id:
            raise UsageError("the set id is empty")
        receipt = self.env.state.find_receipt(id, self.id)
        if receipt and receipt.get("id") == id and receipt.get("set_id"):
            listing = self._list_set(str(receipt["set_id"]))
            item = next((i for i in listing.fields["items"] if i["id"] == id), None)
            if item is None:
                raise NotFoundError(
                    f"enterprise-tester: attachment {id} is no longer in its set {receipt['set_id']}",
                    provider=self.id,
                )
            return Info(id, {**item, "set_id": receipt["set_id"]})
        return self._list_set(id)

    def _list_set(self, id: str) -> Info:
        with self.transport_errors("info"):
            response = self.env.retrier.send(
                lambda: self.env.session.get(self.set_url(id), headers=self._headers()), what="info"
            )
            self.check_response(response)
        body = self.json_body(response)
        raw = body.get("Items") if isinstance(body, dict) else None
        if not isinstance(raw, list):
            raise UnexpectedAnswer("enterprise-tester: the set answered without an Items list", provider=self.id)
        items = [
            {
                "id": item.get("Id"),
                "name": item.get("Name"),
                "file_name": item.get("FileName"),
                "size": item.get("Size"),
                "content_type": item.get("ContentType"),
                "created_at": item.get("CreatedAt"),
                "url": item.get("Content"),
            }
            for item in raw
            if isinstance(item, dict)
        ]
        total = sum(i["size"] for i in items if isinstance(i["size"], int))
        return Info(id, {"id": id, "attachments": len(items), "total_size": total, "items": items})

    def open_download(self, id: str, *, offset: int = 0) -> RemoteFile:
        if not id.strip():
            raise UsageError("the attachment id is empty")
        return open_ranged_download(self, self.content_url(id.strip()), offset=offset, headers=self._headers())

    def check(self) -> str:
        # Only creating a set proves both the URL and the credentials with a positive answer (a 404
        # from listing an unknown set looks the same as any other server's 404). The set is empty
        # and temporary.
        set_id = self._create_set()
        return f"reached {self.base} and the credentials were accepted (created empty set {set_id})"
