"""Run the emulator: `Emulator` for in-process use (tests), `serve_forever` for `tmpup serve`.

    with Emulator() as emu:                      # 127.0.0.1, a free port, a temporary data dir
        url = emu.url                            # http://127.0.0.1:PORT
        emu.faults.add(Fault(provider="qlik", method="PATCH", status=503, retry_after=1))
        emu.clock.advance(3600)
        emu.blob_sha256("qlik", upload_id)

The server is werkzeug's threaded WSGI server running in a daemon thread. It is quiet: no
request log unless `access_log=True` (then one plain line per request on stderr), and dropped
connections never print tracebacks.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler, get_sockaddr, select_address_family

from .app import EmulatorApp
from .clock import Clock
from .context import Credentials, EmulatorContext, Ids
from .faults import Fault, FaultSet
from .mount import Mount
from .mounts import builtin_mounts
from .store import BlobStore

log = logging.getLogger("tmpup.emulator")


class _Handler(WSGIRequestHandler):
    """werkzeug's handler without its coloured, always-on request log."""

    server: _Server

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.server.access_log:
            line = self.requestline.translate(self._control_char_table)
            sys.stderr.write(f'{self.address_string()} - [{self.log_date_time_string()}] "{line}" {code} {size}\n')

    def log(self, type: str, message: str, *args: Any) -> None:
        log.debug("%s: " + message, type, *args)


class _Server(ThreadedWSGIServer):
    access_log = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, socket.timeout)):
            return
        log.exception("emulator connection error from %s", client_address)

    def log(self, type: str, message: str, *args: Any) -> None:
        log.debug("%s: " + message, type, *args)


def _bind(host: str, port: int, app: EmulatorApp) -> _Server:
    """werkzeug's threaded server on a socket we bound ourselves: werkzeug would `sys.exit(1)` on
    EADDRINUSE, while a library must raise OSError."""
    family = select_address_family(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if os.name != "nt":  # on Windows SO_REUSEADDR would let two servers share the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(get_sockaddr(host, port, family))
        sock.listen(128)
        return _Server(host, port, app, handler=_Handler, fd=sock.fileno())
    finally:
        sock.close()  # the server works on its own duplicate of the descriptor


class Emulator:
    """The local server speaking every provider's API. Use as a context manager or start()/stop()."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        data_dir: str | Path | None = None,
        credentials: Credentials | None = None,
        clock: Clock | None = None,
        max_size: int | None = None,
        *,
        mounts: Sequence[type[Mount]] | None = None,
        access_log: bool = False,
        seed: int | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.access_log = access_log
        self.clock = clock or Clock()
        self.store = BlobStore(data_dir, self.clock)
        self.faults = FaultSet()
        self.credentials = credentials or Credentials()
        self.ctx = EmulatorContext(
            store=self.store,
            clock=self.clock,
            faults=self.faults,
            credentials=self.credentials,
            ids=Ids(seed),
            max_size=max_size,
        )
        classes = builtin_mounts() if mounts is None else list(mounts)
        self.app = EmulatorApp(self.ctx, [cls(self.ctx) for cls in classes])
        self.mounts: dict[str, Mount] = self.app.mounts
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._finalizer = weakref.finalize(self, self.store.close)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Emulator:
        """Bind and serve in a daemon thread; returns self. Raises OSError if the port is taken."""
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        server = _bind(self.host, self.port, self.app)
        server.access_log = self.access_log
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="tmpup-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and remove the temporary data directory (if the emulator made it)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._finalizer()

    def __enter__(self) -> Emulator:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait(self, timeout: float | None = None) -> None:
        """Block until the server stops (or `timeout` passes); Ctrl-C interrupts the wait."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._thread is not None and self._thread.is_alive():
            if deadline is not None and time.monotonic() >= deadline:
                return
            self._thread.join(timeout=0.5)

    @property
    def running(self) -> bool:
        return self._server is not None

    # -- addresses -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, e.g. `http://127.0.0.1:8470` (a wildcard bind address is shown as loopback)."""
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def mount_url(self, provider: str) -> str:
        """The profile `url` for a provider: `{url}/qlik`, `{url}/tus/files/`, ..."""
        return self.mounts[provider].profile_url(self.url)

    # -- stored bytes ----------------------------------------------------------------------------

    def blob_path(self, provider: str, upload_id: str) -> Path:
        """Where the emulator keeps an upload's bytes (KeyError-like `BlobMissing` if unknown)."""
        return self.store.path(provider, upload_id)

    def blob_sha256(self, provider: str, upload_id: str) -> str:
        """Hex SHA-256 of an upload's stored bytes."""
        return self.store.sha256(provider, upload_id)

    def banner(self) -> list[str]:
        """What `tmpup serve` prints: every mount's profile URL and demo credentials."""
        lines = [f"tmpup emulator listening on {self.url}  (data: {self.store.root})"]
        for mount in self.mounts.values():
            lines.extend("  " + line for line in mount.banner(self.url))
        lines.append(f"  {'control':<18} {self.url}/_emulator/health")
        return lines


def serve_forever(
    host: str = "127.0.0.1",
    port: int = 8470,
    data_dir: str | Path | None = None,
    credentials: Credentials | None = None,
    out: TextIO | None = None,
    *,
    max_size: int | None = None,
    access_log: bool = False,
    faults: Iterable[Fault] = (),
    seed: int | None = None,
) -> None:
    """Serve until Ctrl-C or SIGTERM, then return normally (no traceback).

    Prints the URL of every mount and the demo credentials to `out` (default stdout).
    Raises OSError when the address cannot be bound.
    """
    out = out or sys.stdout
    emulator = Emulator(host, port, data_dir, credentials, max_size=max_size, access_log=access_log, seed=seed)
    for fault in faults:
        emulator.faults.add(fault)
    emulator.start()
    # Ctrl-C and SIGTERM both end serving cleanly, whatever handlers the caller had installed.
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, getattr(signal, "SIGTERM", None)):
            if sig is not None:
                previous[sig] = signal.signal(sig, _interrupt)
    try:
        out.write("\n".join([*emulator.banner(), "Press Ctrl-C to stop."]) + "\n")
        out.flush()
        emulator.wait()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
