"""Ketch's less convenient readings, over loopback against the sandbox switched to each:
no published rate limit and a CDN in front (a cautious start that rises on success, an
edge 403 page waited out as a rate limit, never read as a missing permission), and a 4xx
for one subject that fails that subject only, while a wrong organization still stops the
run before anything is written."""

from __future__ import annotations

import pytest

from reconcile.clients.resilience import AdaptiveRate
from reconcile.config import KetchConfig
from reconcile.errors import ExitCode, NotFound
from reconcile.pipeline import run_job

GUARDS = {"max_unsubscribe_fraction": 1.0, "max_deletion_fraction": 1.0}


def test_an_edge_403_page_is_a_rate_limit_the_run_backs_off_from(world):
    w = world
    cfg = w.config(ketch={"requests_per_second": 8, "max_requests_per_second": 200, "concurrency": 4,
                          "max_retries": 8, "max_retry_after_seconds": 2}, guards=GUARDS)
    w.seed(cfg, subjects=60, drift=0.2)
    w.ketch.edge_style = "html403"  # over its limit the CDN answers a 403 HTML page, no JSON, no Retry-After
    w.ketch.limiter.set_limit("web", 12, 1.0)
    with w.runtime(cfg) as rt:
        done = run_job(rt)
        failed = [e for e in rt.store.exceptions(done.run_id) if e["source"] == "ketch"]
        usage = rt.store.get_run(done.run_id)["summary"]["api_usage"]["ketch"]
    statuses = [c["status"] for c in w.ketch.calls]
    assert 403 in statuses, "the edge refused some requests"
    assert done.exit_code == ExitCode.OK and failed == [], (done.messages, failed[:3])
    assert usage["rate_start"] == 8 and usage["rate_max"] > 8, "the pace rose on success"
    assert usage["rate_limited"] == statuses.count(403) and usage["decreases"] >= 1, "and fell on the edge's 403"
    assert usage["rate_limited"] < len(statuses) / 2


def test_another_4xx_fails_that_subject_only(world):
    w = world
    cfg = w.config(guards=GUARDS)
    truth = w.seed(cfg, subjects=60, drift=0.2)
    refused = truth.injected["missed_optout_global"][0]
    w.ketch.refused_identities = (refused,)
    with w.runtime(cfg) as rt:
        done = run_job(rt)
        failed = [e for e in rt.store.exceptions(done.run_id) if e["source"] == "ketch"]
        items = rt.store.drift_items(run_id=done.run_id)
    assert done.exit_code == ExitCode.PARTIAL, done.messages  # a subject not checked: partial, and owed
    assert any("1 subject(s) not checked" in m for m in done.messages)
    assert [e["identity"] for e in failed] == [refused] and "400" in failed[0]["reason"]
    assert refused.casefold() not in {d["subject_key"] for d in items}, "not read as 'no record'"
    assert w.braze.profiles_by_email(refused)[0].email_subscribe == "subscribed", "nothing done on a failed read"
    assert done.counts["missed_optout"] >= 1 and done.verified > 0, "the other subjects were reconciled"
    w.ketch.refused_identities = ()
    with w.runtime(cfg) as rt:  # read again on the next run, and corrected
        again = run_job(rt)
    assert again.exit_code == ExitCode.OK
    assert w.braze.profiles_by_email(refused)[0].email_subscribe == "unsubscribed"


def test_a_wrong_organization_still_stops_the_run_before_any_write(world):
    w = world
    cfg = w.config(ketch={"organization": "not-acme"})
    w.seed(cfg, subjects=30, drift=0.2)
    w.braze.calls.clear()
    with w.runtime(cfg) as rt, pytest.raises(NotFound):
        run_job(rt)
    assert w.writes() == []


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def busy_second(rate: AdaptiveRate, clock: Clock, outcome: str = "ok") -> None:
    n, start = max(10, int(rate.rate)), clock.now
    for i in range(n):
        clock.now = start + (i + 1) / n
        rate.record(0.01, outcome)


def test_a_cautious_start_grows_by_a_quarter_per_clean_second_then_probes_additively():
    assert KetchConfig().requests_per_second == 20 and KetchConfig().max_requests_per_second == 500
    clock = Clock()
    rate = AdaptiveRate(20, 500, clock, growth=0.25)
    seen = []
    for _ in range(5):
        busy_second(rate, clock)
        seen.append(rate.rate)
    assert seen == pytest.approx([25, 31.25, 39.0625, 48.828125, 61.03515625])
    rate.record(0.01, "throttled")  # the first sign of pressure halves it
    assert rate.rate == pytest.approx(61.03515625 / 2)
    before = rate.rate
    busy_second(rate, clock)
    assert rate.rate == pytest.approx(before + rate.step), "after a back-off it probes by the additive step"
    for _ in range(40):
        busy_second(rate, clock)
    assert rate.rate <= 500
