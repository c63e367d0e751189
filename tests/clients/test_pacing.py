"""Rate budgets, header parsing and the retry policy, with a fake clock and sleep."""

from __future__ import annotations

import random
import threading
from email.utils import format_datetime
from datetime import datetime, timezone

import httpx
import pytest
from hypothesis import given, strategies as st

from reconcile.clients.pacing import (Pacer, RateBudget, RateInfo, RequestLabel, RetryPolicy, parse_rate_headers,
                                      reset_epoch, retry_after_seconds)
from reconcile.config import RateLimit

from fake_time import FakeTime
from reconcile.errors import FatalApiError, RateLimited, TransientApiError

T0 = 1_700_000_000.0
LABEL = RequestLabel("braze", "POST", "https://rest.example/users/track")



def scripted(ft: FakeTime, answers: list):
    """A send() that returns (or raises) the scripted answers and records send times."""
    sent: list[float] = []

    def send() -> httpx.Response:
        sent.append(ft.now)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return send, sent


def resp(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers or {}, json={"message": "x"})


def pacer(ft: FakeTime, limits=None, **policy) -> Pacer:
    return Pacer(limits or {}, RetryPolicy(**policy), clock=ft.clock, sleep=ft.sleep, rng=random.Random(1))


@pytest.mark.parametrize("names", [
    ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"),
    ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"),
    ("X-RATELIMIT-LIMIT", "x-RateLimit-REMAINING", "X-Ratelimit-Reset"),
])
def test_rate_headers_parse_in_any_case(names):
    headers = dict(zip(names, ("250", "0", "1700000060")))
    assert parse_rate_headers(headers) == RateInfo(250, 0, 1700000060.0)
    assert parse_rate_headers(httpx.Headers(headers)) == RateInfo(250, 0, 1700000060.0)


def test_rate_headers_unreadable_values_are_none():
    assert parse_rate_headers({"X-RateLimit-Remaining": "many", "X-RateLimit-Reset": "nan"}) == RateInfo()


def test_reset_epoch_absolute_and_relative():
    assert reset_epoch(T0 + 30, T0) == T0 + 30
    assert reset_epoch(30, T0) == T0 + 30  # seconds from now, from a server that sends a delta
    assert reset_epoch(1060, 1000) == 1060  # a small fake clock: still absolute
    assert reset_epoch(None, T0) is None


def test_retry_after_seconds_and_http_date():
    assert retry_after_seconds({"retry-after": "7"}, T0) == 7
    date = format_datetime(datetime.fromtimestamp(T0 + 12, timezone.utc), usegmt=True)
    assert retry_after_seconds({"Retry-After": date}, T0) == pytest.approx(12)
    assert retry_after_seconds({"Retry-After": "soon"}, T0) is None
    assert retry_after_seconds({}, T0) is None


def test_budget_never_sends_with_remaining_zero_before_reset():
    ft = FakeTime(T0)
    p = pacer(ft)
    send, sent = scripted(ft, [
        resp(200, {"x-ratelimit-limit": "2", "x-ratelimit-remaining": "0", "x-ratelimit-reset": str(T0 + 30)}),
        resp(200),
    ])
    p.send("shared", send, LABEL)
    p.send("shared", send, LABEL)
    assert sent == [T0, T0 + 30]
    assert ft.sleeps == [30]


def test_budget_counts_in_flight_sends_against_server_remaining():
    ft = FakeTime(T0)
    budget = RateBudget("shared", None, ft.clock)
    budget.observe(RateInfo(10, 2, T0 + 5))
    assert budget.reserve() == 0
    assert budget.reserve() == 0
    assert budget.reserve() == pytest.approx(5)


def test_stale_reset_is_ignored():
    ft = FakeTime(T0)
    budget = RateBudget("shared", None, ft.clock)
    budget.observe(RateInfo(10, 0, T0 - 1))
    assert budget.reserve() == 0


def test_local_pacing_to_the_configured_limit():
    ft = FakeTime(start=1000.0)
    p = pacer(ft, {"users_track": RateLimit(2, 10)})
    send, sent = scripted(ft, [resp(201)] * 5)
    for _ in range(5):
        p.send("users_track", send, LABEL)
    assert sent == [1000, 1000, 1010, 1010, 1020]


def test_budget_is_thread_safe():
    ft = FakeTime(T0)
    budget = RateBudget("x", RateLimit(5, 60), ft.clock)
    results: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        got = budget.reserve()
        with lock:
            results.append(got)

    threads = [threading.Thread(target=worker) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(0.0) == 5 and budget.sent == 5


def test_429_waits_until_reset_and_is_not_a_failed_try():
    ft = FakeTime(T0)
    p = pacer(ft, max_retries=0)
    limited = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(T0 + 42)}
    send, sent = scripted(ft, [resp(429, limited), resp(429, {"X-RateLimit-Reset": str(T0 + 50)}), resp(200)])
    assert p.send("shared", send, LABEL).status_code == 200
    assert ft.sleeps == [42, 8]
    assert sent == [T0, T0 + 42, T0 + 50]


