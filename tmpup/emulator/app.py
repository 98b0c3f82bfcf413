"""The emulator's WSGI application: dispatch to provider mounts, apply faults, serve control endpoints.

`/<mount-id>/...` goes to the mount with that id (the rest of the path is the mount's own API
path); `/_emulator/...` is the JSON control surface:

    GET    /_emulator/health   {"status": "ok", "mounts": {...}, "time": ..., "faults": n}
    GET    /_emulator/faults   the active faults with their remaining uses, and what each kind does
    POST   /_emulator/faults   add one; body = `Fault` fields as JSON -> 201 {"fault": {...}}
    DELETE /_emulator/faults   remove all -> {"cleared": n}
    GET    /_emulator/clock    {"time": epoch seconds, "now": ISO-8601 UTC}
    POST   /_emulator/clock    {"advance": seconds} -> the new time
    POST   /_emulator/expire   {"provider": "qlik", "id": "..."} -> expire that upload now
                               (400 for kf5 and enterprise-tester, whose uploads never expire)

An unknown mount answers 404 JSON. A request cut short (client gone, or a `drop_after` fault)
ends with the TCP connection reset and no response; an unexpected error is logged with its
traceback and answered 500 in the provider's format.
"""

from __future__ import annotations

import json
import logging
import socket
import struct
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import ClientDisconnected
from werkzeug.wrappers import Request, Response

from .body import BodyInterrupted, prepare_input
from .context import EmulatorContext
from .faults import CORRUPT_KEY, KINDS, Fault
from .mount import Mount, json_response

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger("tmpup.emulator")

CONTROL = "_emulator"


