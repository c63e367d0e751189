"""`braze.budget_share` caps the job's use of the shared class at a share of the limit
the headers report (or the configured one); sends near a window's end are charged to the
next window too; the pacer counts requests per class and endpoint, 429s and waits."""

from __future__ import annotations

import random
from datetime import date

import httpx
import pytest

from reconcile.clients.braze import BrazeClient
from reconcile.clients.pacing import Pacer, RateBudget, RateInfo, RequestLabel, RetryPolicy
from reconcile.config import BrazeConfig, RateLimit
from reconcile.sandbox.braze import BrazeSim

from fake_time import FakeTime

KEY = "sandbox-rest-key"
T0 = 1_700_000_000.0  # a multiple of 10 and of 100


def test_a_share_caps_sends_per_window_at_that_share_of_the_configured_limit():
    ft = FakeTime(T0)
    budget = RateBudget("shared", RateLimit(10, 10), ft.clock, share=0.5)
    assert [budget.reserve() for _ in range(6)] == [0, 0, 0, 0, 0, 10.0]
    assert budget.window_limit == 5


def test_the_reported_limit_replaces_the_configured_one_when_its_window_matches():
    ft = FakeTime(T0 + 3)
    budget = RateBudget("shared", RateLimit(10, 10), ft.clock, share=0.5, follow_header_limit=True)
    budget.observe(RateInfo(limit=40, remaining=39, reset=T0 + 60))  # another window length: ignored
    assert budget.window_limit == 5
    budget.observe(RateInfo(limit=40, remaining=39, reset=T0 + 10))
    assert budget.window_limit == 20
    unshared = RateBudget("users_track", RateLimit(10, 10), ft.clock)
    unshared.observe(RateInfo(limit=40, remaining=39, reset=T0 + 10))
    assert unshared.window_limit == 10


@pytest.mark.parametrize("share", [0.0, -0.1, 1.5])
def test_a_share_outside_0_to_1_is_refused(share):
    with pytest.raises(ValueError):
        RateBudget("shared", RateLimit(10, 10), lambda: T0, share=share)


def test_a_send_near_the_end_of_its_window_is_charged_to_the_next_one():
    ft = FakeTime(T0)
    budget = RateBudget("x", RateLimit(3, 10), ft.clock)
    budget.note_answer("/x", 0.4, False)  # answers take up to 0.4 s: the guard is 0.8 s
    ft.now = T0 + 9.5
    assert budget.reserve() == 0
    ft.now = T0 + 10.0
    assert [budget.reserve() for _ in range(3)] == [0, 0, 10.0]
    ft.now = T0 + 25.0  # far from the end: nothing carried
    assert [budget.reserve() for _ in range(4)] == [0, 0, 0, 5.0]


def test_waits_are_wall_time_split_by_what_held_the_send():
    ft = FakeTime(T0)
    budget = RateBudget("x", RateLimit(1, 10), ft.clock)
    assert budget.reserve() == 0
    assert budget.reserve() == 10.0 and budget.reserve() == 10.0  # two threads waiting the same 10 s
    ft.now = T0 + 10
    budget.block_until(T0 + 14)
    assert budget.reserve() == 4.0
    assert budget.waits == {"window": 10.0, "server": 4.0}


def make(sim: BrazeSim, ft: FakeTime, **cfg) -> BrazeClient:
    config = BrazeConfig(rest_endpoint="http://braze.test", **cfg)
    return BrazeClient(config, KEY, transport=sim.transport(), sleep=ft.sleep, clock=ft.clock, rng=random.Random(0))


def test_the_client_uses_half_the_shared_class_by_default_and_reports_it():
    ft = FakeTime(T0)
    sim = BrazeSim(api_key=KEY, clock=ft.clock, rate_limits={"shared": (20, 100.0)})
    sim.add_group("g")
    emails = [f"u{n}@x.com" for n in range(1000)]
    for e in emails:
        sim.add_profile(email=e, groups={"g": "subscribed"})
    with make(sim, ft, rate_limits={"shared": RateLimit(20, 100)}, read_concurrency=1) as c:
        c.subscription_status_get("g", emails=emails)
        usage = c.usage()["classes"]["shared"]
    sent_at = [call["at"] for call in sim.calls]
    per_window: dict[float, int] = {}
    for at in sent_at:
        per_window[at // 100] = per_window.get(at // 100, 0) + 1
    assert [c["status"] for c in sim.calls] == [200] * 20
    assert max(per_window.values()) == 10 and len(per_window) == 2
    assert usage["requests"] == 20 and usage["endpoints"] == {"/subscription/status/get": 20}
    assert usage["window_cap"] == 10 and usage["reported_limit"] == 20 and usage["share"] == 0.5
    assert usage["rate_limited"] == 0 and usage["cap_wait_seconds"] == usage["wait_seconds"] == 100.0


def test_a_share_of_1_uses_the_whole_class_and_other_classes_are_not_capped():
    ft = FakeTime(T0)
    sim = BrazeSim(api_key=KEY, clock=ft.clock, rate_limits={"shared": (20, 100.0)})
    sim.add_unsubscribe("a@x.com", "2023-11-01T00:00:00Z")
    with make(sim, ft, budget_share=1.0, rate_limits={"shared": RateLimit(20, 100)}) as c:
        for _ in range(20):
            list(c.email_unsubscribes(date(2023, 10, 1), date(2023, 12, 1)))
        c.set_global_state("unsubscribed", "external_id", ["u1"])
        usage = c.usage()["classes"]
    assert usage["shared"]["requests"] == 20 and usage["shared"]["wait_seconds"] == 0
    assert usage["users_track"]["share"] == 1.0 and usage["users_track"]["endpoints"] == {"/users/track": 1}


def test_429_answers_are_counted_per_class():
    ft = FakeTime(T0 + 5)
    pacer = Pacer({"shared": RateLimit(100, 10)}, RetryPolicy(), clock=ft.clock, sleep=ft.sleep,
                  rng=random.Random(0), shares={"shared": 0.5})
    answers = [httpx.Response(429, headers={"X-RateLimit-Reset": str(int(T0 + 10))}), httpx.Response(200)]
    pacer.send("shared", lambda: answers.pop(0), RequestLabel("braze", "GET", "http://b/email/status"))
    usage = pacer.usage()["shared"]
    assert usage["rate_limited"] == 1 and usage["endpoints"] == {"/email/status": 2}
    assert usage["wait_seconds"] == 5.0 and usage["cap_wait_seconds"] == 0