def test_retry_after_is_honoured_over_reset():
    ft = FakeTime(T0)
    p = pacer(ft, max_retries=0)
    send, _ = scripted(ft, [resp(429, {"Retry-After": "7", "X-RateLimit-Reset": str(T0 + 600)}), resp(200)])
    p.send("shared", send, LABEL)
    assert ft.sleeps == [7]


def test_429_without_headers_backs_off_within_the_cap():
    ft = FakeTime(T0)
    p = pacer(ft, max_retries=0, backoff_base_seconds=1, backoff_cap_seconds=3)
    send, _ = scripted(ft, [resp(429)] * 4 + [resp(200)])
    p.send("shared", send, LABEL)
    assert len(ft.sleeps) == 4 and all(0 <= s <= 3 for s in ft.sleeps)


def test_429_blocks_the_whole_class_for_other_callers():
    ft = FakeTime(T0)
    p = pacer(ft)
    send, sent = scripted(ft, [resp(429, {"X-RateLimit-Reset": str(T0 + 20)}), resp(200), resp(200)])
    p.send("shared", send, LABEL)
    p.send("shared", send, LABEL)
    assert sent == [T0, T0 + 20, T0 + 20]


def test_rate_wait_is_bounded():
    ft = FakeTime(T0)
    p = pacer(ft, max_rate_wait_seconds=100)
    send, _ = scripted(ft, [resp(429, {"X-RateLimit-Reset": str(T0 + 3600)})])
    with pytest.raises(RateLimited) as info:
        p.send("shared", send, LABEL)
    assert info.value.reset_at == pytest.approx(T0 + 3600)
    assert ft.sleeps == []
    assert "rest.example/users/track" in str(info.value)


def test_rate_limited_answers_are_bounded():
    ft = FakeTime(T0)
    p = pacer(ft, max_rate_limited=3)
    send, sent = scripted(ft, [resp(429, {"Retry-After": "1"})] * 4)
    with pytest.raises(RateLimited):
        p.send("shared", send, LABEL)
    assert len(sent) == 4


def test_5xx_retried_then_success():
    ft = FakeTime(T0)
    p = pacer(ft, max_retries=3, backoff_cap_seconds=5)
    send, sent = scripted(ft, [resp(500), resp(503), resp(200)])
    assert p.send("shared", send, LABEL).status_code == 200
    assert len(sent) == 3 and len(ft.sleeps) == 2 and all(0 <= s <= 5 for s in ft.sleeps)


def test_5xx_exhausted_raises_transient_error():
    ft = FakeTime(T0)
    p = pacer(ft, max_retries=2)
    send, sent = scripted(ft, [resp(502)] * 3)
    with pytest.raises(TransientApiError) as info:
        p.send("shared", send, LABEL)
    assert len(sent) == 3 and info.value.status_code == 502
    assert not isinstance(info.value, RateLimited)


@pytest.mark.parametrize("exc", [httpx.ReadTimeout("slow"), httpx.ConnectError("refused"),
                                 httpx.RemoteProtocolError("eof")])
def test_timeouts_and_connection_errors_are_retried(exc):
    ft = FakeTime(T0)
    p = pacer(ft, max_retries=1)
    send, sent = scripted(ft, [exc, exc])
    with pytest.raises(TransientApiError) as info:
        p.send("shared", send, LABEL)
    assert len(sent) == 2 and type(exc).__name__ in str(info.value)


def test_rate_limit_waits_do_not_use_up_retries():
    ft = FakeTime(T0)
    p = pacer(ft, max_retries=1)
    answers = [resp(500), resp(429, {"Retry-After": "2"}), resp(429, {"Retry-After": "2"}), resp(200)]
    send, sent = scripted(ft, answers)
    assert p.send("shared", send, LABEL).status_code == 200
    assert len(sent) == 4


def test_unretryable_transport_error_is_fatal():
    ft = FakeTime(T0)
    p = pacer(ft)
    send, sent = scripted(ft, [httpx.UnsupportedProtocol("ftp")])
    with pytest.raises(FatalApiError):
        p.send("shared", send, LABEL)
    assert len(sent) == 1


@given(attempt=st.integers(0, 80), base=st.floats(0.01, 5), cap=st.floats(0, 120))
def test_backoff_is_full_jitter_under_the_cap(attempt, base, cap):
    policy = RetryPolicy(backoff_base_seconds=base, backoff_cap_seconds=cap)
    wait = policy.backoff(attempt, random.Random(attempt))
    assert 0 <= wait <= min(cap, base * 2 ** min(attempt, 62)) + 1e-9
