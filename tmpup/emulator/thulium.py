"""Thulium temporary files, emulated at `/thulium/api/temporary_files`.

A profile's url is `http://HOST:PORT/thulium` (standing for `https://NAME.thulium.com`).

* `POST /api/temporary_files?filename=NAME` with HTTP Basic of the API user
  (`Credentials.thulium_username` / `thulium_password`): the raw body (any Content-Type, any
  length up to `ctx.max_size`) is streamed to the store; answers 200
  `{"filename", "token", "size"}`. The token is 23 characters shaped like Thulium's
  (`<10 digits><13 hex>`) and expires 24 hours later on the emulator clock.
* Credentials are checked before the parameters: a missing or bad `Authorization` is 401 whatever
  else is wrong; then a missing or empty `filename` (or one with control characters) is 400.
* The real API offers no way to read a temporary file back and neither does this mount: tests look
  at the store (`emu.blob_sha256("thulium", token)`, `emu.store.find("thulium", token)`).

Errors use Thulium's envelope `{"request_id": "<13 hex>", "errors": [{"message", "code"}]}`.
Thulium documents no numeric codes for these cases, so the codes are this emulator's own
(`status * 1000 + n`). Messages are English, or Polish with `Accept-Language: pl` as in the real API.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from .mount import BodyInterrupted, Mount, json_response

API = "/api/temporary_files"
LIFETIME = 24 * 3600
TOKEN_HEX = 13

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

#: Emulator-chosen error codes per status (Thulium documents the envelope, not these numbers).
CODES = {
    400: 400001,
    401: 401001,
    403: 403001,
    404: 404001,
    405: 405001,
    413: 413001,
    429: 429001,
    500: 500001,
    502: 502001,
    503: 503001,
}
FILENAME_REQUIRED = 400002
FILENAME_INVALID = 400003

#: Polish text of the fixed messages, for `Accept-Language: pl`.
POLISH = {
    "Authentication required.": "Wymagane uwierzytelnienie.",
    "Invalid username or password.": "Nieprawidłowa nazwa użytkownika lub hasło.",
    "Parameter filename is required.": "Parametr filename jest wymagany.",
    "Parameter filename is invalid.": "Parametr filename jest nieprawidłowy.",
}


class ThuliumMount(Mount):
    """Thulium `POST /api/temporary_files` with Basic auth and Thulium's error envelope."""

    id = "thulium"
    title = "Thulium temporary files"
    rules = (Rule(API, methods=["POST"], endpoint="upload"),)

    # -- hooks -----------------------------------------------------------------------------------

    def authenticate(self, request: Request, endpoint: str) -> Response | None:
        user = self.basic_credentials(request)
        if user is None:
            return self._error(request, 401, "Authentication required.")
        if not (
            self.secret_equals(user[0], self.credentials.thulium_username)
            and self.secret_equals(user[1], self.credentials.thulium_password)
        ):
            return self._error(request, 401, "Invalid username or password.")
        return None

    def error(
        self, status: int, detail: str, *, headers: Mapping[str, str] | None = None, code: int | None = None
    ) -> Response:
        out = dict(headers or {})
        if status == 401:
            out.setdefault("WWW-Authenticate", 'Basic realm="Thulium API"')
        body = {
            "request_id": self.ids.hex(TOKEN_HEX),
            "errors": [{"message": detail, "code": code or CODES.get(status, status * 1000 + 1)}],
        }
        return json_response(body, status, out)

    def _error(self, request: Request, status: int, message: str, code: int | None = None) -> Response:
        if request.accept_languages.best_match(["en", "pl"]) == "pl":
            message = POLISH.get(message, message)
        return self.error(status, message, code=code)

    def banner(self, base_url: str) -> list[str]:
        user, password = self.credentials.thulium_username, self.credentials.shown("thulium_password")
        return [f"{self.id:<18} {self.profile_url(base_url)}  (username: {user}, password: {password})"]

    # -- API -------------------------------------------------------------------------------------

    def new_token(self) -> str:
        """`<10 digits><13 hex>`, the shape of Thulium's tokens (`180174033853be57b76ed6a`)."""
        digits = 10**9 + int(self.ids.hex(12), 16) % (9 * 10**9)
        return f"{digits}{self.ids.hex(TOKEN_HEX)}"

    def upload(self, request: Request) -> Response:
        name = request.args.get("filename")
        if name is None or not name.strip():
            return self._error(request, 400, "Parameter filename is required.", FILENAME_REQUIRED)
        if _CONTROL.search(name):
            return self._error(request, 400, "Parameter filename is invalid.", FILENAME_INVALID)
        max_size = self.ctx.max_size
        if max_size is not None and (request.content_length or 0) > max_size:
            return self.error(413, f"The file is larger than the limit of {max_size} bytes.")
        blob = self.store.create(self.id, self.new_token(), name=name, ttl=LIFETIME)
        try:
            self.receive(request, blob, limit=None if max_size is None else max_size + 1)
        except BodyInterrupted:  # a body that broke off creates no temporary file
            self.store.delete(self.id, blob.id)
            raise
        if max_size is not None and blob.size > max_size:
            self.store.delete(self.id, blob.id)
            return self.error(413, f"The file is larger than the limit of {max_size} bytes.")
        self.store.complete(blob)
        return json_response({"filename": name, "token": blob.id, "size": self.claimed(request, blob.size)})