def abort_connection(environ: WSGIEnvironment) -> None:
    """Reset the client's TCP connection (linger 0), so it sees a drop rather than an answer."""
    sock = environ.get("werkzeug.socket")
    if not isinstance(sock, socket.socket):
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class EmulatorApp:
    """The WSGI callable. Mounts are looked up by the first path segment."""

    def __init__(self, ctx: EmulatorContext, mounts: Iterable[Mount]) -> None:
        self.ctx = ctx
        self.mounts: dict[str, Mount] = {}
        for mount in mounts:
            if not mount.id or mount.id == CONTROL or mount.id in self.mounts:
                raise ValueError(f"bad or duplicate mount id {mount.id!r}")
            self.mounts[mount.id] = mount
        ctx.faults.check = self._check_fault

    def _check_fault(self, fault: Fault) -> None:
        """Refuse a fault that could never fire: one for a provider this emulator does not mount (`et`
        for `enterprise-tester`), or an `expire` fault aimed at a provider whose uploads never expire."""
        if fault.provider is not None and fault.provider not in self.mounts:
            raise ValueError(
                f"no provider {fault.provider!r} is mounted here (the mounts are: {', '.join(sorted(self.mounts))})"
            )
        mount = self.mounts.get(fault.provider or "")
        if fault.expire and mount is not None and mount.no_expiry is not None:
            raise ValueError(f"an expire fault cannot hit {mount.id}: {mount.no_expiry}")

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        prepare_input(environ)
        request = Request(environ)
        head, _, rest = request.path.lstrip("/").partition("/")
        subpath = "/" + rest
        if head == CONTROL:
            response = self._control(request, subpath)
        elif head in self.mounts:
            response = self._serve(self.mounts[head], request, subpath)
        else:
            response = json_response(
                {"error": "Not Found", "message": f"no emulated provider at /{head}", "mounts": sorted(self.mounts)},
                404,
            )
        return response(environ, start_response)

    # -- provider requests -----------------------------------------------------------------------

    def _serve(self, mount: Mount, request: Request, subpath: str) -> Response:
        environ = request.environ
        fault = self.ctx.faults.take(mount.id, request.method, request.path)
        override = request.headers.get("X-HTTP-Method-Override") if mount.method_override else None
        if fault is None and override:
            fault = self.ctx.faults.take(mount.id, override, request.path)
        try:
            if fault is not None:
                early = self._apply_fault(mount, request, subpath, fault)
                if early is not None:
                    return early
            response = mount.dispatch(request, subpath)
            if fault is not None and fault.drop_after is not None:
                response.close()
                raise BodyInterrupted("the response is dropped by an injected fault")
            return response
        except (BodyInterrupted, ClientDisconnected, ConnectionError):
            abort_connection(environ)
            # werkzeug treats ConnectionError as "client went away": no response, no traceback.
            raise ConnectionAbortedError("request aborted") from None
        except Exception:
            log.exception("emulator error on %s %s", request.method, request.path)
            return mount.finalize(request, mount.error(500, "internal error in the tmpup emulator"))

    def _apply_fault(self, mount: Mount, request: Request, subpath: str, fault: Fault) -> Response | None:
        if fault.delay:
            time.sleep(fault.delay)
        if fault.expire and mount.no_expiry is None:  # a fault for any provider skips those that never expire
            target = mount.target_id(request, subpath)
            if target is not None:
                mount.expire(target)
        if fault.corrupt:
            request.environ[CORRUPT_KEY] = True
        if fault.status is not None:
            return mount.fault_response(request, fault)
        if fault.drop_after is not None:
            prepare_input(request.environ, fault.drop_after)
        return None

    # -- control endpoints -----------------------------------------------------------------------

    def _control(self, request: Request, subpath: str) -> Response:
        route = (request.method, subpath.rstrip("/") or "/")
        try:
            if route == ("GET", "/health"):
                root = request.root_url.rstrip("/")
                return json_response(
                    {
                        "status": "ok",
                        # What a profile's `url` is for each mount (tus: its creation endpoint).
                        "mounts": {m: mount.profile_url(root) for m, mount in self.mounts.items()},
                        "time": self.ctx.clock.now().isoformat(),
                        "faults": len(self.ctx.faults),
                    }
                )
            if route == ("GET", "/faults"):
                return json_response(
                    {
                        "faults": [{**f.to_dict(), "remaining": left} for f, left in self.ctx.faults.active()],
                        "kinds": KINDS,
                    }
                )
            if route == ("POST", "/faults"):
                fault = self.ctx.faults.add(Fault.from_dict(self._json(request)))
                return json_response({"fault": fault.to_dict()}, 201)
            if route == ("DELETE", "/faults"):
                return json_response({"cleared": self.ctx.faults.clear()})
            if route == ("GET", "/clock"):
                return self._clock()
            if route == ("POST", "/clock"):
                seconds = self._json(request).get("advance")
                if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
                    raise ValueError('body must be {"advance": <seconds >= 0>}')
                self.ctx.clock.advance(seconds)
                return self._clock()
            if route == ("POST", "/expire"):
                body = self._json(request)
                provider, blob_id = body.get("provider"), body.get("id")
                if not isinstance(provider, str) or not isinstance(blob_id, str):
                    raise ValueError('body must be {"provider": "<mount id>", "id": "<upload id>"}')
                return self._expire(provider, blob_id)
        except ValueError as exc:
            return json_response({"error": "Bad Request", "message": str(exc)}, 400)
        return json_response({"error": "Not Found", "message": f"no control endpoint {route[0]} {route[1]}"}, 404)

    def _expire(self, provider: str, blob_id: str) -> Response:
        mount = self.mounts.get(provider)
        if mount is None:
            message = f"no emulated provider {provider!r} (mounts: {', '.join(sorted(self.mounts))})"
            return json_response({"error": "Not Found", "message": message}, 404)
        if mount.no_expiry is not None:
            # Claiming success while the upload goes on being served would mislead a test.
            message = f"cannot expire {provider}/{blob_id}: {mount.no_expiry}"
            return json_response({"error": "Bad Request", "message": message}, 400)
        if not mount.expire(blob_id):
            return json_response({"error": "Not Found", "message": f"no upload {provider}/{blob_id}"}, 404)
        return json_response({"expired": True, "provider": provider, "id": blob_id})

    def _clock(self) -> Response:
        return json_response({"time": self.ctx.clock.time(), "now": self.ctx.clock.now().isoformat()})

    @staticmethod
    def _json(request: Request) -> Mapping[str, Any]:
        if (request.content_length or 0) > 1 << 20:
            raise ValueError("control request body too large")
        try:
            data = json.loads(request.get_data(cache=False) or b"{}")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError("body must be a JSON object")
        return data
