"""Qlik Cloud temp-contents: raw upload, `/details`, ranged download; tus for large or resumable uploads.

API facts (shared/reference/providers.md section 1): `POST /api/v1/temp-contents?filename&ttl` answers
201 with only a `Location` (relative, with or without the `/api` prefix), so the id is its last path
segment; `ttl` is 1..259200 s, default 3600; `/details` has PascalCase keys and `Size` as a string
(some tenants send a number); 204 from GET or `/details` means a tus upload is still incomplete.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from typing import Any, ClassVar
from urllib.parse import quote, unquote, urlparse

from tmpup.errors import ConfigError, InputError, UnexpectedAnswer, UsageError
from tmpup.headers import origin
from tmpup.pacing import RateRule
from tmpup.progress import Task
from tmpup.providers.base import (
    Info,
    KeySpec,
    Provider,
    RemoteFile,
    UploadOptions,
    UploadResult,
)
from tmpup.providers.download import open_ranged_download
from tmpup.sources import Source

TTL_MIN = 1
TTL_MAX = 259200
TTL_DEFAULT = 3600
API = "/api/v1/temp-contents"


def id_from_location(location: str | None) -> str | None:
    """The temp-content id: the last path segment of `Location`, whatever form it has."""
    if not location:
        return None
    segment = urlparse(location).path.rstrip("/").rsplit("/", 1)[-1]
    return segment or None


def check_ttl(ttl: int | None, where: str | None = None) -> int:
    """The TTL to ask for; out of Qlik's range is rejected input. `where`: the profile key or variable
    the value came from, when it did not come from --ttl."""
    if ttl is None:
        return TTL_DEFAULT
    if not TTL_MIN <= ttl <= TTL_MAX:
        raise InputError(
            f"ttl {ttl}s"
            + (f" ({where})" if where else "")
            + f" is outside Qlik's range of {TTL_MIN}..{TTL_MAX} seconds (3 days)",
            hint="change it there, or pass e.g. --ttl 2h" if where else "pass e.g. --ttl 2h",
        )
    return ttl


class QlikProvider(Provider):
    id: ClassVar[str] = "qlik"
    description: ClassVar[str] = "Qlik Cloud temp-contents (raw upload, tus resumable uploads, TTL up to 3 days)"
    resumable: ClassVar[bool] = True
    keys: ClassVar[tuple[KeySpec, ...]] = (
        KeySpec("url", "url", required=True, help="tenant base, e.g. https://acme.eu.qlikcloud.com"),
        KeySpec("token", secret=True, required=True, help="API key or OAuth access token (Bearer)"),
        KeySpec("ttl", "duration", whole=True, help="time to live, 1s..3d (default 1h)"),
        KeySpec("chunk_size", "size", positive=True, help="tus PATCH size (default: the rest in one request)"),
        KeySpec(
            "resumable_threshold",
            "size",
            default=64 * 1024 * 1024,
            help="files above this size use tus resumable uploads",
        ),
    )
    handle: ClassVar[Any] = "id"
    # Qlik's tiers (shared/reference/providers.md 1.2, 1.7): tus "special" 800/min; Tier 2 (raw upload)
    # 100/min and Tier 1 (GET, /details) 1000/min, both "evaluated over a 5-minute window to support bursts".
    rate_rules: ClassVar[tuple[RateRule, ...]] = (
        RateRule(800, 60.0, path="/temp-contents/files"),
        RateRule(500, 300.0, method="POST", path="/temp-contents"),
        RateRule(5000, 300.0, path="/temp-contents"),
    )

    @property
    def base(self) -> str:
        return str(self.settings.get("url")).rstrip("/")

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.secret('token')}"}

    def content_url(self, id: str) -> str:
        return f"{self.base}{API}/{quote(id, safe='')}"

    def temp_content_id(self, handle: str) -> str:
        """The temp-content id of what a user passes: the id, or the `url` of tmpup's own result
        (`{url}/api/v1/temp-contents/ID`, also the tus upload URL `.../temp-contents/files/ID`, or only
        its path). A URL of another tenant is refused before any request: the token is not sent there."""
        handle = handle.strip()
        parts = urlparse(handle)
        if not parts.scheme and not handle.startswith("/"):
            return handle
        from tmpup.http import redact_url

        if parts.scheme:
            own = urlparse(self.base)
            prefix = own.path.rstrip("/") + API + "/"
            if parts.scheme.lower() not in ("http", "https") or origin(handle) != origin(self.base):
                raise UsageError(
                    f"qlik: {redact_url(handle)} is not on this profile's tenant ({self.base})",
                    hint="pass the temp-content id, or use the profile of that tenant (-p NAME)",
                    provider=self.id,
                )
            rest = parts.path[len(prefix) :] if parts.path.startswith(prefix) else None
        else:  # a path only, as in a Location header: with or without the /api prefix
            found = re.search(r"/temp-contents/(.*)$", parts.path)
            rest = found.group(1) if found else None
        if rest is not None and not parts.query and not parts.fragment:
            segments = [unquote(segment) for segment in rest.strip("/").split("/")]
            if segments and segments[0] == "files":
                segments = segments[1:]
            if len(segments) == 1 and segments[0]:
                return segments[0]
        raise UsageError(
            f"qlik: {redact_url(handle)} is not a temp-content URL of this tenant ({self.base}{API}/ID)",
            hint="pass the temp-content id the upload printed",
            provider=self.id,
        )

    def error_message(self, response: Any) -> str | None:
        body = response.json()
        errors = body.get("errors") if isinstance(body, dict) else None
        if not errors:
            return None
        parts = []
        for err in errors:
            text = err.get("title") or err.get("code") or ""
            if err.get("detail"):
                text = f"{text} ({err['detail']})" if text else str(err["detail"])
            parts.append(str(text))
        trace = body.get("traceId")
        return "; ".join(parts) + (f" [traceId {trace}]" if trace else "")

    # -- upload -------------------------------------------------------------------------------

    def upload(self, source: Source, options: UploadOptions, task: Task) -> UploadResult:
        ttl = check_ttl(options.ttl if options.ttl is not None else self._profile_ttl())
        threshold = int(self.settings.get("resumable_threshold", 64 * 1024 * 1024))
        use_tus = options.resumable is True or (
            options.resumable is None and (source.size > threshold or self._has_resume_record(source))
        )
        if use_tus:
            return self._upload_tus(source, options, task, ttl)
        return self._upload_raw(source, options, task, ttl)

    def check_options(self, options: UploadOptions) -> None:
        if options.ttl is not None:
            check_ttl(options.ttl, options.ttl_origin)
        else:
            check_ttl(self._profile_ttl(), self.settings.where("ttl"))

    def _profile_ttl(self) -> int | None:
        value = self.settings.get("ttl")
        return None if value is None else int(value)

    def _upload_raw(self, source: Source, options: UploadOptions, task: Task, ttl: int) -> UploadResult:
        # Only --chunk-size typed for this run: a profile's chunk_size (or TMPUP_CHUNK_SIZE) is a setting
        # for the uploads that do go resumable, which a small file sent in one request ignores quietly.
        if options.chunk_size is not None and options.chunk_size_origin is None:
            self.env.warn(
                f"{source.display}: --chunk-size applies to resumable (tus) uploads; this one goes in one request "
                "(--resumable makes it resumable)"
            )
        started = self.env.clock()
        url = f"{self.base}{API}"
        params = {"filename": options.name, "ttl": str(ttl)}

        def attempt() -> Any:
            task.set_completed(0)
            body = source.slice(0, progress=task.advance, hashers=None)
            return self.env.session.post(
                url,
                params=params,
                data=body,
                headers={**self._auth(), "Content-Type": "application/octet-stream"},
            )

        with self.transport_errors("upload"):
            response = self.env.retrier.send(attempt, what=f"upload of {source.display}")
            self.check_response(response, ok=(200, 201))
        temp_id = id_from_location(response.headers.get("Location"))
        if not temp_id:
            # Success without the one thing Qlik always answers: not a Qlik tenant (a web page, a proxy).
            from tmpup.http import describe_body

            body = describe_body(response)
            raise ConfigError(
                f"qlik: the upload answered {response.status_code} without a Location header"
                + (f" ({body})" if body else ""),
                provider=self.id,
                hint="check the profile's url: it must be the tenant's base, e.g. https://acme.eu.qlikcloud.com",
            )
        return UploadResult(
            id=temp_id,
            name=options.name,
            size=source.size,
            url=self.content_url(temp_id),
            expires_at=started + dt.timedelta(seconds=ttl),
            extra={"ttl": ttl},
        )

    def _has_resume_record(self, source: Source) -> bool:
        from tmpup.resume_record import has_resume_record

        return has_resume_record(self, source)

    def _upload_tus(self, source: Source, options: UploadOptions, task: Task, ttl: int) -> UploadResult:
        from tmpup.protocols.tus import upload_with_tus

        outcome = upload_with_tus(
            self,
            source=source,
            options=options,
            task=task,
            create_url=f"{self.base}{API}/files",
            headers=self._auth(),
            metadata={"filename": options.name, "ttl": str(ttl)},
            ttl=ttl,
            terminate=False,  # Qlik documents no termination: a superseded upload expires by its TTL
        )
        # The tus upload id is the temp-content id (gopherciser uses path.Base of the upload URL).
        temp_id = id_from_location(outcome.upload_url)
        if not temp_id:
            raise UnexpectedAnswer(
                f"qlik: tus answered an upload URL without an id: {outcome.upload_url}", provider=self.id
            )
        # A resumed upload keeps the TTL it was created with (a different one asked for explicitly
        # starts a new upload instead: tus_transfer's `stale`), so report that TTL and its expiry.
        upload_ttl = outcome.ttl if outcome.ttl is not None else ttl
        expires_at = outcome.expires_at or outcome.created_at + dt.timedelta(seconds=upload_ttl)
        return UploadResult(
            id=temp_id,
            name=options.name,
            size=source.size,
            url=self.content_url(temp_id),
            expires_at=expires_at,
            resumed=outcome.resumed,
            extra={"ttl": upload_ttl, "upload_url": outcome.upload_url},
        )

    # -- info / download ------------------------------------------------------------------------

    def check_download_id(self, id: str) -> None:
        self.temp_content_id(id)  # a URL of another tenant is refused before anything local is touched

    def info(self, id: str) -> Info:
        id = self.temp_content_id(id)
        with self.transport_errors("info"):
            response = self.env.retrier.send(
                lambda: self.env.session.get(f"{self.content_url(id)}/details", headers=self._auth()),
                what="info",
            )
            self.check_response(response, ok=(200, 204))
        if response.status_code == 204:
            return Info(id, {"id": id, "status": "incomplete (a resumable upload has not finished)"})
        body = self.json_body(response)
        if not isinstance(body, dict):
            raise UnexpectedAnswer("qlik: /details answered something that is not a JSON object", provider=self.id)
        size = body.get("Size")
        with contextlib.suppress(TypeError, ValueError):
            size = int(size) if size is not None else None
        fields = {
            "id": body.get("ID", id),
            "name": body.get("Name"),
            "size": size,
            "created_at": body.get("CreatedAt"),
            "updated_at": body.get("UpdatedAt"),
            "expires_at": body.get("Expires"),
            "ttl_seconds": body.get("TTLSeconds"),
            "creator_id": body.get("CreatorID"),
            "url": self.content_url(id),
            "status": "complete",
        }
        return Info(id, fields)

    def open_download(self, id: str, *, offset: int = 0) -> RemoteFile:
        url = self.content_url(self.temp_content_id(id))
        remote = open_ranged_download(self, url, offset=offset, headers=self._auth())
        return remote

    def check(self) -> str:
        # Qlik has no cheap "who am I" in this API: ask for the details of an id that cannot exist.
        # 404 proves the URL and the token (401/403 otherwise).
        probe = "000000000000000000000000"
        with self.transport_errors("check"):
            response = self.env.session.get(f"{self.content_url(probe)}/details", headers=self._auth())
        if response.status_code in (404, 410) and self._is_qlik_error(response):
            return f"reached {self.base} and the token was accepted"
        if response.status_code in (200, 204, 404, 410):
            # A success for an id that cannot exist, or a 404 that is not Qlik's: another server.
            from tmpup.http import describe_body

            body = describe_body(response)
            raise ConfigError(
                f"qlik: {self.base} answered {response.status_code}"
                + (f" with {body}" if body else "")
                + ", not as Qlik's temp-contents API would",
                provider=self.id,
                hint="check the profile's url: it must be the tenant's base, e.g. https://acme.eu.qlikcloud.com",
            )
        self.check_response(response, ok=())
        raise AssertionError("unreachable: check_response raises for every status")  # pragma: no cover

    def _is_qlik_error(self, response: Any) -> bool:
        """Whether an error answer is Qlik's JSON envelope (`{"errors": [{"code", "title"}]}`, both strings,
        both required: providers.md 1.2). Other APIs wrap errors in an `errors` list too (Thulium:
        `{"message", "code": 404001}`), and a check must not take their 404 for Qlik's."""
        try:
            body = response.json()
        except ValueError:
            return False
        errors = body.get("errors") if isinstance(body, dict) else None
        if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
            return False
        first = errors[0]
        return isinstance(first.get("code"), str) and isinstance(first.get("title"), str)
