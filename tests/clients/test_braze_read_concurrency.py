"""Braze reads with `braze.read_concurrency` requests in flight: the same results in the
same order as one at a time, never more in flight than configured, the first failure in
order raised and nothing sent after the call returned; request labels without re-parsing."""

from __future__ import annotations

import random
import threading
import time

import httpx
import pytest

from reconcile.clients.braze import BrazeClient, message_url
from reconcile.config import DEFAULT_RATE_LIMITS, BrazeConfig, RateLimit
from reconcile.errors import PermissionDenied
from reconcile.sandbox.braze import BrazeSim

KEY = "sandbox-rest-key"
UNLIMITED = {name: RateLimit(10**9, 1) for name in DEFAULT_RATE_LIMITS}


class InFlight:
    """Wraps a simulator's transport, holding each request briefly and recording the most
    requests it saw at once."""

    def __init__(self, sim: BrazeSim, hold: float = 0.005, fail_at: int | None = None):
        self.inner = sim.transport()
        self.hold, self.fail_at = hold, fail_at
        self.lock = threading.Lock()
        self.now = self.most = self.sent = 0
        self.order: list[int] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.now += 1
            self.sent += 1
            number = self.sent
            self.most = max(self.most, self.now)
        try:
            time.sleep(self.hold)
            if self.fail_at is not None and number == self.fail_at:
                return httpx.Response(403, json={"message": "Access Denied"})
            return self.inner.handle_request(request)
        finally:
            with self.lock:
                self.now -= 1

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)


def population() -> BrazeSim:
    sim = BrazeSim(api_key=KEY, rate_limits={n: (10**9, 1.0) for n in DEFAULT_RATE_LIMITS})
    sim.add_group("g")
    for n in range(600):
        sim.add_profile(external_id=f"u{n}", email=f"u{n}@x.com",
                        groups={"g": "unsubscribed" if n % 3 else "subscribed"})
    return sim


def make(transport: httpx.BaseTransport, workers: int) -> BrazeClient:
    cfg = BrazeConfig(rest_endpoint="http://braze.test", read_concurrency=workers, rate_limits=UNLIMITED)
    return BrazeClient(cfg, KEY, transport=transport, rng=random.Random(0))


def test_status_get_concurrently_matches_one_at_a_time_in_order():
    sim = population()
    emails = [f"u{n}@x.com" for n in range(600)] + ["ghost@x.com"]
    with make(sim.transport(), 1) as serial:
        expected = serial.subscription_status_get("g", emails=emails, external_ids=["u5", "u6"])
    watched = InFlight(sim)
    with make(watched.transport(), 4) as c:
        got = c.subscription_status_get("g", emails=emails, external_ids=["u5", "u6"])
    assert list(got.items()) == list(expected.items())
    assert 1 < watched.most <= 4 and watched.sent == 14


def test_exports_concurrently_keep_the_order_of_chunks_and_addresses():
    sim = population()
    watched = InFlight(sim)
    ids = [f"u{n}" for n in range(599, -1, -1)]
    with make(watched.transport(), 3) as c:
        result = c.export_ids(ids + ["ghost"], ["external_id"])
        users = c.export_emails([f"u{n}@x.com" for n in (9, 3, 7, 3, 1)], ["external_id"])
    assert [u["external_id"] for u in result.users] == ids and result.invalid_user_ids == ["ghost"]
    assert result.requests_sent == 13
    assert [u["external_id"] for u in users] == ["u9", "u3", "u7", "u1"]
    assert 1 < watched.most <= 3


def test_user_status_concurrently_matches_one_at_a_time():
    sim = population()
    emails = [f"u{n}@x.com" for n in range(300)]
    with make(sim.transport(), 1) as serial:
        expected = serial.subscription_user_status(emails=emails)
    with make(InFlight(sim).transport(), 4) as c:
        assert c.subscription_user_status(emails=emails) == expected


def test_the_first_failure_is_raised_and_nothing_is_sent_after_the_call():
    sim = population()
    watched = InFlight(sim, fail_at=3)
    with make(watched.transport(), 4) as c:
        with pytest.raises(PermissionDenied):
            c.subscription_status_get("g", emails=[f"u{n}@x.com" for n in range(600)])
        sent = watched.sent
        time.sleep(0.05)
        assert watched.sent == sent and watched.now == 0
    assert sent <= 3 + 2 * 4  # the failing one, those in flight and those already queued


def test_nested_reads_on_the_client_threads_run_one_at_a_time():
    sim = population()
    with make(sim.transport(), 2) as c:
        nested = c._in_order(lambda chunk: c._in_order(lambda x: x * 2, chunk), [[1, 2], [3], [4, 5, 6]])
    assert nested == [[2, 4], [6], [8, 10, 12]]


@pytest.mark.parametrize("path, params", [
    ("/subscription/status/get", [("subscription_group_id", "g"), *(("email[]", f"u{n}@x.com") for n in range(50))]),
    ("/subscription/status/get", [("subscription_group_id", "a b&c"), ("external_id[]", "u1")]),
    ("/email/unsubscribes", [("start_date", "2024-01-01"), ("end_date", "2024-02-01"), ("email", "a@x.com")]),
    ("/email/hard_bounces", [("start_date", "2024-01-01"), ("limit", 500), ("offset", 1000), ("api_key", "k")]),
    ("/users/track", None),
])
def test_request_labels_equal_the_sanitized_message_url(path, params):
    with make(httpx.MockTransport(lambda r: httpx.Response(200)), 1) as c:
        request = c._http.build_request("GET", path, params=params)
        assert c._label_url(path, params) == message_url(request.url)
