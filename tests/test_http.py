"""The HTTP layer's policies: retries with backoff and Retry-After, client-side pacing, redaction, and
what the session takes from the environment (proxies, CA bundle variables; never ~/.netrc)."""

from __future__ import annotations

import http.server
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_file, run, serving, sha256_file
from tmpup.http import redact_headers
from tmpup.pacing import RateLimiter, RateRule
from tmpup.retry import Retrier


def test_rate_limiter_sliding_window_paces_only_matching_requests() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter((RateRule(2, 10.0, method="POST", path="/upload"),), clock=lambda: now[0], sleep=sleep)
    assert limiter.acquire("POST", "http://h/upload?x=1") == 0
    now[0] += 1
    assert limiter.acquire("POST", "http://h/upload") == 0
    assert limiter.acquire("GET", "http://h/upload") == 0  # another rule's business: not paced
    waited = limiter.acquire("POST", "http://h/upload")
    assert waited == 9.0 and slept == [9.0]  # the first request leaves the window at t=10


def test_backoff_grows_with_full_jitter_and_honours_retry_after() -> None:
    retrier = Retrier(5, base=0.5, cap=4.0, rng=lambda: 1.0)
    assert [retrier.delay(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert Retrier(5, rng=lambda: 0.0).delay(3) == 0.0


def test_redact_headers() -> None:
    shown = redact_headers({"Authorization": "Bearer abc", "Cookie": "s=1", "Content-Type": "text/plain"})
    assert shown == {"Authorization": "****", "Cookie": "****", "Content-Type": "text/plain"}


# -- what the session takes from the environment --------------------------------------------------


def _proxy(seen: list[str]) -> type[http.server.BaseHTTPRequestHandler]:
    """A plain-HTTP forward proxy that answers every request itself and remembers its request line."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.requestline)
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(201)
            self.send_header("Location", "/api/v1/temp-contents/0123456789abcdef01234567")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def test_proxy_variables_are_honoured_and_no_proxy_bypasses_them(
    qlik_profile: str, emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    with serving(_proxy(seen)) as proxy:
        src = make_file(tmp_path / "p.bin", 1000)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "example.invalid")
        through = run("upload", str(src), "--no-resume", "--progress", "none")
        assert through.code == 0, through.err
        # A proxied request names the absolute URL: it went to the proxy, not to the emulator.
        assert len(seen) == 1 and seen[0].startswith(f"POST {emulator.url}/qlik/api/v1/temp-contents")
        assert emulator.store.blobs("qlik") == []

        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        direct = run("upload", str(src), "--no-resume", "--progress", "none")
        assert direct.code == 0, direct.err
        assert len(seen) == 1
        assert emulator.blob_sha256("qlik", direct.out.strip()) == sha256_file(src)


def _refusing_proxy(status: int) -> type[http.server.BaseHTTPRequestHandler]:
    """A forward proxy that refuses every CONNECT (the tunnel an https request asks for) with `status`."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_CONNECT(self) -> None:
            self.send_response(status)
            if status == 407:
                self.send_header("Proxy-Authenticate", 'Basic realm="proxy"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.mark.parametrize(("status", "code", "needle"), [(407, 3, "asks for credentials (407)"), (502, 10, "(502)")])
def test_a_proxy_that_refuses_the_tunnel_is_explained_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, status: int, code: int, needle: str
) -> None:
    with serving(_refusing_proxy(status)) as proxy:
        # the proxy's own credentials in its URL: they must not show in the error
        monkeypatch.setenv("HTTPS_PROXY", f"http://proxyuser:proxy-pass-x9@127.0.0.1:{proxy.server_address[1]}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        env = {"TMPUP_PROVIDER": "qlik", "TMPUP_URL": "https://tenant.example.invalid", "TMPUP_TOKEN": "t"}
        result = run("upload", str(make_file(tmp_path / "p.bin", 10)), "--retries", "0", env=env)
    assert result.code == code, result.err
    assert result.err.startswith("tmpup: error: ") and result.err.count("\n") == 1
    assert needle in result.err
    for leak in ("proxy-pass-x9", "HTTPSConnectionPool", "ProxyError", "Max retries"):
        assert leak not in result.err


def test_a_proxy_nobody_listens_on_is_named_as_the_problem(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    env = {"TMPUP_PROVIDER": "qlik", "TMPUP_URL": "https://tenant.example.invalid", "TMPUP_TOKEN": "t"}
    result = run("upload", str(make_file(tmp_path / "p.bin", 10)), "--retries", "0", env=env)
    assert result.code == 10, result.err
    assert "cannot reach the proxy" in result.err and "HTTPS_PROXY" in result.err


def test_a_netrc_entry_never_replaces_the_profiles_credentials(
    qlik_profile: str, emulator: Any, isolated: Path, tmp_path: Path
) -> None:
    # requests, trusting the environment, would send ~/.netrc's login as Basic auth instead of the
    # profile's Bearer token whenever the host has an entry there.
    netrc = isolated / ".netrc"
    netrc.write_text("machine 127.0.0.1 login someone password not-the-token\n")
    netrc.chmod(0o600)
    src = make_file(tmp_path / "n.bin", 1000)
    result = run("upload", str(src), "--no-resume", "--progress", "none")
    assert result.code == 0, result.err
    assert emulator.blob_sha256("qlik", result.out.strip()) == sha256_file(src)
