"""Ketch's adaptive pace (AIMD): rises while answers are fast and clean, halves on 429,
5xx, failed tries and latency growth, never above its ceiling; against a rate-limited
simulator it finds the limit and backs off."""

from __future__ import annotations

import time

import pytest

from reconcile.clients.ketch import KetchClient
from reconcile.clients.resilience import AdaptiveRate
from reconcile.config import KetchConfig
from reconcile.sandbox.ketch import KetchSim


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def answers(rate: AdaptiveRate, clock: Clock, n: int, seconds: float, latency: float = 0.01,
            outcome: str = "ok") -> None:
    """n answers spread evenly over `seconds`."""
    start = clock.now
    for i in range(n):
        clock.now = start + seconds * (i + 1) / n
        rate.record(latency, outcome)


def test_clean_busy_epochs_raise_the_rate_additively_up_to_the_ceiling():
    clock = Clock()
    rate = AdaptiveRate(100, 130, clock)
    answers(rate, clock, 100, 1.0)
    assert rate.rate == 110 and rate.increases == 1
    for _ in range(5):
        answers(rate, clock, int(rate.rate), 1.0)
    assert rate.rate == 130 and rate.peak == 130


def test_an_idle_epoch_does_not_raise_the_rate():
    clock = Clock()
    rate = AdaptiveRate(100, 500, clock)
    answers(rate, clock, 30, 1.0)  # the caller used 30 % of the pace
    assert rate.rate == 100 and rate.increases == 0


@pytest.mark.parametrize("outcome", ["throttled", "error"])
def test_a_burst_of_429_or_5xx_halves_the_rate_once_per_epoch(outcome: str):
    clock = Clock()
    rate = AdaptiveRate(200, 500, clock)
    answers(rate, clock, 10, 0.1, outcome=outcome)
    assert rate.rate == 100 and rate.decreases == 1
    clock.now += 1.0
    rate.record(0.01, outcome)
    assert rate.rate == 50 and rate.decreases == 2
    assert rate.usage()["rate_limited" if outcome == "throttled" else "failed"] == 11


def test_latency_growth_halves_the_rate():
    clock = Clock()
    rate = AdaptiveRate(100, 500, clock)
    answers(rate, clock, 100, 1.0, latency=0.02)
    answers(rate, clock, 110, 1.0, latency=0.2)
    assert rate.rate == 55 and rate.decreases == 1


def test_never_below_the_floor_and_fixed_when_the_ceiling_is_not_above_the_start():
    clock = Clock()
    rate = AdaptiveRate(4, 100, clock, floor=1)
    for _ in range(6):
        clock.now += 1.0
        rate.record(0.01, "throttled")
    assert rate.rate == 1
    fixed = AdaptiveRate(200, 150, clock)
    answers(fixed, clock, 300, 1.0)
    fixed.record(0.01, "throttled")
    assert fixed.rate == 200 and not fixed.adaptive
    unpaced = AdaptiveRate(0, 500, clock)
    unpaced.record(0.01, "throttled")
    assert unpaced.rate == 0 and unpaced.usage()["rate_limited"] == 1


def cfg(**kw) -> KetchConfig:
    base = dict(base_url="https://global.ketchcdn.com/web/v3", organization="acme", property="web",
                environment="production", jurisdiction="caccpa", concurrency=16, timeout_seconds=5.0,
                max_retries=8, max_retry_after_seconds=2.0)
    return KetchConfig(**{**base, **kw})


def run_against(sim: KetchSim, pace: AdaptiveRate, n: int) -> dict:
    values = [f"u{i}@x.com" for i in range(n)]
    for v in values[::3]:
        sim.set_consent("email", v, {"p": True}, 1_700_000_000)
    with KetchClient(cfg(), transport=sim.transport(), pace=pace) as client:
        records = client.fetch_many("email", values)
        usage = client.usage()
    assert list(records) == values
    assert all(records[v].consent is not None for v in values[::3])
    return usage


def test_against_a_rate_limited_simulator_the_pace_rises_to_the_limit_and_backs_off():
    # 80 requests a second in fixed quarter-second windows: low enough that a loaded machine
    # still reaches it; latency is left out of the judgement (a loaded machine's latency
    # varies by itself), so only the limit's 429s bring the pace down
    sim = KetchSim(rate_limit=(20, 0.25))
    pace = AdaptiveRate(40, 5000, time.monotonic, step=20, epoch_seconds=0.1, min_answers=4, latency_factor=1e6)
    usage = run_against(sim, pace, 120)
    statuses = [c["status"] for c in sim.calls]
    assert usage["increases"] >= 1 and usage["rate_max"] > 80
    assert usage["rate_limited"] == statuses.count(429) >= 1 and usage["decreases"] >= 1
    assert usage["rate_max"] < 5000
    assert statuses.count(429) < 0.25 * len(statuses)


def test_the_ceiling_is_never_passed():
    sim = KetchSim(rate_limit=(1000, 0.25))
    pace = AdaptiveRate(100, 200, time.monotonic, step=50, epoch_seconds=0.1, min_answers=5)
    usage = run_against(sim, pace, 300)
    assert usage["rate_max"] == 200 and usage["rate_now"] <= 200
    assert [c["status"] for c in sim.calls].count(429) == 0 and usage["rate_limited"] == 0
    assert usage["requests"] == len(sim.calls) == 600


def test_the_client_builds_its_pace_from_the_config():
    client = KetchClient(cfg(requests_per_second=50, max_requests_per_second=80), transport=KetchSim().transport())
    assert client.usage()["rate_start"] == 50 and client.usage()["rate_ceiling"] == 80
    client.close()
