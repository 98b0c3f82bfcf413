"""KF5 attachments, emulated at `/kf5/apiv2/attachments...`.

A profile's url is `http://HOST:PORT/kf5` (standing for `https://SUB.kf5.com`).

* Auth: HTTP Basic as `{email}:{password}` or `{email}/token:{api_token}`
  (`Credentials.kf5_email`, `kf5_password`, `kf5_api_token`); anything else is 401.
* `POST /apiv2/attachments.json?filename=NAME` with `Content-Type: application/binary` (else 400)
  and a required `filename` (else 400): the raw body is streamed to the store; answers 201 with
  `Location: {base}/apiv2/attachments/{id}.json` and `{"attachment": {id, url, name, size,
  content_url, token}}` (`id` an integer, `token` 31 hex digits starting `001`, as in KF5's examples).
* `GET /apiv2/attachments/{id}.json` -> 200 `{"attachment": {...}}`; `DELETE` the same -> 200 with
  an empty body (KF5 documents none); an unknown or deleted id is 404.
* `GET /apiv2/attachments/AttachmentLists.json?page=&per_page=` -> `{"code": 0, "page_count",
  "page", "per_page", "attachments": [...]}`, where (as in KF5's own answers) `id` is a string and
  `content_url` carries `?filename=`.
* `GET /attachments/download/{id}/{token}/` (the `content_url`, outside `/apiv2`): the bytes with
  `Content-Disposition`, `Range` (206/416) and a type guessed from the name. The token in the URL
  is the credential, so no Basic auth is needed; a wrong token is 404.

KF5 documents no error bodies; this mount answers `{"error": "<reason>", "message": "<detail>"}`
(what third-party clients read). Attachments have no TTL, so `POST /_emulator/expire` and `expire`
faults are refused for this mount (`no_expiry`); DELETE is how an attachment goes away.
"""

from __future__ import annotations

import math
import mimetypes
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from .mount import BodyInterrupted, Mount, Reply, empty_response, json_response
from .store import Blob

FIRST_ID = 1948
PER_PAGE_DEFAULT = 10
PER_PAGE_MAX = 100
TOKEN_SUFFIX = "/token"


