"""The HTTP layer's policies: retries with backoff and Retry-After, client-side pacing, redaction."""

from __future__ import annotations

from tmpup.http import RateLimiter, RateRule, Retrier, redact_headers


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
