"""Run the emulator: `Emulator` for in-process use (tests), `serve_forever` for `tmpup serve`.

    with Emulator() as emu:                      # 127.0.0.1, a free port, a temporary data dir
        url = emu.url                            # http://127.0.0.1:PORT
        emu.faults.add(Fault(provider="qlik", method="PATCH", status=503, retry_after=1))
        emu.clock.advance(3600)
        emu.blob_sha256("qlik", upload_id)

    with Emulator(ssl_context=tls_context("cert.pem", "key.pem")) as emu:
        emu.url                                  # https://127.0.0.1:PORT

The server is werkzeug's threaded WSGI server running in a daemon thread. It is quiet: no
request log unless `access_log=True` (then one plain line per request on stderr), and dropped
connections never print tracebacks.

Every connection has a read timeout (`idle_timeout`, 60 s by default): a client that goes silent,
before a request or in the middle of a body, is dropped after that long. A tus PATCH cut short
that way keeps the bytes that arrived (tus semantics) and the upload stops being busy (423).
With an `ssl_context` the server speaks HTTPS; the TLS handshake runs in the connection's own
thread under the same timeout, so a client that connects and never handshakes cannot hold up
the accept loop (werkzeug's own wrapping would handshake inside `accept()`).

A port that cannot be bound raises `BindError` (an OSError naming the address).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import ssl
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

#: Seconds a connection may stay silent (no request, or a body that stopped arriving).
DEFAULT_IDLE_TIMEOUT = 60.0


class BindError(OSError):
    """The server could not listen on the address (port in use, no permission, unknown host)."""

    def __init__(self, host: str, port: int, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.host = host
        self.port = port

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"cannot listen on {host}:{self.port}: {self.strerror}"


def tls_context(certfile: str | Path, keyfile: str | Path | None = None) -> ssl.SSLContext:
    """A server TLS context from a PEM certificate (chain) and its key (or one PEM holding both).

    Raises OSError (ssl.SSLError for a file that is not a matching PEM certificate and key).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    return context


class _Handler(WSGIRequestHandler):
    """werkzeug's handler without its coloured, always-on request log, with a read timeout and
    the TLS handshake done here (in the connection's thread) rather than in `accept()`."""

    server: _Server

    def setup(self) -> None:
        super().setup()
        # Every later read (handshake, request line, headers, body) and write fails with
        # TimeoutError after this long; BodyReader turns that into BodyInterrupted, so a tus
        # PATCH keeps what arrived and releases the upload instead of answering 423 forever.
        self.connection.settimeout(self.server.idle_timeout)

    def handle(self) -> None:
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.do_handshake()
            except (OSError, ValueError) as exc:  # untrusted cert alert, plain HTTP, timeout, reset
                log.debug("TLS handshake with %s failed: %s", self.client_address, exc)
                return
        super().handle()

    def connection_dropped(self, error: BaseException, environ: Any = None) -> None:
        # A request that broke off (client gone, read timeout, injected drop) ends the connection:
        # after a timeout the socket's reader refuses every further read, and the next request
        # line of a keep-alive loop would fail with an OSError that is logged as an error.
        self.close_connection = True

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.server.access_log:
            line = self.requestline.translate(self._control_char_table)
            sys.stderr.write(f'{self.address_string()} - [{self.log_date_time_string()}] "{line}" {code} {size}\n')

    def log(self, type: str, message: str, *args: Any) -> None:
        log.debug("%s: " + message, type, *args)


class _Server(ThreadedWSGIServer):
    access_log = False
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, socket.timeout, ssl.SSLError)):
            return
        log.exception("emulator connection error from %s", client_address)

    def log(self, type: str, message: str, *args: Any) -> None:
        log.debug("%s: " + message, type, *args)


def _bind(host: str, port: int, app: EmulatorApp, ssl_context: ssl.SSLContext | None = None) -> _Server:
    """werkzeug's threaded server on a socket we bound ourselves: werkzeug would `sys.exit(1)` on
    EADDRINUSE, while a library must raise OSError (here `BindError`)."""
    family = select_address_family(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if os.name != "nt":  # on Windows SO_REUSEADDR would let two servers share the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(get_sockaddr(host, port, family))
            sock.listen(128)
        except OSError as exc:
            raise BindError(host, port, exc) from exc
        server = _Server(host, port, app, handler=_Handler, fd=sock.fileno())
    finally:
        sock.close()  # the server works on its own duplicate of the descriptor
    if ssl_context is not None:
        # Not werkzeug's `ssl_context=` argument: it wraps with do_handshake_on_connect=True, so
        # the handshake would run inside accept() on the serving thread, where one silent client
        # blocks every other. Setting `server.ssl_context` keeps werkzeug's HTTPS behaviour
        # (wsgi.url_scheme, quiet SSL errors); `_Handler.handle` does the handshake.
        server.socket = ssl_context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        server.ssl_context = ssl_context
    return server


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
        ssl_context: ssl.SSLContext | None = None,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        if idle_timeout is not None and not idle_timeout > 0:
            raise ValueError(f"idle_timeout must be more than 0 seconds (or None for no limit), not {idle_timeout!r}")
        self.host = host
        self.port = port
        self.access_log = access_log
        self.ssl_context = ssl_context
        self.idle_timeout = idle_timeout
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
        """Bind and serve in a daemon thread; returns self. Raises `BindError` if the port is taken."""
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        server = _bind(self.host, self.port, self.app, self.ssl_context)
        server.access_log = self.access_log
        server.idle_timeout = self.idle_timeout
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
        """Base URL, e.g. `http://127.0.0.1:8470`, `https://...` with TLS (a wildcard bind address is
        shown as loopback)."""
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        if ":" in host:
            host = f"[{host}]"
        scheme = "http" if self.ssl_context is None else "https"
        return f"{scheme}://{host}:{self.port}"

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
        from tmpup.units import format_duration, format_size

        limit = self.ctx.max_size
        size = "no upload size limit (Pyrus: 250 MiB)"
        if limit is not None:
            size = f"max upload {format_size(limit)} ({limit} bytes)"
        idle = "never" if self.idle_timeout is None else format_duration(self.idle_timeout)
        if self.idle_timeout is not None and self.idle_timeout < 60:
            idle = f"{self.idle_timeout:g}s"  # format_duration rounds to whole seconds
        lines.append(f"  {'limits':<18} {size}, idle connections dropped after {idle}")
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
    ssl_context: ssl.SSLContext | None = None,
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
) -> None:
    """Serve until Ctrl-C or SIGTERM, then return normally (no traceback).

    Prints the URL of every mount and the demo credentials to `out` (default stdout).
    Raises `BindError` (an OSError) when the address cannot be bound.
    """
    out = out or sys.stdout
    emulator = Emulator(
        host,
        port,
        data_dir,
        credentials,
        max_size=max_size,
        access_log=access_log,
        seed=seed,
        ssl_context=ssl_context,
        idle_timeout=idle_timeout,
    )
    for fault in faults:
        emulator.faults.add(fault)
    try:
        emulator.start()
    except BaseException:
        emulator.stop()  # removes the temporary data dir now, not at interpreter exit
        raise
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