class Kf5Mount(Mount):
    """KF5 `/apiv2/attachments` with Basic auth (password or API token) and download URLs."""

    id = "kf5"
    title = "KF5 attachments"
    no_expiry = (
        "KF5 attachments do not expire (its API has no TTL); DELETE /kf5/apiv2/attachments/{id}.json removes one"
    )
    rules = (
        Rule("/apiv2/attachments.json", methods=["POST"], endpoint="upload"),
        Rule("/apiv2/attachments/AttachmentLists.json", methods=["GET"], endpoint="listing"),
        Rule("/apiv2/attachments/<int:id>.json", methods=["GET"], endpoint="show"),
        Rule("/apiv2/attachments/<int:id>.json", methods=["DELETE"], endpoint="remove"),
        Rule("/attachments/download/<int:id>/<token>/", methods=["GET"], endpoint="download"),
    )

    # -- hooks -----------------------------------------------------------------------------------

    def authenticate(self, request: Request, endpoint: str) -> Response | None:
        if endpoint == "download":
            return None
        user = self.basic_credentials(request)
        if user is None:
            return self.error(401, "Authentication required: HTTP Basic with email:password or email/token:api_token")
        login, secret = user
        creds = self.credentials
        if login.endswith(TOKEN_SUFFIX):
            ok = self.secret_equals(login[: -len(TOKEN_SUFFIX)], creds.kf5_email) and self.secret_equals(
                secret, creds.kf5_api_token
            )
        else:
            ok = self.secret_equals(login, creds.kf5_email) and self.secret_equals(secret, creds.kf5_password)
        return None if ok else self.error(401, "Couldn't authenticate you: wrong email, password or API token")

    def error(self, status: int, detail: str, *, headers: Mapping[str, str] | None = None) -> Response:
        out = dict(headers or {})
        if status == 401:
            out.setdefault("WWW-Authenticate", 'Basic realm="KF5"')
        reason = {
            400: "BadRequest",
            401: "Unauthorized",
            403: "Forbidden",
            404: "RecordNotFound",
            405: "MethodNotAllowed",
            413: "RequestEntityTooLarge",
            416: "RangeNotSatisfiable",
            429: "TooManyRequests",
        }.get(status, "InternalError" if status >= 500 else "Error")
        return json_response({"error": reason, "message": detail}, status, out)

    def banner(self, base_url: str) -> list[str]:
        c = self.credentials
        return [
            f"{self.id:<18} {self.profile_url(base_url)}  "
            f"(email: {c.kf5_email}, password: {c.shown('kf5_password')}, api_token: {c.shown('kf5_api_token')})"
        ]

    # -- representation --------------------------------------------------------------------------

    def attachment(self, request: Request, blob: Blob) -> dict[str, Any]:
        """The `attachment` object KF5 answers (integer id)."""
        base = self.base_url(request)
        token = str(blob.extra["token"])
        return {
            "id": int(blob.id),
            "url": f"{base}/apiv2/attachments/{blob.id}.json",
            "name": blob.name,
            "size": self.claimed(request, blob.size),
            "content_url": f"{base}/attachments/download/{blob.id}/{token}/",
            "token": token,
        }

    def _find(self, id: int) -> Blob:
        blob = self.store.get(self.id, str(id))
        if blob is None or not blob.complete:
            raise Reply(self.error(404, f"attachment {id} was not found"))
        return blob

    # -- API -------------------------------------------------------------------------------------

    def upload(self, request: Request) -> Response:
        if request.mimetype != "application/binary":
            got = request.mimetype or "none"
            return self.error(400, f"Content-Type must be application/binary (got {got})")
        name = request.args.get("filename")
        if name is None or not name.strip():
            return self.error(400, "the filename query parameter is required")
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
            return self.error(400, "the filename contains control characters")
        max_size = self.ctx.max_size
        if max_size is not None and (request.content_length or 0) > max_size:
            return self.error(413, f"the file is larger than the limit of {max_size} bytes")
        token = "001" + self.ids.hex(28)
        blob = self.store.create(self.id, str(self.ids.number(self.id, FIRST_ID)), name=name, extra={"token": token})
        try:
            self.receive(request, blob, limit=None if max_size is None else max_size + 1)
        except BodyInterrupted:  # a body that broke off creates no attachment
            self.store.delete(self.id, blob.id)
            raise
        if max_size is not None and blob.size > max_size:
            self.store.delete(self.id, blob.id)
            return self.error(413, f"the file is larger than the limit of {max_size} bytes")
        self.store.complete(blob)
        body = self.attachment(request, blob)
        return json_response({"attachment": body}, 201, {"Location": body["url"]})

    def show(self, request: Request, id: int) -> Response:
        return json_response({"attachment": self.attachment(request, self._find(id))})

    def remove(self, request: Request, id: int) -> Response:
        self.store.delete(self.id, self._find(id).id)
        return empty_response(200)

    def listing(self, request: Request) -> Response:
        try:
            page = int(request.args.get("page", "1"))
            per_page = int(request.args.get("per_page", str(PER_PAGE_DEFAULT)))
        except ValueError:
            return self.error(400, "page and per_page must be integers")
        if page < 1 or not 1 <= per_page <= PER_PAGE_MAX:
            return self.error(400, f"page must be >= 1 and per_page 1..{PER_PAGE_MAX}")
        blobs = [b for b in self.store.blobs(self.id) if b.complete]
        blobs.sort(key=lambda b: int(b.id), reverse=True)  # newest first
        chosen = blobs[(page - 1) * per_page : page * per_page]
        items = []
        for blob in chosen:
            item = self.attachment(request, blob)
            item["id"] = str(item["id"])
            item["content_url"] += "?filename=" + quote(blob.name, safe="")
            items.append(item)
        return json_response(
            {
                "code": 0,
                "page_count": max(1, math.ceil(len(blobs) / per_page)),
                "page": page,
                "per_page": per_page,
                "attachments": items,
            }
        )

    def download(self, request: Request, id: int, token: str) -> Response:
        blob = self.store.get(self.id, str(id))
        if blob is None or not blob.complete or not self.secret_equals(token, str(blob.extra.get("token"))):
            return self.error(404, f"attachment {id} was not found")
        content_type = mimetypes.guess_type(blob.name, strict=False)[0] or "application/octet-stream"
        return self.send_blob(request, blob, content_type=content_type)
